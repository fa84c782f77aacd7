"""The pure verdict on one action, from freshly read objects: done, to do, or stale.

Goal first (an action whose goal is already reached is ``already_done``, so a rerun after a
partial apply is not stale), then the precondition: what the planner saw that made the
action necessary. One function per kind; no I/O. The reconnect goal is the planner's own
expiry rule (:func:`pinmigrate.planner.needs_reconnect`), not a restatement of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pinmigrate.actions import Action, AddAudiences, DisableFlow, EnableFlow, ReconnectAccount
from pinmigrate.apply.results import RunCheck
from pinmigrate.apply.world import World
from pinmigrate.inventory import Flow
from pinmigrate.moments import iso_z
from pinmigrate.planner import needs_reconnect


@dataclass(frozen=True)
class Verdict:
    outcome: Literal["todo", "already_done", "stale"]
    reason: str = ""


TODO = Verdict("todo")
ALREADY = Verdict("already_done")


def assess(
    action: Action, world: World, *, now: datetime, margin: timedelta, during_run: bool = False
) -> Verdict:
    """Goal first (already done?), then the precondition (still valid?), on fresh reads.

    ``during_run`` is the check right before a later wave writes: a legacy flow switched off
    since the run began stops its twin's changes, and a legacy flow is switched off only
    while its twin reads back enabled, whatever the plan saw.
    """
    if isinstance(action, ReconnectAccount):
        return _reconnect(action, world, now, margin)
    flow = world.flow(action.target_id)
    if flow is None:
        label = flow_label(None, action.target_id, action.sandbox, action.target_name)
        return Verdict("stale", f"{label} no longer exists")
    if isinstance(action, AddAudiences):
        return _add_audiences(action, flow, world, during_run)
    if isinstance(action, EnableFlow):
        return _enable(action, flow, world, during_run)
    return _disable(action, flow, world, during_run)


def goal_problem(action: Action, world: World, *, now: datetime, margin: timedelta) -> str | None:
    """Why a confirming read shows a written action's goal not reached, or None when it is."""
    if isinstance(action, ReconnectAccount):
        account = world.accounts.get(action.target_id)
        if account is None:
            return "the account disappeared right after it was reconnected"
        if not needs_reconnect(account.expires_at, now, margin):
            return None
        expires = iso_z(account.expires_at) or "never set"
        return (
            f"Adobe accepted the new credentials but the account reads back expiring at "
            f"{expires}, within the {margin.days}-day margin"
        )
    flow = world.flow(action.target_id)
    if flow is None:
        return "the flow disappeared right after the change"
    if isinstance(action, AddAudiences):
        lost = sorted({a.id for a in action.details.audiences} - flow.audience_ids)
        if lost:
            return _not_kept(flow, f"the flow reads back without {', '.join(lost)}")
        return None
    goal = "enabled" if isinstance(action, EnableFlow) else "disabled"
    if flow.state != goal:
        return _not_kept(flow, f"the flow reads back {flow.state}")
    return None


def _not_kept(flow: Flow, seen: str) -> str:
    """Why a flow write's goal is not reached, from its ``lastOperation`` when it says."""
    operation = flow.operation
    name = f"{operation.name} " if operation is not None and operation.name else ""
    if operation is not None and operation.failed:
        errors = "; ".join(operation.errors) or "no error given"
        return f"Adobe's {name}operation on the flow failed ({errors}); {seen}"
    if operation is not None and operation.in_progress:
        done = f" ({operation.percent:g}% done)" if operation.percent is not None else ""
        return (
            f"Adobe is still applying the {name}change{done}; {seen} for now: "
            "run apply again later to check"
        )
    return f"Adobe accepted the change but {seen}"


# --- one function per kind --------------------------------------------------------------------


def _reconnect(action: ReconnectAccount, world: World, now: datetime, margin: timedelta) -> Verdict:
    account = world.accounts.get(action.target_id)
    if account is None:
        return Verdict(
            "stale",
            f"account {action.target_name!r} ({action.sandbox}, {action.target_id}) "
            "no longer exists",
        )
    if not needs_reconnect(account.expires_at, now, margin):
        return ALREADY
    # Whatever else changed on the account, it still needs credentials: still valid.
    return TODO


def _add_audiences(action: AddAudiences, flow: Flow, world: World, during_run: bool) -> Verdict:
    if {a.id for a in action.details.audiences} <= flow.audience_ids:
        return ALREADY
    pre = action.precondition
    verdict = _legacy_holds(action, flow, world, pre.legacy_flow_id, pre.legacy_state, during_run)
    if verdict is not TODO:
        return verdict
    legacy = world.flow(pre.legacy_flow_id)
    gone = _audiences_gone_from_legacy(action, flow, legacy) if legacy else ""
    if gone:
        label = flow_label(legacy, pre.legacy_flow_id, action.sandbox)
        return Verdict(
            "stale",
            f"legacy {label} no longer has audience {gone} "
            f"(the plan would add it to its twin {flow.name!r}); nothing is added",
        )
    return TODO


def _enable(action: EnableFlow, flow: Flow, world: World, during_run: bool) -> Verdict:
    if flow.state == "enabled":
        return ALREADY
    pre = action.precondition
    return _state_holds(action, flow, pre.state) or _legacy_holds(
        action, flow, world, pre.legacy_flow_id, pre.legacy_state, during_run
    )


def _disable(action: DisableFlow, flow: Flow, world: World, during_run: bool) -> Verdict:
    if flow.state == "disabled":
        return ALREADY
    pre = action.precondition
    verdict = _state_holds(action, flow, pre.state) or _legacy_holds(
        action, flow, world, pre.legacy_flow_id, pre.legacy_state, during_run
    )
    if verdict is not TODO or pre.twin_flow_id is None:
        return verdict
    twin = world.flow(pre.twin_flow_id)
    twin_label = flow_label(twin, pre.twin_flow_id, action.sandbox)
    if twin is None:
        return Verdict("stale", f"its twin {twin_label} no longer exists")
    # A twin the plan saw disabled is enabled by this plan first; one it saw enabled must
    # still be, or switching the legacy flow off would leave the audience unserved. Once
    # the run is under way, the twin must read back enabled either way.
    if (during_run or pre.twin_state == "enabled") and twin.state != "enabled":
        seen = "it changed during the run" if during_run else "the plan saw enabled"
        return Verdict(
            "stale",
            f"twin {twin_label} is now {twin.state} ({seen}); legacy {flow.name!r} stays on",
        )
    return TODO


# --- the shared checks ------------------------------------------------------------------------


def _state_holds(action: Action, flow: Flow, expected: str) -> Verdict | None:
    """None when the flow is in the state the plan saw, else the stale verdict."""
    if flow.state == expected:
        return None
    label = flow_label(flow, action.target_id, action.sandbox, action.target_name)
    return Verdict("stale", f"{label} is now {flow.state} (the plan saw {expected})")


def _legacy_holds(
    action: Action,
    flow: Flow,
    world: World,
    legacy_id: str | None,
    expected: str | None,
    during_run: bool,
) -> Verdict:
    """TODO when there is no legacy flow to check or it is as the plan saw it."""
    if not legacy_id:
        return TODO
    legacy = world.flow(legacy_id)
    label = flow_label(legacy, legacy_id, action.sandbox)
    if legacy is None:
        return Verdict("stale", f"legacy {label} no longer exists")
    expected = expected or "enabled"
    if legacy.state == expected:
        return TODO
    if during_run and expected == "enabled":
        return Verdict(
            "stale",
            f"legacy {label} was switched off during the run; "
            f"its twin {flow.name!r} is left as it is",
        )
    return Verdict(
        "stale",
        f"legacy {label} is now {legacy.state} (the plan saw {expected}); "
        f"its twin {flow.name!r} is left as it is",
    )


def _audiences_gone_from_legacy(action: AddAudiences, flow: Flow, legacy: Flow) -> str:
    """The audiences an add_audiences action still has to add that its legacy flow no longer
    has (the operator removed them since the plan), as shown in a message; "" when none."""
    names = {a.id: a.name for a in action.details.audiences}
    wanted = action.precondition.missing or list(names)
    gone = [a for a in wanted if a not in flow.audience_ids and a not in legacy.audience_ids]
    return ", ".join(f"{names[a]!r} ({a})" if names.get(a) else a for a in gone)


def flow_label(flow: Flow | None, flow_id: str, sandbox: str, fallback: str = "") -> str:
    name = flow.name if flow is not None else fallback
    return f"flow {name!r} ({sandbox}, {flow_id})" if name else f"flow {flow_id} ({sandbox})"


def run_problem(check: RunCheck) -> str | None:
    """Why a legacy flow stays on after its twin's first run (``--wait-runs``); None when
    that run succeeded. The run's errors are Flow Service's own ``{code, message}``
    (api-notes.md §3 "Runs")."""
    if check.ok:
        return None
    run = f"run {check.run_id}" if check.run_id else "run"
    if check.status == "failed":
        why = check.detail or "Adobe gave no error"
        return f"its twin's first {run} failed: {why}; the legacy flow stays on"
    if check.status == "timeout":
        return f"its twin's first run had not ended: {check.detail}; the legacy flow stays on"
    return f"its twin's first {run} ended {check.status}; the legacy flow stays on"
