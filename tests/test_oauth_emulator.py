"""A real browser login against the emulator's strict Pinterest (api-notes.md §4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import invoke
from e2e_support import free_port, person_at_terminal

from pinmigrate.logins import LoginStore


def test_a_login_on_an_unregistered_redirect_uri_stores_nothing(
    emulator: Any, emu_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The consent page refuses the URI, so Pinterest never sends the browser back."""
    emulator.configure(auto_approve=True)
    redirect = f"http://127.0.0.1:{free_port()}/"
    env = {**emu_env, "PINMIGRATE_PINTEREST_REDIRECT_URI": redirect}
    person_at_terminal(monkeypatch)

    result = invoke(["auth", "login", "--timeout", "2"], env)

    assert result.exit_code == 4
    [line] = [x for x in result.stderr.splitlines() if x.startswith("pinmigrate:")]
    assert "nothing was stored" in line and f"register {redirect} on the Pinterest app" in line
    assert LoginStore(Path(env["PINMIGRATE_STATE_DIR"])).load() == []
    assert emulator.requests()["by_endpoint"].get("POST /v5/oauth/token", 0) == 0
