"""An independent fake of Adobe IMS, Flow Service and Pinterest v5, written from the docs.

It is deliberately not pinmigrate's emulator: it shares no code with the package, runs each
service on its own loopback port (IMS, Platform, Pinterest API, Pinterest "www" for the
consent page), and serves the variants that /work/shared/docs/api-notes.md calls
unconfirmed or allowed, so assumptions shared by pinmigrate's client and emulator show up:

- lists page at most ``page_size`` (2) items whatever ``limit`` asks, and their
  ``_links.next.href`` is the one published form, ``/flows?continuationToken=...`` and
  nothing else, with an opaque token holding ``=`` and ``/`` that carries only the position:
  a client that does not send its filters again gets an unfiltered page
  (``World.next_links = "query"`` serves the earlier variant instead: the whole query in the
  link, in another order, and a token bound to it); the last page has ``_links: {}``, no
  ``_links``, or ``_links`` without ``next``, depending on the resource;
- enabling an enabled flow, or disabling a disabled one, answers 400 ``1409-400`` ("cannot
  be applied on the current state"), as Flow Service's error catalogue words it;
- the gateway's ``error_code`` is a number, as in Adobe's example;
- ``PATCH /flows/{id}`` answers 202 with no body; ``PATCH /connections/{id}`` answers 200;
- flow actions accept ``op`` in any case; run statuses are lower case;
- etags carry literal quotes; names are Unicode; JSON is sent as raw UTF-8 without charset;
- Pinterest's token ``scope`` is comma-separated with an extra scope; refresh tokens rotate
  (the old one dies at once); ``/ad_accounts`` pages one account at a time.

And it is strict where the docs are: every Platform header, a known sandbox, ``If-Match`` on
PATCH (412 when stale, also on actions that send one), secrets masked on read, Basic auth and
the exact redirect URI at the token endpoint, the registered redirect URI on the consent page.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import html
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from loopback import LoopbackServer

ORG_ID = "0FF51DE0000000000000ABCD@AdobeOrg"
CLIENT_ID = "outside-client-0001"
CLIENT_SECRET = "p8e-outside-client-secret-7f3a"
APP_ID = "1509999"
APP_SECRET = "outside-app-secret-91c2"
SANDBOXES = ("prod", "dev", "emea-test")
FLOWSERVICE = "/data/foundation/flowservice"
PROFILE_DESTINATION_FLOW_SPEC = "71471eba-b620-49e4-90fd-23f1fa0174d8"
PROFILE_SOURCE_SPEC = "8a9c3494-9708-43d7-ae3f-cda01e5030e1"
MASK = "***"
#: A Pinterest grant lasts 30 days ("Pinterest tokens expire every 30 days", Adobe's docs).
GRANT_SECONDS = 30 * 86400
IMS_SCOPES = ("openid", "session", "AdobeID", "read_organizations")
PINTEREST_SCOPES = ("ads:read", "ads:write", "user_accounts:read")
EXTRA_SCOPE = "pins:read"

_NS = uuid.UUID("6f1c2b0e-9d4e-4c36-8a55-0b7d1f7e2a10")


def uid(*key: str) -> str:
    """A deterministic id, so tests can name objects."""
    return str(uuid.uuid5(_NS, "/".join(key)))


def new_etag() -> str:
    return f'"{uuid.uuid4()}"'


def now_ms() -> int:
    return int(time.time() * 1000)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- JSON Patch (RFC 6902 add/replace/remove), written here on purpose ------------------------


class PatchError(ValueError):
    pass


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise PatchError(f"bad JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def apply_patch(document: Any, ops: Any) -> Any:
    if not isinstance(ops, list) or not ops:
        raise PatchError("the body must be a non-empty JSON Patch array")
    doc = copy.deepcopy(document)
    for op in ops:
        if not isinstance(op, dict) or op.get("op") not in ("add", "replace", "remove"):
            raise PatchError(f"unsupported operation {op!r}")
        parts = _pointer(str(op.get("path", "")))
        parent: Any = doc
        for part in parts[:-1]:
            if isinstance(parent, list):
                parent = parent[int(part)]
            elif isinstance(parent, dict) and part in parent:
                parent = parent[part]
            else:
                raise PatchError(f"path {op['path']!r} does not exist")
        last = parts[-1]
        kind = op["op"]
        if kind != "remove" and "value" not in op:
            raise PatchError(f"{kind} needs a value")
        if isinstance(parent, list):
            if kind == "add":
                index = len(parent) if last == "-" else int(last)
                parent.insert(index, op["value"])
            elif kind == "replace":
                parent[int(last)] = op["value"]
            else:
                del parent[int(last)]
        elif isinstance(parent, dict):
            if kind == "replace" and last not in parent:
                raise PatchError(f"path {op['path']!r} does not exist")
            if kind == "remove":
                parent.pop(last)
            else:
                parent[last] = op["value"]
        else:
            raise PatchError(f"path {op['path']!r} does not point into an object")
    return doc


# --- property filters -------------------------------------------------------------------------


def values_at(obj: Any, path: str) -> list[Any]:
    """Every value at a dotted path; ``name[]`` walks an array."""
    current = [obj]
    for part in path.split("."):
        array = part.endswith("[]")
        key = part[:-2] if array else part
        following: list[Any] = []
        for item in current:
            if not isinstance(item, dict) or key not in item:
                continue
            value = item[key]
            if array:
                following.extend(value if isinstance(value, list) else [])
            else:
                following.append(value)
        current = following
    return current


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def matches(obj: dict[str, Any], prop: str) -> bool:
    field_path, sep, wanted = prop.partition("==")
    if not sep:
        raise PatchError(f"property {prop!r} is not FIELD==VALUE")
    options = set(wanted.split(","))
    return any(_text(v) in options for v in values_at(obj, field_path))


# --- the world --------------------------------------------------------------------------------


@dataclass
class Logged:
    service: str
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    status: int
    body: Any = None

    @property
    def sandbox(self) -> str:
        return self.headers.get("x-sandbox-name", "prod")


@dataclass
class PinUser:
    id: str
    username: str
    ad_accounts: list[str]


@dataclass
class Grant:
    user: str
    scopes: tuple[str, ...]
    expires_at: float


@dataclass
class World:
    """Every service's state behind one lock (the servers are threaded)."""

    page_size: int = 2
    lock: threading.RLock = field(default_factory=threading.RLock)
    log: list[Logged] = field(default_factory=list)
    ims_tokens: dict[str, float] = field(default_factory=dict)
    specs: list[dict[str, Any]] = field(default_factory=list)
    #: sandbox -> resource -> id -> object (stored unmasked)
    objects: dict[str, dict[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    users: dict[str, PinUser] = field(default_factory=dict)
    ad_account_names: dict[str, str] = field(default_factory=dict)
    access_tokens: dict[str, Grant] = field(default_factory=dict)
    refresh_tokens: dict[str, Grant] = field(default_factory=dict)
    codes: dict[str, tuple[str, str, tuple[str, ...]]] = field(default_factory=dict)
    #: Tokens Adobe's own Pinterest app holds (from a person's Reconnect OAuth in Adobe).
    adobe_grants: dict[str, Grant] = field(default_factory=dict)
    redirect_uris: set[str] = field(default_factory=set)
    #: who "is signed in" at the consent page; None: the page asks
    consent_user: str = "2000000001"
    auto_approve: bool = False
    #: 202 without a body (documented) or 200 with {id, etag}, per PATCHed resource
    patch_status: dict[str, int] = field(default_factory=lambda: {"flows": 202, "connections": 200})
    #: "position": token-only next links whose token is a bare offset; "query": the query
    #: in the link and a token bound to it (see the module docstring).
    next_links: str = "position"
    #: Called with each Platform request before anything else (to change the world mid-run).
    platform_hook: Callable[[Request], None] | None = None

    # -- scenario helpers --

    def sandbox(self, name: str) -> dict[str, dict[str, dict[str, Any]]]:
        return self.objects.setdefault(
            name, {"flows": {}, "connections": {}, "targetConnections": {}}
        )

    def all_of(self, resource: str) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for sb in self.objects.values():
            found.update(sb[resource])
        return found

    def sandbox_of(self, object_id: str) -> str:
        return next(
            name
            for name, resources in self.objects.items()
            if any(object_id in objects for objects in resources.values())
        )

    def flow(self, flow_id: str) -> dict[str, Any]:
        return self.all_of("flows")[flow_id]

    def connection(self, conn_id: str) -> dict[str, Any]:
        return self.all_of("connections")[conn_id]

    def issue_refresh_token(self, user_id: str) -> str:
        token = "pinr_" + secrets.token_urlsafe(24)
        self.refresh_tokens[token] = Grant(
            user_id, (*PINTEREST_SCOPES, EXTRA_SCOPE), time.time() + 60 * 86400
        )
        return token

    def reconnect_in_adobe(self, conn_id: str, user: str | None = None) -> None:
        """What a person's Reconnect OAuth in Adobe's UI does: Adobe's own Pinterest app gets
        a grant (kept apart: pinmigrate's app can neither see nor refresh it) and Adobe stores
        it in the account, which gets a new etag and ``updatedAt``."""
        with self.lock:
            account = self.connection(conn_id)
            access, refresh = (
                "pina_adobe_" + secrets.token_urlsafe(16),
                "pinr_adobe_" + (secrets.token_urlsafe(16)),
            )
            grant = Grant(user or MARKETER, PINTEREST_SCOPES, time.time() + GRANT_SECONDS)
            self.adobe_grants[access] = self.adobe_grants[refresh] = grant
            account["auth"] = {
                "specName": "OAuth2 Authorization Code",
                "params": {
                    "accessToken": access,
                    "refreshToken": refresh,
                    "tokenType": "Bearer",
                    "expiresIn": GRANT_SECONDS,
                },
            }
            account["etag"] = new_etag()
            account["updatedAt"] = now_ms()

    def snapshot(self) -> dict[str, Any]:
        """What tests compare: flow states and audiences, account credentials (unmasked)."""
        with self.lock:
            flows = {
                fid: {
                    "state": f["state"],
                    "audiences": sorted(audience_ids(f)),
                    "etag": f["etag"],
                }
                for fid, f in self.all_of("flows").items()
            }
            accounts = {
                cid: {
                    "auth": copy.deepcopy(c.get("auth")),
                    "etag": c["etag"],
                    "updatedAt": c.get("updatedAt"),
                }
                for cid, c in self.all_of("connections").items()
            }
            return {"flows": flows, "accounts": accounts}

    def writes(self) -> list[Logged]:
        with self.lock:
            return [
                e
                for e in self.log
                if e.service == "platform" and e.method in ("POST", "PATCH", "PUT", "DELETE")
            ]


def audience_ids(flow: dict[str, Any]) -> set[str]:
    ids: set[str] = set()
    for t in flow.get("transformations") or []:
        selectors = ((t.get("params") or {}).get("segmentSelectors") or {}).get("selectors") or []
        ids.update(str(s["value"]["id"]) for s in selectors if isinstance(s.get("value"), dict))
    return ids


#: Credential fields shown in clear on read; every other one is masked.
CLEAR_PARAMS = frozenset({"expiresAt", "expiresIn", "tokenType"})


def masked(connection: dict[str, Any]) -> dict[str, Any]:
    shown = copy.deepcopy(connection)
    params = (shown.get("auth") or {}).get("params")
    if isinstance(params, dict):
        for key in list(params):
            if key not in CLEAR_PARAMS:
                params[key] = MASK
    return shown


# --- HTTP plumbing ----------------------------------------------------------------------------


class Answer(Exception):
    """Raised by a route to answer at once."""

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


Route = Callable[["Request"], tuple[int, Any, dict[str, str]]]


@dataclass
class Request:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    raw: bytes

    def arg(self, name: str) -> str | None:
        return next((v for k, v in self.query if k == name), None)

    def args(self, name: str) -> list[str]:
        return [v for k, v in self.query if k == name]

    def form(self) -> dict[str, str]:
        if not self.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            raise Answer(415, {"error": "unsupported_media_type"})
        return {k: v[0] for k, v in parse_qs(self.raw.decode("utf-8")).items()}

    def json(self) -> Any:
        if not self.headers.get("content-type", "").startswith("application/json"):
            raise Answer(
                415,
                flow_error(415, "Unsupported Media Type", "Content-Type must be application/json"),
            )
        try:
            return json.loads(self.raw.decode("utf-8"))
        except ValueError:
            raise Answer(400, flow_error(400, "Bad Request", "the body is not JSON")) from None


def flow_error(status: int, title: str, message: str, code: str = "") -> dict[str, Any]:
    code = code or f"FLOW-1400-{status}"
    return {
        "type": f"https://ns.adobe.com/aep/errors/{code}",
        "title": title,
        "status": status,
        "report": {"tenantInfo": {"sandboxName": ""}},
        "errorMessage": message,
        "errorDetails": "",
    }


def make_handler(world: World, service: str, route: Route) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Buffered, flushed once per request: headers and body as two small writes on a
        # kept-alive connection would meet Nagle and delayed ACKs on every request.
        wbufsize = -1

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            request = Request(
                method=self.command,
                path=parts.path,
                query=[
                    (k, v)
                    for k, vs in parse_qs(parts.query, keep_blank_values=True).items()
                    for v in vs
                ],
                headers={k.lower(): v for k, v in self.headers.items()},
                raw=raw,
            )
            try:
                status, body, headers = route(request)
            except Answer as answer:
                status, body, headers = answer.status, answer.body, answer.headers
            logged_body: Any = None
            if raw and request.headers.get("content-type", "").startswith("application/json"):
                try:
                    logged_body = json.loads(raw)
                except ValueError:
                    logged_body = None
            with world.lock:
                world.log.append(
                    Logged(
                        service,
                        request.method,
                        request.path,
                        request.query,
                        request.headers,
                        status,
                        logged_body,
                    )
                )
            if isinstance(body, bytes):
                payload = body
            elif body is None:
                payload = b""
            else:
                # Raw UTF-8 and no charset: what a JSON client must cope with.
                payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
                headers = {"Content-Type": "application/json", **headers}
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


# --- IMS ----------------------------------------------------------------------------------


def ims_route(world: World) -> Route:
    def route(req: Request) -> tuple[int, Any, dict[str, str]]:
        if (req.method, req.path) != ("POST", "/ims/token/v3"):
            return 404, {"error": "not_found"}, {}
        form = req.form()
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}, {}
        if form.get("client_id") != CLIENT_ID:
            return 400, {"error": "invalid_client", "error_description": "invalid client_id"}, {}
        if form.get("client_secret") != CLIENT_SECRET:
            return (
                401,
                {"error": "invalid_client", "error_description": "invalid client_secret"},
                {},
            )
        scope = form.get("scope", "")
        # Comma-separated, as documented: a space-joined list is one unknown scope.
        if " " in scope or not set(IMS_SCOPES) <= set(scope.split(",")):
            return 400, {"error": "invalid_scope", "error_description": f"bad scope {scope}"}, {}
        token = "eyJ-ims-" + secrets.token_urlsafe(24)
        with world.lock:
            world.ims_tokens[token] = time.time() + 86399
        return 200, {"access_token": token, "token_type": "bearer", "expires_in": 86399}, {}

    return route


# --- Flow Service -----------------------------------------------------------------------------

LIST_RESOURCES = ("flows", "connections", "targetConnections", "connectionSpecs", "runs")
#: How each list says "last page": the documented variants, one per resource.
LAST_PAGE_LINKS: dict[str, Any] = {
    "flows": {},
    "connections": None,  # no _links at all
    "targetConnections": {"self": True},  # _links without next
    "connectionSpecs": {},
    "runs": None,
}


def _gateway(status: int, code: int, message: str) -> Answer:
    return Answer(status, {"error_code": code, "message": message})


def platform_route(world: World) -> Route:
    def check_headers(req: Request) -> str:
        auth = req.headers.get("authorization", "")
        if not auth:
            raise _gateway(403, 403010, "Oauth token is missing")
        token = auth[7:] if auth.lower().startswith("bearer ") else ""
        with world.lock:
            expiry = world.ims_tokens.get(token)
        if expiry is None or expiry < time.time():
            raise _gateway(401, 401013, "Oauth token is not valid")
        api_key = req.headers.get("x-api-key")
        if not api_key:
            raise _gateway(403, 403000, "Api Key is required")
        if api_key != CLIENT_ID:
            raise _gateway(403, 403003, "Api Key is invalid")
        org = req.headers.get("x-gw-ims-org-id")
        if not org:
            raise _gateway(400, 400003, "Missing header x-gw-ims-org-id")
        if org != ORG_ID:
            raise _gateway(403, 403025, "Profile is not valid")
        sandbox = req.headers.get("x-sandbox-name", "prod")
        if sandbox not in world.objects:
            raise Answer(
                404, flow_error(404, "Sandbox not found", f"no sandbox {sandbox}", "FLOW-1404-404")
            )
        return sandbox

    def route(req: Request) -> tuple[int, Any, dict[str, str]]:
        if not req.path.startswith(FLOWSERVICE + "/"):
            return 404, {"error_code": 404000, "message": "no route"}, {}
        if world.platform_hook is not None:
            with world.lock:
                world.platform_hook(req)
        sandbox = check_headers(req)
        parts = [p for p in req.path[len(FLOWSERVICE) :].split("/") if p]
        with world.lock:
            if req.method == "GET" and len(parts) == 1 and parts[0] in LIST_RESOURCES:
                return 200, list_page(world, sandbox, parts[0], req), {}
            if req.method == "GET" and len(parts) == 2 and parts[0] in LIST_RESOURCES:
                return 200, {"items": [one(world, sandbox, parts[0], parts[1])]}, {}
            if req.method == "PATCH" and len(parts) == 2 and parts[0] in ("flows", "connections"):
                return patch(world, sandbox, parts[0], parts[1], req)
            if req.method == "POST" and len(parts) == 3 and parts[::2] == ["flows", "action"]:
                return flow_action(world, sandbox, parts[1], req)
        return 405, flow_error(405, "Method Not Allowed", f"{req.method} {req.path}"), {}

    return route


def _visible(world: World, sandbox: str, resource: str) -> list[dict[str, Any]]:
    if resource == "connectionSpecs":
        return world.specs
    if resource == "runs":
        return [r for r in world.runs.get(sandbox, [])]
    return list(world.objects[sandbox][resource].values())


def _shown(resource: str, obj: dict[str, Any]) -> dict[str, Any]:
    return masked(obj) if resource == "connections" else copy.deepcopy(obj)


def _signature(resource: str, props: list[str], orderby: str | None) -> str:
    text = json.dumps([resource, sorted(props), orderby or ""])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def list_page(world: World, sandbox: str, resource: str, req: Request) -> dict[str, Any]:
    props = req.args("property")
    orderby = req.arg("orderby")
    try:
        limit = int(req.arg("limit") or 20)
    except ValueError:
        raise Answer(400, flow_error(400, "Bad Request", "limit must be a number")) from None
    if not 1 <= limit <= 100:
        raise Answer(400, flow_error(400, "Bad Request", "limit must be between 1 and 100"))
    try:
        items = [o for o in _visible(world, sandbox, resource) if all(matches(o, p) for p in props)]
    except PatchError as exc:
        raise Answer(400, flow_error(400, "Bad Request", str(exc))) from None
    if orderby in ("name", "-name"):
        items.sort(key=lambda o: str(o.get("name", "")), reverse=orderby == "-name")
    elif orderby:
        items.sort(key=lambda o: o.get("createdAt", 0))
    if req.arg("count") == "true":
        return {"count": len(items)}
    # A position token has no signature: the page is of whatever query came with it.
    signature = _signature(resource, props, orderby) if world.next_links == "query" else ""
    offset = 0
    token = req.arg("continuationToken")
    if token is not None:
        try:
            decoded = json.loads(base64.b64decode(token.encode(), altchars=b"-/"))
            offset, claimed = int(decoded["o"]), decoded["s"]
        except (ValueError, KeyError, TypeError):
            raise Answer(400, flow_error(400, "Bad Request", "invalid continuationToken")) from None
        if claimed != signature:
            # A client that drops the filters on page 2 would widen the result: refuse.
            raise Answer(
                400,
                flow_error(400, "Bad Request", "continuationToken does not match the query"),
            )
    size = min(limit, world.page_size)
    page = items[offset : offset + size]
    body: dict[str, Any] = {"items": [_shown(resource, o) for o in page]}
    if offset + size < len(items):
        # Opaque, padded, with '/' and '=': only a client that treats it as a whole survives.
        raw = json.dumps({"o": offset + size, "s": signature, "pad": "é/=="})
        raw += " " * ((1 - len(raw.encode())) % 3)  # so base64 ends in "=="
        next_token = base64.b64encode(raw.encode(), altchars=b"-/").decode()
        if world.next_links == "query":
            # The query in the link, its parameters in another order than the client's.
            query = [*(("property", p) for p in props)]
            if orderby:
                query.append(("orderby", orderby))
            query += [("continuationToken", next_token), ("limit", str(limit))]
        else:
            query = [("continuationToken", next_token)]  # the published form
        href = f"/{resource}?{urlencode(query, quote_via=quote)}"
        body["_links"] = {"next": {"href": href}}
    else:
        last = LAST_PAGE_LINKS[resource]
        if last == {"self": True}:
            body["_links"] = {"self": {"href": f"/{resource}"}}
        elif last is not None:
            body["_links"] = {}
    return body


def _not_found(resource: str, object_id: str) -> Answer:
    return Answer(
        404,
        flow_error(
            404,
            "Resource not found",
            f"{resource} with id {object_id} was not found",
            "FLOW-1439-404",
        ),
    )


def one(world: World, sandbox: str, resource: str, object_id: str) -> dict[str, Any]:
    for obj in _visible(world, sandbox, resource):
        if obj.get("id") == object_id:
            return _shown(resource, obj)
    raise _not_found(resource, object_id)


def _stale(obj: dict[str, Any], supplied: str) -> Answer:
    return Answer(
        412,
        flow_error(
            412,
            "Precondition Failed",
            f"Supplied version=[{json.dumps(supplied)}] does not match the current version "
            f"on entity=[{json.dumps(obj['etag'])}]",
            "FLOW-1412-412",
        ),
    )


def _touch(obj: dict[str, Any]) -> None:
    obj["etag"] = new_etag()
    obj["version"] = obj["etag"]
    obj["updatedAt"] = now_ms()


def patch(
    world: World, sandbox: str, resource: str, object_id: str, req: Request
) -> tuple[int, Any, dict[str, str]]:
    obj = world.objects[sandbox][resource].get(object_id)
    if obj is None:
        raise _not_found(resource, object_id)
    supplied = req.headers.get("if-match")
    if not supplied:
        raise Answer(428, flow_error(428, "Precondition Required", "If-Match header is required"))
    if supplied != obj["etag"]:
        raise _stale(obj, supplied)
    ops = req.json()
    try:
        changed = apply_patch(obj, ops)
    except (PatchError, IndexError, ValueError) as exc:
        raise Answer(400, flow_error(400, "Bad Request", f"invalid patch: {exc}")) from None
    if resource == "connections":
        params = (changed.get("auth") or {}).get("params")
        if not isinstance(params, dict) or MASK in params.values():
            raise Answer(400, flow_error(400, "Bad Request", "auth.params must hold real values"))
    obj.clear()
    obj.update(changed)
    _touch(obj)
    if world.patch_status[resource] == 202:
        # Documented too: accepted, no body; the client has to re-read for the etag.
        return 202, None, {}
    return 200, {"id": object_id, "etag": obj["etag"]}, {}


def flow_action(
    world: World, sandbox: str, flow_id: str, req: Request
) -> tuple[int, Any, dict[str, str]]:
    flow = world.objects[sandbox]["flows"].get(flow_id)
    if flow is None:
        raise _not_found("flows", flow_id)
    op = (req.arg("op") or "").lower()
    if op not in ("enable", "disable"):
        raise Answer(400, flow_error(400, "Bad Request", f"unknown op {req.arg('op')!r}"))
    supplied = req.headers.get("if-match")
    if supplied and supplied != flow["etag"]:
        raise _stale(flow, supplied)
    goal = "enabled" if op == "enable" else "disabled"
    if flow["state"] == goal:
        raise Answer(
            400,
            flow_error(
                400,
                "Bad Request",
                f"The operation {op.upper()} cannot be applied on the current state "
                f"{flow['state'].upper()}",
                "FLOW-1409-400",
            ),
        )
    flow["state"] = goal
    _touch(flow)
    if goal == "enabled":
        started = now_ms()
        world.runs.setdefault(sandbox, []).append(
            {
                "id": str(uuid.uuid4()),
                "flowId": flow_id,
                "createdAt": started,
                "metrics": {
                    "durationSummary": {"startedAtUTC": started, "completedAtUTC": started},
                    "statusSummary": {"status": "success", "errors": []},
                },
            }
        )
    return 200, {"id": flow_id, "etag": flow["etag"]}, {}


# --- Pinterest API --------------------------------------------------------------------------


def _pin_error(status: int, code: int, message: str) -> Answer:
    return Answer(status, {"code": code, "message": message})


def pinterest_route(world: World) -> Route:
    def bearer(req: Request) -> Grant:
        auth = req.headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else ""
        with world.lock:
            grant = world.access_tokens.get(token)
        if grant is None or grant.expires_at < time.time():
            raise _pin_error(401, 2, "Authentication failed.")
        return grant

    def token_endpoint(req: Request) -> tuple[int, Any, dict[str, str]]:
        basic = req.headers.get("authorization", "")
        expected = base64.b64encode(f"{APP_ID}:{APP_SECRET}".encode()).decode()
        if basic != f"Basic {expected}":
            raise _pin_error(401, 2, "Authentication failed.")
        form = req.form()
        grant_type = form.get("grant_type")
        with world.lock:
            if grant_type == "authorization_code":
                entry = world.codes.pop(form.get("code", ""), None)
                if entry is None:
                    raise _pin_error(400, 283, "Invalid authorization code.")
                user, redirect, scopes = entry
                if form.get("redirect_uri") != redirect:
                    raise _pin_error(400, 1, "redirect_uri does not match the authorization")
                continuous = form.get("continuous_refresh") == "true"
                return 200, _grant(world, user, scopes, continuous), {}
            if grant_type == "refresh_token":
                old = world.refresh_tokens.pop(form.get("refresh_token", ""), None)
                if old is None or old.expires_at < time.time():
                    raise _pin_error(400, 1, "Invalid refresh token.")
                return 200, _grant(world, old.user, old.scopes, True), {}
        raise _pin_error(400, 1, f"unsupported grant_type {grant_type!r}")

    def route(req: Request) -> tuple[int, Any, dict[str, str]]:
        if (req.method, req.path) == ("POST", "/v5/oauth/token"):
            return token_endpoint(req)
        if req.method != "GET":
            raise _pin_error(405, 405, "Method not allowed")
        if req.path == "/v5/user_account":
            grant = bearer(req)
            if "user_accounts:read" not in grant.scopes:
                raise _pin_error(403, 3, "Not authorized to access the user account.")
            user = world.users[grant.user]
            return (
                200,
                {"id": user.id, "username": user.username, "account_type": "BUSINESS"},
                {},
            )
        if req.path == "/v5/ad_accounts":
            grant = bearer(req)
            if "ads:read" not in grant.scopes:
                raise _pin_error(403, 3, "Not authorized to read ad accounts.")
            user = world.users[grant.user]
            start = int(req.arg("bookmark") or 0)
            # One per page whatever page_size asks: the bookmark has to be followed.
            ids = user.ad_accounts[start : start + 1]
            more = start + 1 < len(user.ad_accounts)
            items = [
                {
                    "id": a,
                    "name": world.ad_account_names.get(a, a),
                    "owner": {"id": user.id, "username": user.username},
                    "permissions": ["ADMIN"],
                    "country": "FR",
                    "currency": "EUR",
                }
                for a in ids
            ]
            return 200, {"items": items, "bookmark": str(start + 1) if more else None}, {}
        raise _pin_error(404, 404, "Not found")

    return route


def _grant(world: World, user: str, scopes: tuple[str, ...], continuous: bool) -> dict[str, Any]:
    access = "pina_" + secrets.token_urlsafe(24)
    world.access_tokens[access] = Grant(user, scopes, time.time() + 30 * 86400)
    body: dict[str, Any] = {
        "access_token": access,
        "response_type": "authorization_code",
        "token_type": "bearer",
        "expires_in": 2592000,
        # Comma-separated, and more than was asked for: both allowed by the notes.
        "scope": ",".join(scopes),
    }
    if continuous:
        refresh = world.issue_refresh_token(user)
        world.refresh_tokens[refresh].scopes = scopes
        body |= {
            "refresh_token": refresh,
            "refresh_token_expires_in": 5184000,
            "refresh_token_expires_at": int(time.time()) + 5184000,
        }
    return body


# --- Pinterest www: the consent page ----------------------------------------------------------


def www_route(world: World) -> Route:
    def page(status: int, text: str) -> tuple[int, Any, dict[str, str]]:
        return status, text.encode("utf-8"), {"Content-Type": "text/html; charset=utf-8"}

    def redirect(uri: str, **params: str) -> tuple[int, Any, dict[str, str]]:
        return 302, b"", {"Location": f"{uri}?{urlencode(params)}"}

    def route(req: Request) -> tuple[int, Any, dict[str, str]]:
        if req.path != "/oauth/":
            return page(404, "<h1>Not found</h1>")
        if req.method == "GET":
            client = req.arg("client_id") or req.arg("consumer_id")
            uri = req.arg("redirect_uri") or ""
            state = req.arg("state") or ""
            scope = req.arg("scope") or ""
            if client != APP_ID:
                return page(400, "<h1>Unknown app</h1>")
            if uri not in world.redirect_uris:
                return page(400, f"<h1>redirect_uri {html.escape(uri)} is not registered</h1>")
            if req.arg("response_type") != "code":
                return page(400, "<h1>response_type must be code</h1>")
            scopes = tuple(s for s in scope.split(",") if s)
            if " " in scope or not set(PINTEREST_SCOPES) <= set(scopes):
                return page(400, f"<h1>bad scope {html.escape(scope)}</h1>")
            if world.auto_approve:
                return redirect(
                    uri, code=_code(world, world.consent_user, uri, scopes), state=state
                )
            hidden = "".join(
                f'<input type="hidden" name="{k}" value="{html.escape(v, quote=True)}">'
                for k, v in (("redirect_uri", uri), ("state", state), ("scope", scope))
            )
            user = world.users[world.consent_user]
            return page(
                200,
                "<!doctype html><html><head><meta charset='utf-8'><title>Pinterest</title>"
                f"</head><body><p>Signed in as {html.escape(user.username)}</p>"
                f'<form method="post" action="/oauth/">{hidden}'
                '<button name="decision" value="allow">Give access</button>'
                '<button name="decision" value="deny">Cancel</button></form></body></html>',
            )
        if req.method == "POST":
            form = req.form()
            uri = form.get("redirect_uri", "")
            if uri not in world.redirect_uris:
                return page(400, "<h1>redirect_uri is not registered</h1>")
            state = form.get("state", "")
            if form.get("decision") != "allow":
                return redirect(uri, error="access_denied", state=state)
            scopes = tuple(s for s in form.get("scope", "").split(",") if s)
            return redirect(uri, code=_code(world, world.consent_user, uri, scopes), state=state)
        return page(405, "<h1>Method not allowed</h1>")

    return route


def _code(world: World, user: str, redirect_uri: str, scopes: tuple[str, ...]) -> str:
    code = "c0de" + secrets.token_urlsafe(18)
    with world.lock:
        # The extra scope is granted whatever was asked: the token's scope lists more.
        world.codes[code] = (user, redirect_uri, (*scopes, EXTRA_SCOPE))
    return code


# --- the four servers -------------------------------------------------------------------------


class Services:
    """Starts IMS, Platform, Pinterest API and Pinterest www on four loopback ports."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._servers: dict[str, LoopbackServer] = {}

    def __enter__(self) -> Services:
        routes = {
            "ims": ims_route(self.world),
            "platform": platform_route(self.world),
            "pinterest": pinterest_route(self.world),
            "www": www_route(self.world),
        }
        for name, route in routes.items():
            self._servers[name] = LoopbackServer(make_handler(self.world, name, route), name=name)
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self._servers.values():
            server.stop()

    def url(self, name: str) -> str:
        return self._servers[name].url

    def env(self, redirect_uri: str) -> dict[str, str]:
        """Every setting, as a CI job would give them: PINMIGRATE_* variables only."""
        self.world.redirect_uris.add(redirect_uri)
        return {
            "PINMIGRATE_ADOBE_ORG_ID": ORG_ID,
            "PINMIGRATE_ADOBE_CLIENT_ID": CLIENT_ID,
            "PINMIGRATE_ADOBE_CLIENT_SECRET": CLIENT_SECRET,
            "PINMIGRATE_ADOBE_SANDBOXES": ",".join(SANDBOXES),
            "PINMIGRATE_ADOBE_IMS_URL": self.url("ims"),
            "PINMIGRATE_ADOBE_PLATFORM_URL": self.url("platform"),
            "PINMIGRATE_PINTEREST_APP_ID": APP_ID,
            "PINMIGRATE_PINTEREST_APP_SECRET": APP_SECRET,
            "PINMIGRATE_PINTEREST_REDIRECT_URI": redirect_uri,
            "PINMIGRATE_PINTEREST_OAUTH_URL": self.url("www") + "/oauth/",
            "PINMIGRATE_PINTEREST_API_URL": self.url("pinterest") + "/v5",
        }


# --- the scenario -----------------------------------------------------------------------------

LEGACY_SPEC = uid("spec", "legacy")
NEW_SPEC = uid("spec", "new")
S3_SPEC = "4fce964d-3f37-408f-9778-e597338a21ee"
MARKETER = "2000000001"
ANALYST = "2000000002"
SOLDES = "Soldes d'été — 🇫🇷"
LOYALTY_JA = "顧客ロイヤルティ"
KAMPAGNE = "Kampagne Ü — Frühjahr"
#: Square brackets that a markup parser would take for tags.
PROMO = "Promo [FR] — 50% [/] [bold]off"
LONG_NAME = "Relance panier abandonné — clients fidèles, Île-de-France & Provence-Alpes (2024)"
NO_SELECTORS = "Rentrée: no audience yet"


@dataclass(frozen=True)
class Expected:
    """What a correct plan holds for the scenario, by (kind, target id)."""

    actions: frozenset[tuple[str, str]]
    #: new flow id -> its legacy twin, for the add_audiences targets
    twins: dict[str, str]
    orphans: frozenset[str]
    blocked: frozenset[str]
    reconnect_advertisers: dict[str, list[str]]
    #: the ambiguous emea-test pair: "legacy" and one of its two "new" candidates
    lookalikes: dict[str, str]


def audience(n: int) -> dict[str, Any]:
    return {
        "type": "PLATFORM_SEGMENT",
        "value": {
            "id": uid("audience", str(n)),
            "name": f"Audience n°{n} — ünïcödé",
            "description": "",
            "exportMode": "DAILY_FULL_EXPORT",
        },
    }


class Builder:
    """Builds objects shaped like Adobe's published examples."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.created = 1_658_340_453_699

    def _stamp(self) -> int:
        self.created += 1000
        return self.created

    def account(
        self, sandbox: str, key: str, spec: str, expires: datetime | None, name: str = ""
    ) -> str:
        conn_id = uid(sandbox, "account", key)
        params: dict[str, Any] = {}
        updated = self._stamp()
        if expires is not None:
            # The Destination SDK's stored outputs: accessToken, expiresIn, refreshToken,
            # tokenType; the grant was made GRANT_SECONDS before it runs out.
            params = {
                "accessToken": "pina_old_" + key,
                "refreshToken": "pinr_old_" + key,
                "tokenType": "Bearer",
                "expiresIn": GRANT_SECONDS,
            }
            updated = int((expires.timestamp() - GRANT_SECONDS) * 1000)
        self.world.sandbox(sandbox)["connections"][conn_id] = {
            "id": conn_id,
            "name": name or f"Pinterest - {key}",
            "connectionSpec": {"id": spec, "version": "1.0"},
            "auth": {"specName": "OAuth2 Authorization Code", "params": params},
            "state": "enabled",
            "etag": new_etag(),
            "sandboxName": sandbox,
            "imsOrgId": ORG_ID,
            "createdAt": self._stamp(),
            "updatedAt": updated,
        }
        return conn_id

    def target(self, sandbox: str, key: str, spec: str, account: str, advertiser: str) -> str:
        tc_id = uid(sandbox, "target", key)
        self.world.sandbox(sandbox)["targetConnections"][tc_id] = {
            "id": tc_id,
            "name": f"target {key}",
            "baseConnectionId": account,
            "connectionSpec": {"id": spec, "version": "1.0"},
            "params": {"advertiser_id": advertiser} if advertiser else {"bucketName": "exports"},
            "state": "enabled",
            "etag": new_etag(),
            "sandboxName": sandbox,
            "createdAt": self._stamp(),
        }
        return tc_id

    def flow(
        self,
        sandbox: str,
        key: str,
        name: str,
        spec: str,
        account: str,
        target: str,
        state: str,
        audiences: list[int] | None,
    ) -> str:
        """A destination dataflow; ``audiences=None``: no segmentSelectors at all."""
        flow_id = uid(sandbox, "flow", key)
        source = uid(sandbox, "source", key)
        etag = new_etag()
        params: dict[str, Any] = {
            "profileSelectors": {
                "selectors": [
                    {
                        "type": "JSON_PATH",
                        "value": {"path": "personalEmail.address", "operator": "EXISTS"},
                    }
                ]
            }
        }
        if audiences is not None:
            params["segmentSelectors"] = {"selectors": [audience(n) for n in audiences]}
        self.world.sandbox(sandbox)["flows"][flow_id] = {
            "id": flow_id,
            "createdAt": self._stamp(),
            "updatedAt": self.created,
            "sandboxName": sandbox,
            "imsOrgId": ORG_ID,
            "name": name,
            "description": "",
            "flowSpec": {"id": PROFILE_DESTINATION_FLOW_SPEC, "version": "1.0"},
            "state": state,
            "version": etag,
            "etag": etag,
            "sourceConnectionIds": [source],
            "targetConnectionIds": [target],
            "inheritedAttributes": {
                "properties": {"isDestinationFlow": True},
                "sourceConnections": [
                    {
                        "id": source,
                        "connectionSpec": {"id": PROFILE_SOURCE_SPEC, "version": "1.0"},
                        "typeInfo": {"type": "ProfileFragments", "id": "ups"},
                    }
                ],
                # As in Adobe's examples: no params here, the ad account is on the target.
                "targetConnections": [
                    {
                        "id": target,
                        "connectionSpec": {"id": spec, "version": "1.0"},
                        "baseConnection": {
                            "id": account,
                            "connectionSpec": {"id": spec, "version": "1.0"},
                        },
                    }
                ],
            },
            "transformations": [{"name": "GeneralTransform", "params": params}],
            "runs": f"/runs?property=flowId=={flow_id}",
            "lastRunDetails": {"id": str(uuid.uuid4()), "state": "success"},
        }
        return flow_id


def build_scenario(world: World, new_card_name: str = "Pinterest") -> Expected:
    """Three sandboxes; see the module tests for what each object stands for.

    The cards are named as Adobe's notice names them unless ``new_card_name`` says otherwise.
    """
    now = datetime.now(UTC)
    world.specs = [
        {"id": LEGACY_SPEC, "name": "(Deprecating) Pinterest", "version": "1.0"},
        {"id": NEW_SPEC, "name": new_card_name, "version": "1.0"},
        {"id": uid("spec", "decoy"), "name": "(New) Pinterest Conversions", "version": "1.0"},
        {"id": uid("spec", "beta"), "name": "(Beta) Pinterest Conversions", "version": "1.0"},
        {"id": S3_SPEC, "name": "Amazon S3", "version": "1.0"},
    ]
    world.users = {
        MARKETER: PinUser(
            MARKETER,
            "outside_marketer",
            ["549755800001", "549755800002", "549755800003", "549755800004", "549755800005"],
        ),
        ANALYST: PinUser(ANALYST, "outside_analyst", ["549755800001"]),
    }
    world.ad_account_names = {
        a: f"Compte publicitaire {a[-1]} — é" for a in world.users[MARKETER].ad_accounts
    }
    b = Builder(world)
    acts: set[tuple[str, str]] = set()
    twins: dict[str, str] = {}
    lookalikes: dict[str, str] = {}
    orphans: set[str] = set()
    blocked: set[str] = set()
    reconnect: dict[str, list[str]] = {}
    valid = now + timedelta(days=25)  # a grant lasts 30 days

    # prod: one new account (no credentials) serving two ad accounts (two targets).
    sb = "prod"
    la = b.account(sb, "legacy-1", LEGACY_SPEC, now - timedelta(days=30))
    na = b.account(sb, "new-1", NEW_SPEC, None)
    reconnect[na] = ["549755800001", "549755800002"]
    acts.add(("reconnect_account", na))
    s3 = b.account(sb, "s3", S3_SPEC, None, name="S3 exports")

    def pair(
        sandbox: str,
        key: str,
        name: str,
        legacy_account: str,
        new_account: str,
        advertiser: str,
        legacy: tuple[str, list[int] | None],
        new: tuple[str, list[int] | None] | None,
        new_name: str | None = None,
        new_advertiser: str | None = None,
    ) -> tuple[str, str | None]:
        found = _pair(
            sandbox,
            key,
            name,
            legacy_account,
            new_account,
            advertiser,
            legacy,
            new,
            new_name,
            new_advertiser,
        )
        pairs.append(found)
        return found

    pairs: list[tuple[str, str | None]] = []

    def _pair(
        sandbox: str,
        key: str,
        name: str,
        legacy_account: str,
        new_account: str,
        advertiser: str,
        legacy: tuple[str, list[int] | None],
        new: tuple[str, list[int] | None] | None,
        new_name: str | None,
        new_advertiser: str | None,
    ) -> tuple[str, str | None]:
        lt = b.target(sandbox, f"{key}-legacy", LEGACY_SPEC, legacy_account, advertiser)
        lf = b.flow(sandbox, f"{key}-legacy", name, LEGACY_SPEC, legacy_account, lt, *legacy)
        if new is None:
            return lf, None
        nt = b.target(sandbox, f"{key}-new", NEW_SPEC, new_account, new_advertiser or advertiser)
        nf = b.flow(sandbox, f"{key}-new", new_name or name, NEW_SPEC, new_account, nt, *new)
        return lf, nf

    lf, nf = pair(
        sb, "soldes", SOLDES, la, na, "549755800001", ("enabled", [1, 2]), ("disabled", [1])
    )
    assert nf is not None
    acts |= {("add_audiences", nf), ("enable_flow", nf), ("disable_flow", lf)}
    lf, nf = pair(
        sb, "loyal", LOYALTY_JA, la, na, "549755800002", ("enabled", [3]), ("disabled", [3])
    )
    assert nf is not None
    acts |= {("enable_flow", nf), ("disable_flow", lf)}
    # Names that differ only by case or a trailing space are not equal names: orphans.
    lf, _ = pair(
        sb,
        "case",
        "Loyalty Members",
        la,
        na,
        "549755800001",
        ("enabled", [4]),
        ("disabled", [4]),
        new_name="loyalty members",
    )
    orphans.add(lf)
    lf, _ = pair(
        sb,
        "space",
        "Cart abandoners",
        la,
        na,
        "549755800001",
        ("enabled", [5]),
        ("disabled", [5]),
        new_name="Cart abandoners ",
    )
    orphans.add(lf)
    # Same name, another ad account: not a twin.
    lf, _ = pair(
        sb,
        "other-ad",
        "Prospects",
        la,
        na,
        "549755800001",
        ("enabled", []),
        ("disabled", []),
        new_advertiser="549755800002",
    )
    orphans.add(lf)
    lf, nf = pair(sb, "promo", PROMO, la, na, "549755800002", ("enabled", [3]), ("disabled", [3]))
    assert nf is not None
    acts |= {("enable_flow", nf), ("disable_flow", lf)}
    pair(
        sb, "winback", "Winback 2023", la, na, "549755800001", ("disabled", [6]), ("disabled", [6])
    )
    pair(sb, "spring", "Spring sale", la, na, "549755800002", ("disabled", [7]), ("enabled", [7]))
    # Another destination, with a Pinterest flow's very name: never read as Pinterest.
    st = b.target(sb, "s3", S3_SPEC, s3, "")
    b.flow(sb, "s3-soldes", SOLDES, S3_SPEC, s3, st, "disabled", [1])
    b.flow(sb, "s3-nightly", "S3 nightly export", S3_SPEC, s3, st, "enabled", [1, 2])

    # dev: credentials valid for 25 more days: no reconnect.
    sb = "dev"
    la = b.account(sb, "legacy-1", LEGACY_SPEC, valid)
    nd = b.account(sb, "new-1", NEW_SPEC, valid)
    lf, nf = pair(
        sb,
        "news",
        "Newsletter abonnés",
        la,
        nd,
        "549755800003",
        ("enabled", [8]),
        ("disabled", [8]),
    )
    assert nf is not None
    acts |= {("enable_flow", nf), ("disable_flow", lf)}
    # Both enabled: the legacy one is switched off, nothing else.
    lf, nf = pair(
        sb, "long", LONG_NAME, la, nd, "549755800003", ("enabled", [8]), ("disabled", [8])
    )
    assert nf is not None
    acts |= {("enable_flow", nf), ("disable_flow", lf)}
    lf, nf = pair(
        sb, "both", "Always on", la, nd, "549755800003", ("enabled", [9]), ("enabled", [9])
    )
    acts.add(("disable_flow", lf))

    # emea-test: an account expiring in 3 days serving two ad accounts; an ambiguous pair.
    sb = "emea-test"
    la = b.account(sb, "legacy-1", LEGACY_SPEC, valid)
    ne = b.account(sb, "new-1", NEW_SPEC, now + timedelta(days=3))
    reconnect[ne] = ["549755800004", "549755800005"]
    acts.add(("reconnect_account", ne))
    b.account(sb, "new-idle", NEW_SPEC, now - timedelta(days=9))  # expired, serves no live flow
    lf, nf = pair(
        sb,
        "kampagne",
        KAMPAGNE,
        la,
        ne,
        "549755800004",
        ("enabled", [10, 11, 12]),
        ("disabled", []),
    )
    assert nf is not None
    acts |= {("add_audiences", nf), ("enable_flow", nf), ("disable_flow", lf)}
    # A twin copied without any audience: no segmentSelectors to append to.
    lf, nf = pair(
        sb, "rentree", NO_SELECTORS, la, ne, "549755800004", ("enabled", [14]), ("disabled", None)
    )
    assert nf is not None
    acts |= {("add_audiences", nf), ("enable_flow", nf), ("disable_flow", lf)}
    lt = b.target(sb, "look-legacy", LEGACY_SPEC, la, "549755800005")
    look = b.flow(sb, "look-legacy", "Lookalike seeds", LEGACY_SPEC, la, lt, "enabled", [13])
    for twin in ("look-new-a", "look-new-b"):
        nt = b.target(sb, twin, NEW_SPEC, ne, "549755800005")
        b.flow(sb, twin, "Lookalike seeds", NEW_SPEC, ne, nt, "disabled", [13])
    blocked.add(look)
    lookalikes["legacy"] = look
    lookalikes["new"] = ids_by_name(world, sb, "Lookalike seeds", NEW_SPEC)[0]
    for name in SANDBOXES:
        world.sandbox(name)
    twins.update({nf: lf for lf, nf in pairs if nf and ("add_audiences", nf) in acts})
    return Expected(
        frozenset(acts), twins, frozenset(orphans), frozenset(blocked), reconnect, lookalikes
    )


def ids_by_name(world: World, sandbox: str, name: str, spec: str) -> list[str]:
    return [
        f["id"]
        for f in world.objects[sandbox]["flows"].values()
        if f["name"] == name
        and f["inheritedAttributes"]["targetConnections"][0]["connectionSpec"]["id"] == spec
    ]


def iter_log(world: World, service: str) -> Iterator[Logged]:
    with world.lock:
        yield from [e for e in world.log if e.service == service]
