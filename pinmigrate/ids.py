"""Ids that go into URL paths: refused when they could change the path's meaning.

Adobe's object ids are UUIDs (every example of api-notes.md §3) and Pinterest's ad account
ids digits (``pattern: ^\\d+$`` in tests/data/pinterest-v5-openapi.json), so no real id
needs any of the characters refused here. ``quote(id, safe="")`` already turns a
``/`` into ``%2F``, but ``.`` and ``..`` are left as they are and are then resolved as path
steps (urllib3 removes dot segments), and a ``%2F`` may be decoded by a proxy on the way:
``flows/..`` would read or patch another resource than the one named. Such an id is
refused before any request is sent.
"""

from __future__ import annotations

from pinmigrate.errors import UsageError

#: Characters that mean something in a URL path or query, whatever the encoding.
PATH_SIGNIFICANT = frozenset("/\\?#%;")


class UnsafeIdError(UsageError):
    """An id (from a flag, a plan file or an answer) that cannot go into a URL path as is:
    empty, ``.`` or ``..``, or holding ``/ \\ ? # % ;``, a space or a control character.
    Nothing was sent."""


def id_problem(value: object) -> str | None:
    """Why ``value`` cannot be used as one URL path segment, or None."""
    if not isinstance(value, str):
        return "it is not text"
    if not value:
        return "it is empty"
    if value in (".", ".."):
        return "it is a path step"
    if not PATH_SIGNIFICANT.isdisjoint(value):
        bad = sorted(set(value) & PATH_SIGNIFICANT)
        return f"it holds {' '.join(repr(c) for c in bad)}"
    # Every space but " " is unprintable (Unicode Z* and C*), so this finds the same
    # characters as a test of each one, at C speed: a plan file holds tens of thousands of ids.
    if " " in value or not value.isprintable():
        return "it holds a space or a control character"
    return None


def checked_id(value: str, what: str) -> str:
    """``value`` when it is safe as a URL path segment; else :class:`UnsafeIdError`."""
    problem = id_problem(value)
    if problem:
        raise UnsafeIdError(
            f"refusing {what} {value!r}: {problem}, so it cannot be used in an address; "
            "nothing was sent",
            hint="use the id shown by `pinmigrate discover`",
        )
    return value
