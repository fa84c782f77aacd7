"""``pinmigrate discover``: both cards' accounts, flows and their pairing, read-only."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from pinmigrate.app import App
from pinmigrate.cli import global_options, pass_app


@click.command("discover")
@click.option(
    "--sandbox",
    "sandboxes",
    multiple=True,
    metavar="S",
    help="Only this sandbox (repeatable; default: every one of adobe.sandboxes).",
)
@global_options
@pass_app
def command(app: App, sandboxes: tuple[str, ...]) -> None:
    """Show both Pinterest cards: accounts (credential expiry), flows (state, audiences)
    and how legacy flows pair with their new twins. Reads only; changes nothing."""
    from pinmigrate import workflow
    from pinmigrate.render import inventory_json, render_inventory
    from pinmigrate.report import discovery_progress

    settings = app.settings
    adobe = workflow.adobe_client(settings)
    with discovery_progress(app.err, adobe.http) as progress:
        inventory = workflow.read_inventory(settings, adobe, sandboxes, progress=progress)
    now = datetime.now(UTC)
    pairing = workflow.pairing(settings, inventory, now)
    if app.json:
        app.print_json(inventory_json(inventory, pairing))
    else:
        render_inventory(app.out, inventory, pairing, now)
