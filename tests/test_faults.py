"""``pinmigrate apply`` under injected faults converges to the fault-free end state.

The emulator answers 20% of requests with 429 (Retry-After: 1), 10% with 503, drops 5% of
connections and adds up to 20 ms of latency, on every service: Adobe IMS, Flow Service and
Pinterest. On top of what the emulator draws, this suite injects what it cannot:

- the first request of each kind (IMS token, Flow Service read, reconnect PATCH, audience
  PATCH, flow action, Pinterest token request and read) fails, so every case hits every
  service and every kind of write whatever the threads' interleaving;
- the first applied write of each kind, and 5% of the others, lose their answer (the
  connection drops after the change was made): the client must not send it again blind
  but re-read, see the change taken and call the action done.

The emulator runs in strict mode (``+strict``): an enable of an enabled flow, or a disable
of a disabled one, answers 400 ``1409-400``, so any action sent twice would show.

The reconnects take the api path (``migration.reconnect_via = "api"``): a person at the
terminal signs in to Pinterest for each account (the emulator approves at once), so each
grant's code exchange and verification reads meet Pinterest's faults too. A token request
whose answer is lost has spent its code: that is no fault to converge through but a sign-in
to redo, tested on its own (exit 4, no write). In the convergence cases Pinterest's drops
are turned into 503s.

The HTTP layer's sleep is replaced by a recorder, so Retry-After and backoff cost no time.
A few unit cases pin the retry budget that converging under these rates needs.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from e2e_support import (
    AppliedWrites,
    api_path_env,
    duplicated_audiences,
    end_state,
    journal_problems,
    person_at_terminal,
)

from pinmigrate.emulator import Emulator
from pinmigrate.emulator.server import FLOWSERVICE, Handler
from pinmigrate.emulator.state import FaultDecision
from pinmigrate.errors import ApiError
from pinmigrate.http import PACED_FACTOR, HttpClient, RetryPolicy
from pinmigrate.journal import list_runs, read_run

pytestmark = pytest.mark.slow

FAULTS = "429=0.2,5xx=0.1,drop=0.05,jitter=20,retry_after=1"
#: Writes whose answer is lost after the emulator applied them (on top of FAULTS).
LOST_RATE = 0.05


@dataclass(frozen=True)
class Case:
    scenario: str
    seed: int
    #: "file": the plan is made fault-free and saved, apply PLAN runs under faults (and
    #: refreshes the Pinterest token then); "fresh": `apply --yes` discovers and plans
    #: under faults too.
    mode: str

    @property
    def id(self) -> str:
        return f"{self.scenario}-seed{self.seed}-{self.mode}"


CASES = [
    Case("demo+strict", 1, "file"),
    Case("demo+strict", 2, "fresh"),
    Case("demo+strict", 3, "file"),
    Case("scale:300+strict", 7, "file"),
]


# --- the trouble this suite adds to the emulator's own faults ---------------------------------


def request_class(method: str, path: str) -> str:
    if path.startswith("/ims/"):
        return "ims"
    if path.rstrip("/") == "/v5/oauth/token":
        return "pinterest-token"
    if path.startswith("/v5/"):
        return "pinterest-read"
    if path.startswith(FLOWSERVICE):
        if method == "PATCH":
            return "audiences" if "/flows/" in path else "reconnect"
        if method == "POST" and path.rstrip("/").endswith("/action"):
            return "action"
        return "read"
    return "other"


WRITES = frozenset({"reconnect", "audiences", "action"})


@dataclass
class Trouble:
    """Forced first faults, Pinterest drops turned into 503s, and lost answers of writes."""

    emulator: Any
    seed: int
    #: request class -> the fault its first request gets
    first: dict[str, str] = field(default_factory=dict)
    #: request classes whose first applied answer is lost, then LOST_RATE of the rest
    lose: frozenset[str] = WRITES
    lose_rate: float = LOST_RATE
    #: how often each class was hit: emulator faults, forced faults, lost answers
    hits: Counter[str] = field(default_factory=Counter)
    #: of those hits, the dropped connections
    dropped: Counter[str] = field(default_factory=Counter)
    lost: Counter[str] = field(default_factory=Counter)
    _local: threading.local = field(default_factory=threading.local)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lost_first: set[str] = set()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> Trouble:
        trouble = self
        read_request, send = Handler._read_request, Handler._send
        injector = self.emulator.state.injector
        decide = injector.decide

        def remember(handler: Handler) -> Any:
            request = read_request(handler)
            if handler.server.state is trouble.emulator.state:
                trouble._local.kind = request_class(request.method, request.path)
            return request

        def decide_with_trouble(service: str) -> FaultDecision:
            decision = decide(service)
            kind = getattr(trouble._local, "kind", "other")
            action = decision.action
            with trouble._lock:
                forced = trouble.first.pop(kind, None)
            if forced is not None:
                action = forced
            elif service == "pinterest" and action == "drop":
                action = "5xx"
            if action is not None:
                with trouble._lock:
                    trouble.hits[kind] += 1
                    if action == "drop":
                        trouble.dropped[kind] += 1
            return FaultDecision(action, decision.delay)

        def send_or_lose(handler: Handler, reply: Any) -> None:
            kind = getattr(trouble._local, "kind", "other")
            if (
                handler.server.state is trouble.emulator.state
                and kind in trouble.lose
                and 200 <= reply.status < 300
                and trouble._lose_this(kind)
            ):
                handler._drop()  # applied, but the client never hears so
                return
            send(handler, reply)

        monkeypatch.setattr(Handler, "_read_request", remember)
        monkeypatch.setattr(Handler, "_send", send_or_lose)
        monkeypatch.setattr(injector, "decide", decide_with_trouble)
        return self

    def _lose_this(self, kind: str) -> bool:
        with self._lock:
            if kind not in self._lost_first:
                self._lost_first.add(kind)
                lose = True
            else:
                lose = self._rng.random() < self.lose_rate
            if lose:
                self.lost[kind] += 1
            return lose


# --- running the CLI against an emulator ------------------------------------------------------


@dataclass
class World:
    emulator: Any
    env: dict[str, str]
    state_dir: Path
    tmp: Path


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every wait the HTTP layer asks for, instead of waiting."""
    waited: list[float] = []
    defaults = HttpClient.__init__.__kwdefaults__
    assert defaults is not None and "sleep" in defaults
    monkeypatch.setitem(defaults, "sleep", waited.append)
    return waited


def start_world(scenario: str, tmp: Path) -> World:
    emulator = Emulator(scenario=scenario, port=0).start()
    state_dir = tmp / "state"
    state_dir.mkdir(parents=True)
    env = api_path_env(emulator, emulator.env())
    env.update(
        PINMIGRATE_STATE_DIR=str(state_dir),
        XDG_CONFIG_HOME=str(tmp / "xdg-config"),
        XDG_STATE_HOME=str(tmp / "xdg-state"),
    )
    return World(emulator, env, state_dir, tmp)


def with_pinterest(world: World) -> dict[str, str]:
    """The world's settings plus a CI login: a refresh token minted for emu_marketer."""
    token = world.emulator.tokens("emu_marketer")["refresh_token"]
    return {**world.env, "PINMIGRATE_PINTEREST_REFRESH_TOKEN": token}


def migrate(
    cli: Callable[..., Any], world: World, mode: str, *, before_apply: Callable[[], object]
) -> Any:
    """Plan and apply as the case says; ``before_apply`` switches the trouble on. Apply runs
    at a terminal: a person signs in to Pinterest for each account to reconnect."""
    plan = world.tmp / "plan.json"
    if mode == "file":
        # Planned without a Pinterest login (reconnects need_login): the pre-flight's own
        # refresh happens fault-free, the grants' sign-ins under faults.
        planned = cli(["plan", "--out", str(plan)], world.env)
        assert planned.exit_code == 0, planned.stderr
        args = ["apply", str(plan)]
    else:
        args = ["apply", "--yes"]
    env = with_pinterest(world) if world.emulator.state.scenario.startswith("demo") else world.env
    before_apply()
    with pytest.MonkeyPatch.context() as patch:
        person_at_terminal(patch)
        return cli([*args, "--output", "json"], env)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Any]:
    """The fault-free end state of a scenario, computed once per module."""
    from conftest import invoke

    cache: dict[str, Any] = {}

    def of(scenario: str) -> Any:
        if scenario not in cache:
            world = start_world(scenario, tmp_path_factory.mktemp("reference"))
            try:
                result = migrate(invoke, world, "file", before_apply=lambda: None)
                assert result.exit_code == 0, result.stderr
                assert result.json()["summary"]["retries"] == 0
                cache[scenario] = end_state(world.emulator)
            finally:
                world.emulator.stop()
        return cache[scenario]

    return of


def adobe_retries_expected(trouble: Trouble) -> int:
    """Each Adobe request that met a fault is asked once more by the HTTP layer, except a
    write whose connection dropped or whose answer was lost: apply re-reads, and sends it
    again only if the re-read shows it not done (a new request, not a retry)."""
    faulted = sum(trouble.hits[k] for k in ("ims", "read", *WRITES))
    return faulted - sum(trouble.dropped[k] for k in WRITES)


# --- the retry budget these faults need -------------------------------------------------------

URL = "https://api.example.test/thing"


def budget_client(waited: list[float], **policy: Any) -> HttpClient:
    return HttpClient(
        service="test",
        retry=RetryPolicy(**policy),
        sleep=waited.append,
        clock=lambda: 0.0,
        rng=random.Random(0),
    )


def test_a_throttle_that_says_when_to_come_back_uses_no_attempt() -> None:
    """A third of requests failing must not exhaust one of a thousand: a 429 or 503 with
    Retry-After is the server pacing the client; only the total wait bounds it."""
    waited: list[float] = []
    client = budget_client(waited, max_attempts=3)
    with responses.RequestsMock() as mock:
        for _ in range(5):
            mock.add(responses.POST, URL, status=429, headers={"Retry-After": "1"})
        mock.add(responses.POST, URL, status=503)  # no Retry-After: a failed attempt
        mock.add(responses.POST, URL, status=503, headers={"Retry-After": "1"})
        mock.add(responses.POST, URL, json={"ok": True})
        answer = client.request("POST", URL, retry_safe=True)
    assert answer.status_code == 200
    assert waited[:5] == [1.0] * 5 and len(waited) == 7


def test_paced_answers_are_capped_in_number_and_in_time() -> None:
    waited: list[float] = []
    client = budget_client(waited, max_attempts=2)
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, URL, status=429, headers={"Retry-After": "0"})
        answer = client.request("GET", URL)
        assert len(mock.calls) == 2 * PACED_FACTOR  # not forever, even with Retry-After: 0
    assert answer.status_code == 429

    waited.clear()
    client = budget_client(waited, total_cap=10)
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, URL, status=429, headers={"Retry-After": "4"})
        answer = client.request("GET", URL)
    assert answer.status_code == 429 and waited == [4.0, 4.0]


def test_without_network_retries_an_answered_503_is_retried_a_lost_answer_not() -> None:
    waited: list[float] = []
    client = budget_client(waited)
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, URL, status=503)
        mock.add(responses.POST, URL, json={"ok": True})
        answer = client.request("POST", URL, retry_safe=True, retry_network=False)
        assert answer.status_code == 200 and len(mock.calls) == 2
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, URL, body=requests.ConnectionError("Connection reset by peer"))
        with pytest.raises(ApiError) as info:
            client.request("POST", URL, retry_safe=True, retry_network=False)
        assert len(mock.calls) == 1
    assert "may or may not have been applied" in info.value.line()


# --- convergence ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_apply_converges_under_faults_to_the_fault_free_end_state(
    case: Case,
    cli: Callable[..., Any],
    sleeps: list[float],
    reference: Callable[[str], Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = reference(case.scenario)
    world = start_world(case.scenario, tmp_path)
    demo = case.scenario.startswith("demo")
    first = {"ims": "5xx", "read": "drop", "audiences": "drop", "action": "429"}
    if demo:
        first.update({"reconnect": "5xx", "pinterest-token": "429", "pinterest-read": "5xx"})
    trouble = Trouble(world.emulator, case.seed, first=first)
    try:
        applied = AppliedWrites(world.emulator)

        def trouble_on() -> None:
            world.emulator.clear_requests()
            world.emulator.set_faults(f"{FAULTS},seed={case.seed}")
            trouble.install(monkeypatch)

        result = migrate(cli, world, case.mode, before_apply=trouble_on)
        log = world.emulator.requests()

        assert result.exit_code == 0, result.stderr
        report = result.json()
        assert {r["status"] for r in report["results"]} <= {"done", "already_done"}
        assert end_state(world.emulator) == expected
        assert duplicated_audiences(world.emulator) == {}
        # Nothing was done twice: each applied write changed a different thing.
        assert applied.total > 0 and applied.twice() == {}
    finally:
        world.emulator.stop()

    # Every service and every kind of write met trouble, and writes lost their answers.
    assert not trouble.first, f"never reached: {trouble.first}"
    assert log["faults"].get("429", 0) > 0 and log["faults"].get("5xx", 0) > 0
    assert trouble.hits["ims"] and trouble.hits["audiences"] and trouble.hits["action"]
    assert trouble.lost["audiences"] and trouble.lost["action"]
    if demo:
        assert trouble.hits["reconnect"] and trouble.lost["reconnect"]
        assert trouble.hits["pinterest-token"] and trouble.hits["pinterest-read"]
        assert log["by_endpoint"]["POST /v5/oauth/token"] >= 2  # the 429 was waited out
    # The report counts the retries; with a saved plan every Adobe request is apply's own.
    retries = report["summary"]["retries"]
    assert retries > 0
    if case.mode == "file":
        assert retries == adobe_retries_expected(trouble)
    assert 1.0 in sleeps  # Retry-After was honoured (without waiting for real)

    [run_id] = list_runs(world.state_dir)
    assert run_id == report["run_id"]
    assert journal_problems(read_run(world.state_dir, run_id).records) == []


def test_writes_whose_answers_are_lost_are_not_done_twice(
    cli: Callable[..., Any], sleeps: list[float], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every write is applied and its answer lost: none is sent again; a re-read shows each
    change taken, so each action is done, journalled before/after (rollback can undo it)."""
    world = start_world("demo+strict", tmp_path)
    trouble = Trouble(world.emulator, 0, lose_rate=1.0)
    try:
        applied = AppliedWrites(world.emulator)

        def trouble_on() -> None:
            world.emulator.clear_requests()
            trouble.install(monkeypatch)

        result = migrate(cli, world, "file", before_apply=trouble_on)
        assert result.exit_code == 0, result.stderr
        report = result.json()
        statuses = Counter(r["status"] for r in report["results"])
        assert statuses == {"done": 12}, statuses
        assert applied.total == 12 and applied.twice() == {}
        assert world.emulator.requests()["write_attempts"] == 12  # never sent twice
        assert sum(trouble.lost.values()) == 12
        assert report["summary"]["retries"] == 0
        assert duplicated_audiences(world.emulator) == {}
    finally:
        world.emulator.stop()
    [run_id] = list_runs(world.state_dir)
    records = read_run(world.state_dir, run_id).records
    assert journal_problems(records) == []
    assert not [r for r in records if r["event"] == "error"]
    lost = [r for r in records if r["event"] == "after" and r.get("answer_lost")]
    assert len(lost) == 12


# --- a lost token refresh ---------------------------------------------------------------------


def store_short_lived_login(cli: Callable[..., Any], world: World) -> None:
    """A stored login of emu_marketer whose access token expires within the refresh margin:
    the api path must neither refresh it nor hand it to Adobe."""
    token = world.emulator.tokens("emu_marketer", expires_in=60)
    stored = cli(["auth", "login", "--with-token"], world.env, input=json.dumps(token))
    assert stored.exit_code == 0, stored.stderr


def test_a_lost_token_answer_of_a_sign_in_stops_apply_with_exit_4_and_no_write(
    cli: Callable[..., Any],
    sleeps: list[float],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pinterest answered the code exchange of an account's sign-in, but the answer never
    arrived: the code is spent and the grant lost. Not replayed (that could only meet a
    refusal), apply stops before any write with exit 4, naming the account; pinmigrate's own
    login, about to expire, is neither refreshed nor handed over. A rerun signs in again."""
    world = start_world("demo", tmp_path)
    try:
        store_short_lived_login(cli, world)
        plan = tmp_path / "plan.json"
        planned = cli(["plan", "--out", str(plan)], world.env)
        assert planned.exit_code == 0, planned.stderr
        store = world.state_dir / "logins.json"
        store_before = store.read_bytes()
        lose_answer = Trouble(world.emulator, 0, lose=frozenset({"pinterest-token"}), lose_rate=0)
        lose_answer.install(monkeypatch)
        person_at_terminal(monkeypatch)
        world.emulator.clear_requests()

        result = cli(["apply", str(plan)], world.env)

        assert result.exit_code == 4, result.stderr
        line = result.stderr.strip().splitlines()[-1]
        assert "Pinterest sign-in for Adobe account" in line and "lost" in line
        assert "nothing was written" in line and "auth login" not in line
        log = world.emulator.requests()
        assert lose_answer.lost["pinterest-token"] == 1
        assert log["by_endpoint"]["POST /v5/oauth/token"] == 1  # never replayed
        assert log["write_attempts"] == 0
        assert store.read_bytes() == store_before

        # Signed in again, apply finishes the job; the stored login is still untouched.
        world.emulator.clear_requests()
        done = cli(["apply", str(plan)], world.env)
        assert done.exit_code == 0, done.stderr
        assert world.emulator.requests()["by_endpoint"]["POST /v5/oauth/token"] == 3
        assert store.read_bytes() == store_before
    finally:
        world.emulator.stop()
