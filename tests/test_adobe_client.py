"""AdobeClient against ``responses`` mocks, and the payload models that read its answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
import requests
import responses
from fakes import FakeTime

from pinmigrate import adobe as adobe_module
from pinmigrate import models, redact
from pinmigrate.adobe import AdobeClient
from pinmigrate.errors import (
    ApiError,
    AuthError,
    ConfigError,
    InvalidStateError,
    NotFoundError,
    StaleObjectError,
    UnsureWriteError,
)
from pinmigrate.http import HttpClient, RetryPolicy
from pinmigrate.inventory import Audience
from pinmigrate.settings import AdobeSettings, Settings

IMS = "https://ims.example.test"
PLATFORM = "https://platform.example.test"
FLOWSERVICE_PATH = "/data/foundation/flowservice"
BASE = f"{PLATFORM}{FLOWSERVICE_PATH}"
TOKEN_URL = f"{IMS}/ims/token/v3"
SECRET = "adobe-client-secret-value-42"
ORG = "ABCDEF0123456789@AdobeOrg"


def make_settings(tmp_path: Path, **adobe: object) -> Settings:
    values: dict[str, object] = {
        "org_id": ORG,
        "client_id": "my-client-id",
        "client_secret": SECRET,
        "ims_url": IMS,
        "platform_url": PLATFORM,
        "sandboxes": "prod,dev",
    }
    values.update(adobe)
    return Settings(adobe=AdobeSettings(**values), state_dir=tmp_path)  # type: ignore[arg-type]


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def client(tmp_path: Path, fake: FakeTime) -> AdobeClient:
    http = HttpClient(service="adobe", sleep=fake.sleep, clock=fake.clock)
    return AdobeClient(make_settings(tmp_path), http=http, page_limit=2)


def add_token(mock: responses.RequestsMock, token: str = "ims-token-1", expires_in: int = 86399):
    mock.add(
        responses.POST,
        TOKEN_URL,
        json={"access_token": token, "token_type": "bearer", "expires_in": expires_in},
    )


def platform_calls(mock: responses.RequestsMock) -> list[responses.Call]:
    return [c for c in mock.calls if c.request.url.startswith(PLATFORM)]


def two_pages(mock: responses.RequestsMock, href: str, *, last: str = f"{BASE}/flows") -> None:
    """``GET /flows`` answers item "1" and a next link ``href``; ``last`` answers item "2"."""
    first = {"items": [{"id": "1"}], "_links": {"next": {"href": href}}}
    mock.add(responses.GET, f"{BASE}/flows", json=first)
    mock.add(responses.GET, last, json={"items": [{"id": "2"}]})


def query(call: responses.Call) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query, keep_blank_values=True)


# --- IMS token -----------------------------------------------------------------------------


def test_token_request_is_server_to_server_oauth(mock, client):
    add_token(mock)
    assert client.token() == "ims-token-1"
    call = mock.calls[0]
    form = dict(parse_qsl(call.request.body))
    assert form == {
        "grant_type": "client_credentials",
        "client_id": "my-client-id",
        "client_secret": SECRET,
        "scope": (
            "openid,session,AdobeID,read_organizations,additional_info.projectedProductContext"
        ),
    }
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    # Both the secret and the token are masked from now on.
    assert redact.redact(f"{SECRET} ims-token-1") == "*** ***"


def test_token_is_cached_until_near_expiry(mock, client, fake):
    add_token(mock, "first", expires_in=3600)
    add_token(mock, "second", expires_in=3600)
    assert client.token() == "first"
    fake.now += 3000
    assert client.token() == "first"
    fake.now += 400  # within the 5-minute margin
    assert client.token() == "second"
    assert len(mock.calls) == 2


def test_platform_headers_on_every_call(mock, client):
    add_token(mock)
    mock.add(responses.GET, f"{BASE}/flows", json={"items": []})
    list(client.list("flows", sandbox="prod"))
    list(client.list("flows", sandbox="dev"))
    calls = platform_calls(mock)
    assert len(mock.calls) == 3  # one token for both
    for call, sandbox in zip(calls, ["prod", "dev"], strict=True):
        headers = call.request.headers
        assert headers["Authorization"] == "Bearer ims-token-1"
        assert headers["x-api-key"] == "my-client-id"
        assert headers["x-gw-ims-org-id"] == ORG
        assert headers["x-sandbox-name"] == sandbox


def test_a_401_refetches_the_token_once(mock, client):
    add_token(mock, "stale")
    add_token(mock, "fresh")
    mock.add(
        responses.GET,
        f"{BASE}/flows",
        status=401,
        json={"error_code": "401013", "message": "Oauth token is not valid"},
    )
    mock.add(responses.GET, f"{BASE}/flows", json={"items": [{"id": "f1"}]})
    assert [f["id"] for f in client.list("flows", sandbox="prod")] == ["f1"]
    calls = platform_calls(mock)
    assert [c.request.headers["Authorization"] for c in calls] == ["Bearer stale", "Bearer fresh"]


@pytest.mark.parametrize("code", [401013, "401013"])  # a number in Adobe's example
def test_a_second_401_is_an_auth_error(mock, client, code):
    add_token(mock, "one")
    add_token(mock, "two")
    mock.add(
        responses.GET,
        f"{BASE}/flows",
        status=401,
        json={"error_code": code, "message": "Oauth token is not valid"},
    )
    with pytest.raises(AuthError) as info:
        list(client.list("flows", sandbox="prod"))
    assert info.value.exit_code == 4
    assert "Oauth token is not valid (401013)" in info.value.line()
    assert len(platform_calls(mock)) == 2
    assert client.token_fetches == 2


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, {"error": "invalid_client", "error_description": "invalid client_secret parameter"}),
        (401, {"error": "unauthorized_client", "error_description": "Client not allowed"}),
    ],
)
def test_ims_refusing_credentials_names_the_settings(mock, client, status, body):
    mock.add(responses.POST, TOKEN_URL, status=status, json=body)
    with pytest.raises(AuthError) as info:
        client.token()
    line = info.value.line()
    assert "adobe.client_id" in line and "adobe.client_secret" in line
    assert body["error_description"] in line
    assert SECRET not in line
    assert info.value.exit_code == 4


def test_ims_refusing_scopes_names_the_scopes(mock, client):
    mock.add(
        responses.POST,
        TOKEN_URL,
        status=400,
        json={"error": "invalid_scope", "error_description": "bad scope"},
    )
    with pytest.raises(AuthError) as info:
        client.token()
    assert "adobe.scopes" in info.value.line()


def test_ims_answering_html_is_an_api_error(mock, client):
    mock.add(
        responses.POST,
        TOKEN_URL,
        body="<html><body>" + "x" * 5000 + "</body></html>",
        content_type="text/html",
    )
    with pytest.raises(ApiError) as info:
        client.token()
    line = info.value.line()
    assert "HTML" in line and "not JSON" in line
    assert "<html" not in line and len(line) < 400


def test_ims_without_access_token(mock, client):
    mock.add(responses.POST, TOKEN_URL, json={"token_type": "bearer"})
    with pytest.raises(ApiError, match="without an access_token"):
        client.token()


def test_missing_credentials_are_a_config_error(mock, tmp_path):
    settings = Settings(adobe=AdobeSettings(org_id=ORG, client_id="x"), state_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"adobe\.client_secret") as info:
        AdobeClient(settings).token()
    assert info.value.exit_code == 64
    assert not mock.calls


# --- lists ---------------------------------------------------------------------------------


def test_list_follows_next_links_to_the_end(mock, client):
    add_token(mock)
    mock.add(
        responses.GET,
        f"{BASE}/flows",
        json={
            "items": [{"id": "a"}, {"id": "b"}],
            "_links": {"next": {"href": "/flows?continuationToken=tok%3D%3D&limit=2"}},
        },
    )
    mock.add(
        responses.GET,
        f"{BASE}/flows",
        json={
            "items": [{"id": "c"}],
            "_links": {"next": {"href": "/flows?continuationToken=second=="}},
        },
    )
    mock.add(responses.GET, f"{BASE}/flows", json={"items": [{"id": "d"}], "_links": {}})
    ids = [
        f["id"]
        for f in client.list(
            "flows",
            sandbox="prod",
            properties=["state==enabled", "inheritedAttributes.properties.isDestinationFlow==true"],
        )
    ]
    assert ids == ["a", "b", "c", "d"]
    first, second, third = platform_calls(mock)
    assert query(first) == {
        "limit": ["2"],
        "property": ["state==enabled", "inheritedAttributes.properties.isDestinationFlow==true"],
    }
    # The token arrives whole, '=' and all (never split on '='), and filters stay on.
    assert query(second)["continuationToken"] == ["tok=="]
    assert query(second)["limit"] == ["2"]
    assert query(second)["property"] == first_props(first)
    assert query(third)["continuationToken"] == ["second=="]
    assert urlsplit(third.request.url).path == "/data/foundation/flowservice/flows"


def first_props(call: responses.Call) -> list[str]:
    return query(call)["property"]


def test_next_link_extra_params_are_kept_and_win(mock, client):
    add_token(mock)
    mock.add(
        responses.GET,
        f"{BASE}/connections",
        json={
            "items": [{"id": "a"}],
            "_links": {
                "next": {
                    "href": "/connections?orderby=name&continuationToken=abc&limit=50"
                    "&property=connectionSpec.id%3D%3Dxyz"
                }
            },
        },
    )
    mock.add(responses.GET, f"{BASE}/connections", json={"items": [{"id": "b"}]})
    ids = [
        c["id"]
        for c in client.list("connections", sandbox="prod", properties=["connectionSpec.id==xyz"])
    ]
    assert ids == ["a", "b"]
    second = platform_calls(mock)[1]
    assert query(second) == {
        "orderby": ["name"],
        "continuationToken": ["abc"],
        "limit": ["50"],
        "property": ["connectionSpec.id==xyz"],
    }


def test_a_property_in_the_link_replaces_every_first_property(mock, client):
    add_token(mock)
    two_pages(mock, "/flows?continuationToken=t2&property=state%3D%3Denabled")
    props = ["state==disabled", "name==x"]
    assert [f["id"] for f in client.list("flows", sandbox="prod", properties=props)] == ["1", "2"]
    second = platform_calls(mock)[1]
    # The link's values win by name: one property from the link, none of the first two.
    assert query(second) == {
        "continuationToken": ["t2"],
        "property": ["state==enabled"],
        "limit": ["2"],
    }


ODD_PROPERTIES = [
    "inheritedAttributes.targetConnections[].connectionSpec.id==spec-a,spec-b",
    "name==Spring sale, 2024 [EU]",
    "description==a==b & c+d/e?f#g%h",
]


def test_first_properties_survive_every_page_byte_for_byte(mock, client):
    add_token(mock)
    for n in (2, 3):
        mock.add(
            responses.GET,
            f"{BASE}/flows",
            json={
                "items": [{"id": str(n)}],
                "_links": {"next": {"href": f"/flows?continuationToken=t{n}"}},
            },
        )
    mock.add(responses.GET, f"{BASE}/flows", json={"items": [{"id": "end"}]})
    ids = [f["id"] for f in client.list("flows", sandbox="prod", properties=ODD_PROPERTIES)]
    assert ids == ["2", "3", "end"]
    for call in platform_calls(mock):
        assert query(call)["property"] == ODD_PROPERTIES
        assert query(call)["limit"] == ["2"]
    assert [query(c).get("continuationToken") for c in platform_calls(mock)] == [
        None,
        ["t2"],
        ["t3"],
    ]


def test_the_link_parameters_travel_as_the_link_spells_them(mock, client):
    add_token(mock)
    token = "ab%2Bc%2Fd%3D%3D"  # "ab+c/d==": never decoded, so never re-encoded differently
    prop = "property=name%3D%3DA%20B%2C%5BC%5D"  # name==A B,[C]; "%20" stays, never "+"
    two_pages(mock, f"/flows?continuationToken={token}&{prop}")
    assert [f["id"] for f in client.list("flows", sandbox="prod", properties=["x==y"])] == [
        "1",
        "2",
    ]
    second = platform_calls(mock)[1]
    assert f"continuationToken={token}&{prop}" in urlsplit(second.request.url).query
    assert query(second) == {
        "continuationToken": ["ab+c/d=="],
        "property": ["name==A B,[C]"],
        "limit": ["2"],
    }


@pytest.mark.parametrize(
    "href",
    [
        "/flows?continuationToken=t2",
        "/Flows?continuationToken=t2",
        "/flows/?continuationToken=t2",
        "/data/foundation/flowservice/flows?continuationToken=t2",
        f"{BASE}/flows?continuationToken=t2",
        "flows?continuationToken=t2",
        "/DATA/Foundation/FlowService/flows/?continuationToken=t2",
        f"{BASE}/flows/?continuationToken=t2",
        "?continuationToken=t2",
    ],
)
def test_a_link_to_the_same_list_in_another_spelling_reads_the_list(mock, client, href):
    add_token(mock)
    two_pages(mock, href)
    props = ["state==enabled"]
    assert [f["id"] for f in client.list("flows", sandbox="prod", properties=props)] == ["1", "2"]
    second = platform_calls(mock)[1]
    assert urlsplit(second.request.url).path == "/data/foundation/flowservice/flows"
    assert query(second) == {
        "continuationToken": ["t2"],
        "property": ["state==enabled"],
        "limit": ["2"],
    }


def test_a_link_to_another_list_is_followed_as_given(mock, client):
    add_token(mock)
    two_pages(mock, "/v2/flows?continuationToken=t", last=f"{BASE}/v2/flows")
    assert [f["id"] for f in client.list("flows", sandbox="prod")] == ["1", "2"]
    assert urlsplit(platform_calls(mock)[1].request.url).path == f"{FLOWSERVICE_PATH}/v2/flows"


def test_limits_stay_in_the_documented_range(mock, tmp_path, fake):
    add_token(mock)
    mock.add(responses.GET, f"{BASE}/flows", json={"items": []})
    mock.add(responses.GET, f"{BASE}/connectionSpecs", json={"items": []})
    http = HttpClient(service="adobe", sleep=fake.sleep, clock=fake.clock)
    big = AdobeClient(make_settings(tmp_path), http=http, page_limit=500)
    assert list(big.list("flows", sandbox="prod")) == []
    # GET /connectionSpecs documents `property` alone: no limit goes with it.
    assert list(big.list("connectionSpecs", sandbox="prod", properties=["name==P"])) == []
    flows, specs = platform_calls(mock)
    assert query(flows) == {"limit": ["100"]}
    assert query(specs) == {"property": ["name==P"]}


@pytest.mark.parametrize(
    "href",
    [
        "https://evil.example.test/flows?continuationToken=x",
        "//evil.example.test/flows?continuationToken=x",
        "http://platform.example.test/flows?continuationToken=x",  # a downgrade to http
        "https://platform.example.test:8443/flows?continuationToken=x",  # another port
        "https://platform.example.test:x443/flows?continuationToken=x",  # a port that is no number
    ],
)
def test_next_link_to_another_host_is_refused(mock, client, href):
    add_token(mock)
    mock.add(
        responses.GET,
        f"{BASE}/flows",
        json={"items": [{"id": "1"}], "_links": {"next": {"href": href}}},
    )
    got = []
    with pytest.raises(ApiError, match="refusing to send the access token"):
        for flow in client.list("flows", sandbox="prod"):
            got.append(flow["id"])
    assert got == ["1"]
    assert len(platform_calls(mock)) == 1
    assert all("evil" not in c.request.url for c in mock.calls)


def test_looping_next_link_is_stopped(mock, client):
    add_token(mock)
    page = {"items": [{"id": "x"}], "_links": {"next": {"href": "/flows?continuationToken=same"}}}
    mock.add(responses.GET, f"{BASE}/flows", json=page)
    with pytest.raises(ApiError, match="same next-page link twice"):
        list(client.list("flows", sandbox="prod"))
    assert len(platform_calls(mock)) == 2


def test_pages_that_never_end_are_capped(mock, client, monkeypatch):
    monkeypatch.setattr(adobe_module, "MAX_PAGES", 5)
    add_token(mock)
    counter = iter(range(1000))

    def endless(request):
        n = next(counter)
        body = {
            "items": [{"id": str(n)}],
            "_links": {"next": {"href": f"/flows?continuationToken=t{n}"}},
        }
        return 200, {}, json.dumps(body)

    mock.add_callback(responses.GET, f"{BASE}/flows", callback=endless)
    with pytest.raises(ApiError, match="did not end after 5 pages"):
        list(client.list("flows", sandbox="prod"))


def test_empty_and_short_pages_are_fine(mock, client):
    add_token(mock)
    mock.add(
        responses.GET,
        f"{BASE}/flows",
        json={"items": [], "_links": {"next": {"href": "/flows?continuationToken=2"}}},
    )
    mock.add(responses.GET, f"{BASE}/flows", json={"items": [{"id": "only"}]})
    assert [f["id"] for f in client.list("flows", sandbox="prod")] == ["only"]


def test_list_answering_html_is_one_readable_error(mock, client):
    add_token(mock)
    mock.add(
        responses.GET,
        f"{BASE}/flows",
        body="<!DOCTYPE html><html>" + "<p>sign in</p>" * 500,
        content_type="text/html",
    )
    with pytest.raises(ApiError) as info:
        list(client.list("flows", sandbox="prod"))
    line = info.value.line()
    assert "HTML, not JSON" in line and "GET /flows" in line
    assert "<p>" not in line and "\n" not in line


def test_list_answering_bad_json(mock, client):
    add_token(mock)
    mock.add(responses.GET, f"{BASE}/flows", body='{"items": [', content_type="application/json")
    with pytest.raises(ApiError, match="non-JSON text, not JSON"):
        list(client.list("flows", sandbox="prod"))


@pytest.mark.parametrize("body", [[1, 2], {"items": {"a": 1}}, {"items": ["x"]}])
def test_list_answering_the_wrong_shape(mock, client, body):
    add_token(mock)
    mock.add(responses.GET, f"{BASE}/flows", json=body)
    with pytest.raises(ApiError):
        list(client.list("flows", sandbox="prod"))


def test_list_is_retried_on_503_and_429(mock, client, fake):
    add_token(mock)
    mock.add(responses.GET, f"{BASE}/flows", status=503)
    mock.add(responses.GET, f"{BASE}/flows", status=429, headers={"Retry-After": "3"})
    mock.add(responses.GET, f"{BASE}/flows", json={"items": [{"id": "ok"}]})
    assert [f["id"] for f in client.list("flows", sandbox="prod")] == ["ok"]
    assert fake.sleeps[-1] == 3.0 and len(fake.sleeps) == 2


def test_list_params_override_the_page_limit(mock, client):
    add_token(mock)
    mock.add(
        responses.GET,
        f"{BASE}/flows",
        json={"items": [{"id": "a"}], "_links": {"next": {"href": "/flows?continuationToken=2"}}},
    )
    flows = client.list("flows", sandbox="prod", params={"limit": "1"})
    assert next(flows)["id"] == "a"
    assert query(platform_calls(mock)[0])["limit"] == ["1"]
    assert len(platform_calls(mock)) == 1  # lazy: no second page unless asked


# --- errors ----------------------------------------------------------------------------------


def test_gateway_error_shape(mock, client):
    add_token(mock)
    mock.add(
        responses.GET,
        f"{BASE}/flows",
        status=400,
        json={"error_code": "400003", "message": "Missing header x-gw-ims-org-id"},
    )
    with pytest.raises(ApiError) as info:
        list(client.list("flows", sandbox="prod"))
    line = info.value.line()
    assert "Missing header x-gw-ims-org-id (400003)" in line
    assert "HTTP 400" in line and "sandbox prod" in line
    assert info.value.status == 400 and info.value.exit_code == 1


def test_flow_service_error_shape(mock, client):
    add_token(mock)
    mock.add(
        responses.GET,
        f"{BASE}/flows",
        status=500,
        json={
            "type": "https://ns.adobe.com/aep/errors/FLOW-1000-500",
            "title": "Internal error",
            "status": 500,
            "report": {"tenantInfo": {}},
            "errorMessage": "Something broke in flow service",
            "errorDetails": "more about it",
        },
    )
    with pytest.raises(ApiError) as info:
        list(client.list("flows", sandbox="prod"))
    line = info.value.line()
    assert "Something broke in flow service: more about it (FLOW-1000-500)" in line
    assert "\n" not in line


def test_403_is_an_auth_error(mock, client):
    add_token(mock)
    mock.add(
        responses.GET,
        f"{BASE}/flows",
        status=403,
        json={"error_code": "403027", "message": "User region is missing"},
    )
    with pytest.raises(AuthError, match="User region is missing"):
        list(client.list("flows", sandbox="dev"))


def test_long_error_messages_are_cut(mock, client):
    add_token(mock)
    mock.add(responses.GET, f"{BASE}/flows", status=500, json={"message": "x" * 5000})
    with pytest.raises(ApiError) as info:
        list(client.list("flows", sandbox="prod"))
    assert len(info.value.line()) < 500


# --- single objects ------------------------------------------------------------------------


def test_get_unwraps_items(mock, client):
    add_token(mock)
    mock.add(responses.GET, f"{BASE}/flows/f-1", json={"items": [{"id": "f-1", "etag": '"7"'}]})
    assert client.get("flows", "f-1", sandbox="prod") == {"id": "f-1", "etag": '"7"'}


def test_get_tolerates_a_bare_object(mock, client):
    add_token(mock)
    mock.add(responses.GET, f"{BASE}/connections/c-1", json={"id": "c-1"})
    assert client.get("connections", "c-1", sandbox="prod")["id"] == "c-1"


def test_get_of_an_unknown_object(mock, client):
    add_token(mock)
    mock.add(
        responses.GET,
        f"{BASE}/flows/nope",
        status=404,
        json={"errorMessage": "flows not found with id = [nope]"},
    )
    with pytest.raises(NotFoundError) as info:
        client.get("flows", "nope", sandbox="prod")
    assert "no flow nope in sandbox prod" in info.value.line()
    assert "flows not found" in info.value.line()


def test_get_with_empty_items_is_not_found(mock, client):
    add_token(mock)
    mock.add(responses.GET, f"{BASE}/targetConnections/t", json={"items": []})
    with pytest.raises(NotFoundError):
        client.get("targetConnections", "t", sandbox="prod")


def test_get_quotes_the_id(mock, client):
    add_token(mock)
    # A "/" is refused outright (tests/test_hygiene.py); what is left is still quoted.
    mock.add(responses.GET, f"{BASE}/flows/a%3Ab%2Bc%40d", json={"items": [{"id": "a:b+c@d"}]})
    assert client.get("flows", "a:b+c@d", sandbox="prod")["id"] == "a:b+c@d"


def test_connection_specs_named_is_exact_even_when_the_server_ignores_the_filter(mock, client):
    add_token(mock)
    mock.add(
        responses.GET,
        f"{BASE}/connectionSpecs",
        json={
            "items": [
                {"id": "s3", "name": "Amazon S3"},
                {"id": "pin-beta", "name": "(Beta) Pinterest Conversions"},
                {"id": "pin-old", "name": "(Deprecating) Pinterest"},
                {"id": "pin-new", "name": "Pinterest"},
                {"id": "pin-draft", "name": "(New)  pinterest"},
            ]
        },
    )

    def ids(name: str) -> list[str]:
        return [spec["id"] for spec in client.connection_specs_named(name, sandbox="prod")]

    assert ids("(Deprecating) Pinterest") == ["pin-old"]
    assert ids("Pinterest") == ["pin-new"]
    # No exact name: the same name but for case and spacing still matches.
    assert ids("(New) Pinterest") == ["pin-draft"]
    assert ids("Facebook") == []
    assert query(platform_calls(mock)[0])["property"] == ["name==(Deprecating) Pinterest"]


def test_runs_of_a_flow(mock, client):
    add_token(mock)
    mock.add(responses.GET, f"{BASE}/runs", json={"items": [{"id": "r1", "flowId": "f"}]})
    assert client.runs("f", sandbox="prod") == [{"id": "r1", "flowId": "f"}]
    assert query(platform_calls(mock)[0])["property"] == ["flowId==f"]


# --- writes --------------------------------------------------------------------------------


def test_flow_action_uses_lower_case_op_and_is_retried(mock, client, fake):
    add_token(mock)
    url = f"{BASE}/flows/f-1/action"
    mock.add(responses.POST, url, status=503)
    mock.add(responses.POST, url, json={"id": "f-1", "etag": '"9"'})
    assert client.flow_action("f-1", "enable", sandbox="prod") == {"id": "f-1", "etag": '"9"'}
    calls = platform_calls(mock)
    assert len(calls) == 2
    assert query(calls[1]) == {"op": ["enable"]}
    assert calls[1].request.headers["x-sandbox-name"] == "prod"


def test_flow_action_without_body_and_with_if_match(mock, client):
    add_token(mock)
    mock.add(responses.POST, f"{BASE}/flows/f-1/action", status=202, body="")
    assert client.flow_action("f-1", "disable", sandbox="dev", etag='"5"') == {}
    call = platform_calls(mock)[0]
    assert query(call) == {"op": ["disable"]}
    assert call.request.headers["If-Match"] == '"5"'


def test_flow_action_rejects_unknown_ops(client):
    with pytest.raises(ValueError):
        client.flow_action("f", "delete", sandbox="prod")  # type: ignore[arg-type]


def test_patch_sends_if_match_verbatim_and_returns_the_new_etag(mock, client):
    add_token(mock)
    etag = '"04001b6d-0000-0200-0000-62d9a2ec0000"'
    ops = [
        {
            "op": "add",
            "path": "/transformations/0/params/segmentSelectors/selectors/-",
            "value": {"type": "PLATFORM_SEGMENT", "value": {"id": "aud"}},
        }
    ]
    mock.add(responses.PATCH, f"{BASE}/flows/f-1", json={"id": "f-1", "etag": '"new"'})
    assert client.patch("flows", "f-1", ops, etag=etag, sandbox="prod") == '"new"'
    call = platform_calls(mock)[0]
    assert call.request.headers["If-Match"] == etag
    assert call.request.headers["Content-Type"] == "application/json"
    assert json.loads(call.request.body) == ops


def test_patch_202_without_body(mock, client):
    add_token(mock)
    mock.add(responses.PATCH, f"{BASE}/connections/c-1", status=202)
    assert client.patch("connections", "c-1", [], etag='"1"', sandbox="prod") is None


def test_patch_412_is_a_stale_object(mock, client):
    add_token(mock)
    mock.add(
        responses.PATCH,
        f"{BASE}/flows/f-1",
        status=412,
        json={
            "errorMessage": 'Supplied version=["1"] does not match the current version '
            'on entity=["2"]'
        },
    )
    with pytest.raises(StaleObjectError) as info:
        client.patch("flows", "f-1", [], etag='"1"', sandbox="prod")
    assert info.value.object_id == "f-1"
    assert "flow f-1" in info.value.line() and "changed since it was read" in info.value.line()
    assert len(platform_calls(mock)) == 1


def test_if_match_patch_is_retried_on_503(mock, client):
    add_token(mock)
    mock.add(responses.PATCH, f"{BASE}/flows/f-1", status=503)
    mock.add(responses.PATCH, f"{BASE}/flows/f-1", json={"id": "f-1", "etag": '"3"'})
    assert client.patch("flows", "f-1", [], etag='"2"', sandbox="prod") == '"3"'


def test_patch_needs_an_etag(mock, client):
    with pytest.raises(ApiError, match="without its etag"):
        client.patch("flows", "f-1", [], etag="", sandbox="prod")
    assert not mock.calls


@pytest.mark.parametrize(
    "lost",
    [
        {"body": requests.ConnectionError("Connection reset by peer")},
        {"body": requests.ReadTimeout("read timed out")},
        {"status": 502, "json": {"error_code": "502000", "message": "Bad gateway"}},
        {"status": 504, "json": {"error_code": "504000", "message": "Gateway timeout"}},
    ],
    ids=["dropped", "timeout", "502", "504"],
)
@pytest.mark.parametrize("write", ["patch", "action"])
def test_a_write_whose_answer_is_lost_is_not_replayed(mock, client, lost, write):
    """The write may have taken: the caller re-reads (writes.py) instead of a blind replay."""
    add_token(mock)
    url = f"{BASE}/flows/f-1" + ("/action" if write == "action" else "")
    method = responses.PATCH if write == "patch" else responses.POST
    mock.add(method, url, **lost)
    mock.add(method, url, status=200, json={"id": "f-1", "etag": '"4"'})
    with pytest.raises(UnsureWriteError) as info:
        if write == "patch":
            client.patch("flows", "f-1", [], etag='"3"', sandbox="prod")
        else:
            client.flow_action("f-1", "enable", sandbox="prod", etag='"3"')
    assert len(platform_calls(mock)) == 1
    line = info.value.line()
    assert "f-1" in line and "may or may not have been applied" in line
    assert "\n" not in line


@pytest.mark.parametrize(
    "body",
    [
        {
            "type": "https://ns.adobe.com/aep/errors/FLOW-1409-400",
            "title": "Invalid request",
            "status": 400,
            "errorMessage": "The operation enable cannot be applied on the current state "
            "enabled. Please update the operation and try again.",
        },
        {
            "code": "1409-400",
            "message": "The operation enable cannot be applied on the current state enabled.",
        },
        {
            "error_code": "FLOW-1409-400",
            "message": "The operation enable cannot be applied on the current state enabled.",
        },
    ],
    ids=["type-url", "code", "error_code"],
)
def test_an_action_refused_on_the_current_state_is_recognised(mock, client, body):
    add_token(mock)
    mock.add(responses.POST, f"{BASE}/flows/f-1/action", status=400, json=body)
    with pytest.raises(InvalidStateError) as info:
        client.flow_action("f-1", "enable", sandbox="prod")
    assert "cannot be applied on the current state enabled" in info.value.line()
    assert len(platform_calls(mock)) == 1


def test_another_400_of_an_action_is_not_a_state_refusal(mock, client):
    add_token(mock)
    mock.add(
        responses.POST,
        f"{BASE}/flows/f-1/action",
        status=400,
        json={"type": "https://ns.adobe.com/aep/errors/FLOW-1002-400", "errorMessage": "Bad"},
    )
    with pytest.raises(ApiError) as info:
        client.flow_action("f-1", "enable", sandbox="prod")
    assert not isinstance(info.value, InvalidStateError) and info.value.status == 400


def test_unreachable_platform_is_one_line(mock, tmp_path, fake):
    http = HttpClient(
        service="adobe", sleep=fake.sleep, clock=fake.clock, retry=RetryPolicy(max_attempts=2)
    )
    client = AdobeClient(make_settings(tmp_path), http=http)
    add_token(mock)
    mock.add(responses.GET, f"{BASE}/flows", body=requests.ConnectionError("Connection refused"))
    with pytest.raises(ApiError) as info:
        list(client.list("flows", sandbox="prod"))
    assert "connection refused after 2 attempts" in info.value.line()


# --- payload models ------------------------------------------------------------------------

NEW_SPEC = "11111111-new"


def pinterest_flow(**extra: object) -> dict:
    flow = {
        "id": "flow-1",
        "name": "Loyalty members",
        "sandboxName": "prod",
        "state": "enabled",
        "etag": '"e1"',
        "flowSpec": {"id": models.PROFILE_DESTINATION_FLOW_SPEC, "version": "1.0"},
        "targetConnectionIds": ["tc-1"],
        "inheritedAttributes": {
            "properties": {"isDestinationFlow": True},
            "targetConnections": [
                {
                    "id": "tc-1",
                    "connectionSpec": {"id": NEW_SPEC, "version": "1.0"},
                    "baseConnection": {"id": "acc-1", "connectionSpec": {"id": NEW_SPEC}},
                }
            ],
        },
        "transformations": [
            {
                "name": "Other",
                "params": {
                    "segmentSelectors": {
                        "selectors": [{"type": "PLATFORM_SEGMENT", "value": {"id": "wrong"}}]
                    }
                },
            },
            {
                "name": "GeneralTransform",
                "params": {
                    "segmentSelectors": {
                        "selectors": [
                            {
                                "type": "PLATFORM_SEGMENT",
                                "value": {"id": "aud-1", "name": "Gold", "description": "d"},
                            },
                            {
                                "type": "PLATFORM_SEGMENT",
                                "value": {"id": "aud-2", "name": "Silver"},
                            },
                            {
                                "type": "PLATFORM_SEGMENT",
                                "value": {"id": "aud-1", "name": "Gold again"},
                            },
                            {"type": "PLATFORM_SEGMENT", "value": {"name": "no id"}},
                            "junk",
                        ]
                    }
                },
            },
        ],
        "somethingNew": {"kept": True},
    }
    flow.update(extra)
    return flow


def test_flow_from_payload():
    flow = models.flow_from_payload(pinterest_flow(), "new")
    assert flow.id == "flow-1" and flow.name == "Loyalty members"
    assert flow.sandbox == "prod" and flow.card == "new"
    assert flow.state == "enabled" and flow.enabled and flow.etag == '"e1"'
    assert flow.account_id == "acc-1" and flow.target_connection_id == "tc-1"
    assert flow.audiences == (Audience("aud-1", "Gold", "d"), Audience("aud-2", "Silver", ""))
    assert models.destination_spec_id(pinterest_flow()) == NEW_SPEC


def test_unknown_fields_are_kept():
    parsed = models.parse_flow(pinterest_flow())
    assert parsed.model_extra is not None and parsed.model_extra["somethingNew"] == {"kept": True}


def test_flow_with_odd_fields():
    raw = pinterest_flow(state="ENABLED", name=None, etag=None)
    del raw["sandboxName"]
    del raw["targetConnectionIds"]
    flow = models.flow_from_payload(raw, "legacy", sandbox="Dev")
    assert flow.sandbox == "dev" and flow.state == "enabled" and flow.name == "" and flow.etag == ""
    assert flow.target_connection_id == "tc-1"
    bare = models.flow_from_payload({"id": 12345}, "legacy")
    assert bare.id == "12345" and bare.sandbox == "prod" and bare.state == "disabled"
    assert bare.account_id is None and bare.audiences == ()


def test_the_models_read_odd_shapes():
    # Numbers and booleans where text is expected become text; a reference may be a bare id.
    flow = models.parse_flow(
        {
            "id": True,
            "name": 1.5,
            "state": 7,
            "targetConnectionIds": ["tc-1", 2],
            "inheritedAttributes": {
                "targetConnections": [{"baseConnection": 77, "connectionSpec": "spec-9"}]
            },
        }
    )
    assert (flow.id, flow.name, flow.state, flow.target_connection_ids) == (
        "true",
        "1.5",
        None,
        None,
    )
    target = flow.inherited_attributes.target_connections[0]
    assert target.base_connection.id == "77" and target.connection_spec.id == "spec-9"
    # An optional field of an unexpected shape reads as absent, down to a whole list.
    odd = models.parse_flow({"id": "f", "inheritedAttributes": {"targetConnections": ["x"]}})
    assert odd.inherited_attributes.target_connections is None
    assert models.parse_target_connection(
        {"id": 5, "baseConnectionId": 6, "params": []}
    ).model_dump(include={"id", "base_connection_id", "params"}) == {
        "id": "5",
        "base_connection_id": "6",
        "params": None,
    }
    with pytest.raises(ApiError, match=r"cannot read: id: Input should be a valid string"):
        models.parse_flow({"id": ["f"]})


def test_segment_selectors_path():
    assert (
        models.segment_selectors_path(pinterest_flow())
        == "/transformations/1/params/segmentSelectors/selectors"
    )
    first_only = {
        "id": "x",
        "transformations": [{"name": "X", "params": {"segmentSelectors": {"selectors": []}}}],
    }
    assert (
        models.segment_selectors_path(first_only)
        == "/transformations/0/params/segmentSelectors/selectors"
    )
    none = {
        "id": "x",
        "transformations": [
            {"name": "A", "params": {}},
            {"name": "GeneralTransform", "params": {}},
        ],
    }
    assert (
        models.segment_selectors_path(none)
        == "/transformations/1/params/segmentSelectors/selectors"
    )
    ops = models.add_audience_ops(pinterest_flow(), [Audience("n1", "New", "Read, not sent")])
    assert ops == [
        {
            "op": "add",
            "path": "/transformations/1/params/segmentSelectors/selectors/-",
            "value": {"type": "PLATFORM_SEGMENT", "value": {"id": "n1", "name": "New"}},
        }
    ]


@pytest.mark.parametrize("raw", [None, [], "flow", 7])
def test_a_payload_that_is_not_an_object_is_an_api_error(raw):
    for parse in (
        lambda r: models.flow_from_payload(r, "new"),
        lambda r: models.account_from_payload(r, "new"),
        lambda r: models.target_from_payload(r, "new"),
        models.audiences_of,
        models.segment_selectors_path,
        models.expires_at_of,
    ):
        with pytest.raises(ApiError):
            parse(raw)


def test_a_payload_without_id_is_an_api_error():
    with pytest.raises(ApiError, match="cannot read: id"):
        models.flow_from_payload({"name": "x"}, "new")


def test_account_from_payload():
    raw = {
        "id": "acc-1",
        "name": "Pinterest - ad account 549755885175",
        "connectionSpec": {"id": NEW_SPEC, "version": "1.0"},
        "auth": {
            "specName": models.AUTH_SPEC_NAME,
            "params": {"accessToken": "***", "expiresAt": "2024-03-01T12:00:00Z"},
        },
        "state": "enabled",
        "etag": '"a1"',
    }
    account = models.account_from_payload(raw, "new", sandbox="prod")
    assert account.id == "acc-1" and account.etag == '"a1"' and account.sandbox == "prod"
    assert account.expires_at == datetime(2024, 3, 1, 12, tzinfo=UTC)
    no_auth = models.account_from_payload({"id": "acc-2"}, "new")
    assert no_auth.expires_at is None and no_auth.state == "enabled" and no_auth.sandbox == "prod"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-03-01T12:00:00Z", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        ("2024-03-01T14:00:00+02:00", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        ("2024-03-01T12:00:00", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        ("2024-03-01T12:00:00.123456Z", datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)),
        (1709294400000, datetime(2024, 3, 1, 12, tzinfo=UTC)),
        ("1709294400000", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        (1709294400, datetime(2024, 3, 1, 12, tzinfo=UTC)),
        (None, None),
        ("", None),
        ("not a date", None),
        (True, None),
        ({"x": 1}, None),
    ],
)
def test_expires_at_of(value, expected):
    raw = {"id": "a", "auth": {"specName": models.AUTH_SPEC_NAME, "params": {"expiresAt": value}}}
    assert models.expires_at_of(raw) == expected


def test_expires_at_of_without_params():
    assert models.expires_at_of({"id": "a", "auth": None}) is None
    assert models.expires_at_of({"id": "a", "auth": {"params": "masked"}}) is None


def test_target_from_payload():
    raw = {
        "id": "tc-1",
        "name": "t",
        "baseConnectionId": "acc-1",
        "params": {"advertiser_id": 549755885175},
        "etag": '"t"',
    }
    target = models.target_from_payload(raw, "legacy", sandbox="prod")
    assert target.advertiser_id == "549755885175" and target.base_connection_id == "acc-1"
    # The schema's base connection as a string, the examples' as an object.
    as_string = models.target_from_payload(
        {"id": "t2", "inheritedAttributes": {"baseConnection": "acc-9"}}, "new"
    )
    as_object = models.target_from_payload(
        {"id": "t3", "inheritedAttributes": {"baseConnection": {"id": "acc-8"}}}, "new"
    )
    assert as_string.base_connection_id == "acc-9" and as_object.base_connection_id == "acc-8"
    assert as_string.advertiser_id is None


def test_auth_params_and_reconnect_ops():
    when = datetime(2024, 5, 1, 8, 30, tzinfo=UTC)
    assert models.auth_params("pina_a", "pinr_b", when) == {
        "accessToken": "pina_a",
        "refreshToken": "pinr_b",
        "expiresAt": "2024-05-01T08:30:00Z",
    }
    assert models.auth_params("pina_a", None, None) == {"accessToken": "pina_a"}
    naive = datetime(2024, 5, 1, 8, 30)
    assert models.auth_params("a", None, naive)["expiresAt"] == "2024-05-01T08:30:00Z"
    other_zone = datetime(2024, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    assert models.auth_params("a", None, other_zone)["expiresAt"] == "2024-05-01T10:30:00Z"
    ops = models.reconnect_ops("a", "r", when)
    assert ops == [
        {"op": "replace", "path": "/auth/params", "value": models.auth_params("a", "r", when)}
    ]
    # What auth_params writes, expires_at_of reads back.
    assert models.expires_at_of({"id": "x", "auth": {"params": ops[0]["value"]}}) == when


def test_run_status():
    run = models.parse_run(
        {
            "id": "r",
            "flowId": "f",
            "metrics": {
                "statusSummary": {"status": "Failed", "errors": [{"code": "E1", "message": "boom"}]}
            },
        }
    )
    assert run.status == "failed" and run.errors == ["E1: boom"]
    assert models.parse_run({"id": "r"}).status == ""


def test_threads_share_one_token(mock, client):
    import threading

    add_token(mock)
    mock.add(responses.GET, f"{BASE}/flows/f", json={"items": [{"id": "f"}]})
    errors: list[Exception] = []

    def worker() -> None:
        try:
            for _ in range(5):
                client.get("flows", "f", sandbox="prod")
        except Exception as exc:  # noqa: BLE001 - a thread must hand its failure back
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert client.token_fetches == 1
    assert client.http.stats.snapshot()["by_status"] == {200: 81}


def test_millisecond_expires_in_is_understood(mock, client, fake):
    add_token(mock, "ms", expires_in=86_399_000)
    add_token(mock, "next")
    client.token()
    fake.now += 80_000  # under a day: still cached, not 1000 days
    assert client.token() == "ms"
    fake.now += 10_000
    assert client.token() == "next"


UPDATED_MS = 1709294400000  # 2024-03-01T12:00:00Z


@pytest.mark.parametrize(
    ("params", "on_account", "expected", "rule"),
    [
        ({"accessToken": "***", "expiresAt": "2024-03-31T12:00:00Z"}, {}, 30, "expiresAt"),
        ({"accessToken": "***", "expiresAt": UPDATED_MS + 86400000}, {}, 1, "expiresAt"),
        (
            {"accessToken": "***", "expirationDate": "2024-03-11T12:00:00Z"},
            {},
            10,
            "expirationDate",
        ),
        ({"accessToken": "***"}, {"expiresAt": "2024-03-03T12:00:00Z"}, 2, "expiresAt"),
        ({"accessToken": "***", "expiresIn": 86400 * 5}, {}, 5, "updatedAt+expiresIn"),
        ({"accessToken": "***", "expiresIn": "432000"}, {}, 5, "updatedAt+expiresIn"),
        ({"accessToken": "***", "tokenType": "Bearer"}, {}, 30, "updatedAt+30d"),
        # no credentials, whatever else the account says
        ({}, {"expiresAt": "2099-01-01T00:00:00Z"}, None, "none"),
        ({"accessToken": "", "expiresAt": "2099-01-01T00:00:00Z"}, {}, None, "none"),
        ({"access_token": None}, {}, None, "none"),
        # unreadable values never crash: the next rule reads the expiry
        ({"accessToken": "***", "expiresIn": "inf"}, {}, 30, "updatedAt+30d"),
        ({"accessToken": "***", "expiresIn": "NaN"}, {}, 30, "updatedAt+30d"),
        ({"accessToken": "***", "expiresIn": 1e12}, {}, 30, "updatedAt+30d"),
        ({"accessToken": "***", "expiresAt": "²"}, {}, 30, "updatedAt+30d"),
        ({"accessToken": "***", "expiresAt": 10**400}, {}, 30, "updatedAt+30d"),
        ({"accessToken": "***", "expiresAt": -(10**20)}, {}, 30, "updatedAt+30d"),
    ],
)
def test_credential_expiry_reads_every_shape_first_match_wins(
    params: dict, on_account: dict, expected: int | None, rule: str
) -> None:
    raw = {"id": "a", "updatedAt": UPDATED_MS, "auth": {"params": params}, **on_account}
    expiry = models.credential_expiry(raw)
    assert expiry.rule == rule
    updated = datetime(2024, 3, 1, 12, tzinfo=UTC)
    assert expiry.at == (None if expected is None else updated + timedelta(days=expected))
    account = models.account_from_payload(raw, "new")
    assert (account.expires_at, account.expiry_rule) == (expiry.at, expiry.rule)


def test_a_next_link_that_writes_the_default_port_is_followed(mock, client):
    # Adobe's examples write hosts as platform.adobe.io:443: the same host as without it.
    add_token(mock)
    mock.add(
        responses.GET,
        f"{BASE}/flows",
        json={
            "items": [{"id": "1"}],
            "_links": {"next": {"href": f"{PLATFORM}:443{FLOWSERVICE_PATH}/flows?start=2"}},
        },
    )
    mock.add(responses.GET, f"{BASE}/flows", json={"items": [{"id": "2"}]})
    assert [f["id"] for f in client.list("flows", sandbox="prod")] == ["1", "2"]
