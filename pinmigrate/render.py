"""Text (rich) and JSON renderings of inventories and plans.

Plans read summary first, then what needs a person (blockers, logins), then each sandbox
(one row per flow with all its changes; a plan of more than ``SUMMARY_ABOVE`` actions or
pairs: one row per new-card account with its counts, unless asked for details), then the
legacy flows that will be switched off, so the only destructive step is never buried, and
the summary line again last, right above any prompt. One symbol per action kind, explained
in a legend. A table is printed only where it fits the console without breaking a cell;
else each row is one line, wrapped between words, so an id or a name is never split.
Everything user-supplied is printed as plain text (never parsed as rich markup). Colour is
the console's business: ``App.out`` turns it off for pipes, ``NO_COLOR`` and ``--no-color``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pinmigrate.actions import (
    KIND_ORDER,
    Action,
    AddAudiences,
    AudienceRef,
    DisableFlow,
    EnableFlow,
    ReconnectAccount,
)
from pinmigrate.errors import listed
from pinmigrate.inventory import Account, Card, CardSpec, Flow, Inventory, SandboxInventory
from pinmigrate.moments import aware, iso
from pinmigrate.plan import CardRef, Pair, Plan

#: action kind -> (symbol, words, style)
KIND_STYLE: dict[str, tuple[str, str, str]] = {
    "reconnect_account": ("~", "reconnect account", "yellow"),
    "add_audiences": ("+", "add audiences", "green"),
    "enable_flow": (">", "enable flow", "green"),
    "disable_flow": ("-", "disable legacy flow", "red"),
}
#: action kind -> its column in a plan's per-account counts
SHORT_WORDS = {
    "reconnect_account": "reconnect",
    "add_audiences": "audiences",
    "enable_flow": "enable",
    "disable_flow": "disable",
}
BLOCKED = ("!", "blocked", "bold red")
ORPHAN = ("?", "orphan (no twin)", "yellow")
#: A plan with more actions or pairs than this is shown grouped by account (counts per kind)
#: unless ``--details`` is given; blockers, orphans, reconnects and warnings are always listed.
SUMMARY_ABOVE = 50
#: Audiences named on a plan row (``+5: A (a1), B (a2), C (a3) and 2 more``).
AUDIENCES_NAMED = 3
DETAILS_HINT = "`pinmigrate plan --details` (or `show PLAN --details`) lists every action."
#: A width no table reaches: measuring against it gives a table's unwrapped width.
_UNBOUNDED = 1_000_000
CARDS = (("legacy", "Legacy card"), ("new", "New card"))
#: Pairs with nothing to do are named one by one up to this many per sandbox, then counted.
QUIET_PAIRS_NAMED = 10
#: Above this many rows a table is printed as aligned lines: rich measures every cell of a
#: Table before printing it, which took most of a 20,000-flow plan's time and memory.
LARGE_TABLE = 300
STATUS_WORDS = {
    "migrate": "to migrate",
    "migrated": "migrated",
    "legacy_disabled": "legacy flow disabled",
    "blocked": "blocked",
    "excluded": "excluded",
}
AUTH_LOGIN = "pinmigrate auth login"


# -- small pieces ---------------------------------------------------------------------------


def describe_expiry(expires_at: datetime | None, now: datetime) -> str:
    """``missing``, ``expired 2d ago``, ``in 3d`` (hours, then minutes, under a day)."""
    if expires_at is None:
        return "missing"
    delta = aware(expires_at) - aware(now)
    span = _span(abs(delta))
    return f"in {span}" if delta > timedelta(0) else f"expired {span} ago"


def _span(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds >= 86400:
        return f"{round(seconds / 86400)}d"
    if seconds >= 3600:
        return f"{round(seconds / 3600)}h"
    return f"{max(1, round(seconds / 60))}m"


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return aware(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return None


def _plural(count: int, word: str, many: str | None = None) -> str:
    return f"{count} {word if count == 1 else (many or word + 's')}"


def _text(value: object, style: str = "") -> Text:
    return Text(str(value), style=style)


def _say(console: Console, line: Text | None = None) -> None:
    """One line of prose: word-wrapped on a terminal (a word, an id, is never cut there);
    never wrapped in a pipe or file, so that it greps whole."""
    console.print(line if line is not None else "", soft_wrap=not console.is_terminal)


def _column_widths(columns: Sequence[str], rows: Sequence[list[Text]]) -> list[int]:
    widths = [cell_len(c) for c in columns]
    for row in rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], cell.cell_len)
    return widths


def _print_rows(console: Console, columns: Sequence[str], rows: Sequence[list[Text]]) -> None:
    """A table's header and rows as aligned lines, each printed as soon as it is made."""
    widths = _column_widths(columns, rows)

    def line(cells: Sequence[Text]) -> Text:
        out = Text()
        for index, cell in enumerate(cells):
            if index:
                out.append("  ")
            out.append_text(cell)
            if index < len(cells) - 1:
                out.append(" " * (widths[index] - cell.cell_len))
        out.rstrip()
        return out

    console.print(line([Text(c, style="bold") for c in columns]), soft_wrap=True)
    console.print("─" * (sum(widths) + 2 * (len(widths) - 1)), soft_wrap=True)
    for row in rows:
        console.print(line(row), soft_wrap=True)


def _table(*columns: str) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        header_style="bold",
    )
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def legend() -> str:
    parts = [f"{sym} {words}" for sym, words, _ in (*KIND_STYLE.values(), BLOCKED, ORPHAN)]
    return "Legend: " + "   ".join(parts)


# -- plans ----------------------------------------------------------------------------------


def summary_line(plan: Plan) -> str:
    """``Plan: 3 to reconnect, 1 to add audiences, 4 to enable, 4 to disable; 1 blocked, ...``"""
    s = plan.summary
    if not plan.actions:
        head = "No changes: nothing to do"
    else:
        head = (
            f"Plan: {s.get('reconnect_account', 0)} to reconnect, "
            f"{s.get('add_audiences', 0)} to add audiences, "
            f"{s.get('enable_flow', 0)} to enable, {s.get('disable_flow', 0)} to disable"
        )
    return f"{head}; {s.get('blocked', 0)} blocked, {_plural(s.get('orphans', 0), 'orphan')}."


def is_large(plan: Plan) -> bool:
    """More actions or pairs than :data:`SUMMARY_ABOVE`: shown grouped unless asked for details."""
    return len(plan.actions) > SUMMARY_ABOVE or len(plan.pairs) > SUMMARY_ABOVE


def disable_condition(twin_flow_id: str | None = None, *, waits_for_run: bool = False) -> str:
    """When a legacy flow is switched off (one place for the words): ``after its twin n1 is
    on``, or with a verified cutover ``after its twin n1's first run succeeds``."""
    twin = f" {twin_flow_id}" if twin_flow_id else ""
    if waits_for_run:
        return f"after its twin{twin}'s first run succeeds"
    return f"after its twin{twin} is on"


def audience_words(audiences: Sequence[AudienceRef]) -> str:
    """``+2: Loyalty members (seg-1), VIP (seg-2)``; past :data:`AUDIENCES_NAMED`, counted."""
    named = [f"{a.name} ({a.id})" if a.name else a.id for a in audiences[:AUDIENCES_NAMED]]
    more = len(audiences) - len(named)
    return f"+{len(audiences)}: {', '.join(named)}" + (f" and {more} more" if more > 0 else "")


def render_plan(console: Console, plan: Plan, *, details: bool = False) -> None:
    """The plan as text: summary, blockers, logins, each sandbox, orphans, warnings, switch-offs,
    and the summary line again last, right above any prompt.

    A plan of more than :data:`SUMMARY_ABOVE` actions or pairs shows each sandbox grouped by
    new-card account (counts per kind) unless ``details``; blockers, orphans, reconnects and
    warnings are always listed in full. Each flow is on one line with all its changes; only a
    small plan lists its switch-offs again at the end.
    """
    made = _parse_time(plan.created_at) or datetime.now(UTC)
    large = is_large(plan)
    grouped = large and not details
    _say(
        console,
        _text(
            f"Plan for {plan.org_id}, sandbox{'es' if len(plan.sandboxes) != 1 else ''} "
            f"{', '.join(plan.sandboxes) or '(none)'} (made {plan.created_at})",
            "bold",
        ),
    )
    _say(console, _text(summary_line(plan), "bold"))
    counts = Counter(a.kind for a in plan.actions)
    for kind in KIND_ORDER:
        symbol, words, style = KIND_STYLE[kind]
        _say(console, _text(f"  {symbol} {words:<22}{counts.get(kind, 0):>6}", style))
    _say(console, _text(f"  {BLOCKED[0]} {'blocked':<22}{len(plan.blockers):>6}", BLOCKED[2]))
    _say(console, _text(f"  {ORPHAN[0]} {'orphans':<22}{len(plan.orphans):>6}", ORPHAN[2]))

    if plan.blockers:
        _say(console)
        _say(
            console,
            _text(
                f"Blocked ({len(plan.blockers)}): nothing is planned for these until you decide",
                BLOCKED[2],
            ),
        )
        for blocker in plan.blockers:
            _say(
                console,
                _text(
                    f"  ! {blocker.sandbox}  {blocker.flow_name} ({blocker.flow_id}): "
                    f"{blocker.message}",
                    "red",
                ),
            )
            if blocker.candidates:
                _say(console, _text(f"      candidates: {', '.join(blocker.candidates)}"))

    reconnects = [a for a in plan.actions if isinstance(a, ReconnectAccount)]
    _render_reconnect_notes(console, reconnects)

    for sandbox in plan.sandboxes:
        _render_plan_sandbox(console, plan, sandbox, made, grouped=grouped)

    if plan.orphans:
        _say(console)
        _say(
            console,
            _text(f"Orphans: {_plural(len(plan.orphans), 'legacy flow')} with no twin", "yellow"),
        )
        for orphan in plan.orphans:
            _say(
                console,
                _text(
                    f"  ? {orphan.sandbox}  {orphan.flow_name} ({orphan.flow_id}), ad account "
                    f"{orphan.advertiser_id or 'none'}, {orphan.state or 'state unknown'}: "
                    f"{orphan.reason}"
                ),
            )

    if plan.warnings:
        _say(console)
        _say(console, _text(f"Warnings ({len(plan.warnings)})", "yellow"))
        for warning in plan.warnings:
            _say(console, _text(f"  - {warning}", "yellow"))

    disables = [a for a in plan.actions if isinstance(a, DisableFlow)]
    _say(console)
    if disables and large:
        where = "`--details` lists them" if grouped else "the rows marked - above"
        _say(
            console,
            _text(
                f"Will switch off {_plural(len(disables), 'legacy flow')}, each "
                f"{disable_condition(waits_for_run=all(d.details.waits_for_run for d in disables))}"
                f" ({where}).",
                "bold red",
            ),
        )
    elif disables:
        _say(
            console, _text(f"Will switch off {_plural(len(disables), 'legacy flow')}:", "bold red")
        )
        for disable in disables:
            when = disable_condition(
                disable.precondition.twin_flow_id or "?",
                waits_for_run=disable.details.waits_for_run,
            )
            _say(
                console,
                _text(
                    f"  - {disable.sandbox}  {disable.target_name} ({disable.target_id}), {when}",
                    "red",
                ),
            )
    elif plan.actions:
        _say(console, _text("No legacy flow will be switched off."))
    if not plan.actions:
        _say(console, _text("Nothing to change.", "bold"))
    _say(console, _text(legend(), "dim"))
    # Terraform's habit: the summary is the last thing read, right above any prompt.
    _say(console)
    _say(console, _text(summary_line(plan), "bold"))
    if grouped and plan.actions:
        _say(console, _text(DETAILS_HINT))


def _render_reconnect_notes(console: Console, reconnects: list[ReconnectAccount]) -> None:
    """How the reconnects will be done, and what the pre-flight could not confirm."""
    by_person = [a for a in reconnects if a.details.via != "api"]
    by_api = [a for a in reconnects if a.details.via == "api"]
    if by_person:
        _say(console)
        _say(
            console,
            _text(
                f"Reconnect in Adobe: {_plural(len(by_person), 'account')} "
                f"{'needs' if len(by_person) == 1 else 'need'} Reconnect OAuth by a person "
                "(Destinations > Accounts, Edit details, Reconnect OAuth); apply names them, "
                "opens the page and carries on as each is renewed",
                "bold yellow",
            ),
        )
        unchecked = [a for a in by_person if a.details.preflight == "not_checked"]
        if unchecked:
            _say(
                console,
                _text(
                    f"  Pre-flight not checked for {_plural(len(unchecked), 'account')}: "
                    f"`{AUTH_LOGIN}` as the Pinterest user who will reconnect them checks that "
                    "they reach every ad account (optional)."
                ),
            )
    unserved = [a for a in by_api if a.details.needs_login]
    if unserved:
        _say(console)
        _say(
            console,
            _text(
                f"Needs a Pinterest login: {_plural(len(unserved), 'account')} to reconnect "
                "through the API have no stored login that covers their ad accounts",
                "bold yellow",
            ),
        )
        for action in unserved:
            ids = ", ".join(action.details.advertiser_ids) or "unknown ad accounts"
            _say(console, _text(f"  ~ {action.sandbox}  {action.target_name}: ad accounts {ids}"))
        _say(
            console,
            _text(
                f"  Run `{AUTH_LOGIN}` as a Pinterest user with access to them (or set "
                "PINMIGRATE_PINTEREST_REFRESH_TOKEN), then plan again."
            ),
        )


def _preflight_cell(action: ReconnectAccount) -> Text:
    details = action.details
    if details.via == "api" and details.preflight is None:
        login = details.login
        return _text(f"user {login}") if login else _text("NEEDS LOGIN", "bold yellow")
    if details.preflight == "ok":
        return _text(f"ok: {details.preflight_user or details.login}", "green")
    if details.preflight == "missing_access":
        missing = ", ".join(details.missing_access or [])
        return _text(f"{details.preflight_user} lacks {missing}", "bold yellow")
    return _text("not checked")


def _render_plan_sandbox(
    console: Console, plan: Plan, sandbox: str, made: datetime, *, grouped: bool
) -> None:
    actions = [a for a in plan.actions if a.sandbox == sandbox]
    pairs = [p for p in plan.pairs if p.sandbox == sandbox]
    by_target: dict[str, list[Action]] = defaultdict(list)
    reconnect_of: dict[str, ReconnectAccount] = {}
    for action in actions:
        by_target[action.target_id].append(action)
        if isinstance(action, ReconnectAccount):
            for flow_id in action.details.flows:
                reconnect_of[flow_id] = action
    busy = [p for p in pairs if p.status in ("migrate", "blocked")]
    quiet = [p for p in pairs if p.status not in ("migrate", "blocked")]

    _say(console)
    _say(
        console,
        _text(
            f"Sandbox {sandbox}: {_plural(len(actions), 'action')}, {_plural(len(pairs), 'pair')}",
            "bold",
        ),
    )
    cards = next((c for c in plan.cards if c.sandbox == sandbox), None)
    if cards is not None:
        for line in card_lines(cards.legacy, cards.new):
            _say(console, _text(line, "dim"))
    if grouped:
        _render_accounts(console, actions, reconnect_of)
    elif busy:
        columns = ["", "Flow", "Ad account", "Legacy flow", "New flow", "Audiences"]
        rows = [_pair_row(pair, by_target, reconnect_of) for pair in busy]
        _print_fitted(console, columns, rows, optional=("Legacy flow id", "New flow id"))

    reconnects = [a for a in actions if isinstance(a, ReconnectAccount)]
    if reconnects:
        columns = ["", "Account to reconnect", "Ad accounts", "Credentials", "Pre-flight", "Flows"]
        rows = []
        for action in reconnects:
            expires = _parse_time(action.precondition.expires_at)
            rule = action.details.expiry_rule
            credentials = describe_expiry(expires, made)
            if rule and rule not in ("expiresAt", "none"):
                credentials += f" ({rule})"
            rows.append(
                [
                    _text("~", KIND_STYLE["reconnect_account"][2]),
                    _text(action.target_name or action.target_id),
                    _text(", ".join(action.details.advertiser_ids) or "none"),
                    _text(credentials, "red" if expires is None else ""),
                    _preflight_cell(action),
                    _text(len(action.details.flows)),
                    _text(action.target_id),
                ]
            )
        _print_fitted(console, columns, rows, optional=("Account id",))

    if quiet:
        if len(quiet) <= QUIET_PAIRS_NAMED:
            named = ", ".join(
                f"{p.legacy_flow_name} ({STATUS_WORDS.get(p.status, p.status)})" for p in quiet
            )
            _say(console, _text(f"  Nothing to do for {_plural(len(quiet), 'pair')}: {named}"))
        else:
            counts = Counter(STATUS_WORDS.get(p.status, p.status) for p in quiet)
            listed = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
            _say(
                console,
                _text(
                    f"  Nothing to do for {_plural(len(quiet), 'pair')} ({listed}); "
                    "`pinmigrate discover` or --output json lists them"
                ),
            )


def _render_accounts(
    console: Console, actions: Sequence[Action], reconnect_of: dict[str, ReconnectAccount]
) -> None:
    """One row per new-card account: its ad accounts and how many actions of each kind."""
    account_of: dict[str, str] = {f: a.target_id for f, a in reconnect_of.items()}
    names: dict[str, str] = {a.target_id: a.target_name for a in reconnect_of.values()}
    for action in actions:
        if isinstance(action, EnableFlow) and action.details.account_id:
            account_of.setdefault(action.target_id, action.details.account_id)
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    advertisers: dict[str, set[str]] = defaultdict(set)
    for action in actions:
        if isinstance(action, ReconnectAccount):
            account = action.target_id
            names[account] = action.target_name
            advertisers[account].update(action.details.advertiser_ids)
        else:
            flow = action.target_id
            if isinstance(action, DisableFlow):
                flow = action.precondition.twin_flow_id or ""
            account = account_of.get(flow, "")
            advertiser = getattr(action.details, "advertiser_id", None)
            if advertiser:
                advertisers[account].add(advertiser)
        counts[account][action.kind] += 1
    if not counts:
        return
    columns = ["New-card account", "Ad accounts"]
    columns += [f"{KIND_STYLE[k][0]} {SHORT_WORDS[k]}" for k in KIND_ORDER]
    rows = []
    for account in sorted(counts, key=lambda a: (a == "", names.get(a, ""), a)):
        if not account:
            label = "account not recorded in the plan"
        elif names.get(account):
            label = f"{names[account]} ({account})"
        else:
            label = account
        rows.append(
            [
                _text(label),
                _text(listed(sorted(advertisers[account]), limit=AUDIENCES_NAMED) or "none"),
                *(_text(counts[account].get(k, 0) or "", KIND_STYLE[k][2]) for k in KIND_ORDER),
            ]
        )
    _print_fitted(console, columns, rows)


def _print_fitted(
    console: Console,
    columns: Sequence[str],
    rows: Sequence[list[Text]],
    optional: Sequence[str] = (),
) -> None:
    """Rows as a table where it fits the console without breaking a cell, with the
    ``optional`` columns (ids: each row's last cells) only where they fit too; else one
    labelled line per row, wrapped between words only, ids included.

    Large tables are printed as aligned lines (:func:`_print_rows`).
    """
    every = [*columns, *optional]
    for shown in (every, list(columns)) if optional else (every,):
        cut = [row[: len(shown)] for row in rows]
        if len(rows) > LARGE_TABLE:
            widths = _column_widths(shown, cut)
            if sum(widths) + 2 * (len(widths) - 1) <= console.width:
                _print_rows(console, shown, cut)
                return
            continue
        table = _table(*shown)
        for row in cut:
            table.add_row(*row)
        wide = console.options.update_width(_UNBOUNDED)
        if table.__rich_measure__(console, wide).maximum <= console.width:
            console.print(table)
            return
    for row in rows:
        _print_wrapped(console, _row_parts(every, row))


def _print_wrapped(console: Console, parts: Sequence[Text], indent: int = 6) -> None:
    """``parts`` joined by ``; `` on as few lines as the console allows: a part moves whole to
    the next (indented) line when it does not fit, and only a part wider than the console is
    wrapped, between words (an id is never split unless it is itself wider)."""
    room = max(console.width - indent - 1, 20)  # one cell kept for the ";"
    lines: list[Text] = []
    for part in parts:
        if lines and lines[-1].cell_len + 2 + part.cell_len <= room:
            lines[-1].append("; ")
            lines[-1].append_text(part)
            continue
        if lines:
            lines[-1].append(";")
        lines.append(part.copy())
    for number, line in enumerate(lines):
        for index, piece in enumerate(line.wrap(console, room + 1, overflow="fold")):
            lead = "  " if number == index == 0 else " " * indent
            console.print(Text(lead) + piece, soft_wrap=True)


def _row_parts(columns: Sequence[str], row: Sequence[Text]) -> list[Text]:
    """``~+>- Cart abandoners``, ``ad account 175``, ``legacy flow enabled -> disabled``...:
    the symbols and the name bare, then each other filled cell after its column's name."""
    bare = 1 if columns[0] else 2
    parts = [Text(" ").join(cell for cell in row[:bare] if cell.plain)]
    for column, cell in zip(columns[bare:], row[bare:], strict=True):
        if cell.plain:
            parts.append(Text(f"{column[:1].lower()}{column[1:]} ") + cell)
    return parts


def _pair_row(
    pair: Pair, by_target: dict[str, list[Action]], reconnect_of: dict[str, ReconnectAccount]
) -> list[Text]:
    """A pair's cells: symbols, flow, ad account, both states, audiences, then both ids."""
    ids = [_text(pair.legacy_flow_id), _text(pair.new_flow_id or "")]
    if pair.status == "blocked":
        return [
            _text(BLOCKED[0], BLOCKED[2]),
            _text(pair.legacy_flow_name),
            _text(pair.advertiser_id or "none"),
            _text(pair.legacy_state),
            _text("blocked: see above", "red"),
            _text(""),
            *ids,
        ]
    planned = by_target.get(pair.new_flow_id or "", []) + by_target.get(pair.legacy_flow_id, [])
    kinds = {a.kind for a in planned}
    reconnect = reconnect_of.get(pair.new_flow_id or "")
    symbols = "".join(
        KIND_STYLE[k][0]
        for k in KIND_ORDER
        if k in kinds or (k == "reconnect_account" and reconnect is not None)
    )
    legacy = pair.legacy_state
    if "disable_flow" in kinds:
        legacy = f"{pair.legacy_state} -> disabled"
    new = pair.new_state or "?"
    if "enable_flow" in kinds:
        new = f"{new} -> enabled"
    add = next((a for a in planned if isinstance(a, AddAudiences)), None)
    audiences = "all there"
    if add is not None:
        audiences = audience_words(add.details.audiences)
    elif pair.missing_audiences:
        audiences = f"+{len(pair.missing_audiences)} to add"
    name = pair.legacy_flow_name
    if pair.new_flow_name and pair.new_flow_name != pair.legacy_flow_name:
        name = f"{name} -> {pair.new_flow_name}"
    return [
        _text(symbols, "bold"),
        _text(name),
        _text(pair.advertiser_id or "none"),
        _text(legacy, "red" if "disable_flow" in kinds else ""),
        _text(new, "green" if "enable_flow" in kinds else ""),
        _text(audiences, "green" if pair.missing_audiences else ""),
        *ids,
    ]


# -- inventories ----------------------------------------------------------------------------


def card_lines(legacy: CardRef | CardSpec | None, new: CardRef | CardSpec | None) -> list[str]:
    """Which connection spec served as each card: ``  new card     'Pinterest' (id)``."""
    return [
        f"  legacy card  {_card_label(legacy, 'legacy')}",
        f"  new card     {_card_label(new, 'new')}",
    ]


def _card_label(spec: CardRef | CardSpec | None, card: Card) -> str:
    if spec is None:
        return "none in this sandbox: nothing to migrate"
    if spec.name is None:
        return f"{spec.id} (from migration.{card}_spec_id)"
    return f"{spec.name!r} ({spec.id})"


def advertisers_by_account(sb: SandboxInventory) -> dict[str, list[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for tc in sb.target_connections:
        if tc.base_connection_id and tc.advertiser_id:
            found[tc.base_connection_id].add(tc.advertiser_id)
    return {account: sorted(ids) for account, ids in found.items()}


def render_inventory(console: Console, inventory: Inventory, pairing: Plan, now: datetime) -> None:
    """``discover``: per sandbox, both cards' accounts and flows, then the pairing."""
    total = sum(len(sb.flows) for sb in inventory.sandboxes)
    _say(
        console,
        _text(
            f"Inventory of {inventory.org_id}: "
            f"{_plural(len(inventory.sandboxes), 'sandbox', 'sandboxes')}, "
            f"{_plural(total, 'Pinterest flow')}",
            "bold",
        ),
    )
    for sb in inventory.sandboxes:
        _say(console)
        _say(
            console,
            _text(f"Sandbox {sb.name}", "bold"),
        )
        for line in card_lines(sb.spec("legacy"), sb.spec("new")):
            _say(console, _text(line, "dim"))
        advertisers = advertisers_by_account(sb)
        flows_of = Counter(f.account_id for f in sb.flows)
        for card, label in CARDS:
            accounts = _ordered_accounts(a for a in sb.accounts if a.card == card)
            _say(console, _text(f"  {label} accounts ({len(accounts)})"))
            if not accounts:
                continue
            table = _table("Account", "Ad accounts", "Credentials", "Flows")
            _fit_ids(console, table, 0, (a.id for a in accounts))
            for account in accounts:
                table.add_row(
                    _text(f"{account.name}\n{account.id}"),
                    _text(", ".join(advertisers.get(account.id, [])) or "none"),
                    _text(describe_expiry(account.expires_at, now), _expiry_style(account, now)),
                    _text(flows_of.get(account.id, 0)),
                )
            console.print(table)
        for card, label in CARDS:
            flows = _ordered_flows(f for f in sb.flows if f.card == card)
            _say(console, _text(f"  {label} flows ({len(flows)})"))
            if not flows:
                continue
            table = _table("Flow", "State", "Ad account", "Audiences")
            _fit_ids(console, table, 0, (f.id for f in flows))
            for flow in flows:
                table.add_row(
                    _text(f"{flow.name}\n{flow.id}"),
                    _text(flow.state, "green" if flow.enabled else "dim"),
                    _text(flow.advertiser_id or "none"),
                    _text(len(flow.audiences)),
                )
            console.print(table)
        _render_pairing(console, pairing, sb)
    if pairing.warnings:
        _say(console)
        _say(console, _text(f"Warnings ({len(pairing.warnings)})", "yellow"))
        for warning in pairing.warnings:
            _say(console, _text(f"  - {warning}", "yellow"))


def _fit_ids(console: Console, table: Table, column: int, ids: Iterable[str]) -> None:
    """Keep a column wide enough for its ids where the console allows, so they do not break.

    Rich crops what cannot fit, so narrow consoles get no minimum: ids then fold, whole.
    """
    if console.width >= 80:
        longest = max((len(i) for i in ids), default=0)
        table.columns[column].min_width = min(longest, 40)


def _render_pairing(console: Console, pairing: Plan, sb: SandboxInventory) -> None:
    """One block per legacy flow: the pair's status, then the flows with ids and states."""
    pairs = [p for p in pairing.pairs if p.sandbox == sb.name]
    orphans = [o for o in pairing.orphans if o.sandbox == sb.name]
    blockers = {b.flow_id: b for b in pairing.blockers if b.sandbox == sb.name}
    states = {f.id: f.state for f in sb.flows}
    _say(
        console,
        _text(
            f"  Pairing ({_plural(len(pairs) - len(blockers), 'pair')}, "
            f"{len(blockers)} blocked, {_plural(len(orphans), 'orphan')})"
        ),
    )
    for pair in pairs:
        blocker = blockers.get(pair.legacy_flow_id)
        if blocker is not None:
            status, style = f"BLOCKED ({blocker.kind}): {blocker.message}", "red"
        else:
            status, style = STATUS_WORDS.get(pair.status, pair.status), ""
            if pair.missing_audiences:
                status += f", {_plural(len(pair.missing_audiences), 'audience')} missing"
        head = f"    {pair.legacy_flow_name}, ad account {pair.advertiser_id or 'none'}: "
        _say(console, _text(head + status, style))
        _say(console, _text(f"      legacy  {pair.legacy_flow_id}  {pair.legacy_state}"))
        if blocker is not None:
            for candidate in blocker.candidates:
                _say(
                    console,
                    _text(f"      new?    {candidate}  {states.get(candidate, '?')}, candidate"),
                )
        elif pair.new_flow_id:
            name = ""
            if pair.new_flow_name and pair.new_flow_name != pair.legacy_flow_name:
                name = f"  named {pair.new_flow_name!r}"
            _say(console, _text(f"      new     {pair.new_flow_id}  {pair.new_state}{name}"))
    for orphan in orphans:
        _say(
            console,
            _text(
                f"    {orphan.flow_name}, ad account {orphan.advertiser_id or 'none'}: "
                "orphan, no twin on the new card",
                "yellow",
            ),
        )
        _say(console, _text(f"      legacy  {orphan.flow_id}  {orphan.state}"))


def _ordered_accounts(accounts: Iterable[Account]) -> list[Account]:
    return sorted(accounts, key=lambda a: (a.card != "legacy", a.name, a.id))


def _ordered_flows(flows: Iterable[Flow]) -> list[Flow]:
    return sorted(flows, key=lambda f: (f.card != "legacy", f.name, f.id))


def _expiry_style(account: Account, now: datetime) -> str:
    if account.expires_at is None or aware(account.expires_at) <= aware(now):
        return "red"
    if aware(account.expires_at) - aware(now) < timedelta(days=7):
        return "yellow"
    return ""


def inventory_json(inventory: Inventory, pairing: Plan) -> dict[str, Any]:
    """``discover --output json``: sandboxes, accounts, target connections, flows, pairing."""
    accounts: list[dict[str, Any]] = []
    targets: list[dict[str, Any]] = []
    flows: list[dict[str, Any]] = []
    for sb in inventory.sandboxes:
        advertisers = advertisers_by_account(sb)
        accounts.extend(
            {
                "id": a.id,
                "name": a.name,
                "sandbox": a.sandbox,
                "card": a.card,
                "state": a.state,
                "expires_at": iso(a.expires_at),
                "advertiser_ids": advertisers.get(a.id, []),
            }
            for a in _ordered_accounts(sb.accounts)
        )
        targets.extend(
            {
                "id": t.id,
                "name": t.name,
                "sandbox": t.sandbox,
                "card": t.card,
                "account_id": t.base_connection_id,
                "advertiser_id": t.advertiser_id,
            }
            for t in sb.target_connections
        )
        flows.extend(
            {
                "id": f.id,
                "name": f.name,
                "sandbox": f.sandbox,
                "card": f.card,
                "state": f.state,
                "account_id": f.account_id,
                "target_connection_id": f.target_connection_id,
                "advertiser_id": f.advertiser_id,
                "audiences": [{"id": a.id, "name": a.name} for a in f.audiences],
            }
            for f in _ordered_flows(sb.flows)
        )
    dumped = pairing.model_dump(mode="json")
    return {
        "schema_version": 1,
        "kind": "pinmigrate.inventory",
        "org_id": inventory.org_id,
        "sandboxes": [
            {
                "name": sb.name,
                "legacy_spec_id": sb.legacy_spec_id,
                "legacy_spec_name": sb.legacy_spec_name,
                "new_spec_id": sb.new_spec_id,
                "new_spec_name": sb.new_spec_name,
            }
            for sb in inventory.sandboxes
        ],
        "accounts": accounts,
        "target_connections": targets,
        "flows": flows,
        "pairing": {key: dumped[key] for key in ("pairs", "orphans", "blockers")},
        "warnings": dumped["warnings"],
    }


__all__: Sequence[str] = (
    "audience_words",
    "describe_expiry",
    "disable_condition",
    "inventory_json",
    "is_large",
    "legend",
    "render_inventory",
    "render_plan",
    "summary_line",
)
