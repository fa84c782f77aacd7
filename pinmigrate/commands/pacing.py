"""The two options of the commands that write (``apply``, ``rollback``): how many writes
go at once when the run starts, and how far the run may grow that (:mod:`pinmigrate.throttle`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

from pinmigrate.app import App

F = TypeVar("F", bound=Callable[..., object])


def concurrency_options(function: F) -> F:
    function = click.option(
        "--max-concurrency",
        type=click.IntRange(1, 64),
        metavar="N",
        help="The most writes at once the run grows to while answers stay fast "
        "(sets migration.max_concurrency; default 16, or --concurrency when only that is "
        "set; never below it).",
    )(function)
    return click.option(
        "--concurrency",
        type=click.IntRange(1, 64),
        metavar="N",
        help="Writes at once when the run starts (sets migration.concurrency; default 8), "
        "and the most unless --max-concurrency is set; halved on a 429 or 503.",
    )(function)


def use_concurrency(app: App, concurrency: int | None, max_concurrency: int | None) -> None:
    app.use_flag("migration.concurrency", "--concurrency", concurrency)
    app.use_flag("migration.max_concurrency", "--max-concurrency", max_concurrency)
