"""Replay a command's requests from the emulator's request log with a do-nothing client.

The replay is the baseline of every wall-time ratio in ``bench/``: the same requests, in the
same order and with the same parallelism, sent again to the same emulator in the same run by
a client that does nothing else (raw ``http.client``: no JSON decoding beyond the IMS token,
no journal, no retries). How it is built from the log (``schedule``):

- **Writes** (Flow Service POST, PATCH, PUT, DELETE) are sent in the order they were
  answered, over ``writers`` connections (the command's ``--concurrency``): a connection
  takes the next write as soon as its previous answer arrived.
- **Everything else** is cut into **chains**: a list page that carries a ``continuationToken``
  follows the page before it with the same sandbox, path and other query parameters on the
  same connection; any other request (the IMS token, a first page, a single-object read)
  starts a chain of its own. Chains run over as many connections as the command had chains in
  flight at once (``readers``), taken in the order they started.
- **Dependencies:** the log stamps each request when its answer was sent; a request was sent
  about one latency before that. A chain, or a write, waits in the replay for every chain
  that had been answered in full before it was sent in the command's run; a chain also waits
  for every write answered before it was sent. That keeps every dependency the command could
  have had (a confirming read after its wave's writes, the next wave's writes after that
  read, target connections after the flows that name them) and nothing else: a command that
  overlaps a wave's confirming read with the next writes gets a replay that overlaps them too.

Writes are replayed after a reset of the emulator, so they meet the state they met in the
command's run; reads see what the writes before them made. ``ReplayResult`` says how many
requests were sent and which answers differ from the logged ones, so that a replay that did
not do the same work is reported, not trusted.
"""

from __future__ import annotations

import bisect
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.client import HTTPConnection, HTTPException, RemoteDisconnected
from typing import Any

WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")
TOKEN_PATH = "/ims/token/v3"
#: The query parameter that makes a list page the continuation of the page before it.
CONTINUATION = "continuationToken"

Entry = Mapping[str, Any]


def is_write(entry: Entry) -> bool:
    """A Flow Service write: what apply's ``--concurrency`` spreads over its connections."""
    return entry["method"] in WRITE_METHODS and entry["path"] != TOKEN_PATH


def _chain_key(entry: Entry) -> tuple[str, str, str]:
    query = {k: v for k, v in (entry.get("query") or {}).items() if k != CONTINUATION}
    return (entry.get("sandbox") or "", entry["path"], json.dumps(query, sort_keys=True))


@dataclass
class Chain:
    """Requests sent one after another on one connection, each after the previous answer."""

    entries: list[Entry]
    start: float  # when its first request was sent (estimated: answer time - latency)

    @property
    def end(self) -> float:
        return float(self.entries[-1]["ts"])


@dataclass
class Schedule:
    """What the replay sends, on how many connections, and what waits for what.

    ``chains_by_end`` orders chains by the time their last answer came; a wait for "the first
    k chains" means those k in that order. Writes are waited for in the order of ``writes``.
    """

    chains: list[Chain]
    writes: list[Entry]
    readers: int
    chains_by_end: list[int] = field(default_factory=list)
    chain_needs_chains: list[int] = field(default_factory=list)
    chain_needs_writes: list[int] = field(default_factory=list)
    write_needs_chains: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.writes) + sum(len(c.entries) for c in self.chains)


def schedule(log: Sequence[Entry], latency: float) -> Schedule:
    """Cut a request log into chains and writes, with what each waits for (pure)."""
    if latency <= 0:
        # Without a latency the log cannot tell what was sent after what.
        raise ValueError("the replay needs a run with a latency above zero")
    ordered = sorted(log, key=lambda e: e["ts"])
    chains: list[Chain] = []
    open_chains: dict[tuple[str, str, str], Chain] = {}
    writes: list[Entry] = []
    for entry in ordered:
        if is_write(entry):
            writes.append(entry)
            continue
        key = _chain_key(entry)
        previous = open_chains.get(key)
        if CONTINUATION in (entry.get("query") or {}) and previous is not None:
            previous.entries.append(entry)
            continue
        chain = Chain([entry], float(entry["ts"]) - latency)
        chains.append(chain)
        open_chains[key] = chain
    chains.sort(key=lambda c: c.start)
    by_end = sorted(range(len(chains)), key=lambda i: chains[i].end)
    ends = [chains[i].end for i in by_end]
    write_answers = [float(w["ts"]) for w in writes]
    return Schedule(
        chains=chains,
        writes=writes,
        readers=_most_in_flight(chains),
        chains_by_end=by_end,
        # A chain waits for chains answered in full by the time it was sent (never itself).
        chain_needs_chains=[bisect.bisect_right(ends, c.start) for c in chains],
        chain_needs_writes=[bisect.bisect_right(write_answers, c.start) for c in chains],
        write_needs_chains=[bisect.bisect_right(ends, float(w["ts"]) - latency) for w in writes],
    )


def _most_in_flight(chains: Sequence[Chain]) -> int:
    """The most chains that were between their first request and their last answer at once."""
    events = sorted([(c.start, 1) for c in chains] + [(c.end, -1) for c in chains])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return max(most, 1) if chains else 0


class _Done:
    """Which items are done; waits until the first k (in a fixed order) all are."""

    def __init__(self, order: Sequence[int]) -> None:
        self._rank = {item: rank for rank, item in enumerate(order)}
        self._finished = [False] * len(order)
        self._prefix = 0
        self._lock = threading.Lock()
        self._waiting: list[tuple[int, threading.Event]] = []

    def finish(self, item: int) -> None:
        with self._lock:
            self._finished[self._rank[item]] = True
            while self._prefix < len(self._finished) and self._finished[self._prefix]:
                self._prefix += 1
            ready = [event for needed, event in self._waiting if needed <= self._prefix]
            self._waiting = [(n, e) for n, e in self._waiting if n > self._prefix]
        for event in ready:
            event.set()

    def wait_for(self, count: int) -> None:
        with self._lock:
            if count <= self._prefix:
                return
            event = threading.Event()
            self._waiting.append((count, event))
        event.wait()


@dataclass
class ReplayResult:
    seconds: float
    sent: int
    differences: list[str]  # "METHOD PATH: logged STATUS, replayed STATUS", one per request

    def honesty_line(self, logged: int) -> str:
        """Empty if the replay sent as many requests as the log holds and got the same answers."""
        problems = []
        if self.sent != logged:
            problems.append(f"sent {self.sent} requests, the log holds {logged}")
        if self.differences:
            problems.append(
                f"{len(self.differences)} answers differ from the logged ones "
                f"(first: {self.differences[0]})"
            )
        return "replay is not the same work: " + "; ".join(problems) if problems else ""


def replay(
    url: str,
    env: Mapping[str, str],
    plan: Schedule,
    *,
    writers: int,
    body_for: Callable[[Entry], str | None] = lambda entry: None,
) -> ReplayResult:
    """Send the schedule's requests to the emulator at ``url``; how long it took, what differed."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port
    form = urllib.parse.urlencode(
        {
            "grant_type": "client_credentials",
            "client_id": env["PINMIGRATE_ADOBE_CLIENT_ID"],
            "client_secret": env["PINMIGRATE_ADOBE_CLIENT_SECRET"],
            "scope": "openid,AdobeID,read_organizations",
        }
    )
    token = [""]
    lock = threading.Lock()
    differences: list[str] = []
    sent = [0]

    def exchange(
        conn: HTTPConnection, method: str, target: str, body: str | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        # A kept-alive connection the emulator closed while it sat idle (its keep-alive
        # timeout) fails on first use without the request having been served: send it again
        # on a fresh connection, once, as HTTP clients do.
        for attempt in (1, 2):
            try:
                conn.request(method, target, body=body, headers=headers)
                answer = conn.getresponse()
                return answer.status, answer.read()
            except (ConnectionResetError, BrokenPipeError, RemoteDisconnected):
                conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def send(conn: HTTPConnection, entry: Entry) -> None:
        status: int | str
        try:
            if entry["path"] == TOKEN_PATH:
                headers = {"Content-Type": "application/x-www-form-urlencoded"}
                status, raw = exchange(conn, "POST", TOKEN_PATH, form, headers)
                if status == 200:
                    token[0] = json.loads(raw)["access_token"]
            else:
                headers = {
                    "Authorization": f"Bearer {token[0]}",
                    "x-api-key": env["PINMIGRATE_ADOBE_CLIENT_ID"],
                    "x-gw-ims-org-id": env["PINMIGRATE_ADOBE_ORG_ID"],
                    "x-sandbox-name": entry.get("sandbox") or "prod",
                    "Accept": "application/json",
                }
                body = None
                if is_write(entry):
                    headers.update({"Content-Type": "application/json", "If-Match": "*"})
                    body = body_for(entry)
                query = urllib.parse.urlencode(entry.get("query") or {}, doseq=True)
                target = entry["path"] + (f"?{query}" if query else "")
                status, _ = exchange(conn, entry["method"], target, body, headers)
        except (OSError, HTTPException) as exc:
            conn.close()
            status = type(exc).__name__
        with lock:
            sent[0] += 1
            if status != entry["status"]:
                differences.append(
                    f"{entry['method']} {entry['path']}: logged {entry['status']}, "
                    f"replayed {status}"
                )

    chains_done = _Done(plan.chains_by_end)
    writes_done = _Done(range(len(plan.writes)))
    next_item = {"chain": 0, "write": 0}

    def take(kind: str, limit: int) -> int | None:
        with lock:
            item = next_item[kind]
            if item >= limit:
                return None
            next_item[kind] = item + 1
            return item

    def reader() -> None:
        conn = HTTPConnection(host, port)
        while (index := take("chain", len(plan.chains))) is not None:
            chains_done.wait_for(plan.chain_needs_chains[index])
            writes_done.wait_for(plan.chain_needs_writes[index])
            try:
                for entry in plan.chains[index].entries:
                    send(conn, entry)
            finally:  # what waits for this chain must not wait forever
                chains_done.finish(index)
        conn.close()

    def writer() -> None:
        conn = HTTPConnection(host, port)
        while (index := take("write", len(plan.writes))) is not None:
            chains_done.wait_for(plan.write_needs_chains[index])
            try:
                send(conn, plan.writes[index])
            finally:
                writes_done.finish(index)
        conn.close()

    threads = [threading.Thread(target=reader) for _ in range(plan.readers)]
    threads += [threading.Thread(target=writer) for _ in range(writers if plan.writes else 0)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return ReplayResult(time.perf_counter() - started, sent[0], differences)
