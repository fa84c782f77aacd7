"""The planner's rules, one case each, on inventories built in Python (no HTTP)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pinmigrate.errors import UsageError
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
from pinmigrate.planner import PlanOptions, choose_login, make_plan, needs_reconnect
from pinmigrate.settings import MigrationSettings, Settings

NOW = datetime(2024, 1, 10, 12, 0, tzinfo=UTC)
VALID = NOW + timedelta(days=50)
ORG = "TEST0000000000000000@AdobeOrg"


# -- builders ------------------------------------------------------------------------------


def L(
    fid: str,
    name: str = "Flow",
    state: str = "enabled",
    adv: str | None = "111",
    auds: Sequence[str] = ("s1",),
    sandbox: str = "prod",
) -> Flow:
    return Flow(
        id=fid,
        name=name,
        sandbox=sandbox,
        card="legacy",
        state=state,
        etag=f'"{fid}-etag"',
        account_id=f"acc-legacy-{sandbox}",
        target_connection_id=f"tc-{fid}",
        advertiser_id=adv,
        audiences=tuple(Audience(a, f"Audience {a}", "") for a in auds),
    )


def N(
    fid: str,
    name: str = "Flow",
    state: str = "disabled",
    adv: str | None = "111",
    auds: Sequence[str] = ("s1",),
    account: str | None = None,
    sandbox: str = "prod",
) -> Flow:
    return Flow(
        id=fid,
        name=name,
        sandbox=sandbox,
        card="new",
        state=state,
        etag=f'"{fid}-etag"',
        account_id=account or f"acc-{adv}",
        target_connection_id=f"tc-{fid}",
        advertiser_id=adv,
        audiences=tuple(Audience(a, f"Audience {a}", "") for a in auds),
    )


def world(
    *flows: Flow,
    expiry: dict[str, datetime | None] | None = None,
    extra_accounts: Sequence[Account] = (),
    sandboxes: Sequence[str] = ("prod",),
) -> Inventory:
    """An inventory holding these flows; each new account gets VALID credentials unless
    ``expiry`` says otherwise. Target connections are derived from the flows."""
    expiry = expiry or {}
    result = []
    for name in sandboxes:
        mine = [f for f in flows if f.sandbox == name]
        accounts: dict[str, Account] = {
            f"acc-legacy-{name}": Account(
                id=f"acc-legacy-{name}",
                name="legacy",
                sandbox=name,
                card="legacy",
                expires_at=VALID,
            )
        }
        for f in mine:
            if f.card == "new" and f.account_id and f.account_id not in accounts:
                accounts[f.account_id] = Account(
                    id=f.account_id,
                    name=f"Pinterest - {f.account_id}",
                    sandbox=name,
                    card="new",
                    etag='"acc-etag"',
                    expires_at=expiry.get(f.account_id, VALID),
                )
        accounts.update({a.id: a for a in extra_accounts if a.sandbox == name})
        tcs = tuple(
            TargetConnection(
                id=f.target_connection_id or "",
                sandbox=name,
                card=f.card,
                base_connection_id=f.account_id,
                advertiser_id=f.advertiser_id,
            )
            for f in mine
        )
        result.append(
            SandboxInventory(
                name=name,
                legacy_spec_id="spec-legacy",
                new_spec_id="spec-new",
                accounts=tuple(accounts.values()),
                target_connections=tcs,
                flows=tuple(mine),
            )
        )
    return Inventory(org_id=ORG, sandboxes=tuple(result))


def login(user: str, *advertisers: str, expires: datetime | None = VALID) -> Login:
    return Login(
        user_id=user,
        username=f"user{user}",
        ad_accounts=[AdAccountAccess(id=a) for a in advertisers],
        access_token="pina_SECRETACCESS" + user,  # type: ignore[arg-type]
        refresh_token="pinr_SECRETREFRESH" + user,  # type: ignore[arg-type]
        refresh_expires_at=expires,
    )


def settings(**migration: Any) -> Settings:
    return Settings(migration=MigrationSettings(**migration))


def plan_of(
    inventory: Inventory,
    logins: Sequence[Login] = (),
    *,
    conf: Settings | None = None,
    **options: Any,
) -> Plan:
    return make_plan(inventory, list(logins), conf or settings(), PlanOptions(now=NOW, **options))


def shape(plan: Plan) -> list[tuple[str, str, list[str]]]:
    """Actions as (kind, target, [kind:target it depends on])."""
    by_id = {a.id: a for a in plan.actions}
    return [
        (a.kind, a.target_id, [f"{by_id[d].kind}:{by_id[d].target_id}" for d in a.depends_on])
        for a in plan.actions
    ]


# -- the rules, one case each --------------------------------------------------------------


@dataclass
class Case:
    inventory: Inventory
    actions: list[tuple[str, str, list[str]]]
    statuses: dict[str, str] = field(default_factory=dict)
    blocked: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    logins: Sequence[Login] = ()
    conf: Settings | None = None
    options: dict[str, Any] = field(default_factory=dict)
    warning: str | None = None


CASES = {
    "pair enabled/disabled: enable the twin, then switch the legacy flow off": Case(
        world(L("l1"), N("n1")),
        [("enable_flow", "n1", []), ("disable_flow", "l1", ["enable_flow:n1"])],
        statuses={"l1": "migrate"},
    ),
    "audiences missing on the twin: add them before enabling": Case(
        world(L("l1", auds=("s1", "s3", "s2")), N("n1", auds=("s1",))),
        [
            ("add_audiences", "n1", []),
            ("enable_flow", "n1", ["add_audiences:n1"]),
            ("disable_flow", "l1", ["enable_flow:n1"]),
        ],
    ),
    "legacy disabled, twin disabled: left alone": Case(
        world(L("l1", state="disabled", auds=("s1", "s2")), N("n1")),
        [],
        statuses={"l1": "legacy_disabled"},
    ),
    "legacy disabled, twin enabled: migrated": Case(
        world(L("l1", state="disabled"), N("n1", state="enabled")),
        [],
        statuses={"l1": "migrated"},
    ),
    "both enabled: disable the legacy flow only, and warn": Case(
        world(L("l1"), N("n1", state="enabled")),
        [("disable_flow", "l1", [])],
        statuses={"l1": "migrate"},
        warning="delivered twice",
    ),
    "both enabled, audiences missing: disable waits for the audiences": Case(
        world(L("l1", auds=("s1", "s2")), N("n1", state="enabled")),
        [("add_audiences", "n1", []), ("disable_flow", "l1", ["add_audiences:n1"])],
    ),
    "both enabled with --keep-legacy: nothing to do": Case(
        world(L("l1"), N("n1", state="enabled")),
        [],
        statuses={"l1": "migrated"},
        conf=settings(disable_legacy=False),
    ),
    "--keep-legacy: enable only": Case(
        world(L("l1"), N("n1")),
        [("enable_flow", "n1", [])],
        conf=settings(disable_legacy=False),
    ),
    "disable_legacy = false in the config: enable only": Case(
        world(L("l1"), N("n1")),
        [("enable_flow", "n1", [])],
        conf=settings(disable_legacy=False),
    ),
    "no twin: orphan, no action": Case(
        world(L("l1", name="Lonely"), N("n1", name="Other")),
        [],
        orphans=["l1"],
    ),
    "same name, different ad account: orphan": Case(
        world(L("l1", adv="111"), N("n1", adv="222")),
        [],
        orphans=["l1"],
    ),
    "same ad account, different name: orphan": Case(
        world(L("l1", name="A"), N("n1", name="B")),
        [],
        orphans=["l1"],
    ),
    "two candidate twins: blocked as ambiguous": Case(
        world(L("l1"), N("n1"), N("n2")),
        [],
        statuses={"l1": "blocked"},
        blocked=["l1"],
    ),
    "two candidate twins, --match settles it": Case(
        world(L("l1"), N("n1"), N("n2")),
        [("enable_flow", "n2", []), ("disable_flow", "l1", ["enable_flow:n2"])],
        statuses={"l1": "migrate"},
        options={"matches": {"l1": "n2"}},
    ),
    "two legacy flows, one twin: both blocked": Case(
        world(L("l1"), L("l2"), N("n1")),
        [],
        blocked=["l1", "l2"],
    ),
    "two legacy flows, two twins, one --match: the other pair follows": Case(
        world(L("l1"), L("l2"), N("n1"), N("n2")),
        [
            ("enable_flow", "n1", []),
            ("enable_flow", "n2", []),
            ("disable_flow", "l1", ["enable_flow:n2"]),
            ("disable_flow", "l2", ["enable_flow:n1"]),
        ],
        options={"matches": {"l1": "n2"}},
    ),
    "legacy flow without ad account id: blocked, with a warning": Case(
        world(L("l1", adv=None), N("n1", adv=None)),
        [],
        blocked=["l1"],
        warning="no Pinterest ad account id",
    ),
    "twin's account has no credentials: reconnect first (needs a login)": Case(
        world(L("l1"), N("n1"), expiry={"acc-111": None}),
        [
            ("reconnect_account", "acc-111", []),
            ("enable_flow", "n1", ["reconnect_account:acc-111"]),
            ("disable_flow", "l1", ["enable_flow:n1"]),
        ],
    ),
    "credentials expired: reconnect": Case(
        world(L("l1"), N("n1"), expiry={"acc-111": NOW - timedelta(days=2)}),
        [
            ("reconnect_account", "acc-111", []),
            ("enable_flow", "n1", ["reconnect_account:acc-111"]),
            ("disable_flow", "l1", ["enable_flow:n1"]),
        ],
    ),
    "credentials expire within the margin: reconnect": Case(
        world(L("l1"), N("n1"), expiry={"acc-111": NOW + timedelta(days=3)}),
        [
            ("reconnect_account", "acc-111", []),
            ("enable_flow", "n1", ["reconnect_account:acc-111"]),
            ("disable_flow", "l1", ["enable_flow:n1"]),
        ],
    ),
    "credentials expire after the margin: no reconnect": Case(
        world(L("l1"), N("n1"), expiry={"acc-111": NOW + timedelta(days=8)}),
        [("enable_flow", "n1", []), ("disable_flow", "l1", ["enable_flow:n1"])],
    ),
    "a larger margin from the config catches it": Case(
        world(L("l1"), N("n1"), expiry={"acc-111": NOW + timedelta(days=8)}),
        [
            ("reconnect_account", "acc-111", []),
            ("enable_flow", "n1", ["reconnect_account:acc-111"]),
            ("disable_flow", "l1", ["enable_flow:n1"]),
        ],
        conf=settings(reconnect_margin_days=10),
    ),
    "add_audiences does not wait for the reconnect": Case(
        world(L("l1", auds=("s1", "s2")), N("n1"), expiry={"acc-111": None}),
        [
            ("reconnect_account", "acc-111", []),
            ("add_audiences", "n1", []),
            ("enable_flow", "n1", ["reconnect_account:acc-111", "add_audiences:n1"]),
            ("disable_flow", "l1", ["enable_flow:n1"]),
        ],
    ),
    "twin already enabled but account expired: reconnect, then disable": Case(
        world(L("l1"), N("n1", state="enabled"), expiry={"acc-111": None}),
        [
            ("reconnect_account", "acc-111", []),
            ("disable_flow", "l1", ["reconnect_account:acc-111"]),
        ],
    ),
    "migrated pair on an expiring account: reconnect (the new flow is live)": Case(
        world(L("l1", state="disabled"), N("n1", state="enabled"), expiry={"acc-111": None}),
        [("reconnect_account", "acc-111", [])],
        statuses={"l1": "migrated"},
    ),
    "legacy disabled on an expiring account: no reconnect": Case(
        world(L("l1", state="disabled"), N("n1"), expiry={"acc-111": None}),
        [],
    ),
    "blocked pair on an expiring account: no reconnect": Case(
        world(L("l1"), N("n1"), N("n2"), expiry={"acc-111": None}),
        [],
        blocked=["l1"],
    ),
    "one reconnect per account, whatever the number of flows": Case(
        world(
            L("l1", name="A"),
            N("n1", name="A"),
            L("l2", name="B"),
            N("n2", name="B"),
            expiry={"acc-111": None},
        ),
        [
            ("reconnect_account", "acc-111", []),
            ("enable_flow", "n1", ["reconnect_account:acc-111"]),
            ("enable_flow", "n2", ["reconnect_account:acc-111"]),
            ("disable_flow", "l1", ["enable_flow:n1"]),
            ("disable_flow", "l2", ["enable_flow:n2"]),
        ],
    ),
    "--flow narrows to one pair (by the new flow's id), reconnects follow": Case(
        world(
            L("l1", name="A"),
            N("n1", name="A"),
            L("l2", name="B", adv="222"),
            N("n2", name="B", adv="222"),
            expiry={"acc-111": None, "acc-222": None},
        ),
        [
            ("reconnect_account", "acc-222", []),
            ("enable_flow", "n2", ["reconnect_account:acc-222"]),
            ("disable_flow", "l2", ["enable_flow:n2"]),
        ],
        statuses={"l2": "migrate"},
        options={"flows": ("n2",)},
    ),
    "--sandbox narrows to one sandbox": Case(
        world(
            L("l1"),
            N("n1"),
            L("l2", sandbox="dev"),
            N("n2", sandbox="dev"),
            sandboxes=("prod", "dev"),
        ),
        [("enable_flow", "n2", []), ("disable_flow", "l2", ["enable_flow:n2"])],
        options={"sandboxes": ("dev",)},
    ),
    "pairing never crosses sandboxes": Case(
        world(L("l1"), N("n2", sandbox="dev"), sandboxes=("prod", "dev")),
        [],
        orphans=["l1"],
    ),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_rule(case: Case) -> None:
    plan = plan_of(case.inventory, case.logins, conf=case.conf, **case.options)
    assert shape(plan) == case.actions
    statuses = {p.legacy_flow_id: p.status for p in plan.pairs}
    for legacy_id, status in case.statuses.items():
        assert statuses[legacy_id] == status
    assert sorted(b.flow_id for b in plan.blockers) == case.blocked
    assert [o.flow_id for o in plan.orphans] == case.orphans
    if case.warning:
        assert any(case.warning in w for w in plan.warnings), plan.warnings
    assert plan.summary == {
        **{k: sum(a.kind == k for a in plan.actions) for k in KIND_ORDER},
        "blocked": len(case.blocked),
        "orphans": len(case.orphans),
    }


# -- details of the actions ------------------------------------------------------------------


def test_preconditions_and_details_follow_plan_semantics() -> None:
    inv = world(
        L("l1", name="Cart", auds=("s1", "s2", "s3")),
        N("n1", name="Cart", auds=("s1",)),
        expiry={"acc-111": NOW - timedelta(days=2)},
    )
    plan = plan_of(inv)
    by_kind = {a.kind: a for a in plan.actions}
    reconnect = by_kind["reconnect_account"]
    assert reconnect.id == "reconnect_account:prod:acc-111"
    assert reconnect.target_name == "Pinterest - acc-111"
    assert reconnect.precondition.model_dump() == {"expires_at": "2024-01-08T12:00:00+00:00"}
    assert reconnect.details.model_dump() == {
        "advertiser_ids": ["111"],
        "login": None,
        "needs_login": True,
        "flows": ["n1"],
        "via": "adobe",
        "expiry_rule": "expiresAt",
        "preflight": "not_checked",
    }
    add = by_kind["add_audiences"]
    assert add.id == "add_audiences:prod:n1"
    assert add.precondition.model_dump() == {
        "legacy_flow_id": "l1",
        "legacy_state": "enabled",
        "missing": ["s2", "s3"],
    }
    assert add.details.model_dump() == {
        "audiences": [
            {"id": "s2", "name": "Audience s2", "description": ""},
            {"id": "s3", "name": "Audience s3", "description": ""},
        ],
        "legacy_flow_id": "l1",
    }
    enable = by_kind["enable_flow"]
    assert enable.target_name == "Cart"
    assert enable.precondition.model_dump() == {
        "state": "disabled",
        "legacy_flow_id": "l1",
        "legacy_state": "enabled",
    }
    disable = by_kind["disable_flow"]
    assert disable.id == "disable_flow:prod:l1"
    assert disable.precondition.model_dump() == {
        "state": "enabled",
        "twin_flow_id": "n1",
        "twin_state": "disabled",
    }
    pair = plan.pairs[0]
    assert (pair.new_flow_id, pair.missing_audiences, pair.advertiser_id) == (
        "n1",
        ["s2", "s3"],
        "111",
    )


def test_reconnect_lists_every_advertiser_of_the_account() -> None:
    # One account serving two ad accounts: the login must cover both.
    inv = world(
        L("l1", name="A", adv="111"),
        N("n1", name="A", adv="111", account="acc-shared"),
        L("l2", name="B", adv="222"),
        N("n2", name="B", adv="222", account="acc-shared"),
        expiry={"acc-shared": None},
    )
    only_one = plan_of(inv, [login("u1", "111")])
    reconnect = only_one.actions[0]
    assert reconnect.details.advertiser_ids == ["111", "222"]
    assert reconnect.details.needs_login is True
    both = plan_of(inv, [login("u1", "111"), login("u2", "111", "222")])
    assert both.actions[0].details.login == "u2"
    assert both.actions[0].details.needs_login is False
    assert both.actions[0].details.flows == ["n1", "n2"]


def access(advertiser: str, *permissions: str) -> AdAccountAccess:
    return AdAccountAccess(id=advertiser, permissions=list(permissions))


def login_with(user: str, *accesses: AdAccountAccess) -> Login:
    return login(user).model_copy(update={"ad_accounts": list(accesses)})


def test_preflight_ok_names_the_user_who_manages_every_ad_account() -> None:
    inv = world(
        L("l1", name="A", adv="111"),
        N("n1", name="A", adv="111", account="acc-shared"),
        L("l2", name="B", adv="222"),
        N("n2", name="B", adv="222", account="acc-shared"),
        expiry={"acc-shared": NOW + timedelta(days=1)},
    )
    owner = login_with("u1", access("111", "OWNER"), access("222", "audience_manager"))
    details = plan_of(inv, [owner]).actions[0].details
    assert (details.preflight, details.preflight_user, details.login) == ("ok", "useru1 (u1)", "u1")
    assert details.missing_access is None and details.needs_login is False


def test_preflight_names_the_ad_accounts_the_login_cannot_manage() -> None:
    inv = world(
        L("l1", name="A", adv="111"),
        N("n1", name="A", adv="111", account="acc-shared"),
        L("l2", name="B", adv="222"),
        N("n2", name="B", adv="222", account="acc-shared"),
        L("l3", name="C", adv="333"),
        N("n3", name="C", adv="333", account="acc-shared"),
        expiry={"acc-shared": None},
    )
    # 222 is reached only as an analyst, 333 not at all.
    analyst = login_with("u1", access("111", "ADMIN"), access("222", "ANALYST"))
    plan = plan_of(inv, [analyst])
    details = plan.actions[0].details
    assert details.preflight == "missing_access"
    assert details.missing_access == ["222", "333"]
    assert details.preflight_user == "useru1 (u1)"
    assert details.login is None and details.needs_login is True
    assert any("cannot manage audiences of 2 ad accounts: 222, 333 " in w for w in plan.warnings)


def test_preflight_checks_the_login_that_lacks_the_fewest() -> None:
    inv = world(
        L("l1", name="A", adv="111"),
        N("n1", name="A", adv="111", account="acc-shared"),
        L("l2", name="B", adv="222"),
        N("n2", name="B", adv="222", account="acc-shared"),
        expiry={"acc-shared": None},
    )
    none = login_with("u1", access("999", "ADMIN"))
    one = login_with("u2", access("111", "ADMIN"))
    details = plan_of(inv, [none, one]).actions[0].details
    assert (details.preflight, details.missing_access) == ("missing_access", ["222"])
    assert details.preflight_user == "useru2 (u2)"


def test_preflight_without_any_login_is_not_checked_and_plans_the_same_actions() -> None:
    inv = world(L("l1"), N("n1"), expiry={"acc-111": None})
    without = plan_of(inv)
    with_login = plan_of(inv, [login("u1", "111")])
    assert without.actions[0].details.preflight == "not_checked"
    assert with_login.actions[0].details.preflight == "ok"
    assert shape(without) == shape(with_login)


def test_the_plan_says_which_rule_read_each_expiry() -> None:
    inv = world(L("l1"), N("n1"), expiry={"acc-111": None})
    sandbox = inv.sandboxes[0]
    accounts = tuple(
        replace(a, expiry_rule="updatedAt+30d", expires_at=NOW) for a in sandbox.accounts
    )
    inv = replace(inv, sandboxes=(replace(sandbox, accounts=accounts),))
    assert plan_of(inv).actions[0].details.expiry_rule == "updatedAt+30d"


def test_the_api_path_is_named_experimental_in_the_plan() -> None:
    inv = world(L("l1"), N("n1"), expiry={"acc-111": None})
    api = plan_of(inv, conf=settings(reconnect_via="api"))
    assert api.actions[0].details.via == "api"
    assert "experimental" in api.warnings[0] and "Adobe documents no API" in api.warnings[0]
    adobe = plan_of(inv)
    assert adobe.actions[0].details.via == "adobe"
    assert not any("experimental" in w for w in adobe.warnings)


def test_login_choice_is_the_longest_lived_then_the_smallest_user_id() -> None:
    early = login("u1", "111", expires=NOW + timedelta(days=10))
    late = login("u9", "111", expires=NOW + timedelta(days=40))
    late_too = login("u5", "111", expires=NOW + timedelta(days=40))
    unknown = login("u0", "111", expires=None)
    assert choose_login(["111"], [early, late, late_too, unknown]) is late_too
    assert choose_login(["111"], [unknown, early]) is early
    assert choose_login(["111"], [unknown]) is unknown
    assert choose_login(["111", "222"], [early, late]) is None
    assert choose_login([], [early]) is None


def test_an_expired_login_is_not_named() -> None:
    inv = world(L("l1"), N("n1"), expiry={"acc-111": None})
    plan = plan_of(inv, [login("u1", "111", expires=NOW - timedelta(seconds=1))])
    assert plan.actions[0].details.needs_login is True


def test_needs_reconnect_boundaries() -> None:
    margin = timedelta(days=7)
    assert needs_reconnect(None, NOW, margin)
    assert needs_reconnect(NOW + margin, NOW, margin)
    assert not needs_reconnect(NOW + margin + timedelta(seconds=1), NOW, margin)
    assert needs_reconnect(datetime(2024, 1, 12), NOW, margin)  # naive means UTC


def test_actions_sorted_by_kind_then_sandbox_then_name() -> None:
    inv = world(
        L("l-b", name="b"),
        N("n-b", name="b", auds=()),
        L("l-a", name="a"),
        N("n-a", name="a", auds=()),
        L("l-d", name="a", sandbox="dev"),
        N("n-d", name="a", sandbox="dev", auds=()),
        sandboxes=("prod", "dev"),
    )
    plan = plan_of(inv)
    assert [a.id for a in plan.actions] == [
        "add_audiences:prod:n-a",
        "add_audiences:prod:n-b",
        "add_audiences:dev:n-d",
        "enable_flow:prod:n-a",
        "enable_flow:prod:n-b",
        "enable_flow:dev:n-d",
        "disable_flow:prod:l-a",
        "disable_flow:prod:l-b",
        "disable_flow:dev:l-d",
    ]
    assert plan.sandboxes == ["prod", "dev"]
    assert [p.legacy_flow_id for p in plan.pairs] == ["l-a", "l-b", "l-d"]


def test_blocker_names_its_candidates() -> None:
    plan = plan_of(world(L("l1", name="Seeds"), N("n2", name="Seeds"), N("n1", name="Seeds")))
    (blocker,) = plan.blockers
    assert blocker.kind == "ambiguous"
    assert blocker.candidates == ["n1", "n2"]
    assert "--match l1=NEW_ID" in blocker.message


def test_plan_is_deterministic_and_sealed() -> None:
    inv = world(L("l1", auds=("s1", "s2")), N("n1"), expiry={"acc-111": None})
    first, second = plan_of(inv), plan_of(inv)
    assert first.fingerprint == second.fingerprint
    assert first.fingerprint == first.compute_fingerprint()
    assert first.created_at == "2024-01-10T12:00:00+00:00"
    assert first.org_id == ORG


def test_plan_never_holds_a_login_secret() -> None:
    inv = world(L("l1"), N("n1"), expiry={"acc-111": None})
    plan = plan_of(inv, [login("u1", "111")])
    text = plan.to_json()
    assert "SECRET" not in text
    assert plan.actions[0].details.login == "u1"


def test_nothing_to_change() -> None:
    plan = plan_of(world(L("l1", state="disabled"), N("n1", state="enabled")))
    assert not plan.has_changes
    assert plan.summary["enable_flow"] == 0


def test_new_account_without_target_connection_is_warned_about() -> None:
    lonely = Account(id="acc-x", name="Unused", sandbox="prod", card="new", expires_at=None)
    plan = plan_of(world(L("l1"), N("n1"), extra_accounts=[lonely]))
    assert any("'Unused'" in w and "no target connection" in w for w in plan.warnings)
    assert all(a.target_id != "acc-x" for a in plan.actions)


def test_twin_on_an_unknown_account_is_warned_about() -> None:
    twin = N("n1", account="acc-gone")
    inv = world(L("l1"), twin)
    sb = inv.sandboxes[0]
    inv = Inventory(
        org_id=ORG,
        sandboxes=(
            SandboxInventory(
                name="prod",
                legacy_spec_id="x",
                new_spec_id="y",
                accounts=tuple(a for a in sb.accounts if a.id != "acc-gone"),
                target_connections=sb.target_connections,
                flows=sb.flows,
            ),
        ),
    )
    plan = plan_of(inv)
    assert any("acc-gone" in w for w in plan.warnings)
    assert [a.kind for a in plan.actions] == ["enable_flow", "disable_flow"]


# -- the operator's options, checked ---------------------------------------------------------


TWO_SANDBOXES = world(
    L("l1"),
    N("n1"),
    N("n1b"),
    L("l2", sandbox="dev"),
    N("n2", sandbox="dev"),
    L("l3", adv="333"),
    N("n3", adv="444"),
    sandboxes=("prod", "dev"),
)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sandboxes": ("stage",)}, "1 unknown sandbox: stage (--sandbox)"),
        ({"sandboxes": ("stage", "qa", "prod")}, "2 unknown sandboxes: stage, qa (--sandbox)"),
        ({"flows": ("nope",)}, "no Pinterest flow with id or name 'nope' (--flow)"),
        ({"flows": ("x", "l1", "y", "x")}, "2 unknown flow ids or names: 'x', 'y' (--flow)"),
        (
            {"flows": ("l2",), "sandboxes": ("prod",)},
            "--sandbox leaves out the sandbox of 1 flow: l2",
        ),
        (
            {"flows": ("l2", "l1", "n2"), "sandboxes": ("prod",)},
            "--sandbox leaves out the sandbox of 2 flows: l2 (",
        ),
        ({"matches": {"nope": "n1"}}, "nope is not a flow of the legacy"),
        ({"matches": {"n1": "n1b"}}, "n1 is not a flow of the legacy"),
        ({"matches": {"l1": "l2"}}, "l2 is not a flow of the new"),
        ({"matches": {"l1": "n2"}}, "different sandboxes"),
        ({"matches": {"l3": "n3"}}, "different Pinterest ad accounts"),
        ({"matches": {"l2": "n2"}, "sandboxes": ("prod",)}, "left out by --sandbox"),
    ],
)
def test_bad_options_are_usage_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        plan_of(TWO_SANDBOXES, **options)
    assert message in caught.value.line()
    assert caught.value.exit_code == 64


def test_unknown_sandbox_lists_the_known_ones() -> None:
    with pytest.raises(UsageError) as caught:
        plan_of(TWO_SANDBOXES, sandboxes=("stage",))
    assert "known sandboxes: prod, dev" in caught.value.line()


def test_one_new_flow_cannot_be_matched_twice() -> None:
    inv = world(L("l1"), L("l2"), N("n1"))
    with pytest.raises(UsageError, match="already matched"):
        plan_of(inv, matches={"l1": "n1", "l2": "n1"})


def test_match_may_pair_flows_of_different_names() -> None:
    plan = plan_of(world(L("l1", name="Old name"), N("n1", name="New name")), matches={"l1": "n1"})
    assert [a.kind for a in plan.actions] == ["enable_flow", "disable_flow"]
    assert "paired by --match" in plan.pairs[0].note
    assert plan.orphans == []


# -- hints for orphans and double delivery -----------------------------------------------------


@pytest.mark.parametrize(
    ("legacy_name", "new_name", "difference"),
    [
        ("Café", "Cafe\u0301", "Unicode form"),
        ("Loyalty ", "Loyalty", "spacing"),
        ("Loyalty  members", "loyalty members", "spacing and case"),
    ],
)
def test_an_orphan_with_a_near_namesake_is_told_the_match_that_pairs_them(
    legacy_name: str, new_name: str, difference: str
) -> None:
    plan = plan_of(world(L("l1", name=legacy_name), N("n1", name=new_name)))
    assert plan.actions == []  # pairing stays by exact name
    [orphan] = plan.orphans
    assert f"differs only in {difference}" in orphan.reason
    assert "--match l1=n1" in orphan.reason


def test_a_near_namesake_of_another_advertiser_or_already_paired_is_not_suggested() -> None:
    plan = plan_of(world(L("l1", name="loyalty"), L("l2", name="Loyalty"), N("n1", name="Loyalty")))
    [orphan] = plan.orphans
    assert orphan.flow_id == "l1" and "--match" not in orphan.reason  # n1 is l2's twin
    other = plan_of(world(L("l1", name="Loyalty"), N("n1", name="loyalty", adv="222")))
    assert "--match" not in other.orphans[0].reason


def test_an_orphan_whose_twin_a_match_took_is_told_so() -> None:
    inv = world(L("l1"), L("l2", state="disabled"), N("n1"))
    plan = plan_of(inv, matches={"l1": "n1"})
    [orphan] = plan.orphans
    assert orphan.flow_id == "l2"
    assert "is paired with legacy flow l1 by --match" in orphan.reason
    assert "no flow of the new card has this name" not in orphan.reason


@pytest.mark.parametrize("new_state", ["enabled", "disabled"])
def test_keep_legacy_warns_that_both_flows_deliver(new_state: str) -> None:
    inv = world(L("l1", name="Loyalty"), N("n1", name="Loyalty", state=new_state))
    flagged = settings(disable_legacy=False).model_copy(
        update={"sources": {"migration.disable_legacy": "flag --keep-legacy"}}
    )
    plan = plan_of(inv, conf=flagged)
    assert any(
        "'Loyalty' (l1)" in w and "delivered twice" in w and "--keep-legacy" in w
        for w in plan.warnings
    ), plan.warnings
    kept = plan_of(inv, conf=settings(disable_legacy=False))
    assert any("migration.disable_legacy = false" in w for w in kept.warnings), kept.warnings


# -- the demo scenario of docs/architecture.md, in Python --------------------------------------


def demo_inventory() -> Inventory:
    def acc(aid: str, adv: str, sb: str, exp: datetime | None) -> Account:
        return Account(
            id=aid, name=f"Pinterest - ad account {adv}", sandbox=sb, card="new", expires_at=exp
        )

    flows = [
        L("l-loyal", "Loyalty members", adv="175"),
        N("n-loyal", "Loyalty members", adv="175"),
        L("l-cart", "Cart abandoners", adv="176", auds=("a1", "a2", "a3")),
        N("n-cart", "Cart abandoners", adv="176", auds=("a1", "a2")),
        L("l-win", "Winback 2023", state="disabled", adv="175"),
        N("n-win", "Winback 2023", adv="175"),
        L("l-spring", "Spring sale", state="disabled", adv="175"),
        N("n-spring", "Spring sale", state="enabled", adv="175"),
        L("l-holiday", "Holiday prospects", adv="175"),
        L("l-look", "Lookalike seeds", adv="175"),
        N("n-look1", "Lookalike seeds", adv="175"),
        N("n-look2", "Lookalike seeds", adv="175"),
        L("l-news", "Newsletter subscribers", adv="177", sandbox="dev"),
        N("n-news", "Newsletter subscribers", adv="177", sandbox="dev"),
        L("l-smoke", "Dev smoke test", adv="178", sandbox="dev"),
        N("n-smoke", "Dev smoke test", adv="178", sandbox="dev"),
    ]
    return world(
        *flows,
        sandboxes=("prod", "dev"),
        extra_accounts=[
            acc("acc-175", "175", "prod", None),
            acc("acc-176", "176", "prod", NOW - timedelta(days=2)),
            acc("acc-177", "177", "dev", NOW + timedelta(days=50)),
            acc("acc-178", "178", "dev", NOW + timedelta(days=3)),
        ],
    )


def test_demo_scenario_expected_plan() -> None:
    marketer = login("1000000001", "175", "176", "177", "178")
    analyst = login("1000000002", "175", expires=NOW + timedelta(days=90))
    plan = plan_of(demo_inventory(), [marketer, analyst])
    assert plan.summary == {
        "reconnect_account": 3,
        "add_audiences": 1,
        "enable_flow": 4,
        "disable_flow": 4,
        "blocked": 1,
        "orphans": 1,
    }
    logins = {a.target_id: a.details.login for a in plan.actions if a.kind == "reconnect_account"}
    # The analyst's grant lives longer and covers ...175 alone.
    assert logins == {"acc-175": "1000000002", "acc-176": "1000000001", "acc-178": "1000000001"}
    flows_175 = next(a for a in plan.actions if a.target_id == "acc-175").details.flows
    assert flows_175 == ["n-loyal", "n-spring"]
    statuses = {p.legacy_flow_name: p.status for p in plan.pairs}
    assert statuses == {
        "Loyalty members": "migrate",
        "Cart abandoners": "migrate",
        "Winback 2023": "legacy_disabled",
        "Spring sale": "migrated",
        "Lookalike seeds": "blocked",
        "Newsletter subscribers": "migrate",
        "Dev smoke test": "migrate",
    }
    no_login = plan_of(demo_inventory())
    assert no_login.summary == plan.summary
    assert all(a.details.needs_login for a in no_login.actions if a.kind == "reconnect_account")


@pytest.mark.parametrize(
    ("flows", "match", "settled", "twin"),
    [
        # two legacy and two new flows of one name: each legacy flow is ambiguous
        ((L("l1"), L("l2"), N("n1"), N("n2")), {"l1": "n1"}, "l2", "n2"),
        # two legacy flows of one name and one new: a match with another new flow settles it
        ((L("l1"), L("l2"), N("n1"), N("nx", name="Other")), {"l1": "nx"}, "l2", "n1"),
    ],
)
def test_a_match_that_settles_another_ambiguous_pair_says_so(
    flows: tuple[Flow, ...], match: dict[str, str], settled: str, twin: str
) -> None:
    unmatched = plan_of(world(*flows))
    assert {b.flow_id for b in unmatched.blockers} >= {settled}
    plan = plan_of(world(*flows), matches=match)
    [lid] = match
    [warning] = [w for w in plan.warnings if f"--match {lid}={match[lid]} also settled" in w]
    assert f"({settled})" in warning and f"new flow {twin}" in warning
    [pair] = [p for p in plan.pairs if p.legacy_flow_id == settled]
    assert pair.new_flow_id == twin and f"settled by --match {lid}=" in pair.note


def test_a_pair_unambiguous_without_the_match_gets_no_such_warning() -> None:
    plan = plan_of(
        world(L("l1"), N("n1"), L("l2", name="Other"), N("n2", name="Else")), matches={"l2": "n2"}
    )
    assert not any("also settled" in w for w in plan.warnings)
    assert [p.note for p in plan.pairs if p.legacy_flow_id == "l1"] == [""]


def test_flow_by_name_selects_one_flow_or_one_pair() -> None:
    inv = world(
        L("l1", name="Loyalty"),
        N("n1", name="Loyalty"),
        L("l2", name="Winback"),
        N("n2", name="Winback"),
        N("n3", name="Only new", state="enabled"),
    )
    assert [p.legacy_flow_id for p in plan_of(inv, flows=("Loyalty",)).pairs] == ["l1"]
    assert plan_of(inv, flows=("Loyalty",)).pairs == plan_of(inv, flows=("l1",)).pairs
    assert [p.legacy_flow_id for p in plan_of(inv, flows=("Winback", "n1")).pairs] == ["l1", "l2"]
    with pytest.raises(UsageError, match="no Pinterest flow with id or name 'loyalty'"):
        plan_of(inv, flows=("loyalty",))


@pytest.mark.parametrize(
    "flows",
    [
        # two legacy flows of one name
        (L("l1", name="Same"), L("l2", name="Same"), N("n1", name="Other")),
        # a legacy flow and a new flow of the same name but different ad accounts: no pair
        (L("l1", name="Same"), N("n1", name="Same", adv="222")),
    ],
)
def test_flow_by_a_name_that_is_not_one_pair_is_refused_naming_the_flows(
    flows: tuple[Flow, ...],
) -> None:
    with pytest.raises(UsageError) as caught:
        plan_of(world(*flows), flows=("Same",))
    line = caught.value.line()
    assert line.startswith("--flow 'Same' names 2 flows: ")
    for flow in flows:
        assert (flow.id in line) is (flow.name == "Same")


def test_flow_by_a_name_of_more_than_ten_flows_is_cut_short() -> None:
    many = [N(f"n{i:02}", name="Busy", adv=str(i)) for i in range(12)]
    with pytest.raises(UsageError) as caught:
        plan_of(world(*many), flows=("Busy",))
    line = caught.value.line()
    assert "names 12 flows: " in line and "n09 (new, prod), ..." in line and "n10" not in line


def test_flow_by_name_outside_the_selected_sandboxes() -> None:
    inv = world(L("l1", name="Dev one", sandbox="dev"), L("l2"), sandboxes=("prod", "dev"))
    with pytest.raises(UsageError, match=r"leaves out the sandbox of 1 flow: l1 \(Dev one, dev\)"):
        plan_of(inv, flows=("Dev one",), sandboxes=("prod",))


def test_every_flow_left_out_is_named_in_the_one_error() -> None:
    with pytest.raises(UsageError) as caught:
        plan_of(TWO_SANDBOXES, flows=("l2", "l1", "n2"), sandboxes=("prod",))
    line = caught.value.line()
    assert line.count("dev)") == 2 and "l2 (" in line and "n2 (" in line


def test_a_plan_made_to_be_carried_out_is_encoded_once_to_seal_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sealing encodes the whole plan (19 MB of canonical JSON at 20,000 pairs): the plan
    # `plan` and `apply` make is sealed with the key only, and to the same seal as the
    # planner's own plan sealed with that key.
    from pinmigrate import workflow
    from pinmigrate.plankey import load_key

    inv = world(L("l1", auds=("s1", "s2")), N("n1"), L("l2", name="Other"), N("n2", "Other"))
    settings = Settings(state_dir=tmp_path)
    encodings: list[str] = []
    encode = Plan._canonical_parts

    def counted(plan: Plan) -> Iterator[str]:
        encodings.append(plan.fingerprint)
        return encode(plan)

    monkeypatch.setattr(Plan, "_canonical_parts", counted)
    plan = workflow.plan_for(settings, inv, now=NOW)
    assert encodings == [""]
    key = load_key(tmp_path)
    assert key is not None and plan.fingerprint.startswith(f"hmac-sha256:{key.id}:")
    monkeypatch.setattr(Plan, "_canonical_parts", encode)
    assert plan == make_plan(inv, [], settings, PlanOptions(now=NOW)).sealed(key)
