"""``pinmigrate rollback [RUN_ID]``: undo the flow-state changes of an apply run.

The run is undone together with the earlier apply runs it carried on (a rerun after a
partial apply finishes the same migration step). Legacy flows the runs switched off are
switched back on first, then the new flows they switched on are switched off, each only
while it is still as the runs left it, and never so that a pair ends with both flows on.
Audiences added and accounts reconnected stay: undoing them would only break the new card
again.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import click

from pinmigrate.app import App
from pinmigrate.cli import global_options, pass_app
from pinmigrate.commands.pacing import concurrency_options, use_concurrency

if TYPE_CHECKING:
    from pinmigrate.actions import Action
    from pinmigrate.rollback import RollbackPlan


@click.command("rollback")
@click.argument("run_id", required=False)
@click.option("--yes", "-y", is_flag=True, help="Roll back without asking.")
@concurrency_options
@global_options
@pass_app
def command(
    app: App, run_id: str | None, yes: bool, concurrency: int | None, max_concurrency: int | None
) -> None:
    """Undo the flow-state changes of apply run RUN_ID (default: the latest that wrote).

    Earlier runs that RUN_ID carried on (it reran a partial apply) are undone with it. New
    flows the runs enabled are disabled and legacy flows they disabled are enabled again,
    each only if it is still in the state the runs left it in. Added audiences and
    reconnected accounts are left as they are. Needs --yes without a terminal or with
    --output json (else exit 5).
    """
    from pinmigrate import workflow
    from pinmigrate.report import make_progress, observing, output_report

    use_concurrency(app, concurrency, max_concurrency)
    settings = app.settings
    named = run_id
    plan = workflow.rollback_plan(settings, run_id)
    run_id = plan.run_id
    covered = f"run {run_id}" + (
        f" and the run(s) it carried on ({', '.join(plan.runs[1:])})" if plan.runs[1:] else ""
    )
    if plan.undone_by or not plan.actions:
        if app.json:
            _print_nothing(app, plan)
        elif plan.undone_by:
            were = "were" if plan.runs[1:] else "was"
            app.note(f"Nothing left to undo: {covered} {were} rolled back by run {plan.undone_by}.")
        else:
            app.note(f"Nothing to roll back: {covered} changed no flow state.")
            for line in plan.left_alone:
                app.note(f"Note: {line}")
        return

    if not app.json:
        app.out.print(f"Rollback of {covered}:", markup=False, soft_wrap=True)
        _preview(app, plan)
        if plan.left_alone:
            app.out.print(
                f"  left alone: {len(plan.left_alone)} audience or account change(s) "
                "(rollback undoes flow states only; listed at the end)",
                markup=False,
                soft_wrap=True,
            )
    app.confirm(
        f"Roll back {len(plan.actions)} flow-state change(s) of {covered}?",
        yes=yes,
        what="rollback",
        instead="",
        hint=f"run `pinmigrate rollback{f' {named}' if named else ''} --yes`",
    )
    adobe = workflow.adobe_client(settings)
    with (
        make_progress(app.err, description="rolling back") as progress,
        observing(adobe.http, progress.retry),
    ):
        report = workflow.roll_back(settings, plan, adobe=adobe, progress=progress)
    output_report(app, report)
    report.raise_if_failed("rollback")


def _preview(app: App, plan: RollbackPlan) -> None:
    """Each flow to switch, with its side (a few dozen at most), else counts per sandbox."""
    from pinmigrate.actions import EnableFlow
    from pinmigrate.report import LISTED_UP_TO

    def switch(action: Action) -> str:
        verb = "enable" if isinstance(action, EnableFlow) else "disable"
        return f"{verb} {plan.cards.get(action.id, 'new')} flow"

    if len(plan.actions) <= LISTED_UP_TO:
        for action in plan.actions:
            name = f"{action.target_name!r}" if action.target_name else action.target_id
            app.out.print(
                f"  {switch(action)} {name} ({action.sandbox}, {action.target_id})",
                markup=False,
                soft_wrap=True,
            )
        return
    counts = Counter((action.sandbox, switch(action)) for action in plan.actions)
    width = max(len(sandbox) for sandbox, _ in counts)
    for (sandbox, what), count in sorted(counts.items()):
        line = f"  {sandbox:<{width}}  {what + 's':<21} {count:>6}"
        app.out.print(line, markup=False, soft_wrap=True)


def _print_nothing(app: App, plan: RollbackPlan) -> None:
    """The JSON of a rollback that has nothing (left) to do: the report's shape, no run."""
    from pinmigrate.apply import ApplyReport

    report = ApplyReport(
        run_id="",
        results=[],
        kind="pinmigrate.rollback",
        extra={
            "rollback_of": plan.run_id,
            "covers": plan.runs or [plan.run_id],
            "left_alone": plan.left_alone,
            "undone_by": plan.undone_by,
        },
    )
    payload = report.to_json()
    payload["run_id"] = None
    app.print_json(payload)
