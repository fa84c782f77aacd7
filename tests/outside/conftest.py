"""Fixtures of the outside-in suite: the independent fake on four ports, and the real CLI run
as a separate process, the way an operator or a CI job runs it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .fake_services import Expected, Services, World, build_scenario

#: Seconds any one CLI run may take before the test fails.
RUN_TIMEOUT = 60


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def world() -> World:
    return World(page_size=2)


@pytest.fixture
def new_card_name() -> str:
    """The new card's name; a test may parametrize it (Adobe's notice says "Pinterest")."""
    return "Pinterest"


@pytest.fixture
def expected(world: World, new_card_name: str) -> Expected:
    return build_scenario(world, new_card_name)


@pytest.fixture
def services(world: World, expected: Expected) -> Iterator[Services]:
    with Services(world) as running:
        yield running


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def env(services: Services, tmp_path: Path, state_dir: Path) -> dict[str, str]:
    """A clean process environment: the fake's settings, private state and config dirs."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PINMIGRATE_", "BROWSER"))}
    home = tmp_path / "home"
    home.mkdir()
    redirect = f"http://localhost:{free_port()}/pinterest/callback"
    return {
        **base,
        **services.env(redirect),
        "PINMIGRATE_STATE_DIR": str(state_dir),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        "XDG_STATE_HOME": str(tmp_path / "xdg-state"),
    }


@pytest.fixture
def pinmigrate(env: dict[str, str], tmp_path: Path) -> Any:
    """Run ``python -m pinmigrate ARGS`` in a separate process, stdin not a terminal."""

    def run(*args: str, extra: dict[str, str] | None = None, timeout: float = RUN_TIMEOUT) -> Run:
        done = subprocess.run(
            [sys.executable, "-m", "pinmigrate", *args],
            env={**env, **(extra or {})},
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
        )
        return Run(
            done.returncode,
            done.stdout.decode("utf-8"),
            done.stderr.decode("utf-8"),
        )

    return run
