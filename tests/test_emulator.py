"""The emulator over loopback: gateway strictness, Flow Service rules, Pinterest OAuth, faults,
control API, scenarios and the ``pinmigrate emulator`` command."""

from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from fakes import FakeTime
from platform_caller import Platform

from pinmigrate.emulator import (
    CLIENT_ID,
    CLIENT_SECRET,
    LEGACY_SPEC_ID,
    NEW_SPEC_ID,
    ORG_ID,
    PINTEREST_APP_ID,
    PINTEREST_APP_SECRET,
    Emulator,
    EmulatorState,
)
from pinmigrate.emulator import query as query_module
from pinmigrate.emulator.model import ADOBE_APP_ID, RENAMED_LEGACY_SPEC_NAME, S3_SPEC_ID, parse_iso
from pinmigrate.emulator.scenarios import account_id, flow_id

FS = "/data/foundation/flowservice"
AUDIENCES = "/transformations/0/params/segmentSelectors/selectors"
DAY = 86400
#: where the tests that move the emulator's clock start it (June 2025)
START = 1_750_000_000.0


@pytest.fixture
def adobe(emulator: Emulator) -> Platform:
    return Platform(emulator)


def new_flow(emu: Emulator, name: str, sandbox: str = "prod", n: int = 1) -> dict[str, Any]:
    found = emu.state.get("flows", flow_id(sandbox, "new", name, n))
    assert found is not None
    return found


def audiences_add(*ids: str) -> list[dict[str, Any]]:
    return [
        {
            "op": "add",
            "path": f"{AUDIENCES}/-",
            "value": {"type": "PLATFORM_SEGMENT", "value": {"id": i, "name": i, "description": ""}},
        }
        for i in ids
    ]


# --- Adobe IMS ------------------------------------------------------------------------------


def test_ims_issues_bearer_tokens_for_the_emulator_credentials(emulator: Emulator) -> None:
    answer = requests.post(
        emulator.url + "/ims/token/v3",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "scope": "openid,session",
        },
    )
    body = answer.json()
    assert answer.status_code == 200
    assert body["token_type"] == "bearer" and body["expires_in"] == 86399
    assert len(body["access_token"]) > 20


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"client_id": "someone-else", "client_secret": CLIENT_SECRET}, 400, "invalid_client"),
        ({"client_id": CLIENT_ID, "client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_id": CLIENT_ID}, 401, "invalid_client"),
        (
            {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "grant_type": "password"},
            400,
            "unsupported_grant_type",
        ),
    ],
)
def test_ims_refuses_wrong_client_credentials(
    emulator: Emulator, form: dict[str, str], status: int, error: str
) -> None:
    data = {"grant_type": "client_credentials", **form}
    answer = requests.post(emulator.url + "/ims/token/v3", data=data)
    assert answer.status_code == status
    assert answer.json()["error"] == error
    assert answer.json()["error_description"]


def test_ims_tokens_expire_after_their_lifetime() -> None:
    clock = FakeTime(start=START)
    with Emulator(clock=clock.clock) as emu:
        adobe = Platform(emu)
        assert adobe.get("/flows").status_code == 200
        clock.now += 86400
        answer = adobe.get("/flows")
        assert answer.status_code == 401
        assert answer.json() == {"error_code": 401013, "message": "Oauth token is not valid"}


# --- gateway strictness -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"Authorization": None}, 403, 403010),
        ({"Authorization": "Bearer not-a-token"}, 401, 401013),
        ({"Authorization": "Basic abc"}, 401, 401013),
        ({"x-api-key": None}, 403, 403000),
        ({"x-api-key": "another-client"}, 403, 403003),
        ({"x-gw-ims-org-id": None}, 400, 400003),
        ({"x-gw-ims-org-id": "OTHER0000@AdobeOrg"}, 403, 403025),
        ({"x-sandbox-name": "nosuchsandbox"}, 403, 403027),
    ],
)
def test_gateway_answers_each_missing_or_wrong_header(
    adobe: Platform, change: dict[str, str | None], status: int, code: int
) -> None:
    headers: dict[str, str] = adobe.headers("prod")
    for name, value in change.items():
        headers.pop(name, None)
        if value is not None:
            headers[name] = value
    answer = requests.get(adobe.emu.url + FS + "/flows", headers=headers)
    assert answer.status_code == status
    body = answer.json()
    assert body["error_code"] == code  # a number, as in Adobe's example (api-notes.md §2)
    assert body["message"]


def test_gateway_codes_can_be_served_as_strings(emulator: Emulator, adobe: Platform) -> None:
    emulator.state.set_config({"gateway_code_text": True})
    answer = requests.get(adobe.emu.url + FS + "/flows", headers=adobe.headers("nosuchsandbox"))
    assert (answer.status_code, answer.json()["error_code"]) == (403, "403027")
    with pytest.raises(ValueError, match="gateway_code_text"):
        emulator.state.set_config({"gateway_code_text": "yes"})


def test_absent_sandbox_header_means_prod(adobe: Platform) -> None:
    items, _ = adobe.pages("flows", sandbox="prod")
    answer = adobe.get("/flows", sandbox=None)
    assert answer.status_code == 200
    assert {f["id"] for f in answer.json()["items"]} == {f["id"] for f in items}
    assert {f["sandboxName"] for f in items} == {"prod"}


def test_objects_live_in_their_sandbox(emulator: Emulator, adobe: Platform) -> None:
    dev_flow = new_flow(emulator, "Newsletter subscribers", "dev")
    assert adobe.get(f"/flows/{dev_flow['id']}", sandbox="dev").status_code == 200
    answer = adobe.get(f"/flows/{dev_flow['id']}", sandbox="prod")
    assert answer.status_code == 404
    body = answer.json()
    assert body["type"] == "https://ns.adobe.com/aep/errors/FLOW-1439-404"
    assert body["title"] == "Resource not found"
    assert body["status"] == 404
    assert dev_flow["id"] in body["errorMessage"]
    assert body["report"]["tenantInfo"]["sandboxName"] == "prod"


def test_unknown_resource_and_method_answer_flow_service_errors(adobe: Platform) -> None:
    assert adobe.get("/nonsense").status_code == 404
    flow = adobe.pages("flows")[0][0]
    answer = adobe.call("DELETE", f"/flows/{flow['id']}")
    assert answer.status_code == 405
    assert answer.json()["status"] == 405


# --- Flow Service reads -------------------------------------------------------------------------


def test_single_objects_come_wrapped_with_adobe_fields(emulator: Emulator, adobe: Platform) -> None:
    flow = new_flow(emulator, "Cart abandoners")
    answer = adobe.get(f"/flows/{flow['id']}")
    body = answer.json()
    assert list(body) == ["items"] and len(body["items"]) == 1
    item = body["items"][0]
    for key in (
        "id",
        "name",
        "description",
        "flowSpec",
        "state",
        "version",
        "etag",
        "sourceConnectionIds",
        "targetConnectionIds",
        "inheritedAttributes",
        "transformations",
        "createdAt",
        "updatedAt",
        "createdBy",
        "updatedBy",
        "createdClient",
        "updatedClient",
        "sandboxId",
        "sandboxName",
        "imsOrgId",
        "lastOperation",
        "runs",
    ):
        assert key in item, key
    assert item["flowSpec"] == {"id": "71471eba-b620-49e4-90fd-23f1fa0174d8", "version": "1.0"}
    assert item["etag"].startswith('"') and item["etag"].endswith('"')
    assert item["version"] == item["etag"]
    assert item["inheritedAttributes"]["properties"] == {"isDestinationFlow": True}
    target = item["inheritedAttributes"]["targetConnections"][0]
    assert target["connectionSpec"]["id"] == NEW_SPEC_ID
    assert target["baseConnection"]["id"] == account_id("prod", "new", "549755885176")
    transform = item["transformations"][0]
    assert transform["name"] == "GeneralTransform"
    assert transform["params"]["profileSelectors"]["selectors"]
    assert item["runs"] == f"/runs?property=flowId=={item['id']}"
    assert isinstance(item["createdAt"], int) and item["createdAt"] > 1_600_000_000_000

    tc = adobe.one("targetConnections", item["targetConnectionIds"][0])
    assert tc["params"] == {"advertiser_id": "549755885176"}
    assert tc["baseConnectionId"] == target["baseConnection"]["id"]
    spec = adobe.one("connectionSpecs", NEW_SPEC_ID)
    assert spec["name"] == "Pinterest"
    assert adobe.get("/flows/00000000-0000-0000-0000-000000000000").status_code == 404


def test_connection_specs_by_name_in_every_sandbox(adobe: Platform) -> None:
    for sandbox in ("prod", "dev"):
        for name, ident in (
            ("(Deprecating) Pinterest", LEGACY_SPEC_ID),
            ("Pinterest", NEW_SPEC_ID),
            ("Amazon S3", S3_SPEC_ID),
        ):
            items, _ = adobe.pages(
                "connectionSpecs", sandbox=sandbox, properties=(f"name=={name}",)
            )
            assert [(i["id"], i["name"]) for i in items] == [(ident, name)]
    names = {i["name"] for i in adobe.pages("connectionSpecs")[0]}
    assert {"(Beta) Pinterest Conversions", "(Deprecating) Pinterest", "Pinterest"} <= names
    assert "(New) Pinterest" not in names


def test_the_draft_names_option_keeps_the_old_new_card_name(
    emulator: Emulator, adobe: Platform
) -> None:
    answer = requests.post(emulator.url + "/_emulator/reset", json={"scenario": "demo+draft-names"})
    assert answer.status_code == 200, answer.text
    items, _ = adobe.pages("connectionSpecs", properties=("name==(New) Pinterest",))
    assert [(i["id"], i["name"]) for i in items] == [(NEW_SPEC_ID, "(New) Pinterest")]
    assert adobe.pages("connectionSpecs", properties=("name==Pinterest",))[0] == []
    bad = requests.post(emulator.url + "/_emulator/reset", json={"scenario": "demo+nope"})
    assert bad.status_code == 400 and "+draft-names" in bad.text


def test_the_no_legacy_card_option_takes_the_card_and_everything_on_it(
    emulator: Emulator, adobe: Platform
) -> None:
    answer = requests.post(
        emulator.url + "/_emulator/reset", json={"scenario": "demo+no-legacy-card"}
    )
    assert answer.status_code == 200, answer.text
    names = {i["name"] for i in adobe.pages("connectionSpecs")[0]}
    assert "(Deprecating) Pinterest" not in names and "Pinterest" in names
    for sandbox in ("prod", "dev"):
        for kind in ("connections", "targetConnections", "flows"):
            assert not emulator.state.find(kind, sandbox=sandbox, card="legacy")
            assert emulator.state.find(kind, sandbox=sandbox, card="new")
    flows = {f["id"] for sb in ("prod", "dev") for f in adobe.pages("flows", sandbox=sb)[0]}
    runs = [r for sb in ("prod", "dev") for r in adobe.pages("runs", sandbox=sb)[0]]
    assert runs and all(r["flowId"] in flows for r in runs)


def test_the_renamed_legacy_card_option_keeps_its_flows_under_another_name(
    emulator: Emulator, adobe: Platform
) -> None:
    emulator.reset("demo+renamed-legacy-card")
    [spec] = adobe.pages("connectionSpecs", properties=(f"name=={RENAMED_LEGACY_SPEC_NAME}",))[0]
    assert spec["id"] == LEGACY_SPEC_ID
    assert adobe.pages("connectionSpecs", properties=("name==(Deprecating) Pinterest",))[0] == []
    assert len(emulator.state.find("flows", card="legacy")) == 8  # the demo's eight
    with pytest.raises(ValueError, match="exclude each other"):
        emulator.reset("demo+no-legacy-card+renamed-legacy-card")


@pytest.mark.parametrize("page_size", [1, 2])
def test_paging_reaches_every_item_exactly_once(
    emulator: Emulator, adobe: Platform, page_size: int
) -> None:
    expected = {f["id"] for f in emulator.state.find("flows", sandbox="prod")}
    emulator.configure(page_size=page_size)
    items, hrefs = adobe.pages("flows")
    ids = [i["id"] for i in items]
    assert len(ids) == len(set(ids)) == len(expected)
    assert set(ids) == expected
    assert len(hrefs) == -(-len(expected) // page_size) - 1


LEGACY_FLOWS = f"inheritedAttributes.targetConnections[].connectionSpec.id=={LEGACY_SPEC_ID}"
NEXT_MODES = ["demo+next-position", "demo+next-query"]


def reset(emulator: Emulator, scenario: str) -> None:
    answer = requests.post(emulator.url + "/_emulator/reset", json={"scenario": scenario})
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("scenario", NEXT_MODES)
def test_next_links_carry_the_token_alone(
    emulator: Emulator, adobe: Platform, scenario: str
) -> None:
    reset(emulator, scenario)
    items, hrefs = adobe.pages("flows", properties=(LEGACY_FLOWS,), params={"limit": "2"})
    assert len(items) == 6  # the six legacy flows in prod
    assert len(hrefs) == 2
    for href in hrefs:
        assert href.startswith("/flows?continuationToken=")
        query = parse_qs(urlsplit(href).query)
        assert list(query) == ["continuationToken"] and len(query["continuationToken"]) == 1
        assert "=" not in query["continuationToken"][0]  # a client splitting on "=" survives


@pytest.mark.parametrize(
    ("scenario", "filtered"), [("demo", False), *zip(NEXT_MODES, [False, True])]
)
def test_a_client_that_forgets_its_filters_is_served_by_the_mode(
    emulator: Emulator, adobe: Platform, scenario: str, filtered: bool
) -> None:
    """Position mode (the default): the bare link continues unfiltered; query mode: filtered."""
    reset(emulator, scenario)
    legacy = {f["id"] for f in emulator.state.find("flows", sandbox="prod", card="legacy")}
    every = {f["id"] for f in emulator.state.find("flows", sandbox="prod")}
    items, _ = adobe.pages("flows", properties=(LEGACY_FLOWS,), params={"limit": "2"}, resend=False)
    ids = [i["id"] for i in items]
    assert len(ids) == len(set(ids))
    assert set(ids[:2]) <= legacy  # the first page is filtered either way
    if filtered:
        assert set(ids) == legacy
    else:
        assert set(ids) - legacy and set(ids) <= every
    careful, _ = adobe.pages("flows", properties=(LEGACY_FLOWS,), params={"limit": "2"})
    assert sorted(i["id"] for i in careful) == sorted(legacy)


def test_a_query_token_refuses_other_filters_or_order(emulator: Emulator, adobe: Platform) -> None:
    reset(emulator, "demo+next-query")
    first = adobe.get("/flows", params={"property": "state==enabled", "limit": "2"}).json()
    token = parse_qs(urlsplit(first["_links"]["next"]["href"]).query)["continuationToken"][0]
    same = adobe.get(
        "/flows",
        params={"continuationToken": token, "property": "state==enabled", "limit": "2"},
    )
    assert same.status_code == 200 and all(f["state"] == "enabled" for f in same.json()["items"])
    for other in ({"property": "state==disabled"}, {"orderby": "name"}):
        answer = adobe.get("/flows", params={"continuationToken": token, **other})
        assert answer.status_code == 400
        body = answer.json()
        assert body["type"].endswith("FLOW-1002-400") and body["title"] == "Bad request"
        assert "does not belong to this query" in body["errorMessage"]


def test_only_one_next_mode_at_a_time(emulator: Emulator) -> None:
    answer = requests.post(
        emulator.url + "/_emulator/reset", json={"scenario": "demo+next-query+next-position"}
    )
    assert answer.status_code == 400 and "choose at most one" in answer.text


def test_limit_above_100_is_refused_or_capped(emulator: Emulator, adobe: Platform) -> None:
    assert adobe.get("/flows", params={"limit": "100"}).status_code == 200
    refused = adobe.get("/flows", params={"limit": "101"})
    assert refused.status_code == 400
    assert refused.json()["errorMessage"] == "invalid limit '101': the maximum is 100"
    emulator.configure(limit_over_max="cap", page_size=1000)
    reset(emulator, "scale:300")
    big = adobe.get("/flows", params={"limit": "1000"}).json()
    assert len(big["items"]) == 100 and big["_links"]["next"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/flows", {"start": "0"}),
        ("/flows", {"property": "state==enabled", "filter": "x"}),
        ("/connections", {"page": "2"}),
        ("/runs", {"flowId": "abc"}),  # a filter must be a property, not a parameter
        ("/connectionSpecs", {"limit": "10"}),  # documents property only
        ("/connectionSpecs", {"orderby": "name"}),
    ],
)
def test_unknown_query_parameters_are_refused(
    emulator: Emulator, adobe: Platform, path: str, params: dict[str, str]
) -> None:
    answer = adobe.get(path, params=params)
    assert answer.status_code == 400
    body = answer.json()
    assert body["type"].endswith("FLOW-1002-400") and body["title"] == "Bad request"
    assert "unknown query parameter" in body["errorMessage"]
    emulator.configure(strict_queries=False)
    assert adobe.get(path, params=params).status_code == 200


def test_documented_parameters_are_taken(emulator: Emulator, adobe: Platform) -> None:
    # aepp sends count=False with every list; Adobe's docs write orderby=+name for ascending.
    params = {"property": "state==enabled", "limit": "5", "orderby": "createdAt", "count": "False"}
    assert adobe.get("/flows", params=params).status_code == 200
    assert adobe.get("/flows?orderby=+name&count=True").json() == {"count": 13}
    assert adobe.get("/flows", params={"count": "maybe"}).status_code == 400
    assert adobe.get("/connectionSpecs", params={"property": "name==Pinterest"}).status_code == 200


def test_connection_specs_come_in_one_page(emulator: Emulator, adobe: Platform) -> None:
    emulator.configure(page_size=1)
    items, hrefs = adobe.pages("connectionSpecs")
    assert len(items) >= 4 and hrefs == []


@pytest.mark.parametrize("scenario", NEXT_MODES)
def test_orderby_name_both_ways_with_paging(
    emulator: Emulator, adobe: Platform, scenario: str
) -> None:
    reset(emulator, scenario)
    emulator.configure(page_size=3)
    up, _ = adobe.pages("flows", params={"orderby": "name"})
    down, _ = adobe.pages("flows", params={"orderby": "-name"})
    assert len(up) == 13
    assert [f["name"] for f in up] == sorted(f["name"] for f in up)
    assert [f["id"] for f in down] == [f["id"] for f in reversed(up)]
    enabled, _ = adobe.pages("flows", properties=("state==enabled",), params={"orderby": "-name"})
    assert [f["id"] for f in enabled] == [f["id"] for f in down if f["state"] == "enabled"]
    assert adobe.get("/flows", params={"orderby": "colour"}).status_code == 400


def test_count_answers_only_the_count(adobe: Platform) -> None:
    answer = adobe.get("/flows", params=[("count", "true"), ("property", "state==enabled")])
    assert answer.json() == {"count": 6}


@pytest.mark.parametrize("scenario", NEXT_MODES)
def test_bad_continuation_token_or_limit_is_a_400(
    emulator: Emulator, adobe: Platform, scenario: str
) -> None:
    reset(emulator, scenario)
    for params in (
        {"continuationToken": "garbage!"},
        {"continuationToken": "e30"},  # "{}"
        {"continuationToken": "A" * 5000},
        {"limit": "0"},
        {"limit": "ten"},
    ):
        answer = adobe.get("/flows", params=params)
        assert answer.status_code == 400
        body = answer.json()
        assert body["title"] == "Bad request" and body["type"].endswith("FLOW-1002-400")
        assert body["report"]["tenantInfo"]["sandboxName"] == "prod"


@pytest.mark.parametrize(
    ("kind", "sandbox", "properties", "expected"),
    [
        ("flows", "prod", ("state==enabled",), 6),
        ("flows", "prod", ("state==disabled",), 7),
        ("flows", "prod", ("state!=enabled",), 7),
        ("flows", "prod", ("inheritedAttributes.properties.isDestinationFlow==true",), 13),
        (
            "flows",
            "prod",
            (f"inheritedAttributes.targetConnections[].connectionSpec.id=={NEW_SPEC_ID}",),
            6,
        ),
        (
            "flows",
            "prod",
            (
                f"inheritedAttributes.targetConnections[].connectionSpec.id=={NEW_SPEC_ID},"
                f"{LEGACY_SPEC_ID}",
            ),
            12,
        ),
        (
            "flows",
            "prod",
            (
                f"inheritedAttributes.targetConnections[].connectionSpec.id=={NEW_SPEC_ID}",
                "state==disabled",
            ),
            5,
        ),
        ("flows", "prod", ("name==Lookalike seeds",), 3),
        ("flows", "prod", ("name==Lookalike seeds,Spring sale",), 5),
        ("flows", "dev", ("state==enabled",), 2),
        # Without [] an array is not walked into: no match, as a strict server would answer.
        (
            "flows",
            "prod",
            (f"inheritedAttributes.targetConnections.connectionSpec.id=={NEW_SPEC_ID}",),
            0,
        ),
        ("connections", "prod", (f"connectionSpec.id=={NEW_SPEC_ID}",), 2),
        ("connections", "dev", (f"connectionSpec.id=={LEGACY_SPEC_ID}",), 2),
        ("targetConnections", "prod", (f"connectionSpec.id=={NEW_SPEC_ID}",), 6),
        ("targetConnections", "prod", ("params.advertiser_id==549755885176",), 2),
        ("flows", "prod", ("createdAt>1700000000000",), 6),
    ],
)
def test_property_filters(
    adobe: Platform, kind: str, sandbox: str, properties: tuple[str, ...], expected: int
) -> None:
    items, _ = adobe.pages(kind, sandbox=sandbox, properties=properties, params={"limit": "4"})
    assert len(items) == expected


def test_invalid_property_filter_is_a_400(adobe: Platform) -> None:
    answer = adobe.get("/flows", params={"property": "state"})
    assert answer.status_code == 400
    assert "invalid property filter" in answer.json()["errorMessage"]


def test_runs_filter_by_flow(emulator: Emulator, adobe: Platform) -> None:
    flow = emulator.state.get("flows", flow_id("prod", "legacy", "Loyalty members"))
    assert flow is not None
    items, _ = adobe.pages("runs", properties=(f"flowId=={flow['id']}",))
    assert [r["flowId"] for r in items] == [flow["id"]]
    assert items[0]["metrics"]["statusSummary"]["status"].lower() == "success"


def test_secrets_are_masked_on_read_and_expiry_is_in_clear(
    emulator: Emulator, adobe: Platform
) -> None:
    accounts, _ = adobe.pages("connections", properties=(f"connectionSpec.id=={NEW_SPEC_ID}",))
    by_name = {a["name"]: a for a in accounts}
    expired = by_name["Pinterest - ad account 549755885176"]["auth"]
    assert expired["specName"] == "OAuth2 Authorization Code"
    assert expired["params"]["accessToken"] == "***"
    assert expired["params"]["refreshToken"] == "***"
    assert parse_iso(expired["params"]["expiresAt"]) < emulator.state.clock()
    missing = by_name["Pinterest - ad account 549755885175"]["auth"]["params"]
    assert missing == {}
    s3 = [a for a in adobe.pages("connections")[0] if a["connectionSpec"]["id"] == S3_SPEC_ID]
    assert s3[0]["auth"]["params"]["s3SecretKey"] == "***"
    # Stored in clear, so the control state can show what the tool wrote.
    stored = emulator.state.get("connections", account_id("prod", "new", "549755885176"))
    assert stored is not None and stored["auth"]["params"]["accessToken"].startswith("pina_")
    assert "***" not in json.dumps(adobe.one("flows", new_flow(emulator, "Spring sale")["id"]))


# --- Flow Service writes -----------------------------------------------------------------------


def test_patch_needs_if_match_and_refuses_a_stale_etag(emulator: Emulator, adobe: Platform) -> None:
    flow = adobe.one("flows", new_flow(emulator, "Cart abandoners")["id"])
    ops = audiences_add("aud-new")
    answer = adobe.call("PATCH", f"/flows/{flow['id']}", json=ops)
    assert answer.status_code == 400
    assert "If-Match" in answer.json()["errorMessage"]

    first = adobe.call(
        "PATCH", f"/flows/{flow['id']}", json=ops, headers={"If-Match": flow["etag"]}
    )
    assert first.status_code == 200
    assert first.json()["id"] == flow["id"]
    new_etag = first.json()["etag"]
    assert new_etag != flow["etag"] and new_etag.startswith('"')

    stale = adobe.call(
        "PATCH",
        f"/flows/{flow['id']}",
        json=audiences_add("aud-other"),
        headers={"If-Match": flow["etag"]},
    )
    assert stale.status_code == 412
    assert stale.json()["errorMessage"] == (
        f"Supplied version=[{flow['etag']}] does not match the current version on "
        f"entity=[{new_etag}]"
    )
    after = adobe.one("flows", flow["id"])
    assert after["etag"] == new_etag
    selectors = after["transformations"][0]["params"]["segmentSelectors"]["selectors"]
    assert [s["value"]["id"] for s in selectors][-1] == "aud-new"
    assert len(selectors) == 3
    assert after["lastOperation"]["operation"] == "update"
    assert after["updatedBy"] == f"{CLIENT_ID}@AdobeID"


def test_etag_changes_on_every_write(emulator: Emulator, adobe: Platform) -> None:
    flow_ref = new_flow(emulator, "Winback 2023")
    seen = {adobe.one("flows", flow_ref["id"])["etag"]}
    etag = next(iter(seen))
    for name in ("a1", "a2"):
        answer = adobe.call(
            "PATCH",
            f"/flows/{flow_ref['id']}",
            json=audiences_add(name),
            headers={"If-Match": etag},
        )
        etag = answer.json()["etag"]
        seen.add(etag)
    etag = adobe.call("POST", f"/flows/{flow_ref['id']}/action", params={"op": "enable"}).json()[
        "etag"
    ]
    seen.add(etag)
    seen.add(
        adobe.call("POST", f"/flows/{flow_ref['id']}/action", params={"op": "disable"}).json()[
            "etag"
        ]
    )
    seen.add(emulator.state.change_object("flows", flow_ref["id"], {"description": "x"})["etag"])
    assert len(seen) == 6
    assert adobe.one("flows", flow_ref["id"])["etag"] in seen


def test_patch_errors_are_400s_and_change_nothing(emulator: Emulator, adobe: Platform) -> None:
    flow = adobe.one("flows", new_flow(emulator, "Loyalty members")["id"])
    existing = flow["transformations"][0]["params"]["segmentSelectors"]["selectors"][0]
    cases = [
        [{"op": "add", "path": "/transformations/7/params/x", "value": 1}],
        [{"op": "replace", "path": "/nosuchfield/deeper", "value": 1}],
        [{"op": "remove", "path": f"{AUDIENCES}/9"}],
        [{"op": "replace", "path": "/state", "value": "enabled"}],
        [{"op": "replace", "path": "/id", "value": "other"}],
        [{"op": "frobnicate", "path": "/name", "value": "x"}],
        [{"op": "add", "path": f"{AUDIENCES}/-", "value": existing}],
        [{"op": "add", "path": f"{AUDIENCES}/-", "value": {"type": "PLATFORM_SEGMENT"}}],
        {"op": "add", "path": "/name", "value": "not a list"},
        [],
    ]
    for ops in cases:
        answer = adobe.call(
            "PATCH", f"/flows/{flow['id']}", json=ops, headers={"If-Match": flow["etag"]}
        )
        assert answer.status_code == 400, (ops, answer.text)
        assert answer.json()["title"] == "Bad request"
    bad_json = adobe.call(
        "PATCH",
        f"/flows/{flow['id']}",
        data=b"[{not json",
        headers={"If-Match": flow["etag"], "Content-Type": "application/json"},
    )
    assert bad_json.status_code == 400
    assert adobe.one("flows", flow["id"]) == flow


def test_patch_remove_and_rename(emulator: Emulator, adobe: Platform) -> None:
    flow = adobe.one("flows", new_flow(emulator, "Loyalty members")["id"])
    answer = adobe.call(
        "PATCH",
        f"/flows/{flow['id']}",
        headers={"If-Match": flow["etag"]},
        json=[
            {"op": "remove", "path": f"{AUDIENCES}/0"},
            {"op": "replace", "path": "/name", "value": "Loyalty (v5)"},
        ],
    )
    assert answer.status_code == 200
    after = adobe.one("flows", flow["id"])
    assert after["name"] == "Loyalty (v5)"
    assert len(after["transformations"][0]["params"]["segmentSelectors"]["selectors"]) == 1


def test_patch_status_202_is_switchable(emulator: Emulator, adobe: Platform) -> None:
    requests.post(emulator.url + "/_emulator/config", json={"patch_status": 202})
    flow = adobe.one("flows", new_flow(emulator, "Cart abandoners")["id"])
    answer = adobe.call(
        "PATCH", f"/flows/{flow['id']}", json=audiences_add("x"), headers={"If-Match": flow["etag"]}
    )
    assert answer.status_code == 202
    assert answer.content == b""
    assert adobe.one("flows", flow["id"])["etag"] != flow["etag"]


def test_reconnect_replaces_auth_params_and_reads_stay_masked(
    emulator: Emulator, adobe: Platform
) -> None:
    account = adobe.one("connections", account_id("prod", "new", "549755885175"))
    tokens = emulator.tokens("emu_marketer")
    expires = "2030-01-01T00:00:00Z"
    value = {
        "accessToken": tokens["access_token"],
        "refreshToken": tokens["refresh_token"],
        "expiresAt": expires,
    }
    answer = adobe.call(
        "PATCH",
        f"/connections/{account['id']}",
        json=[{"op": "replace", "path": "/auth/params", "value": value}],
        headers={"If-Match": account["etag"]},
    )
    assert answer.status_code == 200, answer.text
    after = adobe.one("connections", account["id"])
    assert after["auth"]["params"] == {
        "accessToken": "***",
        "refreshToken": "***",
        "expiresAt": expires,
    }
    assert emulator.state.dump()["pinterest"]["credential_owners"] == {account["id"]: "1000000001"}
    bad = adobe.call(
        "PATCH",
        f"/connections/{account['id']}",
        json=[{"op": "replace", "path": "/auth/params/expiresAt", "value": "soon"}],
        headers={"If-Match": after["etag"]},
    )
    assert bad.status_code == 400
    assert "expiresAt" in bad.json()["errorMessage"]


def test_flow_actions_enable_and_disable(emulator: Emulator, adobe: Platform) -> None:
    flow = adobe.one("flows", new_flow(emulator, "Newsletter subscribers", "dev")["id"], "dev")
    assert flow["state"] == "disabled"
    answer = adobe.call(
        "POST", f"/flows/{flow['id']}/action", sandbox="dev", params={"op": "ENABLE"}
    )
    assert answer.status_code == 200
    assert answer.json()["id"] == flow["id"]
    enabled = adobe.one("flows", flow["id"], "dev")
    assert enabled["state"] == "enabled"
    assert enabled["etag"] == answer.json()["etag"] != flow["etag"]
    runs, _ = adobe.pages("runs", sandbox="dev", properties=(f"flowId=={flow['id']}",))
    assert len(runs) == 1
    assert runs[0]["metrics"]["statusSummary"]["status"] == "success"
    assert enabled["lastRunDetails"]["id"] == runs[0]["id"]

    again = adobe.call(
        "POST", f"/flows/{flow['id']}/action", sandbox="dev", params={"op": "enable"}
    )
    assert again.status_code == 200 and again.json()["etag"] == enabled["etag"]
    assert len(adobe.pages("runs", sandbox="dev", properties=(f"flowId=={flow['id']}",))[0]) == 1

    stale = adobe.call(
        "POST",
        f"/flows/{flow['id']}/action",
        sandbox="dev",
        params={"op": "disable"},
        headers={"If-Match": flow["etag"]},
    )
    assert stale.status_code == 412
    good = adobe.call(
        "POST",
        f"/flows/{flow['id']}/action",
        sandbox="dev",
        params={"op": "disable"},
        headers={"If-Match": enabled["etag"]},
    )
    assert good.status_code == 200
    assert adobe.one("flows", flow["id"], "dev")["state"] == "disabled"
    for op in (None, "pause"):
        bad = adobe.call(
            "POST", f"/flows/{flow['id']}/action", sandbox="dev", params={"op": op} if op else None
        )
        assert bad.status_code == 400


def test_enabling_a_flow_whose_account_lacks_credentials_gives_a_failed_run(
    emulator: Emulator, adobe: Platform
) -> None:
    flow = new_flow(emulator, "Loyalty members")
    adobe.call("POST", f"/flows/{flow['id']}/action", params={"op": "enable"})
    runs, _ = adobe.pages("runs", properties=(f"flowId=={flow['id']}",))
    summary = runs[0]["metrics"]["statusSummary"]
    assert summary["status"] == "failed"
    assert "reconnect" in summary["errors"][0]["message"]


def test_a_run_can_start_late_and_take_its_time() -> None:
    clock = FakeTime(start=START)
    with Emulator(clock=clock.clock) as emu:
        emu.state.set_config({"run_delay": 60, "run_duration": 120})
        adobe = Platform(emu)
        flow = new_flow(emu, "Newsletter subscribers", "dev")
        before = adobe.one("flows", flow["id"], "dev")
        answer = adobe.call(
            "POST", f"/flows/{flow['id']}/action", sandbox="dev", params={"op": "enable"}
        )
        assert answer.status_code == 200
        etag = answer.json()["etag"]

        def runs() -> list[dict[str, Any]]:
            return adobe.pages("runs", sandbox="dev", properties=(f"flowId=={flow['id']}",))[0]

        assert runs() == []  # enabled, but no run yet
        enabled = adobe.one("flows", flow["id"], "dev")
        assert enabled.get("lastRunDetails") == before.get("lastRunDetails")
        clock.now += 60
        [running] = runs()
        assert running["metrics"]["statusSummary"]["status"] == "processing"
        assert "completedAtUTC" not in running["metrics"]["durationSummary"]
        assert running["createdAt"] == int((START + 60) * 1000)
        assert adobe.one("runs", running["id"], "dev")["id"] == running["id"]
        clock.now += 119
        assert runs()[0]["metrics"]["statusSummary"]["status"] == "processing"
        clock.now += 1
        [done] = runs()
        assert done["id"] == running["id"] and done["etag"] != running["etag"]
        assert done["metrics"]["statusSummary"]["status"] == "success"
        assert done["metrics"]["durationSummary"]["completedAtUTC"] == int((START + 180) * 1000)
        flow_now = adobe.one("flows", flow["id"], "dev")
        assert flow_now["lastRunDetails"]["id"] == done["id"]
        assert flow_now["lastRunDetails"]["state"] == "success"
        assert flow_now["etag"] == etag  # a run is no write to its flow


def test_run_statuses_follow_the_case_of_the_configured_one() -> None:
    clock = FakeTime(start=START)
    with Emulator(clock=clock.clock) as emu:
        emu.state.set_config({"run_status": "Success", "run_duration": 5})
        adobe = Platform(emu)
        flow = new_flow(emu, "Loyalty members")  # its account has no credentials
        adobe.call("POST", f"/flows/{flow['id']}/action", params={"op": "enable"})
        [run] = adobe.pages("runs", properties=(f"flowId=={flow['id']}",))[0]
        assert run["metrics"]["statusSummary"]["status"] == "Processing"
        assert "errors" not in run["metrics"]["statusSummary"]
        clock.now += 5
        [run] = adobe.pages("runs", properties=(f"flowId=={flow['id']}",))[0]
        assert run["metrics"]["statusSummary"]["status"] == "Failed"
        assert run["metrics"]["statusSummary"]["errors"]


def test_run_failures_fail_the_runs_of_the_flows_named_only() -> None:
    with Emulator() as emu:
        adobe = Platform(emu)
        failing = new_flow(emu, "Newsletter subscribers", "dev")
        fine = new_flow(emu, "Dev smoke test", "dev")
        emu.state.set_config({"run_failures": {failing["id"]: "Pinterest said no"}})
        summaries = {}
        for flow in (failing, fine):
            adobe.call(
                "POST", f"/flows/{flow['id']}/action", sandbox="dev", params={"op": "enable"}
            )
            [run] = adobe.pages("runs", sandbox="dev", properties=(f"flowId=={flow['id']}",))[0]
            summaries[flow["id"]] = run["metrics"]["statusSummary"]
        assert summaries[failing["id"]]["status"] == "failed"
        assert summaries[failing["id"]]["errors"] == [
            {"code": "CONNECTOR-2001-500", "message": "Pinterest said no"}
        ]
        assert summaries[fine["id"]]["status"] == "success"


@pytest.mark.parametrize("failures", [["x"], {"": "no"}, {"flow": ""}, {"flow": 3}])
def test_run_failures_are_checked(emulator: Emulator, failures: Any) -> None:
    with pytest.raises(ValueError, match="run_failures"):
        emulator.state.set_config({"run_failures": failures})


@pytest.mark.parametrize(
    "changes", [{"run_delay": -1}, {"run_duration": "soon"}, {"run_delay": True}]
)
def test_run_timing_settings_are_checked(emulator: Emulator, changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="number of seconds"):
        emulator.state.set_config(changes)


# --- the demo scenario --------------------------------------------------------------------------


def test_demo_scenario_matches_the_architecture_document() -> None:
    clock = FakeTime(start=START)
    state = EmulatorState("demo", clock=clock.clock)
    assert state.sandboxes == ["prod", "dev"]

    def expiry(sandbox: str, adv: str) -> float | None:
        account = state.get("connections", account_id(sandbox, "new", adv))
        assert account is not None
        assert account["name"] == f"Pinterest - ad account {adv}"
        value = account["auth"]["params"].get("expiresAt")
        return None if value is None else (parse_iso(value) - clock.now) / DAY

    assert expiry("prod", "549755885175") is None
    assert expiry("prod", "549755885176") == pytest.approx(-2, abs=0.001)
    assert expiry("dev", "549755885177") == pytest.approx(50, abs=0.001)
    assert expiry("dev", "549755885178") == pytest.approx(3, abs=0.001)
    for account in state.find("connections", card="legacy"):
        assert parse_iso(account["auth"]["params"]["expiresAt"]) > clock.now + 30 * DAY

    def flows(name: str, card: str) -> list[dict[str, Any]]:
        return state.find("flows", name=name, card=card)

    def advertiser(flow: dict[str, Any]) -> str:
        tc = state.get("targetConnections", flow["targetConnectionIds"][0])
        assert tc is not None
        return str(tc["params"]["advertiser_id"])

    def audiences(flow: dict[str, Any]) -> list[str]:
        selectors = flow["transformations"][0]["params"]["segmentSelectors"]["selectors"]
        return [s["value"]["id"] for s in selectors]

    table = [
        ("prod", "Loyalty members", "549755885175", "enabled", ["disabled"]),
        ("prod", "Cart abandoners", "549755885176", "enabled", ["disabled"]),
        ("prod", "Winback 2023", "549755885175", "disabled", ["disabled"]),
        ("prod", "Spring sale", "549755885175", "disabled", ["enabled"]),
        ("prod", "Holiday prospects", "549755885175", "enabled", []),
        ("prod", "Lookalike seeds", "549755885175", "enabled", ["disabled", "disabled"]),
        ("dev", "Newsletter subscribers", "549755885177", "enabled", ["disabled"]),
        ("dev", "Dev smoke test", "549755885178", "enabled", ["disabled"]),
    ]
    for sandbox, name, adv, legacy_state, twin_states in table:
        (legacy,) = flows(name, "legacy")
        twins = flows(name, "new")
        assert legacy["sandboxName"] == sandbox and legacy["state"] == legacy_state
        assert advertiser(legacy) == adv
        assert [t["state"] for t in twins] == twin_states
        for twin in twins:
            assert advertiser(twin) == adv and twin["sandboxName"] == sandbox
            base = twin["inheritedAttributes"]["targetConnections"][0]["baseConnection"]["id"]
            assert base == account_id(sandbox, "new", adv)
            if name == "Cart abandoners":
                assert len(audiences(legacy)) == 3
                assert audiences(twin) == audiences(legacy)[:2]
            else:
                assert audiences(twin) == audiences(legacy)
    (s3,) = state.find("flows", name="S3 nightly export")
    assert s3["state"] == "enabled"
    assert s3["inheritedAttributes"]["targetConnections"][0]["connectionSpec"]["id"] == S3_SPEC_ID
    assert len(state.find("flows")) == 17
    assert {u.username: u.ad_account_ids for u in state.users.values()} == {
        "emu_marketer": ["549755885175", "549755885176", "549755885177", "549755885178"],
        "emu_analyst": ["549755885175"],
    }
    # Deterministic ids: a second build agrees.
    assert {f["id"] for f in EmulatorState("demo").find("flows")} == {
        f["id"] for f in state.find("flows")
    }


def test_empty_and_scale_scenarios(emulator: Emulator, adobe: Platform) -> None:
    answer = requests.post(emulator.url + "/_emulator/reset", json={"scenario": "empty"})
    assert answer.status_code == 200
    assert answer.json()["counts"]["prod"]["flows"] == 0
    assert adobe.pages("flows")[0] == []
    assert adobe.pages("connections", properties=(f"connectionSpec.id=={NEW_SPEC_ID}",))[0] == []
    assert len(adobe.pages("connectionSpecs")[0]) == 4

    answer = requests.post(emulator.url + "/_emulator/reset", json={"scenario": "scale:50"})
    counts = answer.json()["counts"]
    assert answer.json()["sandboxes"] == ["prod", "dev", "stage"]
    assert sum(c["flows"] for c in counts.values()) == 100
    assert sum(c["targetConnections"] for c in counts.values()) == 100
    state = emulator.state
    legacy = state.find("flows", card="legacy")
    twins = state.find("flows", card="new")
    assert len(legacy) == len(twins) == 50
    assert {f["state"] for f in legacy} == {"enabled"} and {f["state"] for f in twins} == {
        "disabled"
    }
    short = [
        t
        for t in twins
        if len(t["transformations"][0]["params"]["segmentSelectors"]["selectors"]) == 1
    ]
    assert len(short) == 5
    advertisers = {
        (tc["sandboxName"], tc["params"]["advertiser_id"]) for tc in state.find("targetConnections")
    }
    assert len(advertisers) == 30
    for account in state.find("connections", card="new"):
        assert parse_iso(account["auth"]["params"]["expiresAt"]) > state.clock() + 30 * DAY
    assert (
        requests.post(emulator.url + "/_emulator/reset", json={"scenario": "bogus"}).status_code
        == 400
    )


def test_scale_pages_do_not_refilter_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    state = EmulatorState("scale:3000")
    calls = {"n": 0}
    original = query_module.Condition.matches

    def counting(self: Any, obj: Any) -> bool:
        calls["n"] += 1
        return original(self, obj)

    monkeypatch.setattr(query_module.Condition, "matches", counting)
    prop = f"inheritedAttributes.targetConnections[].connectionSpec.id=={LEGACY_SPEC_ID}"
    first: dict[str, list[str]] = {"property": [prop], "limit": ["100"]}
    params = first
    seen: list[str] = []
    while True:
        page = state.list_objects("prod", "flows", params)
        seen.extend(i["id"] for i in page["items"])
        if not page["_links"]:
            break
        params = {**first, **parse_qs(urlsplit(page["_links"]["next"]["href"]).query)}
    assert len(seen) == len(set(seen)) == 1000
    assert calls["n"] == 2000  # one pass over prod's flows, not one per page


# --- Pinterest OAuth ------------------------------------------------------------------------


def authorize_params(**over: str) -> dict[str, str]:
    params = {
        "client_id": PINTEREST_APP_ID,
        "redirect_uri": "http://localhost:8085/",
        "response_type": "code",
        "scope": "ads:read,ads:write,user_accounts:read",
        "state": "st4te",
    }
    params.update(over)
    return {k: v for k, v in params.items() if v != ""}


def basic(app_id: str = PINTEREST_APP_ID, secret: str = PINTEREST_APP_SECRET) -> dict[str, str]:
    raw = base64.b64encode(f"{app_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def consent(
    emu: Emulator, decision: str = "allow", user: str = "emu_marketer", **over: str
) -> requests.Response:
    form = {**authorize_params(**over), "decision": decision, "user": user}
    return requests.post(emu.url + "/oauth/", data=form, allow_redirects=False)


def code_from(answer: requests.Response) -> str:
    assert answer.status_code == 302, answer.text
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query["state"] == ["st4te"]
    return query["code"][0]


def exchange(
    emu: Emulator, code: str, redirect_uri: str = "http://localhost:8085/", **extra: str
) -> requests.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "continuous_refresh": "true",
        **extra,
    }
    return requests.post(emu.url + "/v5/oauth/token", data=data, headers=basic())


def test_consent_page_shows_the_app_scopes_users_and_buttons(emulator: Emulator) -> None:
    answer = requests.get(emulator.url + "/oauth/", params=authorize_params())
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/html")
    page = answer.text
    for text in (
        "pinmigrate (emulator)",
        "ads:read",
        "ads:write",
        "user_accounts:read",
        "emu_marketer",
        "emu_analyst",
        'value="allow"',
        'value="deny"',
        'name="state" value="st4te"',
        'action="/oauth/"',
    ):
        assert text in page, text
    assert (
        requests.get(
            emulator.url + "/oauth",
            params=authorize_params(client_id="", consumer_id=PINTEREST_APP_ID),
        ).status_code
        == 200
    )


def test_consent_allow_and_deny_redirect_to_the_loopback_uri(emulator: Emulator) -> None:
    emulator.register_redirect_uri("http://127.0.0.1:9999/cb?x=1")
    allowed = consent(emulator, redirect_uri="http://127.0.0.1:9999/cb?x=1")
    location = urlsplit(allowed.headers["Location"])
    assert (location.scheme, location.netloc, location.path) == ("http", "127.0.0.1:9999", "/cb")
    query = parse_qs(location.query)
    assert query["x"] == ["1"] and query["state"] == ["st4te"] and len(query["code"][0]) >= 20
    denied = consent(emulator, decision="deny")
    assert denied.status_code == 302
    assert parse_qs(urlsplit(denied.headers["Location"]).query) == {
        "error": ["access_denied"],
        "state": ["st4te"],
    }


@pytest.mark.parametrize(
    "over",
    [
        {"redirect_uri": "https://evil.example.com/cb"},
        {"redirect_uri": ""},
        {"response_type": "token"},
        {"response_type": ""},
        {"client_id": "999"},
        {"client_id": ""},
        {"scope": "ads:read,launch:missiles"},
    ],
)
def test_consent_refuses_bad_requests_with_an_error_page(
    emulator: Emulator, over: dict[str, str]
) -> None:
    answer = requests.get(
        emulator.url + "/oauth/", params=authorize_params(**over), allow_redirects=False
    )
    assert answer.status_code == 400
    assert "Something went wrong" in answer.text
    assert "Location" not in answer.headers


@pytest.mark.parametrize(
    "uri",
    [
        "http://localhost:8085",  # the registered one without its trailing slash
        "http://localhost:8085/callback",
        "http://localhost:8085/?x=1",
        "http://localhost:8086/",  # another loopback port
        "http://127.0.0.1:8085/",  # another spelling of the same host
        "https://localhost:8085/",
    ],
)
def test_pinmigrates_app_takes_only_a_registered_redirect_uri_exactly(
    emulator: Emulator, uri: str
) -> None:
    shown = requests.get(
        emulator.url + "/oauth/", params=authorize_params(redirect_uri=uri), allow_redirects=False
    )
    submitted = consent(emulator, redirect_uri=uri)
    for answer in (shown, submitted):
        assert answer.status_code == 400
        assert "not registered" in answer.text and "Location" not in answer.headers
    assert code_from(consent(emulator))  # the registered default, http://localhost:8085/


def test_redirect_uris_are_registered_through_the_control_api(emulator: Emulator) -> None:
    uri = "http://127.0.0.1:9001/"
    listing = f"{emulator.url}/_emulator/apps/{PINTEREST_APP_ID}/redirect_uris"
    assert requests.get(listing).json() == {
        "app_id": PINTEREST_APP_ID,
        "redirect_uris": ["http://localhost:8085/"],
    }
    assert consent(emulator, redirect_uri=uri).status_code == 400
    added = requests.post(listing, json={"redirect_uri": uri})
    assert added.status_code == 200
    assert added.json()["redirect_uris"] == ["http://localhost:8085/", uri]
    code = code_from(consent(emulator, redirect_uri=uri))
    # Both URIs are registered, yet a code is redeemed only with the URI it was issued for.
    other = exchange(emulator, code)
    assert other.status_code == 400 and "redirect_uri" in other.json()["message"]
    assert exchange(emulator, code, redirect_uri=uri).status_code == 200
    # Registrations belong to the app, not to the scenario.
    emulator.reset("empty")
    assert code_from(consent(emulator, redirect_uri=uri))
    assert requests.post(listing, json={"redirect_uri": uri}).json()["redirect_uris"] == [
        "http://localhost:8085/",
        uri,
    ]


@pytest.mark.parametrize(
    ("app", "body"),
    [
        (PINTEREST_APP_ID, {"redirect_uri": "localhost:9001"}),
        (PINTEREST_APP_ID, {"redirect_uri": "ftp://localhost:9001/"}),
        (PINTEREST_APP_ID, {"redirect_uri": "http://localhost:9001/#top"}),
        (PINTEREST_APP_ID, {"redirect_uri": 9001}),
        (PINTEREST_APP_ID, {}),
        (ADOBE_APP_ID, {"redirect_uri": "http://localhost:9001/"}),  # its callback is fixed
        ("999", {"redirect_uri": "http://localhost:9001/"}),
    ],
)
def test_registering_a_bad_redirect_uri_is_refused(
    emulator: Emulator, app: str, body: dict[str, Any]
) -> None:
    answer = requests.post(f"{emulator.url}/_emulator/apps/{app}/redirect_uris", json=body)
    assert answer.status_code == 400 and answer.json()["error"]
    assert emulator.redirect_uris() == ["http://localhost:8085/"]


def test_auto_approve_redirects_at_once_with_a_code_for_the_default_user(
    emulator: Emulator,
) -> None:
    answer = requests.post(
        emulator.url + "/_emulator/config",
        json={"auto_approve": True, "auto_approve_user": "emu_analyst"},
    )
    assert answer.status_code == 200
    redirect = requests.get(
        emulator.url + "/oauth/", params=authorize_params(), allow_redirects=False
    )
    tokens = exchange(emulator, code_from(redirect)).json()
    me = requests.get(
        emulator.url + "/v5/user_account",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert me.json()["username"] == "emu_analyst"
    assert Emulator(auto_approve=True).state.config.auto_approve is True


def test_code_exchange_gives_the_documented_token_json(emulator: Emulator) -> None:
    before = emulator.state.clock()
    answer = exchange(emulator, code_from(consent(emulator)))
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {
        "access_token",
        "refresh_token",
        "response_type",
        "token_type",
        "expires_in",
        "refresh_token_expires_in",
        "refresh_token_expires_at",
        "scope",
    }
    assert body["access_token"].startswith("pina_")
    assert body["refresh_token"].startswith("pinr_")
    assert body["response_type"] == "authorization_code"
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 2592000
    assert body["refresh_token_expires_in"] == 5184000
    assert abs(body["refresh_token_expires_at"] - (before + 5184000)) < 5
    assert body["scope"] == "ads:read ads:write user_accounts:read"


def test_codes_are_single_use_and_bound_to_the_redirect_uri(emulator: Emulator) -> None:
    code = code_from(consent(emulator))
    wrong_uri = exchange(emulator, code, redirect_uri="http://localhost:9999/")
    assert wrong_uri.status_code == 400
    assert "redirect_uri" in wrong_uri.json()["message"]
    assert exchange(emulator, code).status_code == 200
    reuse = exchange(emulator, code)
    assert reuse.status_code == 400
    assert isinstance(reuse.json()["code"], int) and "used" in reuse.json()["message"]
    assert exchange(emulator, "no-such-code").status_code == 400


def test_codes_expire_after_ten_minutes() -> None:
    clock = FakeTime(start=START)
    with Emulator(clock=clock.clock) as emu:
        fresh = code_from(consent(emu))
        stale = code_from(consent(emu))
        clock.now += 599
        assert exchange(emu, fresh).status_code == 200
        clock.now += 2
        answer = exchange(emu, stale)
        assert answer.status_code == 400
        assert "expired" in answer.json()["message"]


def test_token_endpoint_needs_the_app_credentials(emulator: Emulator) -> None:
    code = code_from(consent(emulator))
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": "http://localhost:8085/",
    }
    for headers in ({}, basic(secret="wrong"), basic(app_id="42"), {"Authorization": "Basic !!"}):
        answer = requests.post(emulator.url + "/v5/oauth/token", data=data, headers=headers)
        assert answer.status_code == 401
        assert answer.json() == {"code": 2, "message": "Authentication failed."}
    assert exchange(emulator, code).status_code == 200  # the failures did not burn the code


def test_refresh_rotates_and_the_old_refresh_token_dies(emulator: Emulator) -> None:
    first = exchange(emulator, code_from(consent(emulator))).json()

    def refresh(token: str) -> requests.Response:
        return requests.post(
            emulator.url + "/v5/oauth/token",
            headers=basic(),
            data={"grant_type": "refresh_token", "refresh_token": token},
        )

    second = refresh(first["refresh_token"])
    assert second.status_code == 200
    body = second.json()
    assert body["response_type"] == "refresh_token"
    assert body["refresh_token"] != first["refresh_token"]
    assert body["access_token"] != first["access_token"]
    assert body["scope"] == first["scope"]
    old = refresh(first["refresh_token"])
    assert old.status_code == 401
    assert old.json()["code"] == 2
    assert refresh(body["refresh_token"]).status_code == 200
    bad_grant = requests.post(
        emulator.url + "/v5/oauth/token", headers=basic(), data={"grant_type": "client_credentials"}
    )
    assert bad_grant.status_code == 400


def test_a_rotated_refresh_token_can_stay_valid(emulator: Emulator) -> None:
    """The other reading of an unconfirmed rule (api-notes.md §4): the replaced refresh
    token keeps working until it expires."""
    emulator.configure(revoke_rotated_refresh=False)
    first = exchange(emulator, code_from(consent(emulator))).json()
    answers = [
        requests.post(
            emulator.url + "/v5/oauth/token",
            headers=basic(),
            data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        )
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json()["refresh_token"] != answers[1].json()["refresh_token"]


def test_refresh_tokens_expire_after_sixty_days() -> None:
    clock = FakeTime(start=START)
    with Emulator(clock=clock.clock) as emu:
        tokens = emu.tokens("emu_marketer")
        clock.now += 5184000 + 1
        answer = requests.post(
            emu.url + "/v5/oauth/token",
            headers=basic(),
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        )
        assert answer.status_code == 401


def test_scope_separator_and_extra_scope_are_switchable(emulator: Emulator) -> None:
    emulator.configure(scope_separator=",", extra_scope="pins:read")
    body = exchange(emulator, code_from(consent(emulator))).json()
    assert body["scope"] == "ads:read,ads:write,user_accounts:read,pins:read"
    bad = requests.post(emulator.url + "/_emulator/config", json={"scope_separator": ";"})
    assert bad.status_code == 400


def test_lifetimes_can_be_served_as_strings(emulator: Emulator) -> None:
    emulator.configure(expires_as_string=True)
    body = exchange(emulator, code_from(consent(emulator))).json()
    assert body["expires_in"] == "2592000"
    assert body["refresh_token_expires_in"] == "5184000"
    assert emulator.tokens()["expires_in"] == "2592000"
    bad = requests.post(emulator.url + "/_emulator/config", json={"expires_as_string": "yes"})
    assert bad.status_code == 400


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_user_account_and_paged_ad_accounts(emulator: Emulator) -> None:
    token = exchange(emulator, code_from(consent(emulator))).json()["access_token"]
    me = requests.get(emulator.url + "/v5/user_account", headers=bearer(token))
    assert me.status_code == 200
    assert me.json()["id"] == "1000000001" and me.json()["username"] == "emu_marketer"
    assert me.json()["account_type"] == "BUSINESS"
    for size in (1, 2, 250):
        ids: list[str] = []
        params: dict[str, str] = {"page_size": str(size)}
        while True:
            page = requests.get(
                emulator.url + "/v5/ad_accounts", params=params, headers=bearer(token)
            ).json()
            assert len(page["items"]) <= size
            ids.extend(a["id"] for a in page["items"])
            if page["bookmark"] is None:
                break
            params = {"page_size": str(size), "bookmark": page["bookmark"]}
        assert ids == ["549755885175", "549755885176", "549755885177", "549755885178"]
    first = requests.get(emulator.url + "/v5/ad_accounts", headers=bearer(token)).json()
    account = first["items"][0]
    assert account["owner"] == {"id": "1000000001", "username": "emu_marketer"}
    assert account["permissions"] == ["OWNER"]
    assert (
        requests.get(
            emulator.url + "/v5/ad_accounts", params={"page_size": "0"}, headers=bearer(token)
        ).status_code
        == 400
    )

    analyst = emulator.tokens("emu_analyst")["access_token"]
    shared = requests.get(emulator.url + "/v5/ad_accounts", headers=bearer(analyst)).json()
    assert [a["id"] for a in shared["items"]] == ["549755885175"]
    own_only = requests.get(
        emulator.url + "/v5/ad_accounts",
        headers=bearer(analyst),
        params={"include_shared_accounts": "false"},
    ).json()
    assert own_only["items"] == []


def test_pinterest_api_refuses_bad_tokens_and_missing_scopes() -> None:
    clock = FakeTime(start=START)
    with Emulator(clock=clock.clock) as emu:
        for headers in ({}, bearer("pina_nope"), {"Authorization": "pina_nope"}):
            answer = requests.get(emu.url + "/v5/user_account", headers=headers)
            assert answer.status_code == 401
            assert answer.json() == {"code": 2, "message": "Authentication failed."}
        narrow = emu.tokens("emu_marketer", scope="ads:read")["access_token"]
        assert requests.get(emu.url + "/v5/user_account", headers=bearer(narrow)).status_code == 403
        assert requests.get(emu.url + "/v5/ad_accounts", headers=bearer(narrow)).status_code == 200
        short = emu.tokens("emu_marketer", expires_in=60)["access_token"]
        assert requests.get(emu.url + "/v5/ad_accounts", headers=bearer(short)).status_code == 200
        clock.now += 61
        assert requests.get(emu.url + "/v5/ad_accounts", headers=bearer(short)).status_code == 401
        assert requests.get(emu.url + "/v5/pins", headers=bearer(narrow)).status_code == 404


def test_control_endpoint_mints_tokens_for_ci(emulator: Emulator) -> None:
    answer = requests.post(emulator.url + "/_emulator/tokens", json={"user": "emu_analyst"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["access_token"].startswith("pina_") and body["refresh_token"].startswith("pinr_")
    me = requests.get(emulator.url + "/v5/user_account", headers=bearer(body["access_token"]))
    assert me.json()["username"] == "emu_analyst"
    assert (
        requests.post(emulator.url + "/_emulator/tokens", json={"user": "nobody"}).status_code
        == 400
    )


# --- faults, latency and the request log ------------------------------------------------------


def test_seeded_faults_give_429s_503s_and_real_dropped_connections(emulator: Emulator) -> None:
    adobe = Platform(emulator)
    spec = {"rate_429": 0.3, "rate_5xx": 0.2, "rate_drop": 0.2, "seed": 7, "retry_after": "0"}
    answer = requests.post(emulator.url + "/_emulator/faults", json=spec)
    assert answer.status_code == 200 and answer.json()["seed"] == 7

    def outcomes() -> list[str]:
        seen = []
        for _ in range(40):
            try:
                response = requests.get(emulator.url + FS + "/flows", headers=adobe.headers())
            except requests.ConnectionError:
                seen.append("drop")
                continue
            if response.status_code == 429:
                assert response.headers["Retry-After"] == "0"
                assert response.json()["error_code"]
            if response.status_code == 503:
                assert response.json()["message"]
            seen.append(str(response.status_code))
        return seen

    first = outcomes()
    assert {"200", "429", "503", "drop"} <= set(first)
    # Faults never touch the control API.
    for _ in range(20):
        assert requests.get(emulator.url + "/_emulator/state?summary=true").status_code == 200
    log = emulator.requests()
    assert log["faults"] == {
        k: first.count(v)
        for k, v in (("429", "429"), ("5xx", "503"), ("drop", "drop"))
        if v in first
    }
    assert log["by_status"].get("dropped") == first.count("drop")
    # The same seed gives the same sequence.
    requests.post(emulator.url + "/_emulator/faults", json=spec)
    assert outcomes() == first
    requests.delete(emulator.url + "/_emulator/faults", json={})
    assert all(o == "200" for o in outcomes())


def test_a_dropped_connection_closes_the_socket_without_a_byte(emulator: Emulator) -> None:
    emulator.set_faults(rate_drop=1.0)
    host, port = emulator.host, emulator.port
    with socket.create_connection((host, port), timeout=5) as raw:
        raw.sendall(b"GET /v5/user_account HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.recv(1024) == b""


def test_faults_can_be_limited_to_one_service(emulator: Emulator) -> None:
    emulator.set_faults({"rate_429": 1.0, "services": ["pinterest"]})
    adobe = Platform(emulator)
    assert adobe.get("/flows").status_code == 200
    answer = requests.get(emulator.url + "/v5/user_account")
    assert answer.status_code == 429
    assert answer.json()["code"] == 8


def test_latency_and_jitter_sleep_in_the_handler() -> None:
    slept: list[float] = []
    with Emulator(latency_ms=250, sleep=slept.append) as emu:
        requests.get(emu.url + "/v5/user_account")
        requests.get(emu.url + "/_emulator/state?summary=true")
        assert slept == [0.25]
        emu.set_faults("latency=10,jitter=20,seed=3")
        requests.get(emu.url + "/v5/user_account")
        assert 0.010 <= slept[-1] <= 0.030


def test_fault_spec_parsing() -> None:
    from pinmigrate.emulator import parse_fault_spec

    faults = parse_fault_spec("429=0.2,5xx=0.1,drop=0.05,jitter=20,seed=1")
    assert (faults.rate_429, faults.rate_5xx, faults.rate_drop, faults.jitter_ms, faults.seed) == (
        0.2,
        0.1,
        0.05,
        20.0,
        1,
    )
    for bad in ("429", "teapot=1", "429=2", "429=0.6,5xx=0.6", "jitter=-1", "seed=x"):
        with pytest.raises(ValueError):
            parse_fault_spec(bad)


def test_request_log_counts_by_templated_endpoint(emulator: Emulator, adobe: Platform) -> None:
    flow = adobe.one("flows", new_flow(emulator, "Cart abandoners")["id"])
    adobe.pages("flows", params={"limit": "5"})
    adobe.call(
        "PATCH", f"/flows/{flow['id']}", json=audiences_add("z"), headers={"If-Match": flow["etag"]}
    )
    adobe.call(
        "PATCH", f"/flows/{flow['id']}", json=audiences_add("y"), headers={"If-Match": flow["etag"]}
    )  # stale: 412
    adobe.call("POST", f"/flows/{flow['id']}/action", params={"op": "enable"})
    requests.get(emulator.url + "/_emulator/state?summary=true")
    log = requests.get(emulator.url + "/_emulator/requests").json()
    assert log["by_endpoint"] == {
        "POST /ims/token/v3": 1,
        "GET /flows/{id}": 1,
        "GET /flows": 3,
        "PATCH /flows/{id}": 2,
        "POST /flows/{id}/action": 1,
    }
    assert log["total"] == 8
    assert log["writes"] == 2 and log["write_attempts"] == 3
    entry = log["log"][-1]
    assert entry["method"] == "POST" and entry["path"] == f"{FS}/flows/{flow['id']}/action"
    assert entry["query"] == {"op": ["enable"]} and entry["status"] == 200
    assert entry["sandbox"] == "prod" and isinstance(entry["ts"], float)
    cleared = requests.delete(emulator.url + "/_emulator/requests", json={}).json()
    assert cleared["total"] == 0 and cleared["log"] == [] and emulator.requests()["total"] == 0


# --- control API ---------------------------------------------------------------------------------


def test_control_state_dump_has_everything_and_marks_secrets(
    emulator: Emulator, adobe: Platform
) -> None:
    emulator.tokens()
    dump = requests.get(emulator.url + "/_emulator/state?secrets=1").json()
    assert dump["scenario"] == "demo" and dump["org_id"] == ORG_ID
    assert len(dump["objects"]["prod"]["flows"]) == 13
    assert "test-only" in dump["secrets"]["warning"]
    assert len(dump["secrets"]["ims_tokens"]) == 1
    assert {t["kind"] for t in dump["secrets"]["pinterest_tokens"]} == {"access", "refresh"}
    assert [u["username"] for u in dump["pinterest"]["users"]] == ["emu_marketer", "emu_analyst"]
    summary = requests.get(emulator.url + "/_emulator/state?summary=true").json()
    assert "objects" not in summary and summary["counts"]["dev"]["flows"] == 4


def test_change_objects_behind_the_tools_back(emulator: Emulator, adobe: Platform) -> None:
    legacy = adobe.one("flows", flow_id("prod", "legacy", "Loyalty members"))
    answer = requests.patch(
        emulator.url + f"/_emulator/objects/flows/{legacy['id']}", json={"state": "disabled"}
    )
    assert answer.status_code == 200
    assert answer.json()["sandbox"] == "prod"
    after = adobe.one("flows", legacy["id"])
    assert after["state"] == "disabled" and after["etag"] == answer.json()["etag"] != legacy["etag"]
    nested = requests.patch(
        emulator.url + f"/_emulator/objects/connections/{account_id('dev', 'new', '549755885177')}",
        json={"auth": {"params": {"expiresAt": None}}},
    )
    assert nested.status_code == 200
    account = adobe.one("connections", account_id("dev", "new", "549755885177"), "dev")
    assert "expiresAt" not in account["auth"]["params"]
    assert account["auth"]["params"]["accessToken"] == "***"
    for path, body, status in (
        (f"/_emulator/objects/widgets/{legacy['id']}", {"a": 1}, 400),
        ("/_emulator/objects/flows/unknown", {"a": 1}, 404),
        (f"/_emulator/objects/flows/{legacy['id']}", {"etag": "x"}, 400),
        (f"/_emulator/objects/flows/{legacy['id']}", [1], 400),
    ):
        assert requests.patch(emulator.url + path, json=body).status_code == status


def test_control_config_validation(emulator: Emulator) -> None:
    url = emulator.url + "/_emulator/config"
    assert requests.get(url).json()["page_size"] == 100
    for body in (
        {"page_size": 0},
        {"colour": "red"},
        {"patch_status": 204},
        {"auto_approve_user": "nobody"},
        {"extra_scope": "root"},
    ):
        answer = requests.post(url, json=body)
        assert answer.status_code == 400 and answer.json()["error"]
    json_type = {"Content-Type": "application/json"}
    assert requests.post(url, data="{oops", headers=json_type).status_code == 400
    assert requests.post(url, json={"page_size": 7}).json()["page_size"] == 7
    assert requests.get(emulator.url + "/_emulator/nothing").status_code == 404


def test_reset_restores_the_world_and_clears_grants(emulator: Emulator, adobe: Platform) -> None:
    flow = new_flow(emulator, "Loyalty members")
    adobe.call("POST", f"/flows/{flow['id']}/action", params={"op": "enable"})
    tokens = emulator.tokens()
    requests.post(emulator.url + "/_emulator/reset", json={})
    assert adobe.one("flows", flow["id"])["state"] == "disabled"  # same scenario, same ids
    assert (
        requests.get(
            emulator.url + "/v5/user_account", headers=bearer(tokens["access_token"])
        ).status_code
        == 401
    )
    assert emulator.requests()["total"] == 2  # the two GETs above; the log started over


# --- robustness ------------------------------------------------------------------------------


def test_garbage_requests_get_json_errors_and_the_server_keeps_serving(emulator: Emulator) -> None:
    with socket.create_connection((emulator.host, emulator.port), timeout=5) as raw:
        raw.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        reply = raw.recv(4096)
    assert reply.startswith(b"HTTP/1.") and b"400" in reply.split(b"\r\n", 1)[0]
    with socket.create_connection((emulator.host, emulator.port), timeout=5) as raw:
        raw.sendall(b"POST /_emulator/config HTTP/1.1\r\nHost: x\r\nContent-Length: 999\r\n\r\n{")
        raw.shutdown(socket.SHUT_WR)
        raw.recv(4096)
    assert requests.get(emulator.url + "/nowhere").status_code == 404
    assert requests.get(emulator.url + "/").status_code == 200
    assert requests.get(emulator.url + "/_emulator/state?summary=true").status_code == 200


def test_chunked_bodies_are_read(emulator: Emulator) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"page_size": '
        yield b"5}"

    answer = requests.post(
        emulator.url + "/_emulator/config",
        data=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 200 and answer.json()["page_size"] == 5


def test_env_points_pinmigrate_at_the_emulator(emulator: Emulator) -> None:
    env = emulator.env()
    url = emulator.url
    assert url.startswith("http://127.0.0.1:") and emulator.port > 0
    assert env == {
        "PINMIGRATE_ADOBE_ORG_ID": ORG_ID,
        "PINMIGRATE_ADOBE_CLIENT_ID": CLIENT_ID,
        "PINMIGRATE_ADOBE_CLIENT_SECRET": CLIENT_SECRET,
        "PINMIGRATE_ADOBE_IMS_URL": url,
        "PINMIGRATE_ADOBE_PLATFORM_URL": url,
        "PINMIGRATE_ADOBE_UI_URL": url + "/ui/{org_id}/{sandbox}/destination/accounts/{account_id}",
        "PINMIGRATE_ADOBE_SANDBOXES": "prod,dev",
        "PINMIGRATE_PINTEREST_APP_ID": PINTEREST_APP_ID,
        "PINMIGRATE_PINTEREST_APP_SECRET": PINTEREST_APP_SECRET,
        "PINMIGRATE_PINTEREST_OAUTH_URL": url + "/oauth/",
        "PINMIGRATE_PINTEREST_API_URL": url + "/v5",
        "PINMIGRATE_PINTEREST_REDIRECT_URI": "http://localhost:8085/",
    }
    # The latest URI registered on pinmigrate's app is the one pinmigrate is pointed at.
    emulator.register_redirect_uri("http://127.0.0.1:8086/")
    assert emulator.env()["PINMIGRATE_PINTEREST_REDIRECT_URI"] == "http://127.0.0.1:8086/"


def test_stop_closes_kept_alive_connections() -> None:
    emu = Emulator().start()
    session = requests.Session()
    assert session.get(emu.url + "/_emulator/config").status_code == 200
    url = emu.url
    emu.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(url + "/_emulator/config", timeout=5)
    emu.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = emu.url


# --- the command -------------------------------------------------------------------------------


@pytest.fixture
def no_wait(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace the command's blocking wait with one request to the running emulator."""
    from pinmigrate.commands import emulator as command_module

    seen: list[dict[str, Any]] = []

    def probe(emu: Emulator) -> None:
        seen.append(requests.get(emu.url + "/_emulator/state?summary=true").json())
        raise KeyboardInterrupt

    monkeypatch.setattr(command_module, "wait", probe)
    return seen


def test_command_prints_url_and_exports_then_stops_cleanly(
    cli: Any, no_wait: list[dict[str, Any]]
) -> None:
    result = cli(
        [
            "emulator",
            "--port",
            "0",
            "--scenario",
            "scale:30",
            "--page-size",
            "7",
            "--faults",
            "429=0.1,seed=2",
            "--auto-approve",
        ]
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("# pinmigrate emulator: http://127.0.0.1:")
    exports = dict(line[len("export ") :].split("=", 1) for line in lines[1:])
    assert exports["PINMIGRATE_ADOBE_SANDBOXES"] == "prod,dev,stage"
    assert exports["PINMIGRATE_PINTEREST_API_URL"].endswith("/v5")
    assert len(exports) == 12
    assert exports["PINMIGRATE_PINTEREST_REDIRECT_URI"] == "http://localhost:8085/"
    # The account page template, quoted for the shell (it holds braces).
    url = exports["PINMIGRATE_ADOBE_PLATFORM_URL"]
    assert exports["PINMIGRATE_ADOBE_UI_URL"] == (
        f"'{url}/ui/{{org_id}}/{{sandbox}}/destination/accounts/{{account_id}}'"
    )
    (state,) = no_wait
    assert state["scenario"] == "scale:30"
    assert state["config"]["page_size"] == 7 and state["config"]["auto_approve"] is True
    assert state["faults"]["rate_429"] == 0.1 and state["faults"]["seed"] == 2
    assert "stopped" in result.stderr and "Traceback" not in result.stderr


def test_command_listens_on_a_free_port_by_default_and_prints_it(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pinmigrate.commands import emulator as command_module

    served: list[int] = []

    def probe(emu: Emulator) -> None:
        served.append(emu.port)
        raise KeyboardInterrupt

    asked: list[int] = []

    class Recording(Emulator):
        def __init__(self, *args: Any, port: int, **kwargs: Any) -> None:
            asked.append(port)
            super().__init__(*args, port=port, **kwargs)

    monkeypatch.setattr(command_module, "wait", probe)
    monkeypatch.setattr("pinmigrate.emulator.Emulator", Recording)
    text = cli(["emulator"])  # no --port: the system picks a free one
    as_json = cli(["emulator", "--output", "json"])
    assert text.exit_code == 0 and as_json.exit_code == 0, text.stderr + as_json.stderr
    first, second = served
    assert asked == [0, 0] and 0 not in served
    assert text.stdout.splitlines()[0] == (
        f"# pinmigrate emulator: http://127.0.0.1:{first} (port {first}, scenario demo); "
        "Ctrl-C stops it"
    )
    body = as_json.json()
    assert body["port"] == second and body["url"] == f"http://127.0.0.1:{second}"


def test_command_json_output(cli: Any, no_wait: list[dict[str, Any]]) -> None:
    result = cli(["emulator", "--port", "0", "--output", "json"])
    assert result.exit_code == 0
    body = result.json()
    assert (
        body["kind"] == "pinmigrate.emulator" and body["env"]["PINMIGRATE_ADOBE_ORG_ID"] == ORG_ID
    )
    assert (
        body["ui_url"] == body["url"] + "/ui/{org_id}/{sandbox}/destination/accounts/{account_id}"
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--host", "0.0.0.0"], "loopback"),
        (["--host", "192.168.1.10"], "loopback"),
        (["--scenario", "nope"], "scenario"),
        (["--scenario", "scale:0"], "scale"),
        (["--faults", "429=lots"], "faults"),
        (["--port", "70000"], "port"),
        (["--redirect-uri", "localhost:8086"], "--redirect-uri"),
    ],
)
def test_command_usage_errors_exit_64(
    cli: Any, no_wait: list[dict[str, Any]], args: list[str], needle: str
) -> None:
    result = cli(["emulator", *args])
    assert result.exit_code == 64
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert no_wait == []


def test_command_registers_redirect_uris(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from pinmigrate.commands import emulator as command_module

    seen: list[Any] = []

    def probe(emu: Emulator) -> None:
        seen.append(requests.get(f"{emu.url}/_emulator/apps/{PINTEREST_APP_ID}/redirect_uris"))
        seen.append(requests.get(emu.url + "/oauth/", params=authorize_params(redirect_uri=uri)))
        raise KeyboardInterrupt

    monkeypatch.setattr(command_module, "wait", probe)
    uri = "http://localhost:9001/cb"
    args = ["--redirect-uri", "http://127.0.0.1:9000/", "--redirect-uri", uri]
    result = cli(["emulator", "--port", "0", *args, "--output", "json"])
    assert result.exit_code == 0, result.stderr
    listed, page = seen
    assert listed.json()["redirect_uris"] == [
        "http://localhost:8085/",
        "http://127.0.0.1:9000/",
        uri,
    ]
    assert page.status_code == 200
    # pinmigrate is pointed at the URI registered last; the start-up note lists them all.
    assert result.json()["env"]["PINMIGRATE_PINTEREST_REDIRECT_URI"] == uri
    assert f"http://localhost:8085/, http://127.0.0.1:9000/, {uri}" in result.stderr


def test_command_port_in_use_exits_1_with_one_line(cli: Any, no_wait: list[dict[str, Any]]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli(["emulator", "--port", str(port)])
    assert result.exit_code == 1
    assert f"127.0.0.1:{port}" in result.stderr and "in use" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_ctrl_c_stops_the_real_process_cleanly() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "pinmigrate", "emulator", "--port", "0", "--scenario", "empty"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell without job control starts background jobs with SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(13)]
        url = lines[0].split()[3]
        assert "export PINMIGRATE_ADOBE_SANDBOXES=prod\n" in lines
        assert (
            requests.get(url + "/_emulator/state?summary=true", timeout=10).json()["scenario"]
            == "empty"
        )
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "Traceback" not in err and "stopped" in err
    assert out == ""


def test_quiet_by_default_and_one_line_per_request_when_verbose(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with Emulator() as quiet:
        requests.get(quiet.url + "/v5/user_account")
        requests.get(quiet.url + "/nowhere")
    assert capsys.readouterr().err == ""
    with Emulator(verbose=True) as loud:
        code = loud.tokens()["access_token"]
        requests.get(loud.url + "/v5/ad_accounts", params={"bookmark": "b"}, headers=bearer(code))
    err = capsys.readouterr().err
    assert "GET /v5/ad_accounts 400" in err
    assert code not in err and "bookmark" not in err


# --- strict mode and asynchronous flow writes -------------------------------------------------


def test_strict_mode_refuses_no_op_actions_in_flow_services_error_shape() -> None:
    with Emulator(scenario="demo+strict") as emu:
        adobe = Platform(emu)
        flow = new_flow(emu, "Spring sale")  # enabled
        answer = adobe.call("POST", f"/flows/{flow['id']}/action", params={"op": "enable"})
        assert answer.status_code == 400
        body = answer.json()
        assert body["type"] == "https://ns.adobe.com/aep/errors/FLOW-1409-400"
        assert body["status"] == 400 and body["title"] == "Invalid request"
        assert (
            "The operation enable cannot be applied on the current state enabled"
            in (body["errorMessage"])
        )
        assert adobe.one("flows", flow["id"])["etag"] == flow["etag"]
        # A real change is still accepted.
        off = adobe.call("POST", f"/flows/{flow['id']}/action", params={"op": "disable"})
        assert off.status_code == 200
        again = adobe.call("POST", f"/flows/{flow['id']}/action", params={"op": "disable"})
        assert again.status_code == 400 and "current state disabled" in again.text


def test_without_strict_a_no_op_action_answers_200(emulator: Emulator, adobe: Platform) -> None:
    flow = new_flow(emulator, "Spring sale")
    answer = adobe.call("POST", f"/flows/{flow['id']}/action", params={"op": "enable"})
    assert answer.status_code == 200 and answer.json()["etag"] == flow["etag"]


def test_delayed_writes_apply_after_the_delay_showing_last_operation_meanwhile() -> None:
    clock = FakeTime(start=START)
    with Emulator(scenario="demo+strict", clock=clock.clock) as emu:
        emu.configure(write_delay=5)
        adobe = Platform(emu)
        flow = new_flow(emu, "Cart abandoners")
        before = {
            s["value"]["id"]
            for s in flow["transformations"][0]["params"]["segmentSelectors"]["selectors"]
        }
        patched = adobe.call(
            "PATCH",
            f"/flows/{flow['id']}",
            json=audiences_add("aud-new"),
            headers={"If-Match": flow["etag"]},
        )
        assert patched.status_code == 200
        enabled = adobe.call(
            "POST",
            f"/flows/{flow['id']}/action",
            params={"op": "enable"},
            headers={"If-Match": patched.json()["etag"]},
        )
        assert enabled.status_code == 200
        # A second enable while the first is queued is a no-op: refused in strict mode.
        assert (
            adobe.call("POST", f"/flows/{flow['id']}/action", params={"op": "enable"}).status_code
            == 400
        )

        meanwhile = adobe.one("flows", flow["id"])
        assert meanwhile["state"] == "disabled"
        assert aud_ids(meanwhile) == before
        operation = meanwhile["lastOperation"]
        assert operation["status"]["value"] == "inProgress"
        assert operation["percentCompleted"] < 100 and operation["operation"] == "update"
        listed, _ = adobe.pages("flows", properties=("state==enabled",))
        assert flow["id"] not in {f["id"] for f in listed}

        clock.now += 5  # the PATCH lands; the enable is queued after it
        halfway = adobe.one("flows", flow["id"])
        assert aud_ids(halfway) == before | {"aud-new"} and halfway["state"] == "disabled"
        assert halfway["lastOperation"]["operation"] == "enable"
        assert halfway["lastOperation"]["status"]["value"] == "inProgress"

        clock.now += 5
        done = adobe.one("flows", flow["id"])
        assert done["state"] == "enabled" and aud_ids(done) == before | {"aud-new"}
        assert done["lastOperation"]["status"] == {
            "value": "completed",
            "properties": None,
            "errors": [],
        }
        assert done["lastOperation"]["percentCompleted"] == 100
        assert done["etag"] not in (flow["etag"], patched.json()["etag"])


def test_a_delayed_write_can_end_failed_changing_nothing() -> None:
    clock = FakeTime(start=START)
    with Emulator(scenario="demo", clock=clock.clock) as emu:
        emu.configure(write_delay=2, write_error="Destination rejected the activation")
        adobe = Platform(emu)
        flow = new_flow(emu, "Loyalty members")
        answer = adobe.call("POST", f"/flows/{flow['id']}/action", params={"op": "enable"})
        assert answer.status_code == 200
        clock.now += 2
        failed = adobe.one("flows", flow["id"])
        assert failed["state"] == "disabled"
        status = failed["lastOperation"]["status"]
        assert status["value"] == "failed"
        assert status["errors"][0]["message"] == "Destination rejected the activation"


def test_a_delayed_write_lands_at_its_due_time_however_late_the_next_read() -> None:
    """Nobody reads for ten minutes after a delayed enable: the flow, its ``lastOperation``
    and the run the enable starts carry the write's due time, not the read's."""
    clock = FakeTime(start=START)
    with Emulator(scenario="demo", clock=clock.clock) as emu:
        emu.configure(write_delay=3, run_delay=5, run_duration=2)
        adobe = Platform(emu)
        # The account expires in 3 days: live when the enable lands, dead at the read.
        flow = new_flow(emu, "Dev smoke test", "dev")
        answer = adobe.call(
            "POST", f"/flows/{flow['id']}/action", sandbox="dev", params={"op": "enable"}
        )
        assert answer.status_code == 200
        clock.now += 4 * DAY
        adobe = Platform(emu)  # a fresh IMS token: the first one expired meanwhile

        landed = adobe.one("flows", flow["id"], "dev")
        due = int((START + 3) * 1000)
        assert landed["state"] == "enabled"
        assert landed["updatedAt"] == due
        assert landed["lastOperation"]["updated"] == due
        assert landed["lastOperation"]["started"] == int(START * 1000)
        assert landed["lastOperation"]["status"]["value"] == "completed"
        [run] = adobe.pages("runs", sandbox="dev", properties=(f"flowId=={flow['id']}",))[0]
        assert run["createdAt"] == due + 5000
        assert run["metrics"]["durationSummary"]["completedAtUTC"] == due + 7000
        assert run["metrics"]["statusSummary"]["status"] == "success"
        assert landed["lastRunDetails"]["id"] == run["id"]


def test_write_delay_and_write_error_are_checked(emulator: Emulator) -> None:
    for bad in ({"write_delay": -1}, {"write_delay": "soon"}, {"write_error": ""}):
        with pytest.raises(ValueError):
            emulator.configure(**bad)


def aud_ids(flow: dict[str, Any]) -> set[str]:
    selectors = flow["transformations"][0]["params"]["segmentSelectors"]["selectors"]
    return {s["value"]["id"] for s in selectors}
