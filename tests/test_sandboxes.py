"""A misspelt sandbox is named as one that does not exist, with the org's sandboxes listed
(issue 13 item 5): the Sandbox Management API's list (api-notes.md §3b), read only when a
sandbox read was refused; a sandbox that exists keeps the permission advice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from test_adobe_client import ORG, PLATFORM, add_token, make_settings

from pinmigrate.adobe import SANDBOXES, AdobeClient
from pinmigrate.emulator import ORG_ID, Emulator
from pinmigrate.errors import ApiError, AuthError, ConfigError
from pinmigrate.http import HttpClient
from pinmigrate.settings import load_settings

#: What every emulator scenario lists: its own sandboxes, then one inactive and one active
#: sandbox its credential cannot read.
DEMO_LISTED = [
    ("prod", "active"),
    ("dev", "active"),
    ("archive", "inactive"),
    ("restricted", "active"),
]
LISTED_LINE = "its sandboxes are: prod, dev, archive (inactive), restricted"
LIST_URL = PLATFORM + SANDBOXES


def _client(env: dict[str, str], tmp_path: Path) -> AdobeClient:
    return AdobeClient(load_settings(env={**env, "PINMIGRATE_STATE_DIR": str(tmp_path)}))


def _sandbox_calls(emulator: Emulator) -> int:
    return int(emulator.requests()["by_endpoint"].get("GET /sandboxes", 0))


# --- the list, against the emulator ------------------------------------------------------------


@pytest.mark.parametrize("links", ["next", "templated", "none"])
def test_every_page_of_the_list_is_read_whatever_its_next_link(
    emulator: Emulator, tmp_path: Path, links: str
) -> None:
    emulator.configure(page_size=3, sandbox_links=links)
    listed = _client(emulator.env(), tmp_path).sandboxes()
    assert [(s["name"], s["state"]) for s in listed] == DEMO_LISTED
    # Two pages of 3 and 1; paging by offset while pages come back full.
    assert _sandbox_calls(emulator) == 2


def test_the_list_needs_limit_and_offset_together(emulator: Emulator, tmp_path: Path) -> None:
    import requests

    client = _client(emulator.env(), tmp_path)
    headers = client._headers(client.token(), None)
    assert "x-sandbox-name" not in headers
    url = emulator.url + SANDBOXES
    assert requests.get(url, headers=headers, params={"limit": "2"}, timeout=10).status_code == 400
    answer = requests.get(url, headers=headers, timeout=10)
    assert answer.status_code == 200
    assert set(answer.json()) == {"sandboxes", "_page", "_links"}


# --- the CLI, against the emulator -------------------------------------------------------------


@pytest.mark.parametrize("command", [["plan"], ["discover"], ["doctor"]])
def test_a_sandbox_that_does_not_exist_is_named_with_those_that_do(
    cli: Any, emu_env: dict[str, str], emulator: Emulator, command: list[str]
) -> None:
    result = cli(command, env={**emu_env, "PINMIGRATE_ADOBE_SANDBOXES": "prod,prdo"})
    assert result.exit_code == 64, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert f"sandbox prdo does not exist in org {ORG_ID}; {LISTED_LINE}" in line
    assert "product profile" not in line
    assert _sandbox_calls(emulator) == 1


def test_every_missing_sandbox_is_named_at_once(cli: Any, emu_env: dict[str, str]) -> None:
    result = cli(["plan"], env={**emu_env, "PINMIGRATE_ADOBE_SANDBOXES": "prod,prdo,qa"})
    assert result.exit_code == 64
    assert f"2 sandboxes do not exist in org {ORG_ID}: prdo, qa; {LISTED_LINE}" in result.stderr


def test_an_inactive_sandbox_is_said_to_be_inactive(cli: Any, emu_env: dict[str, str]) -> None:
    result = cli(["plan"], env={**emu_env, "PINMIGRATE_ADOBE_SANDBOXES": "prod,archive"})
    assert result.exit_code == 64
    assert "sandbox archive of org" in result.stderr and "is inactive, not active" in result.stderr
    assert "its active sandboxes are: prod, dev, restricted" in result.stderr


def test_a_sandbox_that_exists_keeps_the_permission_advice(
    cli: Any, emu_env: dict[str, str]
) -> None:
    result = cli(["plan"], env={**emu_env, "PINMIGRATE_ADOBE_SANDBOXES": "prod,restricted"})
    assert result.exit_code == 4
    assert "Adobe denied" in result.stderr and "restricted" in result.stderr
    assert "product profile access to this sandbox" in result.stderr
    assert "does not exist in org" not in result.stderr


def test_no_list_is_read_when_every_sandbox_answers(
    cli: Any, emu_env: dict[str, str], emulator: Emulator
) -> None:
    assert cli(["plan"], env=emu_env).exit_code == 0
    assert _sandbox_calls(emulator) == 0


# --- the client's tolerance, against responses mocks -------------------------------------------


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def client(tmp_path: Path) -> AdobeClient:
    settings = make_settings(tmp_path, sandboxes="prod,prdo")
    return AdobeClient(settings, http=HttpClient(service="adobe", sleep=lambda _: None))


def _refuse_flows(mock: responses.RequestsMock) -> None:
    mock.add(
        responses.GET,
        f"{PLATFORM}/data/foundation/flowservice/flows",
        status=403,
        json={"error_code": 403027, "message": "no access to sandbox"},
    )


def test_an_absolute_next_link_with_the_default_port_is_followed(
    mock: responses.RequestsMock, client: AdobeClient
) -> None:
    add_token(mock)
    host = PLATFORM.replace("https://platform.example.test", "https://platform.example.test:443")
    first = {
        "sandboxes": [{"name": "prod", "state": "active"}],
        "_links": {"next": {"href": f"{host}{SANDBOXES}?limit=1&offset=1"}},
    }
    mock.add(
        responses.GET,
        LIST_URL,
        json=first,
        match=[responses.matchers.query_param_matcher({"limit": "50", "offset": "0"})],
    )
    mock.add(
        responses.GET,
        host + SANDBOXES,
        json={"items": [{"name": "dev", "state": "active"}], "_links": {}},
        match=[responses.matchers.query_param_matcher({"limit": "1", "offset": "1"})],
    )
    assert [s["name"] for s in client.sandboxes()] == ["prod", "dev"]
    assert all("x-sandbox-name" not in c.request.headers for c in mock.calls[1:])


def test_a_next_link_to_another_host_is_refused(
    mock: responses.RequestsMock, client: AdobeClient
) -> None:
    add_token(mock)
    mock.add(
        responses.GET,
        LIST_URL,
        json={
            "sandboxes": [{"name": "prod"}],
            "_links": {"next": {"href": "https://elsewhere.test/sandboxes?offset=1"}},
        },
    )
    with pytest.raises(ApiError, match="refusing to send the access token there"):
        client.sandboxes()


@pytest.mark.parametrize(
    "listing",
    [
        {"status": 403, "json": {"error_code": 403025, "message": "no sandbox admin"}},
        {"status": 500, "json": {"message": "boom"}},
        {"status": 200, "json": {"unexpected": True}},
        {"status": 200, "body": "<html>sign in</html>"},
    ],
    ids=["refused", "failed", "no-list", "html"],
)
def test_a_list_that_cannot_be_read_leaves_todays_message(
    mock: responses.RequestsMock, client: AdobeClient, listing: dict[str, Any]
) -> None:
    add_token(mock)
    _refuse_flows(mock)
    mock.add(responses.GET, LIST_URL, **listing)
    with pytest.raises(AuthError) as caught:
        list(client.list("flows", sandbox="prdo"))
    assert "Adobe denied GET /flows in sandbox prdo" in caught.value.line()
    assert "product profile" in caught.value.line()


def test_the_list_is_read_once_for_several_refusals(
    mock: responses.RequestsMock, client: AdobeClient
) -> None:
    add_token(mock)
    _refuse_flows(mock)
    mock.add(responses.GET, LIST_URL, json={"sandboxes": [{"name": "prod", "state": "active"}]})
    for _ in range(3):
        with pytest.raises(ConfigError, match=f"sandbox prdo does not exist in org {ORG}"):
            list(client.list("flows", sandbox="prdo"))
    assert sum(1 for c in mock.calls if c.request.url.startswith(LIST_URL)) == 1


def test_past_ten_sandboxes_the_rest_are_counted(
    mock: responses.RequestsMock, client: AdobeClient
) -> None:
    add_token(mock)
    _refuse_flows(mock)
    names = [{"name": f"sb{i:02}", "state": "active"} for i in range(14)]
    mock.add(responses.GET, LIST_URL, json={"sandboxes": names})
    with pytest.raises(ConfigError) as caught:
        list(client.list("flows", sandbox="prdo"))
    assert "its sandboxes are: sb00, sb01," in caught.value.line()
    assert "sb09, ... and 4 more" in caught.value.line()
