"""Reconnects a person does in Adobe's UI: what to tell them, and the wait for the renewals.

Adobe documents the reconnect of an OAuth destination account only as its UI's **Reconnect
OAuth** (api-notes §0 and §3 "Accounts"), so with ``migration.reconnect_via = "adobe"``
apply writes no credentials. It names each account that needs one, with the page to open,
then re-reads the accounts (bounded backoff, at most :data:`MAX_DELAY` seconds apart) until
each is renewed: a new etag and an expiry that moved forward, or, where no expiry is
readable, a later ``updatedAt``. The engine (:mod:`.engine`) runs an account's dependent
actions as soon as that account is renewed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from pinmigrate.actions import ReconnectAccount
from pinmigrate.apply.world import Reader, Wants
from pinmigrate.ids import checked_id
from pinmigrate.inventory import Account
from pinmigrate.moments import aware, iso_z
from pinmigrate.planner import needs_reconnect
from pinmigrate.settings import Settings

#: The steps of Adobe's notice, for the person who reconnects.
UI_STEPS = (
    'Destinations > Accounts, filter on Pinterest, the account\'s "..." menu, Edit details, '
    "Reconnect OAuth, then sign in to Pinterest"
)
#: Re-reads while waiting: quickly at first, then at most this many seconds apart.
DELAYS = (2.0, 3.0, 5.0, 8.0, 13.0)
MAX_DELAY = 15.0


@dataclass(frozen=True)
class PersonReconnect:
    """One account a person must reconnect in Adobe, as apply tells it."""

    action: ReconnectAccount
    page: str
    line: str

    def to_json(self) -> dict[str, Any]:
        return {
            "sandbox": self.action.sandbox,
            "account_id": self.action.target_id,
            "name": self.action.target_name,
            "advertiser_ids": list(self.action.details.advertiser_ids),
            "page": self.page,
        }


#: Shows the requests to a person (stderr lines, the browser); None in library use.
AskPerson = Callable[[Sequence[PersonReconnect]], None]


def by_person(action: ReconnectAccount, settings: Settings) -> bool:
    """True when a person reconnects this account in Adobe (the default and safe path).

    The API path needs both the setting and a plan made for it: a plan made for a person
    is never carried out by writing credentials the operator did not approve."""
    return settings.migration.reconnect_via != "api" or action.details.via == "adobe"


def page_url(settings: Settings, sandbox: str, account_id: str) -> str:
    """``adobe.ui_url`` for one account, each value URL-quoted."""
    values = {
        "org_id": quote(settings.adobe.org_id or "", safe=""),
        "sandbox": quote(checked_id(sandbox, "sandbox"), safe=""),
        "account_id": quote(checked_id(account_id, "account id"), safe=""),
    }
    return settings.adobe.ui_url.format(**values)


def request_for(action: ReconnectAccount, settings: Settings) -> PersonReconnect:
    page = page_url(settings, action.sandbox, action.target_id)
    return PersonReconnect(action, page, instruction(action, page))


def instruction(action: ReconnectAccount, page: str) -> str:
    """One line: the account, its sandbox and ad accounts, whom to sign in as, the page."""
    details = action.details
    ads = ", ".join(details.advertiser_ids) or "none known"
    if details.preflight == "ok" and details.preflight_user:
        who = f"sign in to Pinterest as {details.preflight_user}"
    elif details.preflight == "missing_access" and details.preflight_user:
        who = (
            "sign in to Pinterest as a user who can manage their audiences "
            f"({details.preflight_user} cannot for {', '.join(details.missing_access or [])})"
        )
    else:
        who = "sign in to Pinterest as a user who can manage their audiences"
    name = f"{action.target_name!r} " if action.target_name else ""
    return (
        f"Reconnect OAuth for account {name}({action.target_id}) in sandbox {action.sandbox}, "
        f"Pinterest ad account(s) {ads}: {who}; open {page}"
    )


def renewed(before: Account, after: Account) -> bool:
    """A renewal: a new etag with an expiry that moved forward (or, when no expiry is
    readable, a later ``updatedAt``)."""
    if before.etag and after.etag == before.etag:
        return False
    if after.expires_at is None:
        return False  # no credentials now: a disconnect, not a renewal
    # With no expiry field, the expiry is updatedAt + 30 days: a later updatedAt moves it.
    return before.expires_at is None or aware(after.expires_at) > aware(before.expires_at)


class ReconnectWait:
    """The accounts still waiting for a person, re-read with a bounded backoff."""

    def __init__(
        self,
        reader: Reader,
        actions: Sequence[ReconnectAccount],
        baseline: Mapping[str, Account],
        *,
        timeout: float,
        clock: Callable[[], float],
        now: Callable[[], datetime],
        margin: timedelta,
    ) -> None:
        self.reader = reader
        self.pending: dict[str, ReconnectAccount] = {a.id: a for a in actions}
        self.baseline = dict(baseline)
        self.clock = clock
        self.now = now
        self.margin = margin
        self.timeout = timeout
        self.deadline = clock() + timeout
        self.reads = 0
        #: Why the last re-read failed, if it did (the wait goes on until the deadline).
        self.last_problem: str | None = None
        #: Waiting accounts a successful re-read no longer found (deleted meanwhile).
        self.gone: list[ReconnectAccount] = []

    def left(self) -> float:
        return max(0.0, self.deadline - self.clock())

    def next_delay(self) -> float:
        delay = DELAYS[self.reads - 1] if 0 < self.reads <= len(DELAYS) else MAX_DELAY
        return min(delay, MAX_DELAY, self.left())

    def poll(self) -> list[tuple[ReconnectAccount, Account]]:
        """Re-read every waiting account (batched); return those now renewed."""
        wants: dict[str, Wants] = defaultdict(Wants)
        for action in self.pending.values():
            wants[action.sandbox].accounts.add(action.target_id)
        self.reads += 1
        # Re-read every few seconds: more than one waiting account in a sandbox is one
        # filtered list call rather than a GET each.
        world = self.reader.read(wants, get_limit=1)
        self.last_problem = None
        now = self.now()
        seen: list[tuple[ReconnectAccount, Account]] = []
        for ident, action in list(self.pending.items()):
            account = world.accounts.get(action.target_id)
            if account is None:
                del self.pending[ident]
                self.gone.append(action)
                continue
            before = self.baseline.get(action.target_id)
            fresh = not needs_reconnect(account.expires_at, now, self.margin)
            if fresh or (before is not None and renewed(before, account)):
                del self.pending[ident]
                seen.append((action, account))
        return seen


def renewal_note(account: Account, now: datetime, margin: timedelta) -> str:
    """What the run reports for an account a person reconnected."""
    expires = iso_z(account.expires_at) or "unknown"
    note = f"reconnected in Adobe; expires {expires} ({account.expiry_rule})"
    if needs_reconnect(account.expires_at, now, margin):
        note += f", still within the {margin.days}-day margin"
    return note


def not_seen_error(action: ReconnectAccount, timeout: float, problem: str | None) -> str:
    waited = f"within {timeout:g} s" if timeout else "(apply did not wait: --reconnect-timeout 0)"
    why = f"; the last re-read failed: {problem}" if problem else ""
    return (
        f"not reconnected in Adobe {waited}{why}: reconnect account {action.target_name!r} "
        f"({action.target_id}) in sandbox {action.sandbox} ({UI_STEPS}), then run apply again"
    )
