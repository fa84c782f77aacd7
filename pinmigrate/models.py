"""Adobe payloads at the edge: tolerant pydantic models, and their translation into inventory.

The models read the fields pinmigrate uses, keep every other top-level field Adobe sends
(``extra="allow"``) and insist on almost nothing: Adobe's examples, docs and schemas disagree
in places (wrapped or bare objects, a base connection as an object or a string, epoch
milliseconds or ISO dates), and every variant must parse. The one place that knows the
Pinterest card's credential keys is here too.

The tolerance is declared in the field types (:data:`Lenient`, :data:`Text`, and
:class:`_BareId` for references) and runs inside pydantic-core, with no Python validator
per field or per model: those made the models twice as slow (docs/performance.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import CoreSchema, core_schema

from pinmigrate.errors import ApiError
from pinmigrate.inventory import Account, Audience, Card, Flow, Operation, TargetConnection
from pinmigrate.moments import iso_z

#: ``auth.specName`` of a Pinterest v5 account (pinmigrate's convention; see api-notes §3).
AUTH_SPEC_NAME = "OAuth2 Authorization Code"
#: The transformation that carries a destination flow's audiences.
GENERAL_TRANSFORM = "GeneralTransform"
#: Flow spec of profile-based (streaming/batch audience) destinations.
PROFILE_DESTINATION_FLOW_SPEC = "71471eba-b620-49e4-90fd-23f1fa0174d8"


class _OddReadsAsAbsent:
    """An optional field of an unexpected shape reads as absent (None), not as an error."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.with_default_schema(handler(source), default=None, on_error="default")


def _bool_text(value: bool) -> str:
    return "true" if value else "false"


class _AsText:
    """Numbers where text is expected (ids, names) become text, as ``str()`` writes them."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.union_schema(
            [
                core_schema.str_schema(coerce_numbers_to_str=True),
                # JSON's true/false: rare enough for a Python function.
                core_schema.chain_schema(
                    [
                        core_schema.bool_schema(strict=True),
                        core_schema.no_info_plain_validator_function(_bool_text),
                    ]
                ),
            ],
            mode="left_to_right",
            custom_error_type="string_type",
        )


def _bare_id(value: str | int) -> dict[str, str]:
    return {"id": str(value)}


class _BareId:
    """A reference given as just the id (a string or a number), as Adobe's schemas do."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        reference = handler(source)
        bare = core_schema.chain_schema(
            [
                core_schema.union_schema(
                    [core_schema.str_schema(strict=True), core_schema.int_schema(strict=True)]
                ),
                core_schema.no_info_plain_validator_function(_bare_id),
                reference,
            ]
        )
        return core_schema.union_schema([reference, bare], mode="left_to_right")


_T = TypeVar("_T")
#: An optional field: absent, or of an unexpected shape, it reads as None.
Lenient = Annotated[_T | None, _OddReadsAsAbsent()]
#: Text that may come as a number or a boolean.
Text = Annotated[str, _AsText()]


class _Part(BaseModel):
    """A part of a payload: only the fields declared here are read (the raw payload keeps
    the rest), since copying every unknown key of every nested object costs time."""

    model_config = ConfigDict(
        extra="ignore",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        # Built on first use: discovery reads plain payloads without them (the quick path at
        # the end), so most runs never pay for building these validators.
        defer_build=True,
    )


class _Payload(_Part):
    """A whole payload: unknown fields are kept (``model_extra``)."""

    model_config = ConfigDict(extra="allow")


class SpecRef(_Part):
    id: Lenient[Text] = None


#: A connection spec reference, whole or as just its id.
SpecRefOrId = Annotated[SpecRef, _BareId()]


class ConnectionRef(_Part):
    """E.g. ``baseConnection`` inside ``inheritedAttributes``."""

    id: Lenient[Text] = None


#: A connection reference, whole or as just its id.
ConnectionRefOrId = Annotated[ConnectionRef, _BareId()]


class InheritedTarget(_Part):
    id: Lenient[str] = None
    connection_spec: Lenient[SpecRefOrId] = None
    base_connection: Lenient[ConnectionRefOrId] = None
    params: Lenient[dict[str, Any]] = None


class InheritedAttributes(_Part):
    target_connections: Lenient[list[InheritedTarget]] = None
    #: The schema types this as a string, the examples as an object: both are accepted.
    base_connection: Lenient[ConnectionRefOrId] = None


class AdobeFlow(_Payload):
    """A destination dataflow (``GET /flows``); audiences are read from the raw payload."""

    id: Text
    name: Lenient[Text] = None
    sandbox_name: Lenient[str] = None
    state: Lenient[str] = None
    etag: Lenient[str] = None
    target_connection_ids: Lenient[list[str]] = None
    inherited_attributes: Lenient[InheritedAttributes] = None


class AdobeConnection(_Payload):
    """A base connection: an "account" of a destination card (``GET /connections``)."""

    id: Text
    name: Lenient[Text] = None
    sandbox_name: Lenient[str] = None
    state: Lenient[str] = None
    etag: Lenient[str] = None


class AdobeTargetConnection(_Payload):
    """Where a flow delivers; for Pinterest ``params.advertiser_id`` is the ad account."""

    id: Text
    name: Lenient[Text] = None
    sandbox_name: Lenient[str] = None
    base_connection_id: Lenient[Text] = None
    params: Lenient[dict[str, Any]] = None
    etag: Lenient[str] = None
    inherited_attributes: Lenient[InheritedAttributes] = None


class AdobeConnectionSpec(_Payload):
    """A destination or source card (``GET /connectionSpecs``)."""

    id: Text
    name: Lenient[Text] = None


class StatusSummary(_Part):
    status: Lenient[str] = None
    errors: Lenient[list[dict[str, Any]]] = None


class RunMetrics(_Part):
    status_summary: Lenient[StatusSummary] = None


class AdobeRun(_Payload):
    """One execution of a flow (``GET /runs``)."""

    id: Text
    flow_id: Lenient[Text] = None
    metrics: Lenient[RunMetrics] = None

    @property
    def status(self) -> str:
        """Lower-case ``metrics.statusSummary.status`` ("success", "failed", ...), or ""."""
        summary = self.metrics.status_summary if self.metrics else None
        return (summary.status or "").lower() if summary else ""

    @property
    def errors(self) -> list[str]:
        return [f"{e['code']}: {e['message']}".strip(": ") for e in self.error_items]

    @property
    def error_items(self) -> list[dict[str, str]]:
        """``metrics.statusSummary.errors[] {code, message}`` (api-notes.md §3 "Runs"), as
        strings; an item that is not an object is left out."""
        summary = self.metrics.status_summary if self.metrics else None
        found = (summary.errors or []) if summary else []
        return [
            {"code": str(e.get("code", "") or ""), "message": str(e.get("message", "") or "")}
            for e in found
            if isinstance(e, dict)
        ]


_M = TypeVar("_M", bound=_Payload)


def _parse(model: type[_M], raw: Any, noun: str) -> _M:
    if not isinstance(raw, dict):
        raise ApiError(
            f"Adobe sent a {noun} that is not a JSON object ({type(raw).__name__})",
            service="adobe",
        )
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"]) or noun
        ident = raw.get("id", "?")
        raise ApiError(
            f"Adobe sent a {noun} ({ident}) that pinmigrate cannot read: {where}: {err['msg']}",
            service="adobe",
        ) from None


def parse_flow(raw: Any) -> AdobeFlow:
    return _parse(AdobeFlow, raw, "flow")


def parse_connection(raw: Any) -> AdobeConnection:
    return _parse(AdobeConnection, raw, "connection")


def parse_target_connection(raw: Any) -> AdobeTargetConnection:
    return _parse(AdobeTargetConnection, raw, "target connection")


def parse_connection_spec(raw: Any) -> AdobeConnectionSpec:
    return _parse(AdobeConnectionSpec, raw, "connection spec")


def parse_run(raw: Any) -> AdobeRun:
    return _parse(AdobeRun, raw, "run")


# --- flows -------------------------------------------------------------------------------


def _selectors_index(raw_flow: dict[str, Any]) -> int | None:
    """Index of the transformation whose segmentSelectors hold the audiences."""
    transformations = raw_flow.get("transformations")
    if not isinstance(transformations, list):
        return None
    with_selectors = [
        i
        for i, t in enumerate(transformations)
        if isinstance(t, dict)
        and isinstance(t.get("params"), dict)
        and isinstance(t["params"].get("segmentSelectors"), dict)
    ]
    general = [i for i in with_selectors if transformations[i].get("name") == GENERAL_TRANSFORM]
    if general:
        return general[0]
    return with_selectors[0] if with_selectors else None


def audiences_of(raw_flow: Any) -> tuple[Audience, ...]:
    """The audiences activated on a flow: ``segmentSelectors.selectors[].value``, ids unique."""
    if not isinstance(raw_flow, dict):
        raise ApiError("Adobe sent a flow that is not a JSON object", service="adobe")
    index = _selectors_index(raw_flow)
    if index is None:
        return ()
    selectors = raw_flow["transformations"][index]["params"]["segmentSelectors"].get("selectors")
    found: list[Audience] = []
    seen: set[str] = set()
    for selector in selectors if isinstance(selectors, list) else []:
        value = selector.get("value") if isinstance(selector, dict) else None
        if not isinstance(value, dict) or value.get("id") in (None, ""):
            continue
        audience_id = str(value["id"])
        if audience_id in seen:
            continue
        seen.add(audience_id)
        found.append(
            Audience(
                id=audience_id,
                name=str(value.get("name") or ""),
                description=str(value.get("description") or ""),
            )
        )
    return tuple(found)


def segment_selectors_path(raw_flow: Any) -> str:
    """JSON-Pointer of the flow's audience list, for ``add`` ops ending in ``/-``."""
    if not isinstance(raw_flow, dict):
        raise ApiError("Adobe sent a flow that is not a JSON object", service="adobe")
    index = _selectors_index(raw_flow)
    if index is None:
        # No audience yet: Adobe still keeps them under the GeneralTransform (or the first).
        transformations = raw_flow.get("transformations")
        names = [
            t.get("name") if isinstance(t, dict) else None
            for t in (transformations if isinstance(transformations, list) else [])
        ]
        index = names.index(GENERAL_TRANSFORM) if GENERAL_TRANSFORM in names else 0
    return f"/transformations/{index}/params/segmentSelectors/selectors"


def add_audience_ops(
    raw_flow: Any, audiences: list[Audience] | tuple[Audience, ...]
) -> list[dict[str, Any]]:
    """The JSON-Patch ops that add these audiences to a flow, one ``add`` per audience.

    Each selector is the documented one and nothing more: ``{"type": "PLATFORM_SEGMENT",
    "value": {"id", "name"}}`` (api-notes.md §3 "Patch a flow"; ``description`` is read from
    flows but not part of the documented write). A flow without an audience list yet (no
    ``segmentSelectors``) gets one ``add`` that creates the list: JSON Patch cannot append to
    a list that does not exist.
    """
    pointer = segment_selectors_path(raw_flow)
    values = [
        {"type": "PLATFORM_SEGMENT", "value": {"id": a.id, "name": a.name}} for a in audiences
    ]
    create = _create_missing(raw_flow, pointer, values)
    if create is not None:
        return [create]
    return [{"op": "add", "path": pointer + "/-", "value": value} for value in values]


def _create_missing(raw: dict[str, Any], pointer: str, leaf: list[Any]) -> dict[str, Any] | None:
    """An ``add`` that creates the first missing object on ``pointer`` (ending in ``leaf``),
    or None when the whole path exists (or a list item would have to be made up)."""
    parts = pointer.strip("/").split("/")
    node: Any = raw
    for depth, part in enumerate(parts):
        if isinstance(node, list):
            if not (part.isdigit() and int(part) < len(node)):
                return None
            node = node[int(part)]
            continue
        if not isinstance(node, dict):
            return None
        child = node.get(part)
        last = depth == len(parts) - 1
        if isinstance(child, list) or (isinstance(child, dict) and not last):
            node = child
            continue
        rest = parts[depth + 1 :]
        if any(p.isdigit() for p in rest):
            return None
        value: Any = leaf
        for name in reversed(rest):
            value = {name: value}
        return {"op": "add", "path": "/" + "/".join(parts[: depth + 1]), "value": value}
    return None


def _first_target(flow: AdobeFlow) -> InheritedTarget | None:
    inherited = flow.inherited_attributes
    targets = inherited.target_connections if inherited else None
    return targets[0] if targets else None


def destination_spec_id(raw_flow: Any) -> str | None:
    """The connection spec (card) a flow delivers to: its first target connection's spec."""
    target = _first_target(parse_flow(raw_flow))
    return target.connection_spec.id if target and target.connection_spec else None


def _state(value: str | None) -> str:
    return (value or "").strip().lower() or "disabled"


def _sandbox(explicit: str | None, payload: str | None) -> str:
    # The sandbox asked for (x-sandbox-name) is the truth; absent header and field mean prod.
    return (explicit or payload or "prod").lower()


def flow_from_payload(raw: Any, card: Card, *, sandbox: str | None = None) -> Flow:
    """A :class:`~pinmigrate.inventory.Flow` from a ``GET /flows`` item."""
    if type(raw) is dict:
        quick = _flow_from_dict(raw, card, sandbox)
        if quick is not None:
            return quick
    flow = parse_flow(raw)
    target = _first_target(flow)
    account_id: str | None = None
    advertiser_id: str | None = None
    if target is not None:
        base = target.base_connection
        account_id = base.id if base is not None else None
        params = target.params or {}
        if params.get("advertiser_id") not in (None, ""):
            advertiser_id = str(params["advertiser_id"])
    target_ids = flow.target_connection_ids or []
    target_id = target_ids[0] if target_ids else (target.id if target else None)
    return Flow(
        id=flow.id,
        name=flow.name or "",
        sandbox=_sandbox(sandbox, flow.sandbox_name),
        card=card,
        state=_state(flow.state),
        etag=flow.etag or "",
        account_id=account_id or None,
        target_connection_id=target_id or None,
        advertiser_id=advertiser_id,
        audiences=audiences_of(raw),
        operation=operation_of(raw),
    )


def operation_of(raw_flow: Any) -> Operation | None:
    """A flow's ``lastOperation {operation, percentCompleted, status: {value, errors}}``
    (sources' update tutorial, AdobeDocs/experience-platform.en
    help/sources/tutorials/api/update-dataflows.md), read tolerantly: absent, null or an odd
    shape is None; odd fields read as absent."""
    last = raw_flow.get("lastOperation") if isinstance(raw_flow, dict) else None
    if not isinstance(last, dict):
        return None
    name = last.get("operation")
    status = last.get("status")
    value = status.get("value") if isinstance(status, dict) else status
    folded = "".join(c for c in value.lower() if c.isalpha()) if isinstance(value, str) else ""
    percent = last.get("percentCompleted")
    if isinstance(percent, str):
        try:
            percent = float(percent)
        except ValueError:
            percent = None
    if isinstance(percent, bool) or not isinstance(percent, int | float) or percent != percent:
        percent = None
    errors = status.get("errors") if isinstance(status, dict) else None
    return Operation(
        name=name.strip().lower() if isinstance(name, str) else "",
        status=folded,
        percent=float(percent) if percent is not None else None,
        errors=tuple(_error_line(e) for e in errors or () if e) if isinstance(errors, list) else (),
    )


def _error_line(error: Any) -> str:
    """One error of ``lastOperation.status.errors``: its message and code, on one line."""
    if not isinstance(error, dict):
        return " ".join(str(error).split())
    message = next(
        (
            str(error[key])
            for key in ("message", "errorMessage", "description", "title")
            if error.get(key)
        ),
        "",
    )
    code = error.get("code") or error.get("error_code")
    text = f"{message} ({code})" if message and code else message or str(code or error)
    return " ".join(text.split())


# --- accounts ----------------------------------------------------------------------------


def parse_when(value: Any) -> datetime | None:
    """An Adobe time: ISO-8601 (Z, offset or naive UTC) or epoch ms/s; None when unreadable."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text.lstrip("-").isascii() and text.lstrip("-").isdigit():
            try:
                value = int(text)
            except ValueError:  # more digits than int() reads: no time either
                return None
        else:
            try:
                when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                return None
            return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    if isinstance(value, int | float):
        # Adobe's timestamps are epoch milliseconds; small numbers are seconds.
        try:
            seconds = value / 1000 if abs(value) >= 100_000_000_000 else float(value)
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


#: The executor reads run times with this; kept under its first name too.
_parse_when = parse_when


#: Adobe's documented lifetime of a Pinterest grant: "Pinterest tokens expire every 30 days"
#: (experience-platform docs, destinations/catalog/advertising/pinterest.md).
PINTEREST_GRANT_LIFETIME = timedelta(days=30)

#: How an account's expiry was read (api-notes §3 "Accounts": first match wins).
ExpiryRule = Literal["expiresAt", "expirationDate", "updatedAt+expiresIn", "updatedAt+30d", "none"]


@dataclass(frozen=True)
class Expiry:
    """An account's credential expiry, the rule that gave it, and its ``updatedAt``."""

    at: datetime | None
    rule: ExpiryRule
    updated_at: datetime | None = None


def _token_field_blank(params: Mapping[str, Any]) -> bool:
    """True when params spell an access token field and it is empty (no credentials)."""
    for key, value in params.items():
        if key.replace("_", "").lower() == "accesstoken" and value in (None, ""):
            return True
    return False


def credential_expiry(raw_connection: Any) -> Expiry:
    """When an account's credentials run out, read tolerantly (api-notes §3 "Accounts").

    First match wins: ``expiresAt`` or ``expirationDate`` (ISO-8601 or epoch ms; in
    ``auth.params`` or on the account itself); else ``updatedAt + expiresIn`` (seconds);
    else, for a connected account, ``updatedAt`` + 30 days (Adobe's documented Pinterest
    lifetime). An account without credentials (empty ``auth.params``, or an empty access
    token field) has no expiry: rule ``"none"``. The planner and apply share this function.
    """
    if not isinstance(raw_connection, dict):
        raise ApiError("Adobe sent a connection that is not a JSON object", service="adobe")
    auth = raw_connection.get("auth")
    params = auth.get("params") if isinstance(auth, dict) else None
    params = params if isinstance(params, dict) else {}
    updated = parse_when(raw_connection.get("updatedAt"))
    if not params or _token_field_blank(params):
        return Expiry(None, "none", updated)  # no credentials, whatever else it says
    for rule in ("expiresAt", "expirationDate"):
        for where in (params, raw_connection):
            when = parse_when(where.get(rule))
            if when is not None:
                return Expiry(when, rule, updated)
    seconds = _seconds(params.get("expiresIn", raw_connection.get("expiresIn")))
    if updated is not None and seconds is not None:
        try:
            return Expiry(updated + timedelta(seconds=seconds), "updatedAt+expiresIn", updated)
        except (OverflowError, ValueError):  # inf, NaN, or beyond year 9999: unreadable
            pass
    if updated is not None:
        return Expiry(updated + PINTEREST_GRANT_LIFETIME, "updatedAt+30d", updated)
    return Expiry(None, "none", updated)


def seconds_of(value: Any) -> float | None:
    """A duration in seconds from a number or numeric text, as both services send them;
    None when unreadable: not a number, NaN, infinite, or beyond a float (``10**400``)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


_seconds = seconds_of


def expires_at_of(raw_connection: Any) -> datetime | None:
    """The account's credential expiry by :func:`credential_expiry`; None without one."""
    return credential_expiry(raw_connection).at


def _expiry_fields(raw: Any) -> dict[str, Any]:
    expiry = credential_expiry(raw)
    return {"expires_at": expiry.at, "expiry_rule": expiry.rule, "updated_at": expiry.updated_at}


def account_from_payload(raw: Any, card: Card, *, sandbox: str | None = None) -> Account:
    """An :class:`~pinmigrate.inventory.Account` from a ``GET /connections`` item."""
    if type(raw) is dict:
        quick = _account_from_dict(raw, card, sandbox)
        if quick is not None:
            return quick
    connection = parse_connection(raw)
    return Account(
        id=connection.id,
        name=connection.name or "",
        sandbox=_sandbox(sandbox, connection.sandbox_name),
        card=card,
        etag=connection.etag or "",
        state=(connection.state or "enabled").lower(),
        **_expiry_fields(raw),
    )


def target_from_payload(raw: Any, card: Card, *, sandbox: str | None = None) -> TargetConnection:
    """A :class:`~pinmigrate.inventory.TargetConnection` from a ``GET /targetConnections`` item."""
    if type(raw) is dict:
        quick = _target_from_dict(raw, card, sandbox)
        if quick is not None:
            return quick
    target = parse_target_connection(raw)
    base_id = target.base_connection_id
    if not base_id and target.inherited_attributes is not None:
        base = target.inherited_attributes.base_connection
        base_id = base.id if base is not None else None
    params = target.params or {}
    advertiser = params.get("advertiser_id")
    return TargetConnection(
        id=target.id,
        sandbox=_sandbox(sandbox, target.sandbox_name),
        card=card,
        base_connection_id=base_id or None,
        advertiser_id=str(advertiser) if advertiser not in (None, "") else None,
        name=target.name or "",
        etag=target.etag or "",
    )


# --- credentials -------------------------------------------------------------------------


def auth_params(
    access_token: str, refresh_token: str | None, expires_at: datetime | None
) -> dict[str, Any]:
    """``auth.params`` of a Pinterest v5 account: the one place these keys are spelled."""
    params: dict[str, Any] = {"accessToken": access_token}
    if refresh_token:
        params["refreshToken"] = refresh_token
    if expires_at is not None:
        params["expiresAt"] = iso_z(expires_at)
    return params


def reconnect_ops(
    access_token: str, refresh_token: str | None, expires_at: datetime | None
) -> list[dict[str, Any]]:
    """The JSON-Patch that replaces an account's credentials (``PATCH /connections/{id}``)."""
    return [
        {
            "op": "replace",
            "path": "/auth/params",
            "value": auth_params(access_token, refresh_token, expires_at),
        }
    ]


# --- the quick path ----------------------------------------------------------------------
#
# Discovery reads every flow, target connection and account of both cards: tens of thousands
# of objects. Even without Python validators the models above take 1.3 to 2.3 times as long
# as reading the decoded JSON directly (18 against 14 us a flow, 8 against 3 a target
# connection; docs/performance.md). The functions below read the few fields the inventory
# needs straight from the decoded JSON, and give up (None) on anything but the plain shapes
# JSON gives: a non-string where text is expected, a bare or numeric reference, a snake_case
# field name (the models accept those too). The models then decide, so both paths give the
# same answer for every payload; tests/test_perf.py holds them to it.

_FLOW_NAMES = ("sandbox_name", "target_connection_ids", "inherited_attributes")
_TARGET_NAMES = ("sandbox_name", "base_connection_id", "inherited_attributes")
_REF_NAMES = ("base_connection", "connection_spec", "target_connections")


def _plain(*values: Any) -> bool:
    """Every value is text or absent: what the models read without converting."""
    return all(value is None or type(value) is str for value in values)


def _snake(raw: dict[str, Any], names: tuple[str, ...]) -> bool:
    return any(name in raw for name in names)


def _ref_id(value: Any) -> tuple[bool, str | None]:
    """(readable, id) of a reference such as ``baseConnection``: absent, an id, or an object."""
    if value is None:
        return True, None
    if type(value) is str:
        return True, value
    if type(value) is dict and not _snake(value, _REF_NAMES):
        ident = value.get("id")
        return _plain(ident), ident
    return False, None


def _flow_from_dict(raw: dict[str, Any], card: Card, sandbox: str | None) -> Flow | None:
    ident = raw.get("id")
    name = raw.get("name")
    sandbox_name = raw.get("sandboxName")
    state = raw.get("state")
    etag = raw.get("etag")
    if type(ident) is not str or not _plain(name, sandbox_name, state, etag):
        return None
    if _snake(raw, _FLOW_NAMES):
        return None
    target_ids = raw.get("targetConnectionIds")
    if target_ids is not None and not (
        type(target_ids) is list and all(type(t) is str for t in target_ids)
    ):
        return None
    target: dict[str, Any] | None = None
    inherited = raw.get("inheritedAttributes")
    if inherited is not None:
        if type(inherited) is not dict or _snake(inherited, _REF_NAMES):
            return None
        targets = inherited.get("targetConnections")
        if targets is not None:
            if type(targets) is not list or not all(type(t) is dict for t in targets):
                return None
            target = targets[0] if targets else None
    account_id: str | None = None
    advertiser_id: str | None = None
    first_target_id: str | None = None
    if target is not None:
        if _snake(target, _REF_NAMES):
            return None
        first_target_id = target.get("id")
        readable, account_id = _ref_id(target.get("baseConnection"))
        params = target.get("params")
        if (
            not readable
            or not _plain(first_target_id)
            or not (params is None or type(params) is dict)
        ):
            return None
        if params and params.get("advertiser_id") not in (None, ""):
            advertiser_id = str(params["advertiser_id"])
    target_id = target_ids[0] if target_ids else first_target_id
    return Flow(
        id=ident,
        name=name or "",
        sandbox=_sandbox(sandbox, sandbox_name),
        card=card,
        state=_state(state),
        etag=etag or "",
        account_id=account_id or None,
        target_connection_id=target_id or None,
        advertiser_id=advertiser_id,
        audiences=audiences_of(raw),
        operation=operation_of(raw),
    )


def _target_from_dict(
    raw: dict[str, Any], card: Card, sandbox: str | None
) -> TargetConnection | None:
    ident = raw.get("id")
    name = raw.get("name")
    sandbox_name = raw.get("sandboxName")
    base_id = raw.get("baseConnectionId")
    etag = raw.get("etag")
    params = raw.get("params")
    if type(ident) is not str or not _plain(name, sandbox_name, base_id, etag):
        return None
    if _snake(raw, _TARGET_NAMES) or not (params is None or type(params) is dict):
        return None
    if not base_id:
        inherited = raw.get("inheritedAttributes")
        if inherited is not None:
            if type(inherited) is not dict or _snake(inherited, _REF_NAMES):
                return None
            readable, base_id = _ref_id(inherited.get("baseConnection"))
            if not readable:
                return None
    advertiser = params.get("advertiser_id") if params else None
    return TargetConnection(
        id=ident,
        sandbox=_sandbox(sandbox, sandbox_name),
        card=card,
        base_connection_id=base_id or None,
        advertiser_id=str(advertiser) if advertiser not in (None, "") else None,
        name=name or "",
        etag=etag or "",
    )


def _account_from_dict(raw: dict[str, Any], card: Card, sandbox: str | None) -> Account | None:
    ident = raw.get("id")
    name = raw.get("name")
    sandbox_name = raw.get("sandboxName")
    state = raw.get("state")
    etag = raw.get("etag")
    if type(ident) is not str or not _plain(name, sandbox_name, state, etag):
        return None
    if "sandbox_name" in raw:
        return None
    return Account(
        id=ident,
        name=name or "",
        sandbox=_sandbox(sandbox, sandbox_name),
        card=card,
        etag=etag or "",
        state=(state or "enabled").lower(),
        **_expiry_fields(raw),
    )
