"""``pinmigrate show PLAN_FILE``: render a saved plan. Needs no config and reads no API."""

from __future__ import annotations

from pathlib import Path

import click

from pinmigrate.app import App
from pinmigrate.cli import global_options, pass_app


@click.command("show")
@click.argument("plan_file", metavar="PLAN_FILE", type=click.Path(dir_okay=False))
@global_options
@pass_app
def command(app: App, plan_file: str) -> None:
    """Render a plan saved with `pinmigrate plan --out FILE` (text, or --output json).

    The file is checked strictly: a wrong kind or schema version, or any edit by
    hand (the fingerprint no longer matches), is refused with exit 64.
    """
    from pinmigrate.plan import json_parts, load_plan
    from pinmigrate.render import render_plan

    plan = load_plan(Path(plan_file))
    if app.json:
        app.print_json_parts(json_parts(plan))
    else:
        render_plan(app.out, plan)
