"""``pinmigrate plan``: the dry run. Reads Adobe and the login store; writes only ``--out``."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pinmigrate.app import App
from pinmigrate.cli import global_options, pass_app
from pinmigrate.errors import ExitCode, PinmigrateError, UsageError

if TYPE_CHECKING:
    from pinmigrate.adobe import AdobeClient
    from pinmigrate.logins import Login
    from pinmigrate.plan import Plan
    from pinmigrate.settings import Settings


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
        if matches.get(legacy, new) != new:
            raise UsageError(
                f"--match names two twins for legacy flow {legacy}: {matches[legacy]} and {new}"
            )
        matches[legacy] = new
    return matches


def build_plan(
    app: App,
    *,
    sandboxes: Sequence[str] = (),
    flows: Sequence[str] = (),
    matches: Mapping[str, str] | None = None,
    keep_legacy: bool = False,
    now: datetime | None = None,
    adobe: AdobeClient | None = None,
) -> Plan:
    """Discover, load logins and plan: what ``plan`` prints and ``apply`` without a file runs."""
    from pinmigrate.commands.discover import checked_sandboxes, read_inventory
    from pinmigrate.planner import PlanOptions, make_plan

    settings = app.settings
    settings.require_adobe()
    wanted = checked_sandboxes(settings, sandboxes)
    inventory = read_inventory(app, wanted, adobe=adobe)
    options = PlanOptions(
        sandboxes=wanted,
        flows=tuple(dict.fromkeys(flows)),
        matches=dict(matches or {}),
        keep_legacy=keep_legacy,
        now=now or datetime.now(UTC),
    )
    logins, warnings = stored_logins(settings)
    plan = make_plan(inventory, logins, settings, options)
    if _wants_environment_login(plan, settings):
        # Only now: making the environment's login refreshes (and so rotates) its token.
        env_login, problem = environment_login(app, settings)
        if problem:
            warnings.append(problem)
        if env_login is not None:
            others = [login for login in logins if login.user_id != env_login.user_id]
            plan = make_plan(inventory, [*others, env_login], settings, options)
    if warnings:
        plan = plan.model_copy(update={"warnings": [*warnings, *plan.warnings]}).sealed()
    return plan


def stored_logins(settings: Settings) -> tuple[list[Login], list[str]]:
    """The login store's logins; an unreadable store plans as if empty, with a warning."""
    from pinmigrate.logins import LoginStore

    try:
        return LoginStore(settings.state_dir).load(), []
    except PinmigrateError as exc:
        return [], [f"stored Pinterest logins were not used: {_line(exc)}"]


def environment_login(app: App, settings: Settings) -> tuple[Login | None, str | None]:
    """The login ``pinterest.refresh_token`` / ``access_token`` yields, or why there is none."""
    from pinmigrate.logins import LoginStore
    from pinmigrate.oauth.grants import environment_login as make_login
    from pinmigrate.oauth.grants import pinterest_client

    try:
        login = make_login(
            settings, LoginStore(settings.state_dir), pinterest_client(settings), notify=app.note
        )
    except PinmigrateError as exc:
        return None, f"the Pinterest login from the environment was not used: {_line(exc)}"
    return login, None


def _wants_environment_login(plan: Plan, settings: Settings) -> bool:
    pin = settings.pinterest
    has_token = any(
        t is not None and t.get_secret_value() for t in (pin.refresh_token, pin.access_token)
    )
    from pinmigrate.actions import ReconnectAccount

    return has_token and any(
        isinstance(a, ReconnectAccount) and a.details.needs_login for a in plan.actions
    )


def plan_json_parts(plan: Plan) -> Iterator[bytes]:
    """:meth:`Plan.to_json` as UTF-8, in pieces: the long lists go item by item.

    The same bytes as the whole document (indenting composes: a nested value's lines are
    its own lines, shifted right), without ever holding tens of megabytes of text at once.
    """
    from pydantic_core import to_json

    names = list(type(plan).model_fields)
    yield b"{\n"
    for index, name in enumerate(names):
        value = getattr(plan, name)
        end = b",\n" if index < len(names) - 1 else b"\n"
        head = b"  " + to_json(name) + b": "
        if isinstance(value, list) and value:
            yield head + b"[\n"
            last = len(value) - 1
            for position, item in enumerate(value):
                text = to_json(item, indent=2).replace(b"\n", b"\n    ")
                yield b"    " + text + (b",\n" if position < last else b"\n")
            yield b"  ]" + end
        else:
            yield head + to_json(value, indent=2).replace(b"\n", b"\n  ") + end
    yield b"}\n"


def write_plan_json(plan: Plan) -> None:
    """The plan on stdout, byte for byte what ``--out`` saves, streamed (plans can be large)."""
    stdout = sys.stdout
    stdout.flush()
    binary = getattr(stdout, "buffer", None)
    for part in plan_json_parts(plan):
        if binary is None:
            stdout.write(part.decode("utf-8"))
        else:
            binary.write(part)
    (binary or stdout).flush()


def _line(error: PinmigrateError) -> str:
    from pinmigrate.redact import redact

    return redact(error.line())


@click.command("plan")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Also save the plan to FILE, for `pinmigrate apply FILE`.",
)
@click.option(
    "--sandbox",
    "sandboxes",
    multiple=True,
    metavar="S",
    help="Only this sandbox (repeatable; default: every one of adobe.sandboxes).",
)
@click.option(
    "--flow",
    "flows",
    multiple=True,
    metavar="ID",
    help="Only the pair of this legacy or new flow (repeatable).",
)
@click.option(
    "--match",
    "matches",
    multiple=True,
    metavar="LEGACY_ID=NEW_ID",
    help="Pair these two flows (settles an ambiguous pairing; repeatable).",
)
@click.option("--keep-legacy", is_flag=True, help="Do not switch legacy flows off.")
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
    detailed_exitcode: bool,
) -> int:
    """Dry run: read both Pinterest cards and show what `apply` would change.

    \b
    Nothing is changed. Actions, in order: reconnect new-card accounts whose
    credentials are missing or expiring, add audiences missing on a new flow,
    enable the new flow, then switch its legacy twin off.
    """
    from pinmigrate.plan import save_plan
    from pinmigrate.render import render_plan

    pairs = parse_matches(matches)
    plan = build_plan(app, sandboxes=sandboxes, flows=flows, matches=pairs, keep_legacy=keep_legacy)
    if out:
        save_plan(plan, Path(out))
    if app.json:
        write_plan_json(plan)
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
