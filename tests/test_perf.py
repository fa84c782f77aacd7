"""The performance changes keep their behaviour: quick payload path, environment read once,
lazy log masking, pool width, chunked fingerprint, relaxed garbage collection, the parts of
a flow apply keeps, requests prepared without requests' generic merges."""

from __future__ import annotations

import copy
import gc
import hashlib
import json
import logging
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loopback import LoopbackServer

from pinmigrate import http as http_module
from pinmigrate import models
from pinmigrate.actions import EnableFlow
from pinmigrate.errors import ApiError
from pinmigrate.http import MAX_CONCURRENCY, POOL_SIZE, EnvironmentOnceSession, HttpClient
from pinmigrate.inventory import Audience
from pinmigrate.plan import Pair, Plan

LEGACY = "cc0f92c9-a844-5932-9b87-1209d948859b"

# --- the quick payload path gives what the models give ----------------------------------------


def emulator_flow() -> dict[str, Any]:
    """A flow as ``GET /flows`` answers it (the emulator's shape, which follows Adobe's)."""
    return {
        "id": "5c984169-2287-54da-83a2-c04ef0e3e2e1",
        "sandboxName": "prod",
        "etag": '"00000044-0000-0200-0000-4edbdb58316d"',
        "name": "Scale flow 000000",
        "state": "enabled",
        "flowSpec": {"id": "71471eba-b620-49e4-90fd-23f1fa0174d8", "version": "1.0"},
        "sourceConnectionIds": ["674a3121"],
        "targetConnectionIds": ["f44555d8"],
        "inheritedAttributes": {
            "properties": {"isDestinationFlow": True},
            "sourceConnections": [{"id": "674a3121", "connectionSpec": {"id": "8a9c"}}],
            "targetConnections": [
                {
                    "id": "f44555d8",
                    "connectionSpec": {"id": LEGACY, "version": "1.0"},
                    "baseConnection": {"id": "0c566d87", "connectionSpec": {"id": LEGACY}},
                    "params": {"advertiser_id": "549755885175"},
                }
            ],
        },
        "transformations": [
            {
                "name": "GeneralTransform",
                "params": {
                    "segmentSelectors": {
                        "selectors": [
                            {"type": "PLATFORM_SEGMENT", "value": {"id": "a1", "name": "A"}},
                            {"type": "PLATFORM_SEGMENT", "value": {"id": "a2", "name": "B"}},
                        ]
                    }
                },
            }
        ],
    }


def emulator_target() -> dict[str, Any]:
    return {
        "id": "f44555d8",
        "sandboxName": "prod",
        "etag": '"1"',
        "name": "Scale flow 000000 target",
        "baseConnectionId": "0c566d87",
        "state": "enabled",
        "connectionSpec": {"id": LEGACY, "version": "1.0"},
        "params": {"advertiser_id": "549755885175"},
        "inheritedAttributes": {
            "baseConnection": {"id": "0c566d87", "connectionSpec": {"id": LEGACY}}
        },
    }


def emulator_account() -> dict[str, Any]:
    return {
        "id": "0c566d87",
        "sandboxName": "prod",
        "etag": '"2"',
        "name": "Pinterest - ad account 549755885175",
        "connectionSpec": {"id": LEGACY, "version": "1.0"},
        "auth": {"specName": "OAuth2 Authorization Code", "params": {"expiresAt": "2030-01-01"}},
        "state": "enabled",
    }


def test_plain_payloads_take_the_quick_path():
    # If these fell back to the models, discovery would be three times slower, silently.
    assert models._flow_from_dict(emulator_flow(), "legacy", None) is not None
    assert models._target_from_dict(emulator_target(), "legacy", None) is not None
    assert models._account_from_dict(emulator_account(), "new", None) is not None


def test_quick_path_reads_what_the_models_read():
    flow = models._flow_from_dict(emulator_flow(), "legacy", "Prod")
    assert flow is not None
    assert (flow.id, flow.sandbox, flow.state, flow.account_id) == (
        "5c984169-2287-54da-83a2-c04ef0e3e2e1",
        "prod",
        "enabled",
        "0c566d87",
    )
    assert flow.target_connection_id == "f44555d8" and flow.advertiser_id == "549755885175"
    assert [a.id for a in flow.audiences] == ["a1", "a2"]


#: Values a field may take in the wild: the plain ones and every odd one the models tolerate.
ODD = st.one_of(
    st.none(),
    st.sampled_from(["", "x", "Enabled", " disabled ", "0", "tc-9"]),
    st.integers(-2, 10**12),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.just([]),
    st.just(["tc-1", 2]),
    st.just(["tc-2"]),
    st.just({}),
    st.just({"id": "ref-1"}),
    st.just({"id": 77}),
    st.just({"advertiser_id": 549}),
    st.just([{"id": "t"}, "bare"]),
    st.just([{"baseConnection": "acc-9", "params": {"advertiser_id": ""}}]),
)

FLOW_PATHS = [
    ("id",),
    ("name",),
    ("sandboxName",),
    ("sandbox_name",),
    ("state",),
    ("etag",),
    ("targetConnectionIds",),
    ("target_connection_ids",),
    ("inheritedAttributes",),
    ("inherited_attributes",),
    ("inheritedAttributes", "targetConnections"),
    ("inheritedAttributes", "target_connections"),
    ("inheritedAttributes", "targetConnections", 0),
    ("inheritedAttributes", "targetConnections", 0, "id"),
    ("inheritedAttributes", "targetConnections", 0, "baseConnection"),
    ("inheritedAttributes", "targetConnections", 0, "base_connection"),
    ("inheritedAttributes", "targetConnections", 0, "baseConnection", "id"),
    ("inheritedAttributes", "targetConnections", 0, "params"),
    ("inheritedAttributes", "targetConnections", 0, "params", "advertiser_id"),
]
TARGET_PATHS = [
    ("id",),
    ("name",),
    ("sandboxName",),
    ("sandbox_name",),
    ("etag",),
    ("baseConnectionId",),
    ("base_connection_id",),
    ("params",),
    ("params", "advertiser_id"),
    ("inheritedAttributes",),
    ("inheritedAttributes", "baseConnection"),
    ("inheritedAttributes", "base_connection"),
    ("inheritedAttributes", "baseConnection", "id"),
]
ACCOUNT_PATHS = [
    ("id",),
    ("name",),
    ("sandboxName",),
    ("sandbox_name",),
    ("state",),
    ("etag",),
    ("auth",),
    ("auth", "params", "expiresAt"),
]


class Rename(str):
    """A change that moves a field to its snake_case name (which the models accept too)."""


def _set(raw: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A copy of raw with the value at path replaced, removed (``...``) or renamed."""
    out = copy.deepcopy(raw)
    node: Any = out
    for step in path[:-1]:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return out
    if isinstance(node, dict):
        if isinstance(value, Rename):
            if path[-1] in node:
                node[str(value)] = node.pop(path[-1])
        elif value is ...:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = copy.deepcopy(value)
    elif isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node):
        node[path[-1]] = copy.deepcopy(value)
    return out


def _outcome(parse: Any, raw: Any) -> Any:
    try:
        return ("ok", parse(raw))
    except ApiError as exc:
        return ("error", str(exc))


def _both_ways(monkeypatch: pytest.MonkeyPatch, name: str, parse: Any, raw: Any) -> None:
    quick = _outcome(parse, raw)
    with monkeypatch.context() as patch:
        patch.setattr(models, name, lambda *args: None)
        thorough = _outcome(parse, raw)
    assert quick == thorough, raw


def _mutations(paths: list[tuple[Any, ...]]) -> Any:
    renames = [
        (path, Rename(path[-1]))
        for path in paths
        if isinstance(path[-1], str) and any(c.isupper() for c in path[-1])
    ]
    change = st.one_of(
        st.tuples(st.sampled_from(paths), st.one_of(ODD, st.just(...))),
        st.sampled_from(renames).map(lambda r: (r[0], Rename(_snake_case(r[1])))),
    )
    return st.lists(change, min_size=1, max_size=4)


def _snake_case(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


@pytest.mark.slow
@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(changes=_mutations(FLOW_PATHS), sandbox=st.sampled_from([None, "Dev"]))
def test_flows_read_alike_both_ways(monkeypatch, changes, sandbox):
    raw = emulator_flow()
    for path, value in changes:
        raw = _set(raw, path, value)
    _both_ways(
        monkeypatch,
        "_flow_from_dict",
        lambda r: models.flow_from_payload(r, "legacy", sandbox=sandbox),
        raw,
    )


@pytest.mark.slow
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    changes=_mutations(TARGET_PATHS),
    sandbox=st.sampled_from([None, "stage"]),
    inherited_only=st.booleans(),
)
def test_target_connections_read_alike_both_ways(monkeypatch, changes, sandbox, inherited_only):
    raw = emulator_target()
    if inherited_only:
        # The base connection is then read from inheritedAttributes.
        del raw["baseConnectionId"]
    for path, value in changes:
        raw = _set(raw, path, value)
    _both_ways(
        monkeypatch,
        "_target_from_dict",
        lambda r: models.target_from_payload(r, "new", sandbox=sandbox),
        raw,
    )


@pytest.mark.slow
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(changes=_mutations(ACCOUNT_PATHS), sandbox=st.sampled_from([None, "prod"]))
def test_accounts_read_alike_both_ways(monkeypatch, changes, sandbox):
    raw = emulator_account()
    for path, value in changes:
        raw = _set(raw, path, value)
    _both_ways(
        monkeypatch,
        "_account_from_dict",
        lambda r: models.account_from_payload(r, "new", sandbox=sandbox),
        raw,
    )


# --- apply keeps only the parts of a flow payload it reads --------------------------------------

NEW = "3d2a1f7e-0000-4c00-8000-00000000new1"
KEPT_PATHS = [
    *FLOW_PATHS,
    ("lastRunDetails",),
    ("lastRunDetails", "state"),
    ("inheritedAttributes", "targetConnections", 0, "connectionSpec"),
    ("inheritedAttributes", "targetConnections", 0, "connectionSpec", "id"),
    ("inheritedAttributes", "targetConnections", 1),
    ("transformations",),
    ("transformations", 0),
    ("transformations", 0, "name"),
    ("transformations", 0, "params"),
    ("transformations", 0, "params", "segmentSelectors"),
    ("transformations", 0, "params", "segmentSelectors", "selectors"),
    ("transformations", 1),
]


def _what_apply_reads(raw: Any) -> Any:
    """What apply looks at in a flow's payload after reading its Flow: the card (target
    check), where audiences go (add_audiences), the etag and the last run (--wait-runs)."""
    from pinmigrate.discovery import card_of_flow

    added = (Audience("a9", "Added"),)
    return (
        card_of_flow(raw, {LEGACY: "legacy", NEW: "new"}),
        _outcome(lambda r: models.add_audience_ops(r, added), raw),
        raw.get("etag"),
        raw.get("lastRunDetails"),
    )


def _flow_with_more() -> dict[str, Any]:
    raw = emulator_flow()
    raw["lastRunDetails"] = {"id": "run-1", "state": "success", "completedAtUTC": 1685581205000}
    raw["lastOperation"] = {"status": {"value": "completed", "errors": []}, "ops": []}
    raw["transformations"][0]["params"]["profileSelectors"] = {
        "selectors": [{"type": "JSON_PATH", "value": {"path": "personalEmail.address"}}]
    }
    # An audience list outside the GeneralTransform: the name says which one apply adds to.
    other = {"name": "Other", "params": {"segmentSelectors": {"selectors": []}, "x": {}}}
    raw["transformations"].insert(0, other)
    return raw


def test_apply_keeps_the_parts_of_a_flow_it_reads_and_no_more():
    from pinmigrate.apply.world import FlowView, kept

    raw = _flow_with_more()
    view = FlowView.read(raw, "legacy", sandbox="prod")
    assert view.raw == kept(raw)
    assert view.flow == models.flow_from_payload(raw, "legacy", sandbox="prod")
    assert _what_apply_reads(view.raw) == _what_apply_reads(raw)
    # The GeneralTransform's list, not the first one.
    assert models.add_audience_ops(view.raw, (Audience("a9", "Added"),))[0]["path"] == (
        "/transformations/1/params/segmentSelectors/selectors/-"
    )
    text = json.dumps(view.raw)
    for dropped in ("sourceConnections", "profileSelectors", "lastOperation", "baseConnection"):
        assert dropped not in text, dropped
    assert len(text) < len(json.dumps(raw)) / 2


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(changes=_mutations(KEPT_PATHS))
def test_what_apply_keeps_of_a_flow_reads_as_the_whole_payload(changes):
    from pinmigrate.apply.world import kept

    raw = _flow_with_more()
    raw["inheritedAttributes"]["targetConnections"].append(
        {"id": "t2", "connectionSpec": {"id": NEW}}
    )
    for path, value in changes:
        raw = _set(raw, path, value)
    assert _what_apply_reads(kept(raw)) == _what_apply_reads(raw), raw


# --- the proxy and CA-bundle environment, read once -------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    """Answers every request with what it saw: the request target and the headers."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = json.dumps(
            {"server": self.server.name, "target": self.path, "headers": dict(self.headers)}  # type: ignore[attr-defined]
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def servers() -> Iterator[dict[str, str]]:
    """Two loopback servers: one plays a forward proxy, the other the API itself."""
    started = {}
    for name in ("proxy", "direct"):
        started[name] = LoopbackServer(_Recorder, name=name)
        started[name].server.name = name  # type: ignore[attr-defined]
    try:
        yield {name: s.url for name, s in started.items()}
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    return monkeypatch


def test_http_proxy_from_the_environment_is_used(servers, proxy_env):
    proxy_env.setenv("HTTP_PROXY", servers["proxy"])
    client = HttpClient(service="test")
    seen = client.request("GET", servers["direct"] + "/thing?x=1").json()
    # A forward proxy is asked for the absolute URL.
    assert seen["server"] == "proxy"
    assert seen["target"] == servers["direct"] + "/thing?x=1"


def test_no_proxy_from_the_environment_is_honoured(servers, proxy_env):
    proxy_env.setenv("HTTP_PROXY", servers["proxy"])
    proxy_env.setenv("NO_PROXY", "localhost,127.0.0.1")
    client = HttpClient(service="test")
    seen = client.request("GET", servers["direct"] + "/thing").json()
    assert seen["server"] == "direct" and seen["target"] == "/thing"


def test_https_proxy_and_ca_bundle_from_the_environment(proxy_env, tmp_path):
    bundle = tmp_path / "corporate-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    proxy_env.setenv("HTTPS_PROXY", "http://proxy.corp.test:3128")
    proxy_env.setenv("NO_PROXY", "ims.internal.test")
    proxy_env.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    session = HttpClient(service="test").session
    assert isinstance(session, EnvironmentOnceSession) and session.trust_env is False
    via = session.merge_environment_settings(
        "https://platform.adobe.io/data/x", {}, None, None, None
    )
    assert via["proxies"]["https"] == "http://proxy.corp.test:3128"
    assert via["verify"] == str(bundle)
    direct = session.merge_environment_settings(
        "https://ims.internal.test/ims/token/v3", {}, None, None, None
    )
    assert "https" not in direct["proxies"]
    # A caller's explicit choice still wins over the environment.
    assert (
        session.merge_environment_settings("https://x.test/", {}, None, False, None)["verify"]
        is False
    )


def test_the_environment_is_read_once_per_host(servers, proxy_env):
    calls: list[str] = []
    real = requests.utils.get_environ_proxies

    def counting(url: str, no_proxy: Any = None) -> Any:
        calls.append(url)
        return real(url, no_proxy=no_proxy)

    proxy_env.setattr(requests.utils, "get_environ_proxies", counting)
    client = HttpClient(service="test")
    for n in range(5):
        assert client.request("GET", f"{servers['direct']}/page/{n}").status_code == 200
    assert len(calls) == 1


def test_netrc_is_not_consulted(servers, proxy_env, tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password hunter22\n")
    netrc.chmod(0o600)
    proxy_env.setenv("NETRC", str(netrc))
    client = HttpClient(service="test")
    seen = client.request("GET", servers["direct"] + "/x", headers={"Authorization": "Bearer t"})
    assert seen.json()["headers"].get("Authorization") == "Bearer t"


def test_a_callers_session_reads_the_environment_itself(servers, proxy_env):
    proxy_env.setenv("HTTP_PROXY", servers["proxy"])
    client = HttpClient(service="test", session=requests.Session())
    assert client.request("GET", servers["direct"] + "/y").json()["server"] == "proxy"


# --- requests are prepared with plain dict merges ----------------------------------------------

_PREPARED_CASES = [
    {"method": "get", "url": "http://api.test/flows", "params": {"property": "a==b", "x": None}},
    {
        "method": "POST",
        "url": "http://api.test/flows/f1/action",
        "params": {"op": "enable"},
        "headers": {"If-Match": '"e1"', "Accept": "application/json", "X-Drop": None},
    },
    {"method": "PATCH", "url": "http://api.test/flows/f1", "json": [{"op": "add", "path": "/a"}]},
    {"method": "POST", "url": "http://ims.test/token", "data": {"grant_type": "x", "scope": "a,b"}},
    {"method": "POST", "url": "http://pin.test/oauth/token", "auth": ("app", "pw"), "data": "a=1"},
    {"method": "GET", "url": "http://api.test/x?y=1", "params": [("z", "2"), ("z", "3")]},
    {"method": "GET", "url": "http://api.test/x", "params": "a=1&b=%20"},
    {"method": "GET", "url": "http://api.test/x", "params": {"p": ["1", "2"], "q": ""}},
    {"method": "GET", "url": "http://api.test/x?a=1", "params": {"é/&=": "v w+é", "~": "ü"}},
    {"method": "GET", "url": "http://api.test/x", "params": {"a": "1", "n": 1}},
    {"method": "GET", "url": "http://api.test/x", "params": [("a", None), ("b", "x&y"), ("c", "")]},
    {"method": "GET", "url": "http://api.test/x", "params": [("a", "1"), ["b", "2"]]},
    {"method": "GET", "url": "http://api.test/x", "params": {}},
    {"method": "GET", "url": "http://api.test/x", "headers": {"User-Agent": None}},
    {"method": "GET", "url": "http://api.test/x", "cookies": {"c": "1"}},
]


def _prepared_as_sent(session: requests.Session, case: dict[str, Any]) -> Any:
    prepared = session.prepare_request(requests.Request(**case))
    settings = session.merge_environment_settings(prepared.url, {}, True, None, None)
    return (
        prepared.method,
        prepared.url,
        dict(prepared.headers),
        prepared.body,
        prepared.hooks,
        {k: v for k, v in settings.items() if k != "proxies"},
        dict(settings["proxies"]),
    )


@pytest.mark.parametrize("session_state", ["plain", "session header", "cookie set", "hook"])
def test_requests_are_prepared_as_requests_prepares_them(proxy_env, session_state):
    ours = EnvironmentOnceSession()
    theirs = requests.Session()
    theirs.trust_env = False

    def hook(response: Any, *args: Any, **kwargs: Any) -> Any:
        return response

    for session in (ours, theirs):
        if session_state == "session header":
            session.headers["X-Session"] = "1"
        elif session_state == "cookie set":
            # A cookie a server set is sent back, as requests does.
            session.cookies.set("sid", "abc", domain="api.test")
        elif session_state == "hook":
            session.hooks["response"].append(hook)
    for case in _PREPARED_CASES:
        assert _prepared_as_sent(ours, case) == _prepared_as_sent(theirs, case), case


def test_plain_requests_skip_requests_generic_merge_and_encoding(servers, proxy_env, monkeypatch):
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("requests' generic prepare_request was used")

    monkeypatch.setattr(requests.Session, "prepare_request", refused)
    encode = requests.models.RequestEncodingMixin._encode_params

    def encoded_already(data: Any) -> Any:
        # The query comes encoded: requests' generic encoding is not run.
        assert isinstance(data, str), data
        return encode(data)

    monkeypatch.setattr(
        requests.models.RequestEncodingMixin, "_encode_params", staticmethod(encoded_already)
    )
    client = HttpClient(service="test")
    seen = client.request(
        "GET",
        servers["direct"] + "/flows/f1/action",
        params={"op": "enable"},
        headers={"If-Match": '"e1"'},
    ).json()
    assert seen["target"] == "/flows/f1/action?op=enable"
    assert seen["headers"]["If-Match"] == '"e1"'
    # A list page's query: repeated names, as pairs.
    pairs = [("property", "a==1"), ("property", "b==2")]
    seen = client.request("GET", servers["direct"] + "/flows", params=pairs).json()
    assert seen["target"] == "/flows?property=a%3D%3D1&property=b%3D%3D2"


# --- debug lines are masked only when written ------------------------------------------------


def test_urls_are_not_masked_when_debug_is_off(servers, proxy_env, caplog):
    masked: list[str] = []
    real = http_module.describe_url

    def counting(url: str) -> str:
        masked.append(url)
        return real(url)

    proxy_env.setattr(http_module, "describe_url", counting)
    client = HttpClient(service="test")
    with caplog.at_level(logging.INFO, logger="pinmigrate.http"):
        client.request("GET", servers["direct"] + "/z?access_token=abcdef123")
    assert masked == []
    with caplog.at_level(logging.DEBUG, logger="pinmigrate.http"):
        client.request("GET", servers["direct"] + "/z?access_token=abcdef123")
    assert masked
    assert "abcdef123" not in caplog.text and "/z?access_token=***" in caplog.text


# --- the pool is as wide as apply can go ------------------------------------------------------


def test_the_pool_follows_the_widest_apply():
    from pinmigrate.commands.apply import command

    widest = next(p for p in command.params if p.name == "concurrency").type.max  # type: ignore[attr-defined]
    assert widest <= MAX_CONCURRENCY and POOL_SIZE >= 2 * MAX_CONCURRENCY
    adapter = HttpClient(service="test").session.get_adapter("https://platform.adobe.io/")
    assert adapter._pool_maxsize >= POOL_SIZE  # type: ignore[attr-defined]


# --- the fingerprint is still sha256 of the canonical JSON ------------------------------------


@pytest.mark.parametrize("count", [0, 1, 999, 1000, 1001, 2501])
def test_chunked_fingerprint_is_the_canonical_one(count):
    actions = [
        EnableFlow(
            id=f"enable_flow:prod:f{i}",
            sandbox="prod",
            target_id=f"f{i}",
            target_name=f"Flow ü {i}",
            precondition={"state": "disabled", "legacy_state": "enabled", "legacy_flow_id": "l"},
            details={"account_id": "z é", "advertiser_id": None},
            depends_on=[f"reconnect_account:prod:a{i % 3}"],
        )
        for i in range(count)
    ]
    pairs = [
        Pair(
            sandbox="prod",
            legacy_flow_id=f"l{i}",
            legacy_flow_name="L",
            new_flow_id=None,
            legacy_state="x",
            status="s",
        )
        for i in range(count // 2)
    ]
    plan = Plan(org_id="o", sandboxes=["prod"], actions=actions, pairs=pairs, warnings=["w"])
    canonical = json.dumps(plan.content(), sort_keys=True, separators=(",", ":"))
    expected = "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert plan.compute_fingerprint() == expected


# --- garbage collection -----------------------------------------------------------------------


def test_the_entry_point_relaxes_garbage_collection(monkeypatch):
    from pinmigrate import cli

    before = gc.get_threshold()
    seen: list[tuple[int, ...]] = []

    def run(args: list[str]) -> int:
        seen.append(gc.get_threshold())
        return 0

    monkeypatch.setattr(cli, "run", run)
    try:
        with pytest.raises(SystemExit) as done:
            cli.main(["--version"])
        assert done.value.code == 0
        assert seen and seen[0][0] == cli.GC_THRESHOLD > before[0]
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
