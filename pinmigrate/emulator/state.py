"""The emulator's in-memory world and rules, apart from HTTP (the moto pattern).

:class:`EmulatorState` composes one backend per service (``ims``, ``flowservice``,
``pinterest``) with the fault injector and the request log, and is the one entry point the
server and tests call. Every call answers a JSON-ready value, or raises :class:`Problem`
carrying the status and the error body the real service would send. All public methods are
thread-safe: the backends share one re-entrant lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, fields, replace
from typing import Any

from pinmigrate.emulator import scenarios
from pinmigrate.emulator.adobeui import AccountView, AdobeUi
from pinmigrate.emulator.context import Config, Context
from pinmigrate.emulator.faults import (
    SERVICES,
    FaultDecision,
    FaultInjector,
    Faults,
    RequestLog,
    faults_from_json,
    parse_fault_spec,
)
from pinmigrate.emulator.flowservice import LIST_KINDS, PATCH_KINDS, FlowService, FlowStore, present
from pinmigrate.emulator.ims import Caller, ImsBackend
from pinmigrate.emulator.limits import RateLimit, RateLimiter
from pinmigrate.emulator.model import ORG_ID, PINTEREST_SCOPES, JsonDict, PinterestUser
from pinmigrate.emulator.pinterest import AuthorizeRequest, PinterestBackend, split_scopes
from pinmigrate.emulator.problems import (
    ConsentError,
    Problem,
    bad_request,
    first,
    flow_error,
    gateway_error,
    ims_error,
    pinterest_error,
)

__all__ = [
    "LIST_KINDS",
    "PATCH_KINDS",
    "SERVICES",
    "AccountView",
    "AuthorizeRequest",
    "Caller",
    "Config",
    "ConsentError",
    "EmulatorState",
    "FaultDecision",
    "Faults",
    "Problem",
    "bad_request",
    "faults_from_json",
    "first",
    "flow_error",
    "gateway_error",
    "ims_error",
    "parse_fault_spec",
    "pinterest_error",
    "present",
]


class EmulatorState:
    """The world of one scenario and every rule of the emulated services."""

    def __init__(
        self,
        scenario: str = "demo",
        *,
        clock: Callable[[], float] = time.time,
        config: Config | None = None,
        faults: Faults | None = None,
        rate_limits: Mapping[str, RateLimit] | None = None,
    ) -> None:
        self.context = Context(clock, config)
        self.lock = self.context.lock
        self.clock = clock
        self.injector = FaultInjector(faults)
        # On the real monotonic clock, not ``clock``: a test's frozen world clock must not
        # stop the buckets from refilling.
        self.limiter = RateLimiter(rate_limits)
        self.log = RequestLog(clock=clock)
        self.ims = ImsBackend(self.context)
        self.pinterest = PinterestBackend(self.context)
        self.flowservice = FlowService(
            FlowStore(self.context), token_owner=self.pinterest.access_token_owner
        )
        self.flowstore = self.flowservice.store
        self.adobe_ui = AdobeUi(self.context, self.flowservice, self.pinterest)
        self.reset(scenario)

    # --- world ---------------------------------------------------------------------------

    def reset(self, scenario: str) -> None:
        """Rebuild the world of ``scenario``; Pinterest grants and the request log start over.

        IMS tokens, config, faults and rate limits survive: they belong to the tool's session,
        not to the scenario. The rate limits' buckets start full again.
        """
        with self.lock:
            world = scenarios.build(scenario, now=self.clock(), new_etag=self.context.next_etag)
            self.flowservice.install(world)
            self.pinterest.install(world)
            self.adobe_ui.install()
        self.log.clear()
        self.limiter.refill()

    @property
    def config(self) -> Config:
        return self.context.config

    @property
    def scenario(self) -> str:
        return self.flowstore.scenario

    @property
    def sandboxes(self) -> list[str]:
        return self.flowstore.sandboxes

    @property
    def users(self) -> dict[str, PinterestUser]:
        return self.pinterest.users

    # --- inspection helpers for tests ----------------------------------------------------

    def get(self, kind: str, ident: str) -> JsonDict | None:
        """The stored object (secrets in clear), or None. Do not modify it."""
        return self.flowstore.get(kind, ident)

    def find(
        self,
        kind: str,
        *,
        name: str | None = None,
        sandbox: str | None = None,
        card: str | None = None,
    ) -> list[JsonDict]:
        """Stored objects of a kind by name, sandbox and card (``legacy``/``new``)."""
        return self.flowstore.find(kind, name=name, sandbox=sandbox, card=card)

    def counts(self) -> dict[str, dict[str, int]]:
        return self.flowstore.counts()

    # --- Adobe IMS and the Platform gateway ----------------------------------------------

    def ims_token(self, form: Mapping[str, str]) -> JsonDict:
        return self.ims.ims_token(form)

    def authenticate_platform(self, headers: Mapping[str, str]) -> Caller:
        """The gateway's checks, in its order; ``headers`` keys are lower case."""
        return self.ims.authenticate_platform(headers, self.sandboxes)

    # --- Sandbox Management --------------------------------------------------------------

    def list_sandboxes(self, params: Mapping[str, str]) -> JsonDict:
        """A page of ``GET /sandboxes`` (api-notes.md §3b): ``limit`` and ``offset`` go
        together or not at all (default 50 and 0: help/sandboxes/api/appendix.md); a page
        holds at most ``page_size``; the next link as ``sandbox_links`` says."""
        every = scenarios.sandbox_listing(self.sandboxes)
        given = [params.get("limit"), params.get("offset")]
        if (given[0] is None) != (given[1] is None):
            raise Problem(400, {"status": 400, "title": "limit and offset go together"})
        try:
            limit, offset = (int(given[0] or 50), int(given[1] or 0))
        except ValueError:
            raise Problem(400, {"status": 400, "title": "limit and offset are numbers"}) from None
        if limit < 1 or offset < 0:
            raise Problem(400, {"status": 400, "title": "limit or offset out of range"})
        served = min(limit, self.context.config.page_size)
        page = every[offset : offset + served]
        # Absolute, as in Adobe's example (which also names the default port).
        url = (self.context.base_url or "") + SANDBOXES_PATH
        links: JsonDict = {"page": {"href": f"{url}?offset={offset}&limit={served}"}}
        mode = self.context.config.sandbox_links
        if mode == "templated":
            links["next"] = {"href": f"{url}/?limit={{limit}}&offset={{offset}}", "templated": True}
        elif mode == "next" and offset + served < len(every):
            links["next"] = {"href": f"{url}?limit={served}&offset={offset + served}"}
        # ``_page.limit``: the page size served, which a client paging by offset compares with.
        return {"sandboxes": page, "_page": {"limit": served, "count": len(page)}, "_links": links}

    # --- Flow Service --------------------------------------------------------------------

    def list_objects(self, sandbox: str, kind: str, params: Mapping[str, list[str]]) -> JsonDict:
        """A page of a Flow Service list, or ``{"count": N}`` with ``count=true``."""
        return self.flowstore.list_objects(sandbox, kind, params)

    def get_object(self, sandbox: str, kind: str, ident: str) -> JsonDict:
        """``{"items": [obj]}``: single objects come wrapped, secrets masked."""
        return self.flowstore.get_object(sandbox, kind, ident)

    def patch_object(
        self, caller: Caller, kind: str, ident: str, operations: Any, if_match: str | None
    ) -> tuple[int, JsonDict | None]:
        """RFC 6902 PATCH with a required ``If-Match``; answers (status, body)."""
        return self.flowservice.patch_object(caller, kind, ident, operations, if_match)

    def flow_action(
        self, caller: Caller, ident: str, op: str | None, if_match: str | None
    ) -> JsonDict:
        """``POST /flows/{id}/action?op=enable|disable`` (either case); If-Match optional."""
        return self.flowservice.flow_action(caller, ident, op, if_match)

    def change_object(self, kind: str, ident: str, changes: Any) -> JsonDict:
        """Merge ``changes`` into an object behind the tool's back (bumps its etag)."""
        return self.flowservice.change_object(kind, ident, changes)

    # --- Pinterest -----------------------------------------------------------------------

    def check_authorize(self, params: Mapping[str, str]) -> AuthorizeRequest:
        """Validate ``GET /oauth/`` parameters; ConsentError says what is wrong."""
        return self.pinterest.check_authorize(params)

    def user_by_name(self, name: str) -> PinterestUser | None:
        return self.pinterest.user_by_name(name)

    def redirect_uris(self, client_id: str) -> JsonDict:
        """``{"app_id", "redirect_uris"}`` of a registered app; ValueError for an unknown one."""
        app = self.pinterest.apps.get(client_id)
        if app is None:
            raise ValueError(f"no app {client_id!r}; known: {sorted(self.pinterest.apps)}")
        return {"app_id": app.id, "redirect_uris": self.pinterest.registered_redirects(app)}

    def register_redirect_uri(self, client_id: str, uri: str) -> JsonDict:
        """Register one more exact redirect URI on an app (pinmigrate's); the app's list."""
        return {
            "app_id": client_id,
            "redirect_uris": self.pinterest.register_redirect_uri(client_id, uri),
        }

    def approve(self, request: AuthorizeRequest, username: str | None = None) -> str:
        """The redirect URL carrying a fresh single-use code for ``username``."""
        return self.pinterest.approve(request, username)

    def deny(self, request: AuthorizeRequest) -> str:
        return self.pinterest.deny(request)

    def token_endpoint(self, authorization: str | None, form: Mapping[str, str]) -> JsonDict:
        """``POST /v5/oauth/token``: Basic client auth, then the code or refresh grant."""
        return self.pinterest.token_endpoint(authorization, form)

    def mint_tokens(self, request: Mapping[str, Any]) -> JsonDict:
        """Tokens for a user without the browser (``POST /_emulator/tokens``), for CI paths."""
        return self.pinterest.mint_tokens(request)

    def user_account(self, authorization: str | None) -> JsonDict:
        return self.pinterest.user_account(authorization)

    def list_ad_accounts(
        self, authorization: str | None, params: Mapping[str, list[str]]
    ) -> JsonDict:
        return self.pinterest.list_ad_accounts(authorization, params)

    # --- Adobe's UI: the accounts pages and Reconnect OAuth ------------------------------------

    def ui_accounts(self, org_id: str, sandbox: str) -> list[AccountView]:
        """The sandbox's Pinterest accounts (both cards); PageError 404 for an unknown place."""
        return self.adobe_ui.accounts(org_id, sandbox)

    def ui_account(self, org_id: str, sandbox: str, account_id: str) -> AccountView:
        """One Pinterest account as its page shows it; PageError 404 when unknown."""
        return self.adobe_ui.account(org_id, sandbox, account_id)

    def start_reconnect(self, org_id: str, sandbox: str, account_id: str, base_url: str) -> str:
        """ "Reconnect OAuth": the Pinterest consent URL for Adobe's app, with a fresh state."""
        return self.adobe_ui.start_reconnect(org_id, sandbox, account_id, base_url)

    def adobe_callback(self, params: dict[str, str]) -> AccountView:
        """Adobe's OAuth callback: the renewed account, or PageError (nothing changed)."""
        return self.adobe_ui.callback(params)

    def reconnect_account(self, account_id: str, username: str | None = None) -> JsonDict:
        """Renew an account as a person's Reconnect OAuth would; the account as read (masked)."""
        return self.adobe_ui.reconnect(account_id, username)

    # --- control API ---------------------------------------------------------------------

    def set_config(self, changes: Mapping[str, Any]) -> JsonDict:
        known = {f.name for f in fields(Config)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; known: {sorted(known)}")
        with self.lock:
            updated = replace(self.config, **dict(changes))
            _check_config(updated, usernames=self.pinterest.usernames)
            self.context.config = updated
            return asdict(updated)

    def set_faults(self, faults: Faults) -> JsonDict:
        self.injector.configure(faults)
        return faults.as_json()

    def dump(self, *, summary: bool = False, secrets: bool = True) -> JsonDict:
        """Everything, or only the counts. ``secrets``: the issued tokens and codes in clear,
        and the credentials accounts hold; without it they are masked or left out.

        In-process callers hold the state itself, so they get them by default; over HTTP
        (``GET /_emulator/state``) only ``?secrets=1`` shows them."""
        with self.lock:
            self.flowservice.apply_due()
            head: JsonDict = {
                "scenario": self.scenario,
                "clock": self.clock(),
                "org_id": ORG_ID,
                "sandboxes": list(self.sandboxes),
                "counts": self.counts(),
                "config": asdict(self.config),
                "faults": self.injector.faults.as_json(),
                "rate_limits": self.limiter.as_json()["limits"],
            }
            if summary:
                return head
            head["connectionSpecs"] = list(self.flowstore.connection_specs.values())
            objects = self.flowstore.objects
            head["objects"] = {
                sb: {
                    kind: [obj if secrets else present(kind, obj) for obj in items.values()]
                    for kind, items in objects[sb].items()
                }
                for sb in self.sandboxes
            }
            head["pinterest"] = {
                **self.pinterest.dump(),
                "credential_owners": dict(self.flowservice.credential_owners),
            }
            if not secrets:
                head["secrets"] = {"hidden": "tokens and codes: GET /_emulator/state?secrets=1"}
                return head
            head["secrets"] = {
                "warning": "test-only control endpoint: tokens and codes below are in clear",
                "ims_tokens": self.ims.dump_tokens(),
                **self.pinterest.dump_secrets(),
            }
            return head


#: Where the Sandbox Management API lists an org's sandboxes (api-notes.md §3b).
SANDBOXES_PATH = "/data/foundation/sandbox-management/sandboxes"
#: The shapes of its next-page link (``Config.sandbox_links``).
SANDBOX_LINKS = ("next", "templated", "none")


def _check_config(config: Config, *, usernames: Collection[str]) -> None:
    """ValueError naming the first setting out of range."""
    if not isinstance(config.page_size, int) or not 1 <= config.page_size <= 1000:
        raise ValueError("page_size must be an integer between 1 and 1000")
    if not isinstance(config.auto_approve, bool):
        raise ValueError("auto_approve must be true or false")
    if not isinstance(config.gateway_code_text, bool):
        raise ValueError("gateway_code_text must be true or false")
    if config.auto_approve_user not in usernames:
        raise ValueError(f"auto_approve_user must be one of {sorted(usernames)}")
    if config.patch_status not in (200, 202):
        raise ValueError("patch_status must be 200 or 202")
    if not isinstance(config.expires_as_string, bool):
        raise ValueError("expires_as_string must be true or false")
    if config.scope_separator not in (" ", ","):
        raise ValueError("scope_separator must be ' ' or ','")
    if config.extra_scope is not None and not set(split_scopes(config.extra_scope)) <= set(
        PINTEREST_SCOPES
    ):
        raise ValueError(f"extra_scope {config.extra_scope!r} is not a Pinterest scope")
    if not isinstance(config.revoke_rotated_refresh, bool):
        raise ValueError("revoke_rotated_refresh must be true or false")
    if not isinstance(config.strict_queries, bool):
        raise ValueError("strict_queries must be true or false")
    if config.sandbox_links not in SANDBOX_LINKS:
        raise ValueError(f"sandbox_links must be one of {', '.join(SANDBOX_LINKS)}")
    if config.pkce not in ("verify", "ignore", "refuse"):
        raise ValueError(f"pkce must be verify, ignore or refuse, not {config.pkce!r}")
    if config.limit_over_max not in ("error", "cap"):
        raise ValueError(f"limit_over_max must be error or cap, not {config.limit_over_max!r}")
    if not isinstance(config.run_status, str) or not config.run_status:
        raise ValueError("run_status must be a non-empty string")
    failures = config.run_failures
    if not isinstance(failures, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) and v.strip() for k, v in failures.items()
    ):
        raise ValueError("run_failures must map flow ids or names (or *) to non-empty messages")
    delay = config.write_delay
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= 3600:
        raise ValueError("write_delay must be a number of seconds between 0 and 3600")
    if config.write_error is not None and (
        not isinstance(config.write_error, str) or not config.write_error.strip()
    ):
        raise ValueError("write_error must be null or a non-empty message")
    for key in ("run_delay", "run_duration"):
        value = getattr(config, key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise ValueError(f"{key} must be a number of seconds, 0 or more")
