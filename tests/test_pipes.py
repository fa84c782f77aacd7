"""A closed pipe, a full disk or a lost terminal stops the output, never the work.

Each case runs the real CLI in a subprocess against the emulator at ``scale:300`` (630
writes, long output on both streams), closes one of its streams early (as ``| head -1``
does) or points it at ``/dev/full``, and checks that the run went on to its end: every
write of the plan reached the emulator once, the journal holds an ``after`` for each, the
exit code is the command's own, and nothing like a traceback was printed.
"""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import AppliedWrites, journal_problems, subprocess_env

from pinmigrate.emulator import Emulator
from pinmigrate.journal import list_runs, runs_dir
from pinmigrate.report import is_progress_line
from pinmigrate.terminal import GuardedStream

#: scale:300: 300 enables, 300 disables, 30 audience patches.
WRITES = 630
#: What must never reach stderr when a stream closes.
CRASH_WORDS = ("Traceback", "Exception ignored", "BrokenPipe", "internal error")


@pytest.fixture
def scale_env(state_dir: Path, tmp_path: Path) -> Iterator[tuple[Emulator, dict[str, str]]]:
    with Emulator(scenario="scale:300", port=0) as emulator:
        env = dict(emulator.env())
        env["PINMIGRATE_STATE_DIR"] = str(state_dir)
        env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
        env["XDG_STATE_HOME"] = str(tmp_path / "xdg-state")
        yield emulator, env


def _popen(args: list[str], env: dict[str, str], **streams: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pinmigrate", *args],
        env=subprocess_env(env),
        stdin=subprocess.DEVNULL,
        **streams,
    )


def _drain(stream: Any, into: list[bytes]) -> threading.Thread:
    thread = threading.Thread(target=lambda: into.append(stream.read()), daemon=True)
    thread.start()
    return thread


def _run_closing(args: list[str], env: dict[str, str], *, close: str) -> tuple[int, bytes, bytes]:
    """Run the CLI, read one line of stream ``close`` and close it; the other is read whole.
    Returns the exit code, the first line of the closed stream and the other stream."""
    proc = _popen(args, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    closed, kept = (proc.stdout, proc.stderr) if close == "stdout" else (proc.stderr, proc.stdout)
    assert closed is not None and kept is not None
    other: list[bytes] = []
    reader = _drain(kept, other)
    first = closed.readline()
    closed.close()
    code = proc.wait(timeout=120)
    reader.join(timeout=10)
    return code, first, b"".join(other)


def _journal(state_dir: Path) -> list[dict[str, Any]]:
    [run_id] = list_runs(state_dir)
    path = runs_dir(state_dir) / f"{run_id}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _assert_run_complete(state_dir: Path, applied: AppliedWrites) -> None:
    records = _journal(state_dir)
    assert journal_problems(records) == []
    afters = [r for r in records if r.get("event") == "after"]
    assert len(afters) == WRITES
    assert applied.total == WRITES and applied.twice() == {}


def _assert_no_crash(text: bytes) -> None:
    shown = text.decode("utf-8", "replace")
    for word in CRASH_WORDS:
        assert word not in shown


@pytest.mark.slow
@pytest.mark.parametrize(
    ("close", "flags", "on_the_other"),
    [
        # stderr stays open: the progress goes on to the last action.
        ("stdout", [], f"{WRITES}/{WRITES}"),
        # -v: every request is a log line on the closed stream too; stdout gets the report.
        ("stderr", ["-v"], f"{WRITES} done"),
    ],
)
def test_apply_whose_stream_closes_after_one_line_finishes_every_write(
    scale_env: tuple[Emulator, dict[str, str]],
    state_dir: Path,
    close: str,
    flags: list[str],
    on_the_other: str,
) -> None:
    emulator, env = scale_env
    applied = AppliedWrites(emulator)
    code, first, other = _run_closing(["apply", "--yes", *flags], env, close=close)
    assert first
    assert code == 0, other.decode()
    _assert_run_complete(state_dir, applied)
    _assert_no_crash(other)
    assert on_the_other.encode() in other


@pytest.mark.parametrize(
    ("flags", "expected"),
    [([], 0), (["--detailed-exitcode"], 2), (["--output", "json"], 0)],
    ids=["text", "detailed-exitcode", "json"],
)
def test_plan_piped_to_head_exits_with_its_own_code(
    scale_env: tuple[Emulator, dict[str, str]], flags: list[str], expected: int
) -> None:
    _, env = scale_env
    code, first, err = _run_closing(["plan", *flags], env, close="stdout")
    assert first
    assert code == expected
    assert _said(err) == []


def test_plan_into_a_full_disk_exits_0_without_a_word(
    scale_env: tuple[Emulator, dict[str, str]],
) -> None:
    _, env = scale_env
    with open("/dev/full", "wb") as full:
        proc = _popen(["plan"], env, stdout=full, stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert _said(err) == []


def _said(err: bytes) -> list[str]:
    """What stderr held besides the live progress lines (an error, a note, a traceback)."""
    return [line for line in err.decode().splitlines() if not is_progress_line(line)]


class _Failing(io.StringIO):
    """A stream whose writes fail from the ``after``-th on, with ``code``."""

    def __init__(self, code: int, after: int = 1) -> None:
        super().__init__()
        self.code = code
        self.after = after
        self.calls = 0

    def write(self, text: str) -> int:
        self.calls += 1
        if self.calls >= self.after:
            raise OSError(self.code, "failed")
        return super().write(text)


@pytest.mark.parametrize("code", [errno.EPIPE, errno.EIO, errno.ENOSPC])
def test_a_failed_write_marks_the_stream_dead_and_later_writes_are_dropped(code: int) -> None:
    inner = _Failing(code, after=2)
    stream = GuardedStream(inner)
    assert stream.write("kept\n") == 5
    assert stream.write("lost\n") == 5
    assert stream.dead
    stream.write("dropped\n")
    stream.flush()
    assert inner.calls == 2
    assert inner.getvalue() == "kept\n"


@pytest.mark.parametrize("error", [UnicodeEncodeError("ascii", "é", 0, 1, "no"), KeyError("x")])
def test_errors_that_are_no_output_problem_still_raise(error: Exception) -> None:
    class Odd(io.StringIO):
        def write(self, text: str) -> int:
            raise error

    stream = GuardedStream(Odd())
    with pytest.raises(type(error)):
        stream.write("x")
    assert not stream.dead


@pytest.mark.parametrize("closed", ["stdout", "stderr"])
def test_a_stream_closed_before_the_start_stops_the_output_not_the_work(
    scale_env: tuple[Emulator, dict[str, str]], state_dir: Path, closed: str
) -> None:
    """``pinmigrate apply --yes >&-`` (or ``2>&-``): Python starts with that stream None."""
    emulator, env = scale_env
    applied = AppliedWrites(emulator)
    fd = 1 if closed == "stdout" else 2
    proc = subprocess.Popen(
        [sys.executable, "-m", "pinmigrate", "apply", "--yes"],
        env=subprocess_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL if closed == "stderr" else None,
        stderr=subprocess.PIPE if closed == "stdout" else None,
        preexec_fn=lambda: os.close(fd),
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    _assert_run_complete(state_dir, applied)
    if err:
        _assert_no_crash(err)
