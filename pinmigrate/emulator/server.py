"""HTTP for the emulator: parse, route, call :class:`EmulatorState`, serialise.

One port serves everything (Adobe IMS under ``/ims``, Flow Service under
``/data/foundation/flowservice``, Adobe's destination account pages under ``/ui/`` and its
OAuth callback, Pinterest's consent page under ``/oauth/`` and its API under ``/v5``, the
control API under ``/_emulator/``). Standard library only: a
``ThreadingHTTPServer`` with daemon handler threads, so tests can run it in-process.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from pinmigrate.emulator import pages
from pinmigrate.emulator.adobeui import UI_ACCOUNT_TEMPLATE, UI_PREFIX, account_path, accounts_path
from pinmigrate.emulator.context import Config
from pinmigrate.emulator.faults import Faults, faults_from_json, parse_fault_spec
from pinmigrate.emulator.flowservice import LIST_KINDS, PATCH_KINDS
from pinmigrate.emulator.ims import Caller
from pinmigrate.emulator.limits import RateLimits, rate_limits_from
from pinmigrate.emulator.model import (
    ADOBE_CALLBACK_PATH,
    CLIENT_ID,
    CLIENT_SECRET,
    ORG_ID,
    PINTEREST_APP_ID,
    PINTEREST_APP_SECRET,
    JsonDict,
)
from pinmigrate.emulator.problems import (
    ConsentError,
    PageError,
    Problem,
    bad_request,
    first,
    flow_error,
    pinterest_error,
)
from pinmigrate.emulator.state import SANDBOXES_PATH, EmulatorState
from pinmigrate.settings import is_loopback_host

FLOWSERVICE = "/data/foundation/flowservice"
MAX_BODY = 16 * 1024 * 1024
JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=utf-8"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    #: the path as sent (still URL-quoted), for routes whose segments may hold a quoted "/"
    raw_path: str = ""

    def json(self, *, sandbox: str | None = None, required: bool = True) -> Any:
        """The decoded JSON body; a malformed one is a 400, never a crashed handler."""
        if not self.body.strip():
            if required:
                raise bad_request("The request body is empty; JSON was expected", sandbox=sandbox)
            return None
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise bad_request("The request body is not valid JSON", sandbox=sandbox) from None

    def form(self) -> dict[str, str]:
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}

    def params(self) -> dict[str, str]:
        return {k: v[0] for k, v in self.query.items() if v}


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        status: int,
        payload: Any,
        headers: Mapping[str, str] | None = None,
        *,
        pretty: bool = False,
    ) -> Reply:
        if payload is None:
            body = b""
        elif pretty:
            body = (json.dumps(payload, indent=2) + "\n").encode()
        else:
            body = json.dumps(payload, separators=(",", ":")).encode()
        return cls(status, body, JSON_TYPE, dict(headers or {}))

    @classmethod
    def html(cls, status: int, text: str) -> Reply:
        return cls(status, text.encode("utf-8"), HTML_TYPE)

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Reply:
        return cls(status, b"", HTML_TYPE, {"Location": location})


@dataclass
class Route:
    #: "control" | "ims" | "flowservice" | "sandboxes" | "pinterest" | "consent" | "adobe-ui"
    #: | "site"
    service: str
    endpoint: str  # templated, for the request log: "GET /flows/{id}"
    call: Callable[[Request], Reply]
    sandbox: str | None = None


class EmulatorServer(ThreadingHTTPServer):
    """The listening socket; knows the state and closes every open connection on stop."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        state: EmulatorState,
        *,
        sleep: Callable[[float], None] = time.sleep,
        verbose: bool = False,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.state = state
        self.sleep = sleep
        self.verbose = verbose
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr; a client that hung up is not news.
        if self.verbose:
            import traceback

            sys.stderr.write(f"emulator: error serving {client_address}:\n")
            traceback.print_exc()

    def close_connections(self) -> None:
        with self.connections_lock:
            open_now = list(self.connections)
        for conn in open_now:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    server: EmulatorServer
    protocol_version = "HTTP/1.1"
    server_version = "pinmigrate-emulator"
    sys_version = ""
    #: Idle keep-alive connections are closed after this many seconds.
    timeout = 120
    # Head and body leave in one segment (wfile is flushed after each request): two small
    # writes on a kept-alive connection meet the client's delayed ACK, ~40 ms per request.
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024

    # --- plumbing ------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            with self.server.connections_lock:
                self.server.connections.discard(self.connection)

    def handle(self) -> None:
        try:
            super().handle()
        except (OSError, ValueError):
            # The client went away mid-request; nothing to answer.
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet; verbose mode logs one line per request in _dispatch instead

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol-level errors (bad request line, unsupported method) as JSON."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":
            # Set when the request line could not be parsed; 0.9 would drop the status line.
            self.request_version = "HTTP/1.0"
        self._send(Reply.of(code, {"error": message or self.responses.get(code, ("",))[0]}))

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _read_request(self) -> Request:
        parts = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        body = b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            length_text = headers.get("content-length", "0") or "0"
            try:
                length = int(length_text)
            except ValueError:
                raise Problem(400, {"error": "invalid Content-Length"}) from None
            if length < 0 or length > MAX_BODY:
                raise Problem(413, {"error": "request body too large"})
            body = self.rfile.read(length) if length else b""
        query = parse_qs(parts.query, keep_blank_values=True)
        return Request(
            self.command, unquote(parts.path) or "/", query, headers, body, parts.path or "/"
        )

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(line, 16)
            except ValueError:
                raise Problem(400, {"error": "malformed chunked body"}) from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY:
                raise Problem(413, {"error": "request body too large"})
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("x-request-id", uuid.uuid4().hex)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and reply.body:
            self.wfile.write(reply.body)

    def _drop(self) -> None:
        """Close the connection without a byte of answer, as a failing load balancer would."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # --- dispatch ------------------------------------------------------------------------

    def _dispatch(self) -> None:
        started = time.monotonic()
        state = self.server.state
        try:
            request = self._read_request()
        except Problem as problem:
            self.close_connection = True
            self._send(Reply.of(problem.status, problem.body))
            return
        route = route_for(state, request)
        status: int | None = None
        fault: str | None = None
        if route.service in ("control", "site"):
            self._send(_call(route, request))
            return
        reply: Reply | None
        refusal = state.limiter.admit(route.service, request.method)
        if refusal is not None:
            # Turned away at the door: at once, before the injected latency and faults.
            fault = "rate_limit"
            reply = _fault_reply(route.service, "429", refusal.retry_after)
        else:
            decision = state.injector.decide(route.service)
            if decision.delay > 0:
                self.server.sleep(decision.delay)
            fault = decision.action
            if decision.action == "drop":
                reply = None
            elif decision.action is not None:
                reply = _fault_reply(
                    route.service, decision.action, state.injector.faults.retry_after
                )
            else:
                reply = _call(route, request)
        if reply is None:
            self._drop()
        else:
            status = reply.status
            self._send(reply)
        state.log.record(
            method=request.method,
            endpoint=route.endpoint,
            path=request.path,
            query=request.query,
            status=status,
            sandbox=route.sandbox,
            service=route.service,
            fault=fault,
        )
        if self.server.verbose:
            elapsed = (time.monotonic() - started) * 1000
            shown = "dropped" if status is None else str(status)
            sys.stderr.write(
                f"emulator: {request.method} {request.path} {shown} "
                f"{elapsed:.0f}ms{' [' + fault + ']' if fault else ''}\n"
            )


def _call(route: Route, request: Request) -> Reply:
    try:
        return route.call(request)
    except Problem as problem:
        return Reply.of(problem.status, problem.body, problem.headers)
    except ConsentError as exc:
        return Reply.html(400, pages.error_page(str(exc)))
    except PageError as exc:
        return Reply.html(exc.status, pages.adobe_error_page(exc.title, exc.message))
    except Exception as exc:  # noqa: BLE001 - a bug here must not kill the handler thread
        return Reply.of(
            500, {"error": "internal emulator error", "message": f"{type(exc).__name__}: {exc}"}
        )


def _fault_reply(service: str, action: str, retry_after: str | None) -> Reply:
    if action == "429":
        headers = {} if retry_after is None else {"Retry-After": retry_after}
        if service == "pinterest":
            return Reply.of(429, {"code": 8, "message": "Too many requests (emulated)."}, headers)
        if service == "ims":
            return Reply.of(
                429,
                {"error": "too_many_requests", "error_description": "Too many requests (emulated)"},
                headers,
            )
        return Reply.of(
            429, {"error_code": 429001, "message": "Too many requests (emulated)"}, headers
        )
    if service == "pinterest":
        return Reply.of(503, {"code": 503, "message": "Service unavailable (emulated)."})
    if service == "ims":
        return Reply.of(
            503, {"error": "server_error", "error_description": "Service unavailable (emulated)"}
        )
    return Reply.of(503, {"error_code": 503000, "message": "Service Unavailable (emulated)"})


# --- routing -----------------------------------------------------------------------------


def route_for(state: EmulatorState, request: Request) -> Route:
    path = request.path
    method = request.method
    if path == "/_emulator" or path.startswith("/_emulator/"):
        return _control_route(state, request)
    if path.startswith(FLOWSERVICE + "/") or path == FLOWSERVICE:
        return _flow_route(state, request)
    if path.rstrip("/") == SANDBOXES_PATH:
        return Route("sandboxes", f"{method} /sandboxes", lambda r: _sandboxes(state, r))
    if path.startswith("/ims/"):
        if path.rstrip("/") == "/ims/token/v3" and method == "POST":
            return Route("ims", "POST /ims/token/v3", lambda r: _ims_token(state, r))
        return Route(
            "ims",
            f"{method} /ims/<unknown>",
            lambda r: Reply.of(
                404, {"error": "not_found", "error_description": f"no IMS endpoint {r.path}"}
            ),
        )
    if path in ("/oauth", "/oauth/"):
        return Route("consent", f"{method} /oauth/", lambda r: _consent(state, r))
    if path == "/v5" or path.startswith("/v5/"):
        return _pinterest_route(state, request)
    if path == UI_PREFIX or path.startswith(UI_PREFIX + "/"):
        return _ui_route(state, request)
    if path.rstrip("/") == ADOBE_CALLBACK_PATH:
        return Route(
            "adobe-ui", f"{method} {ADOBE_CALLBACK_PATH}", lambda r: _adobe_callback(state, r)
        )
    if path == "/" and method in ("GET", "HEAD"):
        return Route(
            "site",
            "GET /",
            lambda r: Reply.html(
                200,
                pages.index_page(
                    url=_base_url(r),
                    scenario=state.scenario,
                    sandboxes=state.sandboxes,
                    account_lists=[
                        (accounts_path(ORG_ID, sb), f"Adobe: the Pinterest accounts of {sb}")
                        for sb in state.sandboxes
                    ],
                ),
            ),
        )
    return Route(
        "site",
        f"{method} <unknown>",
        lambda r: Reply.of(404, {"error": f"nothing is served at {r.path}", "see": "/"}),
    )


def _sandboxes(state: EmulatorState, request: Request) -> Reply:
    """The Sandbox Management API's list: the gateway's checks (no ``x-sandbox-name``
    needed), then one page (api-notes.md §3b)."""
    state.authenticate_platform(request.headers)
    if request.method != "GET":
        return Reply.of(405, {"status": 405, "title": f"Method {request.method} is not allowed"})
    return Reply.of(200, state.list_sandboxes(request.params()))


def _base_url(request: Request) -> str:
    return f"http://{request.headers.get('host', '127.0.0.1')}"


def _ims_token(state: EmulatorState, request: Request) -> Reply:
    form = request.form()
    for name, value in request.params().items():
        form.setdefault(name, value)
    return Reply.of(200, state.ims_token(form))


def _flow_route(state: EmulatorState, request: Request) -> Route:
    """Flow Service: the gateway checks come first, then 404/405, then the operation."""
    method = request.method
    parts = [p for p in request.path[len(FLOWSERVICE) :].split("/") if p]
    kind = parts[0] if parts and parts[0] in LIST_KINDS else None
    ident = parts[1] if len(parts) > 1 else ""
    shape = {1: "/{kind}", 2: "/{kind}/{{id}}"}.get(len(parts))
    if len(parts) == 3 and kind == "flows" and parts[2] == "action":
        shape = "/flows/{{id}}/action"
    handler: _FlowHandler | None = None
    if kind is None or shape is None:
        template = f"{method} /<unknown>"
    else:
        template = f"{method} " + shape.format(kind=kind)
        handler = _FLOW_HANDLERS.get((method, shape))
        if method == "PATCH" and kind not in PATCH_KINDS:
            handler = None

    def call(r: Request) -> Reply:
        caller = state.authenticate_platform(r.headers)
        if kind is None or shape is None:
            raise flow_error(
                404,
                f"No Flow Service resource at {r.path}",
                sandbox=caller.sandbox,
                code="FLOW-1001",
                title="Not found",
            )
        if handler is None:
            raise flow_error(
                405,
                f"Method {method} is not allowed on {r.path[len(FLOWSERVICE) :]}",
                sandbox=caller.sandbox,
                code="FLOW-1003",
                title="Method not allowed",
            )
        return handler(state, caller, r, kind, ident)

    sandbox = request.headers.get("x-sandbox-name", "").strip() or "prod"
    return Route("flowservice", template, call, sandbox)


_FlowHandler = Callable[[EmulatorState, Caller, Request, str, str], Reply]


def _fs_list(state: EmulatorState, caller: Caller, r: Request, kind: str, _: str) -> Reply:
    return Reply.of(200, state.list_objects(caller.sandbox, kind, r.query))


def _fs_get(state: EmulatorState, caller: Caller, r: Request, kind: str, ident: str) -> Reply:
    return Reply.of(200, state.get_object(caller.sandbox, kind, ident))


def _fs_patch(state: EmulatorState, caller: Caller, r: Request, kind: str, ident: str) -> Reply:
    operations = r.json(sandbox=caller.sandbox)
    status, body = state.patch_object(caller, kind, ident, operations, r.headers.get("if-match"))
    return Reply.of(status, body)


def _fs_action(state: EmulatorState, caller: Caller, r: Request, _: str, ident: str) -> Reply:
    op = first(r.query, "op")
    return Reply.of(200, state.flow_action(caller, ident, op, r.headers.get("if-match")))


_FLOW_HANDLERS: dict[tuple[str, str], _FlowHandler] = {
    ("GET", "/{kind}"): _fs_list,
    ("GET", "/{kind}/{{id}}"): _fs_get,
    ("PATCH", "/{kind}/{{id}}"): _fs_patch,
    ("POST", "/flows/{{id}}/action"): _fs_action,
}


def _raise(problem: Problem) -> Reply:
    raise problem


def _pinterest_route(state: EmulatorState, request: Request) -> Route:
    method, path = request.method, request.path.rstrip("/")
    auth = request.headers.get("authorization")
    if path == "/v5/oauth/token":
        if method != "POST":
            return Route(
                "pinterest",
                f"{method} /v5/oauth/token",
                lambda r: _raise(pinterest_error(405, 405, "Method not allowed.")),
            )
        return Route(
            "pinterest",
            "POST /v5/oauth/token",
            lambda r: Reply.of(200, state.token_endpoint(auth, r.form())),
        )
    if path == "/v5/user_account" and method == "GET":
        return Route(
            "pinterest", "GET /v5/user_account", lambda r: Reply.of(200, state.user_account(auth))
        )
    if path == "/v5/ad_accounts" and method == "GET":
        return Route(
            "pinterest",
            "GET /v5/ad_accounts",
            lambda r: Reply.of(200, state.list_ad_accounts(auth, r.query)),
        )
    return Route(
        "pinterest",
        f"{method} /v5/<unknown>",
        lambda r: _raise(
            pinterest_error(404, 404, f"Not found: {r.method} {r.path} is not emulated.")
        ),
    )


def _consent(state: EmulatorState, request: Request) -> Reply:
    if request.method == "GET":
        params = request.params()
        authorize = state.check_authorize(params)
        if state.config.auto_approve:
            return Reply.redirect(state.approve(authorize))
        users = list(state.users.values())
        return Reply.html(
            200,
            pages.consent_page(
                params=params,
                scopes=authorize.scopes,
                users=users,
                default_user=state.config.auto_approve_user,
                app_name=state.pinterest.app_name(authorize.client_id),
            ),
        )
    if request.method == "POST":
        form = request.form()
        authorize = state.check_authorize(form)
        decision = form.get("decision")
        if decision == "allow":
            return Reply.redirect(state.approve(authorize, form.get("user")))
        if decision == "deny":
            return Reply.redirect(state.deny(authorize))
        raise ConsentError("Choose Allow or Deny.")
    return Reply.html(405, pages.error_page(f"{request.method} is not supported here."))


# --- Adobe's UI: destination account pages and the OAuth callback ----------------------------

_UI_ACCOUNTS = "/ui/{org}/{sandbox}/destination/accounts"


def _ui_route(state: EmulatorState, request: Request) -> Route:
    """``/ui/{org}/{sandbox}/destination/accounts[/{id}[/reconnect]]``, segments unquoted."""
    method = request.method
    segments = [unquote(p) for p in (request.raw_path or request.path).split("/") if p]
    head, tail = segments[:5], segments[5:]
    if len(head) < 5 or head[0] != UI_PREFIX[1:] or head[3:5] != ["destination", "accounts"]:
        return Route("adobe-ui", f"{method} /ui/<unknown>", lambda r: _ui_not_found(r.path))
    org_id, sandbox = head[1], head[2]
    if not tail:
        endpoint, page, allowed = _UI_ACCOUNTS, "accounts", "GET"
    elif len(tail) == 1:
        endpoint, page, allowed = _UI_ACCOUNTS + "/{id}", "account", "GET"
    elif len(tail) == 2 and tail[1] == "reconnect":
        endpoint, page, allowed = _UI_ACCOUNTS + "/{id}/reconnect", "reconnect", "POST"
    else:
        return Route("adobe-ui", f"{method} /ui/<unknown>", lambda r: _ui_not_found(r.path))
    account = tail[0] if tail else ""

    def call(r: Request) -> Reply:
        if method != allowed and not (allowed == "GET" and method == "HEAD"):
            raise PageError(405, "Method not allowed", f"{method} is not supported here.")
        now = state.clock()
        if page == "accounts":
            views = state.ui_accounts(org_id, sandbox)
            listed = [(v, account_path(org_id, sandbox, v.id)) for v in views]
            return Reply.html(200, pages.accounts_page(listed, sandbox=sandbox, now=now))
        if page == "account":
            view = state.ui_account(org_id, sandbox, account)
            here = account_path(org_id, sandbox, account)
            return Reply.html(
                200,
                pages.account_page(
                    view,
                    now=now,
                    reconnect_action=here + "/reconnect",
                    accounts_url=accounts_path(org_id, sandbox),
                ),
            )
        consent = state.start_reconnect(org_id, sandbox, account, _base_url(r))
        return Reply.redirect(consent, status=303)

    return Route("adobe-ui", f"{method} {endpoint}", call, sandbox)


def _ui_not_found(path: str) -> Reply:
    raise PageError(404, "Page not found", f"Nothing is served at {path}.")


def _adobe_callback(state: EmulatorState, request: Request) -> Reply:
    if request.method not in ("GET", "HEAD"):
        raise PageError(405, "Method not allowed", f"{request.method} is not supported here.")
    view = state.adobe_callback(request.params())
    here = account_path(ORG_ID, view.sandbox, view.id)
    return Reply.html(200, pages.reconnected_page(view, now=state.clock(), account_url=here))


# --- control API ---------------------------------------------------------------------------


def _control_route(state: EmulatorState, request: Request) -> Route:
    method = request.method
    parts = [p for p in request.path.split("/") if p][1:]
    name = parts[0] if parts else ""
    endpoint = f"{method} /_emulator/{name}"

    def call(r: Request) -> Reply:
        refusal = control_refusal(r)
        if refusal is not None:
            return refusal
        try:
            return _control(state, r, method, name, parts[1:])
        except ValueError as exc:
            return _pretty(400, {"error": str(exc)})

    return Route("control", endpoint, call)


#: Methods that change the emulator: only with a JSON body type (see control_refusal).
CONTROL_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def control_refusal(request: Request) -> Reply | None:
    """The answer refusing a control request a web page could have sent, or None.

    A page in the person's browser can reach the emulator on loopback: through a name of its
    own that resolves to 127.0.0.1 (DNS rebinding: the ``Host`` is then that name), or with a
    form post or a no-cors ``fetch`` (whose content type is never JSON; a JSON one needs a
    preflight the emulator never grants). So the control API answers only a loopback
    ``Host``, and changes state only for ``application/json`` requests, even bodiless ones.
    """
    host = request.headers.get("host", "")
    try:
        hostname = urlsplit(f"//{host}").hostname
    except ValueError:
        hostname = None
    if not is_loopback_host(hostname):
        return _pretty(
            403,
            {
                "error": f"the control API answers only a loopback Host (127.0.0.1, ::1, "
                f"localhost), not {host!r}"
            },
        )
    if request.method in CONTROL_WRITES:
        kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind != JSON_TYPE:
            return _pretty(
                415,
                {
                    "error": f"{request.method} to the control API needs Content-Type: "
                    f"{JSON_TYPE} (even with no body), not {kind or 'none'!r}"
                },
            )
    return None


def _control(
    state: EmulatorState, request: Request, method: str, name: str, rest: list[str]
) -> Reply:
    def body(required: bool = True) -> Any:
        try:
            return request.json(required=required)
        except Problem:
            raise ValueError("the body must be valid JSON") from None

    def obj(required: bool = True) -> dict[str, Any]:
        value = body(required)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError("the body must be a JSON object")
        return value

    if name == "" and method == "GET":
        return _pretty(
            200,
            {
                "endpoints": [
                    'POST /_emulator/reset {"scenario": "demo|empty|scale:N"}',
                    "GET /_emulator/state[?summary=true][?secrets=1]",
                    "GET|POST|DELETE /_emulator/faults",
                    'GET|POST|DELETE /_emulator/rate-limits {"flowservice": {"per_second": 50}}',
                    "GET|DELETE /_emulator/requests",
                    "GET|POST /_emulator/config",
                    "PATCH /_emulator/objects/{kind}/{id}",
                    'POST /_emulator/tokens {"user": "emu_marketer"}',
                    "GET /_emulator/apps/{id}/redirect_uris",
                    'POST /_emulator/apps/{id}/redirect_uris {"redirect_uri": "http://..."}',
                    'POST /_emulator/accounts/{id}/reconnect {"username": "emu_marketer"}',
                ]
            },
        )
    if name == "reset" and method == "POST":
        scenario = obj(required=False).get("scenario") or state.scenario
        state.reset(str(scenario))
        return _pretty(
            200,
            {"scenario": state.scenario, "sandboxes": state.sandboxes, "counts": state.counts()},
        )
    if name == "state" and method == "GET":
        summary = _flag(request, "summary")
        return _pretty(200, state.dump(summary=summary, secrets=_flag(request, "secrets")))
    if name == "faults":
        if method == "GET":
            return _pretty(200, state.injector.faults.as_json())
        if method == "POST":
            return _pretty(200, state.set_faults(faults_from_json(obj(required=False))))
        if method == "DELETE":
            return _pretty(200, state.set_faults(Faults()))
    if name == "rate-limits":
        if method == "POST":
            state.limiter.update(rate_limits_from(obj()))
        elif method == "DELETE":
            state.limiter.clear()
        if method in ("GET", "POST", "DELETE"):
            return _pretty(200, state.limiter.as_json())
    if name == "requests":
        if method == "GET":
            return _pretty(200, state.log.summary())
        if method == "DELETE":
            state.log.clear()
            return _pretty(200, state.log.summary())
    if name == "config":
        if method == "GET":
            return _pretty(200, _config_json(state.config))
        if method == "POST":
            return _pretty(200, state.set_config(obj()))
    if name == "objects" and method == "PATCH" and len(rest) == 2:
        return _pretty(200, state.change_object(rest[0], rest[1], body()))
    if name == "apps" and len(rest) == 2 and rest[1] == "redirect_uris":
        if method == "GET":
            return _pretty(200, state.redirect_uris(rest[0]))
        if method == "POST":
            uri = obj().get("redirect_uri")
            if not isinstance(uri, str):
                raise ValueError('the body must be {"redirect_uri": "http://..."}')
            return _pretty(200, state.register_redirect_uri(rest[0], uri))
    if name == "tokens" and method == "POST":
        return _pretty(200, state.mint_tokens(obj(required=False)))
    if name == "accounts" and method == "POST" and len(rest) == 2 and rest[1] == "reconnect":
        username = obj(required=False).get("username")
        if username is not None and not isinstance(username, str):
            raise ValueError("username must be a string")
        return _pretty(200, state.reconnect_account(rest[0], username))
    return _pretty(
        404, {"error": f"no control endpoint {method} {request.path}", "see": "GET /_emulator/"}
    )


def _flag(request: Request, name: str) -> bool:
    return (first(request.query, name) or "").lower() in ("1", "true", "yes")


def _pretty(status: int, payload: Any) -> Reply:
    """Control answers are read by people with curl as often as by tests: indent them."""
    return Reply.of(status, payload, pretty=True)


def _config_json(config: Config) -> JsonDict:
    from dataclasses import asdict

    return asdict(config)


# --- the in-process runner ---------------------------------------------------------------------


class Emulator:
    """The emulator as a Python object: start it on loopback in a daemon thread, use, stop.

    ``Emulator(scenario="demo", port=0)`` picks a free port; :meth:`env` gives the
    ``PINMIGRATE_*`` settings that point pinmigrate at it. pinmigrate's Pinterest app accepts
    only the redirect URIs registered on it (pinmigrate's default ``pinterest.redirect_uri``,
    then ``redirect_uris`` and :meth:`register_redirect_uri`).
    """

    def __init__(
        self,
        scenario: str = "demo",
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0,
        faults: Faults | Mapping[str, Any] | str | None = None,
        page_size: int = 100,
        auto_approve: bool = False,
        *,
        redirect_uris: Sequence[str] = (),
        rate_limits: str | Sequence[str] | RateLimits | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
        verbose: bool = False,
    ) -> None:
        resolved = _faults(faults)
        if latency_ms:
            from dataclasses import replace

            resolved = replace(resolved, latency_ms=float(latency_ms))
        self.state = EmulatorState(
            scenario,
            clock=clock or time.time,
            config=Config(page_size=page_size, auto_approve=auto_approve),
            faults=resolved,
        )
        self.set_rate_limits(rate_limits)
        for uri in redirect_uris:
            self.register_redirect_uri(uri)
        self.host = host
        self.port = port
        self.verbose = verbose
        self._sleep = sleep or time.sleep
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> Emulator:
        """Bind and serve in a daemon thread. OSError when the port is taken."""
        if self._server is not None:
            return self
        server = EmulatorServer(
            (self.host, self.port), self.state, sleep=self._sleep, verbose=self.verbose
        )
        self.port = int(server.server_address[1])
        self._server = server
        # Adobe's app registers its callback on this base URL (api-notes.md §3 "Accounts").
        self.state.context.base_url = self.url
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"pinmigrate-emulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        stopper = threading.Thread(target=server.shutdown, daemon=True)
        stopper.start()
        # Wake the serve loop at once instead of after its poll interval.
        with contextlib.suppress(OSError):
            socket.create_connection((self.host, self.port), timeout=1).close()
        stopper.join()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- where it is ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not running: call start() first")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def ui_url(self) -> str:
        """``adobe.ui_url`` for this emulator: the account page template, with ``{org_id}``,
        ``{sandbox}`` and ``{account_id}`` (each filled in URL-quoted)."""
        return self.url + UI_ACCOUNT_TEMPLATE

    def account_page(self, account_id: str, sandbox: str | None = None) -> str:
        """The filled-in ``ui_url`` of an account (its sandbox looked up when not given)."""
        found = sandbox or self.state.flowstore.sandbox_of("connections", account_id) or "prod"
        return self.url + account_path(ORG_ID, found, account_id)

    def env(self) -> dict[str, str]:
        """``PINMIGRATE_*`` settings pointing pinmigrate at this emulator."""
        url = self.url
        return {
            "PINMIGRATE_ADOBE_ORG_ID": ORG_ID,
            "PINMIGRATE_ADOBE_CLIENT_ID": CLIENT_ID,
            "PINMIGRATE_ADOBE_CLIENT_SECRET": CLIENT_SECRET,
            "PINMIGRATE_ADOBE_IMS_URL": url,
            "PINMIGRATE_ADOBE_PLATFORM_URL": url,
            "PINMIGRATE_ADOBE_UI_URL": self.ui_url,
            "PINMIGRATE_ADOBE_SANDBOXES": ",".join(self.state.sandboxes),
            "PINMIGRATE_PINTEREST_APP_ID": PINTEREST_APP_ID,
            "PINMIGRATE_PINTEREST_APP_SECRET": PINTEREST_APP_SECRET,
            "PINMIGRATE_PINTEREST_OAUTH_URL": url + "/oauth/",
            "PINMIGRATE_PINTEREST_API_URL": url + "/v5",
            # The latest URI registered on pinmigrate's app: the consent page takes no other.
            "PINMIGRATE_PINTEREST_REDIRECT_URI": self.redirect_uris()[-1],
        }

    def redirect_uris(self) -> list[str]:
        """The redirect URIs registered on pinmigrate's Pinterest app, oldest first."""
        return list(self.state.redirect_uris(PINTEREST_APP_ID)["redirect_uris"])

    def register_redirect_uri(self, uri: str) -> str:
        """Register ``uri`` (exactly as given) on pinmigrate's Pinterest app; returns it.

        A test that listens on a free port registers its ``http://localhost:PORT/`` here, as a
        developer registers theirs on the real app. ValueError for a URI that is no http(s) URL.
        """
        self.state.register_redirect_uri(PINTEREST_APP_ID, uri)
        return uri

    # --- the control API, in-process -------------------------------------------------------

    def reset(self, scenario: str | None = None) -> None:
        self.state.reset(scenario or self.state.scenario)

    def set_faults(
        self, faults: Faults | Mapping[str, Any] | str | None = None, **settings: Any
    ) -> JsonDict:
        """Replace the faults: a Faults, a mapping, a spec string, or keyword settings."""
        resolved = _faults(faults) if faults is not None else faults_from_json(settings)
        return self.state.set_faults(resolved)

    def set_rate_limits(self, limits: str | Sequence[str] | RateLimits | None) -> JsonDict:
        """Replace the rate limits of the services named: SPEC strings
        (``"flowservice=50/s:burst=10"``) or ``{service: RateLimit | {...} | None}`` (None
        removes one); as ``POST /_emulator/rate-limits``. Answers the limits and counters."""
        self.state.limiter.update(rate_limits_from(limits))
        return self.state.limiter.as_json()

    def clear_rate_limits(self) -> None:
        self.state.limiter.clear()

    def configure(self, **changes: Any) -> JsonDict:
        return self.state.set_config(changes)

    def requests(self) -> JsonDict:
        return self.state.log.summary()

    def clear_requests(self) -> None:
        self.state.log.clear()

    def tokens(self, user: str = "emu_marketer", **options: Any) -> JsonDict:
        """Pinterest token JSON for a user, as ``POST /_emulator/tokens`` answers."""
        return self.state.mint_tokens({"user": user, **options})


def _faults(value: Faults | Mapping[str, Any] | str | None) -> Faults:
    if value is None:
        return Faults()
    if isinstance(value, Faults):
        return value
    if isinstance(value, str):
        return parse_fault_spec(value)
    return faults_from_json(value)


__all__ = ["Emulator", "EmulatorServer", "Handler"]
