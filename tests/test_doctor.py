"""``pinmigrate doctor``: one line per check, JSON shape, exit codes, no writes, no secrets."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from pinmigrate.adobe import AdobeClient
from pinmigrate.app import App
from pinmigrate.commands.doctor import doctor
from pinmigrate.errors import PinmigrateError
from pinmigrate.http import HttpClient
from pinmigrate.settings import Settings

IMS = "https://ims.doctor.test"
PLATFORM = "https://platform.doctor.test"
BASE = f"{PLATFORM}/data/foundation/flowservice"
CLIENT_SECRET = "doctor-client-secret-5150"
IMS_TOKEN = "doctor-ims-token-8675309"
UI = "https://experience.adobe.com/#/sname:{sandbox}/platform/destination/accounts"
SPECS = {
    "(Deprecating) Pinterest": "legacy-spec-id",
    "Pinterest": "new-spec-id",
    "(Beta) Pinterest Conversions": "conversions-spec-id",
}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return {
        "PINMIGRATE_ADOBE_ORG_ID": "DOCTOR0000@AdobeOrg",
        "PINMIGRATE_ADOBE_CLIENT_ID": "doctor-client",
        "PINMIGRATE_ADOBE_CLIENT_SECRET": CLIENT_SECRET,
        "PINMIGRATE_ADOBE_IMS_URL": IMS,
        "PINMIGRATE_ADOBE_PLATFORM_URL": PLATFORM,
        "PINMIGRATE_ADOBE_SANDBOXES": "prod,dev",
        "PINMIGRATE_PINTEREST_APP_ID": "1234567",
        "PINMIGRATE_PINTEREST_APP_SECRET": "doctor-app-secret-99",
        "PINMIGRATE_STATE_DIR": str(tmp_path / "state"),
    }


def _specs(request: Any) -> tuple[int, dict[str, str], str]:
    wanted = parse_qs(urlsplit(request.url).query).get("property", [""])[0].removeprefix("name==")
    items = [{"id": SPECS[wanted], "name": wanted}] if wanted in SPECS else []
    return 200, {}, json.dumps({"items": items})


@pytest.fixture
def adobe() -> Iterator[responses.RequestsMock]:
    """A healthy Adobe: IMS, both sandboxes, both cards."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(
            responses.POST,
            f"{IMS}/ims/token/v3",
            json={"access_token": IMS_TOKEN, "expires_in": 86399},
        )
        mock.add(
            responses.GET,
            f"{BASE}/flows",
            json={
                "items": [{"id": "f"}],
                "_links": {"next": {"href": "/flows?continuationToken=2"}},
            },
        )
        mock.add_callback(responses.GET, f"{BASE}/connectionSpecs", callback=_specs)
        yield mock


def lines(result: Any) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.strip()]


def checks(result: Any) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in result.json()["checks"]}


def replace_response(mock: responses.RequestsMock, method: str, url: str, **kwargs: Any) -> None:
    mock.remove(method, url)
    mock.add(method, url, **kwargs)


def test_all_good_without_a_login_is_exit_0_with_a_warning(cli, env, adobe):
    result = cli(["doctor"], env=env)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert lines(result) == [
        f"✓ config: no config file found (looked for {Path.cwd() / 'pinmigrate.toml'} and "
        f"{Path(os.environ['XDG_CONFIG_HOME']) / 'pinmigrate' / 'config.toml'}): environment "
        "and defaults; `pinmigrate init` writes one, 9 settings from the environment",
        f"✓ adobe credentials: IMS issued a token for client doctor-client ({IMS})",
        f"✓ sandbox prod: reachable at {PLATFORM}",
        f"✓ sandbox dev: reachable at {PLATFORM}",
        "✓ legacy card in prod: (Deprecating) Pinterest = legacy-spec-id",
        "✓ new card in prod: Pinterest = new-spec-id",
        "✓ legacy card in dev: (Deprecating) Pinterest = legacy-spec-id",
        "✓ new card in dev: Pinterest = new-spec-id",
        "✓ reconnect: by a person in Adobe (Reconnect OAuth); apply names the accounts and "
        f"opens {UI}",
        "✓ pinterest app: app 1234567, redirect http://localhost:8085/ (loopback)",
        f"! logins: no login stored yet in {env['PINMIGRATE_STATE_DIR']}; optional: "
        "`pinmigrate auth login` lets plan check that a Pinterest user reaches every ad account",
    ]


def test_sandbox_check_is_one_cheap_call_per_sandbox(cli, env, adobe):
    cli(["doctor"], env=env)
    flow_calls = [c for c in adobe.calls if urlsplit(c.request.url).path.endswith("/flows")]
    assert [c.request.headers["x-sandbox-name"] for c in flow_calls] == ["prod", "dev"]
    assert all(parse_qs(urlsplit(c.request.url).query)["limit"] == ["1"] for c in flow_calls)
    token_calls = [c for c in adobe.calls if "/ims/token" in c.request.url]
    assert len(token_calls) == 1


def test_json_output(cli, env, adobe):
    result = cli(["doctor", "--output", "json"], env=env)
    assert result.exit_code == 0
    payload = result.json()
    assert payload["kind"] == "pinmigrate.doctor"
    assert payload["ok"] is True
    assert [c["name"] for c in payload["checks"]] == [
        "config",
        "adobe credentials",
        "sandbox prod",
        "sandbox dev",
        "legacy card in prod",
        "new card in prod",
        "legacy card in dev",
        "new card in dev",
        "reconnect",
        "pinterest app",
        "logins",
    ]
    assert all(set(c) == {"name", "status", "detail"} for c in payload["checks"])
    assert checks(result)["logins"]["status"] == "warn"
    assert {c["status"] for c in payload["checks"][:-1]} == {"ok"}


def test_ims_refusing_is_exit_4_after_every_line(cli, env, adobe):
    replace_response(
        adobe,
        responses.POST,
        f"{IMS}/ims/token/v3",
        status=400,
        json={"error": "invalid_client", "error_description": "invalid client_secret parameter"},
    )
    result = cli(["doctor"], env=env)
    assert result.exit_code == 4
    out = lines(result)
    assert [line.split(":")[0] for line in out] == [
        "✓ config",
        "✗ adobe credentials",
        "✓ reconnect",
        "✓ pinterest app",
        "! logins",
    ]
    assert "adobe.client_id and adobe.client_secret" in out[1]
    stderr = result.stderr.strip().splitlines()
    assert len(stderr) == 1
    assert stderr[0].startswith("pinmigrate: doctor: 1 check failed (adobe credentials)")
    assert "invalid client_secret parameter" in stderr[0]


def test_unreachable_ims_is_exit_1(env, adobe, capsys):
    import requests

    replace_response(
        adobe,
        responses.POST,
        f"{IMS}/ims/token/v3",
        body=requests.ConnectionError("Connection refused"),
    )
    sleeps: list[float] = []

    def adobe_client(settings: Settings) -> AdobeClient:
        return AdobeClient(settings, http=HttpClient(service="adobe", sleep=sleeps.append))

    with pytest.raises(PinmigrateError) as failed:
        doctor(App(output="json", env=env), adobe_client=adobe_client)
    assert failed.value.exit_code == 1
    found = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert "connection refused" in found["adobe credentials"]["detail"]
    assert sleeps  # retried, with the injected sleep


def test_a_sandbox_without_access(cli, env, adobe):
    def by_sandbox(request: Any) -> tuple[int, dict[str, str], str]:
        if request.headers["x-sandbox-name"] == "dev":
            return (
                403,
                {},
                json.dumps({"error_code": "403027", "message": "No access to sandbox dev"}),
            )
        return 200, {}, json.dumps({"items": []})

    adobe.remove(responses.GET, f"{BASE}/flows")
    adobe.add_callback(responses.GET, f"{BASE}/flows", callback=by_sandbox)
    result = cli(["doctor", "--output", "json"], env=env)
    assert result.exit_code == 4
    found = checks(result)
    assert found["sandbox prod"]["status"] == "ok"
    assert found["sandbox dev"]["status"] == "fail"
    assert "No access to sandbox dev" in found["sandbox dev"]["detail"]
    # The cards are looked up in the sandboxes that work only.
    assert found["legacy card in prod"]["status"] == "ok"
    assert "legacy card in dev" not in found


def test_a_broken_sandbox_is_exit_1(cli, env, adobe):
    replace_response(
        adobe,
        responses.GET,
        f"{BASE}/flows",
        status=500,
        json={"title": "Internal error", "errorMessage": "Flow Service is down"},
    )
    result = cli(["doctor"], env=env)
    assert result.exit_code == 1
    failed = [line for line in lines(result) if line.startswith("✗")]
    assert len(failed) == 2 and all("Flow Service is down" in line for line in failed)


def test_a_missing_card_names_the_name_looked_for(cli, env, adobe):
    env["PINMIGRATE_MIGRATION_NEW_DESTINATION"] = "(New) Pinterest v5"
    result = cli(["doctor"], env=env)
    assert result.exit_code == 1
    failed = [line for line in lines(result) if line.startswith("✗")]
    assert len(failed) == 2  # one per sandbox
    for line, sandbox in zip(failed, ("prod", "dev"), strict=True):
        assert "new card" in line
        assert f"'(New) Pinterest v5' in sandbox {sandbox}" in line
        assert "migration.new_spec_id" in line
    assert "new card" in result.stderr


def test_the_draft_card_name_is_found_and_shown(cli, env, adobe):
    SPECS["(New) Pinterest"] = SPECS.pop("Pinterest")
    try:
        result = cli(["doctor"], env=env)
    finally:
        SPECS["Pinterest"] = SPECS.pop("(New) Pinterest")
    assert result.exit_code == 0, result.stderr
    assert "✓ new card in prod: (New) Pinterest = new-spec-id" in lines(result)


def test_spec_id_overrides_are_checked_by_id(cli, env, adobe):
    env["PINMIGRATE_MIGRATION_LEGACY_SPEC_ID"] = "legacy-by-id"
    env["PINMIGRATE_MIGRATION_NEW_SPEC_ID"] = "no-such-spec"
    adobe.add(
        responses.GET,
        f"{BASE}/connectionSpecs/legacy-by-id",
        json={"items": [{"id": "legacy-by-id", "name": "(Deprecating) Pinterest"}]},
    )
    adobe.add(
        responses.GET,
        f"{BASE}/connectionSpecs/no-such-spec",
        status=404,
        json={"errorMessage": "not found"},
    )
    result = cli(["doctor", "--output", "json"], env=env)
    found = checks(result)
    assert found["legacy card in dev"]["status"] == "ok"
    assert "legacy-by-id (from migration.legacy_spec_id)" in found["legacy card in dev"]["detail"]
    assert found["new card in dev"]["status"] == "fail"
    assert (
        "no-such-spec" in found["new card in dev"]["detail"]
        and "migration.new_spec_id" in found["new card in dev"]["detail"]
    )
    assert result.exit_code == 1


def test_no_pinterest_app_only_warns_as_the_login_is_optional(cli, env, adobe):
    del env["PINMIGRATE_PINTEREST_APP_ID"]
    del env["PINMIGRATE_PINTEREST_APP_SECRET"]
    result = cli(["doctor", "--output", "json"], env=env)
    assert result.exit_code == 0, result.stdout
    found = checks(result)["pinterest app"]
    assert found["status"] == "warn" and "optional" in found["detail"]
    assert "pre-flight" in found["detail"]


def test_missing_pinterest_app_is_a_config_failure_on_the_api_path(cli, env, adobe):
    del env["PINMIGRATE_PINTEREST_APP_SECRET"]
    env["PINMIGRATE_MIGRATION_RECONNECT_VIA"] = "api"
    result = cli(["doctor", "--output", "json"], env=env)
    assert checks(result)["reconnect"]["status"] == "warn"
    assert "experimental" in checks(result)["reconnect"]["detail"]
    assert result.exit_code == 64
    assert "pinterest.app_secret" in checks(result)["pinterest app"]["detail"]
    assert result.json()["ok"] is False


def test_access_token_without_app_only_warns(cli, env, adobe):
    del env["PINMIGRATE_PINTEREST_APP_ID"]
    del env["PINMIGRATE_PINTEREST_APP_SECRET"]
    env["PINMIGRATE_PINTEREST_ACCESS_TOKEN"] = "pina_ci_token_abcdef"
    result = cli(["doctor", "--output", "json"], env=env)
    assert result.exit_code == 0
    found = checks(result)
    assert found["pinterest app"]["status"] == "warn"
    assert found["logins"]["status"] == "ok"
    assert "pinterest.access_token set" in found["logins"]["detail"]
    assert "pina_ci_token_abcdef" not in result.stdout + result.stderr


def test_config_failure_wins_over_auth_failure(cli, env, adobe):
    replace_response(
        adobe, responses.POST, f"{IMS}/ims/token/v3", status=401, json={"error": "invalid_client"}
    )
    del env["PINMIGRATE_PINTEREST_APP_ID"]
    env["PINMIGRATE_MIGRATION_RECONNECT_VIA"] = "api"  # where the Pinterest app is required
    result = cli(["doctor"], env=env)
    assert result.exit_code == 64
    assert len(lines(result)) == 5


def test_broken_config_is_one_line_and_exit_64(cli, env):
    env["PINMIGRATE_MIGRATION_CONCURRENCY"] = "lots"
    result = cli(["doctor", "--output", "json"], env=env)
    assert result.exit_code == 64
    payload = result.json()
    assert payload["ok"] is False
    assert [c["name"] for c in payload["checks"]] == ["config"]
    assert "migration.concurrency" in payload["checks"][0]["detail"]


def test_config_file_is_named(cli, env, adobe, tmp_path):
    path = tmp_path / "my.toml"
    path.write_text("[migration]\nconcurrency = 2\n", encoding="utf-8")
    result = cli(["doctor", "--config", str(path), "--output", "json"], env=env)
    assert checks(result)["config"]["detail"].startswith(f"loaded from {path}")


def store_login(state_dir: Path, expires: datetime, username: str = "emu_marketer") -> None:
    from pydantic import SecretStr

    from pinmigrate.logins import AdAccountAccess, Login, LoginStore

    LoginStore(state_dir).put(
        Login(
            user_id="1000000001",
            username=username,
            ad_accounts=[AdAccountAccess(id="549755885175")],
            access_token=SecretStr("pina_stored_token_1"),
            refresh_token=SecretStr("pinr_stored_token_1"),
            access_expires_at=expires - timedelta(days=30),
            refresh_expires_at=expires,
        )
    )


def test_stored_logins_are_listed(cli, env, adobe):
    expires = datetime.now(UTC) + timedelta(days=40)
    store_login(Path(env["PINMIGRATE_STATE_DIR"]), expires)
    result = cli(["doctor", "--output", "json"], env=env)
    assert result.exit_code == 0
    logins = checks(result)["logins"]
    assert logins["status"] == "ok"
    assert logins["detail"] == f"1 stored: emu_marketer, until {expires.date().isoformat()}"
    assert "pina_stored_token_1" not in result.stdout + result.stderr


def test_expired_stored_login_warns(cli, env, adobe):
    store_login(Path(env["PINMIGRATE_STATE_DIR"]), datetime.now(UTC) - timedelta(days=1))
    result = cli(["doctor", "--output", "json"], env=env)
    assert result.exit_code == 0
    assert checks(result)["logins"]["status"] == "warn"
    assert "expired" in checks(result)["logins"]["detail"]


def test_unreadable_login_store_fails(cli, env, adobe):
    state = Path(env["PINMIGRATE_STATE_DIR"])
    state.mkdir()
    (state / "logins.json").write_text("{not json", encoding="utf-8")
    result = cli(["doctor", "--output", "json"], env=env)
    assert result.exit_code == 1
    assert "logins.json" in checks(result)["logins"]["detail"]
    assert (state / "logins.json").read_text(encoding="utf-8") == "{not json"


def test_doctor_writes_nothing(cli, env, adobe):
    state = Path(env["PINMIGRATE_STATE_DIR"])
    cli(["doctor"], env=env)
    assert not state.exists()
    assert list(Path.cwd().iterdir()) == []


def test_no_secret_in_any_output_even_verbose(cli, env, adobe):
    result = cli(["-vv", "doctor"], env=env)
    assert result.exit_code == 0
    everything = result.stdout + result.stderr
    assert "DEBUG pinmigrate.http" in result.stderr  # the requests were logged...
    for secret in (CLIENT_SECRET, IMS_TOKEN, "doctor-app-secret-99"):
        assert secret not in everything  # ...without a secret


def test_doctor_passes_against_the_emulator(cli, emu_env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli(["doctor", "--output", "json"], env=emu_env)
    assert result.exit_code == 0, result.stdout + result.stderr
    found = checks(result)
    assert {name for name, c in found.items() if c["status"] == "ok"} >= {
        "config",
        "adobe credentials",
        "sandbox prod",
        "sandbox dev",
        "legacy card in prod",
        "new card in prod",
        "legacy card in dev",
        "new card in dev",
        "pinterest app",
    }
    assert found["logins"]["status"] == "warn"
    text = cli(["doctor"], env=emu_env)
    assert text.exit_code == 0 and text.stderr == ""
    assert len(lines(text)) == len(found)


@pytest.mark.parametrize("as_text", [False, True])
def test_the_gateways_code_reads_alike_as_a_number_or_a_string(cli, emu_env, emulator, as_text):
    emulator.state.set_config({"gateway_code_text": as_text})
    env = {**emu_env, "PINMIGRATE_ADOBE_SANDBOXES": "prod,restricted"}
    result = cli(["doctor"], env=env)
    assert result.exit_code == 4
    [failed] = [line for line in lines(result) if line.startswith("✗ sandbox restricted")]
    assert "does not exist or is not accessible to this client (403027)" in failed


def test_init_placeholders_are_failed_checks_naming_the_key(cli, env, adobe, tmp_path):
    path = tmp_path / "fresh.toml"
    assert cli(["init", str(path)], env=env).exit_code == 0
    del env["PINMIGRATE_ADOBE_ORG_ID"], env["PINMIGRATE_ADOBE_CLIENT_ID"]
    result = cli(["doctor", "--config", str(path), "--output", "json"], env=env)
    assert result.exit_code == 64
    found = checks(result)
    for key, value in (
        ("adobe.org_id", "1234ABCD5678EF90@AdobeOrg"),
        ("adobe.client_id", "your-client-id"),
    ):
        assert found[key]["status"] == "fail"
        assert found[key]["detail"].startswith(f"still holds the placeholder {value!r} that ")
    assert found["config"]["status"] == "ok"
    assert "adobe credentials" not in found  # the made-up org is never sent to IMS
    assert not [c for c in adobe.calls if "/ims/" in c.request.url]


def test_own_values_in_an_init_file_are_no_placeholders(cli, env, adobe, tmp_path):
    path = tmp_path / "fresh.toml"
    assert cli(["init", str(path)], env=env).exit_code == 0
    result = cli(["doctor", "--config", str(path), "--output", "json"], env=env)
    assert result.exit_code == 0, result.stdout  # the environment's values win
    assert not {"adobe.org_id", "adobe.client_id"} & set(checks(result))
