"""The run journal (fsynced JSONL, no secrets, torn lines tolerated) and the state-dir lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pinmigrate import redact
from pinmigrate.errors import ExitCode, LockedError, UsageError
from pinmigrate.journal import (
    ActionRef,
    Journal,
    latest_run,
    list_runs,
    new_run_id,
    read_run,
)
from pinmigrate.lock import LockHolder, StateLock, pid_alive

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


SECRET = "pina_registered_secret_value"
BROKEN_SECRET = "pinr_first_half\npinr_second_half"
#: Broken into pieces too short to be masked alone: only its whole broken form is.
SHORT_PIECES = "k9x\nq7z"


def test_secrets_in_id_like_strings_and_fields_are_masked_in_records(tmp_path: Path) -> None:
    # The strings a fast path could wave through: no spaces, ids and states around them.
    redact.register(SECRET, BROKEN_SECRET, SHORT_PIECES)
    journal = Journal(tmp_path, "r1")
    journal.before(
        REF,
        {
            "whole": SECRET,
            "inside_an_id": f"flow-{SECRET}-0001",
            "in_an_action_id": f"enable_flow:prod:{SECRET}",
            "escaped_break": "pinr_first_half\\npinr_second_half",
            "joined_break": "pinr_first_half pinr_second_half",
            "a_piece": "id-pinr_second_half",
            "field": "x=1&access_token=unregistered_value_1",
            "callback": "/callback?state=s&code=unregistered_value_2",
            "short_pieces_escaped": "id-k9x\\nq7z-1",
            "bearer": "BeArEr unregistered_value_3",
            "colon_field": '{"refreshToken":"unregistered_value_4"}',
            "kelvin": "to\u212aen=unregistered_value_5",
            "plain": ["enabled", "0b5a3c1e-1234-5678-9abc-def012345678", "a=b:c"],
        },
    )
    journal.close()
    text = journal.path.read_text()
    for leaked in ("pina_registered", "pinr_first_half", "pinr_second_half", "unregistered_value"):
        assert leaked not in text, leaked
    before = read_run(tmp_path, "r1").records[0]["before"]
    assert before["short_pieces_escaped"] == "id-***-1"
    assert before["whole"] == "***"
    assert before["inside_an_id"] == "flow-***-0001"
    assert before["plain"] == ["enabled", "0b5a3c1e-1234-5678-9abc-def012345678", "a=b:c"]


def test_every_kind_of_value_is_scrubbed_as_json_would_hold_it(tmp_path: Path) -> None:
    from enum import StrEnum
    from types import MappingProxyType

    class Named(StrEnum):
        SECRET = SECRET

    redact.register(SECRET)
    journal = Journal(tmp_path, "r1")
    journal.before(
        REF,
        {
            "proxy": MappingProxyType({"token": "dropped_by_key_1", "ok": SECRET}),
            "tuple": ("a", SECRET, 3),
            "set": frozenset({"b", "a"}),
            "plain": [1, 2.5, True, None],
            "subclass": Named.SECRET,
        },
    )
    journal.close()
    text = journal.path.read_text()
    assert SECRET not in text and "dropped_by_key_1" not in text
    before = read_run(tmp_path, "r1").records[0]["before"]
    assert before["proxy"] == {"ok": "***"}
    assert before["tuple"] == ["a", "***", 3]
    assert before["set"] == ["a", "b"]
    assert before["plain"] == [1, 2.5, True, None]
    assert before["subclass"] == "***"


def _redacted_by_every_pattern(text: str) -> str:
    """What redact() gave before its fast path: every pattern run over the text."""
    if redact._pattern is not None:
        text = redact._pattern.sub(redact.MASK, text)
    text = redact._BEARER.sub(lambda m: f"{m.group(1)} {redact.MASK}", text)
    text = redact._CODE.sub(lambda m: m.group(1) + redact.MASK, text)
    return redact._FIELD.sub(lambda m: m.group(1) + redact.MASK, text)


_PIECES = [
    SECRET,
    SECRET[:9],
    "pinr_first_half",
    "pinr_second_half",
    "k9x",
    "q7z",
    "k9x\\nq7z",
    "k9x q7z",
    "\\n",
    "\n",
    " ",
    "\t",
    "=",
    ":",
    "&code=",
    "?CODE=",
    "code",
    "access_token=",
    "TOKEN",
    "Secret:",
    "password",
    "bearer ",
    "Basic ",
    "to\u212aen=",
    "\u017fecret=",
    "é",
    "flow-",
    "0b5a3c1e",
    '"',
]


@pytest.mark.parametrize(
    "registered",
    [
        (),
        (SECRET,),
        (SECRET, BROKEN_SECRET, SHORT_PIECES),
        # Past a few registered values the fast path searches with the pattern instead.
        (SECRET, BROKEN_SECRET, SHORT_PIECES, *(f"other_secret_{n:02d}" for n in range(12))),
    ],
    ids=["none", "one", "broken", "many"],
)
def test_the_fast_path_masks_exactly_what_every_pattern_masks(registered: tuple[str, ...]) -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    redact.register(*registered)

    @settings(max_examples=500, deadline=None)
    @given(st.lists(st.sampled_from(_PIECES) | st.text(max_size=3), max_size=6))
    def check(parts: list[str]) -> None:
        text = "".join(parts)
        assert redact.redact(text) == _redacted_by_every_pattern(text), repr(text)

    check()


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


def test_write_outcomes_tell_changed_from_refused_from_unsure(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "r1")
    journal.run_start(fingerprint=None, action_ids=[])
    done, refused, retried, unsure = (
        ActionRef(f"enable_flow:prod:{f}", "enable_flow", "prod", f) for f in "abcd"
    )
    journal.before(done, {"state": "disabled"})
    journal.after(done, {"state": "enabled"})
    journal.error(done, "reads back disabled")  # the confirming read: Adobe still took it
    journal.before(refused, {"state": "disabled"})
    journal.error(refused, "412: found enabled on re-read")
    journal.before(retried, {"state": "disabled"}, attempt=1)
    journal.error(retried, "412")
    journal.before(retried, {"state": "disabled"}, attempt=2)
    journal.after(retried, {"state": "enabled"})
    journal.before(unsure, {"state": "disabled"})
    journal.close()

    outcomes = read_run(tmp_path, "r1").write_outcomes()
    assert {k.split(":")[-1]: v[1] for k, v in outcomes.items()} == {
        "a": "done",
        "b": "error",
        "c": "done",
        "d": "interrupted",
    }
    assert outcomes[retried.action_id][0]["attempt"] == 2  # the last attempt's record


def _finished(
    tmp_path: Path, run_id: str, actions: list[str], *, failed: int = 0, **extra: object
) -> None:
    journal = Journal(tmp_path, run_id)
    journal.run_start(fingerprint=None, action_ids=actions, **extra)
    journal.run_end({"done": len(actions) - failed, "failed": failed, "skipped": 0})
    journal.close()


def test_a_rerun_after_a_partial_apply_carries_it_on(tmp_path: Path) -> None:
    from pinmigrate.journal import continued_run, run_chain

    a, b, c = "enable_flow:prod:n1", "disable_flow:prod:l1", "enable_flow:prod:n2"
    _finished(tmp_path, "20240101T000000000Z-aaaaaa", [a, b], failed=1)
    assert continued_run(tmp_path, [b]) == "20240101T000000000Z-aaaaaa"  # shares an action
    assert continued_run(tmp_path, [c]) is None  # another migration step
    # recorded by apply, or (older journals) worked out the same way
    _finished(tmp_path, "20240101T000001000Z-bbbbbb", [b], continues=["20240101T000000000Z-aaaaaa"])
    chain = run_chain(tmp_path, "20240101T000001000Z-bbbbbb")
    assert [r.run_id for r in chain] == ["20240101T000001000Z-bbbbbb", "20240101T000000000Z-aaaaaa"]
    _finished(tmp_path, "20240101T000002000Z-cccccc", [b])  # no record: the same rule
    assert continued_run(tmp_path, [b]) is None  # bbbbbb ended ok: the chain stops there
    assert [r.run_id for r in run_chain(tmp_path, "20240101T000002000Z-cccccc")] == [
        "20240101T000002000Z-cccccc"
    ]


def test_a_rollback_in_between_breaks_the_chain(tmp_path: Path) -> None:
    from pinmigrate.journal import continued_run, run_chain

    action = "enable_flow:prod:n1"
    _finished(tmp_path, "20240101T000000000Z-aaaaaa", [action], failed=1)
    undo = Journal(tmp_path, "20240101T000001000Z-bbbbbb", kind="rollback")
    undo.run_start(fingerprint=None, action_ids=[])
    undo.close()
    assert continued_run(tmp_path, [action]) is None
    _finished(tmp_path, "20240101T000002000Z-cccccc", [action])
    assert len(run_chain(tmp_path, "20240101T000002000Z-cccccc")) == 1


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
    pauses: list[float] = []
    with pytest.raises(LockedError) as err:
        StateLock(tmp_path, "run-1", sleep=pauses.append).acquire()
    assert pauses  # read again (without really sleeping) before giving up
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


# --- the lock under races ---------------------------------------------------------------------


def test_a_lock_being_created_is_never_seen_empty(tmp_path: Path) -> None:
    """A second apply that looks at the very moment the first writes its lock must be told
    who holds it, never that the lock is unreadable."""
    seen: dict[str, object] = {}

    class First(StateLock):
        def _content(self) -> str:
            if "second" not in seen:  # the other process looks while this one writes
                try:
                    seen["second"] = StateLock(
                        tmp_path, "run-2", pid=2222, alive=lambda pid: True
                    ).acquire()
                except LockedError as exc:
                    seen["second"] = exc
            return super()._content()

    try:
        first: object = First(tmp_path, "run-1", pid=1111, alive=lambda pid: True).acquire()
    except LockedError as exc:
        first = exc
    second = seen["second"]
    winners = [x for x in (first, second) if isinstance(x, StateLock)]
    [loser] = [x for x in (first, second) if isinstance(x, LockedError)]
    assert len(winners) == 1
    assert "unreadable" not in loser.line()
    holder = winners[0]
    assert isinstance(holder, StateLock)
    assert f"pid {holder.pid}@" in loser.line() and f"run {holder.run_id}" in loser.line()
    assert not [p for p in tmp_path.iterdir() if p.name != "lock"]  # no temp file left


def test_a_lock_read_empty_is_read_again_before_it_counts_as_unreadable(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    lock.write_text("")  # an older version: created, not yet written
    pauses: list[float] = []

    def meanwhile(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 2:
            lock.write_text(
                json.dumps({"pid": 4242, "host": "h", "run_id": "older", "started": "t"})
            )

    with pytest.raises(LockedError) as err:
        StateLock(tmp_path, "run-1", host="h", alive=lambda pid: True, sleep=meanwhile).acquire()
    assert "unreadable" not in err.value.line()
    assert "pid 4242@h, run older" in err.value.line()
    assert len(pauses) == 2 and sum(pauses) < 1


DEAD = 999_991


def _stale_lock(directory: Path, pid: int = DEAD, host: str = "h") -> None:
    (directory / "lock").write_text(
        json.dumps({"pid": pid, "host": host, "run_id": "dead-run", "started": "t"})
    )


def _race(tmp_path: Path, hold_flock: str, wait_flock: str) -> dict[str, object]:
    """Two takeovers of one stale lock: ``hold_flock`` pauses right after it got the flock
    until ``wait_flock`` is about to ask for it; each thread records what it got."""
    import fcntl
    import threading

    real = fcntl.flock
    inside, asking = threading.Event(), threading.Event()
    got: dict[str, object] = {}

    def flock(fd: int, op: int) -> None:
        name = threading.current_thread().name
        if name == wait_flock and op == fcntl.LOCK_EX:
            asking.set()
        real(fd, op)
        if name == hold_flock and op == fcntl.LOCK_EX:
            inside.set()
            assert asking.wait(5)

    def contender(name: str, pid: int) -> None:
        try:
            got[name] = StateLock(
                tmp_path, name, host="h", pid=pid, alive=lambda p: p != DEAD
            ).acquire()
        except LockedError as exc:
            got[name] = exc

    mp = pytest.MonkeyPatch()
    mp.setattr(fcntl, "flock", flock)
    try:
        holder = threading.Thread(target=contender, args=(hold_flock, 2002), name=hold_flock)
        other = threading.Thread(target=contender, args=(wait_flock, 1001), name=wait_flock)
        holder.start()
        assert inside.wait(5), "the first contender never took the flock"
        other.start()
        holder.join(10)
        other.join(10)
    finally:
        mp.undo()
    return got


def test_two_takeovers_of_one_stale_lock_have_exactly_one_winner(tmp_path: Path) -> None:
    _stale_lock(tmp_path)
    # A leftover guard from an older version's takeover that died must not matter.
    (tmp_path / "lock.takeover").write_text(
        json.dumps({"pid": 999_992, "host": "h", "run_id": "G", "started": "t"})
    )
    got = _race(tmp_path, hold_flock="C", wait_flock="B")
    assert isinstance(got["C"], StateLock) and got["C"].took_over is not None
    assert isinstance(got["B"], LockedError)
    assert "pid 2002@h, run C" in got["B"].line()
    assert LockHolder.parse((tmp_path / "lock").read_text()).run_id == "C"  # type: ignore[union-attr]


def test_a_takeover_that_opened_the_stale_lock_late_backs_off(tmp_path: Path) -> None:
    """B opened the stale file, then C replaced it: B's flock is on a file no longer in place."""
    import fcntl
    import threading

    _stale_lock(tmp_path)
    real = fcntl.flock
    opened, replaced = threading.Event(), threading.Event()
    got: dict[str, object] = {}

    def flock(fd: int, op: int) -> None:
        if threading.current_thread().name == "B" and op == fcntl.LOCK_EX:
            opened.set()
            assert replaced.wait(5)
        real(fd, op)

    def b() -> None:
        try:
            got["B"] = StateLock(
                tmp_path, "B", host="h", pid=1001, alive=lambda p: p != DEAD
            ).acquire()
        except LockedError as exc:
            got["B"] = exc

    mp = pytest.MonkeyPatch()
    mp.setattr(fcntl, "flock", flock)
    try:
        thread = threading.Thread(target=b, name="B")
        thread.start()
        assert opened.wait(5), "B never reached its takeover"
        got["C"] = StateLock(tmp_path, "C", host="h", pid=2002, alive=lambda p: p != DEAD).acquire()
        replaced.set()
        thread.join(10)
    finally:
        mp.undo()
    assert isinstance(got["C"], StateLock) and isinstance(got["B"], LockedError)
    assert "run C" in got["B"].line()
    assert LockHolder.parse((tmp_path / "lock").read_text()).run_id == "C"  # type: ignore[union-attr]


def _contend(directory: str, start: Any, finish: Any, answers: Any) -> None:
    start.wait(30)
    try:
        lock = StateLock(Path(directory), f"r{os.getpid()}").acquire()
    except LockedError as exc:
        answers.put(("lost", os.getpid(), exc.line()))
        finish.wait(30)
        return
    answers.put(("held", os.getpid(), ""))
    finish.wait(30)  # hold until every contender has tried
    lock.release()


@pytest.mark.parametrize("stale", [False, True], ids=["free", "stale"])
def test_processes_racing_for_the_lock_leave_exactly_one_holder(
    tmp_path: Path, stale: bool
) -> None:
    import multiprocessing
    import socket

    ctx = multiprocessing.get_context("fork")
    dead = _dead_pid()
    for round_ in range(12):
        directory = tmp_path / f"r{round_}"
        directory.mkdir()
        if stale:
            _stale_lock(directory, pid=dead, host=socket.gethostname())
        n = 3
        start, finish, answers = ctx.Barrier(n), ctx.Barrier(n), ctx.Queue()
        procs = [
            ctx.Process(target=_contend, args=(str(directory), start, finish, answers))
            for _ in range(n)
        ]
        for proc in procs:
            proc.start()
        results = [answers.get(timeout=30) for _ in range(n)]
        for proc in procs:
            proc.join(30)
        held = [pid for what, pid, _ in results if what == "held"]
        assert len(held) == 1, results
        for what, _, line in results:
            if what == "lost":
                assert f"pid {held[0]}@" in line and f"run r{held[0]}" in line, line
        assert not (directory / "lock").exists()
