"""Which connection spec is which Pinterest card, in one sandbox.

Adobe's customer notice names the new v5 card "Pinterest" and the old one
"(Deprecating) Pinterest"; an earlier draft called the new one "(New) Pinterest". The ids
are not published, so the cards are found by name at run time (api-notes.md §3,
"Connection specs"): the names below are tried in order unless a name or an id is
configured, in which case it is used as given. Discovery, apply's re-read and ``doctor``
all ask this module, so the three can never disagree.

A later revision of the notice filters on just "Pinterest": the legacy card may be gone. A
sandbox without it has nothing to migrate, but only when nothing is in doubt: the new card
is found first and only that spec is set aside; a Pinterest-like card that is not it and
still delivers flows (it may be the legacy card renamed), a second card bearing a default
name of the new one while the new one was itself found by a default name, a new card that
cannot be found, or a read that fails: each stays an error, and so does a missing card
whose name or id was configured.
"""

from __future__ import annotations

from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pinmigrate.adobe import fold_name
from pinmigrate.errors import ConfigError, NotFoundError, PinmigrateError, listed
from pinmigrate.inventory import Card, CardSpec

if TYPE_CHECKING:
    from pinmigrate.adobe import AdobeClient
    from pinmigrate.settings import Settings

#: Names tried, in order, when ``migration.<card>_destination`` is not set.
DEFAULT_NAMES: dict[Card, tuple[str, ...]] = {
    "legacy": ("(Deprecating) Pinterest",),
    "new": ("Pinterest", "(New) Pinterest"),
}
#: How many Pinterest-like specs an error lists at most.
LISTED = 12
#: The filter on the destination card of a flow (api-notes.md §3 "Lists and filters").
FLOW_CARD_PROPERTY = "inheritedAttributes.targetConnections[].connectionSpec.id"


class LegacyCardGone(NotFoundError):
    """The sandbox has no legacy card, none was configured, and no other Pinterest-like card
    delivers a flow there: it has nothing to migrate. Not an error to discovery or doctor."""


@dataclass(frozen=True)
class SandboxCards:
    """Both cards of a sandbox; ``legacy`` None when the legacy card is gone (``gone`` says
    so in one line)."""

    new: CardSpec
    legacy: CardSpec | None
    gone: str = ""


def names_tried(settings: Settings, card: Card) -> tuple[str, ...]:
    """The names looked up for ``card``: the configured one, else the defaults in order."""
    configured = getattr(settings.migration, f"{card}_destination")
    return (configured,) if configured else DEFAULT_NAMES[card]


def find_card(adobe: AdobeClient, settings: Settings, card: Card, sandbox: str) -> CardSpec:
    """The spec of ``card`` in ``sandbox``.

    Raises NotFoundError when no name matches and ConfigError when one name matches several
    specs; both list the Pinterest-like specs that do exist and the setting to use. A legacy
    card that is simply gone raises :class:`LegacyCardGone`.
    """
    override = getattr(settings.migration, f"{card}_spec_id")
    if override:
        return CardSpec(id=override)
    names = names_tried(settings, card)
    for name in names:
        matches = [
            spec
            for spec in adobe.connection_specs_named(name, sandbox=sandbox)
            if isinstance(spec.get("id"), str) and spec["id"]
        ]
        if len(matches) == 1:
            return CardSpec(id=matches[0]["id"], name=str(matches[0].get("name") or name))
        if len(matches) > 1:
            raise ConfigError(
                f"{len(matches)} destination cards (connection specs) are named {name!r} in "
                f"sandbox {sandbox}: {_listing(matches)}",
                hint=f"set migration.{card}_spec_id to the id of the {card} Pinterest card",
            )
    tried = " or ".join(repr(name) for name in names)
    configured = getattr(settings.migration, f"{card}_destination")
    hint = (
        f"set migration.{card}_destination to the card's exact name, or "
        f"migration.{card}_spec_id to its connection spec id"
    )
    if card == "legacy" and not configured:
        like = _pinterest_like(adobe, sandbox)  # a failed read is never "gone"
        doubt = _doubt_about_gone(adobe, settings, sandbox, like)
        if doubt is None:
            raise LegacyCardGone(
                f"no legacy card {tried} in sandbox {sandbox}, and no other Pinterest-like "
                "card there delivers a flow: no legacy flow to migrate there",
                service="adobe",
            )
        listing = f"; Pinterest-like cards there: {_listing(like, doubt.delivering)}"
        hint += doubt.hint
    else:
        try:
            like = _pinterest_like(adobe, sandbox)
        except PinmigrateError:
            like = []  # the card is missing all the same; only the listing is lost
        listing = f"; Pinterest-like cards there: {_listing(like)}" if like else ""
    raise NotFoundError(
        f"no destination card (connection spec) named {tried} in sandbox {sandbox}{listing}",
        service="adobe",
        hint=hint,
    )


@dataclass(frozen=True)
class _Doubt:
    """Why a legacy card that is not found may still be there: the specs that deliver flows,
    and what to add to the hint."""

    delivering: frozenset[str] = frozenset()
    hint: str = ""


def _doubt_about_gone(
    adobe: AdobeClient, settings: Settings, sandbox: str, like: list[dict[str, Any]]
) -> _Doubt | None:
    """None when the legacy card is surely gone from ``sandbox``, else why it may not be.

    Only the spec actually taken as the new card is set aside. Every other Pinterest-like
    spec that delivers a flow may be the legacy card renamed; so may one bearing a default
    name of the new card when the new card was itself found by a default name (the legacy
    card still called "Pinterest" beside a "(New) Pinterest", say: which is which is then a
    guess). A new card that cannot be found leaves nothing to set aside. Any doubt is an
    error that lists the cards, never an empty migration.
    """
    try:
        new = _found_card(adobe, settings, "new", sandbox)
    except (NotFoundError, ConfigError):
        return _Doubt()
    suspects = [spec for spec in like if spec["id"] != new.id]
    delivering = frozenset(
        spec["id"] for spec in suspects if _delivers_flows(adobe, sandbox, spec["id"])
    )
    by_default = not (settings.migration.new_spec_id or settings.migration.new_destination)
    new_names = {fold_name(name) for name in DEFAULT_NAMES["new"]}
    namesakes = [s for s in suspects if fold_name(str(s.get("name", ""))) in new_names]
    if by_default and namesakes:
        return _Doubt(
            delivering,
            f", or migration.new_spec_id to the new card's id if {new.name!r} = {new.id} "
            "is not the new card",
        )
    return _Doubt(delivering) if delivering else None


def find_cards(adobe: AdobeClient, settings: Settings, sandbox: str) -> SandboxCards:
    """Both cards of ``sandbox``, looked up at once; refuses one spec serving as both.

    A card given by id must exist: a wrong id would otherwise read as a card without flows."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"cards-{sandbox}") as pool:
        legacy_job = pool.submit(_found_card, adobe, settings, "legacy", sandbox)
        new = _found_card(adobe, settings, "new", sandbox)
        try:
            legacy = legacy_job.result()
        except LegacyCardGone as gone:
            return SandboxCards(new=new, legacy=None, gone=gone.message)
    if legacy.id == new.id:
        raise ConfigError(
            f"the legacy and new Pinterest cards are the same connection spec "
            f"({new.id}) in sandbox {sandbox}",
            hint="check migration.legacy_destination / new_destination and the *_spec_id overrides",
        )
    return SandboxCards(new=new, legacy=legacy)


def _found_card(adobe: AdobeClient, settings: Settings, card: Card, sandbox: str) -> CardSpec:
    spec = find_card(adobe, settings, card, sandbox)
    if spec.name is None:
        spec_by_id(adobe, card, spec.id, sandbox)
    return spec


def spec_by_id(adobe: AdobeClient, card: Card, spec_id: str, sandbox: str) -> dict[str, Any]:
    """The connection spec a ``migration.<card>_spec_id`` setting names; NotFoundError says
    which setting to fix when there is none."""
    key = f"migration.{card}_spec_id"
    try:
        return adobe.get("connectionSpecs", spec_id, sandbox=sandbox)
    except NotFoundError:
        raise NotFoundError(
            f"no connection spec {spec_id} in sandbox {sandbox} (set by {key})",
            service="adobe",
            hint=f"check the id or remove {key} to look the card up by name",
        ) from None


def _delivers_flows(adobe: AdobeClient, sandbox: str, spec_id: str) -> bool:
    """Whether any flow of ``sandbox`` delivers to the card ``spec_id`` (one short page)."""
    from pinmigrate.discovery import card_of_flow

    flows = adobe.list(
        "flows",
        sandbox=sandbox,
        properties=[f"{FLOW_CARD_PROPERTY}=={spec_id}"],
        params={"limit": "1"},
    )
    return any(card_of_flow(raw, {spec_id: "legacy"}) for raw in flows)


def _pinterest_like(adobe: AdobeClient, sandbox: str) -> list[dict[str, Any]]:
    """Every spec whose name mentions Pinterest (one unfiltered list; its errors go through)."""
    return [
        spec
        for spec in adobe.list("connectionSpecs", sandbox=sandbox)
        if "pinterest" in str(spec.get("name", "")).casefold() and spec.get("id")
    ]


def _listing(specs: list[dict[str, Any]], delivering: Collection[str] = ()) -> str:
    """``'name' = id`` per spec; those in ``delivering`` are marked as delivering flows."""
    return listed(
        (
            f"{spec.get('name', '?')!r} = {spec.get('id')}"
            + (" (delivers flows)" if spec.get("id") in delivering else "")
            for spec in specs
        ),
        limit=LISTED,
    )
