"""Pinterest v5: the OAuth consent page and token endpoint, ``/user_account`` and ``/ad_accounts``.

Users and ad accounts come from the scenario; codes and tokens are issued here, and a
refresh revokes the refresh token it replaces (continuous refresh). Two apps are registered:
pinmigrate's and Adobe's, the client behind the Pinterest card's "Reconnect OAuth" (its
callback on the emulator's own base URL only). Codes and tokens are bound to the app they were
issued to: only that app may exchange or refresh them, while an access token works as a bearer
token whoever minted it.

Redirect URIs are matched as Pinterest matches them: the authorize request's ``redirect_uri``
must equal one registered on the app, character for character (no other port, no missing or
extra trailing slash, ``localhost`` is not ``127.0.0.1``), and the code exchange must send the
code's own (api-notes.md §4; pinterest/api-quickstart ``python/src/api_config.py``: the URI
"must be literally the same as configured" on the app). pinmigrate's app registers pinmigrate's
default ``pinterest.redirect_uri``; more are registered with :meth:`register_redirect_uri`
(``POST /_emulator/apps/{id}/redirect_uris``, ``pinmigrate emulator --redirect-uri``). They
belong to the app, not to the scenario: a reset keeps them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from pinmigrate.emulator.context import Context
from pinmigrate.emulator.model import (
    ADOBE_APP_ID,
    ADOBE_APP_NAME,
    ADOBE_CALLBACK_PATH,
    PINTEREST_ACCESS_LIFETIME,
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
from pinmigrate.settings import DEFAULT_REDIRECT_URI, is_loopback_host

PINTEREST_REFRESH_LIFETIME = 5_184_000  # 60 days
#: ``GET /ad_accounts`` query parameters and ``page_size`` maximum, from Pinterest's description
#: (tests/data/pinterest-v5-openapi.json, ``Pinterest.Lib.BookmarkParams``).
AD_ACCOUNTS_PARAMS = frozenset({"include_shared_accounts", "bookmark", "page_size"})
MAX_PAGE_SIZE = 250
CODE_LIFETIME = 600.0


@dataclass(frozen=True)
class PinterestApp:
    """A registered app: its credentials and where it may send people back to."""

    id: str
    name: str
    secret: str = field(repr=False)
    #: The one registered redirect path (on the emulator's base URL); None: the app's list of
    #: registered redirect URIs (:attr:`PinterestBackend.redirect_uris`) applies.
    redirect_path: str | None = None


#: RFC 7636 §4.1/§4.2: a verifier, and a challenge, is 43 to 128 unreserved characters.
PKCE_VALUE = re.compile(r"[A-Za-z0-9._~-]{43,128}")
PKCE_PARAMS = ("code_challenge", "code_challenge_method")


@dataclass
class AuthorizeRequest:
    client_id: str
    redirect_uri: str
    scopes: list[str]
    state: str | None
    #: (challenge, method) when the request carried PKCE and the emulator verifies it.
    pkce: tuple[str, str] | None = None


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    user_id: str
    scopes: list[str]
    created: float
    used: bool = False
    pkce: tuple[str, str] | None = None


@dataclass
class PinterestToken:
    token: str
    kind: str  # "access" | "refresh"
    client_id: str
    user_id: str
    scopes: list[str]
    expires_at: float
    issued_at: float
    revoked: bool = False
    replaced_by: str | None = None
    continuous: bool = True

    def as_json(self) -> JsonDict:
        return asdict(self)


class PinterestBackend:
    """Pinterest's users, ad accounts, authorization codes and tokens."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self.apps = {
            PINTEREST_APP_ID: PinterestApp(
                PINTEREST_APP_ID, PINTEREST_APP_NAME, PINTEREST_APP_SECRET
            ),
            ADOBE_APP_ID: PinterestApp(
                ADOBE_APP_ID,
                ADOBE_APP_NAME,
                secrets.token_urlsafe(24),
                redirect_path=ADOBE_CALLBACK_PATH,
            ),
        }
        #: The exact redirect URIs registered on pinmigrate's app, in registration order.
        self.redirect_uris: dict[str, list[str]] = {PINTEREST_APP_ID: [DEFAULT_REDIRECT_URI]}
        self.install(World(scenario="", sandboxes=[]))

    def registered_redirect(self, app: PinterestApp) -> str | None:
        """The exact redirect URI registered for Adobe's app: its path on the emulator's base URL.

        None for an app with a list of URIs (:meth:`registered_redirects`), and for Adobe's
        while no server listens (then any loopback URI with its path).
        """
        if app.redirect_path is None or self.context.base_url is None:
            return None
        return self.context.base_url + app.redirect_path

    def registered_redirects(self, app: PinterestApp) -> list[str] | None:
        """Every redirect URI registered for ``app``; None while Adobe's has no base URL."""
        if app.redirect_path is not None:
            registered = self.registered_redirect(app)
            return [registered] if registered is not None else None
        with self.context.lock:
            return list(self.redirect_uris.get(app.id, ()))

    def register_redirect_uri(self, client_id: str, uri: str) -> list[str]:
        """Register ``uri`` on an app as exactly as given; the app's list afterwards.

        ValueError for an unknown app, Adobe's app (its callback is fixed) or a URI that is
        not an absolute http(s) URL without a fragment.
        """
        app = self.apps.get(client_id)
        if app is None:
            raise ValueError(f"no app {client_id!r}; known: {sorted(self.apps)}")
        if app.redirect_path is not None:
            raise ValueError(
                f"app {client_id} ({app.name}) has one fixed callback, {app.redirect_path} on "
                "the emulator's own address"
            )
        parts = urlsplit(uri) if isinstance(uri, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"redirect URI {uri!r} must be an absolute http:// or https:// URL")
        if "#" in uri:
            raise ValueError(f"redirect URI {uri!r} must not carry a fragment")
        with self.context.lock:
            registered = self.redirect_uris.setdefault(app.id, [])
            if uri not in registered:
                registered.append(uri)
            return list(registered)

    def check_authorize(self, params: Mapping[str, str]) -> AuthorizeRequest:
        """Validate ``GET /oauth/`` parameters; ConsentError says what is wrong."""
        client_id = params.get("client_id") or params.get("consumer_id") or ""
        if not client_id:
            raise ConsentError("The request names no app (client_id).")
        app = self.apps.get(client_id)
        if app is None:
            raise ConsentError(f"Unknown app {client_id!r}: no app with this id is registered.")
        if params.get("response_type") != "code":
            raise ConsentError("response_type must be 'code'.")
        redirect_uri = params.get("redirect_uri", "")
        parts = urlsplit(redirect_uri)
        loopback = parts.scheme in ("http", "https") and is_loopback_host(parts.hostname)
        registered = self.registered_redirect(app)
        if app.redirect_path is None:
            listed = self.registered_redirects(app) or []
            if redirect_uri not in listed:
                raise ConsentError(
                    f"The redirect URI {redirect_uri!r} is not registered for this app "
                    f"(it registers {', '.join(listed) or 'none'}; the emulator registers more "
                    f"with POST /_emulator/apps/{app.id}/redirect_uris or "
                    "pinmigrate emulator --redirect-uri)."
                )
        elif (
            not loopback
            or parts.path != app.redirect_path
            or (registered is not None and redirect_uri != registered)
        ):
            raise ConsentError(
                f"The redirect URI {redirect_uri!r} is not registered for this app "
                f"(it registers {registered or 'its callback ' + app.redirect_path})."
            )
        scopes = split_scopes(params.get("scope", ""))
        if not scopes:
            raise ConsentError("The request asks for no scope.")
        unknown = [s for s in scopes if s not in PINTEREST_SCOPES]
        if unknown:
            raise ConsentError(f"Unknown scope(s): {', '.join(unknown)}.")
        return AuthorizeRequest(
            client_id, redirect_uri, scopes, params.get("state"), self._pkce_of(params)
        )

    def _pkce_of(self, params: Mapping[str, str]) -> tuple[str, str] | None:
        """The PKCE challenge to verify at the exchange, after Config.pkce."""
        sent = [p for p in PKCE_PARAMS if p in params]
        mode = self.context.config.pkce
        if not sent or mode == "ignore":
            return None
        if mode == "refuse":
            raise ConsentError(f"Unknown parameter(s): {', '.join(sent)}.")
        challenge = params.get("code_challenge") or ""
        method = params.get("code_challenge_method") or "plain"  # RFC 7636 §4.3 default
        if method not in ("S256", "plain"):
            raise ConsentError(f"Unsupported code_challenge_method {method!r}: use S256.")
        if not PKCE_VALUE.fullmatch(challenge):
            raise ConsentError("Invalid code_challenge: 43 to 128 unreserved characters.")
        return challenge, method

    def app_name(self, client_id: str) -> str:
        app = self.apps.get(client_id)
        return app.name if app is not None else client_id

    def basic_authorization(self, client_id: str) -> str:
        """The ``Authorization: Basic`` value of a registered app (for Adobe's own exchange)."""
        app = self.apps[client_id]
        raw = f"{app.id}:{app.secret}".encode()
        return "Basic " + base64.b64encode(raw).decode()

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
            "apps": [
                {"id": app.id, "name": app.name, "redirect_uris": self.registered_redirects(app)}
                for app in self.apps.values()
            ],
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
        code = self.grant(request, username)
        return _with_query(request.redirect_uri, {"code": code, "state": request.state})

    def grant(self, request: AuthorizeRequest, username: str | None = None) -> str:
        """A fresh single-use code of ``request``'s app for ``username`` (default: the
        consent page's default user)."""
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
                pkce=request.pkce,
            )
        return code

    def deny(self, request: AuthorizeRequest) -> str:
        return _with_query(request.redirect_uri, {"error": "access_denied", "state": request.state})

    def token_endpoint(self, authorization: str | None, form: Mapping[str, str]) -> JsonDict:
        """``POST /v5/oauth/token``: Basic client auth, then the code or refresh grant.

        A code or refresh token issued to another app is refused as bad client auth is.
        """
        credentials = _basic_credentials(authorization)
        app = self.apps.get(credentials[0]) if credentials is not None else None
        if app is None or credentials is None or credentials[1] != app.secret:
            raise _client_refused()
        grant = form.get("grant_type")
        with self.context.lock:
            if grant == "authorization_code":
                return self._exchange_code(app, form)
            if grant == "refresh_token":
                return self._refresh(app, form)
        raise pinterest_error(
            400, 1, f"Invalid grant_type {grant!r}: use authorization_code or refresh_token."
        )

    def _exchange_code(self, app: PinterestApp, form: Mapping[str, str]) -> JsonDict:
        code = self.codes.get(form.get("code", ""))
        if code is None:
            raise pinterest_error(400, 1, "Invalid authorization code.")
        if code.client_id != app.id:
            raise _client_refused()
        if code.used:
            raise pinterest_error(400, 1, "Authorization code has already been used.")
        if self.context.clock() - code.created > CODE_LIFETIME:
            raise pinterest_error(400, 1, "Authorization code has expired.")
        if form.get("redirect_uri") != code.redirect_uri:
            raise pinterest_error(
                400, 1, "redirect_uri does not match the one of the authorization request."
            )
        self._check_verifier(code, form.get("code_verifier"))
        code.used = True
        continuous = (form.get("continuous_refresh") or "").lower() == "true"
        return self._issue(
            app.id, code.user_id, code.scopes, "authorization_code", continuous=continuous
        )

    def _check_verifier(self, code: AuthCode, verifier: str | None) -> None:
        """RFC 7636 §4.6, after Config.pkce; a refused verifier leaves the code unused."""
        if verifier is not None and self.context.config.pkce == "refuse":
            raise pinterest_error(400, 1, "Unknown parameter: code_verifier.")
        if code.pkce is None:
            return
        challenge, method = code.pkce
        if verifier is None or not PKCE_VALUE.fullmatch(verifier):
            raise pinterest_error(400, 1, "code_verifier is missing or malformed.")
        derived = verifier if method == "plain" else _s256(verifier)
        if not hmac.compare_digest(derived.encode(), challenge.encode()):
            raise pinterest_error(400, 1, "code_verifier does not match the code_challenge.")

    def _refresh(self, app: PinterestApp, form: Mapping[str, str]) -> JsonDict:
        record = self.tokens.get(form.get("refresh_token", ""))
        if record is not None and record.kind == "refresh" and record.client_id != app.id:
            raise _client_refused()
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
        result = self._issue(
            app.id, record.user_id, record.scopes, "refresh_token", continuous=True
        )
        # Continuous refresh: the old refresh token dies the moment a new one is issued,
        # unless the emulator serves the other reading (Config.revoke_rotated_refresh).
        record.replaced_by = result["refresh_token"]
        record.revoked = self.context.config.revoke_rotated_refresh
        return result

    def _issue(
        self,
        client_id: str,
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
            client_id,
            user_id,
            granted,
            now + access_lifetime,
            now,
        )
        refresh = PinterestToken(
            "pinr_" + secrets.token_urlsafe(32),
            "refresh",
            client_id,
            user_id,
            granted,
            now + refresh_lifetime,
            now,
            continuous=continuous,
        )
        self.tokens[access.token] = access
        self.tokens[refresh.token] = refresh
        # The spec's integers, or the quickstart fixtures' strings (api-notes.md §4).
        lifetime: Callable[[int], int | str] = str if self.context.config.expires_as_string else int
        return {
            "access_token": access.token,
            "refresh_token": refresh.token,
            "response_type": response_type,
            "token_type": "bearer",
            "expires_in": lifetime(access_lifetime),
            "refresh_token_expires_in": lifetime(refresh_lifetime),
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
                PINTEREST_APP_ID,
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
        """``GET /v5/ad_accounts``: the parameters and ranges of Pinterest's description
        (``include_shared_accounts`` boolean, ``bookmark``, ``page_size`` 1 to 250, default 25);
        anything else answers 400 in Pinterest's ``{code, message}`` shape."""
        user = self._bearer(authorization, "ads:read")
        unknown = sorted(set(params) - AD_ACCOUNTS_PARAMS)
        if unknown:
            raise pinterest_error(
                400,
                1,
                f"Unknown query parameter(s) {', '.join(unknown)}: GET /ad_accounts takes "
                f"{', '.join(sorted(AD_ACCOUNTS_PARAMS))}.",
            )
        raw_size = first(params, "page_size")
        size = 25 if raw_size is None else _whole_number(raw_size)
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise pinterest_error(
                400, 1, f"Invalid page_size {raw_size!r}: use an integer from 1 to {MAX_PAGE_SIZE}."
            )
        raw_shared = (first(params, "include_shared_accounts") or "true").lower()
        if raw_shared not in ("true", "false"):
            raise pinterest_error(
                400, 1, f"Invalid include_shared_accounts {raw_shared!r}: use true or false."
            )
        shared = raw_shared == "true"
        offset = 0
        bookmark = first(params, "bookmark")
        if bookmark:
            try:
                offset = int(base64.urlsafe_b64decode(bookmark + "=" * (-len(bookmark) % 4)))
            except (ValueError, binascii.Error):
                offset = -1
            if offset < 0:
                raise pinterest_error(400, 1, "Invalid bookmark.")
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


def _client_refused() -> Problem:
    """Pinterest's answer to bad client auth, also given for another app's code or token."""
    return pinterest_error(401, 2, "Authentication failed.")


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def _whole_number(text: str) -> int:
    """``text`` as an integer when it is plain ASCII digits ("25", not "+25" or "2.5"), else -1."""
    return int(text) if text.isascii() and text.isdigit() else -1


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
