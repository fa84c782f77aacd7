"""Flow Service list queries: ``property=`` filters, ``orderby`` and continuation tokens.

A filter is ``PATH OP VALUE`` where PATH is dotted and ``name[]`` walks into an array
(``inheritedAttributes.targetConnections[].connectionSpec.id``), OP is one of
``== != > >= < <=``, and a comma-separated VALUE is an OR list. Repeated filters are ANDed.
The evaluator is generic: no field is special-cased.

A continuation token is opaque to clients: URL-safe base64 of the sort key of the last item
served and its ``orderby``, plus, in query mode, the filters and limit (see
:func:`parse_list_query` for what each mode takes from the request).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_CONDITION = re.compile(
    r"^\s*([A-Za-z0-9_$@]+(?:\[\])?(?:\.[A-Za-z0-9_$@]+(?:\[\])?)*)\s*"
    r"(==|!=|>=|<=|>|<)(.*)$",
    re.S,
)
SORT_FIELDS = {"name": "", "createdAt": 0, "updatedAt": 0}
#: The largest ``limit`` a list takes (api-notes.md §3 "Lists and filters").
MAX_LIMIT = 100
#: The longest continuation token issued or read: tokens stay bounded, whatever is sent.
MAX_TOKEN = 4096


class QueryError(ValueError):
    """A malformed ``property``, ``orderby``, ``limit`` or ``continuationToken``."""


@dataclass(frozen=True)
class Condition:
    text: str
    path: tuple[tuple[str, bool], ...]
    op: str
    values: tuple[str, ...]

    def matches(self, obj: Any) -> bool:
        found = [_text(v) for v in resolve(obj, self.path)]
        if self.op == "==":
            return any(v in self.values for v in found)
        if self.op == "!=":
            return all(v not in self.values for v in found)
        return any(_compare(v, w, self.op) for v in found for w in self.values)


def parse_condition(text: str) -> Condition:
    match = _CONDITION.match(text)
    if not match:
        raise QueryError(
            f"invalid property filter {text!r}: expected FIELD==VALUE (also != > >= < <=)"
        )
    raw_path, op, raw_value = match.groups()
    path = tuple(
        (part[:-2], True) if part.endswith("[]") else (part, False) for part in raw_path.split(".")
    )
    values = tuple(v.strip() for v in raw_value.split(","))
    return Condition(text=text, path=path, op=op, values=values)


def resolve(obj: Any, path: Sequence[tuple[str, bool]]) -> list[Any]:
    """Every value at ``path``; ``[]`` segments fan out over array elements."""
    current = [obj]
    for name, is_array in path:
        following: list[Any] = []
        for node in current:
            if not isinstance(node, dict) or name not in node:
                continue
            value = node[name]
            if is_array:
                if isinstance(value, list):
                    following.extend(value)
            else:
                following.append(value)
        current = following
        if not current:
            break
    return current


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _compare(left: str, right: str, op: str) -> bool:
    a: Any
    b: Any
    try:
        a, b = float(left), float(right)
    except ValueError:
        a, b = left, right
    return bool(
        (op == ">" and a > b)
        or (op == ">=" and a >= b)
        or (op == "<" and a < b)
        or (op == "<=" and a <= b)
    )


@dataclass(frozen=True)
class Order:
    field: str = "createdAt"
    descending: bool = False

    @property
    def spec(self) -> str:
        return ("-" if self.descending else "") + self.field

    def key(self, obj: dict[str, Any]) -> tuple[Any, str]:
        default = SORT_FIELDS[self.field]
        value = obj.get(self.field, default)
        if not isinstance(value, type(default)) or isinstance(value, bool):
            value = default
        return value, str(obj.get("id", ""))


def parse_order(text: str | None) -> Order:
    # A "+" written into a query string arrives as a space (form encoding): ascending too.
    text = (text or "").strip()
    if not text:
        return Order()
    descending = text.startswith("-")
    name = text.lstrip("+-")
    if name not in SORT_FIELDS:
        raise QueryError(f"invalid orderby {text!r}: use one of {', '.join(SORT_FIELDS)}")
    return Order(name, descending)


def parse_limit(text: str | None, *, over_max: str = "error") -> int | None:
    """The ``limit`` asked for, None when absent; 1 to :data:`MAX_LIMIT` (api-notes.md §3).

    Above the maximum it is a QueryError, or the maximum itself with ``over_max="cap"``:
    which of the two Adobe does is not documented, so the emulator serves both.
    """
    if text is None or text == "":
        return None
    try:
        value = int(text)
    except ValueError:
        raise QueryError(f"invalid limit {text!r}: expected a positive integer") from None
    if value < 1:
        raise QueryError(f"invalid limit {text!r}: expected a positive integer")
    if value > MAX_LIMIT:
        if over_max == "cap":
            return MAX_LIMIT
        raise QueryError(f"invalid limit {text!r}: the maximum is {MAX_LIMIT}")
    return value


def parse_count(text: str | None) -> bool:
    """``count``, a boolean (either case, as a Java service reads one); absent is false."""
    if text is None or text == "":
        return False
    if text.lower() not in ("true", "false"):
        raise QueryError(f"invalid count {text!r}: expected true or false")
    return text.lower() == "true"


def check_names(params: Mapping[str, Sequence[str]], allowed: Collection[str]) -> None:
    """Refuse a query parameter the endpoint does not document."""
    unknown = sorted(name for name in params if name not in allowed)
    if unknown:
        raise QueryError(
            f"unknown query parameter {unknown[0]!r}; this endpoint takes "
            + ", ".join(sorted(allowed))
        )


@dataclass(frozen=True)
class Cursor:
    """What a ``continuationToken`` carries.

    Always the sort key of the last item served, bound to its ``orderby``; in query mode also
    the request's filters and limit (``filters`` is None in position mode).
    """

    order: str
    key: tuple[Any, str]
    filters: tuple[str, ...] | None = None
    limit: int | None = None


def encode_token(cursor: Cursor) -> str:
    data: dict[str, Any] = {"o": cursor.order, "k": list(cursor.key)}
    if cursor.filters is not None:
        data["q"] = list(cursor.filters)
        data["l"] = cursor.limit
    raw = json.dumps(data, separators=(",", ":")).encode()
    # URL-safe and unpadded: no character of it needs quoting, and no "=" for a client that
    # splits the link on "=" to trip over.
    token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    if len(token) > MAX_TOKEN:
        raise QueryError("the query is too long to be continued; send fewer or shorter filters")
    return token


def decode_token(token: str, *, query_mode: bool) -> Cursor:
    """The cursor of a token this emulator issued in this mode; QueryError for anything else."""
    bad = QueryError(f"invalid continuationToken {token[:40]!r}")
    if len(token) > MAX_TOKEN:
        raise bad
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        spec, (value, ident) = data["o"], data["k"]
        filters = data.get("q") if query_mode else None
        limit = data.get("l") if query_mode else None
    except (ValueError, KeyError, TypeError):
        raise bad from None
    if (
        not isinstance(spec, str)
        or not isinstance(ident, str)
        or query_mode != ("q" in data)
        or (filters is not None and not all(isinstance(f, str) for f in filters))
        or (limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)))
    ):
        raise bad
    try:
        order = parse_order(spec)
    except QueryError:
        raise bad from None
    default = SORT_FIELDS[order.field]
    if not isinstance(value, type(default)) or isinstance(value, bool):
        raise bad
    return Cursor(spec, (value, ident), None if filters is None else tuple(filters), limit)


@dataclass(frozen=True)
class ListQuery:
    """What one list request asks for, once its continuation token is taken into account."""

    conditions: tuple[Condition, ...]
    order: Order
    limit: int | None
    after: tuple[Any, str] | None = None
    count: bool = False

    def cursor(self, key: tuple[Any, str], *, query_mode: bool) -> Cursor:
        """The cursor of the next page, after the item with sort key ``key``."""
        if not query_mode:
            return Cursor(self.order.spec, key)
        return Cursor(self.order.spec, key, conditions_key(self.conditions), self.limit)


def parse_list_query(
    params: Mapping[str, Sequence[str]], *, query_mode: bool, over_max: str = "error"
) -> ListQuery:
    """The query of a list request; QueryError for anything malformed or inconsistent.

    Position mode: the filters, ``orderby`` and ``limit`` come from the request, so a
    client that does not send its filters again gets an unfiltered page. Query mode: they
    come from the token; a request may repeat them, but filters or an ``orderby`` that
    differ from the token's are refused rather than allowed to change the result. A
    ``limit`` sent again wins (it changes the page size, not the result).
    """
    conditions = tuple(parse_condition(p) for p in params.get("property", []))
    orderby = _first(params, "orderby")
    order = parse_order(orderby)
    limit = parse_limit(_first(params, "limit"), over_max=over_max)
    count = parse_count(_first(params, "count"))
    token = _first(params, "continuationToken")
    if not token:
        return ListQuery(conditions, order, limit, None, count)
    cursor = decode_token(token, query_mode=query_mode)
    foreign = QueryError("continuationToken does not belong to this query")
    if cursor.filters is not None:
        if conditions and conditions_key(conditions) != cursor.filters:
            raise foreign
        conditions = tuple(parse_condition(text) for text in cursor.filters)
        if orderby:
            if order.spec != cursor.order:
                raise foreign
        else:
            order = parse_order(cursor.order)
        limit = limit if limit is not None else cursor.limit
    elif order.spec != cursor.order:
        raise foreign
    return ListQuery(conditions, order, limit, cursor.key, count)


def _first(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def conditions_key(conditions: Iterable[Condition]) -> tuple[str, ...]:
    return tuple(sorted(c.text for c in conditions))
