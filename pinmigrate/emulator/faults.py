"""Injected trouble and the request log: what the control API sets and counts across services.

:class:`Faults` says how often each service answers 429, 5xx or drops the connection, and how
slow it is; :class:`FaultInjector` draws the decision per request; :class:`RequestLog` counts
every API request (control calls excluded).
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from pinmigrate.emulator.model import JsonDict

SERVICES = ("ims", "flowservice", "pinterest")


@dataclass(frozen=True)
class Faults:
    """Injected trouble for the API endpoints (never for ``/_emulator/``)."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_429: float = 0.0
    rate_5xx: float = 0.0
    rate_drop: float = 0.0
    retry_after: str = "1"
    seed: int | None = None
    services: tuple[str, ...] = SERVICES

    def __post_init__(self) -> None:
        for name in ("latency_ms", "jitter_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        rates = (self.rate_429, self.rate_5xx, self.rate_drop)
        if any(r < 0 or r > 1 for r in rates) or sum(rates) > 1:
            raise ValueError("fault rates must be between 0 and 1 and add up to at most 1")
        unknown = set(self.services) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown fault services {sorted(unknown)}; use {', '.join(SERVICES)}")

    def as_json(self) -> JsonDict:
        data = asdict(self)
        data["services"] = list(self.services)
        return data


_SPEC_KEYS = {
    "429": "rate_429",
    "5xx": "rate_5xx",
    "503": "rate_5xx",
    "drop": "rate_drop",
    "latency": "latency_ms",
    "latency_ms": "latency_ms",
    "jitter": "jitter_ms",
    "jitter_ms": "jitter_ms",
    "seed": "seed",
    "retry_after": "retry_after",
    "retry-after": "retry_after",
}


def parse_fault_spec(spec: str) -> Faults:
    """``"429=0.2,5xx=0.1,drop=0.05,jitter=20,seed=1"`` -> Faults; ValueError says what is wrong."""
    values: JsonDict = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        key, sep, raw = part.partition("=")
        name = _SPEC_KEYS.get(key.strip().lower())
        if not sep or name is None:
            raise ValueError(
                f"bad fault {part!r}; use KEY=VALUE with KEY one of 429, 5xx, drop, latency, "
                "jitter, seed, retry_after"
            )
        values[name] = raw.strip()
    return faults_from_json(values)


def faults_from_json(data: Mapping[str, Any]) -> Faults:
    known = {f.name for f in fields(Faults)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown fault settings {sorted(unknown)}; known: {sorted(known)}")
    kwargs: JsonDict = {}
    try:
        for name, value in data.items():
            if value is None:
                continue
            if name == "seed":
                kwargs[name] = int(value)
            elif name == "retry_after":
                kwargs[name] = str(value)
            elif name == "services":
                items = value.split(",") if isinstance(value, str) else list(value)
                kwargs[name] = tuple(str(s).strip() for s in items if str(s).strip())
            else:
                kwargs[name] = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"bad value for fault setting {name!r}: {value!r}") from None
    return Faults(**kwargs)


@dataclass(frozen=True)
class FaultDecision:
    action: str | None  # None, "429", "5xx", "drop"
    delay: float


class FaultInjector:
    """Draws, per request and in arrival order, the latency and the fault to inject."""

    def __init__(self, faults: Faults | None = None) -> None:
        self._lock = threading.Lock()
        self.faults = faults or Faults()
        self._rng = random.Random(self.faults.seed)

    def configure(self, faults: Faults) -> None:
        with self._lock:
            self.faults = faults
            self._rng = random.Random(faults.seed)

    def decide(self, service: str) -> FaultDecision:
        with self._lock:
            f = self.faults
            delay = f.latency_ms / 1000
            if f.jitter_ms:
                delay += self._rng.uniform(0, f.jitter_ms) / 1000
            draw = self._rng.random()
            if service not in f.services:
                return FaultDecision(None, delay)
            action: str | None = None
            if draw < f.rate_drop:
                action = "drop"
            elif draw < f.rate_drop + f.rate_429:
                action = "429"
            elif draw < f.rate_drop + f.rate_429 + f.rate_5xx:
                action = "5xx"
            return FaultDecision(action, delay)


class RequestLog:
    """Counts every API request (control calls excluded) and keeps the latest entries."""

    def __init__(self, limit: int = 20_000, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._entries: deque[JsonDict] = deque(maxlen=limit)
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.total = 0
            self.writes = 0
            self.write_attempts = 0
            self.by_endpoint: dict[str, int] = {}
            self.by_status: dict[str, int] = {}
            self.faults: dict[str, int] = {}

    def record(
        self,
        *,
        method: str,
        endpoint: str,
        path: str,
        query: Mapping[str, list[str]],
        status: int | None,
        sandbox: str | None,
        service: str,
        fault: str | None = None,
    ) -> None:
        write = service == "flowservice" and method in ("POST", "PATCH", "PUT", "DELETE")
        with self._lock:
            self.total += 1
            self.by_endpoint[endpoint] = self.by_endpoint.get(endpoint, 0) + 1
            key = "dropped" if status is None else str(status)
            self.by_status[key] = self.by_status.get(key, 0) + 1
            if fault:
                self.faults[fault] = self.faults.get(fault, 0) + 1
            if write:
                self.write_attempts += 1
                if status is not None and 200 <= status < 300:
                    self.writes += 1
            self._entries.append(
                {
                    "method": method,
                    "path": path,
                    "endpoint": endpoint,
                    "query": {k: list(v) for k, v in query.items()},
                    "status": status,
                    "sandbox": sandbox,
                    "fault": fault,
                    "ts": round(self._clock(), 6),
                }
            )

    def summary(self) -> JsonDict:
        """``writes`` counts Flow Service writes answered 2xx; ``write_attempts`` counts all."""
        with self._lock:
            return {
                "total": self.total,
                "writes": self.writes,
                "write_attempts": self.write_attempts,
                "by_endpoint": dict(sorted(self.by_endpoint.items())),
                "by_status": dict(sorted(self.by_status.items())),
                "faults": dict(self.faults),
                "log": list(self._entries),
            }
