"""The apply engine: check, then carry out actions as their dependencies allow, each write
journalled.

It re-reads every object the actions rely on and judges each (:mod:`.verdict`): already
done, to do, or stale (stop before the first write). Then it writes (:mod:`.writes`) in
parallel, the contract's kind order first: an action starts once each of its
``depends_on`` is confirmed by a read, not when a whole wave of earlier kinds is. Batched
re-reads confirm many writes at once while other writes go on; each also re-reads the
objects of the dependents it releases, so they are judged on the world as it now is.
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from threading import Lock
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pinmigrate import redact
from pinmigrate.actions import KIND_ORDER, Action, DisableFlow, EnableFlow, ReconnectAccount
from pinmigrate.apply.reconnects import (
    AskPerson,
    PersonReconnect,
    ReconnectWait,
    by_person,
    not_seen_error,
    renewal_note,
    request_for,
)
from pinmigrate.apply.results import (
    OK_STATUSES,
    ActionResult,
    ApplyReport,
    Progress,
    RunCheck,
    Side,
    Status,
    describe,
)
from pinmigrate.apply.runs import RunWatch, Watched
from pinmigrate.apply.targets import Specs, matched_pairs, sandbox_problem, target_problem
from pinmigrate.apply.verdict import Verdict, assess, goal_problem, run_problem
from pinmigrate.apply.world import (
    LiveWorld,
    Reader,
    SettlePolicy,
    Wants,
    World,
    settle,
    target_card,
    wants_of,
)
from pinmigrate.apply.writes import Writes, ref_of
from pinmigrate.errors import (
    NotSentError,
    OutcomeUnknown,
    PinmigrateError,
    PlanFileError,
    StalePlanError,
    name_all,
)
from pinmigrate.http import HttpClient
from pinmigrate.inventory import Card
from pinmigrate.moments import iso_z
from pinmigrate.throttle import Throttle

if TYPE_CHECKING:
    from pinmigrate.adobe import AdobeClient
    from pinmigrate.journal import Journal
    from pinmigrate.logins import Login
    from pinmigrate.plan import Plan
    from pinmigrate.settings import Settings

log = logging.getLogger("pinmigrate.apply")

#: After a login that took longer than this (a person in a browser), objects are re-read.
RECHECK_AFTER = 30.0


class LoginSource(Protocol):
    """Makes the Pinterest grants the api reconnect path writes into Adobe accounts
    (:class:`pinmigrate.oauth.resolvers.AdobeGrants`): a fresh one for each account, from a
    person's sign-in, never pinmigrate's own login and never stored."""

    @property
    def can_ask(self) -> bool:
        """True when a person can sign in; without one no grant can be made."""
        ...

    def cannot_ask(self, accounts: Sequence[str]) -> PinmigrateError:
        """The error (exit 4) that names ``accounts`` when nobody can sign in for them."""
        ...

    def grant_for(
        self, account: str, advertiser_ids: Iterable[str], *, sign_in_as: str | None = None
    ) -> Login:
        """A verified grant for Adobe ``account`` alone, reaching every advertiser id."""
        ...


@dataclass(frozen=True)
class Guard:
    """What an apply holds every target to (:mod:`.targets`): the configured sandboxes, and
    the plan's pairs made by ``--match`` (whose flows may be named differently)."""

    sandboxes: tuple[str, ...]
    matched: frozenset[tuple[str, str]] = frozenset()


@dataclass
class _Written:
    """A write that Adobe accepted, awaiting its confirming re-read."""

    action: Action
    result: ActionResult


#: A confirming read starts before the writers run out of work once what they still have
#: would take this many times the last read's duration (:meth:`Executor._should_read`).
READ_AHEAD = 1.25


@dataclass
class _Reading:
    """A confirming read under way: the writes it confirms, the dependents it re-reads."""

    written: list[_Written]
    covered: list[str]
    wants: dict[str, Wants]


class _Flow:
    """One batch of actions carried out by dependency (:meth:`Executor._run_flow`). The
    writers share the heap of ready actions (under ``lock``) and post each outcome to
    ``events``; everything else is kept by the engine's own thread."""

    def __init__(self, actions: Sequence[Action], concurrency: int) -> None:
        rank = {kind: i for i, kind in enumerate(KIND_ORDER)}
        self.batch = {a.id: a for a in actions}
        #: The contract's kind order, then plan order: what the writers take first.
        self.priority = {a.id: (rank.get(a.kind, len(rank)), i) for i, a in enumerate(actions)}
        self.lock = Lock()
        self.heap: list[tuple[int, int, str]] = []
        self.events: queue.SimpleQueue[tuple[str, Any, Any]] = queue.SimpleQueue()
        #: Handed to the writers and not yet returned (queued or under way).
        self.out: set[str] = set()
        #: Action id -> its dependencies here not yet settled (a done write: not confirmed).
        self.waiting: dict[str, set[str]] = {}
        self.dependents: defaultdict[str, list[str]] = defaultdict(list)
        self.unconfirmed: list[_Written] = []
        #: How many of ``unconfirmed`` have dependents waiting for their confirmation.
        self.holding = 0
        #: Dependents free to run once a read has covered their objects.
        self.unread: list[str] = []
        self.reading: _Reading | None = None
        #: The objects written to while the read is under way (not taken from the read).
        self.touched: set[str] | None = None
        #: When the last writes returned (noted by the writers), for their pace.
        self.finished: deque[float] = deque(maxlen=max(16, 4 * concurrency))

    def after(self, ident: str, results: Mapping[str, ActionResult]) -> list[str]:
        """``ident`` is settled: the dependents that now wait for nothing more here."""
        freed = []
        for dependent in self.dependents.pop(ident, ()):
            waiting = self.waiting[dependent]
            waiting.discard(ident)
            if not waiting and results[dependent].status == "pending":
                freed.append(dependent)
        return freed

    def rate(self) -> float | None:
        """Writes returned per second, lately; None until enough have."""
        seen = len(self.finished)
        if seen < (self.finished.maxlen or 0) // 2:
            return None
        span = self.finished[-1] - self.finished[0]
        return (seen - 1) / span if span > 0 else None


def _without(world: World, objects: set[str]) -> World:
    """``world`` without ``objects`` (flows or accounts, by id)."""
    if not objects:
        return world
    return World(
        {i: v for i, v in world.flows.items() if i not in objects},
        {i: a for i, a in world.accounts.items() if i not in objects},
        {i: s for i, s in world.account_specs.items() if i not in objects},
    )


class Executor:
    """Carries out actions; see the module docstring. One instance per run."""

    def __init__(
        self,
        *,
        adobe: AdobeClient,
        settings: Settings,
        journal: Journal,
        concurrency: int,
        max_concurrency: int | None = None,
        logins: LoginSource | None = None,
        progress: Progress | None = None,
        now: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
        stale_policy: Literal["abort", "skip"] = "abort",
        cards: Mapping[str, Card] | None = None,
        reconnect_timeout: float = 0.0,
        ask_person: AskPerson | None = None,
        note: Callable[[str], None] | None = None,
        settle_policy: SettlePolicy | None = None,
        guard: Guard | None = None,
        wait_runs: bool = False,
        run_timeout: float = 900.0,
    ) -> None:
        self.adobe = adobe
        self.settings = settings
        self.journal = journal
        self.concurrency = max(1, concurrency)
        #: Writes in flight at once start at ``concurrency`` and adapt, up to this.
        self.most_concurrency = max(
            self.concurrency,
            settings.migration.most_concurrency if max_concurrency is None else max_concurrency,
        )
        self.throttle = Throttle(self.concurrency, self.most_concurrency)
        #: True once the throttle admitted the run's requests (an HTTP client, not a stand-in).
        self.paced = False
        self.logins = logins
        self.progress = progress
        self.now = now or (lambda: datetime.now(UTC))
        #: Set when the run is being stopped (Ctrl-C): waits end, nothing is sent again.
        self.stopping = threading.Event()
        self.sleep = sleep or self._pause
        self.clock = clock or time.monotonic
        self.stale_policy = stale_policy
        self.cards = dict(cards or {})
        self.reconnect_timeout = max(0.0, reconnect_timeout)
        self.ask_person = ask_person
        self.note = note
        #: What the person was asked to reconnect (for the report's JSON).
        self.asked: list[PersonReconnect] = []
        self.by_id: dict[str, Action] = {}
        #: The enable_flow actions by the new flow they switch on.
        self.enables: dict[str, EnableFlow] = {}
        self.margin = timedelta(days=settings.migration.reconnect_margin_days)
        self.reader = Reader(adobe, settings, workers=self.concurrency)
        #: How long a read waits for flow writes Adobe is still applying (lastOperation).
        self.settle_policy = settle_policy or SettlePolicy()
        #: What apply checks every target against before the first write (None: rollback,
        #: whose targets come from this state dir's own journal).
        self.guard = guard
        #: Every legacy flow is switched off only after its twin's first run succeeded (a plan
        #: made with --wait-runs asks for it per disable_flow, whatever this says).
        self.wait_runs = wait_runs
        self.run_timeout = run_timeout
        #: The first runs seen ended (or given up on), by new flow id, in the order checked.
        self.run_checks: dict[str, RunCheck] = {}
        #: When this run began: the runs of flows it enabled are those after it.
        self.began = self.now()
        self.live = LiveWorld()
        #: How long the last batched read took (the staleness check's, then each confirming
        #: read's): how early a confirming read starts while writes go on.
        self._read_seconds = 0.0
        self.writes = Writes(adobe, journal, self.live, self._fresh, self.stopping.is_set)

    def side_of(self, action: Action) -> Side:
        """The account, or the card of the flow the action changes (rollback's own cards)."""
        if isinstance(action, ReconnectAccount):
            return "account"
        return self.cards.get(action.id) or target_card(action)

    def _pause(self, seconds: float) -> None:
        """Sleep, unless the run is being stopped: a write thread waiting for Adobe (settle)
        must not outlive Ctrl-C by a minute, nor send anything after it."""
        if self.stopping.wait(seconds):
            raise OutcomeUnknown("stopped while waiting for Adobe", service="adobe")

    # -- the whole run --

    def run(
        self,
        actions: Sequence[Action],
        *,
        fingerprint: str | None = None,
        start_extra: Mapping[str, Any] | None = None,
        journal_start: bool = True,
    ) -> list[ActionResult]:
        """Check, then carry out ``actions``; every action ends with a status. With
        ``journal_start`` False the actions join a run whose run_start is already written."""
        results = {
            a.id: ActionResult(
                a.id, a.kind, a.sandbox, a.target_id, a.target_name, side=self.side_of(a)
            )
            for a in actions
        }
        if not actions:
            return []
        self.by_id = {a.id: a for a in actions}
        self.enables = {a.target_id: a for a in actions if isinstance(a, EnableFlow)}
        if self.guard is not None:
            # Before anything is read: a sandbox outside the configuration is not even read.
            problem = sandbox_problem(actions, self.guard.sandboxes)
            if problem:
                raise PlanFileError(problem)
        verdicts = self._check(actions)
        todo = [a for a in actions if verdicts[a.id].outcome == "todo"]
        reconnects = [a for a in todo if isinstance(a, ReconnectAccount)]
        # A person reconnects these in Adobe; the experimental API path writes the others.
        person = [a for a in reconnects if by_person(a, self.settings)]
        by_api = [a for a in reconnects if a not in person]
        if by_api and self.note is not None:
            from pinmigrate.planner import API_RECONNECT_WARNING

            self.note(f"Warning: {API_RECONNECT_WARNING}.")
        started = self.clock()
        logins = resolve_logins(by_api, self.logins)
        if self.clock() - started > RECHECK_AFTER:
            # A person took a while in the browser: the world may have moved meanwhile.
            verdicts = self._check(actions)
            person = [a for a in person if verdicts[a.id].outcome == "todo"]
        for ident, verdict in verdicts.items():
            if verdict.outcome == "stale":
                results[ident].status = "skipped"
                results[ident].error = verdict.reason

        if journal_start:
            self.journal.run_start(
                fingerprint=fingerprint, action_ids=[a.id for a in actions], **(start_extra or {})
            )
        for action in actions:
            if verdicts[action.id].outcome == "already_done":
                results[action.id].status = "already_done"
        held = held_by(actions, {a.id for a in person})
        http = getattr(self.adobe, "http", None)
        if not isinstance(http, HttpClient):
            http = None  # a stand-in client of a test
        if http is not None:
            # Every request of the run is admitted by the throttle from here on.
            http.throttle = self.throttle
            self.paced = True
            if http.sleep is not time.sleep:
                # The HTTP layer's waits are a test's own: so are the throttle's.
                self.throttle.sleep = http.sleep
            watch = getattr(self.progress, "watch_pacing", None)
            if watch is not None:
                watch(self.throttle.state)
        if self.progress:
            self.progress.start(len(actions))
            # Held actions already settled are never carried out: count them now.
            for action in actions:
                if action.id in held and results[action.id].status != "pending":
                    self._report(results[action.id])
        try:
            wait = self._ask(person)
            # A thread for each write the throttle's window may grow to (it holds the rest).
            width = self.most_concurrency if self.paced else self.concurrency
            with ThreadPoolExecutor(max_workers=width, thread_name_prefix="write") as pool:
                # The staleness check just read everything: the first writes need no re-read.
                free = [a for a in actions if a.id not in held]
                # While a person reconnects accounts, no wait for first runs may hold up the
                # re-reads that notice it: switch-offs that wait for runs go last.
                # Only those still to do: one already settled is counted with the others.
                last = frozenset(
                    a.id
                    for a in free
                    if wait is not None
                    and self.waits_for_run(a)
                    and results[a.id].status == "pending"
                )
                free = [a for a in free if a.id not in last]
                fresh = self._run_waves(pool, free, results, logins, fresh=True)
                if wait is not None:
                    self._await_person(pool, wait, actions, held, results, logins, fresh, last)
        except Exception as exc:
            # A bug of ours must still end in a report and a run_end: the journal holds the
            # truth about any write that was under way.
            log.debug("the run stopped on an unexpected error", exc_info=True)
            for result in results.values():
                if result.status == "pending":
                    result.status = "failed"
                    result.error = (
                        f"the run stopped on an unexpected error ({describe(exc)}); "
                        "run apply again to check this action"
                    )
                    self._report(result)
        finally:
            if self.progress:
                self.progress.finish()
            if http is not None and http.throttle is self.throttle:
                http.throttle = None
        return [results[a.id] for a in actions]

    def _run_waves(
        self,
        pool: ThreadPoolExecutor,
        actions: Sequence[Action],
        results: dict[str, ActionResult],
        logins: Mapping[str, Login],
        *,
        fresh: bool,
    ) -> bool:
        """Run ``actions`` as their dependencies allow (:meth:`_run_flow`); switch-offs that
        wait for their twins' first runs go last, once those runs were seen. True when the
        world as last read is still fresh."""
        gated = {a.id for a in actions if self.waits_for_run(a)}
        if not gated:
            return self._run_flow(pool, actions, results, logins, fresh)
        self._run_flow(pool, [a for a in actions if a.id not in gated], results, logins, fresh)
        last = [a for a in actions if a.id in gated]
        self._hold_for_runs(last, results)
        # No read of the flows before covered these switch-offs, and time passed: read again.
        return self._run_flow(pool, last, results, logins, False)

    # -- verified cutover: a legacy flow goes off only after its twin's first run --

    def waits_for_run(self, action: Action) -> bool:
        """Is ``action`` a legacy flow's switch-off that waits for its twin's first run?"""
        return (
            isinstance(action, DisableFlow)
            and action.precondition.twin_flow_id is not None
            and (self.wait_runs or action.details.waits_for_run)
        )

    def _hold_for_runs(self, wave: Sequence[Action], results: dict[str, ActionResult]) -> bool:
        """Before switch-offs that wait for runs go out: wait for the first run of each one's
        twin; a disable whose twin's run did not succeed ends skipped (the legacy flow stays
        on, untouched). True when it waited (the world as last read is no longer fresh)."""
        gated = [
            a
            for a in wave
            if isinstance(a, DisableFlow)
            and self.waits_for_run(a)
            and results[a.id].status == "pending"
            and failed_dependency(a, results, self.by_id) is None
        ]
        if not gated:
            return False
        twins = {a.precondition.twin_flow_id: a for a in gated if a.precondition.twin_flow_id}
        waited = self.verify_runs(
            [
                self.twin_watch(twin, action.sandbox, results, action.target_name)
                for twin, action in twins.items()
            ]
        )
        for action in gated:
            twin = action.precondition.twin_flow_id or ""
            check = self.run_checks[twin]
            problem = run_problem(check)
            if problem is not None:
                result = results[action.id]
                result.status = "skipped"
                result.error = redact.redact(f"not attempted: {problem}")
                check.kept_on.append(action.target_id)
                # Reported when its batch starts, like every action that ends before it.
        return waited

    def verify_runs(self, flows: Sequence[Watched]) -> bool:
        """Wait until the first run of each of ``flows`` not yet checked ended, or the run
        timeout passed; the checks land in ``run_checks``. True when anything was read."""
        todo = [f for f in flows if f.flow_id not in self.run_checks]
        if not todo:
            return False
        watch = RunWatch(
            self.adobe, todo, timeout=self.run_timeout, clock=self.clock, workers=self.concurrency
        )
        watch.wait(self.sleep, status=self._status, seen=self._seen_runs)
        return True

    def _seen_runs(self, checks: Sequence[RunCheck]) -> None:
        for check in checks:
            self.run_checks[check.flow_id] = check
            self.journal.record(
                "first_run",
                sandbox=check.sandbox,
                target_id=check.flow_id,
                status=check.status,
                run=check.run_id,
                detail=check.detail or None,
            )

    def twin_watch(
        self, twin: str, sandbox: str, results: Mapping[str, ActionResult], name: str = ""
    ) -> Watched:
        """What to watch of new flow ``twin``: the runs after this run began when this run
        enabled it; else (on before, or enabled by an earlier run) its latest run, whatever
        its age: waiting for a run after now could take as long as the flow's schedule. A
        latest run that failed before this apply is waited past, until the run timeout."""
        enable = self.enables.get(twin)
        enabled_now = enable is not None and results[enable.id].status == "done"
        seen = self.live.seen_flow(twin)
        if enable is not None and enable.target_name:
            name = enable.target_name
        elif seen is not None and seen.flow.name:
            name = seen.flow.name
        if enabled_now:
            return Watched(twin, sandbox, name, self.began)
        last_run = seen.raw.get("lastRunDetails") if seen is not None else None
        # A failed run from before this apply may be what the operator has fixed since.
        return Watched(
            twin,
            sandbox,
            name,
            None,
            retry_before=self.began,
            last_run=last_run if isinstance(last_run, dict) else None,
        )

    # -- reconnects a person does in Adobe --

    def _ask(self, person: Sequence[ReconnectAccount]) -> ReconnectWait | None:
        """Tell the person which accounts to reconnect; the wait's clock starts now."""
        if not person:
            return None
        requests = [request_for(a, self.settings) for a in person]
        for request in requests:
            self.journal.record("waiting", **ref_of(request.action).fields(), page=request.page)
        if self.ask_person is not None:
            self.ask_person(requests)
        world = self.live.snapshot()
        self.asked = requests
        return ReconnectWait(
            self.reader,  # its card lookups are already made
            person,
            {a.target_id: world.accounts[a.target_id] for a in person},
            timeout=self.reconnect_timeout,
            clock=self.clock,
            now=self.now,
            margin=self.margin,
        )

    def _await_person(
        self,
        pool: ThreadPoolExecutor,
        wait: ReconnectWait,
        actions: Sequence[Action],
        held: Mapping[str, frozenset[str]],
        results: dict[str, ActionResult],
        logins: Mapping[str, Login],
        fresh: bool,
        last: frozenset[str] = frozenset(),
    ) -> None:
        """Re-read the waiting accounts until each is renewed or time is up; run each one's
        dependent actions as soon as it is renewed, without waiting for the others. The
        switch-offs that wait for first runs (held ones, and ``last``) run at the end."""
        waiting = {a.id: a for a in wait.pending.values()}
        renewed: set[str] = set()
        while wait.pending:
            try:
                seen = wait.poll()
            except Exception as exc:  # the wait goes on; the deadline still holds
                log.debug("re-reading the waiting accounts failed", exc_info=True)
                wait.last_problem = describe(exc)
                seen = []
            now = self.now()
            for action, account in seen:
                self.live.merge(World(accounts={account.id: account}))
                result = results[action.id]
                result.note = renewal_note(account, now, self.margin)
                self.journal.observed(
                    ref_of(action),
                    {
                        "etag": account.etag,
                        "expiresAt": iso_z(account.expires_at),
                        "rule": account.expiry_rule,
                    },
                )
                self._end(result, "done")
                renewed.add(action.id)
            released = [
                a
                for a in actions
                if a.id in held
                and a.id not in waiting
                and results[a.id].status == "pending"
                and held[a.id] <= renewed
                # Switch-offs that wait for first runs go last, once the wait for the person
                # ends, so the accounts are re-read meanwhile (the runs go on in Adobe).
                and not self.waits_for_run(a)
            ]
            if released:
                self._run_waves(pool, released, results, logins, fresh=False)
            if not wait.pending or wait.left() <= 0:
                break
            self._wait_a_little(wait)
        for gone in wait.gone:
            self._end(
                results[gone.id],
                "failed",
                f"account {_account_label(gone)} no longer exists; make a new plan",
            )
            self.journal.error(ref_of(gone), results[gone.id].error or "")
        for ident, unseen_action in wait.pending.items():
            result = results[ident]
            # A reconnect apply could not check (every late re-read failed) is not known to
            # wait for a person: exit 1, not 4.
            if wait.last_problem is None:
                result.waits_for = _account_label(unseen_action)
            error = not_seen_error(unseen_action, wait.timeout, wait.last_problem)
            self._end(result, "failed", error)
            self.journal.error(ref_of(unseen_action), result.error or "")
        rest = [
            a
            for a in actions
            if (a.id in held or a.id in last) and results[a.id].status == "pending"
        ]
        # ``fresh`` was about other actions' objects, read before the wait: read again.
        self._run_waves(pool, rest, results, logins, fresh=False)

    def _wait_a_little(self, wait: ReconnectWait) -> None:
        """Sleep until the next re-read, keeping the live line's countdown current."""
        delay = wait.next_delay()
        until = self.clock() + delay
        while True:
            left = wait.left()
            count = len(wait.pending)
            self._status(
                f"waiting for {count} account{'s' if count != 1 else ''} to be reconnected "
                f"in Adobe ({int(left) // 60}:{int(left) % 60:02d} left)"
            )
            step = min(1.0, until - self.clock())
            if step <= 0:
                return
            self.sleep(step)

    def _status(self, text: str) -> None:
        status = getattr(self.progress, "status", None)
        if status is not None:
            status(text)

    def _check(self, actions: Sequence[Action]) -> dict[str, Verdict]:
        """Re-read every object and judge each action; stale stops here under "abort"."""
        wants = wants_of(actions, self.cards)
        # Shown until the writes start (the display's start ends it), or the error.
        self._status(f"checking {len(actions)} actions: reading {_objects(wants)}")
        began = time.monotonic()
        world = self._read(wants)
        self._read_seconds = time.monotonic() - began
        if self.guard is not None:
            specs = {
                sb: Specs(self.reader.spec_id(sb, "legacy"), self.reader.spec_id(sb, "new"))
                for sb in sorted({a.sandbox for a in actions})
            }
            connections: dict[str, set[str]] = defaultdict(set)
            for view in world.flows.values():
                if view.flow.target_connection_id:
                    connections[view.flow.sandbox].add(view.flow.target_connection_id)
            targets = self.reader.target_connections(connections)
            problem = target_problem(actions, world, specs, targets, self.guard.matched)
            if problem:
                raise PlanFileError(problem)
        self.live.replace(world)
        now = self.now()
        verdicts = {a.id: assess(a, world, now=now, margin=self.margin) for a in actions}
        stale = [v for a in actions if (v := verdicts[a.id]).outcome == "stale"]
        if stale and self.stale_policy == "abort":
            changes = list(dict.fromkeys(v.reason for v in stale))
            raise StalePlanError(
                f"the plan is stale, nothing was changed: {name_all(changes, 'change', sep='; ')}; "
                "make a new plan (`pinmigrate plan --out FILE`) and review it",
                changes=changes,
            )
        return verdicts

    # -- the writes, as their dependencies allow --

    def _run_flow(
        self,
        pool: ThreadPoolExecutor,
        actions: Sequence[Action],
        results: dict[str, ActionResult],
        logins: Mapping[str, Login],
        fresh: bool,
    ) -> bool:
        """Carry out ``actions`` by dependency, not in global waves: an action starts once
        every dependency it has here is confirmed by a read (or was settled before), so an
        enable of a flow with no audiences to add goes out while the audiences are written.

        The writers take the ready actions best first (the contract's kind order, then plan
        order). Writes are confirmed in batches by one read, which also re-reads the objects
        of the dependents it releases (judged again right before they are handed out); it
        runs while the writers go on, started when what they still have to do would take
        about as long as the read (:meth:`_should_read`), else when they run out of work.
        ``fresh``: the world as last read covers the actions free from the start. True when
        the last read worked."""
        flow = _Flow(actions, self.most_concurrency if self.paced else self.concurrency)
        first: list[Action] = []
        for action in actions:
            result = results[action.id]
            if result.status != "pending":
                self._report(result)  # settled before (already done, a skip that waited)
                continue
            # Transitively: a dependency settled before (an enable already done) does not
            # free its dependent while one of its own dependencies here is still to run.
            waiting = {
                d
                for d in _all_deps(action, self.by_id)
                if d in flow.batch and d != action.id and results[d].status == "pending"
            }
            flow.waiting[action.id] = waiting
            for dep in waiting:
                flow.dependents[dep].append(action.id)
            if not waiting:
                first.append(action)
        first = self._release(flow, [a.id for a in first], results, read=True)
        if first and not fresh:
            try:
                wants = wants_of(first, self.cards)
                self._status(f"re-reading {_objects(wants)} before the next writes")
                self.live.merge(self._read(wants), asked=wants)
                fresh = True
            except Exception as exc:  # an unexpected one too: the run must still end
                log.debug("re-reading before the writes failed", exc_info=True)
                self._not_read(flow, first, results, describe(exc))
                first = []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="confirm") as reader:
            try:
                self._hand_out(pool, flow, first, results, logins)
                while True:
                    if self._should_read(flow):
                        self._start_read(reader, flow, results)
                    if not flow.out and flow.reading is None:
                        break
                    event, subject, detail = flow.events.get()
                    if event == "write":
                        self._written(flow, subject, detail, results)
                    else:
                        fresh = self._confirmed(pool, flow, subject, detail, results, logins)
            except BaseException:
                # Ctrl-C: writes not yet sent must not go out after the person said stop, and
                # those under way send nothing more (no resend, no wait for Adobe).
                self.stopping.set()
                self.throttle.stop()
                with flow.lock:
                    flow.heap.clear()
                raise
        for ident, waiting in flow.waiting.items():
            if waiting and results[ident].status == "pending":
                # Only a hand-made set of actions that wait for each other gets here.
                result = results[ident]
                blocker = failed_dependency(flow.batch[ident], results, self.by_id)
                self._end(
                    result, "skipped", blocker or "not attempted: its dependencies did not run"
                )
        return fresh

    def _hand_out(
        self,
        pool: ThreadPoolExecutor,
        flow: _Flow,
        actions: Sequence[Action],
        results: dict[str, ActionResult],
        logins: Mapping[str, Login],
    ) -> None:
        """Judge ``actions`` again on the world as last read, then hand the writers those
        still to do; what ended here releases (or skips) its dependents."""
        if not actions:
            return
        kept = self._recheck(actions, results)
        if len(kept) < len(actions):
            chosen = {a.id for a in kept}
            for action in actions:
                if action.id not in chosen:
                    self._release(flow, flow.after(action.id, results), results, read=False)
        for action in kept:
            with flow.lock:
                heapq.heappush(flow.heap, (*flow.priority[action.id], action.id))
            flow.out.add(action.id)
            if flow.touched is not None:
                flow.touched.add(action.target_id)
            pool.submit(self._write_next, flow, logins)

    def _write_next(self, flow: _Flow, logins: Mapping[str, Login]) -> None:
        """A writer: the best ready action, written; the outcome goes to the engine's thread."""
        with flow.lock:
            if not flow.heap:
                return  # the run is being stopped: the queue was emptied
            action = flow.batch[heapq.heappop(flow.heap)[2]]
        # Whatever happens, the engine's thread hears of it: it waits for every write.
        outcome: tuple[Status, str] | Exception = OutcomeUnknown(
            "the write stopped unexpectedly", service="adobe"
        )
        try:
            outcome = self.writes.execute(action, logins.get(action.id))
        except Exception as exc:  # noqa: BLE001 - judged in the engine's thread
            outcome = exc
        finally:
            # Noted here, not when the engine's thread gets to it: that may come in bursts.
            flow.finished.append(time.monotonic())
            flow.events.put(("write", action, outcome))

    def _written(
        self,
        flow: _Flow,
        action: Action,
        outcome: tuple[Status, str] | Exception,
        results: dict[str, ActionResult],
    ) -> None:
        """A write returned: its status, counted now, and what it means for its dependents."""
        flow.out.discard(action.id)
        result = results[action.id]
        if isinstance(outcome, Exception):
            # One action's surprise must not stop the others.
            log.debug("action %s raised", action.id, exc_info=outcome)
            result.status = "failed"
            result.error = describe(outcome)
            if not isinstance(outcome, OutcomeUnknown | NotSentError):
                # An unknown outcome keeps its attempt open: maybe done, for rollback. One
                # never sent was closed by the write itself.
                self.journal.error(ref_of(action), result.error)
        else:
            result.status, result.note = outcome
        # Counted now, as the write returns: 2,000 writes move the display as they go, not
        # all at once after the confirming read. A done write is final only after that read;
        # a write it fails is revised.
        self._report(result)
        if result.status == "done":
            flow.unconfirmed.append(_Written(action, result))
            if flow.dependents.get(action.id):
                flow.holding += 1
        else:
            self._release(flow, flow.after(action.id, results), results, read=False)

    def _release(
        self, flow: _Flow, idents: Iterable[str], results: dict[str, ActionResult], *, read: bool
    ) -> list[Action]:
        """Actions whose dependencies here are all settled: those with a dependency that did
        not succeed are skipped (and theirs after them); the others may run when ``read``
        (a read after their dependencies settled covered their objects), else they wait for
        the next read. Returns those that may run."""
        runnable: list[Action] = []
        todo = list(idents)
        while todo:
            ident = todo.pop(0)
            action = flow.batch[ident]
            blocker = failed_dependency(action, results, self.by_id)
            if blocker is not None:
                result = results[ident]
                result.status = "skipped"
                result.error = blocker
                result.waits_for = _waits_for(action, results, self.by_id)
                self._report(result)
                todo.extend(flow.after(ident, results))
            elif read:
                runnable.append(action)
            else:
                flow.unread.append(ident)
        return runnable

    def _not_read(
        self, flow: _Flow, actions: Sequence[Action], results: dict[str, ActionResult], why: str
    ) -> None:
        """Actions that could not be re-read before their writes are not attempted."""
        for action in actions:
            self._end(
                results[action.id],
                "failed",
                f"not attempted: re-reading it before writing failed: {why}; run apply again",
            )
            self._release(flow, flow.after(action.id, results), results, read=False)

    # -- the confirming reads --

    def _should_read(self, flow: _Flow) -> bool:
        """Start a confirming read now? Always when the writers have nothing left; before,
        only in a large batch, when the read releases at least as many writes as the writers
        still have, and those would take about as long as the read (as last measured)."""
        if flow.reading is not None or not (flow.unconfirmed or flow.unread):
            return False
        left = len(flow.out)
        if not left:
            return True
        # The writes in flight at once, as the throttle has them now.
        width = self.throttle.current if self.paced else self.concurrency
        if len(flow.heap) < 2 * width or flow.holding + len(flow.unread) < left:
            return False
        rate = flow.rate()
        return rate is not None and left <= rate * self._read_seconds * READ_AHEAD

    def _start_read(
        self, reader: ThreadPoolExecutor, flow: _Flow, results: Mapping[str, ActionResult]
    ) -> None:
        """One batched read, in its own thread: it confirms every write not yet confirmed
        and re-reads the objects of the dependents it will release."""
        written, flow.unconfirmed, flow.holding = flow.unconfirmed, [], 0
        confirming = {item.action.id for item in written}
        covered = dict.fromkeys(flow.unread)
        flow.unread = []
        for item in written:
            for ident in flow.dependents.get(item.action.id, ()):
                if results[ident].status == "pending" and flow.waiting[ident] <= confirming:
                    covered[ident] = None
        wants: dict[str, Wants] = defaultdict(Wants)
        for sandbox, want in wants_of([flow.batch[i] for i in covered], self.cards).items():
            wants[sandbox] = want
        for item in written:
            action = item.action
            if isinstance(action, ReconnectAccount):
                wants[action.sandbox].accounts.add(action.target_id)
            else:
                card = self.cards.get(action.id) or target_card(action)
                wants[action.sandbox].flows[action.target_id] = card
        sandboxes = ", ".join(sorted({item.action.sandbox for item in written}))
        what = f"confirming {len(written)} write{'s' if len(written) != 1 else ''} in {sandboxes}"
        self._status(what if written else f"re-reading {_objects(wants)} for the next writes")
        # What the writers change while the read is under way must not be overwritten by it.
        flow.touched = {flow.batch[i].target_id for i in flow.out}
        flow.reading = _Reading(written, list(covered), dict(wants))
        reader.submit(self._read_for, flow, dict(wants))

    def _read_for(self, flow: _Flow, wants: Mapping[str, Wants]) -> None:
        began = time.monotonic()
        world: World | Exception = PinmigrateError("the read stopped unexpectedly")
        try:
            world = self._read(wants)
        except Exception as exc:  # noqa: BLE001 - judged in the engine's thread
            world = exc
        finally:
            flow.events.put(("read", world, time.monotonic() - began))

    def _confirmed(
        self,
        pool: ThreadPoolExecutor,
        flow: _Flow,
        world: World | Exception,
        seconds: float,
        results: dict[str, ActionResult],
        logins: Mapping[str, Login],
    ) -> bool:
        """A confirming read ended: a write it does not show taken is failed (revised), then
        the dependents it covered are handed out. True when the read worked."""
        reading, flow.reading = flow.reading, None
        touched, flow.touched = flow.touched or set(), None
        assert reading is not None
        self._status("")
        if isinstance(world, Exception):
            log.debug("the confirming read failed", exc_info=world)
            why = describe(world)
            for item in reading.written:
                item.result.status = "failed"
                item.result.error = redact.redact(
                    f"Adobe accepted the change, but reading it back failed: {why}; "
                    "run apply again to check"
                )
                self.journal.error(ref_of(item.action), item.result.error)
                self._revise(item.result)
            lost = [i for item in reading.written for i in flow.after(item.action.id, results)]
            self._release(flow, lost, results, read=False)  # skipped: a dependency failed
            unread = [
                flow.batch[i]
                for i in reading.covered
                if results[i].status == "pending" and not flow.waiting[i]
            ]
            self._not_read(flow, unread, results, why)
            return False
        self._read_seconds = seconds
        self.live.merge(_without(world, touched), asked=reading.wants, keep=touched)
        now = self.now()
        freed: list[str] = []
        for item in reading.written:
            problem = goal_problem(item.action, world, now=now, margin=self.margin)
            if problem:
                item.result.status = "failed"
                item.result.error = problem
                self.journal.error(ref_of(item.action), problem)
                self._revise(item.result)
            freed += flow.after(item.action.id, results)
        ready = [
            i for i in reading.covered if results[i].status == "pending" and not flow.waiting[i]
        ]
        chosen = set(ready)
        self._release(flow, [i for i in freed if i not in chosen], results, read=False)
        runnable = self._release(flow, ready, results, read=True)
        self._hand_out(pool, flow, runnable, results, logins)
        return True

    def _recheck(
        self, runnable: Sequence[Action], results: Mapping[str, ActionResult]
    ) -> list[Action]:
        """Judge each action again on the world as last read, right before it is written.

        The staleness check ran once, before the first write; the operator may have acted
        since (switched a legacy flow off, say). What no longer holds is not attempted."""
        now = self.now()
        world = self.live.snapshot()
        keep: list[Action] = []
        for action in runnable:
            verdict = assess(action, world, now=now, margin=self.margin, during_run=True)
            result = results[action.id]
            if verdict.outcome == "todo":
                keep.append(action)
            elif verdict.outcome == "already_done":
                result.note = "already so when its turn came"
                self._end(result, "already_done")
            else:
                self._end(result, "skipped", f"not attempted: {verdict.reason}")
        return keep

    def _end(self, result: ActionResult, status: Status, error: str | None = None) -> None:
        result.status = status
        result.error = redact.redact(error) if error else None
        self._report(result)

    def _report(self, result: ActionResult) -> None:
        if self.progress:
            self.progress.advance(result)

    def _revise(self, result: ActionResult) -> None:
        """A write counted as it returned, which its confirming read failed."""
        revise = getattr(self.progress, "revise", None)
        if revise is not None:
            revise(result)

    def _aside(self, text: str) -> None:
        aside = getattr(self.progress, "aside", None)
        if aside is not None:
            aside(text)

    def _fresh(self, action: Action) -> Verdict:
        """Re-read one action's objects (after a 412, a lost answer or a refusal) and judge
        it again, by the rules of a run under way (as right before it is written)."""
        name = repr(action.target_name) if action.target_name else action.target_id
        self._aside(f"re-reading {action.kind} {action.sandbox} {name} to check it")
        world = self._read(wants_of([action], self.cards))
        self.live.merge(world)
        return assess(action, world, now=self.now(), margin=self.margin, during_run=True)

    def _read(self, wants: Mapping[str, Wants]) -> World:
        """One batched read; flows that Adobe is still writing are read again, after a
        growing wait, until their write ends or the settle policy's time is up."""
        return settle(
            self.reader,
            self.reader.read(wants),
            self.settle_policy,
            self.sleep,
            waiting=self._settling,
        )

    def _settling(self, busy: int, delay: float) -> None:
        self._aside(
            f"waiting for Adobe to finish {busy} flow write{'s' if busy != 1 else ''} still "
            f"in progress, looking again in {delay:.0f} s"
        )


def resolve_logins(
    reconnects: Sequence[ReconnectAccount], source: LoginSource | None
) -> dict[str, Login]:
    """A fresh grant for each api-path reconnect, before the first write (AuthError: exit 4).

    Each Adobe account gets a grant of its own: Adobe refreshes it, and a refresh rotates the
    token, so a grant shared by two accounts (or kept by pinmigrate) would cut off the other.
    """
    chosen: dict[str, Login] = {}
    if not reconnects:
        return chosen
    if source is None:
        raise PinmigrateError("internal: reconnects planned but no login source given")
    if not source.can_ask:
        raise source.cannot_ask([_account_label(a) for a in reconnects])
    handed: set[str] = set()
    for action in reconnects:
        details = action.details
        grant = source.grant_for(
            _account_label(action),
            details.advertiser_ids,
            # Whom the pre-flight saw reaching every ad account (a hint, not a rule).
            sign_in_as=None
            if details.preflight == "missing_access"
            else details.preflight_user or details.login,
        )
        tokens = {
            t.get_secret_value() for t in (grant.access_token, grant.refresh_token) if t is not None
        }
        redact.register(*tokens)
        if tokens & handed:
            raise PinmigrateError(
                f"internal: the Pinterest grant for {_account_label(action)} was already given "
                "to another account; nothing was written"
            )
        handed |= tokens
        chosen[action.id] = grant
    return chosen


def held_by(actions: Sequence[Action], waiting: set[str]) -> dict[str, frozenset[str]]:
    """The actions that wait for a person's reconnect, each with the reconnects it waits for
    (through ``depends_on``, transitively); a waiting reconnect waits for itself."""
    by_id = {a.id: a for a in actions}
    held = {a.id: frozenset({a.id, *_all_deps(a, by_id)} & waiting) for a in actions}
    return {ident: waits for ident, waits in held.items() if waits}


def _waits_for(
    action: Action, results: Mapping[str, ActionResult], by_id: Mapping[str, Action]
) -> str | None:
    """The accounts awaiting a person that keep ``action`` from running, if that is all."""
    deps = [results[d] for d in _all_deps(action, by_id) if d in results]
    failed = [d for d in deps if d.status not in OK_STATUSES]
    if not failed or not all(d.waits_for for d in failed):
        return None
    return ", ".join(dict.fromkeys(d.waits_for for d in failed if d.waits_for))


def _objects(wants: Mapping[str, Wants]) -> str:
    """``2000 flows and 3 accounts in prod, dev``: what a read is about, for the live line."""
    flows = sum(len(w.flows) for w in wants.values())
    accounts = sum(len(w.accounts) for w in wants.values())
    parts = [
        f"{n} {word}{'s' if n != 1 else ''}"
        for n, word in ((flows, "flow"), (accounts, "account"))
        if n
    ]
    where = ", ".join(sorted(sb for sb, w in wants.items() if len(w)))
    return f"{' and '.join(parts) or 'nothing'} in {where}"


def _account_label(action: ReconnectAccount) -> str:
    name = f"{action.target_name!r} " if action.target_name else ""
    return f"{name}({action.sandbox}, {action.target_id})"


def failed_dependency(
    action: Action,
    results: Mapping[str, ActionResult],
    by_id: Mapping[str, Action] | None = None,
) -> str | None:
    """Why ``action`` is not attempted: a dependency that did not succeed, directly or
    through one that did (an enable already done whose reconnect failed); else None."""
    for dep in _all_deps(action, by_id or {}):
        other = results.get(dep)
        if other is not None and other.waits_for and other.status not in OK_STATUSES:
            return (
                f"not attempted: it waits for account {other.waits_for} to be reconnected in Adobe"
            )
        if other is not None and other.status not in OK_STATUSES:
            why = f": {other.error}" if other.error and other.status == "failed" else ""
            return f"not attempted: it depends on {dep}, which {_past(other.status)}{why}"
    return None


def _all_deps(action: Action, by_id: Mapping[str, Action]) -> list[str]:
    """``action``'s dependencies, direct ones first, then theirs (transitively)."""
    seen: list[str] = []
    todo = list(action.depends_on)
    while todo:
        dep = todo.pop(0)
        if dep in seen or dep == action.id:
            continue
        seen.append(dep)
        other = by_id.get(dep)
        todo.extend(other.depends_on if other is not None else ())
    return seen


def _past(status: str) -> str:
    return {"failed": "failed", "skipped": "was skipped", "pending": "did not run"}.get(
        status, status
    )


# --- the entry point -------------------------------------------------------------------------


def apply_plan(
    plan: Plan,
    *,
    adobe: AdobeClient,
    settings: Settings,
    logins: LoginSource | None,
    journal: Journal,
    concurrency: int,
    progress: Progress | None = None,
    wait_runs: bool = False,
    run_timeout: float = 900.0,
    now: Callable[[], datetime] | None = None,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] | None = None,
    start_extra: Mapping[str, Any] | None = None,
    reconnect_timeout: float = 0.0,
    ask_person: AskPerson | None = None,
    note: Callable[[str], None] | None = None,
    settle_policy: SettlePolicy | None = None,
) -> ApplyReport:
    """Carry out a plan: staleness check, logins, then the writes. Raises StalePlanError (exit 3)
    or AuthError (exit 4) before any write; otherwise returns the report, failures included.
    ``start_extra`` goes into the journal's run_start (e.g. the interrupted run it finishes)."""
    executor = Executor(
        adobe=adobe,
        settings=settings,
        journal=journal,
        concurrency=concurrency,
        logins=logins,
        progress=progress,
        now=now,
        sleep=sleep,
        clock=clock,
        reconnect_timeout=reconnect_timeout,
        ask_person=ask_person,
        note=note,
        settle_policy=settle_policy,
        guard=Guard(tuple(settings.adobe.sandboxes), matched_pairs(plan.pairs)),
        wait_runs=wait_runs,
        run_timeout=run_timeout,
    )
    retries_before = retries_of(adobe)
    results = executor.run(plan.actions, fingerprint=plan.fingerprint, start_extra=start_extra)
    report = ApplyReport(
        run_id=journal.run_id,
        results=results,
        blockers=list(plan.blockers),
        orphans=list(plan.orphans),
    )
    if wait_runs or any(executor.waits_for_run(a) for a in plan.actions):
        report.runs = first_runs(executor, plan.actions, results)
    by_id = {r.action_id: r for r in results}
    waiting = [a.to_json() for a in executor.asked if by_id[a.action.id].waits_for]
    if waiting:
        # For scripts: what a person still has to reconnect in Adobe, and where.
        report.extra["reconnects_waiting"] = waiting
    report.retries = retries_of(adobe) - retries_before
    # For scripts: how the writes were paced (the window at the end, its least, refusals).
    if executor.paced:
        report.pacing = executor.throttle.state().to_json()
    journal.run_end(report.summary())
    return report


def first_runs(
    executor: Executor, actions: Sequence[Action], results: Sequence[ActionResult]
) -> list[RunCheck]:
    """The first run of every new flow this apply enabled (or found on) and of every twin a
    switch-off waited for, in plan order; those no switch-off waited for are awaited now."""
    by_id = {r.action_id: r for r in results}
    enabled = [
        executor.twin_watch(a.target_id, a.sandbox, by_id)
        for a in actions
        if isinstance(a, EnableFlow) and by_id[a.id].status in OK_STATUSES
    ]
    try:
        executor.verify_runs(enabled)
    except Exception as exc:  # the report of what was done must not be lost
        log.debug("waiting for the first runs failed", exc_info=True)
        for watched in enabled:
            executor.run_checks.setdefault(
                watched.flow_id,
                RunCheck(
                    watched.flow_id, watched.sandbox, watched.name, "timeout", None, describe(exc)
                ),
            )
    order: list[str] = []
    for action in actions:
        if isinstance(action, EnableFlow):
            order.append(action.target_id)
        elif isinstance(action, DisableFlow) and action.precondition.twin_flow_id:
            order.append(action.precondition.twin_flow_id)
    return [executor.run_checks[f] for f in dict.fromkeys(order) if f in executor.run_checks]


def retries_of(adobe: Any) -> int:
    stats = getattr(getattr(adobe, "http", None), "stats", None)
    return int(getattr(stats, "retries", 0) or 0)
