"""``apply --wait-runs`` against the emulator when a flow's first run starts late.

Flow Service starts the run an enable triggers some time later (api-notes.md §3 "Runs");
the emulator's ``run_delay`` and ``run_duration`` play that on its own clock. The apply's
sleep moves that clock instead of waiting, so minutes of waiting take no real time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import Result, invoke

from pinmigrate.emulator import Emulator, scenarios


@dataclass
class MovingTime:
    """Real time plus what the code under test has slept: for the emulator and apply alike."""

    slept: list[float] = field(default_factory=list)

    def ahead(self) -> float:
        return sum(self.slept)

    def time(self) -> float:
        return time.time() + self.ahead()

    def monotonic(self) -> float:
        return time.monotonic() + self.ahead()

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


@pytest.fixture
def moving(monkeypatch: pytest.MonkeyPatch) -> MovingTime:
    import pinmigrate.apply.engine as engine

    fake = MovingTime()
    monkeypatch.setattr(engine, "time", fake)
    # Apply's waits (Executor._pause, which a Ctrl-C cuts short) move the clock instead.
    monkeypatch.setattr(engine.Executor, "_pause", lambda _self, seconds: fake.sleep(seconds))
    return fake


@pytest.fixture
def emu(moving: MovingTime) -> Iterator[Emulator]:
    with Emulator("demo", clock=moving.time) as running:
        yield running


@pytest.fixture
def env(emu: Emulator, tmp_path: Path) -> dict[str, str]:
    return {
        **emu.env(),
        "PINMIGRATE_STATE_DIR": str(tmp_path / "state"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
    }


NEWSLETTER = scenarios.flow_id("dev", "new", "Newsletter subscribers")


def apply_newsletter(env: dict[str, str], timeout: int) -> Result:
    """Apply the one dev pair that needs no reconnect: enable its twin, wait for its run."""
    return invoke(
        [
            "apply",
            "--yes",
            "--sandbox",
            "dev",
            "--flow",
            NEWSLETTER,
            "--wait-runs",
            "--run-timeout",
            str(timeout),
            "--output",
            "json",
        ],
        env,
    )


def runs_read(emu: Emulator) -> int:
    return int(emu.requests()["by_endpoint"].get("GET /runs", 0))


def test_a_run_that_starts_late_is_waited_for(
    emu: Emulator, env: dict[str, str], moving: MovingTime
) -> None:
    emu.state.set_config({"run_delay": 45, "run_duration": 30})
    result = apply_newsletter(env, timeout=300)
    assert result.exit_code == 0, result.stderr
    [run] = result.json()["runs"]
    assert (run["flow_id"], run["status"]) == (NEWSLETTER, "success")
    assert run["run_id"]
    assert 75 <= moving.ahead() <= 100  # polled through "no run yet" and "processing"
    assert runs_read(emu) >= 3


def test_a_run_that_never_starts_ends_as_a_timeout(
    emu: Emulator, env: dict[str, str], moving: MovingTime
) -> None:
    emu.state.set_config({"run_delay": 3600})
    result = apply_newsletter(env, timeout=60)
    assert result.exit_code == 1
    [error] = [line for line in result.stderr.splitlines() if line.startswith("pinmigrate:")]
    assert "Newsletter subscribers" in error
    assert "no run had started 60s after enabling" in error
    assert "Traceback" not in result.stderr
    [run] = result.json()["runs"]
    assert (run["status"], run["run_id"]) == ("timeout", None)
    assert moving.ahead() == pytest.approx(60, abs=1)  # the last read came at the timeout
    flow: Any = emu.state.get("flows", NEWSLETTER)
    assert flow["state"] == "enabled"  # the enable itself stands


# --- the order a plan carries: --wait-runs, migration.wait_runs ---------------------------------


def plan_of(env: dict[str, str], *flags: str) -> Result:
    return invoke(["plan", "--sandbox", "dev", "--flow", NEWSLETTER, *flags], env)


def test_the_plan_shows_and_carries_the_order(emu: Emulator, env: dict[str, str]) -> None:
    plain = plan_of(env, "--output", "json").json()
    [disable] = [a for a in plain["actions"] if a["kind"] == "disable_flow"]
    assert disable["details"]["after"] == "twin_enabled"
    assert "after its twin" in plan_of(env).stdout and "first run" not in plan_of(env).stdout

    for how in (["--wait-runs"], []):
        extra = {} if how else {"PINMIGRATE_MIGRATION_WAIT_RUNS": "true"}
        waiting = invoke(
            ["plan", "--sandbox", "dev", "--flow", NEWSLETTER, *how, "--output", "json"],
            {**env, **extra},
        ).json()
        assert waiting["schema_version"] == 1
        [disable] = [a for a in waiting["actions"] if a["kind"] == "disable_flow"]
        assert disable["details"]["after"] == "first_run_succeeds"
    text = " ".join(plan_of(env, "--wait-runs").stdout.split())
    assert f"after its twin {NEWSLETTER}'s first run succeeds" in text


# --- verified cutover: the legacy flow goes off only after its twin's first run succeeded ---

LEGACY_NEWSLETTER = scenarios.flow_id("dev", "legacy", "Newsletter subscribers")
REFUSED = "Pinterest refused the audience upload"


def state_of(emu: Emulator, flow_id: str) -> str:
    flow: Any = emu.state.get("flows", flow_id)
    return str(flow["state"])


def test_a_failed_first_run_keeps_the_legacy_flow_on_and_says_what_to_do(
    emu: Emulator, env: dict[str, str]
) -> None:
    emu.state.set_config({"run_failures": {NEWSLETTER: REFUSED}, "run_duration": 30})
    result = apply_newsletter(env, timeout=300)

    assert result.exit_code == 1
    assert state_of(emu, NEWSLETTER) == "enabled"
    assert state_of(emu, LEGACY_NEWSLETTER) == "enabled"  # never switched off
    payload = result.json()
    [run] = payload["runs"]
    assert run["status"] == "failed" and run["run_id"]
    assert run["errors"] == [{"code": "CONNECTOR-2001-500", "message": REFUSED}]
    assert run["legacy_flows_kept_on"] == [LEGACY_NEWSLETTER]
    by_kind = {r["kind"]: r for r in payload["results"]}
    assert by_kind["enable_flow"]["status"] == "done"
    assert by_kind["disable_flow"]["status"] == "skipped"
    assert (
        f"CONNECTOR-2001-500: {REFUSED}; the legacy flow stays on"
        in (by_kind["disable_flow"]["error"])
    )
    [error] = [line for line in result.stderr.splitlines() if line.startswith("pinmigrate:")]
    assert "the first run failed for 1 new flow: 'Newsletter subscribers';" in error
    assert "its legacy flow stays on" in error
    assert "`pinmigrate apply` again (it resumes)" in error
    assert "`pinmigrate rollback` to undo the run (its new flows off again" in error
    assert "Traceback" not in result.stderr


def test_the_text_report_lists_the_failed_first_runs(emu: Emulator, env: dict[str, str]) -> None:
    emu.state.set_config({"run_failures": {NEWSLETTER: REFUSED}})
    result = invoke(
        ["apply", "--yes", "--sandbox", "dev", "--flow", NEWSLETTER, "--wait-runs"], env
    )
    assert result.exit_code == 1
    out = " ".join(result.stdout.split())  # as one line, whatever the width
    assert "First runs: 0 of 1 succeeded" in out
    assert f"'Newsletter subscribers' ({NEWSLETTER}): failed, run " in out
    assert f"CONNECTOR-2001-500: {REFUSED}; legacy flow {LEGACY_NEWSLETTER} stays on" in out


def test_a_successful_first_run_lets_the_legacy_flow_go_off_after_it(
    emu: Emulator, env: dict[str, str], tmp_path: Path
) -> None:
    emu.state.set_config({"run_delay": 20, "run_duration": 30})
    result = apply_newsletter(env, timeout=300)
    assert result.exit_code == 0, result.stderr
    assert state_of(emu, LEGACY_NEWSLETTER) == "disabled"
    [journal] = (tmp_path / "state" / "runs").glob("*.jsonl")
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    seen = next(i for i, e in enumerate(events) if e["event"] == "first_run")
    assert events[seen]["status"] == "success" and events[seen]["target_id"] == NEWSLETTER
    switched_off = next(
        i for i, e in enumerate(events) if e["event"] == "before" and e["kind"] == "disable_flow"
    )
    assert seen < switched_off


def test_a_saved_plan_made_with_wait_runs_waits_without_the_flag(
    emu: Emulator, env: dict[str, str], tmp_path: Path
) -> None:
    saved = tmp_path / "plan.json"
    assert plan_of(env, "--wait-runs", "--out", str(saved)).exit_code == 0
    emu.state.set_config({"run_failures": {NEWSLETTER: REFUSED}})
    result = invoke(["apply", str(saved), "--output", "json"], env)
    assert result.exit_code == 1
    assert state_of(emu, LEGACY_NEWSLETTER) == "enabled"
    assert [r["status"] for r in result.json()["runs"]] == ["failed"]


def test_wait_runs_applied_to_a_plan_made_without_it_also_waits(
    emu: Emulator, env: dict[str, str], tmp_path: Path
) -> None:
    saved = tmp_path / "plan.json"
    assert plan_of(env, "--out", str(saved)).exit_code == 0
    emu.state.set_config({"run_failures": {NEWSLETTER: REFUSED}})
    result = invoke(["apply", str(saved), "--wait-runs", "--output", "json"], env)
    assert result.exit_code == 1
    assert state_of(emu, LEGACY_NEWSLETTER) == "enabled"
