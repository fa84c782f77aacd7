"""The executor: the only code that writes to Adobe.

It takes a plan (or, for rollback, a list of flow-state changes), re-reads every object the
plan relied on with a few filtered list calls, and decides per action: the goal is already
reached (``already_done``), the precondition still holds (to do), or the world changed
(stale: stop before the first write). Then it runs the actions in waves that follow the
contract's order and ``depends_on``, with independent actions of a wave in parallel, each
write journalled before and after. A wave ends with one batched re-read that confirms every
write of it, so the next wave (and its dependency checks) sees the world as it now is.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pinmigrate import models, redact
from pinmigrate.errors import (
    NotFoundError,
    PinmigrateError,
    StaleObjectError,
    StalePlanError,
)
from pinmigrate.inventory import Account, Audience, Card, Flow
from pinmigrate.journal import ActionRef, Journal, RunRecord, WriteOutcome
from pinmigrate.plan import KIND_ORDER, Action, Blocker, Orphan, Plan
from pinmigrate.plan import action_id as action_id_of

if TYPE_CHECKING:
    from pinmigrate.adobe import AdobeClient
    from pinmigrate.logins import Login
    from pinmigrate.settings import Settings

log = logging.getLogger("pinmigrate.executor")

Status = Literal["pending", "done", "already_done", "skipped", "failed"]
OK_STATUSES = frozenset({"done", "already_done"})
#: Up to this many objects in a sandbox are read with one GET each; more with filtered lists.
GET_LIMIT = 4
#: After a login that took longer than this (a person in a browser), objects are re-read.
RECHECK_AFTER = 30.0
#: Where flows keep the card they deliver to (api-notes §3).
FLOW_SPEC_PROPERTY = "inheritedAttributes.targetConnections[].connectionSpec.id"


# --- what callers see -------------------------------------------------------------------------


@dataclass
class ActionResult:
    action_id: str
    kind: str
    sandbox: str
    target_id: str
    target_name: str = ""
    status: Status = "pending"
    error: str | None = None
    #: A human remark that is not an error ("412: retried with a fresh etag").
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "action_id": self.action_id,
            "kind": self.kind,
            "target_id": self.target_id,
            "status": self.status,
            "error": self.error,
        }

    @property
    def label(self) -> str:
        name = f" {self.target_name!r}" if self.target_name else f" {self.target_id}"
        return f"{self.kind} {self.sandbox}{name}"


@dataclass
class RunCheck:
    """The first run of a flow after it was enabled (``apply --wait-runs``)."""

    flow_id: str
    sandbox: str
    flow_name: str
    #: success | failed | processing | waiting | timeout | ...
    status: str
    run_id: str | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "flow_id": self.flow_id,
            "sandbox": self.sandbox,
            "flow_name": self.flow_name,
            "status": self.status,
            "run_id": self.run_id,
            "detail": self.detail,
        }


@dataclass
class ApplyReport:
    """What an apply (or rollback) did, for the final table and the JSON output."""

    run_id: str
    results: list[ActionResult]
    kind: str = "pinmigrate.apply"
    blockers: list[Blocker] = field(default_factory=list)
    orphans: list[Orphan] = field(default_factory=list)
    retries: int = 0
    runs: list[RunCheck] = field(default_factory=list)
    #: Things deliberately not done, said once in the report (e.g. rollback leaves audiences).
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(r.status in OK_STATUSES for r in self.results)

    @property
    def failed_runs(self) -> list[RunCheck]:
        return [r for r in self.runs if r.status == "failed"]

    def counts(self) -> dict[str, int]:
        counts = {"done": 0, "already_done": 0, "skipped": 0, "failed": 0}
        for result in self.results:
            counts[result.status] = counts.get(result.status, 0) + 1
        return counts

    def summary(self) -> dict[str, int]:
        summary = self.counts()
        summary["retries"] = self.retries
        summary["blocked"] = len(self.blockers)
        summary["orphans"] = len(self.orphans)
        return summary

    def to_json(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "schema_version": 1,
            "kind": self.kind,
            "run_id": self.run_id,
            **self.extra,
            "results": [r.to_json() for r in self.results],
        }
        if self.kind == "pinmigrate.apply":
            # What the plan left out, itemised for scripts (the summary only counts them).
            payload["blockers"] = [
                {
                    "sandbox": b.sandbox,
                    "flow_id": b.flow_id,
                    "name": b.flow_name,
                    "kind": b.kind,
                    "candidates": list(b.candidates),
                    "reason": b.message,
                }
                for b in self.blockers
            ]
            payload["orphans"] = [
                {
                    "sandbox": o.sandbox,
                    "flow_id": o.flow_id,
                    "name": o.flow_name,
                    "reason": o.reason or "no twin on the new card",
                }
                for o in self.orphans
            ]
        payload["summary"] = self.summary()
        if self.runs:
            payload["runs"] = [r.to_json() for r in self.runs]
        return payload


class Progress(Protocol):
    """Told about each action as it ends; called from one thread only."""

    def start(self, total: int) -> None: ...

    def advance(self, result: ActionResult) -> None: ...

    def finish(self) -> None: ...


class LoginSource(Protocol):
    """Hands out a fresh Pinterest login covering an account's ad accounts (oauth.resolvers)."""

    def for_account(
        self,
        advertiser_ids: Iterable[str],
        login_user_id: str | None,
    ) -> Login: ...


# --- the world as re-read ---------------------------------------------------------------------


@dataclass(frozen=True)
class FlowView:
    flow: Flow
    raw: dict[str, Any]


@dataclass
class World:
    """The freshly read objects an apply relies on; updated as writes are confirmed."""

    flows: dict[str, FlowView] = field(default_factory=dict)
    accounts: dict[str, Account] = field(default_factory=dict)

    def flow(self, flow_id: str | None) -> Flow | None:
        view = self.flows.get(flow_id or "")
        return view.flow if view else None

    def merge(self, other: World) -> None:
        self.flows.update(other.flows)
        self.accounts.update(other.accounts)


@dataclass
class Wants:
    """The objects to read in one sandbox: flow id -> card, and account ids (new card)."""

    flows: dict[str, Card] = field(default_factory=dict)
    accounts: set[str] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.flows) + len(self.accounts)


class Reader:
    """Reads objects back, batched: a handful with GETs, more with filtered paged lists."""

    def __init__(
        self, adobe: AdobeClient, settings: Settings, *, workers: int, get_limit: int = GET_LIMIT
    ) -> None:
        self.adobe = adobe
        self.settings = settings
        self.workers = max(1, workers)
        self.get_limit = get_limit
        self._specs: dict[tuple[str, Card], str | None] = {}
        self._lock = threading.Lock()

    def read(self, wants: Mapping[str, Wants]) -> World:
        world = World()
        wanted = {sb: w for sb, w in wants.items() if len(w)}
        if not wanted:
            return world
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="read") as pool:
            listed = {sb: w for sb, w in wanted.items() if len(w) > self.get_limit}
            self._resolve_specs(pool, listed)
            jobs: list[Future[World]] = []
            for sandbox, want in wanted.items():
                if sandbox in listed:
                    jobs.extend(self._list_jobs(pool, sandbox, want))
                else:
                    jobs.extend(self._get_jobs(pool, sandbox, want))
            for job in jobs:
                world.merge(job.result())
            # Anything a filtered list did not return is looked up directly (or is gone).
            rest = {}
            for sandbox, want in wanted.items():
                missing = Wants(
                    flows={i: c for i, c in want.flows.items() if i not in world.flows},
                    accounts={i for i in want.accounts if i not in world.accounts},
                )
                if len(missing) and sandbox in listed:
                    rest[sandbox] = missing
            for job in [j for sb, w in rest.items() for j in self._get_jobs(pool, sb, w)]:
                world.merge(job.result())
        return world

    def spec_id(self, sandbox: str, card: Card) -> str | None:
        with self._lock:
            if (sandbox, card) in self._specs:
                return self._specs[(sandbox, card)]
        from pinmigrate.cards import find_card

        found: str | None
        try:
            found = find_card(self.adobe, self.settings, card, sandbox).id
        except NotFoundError:
            found = None
        with self._lock:
            self._specs[(sandbox, card)] = found
        return found

    def _resolve_specs(self, pool: ThreadPoolExecutor, listed: Mapping[str, Wants]) -> None:
        needed: set[tuple[str, Card]] = set()
        for sandbox, want in listed.items():
            needed.update((sandbox, card) for card in want.flows.values())
            if want.accounts:
                needed.add((sandbox, "new"))
        futures = [pool.submit(self.spec_id, sb, card) for sb, card in sorted(needed)]
        for future in futures:
            future.result()

    def _list_jobs(
        self, pool: ThreadPoolExecutor, sandbox: str, want: Wants
    ) -> list[Future[World]]:
        jobs = []
        for card in sorted(set(want.flows.values())):
            spec = self._specs.get((sandbox, card))
            if spec:
                ids = {i for i, c in want.flows.items() if c == card}
                jobs.append(pool.submit(self._list_flows, sandbox, card, spec, ids))
        spec = self._specs.get((sandbox, "new"))
        if want.accounts and spec:
            jobs.append(pool.submit(self._list_accounts, sandbox, spec, set(want.accounts)))
        return jobs

    def _get_jobs(self, pool: ThreadPoolExecutor, sandbox: str, want: Wants) -> list[Future[World]]:
        jobs = [
            pool.submit(self._get_flow, sandbox, flow_id, card)
            for flow_id, card in sorted(want.flows.items())
        ]
        jobs += [pool.submit(self._get_account, sandbox, i) for i in sorted(want.accounts)]
        return jobs

    def _list_flows(self, sandbox: str, card: Card, spec: str, ids: set[str]) -> World:
        world = World()
        for raw in self.adobe.list(
            "flows", sandbox=sandbox, properties=[f"{FLOW_SPEC_PROPERTY}=={spec}"]
        ):
            if str(raw.get("id")) in ids:
                flow = models.flow_from_payload(raw, card, sandbox=sandbox)
                world.flows[flow.id] = FlowView(flow, raw)
        return world

    def _list_accounts(self, sandbox: str, spec: str, ids: set[str]) -> World:
        world = World()
        for raw in self.adobe.list(
            "connections", sandbox=sandbox, properties=[f"connectionSpec.id=={spec}"]
        ):
            if str(raw.get("id")) in ids:
                account = models.account_from_payload(raw, "new", sandbox=sandbox)
                world.accounts[account.id] = account
        return world

    def _get_flow(self, sandbox: str, flow_id: str, card: Card) -> World:
        world = World()
        view = self.flow(sandbox, flow_id, card)
        if view is not None:
            world.flows[flow_id] = view
        return world

    def _get_account(self, sandbox: str, account_id: str) -> World:
        world = World()
        account = self.account(sandbox, account_id)
        if account is not None:
            world.accounts[account_id] = account
        return world

    def flow(self, sandbox: str, flow_id: str, card: Card) -> FlowView | None:
        """One flow, or None when Adobe no longer has it."""
        try:
            raw = self.adobe.get("flows", flow_id, sandbox=sandbox)
        except NotFoundError:
            return None
        return FlowView(models.flow_from_payload(raw, card, sandbox=sandbox), raw)

    def account(self, sandbox: str, account_id: str) -> Account | None:
        try:
            raw = self.adobe.get("connections", account_id, sandbox=sandbox)
        except NotFoundError:
            return None
        return models.account_from_payload(raw, "new", sandbox=sandbox)


# --- deciding per action ----------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    #: "todo" | "already_done" | "stale"
    outcome: str
    reason: str = ""


TODO = Verdict("todo")
ALREADY = Verdict("already_done")


def target_card(action: Action) -> Card:
    """The card of the flow an action changes (apply semantics; rollback passes its own)."""
    return "legacy" if action.kind == "disable_flow" else "new"


def wants_of(
    actions: Iterable[Action], cards: Mapping[str, Card] | None = None
) -> dict[str, Wants]:
    """Every object the actions' goals and preconditions look at, per sandbox."""
    wants: dict[str, Wants] = defaultdict(Wants)
    for action in actions:
        want = wants[action.sandbox]
        if action.kind == "reconnect_account":
            want.accounts.add(action.target_id)
            continue
        card = (cards or {}).get(action.id) or target_card(action)
        want.flows[action.target_id] = card
        legacy_id = action.precondition.get("legacy_flow_id")
        if legacy_id:
            want.flows.setdefault(str(legacy_id), "legacy")
        twin_id = action.precondition.get("twin_flow_id")
        if twin_id:
            want.flows.setdefault(str(twin_id), "new")
    return dict(wants)


def _flow_label(flow: Flow | None, flow_id: str, sandbox: str, fallback: str = "") -> str:
    name = flow.name if flow is not None else fallback
    return f"flow {name!r} ({sandbox}, {flow_id})" if name else f"flow {flow_id} ({sandbox})"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def credentials_ok(expires_at: datetime | None, now: datetime, margin: timedelta) -> bool:
    """The reconnect goal: credentials that outlive the margin."""
    return expires_at is not None and _aware(expires_at) > _aware(now) + margin


def assess(
    action: Action, world: World, *, now: datetime, margin: timedelta, during_run: bool = False
) -> Verdict:
    """Goal first (already done?), then the precondition (still valid?), on fresh reads.

    ``during_run`` is the check right before a later wave writes: a legacy flow switched off
    since the run began stops its twin's changes, and a legacy flow is switched off only
    while its twin reads back enabled, whatever the plan saw.
    """
    sandbox = action.sandbox
    if action.kind == "reconnect_account":
        account = world.accounts.get(action.target_id)
        if account is None:
            return Verdict(
                "stale",
                f"account {action.target_name!r} ({sandbox}, {action.target_id}) no longer exists",
            )
        if credentials_ok(account.expires_at, now, margin):
            return ALREADY
        # Whatever else changed on the account, it still needs credentials: still valid.
        return TODO

    flow = world.flow(action.target_id)
    label = _flow_label(flow, action.target_id, sandbox, action.target_name)
    if flow is None:
        return Verdict("stale", f"{label} no longer exists")
    pre = action.precondition

    if action.kind == "add_audiences":
        wanted = {str(a.get("id")) for a in action.details.get("audiences", [])}
        if wanted <= flow.audience_ids:
            return ALREADY
    elif action.kind == "enable_flow":
        if flow.state == "enabled":
            return ALREADY
    elif action.kind == "disable_flow":
        if flow.state == "disabled":
            return ALREADY
    else:  # pragma: no cover - the plan model admits no other kind
        return Verdict("stale", f"unknown action kind {action.kind}")

    expected_state = pre.get("state")
    if expected_state and flow.state != expected_state:
        return Verdict("stale", f"{label} is now {flow.state} (the plan saw {expected_state})")
    legacy_id = pre.get("legacy_flow_id")
    if legacy_id:
        legacy = world.flow(str(legacy_id))
        legacy_label = _flow_label(legacy, str(legacy_id), sandbox)
        if legacy is None:
            return Verdict("stale", f"legacy {legacy_label} no longer exists")
        expected = pre.get("legacy_state", "enabled")
        if legacy.state != expected:
            if during_run and expected == "enabled":
                return Verdict(
                    "stale",
                    f"legacy {legacy_label} was switched off during the run; "
                    f"its twin {flow.name!r} is left as it is",
                )
            return Verdict(
                "stale",
                f"legacy {legacy_label} is now {legacy.state} (the plan saw {expected}); "
                f"its twin {flow.name!r} is left as it is",
            )
        if action.kind == "add_audiences":
            gone = _audiences_gone_from_legacy(action, flow, legacy)
            if gone:
                return Verdict(
                    "stale",
                    f"legacy {legacy_label} no longer has audience {gone} "
                    f"(the plan would add it to its twin {flow.name!r}); nothing is added",
                )
    twin_id = pre.get("twin_flow_id")
    if twin_id:
        twin = world.flow(str(twin_id))
        twin_label = _flow_label(twin, str(twin_id), sandbox)
        if twin is None:
            return Verdict("stale", f"its twin {twin_label} no longer exists")
        # A twin the plan saw disabled is enabled by this plan first; one it saw enabled must
        # still be, or switching the legacy flow off would leave the audience unserved. Once
        # the run is under way, the twin must read back enabled either way.
        if (during_run or pre.get("twin_state") == "enabled") and twin.state != "enabled":
            seen = "it changed during the run" if during_run else "the plan saw enabled"
            return Verdict(
                "stale",
                f"twin {twin_label} is now {twin.state} ({seen}); legacy {flow.name!r} stays on",
            )
    return TODO


def _audiences_gone_from_legacy(action: Action, flow: Flow, legacy: Flow) -> str:
    """The audiences an add_audiences action still has to add that its legacy flow no longer
    has (the operator removed them since the plan), as shown in a message; "" when none."""
    audiences = action.details.get("audiences", [])
    names = {str(a.get("id")): str(a.get("name") or "") for a in audiences}
    wanted = [str(a) for a in action.precondition.get("missing") or names]
    gone = [a for a in wanted if a not in flow.audience_ids and a not in legacy.audience_ids]
    return ", ".join(f"{names[a]!r} ({a})" if names.get(a) else a for a in gone)


def waves_of(actions: Sequence[Action]) -> list[list[Action]]:
    """Group actions so each runs after the contract's earlier kinds and its dependencies."""
    by_id = {a.id: a for a in actions}
    rank = {kind: i for i, kind in enumerate(KIND_ORDER)}
    level: dict[str, int] = {}

    def level_of(action: Action, trail: frozenset[str]) -> int:
        if action.id in level:
            return level[action.id]
        own = rank.get(action.kind, len(rank)) * (len(actions) + 1)
        deps = [by_id[d] for d in action.depends_on if d in by_id and d not in trail]
        value = max([own, *(level_of(d, trail | {action.id}) + 1 for d in deps)])
        level[action.id] = value
        return value

    for action in actions:
        level_of(action, frozenset())
    grouped: dict[int, list[Action]] = defaultdict(list)
    for action in actions:
        grouped[level[action.id]].append(action)
    return [grouped[k] for k in sorted(grouped)]


# --- running ----------------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return _aware(moment).astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class _Written:
    """A write that Adobe accepted, awaiting the wave's confirming re-read."""

    action: Action
    result: ActionResult


class Executor:
    """Carries out actions; see the module docstring. One instance per run."""

    def __init__(
        self,
        *,
        adobe: AdobeClient,
        settings: Settings,
        journal: Journal,
        concurrency: int,
        logins: LoginSource | None = None,
        progress: Progress | None = None,
        now: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
        stale_policy: Literal["abort", "skip"] = "abort",
        cards: Mapping[str, Card] | None = None,
    ) -> None:
        import time

        self.adobe = adobe
        self.settings = settings
        self.journal = journal
        self.concurrency = max(1, concurrency)
        self.logins = logins
        self.progress = progress
        self.now = now or (lambda: datetime.now(UTC))
        self.sleep = sleep or time.sleep
        self.clock = clock or time.monotonic
        self.stale_policy = stale_policy
        self.cards = dict(cards or {})
        self.margin = timedelta(days=settings.migration.reconnect_margin_days)
        self.reader = Reader(adobe, settings, workers=self.concurrency)
        self.world = World()
        self._world_lock = threading.Lock()

    # -- the whole run --

    def run(
        self,
        actions: Sequence[Action],
        *,
        fingerprint: str | None = None,
        start_extra: Mapping[str, Any] | None = None,
        journal_start: bool = True,
    ) -> list[ActionResult]:
        """Check, then carry out ``actions``; every action ends with a status. With
        ``journal_start`` False the actions join a run whose run_start is already written."""
        results = {
            a.id: ActionResult(a.id, a.kind, a.sandbox, a.target_id, a.target_name) for a in actions
        }
        if not actions:
            return []
        verdicts = self._check(actions)
        todo = [a for a in actions if verdicts[a.id].outcome == "todo"]
        started = self.clock()
        logins = self._resolve_logins([a for a in todo if a.kind == "reconnect_account"])
        if self.clock() - started > RECHECK_AFTER:
            # A person took a while in the browser: the world may have moved meanwhile.
            verdicts = self._check(actions)
        for ident, verdict in verdicts.items():
            if verdict.outcome == "stale":
                results[ident].status = "skipped"
                results[ident].error = verdict.reason

        if journal_start:
            self.journal.run_start(
                fingerprint=fingerprint, action_ids=[a.id for a in actions], **(start_extra or {})
            )
        for action in actions:
            if verdicts[action.id].outcome == "already_done":
                results[action.id].status = "already_done"
        if self.progress:
            self.progress.start(len(actions))
        waves = waves_of(actions)
        try:
            with ThreadPoolExecutor(
                max_workers=self.concurrency, thread_name_prefix="write"
            ) as pool:
                # The staleness check just read everything: the first wave needs no re-read.
                fresh = True
                for index, wave in enumerate(waves):
                    upcoming = waves[index + 1] if index + 1 < len(waves) else []
                    fresh = self._run_wave(pool, wave, results, logins, fresh, upcoming)
        except Exception as exc:
            # A bug of ours must still end in a report and a run_end: the journal holds the
            # truth about any write that was under way.
            log.debug("the run stopped on an unexpected error", exc_info=True)
            for result in results.values():
                if result.status == "pending":
                    result.status = "failed"
                    result.error = (
                        f"the run stopped on an unexpected error ({describe(exc)}); "
                        "run apply again to check this action"
                    )
                    self._report(result)
        finally:
            if self.progress:
                self.progress.finish()
        return [results[a.id] for a in actions]

    def _check(self, actions: Sequence[Action]) -> dict[str, Verdict]:
        """Re-read every object and judge each action; stale stops here under "abort"."""
        self.world = self.reader.read(wants_of(actions, self.cards))
        now = self.now()
        verdicts = {a.id: assess(a, self.world, now=now, margin=self.margin) for a in actions}
        stale = [v for a in actions if (v := verdicts[a.id]).outcome == "stale"]
        if stale and self.stale_policy == "abort":
            changes = list(dict.fromkeys(v.reason for v in stale))
            raise StalePlanError(
                f"the plan is stale, nothing was changed: {'; '.join(changes)}; "
                "make a new plan (`pinmigrate plan --out FILE`) and review it",
                changes=changes,
            )
        return verdicts

    def _resolve_logins(self, reconnects: Sequence[Action]) -> dict[str, Login]:
        """Every login the reconnects need, before the first write (AuthError -> exit 4)."""
        chosen: dict[str, Login] = {}
        if not reconnects:
            return chosen
        if self.logins is None:
            raise PinmigrateError("internal: reconnects planned but no login source given")
        got: list[Login] = []
        for action in reconnects:
            advertisers = [str(a) for a in action.details.get("advertiser_ids", [])]
            named = action.details.get("login")
            login = next(
                (
                    g
                    for g in got
                    if (named is None or g.user_id == named) and g.covers(frozenset(advertisers))
                ),
                None,
            )
            if login is None:
                login = self.logins.for_account(advertisers, str(named) if named else None)
                got.append(login)
            redact.register(
                login.access_token.get_secret_value(),
                login.refresh_token.get_secret_value() if login.refresh_token else None,
            )
            chosen[action.id] = login
        return chosen

    def _run_wave(
        self,
        pool: ThreadPoolExecutor,
        wave: Sequence[Action],
        results: dict[str, ActionResult],
        logins: Mapping[str, Login],
        fresh: bool,
        upcoming: Sequence[Action],
    ) -> bool:
        """Run one wave; True when its confirming read also re-read the next wave's objects."""
        runnable: list[Action] = []
        for action in wave:
            result = results[action.id]
            if result.status != "pending":
                self._report(result)
                continue
            blocker = self._failed_dependency(action, results)
            if blocker is not None:
                result.status = "skipped"
                result.error = blocker
                self._report(result)
                continue
            runnable.append(action)
        if runnable and not fresh:
            try:
                self._merge(self.reader.read(wants_of(runnable, self.cards)))
                fresh = True
            except Exception as exc:  # an unexpected one too: the run must still end
                log.debug("re-reading before a wave failed", exc_info=True)
                why = describe(exc)
                for action in runnable:
                    self._end(
                        results[action.id],
                        "failed",
                        f"not attempted: re-reading it before writing failed: {why}; "
                        "run apply again",
                    )
                runnable = []
        runnable = self._recheck(runnable, results)

        futures: dict[Future[tuple[Status, str]], Action] = {}
        written: list[_Written] = []
        try:
            for action in runnable:
                futures[pool.submit(self._execute, action, logins.get(action.id))] = action
            for future in as_completed(futures):
                action = futures[future]
                result = results[action.id]
                try:
                    outcome = future.result()
                except Exception as exc:  # one action's surprise must not stop the others
                    log.debug("action %s raised", action.id, exc_info=True)
                    result.status = "failed"
                    result.error = describe(exc)
                    self.journal.error(_ref(action), result.error)
                    self._report(result)
                    continue
                result.status, result.note = outcome
                if result.status == "done":
                    written.append(_Written(action, result))
                else:
                    self._report(result)
        except BaseException:
            # Ctrl-C: writes not yet sent must not go out after the person said stop.
            for future in futures:
                future.cancel()
            raise
        if not runnable:
            return fresh  # nothing was sent, no time passed: the world is as fresh as it was
        return self._confirm(written, [a for a in upcoming if results[a.id].status == "pending"])

    def _recheck(
        self, runnable: Sequence[Action], results: Mapping[str, ActionResult]
    ) -> list[Action]:
        """Judge each action again on the world as last read, right before its wave writes.

        The staleness check ran once, before the first wave; the operator may have acted
        since (switched a legacy flow off, say). What no longer holds is not attempted."""
        now = self.now()
        with self._world_lock:
            world = World(dict(self.world.flows), dict(self.world.accounts))
        keep: list[Action] = []
        for action in runnable:
            verdict = assess(action, world, now=now, margin=self.margin, during_run=True)
            result = results[action.id]
            if verdict.outcome == "todo":
                keep.append(action)
            elif verdict.outcome == "already_done":
                result.note = "already so when its wave began"
                self._end(result, "already_done")
            else:
                self._end(result, "skipped", f"not attempted: {verdict.reason}")
        return keep

    def _end(self, result: ActionResult, status: Status, error: str | None = None) -> None:
        result.status = status
        result.error = redact.redact(error) if error else None
        self._report(result)

    def _merge(self, world: World) -> None:
        with self._world_lock:
            self.world.merge(world)

    def _failed_dependency(self, action: Action, results: Mapping[str, ActionResult]) -> str | None:
        for dep in action.depends_on:
            other = results.get(dep)
            if other is not None and other.status not in OK_STATUSES:
                why = f": {other.error}" if other.error and other.status == "failed" else ""
                return f"not attempted: it depends on {dep}, which {_past(other.status)}{why}"
        return None

    def _report(self, result: ActionResult) -> None:
        if self.progress:
            self.progress.advance(result)

    # -- one action --

    def _execute(self, action: Action, login: Login | None) -> tuple[Status, str]:
        if action.kind == "reconnect_account":
            if login is None:
                # Only when the world changed during a slow login: this account was fine then.
                raise PinmigrateError(
                    "no Pinterest login was chosen for this account before the first write",
                    hint="run apply again",
                )
            return self._reconnect(action, login)
        if action.kind == "add_audiences":
            return self._add_audiences(action)
        return self._flow_action(action)

    def _fresh(self, action: Action) -> Verdict:
        """Re-read one action's objects (after a 412) and judge it again."""
        world = self.reader.read(wants_of([action], self.cards))
        with self._world_lock:
            self.world.merge(world)
        return assess(action, world, now=self.now(), margin=self.margin)

    def _reconnect(self, action: Action, login: Login) -> tuple[Status, str]:
        account = self.world.accounts[action.target_id]
        expires = login.credential_expiry()
        ops = models.reconnect_ops(
            login.access_token.get_secret_value(),
            login.refresh_token.get_secret_value() if login.refresh_token else None,
            expires,
        )
        ref = _ref(action)
        etag = account.etag
        note = ""
        for attempt in (1, 2):
            self.journal.before(
                ref, {"expiresAt": _iso(account.expires_at)}, login=login.user_id, attempt=attempt
            )
            try:
                self.adobe.patch(
                    "connections", action.target_id, ops, etag=etag, sandbox=action.sandbox
                )
            except StaleObjectError:
                self.journal.error(ref, "412: the account changed since it was read")
                verdict = self._fresh(action)
                if verdict.outcome == "already_done":
                    return "already_done", "another change reconnected it first"
                if verdict.outcome == "stale":
                    raise StaleObjectError(verdict.reason, object_id=action.target_id) from None
                if attempt == 2:
                    raise
                account = self.world.accounts[action.target_id]
                etag = account.etag
                note = "412: retried with a fresh etag"
                continue
            self.journal.after(ref, {"expiresAt": _iso(expires)}, login=login.user_id)
            return "done", note
        raise AssertionError("unreachable")

    def _add_audiences(self, action: Action) -> tuple[Status, str]:
        wanted = [
            Audience(str(a["id"]), str(a.get("name") or ""), str(a.get("description") or ""))
            for a in action.details.get("audiences", [])
        ]
        ref = _ref(action)
        note = ""
        for attempt in (1, 2):
            with self._world_lock:
                view = self.world.flows[action.target_id]
            present = view.flow.audience_ids
            missing = [a for a in wanted if a.id not in present]
            if not missing:
                return "already_done", note
            ops = models.add_audience_ops(view.raw, missing)
            self.journal.before(
                ref,
                {"audiences": sorted(present)},
                adding=[a.id for a in missing],
                attempt=attempt,
            )
            try:
                etag = self.adobe.patch(
                    "flows", action.target_id, ops, etag=view.flow.etag, sandbox=action.sandbox
                )
            except StaleObjectError:
                self.journal.error(ref, "412: the flow changed since it was read")
                # Re-read; audiences someone (or a replayed request) already added are not
                # added again: the next attempt sends only what is still missing.
                verdict = self._fresh(action)
                if verdict.outcome == "already_done":
                    return "already_done", "412: the audiences were already there on re-read"
                if verdict.outcome == "stale":
                    raise StaleObjectError(verdict.reason, object_id=action.target_id) from None
                if attempt == 2:
                    raise
                note = "412: retried with a fresh etag"
                continue
            self.journal.after(ref, {"audiences": sorted(present | {a.id for a in missing})})
            if etag:
                self._set_etag(action.target_id, etag)
            return "done", note
        raise AssertionError("unreachable")

    def _flow_action(self, action: Action) -> tuple[Status, str]:
        op: Literal["enable", "disable"] = "enable" if action.kind == "enable_flow" else "disable"
        goal = "enabled" if op == "enable" else "disabled"
        ref = _ref(action)
        pair = {
            k: action.precondition[k]
            for k in ("legacy_flow_id", "twin_flow_id")
            if action.precondition.get(k)
        }
        note = ""
        for attempt in (1, 2):
            with self._world_lock:
                flow = self.world.flows[action.target_id].flow
            if flow.state == goal:
                return "already_done", note
            self.journal.before(ref, {"state": flow.state}, attempt=attempt, **pair)
            try:
                answer = self.adobe.flow_action(
                    action.target_id, op, sandbox=action.sandbox, etag=flow.etag or None
                )
            except StaleObjectError:
                self.journal.error(ref, "412: the flow changed since it was read")
                verdict = self._fresh(action)
                if verdict.outcome == "already_done":
                    return "already_done", f"412: it was already {goal} on re-read"
                if verdict.outcome == "stale":
                    raise StaleObjectError(verdict.reason, object_id=action.target_id) from None
                if attempt == 2:
                    raise
                note = "412: retried with a fresh etag"
                continue
            self.journal.after(ref, {"state": goal}, **pair)
            if isinstance(answer.get("etag"), str):
                self._set_etag(action.target_id, answer["etag"])
            return "done", note
        raise AssertionError("unreachable")

    def _set_etag(self, flow_id: str, etag: str) -> None:
        with self._world_lock:
            view = self.world.flows.get(flow_id)
            if view is not None:
                flow = _replace_flow(view.flow, etag=etag)
                self.world.flows[flow_id] = FlowView(flow, {**view.raw, "etag": etag})

    # -- the wave's confirming re-read --

    def _confirm(self, written: Sequence[_Written], upcoming: Sequence[Action]) -> bool:
        """One batched read that confirms this wave's writes and re-reads what the next wave
        will look at; True when the latter worked (the next wave then needs no read)."""
        wants: dict[str, Wants] = defaultdict(Wants)
        for sandbox, want in wants_of(upcoming, self.cards).items():
            wants[sandbox] = want
        for item in written:
            action = item.action
            if action.kind == "reconnect_account":
                wants[action.sandbox].accounts.add(action.target_id)
            else:
                card = self.cards.get(action.id) or target_card(action)
                wants[action.sandbox].flows[action.target_id] = card
        if not any(len(w) for w in wants.values()):
            return True
        try:
            fresh = self.reader.read(wants)
        except Exception as exc:  # an unexpected one too: the run must still end in a report
            log.debug("the confirming read failed", exc_info=True)
            for item in written:
                item.result.status = "failed"
                item.result.error = redact.redact(
                    f"Adobe accepted the change, but reading it back failed: {describe(exc)}; "
                    "run apply again to check"
                )
                self.journal.error(_ref(item.action), item.result.error)
                self._report(item.result)
            return False
        self._merge(fresh)
        now = self.now()
        for item in written:
            problem = self._goal_problem(item.action, fresh, now)
            if problem:
                item.result.status = "failed"
                item.result.error = problem
                self.journal.error(_ref(item.action), problem)
            self._report(item.result)
        return True

    def _goal_problem(self, action: Action, world: World, now: datetime) -> str | None:
        """Why a confirmed read shows the goal not reached, or None when it is."""
        if action.kind == "reconnect_account":
            account = world.accounts.get(action.target_id)
            if account is None:
                return "the account disappeared right after it was reconnected"
            if credentials_ok(account.expires_at, now, self.margin):
                return None
            return (
                f"Adobe accepted the new credentials but the account reads back expiring at "
                f"{_iso(account.expires_at) or 'never set'}, within the "
                f"{self.margin.days}-day margin"
            )
        flow = world.flow(action.target_id)
        if flow is None:
            return "the flow disappeared right after the change"
        if action.kind == "add_audiences":
            wanted = {str(a.get("id")) for a in action.details.get("audiences", [])}
            lost = sorted(wanted - flow.audience_ids)
            if lost:
                shown = ", ".join(lost)
                return f"Adobe accepted the audiences but the flow reads back without {shown}"
            return None
        goal = "enabled" if action.kind == "enable_flow" else "disabled"
        if flow.state != goal:
            return f"Adobe accepted the change but the flow reads back {flow.state}"
        return None

    # -- first runs after enabling --

    def wait_runs(
        self, flows: Sequence[tuple[str, str, str]], *, timeout: float, interval: float = 10.0
    ) -> list[RunCheck]:
        """Poll ``GET /runs`` for each (flow id, sandbox, name) until its first run ends."""
        started = self.clock()
        since = self.now()
        pending = {
            flow_id: RunCheck(flow_id, sandbox, name, "waiting") for flow_id, sandbox, name in flows
        }
        done: dict[str, RunCheck] = {}
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="runs") as pool:
            while pending:
                checks = {
                    flow_id: pool.submit(self._latest_run, check, since)
                    for flow_id, check in pending.items()
                }
                for flow_id, future in checks.items():
                    check = future.result()
                    if check.status in ("success", "failed"):
                        done[flow_id] = check
                        del pending[flow_id]
                    else:
                        pending[flow_id] = check
                if not pending:
                    break
                if self.clock() - started + interval > timeout:
                    for flow_id, check in pending.items():
                        check.detail = check.detail or f"no finished run within {timeout:.0f}s"
                        done[flow_id] = RunCheck(
                            check.flow_id,
                            check.sandbox,
                            check.flow_name,
                            "timeout",
                            check.run_id,
                            f"last seen {check.status}; no finished run within {timeout:.0f}s",
                        )
                    break
                self.sleep(interval)
        return [done[flow_id] for flow_id, _, _ in flows]

    def _latest_run(self, check: RunCheck, since: datetime) -> RunCheck:
        try:
            raws = self.adobe.runs(check.flow_id, sandbox=check.sandbox)
            candidates = []
            for raw in raws:
                run = models.parse_run(raw)
                created = _run_time(raw)
                if created is not None and created < since - timedelta(seconds=5):
                    continue  # a run from before the flow was enabled
                candidates.append((created or since, run))
        except Exception as exc:  # a bad answer must not cost the report of what was done
            log.debug("reading the runs of %s failed", check.flow_id, exc_info=True)
            return RunCheck(
                check.flow_id, check.sandbox, check.flow_name, "waiting", None, describe(exc)
            )
        if not candidates:
            return RunCheck(check.flow_id, check.sandbox, check.flow_name, "waiting")
        _, run = max(candidates, key=lambda pair: pair[0])
        status = run.status or "processing"
        detail = "; ".join(run.errors)
        return RunCheck(check.flow_id, check.sandbox, check.flow_name, status, run.id, detail)


def _run_time(raw: Mapping[str, Any]) -> datetime | None:
    for key in ("createdAt", "startedAtUTC"):
        if key in raw:
            return models._parse_when(raw[key])
    metrics = raw.get("metrics")
    summary = metrics.get("durationSummary") if isinstance(metrics, dict) else None
    if isinstance(summary, dict) and "startedAtUTC" in summary:
        return models._parse_when(summary["startedAtUTC"])
    return None


def _replace_flow(flow: Flow, **changes: Any) -> Flow:
    from dataclasses import replace

    return replace(flow, **changes)


def describe(exc: BaseException) -> str:
    """One redacted line about an error: ours say what to do; others give type and message."""
    if isinstance(exc, PinmigrateError):
        return redact.redact(exc.line())
    return redact.redact(f"unexpected {type(exc).__name__}: {exc}")


def _past(status: str) -> str:
    return {"failed": "failed", "skipped": "was skipped", "pending": "did not run"}.get(
        status, status
    )


def _ref(action: Action) -> ActionRef:
    return ActionRef(action.id, action.kind, action.sandbox, action.target_id, action.target_name)


# --- the two public entry points --------------------------------------------------------------


def apply_plan(
    plan: Plan,
    *,
    adobe: AdobeClient,
    settings: Settings,
    logins: LoginSource | None,
    journal: Journal,
    concurrency: int,
    progress: Progress | None = None,
    wait_runs: bool = False,
    run_timeout: float = 900.0,
    now: Callable[[], datetime] | None = None,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] | None = None,
    start_extra: Mapping[str, Any] | None = None,
) -> ApplyReport:
    """Carry out a plan: staleness check, logins, then the waves. Raises StalePlanError (exit 3)
    or AuthError (exit 4) before any write; otherwise returns the report, failures included.
    ``start_extra`` goes into the journal's run_start (e.g. the interrupted run it finishes)."""
    executor = Executor(
        adobe=adobe,
        settings=settings,
        journal=journal,
        concurrency=concurrency,
        logins=logins,
        progress=progress,
        now=now,
        sleep=sleep,
        clock=clock,
    )
    retries_before = _retries(adobe)
    results = executor.run(plan.actions, fingerprint=plan.fingerprint, start_extra=start_extra)
    report = ApplyReport(
        run_id=journal.run_id,
        results=results,
        blockers=list(plan.blockers),
        orphans=list(plan.orphans),
    )
    if wait_runs:
        enabled = [
            (r.target_id, r.sandbox, r.target_name)
            for r in results
            if r.kind == "enable_flow" and r.status in OK_STATUSES
        ]
        if enabled:
            report.runs = executor.wait_runs(enabled, timeout=run_timeout)
    report.retries = _retries(adobe) - retries_before
    journal.run_end(report.summary())
    return report


def _retries(adobe: Any) -> int:
    stats = getattr(getattr(adobe, "http", None), "stats", None)
    return int(getattr(stats, "retries", 0) or 0)


@dataclass(frozen=True)
class RollbackPlan:
    """What undoing a run means: flow-state changes to revert, and what is left alone."""

    run_id: str
    actions: list[Action]
    cards: dict[str, Card]
    left_alone: list[str]
    #: Every run undone, newest first: the run named and the earlier runs it carried on.
    runs: list[str] = field(default_factory=list)
    #: Undo action id -> a remark shown with its result when it is done.
    notes: dict[str, str] = field(default_factory=dict)
    #: Undo action id -> the run whose interrupted write it undoes (assumed done).
    assumed: dict[str, str] = field(default_factory=dict)
    #: Re-enable of a legacy flow -> the switch-off of its twin: a pair rolled back as a unit.
    units: dict[str, str] = field(default_factory=dict)


def _shown(write: Mapping[str, Any]) -> str:
    sandbox, target = str(write.get("sandbox", "")), str(write.get("target_id", ""))
    name = str(write.get("target_name", ""))
    return f"{name!r} ({sandbox}, {target})" if name else f"{target} ({sandbox})"


def rollback_plan(record: RunRecord, earlier: Sequence[RunRecord] = ()) -> RollbackPlan:
    """Undo the flow-state changes of a run and of the ``earlier`` runs it carried on (newest
    first; see :func:`pinmigrate.journal.run_chain`). Audiences and reconnects stay.

    Which writes are undone:

    - a write with an ``after`` record: the run changed the object. Undone, each object at
      most once (its newest change wins), and only while it is still as the run left it.
    - a write that ended in an error, including a 412 whose re-read found the goal already
      reached by someone else: the run did not change the object, so it is left alone.
      Undoing it would switch on a flow the run never switched off.
    - an interrupted write (a ``before`` with neither ``after`` nor ``error``: the run was
      killed mid-call): undone only if its before-state differs from its target state and,
      at rollback time, the object reads back in the target state; it is then reported as
      "interrupted write, assumed done". Otherwise the write did not take effect and there
      is nothing to undo.

    Pairs are undone as a unit. A new flow is switched off after its legacy twin is back on,
    or, when the legacy flow is not being switched back on, only while that legacy flow is
    enabled (the audience is never left unserved). A legacy flow switched back on takes its
    twin down with it when these runs enabled, or set out to enable, that twin (a plan that
    saw it disabled), so a rollback never leaves both on and the audience delivered twice.
    """
    records = [record, *earlier]
    #: (kind, sandbox, target) -> (before record, outcome, run id); newest change first
    changes: dict[tuple[str, str, str], tuple[dict[str, Any], WriteOutcome, str]] = {}
    #: (sandbox, new flow id) -> a run that wrote an enable of it, whatever came of it
    tried_enable: dict[tuple[str, str], str] = {}
    #: (sandbox, new flow id) -> a run whose plan set out to enable it
    planned_enable: dict[tuple[str, str], str] = {}
    for rec in records:
        for action_id in rec.action_ids:
            kind, _, rest = action_id.partition(":")
            sandbox, _, target = rest.partition(":")
            if kind == "enable_flow" and target:
                planned_enable.setdefault((sandbox, target), rec.run_id)
        for write, outcome in rec.write_outcomes().values():
            kind = str(write.get("kind", ""))
            key = (kind, str(write.get("sandbox", "")), str(write.get("target_id", "")))
            if kind == "enable_flow":
                tried_enable.setdefault(key[1:], rec.run_id)
            if outcome == "error":
                continue
            if outcome == "interrupted" and kind in ("enable_flow", "disable_flow"):
                goal = "enabled" if kind == "enable_flow" else "disabled"
                if (write.get("before") or {}).get("state") == goal:
                    continue  # it could not have changed anything
            known = changes.get(key)
            if known is None or (known[1] == "interrupted" and outcome == "done"):
                changes[key] = (write, outcome, rec.run_id)

    actions: list[Action] = []
    cards: dict[str, Card] = {}
    left: list[str] = []
    notes: dict[str, str] = {}
    assumed: dict[str, str] = {}
    units: dict[str, str] = {}
    reenabled: dict[tuple[str, str], str] = {}
    twins: dict[tuple[str, str], str] = {}

    def add(action: Action, card: Card, write_run: tuple[str, str] | None = None) -> None:
        actions.append(action)
        cards[action.id] = card
        if write_run is not None and write_run[0] == "interrupted":
            assumed[action.id] = write_run[1]

    for (kind, sandbox, target), (write, outcome, run_id) in changes.items():
        if kind == "disable_flow":
            undo = Action(
                id=action_id_of("enable_flow", sandbox, target),
                kind="enable_flow",
                sandbox=sandbox,
                target_id=target,
                target_name=str(write.get("target_name", "")),
                precondition={"state": "disabled"},
            )
            add(undo, "legacy", (outcome, run_id))
            reenabled[(sandbox, target)] = undo.id
            if write.get("twin_flow_id"):
                twins[(sandbox, target)] = str(write["twin_flow_id"])
        elif kind == "add_audiences":
            left.append(
                f"audiences added to flow {_shown(write)} stay (rollback leaves audiences alone)"
            )
        elif kind == "reconnect_account":
            left.append(
                f"account {_shown(write)} keeps its new credentials (reconnects are not undone)"
            )
    switched_off: dict[tuple[str, str], str] = {}
    for (kind, sandbox, target), (write, outcome, run_id) in changes.items():
        if kind != "enable_flow":
            continue
        legacy = str(write.get("legacy_flow_id", ""))
        precondition: dict[str, Any] = {"state": "enabled"}
        depends: list[str] = []
        if (sandbox, legacy) in reenabled:
            # Switch the new flow off only once its legacy twin serves the audience again.
            depends = [reenabled[(sandbox, legacy)]]
        elif legacy:
            precondition.update(legacy_flow_id=legacy, legacy_state="enabled")
        undo = Action(
            id=action_id_of("disable_flow", sandbox, target),
            kind="disable_flow",
            sandbox=sandbox,
            target_id=target,
            target_name=str(write.get("target_name", "")),
            precondition=precondition,
            depends_on=depends,
        )
        add(undo, "new", (outcome, run_id))
        switched_off[(sandbox, target)] = undo.id

    for (sandbox, legacy), undo_id in reenabled.items():
        twin = twins.get((sandbox, legacy))
        if not twin:
            continue
        if (sandbox, twin) in switched_off:
            units[undo_id] = switched_off[(sandbox, twin)]
            continue
        why_run = tried_enable.get((sandbox, twin)) or planned_enable.get((sandbox, twin))
        if why_run is None:
            left.append(
                f"new flow {twin} ({sandbox}) was enabled before run(s) "
                f"{', '.join(r.run_id for r in records)} and stays on next to its legacy twin "
                f"{legacy}, as it was before"
            )
            continue
        # The runs' journals do not show this twin switched on by them (already on when the
        # run looked, or its enable ended in an error that may have hidden success), but
        # they set out to switch it on: off it goes with the legacy flow back on.
        undo = Action(
            id=action_id_of("disable_flow", sandbox, twin),
            kind="disable_flow",
            sandbox=sandbox,
            target_id=twin,
            precondition={"state": "enabled"},
            depends_on=[undo_id],
        )
        add(undo, "new")
        notes[undo.id] = (
            f"switched off with its legacy twin {legacy}: run {why_run} set out to enable it, "
            "and both on would deliver its audiences twice"
        )
        units[undo_id] = undo.id
        switched_off[(sandbox, twin)] = undo.id
    return RollbackPlan(
        record.run_id,
        actions,
        cards,
        left,
        runs=[r.run_id for r in records],
        notes=notes,
        assumed=assumed,
        units=units,
    )


def rollback_run(
    plan: RollbackPlan,
    *,
    adobe: AdobeClient,
    settings: Settings,
    journal: Journal,
    concurrency: int,
    progress: Progress | None = None,
) -> ApplyReport:
    """Revert the flow-state changes of a run (and the runs it carried on), each only if it is
    still as the runs left it. A legacy flow switched back on whose twin then fails to switch
    off is switched off again, so the pair is left as the runs left it, never both on."""
    executor = Executor(
        adobe=adobe,
        settings=settings,
        journal=journal,
        concurrency=concurrency,
        progress=progress,
        stale_policy="skip",
        cards=plan.cards,
    )
    retries_before = _retries(adobe)
    start = {"rollback_of": plan.run_id, "covers": plan.runs or [plan.run_id]}
    results = executor.run(plan.actions, start_extra=start)
    by_id = {r.action_id: r for r in results}
    for result in results:
        run_id = plan.assumed.get(result.action_id)
        if run_id and result.status == "done":
            result.note = f"interrupted write of run {run_id}, assumed done"
        elif run_id and result.status == "already_done":
            result.note = f"the interrupted write of run {run_id} had not taken effect"
        elif result.action_id in plan.notes and result.status == "done":
            result.note = plan.notes[result.action_id]
    results += _keep_pairs_whole(plan, by_id, executor)
    notes = list(plan.left_alone)
    if len(plan.runs) > 1:
        notes.append(
            f"this rollback covers run {plan.runs[0]} and the earlier run(s) it carried on: "
            f"{', '.join(plan.runs[1:])}"
        )
    report = ApplyReport(
        run_id=journal.run_id,
        results=results,
        kind="pinmigrate.rollback",
        notes=notes,
        extra={
            "rollback_of": plan.run_id,
            "covers": plan.runs or [plan.run_id],
            "left_alone": list(plan.left_alone),
        },
    )
    report.retries = _retries(adobe) - retries_before
    if results:
        journal.run_end(report.summary())
    return report


def _keep_pairs_whole(
    plan: RollbackPlan, by_id: Mapping[str, ActionResult], executor: Executor
) -> list[ActionResult]:
    """Switch a legacy flow off again when it is back on but its twin failed to go off."""
    again: list[Action] = []
    for reenable_id, switch_off_id in plan.units.items():
        legacy, twin = by_id.get(reenable_id), by_id.get(switch_off_id)
        if legacy is None or twin is None or legacy.status != "done" or twin.status != "failed":
            continue
        action = Action(
            id=action_id_of("disable_flow", legacy.sandbox, legacy.target_id),
            kind="disable_flow",
            sandbox=legacy.sandbox,
            target_id=legacy.target_id,
            target_name=legacy.target_name,
            precondition={
                "state": "enabled",
                "twin_flow_id": twin.target_id,
                "twin_state": "enabled",
            },
        )
        again.append(action)
        executor.cards[action.id] = "legacy"
    if not again:
        return []
    # The progress display was sized for the rollback proper; the report lists these.
    executor.progress = None
    results = executor.run(again, journal_start=False)
    for result in results:
        if result.status == "done":
            result.note = (
                "switched off again: its twin could not be switched off, and both on would "
                "deliver its audiences twice; the pair stays as the run left it"
            )
    return results
