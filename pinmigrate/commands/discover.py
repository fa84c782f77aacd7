"""``pinmigrate discover``: both cards' accounts, flows and their pairing, read-only."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from pinmigrate.app import App
from pinmigrate.cli import global_options, pass_app
from pinmigrate.errors import UsageError

if TYPE_CHECKING:
    from pinmigrate.adobe import AdobeClient
    from pinmigrate.discovery import Progress
    from pinmigrate.inventory import Inventory
    from pinmigrate.settings import Settings


def checked_sandboxes(settings: Settings, wanted: Sequence[str]) -> tuple[str, ...]:
    """``--sandbox`` values, lower-cased; each must be one of ``adobe.sandboxes``."""
    names = tuple(dict.fromkeys(name.strip().lower() for name in wanted))
    known = settings.adobe.sandboxes
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UsageError(
            f"unknown sandbox {', '.join(unknown)} (--sandbox)",
            hint=f"configured sandboxes (adobe.sandboxes): {', '.join(known)}",
        )
    return names


@contextmanager
def discovery_progress(app: App) -> Iterator[Progress | None]:
    """A spinner on stderr while Adobe is read, when stderr is a terminal; else silence."""
    console = app.err
    if not console.is_terminal:
        yield None
        return
    with console.status("Reading both Pinterest cards from Adobe...") as status:

        def report(message: str) -> None:
            status.update(f"Reading both Pinterest cards from Adobe: {message}")

        yield report


def read_inventory(
    app: App, sandboxes: Sequence[str] = (), *, adobe: AdobeClient | None = None
) -> Inventory:
    """Settings, Adobe client and discovery, with progress on stderr.

    ``adobe``: the caller's client, so a command that also writes fetches one IMS token.
    """
    from pinmigrate.adobe import AdobeClient
    from pinmigrate.discovery import discover

    settings = app.settings
    settings.require_adobe()
    wanted = checked_sandboxes(settings, sandboxes)
    adobe = adobe or AdobeClient(settings)
    with discovery_progress(app) as progress:
        return discover(adobe, settings, wanted or None, progress=progress)


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
    from pinmigrate.planner import PlanOptions, make_plan
    from pinmigrate.render import inventory_json, render_inventory

    inventory = read_inventory(app, sandboxes)
    now = datetime.now(UTC)
    pairing = make_plan(inventory, [], app.settings, PlanOptions(now=now))
    if app.json:
        app.print_json(inventory_json(inventory, pairing))
    else:
        render_inventory(app.out, inventory, pairing, now)
