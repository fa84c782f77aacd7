"""The adaptive throttle: the window of writes in flight, the shared pause, the pace."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
import responses

from pinmigrate.errors import ApiError, NotSentError
from pinmigrate.http import HttpClient, RetryPolicy
from pinmigrate.throttle import PLATEAU, Throttle, Ticket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def answered(throttle: Throttle, n: int, *, latency: float = 0.02, status: int = 200) -> None:
    """``n`` writes admitted and answered, one after the other."""
    for _ in range(n):
        ticket = throttle.admit("POST")
        throttle.settle(ticket, status, latency, None)


def test_the_window_grows_by_one_per_window_of_fast_answers_up_to_the_ceiling() -> None:
    throttle = Throttle(8, 10, clock=Clock())
    answered(throttle, 8)
    assert throttle.state().window == 9
    answered(throttle, 9)
    assert throttle.state().window == 10
    answered(throttle, 100)
    assert throttle.state().window == 10  # never above max_concurrency


def test_the_ceiling_is_never_below_the_start() -> None:
    throttle = Throttle(12, 4, clock=Clock())
    assert throttle.state().most_window == 12


def test_slower_answers_shrink_the_window_and_fast_ones_grow_it_back() -> None:
    throttle = Throttle(10, 16, clock=Clock())
    answered(throttle, 10, latency=0.02)  # the best median so far: 20 ms
    assert throttle.state().window == 11
    answered(throttle, 11, latency=0.05)  # more than twice the best
    assert throttle.state().window == 9  # 11 x 0.9
    answered(throttle, 9, latency=0.03)  # within twice the best: grows again
    assert throttle.state().window == 10


def test_a_refusal_halves_the_window_once_for_all_the_requests_sent_before_it() -> None:
    throttle = Throttle(8, 16, clock=Clock())
    tickets = [throttle.admit("POST") for _ in range(8)]
    for ticket in tickets:  # eight 429s for eight requests in flight together
        throttle.settle(ticket, 429, 0.02, None)
    state = throttle.state()
    assert (state.window, state.refusals) == (4, 1)
    # A request sent after the cut that is refused again cuts again.
    throttle.settle(throttle.admit("POST"), 503, 0.02, None)
    assert throttle.state().window == 2


def test_the_window_holds_writes_beyond_it_until_one_is_answered() -> None:
    throttle = Throttle(2, 2)
    first, _second = throttle.admit("POST"), throttle.admit("POST")
    admitted = threading.Event()

    def third() -> None:
        throttle.admit("POST")
        admitted.set()

    thread = threading.Thread(target=third)
    thread.start()
    assert not admitted.wait(0.2)
    throttle.settle(first, 200, 0.02, None)
    assert admitted.wait(2)
    thread.join()
    # Reads are never held by the window.
    throttle.admit("GET")


def test_a_retry_after_pauses_every_request_not_only_the_refused_one() -> None:
    throttle = Throttle(4, 4)
    throttle.settle(throttle.admit("POST"), 429, 0.02, 0.4)
    started = time.monotonic()
    throttle.admit("GET")  # another request, a read even, waits out the pause
    assert time.monotonic() - started >= 0.35
    state = throttle.state()
    assert state.paused == pytest.approx(0.4, abs=0.05)
    assert state.pause_left == 0


def test_the_first_refusal_paces_at_the_rate_seen_then_the_next_finds_the_ceiling() -> None:
    clock = Clock()
    throttle = Throttle(8, 16, clock=clock, sleep=lambda s: None)
    for _ in range(60):  # 60 answered in the last second, then a refusal
        clock.now += 1 / 60
        answered(throttle, 1)
    throttle.settle(throttle.admit("POST"), 429, 0.02, None)
    pace = throttle.paces["write"]
    assert pace.rate == pytest.approx(54, rel=0.05)  # 0.9 x 60
    assert pace.ceiling is None  # still probing, fast
    for _ in range(100):
        clock.now += 1 / 50
        answered(throttle, 1)
    probed = pace.rate
    assert probed is not None and probed > 54 * 1.5  # grew 1.5x per second for 2 s
    throttle.settle(throttle.admit("POST"), 429, 0.02, None)
    assert pace.ceiling is None  # one refusal in a hundred answers: it may be in passing
    for _ in range(2):  # but 3 % of the answers of the last two seconds are a limit
        throttle.settle(throttle.admit("POST"), 429, 0.02, None)
    assert pace.ceiling is not None and pace.ceiling <= probed
    # Then held just under the ceiling, once it has climbed back.
    for _ in range(200):
        clock.now += 0.02
        answered(throttle, 1)
    assert pace.rate == pytest.approx(pace.ceiling * PLATEAU)
    assert throttle.state().write_rate == pace.rate


def test_the_pace_spaces_the_sends() -> None:
    clock = Clock()
    waits: list[float] = []
    throttle = Throttle(8, 16, clock=clock, sleep=waits.append)
    throttle.paces["write"].rate = 50.0
    for _ in range(5):
        throttle.admit("POST")
    assert waits == pytest.approx([0.02, 0.04, 0.06, 0.08])  # the first goes at once


def stop_while_admitting(
    throttle: Throttle, method: str, while_waiting: Callable[[], object] = lambda: None
) -> tuple[list[NotSentError], float]:
    """Admit ``method`` in a thread and stop the throttle while it waits (``while_waiting``
    runs just before the stop): what the admission raised, and how long after the stop it
    ended."""
    refused: list[NotSentError] = []
    ended: list[float] = []

    def admit() -> None:
        try:
            throttle.admit(method)
        except NotSentError as exc:
            refused.append(exc)
        ended.append(time.monotonic())

    thread = threading.Thread(target=admit)
    thread.start()
    time.sleep(0.1)
    while_waiting()
    stopped = time.monotonic()
    throttle.stop()
    thread.join(10)
    return refused, ended[0] - stopped


def test_a_stopped_throttle_sends_nothing_more() -> None:
    throttle = Throttle(1, 1)
    held = throttle.admit("POST")
    errors, _ = stop_while_admitting(throttle, "POST")
    assert len(errors) == 1 and "Ctrl-C" in str(errors[0])
    throttle.settle(held, 200, 0.02, None)
    with pytest.raises(NotSentError):
        throttle.admit("GET")


class Recording(Throttle):
    """Counts what the HTTP client admits and settles."""

    def __init__(self) -> None:
        super().__init__(4, 4)
        self.admitted: list[str] = []
        self.settled: list[tuple[int | None, float | None]] = []

    def admit(self, method: str) -> Ticket:
        self.admitted.append(method)
        return super().admit(method)

    def settle(self, ticket: Ticket, status: int | None, latency: float, retry_after: Any) -> None:
        self.settled.append((status, retry_after))
        super().settle(ticket, status, latency, retry_after)


@responses.activate
def test_the_http_client_admits_and_settles_every_attempt() -> None:
    url = "https://platform.example/data/foundation/flowservice/flows/f1"
    responses.add(responses.POST, url, status=429, headers={"Retry-After": "0"}, json={})
    responses.add(responses.POST, url, status=200, json={"id": "f1"})
    responses.add(responses.GET, url, body=requests.ConnectionError("reset"))
    http = HttpClient(service="adobe", sleep=lambda s: None, retry=RetryPolicy(max_attempts=2))
    http.throttle = throttle = Recording()
    assert http.request("POST", url, retry_safe=True, retry_network=False).status_code == 200
    with pytest.raises(ApiError):
        http.request("GET", url)
    assert throttle.admitted == ["POST", "POST", "GET", "GET"]
    assert throttle.settled == [(429, 0.0), (200, None), (None, None), (None, None)]
    assert throttle.in_flight == 0


# --- against the emulator's rate limit --------------------------------------------------------


@pytest.mark.parametrize("retry_after", ["seconds", "none"])
def test_apply_under_a_rate_limit_paces_its_writes_and_loses_none(
    cli: Any, state_dir: Any, tmp_path: Any, retry_after: str
) -> None:
    from pinmigrate.emulator import Emulator

    limit = f"flowservice=40/s:burst=10:scope=writes:retry-after={retry_after}"
    with Emulator(scenario="scale:30", port=0, rate_limits=[limit]) as emulator:
        env = dict(emulator.env())
        env["PINMIGRATE_STATE_DIR"] = str(state_dir)
        env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
        emulator.clear_requests()
        result = cli(["apply", "--yes", "--output", "json"], env=env)
        assert result.exit_code == 0, result.stderr
        report = result.json()
        log = emulator.requests()
    writes = report["summary"]["done"]
    assert writes == log["writes"] == 63  # 3 add_audiences, 30 enables, 30 disables
    refused = log["faults"].get("rate_limit", 0)
    pacing = report["pacing"]
    # Refused at first (eight at once against a burst of ten), then paced. Without the
    # throttle (eight at once, each refused request backing off alone), 31 to 40 of about
    # 145 requests were refused here.
    assert pacing["refusals"] >= 1 and pacing["write_rate"] is not None
    assert pacing["least_concurrency"] < 8
    assert refused <= 12, log["faults"]
    if retry_after == "seconds":
        assert pacing["paused_seconds"] >= 1
    else:
        assert pacing["paused_seconds"] == 0


@responses.activate
def test_a_retry_after_of_an_hour_pauses_the_run_no_longer_than_the_retry_cap() -> None:
    url = "https://platform.example/data/foundation/flowservice/flows/f1"
    responses.add(responses.POST, url, status=429, headers={"Retry-After": "3600"}, json={})
    http = HttpClient(service="adobe", sleep=lambda s: None, retry=RetryPolicy(total_cap=0.3))
    http.throttle = throttle = Recording()
    # The request itself gives up: an hour is past its cap.
    assert http.request("POST", url, retry_safe=True, retry_network=False).status_code == 429
    assert throttle.settled == [(429, 0.3)]
    assert throttle.state().pause_left <= 0.3


# --- found in review --------------------------------------------------------------------------


def test_a_long_quiet_spell_before_the_next_write_does_not_overflow_the_pace() -> None:
    clock = Clock()
    throttle = Throttle(8, 16, clock=clock, sleep=lambda s: None)
    throttle.settle(throttle.admit("POST"), 200, 0.01, None)
    throttle.settle(throttle.admit("POST"), 429, 0.01, None)  # paced, no ceiling yet
    clock.now += 1800  # half an hour of reads only (a wait for first runs)
    throttle.settle(throttle.admit("POST"), 200, 0.01, None)
    rate = throttle.paces["write"].rate
    assert rate is not None and rate < 10


def test_a_refusal_never_grows_the_write_window() -> None:
    clock = Clock()
    throttle = Throttle(4, 16, clock=clock, sleep=lambda s: None)
    answered(throttle, 8, latency=0.1)
    for _ in range(100):
        clock.now += 0.01
        throttle.settle(throttle.admit("GET"), 200, 0.01, None)
    before = throttle.state().window
    throttle.settle(throttle.admit("GET"), 429, 0.01, None)  # a read refused
    assert throttle.state().window <= before
    assert throttle.state().write_rate is None  # the writes are not paced by it


def test_ctrl_c_wakes_a_request_waiting_for_its_pace_slot_at_once() -> None:
    throttle = Throttle(8, 8)
    throttle.paces["read"].rate = 0.5
    throttle.paces["read"].next_at = time.monotonic() + 6  # a slot 6 s away
    refused, after = stop_while_admitting(throttle, "GET")
    assert len(refused) == 1 and after < 1


def test_a_write_refused_by_a_stop_gives_its_place_in_the_window_back() -> None:
    throttle = Throttle(2, 2)
    throttle.paces["write"].rate = 0.5
    throttle.paces["write"].next_at = time.monotonic() + 6
    in_flight: list[int] = []
    refused, _ = stop_while_admitting(
        throttle, "POST", lambda: in_flight.append(throttle.in_flight)
    )
    assert in_flight == [1]
    assert len(refused) == 1 and throttle.in_flight == 0


def test_a_pause_is_not_taken_from_the_requests_own_deadline_or_retry_cap() -> None:
    import http.server

    received: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append(self.path)
            time.sleep(0.05)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = HttpClient(service="adobe", retry=RetryPolicy(total_cap=1.0))
        client.throttle = throttle = Throttle(4, 4)
        throttle.settle(throttle.admit("POST"), 429, 0.01, 1.0)  # a pause as long as the cap
        url = f"http://127.0.0.1:{server.server_port}/flows/f1"
        answer = client.request("POST", url, json={}, retry_safe=True, retry_network=False)
        assert answer.status_code == 200 and received == ["/flows/f1"]
    finally:
        server.shutdown()
        server.server_close()


def test_the_ims_token_is_not_paced_with_flow_service() -> None:
    from pinmigrate.adobe import AdobeClient
    from pinmigrate.emulator import Emulator
    from pinmigrate.settings import load_settings

    with Emulator(scenario="demo", port=0) as emulator:
        settings = load_settings(env={**emulator.env(), "PINMIGRATE_STATE_DIR": "/nonexistent"})
        client = AdobeClient(settings)
        client.http.throttle = throttle = Recording()
        list(client.list("flows", sandbox="prod"))
    assert throttle.admitted == ["GET"]  # the token's POST went around the throttle


def test_refusals_now_and_then_whatever_the_rate_do_not_drive_the_pace_down() -> None:
    clock = Clock()
    throttle = Throttle(8, 16, clock=clock, sleep=lambda s: None)
    for n in range(3000):  # 60 s at 50 answers a second; one in a hundred refused (a 503)
        clock.now += 0.02
        throttle.settle(throttle.admit("POST"), 503 if n % 100 == 99 else 200, 0.02, None)
    rate = throttle.paces["write"].rate
    assert rate is not None and rate >= 45  # paced after the first, never cut again
    assert throttle.state().refusals == 1


def test_the_pace_never_falls_below_half_the_best_rate_answered() -> None:
    clock = Clock()
    throttle = Throttle(8, 16, clock=clock, sleep=lambda s: None)
    for n in range(3000):  # a fifth of the answers refused, at any rate
        clock.now += 0.02
        throttle.settle(throttle.admit("POST"), 429 if n % 5 == 4 else 200, 0.02, None)
    rate = throttle.paces["write"].rate
    assert rate is not None and rate >= 0.5 * 40 * 0.9  # 40 answered well a second at best
