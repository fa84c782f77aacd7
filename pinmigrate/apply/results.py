"""What an apply or rollback reports: one result per action, first runs, the whole report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pinmigrate import redact
from pinmigrate.errors import ApplyFailed, PinmigrateError, ReconnectPending, listed, name_all
from pinmigrate.plan import Blocker, Orphan

Status = Literal["pending", "done", "already_done", "skipped", "failed"]
#: What an action touched: a legacy-card flow, a new-card flow, or an account.
Side = Literal["legacy", "new", "account"]
OK_STATUSES = frozenset({"done", "already_done"})


@dataclass
class ActionResult:
    action_id: str
    kind: str
    sandbox: str
    target_id: str
    target_name: str = ""
    status: Status = "pending"
    error: str | None = None
    #: A human remark that is not an error ("412: retried with a fresh etag").
    note: str = ""
    #: Set when this action did not succeed only because an account still waits for a
    #: person to reconnect it in Adobe: that account, as ``'name' (sandbox, id)``.
    waits_for: str | None = None
    #: Which side of the migration the object is on ("" only for results made by hand).
    side: Side | Literal[""] = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "action_id": self.action_id,
            "kind": self.kind,
            "sandbox": self.sandbox,
            "side": self.side,
            "target_id": self.target_id,
            "target_name": self.target_name,
            "status": self.status,
            "error": self.error,
        }

    @property
    def label(self) -> str:
        name = f" {self.target_name!r}" if self.target_name else f" {self.target_id}"
        return f"{self.kind} {self.sandbox}{name}"


@dataclass
class RunCheck:
    """The first run of a flow after it was enabled (``apply --wait-runs``)."""

    flow_id: str
    sandbox: str
    flow_name: str
    #: success | failed | processing | waiting | timeout | ...
    status: str
    run_id: str | None = None
    detail: str = ""
    #: The run's ``metrics.statusSummary.errors[] {code, message}``.
    errors: list[dict[str, str]] = field(default_factory=list)
    #: The legacy flows left on because this run did not succeed (their disable was held).
    kept_on: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "success"

    def to_json(self) -> dict[str, Any]:
        return {
            "flow_id": self.flow_id,
            "sandbox": self.sandbox,
            "flow_name": self.flow_name,
            "status": self.status,
            "run_id": self.run_id,
            "detail": self.detail,
            "errors": [dict(e) for e in self.errors],
            "legacy_flows_kept_on": list(self.kept_on),
        }


@dataclass
class ApplyReport:
    """What an apply (or rollback) did, for the final table and the JSON output."""

    run_id: str
    results: list[ActionResult]
    kind: str = "pinmigrate.apply"
    blockers: list[Blocker] = field(default_factory=list)
    orphans: list[Orphan] = field(default_factory=list)
    retries: int = 0
    runs: list[RunCheck] = field(default_factory=list)
    #: How the writes were paced (:meth:`pinmigrate.throttle.ThrottleState.to_json`), when
    #: they went through the API.
    pacing: dict[str, Any] | None = None
    #: Things deliberately not done, said once in the report (e.g. rollback leaves audiences).
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(r.status in OK_STATUSES for r in self.results)

    @property
    def failed_runs(self) -> list[RunCheck]:
        return [r for r in self.runs if r.status == "failed"]

    @property
    def timed_out_runs(self) -> list[RunCheck]:
        """First runs that had not ended (or not even started) when the wait ran out."""
        return [r for r in self.runs if r.status == "timeout"]

    @property
    def waits_for_reconnects(self) -> bool:
        """Something is unfinished, and all of it only waits for accounts a person has yet
        to reconnect in Adobe (apply again finishes it)."""
        unfinished = [r for r in self.results if r.status not in OK_STATUSES]
        return bool(unfinished) and all(r.waits_for for r in unfinished)

    def counts(self) -> dict[str, int]:
        counts = {"done": 0, "already_done": 0, "skipped": 0, "failed": 0}
        for result in self.results:
            counts[result.status] = counts.get(result.status, 0) + 1
        return counts

    def summary(self) -> dict[str, int]:
        summary = self.counts()
        summary["retries"] = self.retries
        summary["blocked"] = len(self.blockers)
        summary["orphans"] = len(self.orphans)
        return summary

    def raise_if_failed(self, what: str = "apply") -> None:
        """ApplyFailed (exit 1) unless every action succeeded and no first run failed;
        ReconnectPending (exit 4) when what is left only waits for reconnects in Adobe."""
        counts = self.counts()
        unfinished = [r for r in self.results if r.status not in OK_STATUSES]
        if self.failed_runs or self.timed_out_runs:
            raise self._runs_failed(len(unfinished))
        if self.waits_for_reconnects:
            accounts = list(dict.fromkeys(r.waits_for for r in unfinished if r.waits_for))
            done = counts["done"] + counts["already_done"]
            raise ReconnectPending(
                f"{len(accounts)} account(s) still need Reconnect OAuth in Adobe: "
                f"{listed(accounts, sep='; ')}; {done} of {len(self.results)} action(s) are "
                f"done and {len(unfinished)} wait for those accounts",
                hint="reconnect them in Adobe (Destinations > Accounts, Edit details, "
                "Reconnect OAuth), then run apply again; or wait longer with --reconnect-timeout",
            )
        if not self.ok:
            bad = counts["failed"] + counts["skipped"]
            raise ApplyFailed(
                f"{what} did not finish: {bad} of {len(self.results)} action(s) did not "
                f"succeed ({counts['failed']} failed, {counts['skipped']} skipped); the report "
                "says why",
                hint="fix the cause and run it again: completed actions are not repeated",
            )

    def _runs_failed(self, unfinished: int) -> ApplyFailed:
        """Exit 1 when a first run failed or had not ended: what, and what to do next."""
        failed, late = self.failed_runs, self.timed_out_runs
        parts = []
        if failed:
            parts.append(f"the first run failed for {_flows(failed)}")
        if late:
            parts.append(
                f"the first run of {_flows(late)} had not ended when the wait ran out "
                f"({late[0].detail})"
            )
        kept = sum(len(r.kept_on) for r in (*failed, *late))
        message = "; ".join(parts)
        if kept:
            message += f"; {'its legacy flow stays' if kept == 1 else 'their legacy flows stay'} on"
        others = unfinished - kept
        if others > 0:
            message += f"; {others} other action(s) did not succeed, the report says why"
        wait = " (or wait longer with --run-timeout)" if late else ""
        return ApplyFailed(
            message,
            hint=f"see the run errors in the report, fix them in Adobe{wait}, then run "
            "`pinmigrate apply` again (it resumes), or `pinmigrate rollback` to undo the run "
            "(its new flows off again, the legacy flows it switched off back on)",
        )

    def to_json(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "schema_version": 1,
            "kind": self.kind,
            "run_id": self.run_id,
            **self.extra,
            "results": [r.to_json() for r in self.results],
        }
        if self.kind == "pinmigrate.apply":
            # What the plan left out, itemised for scripts (the summary only counts them).
            payload["blockers"] = [
                {
                    "sandbox": b.sandbox,
                    "flow_id": b.flow_id,
                    "name": b.flow_name,
                    "kind": b.kind,
                    "candidates": list(b.candidates),
                    "reason": b.message,
                }
                for b in self.blockers
            ]
            payload["orphans"] = [
                {
                    "sandbox": o.sandbox,
                    "flow_id": o.flow_id,
                    "name": o.flow_name,
                    "reason": o.reason or "no twin on the new card",
                }
                for o in self.orphans
            ]
        payload["summary"] = self.summary()
        if self.runs:
            payload["runs"] = [r.to_json() for r in self.runs]
        if self.pacing is not None:
            payload["pacing"] = dict(self.pacing)
        return payload


def _flows(checks: list[RunCheck]) -> str:
    """``2 new flows: 'A', 'B'``; past ten names, the rest counted (``errors.name_all``)."""
    return name_all((repr(c.flow_name or c.flow_id) for c in checks), "new flow")


class Progress(Protocol):
    """Told about each action as it ends (a write as soon as it returns, before the
    confirming read); may be called from several threads (writes, re-reads, HTTP retries).

    ``revise``, ``aside`` and ``status`` are optional: the engine calls them only when the
    display has them."""

    def start(self, total: int) -> None: ...

    def advance(self, result: ActionResult) -> None: ...

    def finish(self) -> None: ...

    def status(self, text: str) -> None:
        """A live line about what the run is waiting for (replaced by the next one; an empty
        text ends it)."""

    def revise(self, result: ActionResult) -> None:
        """An action already counted (its write returned) that its confirming read failed."""

    def aside(self, text: str) -> None:
        """A passing remark (a re-read after a lost answer, a settle wait): shown for a
        moment, without replacing the phase line."""


def describe(exc: BaseException) -> str:
    """One redacted line about an error: ours say what to do; others give type and message."""
    if isinstance(exc, PinmigrateError):
        return redact.redact(exc.line())
    return redact.redact(f"unexpected {type(exc).__name__}: {exc}")
