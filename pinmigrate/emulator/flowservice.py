"""Adobe Flow Service: flows, connections, target connections, runs and connection specs.

:class:`FlowStore` holds the objects of every sandbox and answers reads (filtered, sorted,
paged lists and wrapped single GETs); :class:`FlowService` applies writes (JSON Patch with
``If-Match``, enable/disable actions and the runs they start) under Flow Service's rules.
Stored objects are replaced, never changed in place, so a value handed out stays consistent.
"""

from __future__ import annotations

import bisect
import copy
import heapq
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pinmigrate.emulator import scenarios
from pinmigrate.emulator.context import Context
from pinmigrate.emulator.ims import Caller
from pinmigrate.emulator.jsonpatch import PatchError, apply_patch, merge_patch, parse_pointer
from pinmigrate.emulator.model import (
    CREATED_CLIENT,
    LEGACY_SPEC_ID,
    MASK,
    MUTABLE_KINDS,
    NEW_SPEC_ID,
    PINTEREST_ACCESS_LIFETIME,
    SECRET_PARAM_KEYS,
    JsonDict,
    World,
    credential_timing,
    emu_id,
    parse_iso,
)
from pinmigrate.emulator.problems import Problem, bad_request, flow_error
from pinmigrate.emulator.query import (
    Condition,
    Order,
    QueryError,
    check_names,
    conditions_key,
    encode_token,
    parse_list_query,
)
from pinmigrate.models import credential_expiry

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
#: The query parameters each list documents (flow-service.yaml in AdobeDocs/
#: experience-platform-apis, static/swagger-specs: ``/connectionSpecs`` takes ``property``
#: only; the other lists take the five below).
LIST_PARAMS: dict[str, frozenset[str]] = {
    "connectionSpecs": frozenset({"property"}),
    "*": frozenset({"property", "limit", "orderby", "continuationToken", "count"}),
}
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
#: The error code of a run failed by ``Config.run_failures``: the code of Adobe's run example
#: (help/dataflows/api/monitor.md).
RUN_FAILURE_CODE = "CONNECTOR-2001-500"
_NOUNS = {
    "flows": "Flow",
    "connections": "Connection",
    "targetConnections": "Target connection",
    "sourceConnections": "Source connection",
    "runs": "Run",
    "connectionSpecs": "Connection spec",
}


@dataclass
class PendingWrite:
    """A flow write accepted under ``Config.write_delay``, applied at ``due``."""

    sandbox: str
    ident: str
    #: "update" (a PATCH), "enable" or "disable"
    operation: str
    ops: list[Any]
    caller: Caller
    due: float
    accepted: float


@dataclass
class _Listing:
    generation: int
    keys: list[tuple[Any, str]]


class FlowStore:
    """The Flow Service objects of every sandbox, and the reads over them."""

    def __init__(self, context: Context) -> None:
        self.context = context
        #: Called (under the lock) before every read: applies flow writes whose time has come.
        self.before_read: Callable[[], None] = lambda: None
        self.install(World(scenario="", sandboxes=[]))

    def install(self, world: World) -> None:
        """Take the objects of ``world`` (it is not copied)."""
        with self.context.lock:
            self.scenario = world.scenario
            self.sandboxes = list(world.sandboxes)
            self.connection_specs = world.connection_specs
            self.objects = world.objects
            self.expiry_shape = world.expiry_shape
            self.next_mode = (
                scenarios.next_mode_of(world.scenario) if world.scenario else "position"
            )
            self._generation: dict[tuple[str, str], int] = {}
            self._listings: OrderedDict[tuple[Any, ...], _Listing] = OrderedDict()
            #: runs an enable started that reads do not show yet, in the order they are due:
            #: (due ms, sequence, sandbox, run); see :meth:`schedule_run`
            self._due: list[tuple[int, int, str, JsonDict]] = []
            self._due_seq = 0

    def schedule_run(self, sandbox: str, stages: list[tuple[int, JsonDict]]) -> None:
        """Show each version of a run from its time on (epoch ms): a run that appears late,
        reads as in progress, then ends. Reads reveal what is due (:meth:`reveal_due`)."""
        with self.context.lock:
            for due, run in stages:
                self._due_seq += 1
                heapq.heappush(self._due, (due, self._due_seq, sandbox, run))
            self.reveal_due()

    def catch_up(self) -> None:
        """Before a read: land the flow writes whose time has come, then show due runs."""
        self.before_read()
        self.reveal_due()

    def reveal_due(self) -> None:
        """Store every scheduled run version whose time has come, and note it on its flow.

        The flow's ``lastRunDetails`` follows its run without a new etag: a run is not a
        write to the flow, and must not make the tool's ``If-Match`` stale."""
        with self.context.lock:
            now = self.context.now_ms()
            while self._due and self._due[0][0] <= now:
                due, _, sandbox, run = heapq.heappop(self._due)
                self.store(sandbox, "runs", dict(run), None, updated_ms=due)
                flows = self.objects[sandbox]["flows"]
                flow = flows.get(run["flowId"])
                if flow is not None:
                    flows[flow["id"]] = {**flow, "lastRunDetails": run_details(run)}

    def store(
        self,
        sandbox: str,
        kind: str,
        obj: JsonDict,
        caller: Caller | None,
        *,
        updated_ms: int | None = None,
    ) -> JsonDict:
        """Save ``obj`` as a new version: a fresh etag, who changed it, and stale listings."""
        etag = self.context.next_etag()
        obj["etag"] = etag
        if "version" in obj:
            obj["version"] = etag
        obj["updatedAt"] = self.context.now_ms() if updated_ms is None else updated_ms
        if caller is not None:
            obj["updatedBy"] = f"{caller.client_id}@AdobeID"
            obj["updatedClient"] = caller.client_id
        self.objects[sandbox][kind][obj["id"]] = obj
        self._generation[(sandbox, kind)] = self._generation.get((sandbox, kind), 0) + 1
        return obj

    # --- inspection helpers for tests ----------------------------------------------------

    def get(self, kind: str, ident: str) -> JsonDict | None:
        """The stored object (secrets in clear), or None. Do not modify it."""
        with self.context.lock:
            self.catch_up()
            if kind == "connectionSpecs":
                return self.connection_specs.get(ident)
            sandbox = self.sandbox_of(kind, ident)
            return None if sandbox is None else self.objects[sandbox][kind][ident]

    def sandbox_of(self, kind: str, ident: str) -> str | None:
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
        with self.context.lock:
            self.catch_up()
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
        with self.context.lock:
            self.catch_up()
            return {
                sb: {kind: len(items) for kind, items in self.objects[sb].items()}
                for sb in self.sandboxes
            }

    # --- Adobe IMS -----------------------------------------------------------------------

    def list_objects(self, sandbox: str, kind: str, params: Mapping[str, list[str]]) -> JsonDict:
        """A page of a Flow Service list, or ``{"count": N}`` with ``count=true``.

        Next links carry the token alone (``/flows?continuationToken=...``), as Adobe's only
        published example does; what the token holds depends on the scenario's mode.
        """
        config = self.context.config
        query_mode = self.next_mode == "query"
        try:
            if config.strict_queries:
                check_names(params, LIST_PARAMS.get(kind, LIST_PARAMS["*"]))
            query = parse_list_query(params, query_mode=query_mode, over_max=config.limit_over_max)
        except QueryError as exc:
            raise bad_request(str(exc), sandbox=sandbox) from None
        order, last = query.order, query.after
        with self.context.lock:
            self.catch_up()
            keys = self._listing(sandbox, kind, list(query.conditions), order).keys
            if query.count:
                return {"count": len(keys)}
            # Connection specs come in one page: their list documents no limit and no token.
            limit = (
                max(1, len(keys))
                if kind == "connectionSpecs"
                else min(query.limit or config.page_size, config.page_size)
            )
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
            try:
                token = encode_token(query.cursor(page[-1], query_mode=query_mode))
            except QueryError as exc:
                raise bad_request(str(exc), sandbox=sandbox) from None
            links["next"] = {"href": f"/{kind}?continuationToken={token}"}
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
        with self.context.lock:
            self.catch_up()
            obj = self.lookup(sandbox, kind, ident)
        return {"items": [present(kind, obj)]}

    def lookup(self, sandbox: str, kind: str, ident: str) -> JsonDict:
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


class FlowService:
    """Flow Service writes: PATCH, enable/disable and the runs an enable starts."""

    def __init__(self, store: FlowStore, token_owner: Callable[[str], str | None]) -> None:
        self.store = store
        self.context = store.context
        #: which Pinterest user issued the access token a connection stores
        self._token_owner = token_owner
        self.credential_owners: dict[str, str] = {}
        #: flow writes accepted but not yet applied (``Config.write_delay``), oldest first
        self.pending: list[PendingWrite] = []
        #: ``+strict``: a no-op enable/disable answers 400 1409-400 instead of 200
        self.strict = False
        store.before_read = self.apply_due
        self._runs_started = 0

    def install(self, world: World) -> None:
        """Take the objects of ``world``; no connection has known credentials yet."""
        with self.context.lock:
            self.store.install(world)
            self.credential_owners = {}
            self.pending = []
            self.strict = (
                "strict" in scenarios.options_of(world.scenario) if world.scenario else False
            )

    def patch_object(
        self, caller: Caller, kind: str, ident: str, operations: Any, if_match: str | None
    ) -> tuple[int, JsonDict | None]:
        """RFC 6902 PATCH with a required ``If-Match``; answers (status, body)."""
        sandbox = caller.sandbox
        with self.context.lock:
            self.apply_due()
            current = self.store.lookup(sandbox, kind, ident)
            if not if_match:
                raise bad_request(
                    "Header If-Match is required to update this entity",
                    sandbox=sandbox,
                    details=f"{kind}/{ident}: send the etag you last read",
                )
            check_etag(sandbox, current, if_match)
            if not isinstance(operations, list) or not operations:
                raise bad_request(
                    "The request body must be a non-empty JSON Patch array", sandbox=sandbox
                )
            for operation in operations:
                check_writable(sandbox, kind, operation)
            # Judged against the flow as its queued writes will leave it.
            base = self._projected(sandbox, ident) if kind == "flows" else current
            try:
                updated = apply_patch(base, operations)
            except PatchError as exc:
                raise bad_request(f"Invalid patch: {exc}", sandbox=sandbox) from None
            validate(sandbox, kind, updated)
            if kind == "flows" and self._delayed(sandbox, ident):
                stored = self._queue(caller, current, "update", operations)
                return self._patch_answer(stored)
            if kind == "flows":
                updated["lastOperation"] = self._last_operation("update", operations)
            if kind == "connections":
                self._note_credentials(updated)
            stored = self.store.store(sandbox, kind, updated, caller)
            return self._patch_answer(stored)

    def _patch_answer(self, stored: JsonDict) -> tuple[int, JsonDict | None]:
        if self.context.config.patch_status == 202:
            return 202, None
        return 200, {"id": stored["id"], "etag": stored["etag"]}

    def _last_operation(self, operation: str, ops: list[Any]) -> JsonDict:
        """The ``lastOperation`` of a flow a write has just completed."""
        now = self.context.now_ms()
        return {
            "started": now,
            "updated": now,
            "percentCompleted": 100,
            "status": {"value": "completed", "properties": None, "errors": []},
            "ops": copy.deepcopy(ops),
            "operation": operation,
        }

    def _note_credentials(self, connection: JsonDict) -> None:
        """Remember which emulated Pinterest user the stored access token belongs to."""
        params = (connection.get("auth") or {}).get("params") or {}
        owner = self._token_owner(str(params.get("accessToken", "")))
        if owner is not None:
            self.credential_owners[connection["id"]] = owner
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
        with self.context.lock:
            self.apply_due()
            current = self.store.lookup(sandbox, "flows", ident)
            check_etag(sandbox, current, if_match)
            target = "enabled" if action == "enable" else "disabled"
            state = self._projected(sandbox, ident).get("state")
            if state == target:
                if self.strict:
                    # Flow Service's catalogue (AdobeDocs/experience-platform.en
                    # help/sources/errors.md); whether destinations answer it is unconfirmed.
                    raise flow_error(
                        400,
                        f"The operation {action} cannot be applied on the current state "
                        f"{state}. Please update the operation and try again.",
                        sandbox=sandbox,
                        code="FLOW-1409",
                        title="Invalid request",
                    )
                return {"id": ident, "etag": current["etag"]}
            if self._delayed(sandbox, ident):
                stored = self._queue(caller, current, action, [])
                return {"id": ident, "etag": stored["etag"]}
            updated = dict(current)
            updated["state"] = target
            updated["lastOperation"] = self._last_operation(action, [])
            if action == "enable":
                self._note_run(updated, self._start_run(sandbox, updated, caller))
            stored = self.store.store(sandbox, "flows", updated, caller)
            return {"id": ident, "etag": stored["etag"]}

    # --- asynchronous flow writes (Config.write_delay) ------------------------------------

    def _delayed(self, sandbox: str, ident: str) -> bool:
        """A write to this flow is queued: writes are delayed, or one is already queued."""
        return self.context.config.write_delay > 0 or any(
            (p.sandbox, p.ident) == (sandbox, ident) for p in self.pending
        )

    def _queue(self, caller: Caller, current: JsonDict, operation: str, ops: list[Any]) -> JsonDict:
        """Accept a flow write to apply after ``write_delay``, after any already queued for
        the flow; meanwhile the flow reads as before, its ``lastOperation`` in progress."""
        sandbox, ident = caller.sandbox, current["id"]
        now = self.context.clock()
        queued = [p.due for p in self.pending if (p.sandbox, p.ident) == (sandbox, ident)]
        due = max([now, *queued]) + self.context.config.write_delay
        write = PendingWrite(sandbox, ident, operation, copy.deepcopy(ops), caller, due, now)
        self.pending.append(write)
        marked = {**current, "lastOperation": self._operation_started(write)}
        if not queued:
            return self.store.store(sandbox, "flows", marked, caller)
        return current

    def _operation_started(self, write: PendingWrite) -> JsonDict:
        started = int(write.accepted * 1000)
        return {
            "started": started,
            "updated": started,
            "percentCompleted": 0,
            "status": {"value": "inProgress", "properties": None, "errors": []},
            "ops": copy.deepcopy(write.ops),
            "operation": write.operation,
        }

    def _projected(self, sandbox: str, ident: str) -> JsonDict:
        """The flow as the writes queued for it will leave it (validated when accepted)."""
        flow = self.store.lookup(sandbox, "flows", ident)
        for write in self.pending:
            if (write.sandbox, write.ident) != (sandbox, ident):
                continue
            if write.operation == "update":
                try:
                    flow = apply_patch(flow, write.ops)
                except PatchError:
                    continue
            else:
                flow = {**flow, "state": "enabled" if write.operation == "enable" else "disabled"}
        return flow

    def apply_due(self) -> None:
        """Apply the queued flow writes whose time has come, in the order they were accepted."""
        if not self.pending:
            return
        with self.context.lock:
            now = self.context.clock()
            # Earliest first; a flow's own writes keep their order (they are due in turn).
            self.pending.sort(key=lambda p: p.due)
            while self.pending and self.pending[0].due <= now:
                self._land(self.pending.pop(0))

    def _land(self, write: PendingWrite) -> None:
        """Apply one queued write: the change and a completed ``lastOperation``, or a failed
        one (``write_error``, or a change no longer valid) that changes nothing else.

        It lands at its due time, not at the read that brings it in: ``updatedAt``,
        ``lastOperation.updated`` and the start of the run an enable triggers all follow
        ``write.due``, however long after it the next read comes."""
        landed = int(write.due * 1000)
        objects = self.store.objects[write.sandbox]["flows"]
        current = objects.get(write.ident)
        if current is None:
            return  # deleted meanwhile
        error = self.context.config.write_error
        updated: JsonDict = dict(current)
        if error is None and write.operation == "update":
            try:
                updated = apply_patch(current, write.ops)
                validate(write.sandbox, "flows", updated)
            except PatchError as exc:
                error = f"Invalid patch: {exc}"
            except Problem as exc:
                body = exc.body if isinstance(exc.body, dict) else {}
                error = str(body.get("errorMessage") or exc)
        elif error is None:
            target = "enabled" if write.operation == "enable" else "disabled"
            if current.get("state") != target:
                updated["state"] = target
                if write.operation == "enable":
                    run = self._start_run(write.sandbox, updated, write.caller, at_ms=landed)
                    self._note_run(updated, run)
        if error is not None:
            updated = dict(current)
        following = next(
            (p for p in self.pending if (p.sandbox, p.ident) == (write.sandbox, write.ident)),
            None,
        )
        if following is not None:
            updated["lastOperation"] = self._operation_started(following)
        else:
            updated["lastOperation"] = {
                "started": int(write.accepted * 1000),
                "updated": landed,
                "percentCompleted": 100,
                "status": {
                    "value": "failed" if error else "completed",
                    "properties": None,
                    "errors": [{"code": "FLOW-1100-400", "message": error}] if error else [],
                },
                "ops": copy.deepcopy(write.ops),
                "operation": write.operation,
            }
        self.store.store(write.sandbox, "flows", updated, write.caller, updated_ms=landed)

    @staticmethod
    def _note_run(flow: JsonDict, details: JsonDict | None) -> None:
        """A flow that has never run shows no ``lastRunDetails`` until its first run does."""
        if details is not None:
            flow["lastRunDetails"] = details

    def _start_run(
        self, sandbox: str, flow: JsonDict, caller: Caller, *, at_ms: int | None = None
    ) -> JsonDict | None:
        """Start the run an enable triggers; answers the flow's ``lastRunDetails`` now.

        ``at_ms`` is when the enable took effect (epoch ms; default now): a delayed enable
        takes effect when it was due.

        ``Config.run_delay`` seconds pass before the run shows at all, then it reads as
        processing for ``Config.run_duration`` seconds, then it ends (both 0: it is there,
        finished, at once). Until it shows, the flow keeps the details of its earlier run.
        A Pinterest flow whose account has no live credentials at the enable fails, as the
        real one would.
        """
        config = self.context.config
        self._runs_started += 1
        run_id = emu_id(sandbox, "run", flow["id"], str(self._runs_started), self.context.salt)
        enabled_ms = self.context.now_ms() if at_ms is None else at_ms
        problem = self._credential_problem(sandbox, flow, at=enabled_ms / 1000)
        errors = [] if problem is None else [{"code": "PINTEREST-401", "message": problem}]
        failure = config.run_failures.get(flow["id"]) or config.run_failures.get(
            str(flow.get("name")), config.run_failures.get("*")
        )
        if problem is None and failure:
            # Config.run_failures: the code is the one of Adobe's run example
            # (help/dataflows/api/monitor.md); the message is the test's.
            problem = failure
            errors = [{"code": RUN_FAILURE_CODE, "message": failure}]
        started = enabled_ms + round(config.run_delay * 1000)
        duration = round(config.run_duration * 1000)

        def version(status: str, duration_ms: int | None) -> JsonDict:
            run = scenarios.make_run(
                sandbox=sandbox,
                flow_id=flow["id"],
                run_id=run_id,
                started_ms=started,
                status=in_case_of(config.run_status, status),
                errors=errors if duration_ms is not None else [],
                etag=self.context.next_etag(),
                duration_ms=duration_ms,
            )
            run["createdBy"] = run["updatedBy"] = f"{caller.client_id}@AdobeID"
            run["createdClient"] = run["updatedClient"] = caller.client_id
            return run

        final = version(config.run_status if problem is None else "failed", duration)
        stages = [(started + duration, final)]
        if duration:
            stages.insert(0, (started, version("processing", None)))
        self.store.schedule_run(sandbox, stages)
        shown = self.store.objects[sandbox]["runs"].get(run_id)
        return run_details(shown) if shown is not None else flow.get("lastRunDetails")

    def _credential_problem(self, sandbox: str, flow: JsonDict, *, at: float) -> str | None:
        """Why a run of ``flow`` started at ``at`` (epoch s) cannot reach Pinterest, else None.

        The expiry is read as pinmigrate reads it (every shape of api-notes.md §3 "Accounts"),
        from the stored account, whose tokens are in clear.
        """
        targets = (flow.get("inheritedAttributes") or {}).get("targetConnections") or []
        if not targets or _spec_of(flow) not in PINTEREST_SPECS:
            return None
        account_id = (targets[0].get("baseConnection") or {}).get("id")
        account = self.store.objects[sandbox]["connections"].get(str(account_id))
        params = ((account or {}).get("auth") or {}).get("params") or {}
        if account is None or not params.get("accessToken"):
            return "The account has no Pinterest credentials: reconnect it"
        expiry = credential_expiry(account)
        if expiry.at is None:
            return "The account has no Pinterest credentials: reconnect it"
        if expiry.at.timestamp() <= at:
            return "The account's Pinterest credentials expired: reconnect it"
        return None

    def renew_credentials(
        self, sandbox: str, account_id: str, access_token: str, refresh_token: str
    ) -> JsonDict:
        """Store fresh Pinterest credentials in an account, as Adobe's Reconnect OAuth does.

        The expiry is 30 days from now in the scenario's shape; the etag and ``updatedAt``
        change, and the account's credential owner becomes the tokens' user. Answers the
        stored account (tokens in clear).
        """
        with self.context.lock:
            current = self.store.lookup(sandbox, "connections", account_id)
            now = self.context.clock()
            timing = credential_timing(
                self.store.expiry_shape, now + PINTEREST_ACCESS_LIFETIME, now=now
            )
            auth = current.get("auth")
            auth = auth if isinstance(auth, dict) else {}
            params = {"accessToken": access_token, "refreshToken": refresh_token, **timing.params}
            updated = {
                **current,
                "auth": {**auth, "params": params},
                "updatedClient": CREATED_CLIENT,
            }
            self._note_credentials(updated)
            return self.store.store(
                sandbox,
                "connections",
                updated,
                None,
                updated_ms=timing.updated_ms if timing.updated_ms is not None else int(now * 1000),
            )

    # --- control API ---------------------------------------------------------------------

    def change_object(self, kind: str, ident: str, changes: Any) -> JsonDict:
        """Merge ``changes`` into an object behind the tool's back (bumps its etag)."""
        if kind not in MUTABLE_KINDS:
            raise Problem(400, {"error": f"kind must be one of {', '.join(MUTABLE_KINDS)}"})
        if not isinstance(changes, dict) or not changes:
            raise Problem(400, {"error": "body must be a non-empty JSON object to merge"})
        if {"id", "etag", "version"} & set(changes):
            raise Problem(400, {"error": "id, etag and version cannot be changed"})
        with self.context.lock:
            sandbox = self.store.sandbox_of(kind, ident)
            if sandbox is None:
                raise Problem(404, {"error": f"no {kind} object with id {ident}"})
            updated = merge_patch(self.store.objects[sandbox][kind][ident], changes)
            if kind == "connections":
                self._note_credentials(updated)
            stored = self.store.store(sandbox, kind, updated, None)
            return {"id": ident, "sandbox": sandbox, "etag": stored["etag"]}


# --- rules ---------------------------------------------------------------------------------


def check_etag(sandbox: str, current: JsonDict, if_match: str | None) -> None:
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


def check_writable(sandbox: str, kind: str, operation: Any) -> None:
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


def validate(sandbox: str, kind: str, updated: JsonDict) -> None:
    if not isinstance(updated.get("name"), str) or not updated["name"].strip():
        raise bad_request("Invalid patch: name must be a non-empty string", sandbox=sandbox)
    if kind == "flows":
        _validate_flow(sandbox, updated)
    elif kind == "connections" and _spec_of(updated) in PINTEREST_SPECS:
        auth = updated.get("auth")
        params = auth.get("params") if isinstance(auth, dict) else None
        if not isinstance(params, dict):
            raise bad_request("Invalid patch: auth.params must be an object", sandbox=sandbox)
        for key in ("expiresAt", "expirationDate"):
            if key in params and not _is_time(params[key]):
                raise bad_request(
                    f"Invalid patch: auth.params.{key} {params[key]!r} is neither ISO-8601 "
                    "nor epoch milliseconds",
                    sandbox=sandbox,
                )
        seconds = params.get("expiresIn")
        if "expiresIn" in params and (
            isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0
        ):
            raise bad_request(
                f"Invalid patch: auth.params.expiresIn {seconds!r} is not a number of seconds",
                sandbox=sandbox,
            )
        for key in ("accessToken", "refreshToken"):
            if key in params and (not isinstance(params[key], str) or not params[key]):
                raise bad_request(
                    f"Invalid patch: auth.params.{key} must be a string", sandbox=sandbox
                )


def _validate_flow(sandbox: str, updated: JsonDict) -> None:
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


# --- helpers --------------------------------------------------------------------------------


def in_case_of(model: str, status: str) -> str:
    """``status`` in the case of ``model``: ``Processing`` next to ``Success``."""
    return status[:1].upper() + status[1:] if model[:1].isupper() else status.lower()


def run_details(run: JsonDict) -> JsonDict:
    """A flow's ``lastRunDetails`` for one of its runs (the spec's ``FlowItemDTO``)."""
    durations = run["metrics"]["durationSummary"]
    details: JsonDict = {
        "id": run["id"],
        "state": str(run["metrics"]["statusSummary"]["status"]).lower(),
        "startedAtUTC": durations["startedAtUTC"],
    }
    if "completedAtUTC" in durations:
        details["completedAtUTC"] = durations["completedAtUTC"]
    return details


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


def _is_time(value: Any) -> bool:
    """An expiry Adobe may store: ISO-8601 text or epoch milliseconds."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return value >= 0
    if not isinstance(value, str):
        return False
    try:
        parse_iso(value)
    except ValueError:
        return False
    return True


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
