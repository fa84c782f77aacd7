"""``pinmigrate demo``: the README's first command. Exits 0 in seconds, explains each step,
and leaves nothing behind outside its temporary directory."""

from __future__ import annotations

import re
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Empty HOME, XDG dirs, state dir and working dir, plus a config that must not be read."""
    dirs = {name: tmp_path / name for name in ("home", "config", "state", "data", "cwd", "pm")}
    for path in dirs.values():
        path.mkdir()
    monkeypatch.chdir(dirs["cwd"])

    def no_browser(*args: Any, **kwargs: Any) -> bool:
        raise AssertionError("the demo must never open a real browser")

    monkeypatch.setattr(webbrowser, "open", no_browser)
    env = {
        "HOME": str(dirs["home"]),
        "XDG_CONFIG_HOME": str(dirs["config"]),
        "XDG_STATE_HOME": str(dirs["state"]),
        "XDG_DATA_HOME": str(dirs["data"]),
        "PINMIGRATE_STATE_DIR": str(dirs["pm"]),
        # Settings the demo must ignore: a broken config and a bogus org would fail it.
        "PINMIGRATE_CONFIG": str(tmp_path / "missing.toml"),
        "PINMIGRATE_ADOBE_ORG_ID": "not-an-org",
    }
    return {"env": env, "dirs": dirs}


def assert_untouched(dirs: dict[str, Path]) -> None:
    for name, path in dirs.items():
        assert list(path.iterdir()) == [], f"the demo wrote into {name}: {list(path.iterdir())}"


def test_demo_tells_the_story_and_leaves_nothing_behind(
    cli: Callable[..., Any], isolated: dict[str, Any]
) -> None:
    result = cli(["demo"], isolated["env"])

    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for step in range(1, 8):
        assert re.search(rf"^{step}\. ", out, re.M), f"step {step} missing"
    assert "Plan: 3 to reconnect, 1 to add audiences, 4 to enable, 4 to disable" in out
    assert "Logged in as emu_marketer" in out
    assert "12 done" in out
    assert "reconnected 'Pinterest - ad account 549755885175' on its Adobe page" in out
    assert "Writes to Adobe accounts by pinmigrate: 0." in out
    assert "No changes: nothing to do" in out  # the after view
    assert "pinmigrate init" in out and "To run against your org" in out
    assert_untouched(isolated["dirs"])
    state = re.search(r"State \(logins, journal\) lives in (\S+);", out)
    assert state is not None and not Path(state.group(1)).exists()


def test_demo_json_is_a_machine_readable_summary(
    cli: Callable[..., Any], isolated: dict[str, Any]
) -> None:
    result = cli(["demo", "--output", "json"], isolated["env"])

    assert result.exit_code == 0, result.stderr
    summary = result.json()
    assert summary["kind"] == "pinmigrate.demo" and summary["ok"] is True
    assert summary["plan"]["enable_flow"] == 4 and summary["plan"]["reconnect_account"] == 3
    assert summary["login"] == {"user": "emu_marketer", "ad_accounts": 4}
    assert summary["apply"]["summary"]["done"] == 12
    # The accounts were reconnected on Adobe's page, never written by pinmigrate.
    assert len(summary["reconnected_in_adobe"]) == 3
    assert summary["account_writes"] == 0
    assert summary["after"]["pending_actions"] == 0
    assert {p["new"] for p in summary["after"]["pairs"]} <= {"enabled", "disabled"}
    assert_untouched(isolated["dirs"])
