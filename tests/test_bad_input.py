"""The bad-input corpus: every wrong thing a user, a file or a server can hand pinmigrate.

Each case runs the real CLI entry point against the emulator and must end with the
contract's exit code, one line on stderr that says what went wrong (progress a command
printed before failing is allowed only where a case says so), no traceback, no change to
any Adobe object (states, etags, audiences, credentials), no Flow Service write even
attempted, and no Pinterest login stored.

Shapes the emulator cannot produce (HTML, empty bodies, endless or foreign next links, a
server that never answers) come from :class:`Stub`, a loopback server that answers some
requests itself and passes the rest through to the emulator.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests
from loopback import LoopbackServer

from pinmigrate.app import App
from pinmigrate.emulator import LEGACY_SPEC_ID, NEW_SPEC_ID
from pinmigrate.emulator.model import S3_SPEC_ID
from pinmigrate.http import HttpClient, RetryPolicy
from pinmigrate.report import is_progress_line

pytestmark = pytest.mark.slow

FLOWSERVICE = "/data/foundation/flowservice"
USAGE, AUTH, FAILED, STALE, CONFIRM = 64, 4, 1, 3, 5


# --- a loopback server for the answers the emulator does not give ----------------------------


#: (status, headers, body) a stub sends, or None to pass the request through to the emulator.
#: A body given as an iterable is streamed chunk by chunk (a Content-Length only if the
#: headers name one; else the connection closes after it); with status 0 the chunks are the
#: raw bytes of the whole answer, status line and headers included.
Answer = tuple[int, dict[str, str], bytes | Iterable[bytes]] | None


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


class Stub:
    """A threaded HTTP server on 127.0.0.1 that answers with ``answer`` or proxies upstream."""

    def __init__(self, answer: Callable[[Seen], Answer], upstream: str | None = None) -> None:
        self.answer = answer
        self.upstream = urlsplit(upstream) if upstream else None
        self.seen: list[Seen] = []
        #: set at teardown: frees handlers that were told to hang
        self.release = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}
                )
                stub.seen.append(seen)
                reply = stub.answer(seen)
                if reply is None:
                    reply = stub.proxy(seen, body)
                status, headers, payload = reply
                if not isinstance(payload, bytes):
                    self.stream(status, headers, payload)
                    return
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def stream(self, status: int, headers: dict[str, str], chunks: Iterable[bytes]) -> None:
                self.close_connection = True
                if status:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Connection", "close")
                    self.end_headers()
                try:
                    for chunk in chunks:
                        if stub.release.is_set():
                            return
                        self.wfile.write(chunk)
                        self.wfile.flush()
                except OSError:
                    return  # the client stopped reading: what a capped client does

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

        self.loopback = LoopbackServer(Handler, name="stub")
        self.url = self.loopback.url

    def proxy(self, seen: Seen, body: bytes) -> tuple[int, dict[str, str], bytes]:
        assert self.upstream is not None, f"the stub has no answer for {seen.path}"
        host = self.upstream.hostname or "127.0.0.1"
        conn = http.client.HTTPConnection(host, self.upstream.port, timeout=10)
        headers = {k: v for k, v in seen.headers.items() if k not in ("host", "content-length")}
        conn.request(seen.method, seen.path, body=body or None, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        kind = response.getheader("Content-Type") or "application/json"
        conn.close()
        return response.status, {"Content-Type": kind}, payload

    def hang(self) -> Answer:
        """Never answer (until teardown): the client's timeout must fire."""
        self.release.wait(30)
        return 504, {}, b""

    def close(self) -> None:
        self.release.set()
        self.loopback.stop()


def http_defaults() -> dict[str, Any]:
    """HttpClient's keyword defaults: where a case injects the sleep and a short timeout."""
    defaults = HttpClient.__init__.__kwdefaults__
    assert defaults is not None and "sleep" in defaults and "timeout" in defaults
    return defaults


def json_answer(status: int, payload: Any) -> Answer:
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()


def is_flow_list(seen: Seen) -> bool:
    return seen.method == "GET" and urlsplit(seen.path).path == f"{FLOWSERVICE}/flows"


def is_platform(seen: Seen) -> bool:
    return seen.path.startswith(FLOWSERVICE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the world a case runs in --------------------------------------------------------------------


@dataclass
class World:
    tmp: Path
    emulator: Any
    env: dict[str, str]
    monkeypatch: pytest.MonkeyPatch
    cli: Callable[..., Any]
    #: every wait the HTTP layer asked for (the sleep is injected: no case sleeps)
    sleeps: list[float] = field(default_factory=list)
    stubs: list[Stub] = field(default_factory=list)
    #: placeholders for a case's arguments, e.g. {tmp} and {plan}
    fields: dict[str, str] = field(default_factory=dict)
    #: assertions a setup adds, run after the command
    checks: list[Callable[[World, Any], None]] = field(default_factory=list)

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def stub(self, answer: Callable[[Seen], Answer], *, upstream: bool = True) -> Stub:
        stub = Stub(answer, self.emulator.url if upstream else None)
        self.stubs.append(stub)
        return stub

    def platform_stub(self, answer: Callable[[Seen], Answer]) -> Stub:
        """Flow Service answered by ``answer`` (None: by the emulator); IMS stays the emulator."""
        stub = self.stub(answer)
        self.env["PINMIGRATE_ADOBE_PLATFORM_URL"] = stub.url
        return stub

    def control(self, method: str, path: str, body: Any = None) -> Any:
        answer = requests.request(
            method,
            f"{self.emulator.url}/_emulator/{path}",
            json=body,
            headers={"Content-Type": "application/json"},
        )
        answer.raise_for_status()
        return answer.json()

    def refresh_token(self, user: str = "emu_marketer") -> str:
        return str(self.control("POST", "tokens", {"user": user})["refresh_token"])

    def plan_data(self) -> dict[str, Any]:
        """A real plan of the demo world, as saved by `pinmigrate plan --out`."""
        path = self.tmp / "made-plan.json"
        made = self.cli(["plan", "--out", str(path)], self.env)
        assert made.exit_code == 0, made.stderr
        data: dict[str, Any] = json.loads(path.read_text())
        path.unlink()
        return data

    def plan_file(
        self,
        edit: Callable[[dict[str, Any]], None] | None = None,
        *,
        reseal: bool | Literal["sha256"] = False,
        text: Callable[[str], str | bytes] | None = None,
    ) -> Path:
        """Save a real plan as {plan}, edited by hand. ``reseal``: sealed again afterwards as
        an insider can, with the state dir's plan key; "sha256": with the plain checksum that
        anyone can compute (how plans were sealed before the key)."""
        data = self.plan_data()
        if edit is not None:
            edit(data)
        if reseal:
            body = {key: value for key, value in data.items() if key != "fingerprint"}
            canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
            if reseal == "sha256":
                data["fingerprint"] = "sha256:" + hashlib.sha256(canonical).hexdigest()
            else:
                data["fingerprint"] = self.insider_seal(canonical)
        content: str | bytes = json.dumps(data, indent=2)
        if text is not None:
            content = text(str(content))
        path = self.file("plan.json", content)
        self.fields["plan"] = str(path)
        return path

    def insider_seal(self, canonical: bytes) -> str:
        """``hmac-sha256:KEY_ID:MAC`` with the state dir's plan key, computed from the key
        file alone (what someone who can read the state dir can do)."""
        key_file = Path(self.env["PINMIGRATE_STATE_DIR"]) / "plan.key"
        secret = bytes.fromhex(key_file.read_text().strip())
        key_id = hashlib.sha256(b"pinmigrate plan key id\0" + secret).hexdigest()[:16]
        mac = hmac.new(secret, canonical, hashlib.sha256).hexdigest()
        return f"hmac-sha256:{key_id}:{mac}"

    def flow_id(self, name: str, *, card: str = LEGACY_SPEC_ID, sandbox: str = "prod") -> str:
        for flow in self.control("GET", "state")["objects"][sandbox]["flows"]:
            spec = flow["inheritedAttributes"]["targetConnections"][0]["connectionSpec"]["id"]
            if flow["name"] == name and spec == card:
                return str(flow["id"])
        raise AssertionError(f"no flow {name!r} in {sandbox}")


Setup = Callable[[World], object]


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    code: int
    #: a fragment the error line must hold
    says: str
    env: Mapping[str, str | None] = field(default_factory=dict)
    setup: Setup | None = None
    #: the command may print progress on stderr before its error line (e.g. the login URL)
    chatty: bool = False
    #: the command legitimately prints its result on stdout before failing
    prints: bool = False
    stdin: str | None = None
    #: run ``python -m pinmigrate`` in a subprocess (the real exit path, a real non-tty stdin)
    process: bool = False
    #: text that must not appear anywhere in the output (e.g. a secret in a bad value)
    never: tuple[str, ...] = ()
    check: Callable[[World, Any], None] | None = None


# --- the cases -----------------------------------------------------------------------------------


def config_file(text: str | bytes, name: str = "pinmigrate.toml") -> Setup:
    def setup(world: World) -> None:
        world.fields["config"] = str(world.file(name, text))

    return setup


def store_a_login(world: World, user_id: str, username: str) -> None:
    from pydantic import SecretStr

    from pinmigrate.logins import Login, LoginStore

    login = Login(user_id=user_id, username=username, access_token=SecretStr("pina_bad_input"))
    LoginStore(Path(world.env["PINMIGRATE_STATE_DIR"])).put(login)


def plain_http(world: World, key: str, url: str) -> None:
    """``key`` set to plain http on another host: refused before any request is sent."""
    world.env["PINMIGRATE_" + key.replace(".", "_").upper()] = url
    # With a login to refresh, `auth status` would call Pinterest first thing.
    world.env["PINMIGRATE_PINTEREST_REFRESH_TOKEN"] = world.refresh_token()

    def nothing_was_sent(world: World, result: Any) -> None:
        log = world.emulator.requests()
        assert log["total"] == 0, log["by_endpoint"]

    world.checks.append(nothing_was_sent)


CONFIG_CASES = [
    Case(
        "config/malformed-toml",
        ("--config", "{config}", "plan"),
        USAGE,
        "is not valid TOML",
        setup=config_file("[adobe\norg_id = 'x'\n"),
        process=True,
    ),
    Case(
        "config/unknown-key",
        ("--config", "{config}", "plan"),
        USAGE,
        "unknown key adobe.colour",
        setup=config_file("[adobe]\ncolour = 'red'\n"),
    ),
    Case(
        "config/unknown-section",
        ("--config", "{config}", "plan"),
        USAGE,
        "unknown section [aws]",
        setup=config_file("[aws]\nregion = 'us-east-1'\n"),
    ),
    Case(
        "config/section-not-a-table",
        ("--config", "{config}", "plan"),
        USAGE,
        "must be a table",
        setup=config_file("adobe = 'prod'\n"),
    ),
    Case(
        "config/concurrency-not-a-number",
        ("--config", "{config}", "plan"),
        USAGE,
        "migration.concurrency",
        setup=config_file('[migration]\nconcurrency = "x"\n'),
    ),
    Case(
        "config/disable-legacy-maybe",
        ("--config", "{config}", "plan"),
        USAGE,
        "migration.disable_legacy",
        setup=config_file('[migration]\ndisable_legacy = "maybe"\n'),
    ),
    Case(
        "config/negative-margin",
        ("--config", "{config}", "plan"),
        USAGE,
        "migration.reconnect_margin_days",
        setup=config_file("[migration]\nreconnect_margin_days = -1\n"),
    ),
    Case(
        "config/secret-of-the-wrong-type-is-not-echoed",
        ("--config", "{config}", "plan"),
        USAGE,
        "adobe.client_secret",
        env={"PINMIGRATE_ADOBE_CLIENT_SECRET": None},
        setup=config_file("[adobe]\nclient_secret = ['s3cr3t-in-a-list-0042']\n"),
        never=("s3cr3t-in-a-list-0042",),
    ),
    Case(
        "config/missing-client-secret",
        ("plan",),
        USAGE,
        "missing required setting adobe.client_secret",
        env={"PINMIGRATE_ADOBE_CLIENT_SECRET": None},
    ),
    Case(
        "config/missing-org-id-and-no-config-file-suggests-init",
        ("plan",),
        USAGE,
        "missing required setting adobe.org_id: no config file found (looked for ",
        env={"PINMIGRATE_ADOBE_ORG_ID": None},
    ),
    Case(
        "config/non-loopback-redirect",
        ("auth", "login"),
        USAGE,
        "is not a loopback address",
        env={"PINMIGRATE_PINTEREST_REDIRECT_URI": "http://example.com:8085/"},
    ),
    Case(
        "config/redirect-without-port",
        ("auth", "login"),
        USAGE,
        "needs an explicit port",
        env={"PINMIGRATE_PINTEREST_REDIRECT_URI": "http://localhost/"},
    ),
    Case(
        "config/redirect-https",
        ("auth", "login"),
        USAGE,
        "must be an http:// loopback URL",
        env={"PINMIGRATE_PINTEREST_REDIRECT_URI": "https://127.0.0.1:8085/"},
    ),
    Case(
        "config/ftp-url",
        ("plan",),
        USAGE,
        "adobe.platform_url",
        env={"PINMIGRATE_ADOBE_PLATFORM_URL": "ftp://platform.adobe.io"},
    ),
    Case(
        "config/not-a-url",
        ("plan",),
        USAGE,
        "adobe.ims_url",
        env={"PINMIGRATE_ADOBE_IMS_URL": "not a url"},
    ),
    Case(
        "config/org-id-without-suffix",
        ("plan",),
        USAGE,
        "@AdobeOrg",
        env={"PINMIGRATE_ADOBE_ORG_ID": "1234ABCD"},
    ),
    Case(
        "config/empty-sandboxes",
        ("plan",),
        USAGE,
        "at least one sandbox",
        env={"PINMIGRATE_ADOBE_SANDBOXES": " , "},
    ),
    Case(
        "config/unknown-env-key",
        ("plan",),
        USAGE,
        "PINMIGRATE_ADOBE_COLOUR",
        env={"PINMIGRATE_ADOBE_COLOUR": "red"},
    ),
    Case(
        "config/concurrency-zero-from-env",
        ("plan",),
        USAGE,
        "PINMIGRATE_MIGRATION_CONCURRENCY",
        env={"PINMIGRATE_MIGRATION_CONCURRENCY": "0"},
    ),
    Case(
        "config/missing-file",
        ("--config", "{tmp}/nope.toml", "plan"),
        USAGE,
        "does not exist",
    ),
    Case(
        "config/missing-file-from-env",
        ("plan",),
        USAGE,
        "does not exist",
        setup=lambda w: w.env.update(PINMIGRATE_CONFIG=str(w.tmp / "gone.toml")),
    ),
    Case(
        "config/a-directory",
        ("--config", "{tmp}", "plan"),
        USAGE,
        "cannot read config file",
    ),
    Case(
        "config/state-dir-is-a-file",
        ("apply", "--yes"),
        USAGE,
        "is not a directory",
        setup=lambda w: w.env.update(PINMIGRATE_STATE_DIR=str(w.file("state-file", "x"))),
    ),
    Case(
        "config/state-dir-under-a-file",
        ("auth", "status"),
        USAGE,
        "is not a directory",
        setup=lambda w: w.env.update(PINMIGRATE_STATE_DIR=str(w.file("state-file", "x") / "s")),
    ),
    Case(
        "config/unquoted-secret-is-not-echoed",
        ("--config", "{config}", "plan"),
        USAGE,
        "is not valid TOML",
        setup=config_file("[pinterest]\napp_secret = s3cr3t-unquoted-0042\n"),
        never=("s3cr3t-unquoted-0042",),
    ),
    *(
        Case(
            f"config/plain-http-{key.replace('_', '-')}-{'-'.join(c.lstrip('-') for c in command)}",
            command,
            USAGE,
            f"invalid setting {key} (from environment PINMIGRATE_{key.replace('.', '_').upper()})",
            setup=lambda w, key=key, url=url: plain_http(w, key, url),
            # doctor prints its failed config check on stdout before the error line.
            prints=command == ("doctor",),
            process=command == ("discover",),
        )
        for key, url, command in (
            ("adobe.ims_url", "http://ims-na1.adobelogin.com", ("discover",)),
            ("adobe.platform_url", "http://platform.adobe.io", ("plan",)),
            ("adobe.platform_url", "http://10.1.2.3:8080", ("doctor",)),
            ("adobe.ui_url", "http://experience.adobe.com/#/{sandbox}", ("apply", "--yes")),
            ("pinterest.api_url", "http://api.pinterest.com/v5", ("auth", "status")),
            ("pinterest.oauth_url", "http://www.pinterest.com/oauth/", ("auth", "login")),
        )
    ),
    Case(
        "config/not-utf8",
        ("--config", "{config}", "plan"),
        USAGE,
        "is not UTF-8",
        setup=config_file(b"[adobe]\norg_id = '\xff\xfe'\n"),
    ),
]


def with_plan(world: World) -> None:
    world.plan_file()


def damaged_journal(world: World, run_id: str) -> None:
    """A journal whose middle record is garbage: skipping it could hide a write."""
    runs = Path(world.env["PINMIGRATE_STATE_DIR"]) / "runs"
    runs.mkdir(parents=True)
    base = {"ts": "2024-01-01T00:00:00+00:00", "run_id": run_id}
    good = [
        {**base, "event": "run_start", "kind": "apply"},
        {**base, "event": "run_end"},
    ]
    lines = [
        json.dumps(good[0]),
        '{"event": "before", "action_id": "enable_fl',
        json.dumps(good[1]),
    ]
    (runs / f"{run_id}.jsonl").write_text("\n".join(lines) + "\n")


def nothing_sent(world: World, result: Any) -> None:
    """Refused before the first request: not even a read reached the emulator."""
    log = world.emulator.requests()
    assert log["total"] == 0, log["by_endpoint"]


FLAG_CASES = [
    Case("flags/unknown-flag", ("plan", "--bogus"), USAGE, "No such option '--bogus'"),
    Case("flags/bad-output", ("plan", "--output", "yaml"), USAGE, "'yaml' is not one of"),
    Case(
        "flags/bad-output-from-env",
        ("plan",),
        USAGE,
        "'xml' is not one of",
        env={"PINMIGRATE_OUTPUT": "xml"},
    ),
    Case("flags/concurrency-zero", ("apply", "--concurrency", "0"), USAGE, "--concurrency"),
    Case(
        "flags/concurrency-abc",
        ("apply", "--concurrency", "abc"),
        USAGE,
        "'abc' is not a valid integer",
    ),
    Case("flags/run-timeout-zero", ("apply", "--run-timeout", "0"), USAGE, "--run-timeout"),
    Case("flags/match-without-equals", ("plan", "--match", "abc"), USAGE, "LEGACY_ID=NEW_ID"),
    Case(
        "flags/match-json-mode",
        ("--output", "json", "plan", "--match", "=x"),
        USAGE,
        "LEGACY_ID=NEW_ID",
    ),
    Case("flags/match-unknown-ids", ("plan", "--match", "nope=nada"), USAGE, "nope"),
    Case("flags/flow-unknown", ("plan", "--flow", "no-such-flow"), USAGE, "no-such-flow"),
    # --flow takes an id or a name, looked up in what discovery read, never put in a URL.
    Case(
        "flags/flow-dot-dot",
        ("plan", "--flow", ".."),
        USAGE,
        "no Pinterest flow with id or name '..' (--flow)",
    ),
    Case(
        "flags/flow-with-slash",
        ("plan", "--flow", "abc/../def"),
        USAGE,
        "no Pinterest flow with id or name 'abc/../def' (--flow)",
    ),
    Case("flags/flow-empty", ("plan", "--flow", ""), USAGE, "it is empty", check=nothing_sent),
    Case(
        "flags/match-dot",
        ("plan", "--match", ".=abc"),
        USAGE,
        "refusing --match legacy flow id '.'",
        check=nothing_sent,
    ),
    Case(
        "flags/match-query",
        ("apply", "--yes", "--match", "abc=def?op"),
        USAGE,
        "refusing --match new flow id 'def?op': it holds '?'",
        check=nothing_sent,
    ),
    Case(
        "flags/sandbox-unknown", ("plan", "--sandbox", "stage"), USAGE, "1 unknown sandbox: stage"
    ),
    Case("flags/out-is-a-directory", ("plan", "--out", "{tmp}"), USAGE, "is a directory"),
    Case("flags/show-without-plan-file", ("show",), USAGE, "Missing argument 'PLAN_FILE'"),
    Case(
        "flags/apply-plan-file-with-narrowing",
        ("apply", "{plan}", "--sandbox", "prod"),
        USAGE,
        "cannot change a saved plan file",
        setup=with_plan,
    ),
    Case(
        "flags/rollback-unknown-run",
        ("rollback", "20200101T000000000Z-abcdef", "--yes"),
        USAGE,
        "no run 20200101T000000000Z-abcdef",
    ),
    Case(
        "flags/rollback-damaged-journal",
        ("rollback", "20240101T000000000Z-abcdef", "--yes"),
        FAILED,
        "is damaged at line 2",
        setup=lambda w: damaged_journal(w, "20240101T000000000Z-abcdef"),
    ),
    Case("flags/rollback-path-run-id", ("rollback", "../../x", "--yes"), USAGE, "not a run id"),
    Case("flags/login-timeout-zero", ("auth", "login", "--timeout", "0"), USAGE, "--timeout"),
    Case(
        "flags/login-two-modes",
        ("auth", "login", "--no-browser", "--with-token"),
        USAGE,
        "cannot be combined",
    ),
    Case(
        "flags/logout-unknown-user",
        ("auth", "logout", "nobody"),
        USAGE,
        "no stored Pinterest login for 'nobody' (stored: someone (1))",
        setup=lambda world: store_a_login(world, "1", "someone"),
    ),
    Case("flags/emulator-bad-faults", ("emulator", "--faults", "boom"), USAGE, "--faults"),
    Case(
        "flags/emulator-public-host",
        ("emulator", "--host", "0.0.0.0"),
        USAGE,
        "not a loopback address",
    ),
    Case(
        "flags/apply-unattended-needs-yes",
        ("apply", "--no-input"),
        CONFIRM,
        "needs confirmation",
        prints=True,  # the fresh plan it asks about
        process=True,
    ),
]


def stale_plan(world: World) -> None:
    world.plan_file()
    # The operator switches a legacy flow off behind the plan's back.
    legacy = world.flow_id("Loyalty members")
    world.control("PATCH", f"objects/flows/{legacy}", {"state": "disabled"})


def other_org(data: dict[str, Any]) -> None:
    data["org_id"] = "FFFFFFFFFFFFFFFFFFFFFFFF@AdobeOrg"


def first_action(data: dict[str, Any]) -> dict[str, Any]:
    action: dict[str, Any] = data["actions"][0]
    return action


def dependency_cycle(data: dict[str, Any]) -> None:
    actions = data["actions"]
    actions[0]["depends_on"] = [actions[-1]["id"]]
    actions[-1]["depends_on"] = [actions[0]["id"]]


def without_preconditions(data: dict[str, Any]) -> None:
    # Without them the staleness check has nothing to compare: every write would go ahead.
    for action in data["actions"]:
        action["precondition"] = {}


def retargeted_to(target_id: str) -> Callable[[dict[str, Any]], None]:
    """A disable_flow action (nothing depends on one) aimed at ``target_id``, its id to match:
    only the id itself is wrong, so only the id check can refuse it."""

    def edit(data: dict[str, Any]) -> None:
        action = next(a for a in data["actions"] if a["kind"] == "disable_flow")
        action["target_id"] = target_id
        action["id"] = f"disable_flow:{action['sandbox']}:{target_id}"

    return edit


def twin_named(flow_id: str) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        action = next(a for a in data["actions"] if a["kind"] == "disable_flow")
        action["precondition"]["twin_flow_id"] = flow_id

    return edit


def smuggle_audience(world: World, data: dict[str, Any], *, claim: bool = False) -> None:
    """Add an audience of the S3 export flow to the plan's add_audiences (and, with
    ``claim``, to its precondition's list of what the twin lacks): a segment outside the
    migration would reach Pinterest."""
    for flow in world.control("GET", "state")["objects"]["prod"]["flows"]:
        spec = flow["inheritedAttributes"]["targetConnections"][0]["connectionSpec"]["id"]
        if spec == S3_SPEC_ID:
            selectors = flow["transformations"][0]["params"]["segmentSelectors"]["selectors"]
            foreign = selectors[0]["value"]
            break
    action = next(a for a in data["actions"] if a["kind"] == "add_audiences")
    action["details"]["audiences"].append(
        {"id": foreign["id"], "name": "High-value abandoners (EU)", "description": ""}
    )
    if claim:
        action["precondition"]["missing"].append(foreign["id"])


def plan_key(world: World) -> Path:
    return Path(world.env["PINMIGRATE_STATE_DIR"]) / "plan.key"


def retarget_disable(world: World, data: dict[str, Any], name: str = "S3 nightly export") -> None:
    """Point the plan's first disable_flow at another flow of prod (id and all)."""
    target = world.flow_id(name, card=S3_SPEC_ID)
    action = next(a for a in data["actions"] if a["kind"] == "disable_flow")
    action.update(id=f"disable_flow:{action['sandbox']}:{target}", target_id=target)


def retarget(data: dict[str, Any], kind: str, target: str) -> None:
    """Point the plan's first ``kind`` action at ``target``, its id and the actions that
    depend on it following, as a careful forger would."""
    action = next(a for a in data["actions"] if a["kind"] == kind)
    old, new = action["id"], f"{kind}:{action['sandbox']}:{target}"
    action.update(id=new, target_id=target)
    for other in data["actions"]:
        other["depends_on"] = [new if dep == old else dep for dep in other["depends_on"]]


def repair(data: dict[str, Any], kind: str, name: str, field: str, flow_id: str) -> None:
    """Give the ``kind`` action on flow ``name`` another flow as the other half of its pair."""
    action = next(a for a in data["actions"] if a["kind"] == kind and a["target_name"] == name)
    action["precondition"][field] = flow_id


def move_to_stage(data: dict[str, Any]) -> None:
    """Add a sandbox the configuration does not name and move the last action there."""
    data["sandboxes"].append("stage")
    action = data["actions"][-1]
    old = action["id"]
    action.update(sandbox="stage", id=f"{action['kind']}:stage:{action['target_id']}")
    for other in data["actions"]:
        other["depends_on"] = [action["id"] if d == old else d for d in other["depends_on"]]


def account_id(world: World, spec: str, sandbox: str = "prod") -> str:
    """The first account (base connection) of ``spec`` in ``sandbox``."""
    for connection in world.control("GET", "state")["objects"][sandbox]["connections"]:
        if connection["connectionSpec"]["id"] == spec:
            return str(connection["id"])
    raise AssertionError(f"no account of {spec} in {sandbox}")


def names_object(result: Any, object_id: str) -> None:
    assert object_id in result.stderr, result.stderr


def made_elsewhere(world: World) -> None:
    """A plan made with one state dir, applied with another (another key)."""
    world.plan_file()
    world.env["PINMIGRATE_STATE_DIR"] = str(world.tmp / "another-state")


def audiences_not_a_list(data: dict[str, Any]) -> None:
    add = next(a for a in data["actions"] if a["kind"] == "add_audiences")
    add["details"]["audiences"] = "all of them"


PLAN_CASES = [
    Case(
        "plan-file/truncated",
        ("apply", "{plan}"),
        USAGE,
        "is not valid JSON (truncated?)",
        setup=lambda w: w.plan_file(text=lambda t: t[: len(t) // 2]),
    ),
    Case(
        "plan-file/not-json",
        ("apply", "{plan}"),
        USAGE,
        "is not valid JSON",
        setup=lambda w: w.plan_file(text=lambda t: "reconnect everything, please\n"),
    ),
    Case(
        "plan-file/json-array",
        ("apply", "{plan}"),
        USAGE,
        "not a JSON object",
        setup=lambda w: w.plan_file(text=lambda t: f"[{t}]"),
    ),
    Case(
        "plan-file/edited-target",
        ("apply", "{plan}"),
        USAGE,
        "does not match its fingerprint",
        setup=lambda w: w.plan_file(lambda d: first_action(d).update(target_id="someone-else")),
        process=True,
    ),
    Case(
        "plan-file/edited-shown",
        ("show", "{plan}"),
        USAGE,
        "does not match its fingerprint",
        setup=lambda w: w.plan_file(lambda d: d["actions"].pop()),
    ),
    Case(
        "plan-file/schema-version-2",
        ("apply", "{plan}"),
        USAGE,
        "schema_version 2",
        setup=lambda w: w.plan_file(lambda d: d.update(schema_version=2)),
    ),
    Case(
        "plan-file/wrong-kind",
        ("apply", "{plan}"),
        USAGE,
        "not a pinmigrate plan",
        setup=lambda w: w.plan_file(lambda d: d.update(kind="pinmigrate.apply")),
    ),
    Case(
        "plan-file/another-org",
        ("apply", "{plan}"),
        USAGE,
        "was made for org FFFFFFFFFFFFFFFFFFFFFFFF@AdobeOrg",
        setup=lambda w: w.plan_file(other_org, reseal=True),
    ),
    Case(
        "plan-file/unknown-action-kind",
        ("apply", "{plan}"),
        USAGE,
        "malformed at actions.0.kind: 'delete_flow' is not one of reconnect_account",
        setup=lambda w: w.plan_file(lambda d: first_action(d).update(kind="delete_flow")),
    ),
    Case(
        "plan-file/nested-too-deeply",
        ("apply", "{plan}"),
        USAGE,
        "nested too deeply",
        setup=lambda w: w.plan_file(text=lambda t: "[" * 100_000 + "]" * 100_000),
    ),
    Case(
        "plan-file/resealed-dependency-cycle",
        ("apply", "{plan}"),
        USAGE,
        "does not come before it",
        setup=lambda w: w.plan_file(dependency_cycle, reseal=True),
    ),
    Case(
        "plan-file/resealed-unknown-dependency",
        ("apply", "{plan}"),
        USAGE,
        "which is not in the plan",
        setup=lambda w: w.plan_file(
            lambda d: first_action(d).update(depends_on=["x"]), reseal=True
        ),
    ),
    Case(
        "plan-file/resealed-duplicate-action",
        ("apply", "{plan}"),
        USAGE,
        "appears twice",
        setup=lambda w: w.plan_file(lambda d: d["actions"].append(d["actions"][0]), reseal=True),
    ),
    Case(
        "plan-file/resealed-without-preconditions",
        ("apply", "{plan}"),
        USAGE,
        ".precondition.",
        setup=lambda w: w.plan_file(without_preconditions, reseal=True),
    ),
    Case(
        "plan-file/resealed-retargeted",
        ("apply", "{plan}"),
        USAGE,
        "does not match its kind, sandbox and target_id",
        setup=lambda w: w.plan_file(lambda d: first_action(d).update(sandbox="dev"), reseal=True),
    ),
    Case(
        "plan-file/resealed-dot-dot-target",
        ("apply", "{plan}"),
        USAGE,
        "has target_id '..': it is a path step",
        setup=lambda w: w.plan_file(retargeted_to(".."), reseal=True),
        check=nothing_sent,
    ),
    Case(
        "plan-file/resealed-encoded-slash-target",
        ("show", "{plan}"),
        USAGE,
        "has target_id '%2e%2e%2fconnections': it holds '%'",
        setup=lambda w: w.plan_file(retargeted_to("%2e%2e%2fconnections"), reseal=True),
        check=nothing_sent,
    ),
    Case(
        "plan-file/resealed-twin-with-slash",
        ("apply", "{plan}"),
        USAGE,
        "has precondition.twin_flow_id '../x': it holds '/'",
        setup=lambda w: w.plan_file(twin_named("../x"), reseal=True),
        check=nothing_sent,
    ),
    Case(
        "plan-file/resealed-bad-details",
        ("apply", "{plan}"),
        USAGE,
        "details.audiences: Input should be a valid list",
        setup=lambda w: w.plan_file(audiences_not_a_list, reseal=True),
    ),
    Case(
        # The outside review's attack: retarget, then recompute the plain checksum.
        "plan-file/checksum-resealed-s3-flow",
        ("apply", "{plan}"),
        USAGE,
        "plain sha256 checksum, not this state dir's seal",
        setup=lambda w: w.plan_file(lambda d: retarget_disable(w, d), reseal="sha256"),
        process=True,
    ),
    # An insider who can read the state dir (or a bug) seals an edited plan with the right
    # key: apply still holds every target to the migration, before the first write.
    Case(
        "plan-file/insider-s3-flow",
        ("apply", "{plan}"),
        USAGE,
        "is not a flow of the legacy Pinterest card",
        setup=lambda w: w.plan_file(lambda d: retarget_disable(w, d), reseal=True),
        check=lambda w, r: names_object(r, w.flow_id("S3 nightly export", card=S3_SPEC_ID)),
    ),
    Case(
        "plan-file/resealed-extra-audience-from-an-s3-flow",
        ("apply", "{plan}"),
        USAGE,
        "adds other audiences than its precondition says the twin lacks",
        setup=lambda w: w.plan_file(lambda d: smuggle_audience(w, d), reseal=True),
    ),
    Case(
        "plan-file/resealed-extra-audience-claimed-missing",
        ("apply", "{plan}"),
        STALE,
        "no longer has audience",
        setup=lambda w: w.plan_file(lambda d: smuggle_audience(w, d, claim=True), reseal=True),
    ),
    Case(
        "plan-file/insider-new-card-flow-switched-off",
        ("apply", "{plan}"),
        USAGE,
        "its target, flow 'Spring sale' (prod, ",
        setup=lambda w: w.plan_file(
            lambda d: retarget(d, "disable_flow", w.flow_id("Spring sale", card=NEW_SPEC_ID)),
            reseal=True,
        ),
    ),
    Case(
        "plan-file/insider-sandbox-outside-config",
        ("apply", "{plan}"),
        USAGE,
        "acts in sandbox 'stage', which is not configured (adobe.sandboxes: prod, dev)",
        setup=lambda w: w.plan_file(move_to_stage, reseal=True),
    ),
    Case(
        "plan-file/sandbox-no-longer-configured",
        ("apply", "{plan}"),
        USAGE,
        "acts in sandbox 'dev', which is not configured (adobe.sandboxes: prod)",
        env={"PINMIGRATE_ADOBE_SANDBOXES": "prod"},
        setup=lambda w: w.plan_file(),
    ),
    Case(
        "plan-file/insider-s3-account-reconnect",
        ("apply", "{plan}"),
        USAGE,
        "which is not an account of the new Pinterest card",
        setup=lambda w: w.plan_file(
            lambda d: retarget(d, "reconnect_account", account_id(w, S3_SPEC_ID)), reseal=True
        ),
        check=lambda w, r: names_object(r, account_id(w, S3_SPEC_ID)),
    ),
    Case(
        "plan-file/insider-legacy-card-account-reconnect",
        ("apply", "{plan}"),
        USAGE,
        "which is not an account of the new Pinterest card",
        setup=lambda w: w.plan_file(
            lambda d: retarget(d, "reconnect_account", account_id(w, LEGACY_SPEC_ID)),
            reseal=True,
        ),
    ),
    Case(
        "plan-file/insider-enable-with-another-legacy-flow",
        ("apply", "{plan}"),
        USAGE,
        "are not a pair: the flows are not named alike ('Holiday prospects' and 'Loyalty members')",
        setup=lambda w: w.plan_file(
            lambda d: repair(
                d,
                "enable_flow",
                "Loyalty members",
                "legacy_flow_id",
                w.flow_id("Holiday prospects"),
            ),
            reseal=True,
        ),
    ),
    Case(
        "plan-file/insider-disable-with-another-twin",
        ("apply", "{plan}"),
        USAGE,
        "are not a pair: the flows are not named alike ('Loyalty members' and 'Spring sale')",
        setup=lambda w: w.plan_file(
            lambda d: repair(
                d,
                "disable_flow",
                "Loyalty members",
                "twin_flow_id",
                w.flow_id("Spring sale", card=NEW_SPEC_ID),
            ),
            reseal=True,
        ),
    ),
    Case(
        "plan-file/made-with-another-state-dir",
        ("apply", "{plan}"),
        USAGE,
        "was made elsewhere",
        setup=made_elsewhere,
    ),
    Case(
        "plan-file/plan-key-damaged",
        ("apply", "{plan}"),
        USAGE,
        "plan key",
        setup=lambda w: (w.plan_file(), plan_key(w).write_text("0123\n")),
    ),
    Case(
        "plan-file/empty",
        ("apply", "{plan}"),
        USAGE,
        "is not valid JSON",
        setup=lambda w: w.plan_file(text=lambda t: ""),
    ),
    Case(
        "plan-file/not-utf8",
        ("show", "{plan}"),
        USAGE,
        "cannot read plan file",
        setup=lambda w: w.plan_file(text=lambda t: b"\xff" + t.encode()),
    ),
    Case("plan-file/a-directory", ("apply", "{tmp}"), USAGE, "is a directory"),
    Case("plan-file/missing", ("apply", "{tmp}/nope.json"), USAGE, "does not exist"),
    Case(
        "plan-file/stale",
        ("apply", "{plan}"),
        STALE,
        "Loyalty members",
        setup=stale_plan,
    ),
]


# --- server answers ------------------------------------------------------------------------------


def platform(answer: Callable[[Seen], Answer]) -> Setup:
    """Answer the flow lists with ``answer``; everything else comes from the emulator."""

    def setup(world: World) -> None:
        world.platform_stub(lambda seen: answer(seen) if is_flow_list(seen) else None)

    return setup


def html_page(seen: Seen) -> Answer:
    page = b"<!doctype html><html><body>Sign in to continue</body></html>"
    return 200, {"Content-Type": "text/html"}, page


def next_link(href: Callable[[Seen], str]) -> Callable[[Seen], Answer]:
    return lambda seen: json_answer(200, {"items": [], "_links": {"next": {"href": href(seen)}}})


def endless_pages(world: World) -> None:
    world.monkeypatch.setattr("pinmigrate.adobe.MAX_PAGES", 25)
    counter = iter(range(10**6))
    platform(next_link(lambda seen: f"/flows?continuationToken=page{next(counter)}"))(world)


def foreign_next(world: World) -> None:
    evil = world.stub(lambda seen: json_answer(200, {"items": []}), upstream=False)
    world.fields["evil"] = evil.url
    href = f"{evil.url}{FLOWSERVICE}/flows?continuationToken=abc"
    platform(next_link(lambda seen: href))(world)

    def nothing_reached_the_other_host(world: World, result: Any) -> None:
        assert evil.seen == [], "a request (and the token) went to the foreign next link"

    world.checks.append(nothing_reached_the_other_host)


def redirect_to_evil(
    world: World, setting: str, when: Callable[[Seen], bool], status: int = 307
) -> None:
    """``setting``'s server redirects some requests to another server, which must see nothing.

    A 307 or 308 would re-send the body there: the client secret, a code or a refresh token.
    """
    evil = world.stub(lambda seen: json_answer(200, {"access_token": "evil"}), upstream=False)

    def answer(seen: Seen) -> Answer:
        if when(seen):
            return status, {"Location": evil.url + seen.path}, b""
        return None

    stub = world.stub(answer)
    suffix = "/v5" if setting == "pinterest.api_url" else ""
    world.env["PINMIGRATE_" + setting.replace(".", "_").upper()] = stub.url + suffix
    if setting.startswith("pinterest"):
        world.env["PINMIGRATE_PINTEREST_REFRESH_TOKEN"] = world.refresh_token()

    def nothing_reached_the_other_server(world: World, result: Any) -> None:
        assert evil.seen == [], [s.path for s in evil.seen]

    world.checks.append(nothing_reached_the_other_server)


def token_fetches(world: World, *, at_least: int) -> None:
    fetched = world.emulator.requests()["by_endpoint"].get("POST /ims/token/v3", 0)
    assert fetched >= at_least, f"{fetched} IMS token request(s)"


def retried(world: World, *, at_all: bool) -> None:
    """Whether the failing requests were retried; every wait within the policy's bounds."""
    assert all(0 <= delay <= RetryPolicy().max_delay for delay in world.sleeps), world.sleeps
    assert bool(world.sleeps) == at_all, world.sleeps


def retries_then_fail(world: World) -> None:
    world.control("POST", "faults", {"rate_5xx": 1.0, "services": ["flowservice"]})


def hanging(world: World) -> None:
    # A small client timeout, so a server that never answers fails the case in about a second.
    world.monkeypatch.setitem(http_defaults(), "timeout", (1.0, 0.2))
    stub = world.platform_stub(lambda seen: stub.hang() if is_flow_list(seen) else None)


def platform_401(world: World) -> None:
    world.platform_stub(
        lambda seen: (
            json_answer(401, {"error_code": "401013", "message": "Oauth token is not valid"})
            if is_platform(seen)
            else None
        )
    )


def ims_html(world: World) -> None:
    stub = world.stub(html_page, upstream=False)
    world.env["PINMIGRATE_ADOBE_IMS_URL"] = stub.url


def ims_token_with_a_line_break(world: World) -> None:
    """IMS hands out a token with a newline inside: it can never travel in a header."""
    token = {"access_token": "imsHEAD0123456\nimsTAIL6543210", "expires_in": 86399}
    stub = world.stub(
        lambda seen: json_answer(200, token) if seen.path.startswith("/ims/token") else None
    )
    world.env["PINMIGRATE_ADOBE_IMS_URL"] = stub.url


GIB = 1024**3
MIB = 1024**2


def endless_json(total: int = GIB) -> Iterator[bytes]:
    """A flow list page of ``total`` bytes, made as it is sent (never held)."""
    yield b'{"items": ['
    block = b" " * MIB
    for _ in range(total // MIB):
        yield block
    yield b"]}"


def gigabyte_page(*, declared: bool) -> Setup:
    """The flow lists answer 1 GiB, with its Content-Length or without one (streamed)."""
    headers = {"Content-Type": "application/json"}
    if declared:
        headers["Content-Length"] = str(GIB + len(b'{"items": []}'))

    def setup(world: World) -> None:
        platform(lambda seen: (200, headers, endless_json()))(world)

    return setup


def drip(seconds: float, *, headers_too: bool) -> Callable[[Seen], Answer]:
    """An answer sent one byte every ``seconds`` (its status line and headers too, or only
    its body): each byte comes well within the read timeout."""

    def slowly(data: bytes) -> Iterator[bytes]:
        for i in range(len(data)):
            yield data[i : i + 1]
            time.sleep(seconds)

    body = json.dumps({"items": [], "note": "x" * 200}).encode()
    if headers_too:
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        return lambda seen: (0, {}, slowly(head + body))
    return lambda seen: (
        200,
        {"Content-Type": "application/json", "Content-Length": str(len(body))},
        slowly(body),
    )


def dripping(*, headers_too: bool) -> Setup:
    def setup(world: World) -> None:
        world.env["PINMIGRATE_HTTP_REQUEST_DEADLINE"] = "1.5"
        platform(drip(0.2, headers_too=headers_too))(world)
        started = time.monotonic()

        def ended_within_the_deadline(world: World, result: Any) -> None:
            elapsed = time.monotonic() - started
            assert elapsed < 1.5 + 2.5, f"{elapsed:.1f} s"  # the deadline, then the rest of plan

        world.checks.append(ended_within_the_deadline)

    return setup


SERVER_CASES = [
    Case(
        "server/a-gigabyte-page-declared",
        ("plan",),
        FAILED,
        "answered more than 8 MiB; stopped reading",
        setup=gigabyte_page(declared=True),
    ),
    Case(
        "server/a-gigabyte-page-streamed",
        ("discover",),
        FAILED,
        "answered more than 8 MiB; stopped reading",
        setup=gigabyte_page(declared=False),
    ),
    Case(
        "server/a-page-over-a-configured-limit",
        ("plan",),
        FAILED,
        "answered more than 0.5 MiB",
        env={"PINMIGRATE_HTTP_MAX_RESPONSE_MIB": "0.5"},
        setup=platform(lambda seen: (200, {"Content-Type": "application/json"}, endless_json(MIB))),
    ),
    Case(
        "server/drips-its-body",
        ("plan",),
        FAILED,
        "did not answer in full within 1.5 s",
        setup=dripping(headers_too=False),
    ),
    Case(
        "server/drips-its-status-line-and-headers",
        ("discover",),
        FAILED,
        "did not answer in full within 1.5 s",
        setup=dripping(headers_too=True),
    ),
    Case(
        "config/response-limit-not-a-number",
        ("plan",),
        USAGE,
        "http.max_response_mib",
        env={"PINMIGRATE_HTTP_MAX_RESPONSE_MIB": "lots"},
    ),
    Case(
        "config/deadline-beyond-the-retry-cap",
        ("plan",),
        USAGE,
        "http.request_deadline",
        env={"PINMIGRATE_HTTP_REQUEST_DEADLINE": "600"},
    ),
    Case("server/html-not-json", ("plan",), FAILED, "HTML, not JSON", setup=platform(html_page)),
    Case(
        # Adobe's own words are quoted in the error line: an escape sequence in them would
        # erase the lines before it (terminal.py).
        "server/error-words-with-escape-codes",
        ("plan",),
        FAILED,
        "Bad \\x1b[2K\\x1b[1A request \\u202e",
        setup=platform(
            lambda seen: json_answer(
                400, {"error_code": "400-1", "message": "Bad \x1b[2K\x1b[1A request \u202e"}
            )
        ),
        never=("\x1b", "\u202e"),
    ),
    Case(
        "server/empty-body",
        ("plan",),
        FAILED,
        "an empty body, not JSON",
        setup=platform(lambda seen: (200, {"Content-Type": "application/json"}, b"")),
    ),
    Case(
        "server/json-of-the-wrong-shape",
        ("plan",),
        FAILED,
        "items that are not a list",
        setup=platform(lambda seen: json_answer(200, {"items": "all of them"})),
    ),
    Case(
        "server/json-array-page",
        ("discover",),
        FAILED,
        "not a list page",
        setup=platform(lambda seen: json_answer(200, [1, 2, 3])),
    ),
    Case(
        "server/500",
        ("plan",),
        FAILED,
        "HTTP 500",
        setup=platform(lambda seen: json_answer(500, {"errorMessage": "Internal failure"})),
        # 500 is not among the retried statuses (429, 502, 503, 504): it fails at once.
        check=lambda w, r: retried(w, at_all=False),
    ),
    Case(
        "server/503-forever",
        ("plan",),
        FAILED,
        "HTTP 503",
        setup=retries_then_fail,
        # Retried (the injected sleep was asked for waits) before giving up.
        check=lambda w, r: retried(w, at_all=True),
    ),
    Case(
        "server/429-with-a-long-retry-after",
        ("plan",),
        FAILED,
        "kept rate-limiting",
        setup=lambda w: w.control(
            "POST", "faults", {"rate_429": 1.0, "retry_after": "3600", "services": ["flowservice"]}
        ),
        # An hour is beyond the total cap: give up at once rather than wait.
        check=lambda w, r: retried(w, at_all=False),
    ),
    Case(
        "server/connection-dropped-forever",
        ("plan",),
        FAILED,
        f"after {RetryPolicy().max_attempts} attempts",
        setup=lambda w: w.control(
            "POST", "faults", {"rate_drop": 1.0, "services": ["flowservice"]}
        ),
    ),
    Case(
        "server/ims-redirects-elsewhere",
        ("plan",),
        FAILED,
        "answered a redirect (HTTP 307)",
        setup=lambda w: redirect_to_evil(w, "adobe.ims_url", lambda seen: True),
    ),
    Case(
        "server/platform-redirects-elsewhere",
        ("plan",),
        FAILED,
        "answered a redirect (HTTP 302)",
        setup=lambda w: redirect_to_evil(w, "adobe.platform_url", is_flow_list, status=302),
    ),
    Case(
        "server/pinterest-token-endpoint-redirects",
        ("auth", "status"),
        FAILED,
        "answered a redirect (HTTP 308)",
        prints=True,
        setup=lambda w: redirect_to_evil(
            w, "pinterest.api_url", lambda seen: seen.path.endswith("/oauth/token"), status=308
        ),
    ),
    Case(
        "server/json-nested-too-deeply",
        ("plan",),
        FAILED,
        "not JSON",
        setup=platform(
            lambda seen: (200, {"Content-Type": "application/json"}, b"[" * 50_000 + b"]" * 50_000)
        ),
    ),
    Case("server/never-answers", ("plan",), FAILED, "timed out", setup=hanging),
    Case(
        "server/next-link-to-itself",
        ("plan",),
        FAILED,
        "same next-page link twice",
        setup=platform(next_link(lambda seen: "/flows?continuationToken=again")),
    ),
    Case(
        "server/pages-never-end",
        ("plan",),
        FAILED,
        "did not end after 25 pages",
        setup=endless_pages,
    ),
    Case(
        "server/next-link-to-another-host",
        ("plan",),
        FAILED,
        "refusing to send the access token there",
        setup=foreign_next,
    ),
    Case(
        "server/ims-refuses-the-credentials",
        ("plan",),
        AUTH,
        "Adobe IMS refused the credentials",
        env={"PINMIGRATE_ADOBE_CLIENT_SECRET": "not-the-secret"},
        never=("not-the-secret",),
    ),
    Case("server/ims-answers-html", ("plan",), FAILED, "HTML", setup=ims_html),
    Case(
        "server/ims-token-with-a-line-break",
        ("plan",),
        FAILED,
        "not sent: a header value holds a line break",
        setup=ims_token_with_a_line_break,
        never=("imsHEAD0123456", "imsTAIL6543210"),
    ),
    Case(
        "server/platform-401-forever",
        ("plan",),
        AUTH,
        "Adobe refused the access token",
        setup=platform_401,
        # A 401 gets one fresh IMS token (per thread that saw it), then the error.
        check=lambda w, r: token_fetches(w, at_least=2),
    ),
    Case(
        "server/sandbox-403",
        ("plan",),
        AUTH,
        "Adobe denied GET /connectionSpecs in sandbox restricted",
        env={"PINMIGRATE_ADOBE_SANDBOXES": "prod,restricted"},
    ),
    Case(
        "server/sandbox-missing",
        ("plan",),
        USAGE,
        "sandbox nosuch does not exist in org",
        env={"PINMIGRATE_ADOBE_SANDBOXES": "prod,nosuch"},
    ),
    Case(
        "server/pinterest-refuses-the-app",
        ("auth", "status"),
        AUTH,
        "Pinterest refused the refresh token",
        prints=True,  # the (empty) list of stored logins
        env={"PINMIGRATE_PINTEREST_APP_SECRET": "wrong-app-secret"},
        setup=lambda w: w.env.update(PINMIGRATE_PINTEREST_REFRESH_TOKEN=w.refresh_token()),
        never=("wrong-app-secret",),
    ),
    Case(
        "server/pinterest-unknown-refresh-token",
        ("auth", "status"),
        AUTH,
        "Pinterest refused the refresh token",
        prints=True,  # the (empty) list of stored logins
        env={"PINMIGRATE_PINTEREST_REFRESH_TOKEN": "pinr_made_up_0123456789"},
        never=("pinr_made_up_0123456789",),
    ),
    Case(
        "server/pinterest-refuses-a-pasted-token",
        ("auth", "login", "--with-token"),
        AUTH,
        "Pinterest refused the access token",
        stdin="pina_made_up_0123456789\n",
        never=("pina_made_up_0123456789",),
    ),
]


# --- OAuth callbacks -------------------------------------------------------------------------


def browser(tamper: Callable[[World, str], str]) -> Setup:
    """A terminal session whose "browser" approves, then lands on a tampered redirect."""

    def setup(world: World) -> None:
        world.env["PINMIGRATE_PINTEREST_REDIRECT_URI"] = world.emulator.register_redirect_uri(
            f"http://localhost:{free_port()}/"
        )
        world.control("POST", "config", {"auto_approve": True})
        world.monkeypatch.setattr(App, "stdin_is_tty", lambda self: True)

        def visit(url: str) -> None:
            # The listener's one-time address sends the browser on to Pinterest's consent
            # page, which approves at once and redirects back to the listener.
            start = requests.get(url, allow_redirects=False, timeout=10)
            approved = requests.get(start.headers["Location"], allow_redirects=False, timeout=10)
            landing = tamper(world, approved.headers["Location"])
            requests.get(landing, timeout=10)

        def open_url(url: str) -> bool:
            # The listener answers only once the login is decided: visit from another thread.
            threading.Thread(target=visit, args=(url,), daemon=True).start()
            return True

        world.monkeypatch.setattr("pinmigrate.oauth.resolvers._open_browser", open_url)

    return setup


def query_edit(url: str, **changes: str | None) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    for key, value in changes.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    return urlunsplit(parts._replace(query=urlencode(query)))


def used_code(world: World, redirect: str) -> str:
    """Put a code in the redirect that was already redeemed (by someone else)."""
    state = parse_qs(urlsplit(redirect).query)["state"][0]
    uri = world.env["PINMIGRATE_PINTEREST_REDIRECT_URI"]
    params = {
        "client_id": world.env["PINMIGRATE_PINTEREST_APP_ID"],
        "redirect_uri": uri,
        "response_type": "code",
        "scope": "ads:read,ads:write,user_accounts:read",
        "state": "other",
    }
    approved = requests.get(
        f"{world.emulator.url}/oauth/", params=params, allow_redirects=False, timeout=10
    )
    code = parse_qs(urlsplit(approved.headers["Location"]).query)["code"][0]
    redeemed = requests.post(
        f"{world.emulator.url}/v5/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": uri},
        auth=(
            world.env["PINMIGRATE_PINTEREST_APP_ID"],
            world.env["PINMIGRATE_PINTEREST_APP_SECRET"],
        ),
        timeout=10,
    )
    assert redeemed.status_code == 200, redeemed.text
    return query_edit(redirect, code=code, state=state)


OAUTH_CASES = [
    # A callback with a wrong or missing state is ignored (another local user may be racing
    # the browser): the login waits on, and ends at its timeout when nothing else comes.
    Case(
        "oauth/wrong-state",
        ("auth", "login", "--timeout", "2"),
        AUTH,
        "ignored 1 answer(s) that did not belong to this login: a wrong or missing state",
        setup=browser(lambda w, url: query_edit(url, state="forged")),
        chatty=True,
    ),
    Case(
        "oauth/no-state",
        ("auth", "login", "--timeout", "2"),
        AUTH,
        "ignored 1 answer(s) that did not belong to this login: a wrong or missing state",
        setup=browser(lambda w, url: query_edit(url, state=None)),
        chatty=True,
    ),
    Case(
        "oauth/access-denied",
        ("auth", "login", "--timeout", "20"),
        AUTH,
        "did not grant access",
        setup=browser(lambda w, url: query_edit(url, code=None, error="access_denied")),
        chatty=True,
    ),
    Case(
        "oauth/replayed-code",
        ("auth", "login", "--timeout", "20"),
        AUTH,
        "already been used",
        setup=browser(used_code),
        chatty=True,
    ),
    Case(
        "oauth/pasted-wrong-state",
        ("auth", "login", "--no-browser"),
        AUTH,
        "state does not match",
        setup=lambda w: w.monkeypatch.setattr(App, "stdin_is_tty", lambda self: True),
        stdin="http://localhost:8085/?code=abc123def&state=forged\n",
        chatty=True,
    ),
    Case(
        "oauth/token-json-on-stdin-is-broken",
        ("auth", "login", "--with-token"),
        USAGE,
        "not valid JSON",
        stdin='{"access_token": "pina_half_a_secret_0042", \n',
        never=("pina_half_a_secret_0042",),
    ),
    Case("oauth/no-token-on-stdin", ("auth", "login", "--with-token"), USAGE, "no token", stdin=""),
    Case(
        "oauth/no-terminal-no-token",
        ("auth", "login"),
        AUTH,
        "cannot log in to Pinterest here",
    ),
]

CASES = CONFIG_CASES + FLAG_CASES + PLAN_CASES + SERVER_CASES + OAUTH_CASES


# --- the runner ----------------------------------------------------------------------------------


def adobe_objects(world: World) -> str:
    """Every Adobe object (states, etags, audiences, credentials) as canonical JSON."""
    dump = world.control("GET", "state")
    return json.dumps(
        {"objects": dump["objects"], "specs": dump["connectionSpecs"]}, sort_keys=True
    )


def login_store(world: World) -> bytes | None:
    path = Path(world.env["PINMIGRATE_STATE_DIR"]) / "logins.json"
    return path.read_bytes() if path.exists() else None


@pytest.fixture
def world(
    emulator: Any,
    emu_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli: Callable[..., Any],
) -> Iterator[World]:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    made = World(tmp=work, emulator=emulator, env=dict(emu_env), monkeypatch=monkeypatch, cli=cli)
    made.fields["tmp"] = str(work)
    monkeypatch.setitem(http_defaults(), "sleep", made.sleeps.append)
    try:
        yield made
    finally:
        for stub in made.stubs:
            stub.close()


def run_process(
    args: list[str],
    env: Mapping[str, str],
    stdin: str | None,
    cwd: Path,
    *,
    launcher: tuple[str, ...] = (),
) -> Any:
    """``python -m pinmigrate ARGS`` in a subprocess (started by ``launcher`` if given)."""
    from conftest import Result

    clean = {k: v for k, v in os.environ.items() if not k.startswith("PINMIGRATE_")}
    done = subprocess.run(
        [*launcher, sys.executable, "-m", "pinmigrate", *args],
        env={**clean, **env},
        input=stdin or "",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def fill(arg: str, fields: Mapping[str, str]) -> str:
    for key, value in fields.items():
        arg = arg.replace("{" + key + "}", value)
    return arg


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, world: World) -> None:
    if case.setup is not None:
        case.setup(world)
    env: dict[str, str] = dict(world.env)
    for name, value in case.env.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    args = [fill(arg, world.fields) for arg in case.args]
    objects_before = adobe_objects(world)
    logins_before = login_store(world)
    world.emulator.clear_requests()

    if case.process:
        result = run_process(args, env, case.stdin, world.tmp)
    else:
        result = world.cli(args, env, input=case.stdin)

    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.exit_code == case.code, f"exit {result.exit_code}\n{result.stderr}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "no error line on stderr"
    if not case.chatty:
        # What the live display said while reading (issue 13) comes before the error.
        lines = [line for line in lines if not is_progress_line(line)]
        assert len(lines) == 1, f"expected one stderr line, got:\n{result.stderr}"
    error = lines[-1]
    assert error.startswith("pinmigrate: "), error
    assert case.says in error, error
    for text in case.never:
        assert text not in output, f"{text!r} was echoed"
    if not case.prints:
        assert result.stdout == "", f"stdout: {result.stdout!r}"

    assert adobe_objects(world) == objects_before, "an Adobe object changed"
    log = world.emulator.requests()
    assert log["write_attempts"] == 0, log["by_endpoint"]
    assert login_store(world) == logins_before, "a Pinterest login was stored"
    for check in world.checks:
        check(world, result)
    if case.check is not None:
        assert case.check(world, result) is None  # checks assert; they return nothing


#: Peak memory allowed to a `discover` that meets a 1 GiB answer (issue 12: it reached 13 GB).
PEAK_RSS_LIMIT_MB = 200


def peak_rss_of(args: list[str], env: Mapping[str, str], cwd: Path) -> tuple[int, str, int]:
    """Run ``python -m pinmigrate ARGS`` from a fresh interpreter that reports its only
    child's peak resident memory (``RUSAGE_CHILDREN``): (exit code, stderr, peak KiB)."""
    measure = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "sys.stderr.write(done.stderr)\n"
        "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    result = run_process(args, env, None, cwd, launcher=(sys.executable, "-c", measure))
    code, peak = result.stdout.split()
    return int(code), result.stderr, int(peak)


def test_a_gigabyte_answer_leaves_discover_under_200_mb(world: World) -> None:
    gigabyte_page(declared=False)(world)
    code, stderr, peak_kib = peak_rss_of(["discover"], world.env, world.tmp)
    lines = [line for line in stderr.strip().splitlines() if not is_progress_line(line)]
    assert code == FAILED, stderr
    assert len(lines) == 1 and "answered more than 8 MiB; stopped reading" in lines[0], stderr
    print(f"discover against a 1 GiB answer: peak RSS {peak_kib / 1024:.0f} MB")
    assert peak_kib < PEAK_RSS_LIMIT_MB * 1024, f"peak RSS {peak_kib / 1024:.0f} MB"


def test_the_corpus_is_big_and_its_ids_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 40
    assert {i.split("/")[0] for i in ids} == {"config", "flags", "plan-file", "server", "oauth"}
