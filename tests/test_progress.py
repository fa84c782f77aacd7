"""Progress on stderr: never frozen, never blank, never a secret (issue 13, item 2).

The displays are driven with an injected clock (no test waits for real time); the engine
with the in-memory Flow Service of ``test_executor``; retries with ``responses``; the whole
CLI against the emulator over loopback.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import responses
from fakes import FakeTime
from rich.console import Console
from test_executor import FakeAdobe, full_pair_actions, pair, run

from pinmigrate import redact
from pinmigrate.apply import ActionResult
from pinmigrate.discovery import discover
from pinmigrate.http import HttpClient, RetryNotice, RetryPolicy
from pinmigrate.report import (
    BAR_COLUMNS,
    SMALL_RUN,
    BarProgress,
    LineProgress,
    count_line,
    discovery_progress,
    is_progress_line,
    pace_words,
    retry_line,
)
from pinmigrate.settings import Settings


def plain() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=200), out


def lines_of(out: io.StringIO) -> list[str]:
    return [line for line in out.getvalue().splitlines() if line]


def result(n: int, status: str = "done", error: str | None = None) -> ActionResult:
    r = ActionResult(f"enable_flow:prod:F{n}", "enable_flow", "prod", f"F{n}", f"Flow {n}")
    r.status = status  # type: ignore[assignment]
    r.error = error
    return r


# --- plain lines (no terminal) ----------------------------------------------------------------


def test_a_large_run_prints_a_count_line_with_rate_and_eta_not_a_line_per_action() -> None:
    console, out = plain()
    time = FakeTime()
    progress = LineProgress(console, time.clock, heartbeat=False)
    progress.start(4200)
    for n in range(1200):
        time.now += 1 / 64  # 64 actions a second (exact in binary)
        progress.advance(result(n))

    got = lines_of(out)
    # The announcement, then one count line once 9.5 s have passed: not 1,200 lines.
    assert got[0] == (
        "applying: 4200 actions (a line at least every 10 s, and one for each action that "
        "does not succeed)"
    )
    assert got[1:] == ["applying: 608/4200 (14 %), 64/s, about 56 s left"]


def test_a_large_run_still_prints_every_action_that_did_not_succeed() -> None:
    console, out = plain()
    progress = LineProgress(console, FakeTime().clock, heartbeat=False)
    progress.start(SMALL_RUN + 1)
    progress.advance(result(1))
    progress.advance(result(2, "failed", "Adobe said no"))

    assert lines_of(out)[1:] == [
        f"[2/{SMALL_RUN + 1}] enable_flow prod 'Flow 2' failed: Adobe said no"
    ]


def test_a_small_run_prints_one_line_per_action_and_no_summary() -> None:
    console, out = plain()
    progress = LineProgress(console, FakeTime().clock, heartbeat=False)
    progress.start(2)
    progress.advance(result(1))
    progress.advance(result(2))
    progress.finish()

    assert lines_of(out) == [
        "[1/2] enable_flow prod 'Flow 1' done",
        "[2/2] enable_flow prod 'Flow 2' done",
    ]


def test_the_heartbeat_speaks_before_ten_silent_seconds_have_passed() -> None:
    console, out = plain()
    time = FakeTime()
    progress = LineProgress(console, time.clock, heartbeat=False)
    progress.start(100)
    for n in range(40):
        progress.advance(result(n))
    progress.status("confirming 40 writes in prod")
    before = len(lines_of(out))

    time.now += 9.25
    progress.tick()
    assert len(lines_of(out)) == before  # not yet

    time.now += 0.25  # 9.5 s: the heartbeat thread ticks every 0.5 s, so never past 10 s
    progress.tick()
    assert lines_of(out)[-1] == "applying 40/100: confirming 40 writes in prod (still, 10 s)"
    time.now += 5
    progress.tick()
    time.now += 5
    progress.tick()
    assert lines_of(out)[-1] == "applying 40/100: confirming 40 writes in prod (still, 20 s)"

    # The phase over, the heartbeat says how far the count is.
    progress.status("")
    time.now += 10
    progress.tick()
    assert lines_of(out)[-1] == "applying: 40/100 (40 %), 1.4/s, about 44 s left"


def test_the_heartbeat_thread_really_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # A quiet phase with no call into the display at all (a slow read) still gets lines.
    console, out = plain()
    progress = LineProgress(console, every=0.05)
    with progress:
        progress.status("checking 4200 actions: reading 4000 flows in prod")
        import time

        deadline = time.monotonic() + 5
        while len(lines_of(out)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(lines_of(out)) >= 3
    assert "(still, " in lines_of(out)[-1]


def test_a_waiting_line_is_printed_when_it_changes_not_at_every_countdown_step() -> None:
    console, out = plain()
    time = FakeTime()
    progress = LineProgress(console, time.clock, heartbeat=False)
    for left in range(60, 40, -1):
        progress.status(f"waiting for 1 account to be reconnected in Adobe (0:{left:02d} left)")
        time.now += 1
    progress.status("reading flows: prod 100")
    progress.status("reading flows: prod 200")

    assert lines_of(out) == [
        "waiting for 1 account to be reconnected in Adobe (0:60 left)",
        "waiting for 1 account to be reconnected in Adobe (0:50 left)",
        "reading flows: prod 100",
    ]


def test_retry_lines_come_at_most_every_two_seconds_and_count_the_rest() -> None:
    console, out = plain()
    time = FakeTime()
    progress = LineProgress(console, time.clock, heartbeat=False)
    notice = RetryNotice("adobe", "GET", "/data/foundation/flowservice/flows", "prod",
                         "HTTP 503", 3, 10, 4.2)  # fmt: skip
    progress.retry(notice)
    progress.retry(notice)
    progress.retry(notice)
    time.now += 2
    progress.retry(notice)

    assert lines_of(out) == [
        "retrying GET /flows in prod: HTTP 503, attempt 3 of 10, next in 4 s",
        "retrying GET /flows in prod: HTTP 503, attempt 3 of 10, next in 4 s (+2 more retries)",
    ]


def test_a_write_the_confirming_read_failed_is_said_again_without_counting_twice() -> None:
    console, out = plain()
    progress = LineProgress(console, FakeTime().clock, heartbeat=False)
    progress.start(100)
    r = result(1)
    progress.advance(r)
    r.status, r.error = "failed", "enabled, but reads back disabled"
    progress.revise(r)

    assert progress.count == 1
    assert lines_of(out)[-1] == (
        "enable_flow prod 'Flow 1' failed on reading it back: enabled, but reads back disabled"
    )


def test_pace_and_count_words() -> None:
    assert pace_words(0, 10, 5.0) == ""
    assert pace_words(5, 10, 10.0) == "0.5/s, about 10 s left"
    assert pace_words(100, 10000, 1.0) == "100/s, about 2 min left"
    assert pace_words(10, 10, 1.0) == "10/s"
    assert count_line("applying", 1200, 4200, 12.6) == (
        "applying: 1200/4200 (28 %), 95/s, about 32 s left"
    )


# --- the bar (a terminal) ---------------------------------------------------------------------


def terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=120), out


def test_the_bar_shows_rate_and_eta_and_what_the_run_waits_for() -> None:
    console, _ = terminal()
    time = FakeTime()
    bar = BarProgress(console, clock=time.clock)
    with bar:
        bar.start(4200)
        for n in range(200):
            time.now += 1 / 128
            bar.advance(result(n))
        assert bar._bar is not None
        [task] = bar._bar.tasks
        assert task.completed == 200
        assert task.fields["pace"] == "128/s, about 31 s left"
        assert task.description == "applying"

        bar.status("confirming 200 writes in prod")
        assert task.description == "confirming 200 writes in prod"
        assert task.fields["pace"] == ""  # no write rate while the run waits
        # A retry shows over the phase for a few seconds, then the phase again.
        bar.retry(RetryNotice("adobe", "GET", "/data/foundation/flowservice/flows", "prod",
                              "HTTP 503", 1, 10, 0.4))  # fmt: skip
        assert (
            task.description
            == "retrying GET /flows in prod: HTTP 503, attempt 1 of 10, next in 0.4 s"
        )
        time.now += 5
        bar.status("confirming 200 writes in prod")
        assert task.description == "confirming 200 writes in prod"
        bar.status("")
        bar.advance(result(201))
        assert task.description == "applying"
        assert task.fields["pace"].endswith(" left")
    assert bar._bar is None  # stopped on leaving the block


def test_a_long_phase_line_leaves_the_bar_its_room() -> None:
    console, _ = terminal()
    bar = BarProgress(console, clock=FakeTime().clock)
    long = "waiting for the first runs of 300 new flows: 0 succeeded, 0 failed, 300 running"
    with bar:
        bar.start(630)
        bar.status(long + " and a little more to say at the end of it")
        assert bar._bar is not None
        [task] = bar._bar.tasks
        assert task.description.startswith("waiting for the first runs of 300 new flows")
        assert task.description.endswith("…")
        assert len(task.description) <= console.width - BAR_COLUMNS


# --- the engine moves the display as each write returns -----------------------------------------


class Watch:
    """A display that notes the count whenever the engine says what it waits for."""

    def __init__(self) -> None:
        self.count = 0
        self.statuses: list[tuple[str, int]] = []
        self.revised: list[str] = []

    def start(self, total: int) -> None:
        self.total = total

    def advance(self, result: ActionResult) -> None:
        self.count += 1

    def finish(self) -> None:
        return None

    def status(self, text: str) -> None:
        self.statuses.append((text, self.count))

    def revise(self, result: ActionResult) -> None:
        self.revised.append(f"{result.action_id} {result.status}")

    def aside(self, text: str) -> None:
        return None


def test_every_write_of_a_wave_is_counted_before_its_confirming_read(
    settings: Settings,
) -> None:
    adobe = FakeAdobe()
    actions = []
    for n in range(1, 6):
        pair(adobe, "prod", n)
        actions += full_pair_actions("prod", n)
    watch = Watch()

    run(adobe, settings, actions, progress=watch)

    confirming = [(text, count) for text, count in watch.statuses if text.startswith("confirm")]
    # Five enables, then five disables: each confirming read comes after its writes counted.
    assert confirming == [
        ("confirming 5 writes in prod", 5),
        ("confirming 5 writes in prod", 10),
    ]
    assert watch.count == len(actions)
    assert watch.statuses[0][0] == "checking 10 actions: reading 10 flows in prod"


def test_a_write_its_confirming_read_fails_is_revised_not_counted_again(
    settings: Settings,
) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    adobe.ignore_action.add("N1")  # accepted, never applied
    watch = Watch()

    run(adobe, settings, full_pair_actions("prod", 1), progress=watch)

    assert watch.revised == ["enable_flow:prod:N1 failed"]
    assert watch.count == 2  # the enable once, the skipped disable once


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    from pinmigrate.settings import AdobeSettings

    return Settings(adobe=AdobeSettings(org_id="X@AdobeOrg"), state_dir=tmp_path)


# --- HTTP retries reach the live line -----------------------------------------------------------


@responses.activate
def test_a_503_retry_tells_the_observer_attempt_numbers_sandbox_and_wait() -> None:
    url = "https://platform.adobe.io/data/foundation/flowservice/flows"
    responses.get(url, status=503)
    responses.get(url, status=503)
    responses.get(url, json={"items": []})
    time = FakeTime()
    seen: list[RetryNotice] = []
    http = HttpClient(service="adobe", sleep=time.sleep, clock=time.clock, observer=seen.append,
                      retry=RetryPolicy(max_attempts=6))  # fmt: skip

    answer = http.request("GET", url + "?property=x", headers={"x-sandbox-name": "prod"})

    assert answer.status_code == 200
    assert [(n.attempt, n.attempts, n.reason, n.sandbox) for n in seen] == [
        (1, 6, "HTTP 503", "prod"),
        (2, 6, "HTTP 503", "prod"),
    ]
    assert [n.delay for n in seen] == time.sleeps
    assert retry_line(seen[1]).startswith("retrying GET /flows in prod: HTTP 503, attempt 2 of 6")


@responses.activate
def test_a_broken_observer_never_breaks_the_request() -> None:
    url = "https://platform.adobe.io/data/foundation/flowservice/flows"
    responses.get(url, status=503)
    responses.get(url, json={"items": []})

    def broken(notice: RetryNotice) -> None:
        raise RuntimeError("display gone")

    time = FakeTime()
    http = HttpClient(service="adobe", sleep=time.sleep, clock=time.clock, observer=broken)
    assert http.request("GET", url).status_code == 200


# --- secrets and control characters never reach a progress line ---------------------------------


def test_no_secret_and_no_control_character_in_any_progress_line() -> None:
    secret = "s3cr3t-token-value-0123456789"
    redact.register(secret)
    console, out = plain()
    time = FakeTime()
    progress = LineProgress(console, time.clock, heartbeat=False)
    progress.start(2)
    progress.status(f"checking 2 actions: reading {secret}")
    progress.retry(RetryNotice("pinterest", "POST", f"/v5/oauth/{secret}", None,
                               f"HTTP 503 {secret}", 1, 10, 1.0))  # fmt: skip
    progress.advance(result(1, "failed", f"Adobe echoed {secret}\x1b[2J"))
    time.now += 20
    progress.tick()
    progress.finish()

    text = out.getvalue()
    assert secret not in text
    assert "\x1b" not in text
    assert text.count(redact.MASK) >= 3  # the phase, the retry and the failure


# --- discovery: a line before the first request, and a heartbeat --------------------------------


def test_discovery_says_what_it_reads_before_the_first_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from test_discovery import FakeAdobe as DiscoveryAdobe
    from test_discovery import settings as discovery_settings

    lines: list[str] = []
    adobe = DiscoveryAdobe(["prod"])
    first_call: list[int] = []
    original = adobe.list

    def list_(*args: Any, **kwargs: Any) -> Any:
        first_call.append(len(lines))
        return original(*args, **kwargs)

    monkeypatch.setattr(adobe, "list", list_)
    discover(adobe, discovery_settings(), progress=lines.append)  # type: ignore[arg-type]

    assert first_call[0] == 1
    assert lines[0] == "reading 1 sandbox from https://adobe.test (prod)"


def test_discovery_without_a_terminal_prints_plain_lines_with_retries() -> None:
    console, out = plain()
    http = HttpClient(service="adobe")
    with discovery_progress(console, http) as report:
        report("reading 3 sandboxes from https://platform.adobe.io (prod, dev, stage)")
        assert http.observer is not None
        http.observer(RetryNotice("adobe", "GET", "/data/foundation/flowservice/flows", "dev",
                                  "connection reset", 2, 10, 1.5))  # fmt: skip
        report("reading flows: prod 100, dev 0, stage 0")
        report("reading flows: prod 200, dev 0, stage 0")  # same topic, within 10 s: quiet
    assert http.observer is None
    assert lines_of(out) == [
        "reading 3 sandboxes from https://platform.adobe.io (prod, dev, stage)",
        "retrying GET /flows in dev: connection reset, attempt 2 of 10, next in 2 s",
        "reading flows: prod 100, dev 0, stage 0",
    ]


# --- the real CLI against the emulator ----------------------------------------------------------


def test_discover_without_a_terminal_says_what_it_reads_and_each_retry(
    cli: Any, emu_env: dict[str, str], emulator: Any
) -> None:
    import re

    emulator.set_faults({"rate_5xx": 0.4, "seed": 7, "services": ["flowservice"]})

    result = cli(["discover", "--output", "json"], emu_env)

    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("reading 2 sandboxes from http://127.0.0.1:")
    retry = re.compile(
        # full jitter may draw no wait at all: "next at once"
        r"^retrying GET /\S+ in (prod|dev): HTTP 503, attempt \d+ of 10, "
        r"next (in [\d.]+ s|at once)"
    )
    assert any(retry.match(line) for line in lines), result.stderr
    assert all(is_progress_line(line) for line in lines), result.stderr
    assert result.json()["kind"]  # stdout is the JSON alone


def test_apply_without_a_terminal_gives_each_action_and_phase_a_line(
    cli: Any, emu_env: dict[str, str], emulator: Any
) -> None:
    emu_env = {**emu_env, "PINMIGRATE_MIGRATION_DISABLE_LEGACY": "true"}
    result = cli(["apply", "--yes", "--sandbox", "dev", "--output", "json"], emu_env)

    lines = result.stderr.splitlines()
    # A small run: one line per action, as each write returns, and the phases in between.
    assert any(line.startswith("checking ") for line in lines), result.stderr
    assert any(line.startswith("confirming ") for line in lines), result.stderr
    assert any(line.startswith("[1/") for line in lines), result.stderr


def test_before_the_bar_a_phase_shows_as_a_spinner_that_ends_with_the_phase() -> None:
    console, _ = terminal()
    bar = BarProgress(console, clock=FakeTime().clock)
    with bar:
        bar.status("checking 4200 actions: reading 4000 flows in prod")
        assert bar._spinner is not None
        bar.status("")
        assert bar._spinner is None  # no "applying" spinner without a bar
        bar.start(10)
        assert bar._bar is not None
    assert bar._bar is None and bar._spinner is None


@responses.activate
def test_an_answer_paced_by_retry_after_counts_the_attempt_and_widens_the_limit() -> None:
    url = "https://platform.adobe.io/data/foundation/flowservice/flows"
    responses.get(url, status=429, headers={"Retry-After": "2"})
    responses.get(url, json={"items": []})
    time = FakeTime()
    seen: list[RetryNotice] = []
    http = HttpClient(service="adobe", sleep=time.sleep, clock=time.clock, observer=seen.append,
                      retry=RetryPolicy(max_attempts=6))  # fmt: skip

    http.request("GET", url)

    assert [(n.attempt, n.attempts, n.reason, n.delay) for n in seen] == [(1, 7, "HTTP 429", 2.0)]


def test_the_bar_keeps_spinning_once_every_write_is_counted() -> None:
    # The last wave's confirming read comes after the count is full: still working.
    console, _ = terminal()
    bar = BarProgress(console, clock=FakeTime().clock)
    with bar:
        bar.start(1)
        bar.advance(result(1))
        bar.status("confirming 1 write in prod")
        assert bar._bar is not None
        [task] = bar._bar.tasks
        assert task.finished
        spinner = bar._bar.columns[0]
        assert str(spinner.render(task)).strip()  # type: ignore[union-attr]  # a frame, not " "


def test_retry_lines_do_not_hold_back_the_count_line() -> None:
    console, out = plain()
    time = FakeTime()
    progress = LineProgress(console, time.clock, heartbeat=False)
    notice = RetryNotice("adobe", "POST", "/data/foundation/flowservice/flows/F1/action",
                         "dev", "HTTP 429", 1, 11, 1.0)  # fmt: skip
    progress.start(1000)
    for n in range(20):  # a retry every second, an action every half second
        time.now += 0.5
        progress.advance(result(n))
        progress.retry(notice)
        time.now += 0.5
        progress.advance(result(n))

    counts = [line for line in lines_of(out) if line.startswith("applying: ") and "%" in line]
    # Every 9.5 s (at 19 and 38 actions), though a retry line came every two seconds.
    assert counts == [
        "applying: 19/1000 (1 %), 2.0/s, about 8 min left",
        "applying: 38/1000 (3 %), 2.0/s, about 8 min left",
    ]


def test_every_waiting_line_of_a_small_run_is_a_progress_line() -> None:
    # A small run's phase lines carry no count prefix: each must still be told from an
    # error or a note by how it begins (the first-run wait and the reconnect wait too).
    from datetime import UTC, datetime

    from pinmigrate.apply.runs import RunWatch, Watched

    console = Console(file=io.StringIO(), width=200)
    lines = LineProgress(console, clock=FakeTime().clock, heartbeat=False)
    lines.start(4)
    flows = [Watched("N1", "prod", "Flow 1", datetime(2026, 1, 1, tzinfo=UTC))]
    watch = RunWatch(FakeAdobe(), flows, timeout=60, clock=FakeTime().clock, workers=1)  # type: ignore[arg-type]
    lines.status(watch.progress())
    lines.status("waiting for 2 accounts to be reconnected in Adobe (14:59 left)")
    lines.finish()
    shown = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert len(shown) == 2, shown
    assert all(is_progress_line(line) for line in shown), shown


def test_the_count_line_says_how_many_writes_go_at_once_and_the_pace() -> None:
    from pinmigrate.throttle import Throttle

    console, out = plain()
    time = FakeTime()
    throttle = Throttle(8, 16, clock=time.clock)
    progress = LineProgress(console, time.clock, heartbeat=False)
    progress.watch_pacing(throttle.state)
    progress.start(4200)
    for n in range(640):
        time.now += 1 / 64
        progress.advance(result(n))
    throttle.settle(throttle.admit("POST"), 429, 0.02, None)  # refused: halved, then paced
    for n in range(640, 1280):
        time.now += 1 / 64
        progress.advance(result(n))
    got = lines_of(out)
    assert got[1] == "applying: 608/4200 (14 %), 64/s, about 56 s left, 8 at once"
    assert got[2] == "applying: 1216/4200 (28 %), 64/s, about 47 s left, 4 at once, 0.5 writes/s"
