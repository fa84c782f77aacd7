"""The state dir and the files pinmigrate writes (issue 12 item 5): no temp left after a
kill, a private state dir, no symlink followed, plan files 0600."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pinmigrate.emulator import Emulator
from pinmigrate.files import remove_stale_temps, write_atomic
from pinmigrate.journal import Journal, read_run
from pinmigrate.lock import StateLock
from pinmigrate.logins import Login, LoginStore, LoginStoreError

USAGE = 64


# --- temp files ----------------------------------------------------------------------------------


def login(user: str = "1000000001", token: str = "access-token-secret") -> Login:
    return Login.model_validate({"user_id": user, "username": "emu", "access_token": token})


KILLED_WRITE = """
import os, signal, sys
from pathlib import Path
from pinmigrate.logins import Login, LoginStore
real = os.replace
def killed(src, dst):
    os.kill(os.getpid(), signal.SIGKILL)
os.replace = killed
LoginStore(Path(sys.argv[1])).put(
    Login.model_validate({"user_id": "1000000002", "access_token": "token-of-the-killed-write"})
)
"""


def killed_write(state_dir: Path) -> list[Path]:
    """Kill a process between writing the store's temp file and renaming it into place."""
    done = subprocess.run(
        [sys.executable, "-c", KILLED_WRITE, str(state_dir)], capture_output=True, timeout=60
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    temps = sorted(state_dir.glob(".logins.json.*.tmp"))
    assert temps and "token-of-the-killed-write" in temps[0].read_text()
    return temps


def test_the_next_store_write_removes_the_temp_a_killed_write_left(state_dir: Path) -> None:
    killed_write(state_dir)
    LoginStore(state_dir).put(login())
    assert list(state_dir.glob(".logins.json.*")) == []
    assert [lg.user_id for lg in LoginStore(state_dir).load()] == ["1000000001"]


def test_auth_logout_removes_the_temp_a_killed_write_left(
    cli: Any, state_dir: Path, emu_env: dict[str, str]
) -> None:
    LoginStore(state_dir).put(login())
    killed_write(state_dir)
    result = cli(["auth", "logout", "1000000001"], emu_env)
    assert result.exit_code == 0, result.stderr
    assert list(state_dir.glob(".logins.json.*")) == []
    assert LoginStore(state_dir).load() == []


def test_auth_logout_removes_a_left_temp_even_with_nothing_to_forget(
    cli: Any, state_dir: Path, emu_env: dict[str, str]
) -> None:
    # The kill came before the first login was ever stored: only the temp holds the token.
    killed_write(state_dir)
    result = cli(["auth", "logout"], emu_env)
    assert result.exit_code == 0 and "nothing to forget" in result.stderr
    assert list(state_dir.glob(".logins.json.*")) == []


def test_write_atomic_removes_only_stale_temps_of_its_own_file(tmp_path: Path) -> None:
    target = tmp_path / "plan.json"
    stale = tmp_path / ".plan.json.abc123.tmp"
    fresh = tmp_path / ".plan.json.def456.tmp"
    other = tmp_path / ".other.json.abc123.tmp"
    for path in (stale, fresh, other):
        path.write_text("x")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    write_atomic(target, "{}")
    assert not stale.exists() and fresh.exists() and other.exists()
    assert remove_stale_temps(target, older_than=0) == [fresh]


def test_write_atomic_writes_pieces_in_order_and_leaves_nothing_when_they_fail(
    tmp_path: Path,
) -> None:
    target = tmp_path / "plan.json"
    write_atomic(target, iter([b"{\n", '  "n\u00e9": 1\n'.encode(), b"}\n"]), mode=0o600)
    assert target.read_text(encoding="utf-8") == '{\n  "n\u00e9": 1\n}\n'
    assert stat.S_IMODE(target.stat().st_mode) == 0o600

    def broken() -> Iterator[bytes]:
        yield b"{"
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_atomic(target, broken(), mode=0o600)
    assert target.read_text(encoding="utf-8") == '{\n  "n\u00e9": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]


# --- the state dir -------------------------------------------------------------------------------


def test_state_files_create_their_dirs_0700(tmp_path: Path) -> None:
    for number, make in enumerate(
        (
            lambda d: StateLock(d, "run").acquire().release(),
            lambda d: LoginStore(d).put(login()),
            lambda d: Journal(d, "20260101T000000000Z-abcdef").record("run_start"),
        )
    ):
        state = tmp_path / f"s{number}" / "pinmigrate"
        make(state)
        made = [p for p in (state, state / "runs") if p.exists()]
        assert made and all(stat.S_IMODE(p.stat().st_mode) == 0o700 for p in made), made


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777])
def test_a_state_dir_others_may_write_to_is_refused_before_anything(
    cli: Any, emulator: Emulator, emu_env: dict[str, str], state_dir: Path, mode: int
) -> None:
    state_dir.chmod(mode)
    emulator.clear_requests()
    result = cli(["plan"], emu_env)
    assert result.exit_code == USAGE
    assert result.stderr.count("\n") == 1 and "unsafe state dir" in result.stderr
    assert "group or others may write to it" in result.stderr
    assert emulator.requests()["total"] == 0
    assert list(state_dir.iterdir()) == []


def test_a_state_dir_of_another_user_is_refused(
    cli: Any, emulator: Emulator, emu_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.geteuid()
    monkeypatch.setattr(os, "geteuid", lambda: real + 1)
    emulator.clear_requests()
    result = cli(["auth", "status"], emu_env)
    assert result.exit_code == USAGE
    assert "owned by another user" in result.stderr and result.stderr.count("\n") == 1
    assert emulator.requests()["total"] == 0


def test_a_symlinked_lock_is_not_followed(state_dir: Path, tmp_path: Path) -> None:
    # The link names a lock of a dead process: taking it over would replace the file the
    # link points at (or, with a dangling link, create it).
    elsewhere = tmp_path / "elsewhere"
    dead = {"pid": 999_999_999, "host": "h", "run_id": "old", "started": "2026-01-01"}
    elsewhere.write_text(json.dumps(dead))
    (state_dir / "lock").symlink_to(elsewhere)
    lock = StateLock(state_dir, "new", host="h", alive=lambda pid: False, sleep=lambda s: None)
    with pytest.raises(Exception, match="lock"):
        lock.acquire()
    assert json.loads(elsewhere.read_text()) == dead


@pytest.mark.parametrize("name", ["logins.json", "logins.lock"])
def test_login_store_files_are_not_followed_through_symlinks(
    state_dir: Path, tmp_path: Path, name: str
) -> None:
    target = tmp_path / "planted"
    if name == "logins.json":
        target.write_text(
            json.dumps({"version": 1, "logins": [{"user_id": "1", "access_token": "x"}]})
        )
    (state_dir / name).symlink_to(target)
    store = LoginStore(state_dir)
    with pytest.raises(LoginStoreError, match="symbolic link"):
        store.put(login())
    assert not target.exists() or name == "logins.json"


def test_a_symlinked_journal_is_not_followed(state_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "planted.jsonl"
    run_id = "20260101T000000000Z-abcdef"
    (state_dir / "runs").mkdir()
    (state_dir / "runs" / f"{run_id}.jsonl").symlink_to(target)
    with pytest.raises(OSError, match="symbolic link"):
        Journal(state_dir, run_id).record("run_start")
    assert not target.exists()
    target.write_text('{"event": "run_start"}\n')
    with pytest.raises(Exception, match="symbolic link"):
        read_run(state_dir, run_id)


# --- plan files ----------------------------------------------------------------------------------


def test_plan_out_is_written_0600_even_over_a_wider_file(
    cli: Any, emu_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "plan.json"
    out.write_text("old")
    out.chmod(0o644)
    old = os.umask(0o022)
    try:
        result = cli(["plan", "--out", str(out)], emu_env)
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert json.loads(out.read_text())["kind"] == "pinmigrate.plan"
