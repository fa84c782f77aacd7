"""The planner: a pure function from an inventory (and the stored logins) to a plan.

No I/O and no clock: the caller passes ``options.now``, so the same inventory, logins,
settings and options always give the same plan, down to its fingerprint. The action
semantics (preconditions, details, ids) are those documented in :mod:`pinmigrate.plan`.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from pinmigrate.actions import (
    KIND_ORDER,
    Action,
    ActionKind,
    AddAudiences,
    AddAudiencesDetails,
    AddAudiencesPrecondition,
    AudienceRef,
    DisableDetails,
    DisableFlow,
    DisablePrecondition,
    EnableDetails,
    EnableFlow,
    EnablePrecondition,
    Preflight,
    ReconnectAccount,
    ReconnectDetails,
    ReconnectPrecondition,
    action_id,
)
from pinmigrate.errors import UsageError, name_all
from pinmigrate.inventory import Flow, Inventory, SandboxInventory
from pinmigrate.logins import AdAccountAccess, Login
from pinmigrate.moments import aware, iso
from pinmigrate.plan import Blocker, CardRef, Orphan, Pair, Plan, SandboxCards
from pinmigrate.settings import Settings


@dataclass(frozen=True, kw_only=True)
class PlanOptions:
    """What the operator narrowed or decided on the command line."""

    #: Narrow to these sandboxes; empty means every sandbox of the inventory.
    sandboxes: tuple[str, ...] = ()
    #: Narrow to the pairs whose legacy or new flow is given, by id or by exact name (a name
    #: must pick one flow, or a legacy flow and its twin by the pairing rule).
    flows: tuple[str, ...] = ()
    #: ``--match LEGACY_ID=NEW_ID``: explicit pairs, which settle ambiguities.
    matches: Mapping[str, str] = field(default_factory=dict)
    #: The planner's only notion of time (credential expiry, ``created_at``).
    now: datetime


def make_plan(
    inventory: Inventory, logins: Sequence[Login], settings: Settings, options: PlanOptions
) -> Plan:
    """Decide every action the contract calls for; return the plan sealed with a checksum."""
    return draft_plan(inventory, logins, settings, options).sealed()


def draft_plan(
    inventory: Inventory, logins: Sequence[Login], settings: Settings, options: PlanOptions
) -> Plan:
    """:func:`make_plan` before sealing: no summary, no fingerprint. For a caller that
    seals the plan itself (with the plan key): sealing encodes the whole plan, so a large
    plan is sealed once, not once with a checksum and again with the key."""
    now = aware(options.now)
    sandboxes = _select_sandboxes(inventory, options.sandboxes)
    flows = {f.id: f for sb in inventory.sandboxes for f in sb.flows}
    selected_names = {sb.name for sb in sandboxes}
    only_flows = _resolve_flows(options.flows, flows, selected_names)
    matches = _check_matches(options.matches, flows, selected_names)

    planner = _Planner(
        logins=_usable_logins(logins, now),
        now=now,
        margin=timedelta(days=settings.migration.reconnect_margin_days),
        disable_legacy=settings.migration.disable_legacy,
        wait_runs=settings.migration.wait_runs,
        only_flows=only_flows,
        matches=matches,
        kept_by=_kept_by(settings),
        via=settings.migration.reconnect_via,
    )
    for sandbox in sandboxes:
        planner.plan_sandbox(sandbox)
    if planner.via == "api" and any(isinstance(a, ReconnectAccount) for a in planner.actions):
        planner.warnings.insert(0, API_RECONNECT_WARNING)

    order = {sb.name: i for i, sb in enumerate(sandboxes)}
    kind_rank = {kind: i for i, kind in enumerate(KIND_ORDER)}
    actions = sorted(
        planner.actions,
        key=lambda a: (kind_rank[a.kind], order[a.sandbox], a.target_name, a.id),
    )
    pairs = sorted(
        planner.pairs, key=lambda p: (order[p.sandbox], p.legacy_flow_name, p.legacy_flow_id)
    )
    orphans = sorted(planner.orphans, key=lambda o: (order[o.sandbox], o.flow_name, o.flow_id))
    blockers = sorted(
        planner.blockers, key=lambda b: (order[b.sandbox], b.flow_name, b.flow_id, b.kind)
    )
    return Plan(
        created_at=now.isoformat(timespec="seconds"),
        org_id=inventory.org_id,
        sandboxes=[sb.name for sb in sandboxes],
        cards=[
            SandboxCards(
                sandbox=sb.name,
                legacy=(
                    CardRef(id=sb.legacy_spec_id, name=sb.legacy_spec_name)
                    if sb.legacy_spec_id is not None
                    else None
                ),
                new=CardRef(id=sb.new_spec_id, name=sb.new_spec_name),
            )
            for sb in sandboxes
        ],
        actions=actions,
        pairs=pairs,
        orphans=orphans,
        blockers=blockers,
        warnings=list(dict.fromkeys(planner.warnings)),
    )


#: How ``--keep-legacy`` shows in ``Settings.sources`` (it sets migration.disable_legacy).
KEEP_LEGACY_FLAG = "flag --keep-legacy"


def _kept_by(settings: Settings) -> str:
    """What keeps legacy flows on, as the warnings name it."""
    if settings.source_of("migration.disable_legacy") == KEEP_LEGACY_FLAG:
        return "--keep-legacy"
    return "migration.disable_legacy = false"


#: Said in plan and apply whenever the experimental API reconnect path is chosen.
API_RECONNECT_WARNING = (
    'migration.reconnect_via = "api" is experimental: Adobe documents no API that writes '
    "Pinterest credentials into a destination account (only the UI's Reconnect OAuth, with "
    "Adobe's own Pinterest app), so the accounts may not work afterwards; the default, "
    '"adobe", has a person reconnect them in Adobe'
)

#: Pinterest ad-account permissions that can manage audiences (Pinterest v5 OpenAPI,
#: ``PermissionsWithOwner``: OWNER, ADMIN, AUDIENCE_MANAGER; the others cannot).
AUDIENCE_PERMISSIONS = frozenset({"OWNER", "ADMIN", "AUDIENCE_MANAGER"})


@dataclass(frozen=True)
class PreflightResult:
    """What the pre-flight found for one account: the login it checked and what it lacks."""

    status: Preflight
    login: Login | None = None
    #: Ad accounts the login cannot reach, or reaches without an audience permission.
    missing: tuple[str, ...] = ()


def manages_audiences(access: AdAccountAccess) -> bool:
    """True when a login's access to an ad account can manage audiences; an access listed
    without permissions counts (Pinterest did not say, so it is not held against it)."""
    held = {p.upper() for p in access.permissions}
    return not held or bool(held & AUDIENCE_PERMISSIONS)


def preflight(advertiser_ids: Iterable[str], logins: Sequence[Login]) -> PreflightResult:
    """The best login for an account's ad accounts: ``ok`` when one reaches all of them with
    an audience permission, else ``missing_access`` for the one that lacks the fewest; with
    no login (or no ad account to check), ``not_checked``."""
    wanted = sorted(set(advertiser_ids))
    if not logins or not wanted:
        return PreflightResult("not_checked")

    def lacking(login: Login) -> tuple[str, ...]:
        usable = {a.id for a in login.ad_accounts if manages_audiences(a)}
        return tuple(a for a in wanted if a not in usable)

    best = min(logins, key=lambda login: (len(lacking(login)), _preference(login)))
    missing = lacking(best)
    return PreflightResult("missing_access" if missing else "ok", best, missing)


def _preference(login: Login) -> tuple[int, float, str]:
    """Longest-lived grant first, then the smallest user id."""
    expiry = login.credential_expiry()
    if expiry is None:
        return (1, 0.0, login.user_id)
    return (0, -aware(expiry).timestamp(), login.user_id)


def needs_reconnect(expires_at: datetime | None, now: datetime, margin: timedelta) -> bool:
    """True when credentials are missing, expired, or expire within the margin."""
    return expires_at is None or aware(expires_at) <= aware(now) + margin


def choose_login(advertiser_ids: Iterable[str], logins: Sequence[Login]) -> Login | None:
    """The login that covers every advertiser id; the longest-lived one, then smallest user id."""
    wanted = frozenset(advertiser_ids)
    covering = [login for login in logins if login.covers(wanted)]
    if not covering:
        return None
    return min(covering, key=_preference)


# -- checks of the operator's options -------------------------------------------------------


def _select_sandboxes(inventory: Inventory, wanted: Sequence[str]) -> list[SandboxInventory]:
    if not wanted:
        return list(inventory.sandboxes)
    known = [sb.name for sb in inventory.sandboxes]
    unknown = [name for name in dict.fromkeys(wanted) if name not in known]
    if unknown:
        raise UsageError(
            f"{name_all(unknown, 'unknown sandbox')} (--sandbox)",
            hint=f"known sandboxes: {', '.join(known) or 'none'}",
        )
    keep = set(wanted)
    return [sb for sb in inventory.sandboxes if sb.name in keep]


def _resolve_flows(
    values: Sequence[str], flows: Mapping[str, Flow], sandboxes: set[str]
) -> frozenset[str]:
    """The flow ids ``--flow`` names: each value is a flow id, else an exact flow name.

    A name must pick one flow of the selected sandboxes, or one legacy flow and its twin by
    the pairing rule (a pair shares its name); a name of several flows is an error naming
    their ids, and so is a name of none (pointing out names that differ only in case,
    spacing or Unicode form, never taken silently). Values that match nothing, and flows in
    sandboxes ``--sandbox`` leaves out, are each named all at once in one error."""
    unknown = [v for v in dict.fromkeys(values) if v not in flows and not _has_name(v, flows)]
    if len(unknown) == 1:
        _flows_named(unknown[0], flows, sandboxes)  # raises, with its near names
    if unknown:
        named = name_all(map(repr, unknown), "unknown flow id or name", "unknown flow ids or names")
        raise UsageError(
            f"{named} (--flow): no Pinterest flow has it",
            hint="`pinmigrate discover` lists the flows of both cards, ids and names",
        )
    found: dict[str, Flow] = {}
    for value in values:
        flow = flows.get(value)
        for each in [flow] if flow is not None else _flows_named(value, flows, sandboxes):
            found[each.id] = each
    outside = [f for f in found.values() if f.sandbox not in sandboxes]
    if outside:
        named = name_all((f"{f.id} ({f.name}, {f.sandbox})" for f in outside), "flow")
        raise UsageError(f"--sandbox leaves out the sandbox of {named}")
    return frozenset(found)


def _has_name(name: str, flows: Mapping[str, Flow]) -> bool:
    return any(f.name == name for f in flows.values())


def _flows_named(name: str, flows: Mapping[str, Flow], sandboxes: set[str]) -> list[Flow]:
    named = sorted(
        (f for f in flows.values() if f.name == name), key=lambda f: (f.sandbox, f.card, f.id)
    )
    if not named:
        near = sorted({f.name for f in flows.values() if _loose_name(f.name) == _loose_name(name)})
        raise UsageError(
            f"no Pinterest flow with id or name {name!r} (--flow)",
            hint=(
                f"names are compared exactly: did you mean {', '.join(map(repr, near))}?"
                if near
                else "`pinmigrate discover` lists the flows of both cards, ids and names"
            ),
        )
    inside = [f for f in named if f.sandbox in sandboxes] or named[:1]
    legacy = [f for f in inside if f.card == "legacy"]
    new = [f for f in inside if f.card == "new"]
    one_pair = len(legacy) <= 1 and len(new) <= 1
    if legacy and new:
        one_pair = one_pair and twin_problem(legacy[0], new[0]) is None
    if not one_pair:
        shown = name_all((f"{f.id} ({f.card}, {f.sandbox})" for f in inside), "flow")
        raise UsageError(f"--flow {name!r} names {shown}", hint="pass the id of the one you mean")
    return inside


#: The note of a pair that ``--match`` made (its flows may be named differently).
MATCH_NOTE = "paired by --match"


def pair_key(flow: Flow) -> tuple[str, str] | None:
    """What pairs a legacy flow with its twin unless ``--match`` says otherwise: equal name
    and equal Pinterest ad account (the contract's rule 1); None without an ad account id."""
    return (flow.name, flow.advertiser_id) if flow.advertiser_id is not None else None


def twin_problem(legacy: Flow, new: Flow, *, matched: bool = False) -> str | None:
    """Why ``new`` cannot be the twin of ``legacy``, or None: one sandbox, one Pinterest ad
    account and, unless the pair was made by ``--match``, the pairing rule (:func:`pair_key`).
    The planner checks ``--match`` with it; ``apply`` checks every pair of a plan with it."""
    if legacy.sandbox != new.sandbox:
        return f"the flows are in different sandboxes ({legacy.sandbox} and {new.sandbox})"
    if legacy.advertiser_id != new.advertiser_id:
        return (
            "the flows deliver to different Pinterest ad accounts "
            f"({legacy.advertiser_id or 'none'} and {new.advertiser_id or 'none'})"
        )
    if not matched and (pair_key(legacy) is None or pair_key(legacy) != pair_key(new)):
        return (
            f"the flows are not named alike ({legacy.name!r} and {new.name!r}) "
            "and no --match paired them"
            if legacy.advertiser_id is not None
            else "the flows have no Pinterest ad account id and no --match paired them"
        )
    return None


def _check_matches(
    matches: Mapping[str, str], flows: Mapping[str, Flow], sandboxes: set[str]
) -> dict[str, Flow]:
    """Validate ``--match`` pairs; return legacy flow id -> the new flow it is matched with."""
    result: dict[str, Flow] = {}
    claimed: dict[str, str] = {}
    for legacy_id, new_id in sorted(matches.items()):
        where = f"--match {legacy_id}={new_id}"
        legacy, new = flows.get(legacy_id), flows.get(new_id)
        if legacy is None or legacy.card != "legacy":
            raise UsageError(f"{where}: {legacy_id} is not a flow of the legacy Pinterest card")
        if new is None or new.card != "new":
            raise UsageError(f"{where}: {new_id} is not a flow of the new Pinterest card")
        problem = twin_problem(legacy, new, matched=True)
        if problem:
            raise UsageError(f"{where}: {problem}")
        if legacy.sandbox not in sandboxes:
            raise UsageError(f"{where}: sandbox {legacy.sandbox} is left out by --sandbox")
        if new_id in claimed:
            raise UsageError(
                f"{where}: {new_id} is already matched with {claimed[new_id]}",
                hint="a new flow can be the twin of one legacy flow only",
            )
        claimed[new_id] = legacy_id
        result[legacy_id] = new
    return result


def _usable_logins(logins: Sequence[Login], now: datetime) -> list[Login]:
    """Logins whose grant has not run out (an unknown expiry counts as usable)."""
    usable = []
    for login in logins:
        expiry = login.credential_expiry()
        if expiry is None or aware(expiry) > now:
            usable.append(login)
    return usable


# -- the planning itself ----------------------------------------------------------------------


@dataclass
class _PairDecision:
    """A pair whose legacy flow is enabled: what it needs, before dependencies are known."""

    legacy: Flow
    new: Flow
    missing: list[str]
    note: str


@dataclass
class _Planner:
    logins: list[Login]
    now: datetime
    margin: timedelta
    disable_legacy: bool
    only_flows: frozenset[str]
    matches: Mapping[str, Flow]
    #: What keeps legacy flows on when ``disable_legacy`` is off (for the warnings).
    kept_by: str = "--keep-legacy"
    via: Literal["adobe", "api"] = "adobe"
    #: Switch legacy flows off only after their twins' first runs succeeded.
    wait_runs: bool = False
    actions: list[Action] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)
    orphans: list[Orphan] = field(default_factory=list)
    blockers: list[Blocker] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def _selected(self, *flow_ids: str | None) -> bool:
        return not self.only_flows or any(fid in self.only_flows for fid in flow_ids if fid)

    def plan_sandbox(self, sb: SandboxInventory) -> None:
        if sb.legacy_gone:
            self.warnings.append(sb.legacy_gone)
        legacy_flows = sorted(sb.flows_of("legacy"), key=lambda f: (f.name, f.id))
        new_flows = sorted(sb.flows_of("new"), key=lambda f: (f.name, f.id))
        self._warn_about_data(sb, legacy_flows, new_flows)

        matched = {lid: new for lid, new in self.matches.items() if new.sandbox == sb.name}
        claimed = {new.id for new in matched.values()}
        new_by_key: dict[tuple[str, str], list[Flow]] = defaultdict(list)
        for flow in new_flows:
            if flow.id not in claimed and (key := pair_key(flow)) is not None:
                new_by_key[key].append(flow)
        legacy_by_key: dict[tuple[str, str], list[Flow]] = defaultdict(list)
        for flow in legacy_flows:
            if flow.id not in matched and (key := pair_key(flow)) is not None:
                legacy_by_key[key].append(flow)

        exactly_paired = frozenset(
            f.id for key, flows in new_by_key.items() if key in legacy_by_key for f in flows
        )
        decisions: list[_PairDecision] = []
        #: new flows that are, or will be, enabled: their accounts need live credentials
        live: set[str] = set()
        seen_new: set[str] = set()
        for legacy in legacy_flows:
            if legacy.id in matched:
                twin = matched[legacy.id]
                note = MATCH_NOTE
                if twin.name != legacy.name:
                    note += f" (the new flow is named {twin.name!r})"
                self._pair(sb, legacy, twin, note, decisions, live, seen_new)
                continue
            if legacy.advertiser_id is None:
                candidates = [f for f in new_flows if f.name == legacy.name]
                if self._selected(legacy.id, *(c.id for c in candidates)):
                    seen_new.update(c.id for c in candidates)
                    self._block(
                        sb,
                        legacy,
                        "no_advertiser_id",
                        candidates,
                        f"legacy flow {legacy.name!r} has no Pinterest ad account id, so its "
                        f"twin cannot be told; pair it by hand with --match {legacy.id}=NEW_ID",
                    )
                continue
            key = (legacy.name, legacy.advertiser_id)
            candidates = new_by_key.get(key, [])
            rivals = legacy_by_key[key]
            if not self._selected(legacy.id, *(c.id for c in candidates)):
                continue
            seen_new.update(c.id for c in candidates)
            if not candidates:
                self.orphans.append(
                    Orphan(
                        sandbox=sb.name,
                        flow_id=legacy.id,
                        flow_name=legacy.name,
                        advertiser_id=legacy.advertiser_id,
                        state=legacy.state,
                        reason=_orphan_reason(legacy, new_flows, matched, exactly_paired),
                    )
                )
            elif len(candidates) == 1 and len(rivals) == 1:
                note = self._settled_by_match(sb, legacy, candidates[0], matched)
                self._pair(sb, legacy, candidates[0], note, decisions, live, seen_new)
            elif len(candidates) > 1:
                self._block(
                    sb,
                    legacy,
                    "ambiguous",
                    candidates,
                    f"{len(candidates)} new flows are named {legacy.name!r} for ad account "
                    f"{legacy.advertiser_id}; settle it with --match {legacy.id}=NEW_ID",
                )
            else:
                others = ", ".join(r.id for r in rivals if r.id != legacy.id)
                self._block(
                    sb,
                    legacy,
                    "ambiguous",
                    candidates,
                    f"legacy flows {legacy.id} and {others} share the name {legacy.name!r} and "
                    f"ad account {legacy.advertiser_id} but there is one new flow; "
                    f"settle it with --match LEGACY_ID={candidates[0].id}",
                )

        for flow in new_flows:
            selected = flow.id in seen_new if self.only_flows else True
            if flow.enabled and (selected or flow.id in self.only_flows):
                live.add(flow.id)

        reconnects = self._reconnects(sb, [f for f in new_flows if f.id in live])
        for decision in decisions:
            self._pair_actions(sb, decision, reconnects)

    def _settled_by_match(
        self, sb: SandboxInventory, legacy: Flow, twin: Flow, matched: Mapping[str, Flow]
    ) -> str:
        """A pair by name that was ambiguous until a ``--match`` took the other flows of its
        name and ad account: say so (plan warning and pair note), naming the ``--match``."""
        key = pair_key(legacy)
        settling = sorted(
            f"--match {lid}={new.id}"
            for lid, new in matched.items()
            if pair_key(new) == key or lid in {f.id for f in sb.flows if pair_key(f) == key}
        )
        if not settling:
            return ""
        which = ", ".join(settling)
        self.warnings.append(
            f"{sb.name}: {which} also settled the ambiguous legacy flow {legacy.name!r} "
            f"({legacy.id}): it is now paired by name with new flow {twin.id}, the only one "
            f"left; if that is wrong, pair it with --match {legacy.id}=NEW_ID"
        )
        return f"settled by {which} (the only new flow of this name left)"

    def _warn_about_data(
        self, sb: SandboxInventory, legacy_flows: list[Flow], new_flows: list[Flow]
    ) -> None:
        for flow in (*legacy_flows, *new_flows):
            if flow.advertiser_id is None and self._selected(flow.id):
                self.warnings.append(
                    f"{sb.name}: {flow.card} flow {flow.name!r} ({flow.id}) has no Pinterest "
                    "ad account id on its target connection"
                )
        if self.only_flows:
            return
        served = {tc.base_connection_id for tc in sb.target_connections}
        for account in sorted(sb.accounts, key=lambda a: (a.name, a.id)):
            if account.card == "new" and account.id not in served:
                self.warnings.append(
                    f"{sb.name}: new-card account {account.name!r} ({account.id}) has no "
                    "target connection (no ad account is set up on it)"
                )

    def _block(
        self, sb: SandboxInventory, legacy: Flow, kind: str, candidates: list[Flow], message: str
    ) -> None:
        ids = sorted(c.id for c in candidates)
        self.blockers.append(
            Blocker(
                sandbox=sb.name,
                kind=kind,
                flow_id=legacy.id,
                flow_name=legacy.name,
                candidates=ids,
                message=message,
            )
        )
        self.pairs.append(
            Pair(
                sandbox=sb.name,
                legacy_flow_id=legacy.id,
                legacy_flow_name=legacy.name,
                new_flow_id=None,
                advertiser_id=legacy.advertiser_id,
                legacy_state=legacy.state,
                status="blocked",
                note=message,
            )
        )

    def _pair(
        self,
        sb: SandboxInventory,
        legacy: Flow,
        new: Flow,
        note: str,
        decisions: list[_PairDecision],
        live: set[str],
        seen_new: set[str],
    ) -> None:
        if not self._selected(legacy.id, new.id):
            return
        seen_new.add(new.id)
        missing = _missing_audiences(legacy, new)
        if not legacy.enabled:
            status = "migrated" if new.enabled else "legacy_disabled"
            self.pairs.append(_pair_record(sb, legacy, new, status, missing, note))
            return
        if not new.enabled:
            live.add(new.id)
        decisions.append(_PairDecision(legacy, new, missing, note))

    def _reconnects(self, sb: SandboxInventory, live_flows: list[Flow]) -> dict[str, Action]:
        """One reconnect per new-card account of a live flow whose credentials run out."""
        accounts = {a.id: a for a in sb.accounts}
        flows_of: dict[str, list[str]] = defaultdict(list)
        for flow in live_flows:
            account = accounts.get(flow.account_id or "")
            if account is None:
                self.warnings.append(
                    f"{sb.name}: new flow {flow.name!r} ({flow.id}) uses account "
                    f"{flow.account_id or '(none)'}, which is not on the new card; "
                    "its credentials cannot be checked"
                )
                continue
            if account.card == "new":
                flows_of[account.id].append(flow.id)
        advertisers: dict[str, set[str]] = defaultdict(set)
        for tc in sb.target_connections:
            if tc.base_connection_id and tc.advertiser_id:
                advertisers[tc.base_connection_id].add(tc.advertiser_id)
        for flow in sb.flows_of("new"):
            if flow.account_id in flows_of and flow.advertiser_id:
                advertisers[flow.account_id].add(flow.advertiser_id)

        result: dict[str, Action] = {}
        for account_id, flow_ids in flows_of.items():
            account = accounts[account_id]
            if not needs_reconnect(account.expires_at, self.now, self.margin):
                continue
            ids = sorted(advertisers.get(account_id, set()))
            check = preflight(ids, self.logins)
            user = check.login.label if check.login is not None else None
            if check.status == "missing_access":
                self.warnings.append(
                    f"{sb.name}: Pinterest user {user} cannot manage audiences of "
                    f"{name_all(check.missing, 'ad account')} of account {account.name!r} "
                    f"({account.id}); "
                    "whoever reconnects it must sign in to Pinterest as a user who can"
                )
            action = ReconnectAccount(
                id=action_id("reconnect_account", sb.name, account.id),
                sandbox=sb.name,
                target_id=account.id,
                target_name=account.name,
                precondition=ReconnectPrecondition(expires_at=iso(account.expires_at)),
                details=ReconnectDetails(
                    advertiser_ids=ids,
                    login=check.login.user_id if check.status == "ok" and check.login else None,
                    needs_login=check.status != "ok",
                    flows=sorted(flow_ids),
                    via=self.via,
                    expiry_rule=account.expiry_rule,
                    preflight=check.status,
                    preflight_user=user,
                    missing_access=list(check.missing) if check.missing else None,
                ),
            )
            result[account_id] = action
            self.actions.append(action)
        return result

    def _pair_actions(
        self, sb: SandboxInventory, decision: _PairDecision, reconnects: Mapping[str, Action]
    ) -> None:
        legacy, new, missing = decision.legacy, decision.new, decision.missing
        add: AddAudiences | None = None
        enable: EnableFlow | None = None
        disable: DisableFlow | None = None
        if missing:
            wanted = set(missing)
            audiences = sorted(
                {a.id: a for a in legacy.audiences if a.id in wanted}.values(), key=lambda a: a.id
            )
            add = AddAudiences(
                **self._target("add_audiences", sb, new),
                precondition=AddAudiencesPrecondition(
                    legacy_flow_id=legacy.id, legacy_state=legacy.state, missing=missing
                ),
                details=AddAudiencesDetails(
                    audiences=[
                        AudienceRef(id=a.id, name=a.name, description=a.description)
                        for a in audiences
                    ],
                    legacy_flow_id=legacy.id,
                ),
            )
            self.actions.append(add)
        reconnect = reconnects.get(new.account_id or "")
        if not self.disable_legacy:
            now_or_later = "are both enabled" if new.enabled else "will both be enabled"
            self.warnings.append(
                f"{sb.name}: legacy flow {legacy.name!r} ({legacy.id}) and its twin "
                f"{now_or_later}, so its audiences are delivered twice until the legacy flow "
                f"is switched off ({self.kept_by} leaves it on)"
            )
        if not new.enabled:
            enable = EnableFlow(
                **self._target("enable_flow", sb, new),
                precondition=EnablePrecondition(
                    state=new.state, legacy_flow_id=legacy.id, legacy_state=legacy.state
                ),
                details=EnableDetails(account_id=new.account_id, advertiser_id=new.advertiser_id),
                depends_on=[a.id for a in (reconnect, add) if a is not None],
            )
            self.actions.append(enable)
        elif self.disable_legacy:
            self.warnings.append(
                f"{sb.name}: legacy flow {legacy.name!r} ({legacy.id}) and its twin are both "
                "enabled, so its audiences are delivered twice; the plan switches the legacy "
                "flow off"
            )
        if self.disable_legacy:
            # Switch the legacy flow off only once its twin can take over: after the enable,
            # or, when the twin is already on, after its audiences and credentials are fixed.
            after = [enable] if enable is not None else [reconnect, add]
            disable = DisableFlow(
                **self._target("disable_flow", sb, legacy),
                precondition=DisablePrecondition(
                    state=legacy.state, twin_flow_id=new.id, twin_state=new.state
                ),
                details=DisableDetails(
                    twin_flow_id=new.id,
                    advertiser_id=legacy.advertiser_id,
                    after="first_run_succeeds" if self.wait_runs else "twin_enabled",
                ),
                depends_on=[a.id for a in after if a is not None],
            )
            self.actions.append(disable)
        planned = any(a is not None for a in (add, enable, disable))
        status = "migrate" if planned else "migrated"
        note = decision.note
        if not planned and legacy.enabled:
            note = _join(note, "legacy flow kept enabled")
        self.pairs.append(_pair_record(sb, legacy, new, status, missing, note))

    @staticmethod
    def _target(kind: ActionKind, sb: SandboxInventory, flow: Flow) -> dict[str, str]:
        """The fields every action on ``flow`` shares."""
        return {
            "id": action_id(kind, sb.name, flow.id),
            "sandbox": sb.name,
            "target_id": flow.id,
            "target_name": flow.name,
        }


def _loose_name(name: str) -> str:
    """A name as a person reads it: Unicode NFC, spaces collapsed and trimmed, case folded."""
    folded = " ".join(unicodedata.normalize("NFC", name).split()).casefold()
    return unicodedata.normalize("NFC", folded)


def _name_difference(a: str, b: str) -> str:
    """What tells two loosely equal names apart, in words."""
    parts = []
    x, y = unicodedata.normalize("NFC", a), unicodedata.normalize("NFC", b)
    if (x, y) != (a, b):
        parts.append("Unicode form (composed or decomposed accents)")
    if x != y and (" ".join(x.split()), " ".join(y.split())) != (x, y):
        parts.append("spacing")
        x, y = " ".join(x.split()), " ".join(y.split())
    if x != y:
        parts.append("case")
    return " and ".join(parts)


def _orphan_reason(
    legacy: Flow,
    new_flows: Sequence[Flow],
    matched: Mapping[str, Flow] | None = None,
    exactly_paired: frozenset[str] = frozenset(),
) -> str:
    """Why a legacy flow has no twin, with the likely fix when one is in sight.

    Pairing stays by equal name (the contract). A new flow of the same ad account whose name
    differs only in Unicode form, spacing or case is pointed out with the ``--match`` that
    pairs them, and a twin by name that a ``--match`` gave to another legacy flow is named.
    ``exactly_paired``: new flows an exact-name legacy flow claims, never offered again."""
    reason = "no flow of the new card has this name and ad account"
    taken_by = {new.id: lid for lid, new in (matched or {}).items()}
    for flow in new_flows:
        if (
            flow.id in taken_by
            and flow.name == legacy.name
            and flow.advertiser_id == legacy.advertiser_id
        ):
            return (
                f"its twin by name, new flow {flow.name!r} ({flow.id}), is paired with legacy "
                f"flow {taken_by[flow.id]} by --match; pair this one with another new flow "
                f"(--match {legacy.id}=NEW_ID) or leave it"
            )
    loose = _loose_name(legacy.name)
    near = [
        f
        for f in new_flows
        if f.advertiser_id == legacy.advertiser_id
        and f.name != legacy.name
        and f.id not in taken_by
        and f.id not in exactly_paired
        and _loose_name(f.name) == loose
    ]
    if not near:
        return reason
    named = ", ".join(
        f"{f.name!r} ({f.id}) differs only in {_name_difference(legacy.name, f.name)}" for f in near
    )
    return f"{reason}; {named}: if it is the twin, pair them with --match {legacy.id}={near[0].id}"


def _missing_audiences(legacy: Flow, new: Flow) -> list[str]:
    have = new.audience_ids
    return sorted({a.id for a in legacy.audiences if a.id not in have})


def _pair_record(
    sb: SandboxInventory, legacy: Flow, new: Flow, status: str, missing: list[str], note: str
) -> Pair:
    return Pair(
        sandbox=sb.name,
        legacy_flow_id=legacy.id,
        legacy_flow_name=legacy.name,
        new_flow_id=new.id,
        new_flow_name=new.name,
        advertiser_id=legacy.advertiser_id,
        legacy_state=legacy.state,
        new_state=new.state,
        status=status,
        missing_audiences=missing,
        note=note,
    )


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


__all__ = [
    "MATCH_NOTE",
    "PlanOptions",
    "choose_login",
    "draft_plan",
    "make_plan",
    "manages_audiences",
    "needs_reconnect",
    "pair_key",
    "preflight",
    "twin_problem",
]
