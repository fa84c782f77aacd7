"""``pinmigrate apply [PLAN_FILE]``: carry out a plan, journalled, under the state-dir lock.

A saved plan is the approval (as in terraform); without one, a fresh plan is shown and a
person at a terminal confirms it. Either way the executor re-reads every object first and
stops with exit 3, before any write, when the world no longer matches the plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pinmigrate.app import App
from pinmigrate.cli import global_options, pass_app
from pinmigrate.errors import ApplyFailed, ConfirmationError, UsageError

if TYPE_CHECKING:
    from pinmigrate.adobe import AdobeClient
    from pinmigrate.apply import ApplyReport
    from pinmigrate.journal import Journal
    from pinmigrate.plan import Plan
    from pinmigrate.settings import Settings


def show_plan(app: App, plan: Plan) -> None:
    """The plan as ``pinmigrate plan`` shows it (text mode only; JSON mode prints the result)."""
    from pinmigrate import render

    render.render_plan(app.out, plan)


def confirm(
    app: App, question: str, *, yes: bool, what: str, instead: str = " (or a plan file)"
) -> None:
    """Go ahead with ``--yes``; ask a person at a terminal; otherwise refuse (exit 5).

    JSON mode never asks: what is to be confirmed is not shown there, so a prompt would ask
    for a blind yes (terraform's ``-json`` likewise needs ``-auto-approve``)."""
    if yes:
        return
    if app.json:
        raise ConfirmationError(
            f"--output json needs --yes{instead}: JSON mode does not show what {what} would "
            "change, so there is nothing to confirm; nothing was changed",
            hint="pass --yes, or save a plan with `pinmigrate plan --out FILE` and apply FILE"
            if instead
            else "pass --yes, or run it in text mode to see it first",
        )
    if not app.can_prompt():
        raise ConfirmationError(
            f"{what} needs confirmation and this session cannot prompt "
            "(--no-input or no terminal on stdin); nothing was changed",
            hint="pass --yes, or save a plan with `pinmigrate plan --out FILE` and apply FILE",
        )
    if not click.confirm(question, default=False, err=True):
        raise ConfirmationError(f"{what} declined; nothing was changed")


def make_adobe(settings: Settings) -> AdobeClient:
    from pinmigrate.adobe import AdobeClient

    settings.require_adobe()
    return AdobeClient(settings)


def note_interrupted(app: App, state_dir: Path) -> dict[str, Any]:
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
    app.note(
        f"The previous apply (run {previous}) did not finish{detail}. "
        "Actions it completed will show as already done."
    )
    actions = sorted({str(w.get("action_id")) for w in interrupted})
    return {"resumes": previous, "unsure_actions": actions}


def output_report(app: App, report: ApplyReport) -> None:
    if app.json:
        app.print_json(report.to_json())
    else:
        from pinmigrate.report import render_report

        render_report(app.out, report)


def raise_if_failed(report: ApplyReport, what: str = "apply") -> None:
    counts = report.counts()
    if not report.ok:
        bad = counts["failed"] + counts["skipped"]
        raise ApplyFailed(
            f"{what} did not finish: {bad} of {len(report.results)} action(s) did not succeed "
            f"({counts['failed']} failed, {counts['skipped']} skipped); the report says why",
            hint="fix the cause and run it again: completed actions are not repeated",
        )
    if report.failed_runs:
        names = ", ".join(repr(r.flow_name) for r in report.failed_runs)
        raise ApplyFailed(
            f"every action succeeded, but the first run failed for {names}",
            hint="check the flows' run errors in the report or Adobe's monitoring UI",
        )


def nothing_to_change(app: App, plan: Plan) -> None:
    from pinmigrate.apply import ApplyReport

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


def running_holder(state_dir: Path) -> str | None:
    """Who holds the state dir's lock, when that process is still running (a quick check)."""
    import socket

    from pinmigrate.journal import StateLock, pid_alive

    holder = StateLock(state_dir, "").holder()
    if holder is None:
        return None
    if holder.host == socket.gethostname() and not pid_alive(holder.pid):
        return None
    return holder.describe()


@click.command("apply")
@click.argument("plan_file", required=False, type=click.Path(dir_okay=False))
@click.option("--yes", "-y", is_flag=True, help="Apply a fresh plan without asking.")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    help="Parallel writes (default: migration.concurrency).",
)
@click.option(
    "--wait-runs", is_flag=True, help="After enabling flows, wait for each one's first run."
)
@click.option(
    "--run-timeout",
    type=click.FloatRange(min=1),
    default=900.0,
    show_default=True,
    metavar="SECONDS",
    help="How long --wait-runs waits in total.",
)
@click.option(
    "--sandbox", "sandboxes", multiple=True, metavar="S", help="Fresh plan only: this sandbox."
)
@click.option("--flow", "flows", multiple=True, metavar="ID", help="Fresh plan only: this flow.")
@click.option(
    "--match",
    "matches",
    multiple=True,
    metavar="LEGACY_ID=NEW_ID",
    help="Fresh plan only: pair these two flows.",
)
@click.option("--keep-legacy", is_flag=True, help="Fresh plan only: leave legacy flows enabled.")
@global_options
@pass_app
def command(
    app: App,
    plan_file: str | None,
    yes: bool,
    concurrency: int | None,
    wait_runs: bool,
    run_timeout: float,
    sandboxes: tuple[str, ...],
    flows: tuple[str, ...],
    matches: tuple[str, ...],
    keep_legacy: bool,
) -> None:
    """Carry out a plan: PLAN_FILE (saved by `pinmigrate plan --out`), or a fresh one.

    A saved plan counts as approved. Without one, the fresh plan is shown and you are asked
    to confirm; with --no-input or without a terminal, --yes is required (else exit 5).
    Every object is re-read first: if anything the plan relied on changed, nothing is
    written (exit 3). Every write is journalled; if a run is interrupted, run apply again.
    """
    from pinmigrate.commands.plan import build_plan, parse_matches
    from pinmigrate.journal import Journal, StateLock, continued_run, new_run_id
    from pinmigrate.plan import load_plan

    settings = app.settings
    if plan_file and (sandboxes or flows or matches or keep_legacy):
        raise UsageError(
            "--sandbox, --flow, --match and --keep-legacy shape a fresh plan; "
            "they cannot change a saved plan file",
            hint="make a new plan with those flags: `pinmigrate plan --out FILE ...`",
        )
    pairs = parse_matches(matches)
    adobe = make_adobe(settings)
    if plan_file:
        plan = load_plan(Path(plan_file), org_id=settings.adobe.org_id)
    else:
        # Exactly what `pinmigrate plan` would show with the same flags.
        plan = build_plan(
            app,
            sandboxes=sandboxes,
            flows=flows,
            matches=pairs,
            keep_legacy=keep_legacy,
            adobe=adobe,
        )
        if not app.json:
            show_plan(app, plan)
    if not plan.has_changes:
        nothing_to_change(app, plan)
        return
    if not plan_file:
        confirm(
            app,
            f"Apply these {len(plan.actions)} change(s) to {plan.org_id}?",
            yes=yes,
            what="apply",
        )

    run_id = new_run_id()
    lock = StateLock(settings.state_dir, run_id)
    with lock:
        if lock.took_over is not None:
            app.note(f"Took over the lock of a run that is gone ({lock.took_over.describe()}).")
        resumes = note_interrupted(app, settings.state_dir)
        # A rerun after a partial apply carries it on; rollback undoes the two together.
        carried = continued_run(settings.state_dir, [a.id for a in plan.actions])
        resumes["continues"] = [carried] if carried else []
        journal = Journal(settings.state_dir, run_id)
        try:
            report = run_plan(
                app,
                plan,
                adobe,
                journal,
                concurrency,
                wait_runs=wait_runs,
                timeout=run_timeout,
                start_extra=resumes,
            )
        finally:
            journal.close()
    output_report(app, report)
    raise_if_failed(report)


def run_plan(
    app: App,
    plan: Plan,
    adobe: AdobeClient,
    journal: Journal,
    concurrency: int | None,
    *,
    wait_runs: bool,
    timeout: float,
    start_extra: Mapping[str, Any] | None = None,
) -> ApplyReport:
    from pinmigrate.apply import apply_plan
    from pinmigrate.logins import LoginStore
    from pinmigrate.oauth.grants import pinterest_client
    from pinmigrate.oauth.resolvers import LoginProvider, resolver_for
    from pinmigrate.report import make_progress

    settings = app.settings
    store = LoginStore(settings.state_dir)
    client = pinterest_client(settings)
    logins = LoginProvider(
        settings, store, client, resolver=resolver_for(app, settings, store, client)
    )
    return apply_plan(
        plan,
        adobe=adobe,
        settings=settings,
        logins=logins,
        journal=journal,
        concurrency=concurrency or settings.migration.concurrency,
        progress=make_progress(app.err),
        wait_runs=wait_runs,
        run_timeout=timeout,
        start_extra=start_extra,
    )
