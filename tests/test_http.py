"""HttpClient: retries, Retry-After, backoff, the total cap, safety rules, logs and counters."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from fakes import FakeTime
from loopback import LoopbackServer

from pinmigrate import redact
from pinmigrate.errors import ApiError
from pinmigrate.http import (
    UNREACHABLE_ATTEMPTS,
    HttpClient,
    RetryPolicy,
    error_detail,
    parse_retry_after,
)

URL = "https://api.example.test/thing"


class MaxRandom:
    """An rng whose uniform(a, b) is always b: makes full jitter deterministic."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime(start=1000.0)


def make(fake: FakeTime, **policy: float) -> HttpClient:
    return HttpClient(
        service="test",
        retry=RetryPolicy(**policy),  # type: ignore[arg-type]
        sleep=fake.sleep,
        clock=fake.clock,
        rng=MaxRandom(),  # type: ignore[arg-type]
        wall_clock=lambda: 1_700_000_000.0,
    )


def test_get_is_retried_on_503_then_succeeds(mock, fake):
    mock.add(responses.GET, URL, status=503)
    mock.add(responses.GET, URL, status=502)
    mock.add(responses.GET, URL, json={"ok": True})
    client = make(fake)
    response = client.request("GET", URL)
    assert response.status_code == 200
    assert len(mock.calls) == 3
    # Full jitter with an rng at its maximum: base * 2**n.
    assert fake.sleeps == [0.5, 1.0]
    stats = client.stats.snapshot()
    assert stats["requests"] == 3
    assert stats["retries"] == 2
    assert stats["by_status"] == {503: 1, 502: 1, 200: 1}


def test_retry_after_seconds_is_honoured(mock, fake):
    mock.add(responses.GET, URL, status=429, headers={"Retry-After": "7"})
    mock.add(responses.GET, URL, json={})
    make(fake).request("GET", URL)
    assert fake.sleeps == [7.0]


def test_retry_after_http_date_is_honoured(mock, fake):
    later = datetime.fromtimestamp(1_700_000_000 + 12, tz=UTC)
    mock.add(
        responses.GET, URL, status=503, headers={"Retry-After": format_datetime(later, usegmt=True)}
    )
    mock.add(responses.GET, URL, json={})
    make(fake).request("GET", URL)
    assert fake.sleeps == [pytest.approx(12.0)]


def test_unusable_retry_after_falls_back_to_backoff(mock, fake):
    mock.add(responses.GET, URL, status=503, headers={"Retry-After": "soon-ish"})
    mock.add(responses.GET, URL, json={})
    make(fake, base_delay=2.0).request("GET", URL)
    assert fake.sleeps == [2.0]


def test_parse_retry_after_variants():
    now = 1_700_000_000.0
    assert parse_retry_after("3", now=now) == 3.0
    assert parse_retry_after(" 1.5 ", now=now) == 1.5
    assert parse_retry_after("-4", now=now) == 0.0
    past = format_datetime(datetime.fromtimestamp(now - 60, tz=UTC), usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 0.0
    assert parse_retry_after("", now=now) is None
    assert parse_retry_after(None, now=now) is None
    assert parse_retry_after("nonsense", now=now) is None
    assert parse_retry_after("nan", now=now) is None


def test_backoff_is_capped_by_max_delay(mock, fake):
    for _ in range(5):
        mock.add(responses.GET, URL, status=504)
    mock.add(responses.GET, URL, json={})
    make(fake, base_delay=1.0, max_delay=3.0, total_cap=1000).request("GET", URL)
    assert fake.sleeps == [1.0, 2.0, 3.0, 3.0, 3.0]


def test_full_jitter_draws_between_zero_and_the_ceiling(fake):
    import random

    client = HttpClient(service="t", rng=random.Random(7), sleep=fake.sleep, clock=fake.clock)
    draws = [client.backoff(3) for _ in range(200)]
    assert all(0 <= d <= 4.0 for d in draws)
    assert min(draws) < 1.0 < 3.0 < max(draws)  # really jittered, not a constant


def test_total_cap_stops_retrying_and_returns_the_last_answer(mock, fake):
    mock.add(responses.GET, URL, status=429, headers={"Retry-After": "100"})
    client = make(fake, total_cap=120)
    response = client.request("GET", URL)
    assert response.status_code == 429
    # 100 s fit under the cap once; a second 100 s would not.
    assert fake.sleeps == [100.0]
    assert len(mock.calls) == 2


def test_total_cap_counts_sleeps_even_when_the_clock_stands_still(mock):
    sleeps: list[float] = []
    client = HttpClient(
        service="t",
        retry=RetryPolicy(total_cap=10, max_attempts=50),
        sleep=sleeps.append,
        clock=lambda: 0.0,
        rng=MaxRandom(),  # type: ignore[arg-type]
    )
    mock.add(responses.GET, URL, status=503, headers={"Retry-After": "4"})
    client.request("GET", URL)
    assert sleeps == [4.0, 4.0]


def test_attempts_are_limited(mock, fake):
    mock.add(responses.GET, URL, status=503)
    response = make(fake, max_attempts=3, total_cap=1000).request("GET", URL)
    assert response.status_code == 503
    assert len(mock.calls) == 3
    assert len(fake.sleeps) == 2


@pytest.mark.parametrize("method", ["POST", "PATCH", "PUT", "DELETE"])
def test_unsafe_methods_are_not_retried(mock, fake, method):
    mock.add(method, URL, status=503)
    response = make(fake).request(method, URL, json=[{"op": "add"}])
    assert response.status_code == 503
    assert len(mock.calls) == 1
    assert fake.sleeps == []


def test_caller_may_declare_a_write_safe_to_repeat(mock, fake):
    mock.add(responses.PATCH, URL, status=503)
    mock.add(responses.PATCH, URL, json={"etag": '"2"'})
    response = make(fake).request(
        "PATCH", URL, json=[], headers={"If-Match": '"1"'}, retry_safe=True
    )
    assert response.status_code == 200
    assert len(mock.calls) == 2


def test_caller_may_forbid_retrying_a_get(mock, fake):
    mock.add(responses.GET, URL, status=503)
    assert make(fake).request("GET", URL, retry_safe=False).status_code == 503
    assert len(mock.calls) == 1


def test_non_retryable_statuses_come_back_at_once(mock, fake):
    mock.add(responses.GET, URL, status=500)
    assert make(fake).request("GET", URL).status_code == 500
    assert len(mock.calls) == 1


def test_dropped_connection_is_retried_for_get(mock, fake):
    mock.add(responses.GET, URL, body=requests.ConnectionError("Connection reset by peer"))
    mock.add(responses.GET, URL, json={"ok": 1})
    client = make(fake)
    assert client.request("GET", URL).json() == {"ok": 1}
    assert len(mock.calls) == 2
    assert client.stats.snapshot()["network_errors"] == 1


def test_dropped_connection_on_post_is_not_retried_and_says_so(mock, fake):
    mock.add(responses.POST, URL, body=requests.ConnectionError("Connection aborted"))
    with pytest.raises(ApiError) as info:
        make(fake).request("POST", URL, data={"a": "b"})
    assert len(mock.calls) == 1
    assert "may or may not have been applied" in info.value.line()
    assert "/thing" in info.value.line()


def test_timeouts_are_retried_then_reported(mock, fake):
    mock.add(responses.GET, URL, body=requests.ReadTimeout("read timed out"))
    with pytest.raises(ApiError) as info:
        make(fake, max_attempts=3, total_cap=1000).request("GET", URL)
    assert len(mock.calls) == 3
    assert "timed out after 3 attempts" in info.value.line()
    assert info.value.exit_code == 1


def test_every_call_carries_a_timeout(mock, fake):
    mock.add(responses.GET, URL, json={})
    client = HttpClient(service="t", timeout=(3, 9), sleep=fake.sleep, clock=fake.clock)
    client.request("GET", URL)
    client.request("GET", URL, timeout=1.5)
    assert mock.calls[0].request.req_kwargs["timeout"] == (3, 9)
    assert mock.calls[1].request.req_kwargs["timeout"] == 1.5


def test_default_session_has_a_pool_for_parallel_writes():
    client = HttpClient(service="t")
    for scheme in ("https://x.test", "http://127.0.0.1"):
        adapter = client.session.get_adapter(scheme)
        assert adapter._pool_maxsize >= 32  # type: ignore[attr-defined]
        assert adapter.max_retries.total == 0  # type: ignore[attr-defined]


def test_debug_log_lines_mask_secrets(mock, fake, caplog):
    secret = "pina_SuperSecretAccessToken123"
    redact.register(secret)
    url = f"{URL}?access_token={secret}&x=1"
    mock.add(responses.GET, URL, status=503)
    mock.add(responses.GET, URL, json={})
    with caplog.at_level(logging.DEBUG, logger="pinmigrate.http"):
        make(fake).request("GET", url, headers={"Authorization": f"Bearer {secret}"})
    text = caplog.text
    assert "pinmigrate.http" in {r.name for r in caplog.records}
    assert "-> 503" in text and "-> 200" in text and "retry 1" in text
    assert secret not in text
    assert "SuperSecret" not in text


def test_network_error_message_masks_secrets(mock, fake):
    secret = "s3cr3t-in-the-url-9876"
    redact.register(secret)
    mock.add(responses.POST, URL, body=requests.ConnectionError("Connection refused"))
    with pytest.raises(ApiError) as info:
        make(fake).request("POST", f"{URL}?token={secret}")
    assert secret not in info.value.line()
    assert "connection refused" in info.value.line()


def test_counters_are_thread_safe(mock):
    mock.add(responses.GET, URL, json={})
    client = HttpClient(service="t")

    def worker() -> None:
        for _ in range(25):
            client.request("GET", URL)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = client.stats.snapshot()
    assert stats["requests"] == 400
    assert stats["by_status"] == {200: 400}


@pytest.mark.parametrize(
    ("error", "attempts", "reason"),
    [
        ("Connection refused", 3, "connection refused"),
        ("Temporary failure in name resolution", 3, "host name not found"),
        ("certificate verify failed: self-signed certificate", 1, "TLS certificate not trusted"),
        # The server may have acted on it: the whole budget (up to the total cap) applies.
        ("RemoteDisconnected('Remote end closed connection')", None, "closed by the server"),
    ],
)
def test_a_server_that_cannot_be_reached_fails_fast(mock, fake, error, attempts, reason):
    """A wrong URL must not wait out the whole retry budget; a dropped answer may."""
    mock.add(responses.GET, URL, body=requests.ConnectionError(error))
    with pytest.raises(ApiError) as info:
        make(fake).request("GET", URL)
    if attempts is None:
        assert len(mock.calls) > UNREACHABLE_ATTEMPTS
    else:
        assert len(mock.calls) == attempts
    assert reason in info.value.line()


# --- what a failed answer said ----------------------------------------------------------------


def answer(body: bytes, content_type: str = "application/json") -> requests.Response:
    response = requests.Response()
    response.status_code = 400
    response._content = body
    response.headers["Content-Type"] = content_type
    return response


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        # Adobe's gateway, Flow Service and IMS
        (b'{"error_code": "400003", "message": "Missing header"}', None, "Missing header (400003)"),
        (b'{"error_code": 400003, "message": "Missing header"}', None, "Missing header (400003)"),
        (b'{"error_code": 401013}', None, "401013"),
        (
            b'{"type": "https://ns.adobe.com/errors/FLOW-1000-500", "title": "Broke",'
            b' "errorMessage": "It broke", "errorDetails": "more"}',
            None,
            "It broke: more (FLOW-1000-500)",
        ),
        (
            b'{"error": "invalid_client", "error_description": "bad secret"}',
            None,
            "bad secret (invalid_client)",
        ),
        # Pinterest's numeric codes
        (b'{"code": 8, "message": "Slow down"}', None, "Slow down (code 8)"),
        (b'{"code": 2}', None, "code 2"),
        (b'{"unexpected": 1}', None, "{'unexpected': 1}"),
        (b"[1, 2]", None, "[1, 2]"),
        (b"", None, "an empty body instead of JSON"),
        (b"<!doctype html><p>Sign in</p>", "text/html", "HTML instead of JSON"),
        (b"<html>", "text/plain", "HTML instead of JSON"),
        (b"upstream timed out\n\n", "text/plain", "non-JSON answer: upstream timed out"),
    ],
)
def test_error_detail_reads_every_services_shape(body, content_type, expected):
    assert error_detail(answer(body, content_type or "application/json")) == expected


def test_error_detail_is_one_line_and_bounded():
    detail = error_detail(answer(b'{"message": "' + b"word\\n " * 200 + b'"}'))
    assert "\n" not in detail and len(detail) <= 300 and detail.endswith("…")


# --- hostile servers: endless answers and slow drips -------------------------------------------


class Hostile(BaseHTTPRequestHandler):
    """Answers ``GET /big?mib=N[&length=1]`` with N MiB made as they are sent, ``/drip`` one
    byte every 0.1 s (status line and headers included), ``/ok`` a small JSON object."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        try:
            if self.path.startswith("/big"):
                mib = int(query["mib"][0])
                self.send_response(200)
                if "length" in query:
                    self.send_header("Content-Length", str(mib * MIB))
                self.send_header("Connection", "close")
                self.end_headers()
                block = b" " * MIB
                for _ in range(mib):
                    self.wfile.write(block)
            elif self.path.startswith("/drip"):
                body = b'{"items": []}'
                head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                for i, byte in enumerate(head + body):
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.1)
            else:
                body = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
        except OSError:
            pass  # the client stopped reading

    do_POST = do_GET


MIB = 1024 * 1024


@pytest.fixture
def hostile() -> Iterator[str]:
    with LoopbackServer(Hostile, name="hostile") as server:
        yield server.url


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
def test_an_answer_over_the_limit_is_cut_and_never_held(hostile, declared):
    import tracemalloc

    client = HttpClient(service="test", max_response_bytes=MIB)
    url = f"{hostile}/big?mib=64" + ("&length=1" if declared else "")
    tracemalloc.start()
    try:
        with pytest.raises(ApiError) as info:
            client.request("GET", url)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (
        info.value.line().startswith("test: GET /big on 127.0.0.1:")
        and "answered more than 1 MiB; stopped reading" in info.value.line()
    )
    assert info.value.status is None
    assert peak < 4 * MIB, f"{peak / MIB:.1f} MiB held for a 1 MiB limit"
    # Not retried: the same server would send the same again.
    assert client.stats.snapshot()["requests"] == 1
    # The client is still usable: the cut connection is not reused.
    assert client.request("GET", f"{hostile}/ok").json() == {"ok": True}


def test_an_answer_at_the_limit_is_read_whole(hostile):
    client = HttpClient(service="test", max_response_bytes=2 * MIB)
    response = client.request("GET", f"{hostile}/big?mib=2")
    assert len(response.content) == 2 * MIB


def test_a_drip_ends_at_the_deadline_not_the_read_timeout(hostile):
    client = HttpClient(service="test", timeout=(5, 60), deadline=1.0)
    started = time.monotonic()
    with pytest.raises(ApiError, match=r"did not answer in full within 1 s; stopped waiting"):
        client.request("GET", f"{hostile}/drip")
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 2.0, elapsed
    # Not retried: a GET that timed out would be, but a drip would only drip again.
    assert client.stats.snapshot()["requests"] == 1


def test_the_deadline_never_outlasts_the_retry_cap(hostile):
    client = HttpClient(service="test", deadline=60.0, retry=RetryPolicy(total_cap=1.0))
    started = time.monotonic()
    with pytest.raises(ApiError, match=r"within 1 s"):
        client.request("GET", f"{hostile}/drip")
    assert time.monotonic() - started < 2.0


def test_a_write_cut_at_its_deadline_may_have_been_applied(hostile):
    client = HttpClient(service="test", deadline=0.5)
    with pytest.raises(ApiError) as info:
        client.request("GET", f"{hostile}/drip", retry_safe=False, retry_network=False)
    assert "within 0.5 s" in info.value.line()
    with pytest.raises(ApiError) as write:
        HttpClient(service="test", deadline=0.5).request("POST", f"{hostile}/drip")
    assert "may or may not have been applied" in write.value.line()


def test_the_settings_give_the_limits(tmp_path):
    from pinmigrate.settings import load_settings

    settings = load_settings(
        env={"PINMIGRATE_HTTP_MAX_RESPONSE_MIB": "0.5", "PINMIGRATE_HTTP_REQUEST_DEADLINE": "7"}
    )
    client = HttpClient.for_settings(settings, service="adobe")
    assert (client.max_response_bytes, client.deadline) == (MIB // 2, 7.0)
    defaults = HttpClient.for_settings(load_settings(env={}), service="adobe")
    assert (defaults.max_response_bytes, defaults.deadline) == (8 * MIB, 60.0)


def test_mocked_answers_are_read_through_the_same_limit(mock, fake):
    mock.add(responses.GET, URL, body=b"x" * (MIB // 2))
    client = HttpClient(
        service="t", sleep=fake.sleep, clock=fake.clock, max_response_bytes=MIB // 4
    )
    with pytest.raises(ApiError, match=r"answered more than 0\.25 MiB"):
        client.request("GET", URL)
    mock.add(responses.GET, URL + "/small", json={"a": 1})
    assert client.request("GET", URL + "/small").json() == {"a": 1}


class CutShort(BaseHTTPRequestHandler):
    """Announces 100 bytes, sends 5, hangs up."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        self.wfile.write(b'{"a":')
        self.close_connection = True


def test_an_answer_cut_short_is_a_network_failure_retried_like_one():
    client = HttpClient(
        service="test", sleep=lambda seconds: None, retry=RetryPolicy(max_attempts=3)
    )
    with LoopbackServer(CutShort, name="cut-short") as server, pytest.raises(ApiError) as info:
        client.request("GET", server.url + "/flows")
    assert info.value.line().startswith("test: GET /flows on 127.0.0.1:")
    assert "connection closed in the middle of the answer after 3 attempts" in info.value.line()
    assert client.stats.snapshot()["network_errors"] == 3


def test_no_retry_is_made_that_would_leave_its_attempt_no_time_under_the_cap(mock, fake):
    mock.add(responses.GET, URL, status=503, headers={"Retry-After": "9.5"})
    mock.add(responses.GET, URL, json={})
    response = make(fake, total_cap=10).request("GET", URL)
    # After 9.5 s of waiting, half a second would be left for the attempt: give up instead.
    assert response.status_code == 503
    assert fake.sleeps == [] and len(mock.calls) == 1
    # With a second left, the attempt is made.
    mock.add(responses.GET, URL + "/2", status=503, headers={"Retry-After": "9"})
    mock.add(responses.GET, URL + "/2", json={})
    assert make(fake, total_cap=10).request("GET", URL + "/2").status_code == 200
    assert fake.sleeps == [9.0]


def test_debug_lines_show_the_query_and_the_sandbox_on_attempt_and_answer(mock, fake, caplog):
    secret = "pina_QuerySecret4242"
    redact.register(secret)
    mock.add(responses.GET, URL, status=503)
    mock.add(responses.GET, URL, json={})
    with caplog.at_level(logging.DEBUG, logger="pinmigrate.http"):
        make(fake).request(
            "GET",
            URL,
            params={"property": "name==Pinterest", "token": secret},
            headers={"X-Sandbox-Name": "prod", "Authorization": f"Bearer {secret}"},
        )
    shown = f"{URL}?property=name%3D%3DPinterest&token={redact.redact(secret)} [sandbox prod]"
    lines = [r.getMessage() for r in caplog.records if r.name == "pinmigrate.http"]
    assert f"test GET {shown} (attempt 1)" in lines
    assert f"test GET {shown} (attempt 2)" in lines
    assert any(line.startswith(f"test GET {shown} -> 503 (") for line in lines)
    assert any(line.startswith(f"test GET {shown} -> 200 (") for line in lines)
    assert any(line.startswith(f"test GET {shown}: HTTP 503, retry 1 in ") for line in lines)
    assert secret not in caplog.text
