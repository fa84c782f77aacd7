"""Secret redaction for everything pinmigrate logs.

Every secret the process learns (config secrets, IMS tokens, Pinterest tokens and codes)
is registered here the moment it is read; a logging filter then masks it in every record,
whatever module wrote the line.
"""

from __future__ import annotations

import logging
import re
import threading

MASK = "***"
_lock = threading.Lock()
_secrets: set[str] = set()
#: Patterns for secrets broken by whitespace or control characters (see :func:`_broken`).
_broken_patterns: set[str] = set()
_pattern: re.Pattern[str] | None = None
#: What :func:`redact` reads of the registry in one go, so that a concurrent register() is
#: seen whole or not at all: the pattern, the literal values (and pieces) it finds, and
#: whether any registered value was broken (a broken form needs a gap to match).
_registry: tuple[re.Pattern[str] | None, tuple[str, ...], bool] = (None, (), False)
#: Up to this many registered values, a string is searched for each with ``in`` (a few
#: substring scans); past it, one pass of the registry's pattern.
_LITERAL_CHECKS = 8
#: Shortest value (or piece of a broken value) worth masking: shorter ones would mask words.
MIN_LENGTH = 4
#: What breaks a secret into pieces: whitespace and control characters.
_BREAK = re.compile(r"[\s\x00-\x1f\x7f]+")
#: What may stand between two pieces once a message is shown: the break itself, spaces (an
#: error line joins lines, ``one_line`` collapses runs), or its escaped form (``repr`` and
#: JSON write a newline as backslash-n, e.g. requests' InvalidHeader message).
_GAP = r"(?:[\s\x00-\x1f\x7f]|\\(?:[nrtvfab0]|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}))+"
#: Values that look like secrets in URLs and forms, masked even when never registered.
_FIELD = re.compile(
    r"(?i)(\b(?:access_token|refresh_token|client_secret|app_secret|token|password|secret"
    r"|accessToken|refreshToken)[\"']?\s*[=:]\s*[\"']?)([^&\s\"',}]+)"
)
_CODE = re.compile(r"(?i)([?&]code=)([^&\s]+)")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")


def _broken(value: str) -> tuple[list[str], str | None]:
    """The pieces of a value broken by whitespace or control characters, and a pattern that
    finds the whole value however the breaks were rewritten; ([], None) for an unbroken one.

    A token with a newline inside is shown with that newline turned into a space (one error
    line), a run of spaces collapsed, or written as backslash-n: the literal value no longer
    matches, and neither half alone would be masked.
    """
    if not _BREAK.search(value):
        return [], None
    pieces = [piece for piece in _BREAK.split(value) if piece]
    pattern = _GAP.join(re.escape(piece) for piece in pieces) if len(pieces) > 1 else None
    return [piece for piece in pieces if len(piece) >= MIN_LENGTH], pattern


def register(*values: str | None) -> None:
    """Remember secret values so that :func:`redact` masks them from now on.

    A value broken by a line break (or other whitespace) is masked whole however the break
    is shown, and each of its pieces is masked on its own as well.
    """
    global _pattern, _registry
    with _lock:
        added = False
        for value in values:
            if not value or len(value) < MIN_LENGTH or value in _secrets:
                continue
            pieces, pattern = _broken(value)
            _secrets.update([value, *pieces])
            if pattern is not None:
                _broken_patterns.add(pattern)
            added = True
        if added:
            ordered = sorted(_secrets, key=len, reverse=True)
            # The broken forms first: each is longer than any of its own pieces.
            whole = sorted(_broken_patterns, key=len, reverse=True)
            _pattern = re.compile("|".join([*whole, *(re.escape(v) for v in ordered)]))
            _registry = (_pattern, tuple(ordered), bool(_broken_patterns))


def reset() -> None:
    """Forget every registered secret (a new process starts this way; tests call it)."""
    global _pattern, _registry
    with _lock:
        _secrets.clear()
        _broken_patterns.clear()
        _pattern = None
        _registry = (None, (), False)


def _untouched(text: str, registry: tuple[re.Pattern[str] | None, tuple[str, ...], bool]) -> bool:
    """Whether no pattern of :func:`redact` can match ``text``, told without running them.

    Only for ASCII text, where lower case is exact (under ``re.IGNORECASE`` the Kelvin sign
    matches "k" and a long s "s"): a field, code or bearer pattern needs one of the
    trigger words; a broken secret needs a gap (whitespace, a control character, or the
    backslash of an escape); a whole one or a piece occurs literally. Ids, states, etags and
    timestamps pass; anything else goes through the patterns.
    """
    if not text.isascii():
        return False
    lower = text.lower()
    # Spelled out rather than a loop or a regex: this runs for every string of every journal
    # record. Every ``_FIELD`` name holds "token", "secret" or "password".
    if (
        "token" in lower
        or "secret" in lower
        or "password" in lower
        or "code=" in lower
        or "bearer" in lower
        or "basic" in lower
    ):
        return False
    pattern, literals, broken = registry
    if pattern is None:
        return True
    if broken and (" " in text or "\\" in text or not text.isprintable()):
        return False
    if len(literals) > _LITERAL_CHECKS:
        return pattern.search(text) is None
    # A plain loop: a generator in all() costs more than the few scans it makes.
    for value in literals:  # noqa: SIM110
        if value in text:
            return False
    return True


def redact(text: str) -> str:
    """Mask registered secrets, bearer/basic credentials and secret-looking fields."""
    registry = _registry
    if _untouched(text, registry):
        return text
    pattern = registry[0]
    if pattern is not None:
        text = pattern.sub(MASK, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = _CODE.sub(lambda m: m.group(1) + MASK, text)
    return _FIELD.sub(lambda m: m.group(1) + MASK, text)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = redact(message)
        record.args = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
