"""``pinmigrate rollback [RUN_ID]``: undo the flow-state changes of an apply run.

The run is undone together with the earlier apply runs it carried on (a rerun after a
partial apply finishes the same migration step). Legacy flows the runs switched off are
switched back on first, then the new flows they switched on are switched off, each only
while it is still as the runs left it, and never so that a pair ends with both flows on.
Audiences added and accounts reconnected stay: undoing them would only break the new card
again.
"""

from __future__ import annotations

import click

from pinmigrate.app import App
from pinmigrate.cli import global_options, pass_app


@click.command("rollback")
@click.argument("run_id", required=False)
@click.option("--yes", "-y", is_flag=True, help="Roll back without asking.")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    help="Parallel writes (sets migration.concurrency).",
)
@global_options
@pass_app
def command(app: App, run_id: str | None, yes: bool, concurrency: int | None) -> None:
    """Undo the flow-state changes of apply run RUN_ID (default: the latest that wrote).

    Earlier runs that RUN_ID carried on (it reran a partial apply) are undone with it. New
    flows the runs enabled are disabled and legacy flows they disabled are enabled again,
    each only if it is still in the state the runs left it in. Added audiences and
    reconnected accounts are left as they are. Needs --yes without a terminal or with
    --output json (else exit 5).
    """
    from pinmigrate import workflow
    from pinmigrate.actions import EnableFlow
    from pinmigrate.report import make_progress, output_report

    app.use_flag("migration.concurrency", "--concurrency", concurrency)
    settings = app.settings
    plan = workflow.rollback_plan(settings, run_id)
    run_id = plan.run_id
    covered = f"run {run_id}" + (
        f" and the run(s) it carried on ({', '.join(plan.runs[1:])})" if plan.runs[1:] else ""
    )
    if not plan.actions:
        if app.json:
            app.print_json(
                {
                    "schema_version": 1,
                    "kind": "pinmigrate.rollback",
                    "run_id": None,
                    "rollback_of": run_id,
                    "covers": plan.runs,
                    "results": [],
                    "summary": {"done": 0, "already_done": 0, "skipped": 0, "failed": 0},
                    "left_alone": plan.left_alone,
                }
            )
        else:
            app.note(f"Nothing to roll back: {covered} changed no flow state.")
            for line in plan.left_alone:
                app.note(f"Note: {line}")
        return

    if not app.json:
        app.out.print(f"Rollback of {covered}:", markup=False)
        for action in plan.actions:
            verb = "enable legacy" if isinstance(action, EnableFlow) else "disable new"
            name = f"{action.target_name!r}" if action.target_name else action.target_id
            app.out.print(f"  {verb} flow {name} ({action.sandbox})", markup=False)
        if plan.left_alone:
            app.out.print(
                f"  left alone: {len(plan.left_alone)} audience or account change(s) "
                "(rollback undoes flow states only; listed at the end)",
                markup=False,
            )
    app.confirm(
        f"Roll back {len(plan.actions)} flow-state change(s) of {covered}?",
        yes=yes,
        what="rollback",
        instead="",
    )
    adobe = workflow.adobe_client(settings)
    with make_progress(app.err, description="rolling back") as progress:
        adobe.http.observer = progress.retry
        report = workflow.roll_back(settings, plan, adobe=adobe, progress=progress)
    output_report(app, report)
    report.raise_if_failed("rollback")
