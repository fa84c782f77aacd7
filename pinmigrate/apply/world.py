"""The world as apply re-reads it: the flows and accounts the actions look at, batched.

A handful of objects in a sandbox are read with one GET each; more with a few filtered,
paged list calls. :class:`LiveWorld` is the run's current view, shared by the engine and
the writes and updated as writes are confirmed.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pinmigrate import models
from pinmigrate.actions import Action, AddAudiences, DisableFlow, EnableFlow, ReconnectAccount
from pinmigrate.errors import NotFoundError
from pinmigrate.inventory import Account, Card, Flow, TargetConnection

if TYPE_CHECKING:
    from pinmigrate.adobe import AdobeClient
    from pinmigrate.settings import Settings

#: Up to this many objects in a sandbox are read with one GET each; more with filtered lists.
GET_LIMIT = 4
#: Where flows keep the card they deliver to (api-notes §3).
FLOW_SPEC_PROPERTY = "inheritedAttributes.targetConnections[].connectionSpec.id"


@dataclass(frozen=True)
class SettlePolicy:
    """How apply waits for flow writes Adobe is still applying (``lastOperation`` in
    progress): it re-reads those flows after ``first`` seconds, then twice as long each
    time up to ``longest``, and stops waiting once ``total`` seconds have passed."""

    first: float = 0.5
    longest: float = 8.0
    total: float = 60.0

    def delays(self) -> Iterator[float]:
        """The waits before each re-read, summing to at most ``total``."""
        spent, delay = 0.0, self.first
        while spent < self.total and delay > 0:
            step = min(delay, self.total - spent)
            yield step
            spent += step
            delay = min(delay * 2, self.longest)


@dataclass(frozen=True)
class FlowView:
    flow: Flow
    #: The parts of the payload later steps read (see :func:`kept`), not the whole of it.
    raw: dict[str, Any]

    @classmethod
    def read(cls, raw: dict[str, Any], card: Card, *, sandbox: str | None) -> FlowView:
        """The flow a payload holds, and what of the payload apply keeps."""
        return cls(models.flow_from_payload(raw, card, sandbox=sandbox), kept(raw))


def kept(raw: dict[str, Any]) -> dict[str, Any]:
    """What apply keeps of a flow's payload once its :class:`Flow` is read: the fields later
    steps look at, in the shapes they were sent. A flow payload is ~190 JSON values, and
    apply holds thousands of flows at once (twice while a confirming read replaces them):
    the rest (audit fields, source connections, profile selectors, ``lastOperation``) is
    not kept.

    Kept: ``id``, ``etag``, ``lastRunDetails`` (the twin's last run, for ``--wait-runs``),
    each target connection's ``connectionSpec`` (the card, ``discovery.card_of_flow``) and
    each transformation's ``name`` and ``params.segmentSelectors`` (where audiences are
    added, ``models.add_audience_ops``).
    """
    slim: dict[str, Any] = _only(raw, "id", "etag", "lastRunDetails")
    if "inheritedAttributes" in raw:
        inherited = _only(raw["inheritedAttributes"], "targetConnections")
        if isinstance(inherited, dict) and isinstance(inherited.get("targetConnections"), list):
            targets = inherited["targetConnections"]
            inherited["targetConnections"] = [_only(t, "connectionSpec") for t in targets]
        slim["inheritedAttributes"] = inherited
    if "transformations" in raw:
        transformations = raw["transformations"]
        if isinstance(transformations, list):
            transformations = [_kept_transformation(t) for t in transformations]
        slim["transformations"] = transformations
    return slim


def _only(value: Any, *keys: str) -> Any:
    """A JSON object with only these keys (those it has); anything else as it is."""
    if not isinstance(value, dict):
        return value
    return {key: value[key] for key in keys if key in value}


def _kept_transformation(transformation: Any) -> Any:
    slim = _only(transformation, "name", "params")
    if isinstance(slim, dict) and "params" in slim:
        slim["params"] = _only(slim["params"], "segmentSelectors")
    return slim


@dataclass
class World:
    """The freshly read objects an apply relies on; updated as writes are confirmed."""

    flows: dict[str, FlowView] = field(default_factory=dict)
    accounts: dict[str, Account] = field(default_factory=dict)
    #: account id -> the ``connectionSpec.id`` it was read with (which card it is on)
    account_specs: dict[str, str] = field(default_factory=dict)

    def flow(self, flow_id: str | None) -> Flow | None:
        view = self.flows.get(flow_id or "")
        return view.flow if view else None

    def add_account(self, raw: dict[str, Any], sandbox: str) -> Account:
        """Read an account from its payload, with the card spec it names."""
        account = models.account_from_payload(raw, "new", sandbox=sandbox)
        self.accounts[account.id] = account
        spec = raw.get("connectionSpec")
        spec_id = spec.get("id") if isinstance(spec, dict) else None
        if isinstance(spec_id, str):
            self.account_specs[account.id] = spec_id
        return account

    def merge(self, other: World) -> None:
        self.flows.update(other.flows)
        self.accounts.update(other.accounts)
        self.account_specs.update(other.account_specs)


@dataclass
class Wants:
    """The objects to read in one sandbox: flow id -> card, and account ids (new card)."""

    flows: dict[str, Card] = field(default_factory=dict)
    accounts: set[str] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.flows) + len(self.accounts)


class LiveWorld:
    """The run's current view of the world, safe to read and update from the write threads."""

    def __init__(self) -> None:
        self._world = World()
        self._lock = threading.Lock()

    def replace(self, world: World) -> None:
        with self._lock:
            self._world = world

    def merge(
        self,
        world: World,
        *,
        asked: Mapping[str, Wants] | None = None,
        keep: Iterable[str] = (),
    ) -> None:
        """Take ``world``'s objects; with ``asked`` (what the read asked for), an object it
        asked for and did not find is gone, unless in ``keep``."""
        kept = set(keep)
        with self._lock:
            self._world.merge(world)
            for want in (asked or {}).values():
                for flow_id in want.flows:
                    if flow_id not in world.flows and flow_id not in kept:
                        self._world.flows.pop(flow_id, None)
                for account_id in want.accounts:
                    if account_id not in world.accounts and account_id not in kept:
                        self._world.accounts.pop(account_id, None)

    def snapshot(self) -> World:
        with self._lock:
            world = self._world
            return World(dict(world.flows), dict(world.accounts), dict(world.account_specs))

    def flow_view(self, flow_id: str) -> FlowView:
        with self._lock:
            return self._world.flows[flow_id]

    def seen_flow(self, flow_id: str) -> FlowView | None:
        """The flow as last read, if it was."""
        with self._lock:
            return self._world.flows.get(flow_id)

    def account(self, account_id: str) -> Account:
        with self._lock:
            return self._world.accounts[account_id]

    def set_etag(self, flow_id: str, etag: str) -> None:
        """A write's answer carried the flow's new etag: the next write of it sends that."""
        with self._lock:
            view = self._world.flows.get(flow_id)
            if view is not None:
                flow = dataclasses.replace(view.flow, etag=etag)
                self._world.flows[flow_id] = FlowView(flow, {**view.raw, "etag": etag})


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

    def read(self, wants: Mapping[str, Wants], *, get_limit: int | None = None) -> World:
        """``get_limit`` overrides, for this read, how many objects a sandbox reads by GET."""
        world = World()
        wanted = {sb: w for sb, w in wants.items() if len(w)}
        if not wanted:
            return world
        limit = self.get_limit if get_limit is None else get_limit
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="read") as pool:
            listed = {sb: w for sb, w in wanted.items() if len(w) > limit}
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

    def target_connections(self, wanted: Mapping[str, set[str]]) -> dict[str, TargetConnection]:
        """The target connections ``wanted`` names per sandbox (where a flow's Pinterest ad
        account is, api-notes.md §3 "Target connections"): a handful by GET, more from one
        list filtered by both cards' specs (one not in it is on neither card). Those Adobe
        does not have are left out."""
        found: dict[str, TargetConnection] = {}
        listed = {sb: ids for sb, ids in wanted.items() if len(ids) > self.get_limit}
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="read") as pool:
            jobs = [pool.submit(self._list_targets, sb, ids) for sb, ids in listed.items()]
            for job in jobs:
                found.update(job.result())
            rest = [(sb, i) for sb, ids in wanted.items() if sb not in listed for i in sorted(ids)]
            for target in pool.map(lambda item: self._get_target(*item), rest):
                if target is not None:
                    found[target.id] = target
        return found

    def _list_targets(self, sandbox: str, ids: set[str]) -> dict[str, TargetConnection]:
        specs = [s for card in ("legacy", "new") if (s := self.spec_id(sandbox, card))]
        if not specs:
            return {}
        found = {}
        for raw in self.adobe.list(
            "targetConnections",
            sandbox=sandbox,
            properties=[f"connectionSpec.id=={','.join(specs)}"],
        ):
            if str(raw.get("id")) in ids:
                target = models.target_from_payload(raw, "new", sandbox=sandbox)
                found[target.id] = target
        return found

    def _get_target(self, sandbox: str, target_id: str) -> TargetConnection | None:
        try:
            raw = self.adobe.get("targetConnections", target_id, sandbox=sandbox)
        except NotFoundError:
            return None
        return models.target_from_payload(raw, "new", sandbox=sandbox)

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
                view = FlowView.read(raw, card, sandbox=sandbox)
                world.flows[view.flow.id] = view
        return world

    def _list_accounts(self, sandbox: str, spec: str, ids: set[str]) -> World:
        world = World()
        for raw in self.adobe.list(
            "connections", sandbox=sandbox, properties=[f"connectionSpec.id=={spec}"]
        ):
            if str(raw.get("id")) in ids:
                world.add_account(raw, sandbox)
        return world

    def _get_flow(self, sandbox: str, flow_id: str, card: Card) -> World:
        world = World()
        view = self.flow(sandbox, flow_id, card)
        if view is not None:
            world.flows[flow_id] = view
        return world

    def _get_account(self, sandbox: str, account_id: str) -> World:
        world = World()
        raw = self._connection(sandbox, account_id)
        if raw is not None:
            world.add_account(raw, sandbox)
        return world

    def flow(self, sandbox: str, flow_id: str, card: Card) -> FlowView | None:
        """One flow, or None when Adobe no longer has it."""
        try:
            raw = self.adobe.get("flows", flow_id, sandbox=sandbox)
        except NotFoundError:
            return None
        return FlowView.read(raw, card, sandbox=sandbox)

    def account(self, sandbox: str, account_id: str) -> Account | None:
        raw = self._connection(sandbox, account_id)
        return models.account_from_payload(raw, "new", sandbox=sandbox) if raw else None

    def _connection(self, sandbox: str, account_id: str) -> dict[str, Any] | None:
        """One account's payload, or None when Adobe no longer has it."""
        try:
            return self.adobe.get("connections", account_id, sandbox=sandbox)
        except NotFoundError:
            return None


def settle(
    reader: Reader,
    world: World,
    policy: SettlePolicy,
    sleep: Callable[[float], None],
    *,
    waiting: Callable[[int, float], None] | None = None,
) -> World:
    """``world`` once no flow in it shows a write in progress, or once the policy's time is
    up: those flows alone are re-read, after a growing wait (no busy polling). A flow gone
    meanwhile leaves ``world``. Changes ``world`` in place and returns it. ``waiting`` is
    told (busy flows, seconds) before each wait, for the live line."""
    for delay in policy.delays():
        busy = [view.flow for view in world.flows.values() if view.flow.in_progress]
        if not busy:
            break
        if waiting is not None:
            waiting(len(busy), delay)
        sleep(delay)
        wants: dict[str, Wants] = defaultdict(Wants)
        for flow in busy:
            wants[flow.sandbox].flows[flow.id] = flow.card
        fresh = reader.read(wants)
        for flow in busy:
            view = fresh.flows.get(flow.id)
            if view is None:
                world.flows.pop(flow.id, None)
            else:
                world.flows[flow.id] = view
    return world


def target_card(action: Action) -> Card:
    """The card of the flow an action changes (apply semantics; rollback passes its own)."""
    return "legacy" if isinstance(action, DisableFlow) else "new"


def related_flows(action: Action) -> list[tuple[str, Card]]:
    """The other flows an action's precondition looks at: its pair's legacy flow or twin."""
    related: list[tuple[str, Card]] = []
    if isinstance(action, AddAudiences | EnableFlow | DisableFlow) and (
        legacy := action.precondition.legacy_flow_id
    ):
        related.append((legacy, "legacy"))
    if isinstance(action, DisableFlow) and action.precondition.twin_flow_id:
        related.append((action.precondition.twin_flow_id, "new"))
    return related


def wants_of(
    actions: Iterable[Action], cards: Mapping[str, Card] | None = None
) -> dict[str, Wants]:
    """Every object the actions' goals and preconditions look at, per sandbox."""
    wants: dict[str, Wants] = defaultdict(Wants)
    for action in actions:
        want = wants[action.sandbox]
        if isinstance(action, ReconnectAccount):
            want.accounts.add(action.target_id)
            continue
        want.flows[action.target_id] = (cards or {}).get(action.id) or target_card(action)
        for flow_id, card in related_flows(action):
            want.flows.setdefault(flow_id, card)
    return dict(wants)
