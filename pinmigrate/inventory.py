"""The immutable inventory: what discovery read of both Pinterest cards, per sandbox.

These are plain frozen values, built by :mod:`pinmigrate.discovery` from API payloads and
consumed by the pure planner. Tests build them directly in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Card = Literal["legacy", "new"]


@dataclass(frozen=True)
class CardSpec:
    """The connection spec found for one Pinterest card in one sandbox."""

    id: str
    #: The spec's name as Adobe answered it; None when the id came from a ``*_spec_id`` setting.
    name: str | None = None


@dataclass(frozen=True)
class Audience:
    id: str
    name: str = ""
    description: str = ""


@dataclass(frozen=True)
class Account:
    """A base connection (an "account" in the UI) of one of the two Pinterest cards."""

    id: str
    name: str
    sandbox: str
    card: Card
    etag: str = ""
    state: str = "enabled"
    #: When the credentials run out (:func:`pinmigrate.models.credential_expiry`); None
    #: when the account has none.
    expires_at: datetime | None = None
    #: Which rule gave ``expires_at``: expiresAt, expirationDate, updatedAt+expiresIn,
    #: updatedAt+30d, or none (no credentials).
    expiry_rule: str = "expiresAt"
    #: ``updatedAt``: a later one shows a renewal when no expiry is readable.
    updated_at: datetime | None = None


@dataclass(frozen=True)
class TargetConnection:
    id: str
    sandbox: str
    card: Card
    base_connection_id: str | None
    advertiser_id: str | None
    name: str = ""
    etag: str = ""


#: ``lastOperation.status.value`` of a write still being applied, and of one that failed, as
#: compared: lower case, letters only ("inProgress", "in_progress" -> "inprogress"). Adobe's
#: examples show "completed"; its error catalogue names "inProgress" and "failed"
#: (api-notes.md §3 "Enable / disable"); the others are tolerated.
IN_PROGRESS = frozenset(
    {"inprogress", "running", "pending", "queued", "started", "processing", "accepted"}
)
FAILED = frozenset({"failed", "failure", "error", "errored", "aborted", "cancelled", "canceled"})


@dataclass(frozen=True)
class Operation:
    """A flow's ``lastOperation``: Flow Service applies writes to flows asynchronously."""

    #: ``operation``: "update", "enable", "create", ... ("" when absent)
    name: str = ""
    #: ``status.value`` folded (see IN_PROGRESS); "" when absent
    status: str = ""
    #: ``percentCompleted``, None when absent or not a number
    percent: float | None = None
    #: ``status.errors``, each as one line
    errors: tuple[str, ...] = ()

    @property
    def in_progress(self) -> bool:
        """Still being applied: a status that says so, or no status and under 100%."""
        if self.status in IN_PROGRESS:
            return True
        if self.status:
            return False
        return self.percent is not None and self.percent < 100

    @property
    def failed(self) -> bool:
        return self.status in FAILED


@dataclass(frozen=True)
class Flow:
    """A destination dataflow of one of the two Pinterest cards."""

    id: str
    name: str
    sandbox: str
    card: Card
    state: str  # "enabled" | "disabled"
    etag: str = ""
    account_id: str | None = None
    target_connection_id: str | None = None
    advertiser_id: str | None = None
    audiences: tuple[Audience, ...] = ()
    #: ``lastOperation``, None when absent or unreadable
    operation: Operation | None = None

    @property
    def enabled(self) -> bool:
        return self.state == "enabled"

    @property
    def in_progress(self) -> bool:
        """A write to this flow is still being applied (reads show the state before it)."""
        return self.operation is not None and self.operation.in_progress

    @property
    def audience_ids(self) -> frozenset[str]:
        return frozenset(a.id for a in self.audiences)


@dataclass(frozen=True)
class SandboxInventory:
    name: str
    #: None when the sandbox has no legacy card (``legacy_gone`` says why): no legacy flows.
    legacy_spec_id: str | None
    new_spec_id: str
    legacy_spec_name: str | None = None
    new_spec_name: str | None = None
    accounts: tuple[Account, ...] = ()
    target_connections: tuple[TargetConnection, ...] = ()
    flows: tuple[Flow, ...] = ()
    #: One line saying the legacy card is gone from this sandbox; empty when it is there.
    legacy_gone: str = ""

    def spec(self, card: Card) -> CardSpec | None:
        """The card's connection spec; None for a legacy card that is gone."""
        if card == "legacy":
            if self.legacy_spec_id is None:
                return None
            return CardSpec(self.legacy_spec_id, self.legacy_spec_name)
        return CardSpec(self.new_spec_id, self.new_spec_name)

    def flows_of(self, card: Card) -> tuple[Flow, ...]:
        return tuple(f for f in self.flows if f.card == card)

    def account(self, account_id: str | None) -> Account | None:
        return next((a for a in self.accounts if a.id == account_id), None)


@dataclass(frozen=True)
class Inventory:
    org_id: str
    sandboxes: tuple[SandboxInventory, ...] = field(default_factory=tuple)

    def sandbox(self, name: str) -> SandboxInventory | None:
        return next((s for s in self.sandboxes if s.name == name), None)

    def flow(self, flow_id: str) -> Flow | None:
        return next((f for s in self.sandboxes for f in s.flows if f.id == flow_id), None)
