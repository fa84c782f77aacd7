"""Adobe IMS and the Platform gateway: client-credentials tokens and every call's checks."""

from __future__ import annotations

import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from pinmigrate.emulator.context import Context
from pinmigrate.emulator.model import CLIENT_ID, CLIENT_SECRET, ORG_ID, JsonDict
from pinmigrate.emulator.problems import gateway_error, ims_error

IMS_TOKEN_LIFETIME = 86399


@dataclass(frozen=True)
class Caller:
    """Who a Platform call came from, once the gateway let it through."""

    client_id: str
    sandbox: str


@dataclass
class _ImsToken:
    client_id: str
    expires_at: float


class ImsBackend:
    """Issues IMS tokens and lets Platform calls through the gateway.

    Tokens survive a scenario reset: they belong to the tool's session, not to the world.
    """

    def __init__(self, context: Context) -> None:
        self.context = context
        self._tokens: dict[str, _ImsToken] = {}

    def ims_token(self, form: Mapping[str, str]) -> JsonDict:
        grant = form.get("grant_type")
        client_id = form.get("client_id")
        if grant != "client_credentials":
            raise ims_error(
                400,
                "unsupported_grant_type",
                f"grant_type {grant!r} is not supported; use client_credentials",
            )
        if not client_id:
            raise ims_error(400, "invalid_request", "missing client_id parameter")
        if client_id != CLIENT_ID:
            raise ims_error(400, "invalid_client", "invalid client_id parameter")
        if form.get("client_secret") != CLIENT_SECRET:
            raise ims_error(401, "invalid_client", "invalid client_secret parameter")
        token = "emu_ims_" + secrets.token_urlsafe(24)
        with self.context.lock:
            expires_at = self.context.clock() + IMS_TOKEN_LIFETIME
            self._tokens[token] = _ImsToken(client_id, expires_at)
        return {"access_token": token, "token_type": "bearer", "expires_in": IMS_TOKEN_LIFETIME}

    def authenticate_platform(
        self, headers: Mapping[str, str], sandboxes: Collection[str]
    ) -> Caller:
        """The gateway's checks, in its order; ``headers`` keys are lower case."""
        auth = headers.get("authorization", "").strip()
        if not auth:
            raise self._refusal(403, 403010, "Oauth token is missing.")
        scheme, _, token = auth.partition(" ")
        with self.context.lock:
            record = self._tokens.get(token.strip())
            valid = record is not None and record.expires_at > self.context.clock()
        if scheme.lower() != "bearer" or record is None or not valid:
            raise self._refusal(401, 401013, "Oauth token is not valid")
        api_key = headers.get("x-api-key", "").strip()
        if not api_key:
            raise self._refusal(403, 403000, "Api Key is required")
        if api_key != record.client_id:
            raise self._refusal(403, 403003, "Api Key is invalid")
        org = headers.get("x-gw-ims-org-id", "").strip()
        if not org:
            raise self._refusal(400, 400003, "Missing header x-gw-ims-org-id")
        if org != ORG_ID:
            raise self._refusal(403, 403025, "Profile is not valid")
        sandbox = headers.get("x-sandbox-name", "").strip() or "prod"
        if sandbox not in sandboxes:
            raise self._refusal(
                403,
                403027,
                f"Sandbox '{sandbox}' does not exist or is not accessible to this client",
            )
        return Caller(client_id=record.client_id, sandbox=sandbox)

    def _refusal(self, status: int, code: int, message: str) -> Exception:
        return gateway_error(status, code, message, as_text=self.context.config.gateway_code_text)

    def dump_tokens(self) -> list[JsonDict]:
        """The tokens in clear, for the test-only state dump."""
        with self.context.lock:
            return [
                {"token": t, "client_id": r.client_id, "expires_at": r.expires_at}
                for t, r in self._tokens.items()
            ]
