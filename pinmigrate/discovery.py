"""Discovery: read both Pinterest cards of every sandbox into an immutable inventory.

Only filtered list calls with full paging, never one GET per object, so the number of
requests grows with pages, not flows. Sandboxes are read in parallel, and within a sandbox
the three lists (accounts, target connections, flows) too: the wall time is then about the
longest chain of pages, not their sum.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, TypeVar

from pinmigrate.cards import find_cards
from pinmigrate.inventory import Account, Card, Flow, Inventory, SandboxInventory, TargetConnection

if TYPE_CHECKING:
    from pinmigrate.adobe import AdobeClient
    from pinmigrate.settings import Settings

#: A progress sink: receives short human lines ("prod: 300 flows read"); called from threads.
Progress = Callable[[str], None]

#: Sandboxes read at once; each reads its three lists at once (so at most 12 requests in flight).
SANDBOX_WORKERS = 4
#: How often (in items) a long list reports progress: about once per page.
PROGRESS_EVERY = 100

T = TypeVar("T")


def discover(
    adobe: AdobeClient,
    settings: Settings,
    sandboxes: Sequence[str] | None = None,
    *,
    progress: Progress | None = None,
) -> Inventory:
    """The inventory of both cards in these sandboxes (default: the configured ones)."""
    names = list(dict.fromkeys(sandboxes or settings.adobe.sandboxes))
    org_id = settings.adobe.org_id or ""
    if not names:
        return Inventory(org_id=org_id)
    report = _locked(progress)
    if report:
        # Before the first request: at 300 ms a round trip the first answer takes a while.
        count = f"{len(names)} sandbox{'es' if len(names) != 1 else ''}"
        report(f"reading {count} from {settings.adobe.platform_url} ({', '.join(names)})")
    counter = FlowCounter(names, report)
    with ThreadPoolExecutor(
        max_workers=min(SANDBOX_WORKERS, len(names)), thread_name_prefix="discover"
    ) as pool:
        futures = [pool.submit(_sandbox, adobe, settings, name, report, counter) for name in names]
        results = _gather(pool, futures)
    return Inventory(org_id=org_id, sandboxes=tuple(results))


def card_of_flow(raw: Mapping[str, Any], cards: Mapping[str, Card]) -> Card | None:
    """The card a ``GET /flows`` item delivers to, from its target connections' spec ids."""
    inherited = raw.get("inheritedAttributes")
    targets = inherited.get("targetConnections") if isinstance(inherited, dict) else None
    for target in targets if isinstance(targets, list) else []:
        spec = target.get("connectionSpec") if isinstance(target, dict) else None
        spec_id = spec.get("id") if isinstance(spec, dict) else None
        if isinstance(spec_id, str) and spec_id in cards:
            return cards[spec_id]
    return None


def card_of_connection(raw: Mapping[str, Any], cards: Mapping[str, Card]) -> Card | None:
    """The card of a ``GET /connections`` or ``GET /targetConnections`` item."""
    spec = raw.get("connectionSpec")
    spec_id = spec.get("id") if isinstance(spec, dict) else None
    return cards.get(spec_id) if isinstance(spec_id, str) else None


# -- one sandbox ------------------------------------------------------------------------------


class FlowCounter:
    """The flows read so far in every sandbox, told as one line ("reading flows: prod 400,
    dev 300, stage 0"), so that a display showing one line at a time shows them all."""

    def __init__(self, names: Sequence[str], progress: Progress | None) -> None:
        self.counts = dict.fromkeys(names, 0)
        self.progress = progress

    def seen(self, sandbox: str, count: int) -> None:
        if self.progress is None:
            return
        self.counts[sandbox] = count
        self.progress("reading flows: " + ", ".join(f"{s} {n}" for s, n in self.counts.items()))


def _sandbox(
    adobe: AdobeClient,
    settings: Settings,
    sandbox: str,
    progress: Progress | None,
    counter: FlowCounter | None = None,
) -> SandboxInventory:
    from pinmigrate import models

    specs = find_cards(adobe, settings, sandbox)
    # Without a legacy card there is nothing to migrate, but the new card's flows still show.
    cards: dict[str, Card] = {specs.legacy.id: "legacy"} if specs.legacy else {}
    cards[specs.new.id] = "new"
    either = ",".join(cards)

    def accounts() -> list[Account]:
        items = adobe.list(
            "connections", sandbox=sandbox, properties=[f"connectionSpec.id=={either}"]
        )
        return [
            models.account_from_payload(raw, card, sandbox=sandbox)
            for raw, card in _of_cards(items, cards, card_of_connection)
        ]

    def targets() -> list[TargetConnection]:
        items = adobe.list(
            "targetConnections", sandbox=sandbox, properties=[f"connectionSpec.id=={either}"]
        )
        return [
            models.target_from_payload(raw, card, sandbox=sandbox)
            for raw, card in _of_cards(items, cards, card_of_connection)
        ]

    def flows() -> list[Flow]:
        items = adobe.list(
            "flows",
            sandbox=sandbox,
            properties=[f"inheritedAttributes.targetConnections[].connectionSpec.id=={either}"],
        )
        found = []
        for raw, card in _of_cards(items, cards, card_of_flow):
            found.append(models.flow_from_payload(raw, card, sandbox=sandbox))
            if counter and len(found) % PROGRESS_EVERY == 0:
                counter.seen(sandbox, len(found))
        return found

    with ThreadPoolExecutor(max_workers=3, thread_name_prefix=f"discover-{sandbox}") as pool:
        jobs: list[Future[Any]] = [pool.submit(accounts), pool.submit(targets), pool.submit(flows)]
        account_list, target_list, flow_list = _gather(pool, jobs)

    by_id = {tc.id: tc for tc in target_list}
    flow_list = [
        with_target(flow, by_id.get(flow.target_connection_id or "")) for flow in flow_list
    ]
    if counter:
        counter.seen(sandbox, len(flow_list))
    if progress:
        progress(
            f"read {sandbox}: {len(account_list)} accounts, {len(target_list)} target "
            f"connections, {len(flow_list)} flows"
        )
    return SandboxInventory(
        name=sandbox,
        legacy_spec_id=specs.legacy.id if specs.legacy else None,
        new_spec_id=specs.new.id,
        legacy_spec_name=specs.legacy.name if specs.legacy else None,
        new_spec_name=specs.new.name,
        legacy_gone=specs.gone,
        accounts=tuple(sorted(account_list, key=lambda a: (a.card, a.name, a.id))),
        target_connections=tuple(sorted(target_list, key=lambda t: (t.card, t.id))),
        flows=tuple(sorted(flow_list, key=lambda f: (f.card, f.name, f.id))),
    )


def _of_cards(
    items: Iterator[dict[str, Any]],
    cards: Mapping[str, Card],
    card_of: Callable[[Mapping[str, Any], Mapping[str, Card]], Card | None],
) -> Iterator[tuple[dict[str, Any], Card]]:
    """Items of the two Pinterest cards only: a server that ignores the filter widens nothing."""
    for raw in items:
        card = card_of(raw, cards)
        if card is not None:
            yield raw, card


def with_target(flow: Flow, target: TargetConnection | None) -> Flow:
    """The flow's ad account and account as its target connection says (it is the truth)."""
    if target is None:
        return flow
    advertiser = target.advertiser_id or flow.advertiser_id
    account = flow.account_id or target.base_connection_id
    if (advertiser, account) == (flow.advertiser_id, flow.account_id):
        return flow
    return dataclasses.replace(flow, advertiser_id=advertiser, account_id=account)


def _gather(pool: ThreadPoolExecutor, futures: Sequence[Future[T]]) -> list[T]:
    """Results in submission order; on the first failure, drop what has not started."""
    done, _ = wait(futures, return_when=FIRST_EXCEPTION)
    failed = next((f for f in futures if f in done and f.exception() is not None), None)
    if failed is not None:
        pool.shutdown(wait=False, cancel_futures=True)
        failed.result()
    return [future.result() for future in futures]


def _locked(progress: Progress | None) -> Progress | None:
    if progress is None:
        return None
    lock = threading.Lock()

    def report(message: str) -> None:
        with lock:
            progress(message)

    return report
