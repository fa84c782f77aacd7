"""End to end against the emulator: the real `pinmigrate auth login` in a subprocess, a
script as the browser (BROWSER), the consent page submitted like a person would."""

from __future__ import annotations

import json
import os
import pty
import queue
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

import pytest
import requests
from test_oauth import free_port

from pinmigrate.emulator import CLIENT_SECRET, PINTEREST_APP_SECRET
from pinmigrate.errors import AuthError
from pinmigrate.logins import LoginStore
from pinmigrate.oauth import fresh_login, login_from_grant
from pinmigrate.pinterest import PinterestClient
from pinmigrate.settings import Settings, load_settings

pytestmark = pytest.mark.slow
WAIT = 30  # seconds: the most any step may take before the test fails


class ConsentForm(HTMLParser):
    """The emulator's consent page: form action, hidden fields, the checked user."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}
        self.decisions: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = a.get("action", "")
        elif tag == "input" and (
            a.get("type") == "hidden" or (a.get("type") == "radio" and "checked" in a)
        ):
            self.fields[a["name"]] = a.get("value", "")
        elif tag == "button" and a.get("name") == "decision":
            self.decisions.append(a.get("value", ""))


def consent(authorize_url: str, decision: str = "allow") -> str:
    """Submit the consent page; returns where Pinterest sends the browser back to."""
    page = requests.get(authorize_url, timeout=WAIT)
    assert page.status_code == 200, page.text
    form = ConsentForm()
    form.feed(page.text)
    assert decision in form.decisions
    answer = requests.post(
        urljoin(authorize_url, form.action),
        data={**form.fields, "decision": decision},
        allow_redirects=False,
        timeout=WAIT,
    )
    assert answer.status_code in (302, 303), answer.text
    return str(answer.headers["Location"])


def with_query(url: str, **changes: str | None) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    for key, value in changes.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    return urlunsplit(parts._replace(query=urlencode(query)))


@dataclass
class Login:
    """A running `pinmigrate auth login` with a terminal on stdin."""

    proc: subprocess.Popen[str]
    master: int
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)

    def until(self, marker: str) -> str:
        while True:
            try:
                line = self.lines.get(timeout=WAIT)
            except queue.Empty:
                raise AssertionError(f"no {marker!r} on stderr; got {self.seen}") from None
            self.seen.append(line)
            if marker in line:
                return line.strip()

    def authorize_url(self) -> str:
        return self.until("/oauth/?")

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def finish(self) -> tuple[int, str, str]:
        code = self.proc.wait(timeout=WAIT)
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        os.close(self.master)
        return code, out, "".join(self.seen)


@pytest.fixture
def env(emulator: Any, emu_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    browser = tmp_path / "browser.sh"
    browser.write_text(
        f'#!/bin/sh\nenv > "{tmp_path / "browser-env.txt"}"\n'
        f'printf "%s" "$*" > "{tmp_path / "opened.txt"}"\n'
    )
    browser.chmod(0o755)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PINMIGRATE_")}
    return {
        **clean,
        **emu_env,
        "PINMIGRATE_PINTEREST_REDIRECT_URI": emulator.register_redirect_uri(
            f"http://localhost:{free_port()}/"
        ),
        "BROWSER": str(browser),
    }


@pytest.fixture
def start(env: dict[str, str]) -> Iterator[Any]:
    started: list[Login] = []

    def run(*args: str, extra: dict[str, str] | None = None) -> Login:
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "pinmigrate", "auth", "login", *args],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, **(extra or {})},
        )
        os.close(slave)
        login = Login(proc, master)
        assert proc.stderr is not None
        stderr = proc.stderr

        def pump() -> None:
            for line in stderr:
                login.lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        started.append(login)
        return login

    yield run
    for login in started:
        if login.proc.poll() is None:
            login.proc.kill()
            login.proc.wait(timeout=WAIT)


def run_cli(
    args: list[str], env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pinmigrate", *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=env,
        timeout=WAIT,
    )


def logins_file(state_dir: Path) -> Path:
    return state_dir / "logins.json"


def listener_answer(url: str) -> requests.Response:
    return requests.get(url, timeout=WAIT)


# --- the browser path ------------------------------------------------------------------


def test_browser_login_through_the_loopback_listener(
    start: Any, state_dir: Path, tmp_path: Path
) -> None:
    login = start("--timeout", "60")
    url = login.authorize_url()
    login.until("Waiting up to")
    assert "scope=ads%3Aread%2Cads%3Awrite%2Cuser_accounts%3Aread" in url
    state = parse_qs(urlsplit(url).query)["state"][0]
    assert len(state) >= 43
    # BROWSER was honoured, with the listener's one-time address: its argv, which every local
    # user can read, holds no state; the address redirects to the URL printed on the terminal.
    opened = (tmp_path / "opened.txt").read_text()
    assert state not in opened and urlsplit(opened).path == "/start"
    start = requests.get(opened, allow_redirects=False, timeout=WAIT)
    assert start.status_code == 302 and start.headers["Location"] == url
    # Nor does its environment hold pinmigrate's secrets.
    browser_env = (tmp_path / "browser-env.txt").read_text()
    assert "PINMIGRATE_" not in browser_env
    assert PINTEREST_APP_SECRET not in browser_env and CLIENT_SECRET not in browser_env
    back = consent(url)
    favicon = listener_answer(urljoin(back, "/favicon.ico"))
    assert favicon.status_code == 404  # an unrelated request does not end the wait
    page = listener_answer(back)
    assert page.status_code == 200 and "Logged in" in page.text
    code = parse_qs(urlsplit(back).query)["code"][0]
    assert code not in page.text
    exit_code, out, err = login.finish()
    assert exit_code == 0, err
    assert "Logged in to Pinterest as emu_marketer (1000000001) with 4 ad accounts" in err
    path = logins_file(state_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    [stored] = json.loads(path.read_text())["logins"]
    assert stored["user_id"] == "1000000001" and len(stored["ad_accounts"]) == 4
    assert stored["source"] == "browser"
    assert code not in out + err and stored["access_token"] not in out + err


def test_a_browser_that_waits_for_the_listener_does_not_deadlock(
    emulator: Any, env: dict[str, str], state_dir: Path, tmp_path: Path
) -> None:
    """A BROWSER command that runs in the foreground until the page has loaded (a headless
    browser, curl) only finishes after the listener answers: login must not wait for it."""
    emulator.configure(auto_approve=True)
    browser = tmp_path / "foreground-browser.py"
    browser.write_text(
        f"#!{sys.executable}\n"
        "import sys, urllib.request\n"
        "page = urllib.request.urlopen(sys.argv[1], timeout=20).read().decode()\n"
        f"open({str(tmp_path / 'page.html')!r}, 'w').write(page)\n"
    )
    browser.chmod(0o755)
    done = run_cli(["auth", "login", "--timeout", "20"], {**env, "BROWSER": str(browser)})
    assert done.returncode == 0, done.stderr
    assert "Logged in" in (tmp_path / "page.html").read_text()
    stored = LoginStore(state_dir).load()
    assert [login.username for login in stored] == ["emu_marketer"]


def test_a_racing_callback_with_a_wrong_or_missing_state_is_ignored(
    start: Any, state_dir: Path
) -> None:
    """Another local user's callbacks (their own code; no state or a guessed one) reach the
    listener first: each is refused and ignored, and Pinterest's real redirect logs in."""
    login = start()
    url = login.authorize_url()
    theirs = consent(url)  # a code the other user obtained
    for tamper in ({"state": "forged-state-value"}, {"state": None}):
        page = listener_answer(with_query(theirs, **tamper))
        assert page.status_code == 400 and "ignored" in page.text
    page = listener_answer(consent(url))
    assert page.status_code == 200 and "Logged in" in page.text
    exit_code, _, err = login.finish()
    assert exit_code == 0, err
    assert err.count("Ignored an answer whose state is wrong or missing") == 2
    assert logins_file(state_dir).exists()


def test_deny_is_refused_with_the_reason(start: Any, state_dir: Path) -> None:
    login = start()
    back = consent(login.authorize_url(), decision="deny")
    assert "error=access_denied" in back
    listener_answer(back)
    exit_code, _, err = login.finish()
    assert exit_code == 4 and "access_denied" in err
    assert not logins_file(state_dir).exists()


def test_a_reused_code_is_refused(start: Any, state_dir: Path) -> None:
    first = start()
    back = consent(first.authorize_url())
    assert listener_answer(back).status_code == 200
    assert first.finish()[0] == 0
    before = logins_file(state_dir).read_bytes()
    second = start()
    state = parse_qs(urlsplit(second.authorize_url()).query)["state"][0]
    page = listener_answer(with_query(back, state=state))  # the old code, a valid state
    assert page.status_code == 400
    exit_code, _, err = second.finish()
    assert exit_code == 4 and "already been used" in err
    assert logins_file(state_dir).read_bytes() == before


def test_paste_flow_in_a_terminal(start: Any, state_dir: Path) -> None:
    login = start("--no-browser")
    back = consent(login.authorize_url())
    login.type(back + "\n")  # the terminal holds it until the prompt reads it
    exit_code, _, err = login.finish()
    assert exit_code == 0, err
    assert "Paste that address" in err
    assert json.loads(logins_file(state_dir).read_text())["logins"][0]["source"] == "paste"


def test_non_loopback_redirect_uri(env: dict[str, str], state_dir: Path) -> None:
    env["PINMIGRATE_PINTEREST_REDIRECT_URI"] = "http://example.com:8085/"
    result = run_cli(["auth", "login"], env)
    assert result.returncode == 64
    assert "loopback" in result.stderr
    assert not logins_file(state_dir).exists()


def test_no_input_without_a_token_exits_at_once(env: dict[str, str]) -> None:
    started = time.monotonic()
    result = run_cli(["auth", "login", "--no-input"], env)
    assert result.returncode == 4
    assert "PINMIGRATE_PINTEREST_REFRESH_TOKEN" in result.stderr
    assert time.monotonic() - started < WAIT / 2


# --- tokens without a browser ----------------------------------------------------------


def mint(emulator: Any, **options: Any) -> dict[str, Any]:
    answer = requests.post(
        f"{emulator.url}/_emulator/tokens", json={"user": "emu_marketer", **options}, timeout=WAIT
    )
    assert answer.status_code == 200, answer.text
    token: dict[str, Any] = answer.json()
    return token


def test_with_token_from_stdin(emulator: Any, env: dict[str, str], state_dir: Path) -> None:
    emulator.configure(scope_separator=",", extra_scope="pins:read")
    token = mint(emulator)
    result = run_cli(["auth", "login", "--with-token", "--output", "json"], env, json.dumps(token))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["login"]["scopes"] == [
        "ads:read",
        "ads:write",
        "user_accounts:read",
        "pins:read",
    ]
    assert token["access_token"] not in result.stdout + result.stderr
    bare = run_cli(["auth", "login", "--with-token"], env, mint(emulator)["access_token"])
    assert bare.returncode == 0, bare.stderr


def test_environment_refresh_token_status(
    emulator: Any, env: dict[str, str], state_dir: Path
) -> None:
    token = mint(emulator)
    env["PINMIGRATE_PINTEREST_REFRESH_TOKEN"] = token["refresh_token"]
    first = run_cli(["auth", "status", "--output", "json", "-v"], env)
    assert first.returncode == 0, first.stderr
    [entry] = json.loads(first.stdout)["logins"]
    assert entry["environment"] and entry["username"] == "emu_marketer"
    assert str(logins_file(state_dir)) in first.stderr
    stored = json.loads(logins_file(state_dir).read_text())["logins"][0]
    assert stored["refresh_token"] != token["refresh_token"]  # rotated and saved
    # The emulator killed the original on rotation: later runs go on from the stored one.
    second = run_cli(["auth", "status", "--output", "json"], env)
    assert second.returncode == 0, second.stderr
    outputs = first.stdout + first.stderr + second.stdout + second.stderr
    for secret in (
        token["refresh_token"],
        token["access_token"],
        stored["refresh_token"],
        stored["access_token"],
    ):
        assert secret not in outputs


def test_two_commands_with_one_environment_refresh_token_at_once(
    emulator: Any, env: dict[str, str]
) -> None:
    env["PINMIGRATE_PINTEREST_REFRESH_TOKEN"] = mint(emulator)["refresh_token"]
    emulator.clear_requests()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pinmigrate", "auth", "status", "--output", "json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=WAIT)
        assert proc.returncode == 0, err
    # The configured token was spent once; the other command used its stored successor.
    assert token_calls(emulator) == 1


# --- the store under refresh -----------------------------------------------------------


def short_lived_login(emulator: Any, emu_env: dict[str, str]) -> tuple[Settings, LoginStore]:
    """A stored login whose access token expires within the refresh margin."""
    token = mint(emulator, expires_in=60)
    settings = load_settings(env=emu_env)
    store = LoginStore(settings.state_dir)
    login_from_grant(
        PinterestClient(settings),
        store,
        token,
        settings=settings,
        source="token",
        now=datetime.now(UTC),
    )
    return settings, store


def token_calls(emulator: Any) -> int:
    return int(emulator.requests()["by_endpoint"].get("POST /v5/oauth/token", 0))


def test_a_rotated_refresh_token_survives_and_works(emulator: Any, emu_env: dict[str, str]) -> None:
    settings, store = short_lived_login(emulator, emu_env)
    old = store.get("1000000001")
    assert old is not None and old.refresh_token is not None
    client = PinterestClient(settings)
    fresh = fresh_login(old, settings, store, now=datetime.now(UTC), client=client)
    assert fresh.refresh_token is not None and fresh.refresh_token != old.refresh_token
    assert LoginStore(settings.state_dir).get("1000000001") == fresh
    with pytest.raises(AuthError):
        client.refresh(old.refresh_token.get_secret_value())
    assert client.refresh(fresh.refresh_token.get_secret_value())["access_token"]


def test_concurrent_refreshes_in_threads_lose_nothing(
    emulator: Any, emu_env: dict[str, str]
) -> None:
    settings, store = short_lived_login(emulator, emu_env)
    stale = store.get("1000000001")
    assert stale is not None
    emulator.clear_requests()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            fresh_login(
                stale,
                settings,
                LoginStore(settings.state_dir),
                now=datetime.now(UTC),
                client=PinterestClient(settings),
            )
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=WAIT)
    assert errors == []
    assert token_calls(emulator) == 1
    final = LoginStore(settings.state_dir).get("1000000001")
    assert final is not None and final.refresh_token is not None
    assert PinterestClient(settings).refresh(final.refresh_token.get_secret_value())


def test_concurrent_refreshes_in_processes_lose_nothing(
    emulator: Any, emu_env: dict[str, str], env: dict[str, str]
) -> None:
    settings, _ = short_lived_login(emulator, emu_env)
    emulator.clear_requests()
    script = (
        "from datetime import UTC, datetime\n"
        "from pinmigrate.logins import LoginStore\n"
        "from pinmigrate.oauth import fresh_login\n"
        "from pinmigrate.pinterest import PinterestClient\n"
        "from pinmigrate.settings import load_settings\n"
        "settings = load_settings()\n"
        "store = LoginStore(settings.state_dir)\n"
        "login = store.get('1000000001')\n"
        "fresh_login(login, settings, store, now=datetime.now(UTC),"
        " client=PinterestClient(settings))\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=WAIT)
        assert proc.returncode == 0, err
    # Each process may have read the stale entry, but only one refreshed it.
    assert token_calls(emulator) == 1
    final = LoginStore(settings.state_dir).get("1000000001")
    assert final is not None and final.refresh_token is not None
    assert PinterestClient(settings).refresh(final.refresh_token.get_secret_value())


# --- no leaks --------------------------------------------------------------------------


def test_login_status_logout_with_verbose_leak_nothing(
    start: Any, env: dict[str, str], state_dir: Path
) -> None:
    login = start("-v")
    back = consent(login.authorize_url())
    listener_answer(back)
    exit_code, out, err = login.finish()
    assert exit_code == 0, err
    assert "DEBUG" in err
    stored = json.loads(logins_file(state_dir).read_text())["logins"][0]
    outputs = [out, err]
    for args in (["auth", "status", "-v"], ["auth", "logout", "-v"]):
        result = run_cli(args, env)
        assert result.returncode == 0, result.stderr
        outputs += [result.stdout, result.stderr]
    code = parse_qs(urlsplit(back).query)["code"][0]
    secrets = [
        stored["access_token"],
        stored["refresh_token"],
        code,
        PINTEREST_APP_SECRET,
        CLIENT_SECRET,
    ]
    for text in outputs:
        for secret in secrets:
            assert secret not in text
    for path in state_dir.rglob("*"):
        if path.is_file() and path.name != "logins.json":
            content = path.read_text(errors="replace")
            assert not any(secret in content for secret in secrets)
