"""The benches' replay keeps a command's order and parallelism (``bench/replay.py``)."""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import pytest
from loopback import LoopbackServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from replay import ReplayResult, is_write, replay, schedule

LATENCY = 0.020


def entry(ts_ms: float, method: str, path: str, sandbox: str = "prod", **query: str) -> Any:
    return {
        "method": method,
        "path": path,
        "query": {k: [v] for k, v in query.items()},
        "sandbox": sandbox,
        "status": 200,
        "ts": ts_ms / 1000,
    }


def token(ts_ms: float) -> Any:
    return entry(ts_ms, "POST", "/ims/token/v3", sandbox="")


def page(ts_ms: float, sandbox: str, token_: str | None = None, kind: str = "flows") -> Any:
    extra = {"continuationToken": token_} if token_ else {}
    return entry(ts_ms, "GET", f"/flowservice/{kind}", sandbox, property="x==1", **extra)


def write(ts_ms: float, flow: str) -> Any:
    return entry(ts_ms, "POST", f"/flowservice/flows/{flow}", op="enable")


def test_pages_of_one_list_form_one_chain_and_lists_of_sandboxes_run_side_by_side() -> None:
    log = [
        token(20),
        page(45, "prod"),
        page(46, "dev"),
        page(70, "prod", "t1"),
        page(71, "dev", "t1"),
        page(95, "prod", "t2"),
    ]
    plan = schedule(log, LATENCY)
    assert [[e["ts"] for e in c.entries] for c in plan.chains] == [
        [0.020],
        [0.045, 0.070, 0.095],
        [0.046, 0.071],
    ]
    assert plan.readers == 2
    assert plan.total == len(log)
    # Both lists were sent after the token's answer: each waits for it, not for each other.
    assert plan.chain_needs_chains == [0, 1, 1]


def test_a_first_page_starts_a_new_chain_even_with_the_same_query() -> None:
    """The confirming read after a wave reads the same list again: a new chain, later."""
    log = [page(20, "prod"), page(45, "prod", "t1"), write(80, "a"), page(120, "prod")]
    plan = schedule(log, LATENCY)
    assert [len(c.entries) for c in plan.chains] == [2, 1]
    # The second read was sent after the write's answer, and after the first read.
    assert plan.chain_needs_writes == [0, 1]
    assert plan.chain_needs_chains == [0, 1]


def test_writes_wait_for_the_reads_answered_before_they_were_sent_not_for_each_other() -> None:
    log = [
        token(20),
        page(45, "prod"),
        page(70, "prod", "t1"),  # the staleness re-read ends at 70 ms
        *(write(95 + i, f"f{i}") for i in range(8)),  # eight writes at once
        *(write(120 + i, f"g{i}") for i in range(8)),
    ]
    plan = schedule(log, LATENCY)
    assert len(plan.writes) == 16
    assert [w["path"].rsplit("/", 1)[1] for w in plan.writes[:2]] == ["f0", "f1"]
    # Every write waits for the token and the whole re-read, none for the other writes.
    assert plan.write_needs_chains == [2] * 16
    assert plan.readers == 1


def test_a_read_that_overlapped_the_writes_is_not_made_to_wait_for_them() -> None:
    """A command that confirms one wave while writing the next gets a replay that does too."""
    log = [
        token(20),
        *(write(45 + i, f"f{i}") for i in range(4)),  # wave one, answered by 48 ms
        page(70, "prod"),  # its confirming read, sent at 50 ms
        write(71, "g0"),  # the next wave, sent at 51 ms, while the read was on its way
        page(95, "prod", "t1"),
        write(96, "g1"),
        write(130, "h0"),  # a dependent, sent after the read's last answer (95 ms)
    ]
    plan = schedule(log, LATENCY)
    read = 1  # the token is chain 0
    assert plan.chain_needs_writes[read] == 4  # wave one only
    needs = dict(zip((w["path"].rsplit("/", 1)[1] for w in plan.writes), plan.write_needs_chains))
    assert needs["g0"] == 1 and needs["g1"] == 1  # the token, not the read in flight
    assert needs["h0"] == 2  # the token and the read


@pytest.mark.parametrize("lag_ms", [0.0, 5.0])
def test_a_request_sent_right_after_an_answer_waits_for_it(lag_ms: float) -> None:
    """The log holds answer times only: a request was sent one latency before its answer."""
    log = [page(20, "prod"), page(40 + lag_ms, "dev")]
    plan = schedule(log, LATENCY)
    assert plan.chain_needs_chains == [0, 1]
    assert plan.readers == 1


# --- against the emulator: the replay does what the command did -----------------------------


def test_a_replay_of_apply_sends_the_same_requests_and_leaves_the_same_world(
    tmp_path: Path,
) -> None:
    from apply_throughput import audience_bodies
    from conftest import invoke
    from e2e_support import end_state

    from pinmigrate.emulator import Emulator

    latency = 0.005
    with Emulator(scenario="scale:30", port=0, latency_ms=latency * 1000) as emulator:
        env = {
            **emulator.env(),
            "PINMIGRATE_STATE_DIR": str(tmp_path / "state"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
        }
        plan_file = tmp_path / "plan.json"
        assert invoke(["plan", "--out", str(plan_file), "--output", "json"], env).exit_code == 0
        emulator.clear_requests()
        applied = invoke(
            ["apply", str(plan_file), "--yes", "--no-input", "--concurrency", "4"], env
        )
        assert applied.exit_code == 0, applied.stderr
        log = emulator.requests()["log"]
        after_apply = end_state(emulator)
        assert any(is_write(e) for e in log) and any(e["method"] == "GET" for e in log)

        emulator.reset()
        emulator.clear_requests()
        assert end_state(emulator) != after_apply
        plan = json.loads(plan_file.read_text())
        result = replay(
            emulator.url,
            emulator.env(),
            schedule(log, latency),
            writers=4,
            body_for=audience_bodies(plan),
        )

        assert result.sent == len(log)
        assert result.differences == []
        assert result.honesty_line(len(log)) == ""
        assert sorted(map(_request, emulator.requests()["log"])) == sorted(map(_request, log))
        assert end_state(emulator) == after_apply


def test_the_honesty_line_names_a_replay_that_did_other_work() -> None:
    result = ReplayResult(1.0, 9, ["GET /flows: logged 200, replayed 404"])
    line = result.honesty_line(10)
    assert "sent 9 requests, the log holds 10" in line
    assert "1 answers differ" in line and "replayed 404" in line


def _request(entry: Any) -> str:
    return json.dumps([entry["method"], entry["path"], entry["query"], entry["sandbox"]])


# --- a replay that meets a closed connection ----------------------------------------------------


class _OneAnswerPerConnection(BaseHTTPRequestHandler):
    """Answers one request per connection, then closes it without saying so (as a server
    whose keep-alive timeout ran out closes an idle connection); never answers /broken."""

    protocol_version = "HTTP/1.1"
    served: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.served.append(self.path)
        self.close_connection = True
        if self.path.startswith("/broken"):
            return
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def do_POST(self) -> None:
        self.do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        return


ENV = {
    "PINMIGRATE_ADOBE_CLIENT_ID": "id",
    "PINMIGRATE_ADOBE_CLIENT_SECRET": "not-a-secret",
    "PINMIGRATE_ADOBE_ORG_ID": "org",
}


def test_a_request_on_a_connection_the_server_closed_is_sent_again_once() -> None:
    _OneAnswerPerConnection.served = []
    log = [page(20, "prod"), page(45, "prod", "t1"), page(70, "prod", "t2")]
    with LoopbackServer(_OneAnswerPerConnection) as server:
        result = replay(server.url, ENV, schedule(log, LATENCY), writers=0)
    assert result.differences == []
    assert result.sent == 3
    # Each page after the first met a closed connection once, then went out on a new one.
    assert len(_OneAnswerPerConnection.served) == 3


def test_a_request_that_gets_no_answer_is_reported_and_what_waits_for_it_still_runs() -> None:
    _OneAnswerPerConnection.served = []
    log = [entry(20, "GET", "/broken"), write(60, "a")]
    with LoopbackServer(_OneAnswerPerConnection) as server:
        result = replay(server.url, ENV, schedule(log, LATENCY), writers=1)
    assert result.sent == 2
    assert len(result.differences) == 1
    assert result.differences[0].startswith("GET /broken: logged 200, replayed ")
    assert _OneAnswerPerConnection.served[-1].startswith("/flowservice/flows/a")
