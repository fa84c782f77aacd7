"""Settings: precedence (flag > env > file > default), every error path, also through the CLI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pinmigrate.errors import ConfigError
from pinmigrate.settings import Settings, env_name, load_settings


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No stray ./pinmigrate.toml or user config: work in an empty dir with a private XDG home."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for name in list(os.environ):
        if name.startswith("PINMIGRATE_"):
            monkeypatch.delenv(name)
    return work


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- precedence ------------------------------------------------------------------------------


def test_defaults_when_nothing_is_set():
    settings = load_settings(env={})
    assert settings.config_path is None
    assert settings.adobe.sandboxes == ("prod",)
    assert settings.adobe.platform_url == "https://platform.adobe.io"
    assert settings.pinterest.redirect_uri == "http://localhost:8085/"
    assert settings.migration.concurrency == 8
    assert settings.migration.disable_legacy is True
    assert settings.source_of("migration.concurrency") == "default"


def test_file_beats_default(isolated):
    write(isolated / "pinmigrate.toml", "[migration]\nconcurrency = 4\n")
    settings = load_settings(env={})
    assert settings.migration.concurrency == 4
    assert settings.config_path == Path("pinmigrate.toml")
    assert settings.source_of("migration.concurrency") == "pinmigrate.toml"


def test_env_beats_file(isolated):
    write(isolated / "pinmigrate.toml", "[migration]\nconcurrency = 4\n")
    settings = load_settings(env={"PINMIGRATE_MIGRATION_CONCURRENCY": "6"})
    assert settings.migration.concurrency == 6
    assert (
        settings.source_of("migration.concurrency")
        == "environment PINMIGRATE_MIGRATION_CONCURRENCY"
    )


def test_flag_beats_env_and_file(isolated):
    write(isolated / "pinmigrate.toml", "[migration]\nconcurrency = 4\n")
    settings = load_settings(
        env={"PINMIGRATE_MIGRATION_CONCURRENCY": "6"},
        overrides={"migration.concurrency": 12, "migration.disable_legacy": None},
    )
    assert settings.migration.concurrency == 12
    assert settings.source_of("migration.concurrency") == "command-line flag"
    # A flag left unset (None) does not hide the lower layers.
    assert settings.migration.disable_legacy is True


def test_a_flag_does_not_hide_a_bad_value_underneath(isolated):
    write(isolated / "pinmigrate.toml", '[migration]\nconcurrency = "many"\n')
    with pytest.raises(ConfigError, match=r"migration\.concurrency"):
        load_settings(env={}, overrides={"migration.concurrency": 2})


def test_a_flag_names_itself_as_the_source(isolated):
    settings = load_settings(
        env={},
        overrides={"migration.concurrency": 3},
        flags={"migration.concurrency": "--concurrency"},
    )
    assert settings.source_of("migration.concurrency") == "flag --concurrency"


def test_each_key_falls_through_separately(isolated):
    write(
        isolated / "pinmigrate.toml",
        '[adobe]\norg_id = "FILE@AdobeOrg"\nclient_id = "file-client"\n',
    )
    settings = load_settings(env={"PINMIGRATE_ADOBE_CLIENT_ID": "env-client"})
    assert settings.adobe.org_id == "FILE@AdobeOrg"
    assert settings.adobe.client_id == "env-client"


def test_config_file_lookup_order(isolated, tmp_path):
    xdg = write(tmp_path / "xdg" / "pinmigrate" / "config.toml", "[migration]\nconcurrency = 2\n")
    assert load_settings(env={}).config_path == xdg
    local = write(isolated / "pinmigrate.toml", "[migration]\nconcurrency = 3\n")
    assert load_settings(env={}).migration.concurrency == 3
    explicit = write(tmp_path / "other.toml", "[migration]\nconcurrency = 5\n")
    assert load_settings(config_path=explicit, env={}).migration.concurrency == 5
    from_env = load_settings(env={"PINMIGRATE_CONFIG": str(explicit)})
    assert from_env.config_path == explicit and from_env.migration.concurrency == 5
    assert local.exists()


def test_lists_from_env_and_file(isolated):
    write(isolated / "pinmigrate.toml", '[adobe]\nsandboxes = ["Prod", "dev"]\n')
    assert load_settings(env={}).adobe.sandboxes == ("prod", "dev")
    env = {
        "PINMIGRATE_ADOBE_SANDBOXES": " prod , Stage ,",
        "PINMIGRATE_PINTEREST_SCOPES": "ads:read",
    }
    settings = load_settings(env=env)
    assert settings.adobe.sandboxes == ("prod", "stage")
    assert settings.pinterest.scopes == ("ads:read",)


def test_booleans_and_numbers_from_env():
    settings = load_settings(
        env={
            "PINMIGRATE_MIGRATION_DISABLE_LEGACY": "false",
            "PINMIGRATE_MIGRATION_RECONNECT_MARGIN_DAYS": "3",
        }
    )
    assert settings.migration.disable_legacy is False
    assert settings.migration.reconnect_margin_days == 3


def test_a_reconnect_margin_of_a_whole_grant_is_refused_with_the_reason():
    with pytest.raises(ConfigError) as err:
        load_settings(env={"PINMIGRATE_MIGRATION_RECONNECT_MARGIN_DAYS": "30"})
    line = err.value.line()
    assert "migration.reconnect_margin_days" in line and "30 days a Pinterest grant lasts" in line
    assert load_settings(env={"PINMIGRATE_MIGRATION_RECONNECT_MARGIN_DAYS": "29"})


def test_secrets_are_never_shown():
    settings = load_settings(
        env={
            "PINMIGRATE_ADOBE_CLIENT_SECRET": "very-secret-1",
            "PINMIGRATE_PINTEREST_REFRESH_TOKEN": "pinr_abc",
        }
    )
    assert "very-secret-1" not in repr(settings) and "pinr_abc" not in str(settings)
    assert set(settings.secret_values()) == {"very-secret-1", "pinr_abc"}


def test_state_dir_from_env(tmp_path):
    settings = load_settings(env={"PINMIGRATE_STATE_DIR": str(tmp_path / "st")})
    assert settings.state_dir == tmp_path / "st"


def test_non_setting_environment_is_ignored():
    settings = load_settings(
        env={
            "PINMIGRATE_OUTPUT": "json",
            "PINMIGRATE_CONFIG": "",
            "OTHER": "x",
            "PINMIGRATE_FOO_BAR": "1",
        }
    )
    assert isinstance(settings, Settings)


# --- error paths -----------------------------------------------------------------------------

BAD_FILES = [
    ("[adobe\norg_id = 1", "is not valid TOML"),
    ('[adobe]\nclient_sceret = "x"\n', "unknown key adobe.client_sceret"),
    ('[adobee]\norg_id = "x"\n', "unknown section [adobee]"),
    ("adobe = 3\n", "must be a table"),
    ('[migration]\nconcurrency = "many"\n', "invalid setting migration.concurrency"),
    ("[migration]\nconcurrency = 0\n", "invalid setting migration.concurrency"),
    ("[migration]\ndisable_legacy = 7\n", "invalid setting migration.disable_legacy"),
    ('[adobe]\norg_id = "1234"\n', "@AdobeOrg"),
    ('[adobe]\nplatform_url = "ftp://platform.adobe.io"\n', "not an http(s) URL"),
    ('[adobe]\nims_url = "not a url"\n', "invalid setting adobe.ims_url"),
    ("[adobe]\nsandboxes = []\n", "at least one sandbox"),
    ('[pinterest]\nredirect_uri = "http://example.com:8085/"\n', "not a loopback address"),
    ('[pinterest]\nredirect_uri = "https://localhost:8085/"\n', "http:// loopback URL"),
    ('[pinterest]\nredirect_uri = "http://localhost/"\n', "needs an explicit port"),
    ('[adobe]\nims_url = "http://ims-na1.adobelogin.com"\n', "adobe.ims_url"),
    ('[pinterest]\napi_url = "http://api.pinterest.com/v5"\n', "must be https"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_FILES)
def test_bad_config_file(isolated, text, expected):
    write(isolated / "pinmigrate.toml", text)
    with pytest.raises(ConfigError) as info:
        load_settings(env={})
    assert expected in info.value.line()
    assert info.value.exit_code == 64


def test_wrong_type_names_the_key_and_where_it_came_from(isolated):
    write(isolated / "pinmigrate.toml", '[migration]\nconcurrency = "many"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(env={})
    assert "migration.concurrency (from pinmigrate.toml)" in info.value.line()
    with pytest.raises(ConfigError) as info:
        load_settings(env={"PINMIGRATE_MIGRATION_CONCURRENCY": "lots"})
    assert "from environment PINMIGRATE_MIGRATION_CONCURRENCY" in info.value.line()


def test_unknown_environment_key():
    with pytest.raises(ConfigError) as info:
        load_settings(env={"PINMIGRATE_ADOBE_CLIENTID": "x"})
    assert "PINMIGRATE_ADOBE_CLIENTID" in info.value.line()
    assert "client_id" in info.value.line()  # the known keys are listed


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config_path=tmp_path / "nope.toml", env={})


def test_config_file_that_is_not_utf8(isolated):
    (isolated / "pinmigrate.toml").write_bytes(b'[adobe]\norg_id = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(env={})


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, "adobe.org_id"),
        ({"PINMIGRATE_ADOBE_ORG_ID": "A@AdobeOrg"}, "adobe.client_id"),
        (
            {"PINMIGRATE_ADOBE_ORG_ID": "A@AdobeOrg", "PINMIGRATE_ADOBE_CLIENT_ID": "c"},
            "adobe.client_secret",
        ),
    ],
)
def test_require_adobe_names_the_missing_key(env, missing):
    settings = load_settings(env=env)
    with pytest.raises(ConfigError) as info:
        settings.require_adobe()
    assert f"missing required setting {missing}" in info.value.line()
    assert env_name(missing) in info.value.line()


def test_require_adobe_passes_when_complete():
    load_settings(
        env={
            "PINMIGRATE_ADOBE_ORG_ID": "A@AdobeOrg",
            "PINMIGRATE_ADOBE_CLIENT_ID": "c",
            "PINMIGRATE_ADOBE_CLIENT_SECRET": "s",
        }
    ).require_adobe()


#: The endpoints pinmigrate sends secrets to, and the page a person signs in on.
ENDPOINTS = {
    "adobe.ims_url": "{scheme}://{host}",
    "adobe.platform_url": "{scheme}://{host}",
    "adobe.ui_url": "{scheme}://{host}/ui/{{org_id}}/{{sandbox}}/destination/accounts/{{account_id}}",
    "pinterest.api_url": "{scheme}://{host}/v5",
    "pinterest.oauth_url": "{scheme}://{host}/oauth/",
}


@pytest.mark.parametrize("key", sorted(ENDPOINTS))
@pytest.mark.parametrize(
    "host", ["platform.adobe.io", "10.0.0.1:8080", "[2001:db8::1]", "127.0.0.1.nip.io", "0.0.0.0"]
)
def test_plain_http_to_another_host_is_refused(isolated, key, host):
    url = ENDPOINTS[key].format(scheme="http", host=host)
    with pytest.raises(ConfigError) as info:
        load_settings(env={env_name(key): url})
    line = info.value.line()
    assert line.startswith(f"invalid setting {key} (from environment {env_name(key)}): ")
    assert "must be https" in line and "loopback" in line
    assert info.value.exit_code == 64
    # The same host over https is fine.
    https = ENDPOINTS[key].format(scheme="https", host=host)
    assert load_settings(env={env_name(key): https}) is not None


@pytest.mark.parametrize("key", sorted(ENDPOINTS))
@pytest.mark.parametrize("host", ["127.0.0.1:8080", "127.8.9.10", "localhost:1", "[::1]:8080"])
def test_plain_http_to_a_loopback_host_is_allowed(isolated, key, host):
    url = ENDPOINTS[key].format(scheme="http", host=host)
    section, name = key.split(".")
    settings = load_settings(env={env_name(key): url})
    assert getattr(getattr(settings, section), name).startswith(f"http://{host}")


def test_loopback_redirects_are_accepted():
    for uri in ("http://localhost:8085/", "http://127.0.0.1:9999/cb", "http://[::1]:8085/"):
        assert (
            load_settings(env={"PINMIGRATE_PINTEREST_REDIRECT_URI": uri}).pinterest.redirect_uri
            == uri
        )


# --- the same errors through the CLI ---------------------------------------------------------


def assert_one_clean_line(result, *fragments: str) -> None:
    assert result.exit_code == 64, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(("text", "expected"), BAD_FILES)
def test_bad_config_file_through_the_cli(cli, isolated, text, expected):
    write(isolated / "pinmigrate.toml", text)
    assert_one_clean_line(cli(["doctor"]), expected)


def test_bad_explicit_config_through_the_cli(cli, isolated):
    path = write(isolated / "custom.toml", "[adobe]\nnope = 1\n")
    assert_one_clean_line(
        cli(["--config", str(path), "doctor"]), "unknown key adobe.nope", str(path)
    )
    assert_one_clean_line(cli(["doctor", "--config", str(path)]), "unknown key adobe.nope")
    assert_one_clean_line(cli(["doctor"], env={"PINMIGRATE_CONFIG": str(path)}), "adobe.nope")
    assert_one_clean_line(cli(["doctor", "--config", "missing.toml"]), "does not exist")


def test_bad_environment_through_the_cli(cli):
    assert_one_clean_line(
        cli(["doctor"], env={"PINMIGRATE_MIGRATION_CONCURRENCY": "x"}), "migration.concurrency"
    )
    assert_one_clean_line(
        cli(
            ["doctor"],
            env={"PINMIGRATE_PINTEREST_REDIRECT_URI": "http://pinmigrate.example.com:80/"},
        ),
        "not a loopback address",
    )
    assert_one_clean_line(
        cli(["doctor"], env={"PINMIGRATE_ADOBE_PLATFORM_URL": "platform"}), "adobe.platform_url"
    )
    assert_one_clean_line(
        cli(["doctor"], env={"PINMIGRATE_ADOBE_SECRET": "x"}), "PINMIGRATE_ADOBE_SECRET"
    )


def test_missing_required_key_through_the_cli(cli, tmp_path):
    result = cli(["doctor"], env={"PINMIGRATE_STATE_DIR": str(tmp_path / "state")})
    assert_one_clean_line(result, "adobe.org_id", "PINMIGRATE_ADOBE_ORG_ID")


def test_secret_values_never_reach_the_cli_output(cli, isolated):
    secret = "do-not-print-this-secret-123"
    write(isolated / "pinmigrate.toml", '[migration]\nconcurrency = "x"\n')
    result = cli(["-v", "doctor"], env={"PINMIGRATE_ADOBE_CLIENT_SECRET": secret})
    assert result.exit_code == 64
    assert secret not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "key",
    [
        "adobe.client_secret",
        "pinterest.app_secret",
        "pinterest.refresh_token",
        "pinterest.access_token",
    ],
)
@pytest.mark.parametrize("gap", ["\n", "\r\n", " ", "\t", "\x00"])
def test_a_secret_broken_inside_is_refused_without_showing_it(isolated, key, gap):
    value = f"SECRETHEAD0123{gap}SECRETTAIL4567"
    with pytest.raises(ConfigError) as info:
        load_settings(env={env_name(key): value})
    line = info.value.line()
    assert line.startswith(f"invalid setting {key} (from environment {env_name(key)}): ")
    assert "line break" in line and "SECRETHEAD" not in line and "SECRETTAIL" not in line
    # Whitespace around a secret (a file's last newline) is only trimmed.
    section, name = key.split(".")
    trimmed = getattr(
        getattr(load_settings(env={env_name(key): f" {value[:14]}\n"}), section), name
    )
    assert trimmed.get_secret_value() == "SECRETHEAD0123"


def test_a_missing_setting_without_a_config_file_says_where_one_was_looked_for(
    isolated, monkeypatch
):
    settings = load_settings(env={})
    with pytest.raises(ConfigError) as info:
        settings.require_adobe()
    line = info.value.line()
    looked = f"{Path.cwd() / 'pinmigrate.toml'} and "
    assert (
        f"missing required setting adobe.org_id: no config file found (looked for {looked}" in line
    )
    assert "run `pinmigrate init` to write one, or set PINMIGRATE_ADOBE_ORG_ID" in line


def test_a_missing_setting_with_a_config_file_does_not_suggest_init(isolated):
    (isolated / "pinmigrate.toml").write_text("[migration]\nconcurrency = 2\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(env={}).require_adobe()
    assert "no config file" not in info.value.line() and "init" not in info.value.line()
    assert "add org_id to [adobe] in the config file" in info.value.line()
