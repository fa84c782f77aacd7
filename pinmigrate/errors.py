"""One exception hierarchy; each class carries its exit code from the contract.

The top-level handler in :mod:`pinmigrate.cli` turns any :class:`PinmigrateError`
into exactly one line on stderr and ``sys.exit(error.exit_code)``. Messages say
what happened, to which object, and what to do next. They never contain a secret.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar


class ExitCode:
    """The contract's exit codes, in one place."""

    OK = 0
    FAILED = 1
    CHANGES_PENDING = 2
    STALE = 3
    AUTH = 4
    CONFIRM = 5
    USAGE = 64
    #: Ctrl-C (128 + SIGINT), as shells report it.
    INTERRUPTED = 130


class PinmigrateError(Exception):
    """Base of every error pinmigrate reports to the user (exit 1)."""

    exit_code: ClassVar[int] = ExitCode.FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def line(self) -> str:
        """The single stderr line: the message, then what to do about it."""
        text = self.message.replace("\n", " ").strip()
        if self.hint:
            text = f"{text}; {self.hint}"
        return text


class UsageError(PinmigrateError):
    """A bad flag, argument or plan file."""

    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """A bad config file, environment value or missing required key."""


class PlanFileError(UsageError):
    """A plan file that is truncated, of the wrong kind or version, or edited by hand."""


class ApiError(PinmigrateError):
    """An Adobe or Pinterest call failed after any retries it was allowed."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        service: str = "",
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.service = service


class NotFoundError(ApiError):
    """A 404 for an object or card that should exist."""


class StaleObjectError(ApiError):
    """A write answered 412: the object changed since it was read."""

    def __init__(self, message: str, *, object_id: str, service: str = "adobe") -> None:
        super().__init__(message, status=412, service=service)
        self.object_id = object_id


class UnsureWriteError(ApiError):
    """A write whose answer never came (dropped, timed out, or a gateway's 502/504): Adobe
    may or may not have applied it. Re-read before deciding; never repeat it blind."""


class NotSentError(ApiError):
    """A request refused before it left (a header value HTTP forbids, such as a token with a
    line break inside): nothing reached the server, so nothing needs re-reading."""


class OutcomeUnknown(ApiError):
    """A write whose answer was lost and whose re-read failed (or was stopped): whether it
    took is unknown. Its journal attempt stays open, so rollback treats it as possibly done
    and a rerun judges it on a fresh read."""


class InvalidStateError(ApiError):
    """Flow Service refused an action on the flow's current state (code ``1409-400``)."""


class AuthError(PinmigrateError):
    """Authentication is needed or was refused (Adobe IMS or Pinterest OAuth)."""

    exit_code = ExitCode.AUTH


class StalePlanError(PinmigrateError):
    """The world changed since the plan was made; nothing was changed."""

    exit_code = ExitCode.STALE

    def __init__(self, message: str, *, changes: list[str] | None = None) -> None:
        super().__init__(message)
        self.changes = changes or []


class ConfirmationError(PinmigrateError):
    """Confirmation was needed (no ``--yes`` without a terminal) or declined."""

    exit_code = ExitCode.CONFIRM


class Interrupted(PinmigrateError):
    """Ctrl-C stopped a run; the message says what it did and how to carry on (exit 130)."""

    exit_code = ExitCode.INTERRUPTED


class LockedError(PinmigrateError):
    """Another pinmigrate process holds the state dir's lock."""


class ApplyFailed(PinmigrateError):
    """An apply or rollback ended with an action that did not succeed (the report says which)."""


class ReconnectPending(ApplyFailed):
    """Apply did everything it could; what is left waits for accounts a person must reconnect
    in Adobe (exit 4: authentication needed)."""

    exit_code = ExitCode.AUTH


#: How many objects an error names before "... and N more".
NAMED_AT_MOST = 10


def listed(items: Iterable[object], *, limit: int = NAMED_AT_MOST, sep: str = ", ") -> str:
    """``a, b, c``: each distinct item once, in order; past ``limit``, ``..., and 15 more``."""
    distinct = list(dict.fromkeys(str(item) for item in items))
    shown = sep.join(distinct[:limit])
    more = len(distinct) - limit
    return f"{shown}{sep}... and {more} more" if more > 0 else shown


def name_all(
    items: Iterable[object],
    noun: str,
    plural: str | None = None,
    *,
    limit: int = NAMED_AT_MOST,
    sep: str = ", ",
) -> str:
    """Every affected object in one phrase, with their count: ``3 ad accounts: A, B, C``,
    ``25 flows: a, b, ... and 15 more`` (at most ``limit`` named). An error that concerns
    several objects names them all this way, never only the first."""
    distinct = list(dict.fromkeys(str(item) for item in items))
    count = len(distinct)
    word = noun if count == 1 else (plural or _plural(noun))
    return f"{count} {word}: {listed(distinct, limit=limit, sep=sep)}"


def _plural(noun: str) -> str:
    return f"{noun}es" if noun.endswith(("s", "x", "ch", "sh")) else f"{noun}s"
