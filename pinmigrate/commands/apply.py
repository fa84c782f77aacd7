"""``pinmigrate apply [PLAN_FILE]``: carry out a plan, journalled, under the state-dir lock.

A saved plan is the approval (as in terraform); without one, a fresh plan is shown and a
person at a terminal confirms it. Either way every object is re-read first, and apply
stops with exit 3, before any write, when the world no longer matches the plan.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from pinmigrate.app import App
from pinmigrate.cli import global_options, pass_app
from pinmigrate.commands.pacing import concurrency_options, use_concurrency
from pinmigrate.commands.planning import (
    build_plan,
    details_option,
    parse_matches,
    plan_shaping,
    use_wait_runs,
    wait_runs_option,
)
from pinmigrate.errors import UsageError

if TYPE_CHECKING:
    from pinmigrate.apply.engine import LoginSource
    from pinmigrate.plan import Plan


@click.command("apply")
@click.argument("plan_file", required=False, type=click.Path(dir_okay=False))
@click.option("--yes", "-y", is_flag=True, help="Apply a fresh plan without asking.")
@concurrency_options
@wait_runs_option
@click.option(
    "--run-timeout",
    type=click.FloatRange(min=1),
    default=900.0,
    show_default=True,
    metavar="SECONDS",
    help="How long --wait-runs waits for first runs (from the start of each wait).",
)
@click.option(
    "--reconnect-timeout",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="How long to wait for accounts to be reconnected in Adobe (sets "
    "migration.reconnect_timeout; default 900 at a terminal, 0 without one).",
)
@plan_shaping("Fresh plan only. ")
@details_option
@global_options
@pass_app
def command(
    app: App,
    plan_file: str | None,
    yes: bool,
    concurrency: int | None,
    max_concurrency: int | None,
    wait_runs: bool | None,
    run_timeout: float,
    reconnect_timeout: float | None,
    sandboxes: tuple[str, ...],
    flows: tuple[str, ...],
    matches: tuple[str, ...],
    keep_legacy: bool,
    details: bool,
) -> None:
    """Carry out a plan: PLAN_FILE (saved by `pinmigrate plan --out`), or a fresh one.

    A saved plan counts as approved. Without one, the fresh plan is shown and you are asked
    to confirm; with --no-input or without a terminal, --yes is required (else exit 5).
    Every object is re-read first: if anything the plan relied on changed, nothing is
    written (exit 3). Every write is journalled; if a run is interrupted, run apply again.

    Accounts that need Reconnect OAuth are named with the Adobe page to open; apply waits
    for a person to reconnect them (--reconnect-timeout) and carries on with each as soon
    as it is renewed. Not reconnected in time: the rest is done and apply exits 4.

    With --wait-runs (or a plan made with it), a legacy flow is switched off only after
    its twin's first run succeeded; a failed or late run leaves it on, and apply exits 1.
    """
    from pinmigrate import workflow
    from pinmigrate.oauth import resolvers
    from pinmigrate.plan import load_plan
    from pinmigrate.plankey import load_key
    from pinmigrate.render import render_plan
    from pinmigrate.report import ask_person, make_progress, observing, output_report

    if plan_file and (sandboxes or flows or matches or keep_legacy):
        raise UsageError(
            "--sandbox, --flow, --match and --keep-legacy shape a fresh plan; "
            "they cannot change a saved plan file",
            hint="make a new plan with those flags: `pinmigrate plan --out FILE ...`",
        )
    pairs = parse_matches(matches)
    use_concurrency(app, concurrency, max_concurrency)
    app.use_flag("migration.disable_legacy", "--keep-legacy", False if keep_legacy else None)
    app.use_flag("migration.reconnect_timeout", "--reconnect-timeout", reconnect_timeout)
    use_wait_runs(app, wait_runs)
    settings = app.settings
    adobe = workflow.adobe_client(settings)
    if plan_file:
        # Only a plan this state dir sealed (or accepted after review) is carried out.
        key = load_key(settings.state_dir)
        plan = load_plan(Path(plan_file), org_id=settings.adobe.org_id, key=key)
    else:
        # Exactly what `pinmigrate plan` would show with the same flags.
        plan = build_plan(app, sandboxes=sandboxes, flows=flows, matches=pairs, adobe=adobe)
        if not app.json:
            render_plan(app.out, plan, details=details)
    if not plan.has_changes:
        _nothing_to_change(app, plan)
        return
    if not plan_file:
        app.confirm(
            f"Apply these {len(plan.actions)} change(s) to {plan.org_id}?", yes=yes, what="apply"
        )
    # HTTP retries show on the live line as they wait.
    with make_progress(app.err) as progress, observing(adobe.http, progress.retry):
        report = workflow.apply(
            settings,
            plan,
            adobe=adobe,
            logins=_logins(app),
            progress=progress,
            # A plan made with --wait-runs waits for runs whatever the flags say.
            wait_runs=settings.migration.wait_runs,
            run_timeout=run_timeout,
            reconnect_timeout=reconnect_wait(app),
            # The login's browser opener: BROWSER is honoured and a slow one never blocks.
            ask_person=ask_person(app.err, resolvers._open_browser if app.can_prompt() else None),
            note=app.note,
        )
    output_report(app, report)
    report.raise_if_failed()


def reconnect_wait(app: App) -> float:
    """``migration.reconnect_timeout``; unset, 900 s when a person is at the terminal, else 0."""
    from pinmigrate.settings import RECONNECT_TIMEOUT_AT_TERMINAL

    configured = app.settings.migration.reconnect_timeout
    if configured is not None:
        return configured
    return RECONNECT_TIMEOUT_AT_TERMINAL if app.can_prompt() else 0.0


def _logins(app: App) -> LoginSource:
    """The grants of the api reconnect path: a person signs in once for each account, at a
    terminal only; pinmigrate's own logins are never handed to Adobe."""
    from pinmigrate.logins import LoginStore
    from pinmigrate.oauth.grants import pinterest_client
    from pinmigrate.oauth.resolvers import AdobeGrants, resolver_for

    settings = app.settings
    store = LoginStore(settings.state_dir)
    client = pinterest_client(settings)
    return AdobeGrants(settings, store, client, resolver=resolver_for(app, settings, store, client))


def _nothing_to_change(app: App, plan: Plan) -> None:
    from pinmigrate.apply import ApplyReport
    from pinmigrate.workflow import running_holder

    report = ApplyReport(
        run_id="", results=[], blockers=list(plan.blockers), orphans=list(plan.orphans)
    )
    if app.json:
        payload = report.to_json()
        payload["run_id"] = None
        app.print_json(payload)
    else:
        app.note("Nothing to change: apply made no writes.")
    busy = running_holder(app.settings.state_dir)
    if busy is not None:
        app.note(f"Another run is in progress ({busy}); what it changes is not in this view.")
