"""What ``plan`` and ``apply`` share: the options that shape a plan, declared once, and
making the plan they ask for."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from pinmigrate.app import App
from pinmigrate.errors import UsageError
from pinmigrate.ids import checked_id

if TYPE_CHECKING:
    from pinmigrate.adobe import AdobeClient
    from pinmigrate.plan import Plan

F = TypeVar("F", bound=Callable[..., Any])


def parse_matches(values: Sequence[str]) -> dict[str, str]:
    """``--match LEGACY_ID=NEW_ID`` values as a mapping; anything else is a usage error."""
    matches: dict[str, str] = {}
    for value in values:
        legacy, sep, new = value.partition("=")
        legacy, new = legacy.strip(), new.strip()
        if not sep or not legacy or not new or "=" in new:
            raise UsageError(
                f"--match {value!r} is not LEGACY_ID=NEW_ID",
                hint="e.g. --match 3f2a...=9c1b... (ids from `pinmigrate discover`)",
            )
        checked_id(legacy, "--match legacy flow id")
        checked_id(new, "--match new flow id")
        if matches.get(legacy, new) != new:
            raise UsageError(
                f"--match names two twins for legacy flow {legacy}: {matches[legacy]} and {new}"
            )
        matches[legacy] = new
    return matches


def plan_shaping(prefix: str = "") -> Callable[[F], F]:
    """``--sandbox``, ``--flow``, ``--match`` and ``--keep-legacy``; ``prefix`` starts each
    help text (``apply`` says they shape a fresh plan only)."""

    def decorate(function: F) -> F:
        options = [
            click.option(
                "--sandbox",
                "sandboxes",
                multiple=True,
                metavar="S",
                help=f"{prefix}Only this sandbox (repeatable; default: every one of "
                "adobe.sandboxes).",
            ),
            click.option(
                "--flow",
                "flows",
                multiple=True,
                metavar="ID|NAME",
                help=f"{prefix}Only the pair of this legacy or new flow, by id or by exact name "
                "(a name of several flows is refused; repeatable).",
            ),
            click.option(
                "--match",
                "matches",
                multiple=True,
                metavar="LEGACY_ID=NEW_ID",
                help=f"{prefix}Pair these two flows (settles an ambiguous pairing; repeatable).",
            ),
            click.option(
                "--keep-legacy",
                is_flag=True,
                help=f"{prefix}Do not switch legacy flows off (sets migration.disable_legacy "
                "to false).",
            ),
        ]
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def wait_runs_option(function: F) -> F:
    """``--wait-runs``, which ``plan`` writes into the plan and ``apply`` also honours for a
    saved plan made without it (waiting is the stricter order, so always safe)."""
    return click.option(
        "--wait-runs",
        is_flag=True,
        default=None,
        help="Switch each legacy flow off only after its twin's first run after enabling "
        "succeeded; a failed or late run leaves the legacy flow on (sets migration.wait_runs).",
    )(function)


def use_wait_runs(app: App, wait_runs: bool | None) -> None:
    """``--wait-runs`` as the setting it sets (unset: the configured value stands)."""
    app.use_flag("migration.wait_runs", "--wait-runs", True if wait_runs else None)


def details_option(function: F) -> F:
    """``--details``: every action of a large plan, in text (JSON always has them all).

    The number is ``render.SUMMARY_ABOVE``, written out so that ``--help`` needs no rich."""
    return click.option(
        "--details",
        is_flag=True,
        help="List every action, one line per flow, even when the plan has more than 50 "
        "actions or pairs (then it is shown grouped by account). Text output only: JSON "
        "always lists every action.",
    )(function)


def build_plan(
    app: App,
    *,
    sandboxes: Sequence[str] = (),
    flows: Sequence[str] = (),
    matches: Mapping[str, str] | None = None,
    adobe: AdobeClient | None = None,
) -> Plan:
    """The plan these flags ask for (``matches`` from :func:`parse_matches`), with discovery
    progress on stderr."""
    from pinmigrate import workflow
    from pinmigrate.report import discovery_progress

    for flow in flows:
        if not flow.strip():
            # An id or a name (compared in the inventory, never sent): only empty is refused.
            raise UsageError(
                f"refusing --flow {flow!r}: it is empty", hint="give a flow id or name"
            )
    request = workflow.PlanRequest(sandboxes=sandboxes, flows=flows, matches=dict(matches or {}))
    settings = app.settings
    adobe = adobe or workflow.adobe_client(settings)
    with discovery_progress(app.err, adobe.http) as progress:
        return workflow.build_plan(settings, adobe, request, progress=progress, note=app.note)
