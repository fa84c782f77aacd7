"""First runs after enabling (``--wait-runs``): poll ``GET /runs`` until each ends.

:class:`RunWatch` reads the runs of a set of flows one round at a time; its ``wait`` is the
one loop of rounds, waiting between them through the caller's (interruptible) sleep and
telling the caller how far it got. :func:`wait_runs` is that wait for plain (id, sandbox,
name) triples.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pinmigrate import models, redact
from pinmigrate.apply.results import RunCheck, describe

if TYPE_CHECKING:
    from pinmigrate.adobe import AdobeClient

log = logging.getLogger("pinmigrate.apply")

_OLDEST = datetime.min.replace(tzinfo=UTC)

#: Seconds between two reads of the same flow's runs.
RUN_INTERVAL = 10.0


@dataclass(frozen=True)
class Watched:
    """A flow whose first run is awaited. ``since``: when it was enabled at the earliest;
    runs before it are old. None: the flow was on before this run, so its latest run is
    the one that tells (any age). ``retry_before``: a failed latest run that started before
    this moment is waited past (the operator may have fixed its cause since) until the
    timeout, when it stands. ``last_run``: the flow's ``lastRunDetails`` as last read
    (api-notes.md §3, the flow example), for a flow on before this run: it tells when
    ``GET /runs`` lists no run."""

    flow_id: str
    sandbox: str
    name: str
    since: datetime | None
    retry_before: datetime | None = None
    last_run: Mapping[str, Any] | None = None


class RunWatch:
    """The runs of ``flows`` read round by round until each ends or ``timeout`` passes.

    A run may not exist yet when a flow has just been enabled: Flow Service starts it later
    (api-notes.md §3 "Runs"), so "no run" is waited for like "processing"."""

    def __init__(
        self,
        adobe: AdobeClient,
        flows: Sequence[Watched],
        *,
        timeout: float,
        clock: Callable[[], float],
        workers: int = 8,
    ) -> None:
        self.adobe = adobe
        self.flows = list(flows)
        self.timeout = timeout
        self.clock = clock
        self.workers = max(1, workers)
        self.deadline = clock() + timeout
        self.pending = {f.flow_id: RunCheck(f.flow_id, f.sandbox, f.name, "waiting") for f in flows}
        self.done: dict[str, RunCheck] = {}
        self._since = {f.flow_id: f.since for f in flows}
        self._watched = {f.flow_id: f for f in flows}
        #: When the latest round of reads began (the next one starts an interval after it).
        self.polled_at = self.clock()

    def left(self) -> float:
        return self.deadline - self.clock()

    def poll(self) -> list[RunCheck]:
        """Read every pending flow's runs once; the checks that ended in this round."""
        self.polled_at = self.clock()
        if not self.pending:
            return []
        pool = ThreadPoolExecutor(
            max_workers=min(self.workers, len(self.pending)), thread_name_prefix="runs"
        )
        ended: list[RunCheck] = []
        try:
            futures = {
                flow_id: pool.submit(
                    _latest_run,
                    self.adobe,
                    check,
                    self._since[flow_id],
                    self._watched[flow_id].last_run,
                )
                for flow_id, check in self.pending.items()
            }
            for flow_id, future in futures.items():
                check, started = future.result()
                if check.status in FINAL and not self._earlier_failure(flow_id, check, started):
                    self.done[flow_id] = check
                    del self.pending[flow_id]
                    ended.append(check)
                else:
                    self.pending[flow_id] = check
        except BaseException:
            # Ctrl-C: the reads not yet sent are dropped, not waited for (2,000 flows).
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        return ended

    def _earlier_failure(self, flow_id: str, check: RunCheck, started: datetime | None) -> bool:
        """A failed run from before ``retry_before``: a newer one is waited for."""
        before = self._watched[flow_id].retry_before
        return (
            check.status == "failed"
            and before is not None
            and (started is None or started < before)
        )

    def expire(self) -> list[RunCheck]:
        """End every pending check as a timeout (after the last read, at the deadline); an
        earlier failed run no newer one replaced stands as the failure it was."""
        late = [
            _still_failed(check, self.timeout)
            if check.status == "failed"
            else _timed_out(check, self.timeout, enabled_now=self._since[flow_id] is not None)
            for flow_id, check in self.pending.items()
        ]
        self.done.update({c.flow_id: c for c in late})
        self.pending.clear()
        return late

    def wait(
        self,
        sleep: Callable[[float], None],
        *,
        interval: float = RUN_INTERVAL,
        status: Callable[[str], None] | None = None,
        seen: Callable[[Sequence[RunCheck]], None] | None = None,
    ) -> list[RunCheck]:
        """Round after round until every flow's run ended or the timeout passed (the last
        read at the timeout itself); a round starts ``interval`` after the previous one
        began (a round itself takes a while at scale). ``status`` is told how far the wait
        got, before each round and each second between rounds; ``seen`` the checks that
        ended, as they end."""
        while True:
            if status is not None:
                status(self.progress())  # a round of reads takes seconds at scale
            ended = self.poll()
            if seen is not None:
                seen(ended)
            if not self.pending:
                break
            if self.left() <= 0:
                late = self.expire()
                if seen is not None:
                    seen(late)
                break
            until = min(self.polled_at + interval, self.deadline)
            while (step := until - self.clock()) > 0:
                if status is None:
                    sleep(step)
                    break
                status(self.progress())
                sleep(min(1.0, step))
        return self.checks()

    def checks(self) -> list[RunCheck]:
        """Every flow's check, in the order given (pending ones as last read)."""
        return [self.done.get(f.flow_id) or self.pending[f.flow_id] for f in self.flows]

    def progress(self) -> str:
        """E.g. "waiting for the first runs of 120 new flows (4:00 left): 80 succeeded,
        2 failed, 38 running" (the time first: a narrow line keeps it)."""
        total = len(self.flows)
        ok = sum(1 for c in self.done.values() if c.status == "success")
        failed = len(self.done) - ok
        left = max(0, int(self.left()))
        noun = (
            "the first run of 1 new flow" if total == 1 else f"the first runs of {total} new flows"
        )
        return (
            f"waiting for {noun} ({left // 60}:{left % 60:02d} left): {ok} succeeded, "
            f"{failed} failed, {len(self.pending)} running"
        )


def wait_runs(
    adobe: AdobeClient,
    flows: Sequence[tuple[str, str, str]],
    *,
    timeout: float,
    interval: float = RUN_INTERVAL,
    workers: int = 8,
    now: Callable[[], datetime],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    since: datetime | None = None,
) -> list[RunCheck]:
    """Poll ``GET /runs`` for each (flow id, sandbox, name) until its first run ends.

    The last read is at the timeout itself, not before it. ``since``: when the flows were
    enabled at the earliest; runs before it are old."""
    since = since or now()
    watch = RunWatch(
        adobe,
        [Watched(flow_id, sandbox, name, since) for flow_id, sandbox, name in flows],
        timeout=timeout,
        clock=clock,
        workers=workers,
    )
    return watch.wait(sleep, interval=interval)


#: Statuses after which a run changes no more (compared in lower case: Adobe's examples write
#: ``success`` and ``failed``, api-notes.md §3 "Runs" has seen ``Success`` too).
FINAL = frozenset({"success", "failed"})


def _timed_out(check: RunCheck, timeout: float, *, enabled_now: bool = True) -> RunCheck:
    """The check of a flow whose first run had not ended at the timeout, saying how far it got."""
    if check.run_id is None:
        seen = "no run had started"
    else:
        seen = f"run {check.run_id} was still {check.status}"
    when = "after enabling" if enabled_now else "of waiting"
    detail = f"{seen} {timeout:.0f}s {when}"
    if check.detail:
        detail += f" (last read: {check.detail})"
    return RunCheck(check.flow_id, check.sandbox, check.flow_name, "timeout", check.run_id, detail)


def _still_failed(check: RunCheck, timeout: float) -> RunCheck:
    detail = (
        f"{check.detail or 'no error given'} (before this apply; no newer run in {timeout:.0f}s)"
    )
    return RunCheck(
        check.flow_id,
        check.sandbox,
        check.flow_name,
        "failed",
        check.run_id,
        detail,
        check.errors,
    )


def _latest_run(
    adobe: AdobeClient,
    check: RunCheck,
    since: datetime | None,
    last_run: Mapping[str, Any] | None = None,
) -> tuple[RunCheck, datetime | None]:
    """The flow's latest run (after ``since``) as a check, and when that run started; with
    no run listed, the flow's ``lastRunDetails`` when given."""
    try:
        raws = adobe.runs(check.flow_id, sandbox=check.sandbox)
        candidates = []
        for raw in raws:
            run = models.parse_run(raw)
            created = _run_time(raw)
            if since is not None and created is not None and created < since - timedelta(seconds=5):
                continue  # a run from before the flow was enabled
            # A run without a time counts as started at ``since`` (as the oldest, without).
            candidates.append((created or since or _OLDEST, run))
    except Exception as exc:  # a bad answer must not cost the report of what was done
        log.debug("reading the runs of %s failed", check.flow_id, exc_info=True)
        # What was seen before still stands (a run once seen has started).
        kept = RunCheck(
            check.flow_id,
            check.sandbox,
            check.flow_name,
            check.status,
            check.run_id,
            describe(exc),
            check.errors,
        )
        return kept, None
    if not candidates:
        if last_run and isinstance(last_run.get("state"), str) and last_run["state"]:
            started = models._parse_when(last_run.get("startedAtUTC"))
            run_id = str(last_run["id"]) if last_run.get("id") else None
            shown = RunCheck(
                check.flow_id, check.sandbox, check.flow_name, last_run["state"].lower(), run_id
            )
            return shown, started
        return RunCheck(check.flow_id, check.sandbox, check.flow_name, "waiting"), None
    started, run = max(candidates, key=lambda pair: pair[0])
    status = run.status or "processing"
    # Adobe's messages reach stdout (the report and its JSON): masked like every other line.
    detail = redact.redact("; ".join(run.errors))
    errors = [{k: redact.redact(v) for k, v in e.items()} for e in run.error_items]
    latest = RunCheck(check.flow_id, check.sandbox, check.flow_name, status, run.id, detail, errors)
    return latest, None if started is _OLDEST else started


def _run_time(raw: Mapping[str, Any]) -> datetime | None:
    for key in ("createdAt", "startedAtUTC"):
        if key in raw:
            return models._parse_when(raw[key])
    metrics = raw.get("metrics")
    summary = metrics.get("durationSummary") if isinstance(metrics, dict) else None
    if isinstance(summary, dict) and "startedAtUTC" in summary:
        return models._parse_when(summary["startedAtUTC"])
    return None
