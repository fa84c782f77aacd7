"""The CLI shell: version, help, usage errors (exit 64), global options before or after."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pinmigrate import __version__
from pinmigrate.cli import COMMANDS


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    return work


#: Settings that fail fast without any network: doctor stops at "adobe credentials".
OFFLINE = {"PINMIGRATE_PINTEREST_APP_ID": "1", "PINMIGRATE_PINTEREST_APP_SECRET": "s3cret-app"}


def test_version(cli):
    result = cli(["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"pinmigrate, version {__version__}"


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_command(cli, flag):
    result = cli([flag])
    assert result.exit_code == 0
    for name, (_, summary) in COMMANDS.items():
        assert f"  {name} " in result.stdout
        assert summary in result.stdout
    for option in ("--config", "--output", "--no-input", "--no-color", "--verbose", "--version"):
        assert option in result.stdout
    assert result.stderr == ""


def test_bare_invocation_shows_help_and_succeeds(cli):
    result = cli([])
    assert result.exit_code == 0
    assert "Commands:" in result.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(cli, name):
    text = importlib.import_module(COMMANDS[name][0]).command.help
    assert text, f"{name} has no help text"
    result = cli([name, "--help"])
    assert result.exit_code == 0, result.stderr
    assert f"pinmigrate {name}" in result.stdout
    assert " ".join(text.split()[:6]) in " ".join(result.stdout.split())
    assert "--output" in result.stdout  # global options are accepted after the command too


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--bogus"], "No such option '--bogus'"),
        (["doctor", "--bogus"], "No such option '--bogus'"),
        (["no-such-command"], "No such command 'no-such-command'"),
        (["--output", "yaml", "doctor"], "'yaml' is not one of"),
        (["doctor", "--output", "xml"], "'xml' is not one of"),
        (["doctor", "unexpected-arg"], "unexpected extra argument"),
    ],
)
def test_usage_errors_exit_64_with_one_line(cli, args, fragment):
    result = cli(args)
    assert result.exit_code == 64
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pinmigrate: ")
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["--output", "json", "doctor"],
        ["doctor", "--output", "json"],
    ],
)
def test_global_options_before_or_after_the_command(cli, args, tmp_path):
    result = cli(args, env={**OFFLINE, "PINMIGRATE_STATE_DIR": str(tmp_path / "s")})
    payload = json.loads(result.stdout)
    assert payload["kind"] == "pinmigrate.doctor"
    assert result.exit_code == 64  # no Adobe credentials: a config failure


def test_output_from_the_environment(cli, tmp_path):
    result = cli(
        ["doctor"],
        env={**OFFLINE, "PINMIGRATE_OUTPUT": "json", "PINMIGRATE_STATE_DIR": str(tmp_path)},
    )
    assert json.loads(result.stdout)["kind"] == "pinmigrate.doctor"


def test_flag_after_the_command_beats_the_one_before(cli, tmp_path):
    result = cli(
        ["--output", "text", "doctor", "--output", "json"],
        env={**OFFLINE, "PINMIGRATE_STATE_DIR": str(tmp_path)},
    )
    assert json.loads(result.stdout)["kind"] == "pinmigrate.doctor"


@pytest.mark.parametrize("where", ["before", "after"])
def test_config_option_before_or_after(cli, isolated, where):
    path = isolated / "elsewhere.toml"
    path.write_text('[migration]\nconcurrency = "x"\n', encoding="utf-8")
    args = (
        ["--config", str(path), "doctor"]
        if where == "before"
        else ["doctor", "--config", str(path)]
    )
    result = cli(args)
    assert result.exit_code == 64
    assert "migration.concurrency" in result.stderr and str(path) in result.stderr


@pytest.mark.parametrize("where", ["before", "after"])
def test_init_accepts_globals_anywhere(cli, isolated, where):
    target = isolated / f"{where}.toml"
    args = (
        ["--output", "json", "init", str(target)]
        if where == "before"
        else ["init", str(target), "--output", "json"]
    )
    result = cli(args)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "schema_version": 1,
        "kind": "pinmigrate.init",
        "path": str(target),
    }
    assert target.is_file()


def test_no_input_and_no_color_are_accepted_anywhere(cli, isolated):
    for args in (
        ["--no-input", "--no-color", "init", "a.toml"],
        ["init", "b.toml", "--no-input", "--no-color"],
    ):
        assert cli(args).exit_code == 0


def test_verbose_counts(cli, tmp_path):
    result = cli(["-vv", "doctor"], env={**OFFLINE, "PINMIGRATE_STATE_DIR": str(tmp_path)})
    assert result.exit_code == 64
    # -v may show the traceback (that is what it is for), but the last line is still the one.
    assert result.stderr.strip().splitlines()[-1].startswith("pinmigrate: doctor: ")


def test_help_stays_cheap():
    """``pinmigrate --help`` imports neither requests nor pydantic nor the emulator."""
    code = (
        "import sys\n"
        "from pinmigrate.cli import run\n"
        "run(['--help'])\n"
        "heavy = ('requests', 'pydantic', 'rich', 'pinmigrate.emulator', 'pinmigrate.adobe')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PINMIGRATE_")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    assert "HEAVY []" in out.stdout, out.stdout[-500:]


def test_python_dash_m_entry_point(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PINMIGRATE_")}
    out = subprocess.run(
        [sys.executable, "-m", "pinmigrate", "--bogus"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=tmp_path,
    )
    assert out.returncode == 64
    assert out.stderr.count("\n") == 1


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_a_bad_flag_is_named_before_a_missing_config(cli, tmp_path, monkeypatch, command):
    # No Adobe settings at all: the flag the operator just typed is still what is reported.
    monkeypatch.chdir(tmp_path)
    result = cli(
        [command, "--match", "abc"],
        {"XDG_CONFIG_HOME": str(tmp_path), "PINMIGRATE_STATE_DIR": str(tmp_path / "s")},
    )
    assert result.exit_code == 64
    assert "--match 'abc' is not LEGACY_ID=NEW_ID" in result.stderr
