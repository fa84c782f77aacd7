"""A JSON answer as pinmigrate reads it: decoded, with lone surrogates mended.

JSON may spell a UTF-16 surrogate on its own (``"\\ud800"``): valid JSON, but no Unicode
text. Python decodes it into a ``str`` that cannot be encoded, so a name carrying one broke
plan's JSON output and any line printed to a terminal, and an id or a bookmark carrying one
broke the next request's query. Such a character becomes U+FFFD, the replacement character,
as a decoder does with any other bytes that are not text.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import requests

#: ``\\uD800`` to ``\\uDFFF`` as JSON escapes them (a surrogate cannot come as UTF-8 bytes).
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def decoded(response: requests.Response) -> Any:
    """``response.json()``, every lone surrogate replaced; raises as ``json()`` does."""
    document = response.json()
    # Escaped pairs (an emoji as \ud83d\udca5) decode to one character: only an answer that
    # escapes a surrogate at all is walked, so plain answers cost one scan of their bytes.
    if _ESCAPED_SURROGATE.search(response.content):
        document = mended(document)
    return document


def mended(document: Any) -> Any:
    """``document`` with lone surrogates in every string (keys too) replaced by U+FFFD."""
    if isinstance(document, str):
        return _SURROGATE.sub(REPLACEMENT, document)
    if isinstance(document, dict):
        return {mended(key): mended(value) for key, value in document.items()}
    if isinstance(document, list):
        return [mended(item) for item in document]
    return document
