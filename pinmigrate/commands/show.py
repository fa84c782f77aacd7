"""``pinmigrate show PLAN_FILE [--accept]``: render a saved plan; accept one made elsewhere.

Needs no config and reads no API. ``--accept`` is the deliberate way to let ``apply`` carry
out a plan this state dir did not seal (made with another state dir, or saved before plans
were sealed): the plan is shown, a person confirms, and the file is sealed with this state
dir's plan key (:mod:`pinmigrate.plankey`).
"""

from __future__ import annotations

from pathlib import Path

import click

from pinmigrate.app import App
from pinmigrate.cli import global_options, pass_app
from pinmigrate.commands.planning import details_option


@click.command("show")
@click.argument("plan_file", metavar="PLAN_FILE", type=click.Path(dir_okay=False))
@click.option(
    "--accept",
    is_flag=True,
    help="After showing it, seal a plan made elsewhere (another state dir, or an older "
    "pinmigrate) with this state dir's key, so that `apply PLAN_FILE` carries it out.",
)
@click.option("--yes", "-y", is_flag=True, help="With --accept: accept without asking.")
@details_option
@global_options
@pass_app
def command(app: App, plan_file: str, accept: bool, yes: bool, details: bool) -> None:
    """Render a plan saved with `pinmigrate plan --out FILE` (text, or --output json).

    The file is checked strictly: a wrong kind or schema version, or any edit by
    hand (the fingerprint no longer matches), is refused with exit 64. A plan made
    with another state dir is shown with a note: `apply` refuses it until you review
    it and accept it with `pinmigrate show PLAN_FILE --accept`.
    """
    from pinmigrate.plan import json_parts, load_plan, save_plan, seal_of, seal_problem
    from pinmigrate.plankey import load_key
    from pinmigrate.render import render_plan

    if yes and not accept:
        from pinmigrate.errors import UsageError

        raise UsageError("--yes goes with --accept", hint="add --accept, or leave out --yes")
    path = Path(plan_file)
    state_dir = app.settings.state_dir
    key = load_key(state_dir)
    plan = load_plan(path, key=key, review=True)
    origin = seal_of(plan, key)
    problem = seal_problem(path, plan.fingerprint, key)

    def confirm() -> None:
        app.confirm(
            f"{problem}. Accept it as reviewed and seal it with this state dir's key, so "
            f"that `pinmigrate apply {path}` carries it out?",
            yes=yes,
            what="accepting a plan made elsewhere",
            instead="",
        )

    accepting = accept and origin != "here"
    if app.json:
        if accepting:
            confirm()  # JSON mode never asks: without --yes, refuse before printing
        app.print_json_parts(json_parts(plan))
    else:
        render_plan(app.out, plan, details=details)
    if origin == "here":
        if accept:
            app.note(f"{path} is already sealed by this state dir: nothing to accept.")
        return
    if not accept:
        app.note(
            f"Note: {problem}; `pinmigrate apply {path}` refuses it until you accept it "
            f"after review: `pinmigrate show {path} --accept`."
        )
        return
    if not app.json:
        confirm()
    save_plan(plan.sealed(load_key(state_dir, create=True)), path)
    app.note(f"Accepted: {path} is sealed with this state dir's key ({state_dir}).")
