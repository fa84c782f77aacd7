"""SIGKILL a real ``pinmigrate apply`` at ten points; one more apply finishes the job.

Each case runs ``python -m pinmigrate apply PLAN --yes`` at a terminal against the
emulator's ``demo`` scenario in strict mode (``demo+strict``: no-op flow actions are
refused; 12 writes: 3 reconnects, 1 audience patch, 4 enables, 4 disables, in that order),
kills it at one point, and applies again: with the same plan file or with a fresh plan,
alternately. The reconnects take the api path (``migration.reconnect_via = "api"``), where
they are writes: a person signs in to Pinterest for each account (a BROWSER command follows
the emulator's consent page), and that grant is written into it. The points:

- after k writes: the emulator applies k writes and holds the next ones, which are never
  applied; the kill comes while they wait (k spread over the four phases);
- right after the journal's ``before`` record is fsynced, before the request is sent: the
  process stops itself there (see e2e_support) and is killed stopped;
- in the middle of a write: the request reached the emulator, which either applied it and
  keeps the answer back, or keeps it waiting and never applies it.

Whatever the point, the rerun converges to the end state of an uninterrupted run, each of
the 12 writes is applied exactly once over both runs (counted by the emulator), and both
journals hold together: the killed one may end with a ``before`` and nothing after it, the
rerun's is complete and names the run it finishes.

tests/test_apply_cli.py kills from inside the emulator at writes 1, 4, 6, 9, 12 and before
5 and reruns with the plan file; this suite covers the other points and the fresh plan.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e_support import (
    STOPPED_MARK,
    AppliedWrites,
    Gate,
    api_path_env,
    browser_command,
    end_state,
    is_stopped,
    journal_problems,
    kill,
    open_writes,
    person_at_terminal,
    spawn,
    wait_for,
)

from pinmigrate.emulator import Emulator
from pinmigrate.journal import list_runs, read_run

pytestmark = pytest.mark.slow

TOTAL_WRITES = 12


@dataclass(frozen=True)
class Point:
    id: str
    #: "after": k writes applied, the rest held and dropped; "stop": stopped after the
    #: ``before`` record of the n-th action of ``kind``; "held": the k-th write is held
    #: with ``decision`` ("apply-then-hold" or "hold-then-drop")
    how: str
    rerun: str  # "same" plan file, or a "fresh" plan
    k: int = 0
    kind: str = ""
    decision: str = ""


POINTS = [
    Point("after-2-writes-mid-reconnect", "after", "same", k=2),
    Point("after-3-writes-reconnects-done", "after", "fresh", k=3),
    Point("after-7-writes-mid-enable", "after", "same", k=7),
    Point("after-8-writes-enables-done", "after", "fresh", k=8),
    Point("after-11-writes-mid-disable", "after", "same", k=11),
    Point("journalled-reconnect-not-sent", "stop", "fresh", k=1, kind="reconnect_account"),
    Point("journalled-audiences-not-sent", "stop", "same", k=1, kind="add_audiences"),
    Point("journalled-disable-not-sent", "stop", "fresh", k=2, kind="disable_flow"),
    Point("audiences-applied-answer-held", "held", "fresh", k=4, decision="apply-then-hold"),
    Point("enable-received-never-applied", "held", "same", k=6, decision="hold-then-drop"),
]


def write_key(action: dict[str, Any]) -> tuple[str, ...]:
    """The emulator-side key (see AppliedWrites) of the write an action makes."""
    kind, target = action["kind"], action["target_id"]
    if kind == "reconnect_account":
        return ("patch", "connections", target)
    if kind == "add_audiences":
        return ("patch", "flows", target)
    return ("action", target, "enable" if kind == "enable_flow" else "disable")


# --- the world --------------------------------------------------------------------------------


@dataclass
class World:
    emulator: Any
    env: dict[str, str]
    state_dir: Path
    plan: Path


def make_world(cli: Callable[..., Any], tmp: Path) -> World:
    """A demo emulator on the api reconnect path, a state dir with emu_marketer's login
    stored (for the pre-flight), a browser that signs in when asked, and a saved plan."""
    # Strict: an enable of an enabled flow (or a disable of a disabled one) is refused, so
    # an action sent again after the kill would show.
    emulator = Emulator(scenario="demo+strict", port=0).start()
    state_dir = tmp / "state"
    state_dir.mkdir(parents=True)
    env = {
        **api_path_env(emulator, emulator.env()),
        "PINMIGRATE_STATE_DIR": str(state_dir),
        "XDG_CONFIG_HOME": str(tmp / "xdg-config"),
        "XDG_STATE_HOME": str(tmp / "xdg-state"),
        "PINMIGRATE_PINTEREST_REFRESH_TOKEN": emulator.tokens("emu_marketer")["refresh_token"],
        "BROWSER": browser_command(tmp),
    }
    plan = tmp / "plan.json"
    planned = cli(["plan", "--out", str(plan)], env)
    assert planned.exit_code == 0, planned.stderr
    return World(emulator, env, state_dir, plan)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The end state of one uninterrupted apply, shared by every case."""
    from conftest import invoke

    world = make_world(invoke, tmp_path_factory.mktemp("reference"))
    try:
        with pytest.MonkeyPatch.context() as patch:
            person_at_terminal(patch)
            result = invoke(["apply", str(world.plan), "--output", "json"], world.env)
        assert result.exit_code == 0, result.stderr
        assert result.json()["summary"]["done"] == TOTAL_WRITES
        return end_state(world.emulator)
    finally:
        world.emulator.stop()


@pytest.fixture
def world(cli: Callable[..., Any], tmp_path: Path) -> Iterator[World]:
    made = make_world(cli, tmp_path)
    try:
        yield made
    finally:
        made.emulator.stop()


def gate_for(point: Point) -> Gate | None:
    if point.how == "after":
        return Gate(lambda n, _key: "hold-then-drop" if n > point.k else None)
    if point.how == "held":
        return Gate(lambda n, _key: point.decision if n == point.k else None)
    return None


# --- the suite --------------------------------------------------------------------------------


@pytest.mark.parametrize("point", POINTS, ids=[p.id for p in POINTS])
def test_a_killed_apply_is_finished_by_a_rerun_that_does_nothing_twice(
    point: Point,
    world: World,
    cli: Callable[..., Any],
    reference: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emulator, state_dir = world.emulator, world.state_dir
    gate = gate_for(point)
    applied = AppliedWrites(emulator, gate)
    emulator.clear_requests()
    stop_after = f"{point.kind}:{point.k}" if point.how == "stop" else None
    proc = spawn(
        ["apply", str(world.plan), "--yes"], world.env, stop_after=stop_after, terminal=True
    )
    try:
        if gate is None:
            wait_for(
                lambda: is_stopped(proc.pid) or proc.poll() is not None,
                "the apply to stop after its journal record",
            )
        else:
            wait_for(
                lambda: gate.held.is_set() or proc.poll() is not None,
                "a write to be held by the emulator",
            )
        if proc.poll() is not None:
            _, err = kill(proc)
            pytest.fail(f"the apply ended (exit {proc.returncode}) before its kill point: {err}")
        _, err = kill(proc)
    finally:
        if proc.poll() is None:
            kill(proc)
        if gate is not None:
            gate.release()
    applied.gate = None
    assert proc.returncode == -signal.SIGKILL, err

    # What the killed run left: the writes the emulator applied, and its journal.
    first_log = emulator.requests()["log"]
    before_rerun = Counter(applied.counts)
    [first_id] = list_runs(state_dir)
    first = read_run(state_dir, first_id)
    assert not first.finished
    assert journal_problems(first.records, finished=False) == []
    unsure = open_writes(first.records)
    # Every write that reached the emulator was journalled before it was sent.
    journalled = {write_key(r) for r in first.records if r["event"] == "before"}
    assert set(before_rerun) <= journalled, set(before_rerun) - journalled
    open_keys = {write_key(r) for r in first.records if r.get("action_id") in unsure}
    if point.how == "after":
        assert applied.total == point.k
        # The held writes were sent, so journalled first, and never answered.
        assert gate is not None and gate.held_keys
        assert set(gate.held_keys) <= open_keys, set(gate.held_keys) - open_keys
    elif point.how == "stop":
        [stopped] = [line.split()[-1] for line in err.splitlines() if STOPPED_MARK in line]
        assert stopped in unsure
        [record] = [r for r in first.records if r.get("action_id") == stopped]
        assert record["kind"] == point.kind
        # Killed between the fsync and the send: the emulator never heard of it.
        assert write_key(record) not in before_rerun
        assert not [
            e for e in first_log if record["target_id"] in e["path"] and e["method"] != "GET"
        ]
    else:
        # Other writes of the same wave may have gone on around the held one.
        assert gate is not None and len(gate.held_keys) == 1
        [held] = gate.held_keys
        assert before_rerun[held] == (point.decision == "apply-then-hold")
        assert held in open_keys

    # The rerun, at a terminal too: an account not yet reconnected needs a sign-in.
    person_at_terminal(monkeypatch)
    if point.rerun == "same":
        args = ["apply", str(world.plan), "--output", "json"]
    else:
        args = ["apply", "--yes", "--output", "json"]
    result = cli(args, world.env)

    assert result.exit_code == 0, result.stderr
    assert "Took over the lock" in result.stderr
    assert f"The previous apply (run {first_id}) did not finish" in result.stderr
    report = result.json()
    statuses = {r["action_id"]: r["status"] for r in report["results"]}
    keys = {r["action_id"]: write_key(r) for r in report["results"]}
    if point.rerun == "same":
        assert len(statuses) == TOTAL_WRITES
        for action_id, status in statuses.items():
            expected = "already_done" if before_rerun[keys[action_id]] else "done"
            assert status == expected, (action_id, status, expected)
    else:
        # A fresh plan holds exactly what the killed run did not apply.
        assert set(statuses.values()) == {"done"}
        assert len(statuses) == TOTAL_WRITES - sum(before_rerun.values())
        assert not [k for k in keys.values() if before_rerun[k]]

    # Nothing done twice, everything done once; the world is as after an uninterrupted run.
    assert applied.twice() == {}
    assert applied.total == TOTAL_WRITES
    assert end_state(emulator) == reference
    answered = Counter(
        (e["method"], e["path"])
        for e in emulator.requests()["log"]
        if e["method"] in ("PATCH", "POST")
        and "/flowservice/" in e["path"]
        and (e["status"] or 0) < 300
        and (e["status"] or 0) >= 200
    )
    assert max(answered.values()) == 1, answered

    # The rerun's journal is complete and names the run it finishes.
    second = read_run(state_dir, report["run_id"])
    assert journal_problems(second.records) == []
    assert second.start.get("resumes") == first_id
    assert sorted(second.start.get("unsure_actions", [])) == unsure
    assert not (state_dir / "lock").exists()


def test_a_retried_write_killed_in_flight_counts_as_interrupted(tmp_path: Path) -> None:
    """before, error (412), before again, then the kill: the second attempt is unsure."""
    from pinmigrate.journal import ActionRef, Journal

    journal = Journal(tmp_path)
    journal.run_start(fingerprint=None, action_ids=["a", "b"])
    a = ActionRef("a", "add_audiences", "prod", "f1")
    b = ActionRef("b", "enable_flow", "prod", "f2")
    journal.before(a, {"audiences": []}, attempt=1)
    journal.error(a, "412: the flow changed since it was read")
    journal.before(b, {"state": "disabled"})
    journal.after(b, {"state": "enabled"})
    journal.before(a, {"audiences": []}, attempt=2)
    journal.close()

    record = read_run(tmp_path, journal.run_id)
    assert [(w["action_id"], w["attempt"]) for w in record.interrupted_writes()] == [("a", 2)]
    assert open_writes(record.records) == ["a"]
    assert journal_problems(record.records, finished=False) == []
