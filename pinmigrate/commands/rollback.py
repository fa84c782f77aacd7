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
from pinmigrate.commands.apply import confirm, make_adobe, output_report, raise_if_failed
from pinmigrate.errors import UsageError


@click.command("rollback")
@click.argument("run_id", required=False)
@click.option("--yes", "-y", is_flag=True, help="Roll back without asking.")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    help="Parallel writes (default: migration.concurrency).",
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
    from pinmigrate.journal import Journal, StateLock, latest_run, new_run_id, run_chain, runs_dir
    from pinmigrate.report import make_progress
    from pinmigrate.rollback import rollback_plan, rollback_run

    settings = app.settings
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
    plan = rollback_plan(record, chain[1:])
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
            verb = "enable legacy" if action.kind == "enable_flow" else "disable new"
            name = f"{action.target_name!r}" if action.target_name else action.target_id
            app.out.print(f"  {verb} flow {name} ({action.sandbox})", markup=False)
        if plan.left_alone:
            app.out.print(
                f"  left alone: {len(plan.left_alone)} audience or account change(s) "
                "(rollback undoes flow states only; listed at the end)",
                markup=False,
            )
    confirm(
        app,
        f"Roll back {len(plan.actions)} flow-state change(s) of {covered}?",
        yes=yes,
        what="rollback",
        instead="",
    )

    adobe = make_adobe(settings)
    new_id = new_run_id()
    with StateLock(state_dir, new_id):
        journal = Journal(state_dir, new_id, kind="rollback")
        try:
            report = rollback_run(
                plan,
                adobe=adobe,
                settings=settings,
                journal=journal,
                concurrency=concurrency or settings.migration.concurrency,
                progress=make_progress(app.err, description="rolling back"),
            )
        finally:
            journal.close()
    output_report(app, report)
    raise_if_failed(report, "rollback")
