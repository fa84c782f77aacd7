"""The emulator's Pinterest answers validate against Pinterest's own OpenAPI description."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from pinmigrate.emulator import PINTEREST_APP_ID, PINTEREST_APP_SECRET, Emulator

#: the operations below, cut from Pinterest's description (see tests/data/README.md)
SPEC = Path(__file__).resolve().parent / "data" / "pinterest-v5-openapi.json"
PINTEREST = "https://api.pinterest.com/v5"
REDIRECT = "http://localhost:8085/"


@pytest.fixture(scope="module")
def openapi() -> Any:
    """The description, parsed once for the module."""
    import openapi_core

    if not SPEC.is_file():
        raise FileNotFoundError(f"{SPEC} is missing; tests/data/README.md says where it comes from")
    return openapi_core.OpenAPI.from_file_path(str(SPEC))


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _fresh(emu: Emulator) -> None:
    emu.reset("demo")
    emu.set_faults()
    emu.configure(scope_separator=" ", extra_scope=None)


def validate(openapi: Any, response: requests.Response) -> None:
    """Validate a real emulator response as if it came from api.pinterest.com."""
    from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

    sent = response.request
    path = urlsplit(sent.url or "").path
    query = urlsplit(sent.url or "").query
    assert path.startswith("/v5/")
    url = PINTEREST + path[len("/v5") :] + (f"?{query}" if query else "")
    body = sent.body
    data = body.decode() if isinstance(body, bytes) else body
    as_pinterest = requests.Request(
        sent.method or "GET",
        url,
        headers=dict(sent.headers),
        data=data,
    ).prepare()
    openapi.validate_response(
        RequestsOpenAPIRequest(as_pinterest), RequestsOpenAPIResponse(response)
    )


def basic() -> dict[str, str]:
    raw = base64.b64encode(f"{PINTEREST_APP_ID}:{PINTEREST_APP_SECRET}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def authorization_code(emu: Emulator) -> str:
    answer = requests.post(
        emu.url + "/oauth/",
        data={
            "client_id": PINTEREST_APP_ID,
            "redirect_uri": REDIRECT,
            "response_type": "code",
            "scope": "ads:read,ads:write,user_accounts:read",
            "state": "s",
            "decision": "allow",
            "user": "emu_marketer",
        },
        allow_redirects=False,
    )
    assert answer.status_code == 302
    return parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]


def token_call(emu: Emulator, data: dict[str, str], auth: bool = True) -> requests.Response:
    return requests.post(emu.url + "/v5/oauth/token", data=data, headers=basic() if auth else {})


def test_token_responses_for_both_grants_match_the_spec(openapi: Any, emu: Emulator) -> None:
    code = token_call(
        emu,
        {
            "grant_type": "authorization_code",
            "code": authorization_code(emu),
            "redirect_uri": REDIRECT,
            "continuous_refresh": "true",
        },
    )
    assert code.status_code == 200
    validate(openapi, code)
    refresh = token_call(
        emu, {"grant_type": "refresh_token", "refresh_token": code.json()["refresh_token"]}
    )
    assert refresh.status_code == 200
    validate(openapi, refresh)
    emu.configure(scope_separator=",", extra_scope="pins:read")
    again = token_call(
        emu, {"grant_type": "refresh_token", "refresh_token": refresh.json()["refresh_token"]}
    )
    validate(openapi, again)


def test_token_errors_match_the_spec(openapi: Any, emu: Emulator) -> None:
    answers = [
        token_call(
            emu,
            {"grant_type": "authorization_code", "code": "x", "redirect_uri": REDIRECT},
            auth=False,
        ),
        token_call(
            emu, {"grant_type": "authorization_code", "code": "x", "redirect_uri": REDIRECT}
        ),
        token_call(emu, {"grant_type": "refresh_token", "refresh_token": "pinr_gone"}),
    ]
    assert [a.status_code for a in answers] == [401, 400, 401]
    for answer in answers:
        validate(openapi, answer)


def test_user_account_and_ad_accounts_match_the_spec(openapi: Any, emu: Emulator) -> None:
    token = emu.tokens("emu_marketer")["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    me = requests.get(emu.url + "/v5/user_account", headers=headers)
    assert me.status_code == 200
    validate(openapi, me)
    first = requests.get(emu.url + "/v5/ad_accounts", params={"page_size": 3}, headers=headers)
    assert first.json()["bookmark"]
    validate(openapi, first)
    last = requests.get(
        emu.url + "/v5/ad_accounts",
        params={"page_size": 3, "bookmark": first.json()["bookmark"]},
        headers=headers,
    )
    assert last.json()["bookmark"] is None
    validate(openapi, last)
    analyst = emu.tokens("emu_analyst")["access_token"]
    shared = requests.get(
        emu.url + "/v5/ad_accounts", headers={"Authorization": f"Bearer {analyst}"}
    )
    validate(openapi, shared)


def test_api_errors_match_the_spec(openapi: Any, emu: Emulator) -> None:
    bad = {"Authorization": "Bearer pina_unknown"}
    narrow = {"Authorization": f"Bearer {emu.tokens(scope='ads:read')['access_token']}"}
    good = {"Authorization": f"Bearer {emu.tokens()['access_token']}"}
    answers = [
        (requests.get(emu.url + "/v5/user_account", headers=bad), 401),
        (requests.get(emu.url + "/v5/user_account", headers=narrow), 403),
        (requests.get(emu.url + "/v5/ad_accounts", headers=bad), 401),
        (requests.get(emu.url + "/v5/ad_accounts", params={"page_size": 1}, headers=good), 200),
    ]
    emu.set_faults(rate_429=1.0)
    answers.append((requests.get(emu.url + "/v5/ad_accounts", headers=good), 429))
    emu.set_faults(rate_5xx=1.0)
    answers.append((requests.get(emu.url + "/v5/user_account", headers=good), 503))
    for answer, status in answers:
        assert answer.status_code == status
        validate(openapi, answer)


def test_the_validator_has_teeth(openapi: Any, emu: Emulator) -> None:
    """A response that breaks the schema is caught, so the passes above mean something."""
    from openapi_core.validation.response.exceptions import InvalidData

    token = emu.tokens()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    for path, good, broken in (
        ("/v5/ad_accounts", b'"549755885175"', b'"not-digits"'),
        ("/v5/user_account", b'"BUSINESS"', b'"EMPEROR"'),
    ):
        answer = requests.get(emu.url + path, headers=headers)
        assert good in answer.content
        answer._content = answer.content.replace(good, broken)
        with pytest.raises(InvalidData):
            validate(openapi, answer)


# --- /ad_accounts parameters: the ranges of the description, Pinterest's error shape outside --


@pytest.mark.parametrize(
    "params",
    [
        {"page_size": "0"},
        {"page_size": "251"},  # the description's maximum is 250
        {"page_size": "2.5"},
        {"page_size": "+25"},
        {"page_size": ""},
        {"bookmark": "not a bookmark"},
        {"include_shared_accounts": "yes"},
        {"pagesize": "25"},  # misspelt: not silently the default
        {"limit": "25"},
    ],
)
def test_ad_accounts_refuses_parameters_outside_the_spec(
    openapi: Any, emu: Emulator, params: dict[str, str]
) -> None:
    headers = {"Authorization": f"Bearer {emu.tokens()['access_token']}"}
    answer = requests.get(emu.url + "/v5/ad_accounts", params=params, headers=headers)
    assert answer.status_code == 400
    body = answer.json()
    assert set(body) == {"code", "message"} and isinstance(body["code"], int)
    assert next(iter(params)) in body["message"]
    validate(openapi, answer)


def test_ad_accounts_takes_the_documented_range(openapi: Any, emu: Emulator) -> None:
    headers = {"Authorization": f"Bearer {emu.tokens('emu_analyst')['access_token']}"}
    for params, ids in (
        ({"page_size": "1"}, ["549755885175"]),
        ({"page_size": "250", "include_shared_accounts": "true"}, ["549755885175"]),
        ({"include_shared_accounts": "FALSE"}, []),  # emu_analyst owns none of them
        ({}, ["549755885175"]),
    ):
        answer = requests.get(emu.url + "/v5/ad_accounts", params=params, headers=headers)
        assert answer.status_code == 200, (params, answer.text)
        assert [a["id"] for a in answer.json()["items"]] == ids
        validate(openapi, answer)
