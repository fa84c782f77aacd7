"""Ctrl-C in the middle of a real ``apply`` and ``rollback``: what was done, that nothing is
half-done, how to carry on (exit 130); and the rerun finishes without a write done twice.

The CLI runs in a subprocess against the emulator at ``scale:60`` (126 writes) with latency,
so that SIGINT lands while writes are going out."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import AppliedWrites, journal_problems, subprocess_env, wait_for

from pinmigrate.emulator import Emulator
from pinmigrate.journal import list_runs, read_run

#: scale:60: 60 enables, 60 disables, 6 audience patches.
WRITES = 126
STOPPED = re.compile(
    r"^pinmigrate: (apply|rollback) run (\S+) stopped by Ctrl-C after (\d+) of (\d+) planned "
    r"writes?; nothing is half-done: each write is journalled before and after it is sent, "
    r"and a write in flight when Ctrl-C came is re-read on the next run"
    r"( \(\d+ (?:was|were) in flight\))?; "
    r"run `pinmigrate (apply|rollback \S+)` again to resume: what is done shows as already done$"
)


@pytest.fixture
def slow_world(state_dir: Path, tmp_path: Path) -> Iterator[tuple[Emulator, dict[str, str]]]:
    with Emulator(scenario="scale:60", port=0, latency_ms=60) as emulator:
        env = dict(emulator.env())
        env["PINMIGRATE_STATE_DIR"] = str(state_dir)
        env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
        env["XDG_STATE_HOME"] = str(tmp_path / "xdg-state")
        env["PINMIGRATE_MIGRATION_CONCURRENCY"] = "2"
        yield emulator, env


def _run(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pinmigrate", *args],
        env=subprocess_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _interrupt_after(
    args: list[str], env: dict[str, str], applied: AppliedWrites, writes: int
) -> tuple[int, str]:
    """Run, send SIGINT once ``writes`` more writes reached the emulator; code and stderr."""
    start = applied.total
    proc = _run(args, env)
    wait_for(lambda: applied.total >= start + writes or proc.poll() is not None, "writes", 60)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err.decode("utf-8", "replace")


def _stopped_line(err: str) -> re.Match[str]:
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    found = STOPPED.match(last)
    assert found, last
    return found


def _finish(args: list[str], env: dict[str, str]) -> None:
    proc = _run(args, env)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()


@pytest.mark.slow
def test_ctrl_c_during_apply_says_what_was_done_and_a_rerun_finishes_it(
    slow_world: tuple[Emulator, dict[str, str]], state_dir: Path
) -> None:
    emulator, env = slow_world
    applied = AppliedWrites(emulator)
    code, err = _interrupt_after(["apply", "--yes"], env, applied, writes=10)
    assert code == 130
    stopped = _stopped_line(err)
    kind, run_id, done, planned, _, again = stopped.groups()
    assert (kind, again, int(planned)) == ("apply", "apply", WRITES)
    record = read_run(state_dir, run_id)
    outcomes = [outcome for _, outcome in record.write_outcomes().values()]
    # The count is the journal's, and it is a part of the run, not all of it.
    assert int(done) == outcomes.count("done")
    assert 10 <= int(done) < WRITES
    assert not record.finished

    _finish(["apply", "--yes"], env)
    assert applied.twice() == {}
    assert applied.total == WRITES


@pytest.mark.slow
def test_ctrl_c_during_rollback_names_the_rollback_to_run_again(
    slow_world: tuple[Emulator, dict[str, str]], state_dir: Path
) -> None:
    emulator, env = slow_world
    _finish(["apply", "--yes"], env)
    [apply_run] = list_runs(state_dir)
    applied = AppliedWrites(emulator)
    code, err = _interrupt_after(["rollback", "--yes"], env, applied, writes=10)
    assert code == 130
    kind, run_id, done, _, _, again = _stopped_line(err).groups()
    assert (kind, again) == ("rollback", f"rollback {apply_run}")
    assert 10 <= int(done) < 120
    assert journal_problems(read_run(state_dir, run_id).records, finished=False) == []

    _finish(["rollback", apply_run, "--yes"], env)
    # Every flow state the apply changed is undone once: 120 flow actions, none twice.
    assert applied.twice() == {}
    assert applied.total == 120


def test_the_writes_in_flight_are_counted_from_the_journal(state_dir: Path) -> None:
    from pinmigrate.journal import ActionRef, Journal
    from pinmigrate.workflow import stopped_by_ctrl_c

    journal = Journal(state_dir, "run-1")
    journal.run_start(fingerprint=None, action_ids=["a", "b", "c"])
    refs = [ActionRef(i, "enable_flow", "prod", f"flow-{i}") for i in "abc"]
    for ref in refs:
        journal.before(ref, {"state": "disabled"})
    journal.after(refs[0], {"state": "enabled"})
    journal.error(refs[1], "refused")
    journal.close()
    line = stopped_by_ctrl_c(state_dir, "run-1", 3, "apply", again="`pinmigrate apply`").line()
    found = STOPPED.match(f"pinmigrate: {line}")
    assert found, line
    assert found.group(3, 4) == ("1", "3")
    assert "(1 was in flight)" in line


def test_a_run_stopped_before_its_journal_began_did_no_write(state_dir: Path) -> None:
    from pinmigrate.workflow import stopped_by_ctrl_c

    line = stopped_by_ctrl_c(state_dir, "run-2", 5, "rollback", again="`pinmigrate rollback r`")
    assert line.line().startswith("rollback run run-2 stopped by Ctrl-C after 0 of 5 planned")
    assert "in flight)" not in line.line()
