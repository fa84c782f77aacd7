"""The migration as a library: discover, plan, apply and roll back, given Settings and clients.

The commands and the demo are skins over these functions (as twine's ``upload(settings,
dists)`` under its CLI): a command turns flags into settings and options, confirms with a
person when it must, calls one function here and renders the result. Nothing here prompts,
prints or knows about click; what a person should hear goes to ``note``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pinmigrate.actions import ReconnectAccount
from pinmigrate.errors import Interrupted, PinmigrateError, UsageError, name_all

if TYPE_CHECKING:
    from pinmigrate.adobe import AdobeClient
    from pinmigrate.apply.engine import LoginSource
    from pinmigrate.apply.reconnects import AskPerson
    from pinmigrate.apply.results import ApplyReport
    from pinmigrate.apply.results import Progress as ApplyProgress
    from pinmigrate.discovery import Progress as DiscoveryProgress
    from pinmigrate.inventory import Inventory
    from pinmigrate.logins import Login
    from pinmigrate.plan import Plan
    from pinmigrate.rollback import RollbackPlan
    from pinmigrate.settings import Settings

#: Where human notes go (the CLI: stderr).
Note = Callable[[str], None]


def _quiet(message: str) -> None:
    """The default ``note``: a library caller that passes none hears nothing."""


@dataclass(frozen=True)
class PlanRequest:
    """What the operator narrowed for one plan (``plan``/``apply`` flags that are not
    settings; ``--keep-legacy`` is: it sets migration.disable_legacy)."""

    sandboxes: Sequence[str] = ()
    flows: Sequence[str] = ()
    matches: Mapping[str, str] = field(default_factory=dict)


# --- reading and planning ---------------------------------------------------------------------


def adobe_client(settings: Settings) -> AdobeClient:
    """The Adobe client of these settings; ConfigError names a missing credential."""
    from pinmigrate.adobe import AdobeClient

    settings.require_adobe()
    return AdobeClient(settings)


def checked_sandboxes(settings: Settings, wanted: Sequence[str]) -> tuple[str, ...]:
    """Sandbox names asked for, lower-cased; each must be one of ``adobe.sandboxes``."""
    names = tuple(dict.fromkeys(name.strip().lower() for name in wanted))
    known = settings.adobe.sandboxes
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UsageError(
            f"{name_all(unknown, 'unknown sandbox')} (--sandbox)",
            hint=f"configured sandboxes (adobe.sandboxes): {', '.join(known)}",
        )
    return names


def read_inventory(
    settings: Settings,
    adobe: AdobeClient,
    sandboxes: Sequence[str] = (),
    *,
    progress: DiscoveryProgress | None = None,
) -> Inventory:
    """Both cards of these sandboxes (default: every configured one), read only."""
    from pinmigrate.discovery import discover

    settings.require_adobe()
    wanted = checked_sandboxes(settings, sandboxes)
    return discover(adobe, settings, wanted or None, progress=progress)


def pairing(settings: Settings, inventory: Inventory, now: datetime | None = None) -> Plan:
    """How the inventory's flows pair, without logins: what ``discover`` shows."""
    from pinmigrate.planner import PlanOptions, make_plan

    return make_plan(inventory, [], settings, PlanOptions(now=now or datetime.now(UTC)))


def build_plan(
    settings: Settings,
    adobe: AdobeClient,
    request: PlanRequest = PlanRequest(),
    *,
    now: datetime | None = None,
    progress: DiscoveryProgress | None = None,
    note: Note = _quiet,
) -> Plan:
    """Discover, load the stored logins and plan: what ``plan`` prints and ``apply`` runs.

    When accounts need a login that no stored one covers and ``pinterest.refresh_token`` /
    ``access_token`` is set, that login is made (which rotates its refresh token) and the
    plan made again with it.
    """
    inventory = read_inventory(settings, adobe, request.sandboxes, progress=progress)
    return plan_for(settings, inventory, request, now=now, note=note)


def plan_for(
    settings: Settings,
    inventory: Inventory,
    request: PlanRequest = PlanRequest(),
    *,
    now: datetime | None = None,
    note: Note = _quiet,
) -> Plan:
    """:func:`build_plan` over an inventory already read (no discovery)."""
    from pinmigrate.planner import PlanOptions, draft_plan

    options = PlanOptions(
        sandboxes=checked_sandboxes(settings, request.sandboxes),
        flows=tuple(dict.fromkeys(request.flows)),
        matches=dict(request.matches),
        now=now or datetime.now(UTC),
    )
    logins, warnings = stored_logins(settings)
    plan = draft_plan(inventory, logins, settings, options)
    if _wants_environment_login(plan, settings):
        # Only now: making the environment's login refreshes (and so rotates) its token.
        env_login, problem = environment_login(settings, note)
        if problem:
            warnings.append(problem)
        if env_login is not None:
            others = [login for login in logins if login.user_id != env_login.user_id]
            plan = draft_plan(inventory, [*others, env_login], settings, options)
    if warnings:
        plan = plan.model_copy(update={"warnings": [*warnings, *plan.warnings]})
    return seal(settings, plan)


def seal(settings: Settings, plan: Plan) -> Plan:
    """``plan`` sealed with the state dir's plan key (made on first use): the only plans
    ``apply PLAN_FILE`` carries out are those this state dir sealed."""
    from pinmigrate.plankey import load_key

    return plan.sealed(load_key(settings.state_dir, create=True))


def stored_logins(settings: Settings) -> tuple[list[Login], list[str]]:
    """The login store's logins; an unreadable store plans as if empty, with a warning."""
    from pinmigrate.logins import LoginStore

    try:
        return LoginStore(settings.state_dir).load(), []
    except PinmigrateError as exc:
        return [], [f"stored Pinterest logins were not used: {_line(exc)}"]


def environment_login(settings: Settings, note: Note = _quiet) -> tuple[Login | None, str | None]:
    """The login ``pinterest.refresh_token`` / ``access_token`` yields, or why there is none."""
    from pinmigrate.logins import LoginStore
    from pinmigrate.oauth.grants import environment_login as make_login
    from pinmigrate.oauth.grants import pinterest_client

    try:
        login = make_login(
            settings, LoginStore(settings.state_dir), pinterest_client(settings), notify=note
        )
    except PinmigrateError as exc:
        return None, f"the Pinterest login from the environment was not used: {_line(exc)}"
    return login, None


def _wants_environment_login(plan: Plan, settings: Settings) -> bool:
    pin = settings.pinterest
    has_token = any(
        t is not None and t.get_secret_value() for t in (pin.refresh_token, pin.access_token)
    )
    return has_token and any(
        isinstance(a, ReconnectAccount) and a.details.needs_login for a in plan.actions
    )


# --- applying ---------------------------------------------------------------------------------


def apply(
    settings: Settings,
    plan: Plan,
    *,
    adobe: AdobeClient,
    logins: LoginSource | None,
    progress: ApplyProgress | None = None,
    wait_runs: bool = False,
    run_timeout: float = 900.0,
    reconnect_timeout: float = 0.0,
    ask_person: AskPerson | None = None,
    note: Note = _quiet,
) -> ApplyReport:
    """Carry out a plan under the state-dir lock, journalled; the plan must have changes.

    Accounts a person reconnects in Adobe are named through ``ask_person`` and waited for
    up to ``reconnect_timeout`` seconds (:mod:`pinmigrate.apply.reconnects`).

    Raises StalePlanError (exit 3) or AuthError (exit 4) before any write, LockedError when
    another run holds the state dir; otherwise returns the report, failures included.
    """
    from pinmigrate.apply import apply_plan
    from pinmigrate.journal import Journal, continued_run, new_run_id
    from pinmigrate.lock import StateLock

    run_id = new_run_id()
    lock = StateLock(settings.state_dir, run_id)
    with lock:
        if lock.took_over is not None:
            note(f"Took over the lock of a run that is gone ({lock.took_over.describe()}).")
        resumes = _interrupted(settings.state_dir, note)
        # A rerun after a partial apply carries it on; rollback undoes the two together.
        carried = continued_run(settings.state_dir, [a.id for a in plan.actions])
        resumes["continues"] = [carried] if carried else []
        journal = Journal(settings.state_dir, run_id)
        try:
            return apply_plan(
                plan,
                adobe=adobe,
                settings=settings,
                logins=logins,
                journal=journal,
                concurrency=settings.migration.concurrency,
                progress=progress,
                wait_runs=wait_runs,
                run_timeout=run_timeout,
                start_extra=resumes,
                reconnect_timeout=reconnect_timeout,
                ask_person=ask_person,
                note=note,
            )
        except KeyboardInterrupt:
            journal.close()
            raise stopped_by_ctrl_c(
                settings.state_dir, run_id, len(plan.actions), "apply", again="`pinmigrate apply`"
            ) from None
        finally:
            journal.close()


def _interrupted(state_dir: Path, note: Note) -> dict[str, Any]:
    """Say so when the previous apply was killed: this run finishes its work.

    Returns what this run's journal notes about it (``resumes``, ``unsure_actions``).
    """
    from pinmigrate.journal import latest_run, read_run

    previous = latest_run(state_dir, kind="apply")
    if previous is None:
        return {}
    record = read_run(state_dir, previous)
    if record.finished:
        return {}
    interrupted = record.interrupted_writes()
    unsure = len(interrupted)
    detail = (
        f"; {unsure} write(s) may or may not have happened and are re-checked" if unsure else ""
    )
    note(
        f"The previous apply (run {previous}) did not finish{detail}. "
        "Actions it completed will show as already done."
    )
    actions = sorted({str(w.get("action_id")) for w in interrupted})
    return {"resumes": previous, "unsure_actions": actions}


def running_holder(state_dir: Path) -> str | None:
    """Who holds the state dir's lock, when that process is still running (a quick check)."""
    import socket

    from pinmigrate.lock import StateLock, pid_alive

    holder = StateLock(state_dir, "").holder()
    if holder is None:
        return None
    if holder.host == socket.gethostname() and not pid_alive(holder.pid):
        return None
    return holder.describe()


# --- rolling back -----------------------------------------------------------------------------


def rollback_plan(settings: Settings, run_id: str | None = None) -> RollbackPlan:
    """What undoing apply run ``run_id`` (default: the latest that wrote) means."""
    from pinmigrate import rollback
    from pinmigrate.journal import latest_run, rolled_back_by, run_chain, runs_dir

    state_dir = settings.state_dir
    if run_id is None:
        run_id = latest_run(state_dir, kind="apply", with_writes=True)
        if run_id is None:
            raise UsageError(
                f"no apply run with changes to roll back in {runs_dir(state_dir)}",
                hint="name a run: `pinmigrate rollback RUN_ID`",
            )
    chain = run_chain(state_dir, run_id)
    record = chain[0]
    if record.kind != "apply":
        raise UsageError(
            f"run {run_id} is a {record.kind} run; only apply runs can be rolled back",
            hint="name the apply run it undid to see what it changed",
        )
    undone_by = rolled_back_by(state_dir, run_id)
    if undone_by is not None:
        return rollback.RollbackPlan(
            run_id, [], {}, [], runs=[r.run_id for r in chain], undone_by=undone_by
        )
    return rollback.rollback_plan(record, chain[1:])


def roll_back(
    settings: Settings,
    plan: RollbackPlan,
    *,
    adobe: AdobeClient,
    progress: ApplyProgress | None = None,
) -> ApplyReport:
    """Carry out a rollback plan under the state-dir lock, journalled as a rollback run."""
    from pinmigrate import rollback
    from pinmigrate.journal import Journal, new_run_id
    from pinmigrate.lock import StateLock

    new_id = new_run_id()
    with StateLock(settings.state_dir, new_id):
        journal = Journal(settings.state_dir, new_id, kind="rollback")
        try:
            return rollback.rollback_run(
                plan,
                adobe=adobe,
                settings=settings,
                journal=journal,
                concurrency=settings.migration.concurrency,
                progress=progress,
            )
        except KeyboardInterrupt:
            journal.close()
            raise stopped_by_ctrl_c(
                settings.state_dir,
                new_id,
                len(plan.actions),
                "rollback",
                again=f"`pinmigrate rollback {plan.run_id}`",
            ) from None
        finally:
            journal.close()


def stopped_by_ctrl_c(
    state_dir: Path, run_id: str, planned: int, kind: str, *, again: str
) -> Interrupted:
    """What a run stopped by Ctrl-C did, from its journal: the writes done, the writes that
    were under way (re-read, never replayed blind, by the next run), and how to carry on."""
    from pinmigrate.journal import read_run

    try:
        record = read_run(state_dir, run_id)
    except PinmigrateError:  # stopped before its journal began: nothing was written
        outcomes: dict[str, Any] = {}
    else:
        outcomes = {action: outcome for action, (_, outcome) in record.write_outcomes().items()}
    done = sum(1 for outcome in outcomes.values() if outcome == "done")
    open_ = sum(1 for outcome in outcomes.values() if outcome == "interrupted")
    in_flight = f" ({open_} {'was' if open_ == 1 else 'were'} in flight)" if open_ else ""
    return Interrupted(
        f"{kind} run {run_id} stopped by Ctrl-C after {done} of {_count(planned, 'planned write')}"
        "; nothing is half-done: each write is journalled before and after it is sent, and a "
        f"write in flight when Ctrl-C came is re-read on the next run{in_flight}",
        hint=f"run {again} again to resume: what is done shows as already done",
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _line(error: PinmigrateError) -> str:
    from pinmigrate.redact import redact

    return redact(error.line())
