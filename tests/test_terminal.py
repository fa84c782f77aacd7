"""What is printed holds no terminal control character that came from a server
(issue 12 item 5): escape sequences, CR, backspace, C1 codes, BIDI overrides."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import Result

from pinmigrate.app import App
from pinmigrate.emulator import Emulator
from pinmigrate.emulator.scenarios import account_id, flow_id
from pinmigrate.terminal import safe_console, safe_text

USAGE = 64
#: Erase the line, move up, erase again: hides the plan line printed before.
ERASE = "\x1b[2K\x1b[1A\x1b[2K"
#: Everything the review listed: ESC sequences, CR, backspace, C1 CSI, BIDI overrides.
HOSTILE = f"Loyalty{ERASE}\r\b\x9b2J\u202e\u2066members"
RAW = ("\x1b", "\r", "\b", "\x9b", "\u202e", "\u2066")


def rename(emulator: Emulator, kind: str, ident: str, name: str) -> None:
    answer = requests.patch(
        f"{emulator.url}/_emulator/objects/{kind}/{ident}", json={"name": name}, timeout=10
    )
    assert answer.status_code == 200, answer.text


def assert_no_raw_controls(text: str) -> None:
    found = [repr(c) for c in RAW if c in text]
    assert not found, f"printed raw: {found}"


# --- control characters --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("plain name", "plain name"),
        ("a\x1b[2Kb", "a\\x1b[2Kb"),
        ("over\rwrite", "over\\rwrite"),
        ("back\bspace", "back\\x08space"),
        ("c1\x9bcsi", "c1\\x9bcsi"),
        ("del\x7f", "del\\x7f"),
        ("two\nlines", "two\\nlines"),
        ("rlo\u202eevil", "rlo\\u202eevil"),
        ("isolate\u2066x\u2069", "isolate\\u2066x\\u2069"),
        ("lrm\u200ex", "lrm\\u200ex"),
        ("line sep\u2028x", "line sep\\u2028x"),
        ("Café ☕ 👩\u200d💻", "Café ☕ 👩\u200d💻"),
    ],
)
def test_safe_text_escapes_what_can_move_erase_or_reorder(given: str, shown: str) -> None:
    assert safe_text(given) == shown


def test_the_console_escapes_text_however_it_is_built_and_keeps_its_own_colours() -> None:
    from rich.table import Table
    from rich.text import Text

    buffer = io.StringIO()
    console = safe_console(
        file=buffer, force_terminal=True, width=200, color_system="standard", highlight=False
    )
    table = Table("name")
    table.add_row(f"flow {ERASE}\u202e")
    console.print(table)
    console.print(Text(f"line {ERASE}", style="red"))
    console.print(f"note {ERASE}", markup=False)
    out = buffer.getvalue()
    # rich's own colours are escape sequences too: they stay.
    assert "\x1b[31m" in out
    assert out.count("\\x1b[2K") == 6 and "\\u202e" in out
    assert "\x1b[2K" not in out and "\x1b[1A" not in out and "\u202e" not in out


def test_plan_show_and_discover_text_escape_hostile_names_and_json_keeps_them(
    cli: Any, emulator: Emulator, emu_env: dict[str, str], tmp_path: Path
) -> None:
    # A flow pair and an account renamed by someone with access to the org (or a hostile
    # server): the names reach the plan the person approves.
    for card in ("legacy", "new"):
        rename(emulator, "flows", flow_id("prod", card, "Loyalty members"), HOSTILE)
    rename(emulator, "connections", account_id("prod", "new", "549755885175"), f"Acct{ERASE}")
    saved = tmp_path / "plan.json"
    for args in (["plan", "--out", str(saved)], ["show", str(saved)], ["discover"]):
        result = cli(args, emu_env)
        assert result.exit_code == 0, result.stderr
        assert_no_raw_controls(result.stdout + result.stderr)
        assert "Loyalty\\x1b[2K\\x1b[1A\\x1b[2K" in result.stdout
        assert "\\x9b2J\\u202e\\u2066members" in result.stdout
    for args in (["--output", "json", "plan"], ["--output", "json", "show", str(saved)]):
        names = {p["legacy_flow_name"] for p in cli(args, emu_env).json()["pairs"]}
        assert HOSTILE in names


def test_apply_report_and_rollback_escape_hostile_names(
    cli: Any, emulator: Emulator, emu_env: dict[str, str]
) -> None:
    for card in ("legacy", "new"):
        rename(emulator, "flows", flow_id("dev", card, "Newsletter subscribers"), HOSTILE)
    applied = cli(["apply", "--yes", "--sandbox", "dev"], emu_env)
    assert applied.exit_code in (0, 4), applied.stderr
    assert HOSTILE not in applied.stdout + applied.stderr
    assert_no_raw_controls(applied.stdout + applied.stderr)
    assert "\\u202e" in applied.stdout
    undone = cli(["rollback", "--yes"], emu_env)
    assert undone.exit_code == 0, undone.stderr
    assert_no_raw_controls(undone.stdout + undone.stderr)


def test_the_error_line_escapes_what_it_quotes(cli: Any, emu_env: dict[str, str]) -> None:
    result: Result = cli(["show", f"plan{ERASE}\u202e.json"], emu_env)
    assert result.exit_code == USAGE
    assert_no_raw_controls(result.stderr)
    assert "plan\\x1b[2K\\x1b[1A\\x1b[2K\\u202e.json" in result.stderr


def test_json_at_a_terminal_escapes_what_would_move_the_cursor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--output json`` on a terminal: the same document, its C1 controls, DEL and BIDI
    overrides written as escapes (a pipe gets the bytes unchanged)."""
    hostile = {"name": "a\x9b2Kb\u202ec\x7f 日本 e\u0301"}
    part = json.dumps(hostile, ensure_ascii=False).encode("utf-8")

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, raw in ((Terminal(), False), (io.StringIO(), True)):
        monkeypatch.setattr("sys.stdout", stream)
        App.print_json_parts(None, [part])  # type: ignore[arg-type]
        shown = stream.getvalue()
        assert json.loads(shown) == hostile
        assert ("\x9b" in shown and "\u202e" in shown) is raw
        assert "日本" in shown
