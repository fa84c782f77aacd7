"""The three writes, each behind one guarded-write loop.

Every write follows the same steps (:meth:`Writes.guarded`): journal ``before``; send with
``If-Match``; on 412, journal the error, re-read and re-judge: already done by someone
else, stale (stop), or retry once with the fresh etag; on success journal ``after``. Each
write only says how to prepare one attempt from the live world.

Two answers say nothing certain about the write, and are never answered by sending it again
blind (api-notes.md §3 "Enable / disable"): a lost answer (a dropped connection, a timeout,
a gateway's 502/504: :class:`UnsureWriteError`) and Flow Service's ``1409-400`` refusal of
an action on the flow's current state (:class:`InvalidStateError`). Both are journalled as
errors, then the objects are re-read and judged: the goal reached means the write took (or,
after a refusal, that it was already so); a flow still applying a write
(``lastOperation`` in progress) is left to the confirming read; an object changed
otherwise is stale; only an unchanged object that still needs the write gets it once more.
A refusal whose re-read does not show the wanted state fails with Adobe's message.

Once an answer has been lost, the write may land late: a later 412 or refusal whose re-read
shows the goal reached is that write taking, and is journalled ``after`` (``answer_lost``),
so rollback undoes it. When the re-read after a lost answer fails, or the run is being
stopped, the attempt is left open in the journal (:class:`OutcomeUnknown`): rollback then
treats it as possibly done, and a rerun judges it on a fresh read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pinmigrate import models
from pinmigrate.actions import (
    Action,
    AddAudiences,
    DisableFlow,
    EnableFlow,
    FlowAction,
    ReconnectAccount,
)
from pinmigrate.apply.verdict import Verdict
from pinmigrate.apply.world import LiveWorld
from pinmigrate.errors import (
    ApiError,
    InvalidStateError,
    NotSentError,
    OutcomeUnknown,
    PinmigrateError,
    StaleObjectError,
    UnsureWriteError,
)
from pinmigrate.inventory import Audience
from pinmigrate.journal import ActionRef, Journal
from pinmigrate.moments import iso_z

if TYPE_CHECKING:
    from pinmigrate.adobe import AdobeClient
    from pinmigrate.apply.results import Status
    from pinmigrate.logins import Login

#: A write's outcome: its status and a human remark ("412: retried with a fresh etag").
Outcome = tuple["Status", str]
#: Sends after lost answers whose re-read showed the write not applied (a dropped
#: connection before the service saw it): each follows a re-read, never a blind replay.
UNSURE_RESENDS = 4


@dataclass
class Attempt:
    """One attempt of a write: what to journal around it and how to send it."""

    before: dict[str, Any]
    #: Sends the write; returns the object's new etag when Adobe answered one.
    send: Callable[[], str | None]
    after: dict[str, Any]
    #: Extra journal fields of the ``before`` and ``after`` records.
    extra: dict[str, Any] = field(default_factory=dict)
    before_extra: dict[str, Any] = field(default_factory=dict)


def ref_of(action: Action) -> ActionRef:
    return ActionRef(action.id, action.kind, action.sandbox, action.target_id, action.target_name)


@dataclass
class Writes:
    adobe: AdobeClient
    journal: Journal
    live: LiveWorld
    #: Re-reads one action's objects into the live world and judges it again (after a 412).
    rejudge: Callable[[Action], Verdict]
    #: True once the run is being stopped (Ctrl-C): no write is sent again after that.
    stopping: Callable[[], bool] = lambda: False

    def execute(self, action: Action, login: Login | None) -> Outcome:
        if isinstance(action, ReconnectAccount):
            if login is None:
                # Only when the world changed during a slow sign-in: this account was fine then.
                raise PinmigrateError(
                    "no Pinterest grant was made for this account before the first write",
                    hint="run apply again",
                )
            return self.reconnect(action, login)
        if isinstance(action, AddAudiences):
            return self.add_audiences(action)
        return self.switch(action)

    # --- the guarded-write loop ---------------------------------------------------------------

    def guarded(
        self,
        action: Action,
        prepare: Callable[[], Attempt | None],
        *,
        noun: str,
        already: str,
    ) -> Outcome:
        """Send a write until it is done or known not to be needed; ``prepare`` returns None
        when nothing is left to do. A 412 is met with one more try; a lost answer whose
        re-read shows the write not applied, with up to UNSURE_RESENDS more."""
        ref = ref_of(action)
        note = ""
        budget = {"412": 1, "unsure": UNSURE_RESENDS}
        attempt = 0
        #: An earlier attempt's answer was lost: it may still land, and be the change seen.
        lost = False
        lost_note = "the answer was lost; a re-read shows the change taken"
        while True:
            attempt += 1
            if attempt > 1 and self.stopping():
                raise OutcomeUnknown(
                    "stopped before sending it again; run apply again to check it",
                    service="adobe",
                )
            step = prepare()
            if step is None:
                return "already_done", note
            self.journal.before(
                ref, step.before, **step.extra, **step.before_extra, attempt=attempt
            )
            try:
                etag = step.send()
            except NotSentError as exc:
                # Never sent (Ctrl-C while it waited for the throttle, a header HTTP forbids):
                # the journal closes the attempt at once; nothing needs re-reading.
                self.journal.error(ref, f"not sent: {exc.message}")
                raise
            except StaleObjectError as exc:
                verdict = self._rejudge_unsure(action, exc) if lost else None
                if verdict is not None and verdict.outcome == "already_done":
                    # What made the etag stale was our lost write landing late.
                    self.journal.after(ref, step.after, **step.extra, answer_lost=True)
                    return "done", lost_note
                self.journal.error(ref, f"412: the {noun} changed since it was read")
                verdict = verdict or self.rejudge(action)
                if verdict.outcome == "already_done":
                    return "already_done", already
                self._again(action, verdict, budget, "412", exc)
                note = "412: retried with a fresh etag"
                continue
            except UnsureWriteError as exc:
                lost = True
                verdict = self._rejudge_unsure(action, exc)
                if verdict.outcome == "already_done" or self._applying(action):
                    # It took (or is being applied): the confirming read checks it.
                    self.journal.after(ref, step.after, **step.extra, answer_lost=True)
                    return "done", lost_note
                self.journal.error(ref, f"no answer; a re-read shows it not done: {exc.message}")
                self._again(action, verdict, budget, "unsure", exc)
                note = "the answer was lost and the re-read showed it not applied: sent again"
                continue
            except InvalidStateError as exc:
                verdict = self._rejudge_unsure(action, exc) if lost else None
                if verdict is not None and (
                    verdict.outcome == "already_done" or self._applying(action)
                ):
                    # Refused because our earlier write, whose answer was lost, landed late.
                    self.journal.after(ref, step.after, **step.extra, answer_lost=True)
                    return "done", lost_note
                self.journal.error(ref, exc.message)
                verdict = verdict or self.rejudge(action)
                if verdict.outcome == "already_done":
                    return "already_done", "Adobe refused it as a no-op; a re-read shows it so"
                if self._applying(action):
                    # Another write to the flow is under way; the confirming read judges it.
                    return "done", "Adobe is still applying an earlier change to the flow"
                raise
            self.journal.after(ref, step.after, **step.extra)
            if etag and not isinstance(action, ReconnectAccount):
                self.live.set_etag(action.target_id, etag)
            return "done", note

    def _rejudge_unsure(self, action: Action, why: ApiError) -> Verdict:
        """The re-read while a lost answer leaves the write's outcome open; when it fails
        too, the outcome stays unknown and the journal attempt open (no error record)."""
        try:
            return self.rejudge(action)
        except OutcomeUnknown:
            raise
        except Exception as exc:
            failure = exc.message if isinstance(exc, PinmigrateError) else str(exc)
            raise OutcomeUnknown(
                f"{why.message}; re-reading it failed too ({failure}): it may or may not "
                "have taken; run apply again to check",
                service="adobe",
            ) from exc

    @staticmethod
    def _again(
        action: Action, verdict: Verdict, budget: dict[str, int], kind: str, exc: Exception
    ) -> None:
        """Stop on a stale verdict, or with ``exc`` once ``kind``'s tries are spent; else
        count one more try."""
        if verdict.outcome == "stale":
            raise StaleObjectError(verdict.reason, object_id=action.target_id) from None
        if budget[kind] <= 0:
            raise exc
        budget[kind] -= 1

    def _applying(self, action: Action) -> bool:
        """True when the live view shows the action's flow with a write in progress."""
        if isinstance(action, ReconnectAccount):
            return False
        try:
            flow = self.live.flow_view(action.target_id).flow
        except KeyError:
            return False
        return flow.in_progress

    # --- the writes ---------------------------------------------------------------------------

    def reconnect(self, action: ReconnectAccount, grant: Login) -> Outcome:
        """The experimental API path: write a grant made for this account alone into it.

        ``grant`` comes from a person's sign-in for this account (``resolve_logins``): it is
        never pinmigrate's own login, and nothing here stores, refreshes or reuses it. The
        journal names its Pinterest user and expiry, never its tokens.
        """
        expires = grant.credential_expiry()
        ops = models.reconnect_ops(
            grant.access_token.get_secret_value(),
            grant.refresh_token.get_secret_value() if grant.refresh_token else None,
            expires,
        )

        def prepare() -> Attempt:
            account = self.live.account(action.target_id)

            def send() -> None:
                self.adobe.patch(
                    "connections", action.target_id, ops, etag=account.etag, sandbox=action.sandbox
                )

            return Attempt(
                before={"expiresAt": iso_z(account.expires_at)},
                send=send,
                after={"expiresAt": iso_z(expires)},
                extra={"pinterest_user": grant.user_id},
            )

        return self.guarded(
            action, prepare, noun="account", already="another change reconnected it first"
        )

    def add_audiences(self, action: AddAudiences) -> Outcome:
        wanted = [Audience(a.id, a.name, a.description) for a in action.details.audiences]

        def prepare() -> Attempt | None:
            view = self.live.flow_view(action.target_id)
            present = view.flow.audience_ids
            # After a 412, audiences someone (or a replayed request) already added are not
            # added again: the retry sends only what is still missing.
            missing = [a for a in wanted if a.id not in present]
            if not missing:
                return None
            ops = models.add_audience_ops(view.raw, missing)

            def send() -> str | None:
                return self.adobe.patch(
                    "flows", action.target_id, ops, etag=view.flow.etag, sandbox=action.sandbox
                )

            return Attempt(
                before={"audiences": sorted(present)},
                send=send,
                after={"audiences": sorted(present | {a.id for a in missing})},
                before_extra={"adding": [a.id for a in missing]},
            )

        return self.guarded(
            action,
            prepare,
            noun="flow",
            already="412: the audiences were already there on re-read",
        )

    def switch(self, action: FlowAction) -> Outcome:
        """Enable or disable the target flow (``enable_flow`` / ``disable_flow``)."""
        op: Literal["enable", "disable"] = "enable" if isinstance(action, EnableFlow) else "disable"
        goal = "enabled" if op == "enable" else "disabled"
        # The journal keeps the pair of each switch: rollback undoes pairs as a unit.
        pair: dict[str, str] = {}
        if action.precondition.legacy_flow_id:
            pair["legacy_flow_id"] = action.precondition.legacy_flow_id
        if isinstance(action, DisableFlow) and action.precondition.twin_flow_id:
            pair["twin_flow_id"] = action.precondition.twin_flow_id

        def prepare() -> Attempt | None:
            flow = self.live.flow_view(action.target_id).flow
            if flow.state == goal:
                return None

            def send() -> str | None:
                answer = self.adobe.flow_action(
                    action.target_id, op, sandbox=action.sandbox, etag=flow.etag or None
                )
                etag = answer.get("etag")
                return etag if isinstance(etag, str) else None

            return Attempt(
                before={"state": flow.state}, send=send, after={"state": goal}, extra=pair
            )

        return self.guarded(
            action, prepare, noun="flow", already=f"412: it was already {goal} on re-read"
        )
