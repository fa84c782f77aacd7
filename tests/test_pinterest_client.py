"""PinterestClient against ``responses`` mocks: token endpoint, user account, ad account paging."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
import requests
import responses
from fakes import FakeTime

from pinmigrate import redact
from pinmigrate.errors import ApiError, AuthError, ConfigError
from pinmigrate.http import HttpClient
from pinmigrate.pinterest import PinterestClient
from pinmigrate.settings import PinterestSettings, Settings

API = "https://api.pinterest.example.test/v5"
TOKEN = f"{API}/oauth/token"
APP_SECRET = "pinterest-app-secret-77"


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


def settings_for(tmp_path: Path, **pinterest: object) -> Settings:
    values: dict[str, object] = {
        "app_id": "1234567",
        "app_secret": APP_SECRET,
        "api_url": API,
        "redirect_uri": "http://localhost:8085/",
    }
    values.update(pinterest)
    return Settings(pinterest=PinterestSettings(**values), state_dir=tmp_path)  # type: ignore[arg-type]


@pytest.fixture
def client(tmp_path: Path, fake: FakeTime) -> PinterestClient:
    http = HttpClient(service="pinterest", sleep=fake.sleep, clock=fake.clock)
    return PinterestClient(settings_for(tmp_path), http=http)


def token_body(access: str = "pina_access_1", refresh: str = "pinr_refresh_1") -> dict:
    return {
        "access_token": access,
        "refresh_token": refresh,
        "response_type": "authorization_code",
        "token_type": "bearer",
        "expires_in": 2592000,
        "refresh_token_expires_in": 5184000,
        "refresh_token_expires_at": 1735689600,
        "scope": "ads:read ads:write user_accounts:read",
    }


def test_exchange_code_uses_basic_auth_and_continuous_refresh(mock, client):
    mock.add(responses.POST, TOKEN, json=token_body())
    body = client.exchange_code("one-time-code-123")
    assert body["access_token"] == "pina_access_1"
    request = mock.calls[0].request
    expected = base64.b64encode(f"1234567:{APP_SECRET}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected}"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert dict(parse_qsl(request.body)) == {
        "grant_type": "authorization_code",
        "code": "one-time-code-123",
        "redirect_uri": "http://localhost:8085/",
        "continuous_refresh": "true",
    }


def test_tokens_are_registered_for_redaction_at_once(mock, client):
    mock.add(responses.POST, TOKEN, json=token_body("pina_fresh_XYZ", "pinr_fresh_XYZ"))
    client.exchange_code("code-abcdef")
    text = "pina_fresh_XYZ pinr_fresh_XYZ code-abcdef " + APP_SECRET
    assert redact.redact(text) == "*** *** *** ***"


def test_refresh_sends_the_refresh_token(mock, client):
    mock.add(responses.POST, TOKEN, json=token_body("pina_2", "pinr_2"))
    body = client.refresh("pinr_old_token")
    assert body["refresh_token"] == "pinr_2"
    assert dict(parse_qsl(mock.calls[0].request.body)) == {
        "grant_type": "refresh_token",
        "refresh_token": "pinr_old_token",
    }


@pytest.mark.parametrize("grant", ["code", "refresh"])
def test_token_requests_are_not_replayed_after_a_500(mock, client, fake, grant):
    mock.add(responses.POST, TOKEN, status=500, json={"code": 8, "message": "Slow down"})
    mock.add(responses.POST, TOKEN, json=token_body())
    with pytest.raises(ApiError) as info:
        client.exchange_code("c0de-1") if grant == "code" else client.refresh("pinr_x")
    assert len(mock.calls) == 1
    assert fake.sleeps == []
    assert "Slow down (code 8)" in info.value.line()
    assert info.value.exit_code == 1


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("grant", ["code", "refresh"])
def test_token_requests_answered_429_or_503_are_retried(mock, client, fake, status, grant):
    # Pinterest answered: a replay loses nothing (a token the first try rotated is dead
    # either way, and the replay's refusal would say so).
    mock.add(
        responses.POST,
        TOKEN,
        status=status,
        json={"code": 8, "message": "Slow down"},
        headers={"Retry-After": "2"},
    )
    mock.add(responses.POST, TOKEN, json=token_body("pina_2", "pinr_2"))
    body = client.exchange_code("c0de-1") if grant == "code" else client.refresh("pinr_x")
    assert body["refresh_token"] == "pinr_2"
    assert len(mock.calls) == 2
    assert fake.sleeps == [2.0]


def test_dropped_connection_on_token_request_is_not_replayed(mock, client):
    # The refresh may have rotated the token server-side: the login may be gone (exit 4).
    mock.add(responses.POST, TOKEN, body=requests.ConnectionError("Connection reset by peer"))
    with pytest.raises(AuthError) as info:
        client.refresh("pinr_y")
    assert len(mock.calls) == 1
    line = info.value.line()
    assert "was lost" in line and "auth login" in line
    assert info.value.exit_code == 4


@pytest.mark.parametrize(
    ("status", "hint"),
    [(401, "pinterest.app_id"), (400, "auth login"), (403, "auth login")],
)
def test_token_endpoint_refusals_are_auth_errors_with_pinterest_words(mock, client, status, hint):
    mock.add(
        responses.POST, TOKEN, status=status, json={"code": 2, "message": "Authentication failed."}
    )
    with pytest.raises(AuthError) as info:
        client.exchange_code("bad-code-1")
    line = info.value.line()
    assert "Authentication failed. (code 2)" in line
    assert hint in line
    assert info.value.exit_code == 4
    assert "bad-code-1" not in redact.redact(line)


def test_token_endpoint_answering_html(mock, client):
    mock.add(
        responses.POST, TOKEN, body="<html>" + "oops " * 1000 + "</html>", content_type="text/html"
    )
    with pytest.raises(ApiError) as info:
        client.refresh("pinr_z")
    line = info.value.line()
    assert "HTML" in line and "<html" not in line and len(line) < 300


def test_token_answer_without_access_token(mock, client):
    mock.add(responses.POST, TOKEN, json={"refresh_token": "pinr_only_refresh"})
    with pytest.raises(ApiError, match="without an access_token"):
        client.refresh("pinr_q")
    # Even a useless answer's refresh token is masked.
    assert redact.redact("pinr_only_refresh") == "***"


def test_token_request_needs_the_app_settings(mock, tmp_path):
    client = PinterestClient(Settings(pinterest=PinterestSettings(api_url=API), state_dir=tmp_path))
    with pytest.raises(ConfigError) as info:
        client.exchange_code("c-123")
    assert "pinterest.app_id" in info.value.line()
    assert not mock.calls


def test_user_account(mock, client):
    mock.add(
        responses.GET,
        f"{API}/user_account",
        json={"id": "1000000001", "username": "emu_marketer", "account_type": "BUSINESS"},
    )
    assert client.user_account("pina_tok_1")["username"] == "emu_marketer"
    assert mock.calls[0].request.headers["Authorization"] == "Bearer pina_tok_1"


def test_user_account_refused(mock, client):
    mock.add(
        responses.GET,
        f"{API}/user_account",
        status=401,
        json={"code": 2, "message": "Authentication failed."},
    )
    with pytest.raises(AuthError) as info:
        client.user_account("pina_expired")
    assert "Authentication failed. (code 2)" in info.value.line()
    assert "auth login" in info.value.line()


def test_ad_accounts_follow_bookmarks_to_the_end(mock, client):
    pages = [
        {"items": [{"id": "1"}, {"id": "2"}], "bookmark": "b1"},
        {"items": [{"id": "3"}], "bookmark": "b2=="},
        {"items": [{"id": "4"}], "bookmark": None},
    ]
    for page in pages:
        mock.add(responses.GET, f"{API}/ad_accounts", json=page)
    accounts = client.ad_accounts("pina_tok")
    assert [a["id"] for a in accounts] == ["1", "2", "3", "4"]
    queries = [parse_qs(urlsplit(c.request.url).query) for c in mock.calls]
    assert [q.get("bookmark") for q in queries] == [None, ["b1"], ["b2=="]]
    assert all(q["page_size"] == ["250"] for q in queries)


def test_ad_accounts_without_bookmark_key(mock, client):
    mock.add(responses.GET, f"{API}/ad_accounts", json={"items": []})
    assert client.ad_accounts("pina_tok") == []


def test_ad_accounts_repeating_bookmark_is_stopped(mock, client):
    mock.add(responses.GET, f"{API}/ad_accounts", json={"items": [{"id": "1"}], "bookmark": "same"})
    with pytest.raises(ApiError, match="same bookmark twice"):
        client.ad_accounts("pina_tok")
    assert len(mock.calls) == 2


def test_ad_accounts_rate_limit_is_retried(mock, client, fake):
    mock.add(
        responses.GET,
        f"{API}/ad_accounts",
        status=429,
        json={"code": 8, "message": "Rate limit exceeded"},
        headers={"Retry-After": "2"},
    )
    mock.add(responses.GET, f"{API}/ad_accounts", json={"items": [{"id": "9"}], "bookmark": None})
    assert [a["id"] for a in client.ad_accounts("pina_tok")] == ["9"]
    assert fake.sleeps == [2.0]


def test_ad_accounts_rate_limit_that_never_ends(mock, tmp_path, fake):
    from pinmigrate.http import RetryPolicy

    http = HttpClient(
        service="pinterest", sleep=fake.sleep, clock=fake.clock, retry=RetryPolicy(max_attempts=2)
    )
    client = PinterestClient(settings_for(tmp_path), http=http)
    mock.add(
        responses.GET,
        f"{API}/ad_accounts",
        status=429,
        json={"code": 8, "message": "Rate limit exceeded"},
    )
    with pytest.raises(ApiError) as info:
        client.ad_accounts("pina_tok")
    assert "Rate limit exceeded (code 8)" in info.value.line()
    assert info.value.status == 429


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (500, {"code": 1, "message": "Internal error"}, "Internal error (code 1)"),
        (
            404,
            {"code": 29, "message": "You are not permitted to access that resource."},
            "(code 29)",
        ),
        (400, {"message": "no code here"}, "no code here"),
    ],
)
def test_code_message_errors_are_shown_as_they_are(mock, client, status, body, expected):
    mock.add(responses.GET, f"{API}/ad_accounts", status=status, json=body)
    with pytest.raises(ApiError) as info:
        client.ad_accounts("pina_tok")
    assert expected in info.value.line()
    assert f"HTTP {status}" in info.value.line()


def test_html_answer_to_a_read(mock, client):
    mock.add(
        responses.GET,
        f"{API}/user_account",
        body="<!doctype html><title>Pinterest</title>",
        content_type="text/html",
    )
    with pytest.raises(ApiError) as info:
        client.user_account("pina_tok")
    assert "HTML, not JSON" in info.value.line()
