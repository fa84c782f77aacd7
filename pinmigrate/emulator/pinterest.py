"""Pinterest v5: the OAuth consent page and token endpoint, ``/user_account`` and ``/ad_accounts``.

Users and ad accounts come from the scenario; codes and tokens are issued here, and a
refresh revokes the refresh token it replaces (continuous refresh).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from pinmigrate.emulator.context import Context
from pinmigrate.emulator.model import (
    PINTEREST_APP_ID,
    PINTEREST_APP_NAME,
    PINTEREST_APP_SECRET,
    PINTEREST_SCOPES,
    AdAccount,
    JsonDict,
    PinterestUser,
    World,
)
from pinmigrate.emulator.problems import ConsentError, Problem, first, pinterest_error
from pinmigrate.settings import is_loopback_host

PINTEREST_ACCESS_LIFETIME = 2_592_000  # 30 days
PINTEREST_REFRESH_LIFETIME = 5_184_000  # 60 days
CODE_LIFETIME = 600.0


@dataclass
class AuthorizeRequest:
    client_id: str
    redirect_uri: str
    scopes: list[str]
    state: str | None


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    user_id: str
    scopes: list[str]
    created: float
    used: bool = False


@dataclass
class PinterestToken:
    token: str
    kind: str  # "access" | "refresh"
    user_id: str
    scopes: list[str]
    expires_at: float
    issued_at: float
    revoked: bool = False
    replaced_by: str | None = None
    continuous: bool = True

    def as_json(self) -> JsonDict:
        return asdict(self)


def check_authorize(params: Mapping[str, str]) -> AuthorizeRequest:
    """Validate ``GET /oauth/`` parameters; ConsentError says what is wrong."""
    client_id = params.get("client_id") or params.get("consumer_id") or ""
    if not client_id:
        raise ConsentError("The request names no app (client_id).")
    if client_id != PINTEREST_APP_ID:
        raise ConsentError(f"Unknown app {client_id!r}: no app with this id is registered.")
    if params.get("response_type") != "code":
        raise ConsentError("response_type must be 'code'.")
    redirect_uri = params.get("redirect_uri", "")
    parts = urlsplit(redirect_uri)
    if parts.scheme not in ("http", "https") or not is_loopback_host(parts.hostname):
        raise ConsentError(
            f"The redirect URI {redirect_uri!r} is not registered for this app "
            "(the emulator registers every loopback http:// URI)."
        )
    scopes = split_scopes(params.get("scope", ""))
    if not scopes:
        raise ConsentError("The request asks for no scope.")
    unknown = [s for s in scopes if s not in PINTEREST_SCOPES]
    if unknown:
        raise ConsentError(f"Unknown scope(s): {', '.join(unknown)}.")
    return AuthorizeRequest(client_id, redirect_uri, scopes, params.get("state"))


class PinterestBackend:
    """Pinterest's users, ad accounts, authorization codes and tokens."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self.install(World(scenario="", sandboxes=[]))

    def install(self, world: World) -> None:
        """Take the users of ``world``; every code and token issued so far is forgotten."""
        with self.context.lock:
            self.users = {u.id: u for u in world.users}
            self.usernames = {u.username: u for u in world.users}
            self.ad_accounts: dict[str, AdAccount] = world.ad_accounts
            self.default_user = world.default_user
            self.codes: dict[str, AuthCode] = {}
            self.tokens: dict[str, PinterestToken] = {}

    def access_token_owner(self, token: str) -> str | None:
        """The id of the user an access token was issued to (expired or not), else None."""
        record = self.tokens.get(token)
        return record.user_id if record is not None and record.kind == "access" else None

    def dump(self) -> JsonDict:
        """Users with their ad accounts (the dump adds credential owners)."""
        return {
            "app_id": PINTEREST_APP_ID,
            "app_name": PINTEREST_APP_NAME,
            "users": [
                {
                    **u.account(),
                    "ad_accounts": [self.ad_accounts[a].as_json(u.id) for a in u.ad_account_ids],
                }
                for u in self.users.values()
            ],
        }

    def dump_secrets(self) -> JsonDict:
        return {
            "pinterest_tokens": [t.as_json() for t in self.tokens.values()],
            "pinterest_codes": [asdict(c) for c in self.codes.values()],
        }

    def user_by_name(self, name: str) -> PinterestUser | None:
        with self.context.lock:
            return self.usernames.get(name) or self.users.get(name)

    def approve(self, request: AuthorizeRequest, username: str | None = None) -> str:
        """The redirect URL carrying a fresh single-use code for ``username``."""
        user = self.user_by_name(username or self.context.config.auto_approve_user)
        if user is None:
            raise ConsentError(f"Unknown user {username!r}.")
        code = secrets.token_hex(20)
        with self.context.lock:
            self.codes[code] = AuthCode(
                code,
                request.client_id,
                request.redirect_uri,
                user.id,
                list(request.scopes),
                self.context.clock(),
            )
        return _with_query(request.redirect_uri, {"code": code, "state": request.state})

    def deny(self, request: AuthorizeRequest) -> str:
        return _with_query(request.redirect_uri, {"error": "access_denied", "state": request.state})

    def token_endpoint(self, authorization: str | None, form: Mapping[str, str]) -> JsonDict:
        """``POST /v5/oauth/token``: Basic client auth, then the code or refresh grant."""
        if _basic_credentials(authorization) != (PINTEREST_APP_ID, PINTEREST_APP_SECRET):
            raise pinterest_error(401, 2, "Authentication failed.")
        grant = form.get("grant_type")
        with self.context.lock:
            if grant == "authorization_code":
                return self._exchange_code(form)
            if grant == "refresh_token":
                return self._refresh(form)
        raise pinterest_error(
            400, 1, f"Invalid grant_type {grant!r}: use authorization_code or refresh_token."
        )

    def _exchange_code(self, form: Mapping[str, str]) -> JsonDict:
        code = self.codes.get(form.get("code", ""))
        if code is None:
            raise pinterest_error(400, 1, "Invalid authorization code.")
        if code.used:
            raise pinterest_error(400, 1, "Authorization code has already been used.")
        if self.context.clock() - code.created > CODE_LIFETIME:
            raise pinterest_error(400, 1, "Authorization code has expired.")
        if form.get("redirect_uri") != code.redirect_uri:
            raise pinterest_error(
                400, 1, "redirect_uri does not match the one of the authorization request."
            )
        code.used = True
        continuous = (form.get("continuous_refresh") or "").lower() == "true"
        return self._issue(code.user_id, code.scopes, "authorization_code", continuous=continuous)

    def _refresh(self, form: Mapping[str, str]) -> JsonDict:
        record = self.tokens.get(form.get("refresh_token", ""))
        if (
            record is None
            or record.kind != "refresh"
            or record.revoked
            or record.expires_at <= self.context.clock()
        ):
            raise pinterest_error(
                401,
                2,
                "Authentication failed. The refresh token is invalid, expired or was replaced "
                "by a newer one.",
            )
        result = self._issue(record.user_id, record.scopes, "refresh_token", continuous=True)
        # Continuous refresh: the old refresh token dies the moment a new one is issued.
        record.revoked = True
        record.replaced_by = result["refresh_token"]
        return result

    def _issue(
        self,
        user_id: str,
        scopes: list[str],
        response_type: str,
        *,
        continuous: bool,
        access_lifetime: int = PINTEREST_ACCESS_LIFETIME,
        refresh_lifetime: int = PINTEREST_REFRESH_LIFETIME,
    ) -> JsonDict:
        now = self.context.clock()
        granted = list(scopes)
        for extra in split_scopes(self.context.config.extra_scope or ""):
            if extra not in granted:
                granted.append(extra)
        access = PinterestToken(
            "pina_" + secrets.token_urlsafe(32),
            "access",
            user_id,
            granted,
            now + access_lifetime,
            now,
        )
        refresh = PinterestToken(
            "pinr_" + secrets.token_urlsafe(32),
            "refresh",
            user_id,
            granted,
            now + refresh_lifetime,
            now,
            continuous=continuous,
        )
        self.tokens[access.token] = access
        self.tokens[refresh.token] = refresh
        return {
            "access_token": access.token,
            "refresh_token": refresh.token,
            "response_type": response_type,
            "token_type": "bearer",
            "expires_in": access_lifetime,
            "refresh_token_expires_in": refresh_lifetime,
            "refresh_token_expires_at": int(now + refresh_lifetime),
            "scope": self.context.config.scope_separator.join(granted),
        }

    def mint_tokens(self, request: Mapping[str, Any]) -> JsonDict:
        """Tokens for a user without the browser (``POST /_emulator/tokens``), for CI paths."""
        unknown = set(request) - {"user", "scope", "expires_in", "refresh_token_expires_in"}
        if unknown:
            raise Problem(400, {"error": f"unknown fields {sorted(unknown)}"})
        name = str(request.get("user") or self.context.config.auto_approve_user)
        user = self.user_by_name(name)
        if user is None:
            raise Problem(400, {"error": f"unknown user {name!r}; known: {sorted(self.usernames)}"})
        scope = request.get("scope") or "ads:read,ads:write,user_accounts:read"
        scopes = split_scopes(" ".join(scope) if isinstance(scope, list) else str(scope))
        try:
            access = int(request.get("expires_in") or PINTEREST_ACCESS_LIFETIME)
            refresh = int(request.get("refresh_token_expires_in") or PINTEREST_REFRESH_LIFETIME)
        except (TypeError, ValueError):
            raise Problem(400, {"error": "expires_in values must be integers"}) from None
        with self.context.lock:
            return self._issue(
                user.id,
                scopes,
                "authorization_code",
                continuous=True,
                access_lifetime=access,
                refresh_lifetime=refresh,
            )

    # --- Pinterest API -------------------------------------------------------------------

    def _bearer(self, authorization: str | None, scope: str) -> PinterestUser:
        scheme, _, token = (authorization or "").strip().partition(" ")
        with self.context.lock:
            record = self.tokens.get(token.strip())
            if (
                scheme.lower() != "bearer"
                or record is None
                or record.kind != "access"
                or record.revoked
                or record.expires_at <= self.context.clock()
            ):
                raise pinterest_error(401, 2, "Authentication failed.")
            if scope not in record.scopes:
                raise pinterest_error(403, 3, f"Not authorized: the token lacks scope {scope}.")
            return self.users[record.user_id]

    def user_account(self, authorization: str | None) -> JsonDict:
        return self._bearer(authorization, "user_accounts:read").account()

    def list_ad_accounts(
        self, authorization: str | None, params: Mapping[str, list[str]]
    ) -> JsonDict:
        user = self._bearer(authorization, "ads:read")
        raw_size = first(params, "page_size")
        try:
            size = int(raw_size) if raw_size is not None else 25
        except ValueError:
            size = 0
        if not 1 <= size <= 250:
            raise pinterest_error(400, 1, f"Invalid page_size {raw_size!r}: use 1 to 250.")
        offset = 0
        bookmark = first(params, "bookmark")
        if bookmark:
            try:
                offset = int(base64.urlsafe_b64decode(bookmark + "=" * (-len(bookmark) % 4)))
            except (ValueError, binascii.Error):
                offset = -1
            if offset < 0:
                raise pinterest_error(400, 1, "Invalid bookmark.")
        shared = (first(params, "include_shared_accounts") or "true").lower() != "false"
        with self.context.lock:
            accounts = [
                self.ad_accounts[a].as_json(user.id)
                for a in user.ad_account_ids
                if shared or self.ad_accounts[a].owner_id == user.id
            ]
        page = accounts[offset : offset + size]
        more = offset + size < len(accounts)
        next_bookmark = (
            base64.urlsafe_b64encode(str(offset + size).encode()).decode().rstrip("=")
            if more
            else None
        )
        return {"items": page, "bookmark": next_bookmark}


# --- helpers --------------------------------------------------------------------------------


def split_scopes(text: str) -> list[str]:
    return [s for s in text.replace(",", " ").split() if s]


def _with_query(url: str, extra: Mapping[str, str | None]) -> str:
    parts = urlsplit(url)
    added = urlencode({k: v for k, v in extra.items() if v is not None})
    query = f"{parts.query}&{added}" if parts.query else added
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    scheme, _, encoded = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, binascii.Error):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None
