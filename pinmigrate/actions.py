"""The plan's actions, typed: one model per kind, each with its precondition and details.

The planner builds them, the plan file stores them (schema_version 1: the JSON is the one
documented in :mod:`pinmigrate.plan`), and :mod:`pinmigrate.apply` judges and carries them
out. ``Action`` is a union discriminated on ``kind``, so a misspelt precondition key is a
type error, not a safety check that silently switches off.

A new action kind touches three small files: its model here, its verdict in
``apply/verdict.py`` and its write in ``apply/writes.py``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ActionKind = Literal["reconnect_account", "add_audiences", "enable_flow", "disable_flow"]
FlowState = Literal["enabled", "disabled"]
#: An Adobe object id: never empty.
Id = Annotated[str, Field(min_length=1)]

#: Execution order of action kinds (the contract's order).
KIND_ORDER: tuple[ActionKind, ...] = (
    "reconnect_account",
    "add_audiences",
    "enable_flow",
    "disable_flow",
)


def action_id(kind: ActionKind, sandbox: str, target_id: str) -> str:
    """``KIND:SANDBOX:TARGET_ID``: stable across replans, so a rerun resumes."""
    return f"{kind}:{sandbox}:{target_id}"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _is_none(value: object) -> bool:
    return value is None


class _Part(_Model):
    """A precondition or details object. Fields declared with ``exclude_if=_is_none`` are
    left out of the JSON while unset: fields only rollback's undo actions use, and fields
    added after plans were first saved (so those plans load and re-save byte for byte).
    pydantic leaves them out itself: a Python serializer around each part would cost more
    than the rest of the plan's dump (about 2 µs a part, tens of thousands of parts)."""


# --- reconnect_account (target: a new-card account) -------------------------------------------


class ReconnectPrecondition(_Part):
    #: The expiry the planner read (ISO-8601); None when the account had no credentials.
    expires_at: str | None


#: The pre-flight of a reconnect: does a Pinterest login reach every ad account of the account
#: with a permission that can manage audiences? Not a blocker either way.
Preflight = Literal["ok", "missing_access", "not_checked"]
ReconnectVia = Literal["adobe", "api"]


class ReconnectDetails(_Part):
    # Plans saved before these fields existed leave them out; they load and re-save unchanged.
    advertiser_ids: list[str]
    #: The Pinterest user id of the login the pre-flight found reaching every ad account.
    login: str | None = None
    #: No login reaches every ad account (the api path would need one at apply time).
    needs_login: bool = False
    #: The new flows that use the account.
    flows: list[str] = Field(default_factory=list)
    #: How the reconnect is carried out: a person in Adobe's UI, or the experimental API path.
    via: ReconnectVia | None = Field(default=None, exclude_if=_is_none)
    #: Which rule read the expiry: expiresAt, expirationDate, updatedAt+expiresIn,
    #: updatedAt+30d, or none (no credentials).
    expiry_rule: str | None = Field(default=None, exclude_if=_is_none)
    preflight: Preflight | None = Field(default=None, exclude_if=_is_none)
    #: The Pinterest user the pre-flight checked, as ``username (id)``.
    preflight_user: str | None = Field(default=None, exclude_if=_is_none)
    #: With ``missing_access``: the ad accounts that user cannot manage audiences of.
    missing_access: list[str] | None = Field(default=None, exclude_if=_is_none)


# --- add_audiences (target: a new flow) -------------------------------------------------------


class AudienceRef(_Part):
    id: Id
    name: str = ""
    description: str = ""


class AddAudiencesPrecondition(_Part):
    legacy_flow_id: Id
    legacy_state: FlowState
    #: Audience ids on the legacy flow that its twin lacked.
    missing: list[str]


class AddAudiencesDetails(_Part):
    audiences: Annotated[list[AudienceRef], Field(min_length=1)]
    legacy_flow_id: str


# --- enable_flow / disable_flow (target: the flow switched) -----------------------------------


class EnablePrecondition(_Part):
    state: FlowState
    #: The twin's legacy flow and its state; None for rollback's re-enable of a legacy flow.
    legacy_flow_id: Id | None = Field(default=None, exclude_if=_is_none)
    legacy_state: FlowState | None = Field(default=None, exclude_if=_is_none)


class EnableDetails(_Part):
    account_id: str | None = None
    advertiser_id: str | None = None


class DisablePrecondition(_Part):
    state: FlowState
    #: A legacy flow's twin and the state the planner saw it in.
    twin_flow_id: Id | None = Field(default=None, exclude_if=_is_none)
    twin_state: FlowState | None = Field(default=None, exclude_if=_is_none)
    #: For rollback's switch-off of a new flow: its legacy flow must be (still) enabled.
    legacy_flow_id: Id | None = Field(default=None, exclude_if=_is_none)
    legacy_state: FlowState | None = Field(default=None, exclude_if=_is_none)


#: When a legacy flow is switched off: once its twin is on, or only once the twin's first
#: run after enabling succeeded (``migration.wait_runs``).
DisableAfter = Literal["twin_enabled", "first_run_succeeds"]


class DisableDetails(_Part):
    # Plans saved before ``after`` existed leave it out (read as "twin_enabled").
    twin_flow_id: str | None = None
    advertiser_id: str | None = None
    after: DisableAfter | None = Field(default=None, exclude_if=_is_none)

    @property
    def waits_for_run(self) -> bool:
        return self.after == "first_run_succeeds"


# --- the actions ------------------------------------------------------------------------------


class _Action(_Model):
    id: str
    kind: ActionKind
    sandbox: str
    target_id: Id
    target_name: str = ""
    precondition: Any
    details: Any
    depends_on: list[str] = Field(default_factory=list)


class ReconnectAccount(_Action):
    """Goal: the account's credentials expire later than the reconnect margin."""

    kind: Literal["reconnect_account"] = "reconnect_account"
    precondition: ReconnectPrecondition
    details: ReconnectDetails


class AddAudiences(_Action):
    """Goal: every audience in details is on the target flow."""

    kind: Literal["add_audiences"] = "add_audiences"
    precondition: AddAudiencesPrecondition
    details: AddAudiencesDetails


class EnableFlow(_Action):
    """Goal: the target flow is enabled."""

    kind: Literal["enable_flow"] = "enable_flow"
    precondition: EnablePrecondition
    details: EnableDetails = EnableDetails()


class DisableFlow(_Action):
    """Goal: the target flow is disabled."""

    kind: Literal["disable_flow"] = "disable_flow"
    precondition: DisablePrecondition
    details: DisableDetails = DisableDetails()


Action = Annotated[
    ReconnectAccount | AddAudiences | EnableFlow | DisableFlow, Field(discriminator="kind")
]
FlowAction = EnableFlow | DisableFlow
