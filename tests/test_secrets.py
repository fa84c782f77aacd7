"""The secret scan: every journey, run with -v, must write no secret anywhere but logins.json.

The journeys run the real CLI against the emulator: doctor, discover, plan --out, show, a
browser login (auto-approved, the "browser" follows the redirect to the loopback
listener), a login from an environment refresh token, auth status, apply of the saved
plan, rollback, and the demo. Afterwards the emulator's state dump lists every secret that
was in play (the client secret and app secret it accepts, each IMS token, each Pinterest
access and refresh token, each OAuth code); the scan looks for each of them, and for their
common encodings, in every byte the tool wrote: stdout, stderr (the -v logs), plan files,
journals, the lock, and every other file in the state dir.
"""

from __future__ import annotations

import base64
import json
import socket
import stat
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import requests
from conftest import Result, invoke

from pinmigrate.app import App
from pinmigrate.emulator import (
    CLIENT_ID,
    CLIENT_SECRET,
    PINTEREST_APP_ID,
    PINTEREST_APP_SECRET,
    Emulator,
)

pytestmark = pytest.mark.slow

LOGINS = "logins.json"


# --- the detector --------------------------------------------------------------------------------


def basic(user: str, secret: str) -> str:
    return base64.b64encode(f"{user}:{secret}".encode()).decode()


def needles(secrets: Mapping[str, str]) -> dict[str, str]:
    """Each secret and its common encodings, labelled: what a leak could look like."""
    found: dict[str, str] = {}
    for label, value in secrets.items():
        forms = {
            "as is": value,
            "url-encoded": quote(value, safe=""),
            "form-encoded": quote_plus(value),
            "json-escaped": json.dumps(value)[1:-1],
            "base64": base64.b64encode(value.encode()).decode(),
            "base64url": base64.urlsafe_b64encode(value.encode()).decode().rstrip("="),
        }
        seen: set[str] = set()
        for form, text in forms.items():
            if text not in seen:
                seen.add(text)
                found[f"{label} ({form})"] = text
    # What goes in an Authorization: Basic header.
    found["Pinterest Basic credentials"] = basic(PINTEREST_APP_ID, PINTEREST_APP_SECRET)
    found["Adobe client Basic credentials"] = basic(CLIENT_ID, CLIENT_SECRET)
    return found


def scan(blobs: Mapping[str, bytes], secrets: Mapping[str, str]) -> list[str]:
    """``secret (encoding) in where`` for every needle found in every blob."""
    findings: list[str] = []
    for label, text in needles(secrets).items():
        raw = text.encode()
        findings.extend(f"{label} in {where}" for where, blob in blobs.items() if raw in blob)
    return findings


def secrets_of(dump: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Every secret an emulator handed out or accepted, from its (test-only) state dump."""
    found = {
        f"{prefix}Adobe client secret": CLIENT_SECRET,
        f"{prefix}Pinterest app secret": PINTEREST_APP_SECRET,
    }
    hidden = dump["secrets"]
    for number, record in enumerate(hidden["ims_tokens"]):
        found[f"{prefix}IMS token {number}"] = record["token"]
    for number, record in enumerate(hidden["pinterest_tokens"]):
        found[f"{prefix}Pinterest {record['kind']} token {number}"] = record["token"]
    for number, record in enumerate(hidden["pinterest_codes"]):
        found[f"{prefix}OAuth code {number}"] = record["code"]
    return found


def written_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` except the login store, the one place tokens belong."""
    return {
        str(path): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != LOGINS
    }


def test_the_detector_finds_planted_secrets_in_any_common_encoding() -> None:
    code = "9f8e7d6c5b4a39281706f5e4d3c2b1a0ffeeddcc"
    token = "pina_SeCrEt+/token=="
    planted = {
        "log line": f"DEBUG pinmigrate.oauth: callback listener: GET /?code={code}".encode(),
        "form in a log": f"refresh_token={quote_plus(token)}&grant_type=refresh_token".encode(),
        "header": b"Authorization: Basic " + basic(PINTEREST_APP_ID, PINTEREST_APP_SECRET).encode(),
        "json": json.dumps({"note": f"token {token}"}).encode(),
        "clean": b"pinmigrate: Pinterest refused the refresh token (HTTP 401): ***",
    }
    findings = scan(planted, {"OAuth code": code, "access token": token})
    assert "OAuth code (as is) in log line" in findings
    assert "access token (url-encoded) in form in a log" in findings
    assert "Pinterest Basic credentials in header" in findings
    assert "access token (as is) in json" in findings
    assert not [f for f in findings if f.endswith(" in clean")]


# --- the journeys --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def robot_browser(url: str) -> bool:
    """Stands in for webbrowser.open: the consent page approves, the redirect lands locally."""

    def follow() -> None:
        # The listener answers only once the login is complete: follow from another thread.
        requests.get(url, timeout=30)

    threading.Thread(target=follow, daemon=True).start()
    return True


@dataclass
class Journeys:
    emulator: Emulator
    root: Path
    state_dir: Path
    env: dict[str, str]
    monkeypatch: pytest.MonkeyPatch
    #: where -> bytes the tool wrote there
    blobs: dict[str, bytes] = field(default_factory=dict)
    #: secrets of the demo's own emulator, caught before it stops
    demo_secrets: dict[str, str] = field(default_factory=dict)
    results: dict[str, Result] = field(default_factory=dict)
    demo_stored_a_login: bool = False

    def run(
        self,
        name: str,
        args: list[str],
        *,
        env: Mapping[str, str] | None = None,
        expect: int = 0,
        terminal: bool = False,
    ) -> Result:
        with self.monkeypatch.context() as patch:
            if terminal:
                patch.setattr(App, "stdin_is_tty", lambda self: True)
            result = invoke(args, {**self.env, **(env or {})})
        assert result.exit_code == expect, f"{name}: exit {result.exit_code}\n{result.stderr}"
        self.results[name] = result
        self.blobs[f"{name}: stdout"] = result.stdout.encode()
        self.blobs[f"{name}: stderr"] = result.stderr.encode()
        return result

    def mint_refresh_token(self, user: str) -> str:
        answer = requests.post(f"{self.emulator.url}/_emulator/tokens", json={"user": user})
        answer.raise_for_status()
        return str(answer.json()["refresh_token"])

    def all_secrets(self) -> dict[str, str]:
        return {**secrets_of(self.emulator.state.dump()), **self.demo_secrets}


def capture_the_lock(journeys: Journeys) -> None:
    """Keep the state-dir lock's content: it is removed when a run ends."""
    from pinmigrate.lock import StateLock

    original = StateLock.acquire

    def acquire(self: StateLock) -> StateLock:
        held = original(self)
        journeys.blobs[f"lock of run {self.run_id}: {self.path}"] = self.path.read_bytes()
        return held

    journeys.monkeypatch.setattr(StateLock, "acquire", acquire)


def capture_the_demo(journeys: Journeys) -> None:
    """Keep the demo's files and its emulator's secrets: it deletes both when it ends."""
    import pinmigrate.commands.demo as demo

    original = demo.run_demo

    def run_demo(app: Any, narrator: Any, emulator: Emulator, state_dir: Path) -> Any:
        result = original(app, narrator, emulator, state_dir)
        for where, blob in written_files(state_dir).items():
            journeys.blobs[f"demo state dir: {where}"] = blob
        journeys.demo_secrets.update(secrets_of(emulator.state.dump(), prefix="demo "))
        journeys.demo_stored_a_login = (Path(state_dir) / LOGINS).exists()
        return result

    journeys.monkeypatch.setattr(demo, "run_demo", run_demo)


def fresh_redaction_registry() -> None:
    """No secret registered by an earlier test in this process: each must be registered by
    the tool itself, or the scan would pass on another test's registration."""
    import pinmigrate.redact

    pinmigrate.redact.reset()


@pytest.fixture(scope="module")
def journeys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journeys]:
    root = tmp_path_factory.mktemp("journeys")
    state_dir = root / "state"
    work = root / "work"
    work.mkdir()
    emulator = Emulator(scenario="demo", port=0, auto_approve=True).start()
    env = {
        **emulator.env(),
        "PINMIGRATE_STATE_DIR": str(state_dir),
        "PINMIGRATE_PINTEREST_REDIRECT_URI": emulator.register_redirect_uri(
            f"http://127.0.0.1:{free_port()}/"
        ),
        "XDG_CONFIG_HOME": str(root / "xdg-config"),
        "XDG_STATE_HOME": str(root / "xdg-state"),
    }
    with pytest.MonkeyPatch.context() as monkeypatch:
        fresh_redaction_registry()
        monkeypatch.chdir(work)
        monkeypatch.setattr("pinmigrate.oauth.resolvers._open_browser", robot_browser)
        made = Journeys(emulator, root, state_dir, env, monkeypatch)
        capture_the_lock(made)
        try:
            run_journeys(made, work)
            yield made
        finally:
            emulator.stop()


def run_journeys(j: Journeys, work: Path) -> None:
    ci_token = j.mint_refresh_token("emu_analyst")
    ci = {"PINMIGRATE_PINTEREST_REFRESH_TOKEN": ci_token}

    j.run("doctor", ["doctor", "-v"])
    j.run("discover", ["discover", "-v"])
    j.run("plan without a login", ["plan", "-v", "--out", "before.json"])
    j.run("show", ["show", "-v", "before.json"])
    j.run("browser login", ["auth", "login", "-v", "--timeout", "20"], terminal=True)
    j.run("environment login", ["auth", "login", "-v"], env=ci)
    j.run("status", ["auth", "status", "-v"], env=ci)
    j.run("status as JSON", ["auth", "status", "-v", "--output", "json"], env=ci)
    # The api reconnect path, planned and applied: a person signs in for each account at
    # apply, and those grants go to Adobe.
    api = {**ci, "PINMIGRATE_MIGRATION_RECONNECT_VIA": "api"}
    j.run("plan", ["plan", "-v", "--out", "plan.json"], env=api)
    j.run("apply", ["apply", "-v", "plan.json"], env=api, terminal=True)
    j.run("rollback", ["rollback", "-v", "--yes"], env=ci)
    capture_the_demo(j)
    j.run("demo", ["demo", "-v"])
    j.blobs.update(written_files(j.root))


def test_every_journey_ran_and_wrote_what_the_scan_reads(journeys: Journeys) -> None:
    names = {"doctor", "discover", "show", "browser login", "apply", "rollback", "demo"}
    assert names <= set(journeys.results)
    files = [where for where in journeys.blobs if where.startswith(str(journeys.root))]
    assert any(where.endswith("plan.json") for where in files)
    assert len([where for where in files if "/runs/" in where]) == 2  # apply, rollback
    assert len([where for where in journeys.blobs if where.startswith("lock of run")]) == 3
    assert any("demo state dir" in where and "/runs/" in where for where in journeys.blobs)
    # -v logged requests: the scan read real logs, not silence.
    assert "pinmigrate.http" in journeys.results["apply"].stderr
    assert "callback listener" in journeys.results["browser login"].stderr


def test_the_journeys_handled_every_kind_of_secret(journeys: Journeys) -> None:
    labels = " ".join(journeys.all_secrets())
    for kind in ("IMS token", "access token", "refresh token", "OAuth code"):
        assert f" {kind} " in f" {labels} ".replace("Pinterest ", " "), kind
        assert f"demo {kind}" in labels.replace("demo Pinterest ", "demo "), kind
    assert journeys.demo_stored_a_login


def test_no_secret_is_written_anywhere_but_the_login_store(journeys: Journeys) -> None:
    findings = scan(journeys.blobs, journeys.all_secrets())
    assert findings == [], "\n".join(findings)


def test_the_login_store_is_private_and_holds_the_current_refresh_tokens(
    journeys: Journeys,
) -> None:
    store = journeys.state_dir / LOGINS
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    stored = {r["user_id"]: r["refresh_token"] for r in json.loads(store.read_text())["logins"]}
    live: dict[str, set[str]] = {}
    for token in journeys.emulator.state.dump()["secrets"]["pinterest_tokens"]:
        if token["kind"] == "refresh" and not token["revoked"]:
            live.setdefault(token["user_id"], set()).add(token["token"])
    # Both users logged in (browser and environment); each one's refresh token is there,
    # rotated where it was rotated: so the scan above would have noticed it elsewhere.
    assert set(stored) == {"1000000001", "1000000002"}
    for user, token in stored.items():
        assert token in live[user], f"the stored refresh token of {user} is not a live one"


def test_the_grants_handed_to_adobe_are_in_no_login_store(journeys: Journeys) -> None:
    text = (journeys.state_dir / LOGINS).read_text()
    given = [
        value
        for kinds in journeys.emulator.state.dump()["objects"].values()
        for account in kinds["connections"]
        for key, value in ((account.get("auth") or {}).get("params") or {}).items()
        if key in ("accessToken", "refreshToken")
        and account.get("etag")
        and value
        and not str(value).startswith(("pina_emu_", "pinr_emu_"))  # the scenario's own
    ]
    assert len(given) == 6  # three accounts reconnected, each with its own grant
    assert len(set(given)) == 6
    assert not [token for token in given if token in text]


# --- the scan fails when redaction does -----------------------------------------------------------


def test_the_scan_catches_a_login_with_redaction_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With redaction switched off, the -v log of a browser login shows the OAuth code."""
    import pinmigrate.redact

    emulator = Emulator(scenario="demo", port=0, auto_approve=True).start()
    try:
        fresh_redaction_registry()
        monkeypatch.setattr(pinmigrate.redact, "redact", lambda text: text)
        monkeypatch.setattr(App, "stdin_is_tty", lambda self: True)
        monkeypatch.setattr("pinmigrate.oauth.resolvers._open_browser", robot_browser)
        env = {
            **emulator.env(),
            "PINMIGRATE_STATE_DIR": str(tmp_path / "state"),
            "PINMIGRATE_PINTEREST_REDIRECT_URI": emulator.register_redirect_uri(
                f"http://127.0.0.1:{free_port()}/"
            ),
        }
        result = invoke(["auth", "login", "-v", "--timeout", "20"], env)
        assert result.exit_code == 0, result.stderr
        blobs = {"stderr": result.stderr.encode(), **written_files(tmp_path)}
        findings = scan(blobs, secrets_of(emulator.state.dump()))
    finally:
        emulator.stop()
    assert any(f.startswith("OAuth code 0 (as is) in stderr") for f in findings), findings


# --- a secret broken by a line break ------------------------------------------------------------

#: A Pinterest access token and an Adobe client secret, each pasted with a line break inside.
BROKEN = {
    "Pinterest access token": ("pina_AAAAheadpart01", "TAILpart987654321"),
    "Adobe client secret": ("p8e-HEADhalf-0123", "tailHALF-secret-4567"),
}


def _shown_every_way(value: str) -> dict[str, str]:
    """How an error line can carry a value: as is, joined onto one line, collapsed, quoted."""
    from pinmigrate.errors import ApiError
    from pinmigrate.http import one_line

    return {
        "error line": ApiError(f"Adobe said: invalid client {value} (401)").line(),
        "one_line": one_line(f"refused {value}\n\n  for   this request"),
        "repr (requests' InvalidHeader)": f"header value: {('Bearer ' + value)!r}",
        "json": json.dumps({"message": f"bad token {value}"}),
        "a field": f"access_token={value}&x=1",
        "tail alone": f"the rest: {value.split(chr(10))[-1].strip()}",
        "crlf": f"value {value.replace(chr(10), chr(13) + chr(10))} end",
    }


@pytest.mark.parametrize("label", sorted(BROKEN))
def test_a_secret_with_a_line_break_never_leaks_a_piece(label: str) -> None:
    from pinmigrate import redact

    head, tail = BROKEN[label]
    value = f"{head}\n{tail}"
    redact.register(value)
    for form, text in _shown_every_way(value).items():
        shown = redact.redact(text)
        assert head not in shown and tail not in shown, f"{form}: {shown!r}"
        assert "***" in shown, form


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("PINMIGRATE_PINTEREST_ACCESS_TOKEN", ["auth", "status"]),
        ("PINMIGRATE_ADOBE_CLIENT_SECRET", ["-v", "plan"]),
    ],
)
def test_a_configured_secret_with_a_line_break_is_refused_unseen(
    name: str, args: list[str], tmp_path: Path
) -> None:
    head, tail = BROKEN["Adobe client secret" if "ADOBE" in name else "Pinterest access token"]
    emulator = Emulator(scenario="demo", port=0).start()
    try:
        env = {**emulator.env(), "PINMIGRATE_STATE_DIR": str(tmp_path / "state")}
        env[name] = f"{head}\n{tail}"
        result = invoke(args, env)
        sent = emulator.requests()["total"]
    finally:
        emulator.stop()
    assert result.exit_code == 64, result.stderr
    key = name.removeprefix("PINMIGRATE_").lower().replace("_", ".", 1)
    assert f"invalid setting {key} " in result.stderr and "line break" in result.stderr
    assert head not in result.stdout + result.stderr
    assert tail not in result.stdout + result.stderr
    assert sent == 0


def test_a_token_with_a_line_break_from_stdin_is_not_sent_and_not_shown(tmp_path: Path) -> None:
    """``--with-token`` JSON whose access token holds a newline: requests refuses the header,
    quoting it; the error line names neither half."""
    emulator = Emulator(scenario="demo", port=0).start()
    try:
        real = str(emulator.tokens()["access_token"])
        value = f"{real}\nTAILpart987654321"
        env = {**emulator.env(), "PINMIGRATE_STATE_DIR": str(tmp_path / "state")}
        result = invoke(
            ["auth", "login", "--with-token"], env, input=json.dumps({"access_token": value})
        )
        sent = emulator.requests()["total"]
    finally:
        emulator.stop()
    output = result.stdout + result.stderr
    assert result.exit_code == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not sent: a header value holds a line break" in lines[0], lines
    assert "Traceback" not in output and "internal error" not in output
    assert real not in output and "TAILpart987654321" not in output
    assert sent == 0
    assert not (tmp_path / "state" / LOGINS).exists()
