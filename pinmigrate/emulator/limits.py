"""Rate limits per service: a token bucket each, answering 429 as the service would.

A :class:`RateLimit` says how fast one service (``faults.SERVICES``) serves; the
:class:`RateLimiter` holds one :class:`TokenBucket` per limited service and tells the server,
per request, whether it may pass and, if not, what ``Retry-After`` to send. Neither Adobe nor
Pinterest documents its limit's headers (api-notes.md §2, §4), so ``retry_after`` serves each
plausible reading: delay-seconds, an HTTP-date, or no header at all.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from email.utils import formatdate
from typing import Any

from pinmigrate.emulator.faults import SERVICES
from pinmigrate.emulator.model import JsonDict

RETRY_AFTER_FORMS = ("seconds", "date", "none")
SCOPES = ("all", "writes")
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
#: Float dust from adding many small refills must not turn a whole token into 0.999...
_EPSILON = 1e-9


@dataclass(frozen=True)
class RateLimit:
    """``per_second`` tokens a second, at most ``burst`` held (default: one second's worth)."""

    per_second: float
    burst: float = 0.0  # 0: max(1, per_second)
    retry_after: str = "seconds"
    scope: str = "all"

    def __post_init__(self) -> None:
        if not _positive(self.per_second):
            raise ValueError(f"the rate must be a positive number, not {self.per_second!r}")
        if self.burst == 0:
            object.__setattr__(self, "burst", max(1.0, float(self.per_second)))
        if not _positive(self.burst) or self.burst < 1:
            raise ValueError(f"burst must be a number of at least 1, not {self.burst!r}")
        object.__setattr__(self, "per_second", float(self.per_second))
        object.__setattr__(self, "burst", float(self.burst))
        if self.retry_after not in RETRY_AFTER_FORMS:
            raise ValueError(
                f"retry-after must be one of {', '.join(RETRY_AFTER_FORMS)}, "
                f"not {self.retry_after!r}"
            )
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {self.scope!r}")

    def as_json(self) -> JsonDict:
        return asdict(self)


def _positive(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def parse_rate_limit_spec(spec: str) -> tuple[str, RateLimit]:
    """``"flowservice=50/s:burst=10:retry-after=date:scope=writes"`` -> (service, RateLimit).

    ValueError names the part that is wrong.
    """
    service, sep, rest = spec.partition("=")
    service = service.strip().lower()
    if not sep or not service:
        raise ValueError(f"bad rate limit {spec!r}; use SERVICE=RATE/s, e.g. flowservice=50/s")
    _check_service(service)
    rate_text, *options = rest.split(":")
    number, per, unit = rate_text.strip().partition("/")
    if not per or unit.strip().lower() != "s":
        raise ValueError(f"bad rate {rate_text!r} in {spec!r}; write RATE/s, e.g. 50/s")
    settings: JsonDict = {"per_second": _number(number, "rate", spec)}
    for option in options:
        key, sep, value = option.partition("=")
        name = key.strip().lower().replace("-", "_")
        if not sep or name not in ("burst", "retry_after", "scope"):
            raise ValueError(
                f"bad option {option!r} in {spec!r}; use burst=N, "
                "retry-after=seconds|date|none or scope=all|writes"
            )
        if name in settings:
            raise ValueError(f"{key.strip()} is given twice in {spec!r}")
        value = value.strip()
        settings[name] = _number(value, "burst", spec) if name == "burst" else value.lower()
    try:
        return service, RateLimit(**settings)
    except ValueError as exc:
        raise ValueError(f"{exc} in {spec!r}") from None


def _number(text: str, what: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"bad {what} {text.strip()!r} in {spec!r}; give a number") from None
    if not _positive(value):
        raise ValueError(f"bad {what} {text.strip()!r} in {spec!r}; give a positive number")
    return value


def _check_service(service: str) -> None:
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; use {', '.join(SERVICES)}")


RateLimits = Mapping[str, RateLimit | Mapping[str, Any] | None]


def rate_limits_from(value: str | Iterable[str] | RateLimits | None) -> dict[str, RateLimit | None]:
    """SPEC strings (one or several) or ``{service: RateLimit | {...} | None}`` -> changes.

    ``None`` for a service removes its limit. ValueError says what is wrong.
    """
    if value is None:
        return {}
    if isinstance(value, str):
        value = [value]
    if isinstance(value, Mapping):
        return {str(service): _limit_of(str(service), raw) for service, raw in value.items()}
    changes: dict[str, RateLimit | None] = {}
    for spec in value:
        service, limit = parse_rate_limit_spec(spec)
        if service in changes:
            raise ValueError(f"{service} is limited twice ({spec!r})")
        changes[service] = limit
    return changes


def _limit_of(service: str, raw: object) -> RateLimit | None:
    _check_service(service)
    if raw is None or isinstance(raw, RateLimit):
        return raw
    if not isinstance(raw, Mapping):
        raise ValueError(f"the limit of {service} must be an object or null")
    known = {f.name for f in fields(RateLimit)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown rate limit settings {sorted(unknown)}; known: {sorted(known)}")
    if "per_second" not in raw:
        raise ValueError(f"the limit of {service} needs per_second")
    try:
        return RateLimit(**{k: v for k, v in raw.items() if v is not None})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{service}: {exc}") from None


class TokenBucket:
    """Refilled continuously at the limit's rate, capped at its burst; starts full.

    Each take reads the clock under the bucket's own lock, so concurrent takes see the
    tokens in clock order and never spend one twice.
    """

    def __init__(self, limit: RateLimit, clock: Callable[[], float]) -> None:
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = limit.burst
        self._stamp = clock()
        self.admitted = 0
        self.refused = 0

    def take(self) -> float:
        """0.0 when a token was taken; else the seconds until one will be there."""
        with self._lock:
            now = self._clock()
            elapsed = now - self._stamp
            if elapsed > 0:
                self._tokens = min(self.limit.burst, self._tokens + elapsed * self.limit.per_second)
                self._stamp = now
            if self._tokens >= 1 - _EPSILON:
                self._tokens = max(0.0, self._tokens - 1)
                self.admitted += 1
                return 0.0
            self.refused += 1
            return (1 - self._tokens) / self.limit.per_second

    def counters(self) -> JsonDict:
        with self._lock:
            return {
                "admitted": self.admitted,
                "refused": self.refused,
                "tokens": round(self._tokens, 6),
            }


@dataclass(frozen=True)
class Refusal:
    """A request the limiter turned away: how long until a token, and the header to send."""

    wait: float
    retry_after: str | None


class RateLimiter:
    """One token bucket per limited service; ``admit`` is all a request pays when unlimited."""

    def __init__(
        self,
        limits: Mapping[str, RateLimit] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        # Replaced whole, never changed in place: admit reads it without the lock.
        self._buckets: dict[str, TokenBucket] = {}
        if limits:
            self.update(limits)

    def limits(self) -> dict[str, RateLimit]:
        return {service: bucket.limit for service, bucket in self._buckets.items()}

    def update(self, changes: Mapping[str, RateLimit | None]) -> None:
        """Replace the limits of the services named (a fresh, full bucket); None removes one."""
        for service in changes:
            _check_service(service)
        with self._lock:
            buckets = dict(self._buckets)
            for service, limit in changes.items():
                if limit is None:
                    buckets.pop(service, None)
                else:
                    buckets[service] = TokenBucket(limit, self._clock)
            self._buckets = buckets

    def clear(self) -> None:
        with self._lock:
            self._buckets = {}

    def refill(self) -> None:
        """Every bucket full again and its counters at zero; the limits stay."""
        with self._lock:
            self._buckets = {s: TokenBucket(b.limit, self._clock) for s, b in self._buckets.items()}

    def admit(self, service: str, method: str) -> Refusal | None:
        """None when the request may pass (a token taken, or no limit applies to it)."""
        bucket = self._buckets.get(service)
        if bucket is None or (bucket.limit.scope == "writes" and method not in WRITE_METHODS):
            return None
        wait = bucket.take()
        if not wait:
            return None
        return Refusal(wait, self._retry_after(bucket.limit.retry_after, wait))

    def _retry_after(self, form: str, wait: float) -> str | None:
        if form == "none":
            return None
        if form == "date":
            # The first whole second at which a token is there (an HTTP-date has no fraction).
            return formatdate(math.ceil(self._wall() + wait - _EPSILON), usegmt=True)
        # delay-seconds is an integer (RFC 9110 §10.2.3): rounded up, never 0.
        return str(max(1, math.ceil(wait - _EPSILON)))

    def as_json(self) -> JsonDict:
        buckets = self._buckets
        return {
            "limits": {s: b.limit.as_json() for s, b in sorted(buckets.items())},
            "counters": {s: b.counters() for s, b in sorted(buckets.items())},
        }
