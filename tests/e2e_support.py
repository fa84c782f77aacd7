"""Shared pieces of the end-to-end fault and crash suites.

What the emulator's world looks like by name (so two emulators can be compared), a count of
the writes the emulator really applied (kept on the server side: a request log misses the
answer that went to a killed process), journal checks, and the real CLI in a subprocess that
can be frozen right after a chosen journal record.

Run as a script, this module is that CLI: ``python e2e_support.py apply PLAN ...`` behaves as
``python -m pinmigrate apply PLAN ...``, except that with ``E2E_STOP_AFTER=KIND:N`` set the
process stops itself (SIGSTOP) right after the N-th ``before`` record of KIND is fsynced, so
a test can kill it before the request of that write is sent.
"""

from __future__ import annotations

import contextlib
import os
import pty
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STOP_ENV = "E2E_STOP_AFTER"
#: What the stopping process writes to stderr first, with the action id of the record.
STOPPED_MARK = "e2e: stopped after the before record of"
#: Reconnect margin of the default settings: credentials valid for longer count as "valid".
MARGIN_SECONDS = 7 * 86400
#: The longest wait for a killed process to be reaped, or for a held write to be released.
PROCESS_TIMEOUT = 60.0


# --- the world by name ------------------------------------------------------------------------


def card_of(obj: Mapping[str, Any]) -> str:
    """``legacy``, ``new`` or ``other`` for a flow or a connection of the emulator."""
    from pinmigrate.emulator import LEGACY_SPEC_ID, NEW_SPEC_ID

    targets = (obj.get("inheritedAttributes") or {}).get("targetConnections") or []
    spec = (targets[0]["connectionSpec"] if targets else obj.get("connectionSpec") or {}).get("id")
    return {LEGACY_SPEC_ID: "legacy", NEW_SPEC_ID: "new"}.get(str(spec), "other")


def audience_ids(flow: Mapping[str, Any]) -> list[str]:
    """Every audience id mapped to a flow, in order, duplicates kept."""
    found: list[str] = []
    for transformation in flow.get("transformations") or []:
        selectors = ((transformation.get("params") or {}).get("segmentSelectors") or {}).get(
            "selectors"
        ) or []
        found.extend(str(s["value"]["id"]) for s in selectors)
    return found


def credentials(account: Mapping[str, Any], now: float) -> str:
    """``missing``, ``expired``, ``expiring`` (within the margin) or ``valid``."""
    from datetime import datetime

    expires = ((account.get("auth") or {}).get("params") or {}).get("expiresAt")
    if not expires:
        return "missing"
    left = datetime.fromisoformat(str(expires).replace("Z", "+00:00")).timestamp() - now
    if left <= 0:
        return "expired"
    return "valid" if left > MARGIN_SECONDS else "expiring"


def end_state(emulator: Any) -> dict[str, Any]:
    """Flow states and audience sets, account credentials and their owner, all by name.

    Ids are deterministic per scenario, but names are what a person compares; several flows
    may share a name (the ambiguous twins), so each key holds a sorted list.
    """
    dump = emulator.state.dump()
    now = float(dump["clock"])
    owners = dump["pinterest"]["credential_owners"]
    flows: dict[str, list[Any]] = {}
    accounts: dict[str, list[Any]] = {}
    for sandbox, kinds in dump["objects"].items():
        for flow in kinds["flows"]:
            key = f"{sandbox}/{card_of(flow)}/{flow['name']}"
            flows.setdefault(key, []).append([flow["state"], sorted(set(audience_ids(flow)))])
        for account in kinds["connections"]:
            if card_of(account) != "new":
                continue
            key = f"{sandbox}/{account['name']}"
            owner = owners.get(account["id"])
            accounts.setdefault(key, []).append([credentials(account, now), owner])
    for value in (*flows.values(), *accounts.values()):
        value.sort()
    return {"flows": flows, "accounts": accounts}


def duplicated_audiences(emulator: Any) -> dict[str, list[str]]:
    """Flows (by id) whose audience list names an audience more than once."""
    dump = emulator.state.dump()
    found = {}
    for kinds in dump["objects"].values():
        for flow in kinds["flows"]:
            ids = audience_ids(flow)
            twice = sorted(a for a, n in Counter(ids).items() if n > 1)
            if twice:
                found[flow["id"]] = twice
    return found


def flow_named(emulator: Any, sandbox: str, card: str, name: str) -> dict[str, Any]:
    [flow] = emulator.state.find("flows", name=name, sandbox=sandbox, card=card)
    return dict(flow)


# --- what the emulator applied ----------------------------------------------------------------


@dataclass
class Gate:
    """Decides, per arriving write, whether to apply it now, and may hold it on the way.

    ``hold(n, op)`` is asked for the n-th write to arrive (1-based); it answers None to let it
    through, ``"apply-then-hold"`` (apply, then keep the client waiting for its answer) or
    ``"hold-then-drop"`` (keep the client waiting, then refuse it: never applied). A held
    write waits until :meth:`release`; :attr:`held` is set when the first one arrives.
    """

    hold: Callable[[int, tuple[str, ...]], str | None]
    held: threading.Event = field(default_factory=threading.Event)
    #: the writes held so far, in arrival order
    held_keys: list[tuple[str, ...]] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()


class AppliedWrites:
    """Counts the Flow Service writes the emulator applied, per (kind, object id, detail).

    Hooks the state's two write entry points (as tests/test_apply_cli.py does), so a write
    counts once it changed the world, whether or not its answer reached the client.
    """

    def __init__(self, emulator: Any, gate: Gate | None = None) -> None:
        self.counts: Counter[tuple[str, ...]] = Counter()
        self.arrivals = 0
        self.gate = gate
        self._lock = threading.Lock()
        state = emulator.state
        self._originals = (state.flow_action, state.patch_object)
        state.flow_action = self._wrap(state.flow_action, "action")
        state.patch_object = self._wrap(state.patch_object, "patch")
        self._state = state

    def _wrap(self, original: Callable[..., Any], name: str) -> Callable[..., Any]:
        def hooked(caller: Any, *args: Any, **kwargs: Any) -> Any:
            # flow_action(caller, id, op, if_match); patch_object(caller, kind, id, ops, if_match)
            key = (
                (name, str(args[0]), str(args[1]))
                if name == "action"
                else (name, *map(str, args[:2]))
            )
            with self._lock:
                self.arrivals += 1
                decision = self.gate.hold(self.arrivals, key) if self.gate else None
                if decision is not None:
                    self.gate.held_keys.append(key)  # type: ignore[union-attr]
            if decision == "hold-then-drop":
                self.gate.held.set()  # type: ignore[union-attr]
                self.gate.released.wait(PROCESS_TIMEOUT)  # type: ignore[union-attr]
                raise ConnectionAbortedError("held until the client was gone; never applied")
            answer = original(caller, *args, **kwargs)
            with self._lock:
                self.counts[key] += 1
            if decision == "apply-then-hold":
                self.gate.held.set()  # type: ignore[union-attr]
                self.gate.released.wait(PROCESS_TIMEOUT)  # type: ignore[union-attr]
            return answer

        return hooked

    def restore(self) -> None:
        self._state.flow_action, self._state.patch_object = self._originals

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def twice(self) -> dict[tuple[str, ...], int]:
        return {k: n for k, n in self.counts.items() if n > 1}


# --- journals ---------------------------------------------------------------------------------


def journal_problems(records: Sequence[Mapping[str, Any]], *, finished: bool = True) -> list[str]:
    """What is wrong with one run's records: every ``before`` must be closed by an ``after``
    or an ``error`` of the same action before that action's next ``before``; a finished run
    ends with ``run_end`` and leaves nothing open. A killed run may leave writes open."""
    problems: list[str] = []
    if not records or records[0].get("event") != "run_start":
        problems.append("the journal does not start with run_start")
    run_ids = {r.get("run_id") for r in records}
    if len(run_ids) != 1:
        problems.append(f"records of several runs in one journal: {sorted(map(str, run_ids))}")
    pending: dict[str, dict[str, Any]] = {}
    for index, record in enumerate(records):
        event = record.get("event")
        action = str(record.get("action_id", ""))
        if event == "before":
            if action in pending:
                problems.append(f"record {index}: a second before of {action} with none closed")
            pending[action] = dict(record)
        elif event in ("after", "error"):
            if action not in pending and event == "after":
                problems.append(f"record {index}: an after of {action} without its before")
            pending.pop(action, None)
        elif event == "run_end" and index != len(records) - 1:
            problems.append("run_end is not the last record")
    has_end = any(r.get("event") == "run_end" for r in records)
    if finished:
        if not has_end:
            problems.append("no run_end record")
        if pending:
            problems.append(f"writes left open: {sorted(pending)}")
    elif has_end:
        problems.append("a killed run wrote run_end")
    return problems


def open_writes(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Action ids whose last ``before`` has no ``after`` or ``error`` after it."""
    state: dict[str, bool] = {}
    for record in records:
        if record.get("event") == "before":
            state[str(record["action_id"])] = True
        elif record.get("event") in ("after", "error"):
            state[str(record.get("action_id"))] = False
    return sorted(a for a, is_open in state.items() if is_open)


# --- the api reconnect path: a person who signs in to Pinterest for each account --------------

#: The experimental reconnect path, which writes a fresh Pinterest grant into each account.
API_PATH = {"PINMIGRATE_MIGRATION_RECONNECT_VIA": "api"}
#: A BROWSER command that follows the address to its end, like a person choosing Allow.
BROWSER_SCRIPT = """\
#!{python}
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=30).read()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def api_path_env(emulator: Any, env: Mapping[str, str]) -> dict[str, str]:
    """``env`` on the api reconnect path, the emulator's consent page approving at once and
    pinmigrate's loopback listener on a free port (registered on the emulator's app)."""
    emulator.configure(auto_approve=True)
    redirect = emulator.register_redirect_uri(f"http://localhost:{free_port()}/")
    return {**env, **API_PATH, "PINMIGRATE_PINTEREST_REDIRECT_URI": redirect}


def follow(url: str) -> None:
    """What a browser does with a sign-in address (the emulator approves, then redirects)."""
    # A failure shows in the listener's answer to pinmigrate, and so in the test.
    with contextlib.suppress(OSError):
        urllib.request.urlopen(url, timeout=30).read()


def person_at_terminal(monkeypatch: Any) -> list[str]:
    """The in-process CLI with a person at the terminal who signs in whenever asked: stdin is
    a terminal and a stand-in browser follows each address. Returns the addresses opened."""
    from pinmigrate.app import App

    opened: list[str] = []

    def open_url(url: str) -> bool:
        opened.append(url)
        threading.Thread(target=follow, args=(url,), daemon=True).start()
        return True

    monkeypatch.setattr(App, "stdin_is_tty", lambda self: True)
    monkeypatch.setattr("pinmigrate.oauth.resolvers._open_browser", open_url)
    return opened


def browser_command(directory: Path) -> str:
    """A BROWSER value for a CLI in a subprocess: follows the address like :func:`follow`."""
    script = directory / "browser.py"
    script.write_text(BROWSER_SCRIPT.format(python=sys.executable))
    script.chmod(0o755)
    return str(script)


# --- the CLI in a subprocess ------------------------------------------------------------------


def subprocess_env(env: Mapping[str, str], **extra: str) -> dict[str, str]:
    """The test's settings, without any PINMIGRATE_* of the person running the tests."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PINMIGRATE_", "E2E_"))}
    return {**base, **env, **extra}


def spawn(
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    stop_after: str | None = None,
    terminal: bool = False,
) -> Any:
    """``pinmigrate ARGS`` in a new process (this module as its entry point when it must
    freeze itself at a journal record, ``python -m pinmigrate`` otherwise). ``terminal``:
    stdin is a terminal (a pty), as when a person runs it; else it is /dev/null."""
    extra = {STOP_ENV: stop_after} if stop_after else {}
    entry = [str(Path(__file__).resolve())] if stop_after else ["-m", "pinmigrate"]
    main, side = pty.openpty() if terminal else (None, None)
    try:
        proc = subprocess.Popen(
            [sys.executable, *entry, *args],
            env=subprocess_env(env, **extra),
            stdin=subprocess.DEVNULL if side is None else side,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    finally:
        if side is not None:
            os.close(side)
    if main is not None:
        # The terminal stays open as long as the process runs, as a person's would.
        threading.Thread(target=_close_when_done, args=(proc, main), daemon=True).start()
    return proc


def _close_when_done(proc: Any, fd: int) -> None:
    proc.wait()
    os.close(fd)


def is_stopped(pid: int) -> bool:
    """True when the process is stopped by a signal (Linux: state T in /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll until ``condition()`` holds; fail the test naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def kill(proc: Any) -> tuple[str, str]:
    """SIGKILL the process (if still there) and reap it; its stdout and stderr."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=PROCESS_TIMEOUT)
    return out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def _stop_after_record() -> None:
    """Make ``Journal.before`` stop this process after the N-th ``before`` of KIND."""
    spec = os.environ.get(STOP_ENV, "")
    kind, _, nth = spec.partition(":")
    wanted = int(nth or "1")
    from pinmigrate.journal import ActionRef, Journal

    original = Journal.before
    seen = Counter[str]()
    lock = threading.Lock()

    def before(self: Journal, action: ActionRef, before: Mapping[str, Any], **extra: Any) -> None:
        original(self, action, before, **extra)  # flushed and fsynced when it returns
        with lock:
            seen[action.kind] += 1
            now = action.kind == kind and seen[action.kind] == wanted
        if now:
            sys.stderr.write(f"{STOPPED_MARK} {action.action_id}\n")
            sys.stderr.flush()
            # Aimed at this thread: it stops on its way out of the call, before it can send
            # anything (a process-wide kill() lets it run on until another thread stops all).
            signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)

    Journal.before = before  # type: ignore[method-assign]


if __name__ == "__main__":
    if os.environ.get(STOP_ENV):
        _stop_after_record()
    from pinmigrate.cli import main

    main(sys.argv[1:])
