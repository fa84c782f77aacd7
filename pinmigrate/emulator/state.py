"""The emulator's in-memory model and rules, apart from HTTP (the moto pattern).

:class:`EmulatorState` holds the world of a scenario and answers every call the server
routes to it with a JSON-ready value, or raises :class:`Problem` carrying the status and the
error body the real service would send. All public methods are thread-safe (one re-entrant
lock); stored objects are replaced, never changed in place, so a value handed out stays
consistent after the lock is released.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import copy
import random
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from pinmigrate.emulator import scenarios
from pinmigrate.emulator.jsonpatch import PatchError, apply_patch, merge_patch, parse_pointer
from pinmigrate.emulator.model import (
    CLIENT_ID,
    CLIENT_SECRET,
    LEGACY_SPEC_ID,
    MASK,
    MUTABLE_KINDS,
    NEW_SPEC_ID,
    ORG_ID,
    PINTEREST_APP_ID,
    PINTEREST_APP_NAME,
    PINTEREST_APP_SECRET,
    PINTEREST_SCOPES,
    SECRET_PARAM_KEYS,
    AdAccount,
    JsonDict,
    PinterestUser,
    World,
    emu_id,
    parse_iso,
)
from pinmigrate.emulator.query import (
    Condition,
    Order,
    QueryError,
    conditions_key,
    decode_token,
    encode_token,
    parse_condition,
    parse_limit,
    parse_order,
)
from pinmigrate.settings import is_loopback_host

IMS_TOKEN_LIFETIME = 86399
PINTEREST_ACCESS_LIFETIME = 2_592_000  # 30 days
PINTEREST_REFRESH_LIFETIME = 5_184_000  # 60 days
CODE_LIFETIME = 600.0
FLOW_ERRORS = "https://ns.adobe.com/aep/errors/"
#: Flow Service resources that answer lists and single GETs.
LIST_KINDS = (
    "flows",
    "connections",
    "targetConnections",
    "sourceConnections",
    "runs",
    "connectionSpecs",
)
PATCH_KINDS = ("flows", "connections", "targetConnections")
#: Top-level fields a PATCH may not touch (bookkeeping, identity, and the state that only
#: ``/flows/{id}/action`` changes).
READ_ONLY = frozenset(
    {
        "id",
        "etag",
        "version",
        "createdAt",
        "updatedAt",
        "createdBy",
        "updatedBy",
        "createdClient",
        "updatedClient",
        "sandboxId",
        "sandboxName",
        "imsOrgId",
        "runs",
        "lastOperation",
        "lastRunDetails",
        "inheritedAttributes",
        "connectionSpec",
        "flowSpec",
    }
)
PINTEREST_SPECS = frozenset({LEGACY_SPEC_ID, NEW_SPEC_ID})
SERVICES = ("ims", "flowservice", "pinterest")
_NOUNS = {
    "flows": "Flow",
    "connections": "Connection",
    "targetConnections": "Target connection",
    "sourceConnections": "Source connection",
    "runs": "Run",
    "connectionSpecs": "Connection spec",
}


class Problem(Exception):
    """An error answer: HTTP status, JSON body (or None) and extra headers."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


class ConsentError(Exception):
    """The authorize request cannot be shown a consent page (answered as an HTML error page)."""


def gateway_error(status: int, code: str, message: str) -> Problem:
    return Problem(status, {"error_code": code, "message": message})


def flow_error(
    status: int, message: str, *, sandbox: str | None, code: str, title: str, details: str = ""
) -> Problem:
    body: JsonDict = {
        "type": f"{FLOW_ERRORS}{code}-{status}",
        "title": title,
        "status": status,
        "report": {
            "tenantInfo": {"sandboxName": sandbox, "imsOrgId": ORG_ID},
            "additionalContext": None,
        },
        "errorMessage": message,
    }
    if details:
        body["errorDetails"] = details
    return Problem(status, body)


def bad_request(message: str, *, sandbox: str | None, details: str = "") -> Problem:
    return flow_error(
        400, message, sandbox=sandbox, code="FLOW-1002", title="Bad request", details=details
    )


def pinterest_error(status: int, code: int, message: str) -> Problem:
    return Problem(status, {"code": code, "message": message})


def ims_error(status: int, error: str, description: str) -> Problem:
    return Problem(status, {"error": error, "error_description": description})


def first(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


# --- settings that tests and the control API change ---------------------------------------


@dataclass
class Config:
    """Behaviour switches, set with ``POST /_emulator/config``."""

    page_size: int = 100
    auto_approve: bool = False
    auto_approve_user: str = "emu_marketer"
    #: 200 with ``{"id", "etag"}`` or 202 with no body: Adobe documents both for PATCH.
    patch_status: int = 200
    #: How the token response joins scopes (Pinterest's separator is unconfirmed).
    scope_separator: str = " "
    #: A scope granted on top of those asked for (Pinterest may grant more).
    extra_scope: str | None = None
    #: ``metrics.statusSummary.status`` of a successful run (Adobe shows both cases).
    run_status: str = "Success"


@dataclass(frozen=True)
class Faults:
    """Injected trouble for the API endpoints (never for ``/_emulator/``)."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_429: float = 0.0
    rate_5xx: float = 0.0
    rate_drop: float = 0.0
    retry_after: str = "1"
    seed: int | None = None
    services: tuple[str, ...] = SERVICES

    def __post_init__(self) -> None:
        for name in ("latency_ms", "jitter_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        rates = (self.rate_429, self.rate_5xx, self.rate_drop)
        if any(r < 0 or r > 1 for r in rates) or sum(rates) > 1:
            raise ValueError("fault rates must be between 0 and 1 and add up to at most 1")
        unknown = set(self.services) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown fault services {sorted(unknown)}; use {', '.join(SERVICES)}")

    def as_json(self) -> JsonDict:
        data = asdict(self)
        data["services"] = list(self.services)
        return data


_SPEC_KEYS = {
    "429": "rate_429",
    "5xx": "rate_5xx",
    "503": "rate_5xx",
    "drop": "rate_drop",
    "latency": "latency_ms",
    "latency_ms": "latency_ms",
    "jitter": "jitter_ms",
    "jitter_ms": "jitter_ms",
    "seed": "seed",
    "retry_after": "retry_after",
    "retry-after": "retry_after",
}


def parse_fault_spec(spec: str) -> Faults:
    """``"429=0.2,5xx=0.1,drop=0.05,jitter=20,seed=1"`` -> Faults; ValueError says what is wrong."""
    values: JsonDict = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        key, sep, raw = part.partition("=")
        name = _SPEC_KEYS.get(key.strip().lower())
        if not sep or name is None:
            raise ValueError(
                f"bad fault {part!r}; use KEY=VALUE with KEY one of 429, 5xx, drop, latency, "
                "jitter, seed, retry_after"
            )
        values[name] = raw.strip()
    return faults_from_json(values)


def faults_from_json(data: Mapping[str, Any]) -> Faults:
    known = {f.name for f in fields(Faults)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown fault settings {sorted(unknown)}; known: {sorted(known)}")
    kwargs: JsonDict = {}
    try:
        for name, value in data.items():
            if value is None:
                continue
            if name == "seed":
                kwargs[name] = int(value)
            elif name == "retry_after":
                kwargs[name] = str(value)
            elif name == "services":
                items = value.split(",") if isinstance(value, str) else list(value)
                kwargs[name] = tuple(str(s).strip() for s in items if str(s).strip())
            else:
                kwargs[name] = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"bad value for fault setting {name!r}: {value!r}") from None
    return Faults(**kwargs)


@dataclass(frozen=True)
class FaultDecision:
    action: str | None  # None, "429", "5xx", "drop"
    delay: float


class FaultInjector:
    """Draws, per request and in arrival order, the latency and the fault to inject."""

    def __init__(self, faults: Faults | None = None) -> None:
        self._lock = threading.Lock()
        self.faults = faults or Faults()
        self._rng = random.Random(self.faults.seed)

    def configure(self, faults: Faults) -> None:
        with self._lock:
            self.faults = faults
            self._rng = random.Random(faults.seed)

    def decide(self, service: str) -> FaultDecision:
        with self._lock:
            f = self.faults
            delay = f.latency_ms / 1000
            if f.jitter_ms:
                delay += self._rng.uniform(0, f.jitter_ms) / 1000
            draw = self._rng.random()
            if service not in f.services:
                return FaultDecision(None, delay)
            action: str | None = None
            if draw < f.rate_drop:
                action = "drop"
            elif draw < f.rate_drop + f.rate_429:
                action = "429"
            elif draw < f.rate_drop + f.rate_429 + f.rate_5xx:
                action = "5xx"
            return FaultDecision(action, delay)


class RequestLog:
    """Counts every API request (control calls excluded) and keeps the latest entries."""

    def __init__(self, limit: int = 20_000, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._entries: deque[JsonDict] = deque(maxlen=limit)
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.total = 0
            self.writes = 0
            self.write_attempts = 0
            self.by_endpoint: dict[str, int] = {}
            self.by_status: dict[str, int] = {}
            self.faults: dict[str, int] = {}

    def record(
        self,
        *,
        method: str,
        endpoint: str,
        path: str,
        query: Mapping[str, list[str]],
        status: int | None,
        sandbox: str | None,
        service: str,
        fault: str | None = None,
    ) -> None:
        write = service == "flowservice" and method in ("POST", "PATCH", "PUT", "DELETE")
        with self._lock:
            self.total += 1
            self.by_endpoint[endpoint] = self.by_endpoint.get(endpoint, 0) + 1
            key = "dropped" if status is None else str(status)
            self.by_status[key] = self.by_status.get(key, 0) + 1
            if fault:
                self.faults[fault] = self.faults.get(fault, 0) + 1
            if write:
                self.write_attempts += 1
                if status is not None and 200 <= status < 300:
                    self.writes += 1
            self._entries.append(
                {
                    "method": method,
                    "path": path,
                    "endpoint": endpoint,
                    "query": {k: list(v) for k, v in query.items()},
                    "status": status,
                    "sandbox": sandbox,
                    "fault": fault,
                    "ts": round(self._clock(), 6),
                }
            )

    def summary(self) -> JsonDict:
        """``writes`` counts Flow Service writes answered 2xx; ``write_attempts`` counts all."""
        with self._lock:
            return {
                "total": self.total,
                "writes": self.writes,
                "write_attempts": self.write_attempts,
                "by_endpoint": dict(sorted(self.by_endpoint.items())),
                "by_status": dict(sorted(self.by_status.items())),
                "faults": dict(self.faults),
                "log": list(self._entries),
            }


# --- Pinterest records ---------------------------------------------------------------------


@dataclass
class AuthorizeRequest:
    client_id: str
    redirect_uri: str
    scopes: list[str]
    state: str | None


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    user_id: str
    scopes: list[str]
    created: float
    used: bool = False


@dataclass
class PinterestToken:
    token: str
    kind: str  # "access" | "refresh"
    user_id: str
    scopes: list[str]
    expires_at: float
    issued_at: float
    revoked: bool = False
    replaced_by: str | None = None
    continuous: bool = True

    def as_json(self) -> JsonDict:
        return asdict(self)


@dataclass(frozen=True)
class Caller:
    """Who a Platform call came from, once the gateway let it through."""

    client_id: str
    sandbox: str


@dataclass
class _Listing:
    generation: int
    keys: list[tuple[Any, str]]


@dataclass
class _ImsToken:
    client_id: str
    expires_at: float


class EmulatorState:
    """The world of one scenario and every rule of the emulated services."""

    def __init__(
        self,
        scenario: str = "demo",
        *,
        clock: Callable[[], float] = time.time,
        config: Config | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.config = config or Config()
        self.injector = FaultInjector(faults)
        self.log = RequestLog(clock=clock)
        self._salt = secrets.token_hex(6)
        self._etag_counter = 0
        self._ims_tokens: dict[str, _ImsToken] = {}
        self.reset(scenario)

    # --- world ---------------------------------------------------------------------------

    def reset(self, scenario: str) -> None:
        """Rebuild the world of ``scenario``; Pinterest grants and the request log start over.

        IMS tokens, config and faults survive: they belong to the tool's session, not to the
        scenario.
        """
        with self.lock:
            world = scenarios.build(scenario, now=self.clock(), new_etag=self._next_etag)
            self._install(world)
            self.codes: dict[str, AuthCode] = {}
            self.tokens: dict[str, PinterestToken] = {}
            self.credential_owners: dict[str, str] = {}
        self.log.clear()

    def _install(self, world: World) -> None:
        self.scenario = world.scenario
        self.sandboxes = list(world.sandboxes)
        self.connection_specs = world.connection_specs
        self.objects = world.objects
        self.users = {u.id: u for u in world.users}
        self.usernames = {u.username: u for u in world.users}
        self.ad_accounts: dict[str, AdAccount] = world.ad_accounts
        self.default_user = world.default_user
        self._generation: dict[tuple[str, str], int] = {}
        self._listings: OrderedDict[tuple[Any, ...], _Listing] = OrderedDict()

    def _next_etag(self) -> str:
        # Adobe's etags are quoted strings; only their change matters, not their content.
        self._etag_counter += 1
        return f'"{self._etag_counter:08x}-0000-0200-0000-{self._salt}"'

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _store(self, sandbox: str, kind: str, obj: JsonDict, caller: Caller | None) -> JsonDict:
        etag = self._next_etag()
        obj["etag"] = etag
        if "version" in obj:
            obj["version"] = etag
        obj["updatedAt"] = self.now_ms()
        if caller is not None:
            obj["updatedBy"] = f"{caller.client_id}@AdobeID"
            obj["updatedClient"] = caller.client_id
        self.objects[sandbox][kind][obj["id"]] = obj
        self._generation[(sandbox, kind)] = self._generation.get((sandbox, kind), 0) + 1
        return obj

    # --- inspection helpers for tests ----------------------------------------------------

    def get(self, kind: str, ident: str) -> JsonDict | None:
        """The stored object (secrets in clear), or None. Do not modify it."""
        with self.lock:
            if kind == "connectionSpecs":
                return self.connection_specs.get(ident)
            sandbox = self._sandbox_of(kind, ident)
            return None if sandbox is None else self.objects[sandbox][kind][ident]

    def _sandbox_of(self, kind: str, ident: str) -> str | None:
        return next((sb for sb in self.sandboxes if ident in self.objects[sb].get(kind, {})), None)

    def find(
        self,
        kind: str,
        *,
        name: str | None = None,
        sandbox: str | None = None,
        card: str | None = None,
    ) -> list[JsonDict]:
        """Stored objects of a kind by name, sandbox and card (``legacy``/``new``)."""
        spec = {"legacy": LEGACY_SPEC_ID, "new": NEW_SPEC_ID}.get(card or "")
        with self.lock:
            if kind == "connectionSpecs":
                pool: Iterable[JsonDict] = self.connection_specs.values()
            else:
                pool = [
                    obj
                    for sb in self.sandboxes
                    if sandbox in (None, sb)
                    for obj in self.objects[sb][kind].values()
                ]
            return [
                obj
                for obj in pool
                if (name is None or obj.get("name") == name)
                and (card is None or _spec_of(obj) == spec)
            ]

    def counts(self) -> dict[str, dict[str, int]]:
        with self.lock:
            return {
                sb: {kind: len(items) for kind, items in self.objects[sb].items()}
                for sb in self.sandboxes
            }

    # --- Adobe IMS -----------------------------------------------------------------------

    def ims_token(self, form: Mapping[str, str]) -> JsonDict:
        grant = form.get("grant_type")
        client_id = form.get("client_id")
        if grant != "client_credentials":
            raise ims_error(
                400,
                "unsupported_grant_type",
                f"grant_type {grant!r} is not supported; use client_credentials",
            )
        if not client_id:
            raise ims_error(400, "invalid_request", "missing client_id parameter")
        if client_id != CLIENT_ID:
            raise ims_error(400, "invalid_client", "invalid client_id parameter")
        if form.get("client_secret") != CLIENT_SECRET:
            raise ims_error(401, "invalid_client", "invalid client_secret parameter")
        token = "emu_ims_" + secrets.token_urlsafe(24)
        with self.lock:
            self._ims_tokens[token] = _ImsToken(client_id, self.clock() + IMS_TOKEN_LIFETIME)
        return {"access_token": token, "token_type": "bearer", "expires_in": IMS_TOKEN_LIFETIME}

    def authenticate_platform(self, headers: Mapping[str, str]) -> Caller:
        """The gateway's checks, in its order; ``headers`` keys are lower case."""
        auth = headers.get("authorization", "").strip()
        if not auth:
            raise gateway_error(403, "403010", "Oauth token is missing.")
        scheme, _, token = auth.partition(" ")
        with self.lock:
            record = self._ims_tokens.get(token.strip())
            valid = record is not None and record.expires_at > self.clock()
        if scheme.lower() != "bearer" or record is None or not valid:
            raise gateway_error(401, "401013", "Oauth token is not valid")
        api_key = headers.get("x-api-key", "").strip()
        if not api_key:
            raise gateway_error(403, "403000", "Api Key is required")
        if api_key != record.client_id:
            raise gateway_error(403, "403003", "Api Key is invalid")
        org = headers.get("x-gw-ims-org-id", "").strip()
        if not org:
            raise gateway_error(400, "400003", "Missing header x-gw-ims-org-id")
        if org != ORG_ID:
            raise gateway_error(403, "403025", "Profile is not valid")
        sandbox = headers.get("x-sandbox-name", "").strip() or "prod"
        if sandbox not in self.sandboxes:
            raise gateway_error(
                403,
                "403027",
                f"Sandbox '{sandbox}' does not exist or is not accessible to this client",
            )
        return Caller(client_id=record.client_id, sandbox=sandbox)

    # --- Flow Service reads --------------------------------------------------------------

    def list_objects(self, sandbox: str, kind: str, params: Mapping[str, list[str]]) -> JsonDict:
        """A page of a Flow Service list, or ``{"count": N}`` with ``count=true``."""
        try:
            conditions = [parse_condition(p) for p in params.get("property", [])]
            order = parse_order(first(params, "orderby"))
            limit = parse_limit(first(params, "limit"), cap=self.config.page_size)
            token = first(params, "continuationToken")
            last = decode_token(token, order) if token else None
        except QueryError as exc:
            raise bad_request(str(exc), sandbox=sandbox) from None
        count = (first(params, "count") or "").lower() == "true"
        with self.lock:
            keys = self._listing(sandbox, kind, conditions, order).keys
            if count:
                return {"count": len(keys)}
            if order.descending:
                end = len(keys) if last is None else bisect.bisect_left(keys, last)
                start = max(0, end - limit)
                page = list(reversed(keys[start:end]))
                more = start > 0
            else:
                start = 0 if last is None else bisect.bisect_right(keys, last)
                page = keys[start : start + limit]
                more = start + limit < len(keys)
            store = (
                self.connection_specs
                if kind == "connectionSpecs"
                else (self.objects[sandbox][kind])
            )
            items = [store[ident] for _, ident in page]
        links: JsonDict = {}
        if more and page:
            links["next"] = {"href": _next_href(kind, params, order, page[-1], limit)}
        return {"items": [present(kind, obj) for obj in items], "_links": links}

    def _listing(
        self, sandbox: str, kind: str, conditions: list[Condition], order: Order
    ) -> _Listing:
        """Sorted keys of the matching objects, cached per query until that kind changes."""
        scope = "*" if kind == "connectionSpecs" else sandbox
        generation = self._generation.get((scope, kind), 0)
        cache_key = (scope, kind, conditions_key(conditions), order.field)
        cached = self._listings.get(cache_key)
        if cached is not None and cached.generation == generation:
            self._listings.move_to_end(cache_key)
            return cached
        pool = (
            self.connection_specs.values()
            if kind == "connectionSpecs"
            else self.objects[sandbox][kind].values()
        )
        keys = sorted(order.key(obj) for obj in pool if all(c.matches(obj) for c in conditions))
        listing = _Listing(generation, keys)
        self._listings[cache_key] = listing
        while len(self._listings) > 256:
            self._listings.popitem(last=False)
        return listing

    def get_object(self, sandbox: str, kind: str, ident: str) -> JsonDict:
        """``{"items": [obj]}``: single objects come wrapped, secrets masked."""
        with self.lock:
            obj = self._lookup(sandbox, kind, ident)
        return {"items": [present(kind, obj)]}

    def _lookup(self, sandbox: str, kind: str, ident: str) -> JsonDict:
        if kind == "connectionSpecs":
            obj = self.connection_specs.get(ident)
        else:
            obj = self.objects[sandbox][kind].get(ident)
        if obj is None:
            raise flow_error(
                404,
                f"{_NOUNS.get(kind, kind)} with id '{ident}' was not found in sandbox '{sandbox}'",
                sandbox=sandbox,
                code="FLOW-1439",
                title="Resource not found",
            )
        return obj

    # --- Flow Service writes -------------------------------------------------------------

    def patch_object(
        self, caller: Caller, kind: str, ident: str, operations: Any, if_match: str | None
    ) -> tuple[int, JsonDict | None]:
        """RFC 6902 PATCH with a required ``If-Match``; answers (status, body)."""
        sandbox = caller.sandbox
        with self.lock:
            current = self._lookup(sandbox, kind, ident)
            if not if_match:
                raise bad_request(
                    "Header If-Match is required to update this entity",
                    sandbox=sandbox,
                    details=f"{kind}/{ident}: send the etag you last read",
                )
            self._check_etag(sandbox, current, if_match)
            if not isinstance(operations, list) or not operations:
                raise bad_request(
                    "The request body must be a non-empty JSON Patch array", sandbox=sandbox
                )
            for operation in operations:
                self._check_writable(sandbox, kind, operation)
            try:
                updated = apply_patch(current, operations)
            except PatchError as exc:
                raise bad_request(f"Invalid patch: {exc}", sandbox=sandbox) from None
            self._validate(sandbox, kind, updated)
            if kind == "flows":
                now = self.now_ms()
                updated["lastOperation"] = {
                    "started": now,
                    "updated": now,
                    "percentCompleted": 100,
                    "status": {"value": "completed", "properties": None, "errors": []},
                    "ops": copy.deepcopy(operations),
                    "operation": "update",
                }
            if kind == "connections":
                self._note_credentials(updated)
            stored = self._store(sandbox, kind, updated, caller)
            if self.config.patch_status == 202:
                return 202, None
            return 200, {"id": stored["id"], "etag": stored["etag"]}

    def _check_etag(self, sandbox: str, current: JsonDict, if_match: str | None) -> None:
        if if_match is None or if_match.strip() == "*":
            return
        if if_match.strip() != current["etag"]:
            raise flow_error(
                412,
                f"Supplied version=[{if_match.strip()}] does not match the current version on "
                f"entity=[{current['etag']}]",
                sandbox=sandbox,
                code="FLOW-1010",
                title="Precondition failed",
            )

    def _check_writable(self, sandbox: str, kind: str, operation: Any) -> None:
        if not isinstance(operation, dict):
            raise bad_request("Invalid patch: every operation must be an object", sandbox=sandbox)
        for key in ("path", "from"):
            pointer = operation.get(key)
            if pointer is None and key == "from":
                continue
            try:
                tokens = parse_pointer(pointer)
            except PatchError as exc:
                raise bad_request(f"Invalid patch: {exc}", sandbox=sandbox) from None
            head = tokens[0] if tokens else ""
            if not tokens or head in READ_ONLY or (kind == "flows" and head == "state"):
                what = (
                    "use POST /flows/{id}/action?op=enable|disable"
                    if head == "state"
                    else "it is managed by Flow Service"
                )
                raise bad_request(
                    f"Invalid patch: path {pointer!r} cannot be changed ({what})",
                    sandbox=sandbox,
                )

    def _validate(self, sandbox: str, kind: str, updated: JsonDict) -> None:
        if not isinstance(updated.get("name"), str) or not updated["name"].strip():
            raise bad_request("Invalid patch: name must be a non-empty string", sandbox=sandbox)
        if kind == "flows":
            self._validate_flow(sandbox, updated)
        elif kind == "connections" and _spec_of(updated) in PINTEREST_SPECS:
            auth = updated.get("auth")
            params = auth.get("params") if isinstance(auth, dict) else None
            if not isinstance(params, dict):
                raise bad_request("Invalid patch: auth.params must be an object", sandbox=sandbox)
            expires = params.get("expiresAt")
            if expires is not None:
                try:
                    parse_iso(str(expires))
                except ValueError:
                    raise bad_request(
                        f"Invalid patch: auth.params.expiresAt {expires!r} is not ISO-8601",
                        sandbox=sandbox,
                    ) from None
            for key in ("accessToken", "refreshToken"):
                if key in params and (not isinstance(params[key], str) or not params[key]):
                    raise bad_request(
                        f"Invalid patch: auth.params.{key} must be a string", sandbox=sandbox
                    )

    def _validate_flow(self, sandbox: str, updated: JsonDict) -> None:
        """Each audience once, each selector with a type and an id (what the UI enforces)."""
        transformations = updated.get("transformations")
        if not isinstance(transformations, list):
            raise bad_request("Invalid patch: transformations must be an array", sandbox=sandbox)
        seen: set[str] = set()
        for transformation in transformations:
            params = transformation.get("params") if isinstance(transformation, dict) else None
            selectors = params.get("segmentSelectors") if isinstance(params, dict) else None
            if selectors is None:
                continue
            items = selectors.get("selectors") if isinstance(selectors, dict) else None
            if not isinstance(items, list):
                raise bad_request(
                    "Invalid patch: segmentSelectors.selectors must be an array", sandbox=sandbox
                )
            for item in items:
                audience = _audience_id(item)
                if audience is None:
                    raise bad_request(
                        "Invalid patch: a segment selector needs a type and value.id",
                        sandbox=sandbox,
                    )
                if audience in seen:
                    raise bad_request(
                        f"Invalid patch: audience {audience} is already mapped to this dataflow",
                        sandbox=sandbox,
                    )
                seen.add(audience)

    def _note_credentials(self, connection: JsonDict) -> None:
        """Remember which emulated Pinterest user the stored access token belongs to."""
        params = (connection.get("auth") or {}).get("params") or {}
        token = self.tokens.get(str(params.get("accessToken", "")))
        if token is not None and token.kind == "access":
            self.credential_owners[connection["id"]] = token.user_id
        else:
            self.credential_owners.pop(connection["id"], None)

    def flow_action(
        self, caller: Caller, ident: str, op: str | None, if_match: str | None
    ) -> JsonDict:
        """``POST /flows/{id}/action?op=enable|disable`` (either case); If-Match optional."""
        sandbox = caller.sandbox
        action = (op or "").lower()
        if action not in ("enable", "disable"):
            raise bad_request(f"Invalid op {op!r}: use enable or disable", sandbox=sandbox)
        with self.lock:
            current = self._lookup(sandbox, "flows", ident)
            self._check_etag(sandbox, current, if_match)
            target = "enabled" if action == "enable" else "disabled"
            if current.get("state") == target:
                return {"id": ident, "etag": current["etag"]}
            updated = dict(current)
            updated["state"] = target
            now = self.now_ms()
            updated["lastOperation"] = {
                "started": now,
                "updated": now,
                "percentCompleted": 100,
                "status": {"value": "completed", "properties": None, "errors": []},
                "ops": [],
                "operation": action,
            }
            if action == "enable":
                updated["lastRunDetails"] = self._start_run(sandbox, updated, caller)
            stored = self._store(sandbox, "flows", updated, caller)
            return {"id": ident, "etag": stored["etag"]}

    def _start_run(self, sandbox: str, flow: JsonDict, caller: Caller) -> JsonDict:
        """Record the run an enable triggers; it completes at once, so tests stay deterministic.

        A Pinterest flow whose account has no live credentials fails, as the real one would.
        """
        runs = self.objects[sandbox]["runs"]
        run_id = emu_id(sandbox, "run", flow["id"], str(len(runs) + 1), self._salt)
        problem = self._credential_problem(sandbox, flow)
        ok_status = self.config.run_status
        status = (
            ok_status if problem is None else ("Failed" if ok_status[:1].isupper() else "failed")
        )
        errors = [] if problem is None else [{"code": "PINTEREST-401", "message": problem}]
        now = self.now_ms()
        run = scenarios.make_run(
            sandbox=sandbox,
            flow_id=flow["id"],
            run_id=run_id,
            started_ms=now,
            status=status,
            errors=errors,
            etag=self._next_etag(),
        )
        run["createdBy"] = run["updatedBy"] = f"{caller.client_id}@AdobeID"
        self._store(sandbox, "runs", run, caller)
        return {
            "id": run_id,
            "state": "success" if problem is None else "failed",
            "startedAtUTC": now,
            "completedAtUTC": now + 5000,
        }

    def _credential_problem(self, sandbox: str, flow: JsonDict) -> str | None:
        targets = (flow.get("inheritedAttributes") or {}).get("targetConnections") or []
        if not targets or _spec_of(flow) not in PINTEREST_SPECS:
            return None
        account_id = (targets[0].get("baseConnection") or {}).get("id")
        account = self.objects[sandbox]["connections"].get(str(account_id))
        params = ((account or {}).get("auth") or {}).get("params") or {}
        if not params.get("accessToken") or not params.get("expiresAt"):
            return "The account has no Pinterest credentials: reconnect it"
        try:
            expired = parse_iso(str(params["expiresAt"])) <= self.clock()
        except ValueError:
            expired = True
        return "The account's Pinterest credentials expired: reconnect it" if expired else None

    # --- control API ---------------------------------------------------------------------

    def set_config(self, changes: Mapping[str, Any]) -> JsonDict:
        known = {f.name for f in fields(Config)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; known: {sorted(known)}")
        with self.lock:
            updated = replace(self.config, **dict(changes))
            if not isinstance(updated.page_size, int) or not 1 <= updated.page_size <= 1000:
                raise ValueError("page_size must be an integer between 1 and 1000")
            if not isinstance(updated.auto_approve, bool):
                raise ValueError("auto_approve must be true or false")
            if updated.auto_approve_user not in self.usernames:
                raise ValueError(f"auto_approve_user must be one of {sorted(self.usernames)}")
            if updated.patch_status not in (200, 202):
                raise ValueError("patch_status must be 200 or 202")
            if updated.scope_separator not in (" ", ","):
                raise ValueError("scope_separator must be ' ' or ','")
            if updated.extra_scope is not None and not set(
                _split_scopes(updated.extra_scope)
            ) <= set(PINTEREST_SCOPES):
                raise ValueError(f"extra_scope {updated.extra_scope!r} is not a Pinterest scope")
            if not isinstance(updated.run_status, str) or not updated.run_status:
                raise ValueError("run_status must be a non-empty string")
            self.config = updated
            return asdict(updated)

    def set_faults(self, faults: Faults) -> JsonDict:
        self.injector.configure(faults)
        return faults.as_json()

    def change_object(self, kind: str, ident: str, changes: Any) -> JsonDict:
        """Merge ``changes`` into an object behind the tool's back (bumps its etag)."""
        if kind not in MUTABLE_KINDS:
            raise Problem(400, {"error": f"kind must be one of {', '.join(MUTABLE_KINDS)}"})
        if not isinstance(changes, dict) or not changes:
            raise Problem(400, {"error": "body must be a non-empty JSON object to merge"})
        if {"id", "etag", "version"} & set(changes):
            raise Problem(400, {"error": "id, etag and version cannot be changed"})
        with self.lock:
            sandbox = self._sandbox_of(kind, ident)
            if sandbox is None:
                raise Problem(404, {"error": f"no {kind} object with id {ident}"})
            updated = merge_patch(self.objects[sandbox][kind][ident], changes)
            if kind == "connections":
                self._note_credentials(updated)
            stored = self._store(sandbox, kind, updated, None)
            return {"id": ident, "sandbox": sandbox, "etag": stored["etag"]}

    def dump(self, *, summary: bool = False) -> JsonDict:
        """Everything, secrets included (a test-only endpoint), or only the counts."""
        with self.lock:
            head: JsonDict = {
                "scenario": self.scenario,
                "clock": self.clock(),
                "org_id": ORG_ID,
                "sandboxes": list(self.sandboxes),
                "counts": self.counts(),
                "config": asdict(self.config),
                "faults": self.injector.faults.as_json(),
            }
            if summary:
                return head
            head["connectionSpecs"] = list(self.connection_specs.values())
            head["objects"] = {
                sb: {kind: list(items.values()) for kind, items in self.objects[sb].items()}
                for sb in self.sandboxes
            }
            head["pinterest"] = {
                "app_id": PINTEREST_APP_ID,
                "app_name": PINTEREST_APP_NAME,
                "users": [
                    {
                        **u.account(),
                        "ad_accounts": [
                            self.ad_accounts[a].as_json(u.id) for a in u.ad_account_ids
                        ],
                    }
                    for u in self.users.values()
                ],
                "credential_owners": dict(self.credential_owners),
            }
            head["secrets"] = {
                "warning": "test-only control endpoint: tokens and codes below are in clear",
                "ims_tokens": [
                    {"token": t, "client_id": r.client_id, "expires_at": r.expires_at}
                    for t, r in self._ims_tokens.items()
                ],
                "pinterest_tokens": [t.as_json() for t in self.tokens.values()],
                "pinterest_codes": [asdict(c) for c in self.codes.values()],
            }
            return head

    # --- Pinterest OAuth -----------------------------------------------------------------

    def check_authorize(self, params: Mapping[str, str]) -> AuthorizeRequest:
        """Validate ``GET /oauth/`` parameters; ConsentError says what is wrong."""
        client_id = params.get("client_id") or params.get("consumer_id") or ""
        if not client_id:
            raise ConsentError("The request names no app (client_id).")
        if client_id != PINTEREST_APP_ID:
            raise ConsentError(f"Unknown app {client_id!r}: no app with this id is registered.")
        if params.get("response_type") != "code":
            raise ConsentError("response_type must be 'code'.")
        redirect_uri = params.get("redirect_uri", "")
        parts = urlsplit(redirect_uri)
        if parts.scheme not in ("http", "https") or not is_loopback_host(parts.hostname):
            raise ConsentError(
                f"The redirect URI {redirect_uri!r} is not registered for this app "
                "(the emulator registers every loopback http:// URI)."
            )
        scopes = _split_scopes(params.get("scope", ""))
        if not scopes:
            raise ConsentError("The request asks for no scope.")
        unknown = [s for s in scopes if s not in PINTEREST_SCOPES]
        if unknown:
            raise ConsentError(f"Unknown scope(s): {', '.join(unknown)}.")
        return AuthorizeRequest(client_id, redirect_uri, scopes, params.get("state"))

    def user_by_name(self, name: str) -> PinterestUser | None:
        with self.lock:
            return self.usernames.get(name) or self.users.get(name)

    def approve(self, request: AuthorizeRequest, username: str | None = None) -> str:
        """The redirect URL carrying a fresh single-use code for ``username``."""
        user = self.user_by_name(username or self.config.auto_approve_user)
        if user is None:
            raise ConsentError(f"Unknown user {username!r}.")
        code = secrets.token_hex(20)
        with self.lock:
            self.codes[code] = AuthCode(
                code,
                request.client_id,
                request.redirect_uri,
                user.id,
                list(request.scopes),
                self.clock(),
            )
        return _with_query(request.redirect_uri, {"code": code, "state": request.state})

    def deny(self, request: AuthorizeRequest) -> str:
        return _with_query(request.redirect_uri, {"error": "access_denied", "state": request.state})

    def token_endpoint(self, authorization: str | None, form: Mapping[str, str]) -> JsonDict:
        """``POST /v5/oauth/token``: Basic client auth, then the code or refresh grant."""
        if _basic_credentials(authorization) != (PINTEREST_APP_ID, PINTEREST_APP_SECRET):
            raise pinterest_error(401, 2, "Authentication failed.")
        grant = form.get("grant_type")
        with self.lock:
            if grant == "authorization_code":
                return self._exchange_code(form)
            if grant == "refresh_token":
                return self._refresh(form)
        raise pinterest_error(
            400, 1, f"Invalid grant_type {grant!r}: use authorization_code or refresh_token."
        )

    def _exchange_code(self, form: Mapping[str, str]) -> JsonDict:
        code = self.codes.get(form.get("code", ""))
        if code is None:
            raise pinterest_error(400, 1, "Invalid authorization code.")
        if code.used:
            raise pinterest_error(400, 1, "Authorization code has already been used.")
        if self.clock() - code.created > CODE_LIFETIME:
            raise pinterest_error(400, 1, "Authorization code has expired.")
        if form.get("redirect_uri") != code.redirect_uri:
            raise pinterest_error(
                400, 1, "redirect_uri does not match the one of the authorization request."
            )
        code.used = True
        continuous = (form.get("continuous_refresh") or "").lower() == "true"
        return self._issue(code.user_id, code.scopes, "authorization_code", continuous=continuous)

    def _refresh(self, form: Mapping[str, str]) -> JsonDict:
        record = self.tokens.get(form.get("refresh_token", ""))
        if (
            record is None
            or record.kind != "refresh"
            or record.revoked
            or record.expires_at <= self.clock()
        ):
            raise pinterest_error(
                401,
                2,
                "Authentication failed. The refresh token is invalid, expired or was replaced "
                "by a newer one.",
            )
        result = self._issue(record.user_id, record.scopes, "refresh_token", continuous=True)
        # Continuous refresh: the old refresh token dies the moment a new one is issued.
        record.revoked = True
        record.replaced_by = result["refresh_token"]
        return result

    def _issue(
        self,
        user_id: str,
        scopes: list[str],
        response_type: str,
        *,
        continuous: bool,
        access_lifetime: int = PINTEREST_ACCESS_LIFETIME,
        refresh_lifetime: int = PINTEREST_REFRESH_LIFETIME,
    ) -> JsonDict:
        now = self.clock()
        granted = list(scopes)
        for extra in _split_scopes(self.config.extra_scope or ""):
            if extra not in granted:
                granted.append(extra)
        access = PinterestToken(
            "pina_" + secrets.token_urlsafe(32),
            "access",
            user_id,
            granted,
            now + access_lifetime,
            now,
        )
        refresh = PinterestToken(
            "pinr_" + secrets.token_urlsafe(32),
            "refresh",
            user_id,
            granted,
            now + refresh_lifetime,
            now,
            continuous=continuous,
        )
        self.tokens[access.token] = access
        self.tokens[refresh.token] = refresh
        return {
            "access_token": access.token,
            "refresh_token": refresh.token,
            "response_type": response_type,
            "token_type": "bearer",
            "expires_in": access_lifetime,
            "refresh_token_expires_in": refresh_lifetime,
            "refresh_token_expires_at": int(now + refresh_lifetime),
            "scope": self.config.scope_separator.join(granted),
        }

    def mint_tokens(self, request: Mapping[str, Any]) -> JsonDict:
        """Tokens for a user without the browser (``POST /_emulator/tokens``), for CI paths."""
        unknown = set(request) - {"user", "scope", "expires_in", "refresh_token_expires_in"}
        if unknown:
            raise Problem(400, {"error": f"unknown fields {sorted(unknown)}"})
        name = str(request.get("user") or self.config.auto_approve_user)
        user = self.user_by_name(name)
        if user is None:
            raise Problem(400, {"error": f"unknown user {name!r}; known: {sorted(self.usernames)}"})
        scope = request.get("scope") or "ads:read,ads:write,user_accounts:read"
        scopes = _split_scopes(" ".join(scope) if isinstance(scope, list) else str(scope))
        try:
            access = int(request.get("expires_in") or PINTEREST_ACCESS_LIFETIME)
            refresh = int(request.get("refresh_token_expires_in") or PINTEREST_REFRESH_LIFETIME)
        except (TypeError, ValueError):
            raise Problem(400, {"error": "expires_in values must be integers"}) from None
        with self.lock:
            return self._issue(
                user.id,
                scopes,
                "authorization_code",
                continuous=True,
                access_lifetime=access,
                refresh_lifetime=refresh,
            )

    # --- Pinterest API -------------------------------------------------------------------

    def _bearer(self, authorization: str | None, scope: str) -> PinterestUser:
        scheme, _, token = (authorization or "").strip().partition(" ")
        with self.lock:
            record = self.tokens.get(token.strip())
            if (
                scheme.lower() != "bearer"
                or record is None
                or record.kind != "access"
                or record.revoked
                or record.expires_at <= self.clock()
            ):
                raise pinterest_error(401, 2, "Authentication failed.")
            if scope not in record.scopes:
                raise pinterest_error(403, 3, f"Not authorized: the token lacks scope {scope}.")
            return self.users[record.user_id]

    def user_account(self, authorization: str | None) -> JsonDict:
        return self._bearer(authorization, "user_accounts:read").account()

    def list_ad_accounts(
        self, authorization: str | None, params: Mapping[str, list[str]]
    ) -> JsonDict:
        user = self._bearer(authorization, "ads:read")
        raw_size = first(params, "page_size")
        try:
            size = int(raw_size) if raw_size is not None else 25
        except ValueError:
            size = 0
        if not 1 <= size <= 250:
            raise pinterest_error(400, 1, f"Invalid page_size {raw_size!r}: use 1 to 250.")
        offset = 0
        bookmark = first(params, "bookmark")
        if bookmark:
            try:
                offset = int(base64.urlsafe_b64decode(bookmark + "=" * (-len(bookmark) % 4)))
            except (ValueError, binascii.Error):
                offset = -1
            if offset < 0:
                raise pinterest_error(400, 1, "Invalid bookmark.")
        shared = (first(params, "include_shared_accounts") or "true").lower() != "false"
        with self.lock:
            accounts = [
                self.ad_accounts[a].as_json(user.id)
                for a in user.ad_account_ids
                if shared or self.ad_accounts[a].owner_id == user.id
            ]
        page = accounts[offset : offset + size]
        more = offset + size < len(accounts)
        next_bookmark = (
            base64.urlsafe_b64encode(str(offset + size).encode()).decode().rstrip("=")
            if more
            else None
        )
        return {"items": page, "bookmark": next_bookmark}


# --- helpers --------------------------------------------------------------------------------


def present(kind: str, obj: JsonDict) -> JsonDict:
    """An object as reads show it: credentials masked, expiry in clear."""
    if kind != "connections":
        return obj
    auth = obj.get("auth")
    if not isinstance(auth, dict):
        return obj
    params = auth.get("params")
    if not isinstance(params, dict) or not SECRET_PARAM_KEYS & set(params):
        return obj
    masked = {k: (MASK if k in SECRET_PARAM_KEYS else v) for k, v in params.items()}
    return {**obj, "auth": {**auth, "params": masked}}


def _audience_id(selector: Any) -> str | None:
    """``value.id`` of a well-formed segment selector, else None."""
    if not isinstance(selector, dict) or not isinstance(selector.get("type"), str):
        return None
    value = selector.get("value")
    audience = value.get("id") if isinstance(value, dict) else None
    return audience if isinstance(audience, str) and audience else None


def _spec_of(obj: JsonDict) -> str | None:
    spec = obj.get("connectionSpec")
    if isinstance(spec, dict):
        return spec.get("id")
    targets = (obj.get("inheritedAttributes") or {}).get("targetConnections") or []
    if targets and isinstance(targets[0], dict):
        return (targets[0].get("connectionSpec") or {}).get("id")
    return None


def _next_href(
    kind: str, params: Mapping[str, list[str]], order: Order, last: tuple[Any, str], limit: int
) -> str:
    pairs: list[tuple[str, str]] = [
        ("continuationToken", encode_token(order, last)),
        ("limit", str(limit)),
    ]
    for name, values in params.items():
        if name not in ("continuationToken", "limit", "count"):
            pairs.extend((name, v) for v in values)
    return f"/{kind}?" + urlencode(pairs, quote_via=quote, safe="=,[]:@")


def _split_scopes(text: str) -> list[str]:
    return [s for s in text.replace(",", " ").split() if s]


def _with_query(url: str, extra: Mapping[str, str | None]) -> str:
    parts = urlsplit(url)
    added = urlencode({k: v for k, v in extra.items() if v is not None})
    query = f"{parts.query}&{added}" if parts.query else added
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    scheme, _, encoded = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, binascii.Error):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None
