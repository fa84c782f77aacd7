"""Adobe's side of the Pinterest card's "Reconnect OAuth" (api-notes.md §3 "Accounts").

Adobe documents the reconnect only as a person's action in its UI: on the account, "Reconnect
OAuth", then sign in to Pinterest. Adobe runs that OAuth with its own Pinterest app and its own
callback, exchanges the code itself and stores the tokens in the account; pinmigrate only
sees the account change (a new etag, a later expiry). :class:`AdobeUi` holds what the account
pages show, the reconnects under way (by OAuth ``state``) and the renewal itself, which the
control API can also trigger without the clicks.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from pinmigrate.emulator.context import Context
from pinmigrate.emulator.flowservice import FlowService, present
from pinmigrate.emulator.model import (
    ADOBE_APP_ID,
    ADOBE_CALLBACK_PATH,
    ADOBE_SCOPES,
    LEGACY_SPEC_ID,
    NEW_SPEC_ID,
    ORG_ID,
    JsonDict,
)
from pinmigrate.emulator.pinterest import AuthorizeRequest, PinterestBackend, split_scopes
from pinmigrate.emulator.problems import ConsentError, PageError, Problem
from pinmigrate.models import Expiry, credential_expiry

#: How long a reconnect started on an account page waits for Adobe's callback.
RECONNECT_LIFETIME = 3600.0
UI_PREFIX = "/ui"
#: The account page under the emulator's base URL: ``adobe.ui_url`` without its host.
UI_ACCOUNT_TEMPLATE = UI_PREFIX + "/{org_id}/{sandbox}/destination/accounts/{account_id}"


def accounts_path(org_id: str, sandbox: str) -> str:
    """The path of a sandbox's account list, each segment URL-quoted."""
    return f"{UI_PREFIX}/{quote(org_id, safe='')}/{quote(sandbox, safe='')}/destination/accounts"


def account_path(org_id: str, sandbox: str, account_id: str) -> str:
    """The path of an account's page, as ``adobe.ui_url`` filled in by pinmigrate."""
    return f"{accounts_path(org_id, sandbox)}/{quote(account_id, safe='')}"


@dataclass(frozen=True)
class AccountView:
    """What the pages show of one Pinterest account: never a token."""

    account: JsonDict  # as reads present it (secrets masked)
    card: str  # "new" | "legacy"
    card_name: str
    advertisers: list[str]
    expiry: Expiry
    owner: str | None  # the emulated Pinterest username the credentials belong to, if known

    @property
    def id(self) -> str:
        return str(self.account["id"])

    @property
    def name(self) -> str:
        return str(self.account.get("name") or "")

    @property
    def sandbox(self) -> str:
        return str(self.account.get("sandboxName") or "")

    @property
    def reconnectable(self) -> bool:
        """Only the new card's accounts can reconnect: Pinterest switched v4 off."""
        return self.card == "new"


@dataclass
class PendingReconnect:
    org_id: str
    sandbox: str
    account_id: str
    redirect_uri: str
    created: float


class AdobeUi:
    """The account pages' data, the reconnects under way, and the renewal of an account."""

    def __init__(
        self, context: Context, flowservice: FlowService, pinterest: PinterestBackend
    ) -> None:
        self.context = context
        self.flowservice = flowservice
        self.store = flowservice.store
        self.pinterest = pinterest
        self.pending: dict[str, PendingReconnect] = {}

    def install(self) -> None:
        """Forget the reconnects under way (a reset)."""
        with self.context.lock:
            self.pending = {}

    # --- pages -------------------------------------------------------------------------------

    def accounts(self, org_id: str, sandbox: str) -> list[AccountView]:
        """The sandbox's Pinterest accounts of both cards, new card first, by name."""
        self._check_place(org_id, sandbox)
        with self.context.lock:
            views = [
                self._view(sandbox, account)
                for account in self.store.objects[sandbox]["connections"].values()
                if _card_of(account) is not None
            ]
        return sorted(views, key=lambda v: (v.card != "new", v.name, v.id))

    def account(self, org_id: str, sandbox: str, account_id: str) -> AccountView:
        """One Pinterest account of the sandbox; PageError 404 when there is none."""
        self._check_place(org_id, sandbox)
        with self.context.lock:
            account = self.store.objects[sandbox]["connections"].get(account_id)
            if account is None or _card_of(account) is None:
                raise PageError(
                    404,
                    "Account not found",
                    f"There is no Pinterest account {account_id} in sandbox {sandbox}.",
                )
            return self._view(sandbox, account)

    def _check_place(self, org_id: str, sandbox: str) -> None:
        if org_id != ORG_ID:
            raise PageError(
                404, "Organization not found", f"You have no access to organization {org_id}."
            )
        if sandbox not in self.store.sandboxes:
            raise PageError(
                404,
                "Sandbox not found",
                f"There is no sandbox {sandbox} in this organization "
                f"(sandboxes: {', '.join(self.store.sandboxes)}).",
            )

    def _view(self, sandbox: str, account: JsonDict) -> AccountView:
        card = _card_of(account) or "new"
        spec = self.store.connection_specs.get(_spec_id(account) or "") or {}
        advertisers = sorted(
            {
                str((target.get("params") or {}).get("advertiser_id"))
                for target in self.store.objects[sandbox]["targetConnections"].values()
                if target.get("baseConnectionId") == account["id"]
                and (target.get("params") or {}).get("advertiser_id") is not None
            }
        )
        owner_id = self.flowservice.credential_owners.get(account["id"])
        owner = self.pinterest.users.get(owner_id) if owner_id is not None else None
        shown = present("connections", account)
        return AccountView(
            account=shown,
            card=card,
            card_name=str(spec.get("name") or card),
            advertisers=advertisers,
            expiry=credential_expiry(shown),
            owner=owner.username if owner is not None else None,
        )

    # --- the reconnect, clicked through -------------------------------------------------------

    def start_reconnect(self, org_id: str, sandbox: str, account_id: str, base_url: str) -> str:
        """The Pinterest consent URL of a reconnect of the account ("Reconnect OAuth")."""
        view = self.account(org_id, sandbox, account_id)
        if not view.reconnectable:
            raise PageError(
                400,
                "Cannot reconnect",
                f"{view.name} belongs to the {view.card_name} card: Pinterest has switched "
                "off the API it uses. Reconnect the account of the new Pinterest card.",
            )
        base = self.context.base_url or base_url
        redirect_uri = base + ADOBE_CALLBACK_PATH
        state = secrets.token_urlsafe(24)
        with self.context.lock:
            now = self.context.clock()
            self.pending = {
                key: p for key, p in self.pending.items() if now - p.created < RECONNECT_LIFETIME
            }
            self.pending[state] = PendingReconnect(org_id, sandbox, account_id, redirect_uri, now)
        query = urlencode(
            {
                "client_id": ADOBE_APP_ID,
                "redirect_uri": redirect_uri,
                "response_type": "code",
                "scope": ADOBE_SCOPES,
                "state": state,
            },
            safe=":/,",
        )
        return f"{base}/oauth/?{query}"

    def callback(self, params: dict[str, str]) -> AccountView:
        """Adobe's OAuth callback: check the state, exchange the code, renew the account."""
        state = params.get("state") or ""
        with self.context.lock:
            pending = self.pending.pop(state, None) if state else None
        if pending is None:
            raise PageError(
                400,
                "Reconnect not recognised",
                "This sign-in was not started from an account page here, was already used, or "
                "its state is missing. Start again with Reconnect OAuth on the account.",
            )
        if self.context.clock() - pending.created >= RECONNECT_LIFETIME:
            raise PageError(
                400,
                "Reconnect expired",
                "The sign-in took too long. Start again with Reconnect OAuth on the account.",
            )
        error = params.get("error")
        if error:
            raise PageError(
                400,
                "Pinterest did not grant access",
                f"Pinterest answered {error!r}: the account was not changed.",
            )
        code = params.get("code")
        if not code:
            raise PageError(
                400, "No authorization code", "Pinterest sent no code: the account was not changed."
            )
        try:
            self._exchange_and_renew(
                pending.sandbox, pending.account_id, code, pending.redirect_uri
            )
        except Problem as problem:
            message = (
                problem.body.get("message") if isinstance(problem.body, dict) else None
            ) or f"HTTP {problem.status}"
            raise PageError(
                502,
                "Pinterest refused the sign-in",
                f"Exchanging the code failed ({message}): the account was not changed.",
            ) from None
        return self.account(pending.org_id, pending.sandbox, pending.account_id)

    # --- the reconnect, without clicks (control API) -----------------------------------------

    def reconnect(self, account_id: str, username: str | None = None) -> JsonDict:
        """Renew an account as if a person had clicked through; the account as reads show it."""
        with self.context.lock:
            sandbox = self.store.sandbox_of("connections", account_id)
            account = self.store.objects[sandbox]["connections"][account_id] if sandbox else None
        if sandbox is None or account is None or _card_of(account) is None:
            raise Problem(404, {"error": f"no Pinterest account with id {account_id}"})
        if _card_of(account) != "new":
            raise Problem(
                400,
                {"error": f"account {account_id} belongs to the legacy card: not reconnectable"},
            )
        app = self.pinterest.apps[ADOBE_APP_ID]
        redirect_uri = (
            self.pinterest.registered_redirect(app) or "http://127.0.0.1" + ADOBE_CALLBACK_PATH
        )
        request = AuthorizeRequest(ADOBE_APP_ID, redirect_uri, split_scopes(ADOBE_SCOPES), None)
        try:
            code = self.pinterest.grant(request, username)
        except ConsentError:
            known = sorted(self.pinterest.usernames)
            raise Problem(
                400, {"error": f"unknown Pinterest user {username!r}; known: {known}"}
            ) from None
        renewed = self._exchange_and_renew(sandbox, account_id, code, redirect_uri)
        return present("connections", renewed)

    # --- the renewal ----------------------------------------------------------------------------

    def _exchange_and_renew(
        self, sandbox: str, account_id: str, code: str, redirect_uri: str
    ) -> JsonDict:
        """Exchange ``code`` as Adobe's app, through Pinterest's token endpoint, and store the
        tokens in the account. Problem when Pinterest refuses (the account is unchanged)."""
        tokens: dict[str, Any] = self.pinterest.token_endpoint(
            self.pinterest.basic_authorization(ADOBE_APP_ID),
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "continuous_refresh": "true",
            },
        )
        return self.flowservice.renew_credentials(
            sandbox, account_id, str(tokens["access_token"]), str(tokens["refresh_token"])
        )


def _spec_id(account: JsonDict) -> str | None:
    spec = account.get("connectionSpec")
    return spec.get("id") if isinstance(spec, dict) else None


def _card_of(account: JsonDict) -> str | None:
    """``"new"`` or ``"legacy"`` for a Pinterest card's account, else None."""
    return {NEW_SPEC_ID: "new", LEGACY_SPEC_ID: "legacy"}.get(_spec_id(account) or "")
