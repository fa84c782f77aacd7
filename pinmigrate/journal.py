"""The run journal (``runs/RUN_ID.jsonl``): what every run wrote, and when.

Every write apply makes is bracketed by a ``before`` and an ``after`` record, each
flushed and fsynced before the process moves on, so a run killed at any instant leaves a
journal that says what may have happened. The journal never holds a token: values are
scrubbed by key and by the redaction registry before they reach the disk.

"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pinmigrate import redact
from pinmigrate.errors import PinmigrateError, UsageError
from pinmigrate.files import fsync_dir, make_private_dir, open_nofollow, read_nofollow

RUNS_DIR = "runs"
WriteOutcome = Literal["done", "error", "interrupted"]
#: Keys whose values are credentials; dropped from any record whatever the caller passed.
_SECRET_KEYS = frozenset(
    {
        "accesstoken",
        "refreshtoken",
        "access_token",
        "refresh_token",
        "token",
        "client_secret",
        "app_secret",
        "code",
        "password",
    }
)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_run_id(now: datetime | None = None) -> str:
    """A sortable run id: UTC timestamp to the millisecond plus a short random suffix."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    stamp = moment.strftime("%Y%m%dT%H%M%S") + f"{moment.microsecond // 1000:03d}Z"
    return f"{stamp}-{secrets.token_hex(3)}"


def runs_dir(state_dir: Path) -> Path:
    return Path(state_dir) / RUNS_DIR


#: Values with nothing to scrub, told by their exact type before the abstract-class checks
#: (``isinstance(value, Mapping)`` is the slow part of scrubbing a record of ids and states).
_PLAIN = frozenset({int, float, bool, type(None)})
#: One encoder for every record (``json.dumps`` with options builds one per call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=False, default=str)


def _scrub(value: Any) -> Any:
    """Drop credential-named keys at any depth; mask registered secrets in strings."""
    kind = type(value)
    if kind is str:
        return redact.redact(value)
    if kind in _PLAIN:
        return value
    if kind is dict or isinstance(value, Mapping):
        return {str(k): _scrub(v) for k, v in value.items() if str(k).lower() not in _SECRET_KEYS}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value) if isinstance(value, set | frozenset) else value
        return [_scrub(v) for v in items]
    if isinstance(value, str):
        return redact.redact(value)
    return value


class Journal:
    """One run's append-only JSONL journal. Thread-safe; the file is created on first record."""

    def __init__(self, state_dir: Path, run_id: str | None = None, *, kind: str = "apply") -> None:
        self.run_id = run_id or new_run_id()
        self.kind = kind
        self.path = runs_dir(state_dir) / f"{self.run_id}.jsonl"
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._handle: Any = None
        self._written = 0
        self._synced = 0

    def record(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one record; it is on disk (fsynced) when this returns."""
        entry: dict[str, Any] = {"ts": now_iso(), "run_id": self.run_id, "event": event}
        entry.update(_scrub({k: v for k, v in fields.items() if v is not None}))
        line = _ENCODER.encode(entry)
        with self._lock:
            if self._handle is None:
                make_private_dir(self.path.parent)
                fd = open_nofollow(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                self._handle = os.fdopen(fd, "a", encoding="utf-8")
                fsync_dir(self.path.parent)
            self._handle.write(line + "\n")
            self._handle.flush()
            self._written += 1
            mine = self._written
            fileno = self._handle.fileno()
        # Group commit: threads that wrote while another fsync ran share the next one, so
        # parallel writers are not serialised behind one fsync each.
        with self._sync_lock:
            if self._synced < mine:
                with self._lock:
                    upto = self._written
                os.fsync(fileno)
                self._synced = upto
        return entry

    def run_start(self, *, fingerprint: str | None, action_ids: list[str], **extra: Any) -> None:
        self.record(
            "run_start",
            kind=self.kind,
            pid=os.getpid(),
            host=socket.gethostname(),
            fingerprint=fingerprint,
            action_ids=action_ids,
            **extra,
        )

    def before(self, action: ActionRef, before: Mapping[str, Any], **extra: Any) -> None:
        self.record("before", **action.fields(), before=dict(before), **extra)

    def after(self, action: ActionRef, after: Mapping[str, Any], **extra: Any) -> None:
        self.record("after", **action.fields(), after=dict(after), **extra)

    def error(self, action: ActionRef, message: str) -> None:
        self.record("error", **action.fields(), error=message)

    def observed(self, action: ActionRef, seen: Mapping[str, Any]) -> None:
        """A change someone else made (a person's reconnect in Adobe), seen by a re-read.
        Not a write of this run: rollback has nothing to undo for it."""
        self.record("observed", **action.fields(), seen=dict(seen))

    def run_end(self, summary: Mapping[str, Any]) -> None:
        self.record("run_end", summary=dict(summary))

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None

    @property
    def started(self) -> bool:
        return self._handle is not None or self.path.exists()


@dataclass(frozen=True)
class ActionRef:
    """What a journal record says about the action it belongs to."""

    action_id: str
    kind: str
    sandbox: str
    target_id: str
    target_name: str = ""

    def fields(self) -> dict[str, str]:
        fields = {
            "action_id": self.action_id,
            "kind": self.kind,
            "sandbox": self.sandbox,
            "target_id": self.target_id,
        }
        if self.target_name:
            fields["target_name"] = self.target_name
        return fields


@dataclass(frozen=True)
class Write:
    """A write as its journal tells it: the action, what became of it, and the pair it
    belongs to (flow switches record their legacy flow or twin)."""

    ref: ActionRef
    outcome: WriteOutcome
    #: The flow state the write found (``before.state``); None for other writes.
    state_before: str | None = None
    legacy_flow_id: str | None = None
    twin_flow_id: str | None = None

    @classmethod
    def of(cls, record: Mapping[str, Any], outcome: WriteOutcome) -> Write:
        def text(key: str, source: Mapping[str, Any] = record) -> str | None:
            value = source.get(key)
            return str(value) if value not in (None, "") else None

        before = record.get("before")
        return cls(
            ref=ActionRef(
                action_id=text("action_id") or "",
                kind=text("kind") or "",
                sandbox=text("sandbox") or "",
                target_id=text("target_id") or "",
                target_name=text("target_name") or "",
            ),
            outcome=outcome,
            state_before=text("state", before) if isinstance(before, dict) else None,
            legacy_flow_id=text("legacy_flow_id"),
            twin_flow_id=text("twin_flow_id"),
        )


@dataclass(frozen=True)
class RunRecord:
    """A journal read back: its records, and what kind of run it was."""

    run_id: str
    path: Path
    records: tuple[dict[str, Any], ...]

    @property
    def start(self) -> dict[str, Any]:
        return next((r for r in self.records if r.get("event") == "run_start"), {})

    @property
    def kind(self) -> str:
        return str(self.start.get("kind", "apply"))

    @property
    def finished(self) -> bool:
        return any(r.get("event") == "run_end" for r in self.records)

    @property
    def writes(self) -> list[dict[str, Any]]:
        """The ``before`` records: every write this run started, whatever became of it.
        What the run actually changed is :meth:`write_outcomes`."""
        return [r for r in self.records if r.get("event") == "before"]

    @property
    def end(self) -> dict[str, Any]:
        return next((r for r in self.records if r.get("event") == "run_end"), {})

    @property
    def action_ids(self) -> list[str]:
        """The actions the run set out to carry out (its plan's, as run_start lists them)."""
        ids = self.start.get("action_ids")
        return [str(i) for i in ids] if isinstance(ids, list) else []

    @property
    def ended_ok(self) -> bool:
        """It finished, and every action ended done or already done."""
        summary = self.end.get("summary")
        if not self.finished or not isinstance(summary, dict):
            return False
        return not summary.get("failed") and not summary.get("skipped")

    def write_outcomes(self) -> dict[str, tuple[dict[str, Any], WriteOutcome]]:
        """Per action: its last ``before`` record and what became of the write.

        ``done``: an ``after`` record, so Adobe accepted it and the run changed the object
        (a later ``error`` from the confirming read does not undo that). ``error``: every
        attempt ended in an error, which includes a 412 whose re-read found the goal already
        reached by someone else: the run did not change the object. ``interrupted``: the
        last attempt has neither, so it may or may not have happened.
        """
        last_before: dict[str, dict[str, Any]] = {}
        open_attempt: dict[str, bool] = {}
        done: set[str] = set()
        for record in self.records:
            action = str(record.get("action_id", ""))
            event = record.get("event")
            if event == "before":
                last_before[action] = record
                open_attempt[action] = True
            elif event == "after":
                done.add(action)
                open_attempt[action] = False
            elif event == "error":
                open_attempt[action] = False
        outcomes: dict[str, tuple[dict[str, Any], WriteOutcome]] = {}
        for action, before in last_before.items():
            if action in done:
                outcomes[action] = (before, "done")
            elif open_attempt.get(action):
                outcomes[action] = (before, "interrupted")
            else:
                outcomes[action] = (before, "error")
        return outcomes

    def typed_writes(self) -> list[Write]:
        """:meth:`write_outcomes` as typed records, in journal order."""
        return [Write.of(before, outcome) for before, outcome in self.write_outcomes().values()]

    def planned(self) -> list[ActionRef]:
        """The actions the run set out to carry out, as their ids say (``KIND:SANDBOX:ID``)."""
        refs = []
        for ident in self.action_ids:
            kind, _, rest = ident.partition(":")
            sandbox, _, target = rest.partition(":")
            if kind and target:
                refs.append(ActionRef(ident, kind, sandbox, target))
        return refs

    def after_of(self, action_id: str) -> dict[str, Any] | None:
        return next(
            (
                r
                for r in self.records
                if r.get("event") == "after" and r.get("action_id") == action_id
            ),
            None,
        )

    def interrupted_writes(self) -> list[dict[str, Any]]:
        """Writes whose last ``before`` has no ``after`` or ``error`` after it: they may or
        may not have happened. An earlier attempt's error (a 412, then a retry) settles
        nothing about the attempt that followed it."""
        last: dict[Any, dict[str, Any] | None] = {}
        for record in self.records:
            event = record.get("event")
            if event == "before":
                last[record.get("action_id")] = record
            elif event in ("after", "error"):
                last[record.get("action_id")] = None
        return [r for r in last.values() if r is not None]


def read_run(state_dir: Path, run_id: str) -> RunRecord:
    """Read one journal. A torn last line (the process was killed mid-write) is ignored."""
    if not run_id or "/" in run_id or run_id.startswith("."):
        raise UsageError(f"{run_id!r} is not a run id")
    path = runs_dir(state_dir) / f"{run_id}.jsonl"
    try:
        text = read_nofollow(path).decode("utf-8")
    except FileNotFoundError:
        raise UsageError(
            f"no run {run_id} in {runs_dir(state_dir)}",
            hint="list runs with `ls` on that directory, or omit RUN_ID for the latest",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PinmigrateError(f"cannot read journal {path}: {exc}") from None
    records: list[dict[str, Any]] = []
    lines = [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    for position, (number, line) in enumerate(lines):
        try:
            entry = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            if position == len(lines) - 1:
                continue
            # Only a kill can tear a line, and only the last one: skipping a damaged line
            # in the middle could hide a write from rollback and from the resume check.
            raise PinmigrateError(
                f"journal {path} is damaged at line {number} (not a JSON record)",
                hint="restore the file, or move it out of the runs directory to ignore that run",
            ) from None
        if isinstance(entry, dict):
            records.append(entry)
    return RunRecord(run_id, path, tuple(records))


def list_runs(state_dir: Path) -> list[str]:
    """Run ids in the state dir, oldest first (run ids sort by time)."""
    directory = runs_dir(state_dir)
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.jsonl"))


def latest_run(state_dir: Path, *, kind: str = "apply", with_writes: bool = False) -> str | None:
    """The newest run of ``kind`` (optionally only one that started a write)."""
    for run_id in reversed(list_runs(state_dir)):
        record = read_run(state_dir, run_id)
        if record.kind != kind:
            continue
        if with_writes and not record.writes:
            continue
        return run_id
    return None


def rolled_back_by(state_dir: Path, run_id: str) -> str | None:
    """The newest rollback run that undid ``run_id`` (it named it, or covered it as a run the
    named one carried on) and finished with every action done or already done; None when
    no rollback has, or the last one was interrupted or failed in part."""
    for later in reversed([r for r in list_runs(state_dir) if r > run_id]):
        record = read_run(state_dir, later)
        if record.kind != "rollback":
            continue
        covers = record.start.get("covers")
        undone = [record.start.get("rollback_of"), *(covers if isinstance(covers, list) else [])]
        if run_id in undone and record.ended_ok:
            return later
    return None


def carries_on(previous: RunRecord, action_ids: Iterable[str]) -> bool:
    """Whether a run of these actions carries on ``previous``: that run did not end cleanly
    (killed, or an action failed or was skipped) and the two share an action. Action ids are
    stable across replans, so a rerun of the same plan and a fresh plan made after a partial
    apply both count."""
    if previous.kind != "apply" or previous.ended_ok:
        return False
    return bool(set(previous.action_ids) & set(action_ids))


def continued_run(state_dir: Path, action_ids: Iterable[str]) -> str | None:
    """The apply run a new run of these actions carries on, if any (see :func:`carries_on`):
    the newest run in the state dir, when it is an apply run. A rollback since breaks the
    chain: what it undid is not carried on."""
    runs = list_runs(state_dir)
    if not runs:
        return None
    previous = read_run(state_dir, runs[-1])
    return previous.run_id if carries_on(previous, action_ids) else None


def run_chain(state_dir: Path, run_id: str) -> list[RunRecord]:
    """A run and the earlier apply runs it carried on, transitively; newest first.

    A run_start that records ``continues`` (apply does) is followed as recorded; for older
    journals the rule of :func:`continued_run` is applied to the run just before.
    """
    order = list_runs(state_dir)
    chain = [read_run(state_dir, run_id)]
    seen = {run_id}
    while True:
        record = chain[-1]
        start = record.start
        links: list[str] = []
        if isinstance(start.get("continues"), list):
            links = [str(i) for i in start["continues"]]
        elif record.run_id in order and order.index(record.run_id) > 0:
            before = read_run(state_dir, order[order.index(record.run_id) - 1])
            if carries_on(before, record.action_ids):
                links = [before.run_id]
        # ``resumes`` (the killed run before this one) is not followed by itself: a killed
        # run of an unrelated plan is no part of this migration step.
        nexts = [i for i in dict.fromkeys(links) if i not in seen and i in order]
        if not nexts:
            return chain
        # Only one predecessor is ever recorded; more would be a hand-edited journal.
        seen.add(nexts[0])
        previous = read_run(state_dir, nexts[0])
        if previous.kind != "apply":
            return chain
        chain.append(previous)
