"""Every published Adobe example of the operations pinmigrate uses, through the client and models.

The examples come from Adobe's own OpenAPI files, vendored as subsets in ``tests/data`` (see
its README). Where the Flow
Service file publishes no example for an operation, an instance is built from the schema's
per-field examples instead: the schemas disagree with the docs in places (a flow spec as a
string, a bare object instead of ``{"items": [...]}``), and the client must survive those
too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses

from pinmigrate import models
from pinmigrate.adobe import FLOWSERVICE, AdobeClient
from pinmigrate.errors import ApiError, AuthError, NotFoundError, StaleObjectError
from pinmigrate.http import HttpClient
from pinmigrate.settings import AdobeSettings, Settings

SPECS = Path(__file__).resolve().parent / "data"
FILES = ("adobe-destinations.yaml", "adobe-flow-service.yaml")
#: references Adobe's files publish that lead nowhere: (file, $ref)
BROKEN_REFS = {("adobe-destinations.yaml", "#/components/examples/Patch_Connection_Response")}
PLATFORM = "https://platform.example.test"
BASE = PLATFORM + FLOWSERVICE
IMS = "https://ims.example.test"
OBJECT_ID = "0a1b2c3d-0000-4000-8000-000000000001"

#: (method, path with the id as {}) -> resource name, for the operations the client uses
USED = {
    ("get", "/flows"): "flows",
    ("get", "/flows/{}"): "flows",
    ("patch", "/flows/{}"): "flows",
    ("post", "/flows/{}/action"): "flows",
    ("get", "/connections"): "connections",
    ("get", "/connections/{}"): "connections",
    ("patch", "/connections/{}"): "connections",
    ("get", "/targetConnections"): "targetConnections",
    ("get", "/targetConnections/{}"): "targetConnections",
    ("get", "/connectionSpecs"): "connectionSpecs",
    ("get", "/connectionSpecs/{}"): "connectionSpecs",
    ("get", "/runs"): "runs",
}


def _yaml(name: str) -> dict[str, Any]:
    import yaml

    path = SPECS / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; tests/data/README.md says where it comes from")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open(encoding="utf-8") as handle:
        data: dict[str, Any] = yaml.load(handle, Loader=loader)
    return data


def _resolve(doc: dict[str, Any], node: Any) -> Any:
    """Follow ``$ref`` chains; None when a reference points nowhere."""
    for _ in range(20):
        if not (isinstance(node, dict) and "$ref" in node):
            return node
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            if not isinstance(target, dict) or part not in target:
                return None
            target = target[part]
        node = target
    return None


def _from_schema(doc: dict[str, Any], schema: Any, depth: int = 0, stack: tuple = ()) -> Any:
    """An instance assembled from a schema's per-field ``example`` values."""
    ref = schema.get("$ref") if isinstance(schema, dict) else None
    if depth > 10 or (ref and ref in stack):
        return None
    node = _resolve(doc, schema)
    if not isinstance(node, dict):
        return None
    stack = (*stack, ref) if ref else stack
    if "example" in node:
        return node["example"]
    if "allOf" in node:
        merged: dict[str, Any] = {}
        for part in node["allOf"]:
            value = _from_schema(doc, part, depth + 1, stack)
            if isinstance(value, dict):
                merged.update(value)
        return merged
    if node.get("type") == "array":
        item = _from_schema(doc, node.get("items", {}), depth + 1, stack)
        return [] if item is None else [item]
    if node.get("type") == "object" or "properties" in node:
        built = {}
        for key, sub in (node.get("properties") or {}).items():
            value = _from_schema(doc, sub, depth + 1, stack)
            if value is not None:
                built[key] = value
        return built
    return None


def _normalise(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path.strip().rstrip("/"))


def collect(broken: set[tuple[str, str]]) -> list[Any]:
    """A case per published example (or schema-built instance); adds dangling refs to ``broken``."""
    cases: list[Any] = []
    for name in FILES:
        doc = _yaml(name)
        short = name.removeprefix("adobe-").removesuffix(".yaml")
        for path, operations in doc["paths"].items():
            for method, operation in operations.items():
                key = (method, _normalise(path))
                if key not in USED or not isinstance(operation, dict):
                    continue
                for status, answer in operation.get("responses", {}).items():
                    answer = _resolve(doc, answer) or {}
                    content = (answer.get("content") or {}).get("application/json") or {}
                    found = False
                    if "example" in content:
                        found = True
                        cases.append(_case(short, key, int(status), "example", content["example"]))
                    for label, example in (content.get("examples") or {}).items():
                        found = True
                        resolved = _resolve(doc, example)
                        if resolved is None:
                            broken.add((name, example.get("$ref")))
                            continue
                        cases.append(_case(short, key, int(status), label, resolved.get("value")))
                    if not found and "schema" in content and status.startswith("2"):
                        built = _from_schema(doc, content["schema"])
                        cases.append(_case(short, key, int(status), "from-schema", built))
    return cases


def _case(short: str, key: tuple[str, str], status: int, label: str, body: Any) -> Any:
    method, path = key
    return pytest.param((key, status, body), id=f"{short}-{method.upper()}-{path}-{status}-{label}")


BROKEN: set[tuple[str, str]] = set()
CASES = collect(BROKEN)


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(
            responses.POST,
            f"{IMS}/ims/token/v3",
            json={"access_token": "example-token", "expires_in": 86399},
        )
        yield rsps


@pytest.fixture
def client(tmp_path: Path) -> AdobeClient:
    settings = Settings(
        adobe=AdobeSettings(
            org_id="EXAMPLE@AdobeOrg",
            client_id="cid",
            client_secret="example-secret",  # type: ignore[arg-type]
            ims_url=IMS,
            platform_url=PLATFORM,
        ),
        state_dir=tmp_path,
    )
    http = HttpClient(service="adobe", sleep=lambda _s: None, clock=lambda: 0.0)
    return AdobeClient(settings, http=http)


def _url(path: str) -> str:
    return BASE + path.replace("{}", OBJECT_ID)


def _message_of(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    for key in ("errorMessage", "message", "title"):
        if body.get(key):
            return " ".join(str(body[key]).split())[:80]
    return ""


def _check_items(resource: str, items: list[dict[str, Any]]) -> None:
    """Each item reads into the model and inventory value of its kind."""
    for raw in items:
        if resource == "flows":
            flow = models.flow_from_payload(raw, "legacy")
            assert flow.id == str(raw["id"])
            assert flow.state in ("enabled", "disabled") or flow.state == str(raw["state"]).lower()
            assert flow.etag == raw.get("etag", "")
            assert {a.id for a in flow.audiences} <= {
                str(s["value"]["id"])
                for t in raw.get("transformations", [])
                for s in (t.get("params", {}).get("segmentSelectors", {}).get("selectors", []))
            }
            path = models.segment_selectors_path(raw)
            assert re.fullmatch(r"/transformations/\d+/params/segmentSelectors/selectors", path)
        elif resource == "connections":
            account = models.account_from_payload(raw, "new")
            assert account.id == str(raw["id"])
            models.expires_at_of(raw)
        elif resource == "targetConnections":
            target = models.target_from_payload(raw, "new")
            assert target.id == str(raw["id"])
            base = raw.get("baseConnectionId")
            if base:
                assert target.base_connection_id == base
        elif resource == "connectionSpecs":
            spec = models.parse_connection_spec(raw)
            assert spec.id == str(raw["id"])
        elif resource == "runs":
            run = models.parse_run(raw)
            assert run.status == run.status.lower()


@pytest.mark.parametrize("case", CASES)
def test_published_example(case: Any, mock: responses.RequestsMock, client: AdobeClient) -> None:
    (method, path), status, body = case
    resource = USED[(method, path)]
    url = _url(path)
    mock.add(
        method.upper(), url, status=status, body=json.dumps(body), content_type="application/json"
    )
    if isinstance(body, dict):
        href = (body.get("_links") or {}).get("next", {}).get("href")
        if href:
            # The example's next link leads to a last, empty page.
            mock.add(responses.GET, client._resolve_next(href, resource), json={"items": []})

    def call() -> Any:
        if method == "get" and path.endswith("{}"):
            return client.get(resource, OBJECT_ID, sandbox="prod")
        if method == "get":
            return list(client.list(resource, sandbox="prod"))
        if method == "patch":
            return client.patch(resource, OBJECT_ID, [], etag='"e"', sandbox="prod")  # type: ignore[arg-type]
        return client.flow_action(OBJECT_ID, "enable", sandbox="prod")

    if status >= 400:
        expected: type[Exception] = {
            401: AuthError,
            403: AuthError,
            404: NotFoundError,
            412: StaleObjectError,
        }.get(status, ApiError)
        with pytest.raises(expected) as info:
            call()
        line = info.value.line()  # type: ignore[attr-defined]
        assert "\n" not in line and "Traceback" not in line
        assert _message_of(body)[:40] in " ".join(line.split())
        return

    result = call()
    if method == "get" and path.endswith("{}"):
        wrapped = isinstance(body, dict) and isinstance(body.get("items"), list)
        expected_item = body["items"][0] if wrapped else body
        assert result == expected_item
        _check_items(resource, [result])
    elif method == "get":
        assert result == body.get("items", [])
        _check_items(resource, result)
    elif method == "patch":
        assert result == body.get("etag")
        assert result and result.startswith('"')
    else:
        assert result.get("etag") == body.get("etag")


def test_every_used_operation_has_at_least_one_example() -> None:
    covered = {case.values[0][0] for case in CASES}
    assert covered == set(USED)


def test_only_the_known_example_references_dangle() -> None:
    """A reference that newly leads nowhere would drop its example without a word."""
    assert BROKEN == BROKEN_REFS
