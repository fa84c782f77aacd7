"""Text and JSON renderings of plans and inventories."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from pinmigrate.inventory import (
    Account,
    Audience,
    Flow,
    Inventory,
    SandboxInventory,
    TargetConnection,
)
from pinmigrate.plan import Plan
from pinmigrate.planner import PlanOptions, make_plan
from pinmigrate.render import (
    describe_expiry,
    inventory_json,
    legend,
    render_inventory,
    render_plan,
    summary_line,
)
from pinmigrate.settings import MigrationSettings, Settings

NOW = datetime(2024, 1, 10, 12, 0, tzinfo=UTC)


def flow(fid: str, name: str, card: str, state: str, adv: str = "175", auds: int = 1) -> Flow:
    return Flow(
        id=fid,
        name=name,
        sandbox="prod",
        card=card,  # type: ignore[arg-type]
        state=state,
        account_id="acc-new" if card == "new" else "acc-old",
        target_connection_id=f"tc-{fid}",
        advertiser_id=adv,
        audiences=tuple(Audience(f"a{i}", f"Audience {i}") for i in range(auds)),
    )


def inventory(*flows: Flow, expires: datetime | None = None) -> Inventory:
    accounts = (
        Account(id="acc-old", name="Old account", sandbox="prod", card="legacy", expires_at=NOW),
        Account(id="acc-new", name="New account", sandbox="prod", card="new", expires_at=expires),
    )
    tcs = tuple(
        TargetConnection(
            id=f"tc-{f.id}",
            sandbox="prod",
            card=f.card,
            base_connection_id=f.account_id,
            advertiser_id=f.advertiser_id,
        )
        for f in flows
    )
    sb = SandboxInventory(
        name="prod",
        legacy_spec_id="spec-l",
        new_spec_id="spec-n",
        legacy_spec_name="(Deprecating) Pinterest",
        new_spec_name="Pinterest",
        accounts=accounts,
        target_connections=tcs,
        flows=flows,
    )
    return Inventory(org_id="ORG@AdobeOrg", sandboxes=(sb,))


def plan_of(inv: Inventory) -> Plan:
    return make_plan(inv, [], Settings(), PlanOptions(now=NOW))


def text_of(render: object, *args: object, terminal: bool = False) -> str:
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=terminal or None)
    render(console, *args)  # type: ignore[operator]
    return out.getvalue()


BUSY = inventory(
    flow("l1", "Cart abandoners", "legacy", "enabled", auds=3),
    flow("n1", "Cart abandoners", "new", "disabled", auds=2),
    flow("l2", "Lookalike", "legacy", "enabled"),
    flow("n2a", "Lookalike", "new", "disabled"),
    flow("n2b", "Lookalike", "new", "disabled"),
    flow("l3", "Holiday", "legacy", "enabled"),
    flow("l4", "Winback", "legacy", "disabled"),
    flow("n4", "Winback", "new", "disabled"),
    expires=NOW - timedelta(days=2),
)


@pytest.mark.parametrize(
    ("expires", "text"),
    [
        (None, "missing"),
        (NOW - timedelta(days=2, seconds=5), "expired 2d ago"),
        (NOW + timedelta(days=3) - timedelta(seconds=5), "in 3d"),
        (NOW + timedelta(hours=5), "in 5h"),
        (NOW - timedelta(minutes=20), "expired 20m ago"),
        (datetime(2024, 2, 29, 12, 0), "in 50d"),
    ],
)
def test_describe_expiry(expires: datetime | None, text: str) -> None:
    assert describe_expiry(expires, NOW) == text


def test_the_api_path_still_says_which_accounts_need_a_login() -> None:
    plan = make_plan(
        BUSY, [], Settings(migration=MigrationSettings(reconnect_via="api")), PlanOptions(now=NOW)
    )
    text = text_of(render_plan, plan)
    assert "Run `pinmigrate auth login`" in text
    assert "experimental" in text
    assert "Reconnect in Adobe" not in text


def test_plan_text_reads_summary_first_and_ends_with_the_switch_offs_and_the_summary() -> None:
    plan = plan_of(BUSY)
    text = text_of(render_plan, plan)
    lines = text.splitlines()
    assert lines[0].startswith("Plan for ORG@AdobeOrg, sandbox prod")
    assert lines[1] == (
        "Plan: 1 to reconnect, 1 to add audiences, 1 to enable, 1 to disable; 1 blocked, 1 orphan."
    )
    assert "  ~ reconnect account          1" in lines
    assert "  ! blocked                    1" in lines
    assert any(line.startswith("Blocked (1)") for line in lines)
    assert "      candidates: n2a, n2b" in lines
    assert "Reconnect in Adobe: 1 account needs Reconnect OAuth by a person" in text
    assert "Pre-flight not checked for 1 account: `pinmigrate auth login`" in text
    assert "not checked" in text
    assert "expired 2d ago" in text
    assert "Nothing to do for 1 pair: Winback (legacy flow disabled)" in text
    assert "? prod  Holiday (l3)" in text
    switch_off = lines.index("Will switch off 1 legacy flow:")
    assert lines[switch_off + 1].strip() == "- prod  Cart abandoners (l1), after its twin n1 is on"
    assert lines[-3].strip().startswith("Legend: ~ reconnect account")
    # The summary again last, right above apply's prompt; a small plan needs no --details hint.
    assert lines[-1] == lines[1]
    assert "--details" not in text
    # Each action kind has its symbol on the pair's row.
    row = next(line for line in lines if "Cart abandoners" in line and "->" in line)
    assert row.startswith("~+>-")
    assert "\x1b[" not in text  # not a terminal: no colour, no cursor tricks


def test_colour_only_on_a_terminal() -> None:
    assert "\x1b[" in text_of(render_plan, plan_of(BUSY), terminal=True)


def test_names_are_not_rich_markup() -> None:
    inv = inventory(
        flow("l1", "[bold red]Promo[/]", "legacy", "enabled"),
        flow("n1", "[bold red]Promo[/]", "new", "disabled"),
        expires=NOW + timedelta(days=30),
    )
    text = text_of(render_plan, plan_of(inv))
    assert "[bold red]Promo[/]" in text


def test_nothing_to_change() -> None:
    inv = inventory(
        flow("l1", "Done", "legacy", "disabled"),
        flow("n1", "Done", "new", "enabled"),
        expires=NOW + timedelta(days=30),
    )
    text = text_of(render_plan, plan_of(inv))
    assert "No changes: nothing to do; 0 blocked, 0 orphans." in text
    assert "Nothing to change." in text
    assert "Will switch off" not in text


def test_many_quiet_pairs_are_counted_not_listed() -> None:
    flows = []
    for i in range(30):
        flows += [
            flow(f"l{i}", f"Old {i:02}", "legacy", "disabled"),
            flow(f"n{i}", f"Old {i:02}", "new", "enabled" if i % 3 else "disabled"),
        ]
    text = text_of(render_plan, plan_of(inventory(*flows, expires=NOW + timedelta(days=30))))
    assert "Nothing to do for 30 pairs (10 legacy flow disabled, 20 migrated)" in text
    assert "Old 05" not in text


def test_legend_names_every_symbol() -> None:
    assert legend() == (
        "Legend: ~ reconnect account   + add audiences   > enable flow   "
        "- disable legacy flow   ! blocked   ? orphan (no twin)"
    )


def test_summary_line_of_a_plan_with_changes() -> None:
    assert summary_line(plan_of(BUSY)).startswith("Plan: 1 to reconnect")


def test_inventory_text() -> None:
    text = text_of(render_inventory, BUSY, plan_of(BUSY), NOW)
    assert "Inventory of ORG@AdobeOrg: 1 sandbox, 8 Pinterest flows" in text
    assert "  legacy card  '(Deprecating) Pinterest' (spec-l)\n" in text
    assert "  new card     'Pinterest' (spec-n)\n" in text
    assert "expired 2d ago" in text
    assert "Legacy card accounts (1)" in text
    assert "New card flows (4)" in text
    assert "Lookalike, ad account 175: BLOCKED (ambiguous)" in text
    assert "      new?    n2a  disabled, candidate" in text
    assert "Holiday, ad account 175: orphan, no twin on the new card" in text
    assert "Cart abandoners, ad account 175: to migrate, 1 audience missing" in text
    assert "      legacy  l1  enabled" in text
    assert "      new     n1  disabled" in text
    assert "Winback, ad account 175: legacy flow disabled" in text


def test_wide_consoles_get_id_columns() -> None:
    out = io.StringIO()
    render_plan(Console(file=out, width=200), plan_of(BUSY))
    header = next(line for line in out.getvalue().splitlines() if "Audiences" in line)
    assert "Legacy flow id" in header and "New flow id" in header
    assert "Legacy flow id" not in text_of(render_plan, plan_of(BUSY))


def test_narrow_console_crops_nothing() -> None:
    out = io.StringIO()
    render_inventory(Console(file=out, width=60), BUSY, plan_of(BUSY), NOW)
    text = out.getvalue()
    for header in ("Ad accounts", "Credentials", "Flows", "Audiences"):
        assert header in text


def test_inventory_json_shape() -> None:
    data = inventory_json(BUSY, plan_of(BUSY))
    assert data["kind"] == "pinmigrate.inventory"
    assert data["schema_version"] == 1
    assert data["sandboxes"] == [
        {
            "name": "prod",
            "legacy_spec_id": "spec-l",
            "legacy_spec_name": "(Deprecating) Pinterest",
            "new_spec_id": "spec-n",
            "new_spec_name": "Pinterest",
        }
    ]
    new_account = next(a for a in data["accounts"] if a["id"] == "acc-new")
    assert new_account == {
        "id": "acc-new",
        "name": "New account",
        "sandbox": "prod",
        "card": "new",
        "state": "enabled",
        "expires_at": "2024-01-08T12:00:00+00:00",
        "advertiser_ids": ["175"],
    }
    cart = next(f for f in data["flows"] if f["id"] == "n1")
    assert cart["audiences"] == [
        {"id": "a0", "name": "Audience 0"},
        {"id": "a1", "name": "Audience 1"},
    ]
    assert cart["advertiser_id"] == "175"
    assert [f["card"] for f in data["flows"]][:4] == ["legacy"] * 4
    assert {p["legacy_flow_id"] for p in data["pairing"]["pairs"]} == {"l1", "l2", "l4"}
    assert [o["flow_id"] for o in data["pairing"]["orphans"]] == ["l3"]
    assert data["pairing"]["blockers"][0]["candidates"] == ["n2a", "n2b"]
    assert len(data["target_connections"]) == 8


def test_a_large_sandbox_is_printed_as_aligned_lines_with_every_row() -> None:
    from pinmigrate.render import LARGE_TABLE

    count = LARGE_TABLE + 5
    names = [f"Flow {i:04d}" for i in range(count)]
    names[7] = "顧客ロイヤルティ — été"  # wide characters must not break the alignment
    flows = [flow(f"l{i}", n, "legacy", "enabled") for i, n in enumerate(names)]
    flows += [flow(f"n{i}", n, "new", "disabled") for i, n in enumerate(names)]
    plan = plan_of(inventory(*flows, expires=NOW + timedelta(days=60)))
    text = text_of(lambda console, plan: render_plan(console, plan, details=True), plan)
    rows = [line for line in text.splitlines() if "enabled -> disabled" in line]
    assert len(rows) == count
    assert any("顧客ロイヤルティ — été" in row for row in rows)
    from rich.cells import cell_len

    # The legacy-state column starts at the same cell on every row, header included.
    starts = {cell_len(row[: row.index("enabled -> disabled")]) for row in rows}
    header = next(line for line in text.splitlines() if "Legacy flow" in line and "Flow" in line)
    assert starts == {cell_len(header[: header.index("Legacy flow")])}


def many(count: int, **kwargs: object) -> list[Flow]:
    """``count`` pairs to migrate, with ids as long as Adobe's (UUIDs)."""
    flows = []
    for i in range(count):
        name = f"Loyalty segment {i:03d}"
        flows += [
            flow(f"{i:08d}-aaaa-4bbb-8ccc-legacy000000", name, "legacy", "enabled", auds=5),
            flow(f"{i:08d}-aaaa-4bbb-8ccc-new000000000", name, "new", "disabled", auds=0),
        ]
    return flows


def test_add_audiences_names_a_few_audiences_and_counts_the_rest() -> None:
    assert "+1: Audience 2 (a2)" in text_of(render_plan, plan_of(BUSY))
    plan = plan_of(inventory(*many(1), expires=NOW + timedelta(days=30)))
    text = text_of(render_plan, plan)
    assert "+5: Audience 0 (a0), Audience 1 (a1), Audience 2 (a2) and 2 more" in text


def test_a_large_plan_is_grouped_but_lists_what_needs_a_person_in_full() -> None:
    from pinmigrate.render import DETAILS_HINT, SUMMARY_ABOVE

    flows = many(SUMMARY_ABOVE + 1)
    flows += [f for f in BUSY.sandboxes[0].flows if f.id in ("l2", "n2a", "n2b", "l3")]
    plan = plan_of(inventory(*flows, expires=NOW - timedelta(days=2)))
    text = text_of(render_plan, plan)
    lines = text.splitlines()
    assert len(lines) < 45, text
    assert "Loyalty segment" not in text
    assert "  ! prod  Lookalike (l2): 2 new flows are named 'Lookalike'" in text
    assert "  ? prod  Holiday (l3)" in text
    # The account to reconnect, in full; then one row per account with its counts.
    assert any(line.startswith("~  New account") and "expired 2d ago" in line for line in lines)
    row = next(line for line in lines if line.startswith("New account (acc-new)"))
    assert row.split()[-4:] == ["1", "51", "51", "51"]
    assert lines[-2:] == [summary_line(plan), DETAILS_HINT]
    detailed = text_of(lambda c, p: render_plan(c, p, details=True), plan)
    assert detailed.count("Loyalty segment") == SUMMARY_ABOVE + 1
    assert detailed.splitlines()[-1] == summary_line(plan)


@pytest.mark.parametrize("details", [False, True])
def test_a_narrow_console_never_splits_an_id_or_a_name(details: bool) -> None:
    flows = many(3 if not details else 60)
    plan = plan_of(inventory(*flows, expires=NOW - timedelta(days=2)))
    out = io.StringIO()
    render_plan(Console(file=out, width=60), plan, details=details)
    text = out.getvalue()
    rows = [line for line in text.splitlines() if "-8ccc-" in line or "New account" in line]
    switch_offs = [line for line in rows if line.startswith("  - prod")]  # prose: not wrapped
    assert rows and all(len(line) <= 60 for line in rows if line not in switch_offs)
    for f in flows:
        assert f.id in text and f.name in text
    assert "acc-new" in text


def test_a_large_plan_with_nothing_to_do_sends_nobody_to_details() -> None:
    from pinmigrate.render import SUMMARY_ABOVE

    flows = []
    for i in range(SUMMARY_ABOVE + 1):
        flows += [
            flow(f"l{i}", f"Done {i:02}", "legacy", "disabled"),
            flow(f"n{i}", f"Done {i:02}", "new", "enabled"),
        ]
    text = text_of(render_plan, plan_of(inventory(*flows, expires=NOW + timedelta(days=30))))
    assert text.splitlines()[-1] == "No changes: nothing to do; 0 blocked, 0 orphans."
    assert "--details" not in text


@pytest.mark.parametrize("details", [False, True])
def test_on_a_narrow_terminal_every_line_fits_and_no_word_is_cut(details: bool) -> None:
    flows = many(3 if not details else 60)
    plan = plan_of(inventory(*flows, expires=NOW - timedelta(days=2)))
    out = io.StringIO()
    render_plan(Console(file=out, width=60, force_terminal=True, color_system=None), plan,
                details=details)  # fmt: skip
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 60 for line in lines)
    words = " ".join(lines).split()
    # Prose is word-wrapped, so each id and the legend's words stay whole.
    for f in flows:
        assert any(f.id in word for word in words)
    assert "(no" in words and "twin)" in words
