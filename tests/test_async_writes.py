"""Apply against an emulator whose flow writes land late (``write_delay``), on its clock.

The executor's sleep moves the emulator's clock, so the waits cost no time and can be
counted: the confirming reads wait for ``lastOperation`` to end with a growing backoff
(never polling), report no false failures, and report a write Adobe ends ``failed`` with
Adobe's own message. The scenario is strict (``+strict``): an action sent twice would show.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from e2e_support import end_state
from fakes import FakeTime
from platform_caller import Platform

from pinmigrate import models
from pinmigrate.apply import apply_plan
from pinmigrate.apply.world import SettlePolicy
from pinmigrate.emulator import Emulator
from pinmigrate.inventory import Operation
from pinmigrate.journal import Journal, new_run_id
from pinmigrate.settings import load_settings
from pinmigrate.workflow import PlanRequest, adobe_client, build_plan

SCENARIO = "scale:12+strict"
#: 12 pairs, two twins missing an audience: 2 audience patches, 12 enables, 12 disables.
WRITES = 26


@dataclass
class World:
    emulator: Emulator
    time: FakeTime
    settings: Any

    def apply(
        self, policy: SettlePolicy | None = None, request: PlanRequest = PlanRequest()
    ) -> Any:
        adobe = adobe_client(self.settings)
        now = lambda: datetime.fromtimestamp(self.time.now, UTC)  # noqa: E731
        plan = build_plan(self.settings, adobe, request, now=now())
        self.emulator.clear_requests()
        journal = Journal(self.settings.state_dir, new_run_id())
        try:
            return apply_plan(
                plan,
                adobe=adobe,
                settings=self.settings,
                logins=None,
                journal=journal,
                concurrency=4,
                now=now,
                sleep=self.time.sleep,
                clock=self.time.clock,
                settle_policy=policy,
            )
        finally:
            journal.close()

    def flow_reads(self) -> int:
        """GETs of flows (lists and single objects) since the apply began."""
        log = self.emulator.requests()["by_endpoint"]
        return sum(n for endpoint, n in log.items() if endpoint.startswith("GET /flows"))


def start(tmp_path: Path, scenario: str = SCENARIO, **config: Any) -> Iterator[World]:
    time = FakeTime(start=1_750_000_000.0)
    emulator = Emulator(scenario=scenario, port=0, clock=time.clock).start()
    try:
        if config:
            emulator.configure(**config)
        env = {**emulator.env(), "PINMIGRATE_STATE_DIR": str(tmp_path / "state")}
        yield World(emulator, time, load_settings(env=env))
    finally:
        emulator.stop()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The end state of the same apply with writes that land at once."""
    for world in start(tmp_path_factory.mktemp("reference")):
        report = world.apply()
        assert report.ok and report.summary()["done"] == WRITES
        assert world.time.sleeps == []  # nothing to wait for
        return end_state(world.emulator), world.flow_reads()


def test_late_writes_are_waited_for_without_false_failures_or_polling(
    tmp_path: Path, reference: Any
) -> None:
    for world in start(tmp_path, write_delay=3):
        report = world.apply()

        assert report.ok, [(r.action_id, r.error) for r in report.results if not r.ok]
        assert report.summary()["done"] == WRITES
        expected, reads = reference
        assert end_state(world.emulator) == expected
        # Each of the three waves waited 0.5 + 1 + 2 s for its writes to land: growing
        # waits, each followed by one read of the flows still being written, no more.
        assert world.time.sleeps == [0.5, 1.0, 2.0] * 3
        log = world.emulator.requests()
        assert log["write_attempts"] == WRITES  # nothing sent twice
        assert world.flow_reads() == reads + 3 * WRITES, log["by_endpoint"]


def test_a_write_already_under_way_is_waited_for_before_judging(tmp_path: Path) -> None:
    """Someone's enable of a twin is still being applied when apply starts: the staleness
    check waits for it and calls that enable already done, sending nothing for it (strict
    mode would refuse a second one)."""
    for world in start(tmp_path, write_delay=5):
        # One pair with nothing to add: its enable is the first wave.
        name = "Scale flow 000003"
        [twin] = world.emulator.state.find("flows", card="new", sandbox="prod", name=name)
        [legacy] = world.emulator.state.find("flows", card="legacy", sandbox="prod", name=name)
        caller = Platform(world.emulator)
        answer = caller.call("POST", f"/flows/{twin['id']}/action", params={"op": "enable"})
        assert answer.status_code == 200
        world.emulator.configure(write_delay=0)  # apply's own writes land at once

        report = world.apply(request=PlanRequest(flows=(legacy["id"],)))

        assert report.ok
        statuses = {r.action_id: r.status for r in report.results}
        assert statuses == {
            f"enable_flow:prod:{twin['id']}": "already_done",
            f"disable_flow:prod:{legacy['id']}": "done",
        }
        log = world.emulator.requests()
        assert log["write_attempts"] == 1 and "400" not in log["by_status"]
        assert world.time.sleeps == [0.5, 1.0, 2.0, 4.0]  # the check waited for it first


def test_a_write_still_under_way_when_the_wait_ends_fails_and_stops_its_dependents(
    tmp_path: Path,
) -> None:
    for world in start(tmp_path, write_delay=600):
        report = world.apply(SettlePolicy(first=0.5, longest=4, total=10))

        by_kind: dict[str, set[str]] = {}
        for result in report.results:
            by_kind.setdefault(result.kind, set()).add(result.status)
        # The confirming read gives up after 10 s: the audience patches and the enables that
        # did not wait for them fail as still under way, so their flows' enables and every
        # disable are not attempted (a legacy flow stays on until its twin reads back enabled).
        assert by_kind == {
            "add_audiences": {"failed"},
            "enable_flow": {"failed", "skipped"},
            "disable_flow": {"skipped"},
        }
        failed = next(r for r in report.results if r.kind == "add_audiences")
        assert failed.error == (
            "Adobe is still applying the update change (0% done); the flow reads back without "
            f"{failed.error.rsplit('without ', 1)[-1].split(' ')[0]} for now: run apply again "
            "later to check"
        )
        # One read confirmed the patches and the enables together, and waited its bound.
        assert sum(world.time.sleeps) == 10
        assert max(world.time.sleeps) == 4  # no wait grows past the cap
        assert world.emulator.requests()["write_attempts"] == 12  # 2 patches, 10 enables


def test_a_write_adobe_ends_failed_is_a_failure_with_adobes_message(tmp_path: Path) -> None:
    for world in start(tmp_path, write_delay=2, write_error="Pinterest refused the audience"):
        report = world.apply()

        assert not report.ok
        failed = [r for r in report.results if r.status == "failed"]
        assert failed and all("Pinterest refused the audience" in (r.error or "") for r in failed)
        assert all("failed" in (r.error or "") for r in failed)
        # Nothing that depends on a failed write went ahead: every legacy flow stays on.
        legacy = [f for f in world.emulator.state.find("flows", card="legacy")]
        assert legacy and all(f["state"] == "enabled" for f in legacy)


# --- lastOperation as pinmigrate reads it -------------------------------------------------------


@pytest.mark.parametrize(
    ("last", "expected"),
    [
        (None, None),
        ("completed", None),
        ([], None),
        ({}, Operation()),
        (
            {
                "started": 1614122316652,
                "percentCompleted": 100.0,
                "status": {"value": "completed", "errors": []},
                "operation": "update",
            },
            Operation(name="update", status="completed", percent=100.0),
        ),
        (
            {"percentCompleted": "40", "status": {"value": "in_progress"}, "operation": "ENABLE"},
            Operation(name="enable", status="inprogress", percent=40.0),
        ),
        (
            {
                "status": {
                    "value": "FAILED",
                    "errors": [{"code": "X-1", "message": "no  access"}, "plain text", None],
                }
            },
            Operation(status="failed", errors=("no access (X-1)", "plain text")),
        ),
        (
            {"percentCompleted": True, "status": 7, "operation": ["x"]},
            Operation(),
        ),
        ({"status": "inProgress"}, Operation(status="inprogress")),
    ],
)
def test_last_operation_is_read_tolerantly(last: Any, expected: Operation | None) -> None:
    raw = {"id": "f", "name": "F", "state": "enabled"}
    if last is not None:
        raw["lastOperation"] = last
    assert models.operation_of(raw) == expected
    assert models.flow_from_payload(raw, "new").operation == expected


@pytest.mark.parametrize(
    ("operation", "in_progress", "failed"),
    [
        (Operation(status="inprogress", percent=100), True, False),
        (Operation(status="completed", percent=10), False, False),
        (Operation(percent=99.5), True, False),
        (Operation(percent=100), False, False),
        (Operation(), False, False),
        (Operation(status="failed"), False, True),
        (Operation(status="somethingnew", percent=10), False, False),
    ],
)
def test_in_progress_and_failed(operation: Operation, in_progress: bool, failed: bool) -> None:
    assert (operation.in_progress, operation.failed) == (in_progress, failed)


def test_settle_waits_grow_to_a_cap_within_the_total() -> None:
    assert list(SettlePolicy(first=0.5, longest=8, total=60).delays()) == [
        0.5,
        1,
        2,
        4,
        8,
        8,
        8,
        8,
        8,
        8,
        4.5,
    ]
    assert list(SettlePolicy(total=0).delays()) == []


def test_the_cli_waits_for_late_writes_in_real_time(cli: Any, tmp_path: Path) -> None:
    """``pinmigrate apply`` with its default wait, against writes that land 0.3 s late."""
    with Emulator(scenario="scale:6+strict", port=0) as emulator:
        emulator.configure(write_delay=0.3)
        env = {**emulator.env(), "PINMIGRATE_STATE_DIR": str(tmp_path / "state")}
        result = cli(["apply", "--yes", "--output", "json"], env)
        assert result.exit_code == 0, result.stderr
        summary = result.json()["summary"]
        assert summary["done"] == 13 and summary["failed"] == 0
        legacy = emulator.state.find("flows", card="legacy")
        twins = emulator.state.find("flows", card="new")
        assert {f["state"] for f in legacy} == {"disabled"}
        assert {f["state"] for f in twins} == {"enabled"}
        assert emulator.requests()["write_attempts"] == 13
