"""First runs after enabling (``apply --wait-runs``): poll ``GET /runs`` until each ends."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pinmigrate import models
from pinmigrate.apply.results import RunCheck, describe

if TYPE_CHECKING:
    from pinmigrate.adobe import AdobeClient

log = logging.getLogger("pinmigrate.apply")


def wait_runs(
    adobe: AdobeClient,
    flows: Sequence[tuple[str, str, str]],
    *,
    timeout: float,
    interval: float = 10.0,
    workers: int = 8,
    now: Callable[[], datetime],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    since: datetime | None = None,
) -> list[RunCheck]:
    """Poll ``GET /runs`` for each (flow id, sandbox, name) until its first run ends.

    A run may not exist yet when a flow has just been enabled: Flow Service starts it later
    (api-notes.md §3 "Runs"), so "no run" is waited for like "processing". The last read is
    at the timeout itself, not before it. ``since``: when the flows were enabled at the
    earliest (the apply's start: an enable may have come long before this wait, after a
    reconnect in Adobe); runs before it are old."""
    deadline = clock() + timeout
    since = since or now()
    pending = {
        flow_id: RunCheck(flow_id, sandbox, name, "waiting") for flow_id, sandbox, name in flows
    }
    done: dict[str, RunCheck] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="runs") as pool:
        while pending:
            checks = {
                flow_id: pool.submit(_latest_run, adobe, check, since)
                for flow_id, check in pending.items()
            }
            for flow_id, future in checks.items():
                check = future.result()
                if check.status in FINAL:
                    done[flow_id] = check
                    del pending[flow_id]
                else:
                    pending[flow_id] = check
            left = deadline - clock()
            if not pending:
                break
            if left <= 0:
                done.update({flow_id: _timed_out(c, timeout) for flow_id, c in pending.items()})
                break
            sleep(min(interval, left))
    return [done[flow_id] for flow_id, _, _ in flows]


#: Statuses after which a run changes no more (compared in lower case: Adobe's examples write
#: ``success`` and ``failed``, api-notes.md §3 "Runs" has seen ``Success`` too).
FINAL = frozenset({"success", "failed"})


def _timed_out(check: RunCheck, timeout: float) -> RunCheck:
    """The check of a flow whose first run had not ended at the timeout, saying how far it got."""
    if check.run_id is None:
        seen = "no run had started"
    else:
        seen = f"run {check.run_id} was still {check.status}"
    detail = f"{seen} {timeout:.0f}s after enabling"
    if check.detail:
        detail += f" (last read: {check.detail})"
    return RunCheck(check.flow_id, check.sandbox, check.flow_name, "timeout", check.run_id, detail)


def _latest_run(adobe: AdobeClient, check: RunCheck, since: datetime) -> RunCheck:
    try:
        raws = adobe.runs(check.flow_id, sandbox=check.sandbox)
        candidates = []
        for raw in raws:
            run = models.parse_run(raw)
            created = _run_time(raw)
            if created is not None and created < since - timedelta(seconds=5):
                continue  # a run from before the flow was enabled
            candidates.append((created or since, run))
    except Exception as exc:  # a bad answer must not cost the report of what was done
        log.debug("reading the runs of %s failed", check.flow_id, exc_info=True)
        # What was seen before still stands (a run once seen has started).
        return RunCheck(
            check.flow_id, check.sandbox, check.flow_name, check.status, check.run_id, describe(exc)
        )
    if not candidates:
        return RunCheck(check.flow_id, check.sandbox, check.flow_name, "waiting")
    _, run = max(candidates, key=lambda pair: pair[0])
    status = run.status or "processing"
    detail = "; ".join(run.errors)
    return RunCheck(check.flow_id, check.sandbox, check.flow_name, status, run.id, detail)


def _run_time(raw: Mapping[str, Any]) -> datetime | None:
    for key in ("createdAt", "startedAtUTC"):
        if key in raw:
            return models._parse_when(raw[key])
    metrics = raw.get("metrics")
    summary = metrics.get("durationSummary") if isinstance(metrics, dict) else None
    if isinstance(summary, dict) and "startedAtUTC" in summary:
        return models._parse_when(summary["startedAtUTC"])
    return None
