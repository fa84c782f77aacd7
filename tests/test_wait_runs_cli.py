"""``apply --wait-runs`` against the emulator when a flow's first run starts late.

Flow Service starts the run an enable triggers some time later (api-notes.md §3 "Runs");
the emulator's ``run_delay`` and ``run_duration`` play that on its own clock. The apply's
sleep moves that clock instead of waiting, so minutes of waiting take no real time.
"""

from __future__ import annotations

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
