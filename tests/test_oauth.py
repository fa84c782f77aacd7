"""OAuth units: authorize URL, callback and state checks, the loopback listener, verification,
refresh with rotation, environment logins and the one-account grants of apply's api path."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from pydantic import SecretStr

from pinmigrate import redact
from pinmigrate.errors import AuthError, ConfigError, ExitCode, PinmigrateError, UsageError
from pinmigrate.http import HttpClient
from pinmigrate.logins import AdAccountAccess, Login, LoginStore
from pinmigrate.oauth import (
    AdobeGrants,
    Callback,
    CallbackListener,
    LoginResolver,
    NonInteractiveLoginResolver,
    authorization_url,
    code_from_callback,
    environment_login,
    fresh_login,
    login_from_grant,
    needs_refresh,
    parse_pasted,
    parse_scopes,
    parse_token_text,
    token_digest,
    token_expiries,
)
from pinmigrate.oauth.grants import pkce_challenge
from pinmigrate.oauth.listener import printable
from pinmigrate.oauth.resolvers import _open_browser, browser_environment
from pinmigrate.pinterest import PinterestClient
from pinmigrate.settings import Settings, load_settings

API = "https://api.pinterest.test/v5"
NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
SCOPES = "ads:read,ads:write,user_accounts:read"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_settings(tmp_path: Path, **extra: str) -> Settings:
    env = {
        "PINMIGRATE_PINTEREST_APP_ID": "1234567",
        "PINMIGRATE_PINTEREST_APP_SECRET": "app-secret-value-123",
        "PINMIGRATE_PINTEREST_API_URL": API,
        "PINMIGRATE_PINTEREST_OAUTH_URL": "https://www.pinterest.test/oauth/",
        "PINMIGRATE_PINTEREST_REDIRECT_URI": f"http://localhost:{free_port()}/",
        "PINMIGRATE_STATE_DIR": str(tmp_path / "state"),
    }
    env.update(extra)
    return load_settings(env=env)


class FakePinterest:
    """An in-memory Pinterest: rotating refresh tokens (the old one dies), two users."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counter = itertools.count(1)
        self.users = {
            "1000000001": {"id": "1000000001", "username": "emu_marketer"},
            "1000000002": {"id": "1000000002", "username": "emu_analyst"},
        }
        self.ad = {
            "1000000001": [
                {"id": str(549755885175 + i), "name": f"Account {i}", "permissions": ["ADMIN"]}
                for i in range(4)
            ],
            "1000000002": [{"id": "549755885175", "name": "Account 0", "permissions": ["ANALYST"]}],
        }
        self.access: dict[str, str] = {}
        self.refresh_tokens: dict[str, str] = {}
        self.codes: dict[str, str] = {}
        self.refresh_calls = 0
        self.exchange_calls = 0
        self.scope = "ads:read ads:write user_accounts:read"

    def grant(self, user_id: str) -> dict[str, Any]:
        n = next(self.counter)
        access, refresh = f"pina_{user_id}_{n}", f"pinr_{user_id}_{n}"
        self.access[access] = user_id
        self.refresh_tokens[refresh] = user_id
        return {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "bearer",
            "expires_in": 2592000,
            "refresh_token_expires_in": 5184000,
            "scope": self.scope,
        }

    def code_for(self, user_id: str) -> str:
        code = f"code_{user_id}_{next(self.counter)}"
        self.codes[code] = user_id
        return code

    def exchange_code(self, code: str) -> dict[str, Any]:
        with self.lock:
            self.exchange_calls += 1
            user = self.codes.pop(code, None)
            if user is None:
                raise AuthError("Pinterest refused the authorization code: invalid (code 1)")
            return self.grant(user)

    def refresh(self, refresh_token: str) -> dict[str, Any]:
        with self.lock:
            self.refresh_calls += 1
            user = self.refresh_tokens.pop(refresh_token, None)
            if user is None:
                raise AuthError("Pinterest refused the refresh token: expired (code 2)")
            return self.grant(user)

    def user_account(self, access_token: str) -> dict[str, Any]:
        user = self.access.get(access_token)
        if user is None:
            raise AuthError("Pinterest refused the access token for /user_account")
        return dict(self.users[user])

    def ad_accounts(self, access_token: str) -> list[dict[str, Any]]:
        user = self.access.get(access_token)
        if user is None:
            raise AuthError("Pinterest refused the access token for /ad_accounts")
        return [dict(a) for a in self.ad[user]]


@pytest.fixture
def fake() -> FakePinterest:
    return FakePinterest()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def store(settings: Settings) -> LoginStore:
    return LoginStore(settings.state_dir)


def stored_login(fake: FakePinterest, user_id: str = "1000000001", **kw: Any) -> Login:
    token = fake.grant(user_id)
    values: dict[str, Any] = {
        "user_id": user_id,
        "username": fake.users[user_id]["username"],
        "ad_accounts": [AdAccountAccess(**a) for a in fake.ad[user_id]],
        "access_token": SecretStr(token["access_token"]),
        "refresh_token": SecretStr(token["refresh_token"]),
        "access_expires_at": NOW + timedelta(days=30),
        "refresh_expires_at": NOW + timedelta(days=60),
    }
    values.update(kw)
    return Login.model_validate(values)


# --- scopes, expiries, token text ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ads:read,ads:write", ["ads:read", "ads:write"]),
        ("ads:read ads:write  user_accounts:read", ["ads:read", "ads:write", "user_accounts:read"]),
        ("ads:read, ads:read", ["ads:read"]),
        (["a", "b"], ["a", "b"]),
        (None, []),
        ("", []),
    ],
)
def test_parse_scopes(value: Any, expected: list[str]) -> None:
    assert parse_scopes(value) == expected


def test_token_expiries() -> None:
    access, refresh = token_expiries(
        {"refresh_token": "r", "expires_in": 60, "refresh_token_expires_at": 1735689600}, NOW
    )
    assert access == NOW + timedelta(seconds=60)
    assert refresh == datetime(2025, 1, 1, tzinfo=UTC)
    _, in_ms = token_expiries(
        {"refresh_token": "r", "refresh_token_expires_at": 1735689600000}, NOW
    )
    assert in_ms == datetime(2025, 1, 1, tzinfo=UTC)
    _, relative = token_expiries({"refresh_token": "r", "refresh_token_expires_in": "3600"}, NOW)
    assert relative == NOW + timedelta(hours=1)
    assert token_expiries({"access_token": "a", "refresh_token_expires_in": 5}, NOW) == (None, None)
    assert token_expiries({"expires_in": "soon"}, NOW) == (None, None)


def test_needs_refresh_within_five_minutes() -> None:
    login = Login(user_id="1", access_token=SecretStr("a"), access_expires_at=NOW)
    assert needs_refresh(login, NOW - timedelta(minutes=4))
    assert needs_refresh(login, NOW + timedelta(days=1))
    assert not needs_refresh(login, NOW - timedelta(minutes=6))
    assert not needs_refresh(Login(user_id="1", access_token=SecretStr("a")), NOW)


def test_parse_token_text() -> None:
    assert parse_token_text("  pina_bare_token\n") == {"access_token": "pina_bare_token"}
    data = parse_token_text('{"access_token": "pina_j", "refresh_token": "pinr_j"}')
    assert data["refresh_token"] == "pinr_j"
    assert "pinr_j" not in redact.redact("pinr_j")
    for bad in ("", "two words", '{"refresh_token": "x"}', '{"access_token": '):
        with pytest.raises(UsageError) as info:
            parse_token_text(bad)
        assert info.value.exit_code == ExitCode.USAGE
        assert "pina" not in info.value.line()


# --- authorize URL and callbacks -------------------------------------------------------


def test_authorization_url_joins_scopes_with_commas(settings: Settings) -> None:
    url = authorization_url(settings, "S" * 43)
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert url.startswith("https://www.pinterest.test/oauth/?")
    assert query == {
        "response_type": "code",
        "client_id": "1234567",
        "redirect_uri": settings.pinterest.redirect_uri,
        "scope": SCOPES,
        "state": "S" * 43,
    }


def test_http_oauth_url_only_for_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT", raising=False)
    loopback = make_settings(tmp_path, PINMIGRATE_PINTEREST_OAUTH_URL="http://127.0.0.1:9/oauth/")
    assert authorization_url(loopback, "s").startswith("http://127.0.0.1:9/oauth/?")
    import os

    assert "OAUTHLIB_INSECURE_TRANSPORT" not in os.environ
    # Another host over plain http is refused with the settings, before any URL is built.
    with pytest.raises(ConfigError, match=r"pinterest\.oauth_url .*must be https"):
        make_settings(tmp_path, PINMIGRATE_PINTEREST_OAUTH_URL="http://pinterest.test/oauth/")


def test_loopback_oauth_url_never_sets_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # OAUTHLIB_INSECURE_TRANSPORT would let every thread's oauthlib use plain http.
    import os

    from requests_oauthlib import OAuth2Session

    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT", raising=False)
    seen: list[str | None] = []
    build = OAuth2Session.authorization_url

    def spy(self: OAuth2Session, url: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(os.environ.get("OAUTHLIB_INSECURE_TRANSPORT"))
        return build(self, url, *args, **kwargs)

    monkeypatch.setattr(OAuth2Session, "authorization_url", spy)
    loopback = make_settings(
        tmp_path, PINMIGRATE_PINTEREST_OAUTH_URL="http://localhost:9/oauth/?display=page"
    )
    url = authorization_url(loopback, "s")
    assert url.startswith("http://localhost:9/oauth/?display=page&")
    assert parse_qs(urlsplit(url).query)["state"] == ["s"]
    assert seen == [None]


def test_callback_checks() -> None:
    good = Callback(code="c0de_value", state="expected")
    assert code_from_callback(good, "expected") == "c0de_value"
    cases = [
        (Callback(code="c", state="other"), "does not match"),
        (Callback(code="c"), "carries no state"),
        (Callback(code="c", state=""), "carries no state"),
        (Callback(state="expected"), "carries no code"),
        (
            Callback(error="access_denied", error_description="The user said no", state="expected"),
            "The user said no",
        ),
        (Callback(error="access_denied"), "access_denied"),
    ]
    for callback, message in cases:
        with pytest.raises(AuthError, match=message) as info:
            code_from_callback(callback, "expected")
        assert info.value.exit_code == ExitCode.AUTH


def test_parse_pasted() -> None:
    url = "http://localhost:8085/?code=pasted_code_1&state=st"
    assert parse_pasted(url, "st") == "pasted_code_1"
    assert parse_pasted("?code=pasted_code_2&state=st", "st") == "pasted_code_2"
    assert parse_pasted("  bare_code_3 ", "st") == "bare_code_3"
    with pytest.raises(AuthError, match="does not match"):
        parse_pasted("http://localhost:8085/?code=x&state=evil", "st")
    with pytest.raises(AuthError, match="no state"):
        parse_pasted("http://localhost:8085/?code=x", "st")
    with pytest.raises(AuthError, match="carries no code, state or error"):
        parse_pasted("http://localhost:8085/", "st")
    with pytest.raises(AuthError):
        parse_pasted("not a code at all", "st")
    with pytest.raises(AuthError, match="nothing was pasted"):
        parse_pasted("   ", "st")


# --- the loopback listener -------------------------------------------------------------


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def redirected_to(url: str) -> str:
    """Where ``url`` redirects (the listener's one-time start address: the authorize URL)."""
    opener = urllib.request.build_opener(_NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as info:
        opener.open(url, timeout=10)
    info.value.close()
    assert info.value.code == 302, info.value.code
    return str(info.value.headers["Location"])


class Browser:
    """An opener that visits the redirect URI like a browser coming back from Pinterest.

    It is given the listener's one-time start address, follows it to the authorize URL
    (``before`` sees that URL, then the callbacks it sends first), and comes back."""

    def __init__(
        self,
        query: Callable[[str], str],
        extra: tuple[str, ...] = (),
        before: Callable[[str], list[str]] | None = None,
    ) -> None:
        self.query = query
        self.extra = extra
        self.before = before
        self.opened: list[str] = []
        self.pages: list[tuple[int, str]] = []
        self.thread: threading.Thread | None = None

    def __call__(self, url: str) -> bool:
        self.opened.append(url)
        authorize = redirected_to(url)
        params = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
        redirect = params["redirect_uri"]
        first = self.before(authorize) if self.before else []

        def visit() -> None:
            for path in self.extra:
                self.pages.append(fetch(redirect.rstrip("/") + path))
            for query in first:
                self.pages.append(fetch(f"{redirect}?{query}"))
            self.pages.append(fetch(f"{redirect}?{self.query(params['state'])}"))

        self.thread = threading.Thread(target=visit, daemon=True)
        self.thread.start()
        return True

    def done(self) -> list[tuple[int, str]]:
        """The pages the browser got, once it has read them all."""
        assert self.thread is not None
        self.thread.join(timeout=30)
        return self.pages


def resolver(
    settings: Settings, store: LoginStore, fake: FakePinterest, notes: list[str], **kw: Any
) -> LoginResolver:
    return LoginResolver(settings, store, fake, notify=notes.append, now=lambda: NOW, **kw)


@pytest.mark.filterwarnings("error")
def test_browser_login_end_to_end_in_process(
    settings: Settings, store: LoginStore, fake: FakePinterest
) -> None:
    code = fake.code_for("1000000001")
    notes: list[str] = []
    browser = Browser(lambda state: f"code={code}&state={state}", extra=("/favicon.ico",))
    login = resolver(settings, store, fake, notes, open_browser=browser).browser(timeout=30)
    pages = browser.done()
    assert login.user_id == "1000000001" and login.source == "browser"
    assert len(login.ad_accounts) == 4
    assert login.access_expires_at == NOW + timedelta(days=30)
    assert store.get("1000000001") == login
    assert pages[0][0] == 404  # /favicon.ico did not end the wait
    status, page = pages[1]
    assert status == 200 and "Logged in" in page and "close this tab" in page
    assert code not in page
    # The URL is always printed, with a state of at least 128 bits.
    url = next(n for n in notes if "oauth/?" in n).split("\n")[-1]
    state = parse_qs(urlsplit(url).query)["state"][0]
    assert len(state) >= 43


def test_a_refusal_with_the_right_state_ends_the_login_with_pinterests_words(
    settings: Settings, store: LoginStore, fake: FakePinterest
) -> None:
    browser = Browser(
        lambda state: f"error=access_denied&error_description=Denied+by+user&state={state}"
    )
    with pytest.raises(AuthError, match="Denied by user") as info:
        resolver(settings, store, fake, [], open_browser=browser).browser(timeout=30)
    assert info.value.exit_code == ExitCode.AUTH
    assert fake.exchange_calls == 0
    assert not store.path.exists()
    status, page = browser.done()[-1]
    assert status == 400 and "Login failed" in page


def test_callbacks_with_a_wrong_or_missing_state_are_ignored_and_the_right_one_wins(
    settings: Settings, store: LoginStore, fake: FakePinterest
) -> None:
    """Another local user racing the browser to the listener cannot end the login: their
    callbacks (a code of their own, a forged refusal) are answered with an error page and
    the wait goes on until Pinterest's real redirect."""
    theirs = fake.code_for("1000000002")
    ours = fake.code_for("1000000001")
    notes: list[str] = []
    browser = Browser(
        lambda state: f"code={ours}&state={state}",
        before=lambda url: [
            f"code={theirs}&state=guessed-state",
            f"code={theirs}",
            "error=access_denied&error_description=forged&state=wrong",
        ],
    )
    login = resolver(settings, store, fake, notes, open_browser=browser).browser(timeout=30)
    assert login.user_id == "1000000001"
    assert [status for status, _ in browser.done()] == [400, 400, 400, 200]
    assert all("ignored" in page for _, page in browser.pages[:3])
    assert fake.exchange_calls == 1 and theirs in fake.codes  # their code was never used
    assert sum("Ignored an answer whose state is wrong or missing" in n for n in notes) == 3


def test_only_wrong_state_callbacks_time_out_and_say_so(
    settings: Settings, store: LoginStore, fake: FakePinterest
) -> None:
    code = fake.code_for("1000000002")
    browser = Browser(lambda state: f"code={code}&state=not-{state}")
    with pytest.raises(
        AuthError, match=r"timed out after 1 s .*ignored 1 answer\(s\) .*wrong or missing state"
    ) as info:
        resolver(settings, store, fake, [], open_browser=browser).browser(timeout=1)
    assert info.value.exit_code == ExitCode.AUTH
    assert fake.exchange_calls == 0 and not store.path.exists()
    assert browser.done()[-1][0] == 400


def test_the_browser_command_gets_a_one_time_address_without_the_state(
    settings: Settings, store: LoginStore, fake: FakePinterest
) -> None:
    code = fake.code_for("1000000001")
    notes: list[str] = []
    browser = Browser(lambda state: f"code={code}&state={state}")
    resolver(settings, store, fake, notes, open_browser=browser).browser(timeout=30)
    browser.done()
    printed = next(n for n in notes if "oauth/?" in n).split("\n")[-1]
    state = parse_qs(urlsplit(printed).query)["state"][0]
    [opened] = browser.opened
    assert state not in opened and "state" not in opened and "oauth" not in opened
    parts = urlsplit(opened)
    assert (
        parts.path == "/start" and parts.netloc == urlsplit(settings.pinterest.redirect_uri).netloc
    )
    assert len(parse_qs(parts.query)["n"][0]) >= 43


def test_a_one_time_address_opened_twice_ends_the_login(
    settings: Settings, store: LoginStore, fake: FakePinterest
) -> None:
    """Someone who read the address from the browser command's argv and opened it first
    learns the authorize URL; the browser's own visit then shows the theft, and the login
    stops before any callback is trusted."""
    code = fake.code_for("1000000002")
    pages: list[tuple[int, str]] = []
    threads: list[threading.Thread] = []

    def thief_then_browser(url: str) -> bool:
        authorize = redirected_to(url)  # the other user
        pages.append(fetch(url))  # the person's browser, second
        state = parse_qs(urlsplit(authorize).query)["state"][0]
        redirect = settings.pinterest.redirect_uri

        def inject() -> None:
            with contextlib.suppress(OSError):  # the listener may be closed by then
                pages.append(fetch(f"{redirect}?code={code}&state={state}"))

        threads.append(threading.Thread(target=inject, daemon=True))
        threads[-1].start()
        return True

    with pytest.raises(AuthError, match="opened twice") as info:
        resolver(settings, store, fake, [], open_browser=thief_then_browser).browser(timeout=30)
    assert info.value.exit_code == ExitCode.AUTH
    for thread in threads:
        thread.join(timeout=15)
    assert pages[0][0] == 410
    assert fake.exchange_calls == 0 and not store.path.exists()


def test_a_wrong_start_nonce_is_not_found(settings: Settings) -> None:
    with CallbackListener(settings.pinterest.redirect_uri, state="s") as listener:
        real = listener.start_url("https://www.pinterest.test/oauth/?state=s")
        forged = real.split("?n=")[0] + "?n=" + "A" * 43
        assert fetch(forged)[0] == 404
        assert fetch(real.split("?")[0])[0] == 404
        assert redirected_to(real) == "https://www.pinterest.test/oauth/?state=s"


def get_with_host(url: str, host: str) -> int:
    request = urllib.request.Request(url, headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def test_the_listener_answers_only_its_own_loopback_host_names(
    settings: Settings, store: LoginStore, fake: FakePinterest
) -> None:
    """A web page that rebinds its own name to 127.0.0.1 sends its name as Host: refused,
    ignored, and the real callback still logs in."""
    ours = fake.code_for("1000000001")
    port = urlsplit(settings.pinterest.redirect_uri).port
    statuses: list[int] = []

    def browser(url: str) -> bool:
        state = parse_qs(urlsplit(redirected_to(url)).query)["state"][0]
        callback = f"http://127.0.0.1:{port}/?code={ours}&state={state}"

        def visit() -> None:
            for host in (f"evil.example:{port}", f"localhost:{port + 1}", "localhost", ""):
                statuses.append(get_with_host(callback, host))
            statuses.append(get_with_host(callback, f"127.0.0.1:{port}"))

        threading.Thread(target=visit, daemon=True).start()
        return True

    notes: list[str] = []
    login = resolver(settings, store, fake, notes, open_browser=browser).browser(timeout=30)
    assert login.user_id == "1000000001"
    assert statuses == [400, 400, 400, 400, 200]
    assert sum("another host name" in n for n in notes) == 4


def test_allowed_hosts_follow_the_address_listened_on() -> None:
    port = free_port()
    with CallbackListener(f"http://localhost:{port}/") as listener:
        assert listener.allowed_hosts() == {f"localhost:{port}", f"127.0.0.1:{port}"}
    with CallbackListener(f"http://127.0.0.1:{port}/") as listener:
        assert listener.allowed_hosts() == {f"localhost:{port}", f"127.0.0.1:{port}"}
    if socket.has_ipv6:
        try:
            with CallbackListener(f"http://[::1]:{port}/") as listener:
                assert listener.allowed_hosts() == {f"localhost:{port}", f"[::1]:{port}"}
        except PinmigrateError:
            pass  # no IPv6 loopback on this machine


def test_control_characters_from_a_callback_are_not_printed() -> None:
    callback = Callback(
        error="access_denied\x1b[2J",
        error_description="Denied\x1b]0;owned\x07 by\r\nuser\u202e\x9b31m" + "x" * 1000,
        state="expected",
    )
    with pytest.raises(AuthError) as info:
        code_from_callback(callback, "expected")
    line = info.value.line()
    assert "Denied ]0;owned by user" in line and "access_denied [2J" in line
    assert not [ch for ch in line if ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 or ch == "\u202e"]
    assert len(line) < 700
    assert printable("a\tb\u2028c\u200bd") == "a b cd"


def test_a_refused_code_exchange_is_shown_in_the_browser_and_raised(
    settings: Settings, store: LoginStore, fake: FakePinterest
) -> None:
    browser = Browser(lambda state: f"code=never_issued&state={state}")
    with pytest.raises(AuthError, match="refused the authorization code"):
        resolver(settings, store, fake, [], open_browser=browser).browser(timeout=30)
    assert "refused the authorization code" in browser.done()[-1][1]
    assert not store.path.exists()


def test_listener_rejects_non_loopback_redirects() -> None:
    with pytest.raises(ConfigError) as info:
        CallbackListener("http://example.com:8085/")
    assert info.value.exit_code == ExitCode.USAGE


def test_listener_binds_loopback_only(settings: Settings) -> None:
    with CallbackListener(settings.pinterest.redirect_uri) as listener:
        assert listener.host == "127.0.0.1"
        assert listener._server is not None
        assert listener._server.server_address[0] == "127.0.0.1"


def test_port_in_use_is_a_clear_error(settings: Settings) -> None:
    port = urlsplit(settings.pinterest.redirect_uri).port
    assert port is not None
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        with (
            pytest.raises(PinmigrateError) as info,
            CallbackListener(settings.pinterest.redirect_uri),
        ):
            pass
    assert info.value.exit_code == ExitCode.FAILED
    assert f"127.0.0.1:{port}" in info.value.line()
    assert "pinterest.redirect_uri" in info.value.line()
    assert "PINMIGRATE_PINTEREST_REDIRECT_URI" in info.value.line()


def test_timeout_uses_the_injected_clock(settings: Settings) -> None:
    ticks = iter([0.0, 301.0])
    listener = CallbackListener(settings.pinterest.redirect_uri, clock=lambda: next(ticks))
    with listener, pytest.raises(AuthError, match="timed out after 300 s") as info:
        listener.wait(300, lambda cb: (None, ""))
    assert info.value.exit_code == ExitCode.AUTH


def test_ctrl_c_closes_the_listener_and_says_so(
    settings: Settings, store: LoginStore, fake: FakePinterest
) -> None:
    def clock() -> float:
        raise KeyboardInterrupt

    notes: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        LoginResolver(
            settings, store, fake, notify=notes.append, open_browser=lambda url: True, clock=clock
        ).browser(timeout=30)
    assert "Login cancelled; nothing was stored." in notes
    # The port is free again.
    with CallbackListener(settings.pinterest.redirect_uri):
        pass


def test_a_browser_that_cannot_start_still_leaves_the_url(
    settings: Settings, store: LoginStore, fake: FakePinterest
) -> None:
    ticks = iter([0.0, 99.0])
    notes: list[str] = []

    def broken(url: str) -> bool:
        raise OSError("no display")

    with pytest.raises(AuthError, match="timed out"):
        LoginResolver(
            settings,
            store,
            fake,
            notify=notes.append,
            open_browser=broken,
            clock=lambda: next(ticks),
        ).browser(timeout=5)
    assert any("oauth/?" in n for n in notes)
    assert any("Could not start a browser" in n for n in notes)


def test_paste_flow(settings: Settings, store: LoginStore, fake: FakePinterest) -> None:
    code = fake.code_for("1000000002")
    notes: list[str] = []

    def prompt(text: str) -> str:
        url = notes[-1].split("\n")[-1]
        state = parse_qs(urlsplit(url).query)["state"][0]
        return f"{settings.pinterest.redirect_uri}?code={code}&state={state}"

    login = resolver(settings, store, fake, notes, prompt=prompt).paste()
    assert login.username == "emu_analyst" and login.source == "paste"
    assert store.get("1000000002") is not None


def test_non_interactive_resolver_never_prompts(
    settings: Settings, store: LoginStore, fake: FakePinterest
) -> None:
    def never(*args: Any) -> Any:
        raise AssertionError("must not be called")

    ni = NonInteractiveLoginResolver(
        settings, store, fake, notify=never, prompt=never, open_browser=never
    )
    for call in (lambda: ni.login(), lambda: ni.login(no_browser=True)):
        with pytest.raises(AuthError) as info:
            call()
        assert info.value.exit_code == ExitCode.AUTH
        assert "PINMIGRATE_PINTEREST_REFRESH_TOKEN" in info.value.line()
        assert "PINMIGRATE_PINTEREST_ACCESS_TOKEN" in info.value.line()


# --- verification ----------------------------------------------------------------------


def test_missing_scopes_are_listed_and_nothing_is_stored(
    settings: Settings, store: LoginStore, fake: FakePinterest
) -> None:
    token = fake.grant("1000000001") | {"scope": "ads:read,user_accounts:read,pins:read"}
    with pytest.raises(AuthError, match="needs ads:write") as info:
        login_from_grant(fake, store, token, settings=settings, source="browser", now=NOW)
    assert info.value.exit_code == ExitCode.AUTH
    assert not store.path.exists()


def test_extra_scopes_space_separated_are_fine(
    settings: Settings, store: LoginStore, fake: FakePinterest
) -> None:
    token = fake.grant("1000000001") | {"scope": "pins:read ads:read ads:write user_accounts:read"}
    login = login_from_grant(fake, store, token, settings=settings, source="token", now=NOW)
    assert login.scopes == ["pins:read", "ads:read", "ads:write", "user_accounts:read"]


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


def real_client(settings: Settings) -> PinterestClient:
    return PinterestClient(settings, http=HttpClient(service="pinterest", sleep=lambda s: None))


def test_verification_reads_every_ad_account_page(
    settings: Settings, store: LoginStore, mock: responses.RequestsMock
) -> None:
    mock.post(
        f"{API}/oauth/token",
        json={
            "access_token": "pina_from_code",
            "refresh_token": "pinr_from_code",
            "expires_in": 2592000,
            "refresh_token_expires_at": 1740000000,
            "scope": "user_accounts:read ads:write ads:read",
        },
    )
    mock.get(f"{API}/user_account", json={"id": "77", "username": "paged"})
    mock.get(
        f"{API}/ad_accounts",
        json={"items": [{"id": "1", "name": "One", "permissions": ["ADMIN"]}], "bookmark": "b2"},
        match=[responses.matchers.query_param_matcher({"page_size": "250"})],
    )
    mock.get(
        f"{API}/ad_accounts",
        json={"items": [{"id": 2, "name": "Two", "permissions": []}], "bookmark": None},
        match=[responses.matchers.query_param_matcher({"page_size": "250", "bookmark": "b2"})],
    )
    client = real_client(settings)
    login = LoginResolver(
        settings, store, client, notify=lambda m: None, now=lambda: NOW
    )._exchange("the_code", source="browser")
    assert [a.id for a in login.ad_accounts] == ["1", "2"]
    assert login.refresh_expires_at == datetime.fromtimestamp(1740000000, UTC)
    body = mock.calls[0].request.body
    assert "continuous_refresh=true" in str(body)
    assert mock.calls[0].request.headers["Authorization"].startswith("Basic ")


def test_pinterest_error_on_exchange_is_shown_as_is(
    settings: Settings, store: LoginStore, mock: responses.RequestsMock
) -> None:
    mock.post(f"{API}/oauth/token", status=400, json={"code": 1, "message": "Invalid code."})
    resolver_ = LoginResolver(
        settings, store, real_client(settings), notify=lambda m: None, now=lambda: NOW
    )
    with pytest.raises(AuthError, match=r"Invalid code\. \(code 1\)") as info:
        resolver_._exchange("used_code", source="browser")
    assert info.value.exit_code == ExitCode.AUTH
    assert not store.path.exists()


# --- refresh ---------------------------------------------------------------------------


def test_fresh_login_leaves_a_valid_token_alone(
    settings: Settings, store: LoginStore, fake: FakePinterest
) -> None:
    login = stored_login(fake)
    store.put(login)
    assert fresh_login(login, settings, store, now=NOW, client=fake) is login
    assert fake.refresh_calls == 0


def test_fresh_login_refreshes_and_stores_the_rotated_token(
    settings: Settings, store: LoginStore, fake: FakePinterest
) -> None:
    login = stored_login(fake, access_expires_at=NOW + timedelta(minutes=4))
    store.put(login)
    fresh = fresh_login(login, settings, store, now=NOW, client=fake)
    assert fake.refresh_calls == 1
    assert fresh.access_token != login.access_token
    assert fresh.refresh_token != login.refresh_token
    assert fresh.access_expires_at == NOW + timedelta(days=30)
    assert fresh.ad_accounts == login.ad_accounts
    assert store.get(login.user_id) == fresh
    # The rotated token works; the old one is dead.
    assert fresh.refresh_token is not None
    assert fake.refresh_tokens[fresh.refresh_token.get_secret_value()] == login.user_id


def test_fresh_login_uses_a_rotation_another_process_already_stored(
    settings: Settings, store: LoginStore, fake: FakePinterest
) -> None:
    old = stored_login(fake, access_expires_at=NOW - timedelta(hours=1))
    newer = stored_login(fake)  # what the other process stored after its refresh
    store.put(newer)
    assert fresh_login(old, settings, store, now=NOW, client=fake) == newer
    assert fake.refresh_calls == 0


@pytest.mark.parametrize(
    ("changes", "message", "calls"),
    [
        ({"refresh_token": SecretStr("pinr_unknown")}, "cannot refresh", 1),
        ({"refresh_token": None}, "cannot be refreshed", 0),
        ({"refresh_expires_at": NOW - timedelta(days=1)}, "refresh token expired", 0),
    ],
)
def test_refusals_say_run_auth_login(
    settings: Settings,
    store: LoginStore,
    fake: FakePinterest,
    changes: dict[str, Any],
    message: str,
    calls: int,
) -> None:
    login = stored_login(fake, access_expires_at=NOW - timedelta(days=1)).model_copy(update=changes)
    store.put(login)
    with pytest.raises(AuthError, match=message) as info:
        fresh_login(login, settings, store, now=NOW, client=fake)
    assert "pinmigrate auth login" in info.value.line()
    assert info.value.exit_code == ExitCode.AUTH
    assert fake.refresh_calls == calls
    assert store.get(login.user_id) == login


def test_concurrent_refreshes_in_threads_refresh_once(
    settings: Settings, fake: FakePinterest
) -> None:
    login = stored_login(fake, access_expires_at=NOW)
    LoginStore(settings.state_dir).put(login)
    results: list[Login] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(
                fresh_login(login, settings, LoginStore(settings.state_dir), now=NOW, client=fake)
            )
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert fake.refresh_calls == 1
    final = LoginStore(settings.state_dir).get(login.user_id)
    assert final is not None and all(r == final for r in results)
    assert final.refresh_token is not None
    assert final.refresh_token.get_secret_value() in fake.refresh_tokens


# --- environment logins ----------------------------------------------------------------


def test_environment_refresh_token_login(tmp_path: Path, fake: FakePinterest) -> None:
    env_token = fake.grant("1000000001")["refresh_token"]
    settings = make_settings(tmp_path, PINMIGRATE_PINTEREST_REFRESH_TOKEN=env_token)
    store = LoginStore(settings.state_dir)
    notes: list[str] = []
    login = environment_login(settings, store, fake, now=NOW, notify=notes.append)
    assert login is not None and login.source == "environment"
    assert login.origin == token_digest(env_token)
    assert len(login.ad_accounts) == 4
    assert store.get("1000000001") == login
    assert notes and str(store.path) in notes[0]
    assert env_token not in notes[0]
    assert login.refresh_token is not None
    assert login.refresh_token.get_secret_value() not in notes[0]
    # The next run with the same (now dead) setting continues from the stored descendant.
    again = environment_login(settings, store, fake, now=NOW, notify=notes.append)
    assert again is not None and again.access_token == login.access_token
    assert fake.refresh_calls == 1


def test_environment_refresh_token_refused(tmp_path: Path, fake: FakePinterest) -> None:
    settings = make_settings(tmp_path, PINMIGRATE_PINTEREST_REFRESH_TOKEN="pinr_bogus")
    store = LoginStore(settings.state_dir)
    with pytest.raises(AuthError) as info:
        environment_login(settings, store, fake, now=NOW)
    assert "PINMIGRATE_PINTEREST_REFRESH_TOKEN" in info.value.line()
    assert "pinr_bogus" not in info.value.line()
    assert not store.path.exists()


def test_environment_access_token_login(tmp_path: Path, fake: FakePinterest) -> None:
    access = fake.grant("1000000002")["access_token"]
    settings = make_settings(tmp_path, PINMIGRATE_PINTEREST_ACCESS_TOKEN=access)
    store = LoginStore(settings.state_dir)
    login = environment_login(settings, store, fake, now=NOW)
    assert login is not None and login.refresh_token is None and login.source == "environment"
    assert store.get("1000000002") == login
    bad = make_settings(tmp_path, PINMIGRATE_PINTEREST_ACCESS_TOKEN="pina_bogus")
    with pytest.raises(AuthError, match="PINMIGRATE_PINTEREST_ACCESS_TOKEN"):
        environment_login(bad, store, fake, now=NOW)


def test_an_access_token_login_keeps_the_stored_refresh_token(
    tmp_path: Path, fake: FakePinterest
) -> None:
    settings = make_settings(tmp_path)
    store = LoginStore(settings.state_dir)
    browser = stored_login(fake)
    store.put(browser)
    access = fake.grant("1000000001")["access_token"]
    with_access = make_settings(tmp_path, PINMIGRATE_PINTEREST_ACCESS_TOKEN=access)
    login = environment_login(with_access, store, fake, now=NOW)
    assert login is not None
    kept = store.get("1000000001")
    assert kept is not None
    assert kept.access_token.get_secret_value() == access
    assert kept.refresh_token == browser.refresh_token
    assert kept.refresh_expires_at == browser.refresh_expires_at


def test_an_access_token_login_drops_an_expired_stored_refresh_token(
    tmp_path: Path, fake: FakePinterest
) -> None:
    settings = make_settings(tmp_path)
    store = LoginStore(settings.state_dir)
    store.put(stored_login(fake, refresh_expires_at=NOW - timedelta(days=1)))
    access = fake.grant("1000000001")["access_token"]
    with_access = make_settings(tmp_path, PINMIGRATE_PINTEREST_ACCESS_TOKEN=access)
    environment_login(with_access, store, fake, now=NOW)
    kept = store.get("1000000001")
    assert kept is not None and kept.refresh_token is None


def test_no_environment_token_means_none(settings: Settings, store: LoginStore) -> None:
    assert environment_login(settings, store, FakePinterest(), now=NOW) is None


# --- AdobeGrants: the api reconnect path's grants --------------------------------------


def grants(
    settings: Settings,
    store: LoginStore,
    fake: FakePinterest,
    notes: list[str],
    user: str = "1000000001",
) -> AdobeGrants:
    """Grants made through the in-process browser; a fresh code for each sign-in."""
    browser = Browser(lambda state: f"code={fake.code_for(user)}&state={state}")
    return AdobeGrants(
        settings,
        store,
        fake,
        resolver=resolver(settings, store, fake, notes, open_browser=browser),
        now=lambda: NOW,
        timeout=30,
    )


def test_each_adobe_account_gets_a_fresh_grant_that_is_never_stored(
    settings: Settings, store: LoginStore, fake: FakePinterest
) -> None:
    own = stored_login(fake)
    store.put(own)
    before = store.path.read_bytes()
    notes: list[str] = []
    source = grants(settings, store, fake, notes)

    first = source.grant_for("'A' (prod, acct-1)", ["549755885175"], sign_in_as="emu_marketer")
    second = source.grant_for("'B' (dev, acct-2)", ["549755885178"])

    assert first.user_id == second.user_id == "1000000001"
    tokens = [
        t.get_secret_value() for g in (first, second) for t in (g.access_token, g.refresh_token)
    ]
    kept = [own.access_token.get_secret_value(), own.refresh_token.get_secret_value()]  # type: ignore[union-attr]
    assert len(set(tokens)) == 4 and not set(tokens) & set(kept)
    assert store.path.read_bytes() == before  # pinmigrate's own login, untouched
    assert fake.exchange_calls == 2 and fake.refresh_calls == 0
    assert all(redact.redact(t) == redact.MASK for t in tokens)
    said = "\n".join(notes)
    assert "Adobe account 'A' (prod, acct-1)" in said and "sign in as emu_marketer" in said
    assert "Adobe account 'B' (dev, acct-2)" in said
    assert not any(t in said for t in tokens)


def test_a_grant_is_never_stored_even_with_no_store_yet(
    settings: Settings, store: LoginStore, fake: FakePinterest
) -> None:
    grants(settings, store, fake, []).grant_for("'A' (prod, acct-1)", ["549755885175"])
    assert not store.path.exists()


def test_the_environment_token_is_never_used_for_an_adobe_grant(
    tmp_path: Path, fake: FakePinterest
) -> None:
    env_token = fake.grant("1000000001")["refresh_token"]
    settings = make_settings(tmp_path, PINMIGRATE_PINTEREST_REFRESH_TOKEN=env_token)
    store = LoginStore(settings.state_dir)
    grant = grants(settings, store, fake, []).grant_for("'A' (prod, acct-1)", ["549755885175"])
    assert env_token not in {
        grant.access_token.get_secret_value(),
        grant.refresh_token.get_secret_value() if grant.refresh_token else None,
    }
    assert fake.refresh_calls == 0 and env_token in fake.refresh_tokens  # not even refreshed
    assert not store.path.exists()


def test_without_a_person_no_grant_is_made_even_with_a_browser_command(
    settings: Settings, store: LoginStore, fake: FakePinterest
) -> None:
    opened: list[str] = []
    headless = NonInteractiveLoginResolver(
        settings,
        store,
        fake,
        notify=lambda m: None,
        open_browser=lambda url: bool(opened.append(url)) or True,
        browser_command=True,
    )
    source = AdobeGrants(settings, store, fake, resolver=headless, now=lambda: NOW)
    assert not source.can_ask
    with pytest.raises(AuthError) as info:
        source.grant_for("'A' (prod, acct-1)", ["549755885175"])
    line = info.value.line()
    assert info.value.exit_code == ExitCode.AUTH
    assert "'A' (prod, acct-1)" in line and "nothing was written" in line
    assert 'reconnect_via = "adobe"' in line and "at a terminal" in line
    assert opened == [] and fake.exchange_calls == 0
    # The default resolver asks nobody either.
    assert not AdobeGrants(settings, store, fake).can_ask


def test_a_grant_whose_user_misses_an_ad_account_is_refused(
    settings: Settings, store: LoginStore, fake: FakePinterest
) -> None:
    source = grants(settings, store, fake, [], user="1000000002")
    with pytest.raises(AuthError) as info:
        source.grant_for("'B' (dev, acct-2)", ["549755885175", "549755885178"])
    line = info.value.line()
    assert "emu_analyst" in line and "549755885178" in line and "nothing was written" in line
    assert not store.path.exists()


def test_a_grant_holding_tokens_pinmigrate_keeps_is_refused(
    settings: Settings, store: LoginStore, fake: FakePinterest
) -> None:
    own = stored_login(fake)
    store.put(own)

    class Replaying(FakePinterest):
        """A Pinterest that answers a sign-in with the tokens of the stored login."""

        def exchange_code(self, code: str) -> dict[str, Any]:
            self.codes.pop(code)
            return {
                "access_token": own.access_token.get_secret_value(),
                "refresh_token": own.refresh_token.get_secret_value(),  # type: ignore[union-attr]
                "expires_in": 2592000,
                "scope": self.scope,
            }

    replaying = Replaying()
    replaying.access = fake.access
    with pytest.raises(AuthError, match="tokens pinmigrate already holds"):
        grants(settings, store, replaying, []).grant_for("'A' (prod, acct-1)", ["549755885175"])


def test_a_failed_sign_in_names_the_account_and_the_way_out(
    settings: Settings, store: LoginStore, fake: FakePinterest
) -> None:
    browser = Browser(lambda state: "error=access_denied&error_description=Denied&state=" + state)
    source = AdobeGrants(
        settings,
        store,
        fake,
        resolver=resolver(settings, store, fake, [], open_browser=browser),
        timeout=30,
    )
    with pytest.raises(AuthError) as info:
        source.grant_for("'A' (prod, acct-1)", ["549755885175"])
    line = info.value.line()
    assert "Adobe account 'A' (prod, acct-1)" in line and "Denied" in line
    assert "auth login" not in line and 'reconnect_via = "adobe"' in line
    status, page = browser.done()[-1]
    assert status == 400 and "Login failed" in page


# --- the browser command -----------------------------------------------------------------


def test_the_browser_environment_holds_no_secret() -> None:
    environ = {
        "PATH": "/usr/bin",
        "DISPLAY": ":0",
        "PINMIGRATE_ADOBE_CLIENT_SECRET": "s1",
        "PINMIGRATE_PINTEREST_APP_SECRET": "s2",
        "PINMIGRATE_PINTEREST_REFRESH_TOKEN": "s3",
        "PINMIGRATE_PINTEREST_ACCESS_TOKEN": "s4",
        "PINMIGRATE_STATE_DIR": "/state",
        "GITHUB_TOKEN": "s5",
        "my_db_password": "s6",
    }
    assert browser_environment(environ) == {"PATH": "/usr/bin", "DISPLAY": ":0"}


def test_the_browser_command_runs_without_pinmigrates_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The BROWSER command (started through webbrowser, as before) sees neither the secrets
    in the environment nor a state in its argv."""
    seen = tmp_path / "seen.txt"
    script = tmp_path / "browser.sh"
    script.write_text(
        f'#!/bin/sh\n{{ printf "%s\\n" "$@"; env; }} > "{seen}.tmp"\nmv "{seen}.tmp" "{seen}"\n'
    )
    script.chmod(0o755)
    secrets_in_env = {
        "PINMIGRATE_ADOBE_CLIENT_SECRET": "adobe-secret-value-1",
        "PINMIGRATE_PINTEREST_APP_SECRET": "app-secret-value-2",
        "PINMIGRATE_PINTEREST_REFRESH_TOKEN": "pinr_refresh_value_3",
        "PINMIGRATE_PINTEREST_ACCESS_TOKEN": "pina_access_value_4",
    }
    for name, value in {**secrets_in_env, "BROWSER": str(script)}.items():
        monkeypatch.setenv(name, value)
    url = "http://localhost:8085/start?n=one-time-nonce"
    assert _open_browser(url, settle=10) is True
    text = seen.read_text()
    assert text.splitlines()[0] == url
    assert "BROWSER=" in text  # the environment was dumped, less the secrets
    for name, value in secrets_in_env.items():
        assert name not in text and value not in text


def test_pkce_when_set_carries_its_verifier_through_the_paste_route(
    tmp_path: Path, store: LoginStore
) -> None:
    """pinterest.pkce: the printed URL holds an S256 challenge, and the code is exchanged
    with the verifier behind it (the paste route, like the browser's)."""

    class Recording(FakePinterest):
        verifiers: list[str | None] = []

        def exchange_code(self, code: str, *, code_verifier: str | None = None) -> dict[str, Any]:
            self.verifiers.append(code_verifier)
            return super().exchange_code(code)

    fake = Recording()
    settings = make_settings(tmp_path, PINMIGRATE_PINTEREST_PKCE="true")
    code = fake.code_for("1000000002")
    notes: list[str] = []
    query: dict[str, list[str]] = {}

    def prompt(text: str) -> str:
        query.update(parse_qs(urlsplit(notes[-1].split("\n")[-1]).query))
        return f"{settings.pinterest.redirect_uri}?code={code}&state={query['state'][0]}"

    resolver(settings, store, fake, notes, prompt=prompt).paste()
    [verifier] = fake.verifiers
    assert verifier is not None and 43 <= len(verifier) <= 128
    assert query["code_challenge_method"] == ["S256"]
    assert query["code_challenge"] == [pkce_challenge(verifier)]
    assert verifier not in "\n".join(notes)


def test_pkce_challenge_is_rfc_7636_s256() -> None:
    # RFC 7636 appendix B.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_only_the_accepted_callbacks_code_is_masked() -> None:
    """A foreign callback's words are not secrets: registering them would let any local
    program blank out words of pinmigrate's output (its `code` here is "pinmigrate")."""
    from pinmigrate.oauth.listener import Callback, code_from_callback

    foreign = Callback.from_query("code=pinmigrate+auth+login&state=guessed")
    with pytest.raises(AuthError):
        code_from_callback(foreign, "the-real-state")
    assert redact.redact("run `pinmigrate auth login` again") == (
        "run `pinmigrate auth login` again"
    )
    ours = Callback.from_query("code=pina-code-0123456789&state=the-real-state")
    assert code_from_callback(ours, "the-real-state") == "pina-code-0123456789"
    assert "pina-code-0123456789" not in redact.redact("code pina-code-0123456789")
