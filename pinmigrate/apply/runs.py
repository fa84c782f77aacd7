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

    ``since``: when the flows were enabled at the earliest (the apply's start: an enable may
    have come long before this wait, after a reconnect in Adobe); runs before it are old."""
    started = clock()
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
                if check.status in ("success", "failed"):
                    done[flow_id] = check
                    del pending[flow_id]
                else:
                    pending[flow_id] = check
            if not pending:
                break
            if clock() - started + interval > timeout:
                for flow_id, check in pending.items():
                    check.detail = check.detail or f"no finished run within {timeout:.0f}s"
                    done[flow_id] = RunCheck(
                        check.flow_id,
                        check.sandbox,
                        check.flow_name,
                        "timeout",
                        check.run_id,
                        f"last seen {check.status}; no finished run within {timeout:.0f}s",
                    )
                break
            sleep(interval)
    return [done[flow_id] for flow_id, _, _ in flows]


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
        return RunCheck(
            check.flow_id, check.sandbox, check.flow_name, "waiting", None, describe(exc)
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
