"""Invariants of the planner over generated inventories (hypothesis)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pinmigrate.inventory import (
    Account,
    Audience,
    Flow,
    Inventory,
    SandboxInventory,
    TargetConnection,
)
from pinmigrate.logins import AdAccountAccess, Login
from pinmigrate.plan import KIND_ORDER, Plan
from pinmigrate.planner import PlanOptions, make_plan
from pinmigrate.settings import MigrationSettings, Settings

#: 150 generated inventories per property: seconds each
pytestmark = pytest.mark.slow

NOW = datetime(2024, 1, 10, tzinfo=UTC)
# Odd names on purpose: empty, spaces, markup, unicode, look-alikes.
NAMES = ["Loyalty", "loyalty", "", " ", "[b]x[/b]", "Ünïcödé", "a=b", "Loyalty "]
ADVERTISERS = ["175", "176", None]
AUDIENCES = ["s1", "s2", "s3", "s4"]
EXPIRIES = [None, NOW - timedelta(days=2), NOW + timedelta(days=3), NOW + timedelta(days=60)]
STATES = ["enabled", "disabled"]


@st.composite
def sandbox_flows(draw: st.DrawFn, sandbox: str) -> SandboxInventory:
    accounts = [
        Account(
            id=f"{sandbox}-acc{i}",
            name=f"Account {i}",
            sandbox=sandbox,
            card="new",
            expires_at=draw(st.sampled_from(EXPIRIES)),
        )
        for i in range(draw(st.integers(1, 3)))
    ]
    legacy_account = Account(
        id=f"{sandbox}-legacy", name="Legacy", sandbox=sandbox, card="legacy", expires_at=None
    )
    flow_spec = st.tuples(
        st.sampled_from(NAMES),
        st.sampled_from(ADVERTISERS),
        st.sampled_from(STATES),
        st.sets(st.sampled_from(AUDIENCES)),
        st.integers(0, len(accounts) - 1),
    )
    flows: list[Flow] = []
    for card in ("legacy", "new"):
        for i, (name, adv, state, auds, acc) in enumerate(draw(st.lists(flow_spec, max_size=7))):
            fid = f"{sandbox}-{card}-{i}"
            flows.append(
                Flow(
                    id=fid,
                    name=name,
                    sandbox=sandbox,
                    card=card,  # type: ignore[arg-type]
                    state=state,
                    account_id=legacy_account.id if card == "legacy" else accounts[acc].id,
                    target_connection_id=f"tc-{fid}",
                    advertiser_id=adv,
                    audiences=tuple(Audience(a, f"Audience {a}") for a in sorted(auds)),
                )
            )
    tcs = tuple(
        TargetConnection(
            id=f.target_connection_id or "",
            sandbox=sandbox,
            card=f.card,
            base_connection_id=f.account_id,
            advertiser_id=f.advertiser_id,
        )
        for f in flows
    )
    return SandboxInventory(
        name=sandbox,
        legacy_spec_id="spec-legacy",
        new_spec_id="spec-new",
        accounts=(legacy_account, *accounts),
        target_connections=tcs,
        flows=tuple(flows),
    )


@st.composite
def inventories(draw: st.DrawFn) -> Inventory:
    names = draw(st.sampled_from([("prod",), ("prod", "dev")]))
    return Inventory(
        org_id="ORG@AdobeOrg", sandboxes=tuple(draw(sandbox_flows(name)) for name in names)
    )


LOGINS = st.lists(
    st.builds(
        lambda user, ads, days: Login(
            user_id=user,
            ad_accounts=[AdAccountAccess(id=a) for a in sorted(ads)],
            access_token="pina_TOKEN",  # type: ignore[arg-type]
            refresh_expires_at=NOW + timedelta(days=days),
        ),
        st.sampled_from(["u1", "u2", "u3"]),
        st.sets(st.sampled_from(["175", "176", "177"])),
        st.integers(-5, 60),
    ),
    max_size=3,
)
EVERYTHING = Login(
    user_id="all",
    ad_accounts=[AdAccountAccess(id=a) for a in ("175", "176")],
    access_token="pina_TOKEN",  # type: ignore[arg-type]
    refresh_expires_at=NOW + timedelta(days=60),
)
SETTINGS = st.builds(
    lambda disable, margin: Settings(
        migration=MigrationSettings(disable_legacy=disable, reconnect_margin_days=margin)
    ),
    st.booleans(),
    st.sampled_from([0, 7, 29]),
)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def plan_for(
    inv: Inventory, logins: Sequence[Login], conf: Settings, keep_legacy: bool = False
) -> Plan:
    """``keep_legacy`` is ``--keep-legacy``: it sets migration.disable_legacy to false."""
    if keep_legacy:
        migration = conf.migration.model_copy(update={"disable_legacy": False})
        conf = conf.model_copy(
            update={
                "migration": migration,
                "sources": {**conf.sources, "migration.disable_legacy": "flag --keep-legacy"},
            }
        )
    return make_plan(inv, logins, conf, PlanOptions(now=NOW))


def flows_by_id(inv: Inventory) -> dict[str, Flow]:
    return {f.id: f for sb in inv.sandboxes for f in sb.flows}


@FAST
@given(inventories(), LOGINS, SETTINGS, st.booleans())
def test_never_switches_off_a_legacy_flow_without_a_live_twin(
    inv: Inventory, logins: list[Login], conf: Settings, keep: bool
) -> None:
    plan = plan_for(inv, logins, conf, keep)
    flows = flows_by_id(inv)
    enabled_by_plan = {a.target_id for a in plan.actions if a.kind == "enable_flow"}
    for action in plan.actions:
        if action.kind != "disable_flow":
            continue
        twin = action.precondition.twin_flow_id
        assert flows[twin].enabled or twin in enabled_by_plan
        if twin in enabled_by_plan:
            assert f"enable_flow:{action.sandbox}:{twin}" in action.depends_on
        assert flows[action.target_id].enabled
        assert not keep and conf.migration.disable_legacy


@FAST
@given(inventories(), LOGINS, SETTINGS)
def test_leaves_pairs_with_a_disabled_legacy_flow_alone(
    inv: Inventory, logins: list[Login], conf: Settings
) -> None:
    plan = plan_for(inv, logins, conf)
    flows = flows_by_id(inv)
    for action in plan.actions:
        legacy_id = getattr(action.precondition, "legacy_flow_id", None)
        if legacy_id is not None:
            assert flows[legacy_id].enabled
            assert action.precondition.legacy_state == "enabled"
    for pair in plan.pairs:
        if pair.legacy_state == "disabled":
            touched = {a.target_id for a in plan.actions if a.kind != "reconnect_account"}
            assert pair.legacy_flow_id not in touched
            assert pair.new_flow_id not in touched


@FAST
@given(inventories(), LOGINS, SETTINGS)
def test_acts_only_on_the_right_card(inv: Inventory, logins: list[Login], conf: Settings) -> None:
    plan = plan_for(inv, logins, conf)
    flows = flows_by_id(inv)
    accounts = {a.id: a for sb in inv.sandboxes for a in sb.accounts}
    ids = {a.id for a in plan.actions}
    rank = {kind: i for i, kind in enumerate(KIND_ORDER)}
    for action in plan.actions:
        assert action.id == f"{action.kind}:{action.sandbox}:{action.target_id}"
        if action.kind == "reconnect_account":
            assert accounts[action.target_id].card == "new"
        elif action.kind == "disable_flow":
            assert flows[action.target_id].card == "legacy"
        else:
            assert flows[action.target_id].card == "new"
            assert flows[action.target_id].sandbox == action.sandbox
        for dep in action.depends_on:
            assert dep in ids
            assert rank[dep.split(":")[0]] < rank[action.kind]
    assert len(ids) == len(plan.actions)
    assert plan.summary["blocked"] == len(plan.blockers)


@FAST
@given(inventories(), SETTINGS, st.booleans())
def test_applying_the_plan_leaves_nothing_to_do(inv: Inventory, conf: Settings, keep: bool) -> None:
    plan = plan_for(inv, [EVERYTHING], conf, keep)
    after = simulate(inv, plan)
    again = plan_for(after, [EVERYTHING], conf, keep)
    assert again.actions == [], [a.id for a in again.actions]


@FAST
@given(inventories(), LOGINS, SETTINGS, st.randoms(use_true_random=False))
def test_same_input_same_plan_whatever_the_order(
    inv: Inventory, logins: list[Login], conf: Settings, rnd: Any
) -> None:
    first = plan_for(inv, logins, conf)
    assert plan_for(inv, logins, conf).fingerprint == first.fingerprint
    shuffled = []
    for sb in inv.sandboxes:
        flows, accounts, tcs = list(sb.flows), list(sb.accounts), list(sb.target_connections)
        rnd.shuffle(flows)
        rnd.shuffle(accounts)
        rnd.shuffle(tcs)
        shuffled.append(
            dataclasses.replace(
                sb, flows=tuple(flows), accounts=tuple(accounts), target_connections=tuple(tcs)
            )
        )
    other = dataclasses.replace(inv, sandboxes=tuple(shuffled))
    assert plan_for(other, list(reversed(logins)), conf).fingerprint == first.fingerprint


@FAST
@given(inventories(), LOGINS, SETTINGS, st.lists(st.text(), max_size=3))
def test_fingerprint_is_the_hash_of_the_canonical_json(
    inv: Inventory, logins: list[Login], conf: Settings, warnings: list[str]
) -> None:
    plan = plan_for(inv, logins, conf)
    plan = plan.model_copy(update={"warnings": warnings}).sealed()
    canonical = json.dumps(plan.content(), sort_keys=True, separators=(",", ":"))
    assert plan.fingerprint == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


@FAST
@given(inventories(), LOGINS, SETTINGS, st.lists(st.text(), max_size=3))
def test_streamed_plan_json_is_the_plan_file_text(
    inv: Inventory, logins: list[Login], conf: Settings, warnings: list[str]
) -> None:
    from pinmigrate.plan import json_parts as plan_json_parts

    plan = plan_for(inv, logins, conf).model_copy(update={"warnings": warnings}).sealed()
    assert b"".join(plan_json_parts(plan)).decode("utf-8") == plan.to_json()


def simulate(inv: Inventory, plan: Plan) -> Inventory:
    """What the world looks like after every action of the plan succeeded."""
    by_target = {a.target_id: a for a in plan.actions if a.kind == "reconnect_account"}
    flow_actions: dict[str, list[Any]] = {}
    for action in plan.actions:
        if action.kind != "reconnect_account":
            flow_actions.setdefault(action.target_id, []).append(action)
    sandboxes = []
    for sb in inv.sandboxes:
        accounts = tuple(
            dataclasses.replace(a, expires_at=NOW + timedelta(days=365)) if a.id in by_target else a
            for a in sb.accounts
        )
        flows = []
        for flow in sb.flows:
            for action in flow_actions.get(flow.id, []):
                if action.kind == "add_audiences":
                    added = tuple(Audience(d.id, d.name) for d in action.details.audiences)
                    flow = dataclasses.replace(flow, audiences=flow.audiences + added)
                elif action.kind == "enable_flow":
                    flow = dataclasses.replace(flow, state="enabled")
                elif action.kind == "disable_flow":
                    flow = dataclasses.replace(flow, state="disabled")
            flows.append(flow)
        sandboxes.append(dataclasses.replace(sb, accounts=accounts, flows=tuple(flows)))
    return dataclasses.replace(inv, sandboxes=tuple(sandboxes))


@FAST
@given(inventories(), LOGINS, SETTINGS, st.lists(st.text(), max_size=3))
def test_a_saved_plan_loads_back_as_the_same_plan(
    inv: Inventory, logins: list[Login], conf: Settings, warnings: list[str]
) -> None:
    # load_plan reads strictly and compares the typed plan with the decoded file: every
    # plan the planner makes (odd names, any warnings) must read back as itself.
    import tempfile
    from pathlib import Path

    from pinmigrate.plan import load_plan, save_plan
    from pinmigrate.plankey import PlanKey

    key = PlanKey(bytes(32), Path("plan.key"))
    plan = plan_for(inv, logins, conf).model_copy(update={"warnings": warnings}).sealed(key)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "plan.json"
        save_plan(plan, path)
        assert load_plan(path, key=key) == plan
