"""Adobe's side of the reconnect in the emulator: the expiry shapes the scenario options
choose, as pinmigrate reads them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from fakes import FakeTime

from pinmigrate.emulator import (
    CLIENT_ID,
    CLIENT_SECRET,
    NEW_SPEC_ID,
    ORG_ID,
    Emulator,
)
from pinmigrate.emulator.model import LEGACY_SPEC_ID
from pinmigrate.emulator.scenarios import account_id, flow_id, parse_scenario
from pinmigrate.models import credential_expiry

FS = "/data/foundation/flowservice"
DAY = 86400
LIFETIME = 30 * DAY
#: where the emulator's clock starts (June 2025), a whole second
START = 1_750_000_000
MISSING = ("prod", "549755885175")  # no credentials
EXPIRED = ("prod", "549755885176")  # expired 2 days ago
VALID = ("dev", "549755885177")  # 50 days left
SOON = ("dev", "549755885178")  # 3 days left
#: days left of each new-card account in the demo (architecture.md); None = no credentials
DEMO_DAYS: dict[tuple[str, str], float | None] = {MISSING: None, EXPIRED: -2, VALID: 50, SOON: 3}
SHAPES = [None, "expiry-ms", "expiration-date", "expires-in", "no-expiry"]
RULES = {
    None: "expiresAt",
    "expiry-ms": "expiresAt",
    "expiration-date": "expirationDate",
    "expires-in": "updatedAt+expiresIn",
    "no-expiry": "updatedAt+30d",
}
#: the expiry fields of ``auth.params`` in each shape, besides the (masked) tokens
SHAPE_KEYS: dict[str | None, set[str]] = {
    None: {"expiresAt"},
    "expiry-ms": {"expiresAt"},
    "expiration-date": {"expirationDate"},
    "expires-in": {"expiresIn"},
    "no-expiry": set(),
}
TOKEN_KEYS = {"accessToken", "refreshToken"}


def scenario(shape: str | None) -> str:
    return "demo" if shape is None else f"demo+{shape}"


def intended_days(shape: str | None, days: float) -> float:
    """The demo's days left in a shape: with no expiry field, an account read as connected
    lasts 30 days from an ``updatedAt`` that is never in the future."""
    return min(days, 30) if shape == "no-expiry" else days


class Adobe:
    """Reads through Flow Service as pinmigrate does: IMS token, the four headers."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.http = requests.Session()
        answer = self.http.post(
            emu.url + "/ims/token/v3",
            data={
                "grant_type": "client_credentials",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "scope": "openid,AdobeID",
            },
        )
        assert answer.status_code == 200, answer.text
        self.token = answer.json()["access_token"]

    def headers(self, sandbox: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token}",
            "x-api-key": CLIENT_ID,
            "x-gw-ims-org-id": ORG_ID,
            "x-sandbox-name": sandbox,
        }

    def account(self, sandbox: str, ident: str) -> dict[str, Any]:
        answer = self.http.get(
            f"{self.emu.url}{FS}/connections/{ident}", headers=self.headers(sandbox)
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["items"][0]  # type: ignore[no-any-return]

    def accounts(self, sandbox: str, spec: str = NEW_SPEC_ID) -> list[dict[str, Any]]:
        answer = self.http.get(
            f"{self.emu.url}{FS}/connections",
            params={"property": f"connectionSpec.id=={spec}"},
            headers=self.headers(sandbox),
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["_links"] == {}
        return answer.json()["items"]  # type: ignore[no-any-return]

    def enable(self, sandbox: str, flow: str) -> dict[str, Any]:
        """Enable a flow; the summary of the run it started."""
        answer = self.http.post(
            f"{self.emu.url}{FS}/flows/{flow}/action",
            params={"op": "enable"},
            headers=self.headers(sandbox),
        )
        assert answer.status_code == 200, answer.text
        headers = self.headers(sandbox)
        flow_now = self.http.get(f"{self.emu.url}{FS}/flows/{flow}", headers=headers)
        run_id = flow_now.json()["items"][0]["lastRunDetails"]["id"]
        run = self.http.get(f"{self.emu.url}{FS}/runs/{run_id}", headers=headers)
        return run.json()["items"][0]["metrics"]["statusSummary"]  # type: ignore[no-any-return]


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime(start=START)


@pytest.fixture
def emu(clock: FakeTime) -> Iterator[Emulator]:
    with Emulator("demo", clock=clock.clock) as running:
        yield running


@pytest.fixture
def adobe(emu: Emulator) -> Adobe:
    return Adobe(emu)


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


# --- expiry shapes -------------------------------------------------------------------------------


def test_scenario_options_combine_and_expiry_options_exclude_each_other() -> None:
    assert parse_scenario("demo+draft-names+expires-in") == ("demo", 0)
    assert parse_scenario("scale:3+no-expiry") == ("scale", 3)
    with pytest.raises(ValueError, match="at most one"):
        parse_scenario("demo+expiry-ms+no-expiry")
    with pytest.raises(ValueError, match=r"\+expiration-date"):
        parse_scenario("demo+expires-at")


def test_expiry_options_combine_with_draft_names(clock: FakeTime) -> None:
    with Emulator("demo+draft-names+expires-in", clock=clock.clock) as emu:
        spec = emu.state.get("connectionSpecs", NEW_SPEC_ID)
        assert spec is not None and spec["name"] == "(New) Pinterest"
        account = Adobe(emu).account("dev", account_id("dev", "new", "549755885178"))
        assert set(account["auth"]["params"]) == {"accessToken", "refreshToken", "expiresIn"}


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_reads_as_the_intended_expiry(shape: str | None, clock: FakeTime) -> None:
    with Emulator(scenario(shape), clock=clock.clock) as emu:
        adobe = Adobe(emu)
        read = {
            (sandbox, a["name"].rsplit(" ", 1)[-1]): a
            for sandbox in ("prod", "dev")
            for a in adobe.accounts(sandbox)
        }
        assert set(read) == set(DEMO_DAYS)
        for where, days in DEMO_DAYS.items():
            account = read[where]
            expiry = credential_expiry(account)
            if days is None:
                assert account["auth"]["params"] == {}
                assert expiry.at is None and expiry.rule == "none"
                continue
            assert expiry.rule == RULES[shape], where
            assert expiry.at == at(START + intended_days(shape, days) * DAY), where
            params = account["auth"]["params"]
            assert set(params) == TOKEN_KEYS | SHAPE_KEYS[shape]
            assert params["accessToken"] == "***" and params["refreshToken"] == "***"
            assert account["updatedAt"] <= START * 1000
            if shape == "expiry-ms":
                assert isinstance(params["expiresAt"], int)
            if shape == "expires-in":
                assert isinstance(params["expiresIn"], int)
        # Legacy accounts follow the same shape and stay valid.
        for sandbox in ("prod", "dev"):
            for legacy in adobe.accounts(sandbox, LEGACY_SPEC_ID):
                expiry = credential_expiry(legacy)
                assert expiry.rule == RULES[shape]
                assert expiry.at is not None and expiry.at >= at(START + 30 * DAY)


@pytest.mark.parametrize("shape", SHAPES)
def test_flow_runs_read_credentials_in_every_shape(shape: str | None, clock: FakeTime) -> None:
    with Emulator(scenario(shape), clock=clock.clock) as emu:
        adobe = Adobe(emu)
        soon = adobe.enable("dev", flow_id("dev", "new", "Dev smoke test"))
        assert soon["status"] == "Success", soon
        missing = adobe.enable("prod", flow_id("prod", "new", "Loyalty members"))
        assert missing["status"] == "Failed"
        assert "no Pinterest credentials" in missing["errors"][0]["message"]
        cart = flow_id("prod", "new", "Cart abandoners")
        expired = adobe.enable("prod", cart)
        assert expired["status"] == "Failed" and "expired" in expired["errors"][0]["message"]


@pytest.mark.slow
@pytest.mark.parametrize("shape", SHAPES[1:])
def test_the_demo_plans_the_same_reconnects_in_every_shape(
    shape: str, cli: Any, tmp_path: Any
) -> None:
    def summary(name: str) -> dict[str, int]:
        with Emulator(name) as emu:
            env = dict(emu.env())
            env["PINMIGRATE_STATE_DIR"] = str(tmp_path / name)
            env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
            result = cli(["plan", "--output", "json"], env=env)
            assert result.exit_code == 0, result.stderr
            plan = result.json()
            reconnects = sorted(
                a["target_name"] for a in plan["actions"] if a["kind"] == "reconnect_account"
            )
            assert len(reconnects) == 3, reconnects
            return {**plan["summary"], "accounts": reconnects}  # type: ignore[dict-item]

    assert summary(scenario(shape)) == summary("demo")


def test_patches_keep_the_expiry_forms_adobe_may_store(emu: Emulator, adobe: Adobe) -> None:
    ident = account_id("dev", "new", "549755885177")

    def patch(value: Any) -> requests.Response:
        etag = adobe.account("dev", ident)["etag"]
        return adobe.http.patch(
            f"{emu.url}{FS}/connections/{ident}",
            json=[{"op": "replace", "path": "/auth/params", "value": value}],
            headers={**adobe.headers("dev"), "If-Match": etag},
        )

    assert patch({"accessToken": "pina_x", "expiresAt": (START + DAY) * 1000}).status_code == 200
    assert patch({"accessToken": "pina_x", "expirationDate": "2030-01-01T00:00:00Z"}).ok
    assert patch({"accessToken": "pina_x", "expiresIn": 2592000}).ok
    for bad in (
        {"accessToken": "pina_x", "expirationDate": "soon"},
        {"accessToken": "pina_x", "expiresIn": -1},
        {"accessToken": "pina_x", "expiresIn": "long"},
        {"accessToken": "pina_x", "expiresAt": True},
    ):
        answer = patch(bad)
        assert answer.status_code == 400, bad
