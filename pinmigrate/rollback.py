"""Rollback: undo the flow-state changes of an apply run, as its journal tells them.

:func:`rollback_plan` is pure: it turns journal records into undo actions (typed like a
plan's). :func:`rollback_run` carries them out with the apply engine, each only while the
object is still as the run left it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pinmigrate.actions import (
    Action,
    DisableFlow,
    DisablePrecondition,
    EnableFlow,
    EnablePrecondition,
    action_id,
)
from pinmigrate.apply.engine import Executor, retries_of
from pinmigrate.apply.results import ActionResult, ApplyReport, Progress
from pinmigrate.inventory import Card
from pinmigrate.journal import ActionRef, RunRecord, Write

if TYPE_CHECKING:
    from pinmigrate.adobe import AdobeClient
    from pinmigrate.journal import Journal
    from pinmigrate.settings import Settings


@dataclass(frozen=True)
class RollbackPlan:
    """What undoing a run means: flow-state changes to revert, and what is left alone."""

    run_id: str
    actions: list[Action]
    cards: dict[str, Card]
    left_alone: list[str]
    #: Every run undone, newest first: the run named and the earlier runs it carried on.
    runs: list[str] = field(default_factory=list)
    #: Undo action id -> a remark shown with its result when it is done.
    notes: dict[str, str] = field(default_factory=dict)
    #: Undo action id -> the run whose interrupted write it undoes (assumed done).
    assumed: dict[str, str] = field(default_factory=dict)
    #: Re-enable of a legacy flow -> the switch-off of its twin: a pair rolled back as a unit.
    units: dict[str, str] = field(default_factory=dict)
    #: An earlier rollback run that already undid all of this (set by the workflow, which
    #: reads the state dir): there is nothing left to undo.
    undone_by: str | None = None


def _shown(ref: ActionRef) -> str:
    name = f"{ref.target_name!r} " if ref.target_name else ""
    return f"{name}({ref.sandbox}, {ref.target_id})" if name else f"{ref.target_id} ({ref.sandbox})"


def rollback_plan(record: RunRecord, earlier: Sequence[RunRecord] = ()) -> RollbackPlan:
    """Undo the flow-state changes of a run and of the ``earlier`` runs it carried on (newest
    first; see :func:`pinmigrate.journal.run_chain`). Audiences and reconnects stay.

    Which writes are undone:

    - a write with an ``after`` record: the run changed the object. Undone, each object at
      most once (its newest change wins), and only while it is still as the run left it.
    - a write that ended in an error, including a 412 whose re-read found the goal already
      reached by someone else: the run did not change the object, so it is left alone.
      Undoing it would switch on a flow the run never switched off.
    - an interrupted write (a ``before`` with neither ``after`` nor ``error``: the run was
      killed mid-call): undone only if its before-state differs from its target state and,
      at rollback time, the object reads back in the target state; it is then reported as
      "interrupted write, assumed done". Otherwise the write did not take effect and there
      is nothing to undo.

    Pairs are undone as a unit. A new flow is switched off after its legacy twin is back on,
    or, when the legacy flow is not being switched back on, only while that legacy flow is
    enabled (the audience is never left unserved). A legacy flow switched back on takes its
    twin down with it when these runs enabled, or set out to enable, that twin (a plan that
    saw it disabled), so a rollback never leaves both on and the audience delivered twice.
    """
    records = [record, *earlier]
    #: (kind, sandbox, target) -> (the write, run id); newest change first
    changes: dict[tuple[str, str, str], tuple[Write, str]] = {}
    #: (sandbox, new flow id) -> a run that wrote an enable of it, whatever came of it
    tried_enable: dict[tuple[str, str], str] = {}
    #: (sandbox, new flow id) -> a run whose plan set out to enable it
    planned_enable: dict[tuple[str, str], str] = {}
    for rec in records:
        for planned in rec.planned():
            if planned.kind == "enable_flow":
                planned_enable.setdefault((planned.sandbox, planned.target_id), rec.run_id)
        for write in rec.typed_writes():
            ref = write.ref
            key = (ref.kind, ref.sandbox, ref.target_id)
            if ref.kind == "enable_flow":
                tried_enable.setdefault(key[1:], rec.run_id)
            if write.outcome == "error":
                continue
            if write.outcome == "interrupted" and ref.kind in ("enable_flow", "disable_flow"):
                goal = "enabled" if ref.kind == "enable_flow" else "disabled"
                if write.state_before == goal:
                    continue  # it could not have changed anything
            known = changes.get(key)
            if known is None or (known[0].outcome == "interrupted" and write.outcome == "done"):
                changes[key] = (write, rec.run_id)

    actions: list[Action] = []
    cards: dict[str, Card] = {}
    left: list[str] = []
    notes: dict[str, str] = {}
    assumed: dict[str, str] = {}
    units: dict[str, str] = {}
    reenabled: dict[tuple[str, str], str] = {}
    twins: dict[tuple[str, str], str] = {}

    def add(action: Action, card: Card, write: Write | None = None, run_id: str = "") -> None:
        actions.append(action)
        cards[action.id] = card
        if write is not None and write.outcome == "interrupted":
            assumed[action.id] = run_id

    for (kind, sandbox, target), (write, run_id) in changes.items():
        if kind == "disable_flow":
            reenable = EnableFlow(
                id=action_id("enable_flow", sandbox, target),
                sandbox=sandbox,
                target_id=target,
                target_name=write.ref.target_name,
                precondition=EnablePrecondition(state="disabled"),
            )
            add(reenable, "legacy", write, run_id)
            reenabled[(sandbox, target)] = reenable.id
            if write.twin_flow_id:
                twins[(sandbox, target)] = write.twin_flow_id
        elif kind == "add_audiences":
            left.append(
                f"audiences added to flow {_shown(write.ref)} stay "
                "(rollback leaves audiences alone)"
            )
        elif kind == "reconnect_account":
            left.append(
                f"account {_shown(write.ref)} keeps its new credentials (reconnects are not undone)"
            )
    switched_off: dict[tuple[str, str], str] = {}
    for (kind, sandbox, target), (write, run_id) in changes.items():
        if kind != "enable_flow":
            continue
        legacy = write.legacy_flow_id
        depends: list[str] = []
        if legacy and (sandbox, legacy) in reenabled:
            # Switch the new flow off only once its legacy twin serves the audience again.
            depends = [reenabled[(sandbox, legacy)]]
            precondition = DisablePrecondition(state="enabled")
        elif legacy:
            precondition = DisablePrecondition(
                state="enabled", legacy_flow_id=legacy, legacy_state="enabled"
            )
        else:
            precondition = DisablePrecondition(state="enabled")
        switch_off = DisableFlow(
            id=action_id("disable_flow", sandbox, target),
            sandbox=sandbox,
            target_id=target,
            target_name=write.ref.target_name,
            precondition=precondition,
            depends_on=depends,
        )
        add(switch_off, "new", write, run_id)
        switched_off[(sandbox, target)] = switch_off.id

    for (sandbox, legacy), undo_id in reenabled.items():
        twin = twins.get((sandbox, legacy))
        if not twin:
            continue
        if (sandbox, twin) in switched_off:
            units[undo_id] = switched_off[(sandbox, twin)]
            continue
        why_run = tried_enable.get((sandbox, twin)) or planned_enable.get((sandbox, twin))
        if why_run is None:
            left.append(
                f"new flow {twin} ({sandbox}) was enabled before run(s) "
                f"{', '.join(r.run_id for r in records)} and stays on next to its legacy twin "
                f"{legacy}, as it was before"
            )
            continue
        # The runs' journals do not show this twin switched on by them (already on when the
        # run looked, or its enable ended in an error that may have hidden success), but
        # they set out to switch it on: off it goes with the legacy flow back on.
        undo = DisableFlow(
            id=action_id("disable_flow", sandbox, twin),
            sandbox=sandbox,
            target_id=twin,
            precondition=DisablePrecondition(state="enabled"),
            depends_on=[undo_id],
        )
        add(undo, "new")
        notes[undo.id] = (
            f"switched off with its legacy twin {legacy}: run {why_run} set out to enable it, "
            "and both on would deliver its audiences twice"
        )
        units[undo_id] = undo.id
        switched_off[(sandbox, twin)] = undo.id
    return RollbackPlan(
        record.run_id,
        actions,
        cards,
        left,
        runs=[r.run_id for r in records],
        notes=notes,
        assumed=assumed,
        units=units,
    )


def rollback_run(
    plan: RollbackPlan,
    *,
    adobe: AdobeClient,
    settings: Settings,
    journal: Journal,
    concurrency: int,
    progress: Progress | None = None,
) -> ApplyReport:
    """Revert the flow-state changes of a run (and the runs it carried on), each only if it is
    still as the runs left it. A legacy flow switched back on whose twin then fails to switch
    off is switched off again, so the pair is left as the runs left it, never both on."""
    executor = Executor(
        adobe=adobe,
        settings=settings,
        journal=journal,
        concurrency=concurrency,
        progress=progress,
        stale_policy="skip",
        cards=plan.cards,
    )
    retries_before = retries_of(adobe)
    start = {"rollback_of": plan.run_id, "covers": plan.runs or [plan.run_id]}
    results = executor.run(plan.actions, start_extra=start)
    by_id = {r.action_id: r for r in results}
    for result in results:
        run_id = plan.assumed.get(result.action_id)
        if run_id and result.status == "done":
            result.note = f"interrupted write of run {run_id}, assumed done"
        elif run_id and result.status == "already_done":
            result.note = f"the interrupted write of run {run_id} had not taken effect"
        elif result.action_id in plan.notes and result.status == "done":
            result.note = plan.notes[result.action_id]
    results += _keep_pairs_whole(plan, by_id, executor)
    notes = list(plan.left_alone)
    if len(plan.runs) > 1:
        notes.append(
            f"this rollback covers run {plan.runs[0]} and the earlier run(s) it carried on: "
            f"{', '.join(plan.runs[1:])}"
        )
    report = ApplyReport(
        run_id=journal.run_id,
        results=results,
        kind="pinmigrate.rollback",
        notes=notes,
        extra={
            "rollback_of": plan.run_id,
            "covers": plan.runs or [plan.run_id],
            "left_alone": list(plan.left_alone),
            "undone_by": None,
        },
    )
    report.retries = retries_of(adobe) - retries_before
    if results:
        journal.run_end(report.summary())
    return report


def _keep_pairs_whole(
    plan: RollbackPlan, by_id: Mapping[str, ActionResult], executor: Executor
) -> list[ActionResult]:
    """Switch a legacy flow off again when it is back on but its twin failed to go off."""
    again: list[Action] = []
    for reenable_id, switch_off_id in plan.units.items():
        legacy, twin = by_id.get(reenable_id), by_id.get(switch_off_id)
        if legacy is None or twin is None or legacy.status != "done" or twin.status != "failed":
            continue
        action = DisableFlow(
            id=action_id("disable_flow", legacy.sandbox, legacy.target_id),
            sandbox=legacy.sandbox,
            target_id=legacy.target_id,
            target_name=legacy.target_name,
            precondition=DisablePrecondition(
                state="enabled", twin_flow_id=twin.target_id, twin_state="enabled"
            ),
        )
        again.append(action)
        executor.cards[action.id] = "legacy"
    if not again:
        return []
    # The progress display was sized for the rollback proper; the report lists these.
    executor.progress = None
    results = executor.run(again, journal_start=False)
    for result in results:
        if result.status == "done":
            result.note = (
                "switched off again: its twin could not be switched off, and both on would "
                "deliver its audiences twice; the pair stays as the run left it"
            )
    return results
