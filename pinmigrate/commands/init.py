"""``pinmigrate init [PATH]``: write a commented starter config."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import click

from pinmigrate.app import App
from pinmigrate.cli import global_options, pass_app
from pinmigrate.errors import UsageError
from pinmigrate.files import write_atomic


def example_config() -> str:
    return resources.files("pinmigrate").joinpath("data/config.example.toml").read_text("utf-8")


@click.command("init")
@click.argument("path", default="pinmigrate.toml", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@global_options
@pass_app
def command(app: App, path: str, force: bool) -> None:
    """Write a commented starter config to PATH (default ./pinmigrate.toml)."""
    target = Path(path)
    if target.exists() and not force:
        raise UsageError(f"{target} already exists", hint="pass --force to overwrite it")
    try:
        write_atomic(target, example_config(), mode=0o600)
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror}") from None
    if app.json:
        app.print_json({"schema_version": 1, "kind": "pinmigrate.init", "path": str(target)})
    else:
        app.note(
            f"Wrote {target}. Edit it, keep secrets in the environment, then run "
            "`pinmigrate doctor`."
        )
