"""The run journal (fsynced JSONL, no secrets, torn lines tolerated) and the state-dir lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pinmigrate import redact
from pinmigrate.errors import ExitCode, LockedError, UsageError
from pinmigrate.journal import (
    ActionRef,
    Journal,
    LockHolder,
    StateLock,
    latest_run,
    list_runs,
    new_run_id,
    pid_alive,
    read_run,
)

REF = ActionRef("enable_flow:prod:f1", "enable_flow", "prod", "f1", "Loyalty members")


def test_run_ids_sort_by_time_and_are_unique() -> None:
    early = new_run_id(datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=UTC))
    late = new_run_id(datetime(2024, 1, 2, 3, 4, 5, 7000, tzinfo=UTC))
    assert early.startswith("20240102T030405006Z-")
    assert early < late
    assert new_run_id() != new_run_id()


def test_records_are_json_lines_with_before_and_after(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "20240101T000000000Z-aaaaaa")
    assert not journal.path.exists()  # nothing until the first record
    journal.run_start(fingerprint="sha256:abc", action_ids=[REF.action_id])
    journal.before(REF, {"state": "disabled"}, legacy_flow_id="l1")
    journal.after(REF, {"state": "enabled"})
    journal.run_end({"done": 1})
    journal.close()

    lines = journal.path.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["event"] for r in records] == ["run_start", "before", "after", "run_end"]
    assert records[0]["fingerprint"] == "sha256:abc"
    assert records[0]["kind"] == "apply"
    assert records[1]["before"] == {"state": "disabled"}
    assert records[1]["legacy_flow_id"] == "l1"
    assert records[1]["target_name"] == "Loyalty members"
    assert records[2]["after"] == {"state": "enabled"}
    assert all(r["run_id"] == journal.run_id for r in records)
    assert oct(journal.path.stat().st_mode & 0o777) == oct(0o600)


def test_secrets_are_dropped_by_key_and_masked_by_value(tmp_path: Path) -> None:
    redact.register("pina_registered_secret_value")
    journal = Journal(tmp_path, "r1")
    journal.before(
        REF,
        {
            "expiresAt": "2025-01-01T00:00:00Z",
            "accessToken": "pina_dropped_by_key",
            "nested": {"refresh_token": "pinr_dropped_too", "note": "pina_registered_secret_value"},
        },
    )
    journal.close()
    text = journal.path.read_text()
    assert "pina_dropped_by_key" not in text
    assert "pinr_dropped_too" not in text
    assert "pina_registered_secret_value" not in text
    assert "2025-01-01T00:00:00Z" in text


def test_a_torn_last_line_is_ignored_and_interrupted_writes_found(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "r1")
    journal.run_start(fingerprint=None, action_ids=["a", "b"])
    journal.before(REF, {"state": "disabled"})
    journal.after(REF, {"state": "enabled"})
    other = ActionRef("disable_flow:prod:l1", "disable_flow", "prod", "l1")
    journal.before(other, {"state": "enabled"})
    journal.close()
    with journal.path.open("a") as handle:
        handle.write('{"ts": "2024", "event": "aft')  # killed mid-write

    record = read_run(tmp_path, "r1")
    assert [r["event"] for r in record.records] == ["run_start", "before", "after", "before"]
    assert not record.finished
    assert [w["action_id"] for w in record.interrupted_writes()] == ["disable_flow:prod:l1"]
    assert record.after_of(REF.action_id)["after"] == {"state": "enabled"}


def test_unknown_or_malformed_run_ids_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as err:
        read_run(tmp_path, "20990101T000000000Z-ffffff")
    assert err.value.exit_code == ExitCode.USAGE
    with pytest.raises(UsageError):
        read_run(tmp_path, "../etc/passwd")


def test_latest_run_by_kind_and_writes(tmp_path: Path) -> None:
    first = Journal(tmp_path, "20240101T000000000Z-aaaaaa")
    first.run_start(fingerprint=None, action_ids=[])
    first.before(REF, {"state": "disabled"})
    first.close()
    noop = Journal(tmp_path, "20240102T000000000Z-bbbbbb")
    noop.run_start(fingerprint=None, action_ids=[])
    noop.run_end({})
    noop.close()
    undo = Journal(tmp_path, "20240103T000000000Z-cccccc", kind="rollback")
    undo.run_start(fingerprint=None, action_ids=[])
    undo.close()

    assert list_runs(tmp_path) == [first.run_id, noop.run_id, undo.run_id]
    assert latest_run(tmp_path) == noop.run_id
    assert latest_run(tmp_path, with_writes=True) == first.run_id
    assert latest_run(tmp_path, kind="rollback") == undo.run_id
    assert latest_run(tmp_path / "nowhere") is None


# --- the lock ---------------------------------------------------------------------------------


def test_lock_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    first = StateLock(tmp_path, "run-1").acquire()
    data = json.loads((tmp_path / "lock").read_text())
    assert data["pid"] == os.getpid() and data["run_id"] == "run-1"
    with pytest.raises(LockedError) as err:
        StateLock(tmp_path, "run-2").acquire()
    assert err.value.exit_code == ExitCode.FAILED
    line = err.value.line()
    assert f"pid {os.getpid()}@" in line and "run run-1" in line and "since" in line
    first.release()
    assert not (tmp_path / "lock").exists()
    with StateLock(tmp_path, "run-2"):
        assert json.loads((tmp_path / "lock").read_text())["run_id"] == "run-2"
    assert not (tmp_path / "lock").exists()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    pid = _dead_pid()
    assert not pid_alive(pid)
    ghost = StateLock(tmp_path, "ghost-run", pid=pid)
    ghost.acquire()  # as if that process had died holding it

    lock = StateLock(tmp_path, "run-2").acquire()
    assert lock.took_over is not None and lock.took_over.run_id == "ghost-run"
    holder = LockHolder.parse((tmp_path / "lock").read_text())
    assert holder is not None and holder.run_id == "run-2" and holder.pid == os.getpid()
    assert not (tmp_path / "lock.takeover").exists()
    lock.release()


def test_a_lock_from_another_host_is_never_taken_over(tmp_path: Path) -> None:
    StateLock(tmp_path, "far-run", host="elsewhere.example", pid=12345).acquire()
    with pytest.raises(LockedError) as err:
        StateLock(tmp_path, "run-2", alive=lambda pid: False).acquire()
    line = err.value.line()
    assert "12345@elsewhere.example" in line
    assert f"remove {tmp_path / 'lock'}" in line
    assert LockHolder.parse((tmp_path / "lock").read_text()).run_id == "far-run"  # type: ignore[union-attr]


def test_a_live_holder_is_not_taken_over(tmp_path: Path) -> None:
    StateLock(tmp_path, "live-run", pid=4242).acquire()
    with pytest.raises(LockedError) as err:
        StateLock(tmp_path, "run-2", alive=lambda pid: pid == 4242).acquire()
    assert "wait for it to finish" in err.value.line()
    assert LockHolder.parse((tmp_path / "lock").read_text()).run_id == "live-run"  # type: ignore[union-attr]


def test_release_never_removes_someone_elses_lock(tmp_path: Path) -> None:
    mine = StateLock(tmp_path, "run-1").acquire()
    (tmp_path / "lock").write_text(
        json.dumps({"pid": 1, "host": "h", "run_id": "other", "started": "now"})
    )
    mine.release()
    assert (tmp_path / "lock").exists()


def test_an_unreadable_lock_says_how_to_clear_it(tmp_path: Path) -> None:
    (tmp_path / "lock").write_text("")
    with pytest.raises(LockedError) as err:
        StateLock(tmp_path, "run-1").acquire()
    assert f"remove {tmp_path / 'lock'}" in err.value.line()


def test_parallel_writers_all_land_on_disk(tmp_path: Path) -> None:
    import threading

    journal = Journal(tmp_path, "r1")

    def write(n: int) -> None:
        for i in range(25):
            journal.before(ActionRef(f"a{n}-{i}", "enable_flow", "prod", f"f{n}"), {"i": i})

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    journal.close()
    records = read_run(tmp_path, "r1").records
    assert len(records) == 200
    assert len({r["action_id"] for r in records}) == 200
