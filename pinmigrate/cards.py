"""Which connection spec is which Pinterest card, in one sandbox.

Adobe's customer notice names the new v5 card "Pinterest" and the old one
"(Deprecating) Pinterest"; an earlier draft called the new one "(New) Pinterest". The ids
are not published, so the cards are found by name at run time (api-notes.md §3,
"Connection specs"): the names below are tried in order unless a name or an id is
configured, in which case it is used as given. Discovery, apply's re-read and ``doctor``
all ask this module, so the three can never disagree.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from pinmigrate.errors import ConfigError, NotFoundError, PinmigrateError
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


def names_tried(settings: Settings, card: Card) -> tuple[str, ...]:
    """The names looked up for ``card``: the configured one, else the defaults in order."""
    configured = getattr(settings.migration, f"{card}_destination")
    return (configured,) if configured else DEFAULT_NAMES[card]


def find_card(adobe: AdobeClient, settings: Settings, card: Card, sandbox: str) -> CardSpec:
    """The spec of ``card`` in ``sandbox``.

    Raises NotFoundError when no name matches and ConfigError when one name matches several
    specs; both list the Pinterest-like specs that do exist and the setting to use.
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
    like = _pinterest_like(adobe, sandbox)
    listing = f"; Pinterest-like cards there: {_listing(like)}" if like else ""
    raise NotFoundError(
        f"no destination card (connection spec) named {tried} in sandbox {sandbox}{listing}",
        service="adobe",
        hint=f"set migration.{card}_destination to the card's exact name, or "
        f"migration.{card}_spec_id to its connection spec id",
    )


def find_cards(adobe: AdobeClient, settings: Settings, sandbox: str) -> dict[Card, CardSpec]:
    """Both cards of ``sandbox``, looked up at once; refuses one spec serving as both."""
    cards: tuple[Card, ...] = ("legacy", "new")
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"cards-{sandbox}") as pool:
        jobs = {card: pool.submit(find_card, adobe, settings, card, sandbox) for card in cards}
        found = {card: job.result() for card, job in jobs.items()}
    if found["legacy"].id == found["new"].id:
        raise ConfigError(
            f"the legacy and new Pinterest cards are the same connection spec "
            f"({found['new'].id}) in sandbox {sandbox}",
            hint="check migration.legacy_destination / new_destination and the *_spec_id overrides",
        )
    return found


def _pinterest_like(adobe: AdobeClient, sandbox: str) -> list[dict[str, Any]]:
    """Every spec whose name mentions Pinterest; empty when even that cannot be read."""
    try:
        specs = adobe.list("connectionSpecs", sandbox=sandbox)
        return [
            spec
            for spec in specs
            if "pinterest" in str(spec.get("name", "")).casefold() and spec.get("id")
        ]
    except PinmigrateError:
        return []


def _listing(specs: list[dict[str, Any]]) -> str:
    shown = [f"{spec.get('name', '?')!r} = {spec.get('id')}" for spec in specs[:LISTED]]
    more = len(specs) - LISTED
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")
