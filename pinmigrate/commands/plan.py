"""``pinmigrate plan``: the dry run. Reads Adobe and the login store; writes only ``--out``."""

from __future__ import annotations

from pathlib import Path

import click

from pinmigrate.app import App
from pinmigrate.cli import global_options, pass_app
from pinmigrate.commands.planning import (
    build_plan,
    parse_matches,
    plan_shaping,
    use_wait_runs,
    wait_runs_option,
)
from pinmigrate.errors import ExitCode


@click.command("plan")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Also save the plan to FILE, for `pinmigrate apply FILE`.",
)
@plan_shaping()
@wait_runs_option
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when there is nothing to change, 2 when changes are pending.",
)
@global_options
@pass_app
def command(
    app: App,
    out: str | None,
    sandboxes: tuple[str, ...],
    flows: tuple[str, ...],
    matches: tuple[str, ...],
    keep_legacy: bool,
    wait_runs: bool | None,
    detailed_exitcode: bool,
) -> int:
    """Dry run: read both Pinterest cards and show what `apply` would change.

    \b
    Nothing is changed. Actions, in order: reconnect new-card accounts whose
    credentials are missing or expiring, add audiences missing on a new flow,
    enable the new flow, then switch its legacy twin off (with --wait-runs,
    only once the new flow's first run succeeded).
    """
    from pinmigrate.plan import check_plan_path, json_parts, save_plan
    from pinmigrate.render import render_plan

    if out:
        check_plan_path(Path(out))
    pairs = parse_matches(matches)
    app.use_flag("migration.disable_legacy", "--keep-legacy", False if keep_legacy else None)
    use_wait_runs(app, wait_runs)
    plan = build_plan(app, sandboxes=sandboxes, flows=flows, matches=pairs)
    if out:
        save_plan(plan, Path(out))
    if app.json:
        app.print_json_parts(json_parts(plan))
    else:
        render_plan(app.out, plan)
    if out:
        if plan.has_changes:
            app.note(f"Saved the plan to {out}; carry it out with `pinmigrate apply {out}`.")
        else:
            app.note(f"Saved the plan to {out} (nothing to change).")
    if detailed_exitcode and plan.has_changes:
        return ExitCode.CHANGES_PENDING
    return ExitCode.OK
