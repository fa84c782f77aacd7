"""The emulator's rate limits: a token bucket per service, answering 429 as that service would."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

import pytest
import requests
from fakes import FakeTime
from platform_caller import FS, Platform

from pinmigrate.emulator import CLIENT_ID, CLIENT_SECRET, Emulator
from pinmigrate.emulator.limits import (
    RateLimit,
    RateLimiter,
    TokenBucket,
    parse_rate_limit_spec,
    rate_limits_from,
)

#: One token, then none for 1,000 s: the second request is refused whatever the machine's pace.
ONE_THEN_NONE = "0.001/s:burst=1"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(scenario="demo") as emulator:
        yield emulator


def ims_token(emu: Emulator) -> requests.Response:
    form = {"grant_type": "client_credentials", "client_id": CLIENT_ID}
    form["client_secret"] = CLIENT_SECRET
    return requests.post(emu.url + "/ims/token/v3", data=form)


def enable(adobe: Platform, emu: Emulator) -> requests.Response:
    flow = emu.state.find("flows", sandbox="prod")[0]
    return adobe.call("POST", f"/flows/{flow['id']}/action", params={"op": "enable"})


# --- SPEC parsing ------------------------------------------------------------------------------


def test_a_spec_gives_the_service_and_its_limit_with_defaults() -> None:
    assert parse_rate_limit_spec("flowservice=50/s") == (
        "flowservice",
        RateLimit(per_second=50.0, burst=50.0, retry_after="seconds", scope="all"),
    )
    # burst defaults to one second's worth, and never below one token.
    assert parse_rate_limit_spec("Pinterest=0.5/s")[1].burst == 1.0
    service, limit = parse_rate_limit_spec("ims=2.5/s:burst=10:Retry-After=DATE:scope=writes")
    assert service == "ims"
    assert limit == RateLimit(per_second=2.5, burst=10.0, retry_after="date", scope="writes")
    assert parse_rate_limit_spec("pinterest=100/s:retry_after=none")[1].retry_after == "none"


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("flowservice", "'flowservice'"),
        ("=50/s", "'=50/s'"),
        ("sandboxes=50/s", "'sandboxes'"),
        ("flowservice=50", "'50'"),
        ("flowservice=50/min", "'50/min'"),
        ("flowservice=lots/s", "'lots'"),
        ("flowservice=0/s", "'0'"),
        ("flowservice=-5/s", "'-5'"),
        ("flowservice=nan/s", "'nan'"),
        ("flowservice=inf/s", "'inf'"),
        ("flowservice=50/s:burst=0", "'0'"),
        ("flowservice=50/s:burst=0.5", "burst"),
        ("flowservice=50/s:burst=x", "'x'"),
        ("flowservice=50/s:retry-after=soon", "'soon'"),
        ("flowservice=50/s:scope=reads", "'reads'"),
        ("flowservice=50/s:colour=red", "'colour=red'"),
        ("flowservice=50/s:burst", "'burst'"),
        ("flowservice=50/s:burst=2:burst=3", "burst is given twice"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_bad_part(spec: str, named: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_rate_limit_spec(spec)
    assert named in str(caught.value)


def test_specs_and_mappings_become_the_same_changes() -> None:
    from_specs = rate_limits_from(["flowservice=50/s:scope=writes", "pinterest=100/s"])
    from_json = rate_limits_from(
        {"flowservice": {"per_second": 50, "scope": "writes"}, "pinterest": {"per_second": 100}}
    )
    assert from_specs == from_json
    assert rate_limits_from("ims=1/s") == {"ims": RateLimit(1.0)}
    assert rate_limits_from({"ims": None}) == {"ims": None}
    assert rate_limits_from(None) == {}
    for bad, named in (
        (["ims=1/s", "ims=2/s"], "ims is limited twice"),
        ({"flowservice": {"burst": 5}}, "needs per_second"),
        ({"flowservice": {"per_second": 5, "rate": 1}}, "'rate'"),
        ({"flowservice": {"per_second": True}}, "True"),
        ({"flowservice": {"per_second": "50"}}, "'50'"),
        ({"flowservice": 50}, "an object or null"),
        ({"consent": {"per_second": 1}}, "'consent'"),
    ):
        with pytest.raises(ValueError) as caught:
            rate_limits_from(bad)  # type: ignore[arg-type]
        assert named in str(caught.value)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("flowservice=50", "'50'"),
        ("flowservice=50/s:scope=reads", "'reads'"),
        ("nothing=50/s", "'nothing'"),
    ],
)
def test_the_flag_refuses_a_bad_spec_in_one_line_exit_64(cli: Any, spec: str, needle: str) -> None:
    result = cli(["emulator", "--rate-limit", spec])
    assert result.exit_code == 64
    (line,) = result.stderr.strip().splitlines()
    assert "--rate-limit" in line and needle in line


def test_the_flag_sets_each_limit(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from pinmigrate.commands import emulator as command_module

    seen: list[dict[str, Any]] = []

    def probe(emulator: Emulator) -> None:
        seen.append(requests.get(emulator.url + "/_emulator/rate-limits").json())
        raise KeyboardInterrupt

    monkeypatch.setattr(command_module, "wait", probe)
    result = cli(
        [
            "emulator",
            "--rate-limit",
            "flowservice=50/s:burst=10:scope=writes",
            "--rate-limit",
            "pinterest=100/s:retry-after=none",
        ]
    )
    assert result.exit_code == 0, result.stderr
    (limits,) = seen
    assert limits["limits"] == {
        "flowservice": {
            "per_second": 50.0,
            "burst": 10.0,
            "retry_after": "seconds",
            "scope": "writes",
        },
        "pinterest": {"per_second": 100.0, "burst": 100.0, "retry_after": "none", "scope": "all"},
    }


# --- the bucket, on an injected clock --------------------------------------------------------


def test_the_bucket_starts_full_refills_at_the_rate_and_caps_at_the_burst() -> None:
    clock = FakeTime(1000.0)
    bucket = TokenBucket(RateLimit(per_second=10, burst=3), clock.clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.1)  # empty: one token in 1/10 s
    clock.now += 0.04
    assert bucket.take() == pytest.approx(0.06)  # 0.4 of a token there, 0.6 to come
    clock.now += 0.06
    assert bucket.take() == 0.0  # exactly one token after 0.1 s
    assert bucket.take() == pytest.approx(0.1)
    clock.now += 3600  # an hour idle fills the bucket to its burst, no more
    assert [bucket.take() for _ in range(4)][:3] == [0.0, 0.0, 0.0]
    assert bucket.counters() == {"admitted": 7, "refused": 4, "tokens": 0.0}


def test_the_bucket_admits_exactly_rate_times_seconds_plus_burst() -> None:
    clock = FakeTime(0.0)
    bucket = TokenBucket(RateLimit(per_second=50, burst=5), clock.clock)
    admitted = 0
    for _ in range(10_000):  # a request each millisecond for 10 s
        admitted += bucket.take() == 0.0
        clock.now += 0.001
    assert admitted == 5 + 50 * 10 - 1  # the last token would come at 10.000 s itself


def test_concurrent_takes_never_spend_a_token_twice() -> None:
    """Each take reads the clock and spends under the bucket's lock: one take at a time."""
    inside = [0]
    most = [0]
    lock = threading.Lock()

    def slow_frozen_clock() -> float:
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.001)  # let the other threads run, as a preempted take would
        with lock:
            inside[0] -= 1
        return 0.0  # frozen: only the burst is there to take

    bucket = TokenBucket(RateLimit(per_second=1, burst=50), slow_frozen_clock)
    with ThreadPoolExecutor(8) as pool:
        batches = pool.map(lambda _: [bucket.take() for _ in range(20)], range(8))
        results = [wait for batch in batches for wait in batch]
    assert most[0] == 1
    assert results.count(0.0) == 50 and len(results) == 160
    assert bucket.counters()["admitted"] == 50 and bucket.counters()["refused"] == 110


@pytest.mark.parametrize(
    ("rate", "spent", "header"),
    [
        (50.0, 1, "1"),  # 20 ms to wait: delay-seconds is an integer, at least 1
        (0.25, 1, "4"),  # 4 s exactly
        (0.4, 1, "3"),  # 2.5 s, rounded up
        (2.0, 1, "1"),  # 0.5 s
    ],
)
def test_retry_after_seconds_is_the_wait_rounded_up(rate: float, spent: int, header: str) -> None:
    clock = FakeTime(0.0)
    limiter = RateLimiter({"flowservice": RateLimit(rate, burst=1)}, clock=clock.clock)
    for _ in range(spent):
        assert limiter.admit("flowservice", "GET") is None
    refusal = limiter.admit("flowservice", "GET")
    assert refusal is not None
    assert refusal.wait == pytest.approx(1 / rate)
    assert refusal.retry_after == header


def test_retry_after_date_is_the_first_whole_second_with_a_token_and_none_sends_none() -> None:
    clock = FakeTime(0.0)
    wall = 1_800_000_000.25
    limiter = RateLimiter(
        {
            "pinterest": RateLimit(0.25, burst=1, retry_after="date"),
            "ims": RateLimit(0.25, burst=1, retry_after="none"),
        },
        clock=clock.clock,
        wall=lambda: wall,
    )
    assert limiter.admit("pinterest", "GET") is None and limiter.admit("ims", "POST") is None
    dated = limiter.admit("pinterest", "GET")
    assert dated is not None and dated.retry_after == formatdate(1_800_000_005, usegmt=True)
    bare = limiter.admit("ims", "POST")
    assert bare is not None and bare.wait == pytest.approx(4.0) and bare.retry_after is None


def test_scope_writes_takes_no_token_for_reads_and_unlimited_services_pass() -> None:
    clock = FakeTime(0.0)
    limiter = RateLimiter({"flowservice": RateLimit(1, burst=1, scope="writes")}, clock=clock.clock)
    assert all(limiter.admit("flowservice", m) is None for m in ["GET", "HEAD", "OPTIONS"] * 5)
    assert limiter.admit("flowservice", "PATCH") is None
    for method in ("POST", "PATCH", "PUT", "DELETE"):
        assert limiter.admit("flowservice", method) is not None
    assert limiter.admit("pinterest", "POST") is None and limiter.admit("sandboxes", "GET") is None
    assert limiter.as_json()["counters"]["flowservice"]["admitted"] == 1


def test_update_replaces_the_named_limits_with_full_buckets_and_refill_keeps_them() -> None:
    clock = FakeTime(0.0)
    limiter = RateLimiter({"ims": RateLimit(1, burst=1)}, clock=clock.clock)
    assert limiter.admit("ims", "POST") is None and limiter.admit("ims", "POST") is not None
    limiter.update({"pinterest": RateLimit(5)})
    assert limiter.admit("ims", "POST") is not None  # untouched, still empty
    limiter.update({"ims": RateLimit(1, burst=2)})
    assert limiter.admit("ims", "POST") is None  # a fresh bucket
    limiter.refill()
    assert limiter.limits() == {"ims": RateLimit(1, burst=2), "pinterest": RateLimit(5)}
    assert limiter.as_json()["counters"]["ims"] == {"admitted": 0, "refused": 0, "tokens": 2.0}
    limiter.update({"ims": None})
    assert limiter.limits() == {"pinterest": RateLimit(5)}
    limiter.clear()
    assert limiter.limits() == {}


# --- over loopback -----------------------------------------------------------------------------


def test_the_three_retry_after_forms_with_each_service_s_own_429_body(emu: Emulator) -> None:
    adobe = Platform(emu)  # its IMS token is taken before IMS is limited
    emu.set_rate_limits(
        [
            f"flowservice={ONE_THEN_NONE}",
            f"pinterest={ONE_THEN_NONE}:retry-after=date",
            f"ims={ONE_THEN_NONE}:retry-after=none",
        ]
    )
    assert adobe.get("/flows").status_code == 200
    flows = adobe.get("/flows")
    assert flows.status_code == 429
    assert flows.json()["error_code"] == 429001
    assert flows.headers["Retry-After"] == "1000"

    assert requests.get(emu.url + "/v5/user_account").status_code == 401  # passed: no token
    pinterest = requests.get(emu.url + "/v5/user_account")
    assert pinterest.status_code == 429 and pinterest.json()["code"] == 8
    when = parsedate_to_datetime(pinterest.headers["Retry-After"]).timestamp()
    assert 990 <= when - time.time() <= 1001

    assert ims_token(emu).status_code == 200
    ims = ims_token(emu)
    assert ims.status_code == 429 and ims.json()["error"] == "too_many_requests"
    assert "Retry-After" not in ims.headers


def test_a_refused_request_is_answered_at_once_without_the_injected_latency() -> None:
    slept: list[float] = []
    with Emulator(
        latency_ms=250, sleep=slept.append, rate_limits=f"pinterest={ONE_THEN_NONE}"
    ) as emu:
        assert requests.get(emu.url + "/v5/user_account").status_code == 401
        assert requests.get(emu.url + "/v5/user_account").status_code == 429
        assert slept == [0.25]


def test_scope_writes_lets_reads_through_and_limits_the_writes(emu: Emulator) -> None:
    adobe = Platform(emu)
    emu.set_rate_limits({"flowservice": {"per_second": 0.001, "burst": 1, "scope": "writes"}})
    emu.clear_requests()
    assert [adobe.get("/flows").status_code for _ in range(5)] == [200] * 5
    assert enable(adobe, emu).status_code == 200
    refused = enable(adobe, emu)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1000"
    log = emu.requests()
    assert (log["total"], log["write_attempts"], log["writes"]) == (7, 2, 1)
    assert log["by_status"] == {"200": 6, "429": 1}
    assert log["faults"] == {"rate_limit": 1}
    assert [e["fault"] for e in log["log"]] == [None] * 6 + ["rate_limit"]
    counters = requests.get(emu.url + "/_emulator/rate-limits").json()["counters"]
    assert counters["flowservice"]["admitted"] == 1 and counters["flowservice"]["refused"] == 1


def test_the_request_log_counts_every_refusal_as_an_api_request(emu: Emulator) -> None:
    adobe = Platform(emu)
    emu.set_rate_limits(f"flowservice={ONE_THEN_NONE}")
    emu.clear_requests()
    statuses = [adobe.get("/flows").status_code for _ in range(3)]
    statuses.append(enable(adobe, emu).status_code)
    assert statuses == [200, 429, 429, 429]
    log = emu.requests()
    assert log["total"] == 4 and log["faults"] == {"rate_limit": 3}
    assert log["by_status"] == {"200": 1, "429": 3}
    assert (log["write_attempts"], log["writes"]) == (1, 0)
    # The control API is never limited and never counted.
    assert requests.get(emu.url + "/_emulator/state?summary=true").status_code == 200
    assert emu.requests()["total"] == 4


def test_the_control_api_round_trip(emu: Emulator) -> None:
    url = emu.url + "/_emulator/rate-limits"
    endpoints = requests.get(emu.url + "/_emulator/").json()["endpoints"]
    assert any(e.startswith("GET|POST|DELETE /_emulator/rate-limits") for e in endpoints)
    assert requests.get(url).json() == {"limits": {}, "counters": {}}

    limit = {"per_second": 50, "burst": 50, "retry_after": "seconds", "scope": "all"}
    answer = requests.post(url, json={"flowservice": limit, "pinterest": {"per_second": 0.5}})
    assert answer.status_code == 200
    limits = answer.json()["limits"]
    assert limits["flowservice"] == {**limit, "per_second": 50.0, "burst": 50.0}
    assert limits["pinterest"]["burst"] == 1.0 and limits["pinterest"]["scope"] == "all"
    assert answer.json()["counters"]["flowservice"] == {
        "admitted": 0,
        "refused": 0,
        "tokens": 50.0,
    }
    # What GET answers may be posted back as it is.
    assert requests.post(url, json=requests.get(url).json()["limits"]).json()["limits"] == limits
    assert requests.get(emu.url + "/_emulator/state?summary=true").json()["rate_limits"] == limits

    removed = requests.post(url, json={"pinterest": None}).json()["limits"]
    assert list(removed) == ["flowservice"]
    bad = requests.post(url, json={"flowservice": {"per_second": 0}})
    assert bad.status_code == 400 and "rate must be a positive number" in bad.json()["error"]
    assert requests.post(url, json=["flowservice"]).status_code == 400
    # Like every control write, only with a JSON content type.
    assert requests.post(url, data=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415
    assert list(requests.get(url).json()["limits"]) == ["flowservice"]
    assert requests.delete(url, json={}).json() == {"limits": {}, "counters": {}}


def test_reset_keeps_the_limits_and_refills_the_buckets(emu: Emulator) -> None:
    adobe = Platform(emu)
    emu.set_rate_limits({"flowservice": RateLimit(0.001, burst=2)})
    assert [adobe.get("/flows").status_code for _ in range(3)] == [200, 200, 429]
    answer = requests.post(emu.url + "/_emulator/reset", json={"scenario": "demo"})
    assert answer.status_code == 200
    assert [adobe.get("/flows").status_code for _ in range(3)] == [200, 200, 429]
    assert emu.set_rate_limits(None)["limits"]["flowservice"]["burst"] == 2.0
    emu.clear_rate_limits()
    assert adobe.get("/flows").status_code == 200


def test_no_limit_is_set_by_default_and_none_slows_a_request(emu: Emulator) -> None:
    adobe = Platform(emu)
    assert all(adobe.get("/flows").status_code == 200 for _ in range(20))
    assert emu.requests()["faults"] == {}
    assert requests.get(emu.url + FS + "/flows").status_code != 429
