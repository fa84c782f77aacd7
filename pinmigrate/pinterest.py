"""Pinterest API v5: the token endpoint, ``/user_account`` and paged ``/ad_accounts``.

Pinterest reports errors as ``{"code": int, "message": str}``, not RFC 6749's ``error``;
they are shown as Pinterest wrote them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pinmigrate import answers, redact
from pinmigrate.errors import ApiError, AuthError
from pinmigrate.http import HttpClient, body_kind, error_detail

if TYPE_CHECKING:
    import requests

    from pinmigrate.settings import Settings

log = logging.getLogger("pinmigrate.pinterest")

PAGE_SIZE = 250
#: A login with more ad accounts than this is not plausible; a server that never ends is.
MAX_PAGES = 1000


class PinterestClient:
    """Token exchange and refresh (never replayed), user account, every ad account."""

    def __init__(self, settings: Settings, *, http: HttpClient | None = None) -> None:
        self.settings = settings
        self.http = http or HttpClient.for_settings(settings, service="pinterest")
        self.api_url = settings.pinterest.api_url.rstrip("/")

    # --- token endpoint ----------------------------------------------------------------

    def exchange_code(self, code: str, *, code_verifier: str | None = None) -> dict[str, Any]:
        """Trade an authorization code for tokens (continuous refresh); ``code_verifier``
        only when the authorize URL carried a PKCE challenge (``pinterest.pkce``)."""
        redact.register(code, code_verifier)
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.settings.pinterest.redirect_uri,
            "continuous_refresh": "true",
        }
        if code_verifier is not None:
            data["code_verifier"] = code_verifier
        return self._token_request(data, "the authorization code")

    def refresh(self, refresh_token: str) -> dict[str, Any]:
        """New tokens for a refresh token; the answer's refresh_token replaces the old one."""
        redact.register(refresh_token)
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return self._token_request(data, "the refresh token")

    def _token_request(self, data: dict[str, str], grant: str) -> dict[str, Any]:
        # Not requests-oauthlib's fetch_token/refresh_token, even sent through self.http:
        # oauthlib rejects an expires_in such as "2592000.0", puts the spent refresh token
        # back into a refresh answer that brings none (hiding whether Pinterest rotated it),
        # and its DEBUG lines carry the code, the tokens and the Basic credentials on a logger
        # the redacting filter does not see. The form has four fields; it is built here.
        self.settings.require_pinterest_app()
        pin = self.settings.pinterest
        assert pin.app_id is not None and pin.app_secret is not None
        secret = pin.app_secret.get_secret_value()
        redact.register(secret)
        # A 429 or 5xx answer is retried: Pinterest answered, and replaying after an answer
        # can lose nothing (had the first try rotated the token, that token is dead either
        # way). A request whose answer never came is not replayed blind: a code is
        # single-use, and a refresh may already have rotated the refresh token server-side.
        try:
            response = self.http.request(
                "POST",
                f"{self.api_url}/oauth/token",
                data=data,
                auth=(pin.app_id, secret),
                headers={"Accept": "application/json"},
                retry_safe=True,
                retry_network=False,
            )
        except ApiError as exc:
            if exc.status is not None:
                raise
            # Exit 4, not 1: the login this grant came from may be gone for good.
            raise AuthError(
                f"Pinterest's answer to {grant} was lost ({exc.message}); Pinterest may "
                f"already have used up {grant}, and its successor never arrived",
                hint="run `pinmigrate auth login`, then run the command again",
            ) from None
        status = response.status_code
        if status in (400, 401, 403):
            detail = error_detail(response)
            if status == 401:
                hint = "check pinterest.app_id and pinterest.app_secret"
            else:
                hint = "run `pinmigrate auth login` again"
            raise AuthError(f"Pinterest refused {grant} (HTTP {status}): {detail}", hint=hint)
        if status != 200:
            raise ApiError(
                f"Pinterest token endpoint answered HTTP {status}: {error_detail(response)}",
                status=status,
                service="pinterest",
                hint="nothing was retried (a token request is not safe to repeat); try again",
            )
        body = self._json(response, "POST /oauth/token")
        if not isinstance(body, dict):
            raise ApiError(
                "Pinterest token endpoint answered something other than an object",
                service="pinterest",
            )
        # Register before anything else can log or raise with the body in hand.
        redact.register(
            *(
                value
                for value in (body.get("access_token"), body.get("refresh_token"))
                if isinstance(value, str)
            )
        )
        if not isinstance(body.get("access_token"), str) or not body["access_token"]:
            raise ApiError(
                "Pinterest token endpoint answered without an access_token", service="pinterest"
            )
        return body

    # --- reads -------------------------------------------------------------------------

    def user_account(self, access_token: str) -> dict[str, Any]:
        """``GET /user_account``: who the token belongs to."""
        body = self._get("/user_account", access_token)
        if not isinstance(body, dict):
            raise ApiError("Pinterest /user_account answered something other than an object")
        return body

    def ad_accounts(self, access_token: str) -> list[dict[str, Any]]:
        """Every ad account the token can see, following ``bookmark`` to the end."""
        accounts: list[dict[str, Any]] = []
        bookmark: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            params = {"page_size": str(PAGE_SIZE)}
            if bookmark:
                params["bookmark"] = bookmark
            body = self._get("/ad_accounts", access_token, params=params)
            if not isinstance(body, dict):
                raise ApiError("Pinterest /ad_accounts answered something other than an object")
            items = body.get("items") or []
            if not isinstance(items, list):
                raise ApiError("Pinterest /ad_accounts answered items that are not a list")
            accounts.extend(item for item in items if isinstance(item, dict))
            nxt = body.get("bookmark")
            if not nxt:
                return accounts
            nxt = str(nxt)
            if nxt in seen:
                raise ApiError(
                    "Pinterest /ad_accounts sent the same bookmark twice; stopped paging",
                    service="pinterest",
                )
            seen.add(nxt)
            bookmark = nxt
        raise ApiError(
            f"Pinterest /ad_accounts did not end after {MAX_PAGES} pages; stopped paging",
            service="pinterest",
        )

    def _get(self, path: str, access_token: str, *, params: dict[str, str] | None = None) -> Any:
        redact.register(access_token)
        response = self.http.request(
            "GET",
            f"{self.api_url}{path}",
            params=params,
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        )
        status = response.status_code
        if status in (401, 403):
            raise AuthError(
                f"Pinterest refused the access token for {path}: {error_detail(response)}",
                hint="run `pinmigrate auth login` (the login may be expired, revoked or "
                "missing a scope)",
            )
        if status == 429:
            raise ApiError(
                f"Pinterest kept rate-limiting {path}: {error_detail(response)}",
                status=429,
                service="pinterest",
                hint="retry in a minute",
            )
        if status >= 400:
            raise ApiError(
                f"Pinterest {path} failed: HTTP {status}: {error_detail(response)}",
                status=status,
                service="pinterest",
            )
        return self._json(response, f"GET {path}")

    @staticmethod
    def _json(response: requests.Response, what: str) -> Any:
        try:
            return answers.decoded(response)
        except (ValueError, RecursionError):  # too deeply nested is not usable JSON either
            raise ApiError(
                f"Pinterest answered {body_kind(response)}, not JSON, to {what} "
                f"(HTTP {response.status_code})",
                status=response.status_code,
                service="pinterest",
                hint="check pinterest.api_url",
            ) from None
