"""A real browser login against the emulator, in every payload shape Pinterest may send.

Pinterest's token answer may join the granted scopes with spaces or commas, may grant more
than asked, and may carry ``expires_in`` as a string ("2592000" in Pinterest's quickstart
fixtures); the authorize URL joins scopes with commas (api-notes.md §4). The emulator serves
each shape (``Config.scope_separator``, ``extra_scope``, ``expires_as_string``); pinmigrate
must store the same login from all of them, and refresh it.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import invoke
from e2e_support import free_port, person_at_terminal

from pinmigrate.emulator import PINTEREST_APP_ID
from pinmigrate.emulator.problems import ConsentError, Problem
from pinmigrate.logins import LoginStore
from pinmigrate.oauth import fresh_login
from pinmigrate.pinterest import PinterestClient
from pinmigrate.settings import DEFAULT_REDIRECT_URI, load_settings

ASKED = ["ads:read", "ads:write", "user_accounts:read"]
DAY = timedelta(days=1)
SLACK = timedelta(minutes=2)


def near(value: datetime | None, expected: datetime) -> bool:
    return value is not None and abs(value - expected) < SLACK


@pytest.mark.parametrize("separator", [" ", ","], ids=["space", "comma"])
@pytest.mark.parametrize("as_string", [False, True], ids=["int", "string"])
def test_a_browser_login_reads_every_token_shape(
    emulator: Any,
    emu_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    separator: str,
    as_string: bool,
) -> None:
    emulator.configure(
        auto_approve=True,
        scope_separator=separator,
        extra_scope="pins:read",
        expires_as_string=as_string,
    )
    redirect = emulator.register_redirect_uri(f"http://127.0.0.1:{free_port()}/")
    env = {**emu_env, "PINMIGRATE_PINTEREST_REDIRECT_URI": redirect}
    opened = person_at_terminal(monkeypatch)
    started = datetime.now(UTC)

    result = invoke(["auth", "login", "--timeout", "20"], env)

    assert result.exit_code == 0, result.stderr
    [opened_url] = opened
    assert "state" not in opened_url  # the browser command got the one-time address
    [url] = [line for line in result.stderr.splitlines() if "/oauth/?" in line]
    query = parse_qs(urlsplit(url).query)
    assert query["scope"] == [",".join(ASKED)] and query["redirect_uri"] == [redirect]
    store = LoginStore(Path(env["PINMIGRATE_STATE_DIR"]))
    [login] = store.load()
    assert login.username == "emu_marketer"
    assert login.scopes == [*ASKED, "pins:read"]
    assert near(login.access_expires_at, started + 30 * DAY)
    assert near(login.refresh_expires_at, started + 60 * DAY)

    # A month on, the refresh answer (same shape) is read the same way.
    later = started + 30 * DAY
    settings = load_settings(env=env)
    fresh = fresh_login(login, settings, store, now=later, client=PinterestClient(settings))
    assert fresh.refresh_token != login.refresh_token
    assert fresh.scopes == login.scopes
    assert near(fresh.access_expires_at, later + 30 * DAY)
    assert store.get(login.user_id) == fresh


@pytest.mark.parametrize("revoke", [True, False], ids=["revoked", "kept"])
def test_refreshes_go_on_whether_or_not_pinterest_revokes_the_replaced_token(
    emulator: Any, emu_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, revoke: bool
) -> None:
    """Each refresh stores its successor at once, so pinmigrate never presents a replaced
    refresh token, whichever reading of Pinterest's rotation holds."""
    emulator.configure(auto_approve=True, revoke_rotated_refresh=revoke)
    redirect = emulator.register_redirect_uri(f"http://127.0.0.1:{free_port()}/")
    env = {**emu_env, "PINMIGRATE_PINTEREST_REDIRECT_URI": redirect}
    person_at_terminal(monkeypatch)
    assert invoke(["auth", "login", "--timeout", "20"], env).exit_code == 0
    store = LoginStore(Path(env["PINMIGRATE_STATE_DIR"]))
    settings = load_settings(env=env)
    [login] = store.load()
    later = datetime.now(UTC) + 31 * DAY  # the access token has expired: a refresh is due
    for _ in range(3):
        current = store.get(login.user_id)
        assert current is not None
        fresh = fresh_login(current, settings, store, now=later, client=PinterestClient(settings))
        assert fresh.refresh_token != current.refresh_token
        assert store.get(login.user_id) == fresh
        # Its access token expires at once, so the next call refreshes again.
        store.update(
            login.user_id, lambda it: it and it.model_copy(update={"access_expires_at": later})
        )
        later += timedelta(minutes=1)


def test_a_login_on_an_unregistered_redirect_uri_stores_nothing(
    emulator: Any, emu_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The consent page refuses the URI, so Pinterest never sends the browser back."""
    emulator.configure(auto_approve=True)
    redirect = f"http://127.0.0.1:{free_port()}/"
    env = {**emu_env, "PINMIGRATE_PINTEREST_REDIRECT_URI": redirect}
    person_at_terminal(monkeypatch)

    result = invoke(["auth", "login", "--timeout", "2"], env)

    assert result.exit_code == 4
    [line] = [x for x in result.stderr.splitlines() if x.startswith("pinmigrate:")]
    assert "nothing was stored" in line and f"register {redirect} on the Pinterest app" in line
    assert LoginStore(Path(env["PINMIGRATE_STATE_DIR"])).load() == []
    assert emulator.requests()["by_endpoint"].get("POST /v5/oauth/token", 0) == 0


# --- PKCE: Pinterest documents none, so pinmigrate sends it only when told to -------------------


def pkce_login(
    emulator: Any, emu_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, *, pkce: bool
) -> tuple[Any, dict[str, list[str]]]:
    """``auth login`` through the emulator; the result and the printed authorize URL's query."""
    emulator.configure(auto_approve=True)
    redirect = emulator.register_redirect_uri(f"http://127.0.0.1:{free_port()}/")
    env = {
        **emu_env,
        "PINMIGRATE_PINTEREST_REDIRECT_URI": redirect,
        "PINMIGRATE_PINTEREST_PKCE": "true" if pkce else "false",
    }
    person_at_terminal(monkeypatch)
    result = invoke(["auth", "login", "--timeout", "3"], env)
    [url] = [line for line in result.stderr.splitlines() if "/oauth/?" in line]
    return result, parse_qs(urlsplit(url).query)


@pytest.mark.parametrize(
    ("served", "pkce"),
    [("verify", False), ("ignore", False), ("refuse", False), ("verify", True), ("ignore", True)],
)
def test_pkce_only_when_set_and_then_s256_whatever_pinterest_does_with_it(
    emulator: Any,
    emu_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    served: str,
    pkce: bool,
) -> None:
    """Off by default, so a Pinterest that refuses PKCE meets none; when set, an S256
    challenge goes out and (under "verify") only its verifier could have got the tokens."""
    emulator.configure(pkce=served)
    result, query = pkce_login(emulator, emu_env, monkeypatch, pkce=pkce)
    assert result.exit_code == 0, result.stderr
    assert LoginStore(Path(emu_env["PINMIGRATE_STATE_DIR"])).load()
    if not pkce:
        assert "code_challenge" not in query and "code_challenge_method" not in query
    else:
        assert query["code_challenge_method"] == ["S256"]
        assert len(query["code_challenge"][0]) == 43


def test_pkce_where_pinterest_refuses_it_fails_cleanly(
    emulator: Any, emu_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.configure(pkce="refuse")
    result, _ = pkce_login(emulator, emu_env, monkeypatch, pkce=True)
    assert result.exit_code == 4
    assert "nothing was stored" in result.stderr and "Traceback" not in result.stderr
    assert LoginStore(Path(emu_env["PINMIGRATE_STATE_DIR"])).load() == []


def s256(verifier: str) -> str:
    """RFC 7636 §4.2, written out here so that the emulator is not checked against itself."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode()[:-1]


def test_the_emulator_verifies_a_pkce_challenge(emulator: Any) -> None:
    """A code issued for an S256 challenge needs the matching verifier (RFC 7636 §4.6); a
    refused verifier leaves the code usable; ``plain`` is served too."""
    pinterest = emulator.state.pinterest
    basic = pinterest.basic_authorization(PINTEREST_APP_ID)
    verifier = "v" * 43 + "-._~0123456789"

    def code_for(challenge: str, method: str | None) -> str:
        params = {
            "client_id": PINTEREST_APP_ID,
            "redirect_uri": DEFAULT_REDIRECT_URI,
            "response_type": "code",
            "scope": "ads:read",
            "state": "s",
            "code_challenge": challenge,
        }
        if method:
            params["code_challenge_method"] = method
        return str(pinterest.grant(pinterest.check_authorize(params)))

    def exchange(code: str, sent: str | None) -> Any:
        form = {"grant_type": "authorization_code", "code": code}
        form["redirect_uri"] = DEFAULT_REDIRECT_URI
        if sent is not None:
            form["code_verifier"] = sent
        return pinterest.token_endpoint(basic, form)

    code = code_for(s256(verifier), "S256")
    for wrong in (None, "w" * 43, s256(verifier)):
        with pytest.raises(Problem) as info:
            exchange(code, wrong)
        assert info.value.status == 400
    assert exchange(code, verifier)["access_token"]
    assert exchange(code_for(verifier, None), verifier)["access_token"]  # plain, the default
    with pytest.raises(ConsentError):
        code_for(s256(verifier), "S512")
    with pytest.raises(ConsentError):
        code_for("short", "S256")
