"""Error answers of the emulated services, as the real ones shape them.

Backends raise :class:`Problem` (status, body, headers) and the server serialises it;
:class:`ConsentError` becomes Pinterest's HTML error page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pinmigrate.emulator.model import ORG_ID, JsonDict

FLOW_ERRORS = "https://ns.adobe.com/aep/errors/"


class Problem(Exception):
    """An error answer: HTTP status, JSON body (or None) and extra headers."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


class ConsentError(Exception):
    """The authorize request cannot be shown a consent page (answered as an HTML error page)."""


def gateway_error(status: int, code: int, message: str, *, as_text: bool = False) -> Problem:
    """The Platform gateway's refusal: ``error_code`` a number, as in Adobe's example
    (api-notes.md §2), or its digits as a string with ``as_text`` (also accepted by clients)."""
    return Problem(status, {"error_code": str(code) if as_text else code, "message": message})


def flow_error(
    status: int, message: str, *, sandbox: str | None, code: str, title: str, details: str = ""
) -> Problem:
    body: JsonDict = {
        "type": f"{FLOW_ERRORS}{code}-{status}",
        "title": title,
        "status": status,
        "report": {
            "tenantInfo": {"sandboxName": sandbox, "imsOrgId": ORG_ID},
            "additionalContext": None,
        },
        "errorMessage": message,
    }
    if details:
        body["errorDetails"] = details
    return Problem(status, body)


def bad_request(message: str, *, sandbox: str | None, details: str = "") -> Problem:
    return flow_error(
        400, message, sandbox=sandbox, code="FLOW-1002", title="Bad request", details=details
    )


def pinterest_error(status: int, code: int, message: str) -> Problem:
    return Problem(status, {"code": code, "message": message})


def ims_error(status: int, error: str, description: str) -> Problem:
    return Problem(status, {"error": error, "error_description": description})


def first(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


class PageError(Exception):
    """A page for people cannot be served (answered as an HTML error page with ``status``)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(f"{title}: {message}")
        self.status = status
        self.title = title
        self.message = message
