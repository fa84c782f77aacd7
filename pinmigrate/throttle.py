"""Adaptive concurrency and pacing for one service's requests during apply and rollback.

Flow Service documents no rate limit (api-notes.md §2: treat 429, 502, 503, 504 as
retryable, honour ``Retry-After``), Pinterest documents 100 requests/s per user per app:
the limit a run meets is learnt from the answers, as TCP and Envoy's adaptive concurrency
learn theirs. :class:`Throttle` sits in :class:`pinmigrate.http.HttpClient`: every attempt
is admitted before it is sent (:meth:`Throttle.admit`) and its answer is reported back
(:meth:`Throttle.settle`). Three controls, each from what the service said:

- **The window** (writes in flight at once) starts at ``migration.concurrency`` and grows by
  one for each window-full of writes answered in good time (additive increase), up to
  ``migration.max_concurrency``; it shrinks by a tenth when the writes' median latency grows
  past twice the best seen, and halves on a refusal that counts (multiplicative decrease).
- **A pause.** A 429 or 503 with ``Retry-After`` pauses every request of the service, not
  only the one refused: the rest would be refused too. The HTTP layer caps it at its retry
  cap, and the wait is not taken from any request's own deadline.
- **A pace** (requests per second) for each kind of request that was refused (writes,
  reads): unpaced until the first refusal, then the rate seen answered well over the last
  second, probed upward fast (never past twice what is being answered) until refused again;
  from then on held just under the rate where it was refused (the ceiling), each refusal
  lowering the ceiling (at most halving it, never below half the best rate answered well),
  and probed above it again, slowly, after a calm spell. Once paced, a refusal without
  ``Retry-After`` counts only when such refusals are at least 2 % of the last two seconds'
  answers: a bare 503 in passing, which comes whatever the rate, does not drive the pace
  down; a ``Retry-After`` always counts (the service says it is over its limit). A token
  bucket that refills while a pause lasts loses nothing to the pause; a server without
  ``Retry-After`` is met with the pace alone.

One refusal event is reacted to once: answers to requests sent before the last reaction
to their kind's refusals (an epoch) do not cut again, as TCP reacts once per window of
losses. The IMS token goes around the throttle (another service). Against the emulator's
``--rate-limit flowservice=50/s`` (a token bucket of one second), 4,200 writes went at
95 to 100 % of the limit with 0.2 to 0.3 % of requests refused (docs/performance.md).
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pinmigrate.errors import NotSentError

Kind = Literal["write", "read"]

#: Answers that say the service is over its limit (throttled, or unavailable).
REFUSALS = frozenset({429, 503})
#: The window is cut to this share on a refusal.
WINDOW_CUT = 0.5
#: ... and to this share when the writes' latency grew past LATENCY_TOLERANCE x the best.
LATENCY_CUT = 0.9
LATENCY_TOLERANCE = 2.0
#: Writes' latencies judged together: at least this many, else one window-full.
MIN_SAMPLE = 8
#: The pace starts again below the rate refused (x this), then climbs back.
PACE_CUT = 0.9
#: Held this far under the ceiling once the ceiling is known.
PLATEAU = 0.95
#: Seconds to climb back from the cut to the plateau.
RECOVER = 2.0
#: Before the first ceiling is known: the pace grows by this factor per second.
PROBE_FAST = 1.5
#: After this many calm seconds at the plateau, the ceiling is raised by PROBE_SLOW per
#: second (the service's limit may have grown).
CALM = 30.0
PROBE_SLOW = 0.02
#: Seconds of answers the rate seen is measured over (at least SEEN_AT_LEAST: a run's first
#: answers are not a rate yet).
SEEN_OVER = 1.0
SEEN_AT_LEAST = 0.5
#: The longest spell one answer's growth of the pace accounts for (seconds).
MOST_GROWTH_STEP = 5.0
#: Refusals are judged over this many seconds of answers, and drive the pace down only
#: when at least this share of them were refusals (or when the kind is not paced yet).
SHARE_OVER = 2.0
REFUSED_SHARE = 0.02
#: No pace is set below this (requests per second).
LEAST_RATE = 0.5


@dataclass(frozen=True)
class Ticket:
    """One admitted attempt: what its answer is judged against."""

    kind: Kind
    epoch: int


@dataclass
class Pace:
    """The rate of one kind of request, once the service refused one of them."""

    #: Requests per second allowed; None: unpaced.
    rate: float | None = None
    #: The rate where the service refused, once learnt (None while probing fast).
    ceiling: float | None = None
    #: When the next request may go.
    next_at: float = 0.0
    #: Last refusal, or last raise of the ceiling: the start of the calm spell.
    calm_since: float = 0.0
    grown_at: float = 0.0
    #: When requests of this kind were answered well (for the rate seen), and the first.
    answered: deque[float] = field(default_factory=deque)
    first: float | None = None
    #: The answers of the last SHARE_OVER seconds: (when, refused).
    outcomes: deque[tuple[float, bool]] = field(default_factory=deque)
    #: The most answered well in SEEN_OVER seconds: the pace never falls below half of it.
    best_seen: float = 0.0

    def seen(self, now: float) -> float:
        """Requests per second answered well over the last SEEN_OVER seconds (over the time
        since the first answer, when that is shorter, but at least SEEN_AT_LEAST)."""
        while self.answered and self.answered[0] < now - SEEN_OVER:
            self.answered.popleft()
        since = SEEN_OVER if self.first is None else now - self.first
        return len(self.answered) / max(SEEN_AT_LEAST, min(SEEN_OVER, since))

    def outcome(self, now: float, *, refused: bool) -> None:
        """One more answer of this kind: refused (429/503) or answered well."""
        self.outcomes.append((now, refused))
        while self.outcomes and self.outcomes[0][0] < now - SHARE_OVER:
            self.outcomes.popleft()

    def over_its_limit(self, now: float) -> bool:
        """Do the refusals of the last SHARE_OVER seconds say the rate is too high? The
        first refusal does; later, a share of at least REFUSED_SHARE of the answers. A
        service that refuses now and then whatever the rate (a 503 in passing) does not
        drive the pace down."""
        if self.rate is None:
            return True
        refused = sum(1 for _, was in self.outcomes if was)
        return refused >= REFUSED_SHARE * len(self.outcomes)

    def ok(self, now: float) -> None:
        """A request of this kind was answered well."""
        if self.first is None:
            self.first = now
        self.answered.append(now)
        if self.first <= now - SEEN_OVER:
            self.best_seen = max(self.best_seen, self.seen(now))
        self.grow(now)

    def refused(self, now: float) -> None:
        seen = self.seen(now)
        if self.rate is None:
            # The first refusal: the rate seen is a guess (a burst may have inflated it, a
            # short run deflated it). Probe from below it, fast, until refused again.
            self.rate = max(LEAST_RATE, seen * PACE_CUT)
        else:
            # Refused at this rate: the ceiling is at most that, and about what was answered
            # well; at most halved at once (requests waiting out their own backoff lower the
            # rate seen), and while probing fast the rate of a second ago was answered.
            floor = self.rate / PROBE_FAST if self.ceiling is None else self.rate * WINDOW_CUT
            # Never below half the best rate answered well: the pace never throttles the
            # run to a trickle, whatever the refusals say.
            floor = max(floor, self.best_seen * WINDOW_CUT)
            self.ceiling = max(LEAST_RATE, floor, min(self.rate, seen))
            self.rate = max(LEAST_RATE, self.ceiling * PACE_CUT)
        self.calm_since = self.grown_at = now

    def grow(self, now: float) -> None:
        if self.rate is None:
            return
        # Growth is judged over the answers of the last few seconds at most: after a long
        # quiet spell (a wait for first runs) the rate picks up where it was.
        elapsed = min(max(0.0, now - self.grown_at), MOST_GROWTH_STEP)
        self.grown_at = now
        # Probing above twice what is being answered proves nothing: the rate is not used.
        bound = 2 * self.seen(now) + 1
        if self.ceiling is None:
            self.rate = max(self.rate, min(self.rate * PROBE_FAST**elapsed, bound))
            return
        if now - self.calm_since > CALM:
            self.ceiling = max(self.ceiling, min(self.ceiling * (1 + PROBE_SLOW * elapsed), bound))
        target = self.ceiling * PLATEAU
        # Back from the cut to the plateau in about RECOVER seconds, in a straight line.
        climb = target * (1 - PACE_CUT) / RECOVER * elapsed
        self.rate = target if self.rate >= target else min(target, self.rate + climb)

    def slot(self, now: float) -> float:
        """Reserve the next send time (now or later) at the current rate."""
        if self.rate is None:
            return now
        at = max(now, self.next_at)
        self.next_at = at + 1.0 / self.rate
        return at


@dataclass(frozen=True)
class ThrottleState:
    """What the display and the report show."""

    window: int
    least_window: int
    most_window: int
    #: Writes per second allowed, when paced.
    write_rate: float | None
    read_rate: float | None
    refusals: int
    #: Seconds the service asked everyone to wait (Retry-After), in all.
    paused: float
    #: Seconds until the current pause ends (0 when not paused).
    pause_left: float

    def describe(self) -> str:
        """``8 at once`` or ``2 at once, 48 writes/s``, for a progress line."""
        parts = [f"{self.window} at once"]
        if self.write_rate is not None:
            rate = self.write_rate
            parts.append(f"{rate:.0f} writes/s" if rate >= 10 else f"{rate:.1f} writes/s")
        if self.pause_left > 0:
            parts.append(f"paused {math.ceil(self.pause_left)} s by the service")
        return ", ".join(parts)

    def to_json(self) -> dict[str, object]:
        return {
            "concurrency": self.window,
            "least_concurrency": self.least_window,
            "most_concurrency": self.most_window,
            "write_rate": None if self.write_rate is None else round(self.write_rate, 1),
            "read_rate": None if self.read_rate is None else round(self.read_rate, 1),
            "refusals": self.refusals,
            "paused_seconds": round(self.paused, 1),
        }


class Throttle:
    """Admits a service's requests; see the module docstring. Thread-safe."""

    def __init__(
        self,
        start: int,
        most: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.start = max(1, start)
        self.most = max(self.start, most)
        self.window = float(self.start)
        self.least_seen = self.start
        self.clock = clock
        #: Waits for a pace slot: None waits on the throttle's condition (a stop wakes it).
        self.sleep = sleep
        #: Refusals reacted to, per kind: an answer to a request sent before the last
        #: reaction to its kind's refusals does not cut again.
        self.epochs: dict[Kind, int] = {"write": 0, "read": 0}
        self.in_flight = 0
        self.paused_until = 0.0
        self.paused = 0.0
        self.refusals = 0
        self.paces: dict[Kind, Pace] = {"write": Pace(), "read": Pace()}
        self.latencies: list[float] = []
        self.best_latency: float | None = None
        self.stopped = False
        self._cond = threading.Condition()

    def stop(self) -> None:
        """The run is being stopped (Ctrl-C): every request still waiting to be admitted,
        and every later one, is refused before it is sent."""
        with self._cond:
            self.stopped = True
            self._cond.notify_all()

    # -- admitting --

    def admit(self, method: str) -> Ticket:
        """Wait for a pause to end, a free place in the window (writes) and the pace's next
        slot; the ticket must be settled with the attempt's answer."""
        kind: Kind = "read" if method.upper() in ("GET", "HEAD", "OPTIONS") else "write"
        with self._cond:
            self._wait_for_room(kind)
            now = self.clock()
            if kind == "write":
                self.in_flight += 1
            at = self.paces[kind].slot(now)
            ticket = Ticket(kind, self.epochs[kind])
        try:
            if at > now:
                self._wait_for_slot(at)
        except BaseException:
            # Never sent (Ctrl-C): its place in the window is free again.
            if kind == "write":
                with self._cond:
                    self.in_flight = max(0, self.in_flight - 1)
                    self._cond.notify_all()
            raise
        return ticket

    def _wait_for_slot(self, at: float) -> None:
        """Wait until the pace's slot ``at``, then for any pause that began meanwhile; a
        stop wakes the wait at once."""
        if self.sleep is not None:
            self.sleep(at - self.clock())  # a test's own sleep
            at = self.clock()
        with self._cond:
            while not self.stopped and (left := at - self.clock()) > 0:
                self._cond.wait(left)
            self._wait_for_room(None)

    def _wait_for_room(self, kind: Kind | None) -> None:
        """Under the lock: wait until no pause holds the service and, for a write (``kind``
        "write"), the window has room."""
        while True:
            if self.stopped:
                raise NotSentError(
                    "stopped before it was sent (Ctrl-C)", service="adobe", hint="run it again"
                )
            wait = self.paused_until - self.clock()
            if wait > 0:
                if self.sleep is not None:
                    # A test's own sleep stands for the wait: the pause is then over.
                    self.sleep(wait)
                    self.paused_until = min(self.paused_until, self.clock())
                else:
                    self._cond.wait(wait)
            elif kind == "write" and self.in_flight >= int(self.window):
                self._cond.wait(1.0)
            else:
                return

    def settle(
        self, ticket: Ticket, status: int | None, latency: float, retry_after: float | None
    ) -> None:
        """Judge one attempt's answer (``status`` None: no answer came)."""
        with self._cond:
            now = self.clock()
            if ticket.kind == "write":
                self.in_flight = max(0, self.in_flight - 1)
            pace = self.paces[ticket.kind]
            if status in REFUSALS:
                if retry_after is not None and retry_after > 0:
                    until = now + retry_after
                    if until > self.paused_until:
                        self.paused += until - max(now, self.paused_until)
                        self.paused_until = until
                pace.outcome(now, refused=True)
                # A Retry-After is the service saying so; a bare refusal counts when they
                # are not rare (a pause keeps them rare, so it could not tell alone).
                told = retry_after is not None
                if ticket.epoch == self.epochs[ticket.kind] and (told or pace.over_its_limit(now)):
                    self._refused(ticket.kind, now)
            elif status is not None and status < 500:
                pace.outcome(now, refused=False)
                pace.ok(now)
                if ticket.kind == "write":
                    self._judge_latency(latency)
            self._cond.notify_all()

    def _refused(self, kind: Kind, now: float) -> None:
        self.epochs[kind] += 1
        self.refusals += 1
        pace = self.paces[kind]
        pace.refused(now)
        cut = self.window * WINDOW_CUT
        write_rate = self.paces["write"].rate
        if kind == "write" and write_rate is not None and self.best_latency is not None:
            # Enough writes in flight to keep their pace (a window of one would cap it at
            # one per round trip), but never more than before the refusal.
            cut = max(cut, min(float(math.ceil(write_rate * self.best_latency * 2)), self.window))
        self.window = max(1.0, cut)
        self.least_seen = min(self.least_seen, int(self.window))
        self.latencies.clear()

    def _judge_latency(self, latency: float) -> None:
        self.latencies.append(latency)
        if len(self.latencies) < max(MIN_SAMPLE, int(self.window)):
            return
        median = statistics.median(self.latencies)
        self.latencies.clear()
        if self.best_latency is None or median < self.best_latency:
            self.best_latency = median
        if median > LATENCY_TOLERANCE * self.best_latency:
            self.window = max(1.0, self.window * LATENCY_CUT)
            self.least_seen = min(self.least_seen, int(self.window))
        else:
            self.window = min(float(self.most), self.window + 1)

    @property
    def current(self) -> int:
        """The writes allowed in flight at once right now (read without the lock)."""
        return int(self.window)

    # -- what is shown --

    def state(self) -> ThrottleState:
        with self._cond:
            now = self.clock()
            return ThrottleState(
                window=int(self.window),
                least_window=self.least_seen,
                most_window=self.most,
                write_rate=self.paces["write"].rate,
                read_rate=self.paces["read"].rate,
                refusals=self.refusals,
                paused=self.paused,
                pause_left=max(0.0, self.paused_until - now),
            )
