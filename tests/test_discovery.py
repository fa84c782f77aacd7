"""Discovery: filtered list calls only, both cards, nothing else, sandboxes in order."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from pinmigrate.adobe import AdobeClient
from pinmigrate.cards import LegacyCardGone, find_card
from pinmigrate.discovery import card_of_flow, discover
from pinmigrate.emulator import LEGACY_SPEC_ID as LEGACY_ID
from pinmigrate.emulator import NEW_SPEC_ID as NEW_ID
from pinmigrate.emulator import Emulator
from pinmigrate.errors import ApiError, ConfigError, NotFoundError
from pinmigrate.inventory import Inventory
from pinmigrate.settings import AdobeSettings, MigrationSettings, Settings, load_settings

LEGACY, NEW, S3 = "spec-legacy", "spec-new", "spec-s3"
DECOY = "spec-conversions"
#: The card names of Adobe's notice, and a Pinterest-like card that must never match.
SPECS = {
    "(Deprecating) Pinterest": LEGACY,
    "Pinterest": NEW,
    "(Beta) Pinterest Conversions": DECOY,
    "Amazon S3": S3,
}


def settings(sandboxes: Sequence[str] = ("prod",), **migration: Any) -> Settings:
    return Settings(
        adobe=AdobeSettings(
            org_id="TEST@AdobeOrg",
            client_id="client",
            client_secret="not-a-real-secret",  # type: ignore[arg-type]
            sandboxes=tuple(sandboxes),
            ims_url="https://adobe.test",
            platform_url="https://adobe.test",
        ),
        migration=MigrationSettings(**migration),
    )


def account(aid: str, spec: str, expires: str | None = None) -> dict[str, Any]:
    params = {"expiresAt": expires} if expires else {}
    return {
        "id": aid,
        "name": f"Account {aid}",
        "connectionSpec": {"id": spec, "version": "1.0"},
        "auth": {"specName": "OAuth2 Authorization Code", "params": params},
        "state": "enabled",
        "etag": f'"{aid}"',
    }


def target(tid: str, spec: str, base: str, advertiser: str | None) -> dict[str, Any]:
    return {
        "id": tid,
        "name": f"Target {tid}",
        "baseConnectionId": base,
        "connectionSpec": {"id": spec, "version": "1.0"},
        "params": {"advertiser_id": advertiser} if advertiser else {},
        "state": "enabled",
        "etag": f'"{tid}"',
    }


def flow(
    fid: str, name: str, spec: str, tc: str, base: str, state: str = "enabled", auds: int = 2
) -> dict[str, Any]:
    return {
        "id": fid,
        "name": name,
        "state": state,
        "etag": f'"{fid}"',
        "targetConnectionIds": [tc],
        "inheritedAttributes": {
            "properties": {"isDestinationFlow": True},
            "targetConnections": [
                {
                    "id": tc,
                    "connectionSpec": {"id": spec, "version": "1.0"},
                    "baseConnection": {"id": base, "connectionSpec": {"id": spec}},
                }
            ],
        },
        "transformations": [
            {
                "name": "GeneralTransform",
                "params": {
                    "segmentSelectors": {
                        "selectors": [
                            {"type": "PLATFORM_SEGMENT", "value": {"id": f"aud{i}", "name": ""}}
                            for i in range(auds)
                        ]
                    }
                },
            }
        ],
    }


def world(sandbox: str) -> dict[str, list[dict[str, Any]]]:
    """One sandbox's objects, including another destination's, which must be left out."""
    return {
        "connections": [
            account(f"{sandbox}-acc-l", LEGACY, "2030-01-01T00:00:00Z"),
            account(f"{sandbox}-acc-n", NEW),
            account(f"{sandbox}-acc-s3", S3),
        ],
        "targetConnections": [
            target(f"{sandbox}-tc-l", LEGACY, f"{sandbox}-acc-l", "549755885175"),
            target(f"{sandbox}-tc-n", NEW, f"{sandbox}-acc-n", "549755885175"),
            target(f"{sandbox}-tc-s3", S3, f"{sandbox}-acc-s3", None),
        ],
        "flows": [
            flow(f"{sandbox}-fl", "Loyalty", LEGACY, f"{sandbox}-tc-l", f"{sandbox}-acc-l"),
            flow(
                f"{sandbox}-fn",
                "Loyalty",
                NEW,
                f"{sandbox}-tc-n",
                f"{sandbox}-acc-n",
                "disabled",
                1,
            ),
            flow(f"{sandbox}-fs3", "S3 export", S3, f"{sandbox}-tc-s3", f"{sandbox}-acc-s3"),
        ],
    }


class FakeAdobe:
    """The AdobeClient interface; it ignores filters (as a careless server might) and
    refuses single GETs, which discovery must never make."""

    def __init__(self, sandboxes: Sequence[str], barrier: threading.Barrier | None = None) -> None:
        self.data = {name: world(name) for name in sandboxes}
        self.calls: list[tuple[str, str, tuple[str, ...]]] = []
        self.spec_lookups: list[tuple[str, str]] = []
        self.barrier = barrier
        self.lock = threading.Lock()
        self.specs = dict(SPECS)
        #: Called before each list answers; raises to make that read fail.
        self.refuse: Callable[[str, Sequence[str], Mapping[str, str]], None] = (
            lambda resource, properties, params: None
        )

    def token(self) -> str:
        return "token"

    def list(
        self,
        resource: str,
        *,
        sandbox: str,
        properties: Sequence[str] = (),
        params: Mapping[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        with self.lock:
            self.calls.append((resource, sandbox, tuple(properties)))
        self.refuse(resource, properties, params or {})
        if resource == "connectionSpecs":
            yield from ({"id": spec_id, "name": name} for name, spec_id in self.specs.items())
            return
        if self.barrier is not None:
            self.barrier.wait()
        yield from self.data[sandbox][resource]

    def get(self, resource: str, object_id: str, *, sandbox: str) -> dict[str, Any]:
        """Only a card given by id is read by id (to check it exists)."""
        if resource != "connectionSpecs":
            raise AssertionError(f"discovery made a per-object GET of {resource}/{object_id}")
        with self.lock:
            self.calls.append((resource, sandbox, (object_id,)))
        for name, spec_id in self.specs.items():
            if spec_id == object_id:
                return {"id": spec_id, "name": name}
        raise NotFoundError(f"no connection spec {object_id}", service="adobe")

    def connection_specs_named(self, name: str, *, sandbox: str) -> list[dict[str, Any]]:
        with self.lock:
            self.spec_lookups.append((name, sandbox))
        return [{"id": i, "name": n} for n, i in self.specs.items() if n == name]


def test_filtered_lists_only_and_both_cards_only() -> None:
    adobe = FakeAdobe(["prod"])
    inventory = discover(adobe, settings(), ["prod"])  # type: ignore[arg-type]
    either = f"{LEGACY},{NEW}"
    assert sorted(adobe.calls) == [
        ("connections", "prod", (f"connectionSpec.id=={either}",)),
        (
            "flows",
            "prod",
            (f"inheritedAttributes.targetConnections[].connectionSpec.id=={either}",),
        ),
        ("targetConnections", "prod", (f"connectionSpec.id=={either}",)),
    ]
    assert sorted(adobe.spec_lookups) == [
        ("(Deprecating) Pinterest", "prod"),
        ("Pinterest", "prod"),
    ]
    (sb,) = inventory.sandboxes
    assert (sb.name, sb.legacy_spec_id, sb.new_spec_id) == ("prod", LEGACY, NEW)
    assert (sb.legacy_spec_name, sb.new_spec_name) == ("(Deprecating) Pinterest", "Pinterest")
    assert {f.id: f.card for f in sb.flows} == {"prod-fl": "legacy", "prod-fn": "new"}
    assert {a.id: a.card for a in sb.accounts} == {"prod-acc-l": "legacy", "prod-acc-n": "new"}
    assert {t.id for t in sb.target_connections} == {"prod-tc-l", "prod-tc-n"}


def test_flow_values_come_from_the_payloads_and_target_connections() -> None:
    inventory = discover(FakeAdobe(["prod"]), settings())  # type: ignore[arg-type]
    new = inventory.flow("prod-fn")
    assert new is not None
    # The flow payload carries no params: the ad account comes from the target connection.
    assert new.advertiser_id == "549755885175"
    assert (new.account_id, new.target_connection_id, new.state) == (
        "prod-acc-n",
        "prod-tc-n",
        "disabled",
    )
    assert [a.id for a in new.audiences] == ["aud0"]
    sb = inventory.sandboxes[0]
    assert sb.account("prod-acc-n") is not None
    assert sb.account("prod-acc-n").expires_at is None  # type: ignore[union-attr]
    assert sb.account("prod-acc-l").expires_at.year == 2030  # type: ignore[union-attr]
    assert inventory.org_id == "TEST@AdobeOrg"


def test_spec_id_overrides_skip_the_lookup() -> None:
    adobe = FakeAdobe(["prod"])
    inventory = discover(adobe, settings(legacy_spec_id=LEGACY, new_spec_id=NEW))  # type: ignore[arg-type]
    assert adobe.spec_lookups == []
    assert len(inventory.sandboxes[0].flows) == 2
    # Each id is only checked: a wrong one must not read as a card without flows.
    assert {call for call in adobe.calls if call[0] == "connectionSpecs"} == {
        ("connectionSpecs", "prod", (LEGACY,)),
        ("connectionSpecs", "prod", (NEW,)),
    }


def test_a_spec_id_override_that_names_no_spec_is_an_error() -> None:
    adobe = FakeAdobe(["prod"])
    with pytest.raises(NotFoundError) as caught:
        discover(adobe, settings(legacy_spec_id="spec-typo"))  # type: ignore[arg-type]
    assert caught.value.line() == (
        "no connection spec spec-typo in sandbox prod (set by migration.legacy_spec_id); "
        "check the id or remove migration.legacy_spec_id to look the card up by name"
    )


def test_one_override_looks_up_the_other_card_only() -> None:
    adobe = FakeAdobe(["prod"])
    discover(adobe, settings(new_spec_id=NEW))  # type: ignore[arg-type]
    assert adobe.spec_lookups == [("(Deprecating) Pinterest", "prod")]


def test_the_draft_name_is_the_fallback_for_the_new_card() -> None:
    adobe = FakeAdobe(["prod"])
    adobe.specs["(New) Pinterest"] = adobe.specs.pop("Pinterest")
    inventory = discover(adobe, settings())  # type: ignore[arg-type]
    (sb,) = inventory.sandboxes
    assert (sb.new_spec_id, sb.new_spec_name) == (NEW, "(New) Pinterest")
    new_lookups = [name for name, _ in adobe.spec_lookups if "Deprecating" not in name]
    assert new_lookups == ["Pinterest", "(New) Pinterest"]


def test_the_notice_name_wins_when_both_names_exist() -> None:
    adobe = FakeAdobe(["prod"])
    adobe.specs["(New) Pinterest"] = "spec-draft"
    inventory = discover(adobe, settings())  # type: ignore[arg-type]
    assert inventory.sandboxes[0].new_spec_id == NEW
    assert ("(New) Pinterest", "prod") not in adobe.spec_lookups


def test_a_configured_name_is_used_as_given() -> None:
    adobe = FakeAdobe(["prod"])
    adobe.specs["Pinterest v5 (EU)"] = "spec-eu"
    inventory = discover(adobe, settings(new_destination="Pinterest v5 (EU)"))  # type: ignore[arg-type]
    assert inventory.sandboxes[0].new_spec_id == "spec-eu"
    assert ("Pinterest", "prod") not in adobe.spec_lookups
    del adobe.specs["Pinterest v5 (EU)"]
    with pytest.raises(NotFoundError, match="named 'Pinterest v5 \\(EU\\)' in sandbox prod"):
        discover(adobe, settings(new_destination="Pinterest v5 (EU)"))  # type: ignore[arg-type]


def test_missing_card_lists_the_pinterest_like_cards_and_the_settings() -> None:
    adobe = FakeAdobe(["prod"])
    del adobe.specs["Pinterest"]
    with pytest.raises(NotFoundError) as caught:
        discover(adobe, settings())  # type: ignore[arg-type]
    line = caught.value.line()
    assert "named 'Pinterest' or '(New) Pinterest' in sandbox prod" in line
    assert f"'(Deprecating) Pinterest' = {LEGACY}" in line
    assert f"'(Beta) Pinterest Conversions' = {DECOY}" in line
    assert "Amazon S3" not in line
    assert "migration.new_spec_id" in line and "migration.new_destination" in line
    assert all(resource == "connectionSpecs" for resource, *_ in adobe.calls)


def test_a_sandbox_whose_legacy_card_is_gone_has_no_legacy_flows() -> None:
    adobe = FakeAdobe(["prod"])
    del adobe.specs["(Deprecating) Pinterest"]
    [sb] = discover(adobe, settings()).sandboxes  # type: ignore[arg-type]
    assert (sb.legacy_spec_id, sb.spec("legacy"), sb.new_spec_id) == (None, None, NEW)
    assert "no legacy card '(Deprecating) Pinterest' in sandbox prod" in sb.legacy_gone
    # Only the new card's objects, though this server ignores the filters.
    assert {f.card for f in sb.flows} == {a.card for a in sb.accounts} == {"new"}
    assert ("connections", "prod", (f"connectionSpec.id=={NEW}",)) in adobe.calls


def test_another_pinterest_like_card_delivering_flows_may_be_the_legacy_one() -> None:
    adobe = FakeAdobe(["prod"])
    del adobe.specs["(Deprecating) Pinterest"]
    adobe.data["prod"]["flows"].append(
        flow("prod-fd", "Conversions", DECOY, "prod-tc-d", "prod-acc-d")
    )
    with pytest.raises(NotFoundError) as caught:
        discover(adobe, settings())  # type: ignore[arg-type]
    line = caught.value.line()
    assert f"'(Beta) Pinterest Conversions' = {DECOY} (delivers flows)" in line
    assert f"'Pinterest' = {NEW}" in line and f"'Pinterest' = {NEW} (" not in line
    assert "migration.legacy_spec_id" in line


def test_a_configured_legacy_name_that_is_missing_is_never_taken_as_gone() -> None:
    adobe = FakeAdobe(["prod"])
    del adobe.specs["(Deprecating) Pinterest"]
    with pytest.raises(NotFoundError, match="named '\\(Deprecating\\) Pinterest' in sandbox"):
        discover(adobe, settings(legacy_destination="(Deprecating) Pinterest"))  # type: ignore[arg-type]


def test_a_legacy_card_still_named_pinterest_is_never_taken_as_gone() -> None:
    """The draft naming with the legacy card still called "Pinterest": the default lookup
    takes it as the new card, so its name is no proof that it is not the legacy one."""
    adobe = FakeAdobe(["prod"])
    adobe.specs = {
        "Pinterest": LEGACY,
        "(New) Pinterest": NEW,
        "(Beta) Pinterest Conversions": DECOY,
    }
    with pytest.raises(NotFoundError) as caught:
        discover(adobe, settings())  # type: ignore[arg-type]
    line = caught.value.line()
    assert not isinstance(caught.value, LegacyCardGone)
    assert f"'Pinterest' = {LEGACY}" in line and f"'(New) Pinterest' = {NEW}" in line
    assert f"migration.new_spec_id to the new card's id if 'Pinterest' = {LEGACY}" in line

    # Told which spec is the new card, the other one delivering flows is the suspect.
    with pytest.raises(NotFoundError) as caught:
        discover(adobe, settings(new_spec_id=NEW))  # type: ignore[arg-type]
    assert not isinstance(caught.value, LegacyCardGone)
    assert f"'Pinterest' = {LEGACY} (delivers flows)" in caught.value.line()


def test_a_namesake_of_the_new_card_without_flows_leaves_no_doubt_once_configured() -> None:
    adobe = FakeAdobe(["prod"])
    adobe.specs = {"Pinterest": "spec-idle", "(New) Pinterest": NEW}
    with pytest.raises(NotFoundError) as caught:
        find_card(adobe, settings(), "legacy", "prod")  # type: ignore[arg-type]
    assert not isinstance(caught.value, LegacyCardGone)
    for configured in ({"new_spec_id": NEW}, {"new_destination": "(New) Pinterest"}):
        with pytest.raises(LegacyCardGone):
            find_card(adobe, settings(**configured), "legacy", "prod")  # type: ignore[arg-type]


def test_without_a_new_card_the_legacy_one_is_not_taken_as_gone() -> None:
    adobe = FakeAdobe(["prod"])
    adobe.specs = {"(Beta) Pinterest Conversions": DECOY}
    with pytest.raises(NotFoundError) as caught:
        find_card(adobe, settings(), "legacy", "prod")  # type: ignore[arg-type]
    assert not isinstance(caught.value, LegacyCardGone)
    assert "migration.legacy_spec_id" in caught.value.line()


def failing_adobe(failing: str) -> FakeAdobe:
    """No legacy card, and an error answered to one read: the unfiltered spec list
    ("specs") or the one-flow probe of another Pinterest-like card ("probe")."""
    adobe = FakeAdobe(["prod"])
    del adobe.specs["(Deprecating) Pinterest"]

    def refuse(resource: str, properties: Sequence[str], params: Mapping[str, str]) -> None:
        probe = resource == "flows" and params.get("limit") == "1"
        unfiltered_specs = resource == "connectionSpecs" and not properties
        if (failing == "specs" and unfiltered_specs) or (failing == "probe" and probe):
            raise ApiError(f"Adobe answered 500 to the {failing} read", service="adobe")

    adobe.refuse = refuse
    return adobe


@pytest.mark.parametrize("failing", ["specs", "probe"])
def test_a_failed_read_is_never_taken_as_a_gone_legacy_card(failing: str) -> None:
    adobe = failing_adobe(failing)  # "(Beta) Pinterest Conversions" is the one probed
    with pytest.raises(ApiError) as caught:
        discover(adobe, settings())  # type: ignore[arg-type]
    assert not isinstance(caught.value, NotFoundError)
    assert caught.value.line() == f"Adobe answered 500 to the {failing} read"


def test_a_failed_listing_still_reports_a_missing_new_card() -> None:
    adobe = failing_adobe("specs")
    del adobe.specs["Pinterest"]
    with pytest.raises(NotFoundError, match="named 'Pinterest' or '\\(New\\) Pinterest'"):
        find_card(adobe, settings(), "new", "prod")  # type: ignore[arg-type]


def test_several_cards_of_one_name_are_refused_with_their_ids() -> None:
    adobe = FakeAdobe(["prod"])
    adobe.connection_specs_named = lambda name, *, sandbox: (  # type: ignore[method-assign]
        [{"id": "spec-a", "name": name}, {"id": "spec-b", "name": name}]
        if name == "Pinterest"
        else [{"id": LEGACY, "name": name}]
    )
    with pytest.raises(ConfigError) as caught:
        discover(adobe, settings())  # type: ignore[arg-type]
    line = caught.value.line()
    assert "2 destination cards (connection specs) are named 'Pinterest'" in line
    assert "'Pinterest' = spec-a" in line and "'Pinterest' = spec-b" in line
    assert "migration.new_spec_id" in line


def test_both_cards_on_one_spec_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="same connection spec"):
        discover(FakeAdobe(["prod"]), settings(legacy_spec_id=NEW, new_spec_id=NEW))  # type: ignore[arg-type]


def test_sandboxes_and_lists_run_in_parallel_and_keep_their_order() -> None:
    # Every list of every sandbox must be in flight at once to pass this barrier.
    names = ["prod", "dev", "stage"]
    barrier = threading.Barrier(len(names) * 3, timeout=10)
    adobe = FakeAdobe(names, barrier)
    inventory = discover(adobe, settings(names))  # type: ignore[arg-type]
    assert [sb.name for sb in inventory.sandboxes] == names
    assert len(adobe.calls) == 9


def test_default_sandboxes_come_from_settings() -> None:
    adobe = FakeAdobe(["dev", "prod"])
    inventory = discover(adobe, settings(["dev", "prod"]))  # type: ignore[arg-type]
    assert [sb.name for sb in inventory.sandboxes] == ["dev", "prod"]


def test_progress_lines() -> None:
    lines: list[str] = []
    discover(FakeAdobe(["prod"]), settings(), progress=lines.append)  # type: ignore[arg-type]
    assert lines == [
        # said before the first request, so a slow first answer leaves no blank screen
        "reading 1 sandbox from https://adobe.test (prod)",
        "reading flows: prod 2",
        "read prod: 2 accounts, 2 target connections, 2 flows",
    ]


# -- the real AdobeClient over HTTP (mocked): query strings, paging, no single GETs ----------


BASE = "https://adobe.test/data/foundation/flowservice"


@responses.activate
def test_real_client_sends_the_filters_and_follows_pages() -> None:
    from pinmigrate.adobe import AdobeClient
    from pinmigrate.http import HttpClient

    responses.add(
        responses.POST,
        "https://adobe.test/ims/token/v3",
        json={"access_token": "ims-token-value", "expires_in": 86399},
    )

    def spec_page(request: Any) -> tuple[int, dict[str, str], str]:
        import json

        name = parse_qs(urlsplit(request.url).query)["property"][0].removeprefix("name==")
        items = [{"id": SPECS[name], "name": name}] if name in SPECS else []
        return 200, {}, json.dumps({"items": items, "_links": {}})

    responses.add_callback(responses.GET, f"{BASE}/connectionSpecs", callback=spec_page)
    data = world("prod")
    for resource in ("connections", "targetConnections"):
        responses.add(responses.GET, f"{BASE}/{resource}", json={"items": data[resource]})
    # Two pages of flows: the second is reached through a relative next link.
    first, second = data["flows"][:1], data["flows"][1:]

    def flows_page(request: Any) -> tuple[int, dict[str, str], str]:
        import json

        query = parse_qs(urlsplit(request.url).query)
        if "continuationToken" in query:
            return 200, {}, json.dumps({"items": second, "_links": {}})
        body = {"items": first, "_links": {"next": {"href": "/flows?continuationToken=p2"}}}
        return 200, {}, json.dumps(body)

    responses.add_callback(responses.GET, f"{BASE}/flows", callback=flows_page)

    adobe = AdobeClient(settings(), http=HttpClient(service="adobe", sleep=lambda s: None))
    inventory = discover(adobe, settings())
    assert {f.id for f in inventory.sandboxes[0].flows} == {"prod-fl", "prod-fn"}

    seen: dict[str, list[dict[str, list[str]]]] = {}
    for call in responses.calls:
        parts = urlsplit(call.request.url)
        assert call.request.method in ("GET", "POST")
        path = parts.path.removeprefix("/data/foundation/flowservice")
        seen.setdefault(path, []).append(parse_qs(parts.query))
        if path != "/ims/token/v3":
            assert call.request.headers["x-sandbox-name"] == "prod"
    # No GET /flows/{id}, /connections/{id} or /targetConnections/{id}: lists only.
    assert set(seen) == {
        "/ims/token/v3",
        "/connectionSpecs",
        "/connections",
        "/targetConnections",
        "/flows",
    }
    either = f"{LEGACY},{NEW}"
    assert seen["/connections"][0]["property"] == [f"connectionSpec.id=={either}"]
    assert seen["/targetConnections"][0]["property"] == [f"connectionSpec.id=={either}"]
    assert [q.get("continuationToken") for q in seen["/flows"]] == [None, ["p2"]]
    assert all(
        q["property"] == [f"inheritedAttributes.targetConnections[].connectionSpec.id=={either}"]
        for q in seen["/flows"]
    )
    assert len(seen["/connectionSpecs"]) == 2


# -- the real AdobeClient against the emulator, in both next-link modes ----------------------

#: Adobe's token may hold the whole query or only a position (api-notes.md §3 "Lists and
#: filters"); the emulator serves each, by scenario option.
NEXT_MODES = ("demo+next-position", "demo+next-query")
#: When the emulator's clock stands still (so that every reset builds the same expiries).
EMULATOR_NOW = 1_750_000_000.0


class ForgetfulClient(AdobeClient):
    """A broken client: it follows the bare next link and sends its filters only once."""

    def _follow(
        self, href: str, resource: str, first: Sequence[tuple[str, str]]
    ) -> tuple[str, list[tuple[str, str]]]:
        url, _ = super()._follow(href, resource, first)
        return url, []


@pytest.fixture
def emulated() -> Iterator[tuple[Emulator, Settings]]:
    with Emulator(scenario="demo", clock=lambda: EMULATOR_NOW) as emu:
        yield emu, load_settings(env=emu.env())


def _without_etags(inventory: Inventory) -> Inventory:
    """The inventory less its etags: every reset gives each object a new one."""
    return dataclasses.replace(
        inventory,
        sandboxes=tuple(
            dataclasses.replace(
                sb,
                accounts=tuple(dataclasses.replace(a, etag="") for a in sb.accounts),
                target_connections=tuple(
                    dataclasses.replace(t, etag="") for t in sb.target_connections
                ),
                flows=tuple(dataclasses.replace(f, etag="") for f in sb.flows),
            )
            for sb in inventory.sandboxes
        ),
    )


def _pages_read(emu: Emulator, path: str) -> int:
    return int(emu.requests()["by_endpoint"].get(f"GET {path}", 0))


def test_paged_discovery_is_the_single_page_read_in_both_next_modes(
    emulated: tuple[Emulator, Settings],
) -> None:
    emu, settings = emulated
    single = discover(AdobeClient(settings), settings)
    assert _pages_read(emu, "/flows") == 2  # one page per sandbox
    assert sum(len(sb.flows) for sb in single.sandboxes) == 16
    for scenario in NEXT_MODES:
        emu.reset(scenario)
        emu.configure(page_size=2)
        emu.clear_requests()
        paged = discover(AdobeClient(settings), settings)
        assert _without_etags(paged) == _without_etags(single), scenario
        # Several pages of every list, each asking for its filters again.
        assert _pages_read(emu, "/flows") >= 8
        assert _pages_read(emu, "/connections") >= 4
        for entry in emu.requests()["log"]:
            if entry["endpoint"] in ("GET /flows", "GET /connections", "GET /targetConnections"):
                assert entry["query"]["property"] and entry["query"]["limit"], entry
        emu.configure(page_size=100)


@pytest.mark.parametrize(("scenario", "widened"), [(NEXT_MODES[0], True), (NEXT_MODES[1], False)])
def test_a_client_that_forgets_its_filters_reads_unfiltered_pages_in_position_mode(
    emulated: tuple[Emulator, Settings], scenario: str, widened: bool
) -> None:
    emu, settings = emulated
    emu.reset(scenario)
    emu.configure(page_size=2)
    careful = discover(AdobeClient(settings), settings)
    forgetful = ForgetfulClient(settings)
    legacy = f"inheritedAttributes.targetConnections[].connectionSpec.id=={LEGACY_ID}"
    served = list(forgetful.list("flows", sandbox="prod", properties=[legacy]))
    cards = {card_of_flow(raw, {LEGACY_ID: "legacy", NEW_ID: "new"}) for raw in served}
    if widened:
        # The pages after the first are unfiltered: new-card and Amazon S3 flows come too.
        assert cards == {"legacy", "new", None}
    else:
        assert cards == {"legacy"}
    assert len({raw["id"] for raw in served}) == len(served)
    # Discovery keeps only the two cards' items, so even this client's inventory is right.
    assert discover(forgetful, settings) == careful
