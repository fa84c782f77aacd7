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
_pattern: re.Pattern[str] | None = None
#: Values that look like secrets in URLs and forms, masked even when never registered.
_FIELD = re.compile(
    r"(?i)(\b(?:access_token|refresh_token|client_secret|app_secret|token|password|secret"
    r"|accessToken|refreshToken)[\"']?\s*[=:]\s*[\"']?)([^&\s\"',}]+)"
)
_CODE = re.compile(r"(?i)([?&]code=)([^&\s]+)")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")


def register(*values: str | None) -> None:
    """Remember secret values so that :func:`redact` masks them from now on."""
    global _pattern
    with _lock:
        added = False
        for value in values:
            if value and len(value) >= 4 and value not in _secrets:
                _secrets.add(value)
                added = True
        if added:
            ordered = sorted(_secrets, key=len, reverse=True)
            _pattern = re.compile("|".join(re.escape(v) for v in ordered))


def reset() -> None:
    """Forget every registered secret (a new process starts this way; tests call it)."""
    global _pattern
    with _lock:
        _secrets.clear()
        _pattern = None


def redact(text: str) -> str:
    """Mask registered secrets, bearer/basic credentials and secret-looking fields."""
    pattern = _pattern
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
