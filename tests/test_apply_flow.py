"""Apply's writes go out as their dependencies allow, not in global waves: an action waits
only for its own dependencies, each confirmed by a read; the confirming reads stay batched
and run while other writes go on."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeTime
from test_executor import (
    FakeAdobe,
    enable,
    full_pair_actions,
    pair,
    run,
)

from pinmigrate.apply import apply_plan
from pinmigrate.emulator import Emulator
from pinmigrate.journal import Journal, new_run_id
from pinmigrate.plan import Action
from pinmigrate.settings import Settings, load_settings
from pinmigrate.workflow import PlanRequest, adobe_client, build_plan


class Timeline(FakeAdobe):
    """A fake Adobe that notes, in order, each flow action sent and returned, and each read
    of flows as it starts and once it is done (with the flows it showed enabled), before
    the reader sees any of it."""

    def __init__(self, *, write_delay: float = 0.0, read_delay: float = 0.0) -> None:
        super().__init__()
        self.events: list[tuple[str, Any]] = []
        self.write_delay = write_delay
        self.read_delay = read_delay

    def note(self, event: str, what: Any) -> None:
        with self.lock:
            self.events.append((event, what))

    def list(self, resource: str, **kwargs: Any) -> Iterator[dict]:
        items = list(super().list(resource, **kwargs))
        if resource == "flows":
            self.note("read-start", None)
            time.sleep(self.read_delay)
            self.note("read", frozenset(i["id"] for i in items if i["state"] == "enabled"))
        yield from items

    def get(self, resource: str, object_id: str, *, sandbox: str) -> dict:
        found = super().get(resource, object_id, sandbox=sandbox)
        if resource == "flows":
            self.note("read-start", None)
            self.note("read", frozenset({object_id} if found["state"] == "enabled" else ()))
        return found

    def flow_action(self, flow_id: str, op: str, **kwargs: Any) -> dict:
        self.note("sent", f"{op} {flow_id}")
        time.sleep(self.write_delay)
        answer = super().flow_action(flow_id, op, **kwargs)
        self.note("returned", f"{op} {flow_id}")
        return answer

    def flow_list_reads(self) -> int:
        return sum(1 for event, _ in self.events if event == "read-start")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    from pinmigrate.settings import AdobeSettings

    return Settings(adobe=AdobeSettings(org_id="X@AdobeOrg"), state_dir=tmp_path)


def many_pairs(adobe: FakeAdobe, count: int, *, audiences_every: int) -> list[Action]:
    """``count`` pairs to migrate; every ``audiences_every``-th also has an audience to add."""
    actions: list[Action] = []
    for n in range(count):
        missing = ["a2"] if n % audiences_every == 0 else []
        pair(adobe, "prod", n, legacy_aud=("a1", "a2") if missing else ("a1",))
        actions += full_pair_actions("prod", n, missing=missing)
    return actions


def test_a_switch_off_goes_out_only_after_a_read_showed_its_twin_enabled(
    settings: Settings,
) -> None:
    adobe = Timeline(write_delay=0.002, read_delay=0.05)
    actions = many_pairs(adobe, 60, audiences_every=6)

    report, _ = run(adobe, settings, actions, concurrency=4)

    seen_enabled: set[str] = set()
    switched_off = 0
    for event, what in adobe.events:
        if event == "read":
            seen_enabled |= what
        elif event == "sent" and what.startswith("disable "):
            legacy = what.split()[1]
            twin = "N" + legacy[1:]
            assert twin in seen_enabled, f"{legacy} switched off before {twin} read back enabled"
            switched_off += 1
    assert switched_off == 60
    assert report.ok


def test_the_confirming_read_runs_while_the_other_writes_go_on(settings: Settings) -> None:
    adobe = Timeline(write_delay=0.005, read_delay=0.3)
    actions = many_pairs(adobe, 60, audiences_every=6)

    report, _ = run(adobe, settings, actions, concurrency=4)

    assert report.ok
    reading = False
    sent_while_reading = 0
    for event, _ in adobe.events:
        if event == "read-start":
            reading = True
        elif event == "read":
            reading = False
        elif event == "sent" and reading:
            sent_while_reading += 1
    assert sent_while_reading > 0
    # Still batched: the staleness check's two lists, then a few confirming ones (one list
    # per card each), never a read per write.
    assert adobe.flow_list_reads() <= 2 + 2 * 4


def test_an_enable_with_nothing_to_wait_for_is_not_held_by_other_flows_audiences(
    settings: Settings,
) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 0, legacy_aud=("a1", "a2"))
    pair(adobe, "prod", 1)
    actions = full_pair_actions("prod", 0, missing=["a2"]) + full_pair_actions("prod", 1)
    other_enable_sent = threading.Event()
    held: list[bool] = []

    def hold(method: str, target: str) -> None:
        if target == "N1/action?op=enable":
            other_enable_sent.set()
        elif method == "PATCH" and target == "N0":
            # In waves, flow N1's enable would wait for this patch and its confirming read.
            held.append(other_enable_sent.wait(5))

    adobe.before_write = hold

    report, _ = run(adobe, settings, actions, concurrency=4)

    assert report.ok
    assert held == [True]
    writes = [w[1] for w in adobe.writes()]
    # Its own flow's enable still waits for the audiences.
    assert writes.index("/flows/N0") < writes.index("/flows/N0/action?op=enable")


def test_actions_that_wait_for_each_other_end_skipped_instead_of_hanging(
    settings: Settings,
) -> None:
    from pinmigrate.plan import action_id

    adobe = FakeAdobe()
    pair(adobe, "prod", 3)
    pair(adobe, "prod", 4)
    pair(adobe, "prod", 5)
    # A hand-made plan (a saved one is refused before this): two enables wait for each other.
    first = enable("prod", "N3", "L3", deps=[action_id("enable_flow", "prod", "N4")])
    second = enable("prod", "N4", "L4", deps=[first.id])

    report, _ = run(adobe, settings, [first, second, enable("prod", "N5", "L5")])

    statuses = {r.action_id: r.status for r in report.results}
    assert statuses == {first.id: "skipped", second.id: "skipped", "enable_flow:prod:N5": "done"}
    assert [w[1] for w in adobe.writes()] == ["/flows/N5/action?op=enable"]


# --- at scale, against the emulator -----------------------------------------------------------


def _apply_at_scale(tmp_path: Path, scenario: str, concurrency: int) -> tuple[Any, dict]:
    clock = FakeTime(start=1_750_000_000.0)
    with Emulator(scenario=scenario, port=0, clock=clock.clock) as emulator:
        env = {**emulator.env(), "PINMIGRATE_STATE_DIR": str(tmp_path / "state")}
        settings = load_settings(env=env)
        adobe = adobe_client(settings)
        now = lambda: datetime.fromtimestamp(clock.now, UTC)  # noqa: E731
        plan = build_plan(settings, adobe, PlanRequest(), now=now())
        emulator.clear_requests()
        journal = Journal(settings.state_dir, new_run_id())
        try:
            report = apply_plan(
                plan,
                adobe=adobe,
                settings=settings,
                logins=None,
                journal=journal,
                concurrency=concurrency,
                now=now,
                sleep=clock.sleep,
                clock=clock.clock,
            )
        finally:
            journal.close()
        return report, emulator.requests()


def _flow_lists(by_endpoint: dict[str, int]) -> int:
    return sum(n for endpoint, n in by_endpoint.items() if endpoint == "GET /flows")


def test_at_scale_the_reads_stay_those_of_four_full_re_reads(tmp_path: Path) -> None:
    # scale:600: 3 sandboxes of 200 pairs, 60 audience patches, 600 enables, 600 disables.
    report, log = _apply_at_scale(tmp_path, "scale:600", concurrency=8)

    assert report.ok
    writes = log["writes"]
    assert writes == 1260
    by_endpoint: dict[str, int] = log["by_endpoint"]
    # One full read of both cards' flows is 2 pages per sandbox and card (200 flows each):
    # 12 list pages. The staleness check and at most three confirming reads, as in waves.
    assert _flow_lists(by_endpoint) <= 4 * 12, by_endpoint
    # Everything else is a few lookups (token, cards, target connections): never per write.
    assert log["total"] - writes - _flow_lists(by_endpoint) <= 30, by_endpoint
