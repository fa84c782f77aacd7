"""`pinmigrate auth login|status|logout` through the real CLI entry point, Pinterest mocked
with `responses` (the real PinterestClient talks to it)."""

from __future__ import annotations

import json
import socket
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from pydantic import SecretStr
from test_oauth import Browser, FakePinterest, free_port

from pinmigrate.app import App
from pinmigrate.errors import AuthError
from pinmigrate.logins import AdAccountAccess, Login, LoginStore

API = "https://api.pinterest.test/v5"
APP_SECRET = "app-secret-cli-4711"
STATE = "S" * 43


@pytest.fixture
def fake() -> FakePinterest:
    return FakePinterest()


@pytest.fixture
def api(fake: FakePinterest) -> Iterator[responses.RequestsMock]:
    """Pinterest's token endpoint, /user_account and /ad_accounts backed by the fake."""

    def answer(status: int, body: Any) -> tuple[int, dict[str, str], str]:
        return status, {"Content-Type": "application/json"}, json.dumps(body)

    def token(request: Any) -> tuple[int, dict[str, str], str]:
        form = {k: v[0] for k, v in parse_qs(str(request.body)).items()}
        try:
            if form["grant_type"] == "authorization_code":
                return answer(200, fake.exchange_code(form["code"]))
            return answer(200, fake.refresh(form["refresh_token"]))
        except AuthError:
            return answer(400, {"code": 1, "message": "Invalid grant."})

    def bearer(request: Any) -> str:
        return str(request.headers.get("Authorization", "")).removeprefix("Bearer ")

    def user(request: Any) -> tuple[int, dict[str, str], str]:
        try:
            return answer(200, fake.user_account(bearer(request)))
        except AuthError:
            return answer(401, {"code": 2, "message": "Authentication failed."})

    def ads(request: Any) -> tuple[int, dict[str, str], str]:
        try:
            return answer(200, {"items": fake.ad_accounts(bearer(request)), "bookmark": None})
        except AuthError:
            return answer(401, {"code": 2, "message": "Authentication failed."})

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.POST, f"{API}/oauth/token", callback=token)
        mock.add_callback(responses.GET, f"{API}/user_account", callback=user)
        mock.add_callback(responses.GET, f"{API}/ad_accounts", callback=ads)
        yield mock


@pytest.fixture
def env(tmp_path: Path, state_dir: Path) -> dict[str, str]:
    return {
        "PINMIGRATE_PINTEREST_APP_ID": "1234567",
        "PINMIGRATE_PINTEREST_APP_SECRET": APP_SECRET,
        "PINMIGRATE_PINTEREST_API_URL": API,
        "PINMIGRATE_PINTEREST_OAUTH_URL": "https://www.pinterest.test/oauth/",
        "PINMIGRATE_PINTEREST_REDIRECT_URI": f"http://localhost:{free_port()}/",
        "PINMIGRATE_STATE_DIR": str(state_dir),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
    }


@pytest.fixture
def tty(monkeypatch: pytest.MonkeyPatch) -> None:
    """A person at a terminal, and a known state so a pasted URL can be prepared."""
    monkeypatch.setattr(App, "stdin_is_tty", lambda self: True)
    monkeypatch.setattr("pinmigrate.oauth.resolvers.secrets.token_urlsafe", lambda n: STATE)


def store_of(state_dir: Path) -> LoginStore:
    return LoginStore(state_dir)


def assert_no_secret(fake: FakePinterest, *texts: str) -> None:
    secrets = [*fake.access, *fake.refresh_tokens, *fake.codes, APP_SECRET]
    for text in texts:
        for secret in secrets:
            assert secret not in text


# --- login -----------------------------------------------------------------------------


def test_with_token_reads_a_bare_access_token(
    cli: Any, env: dict[str, str], api: Any, fake: FakePinterest, state_dir: Path
) -> None:
    access = fake.grant("1000000001")["access_token"]
    result = cli(["auth", "login", "--with-token", "--output", "json"], env=env, input=access)
    assert result.exit_code == 0, result.stderr
    payload = result.json()
    assert payload["kind"] == "pinmigrate.auth.login"
    assert payload["login"]["user_id"] == "1000000001"
    assert payload["login"]["source"] == "token"
    assert payload["login"]["can_refresh"] is False
    assert len(payload["login"]["ad_accounts"]) == 4
    assert_no_secret(fake, result.stdout, result.stderr)
    path = state_dir / "logins.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["logins"][0]["access_token"] == access


def test_with_token_reads_token_json(
    cli: Any, env: dict[str, str], api: Any, fake: FakePinterest, state_dir: Path
) -> None:
    token = fake.grant("1000000002")
    result = cli(["auth", "login", "--with-token"], env=env, input=json.dumps(token))
    assert result.exit_code == 0, result.stderr
    assert "Logged in to Pinterest as emu_analyst (1000000002) with 1 ad account;" in result.stderr
    login = store_of(state_dir).get("1000000002")
    assert login is not None and login.refresh_token is not None
    assert login.refresh_expires_at is not None


def test_with_token_refused(cli: Any, env: dict[str, str], api: Any, state_dir: Path) -> None:
    result = cli(["auth", "login", "--with-token"], env=env, input="pina_not_known")
    assert result.exit_code == 4
    assert "Authentication failed. (code 2)" in result.stderr
    assert "pina_not_known" not in result.stderr
    assert not (state_dir / "logins.json").exists()


def test_with_token_and_no_browser_conflict(cli: Any, env: dict[str, str]) -> None:
    result = cli(["auth", "login", "--with-token", "--no-browser"], env=env, input="x")
    assert result.exit_code == 64


def test_no_input_without_a_token_fails_fast(
    cli: Any, env: dict[str, str], tty: None, state_dir: Path
) -> None:
    for args in (["--no-input"], ["--no-input", "--no-browser"]):
        result = cli(["auth", "login", *args], env=env)
        assert result.exit_code == 4
        assert "PINMIGRATE_PINTEREST_REFRESH_TOKEN" in result.stderr
        assert "oauth/?" not in result.stderr  # no URL: nobody will open it
    assert not (state_dir / "logins.json").exists()


def test_no_terminal_without_a_token_fails_fast(cli: Any, env: dict[str, str]) -> None:
    result = cli(["auth", "login"], env=env)
    assert result.exit_code == 4
    assert "no terminal" in result.stderr


def test_login_with_an_environment_access_token(
    cli: Any, env: dict[str, str], api: Any, fake: FakePinterest, state_dir: Path
) -> None:
    env["PINMIGRATE_PINTEREST_ACCESS_TOKEN"] = fake.grant("1000000001")["access_token"]
    result = cli(["auth", "login", "--no-input"], env=env)
    assert result.exit_code == 0, result.stderr
    login = store_of(state_dir).get("1000000001")
    assert login is not None and login.source == "environment"


def test_paste_flow(
    cli: Any, env: dict[str, str], api: Any, fake: FakePinterest, tty: None, state_dir: Path
) -> None:
    code = fake.code_for("1000000001")
    pasted = f"{env['PINMIGRATE_PINTEREST_REDIRECT_URI']}?code={code}&state={STATE}\n"
    result = cli(["auth", "login", "--no-browser"], env=env, input=pasted)
    assert result.exit_code == 0, result.stderr
    assert "oauth/?" in result.stderr and f"state={STATE}" in result.stderr
    assert "Paste that address" in result.stderr
    assert result.stdout == ""
    assert code not in result.stderr.replace(pasted.strip(), "")  # never echoed back by us
    login = store_of(state_dir).get("1000000001")
    assert login is not None and login.source == "paste"


def test_paste_a_bare_code(
    cli: Any, env: dict[str, str], api: Any, fake: FakePinterest, tty: None
) -> None:
    code = fake.code_for("1000000002")
    result = cli(["auth", "login", "--no-browser"], env=env, input=code + "\n")
    assert result.exit_code == 0, result.stderr


def test_paste_with_a_wrong_state_stores_nothing(
    cli: Any, env: dict[str, str], api: Any, fake: FakePinterest, tty: None, state_dir: Path
) -> None:
    code = fake.code_for("1000000001")
    pasted = f"http://localhost:8085/?code={code}&state=forged\n"
    result = cli(["auth", "login", "--no-browser"], env=env, input=pasted)
    assert result.exit_code == 4
    # the end of input after one bad paste ends the login with that paste's problem
    assert "no usable paste after 1 try: the OAuth callback's state does not match" in (
        result.stderr
    )
    assert fake.exchange_calls == 0
    assert not (state_dir / "logins.json").exists()


def test_a_bad_paste_is_asked_for_again(
    cli: Any, env: dict[str, str], api: Any, fake: FakePinterest, tty: None, state_dir: Path
) -> None:
    code = fake.code_for("1000000001")
    good = f"http://localhost:8085/?code={code}&state={STATE}"
    result = cli(
        ["auth", "login", "--no-browser"],
        env=env,
        input=f"not a code\nhttp://localhost:8085/?code=x&state=forged\n{good}\n",
    )
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("Paste that address") == 3
    assert (
        "That paste did not work: the pasted text is neither the redirected URL nor a code; "
        "nothing was stored. Paste again "
        "(2 more tries)." in result.stderr
    )
    assert "does not match this login attempt" in result.stderr and "(1 more try)" in result.stderr
    assert fake.exchange_calls == 1
    assert store_of(state_dir).get("1000000001") is not None


def test_three_bad_pastes_fail_with_one_line(
    cli: Any, env: dict[str, str], api: Any, fake: FakePinterest, tty: None, state_dir: Path
) -> None:
    result = cli(
        ["auth", "login", "--no-browser"],
        env=env,
        input="not a code\nhttp://localhost:8085/\nhttp://localhost:8085/?code=x&state=no\nx\n",
    )
    assert result.exit_code == 4
    assert result.stderr.count("Paste that address") == 3  # the fourth line is never read
    assert result.stderr.count("That paste did not work") == 2
    assert result.stderr.splitlines()[-1].startswith(
        "pinmigrate: no usable paste after 3 tries: the OAuth callback's state does not match"
    )
    assert fake.exchange_calls == 0
    assert not (state_dir / "logins.json").exists()


def test_browser_flow_through_the_cli(
    cli: Any,
    env: dict[str, str],
    api: Any,
    fake: FakePinterest,
    tty: None,
    state_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code = fake.code_for("1000000001")
    browser = Browser(lambda state: f"code={code}&state={state}")
    opened: list[str] = []

    def opener(url: str) -> bool:
        opened.append(url)
        return browser(url)

    monkeypatch.setattr("pinmigrate.oauth.resolvers._open_browser", opener)
    result = cli(["auth", "login", "--timeout", "30"], env=env)
    assert result.exit_code == 0, result.stderr
    # The authorize URL is printed for the person even though a browser opened; the browser
    # command was given the listener's one-time address, which carries no state.
    assert "https://www.pinterest.test/oauth/?" in result.stderr
    assert opened and urlsplit(opened[0]).path == "/start" and "state" not in opened[0]
    assert browser.done()[0][0] == 200
    assert store_of(state_dir).get("1000000001") is not None


def test_browser_flow_timeout(
    cli: Any, env: dict[str, str], tty: None, monkeypatch: pytest.MonkeyPatch, state_dir: Path
) -> None:
    monkeypatch.setattr("pinmigrate.oauth.resolvers._open_browser", lambda url: True)
    result = cli(["auth", "login", "--timeout", "0.05"], env=env)
    assert result.exit_code == 4
    assert "timed out after 0.05 s" in result.stderr
    assert not (state_dir / "logins.json").exists()


def test_port_in_use(
    cli: Any, env: dict[str, str], tty: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pinmigrate.oauth.resolvers._open_browser", lambda url: True)
    port = urlsplit(env["PINMIGRATE_PINTEREST_REDIRECT_URI"]).port
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port or 0))
        busy.listen()
        result = cli(["auth", "login"], env=env)
    assert result.exit_code == 1
    assert f":{port}" in result.stderr and "pinterest.redirect_uri" in result.stderr


def test_non_loopback_redirect_uri_is_a_config_error(cli: Any, env: dict[str, str]) -> None:
    env["PINMIGRATE_PINTEREST_REDIRECT_URI"] = "http://example.com:8085/"
    result = cli(["auth", "login"], env=env)
    assert result.exit_code == 64
    assert "pinterest.redirect_uri" in result.stderr and "loopback" in result.stderr


# --- status ----------------------------------------------------------------------------


def put(state_dir: Path, user_id: str, username: str, **kw: Any) -> Login:
    values: dict[str, Any] = {
        "user_id": user_id,
        "username": username,
        "ad_accounts": [AdAccountAccess(id="549755885175", name="Main", permissions=["ADMIN"])],
        "scopes": ["ads:read", "ads:write", "user_accounts:read"],
        "access_token": SecretStr(f"pina_status_{user_id}"),
        "refresh_token": SecretStr(f"pinr_status_{user_id}"),
        "access_expires_at": datetime.now(UTC) + timedelta(days=20),
        "refresh_expires_at": datetime.now(UTC) + timedelta(days=50),
    }
    values.update(kw)
    login = Login.model_validate(values)
    store_of(state_dir).put(login)
    return login


def test_status_text_and_json(cli: Any, env: dict[str, str], state_dir: Path) -> None:
    put(state_dir, "1", "fine")
    put(state_dir, "2", "soon", refresh_expires_at=datetime.now(UTC) + timedelta(days=3))
    put(state_dir, "3", "narrow", scopes=["ads:read"], refresh_token=None)
    text = cli(["auth", "status"], env=env)
    assert text.exit_code == 0, text.stderr
    assert "fine (1), from browser login" in text.stdout
    assert "549755885175  Main  [ADMIN]" in text.stdout
    assert "refresh token expires in 2 days" in text.stdout
    assert "reconnect_margin_days (7)" in text.stdout
    assert "lacks the scope(s) ads:write, user_accounts:read" in text.stdout
    assert "refresh: not possible" in text.stdout
    assert "pina_status" not in text.stdout + text.stderr
    assert "pinr_status" not in text.stdout + text.stderr
    as_json = cli(["--output", "json", "auth", "status"], env=env)
    payload = as_json.json()
    assert payload["kind"] == "pinmigrate.auth.status"
    assert "pre-flight" in payload["purpose"] and "reconnected by a person" in payload["purpose"]
    by_user = {entry["user_id"]: entry for entry in payload["logins"]}
    assert by_user["1"]["warnings"] == []
    assert by_user["1"]["ad_accounts"] == [
        {"id": "549755885175", "name": "Main", "permissions": ["ADMIN"]}
    ]
    assert len(by_user["2"]["warnings"]) == 1
    assert "pina_status" not in as_json.stdout and "pinr_status" not in as_json.stdout


def test_status_with_nothing_stored_lists_nothing_and_exits_4(
    cli: Any, env: dict[str, str], state_dir: Path
) -> None:
    result = cli(["auth", "status"], env=env)
    assert result.exit_code == 4
    assert "No Pinterest login stored" in result.stdout
    assert "optional" in result.stdout and "pre-flight" in result.stdout
    assert result.stderr == (
        "pinmigrate: no usable Pinterest login: none is stored in "
        f"{state_dir / 'logins.json'}; run `pinmigrate auth login` (optional: only plan's "
        "pre-flight needs it)\n"
    )
    as_json = cli(["auth", "status", "--output", "json"], env=env)
    assert as_json.exit_code == 4 and as_json.json()["logins"] == []


def test_status_exits_4_when_every_login_expired_beyond_refresh(
    cli: Any, env: dict[str, str], state_dir: Path
) -> None:
    past = datetime.now(UTC) - timedelta(days=1)
    put(state_dir, "1", "stale", refresh_expires_at=past)
    put(state_dir, "2", "frozen", refresh_token=None, access_expires_at=past)
    result = cli(["auth", "status"], env=env)
    assert result.exit_code == 4
    assert "stale (1)" in result.stdout and "frozen (2)" in result.stdout
    assert "every stored one has expired beyond refresh" in result.stderr
    assert "stale (1)" in result.stderr and "frozen (2)" in result.stderr
    # one login that can still be refreshed is enough (its access token expired: refreshable)
    put(state_dir, "3", "alive", access_expires_at=past)
    assert cli(["auth", "status"], env=env).exit_code == 0


def test_status_with_an_environment_refresh_token(
    cli: Any, env: dict[str, str], api: Any, fake: FakePinterest, state_dir: Path
) -> None:
    original = fake.grant("1000000001")["refresh_token"]
    env["PINMIGRATE_PINTEREST_REFRESH_TOKEN"] = original
    first = cli(["auth", "status", "--output", "json", "-v"], env=env)
    assert first.exit_code == 0, first.stderr
    [entry] = first.json()["logins"]
    assert entry["environment"] is True and entry["user_id"] == "1000000001"
    assert str(state_dir / "logins.json") in first.stderr
    assert_no_secret(fake, first.stdout, first.stderr)
    assert original not in first.stdout + first.stderr
    # The fake killed the original on rotation: the stored successor carries on.
    second = cli(["auth", "status", "--output", "json"], env=env)
    assert second.exit_code == 0, second.stderr
    assert fake.refresh_calls == 1


def test_status_with_a_refused_environment_token_still_lists_then_fails(
    cli: Any, env: dict[str, str], api: Any, state_dir: Path
) -> None:
    put(state_dir, "1", "stored")
    env["PINMIGRATE_PINTEREST_REFRESH_TOKEN"] = "pinr_revoked_123"
    result = cli(["auth", "status"], env=env)
    assert result.exit_code == 4
    assert "stored (1)" in result.stdout
    assert "PINMIGRATE_PINTEREST_REFRESH_TOKEN" in result.stderr
    assert "pinr_revoked_123" not in result.stderr


def test_a_corrupt_store_is_reported_and_kept(
    cli: Any, env: dict[str, str], state_dir: Path
) -> None:
    path = state_dir / "logins.json"
    path.write_text('{"version": 1, "logins": [')
    for args in (["auth", "status"], ["auth", "logout"]):
        result = cli(args, env=env)
        assert result.exit_code == 1
        assert str(path) in result.stderr and "not valid JSON" in result.stderr
    assert path.read_text() == '{"version": 1, "logins": ['


# --- logout ----------------------------------------------------------------------------


def test_logout_variants(cli: Any, env: dict[str, str], state_dir: Path) -> None:
    put(state_dir, "1", "alice")
    put(state_dir, "2", "bob")
    several = cli(["auth", "logout"], env=env)
    assert several.exit_code == 64
    assert "alice (1)" in several.stderr and "bob (2)" in several.stderr
    unknown = cli(["auth", "logout", "carol"], env=env)
    assert unknown.exit_code == 64 and "carol" in unknown.stderr
    by_name = cli(["auth", "logout", "bob", "--output", "json"], env=env)
    assert by_name.exit_code == 0
    assert by_name.json()["removed"] == [{"user_id": "2", "username": "bob"}]
    only = cli(["auth", "logout"], env=env)
    assert only.exit_code == 0 and "alice (1)" in only.stderr
    assert store_of(state_dir).load() == []
    for args in (["auth", "logout"], ["auth", "logout", "alice"]):
        none = cli(args, env=env)
        assert none.exit_code == 0, none.stderr
        assert none.stderr == (
            f"No Pinterest login is stored in {state_dir / 'logins.json'}; nothing to forget.\n"
        )
    as_json = cli(["auth", "logout", "--output", "json"], env=env)
    assert as_json.exit_code == 0 and as_json.json()["removed"] == []
    # The same document as when a login was removed (docs/json.md).
    assert set(as_json.json()) == set(by_name.json())


def test_logout_by_user_id(cli: Any, env: dict[str, str], state_dir: Path) -> None:
    put(state_dir, "1000000001", "emu_marketer")
    result = cli(["auth", "logout", "1000000001"], env=env)
    assert result.exit_code == 0
    assert store_of(state_dir).load() == []


# --- no leaks --------------------------------------------------------------------------


def test_verbose_runs_leak_nothing(
    cli: Any,
    env: dict[str, str],
    api: Any,
    fake: FakePinterest,
    tty: None,
    state_dir: Path,
) -> None:
    code = fake.code_for("1000000001")
    pasted = f"http://localhost/?code={code}&state={STATE}\n"
    outputs = []
    login = cli(["auth", "login", "--no-browser", "-v"], env=env, input=pasted)
    assert login.exit_code == 0, login.stderr
    assert "DEBUG" in login.stderr  # -v really logged the requests
    outputs.append(login.stdout + login.stderr.replace(pasted.strip(), ""))
    for args in (["auth", "status", "-v"], ["auth", "logout", "-v"]):
        result = cli(args, env=env)
        assert result.exit_code == 0, result.stderr
        outputs.append(result.stdout + result.stderr)
    assert_no_secret(fake, *outputs)
    assert code not in "".join(outputs)
    for path in state_dir.rglob("*"):
        if path.is_file() and path.name != "logins.json":
            assert_no_secret(fake, path.read_text(errors="replace"))


def test_a_rotated_environment_token_lives_on_only_in_the_state_dir(
    cli: Any, env: dict[str, str], api: Any, fake: FakePinterest, state_dir: Path, tmp_path: Path
) -> None:
    """What the README's CI recipe says: keep the state dir between jobs."""
    env["PINMIGRATE_PINTEREST_REFRESH_TOKEN"] = fake.grant("1000000001")["refresh_token"]
    first_job = cli(["auth", "status"], env=env)
    assert first_job.exit_code == 0, first_job.stderr
    assert f"the new one is saved in {state_dir / 'logins.json'}" in first_job.stderr
    assert cli(["auth", "status"], env=env).exit_code == 0  # the state dir was kept
    fresh = tmp_path / "fresh-state"
    fresh.mkdir(mode=0o700)
    next_job = cli(["auth", "status"], env={**env, "PINMIGRATE_STATE_DIR": str(fresh)})
    assert next_job.exit_code == 4
    assert "PINMIGRATE_PINTEREST_REFRESH_TOKEN did not work" in next_job.stderr
