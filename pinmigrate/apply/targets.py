"""What apply refuses whatever a plan's seal says: a target outside the migration (pure).

A plan only names ids. Before the first write, apply checks every target against the
configuration and the fresh read, so that a plan edited by someone who can seal it (or a
bug) cannot reach anything but the migration: each action's sandbox is one of
``adobe.sandboxes``; a flow is on the Pinterest card its action acts on (``disable_flow``:
the legacy card; ``add_audiences``, ``enable_flow``: the new card; the other flow of the
pair: the other card); an account to reconnect is an account of the new card; and the two
flows of every pair are still a pair by the planner's own rule
(:func:`pinmigrate.planner.twin_problem`). The cards are the specs
:mod:`pinmigrate.cards` finds (api-notes.md §3 "Connection specs"), never the ids the plan
recorded; a flow's card is the ``connectionSpec.id`` of its target connections
(``inheritedAttributes.targetConnections[].connectionSpec.id``, api-notes.md §3), an
account's its own ``connectionSpec.id``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from pinmigrate.actions import Action, AddAudiences, DisableFlow, EnableFlow, ReconnectAccount
from pinmigrate.apply.world import World, related_flows, target_card
from pinmigrate.discovery import card_of_flow, with_target
from pinmigrate.errors import listed, name_all
from pinmigrate.inventory import Card, TargetConnection
from pinmigrate.plan import Pair
from pinmigrate.planner import MATCH_NOTE, twin_problem

#: What the error line says after naming the object.
_NOTHING = "nothing was changed; make a new plan with `pinmigrate plan --out FILE` and review it"


@dataclass(frozen=True)
class Specs:
    """The connection specs of both Pinterest cards in one sandbox, as found now (None: the
    card is not there)."""

    legacy: str | None
    new: str | None

    def by_id(self) -> dict[str, Card]:
        cards: dict[str, Card] = {}
        if self.legacy:
            cards[self.legacy] = "legacy"
        if self.new:
            cards[self.new] = "new"
        return cards


def matched_pairs(pairs: Iterable[Pair]) -> frozenset[tuple[str, str]]:
    """(legacy id, new id) of the plan's pairs made by ``--match`` (names may differ)."""
    return frozenset(
        (pair.legacy_flow_id, pair.new_flow_id)
        for pair in pairs
        if pair.new_flow_id and pair.note.startswith(MATCH_NOTE)
    )


def sandbox_problem(actions: Iterable[Action], configured: Collection[str]) -> str | None:
    """Every action in a sandbox outside ``adobe.sandboxes``, in one line; else None."""
    outside = [a for a in actions if a.sandbox not in configured]
    if not outside:
        return None
    distinct = list(dict.fromkeys(repr(a.sandbox) for a in outside))
    which = (
        f"sandbox {distinct[0]}, which is"
        if len(distinct) == 1
        else f"sandboxes {listed(distinct)}, which are"
    )
    return (
        f"the plan acts in {which} not configured "
        f"(adobe.sandboxes: {', '.join(configured)}): "
        + name_all(
            (f"{a.kind} of {_named(a.target_name, a.target_id, a.sandbox)}" for a in outside),
            "action",
            sep="; ",
        )
        + f"; {_NOTHING}"
    )


def target_problem(
    actions: Iterable[Action],
    world: World,
    specs: Mapping[str, Specs],
    targets: Mapping[str, TargetConnection],
    matched: frozenset[tuple[str, str]] = frozenset(),
) -> str | None:
    """Every target outside the migration, in one line naming each object; else None.

    ``targets``: the flows' target connections (id -> value), which say the ad account of
    each flow. Objects the read did not find are left to the staleness check (exit 3)."""
    problems = [
        problem
        for action in actions
        if (
            problem := _problem(
                action, world, specs.get(action.sandbox, Specs(None, None)), targets, matched
            )
        )
    ]
    if not problems:
        return None
    found = name_all(problems, "action", sep="; ")
    return f"the plan acts outside the migration: {found}; {_NOTHING}"


def _problem(
    action: Action,
    world: World,
    specs: Specs,
    targets: Mapping[str, TargetConnection],
    matched: frozenset[tuple[str, str]],
) -> str | None:
    if isinstance(action, ReconnectAccount):
        account = world.accounts.get(action.target_id)
        if account is None or (specs.new and world.account_specs.get(account.id) == specs.new):
            return None
        return (
            f"{action.kind} of account "
            f"{_named(account.name, account.id, action.sandbox)}, which is not an account "
            "of the new Pinterest card"
        )
    cards = specs.by_id()
    for flow_id, card in [(action.target_id, target_card(action)), *related_flows(action)]:
        view = world.flows.get(flow_id)
        if view is None:
            continue
        if card_of_flow(view.raw, cards) != card:
            role = "its target" if flow_id == action.target_id else "the other flow of its pair"
            return (
                f"{action.kind} {action.target_id}: {role}, flow "
                f"{_named(view.flow.name, flow_id, action.sandbox)}, is not a flow of the "
                f"{card} Pinterest card"
            )
    return _pair_problem(action, world, targets, matched)


def _pair_problem(
    action: Action,
    world: World,
    targets: Mapping[str, TargetConnection],
    matched: frozenset[tuple[str, str]],
) -> str | None:
    """Why the pair an action names is not a pair (by the planner's rule), or None."""
    legacy_id: str | None
    new_id: str | None
    if isinstance(action, AddAudiences | EnableFlow):
        legacy_id, new_id = action.precondition.legacy_flow_id, action.target_id
    elif isinstance(action, DisableFlow):
        legacy_id, new_id = action.target_id, action.precondition.twin_flow_id
    else:
        return None
    legacy, new = world.flow(legacy_id), world.flow(new_id)
    if legacy is None or new is None:
        return None
    # The ad account as discovery reads it: the target connection's, else the flow's own.
    legacy = with_target(legacy, targets.get(legacy.target_connection_id or ""))
    new = with_target(new, targets.get(new.target_connection_id or ""))
    problem = twin_problem(legacy, new, matched=(legacy.id, new.id) in matched)
    if problem is None:
        return None
    return (
        f"{action.kind} {action.target_id}: legacy flow "
        f"{_named(legacy.name, legacy.id, legacy.sandbox)} and new flow "
        f"{_named(new.name, new.id, new.sandbox)} are not a pair: {problem}"
    )


def _named(name: str, object_id: str, sandbox: str) -> str:
    return f"{name!r} ({sandbox}, {object_id})" if name else f"{object_id} ({sandbox})"
