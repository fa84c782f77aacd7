"""Adobe's side of the reconnect in the emulator: the account pages and Reconnect OAuth,
Adobe's own Pinterest app and callback, client-bound Pinterest tokens, the expiry shapes the
scenario options choose, the control endpoint that renews an account, and the scripted person.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests
from fakes import FakeTime
from platform_caller import Platform

from pinmigrate.emulator import (
    NEW_SPEC_ID,
    ORG_ID,
    PINTEREST_APP_ID,
    PINTEREST_APP_SECRET,
    Emulator,
)
from pinmigrate.emulator.model import ADOBE_APP_ID, ADOBE_CALLBACK_PATH, LEGACY_SPEC_ID
from pinmigrate.emulator.person import ReconnectError, reconnect_via_ui
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
UI_TEMPLATE = "/ui/{org_id}/{sandbox}/destination/accounts/{account_id}"


def scenario(shape: str | None) -> str:
    return "demo" if shape is None else f"demo+{shape}"


def intended_days(shape: str | None, days: float) -> float:
    """The demo's days left in a shape: with no expiry field, an account read as connected
    lasts 30 days from an ``updatedAt`` that is never in the future."""
    return min(days, 30) if shape == "no-expiry" else days


class Adobe(Platform):
    """Reads through Flow Service as pinmigrate does: IMS token, the four headers."""

    def account(self, sandbox: str, ident: str) -> dict[str, Any]:
        return self.one("connections", ident, sandbox)

    def accounts(self, sandbox: str, spec: str = NEW_SPEC_ID) -> list[dict[str, Any]]:
        answer = self.get(
            "/connections", sandbox=sandbox, params={"property": f"connectionSpec.id=={spec}"}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["_links"] == {}
        return answer.json()["items"]  # type: ignore[no-any-return]

    def enable(self, sandbox: str, flow: str) -> dict[str, Any]:
        """Enable a flow; the summary of the run it started."""
        answer = self.call(
            "POST", f"/flows/{flow}/action", sandbox=sandbox, params={"op": "enable"}
        )
        assert answer.status_code == 200, answer.text
        run_id = self.one("flows", flow, sandbox)["lastRunDetails"]["id"]
        return self.one("runs", run_id, sandbox)["metrics"]["statusSummary"]  # type: ignore[no-any-return]


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


def page_of(emu: Emulator, where: tuple[str, str], card: str = "new") -> str:
    sandbox, adv = where
    return emu.ui_url.format(
        org_id=quote(ORG_ID, safe=""),
        sandbox=quote(sandbox, safe=""),
        account_id=quote(account_id(sandbox, card, adv), safe=""),
    )


def accounts_page(emu: Emulator, sandbox: str) -> str:
    return f"{emu.url}/ui/{quote(ORG_ID, safe='')}/{sandbox}/destination/accounts"


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def basic(app_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{app_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def press_reconnect(emu: Emulator, page: str) -> requests.Response:
    """POST the account page's Reconnect OAuth form; the 303 answer, not followed."""
    return requests.post(page + "/reconnect", allow_redirects=False)


def stored_tokens(emu: Emulator) -> list[str]:
    return [t["token"] for t in emu.state.dump()["secrets"]["pinterest_tokens"]]


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
def test_every_shape_reads_as_the_intended_expiry_before_and_after_a_renewal(
    shape: str | None, clock: FakeTime
) -> None:
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

        clock.now += 3600
        for where, days in DEMO_DAYS.items():
            sandbox, adv = where
            ident = account_id(sandbox, "new", adv)
            before = adobe.account(sandbox, ident)
            answer = requests.post(f"{emu.url}/_emulator/accounts/{ident}/reconnect", json={})
            assert answer.status_code == 200, answer.text
            after = adobe.account(sandbox, ident)
            assert after["etag"] != before["etag"]
            assert after["updatedAt"] == (START + 3600) * 1000
            renewed = credential_expiry(after)
            assert renewed.rule == RULES[shape]
            assert renewed.at == at(START + 3600 + LIFETIME)
            old = credential_expiry(before).at
            if shape == "no-expiry" or days is None or days < 30:
                assert old is None or renewed.at > old
            assert set(after["auth"]["params"]) == TOKEN_KEYS | SHAPE_KEYS[shape]


@pytest.mark.parametrize("shape", SHAPES)
def test_flow_runs_read_credentials_in_every_shape(shape: str | None, clock: FakeTime) -> None:
    with Emulator(scenario(shape), clock=clock.clock) as emu:
        adobe = Adobe(emu)
        soon = adobe.enable("dev", flow_id("dev", "new", "Dev smoke test"))
        assert soon["status"] == "success", soon
        missing = adobe.enable("prod", flow_id("prod", "new", "Loyalty members"))
        assert missing["status"] == "failed"
        assert "no Pinterest credentials" in missing["errors"][0]["message"]
        cart = flow_id("prod", "new", "Cart abandoners")
        expired = adobe.enable("prod", cart)
        assert expired["status"] == "failed" and "expired" in expired["errors"][0]["message"]

        ident = account_id("prod", "new", "549755885176")
        assert requests.post(f"{emu.url}/_emulator/accounts/{ident}/reconnect", json={}).ok
        adobe.http.post(
            f"{emu.url}{FS}/flows/{cart}/action",
            params={"op": "disable"},
            headers=adobe.headers("prod"),
        )
        assert adobe.enable("prod", cart)["status"] == "success"
        # 31 days on, the renewal has run out again.
        clock.now += 31 * DAY
        adobe = Adobe(emu)
        adobe.http.post(
            f"{emu.url}{FS}/flows/{cart}/action",
            params={"op": "disable"},
            headers=adobe.headers("prod"),
        )
        assert adobe.enable("prod", cart)["status"] == "failed"


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
    # pinmigrate's own app takes its registered URI, and its consent names it.
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


# --- the emulator's own addresses --------------------------------------------------------------


def test_ui_url_is_the_account_page_template_on_the_base_url(emu: Emulator) -> None:
    assert emu.ui_url == emu.url + UI_TEMPLATE
    ident = account_id("dev", "new", "549755885178")
    assert emu.account_page(ident) == page_of(emu, SOON)
    assert "%40AdobeOrg/dev/" in emu.account_page(ident)


def test_the_control_index_names_the_reconnect_endpoint(emu: Emulator) -> None:
    endpoints = requests.get(emu.url + "/_emulator/").json()["endpoints"]
    assert any(e.startswith("POST /_emulator/accounts/{id}/reconnect") for e in endpoints)
    index = requests.get(emu.url + "/").text
    assert f"/ui/{quote(ORG_ID, safe='')}/prod/destination/accounts" in index


# --- the account pages ---------------------------------------------------------------------------


def test_account_page_shows_the_account_and_a_reconnect_button_never_a_token(
    emu: Emulator,
) -> None:
    answer = requests.get(page_of(emu, EXPIRED))
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/html")
    text = answer.text
    ident = account_id("prod", "new", "549755885176")
    for shown in (
        "Pinterest - ad account 549755885176",
        ident,
        "<dd>prod</dd>",
        "<dd>Pinterest</dd>",
        "<dd>549755885176</dd>",
        at(START - 2 * DAY).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "expired 2.0 days ago",
        "Reconnect OAuth",
    ):
        assert shown in text, shown
    assert f'action="/ui/{quote(ORG_ID, safe="")}/prod/destination/accounts/{ident}/reconnect"' in (
        text
    )
    assert 'method="post"' in text
    stored = emu.state.get("connections", ident)
    assert stored is not None
    for secret in stored["auth"]["params"].values():
        if isinstance(secret, str) and secret.startswith(("pina_", "pinr_")):
            assert secret not in text
    assert "pina_" not in text and "pinr_" not in text


def test_account_page_without_credentials_says_so(emu: Emulator) -> None:
    text = requests.get(page_of(emu, MISSING)).text
    assert "no credentials" in text and "Reconnect OAuth" in text


def test_path_segments_are_unquoted_so_a_raw_at_sign_works_too(emu: Emulator) -> None:
    ident = account_id("prod", "new", "549755885176")
    raw = f"{emu.url}/ui/{ORG_ID}/prod/destination/accounts/{ident}"
    assert requests.get(raw).status_code == 200
    assert requests.get(page_of(emu, EXPIRED)).status_code == 200


def test_accounts_page_lists_both_cards_with_the_button_on_the_new_ones(emu: Emulator) -> None:
    answer = requests.get(accounts_page(emu, "prod"))
    assert answer.status_code == 200
    text = answer.text
    for adv in ("549755885175", "549755885176"):
        for card in ("new", "legacy"):
            assert account_id("prod", card, adv) in text
        assert f"{account_id('prod', 'new', adv)}/reconnect" in text
        assert f"{account_id('prod', 'legacy', adv)}/reconnect" not in text
    assert "(Deprecating) Pinterest" in text
    assert text.count("Reconnect OAuth") == 2
    assert "549755885177" not in text  # dev's accounts are not in prod's list
    assert "amazon-s3" not in text


def test_legacy_account_page_has_no_button_and_cannot_be_reconnected(emu: Emulator) -> None:
    page = page_of(emu, EXPIRED, card="legacy")
    text = requests.get(page).text
    assert "(Deprecating) Pinterest" in text and "Reconnect OAuth" not in text
    refused = press_reconnect(emu, page)
    assert refused.status_code == 400
    assert refused.headers["Content-Type"].startswith("text/html")
    assert "Location" not in refused.headers


@pytest.mark.parametrize(
    "path",
    [
        "/ui/{org}/prod/destination/accounts/no-such-account",
        "/ui/{org}/nope/destination/accounts/{account}",
        "/ui/{org}/nope/destination/accounts",
        "/ui/OTHER%40AdobeOrg/prod/destination/accounts/{account}",
        "/ui/{org}/prod/destination/accounts/{s3}",
        "/ui/{org}/prod/destination/elsewhere",
        "/ui/",
    ],
)
def test_unknown_places_are_404_html_pages(emu: Emulator, path: str) -> None:
    s3 = next(a for a in emu.state.find("connections", sandbox="prod") if a["name"] == "amazon-s3")
    url = emu.url + path.format(
        org=quote(ORG_ID, safe=""), account=account_id("prod", "new", "549755885175"), s3=s3["id"]
    )
    answer = requests.get(url)
    assert answer.status_code == 404
    assert answer.headers["Content-Type"].startswith("text/html")
    assert "<h1>" in answer.text


def test_pages_refuse_other_methods(emu: Emulator) -> None:
    assert requests.post(page_of(emu, EXPIRED)).status_code == 405
    assert requests.get(page_of(emu, EXPIRED) + "/reconnect", json={}).status_code == 405


# --- Reconnect OAuth: the button, Pinterest's consent, Adobe's callback --------------------------


def test_the_button_redirects_to_pinterest_consent_for_adobes_app(emu: Emulator) -> None:
    first = press_reconnect(emu, page_of(emu, EXPIRED))
    assert first.status_code == 303
    location = urlsplit(first.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == emu.url + "/oauth/"
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    state = query.pop("state")
    assert query == {
        "client_id": ADOBE_APP_ID,
        "redirect_uri": emu.url + ADOBE_CALLBACK_PATH,
        "response_type": "code",
        "scope": "ads:read,ads:write,user_accounts:read",
    }
    assert len(state) >= 20
    second = press_reconnect(emu, page_of(emu, EXPIRED))
    assert parse_qs(urlsplit(second.headers["Location"]).query)["state"][0] != state


def test_clicking_through_with_allow_renews_the_account(
    emu: Emulator, adobe: Adobe, clock: FakeTime
) -> None:
    ident = account_id("prod", "new", "549755885176")
    before = adobe.account("prod", ident)
    clock.now += 60
    consent_url = press_reconnect(emu, page_of(emu, EXPIRED)).headers["Location"]
    consent = requests.get(consent_url)
    assert consent.status_code == 200 and 'value="allow"' in consent.text
    form = {k: v[0] for k, v in parse_qs(urlsplit(consent_url).query).items()}
    allowed = requests.post(
        emu.url + "/oauth/",
        data={**form, "user": "emu_analyst", "decision": "allow"},
        allow_redirects=False,
    )
    assert allowed.status_code == 302
    callback = allowed.headers["Location"]
    assert callback.startswith(emu.url + ADOBE_CALLBACK_PATH + "?code=")
    done = requests.get(callback)
    assert done.status_code == 200, done.text
    assert "Account reconnected" in done.text and f'data-reconnected="{ident}"' in done.text
    assert "emu_analyst" in done.text
    for token in stored_tokens(emu):
        assert token not in done.text

    after = adobe.account("prod", ident)
    assert after["etag"] != before["etag"]
    assert after["updatedAt"] == (START + 60) * 1000
    assert after["auth"]["params"] == {
        "accessToken": "***",
        "refreshToken": "***",
        "expiresAt": at(START + 60 + LIFETIME).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    expiry = credential_expiry(after)
    assert expiry.at == at(START + 60 + LIFETIME) and expiry.rule == "expiresAt"
    assert emu.state.dump()["pinterest"]["credential_owners"][ident] == "1000000002"
    # The page now names the Pinterest user and the new expiry.
    text = requests.get(page_of(emu, EXPIRED)).text
    assert "<dd>emu_analyst</dd>" in text and "in 30.0 days" in text


def test_auto_approve_goes_straight_through_for_the_default_user(
    emu: Emulator, adobe: Adobe
) -> None:
    emu.configure(auto_approve=True)
    ident = account_id("prod", "new", "549755885175")
    done = requests.get(press_reconnect(emu, page_of(emu, MISSING)).headers["Location"])
    assert done.status_code == 200 and "Account reconnected" in done.text
    assert emu.state.dump()["pinterest"]["credential_owners"][ident] == "1000000001"
    assert credential_expiry(adobe.account("prod", ident)).at == at(START + LIFETIME)


def start_and_get_state(emu: Emulator, where: tuple[str, str]) -> str:
    location = press_reconnect(emu, page_of(emu, where)).headers["Location"]
    return parse_qs(urlsplit(location).query)["state"][0]


def test_callback_refuses_a_missing_wrong_or_reused_state_and_changes_nothing(
    emu: Emulator, adobe: Adobe
) -> None:
    ident = account_id("prod", "new", "549755885176")
    before = adobe.account("prod", ident)
    state = start_and_get_state(emu, EXPIRED)
    code = adobe_code(emu, state)
    callback = emu.url + ADOBE_CALLBACK_PATH
    for params in ({"code": code}, {"code": code, "state": "forged"}, {"code": code, "state": ""}):
        answer = requests.get(callback, params=params)
        assert answer.status_code == 400, params
        assert answer.headers["Content-Type"].startswith("text/html")
        assert "Reconnect not recognised" in answer.text
        assert code not in answer.text
    assert adobe.account("prod", ident)["etag"] == before["etag"]
    # The right state still works once (the refusals did not burn it), then never again.
    assert requests.get(callback, params={"code": code, "state": state}).status_code == 200
    renewed = adobe.account("prod", ident)
    again = requests.get(callback, params={"code": code, "state": state})
    assert again.status_code == 400
    assert adobe.account("prod", ident)["etag"] == renewed["etag"]


def test_callback_with_an_error_changes_nothing(emu: Emulator, adobe: Adobe) -> None:
    ident = account_id("prod", "new", "549755885176")
    before = adobe.account("prod", ident)
    state = start_and_get_state(emu, EXPIRED)
    denied = requests.post(
        emu.url + "/oauth/",
        data={
            "client_id": ADOBE_APP_ID,
            "redirect_uri": emu.url + ADOBE_CALLBACK_PATH,
            "response_type": "code",
            "scope": "ads:read",
            "state": state,
            "decision": "deny",
        },
        allow_redirects=False,
    )
    answer = requests.get(denied.headers["Location"])
    assert answer.status_code == 400
    assert "did not grant access" in answer.text and "access_denied" in answer.text
    assert adobe.account("prod", ident) == before
    assert ident not in emu.state.dump()["pinterest"]["credential_owners"]


def test_callback_refuses_a_code_of_another_app(emu: Emulator, adobe: Adobe) -> None:
    ident = account_id("prod", "new", "549755885176")
    before = adobe.account("prod", ident)
    state = start_and_get_state(emu, EXPIRED)
    # A code Pinterest issued to pinmigrate's app, smuggled into Adobe's callback.
    allowed = requests.post(
        emu.url + "/oauth/",
        data={
            "client_id": PINTEREST_APP_ID,
            "redirect_uri": "http://localhost:8085/",
            "response_type": "code",
            "scope": "ads:read",
            "decision": "allow",
        },
        allow_redirects=False,
    )
    code = parse_qs(urlsplit(allowed.headers["Location"]).query)["code"][0]
    answer = requests.get(emu.url + ADOBE_CALLBACK_PATH, params={"code": code, "state": state})
    assert answer.status_code == 502
    assert "Authentication failed" in answer.text
    assert adobe.account("prod", ident) == before


def test_adobes_app_secret_is_shown_nowhere(emu: Emulator) -> None:
    ident = account_id("prod", "new", "549755885176")
    assert requests.post(f"{emu.url}/_emulator/accounts/{ident}/reconnect", json={}).ok
    secret = emu.state.pinterest.apps[ADOBE_APP_ID].secret
    assert secret and secret != PINTEREST_APP_SECRET
    seen = [
        requests.get(emu.url + "/_emulator/state").text,
        requests.get(emu.url + "/").text,
        requests.get(page_of(emu, EXPIRED)).text,
        requests.get(accounts_page(emu, "prod")).text,
    ]
    apps = json.loads(seen[0])["pinterest"]["apps"]
    assert {a["id"]: a["redirect_uris"] for a in apps} == {
        PINTEREST_APP_ID: ["http://localhost:8085/"],
        ADOBE_APP_ID: [emu.url + ADOBE_CALLBACK_PATH],
    }
    for text in seen:
        assert secret not in text


# --- the control endpoint -----------------------------------------------------------------------


def test_control_reconnect_renews_as_a_person_would(
    emu: Emulator, adobe: Adobe, clock: FakeTime
) -> None:
    ident = account_id("dev", "new", "549755885178")
    before = adobe.account("dev", ident)
    clock.now += 5
    answer = requests.post(
        f"{emu.url}/_emulator/accounts/{ident}/reconnect", json={"username": "emu_analyst"}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body == adobe.account("dev", ident)
    assert body["auth"]["params"]["accessToken"] == "***"
    assert body["etag"] != before["etag"] and body["updatedAt"] == (START + 5) * 1000
    assert credential_expiry(body).at == at(START + 5 + LIFETIME)
    assert emu.state.dump()["pinterest"]["credential_owners"][ident] == "1000000002"
    for token in stored_tokens(emu):
        assert token not in answer.text
    # No username: the consent page's default user.
    requests.post(f"{emu.url}/_emulator/accounts/{ident}/reconnect", json={})
    assert emu.state.dump()["pinterest"]["credential_owners"][ident] == "1000000001"


def test_control_reconnect_refusals(emu: Emulator) -> None:
    def post(ident: str, body: Any = None) -> requests.Response:
        return requests.post(
            f"{emu.url}/_emulator/accounts/{ident}/reconnect", json={} if body is None else body
        )

    assert post("no-such-account").status_code == 404
    assert post(account_id("prod", "legacy", "549755885176")).status_code == 400
    unknown = post(account_id("prod", "new", "549755885176"), {"username": "nobody"})
    assert unknown.status_code == 400 and "emu_analyst" in unknown.json()["error"]
    assert post(account_id("prod", "new", "549755885176"), {"username": 7}).status_code == 400
    assert post(account_id("prod", "new", "549755885176"), [1]).status_code == 400


# --- the scripted person -------------------------------------------------------------------------


def test_person_reconnects_through_the_consent_page_as_the_chosen_user(
    emu: Emulator, adobe: Adobe, clock: FakeTime
) -> None:
    ident = account_id("prod", "new", "549755885176")
    before = adobe.account("prod", ident)
    clock.now += 10
    session = requests.Session()
    reconnect_via_ui(page_of(emu, EXPIRED), username="emu_analyst", session=session)
    after = adobe.account("prod", ident)
    assert after["etag"] != before["etag"]
    assert credential_expiry(after).at == at(START + 10 + LIFETIME)
    assert emu.state.dump()["pinterest"]["credential_owners"][ident] == "1000000002"
    endpoints = emu.requests()["by_endpoint"]
    assert endpoints["POST /oauth/"] == 1  # Allow was pressed on the consent page
    assert endpoints[f"GET {ADOBE_CALLBACK_PATH}"] == 1


def test_person_goes_straight_through_when_auto_approved(emu: Emulator, adobe: Adobe) -> None:
    emu.configure(auto_approve=True)
    ident = account_id("prod", "new", "549755885175")
    reconnect_via_ui(page_of(emu, MISSING))
    assert credential_expiry(adobe.account("prod", ident)).at == at(START + LIFETIME)
    assert "POST /oauth/" not in emu.requests()["by_endpoint"]


@pytest.mark.parametrize(
    ("page", "username", "needle"),
    [
        ("legacy", None, "no Reconnect OAuth button"),
        ("unknown", None, "HTTP 404"),
        ("new", "nobody", "offers no user 'nobody'"),
    ],
)
def test_person_says_why_an_account_was_not_reconnected(
    emu: Emulator, adobe: Adobe, page: str, username: str | None, needle: str
) -> None:
    url = {
        "legacy": page_of(emu, EXPIRED, card="legacy"),
        "unknown": page_of(emu, EXPIRED).rsplit("/", 1)[0] + "/no-such-account",
        "new": page_of(emu, EXPIRED),
    }[page]
    before = adobe.account("prod", account_id("prod", "new", "549755885176"))
    with pytest.raises(ReconnectError, match=needle):
        reconnect_via_ui(url, username=username)
    assert adobe.account("prod", account_id("prod", "new", "549755885176")) == before


def test_person_reports_a_refused_callback(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    # Adobe loses track of the reconnect between the click and the callback.
    emu.configure(auto_approve=True)
    original = emu.state.adobe_ui.start_reconnect

    def forgetful(*args: Any) -> str:
        url = original(*args)
        emu.state.adobe_ui.install()
        return url

    monkeypatch.setattr(emu.state.adobe_ui, "start_reconnect", forgetful)
    with pytest.raises(ReconnectError, match=r"HTTP 400 \(This sign-in was not started"):
        reconnect_via_ui(page_of(emu, EXPIRED))


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/ui/x/prod/destination/accounts/y",
        "https://experience.adobe.com/#/@org/sname:prod/platform/destination/accounts/y",
        "http://10.0.0.1:8080/ui/x/prod/destination/accounts/y",
        "file:///etc/passwd",
    ],
)
def test_person_only_visits_loopback_hosts(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the person tried the network")

    monkeypatch.setattr(requests.Session, "request", no_network)
    with pytest.raises(ReconnectError, match="only loopback"):
        reconnect_via_ui(url)


def test_person_refuses_a_redirect_off_loopback() -> None:
    from http.server import BaseHTTPRequestHandler

    from loopback import LoopbackServer

    class Page(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            body = (
                b'<form method="post" action="/go"><button type="submit">Reconnect OAuth'
                b"</button></form>"
            )
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            self.send_response(303)
            self.send_header("Location", "http://example.com/oauth/")
            self.send_header("Content-Length", "0")
            self.end_headers()

    with LoopbackServer(Page) as server, pytest.raises(ReconnectError, match=r"example\.com"):
        reconnect_via_ui(server.url + "/ui/page")


def test_person_gives_up_at_the_timeout(emu: Emulator) -> None:
    with pytest.raises(ReconnectError, match="timed out"):
        reconnect_via_ui(page_of(emu, EXPIRED), timeout=0)
