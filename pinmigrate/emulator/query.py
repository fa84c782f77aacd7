"""Flow Service list queries: ``property=`` filters, ``orderby`` and continuation tokens.

A filter is ``PATH OP VALUE`` where PATH is dotted and ``name[]`` walks into an array
(``inheritedAttributes.targetConnections[].connectionSpec.id``), OP is one of
``== != > >= < <=``, and a comma-separated VALUE is an OR list. Repeated filters are ANDed.
The evaluator is generic: no field is special-cased.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

_CONDITION = re.compile(
    r"^\s*([A-Za-z0-9_$@]+(?:\[\])?(?:\.[A-Za-z0-9_$@]+(?:\[\])?)*)\s*"
    r"(==|!=|>=|<=|>|<)(.*)$",
    re.S,
)
SORT_FIELDS = {"name": "", "createdAt": 0, "updatedAt": 0}


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
    if not text:
        return Order()
    descending = text.startswith("-")
    name = text.lstrip("+-")
    if name not in SORT_FIELDS:
        raise QueryError(f"invalid orderby {text!r}: use one of {', '.join(SORT_FIELDS)}")
    return Order(name, descending)


def parse_limit(text: str | None, *, cap: int) -> int:
    """The page size, ``min(limit or cap, cap)``; a limit that is not a positive integer fails."""
    if text is None or text == "":
        return cap
    try:
        value = int(text)
    except ValueError:
        raise QueryError(f"invalid limit {text!r}: expected a positive integer") from None
    if value < 1:
        raise QueryError(f"invalid limit {text!r}: expected a positive integer")
    return min(value, cap)


def encode_token(order: Order, key: tuple[Any, str]) -> str:
    raw = json.dumps({"o": order.spec, "k": list(key)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, order: Order) -> tuple[Any, str]:
    """The sort key of the last item served; the token is bound to its ``orderby``."""
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        spec, (value, ident) = data["o"], data["k"]
    except (ValueError, KeyError, TypeError):
        raise QueryError(f"invalid continuationToken {token[:40]!r}") from None
    default = SORT_FIELDS[order.field]
    if (
        spec != order.spec
        or not isinstance(ident, str)
        or not isinstance(value, type(default))
        or isinstance(value, bool)
    ):
        raise QueryError("continuationToken does not belong to this query")
    return value, ident


def conditions_key(conditions: Iterable[Condition]) -> tuple[str, ...]:
    return tuple(sorted(c.text for c in conditions))
