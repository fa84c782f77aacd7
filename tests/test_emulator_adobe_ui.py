"""Adobe's side of the reconnect in the emulator: the expiry shapes the scenario options
choose, as pinmigrate reads them, and Adobe's own Pinterest app with client-bound tokens.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from fakes import FakeTime

from pinmigrate.emulator import (
    CLIENT_ID,
    CLIENT_SECRET,
    NEW_SPEC_ID,
    ORG_ID,
    PINTEREST_APP_ID,
    PINTEREST_APP_SECRET,
    Emulator,
)
from pinmigrate.emulator.model import ADOBE_APP_ID, ADOBE_CALLBACK_PATH, LEGACY_SPEC_ID
from pinmigrate.emulator.problems import Problem
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


def basic(app_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{app_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


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


# --- client-bound Pinterest tokens ---------------------------------------------------------------


def test_adobes_code_cannot_be_exchanged_by_pinmigrates_app(emu: Emulator) -> None:
    code = adobe_code(emu, "some-state")
    answer = requests.post(
        emu.url + "/v5/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": emu.url + ADOBE_CALLBACK_PATH,
        },
        headers=basic(PINTEREST_APP_ID, PINTEREST_APP_SECRET),
    )
    assert answer.status_code == 401
    assert answer.json() == {"code": 2, "message": "Authentication failed."}


def test_tokens_are_refreshed_only_by_the_app_they_were_issued_to(emu: Emulator) -> None:
    # Adobe's exchange, as its callback makes it: its code, its own client credentials.
    adobe_auth = emu.state.pinterest.basic_authorization(ADOBE_APP_ID)
    first = emu.state.token_endpoint(
        adobe_auth,
        {
            "grant_type": "authorization_code",
            "code": adobe_code(emu, "some-state"),
            "redirect_uri": emu.url + ADOBE_CALLBACK_PATH,
        },
    )
    adobes = {"access": first["access_token"], "refresh": first["refresh_token"]}
    tokens = emu.state.dump()["secrets"]["pinterest_tokens"]
    assert {t["token"] for t in tokens if t["client_id"] == ADOBE_APP_ID} == set(adobes.values())

    def refresh(token: str, headers: dict[str, str]) -> requests.Response:
        return requests.post(
            emu.url + "/v5/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": token},
            headers=headers,
        )

    refused = refresh(adobes["refresh"], basic(PINTEREST_APP_ID, PINTEREST_APP_SECRET))
    assert refused.status_code == 401
    assert refused.json() == {"code": 2, "message": "Authentication failed."}
    # ... and the refusal did not revoke it: Adobe's own client still refreshes it.
    renewed = emu.state.token_endpoint(
        adobe_auth, {"grant_type": "refresh_token", "refresh_token": adobes["refresh"]}
    )
    assert renewed["access_token"].startswith("pina_")

    # The other way round: pinmigrate's refresh token is refused to Adobe's client.
    mine = emu.tokens("emu_marketer")
    with pytest.raises(Problem) as caught:
        emu.state.token_endpoint(
            adobe_auth, {"grant_type": "refresh_token", "refresh_token": mine["refresh_token"]}
        )
    assert caught.value.status == 401 and caught.value.body == {
        "code": 2,
        "message": "Authentication failed.",
    }
    assert refresh(mine["refresh_token"], basic(PINTEREST_APP_ID, PINTEREST_APP_SECRET)).ok

    # Bearer use works whoever minted the token.
    for token in (adobes["access"], renewed["access_token"]):
        bearer = {"Authorization": f"Bearer {token}"}
        me = requests.get(emu.url + "/v5/user_account", headers=bearer)
        assert me.status_code == 200 and me.json()["username"] == "emu_marketer"
        ads = requests.get(emu.url + "/v5/ad_accounts", headers=bearer)
        assert ads.status_code == 200 and len(ads.json()["items"]) == 4


def test_adobes_app_may_only_use_its_registered_callback(emu: Emulator) -> None:
    good = {
        "client_id": ADOBE_APP_ID,
        "redirect_uri": emu.url + ADOBE_CALLBACK_PATH,
        "response_type": "code",
        "scope": "ads:read",
        "state": "s",
    }
    page = requests.get(emu.url + "/oauth/", params=good)
    assert page.status_code == 200
    assert "Adobe Experience Platform wants access" in page.text
    for uri in (
        "http://localhost:8085/",
        emu.url + "/elsewhere",
        "http://127.0.0.1:1" + ADOBE_CALLBACK_PATH,
        "https://platform.adobe.io" + ADOBE_CALLBACK_PATH,
    ):
        answer = requests.get(emu.url + "/oauth/", params={**good, "redirect_uri": uri})
        assert answer.status_code == 400, uri
        assert "not registered" in answer.text
    # pinmigrate's own app still takes any loopback URI, and its consent names it.
    mine = requests.get(
        emu.url + "/oauth/",
        params={**good, "client_id": PINTEREST_APP_ID, "redirect_uri": "http://localhost:8085/"},
    )
    assert mine.status_code == 200 and "pinmigrate (emulator) wants access" in mine.text


def adobe_code(emu: Emulator, state: str) -> str:
    """A code of Adobe's app, as Pinterest's Allow hands it to the callback."""
    allowed = requests.post(
        emu.url + "/oauth/",
        data={
            "client_id": ADOBE_APP_ID,
            "redirect_uri": emu.url + ADOBE_CALLBACK_PATH,
            "response_type": "code",
            "scope": "ads:read,ads:write,user_accounts:read",
            "state": state,
            "decision": "allow",
        },
        allow_redirects=False,
    )
    return parse_qs(urlsplit(allowed.headers["Location"]).query)["code"][0]
