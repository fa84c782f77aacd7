"""Shared fixtures: an in-process CLI runner and a running emulator on loopback."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        import json

        return json.loads(self.stdout)


def invoke(
    args: list[str], env: Mapping[str, str] | None = None, input: str | None = None
) -> Result:
    """Run the real CLI entry point in-process, with stdout and stderr apart."""
    from pinmigrate.cli import run

    runner = CliRunner()
    clean: dict[str, str | None] = {k: None for k in _pinmigrate_env()}
    # A test that plays a terminal must not wait 15 minutes for a person to reconnect
    # accounts in Adobe: no wait unless the test asks for one.
    clean["PINMIGRATE_MIGRATION_RECONNECT_TIMEOUT"] = "0"
    clean.update(env or {})
    with runner.isolation(input=input, env=clean) as streams:
        code = run(list(args))
        out, err = streams[0].getvalue(), streams[1].getvalue()
    return Result(code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


def _pinmigrate_env() -> list[str]:
    import os

    return [k for k in os.environ if k.startswith("PINMIGRATE_")]


@pytest.fixture(autouse=True)
def _fresh_secret_registry() -> Iterator[None]:
    """Each test starts with no registered secrets, as each pinmigrate process does: a short
    fake secret registered by one test must not mask words in another test's output."""
    from pinmigrate import redact

    redact.reset()
    yield
    redact.reset()


@pytest.fixture
def cli() -> Any:
    return invoke


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def emulator() -> Iterator[Any]:
    """A fresh emulator on a free loopback port with the ``demo`` scenario."""
    from pinmigrate.emulator import Emulator

    emu = Emulator(scenario="demo", port=0)
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def emu_env(emulator: Any, state_dir: Path, tmp_path: Path) -> dict[str, str]:
    """Environment that points the CLI at the emulator, with a private state dir."""
    env = dict(emulator.env())
    env["PINMIGRATE_STATE_DIR"] = str(state_dir)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
    env["XDG_STATE_HOME"] = str(tmp_path / "xdg-state")
    return env
