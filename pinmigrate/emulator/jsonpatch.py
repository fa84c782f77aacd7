"""RFC 6902 JSON Patch and RFC 7386 JSON Merge Patch, small and strict.

Neither modifies its input: a patch that fails half-way leaves the stored object as it was,
and sub-objects shared between stored dicts are never changed in place.
"""

from __future__ import annotations

import copy
from typing import Any

_MISSING = object()


class PatchError(ValueError):
    """An operation that cannot be applied (bad op, bad path, failed test)."""


def parse_pointer(pointer: object) -> list[str]:
    """The reference tokens of a JSON Pointer (RFC 6901)."""
    if not isinstance(pointer, str):
        raise PatchError(f"path must be a string, got {type(pointer).__name__}")
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"path {pointer!r} must start with '/'")
    return [token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/")]


def _index(container: list[Any], token: str, *, for_add: bool, path: str) -> int:
    if token == "-" and for_add:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f"path {path!r}: {token!r} is not an array index")
    index = int(token)
    limit = len(container) if for_add else len(container) - 1
    if index > limit:
        raise PatchError(f"path {path!r}: index {index} is out of range")
    return index


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise PatchError(f"path {path!r}: {token!r} does not exist")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, for_add=False, path=path)]
        else:
            raise PatchError(f"path {path!r}: {token!r} is inside a scalar")
    return node


def _get(doc: Any, path: str) -> Any:
    tokens = parse_pointer(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path {path!r} does not exist")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, for_add=False, path=path)]
    raise PatchError(f"path {path!r}: parent is a scalar")


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = parse_pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, for_add=True, path=path), value)
    else:
        raise PatchError(f"path {path!r}: parent is a scalar")
    return doc


def _remove(doc: Any, path: str) -> tuple[Any, Any]:
    tokens = parse_pointer(path)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path {path!r} does not exist")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last, for_add=False, path=path))
    raise PatchError(f"path {path!r}: parent is a scalar")


def apply_patch(document: Any, operations: Any) -> Any:
    """A patched deep copy of ``document``; raises PatchError and leaves it unchanged."""
    if not isinstance(operations, list):
        raise PatchError("a JSON Patch body must be an array of operations")
    doc = copy.deepcopy(document)
    for number, operation in enumerate(operations):
        if not isinstance(operation, dict):
            raise PatchError(f"operation {number} is not an object")
        op = operation.get("op")
        path = operation.get("path", _MISSING)
        if not isinstance(path, str):
            raise PatchError(f"operation {number} has no path (a string)")
        if op in ("add", "replace", "test") and "value" not in operation:
            raise PatchError(f"operation {number} ({op}) has no value")
        value = copy.deepcopy(operation.get("value"))
        if op == "add":
            doc = _add(doc, path, value)
        elif op == "remove":
            doc, _ = _remove(doc, path)
        elif op == "replace":
            _get(doc, path)
            doc, _ = _remove(doc, path) if parse_pointer(path) else (doc, None)
            doc = _add(doc, path, value)
        elif op in ("move", "copy"):
            source = operation.get("from")
            if not isinstance(source, str):
                raise PatchError(f"operation {number} ({op}) has no 'from'")
            if op == "move":
                if path.startswith(source + "/"):
                    raise PatchError(f"operation {number}: cannot move {source!r} into itself")
                doc, moved = _remove(doc, source)
            else:
                moved = copy.deepcopy(_get(doc, source))
            doc = _add(doc, path, moved)
        elif op == "test":
            if _get(doc, path) != value:
                raise PatchError(f"operation {number}: test failed at {path!r}")
        else:
            raise PatchError(f"operation {number}: unknown op {op!r}")
    return doc


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
