"""Plans a person can review at scale: ``plan``, ``show`` and apply's confirmation against the
emulator's ``scale:300`` world (300 pairs over three sandboxes)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pinmigrate.render import DETAILS_HINT, SUMMARY_ABOVE

pytestmark = pytest.mark.slow

FLOWS = 300
SUMMARY_LINE = (
    f"Plan: 0 to reconnect, {FLOWS // 10} to add audiences, {FLOWS} to enable, "
    f"{FLOWS} to disable; 0 blocked, 0 orphans."
)


@pytest.fixture
def scale_env(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    from pinmigrate.emulator import Emulator

    monkeypatch.delenv("COLUMNS", raising=False)  # a pipe's width is pinmigrate's choice

    with Emulator(scenario=f"scale:{FLOWS}", port=0) as emulator:
        env = dict(emulator.env())
        env["PINMIGRATE_STATE_DIR"] = str(state_dir)
        env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
        yield env


def plan_json(cli: Any, env: dict[str, str], *args: str) -> dict[str, Any]:
    result = cli(["plan", "--output", "json", *args], env=env)
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = result.json()
    return data


def test_a_large_plan_is_grouped_and_ends_with_its_summary(
    cli: Any, scale_env: dict[str, str]
) -> None:
    plan = plan_json(cli, scale_env)
    assert len(plan["pairs"]) == FLOWS > SUMMARY_ABOVE
    result = cli(["plan"], env=scale_env)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    # Per sandbox: the cards and one row per new-card account, not one per flow.
    assert len(lines) < 70, result.stdout
    assert lines[1] == SUMMARY_LINE
    assert lines[-2:] == [SUMMARY_LINE, DETAILS_HINT]
    assert not any(p["legacy_flow_name"] in result.stdout for p in plan["pairs"])
    accounts = {a["details"]["account_id"] for a in plan["actions"] if a["kind"] == "enable_flow"}
    rows = [line for line in lines if line.split(" ", 1)[0] in accounts]
    assert len(rows) == len(accounts)
    assert "Will switch off 300 legacy flows, each after its twin is on" in result.stdout


def test_details_show_every_flow_once_on_one_line(cli: Any, scale_env: dict[str, str]) -> None:
    plan = plan_json(cli, scale_env)
    result = cli(["plan", "--details"], env=scale_env)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    for pair in plan["pairs"]:
        found = [line for line in lines if pair["legacy_flow_name"] in line]
        assert len(found) == 1, found
        # Piped: no hard wrap, so the flow's row holds both of its ids whole.
        assert pair["legacy_flow_id"] in found[0] and pair["new_flow_id"] in found[0]
        assert "enabled -> disabled" in found[0] and "disabled -> enabled" in found[0]
    assert max(len(line) for line in lines) > 80
    assert lines[-1] == SUMMARY_LINE


def test_details_do_not_change_json(cli: Any, scale_env: dict[str, str]) -> None:
    plain = plan_json(cli, scale_env)
    detailed = plan_json(cli, scale_env, "--details")
    for data in (plain, detailed):
        data.pop("created_at")
        data.pop("fingerprint")
    assert json.dumps(plain, sort_keys=True) == json.dumps(detailed, sort_keys=True)


def test_the_text_plan_names_the_audiences_it_adds(cli: Any, scale_env: dict[str, str]) -> None:
    plan = plan_json(cli, scale_env)
    text = cli(["plan", "--details"], env=scale_env).stdout
    adds = [a for a in plan["actions"] if a["kind"] == "add_audiences"]
    assert adds
    for add in adds:
        named = ", ".join(f"{a['name']} ({a['id']})" for a in add["details"]["audiences"])
        row = next(line for line in text.splitlines() if add["target_id"] in line)
        assert f"+{len(add['details']['audiences'])}: {named}" in row


def test_show_and_apply_group_a_large_plan_too(
    cli: Any, scale_env: dict[str, str], tmp_path: Path
) -> None:
    saved = tmp_path / "plan.json"
    assert cli(["plan", "--out", str(saved)], env=scale_env).exit_code == 0
    shown = cli(["show", str(saved)], env=scale_env)
    assert shown.exit_code == 0, shown.stderr
    assert shown.stdout.splitlines()[-2:] == [SUMMARY_LINE, DETAILS_HINT]
    detailed = cli(["show", str(saved), "--details"], env=scale_env)
    assert detailed.stdout.count("enabled -> disabled") == FLOWS
    # apply without a terminal refuses to ask, after showing the plan: its summary comes last.
    refused = cli(["apply"], env=scale_env)
    assert refused.exit_code == 5, refused.stderr
    assert refused.stdout.splitlines()[-2:] == [SUMMARY_LINE, DETAILS_HINT]
    asked = cli(["apply", "--details"], env=scale_env)
    assert asked.stdout.count("enabled -> disabled") == FLOWS
    assert asked.stdout.splitlines()[-1] == SUMMARY_LINE


@pytest.mark.parametrize("command", ["plan", "show", "apply"])
def test_details_help_names_the_threshold(cli: Any, command: str) -> None:
    result = cli([command, "--help"])
    assert result.exit_code == 0
    assert f"more than {SUMMARY_ABOVE} actions or pairs" in " ".join(result.stdout.split())


def test_a_pipe_keeps_the_width_columns_asks_for(cli: Any, scale_env: dict[str, str]) -> None:
    result = cli(["plan", "--details", "--sandbox", "prod"], env={**scale_env, "COLUMNS": "60"})
    assert result.exit_code == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if "Scale flow" in line]
    assert rows and all(len(line) <= 60 for line in rows)
