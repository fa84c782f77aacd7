"""`pinmigrate auth login` driven by a browser named in BROWSER, as a reviewer's headless
browser drives it: the browser loads the authorize URL, submits the consent form, follows the
redirect to pinmigrate's loopback listener and only exits once that page has loaded."""

from __future__ import annotations

import json
import os
import pty
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import RUN_TIMEOUT
from .fake_services import ANALYST, MARKETER, World

#: every test runs the real CLI as a separate process, with a browser
pytestmark = pytest.mark.slow

#: A browser that behaves like a person's: GET the page, press "Give access", follow the
#: redirect, wait for the page pinmigrate shows, then exit. It blocks until that page loads,
#: as `chromium --dump-dom` does, so pinmigrate must not wait for it to exit first.
BROWSER_SCRIPT = """\
import sys
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser

url, out, decision = sys.argv[1], sys.argv[2], sys.argv[3]


class Form(HTMLParser):
    def __init__(self):
        super().__init__()
        self.action, self.fields, self.buttons = "", {}, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.action = a.get("action") or ""
        elif tag == "input" and a.get("type") == "hidden":
            self.fields[a["name"]] = a.get("value") or ""
        elif tag == "button":
            self.buttons.append((a.get("name"), a.get("value")))


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


form = Form()
consent = urllib.request.urlopen(url, timeout=30)
# pinmigrate may hand over an address that redirects to the consent page: as a browser does,
# resolve the form's action against the page it came on.
url = consent.geturl()
form.feed(consent.read().decode("utf-8"))
name, value = next(b for b in form.buttons if b[1] == decision)
data = urllib.parse.urlencode({**form.fields, name: value}).encode()
opener = urllib.request.build_opener(NoRedirect)
try:
    opener.open(urllib.parse.urljoin(url, form.action), data=data, timeout=30)
    raise SystemExit("the consent form did not redirect")
except urllib.error.HTTPError as answer:
    location = answer.headers["Location"]
try:
    page = urllib.request.urlopen(location, timeout=90)
    status, body = page.status, page.read()
except urllib.error.HTTPError as answer:
    status, body = answer.code, answer.read()
with open(out, "w", encoding="utf-8") as handle:
    handle.write(f"{status}\\n{location}\\n{body.decode('utf-8')}")
"""


def browser_command(tmp_path: Path, decision: str = "allow") -> tuple[str, Path]:
    """A BROWSER value (an executable taking the URL) and the file it writes the page to."""
    page = tmp_path / "page.txt"
    script = tmp_path / "browser.py"
    script.write_text(BROWSER_SCRIPT)
    wrapper = tmp_path / "browser"
    wrapper.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$1" "{page}" "{decision}"\n'
    )
    wrapper.chmod(0o755)
    return str(wrapper), page


def check_login(state_dir: Path, page: Path, user: str, started: float) -> None:
    status, location, body = page.read_text("utf-8").split("\n", 2)
    assert status == "200" and "Logged in" in body
    # The page never shows the code the URL carried.
    code = location.split("code=")[1].split("&")[0]
    assert code not in body
    path = state_dir / "logins.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    [stored] = json.loads(path.read_text())["logins"]
    assert stored["user_id"] == user and stored["source"] == "browser"
    # The extra scope Pinterest granted is kept, nothing refused.
    assert "pins:read" in stored["scopes"]
    # Well under the listener's own 120 s patience: nobody waited on anybody.
    assert time.monotonic() - started < 30


def test_auth_login_through_a_browser_without_a_terminal_then_apply(
    pinmigrate: Any, world: World, tmp_path: Path, state_dir: Path
) -> None:
    browser, page = browser_command(tmp_path)
    started = time.monotonic()
    result = pinmigrate("auth", "login", "--timeout", "40", extra={"BROWSER": browser})
    assert result.code == 0, result.stderr
    assert "outside_marketer" in result.stderr
    check_login(state_dir, page, MARKETER, started)
    # The stored browser login serves the plan's pre-flight, which names it. It is never
    # handed to Adobe: the api reconnect path needs a person to sign in for each account,
    # and without a terminal apply stops before any write.
    api = {"PINMIGRATE_MIGRATION_RECONNECT_VIA": "api"}
    plan = pinmigrate("plan", "--output", "json", extra=api).json()
    reconnects = [a for a in plan["actions"] if a["kind"] == "reconnect_account"]
    assert reconnects and {a["details"]["login"] for a in reconnects} == {MARKETER}
    store = (state_dir / "logins.json").read_bytes()
    applied = pinmigrate("apply", "--yes", extra=api)
    assert applied.code == 4, applied.stderr
    assert 'reconnect_via = "adobe"' in applied.stderr and "at a terminal" in applied.stderr
    assert world.writes() == []
    assert (state_dir / "logins.json").read_bytes() == store
    outputs = result.stdout + result.stderr + applied.stdout + applied.stderr
    tokens = [*world.access_tokens, *world.refresh_tokens, *world.codes]
    assert tokens and not [t for t in tokens if t in outputs]


def test_a_denied_consent_stores_nothing(pinmigrate: Any, tmp_path: Path, state_dir: Path) -> None:
    browser, page = browser_command(tmp_path, decision="deny")
    result = pinmigrate("auth", "login", "--timeout", "40", extra={"BROWSER": browser})
    assert result.code == 4
    assert "access_denied" in result.stderr
    status, _, body = page.read_text("utf-8").split("\n", 2)
    assert status == "400" and "Login failed" in body
    assert not (state_dir / "logins.json").exists()


def test_auth_login_through_a_browser_from_a_terminal(
    env: dict[str, str], world: World, tmp_path: Path, state_dir: Path
) -> None:
    world.consent_user = ANALYST
    browser, page = browser_command(tmp_path)
    master, slave = pty.openpty()
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pinmigrate", "auth", "login", "--timeout", "40"],
        env={**env, "BROWSER": browser},
        cwd=tmp_path,
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    os.close(slave)
    try:
        _, err = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert proc.returncode == 0, err.decode()
    check_login(state_dir, page, ANALYST, started)


def test_no_input_refuses_a_browser_login_at_once(
    pinmigrate: Any, tmp_path: Path, state_dir: Path
) -> None:
    browser, page = browser_command(tmp_path)
    result = pinmigrate("auth", "login", "--no-input", extra={"BROWSER": browser})
    assert result.code == 4
    assert "PINMIGRATE_PINTEREST_REFRESH_TOKEN" in result.stderr
    assert not page.exists() and not (state_dir / "logins.json").exists()


def test_a_browser_that_cannot_start_fails_at_once_without_a_terminal(
    pinmigrate: Any, tmp_path: Path, state_dir: Path
) -> None:
    started = time.monotonic()
    result = pinmigrate(
        "auth", "login", "--timeout", "300", extra={"BROWSER": str(tmp_path / "no-such-browser")}
    )
    assert result.code == 4, result.stderr
    assert "/oauth/?" in result.stderr  # the address is still shown
    assert time.monotonic() - started < 30
    assert not (state_dir / "logins.json").exists()


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no /usr/bin/chromium here")
def test_auth_login_with_headless_chromium(
    pinmigrate: Any, world: World, tmp_path: Path, state_dir: Path
) -> None:
    # --dump-dom cannot press a button: the fake approves on load, as a signed-in user
    # who granted the app before sees it.
    world.auto_approve = True
    profile = tmp_path / "chromium-profile"
    dom = tmp_path / "dom.html"
    wrapper = tmp_path / "chromium-browser"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'exec "{CHROMIUM}" --headless --no-sandbox --disable-gpu '
        f'--disable-background-networking --user-data-dir="{profile}" '
        f'--dump-dom "$1" > "{dom}" 2>/dev/null\n'
    )
    wrapper.chmod(0o755)
    result = pinmigrate("auth", "login", "--timeout", "60", extra={"BROWSER": str(wrapper)})
    assert result.code == 0, result.stderr
    assert "Logged in" in dom.read_text("utf-8")
    [stored] = json.loads((state_dir / "logins.json").read_text())["logins"]
    assert stored["user_id"] == MARKETER and stored["source"] == "browser"
