"""The emulator's control API against a web page in the person's browser (issue 12
item 5): loopback Host only, JSON requests only, tokens only when asked."""

from __future__ import annotations

import pytest
import requests

from pinmigrate.emulator import Emulator
from pinmigrate.emulator.scenarios import flow_id

# --- the emulator's control API ------------------------------------------------------------------


def test_control_api_refuses_a_host_that_is_not_loopback(emulator: Emulator) -> None:
    # DNS rebinding: a page's own name resolving to 127.0.0.1 reaches the emulator.
    evil = {"Host": f"evil.example:{emulator.port}"}
    assert requests.get(f"{emulator.url}/_emulator/state", headers=evil).status_code == 403
    reset = requests.post(f"{emulator.url}/_emulator/config", json={"page_size": 3}, headers=evil)
    assert reset.status_code == 403 and "loopback Host" in reset.json()["error"]
    assert emulator.state.config.page_size == 100
    for host in (f"127.0.0.1:{emulator.port}", f"localhost:{emulator.port}", "[::1]"):
        assert (
            requests.get(f"{emulator.url}/_emulator/config", headers={"Host": host}).status_code
            == 200
        )
    # The APIs it emulates answer whatever the Host (they are reached by name in real life).
    assert requests.get(f"{emulator.url}/", headers=evil).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "text/plain"},
        {"Content-Type": "multipart/form-data; boundary=x"},
        {},
    ],
)
def test_control_api_changes_nothing_without_a_json_content_type(
    emulator: Emulator, headers: dict[str, str]
) -> None:
    # What a cross-site form post or a no-cors fetch can send.
    url = f"{emulator.url}/_emulator"
    ident = flow_id("prod", "legacy", "Loyalty members")
    before = emulator.state.dump()["objects"]
    tries = [
        requests.post(f"{url}/config", data='{"page_size": 3}', headers=headers),
        requests.post(f"{url}/reset", data="scenario=empty", headers=headers),
        requests.post(f"{url}/reset", headers=headers),
        requests.patch(
            f"{url}/objects/flows/{ident}", data='{"state": "disabled"}', headers=headers
        ),
        requests.delete(f"{url}/requests", headers=headers),
    ]
    assert [t.status_code for t in tries] == [415] * len(tries)
    assert "Content-Type: application/json" in tries[0].json()["error"]
    assert emulator.state.config.page_size == 100
    assert emulator.state.dump()["objects"] == before


def test_control_state_hides_issued_tokens_unless_asked(emulator: Emulator) -> None:
    minted = requests.post(
        f"{emulator.url}/_emulator/tokens", json={"user": "emu_marketer"}, timeout=10
    ).json()
    secrets = [minted["access_token"], minted["refresh_token"]]
    secrets += [t["token"] for t in emulator.state.dump()["secrets"]["ims_tokens"]]
    stored = [
        c["auth"]["params"]["accessToken"]
        for c in emulator.state.dump()["objects"]["dev"]["connections"]
        if (c.get("auth") or {}).get("params", {}).get("accessToken")
    ]
    assert stored, "the scenario's valid accounts hold credentials"
    plain = requests.get(f"{emulator.url}/_emulator/state", timeout=10)
    assert plain.status_code == 200
    for secret in secrets + stored:
        assert secret not in plain.text
    assert "?secrets=1" in plain.json()["secrets"]["hidden"]
    asked = requests.get(f"{emulator.url}/_emulator/state?secrets=1", timeout=10).text
    for secret in secrets + stored:
        assert secret in asked
