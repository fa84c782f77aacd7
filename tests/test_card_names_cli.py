"""Card names through the CLI: a sandbox whose legacy card is gone, and one renamed.

A later revision of Adobe's notice filters on just "Pinterest" (api-notes.md §3 "Connection
specs"): the legacy card may be retired. The emulator's ``+no-legacy-card`` has none of it;
``+renamed-legacy-card`` keeps its flows under a name no default lookup takes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Result, invoke

from pinmigrate.emulator import LEGACY_SPEC_ID, NEW_SPEC_ID, Emulator
from pinmigrate.emulator.model import DECOY_SPEC_ID, RENAMED_LEGACY_SPEC_NAME
from pinmigrate.emulator.problems import flow_error

GONE = (
    "no legacy card '(Deprecating) Pinterest' in sandbox {sandbox}, and no other Pinterest-like "
    "card there delivers a flow: no legacy flow to migrate there"
)


def run_cli(emu: Emulator, tmp_path: Path, *args: str, **settings: str) -> Result:
    env = {
        **emu.env(),
        "PINMIGRATE_STATE_DIR": str(tmp_path / "state"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        **{f"PINMIGRATE_MIGRATION_{key.upper()}": value for key, value in settings.items()},
    }
    return invoke(list(args), env)


def stderr_line(result: Result) -> str:
    [line] = [line for line in result.stderr.splitlines() if line.startswith("pinmigrate:")]
    return line


@pytest.fixture(scope="module")
def no_legacy() -> Iterator[Emulator]:
    with Emulator("demo+no-legacy-card") as emu:
        yield emu


@pytest.fixture(scope="module")
def renamed() -> Iterator[Emulator]:
    with Emulator("demo+renamed-legacy-card") as emu:
        yield emu


# --- the legacy card is gone: nothing to migrate, exit 0 -------------------------------------


def test_plan_of_a_sandbox_without_the_legacy_card_is_empty_with_a_warning(
    no_legacy: Emulator, tmp_path: Path
) -> None:
    result = run_cli(
        no_legacy, tmp_path, "plan", "--sandbox", "dev", "--detailed-exitcode", "--output", "json"
    )
    assert result.exit_code == 0, result.stderr  # nothing to change
    plan = result.json()
    assert plan["kind"] == "pinmigrate.plan" and plan["schema_version"] == 1
    assert plan["actions"] == [] and plan["pairs"] == [] and plan["orphans"] == []
    assert set(plan["summary"].values()) == {0}
    assert plan["warnings"] == [GONE.format(sandbox="dev")]
    assert plan["cards"] == [
        {"sandbox": "dev", "legacy": None, "new": {"id": NEW_SPEC_ID, "name": "Pinterest"}}
    ]

    text = run_cli(no_legacy, tmp_path, "plan", "--sandbox", "dev")
    assert text.exit_code == 0, text.stderr
    assert "legacy card  none in this sandbox: nothing to migrate" in text.stdout
    assert GONE.format(sandbox="dev") in " ".join(text.stdout.split())


def test_a_saved_plan_without_a_legacy_card_reads_back(no_legacy: Emulator, tmp_path: Path) -> None:
    saved = tmp_path / "plan.json"
    assert run_cli(no_legacy, tmp_path, "plan", "--out", str(saved)).exit_code == 0
    shown = run_cli(no_legacy, tmp_path, "show", str(saved), "--output", "json")
    assert shown.exit_code == 0, shown.stderr
    assert [c["legacy"] for c in shown.json()["cards"]] == [None, None]
    # New-card flows still count: the enabled one on an account without credentials
    # needs its reconnect; no legacy flow means no pair, no enable, no disable.
    assert json.loads(saved.read_text())["summary"] == {
        "reconnect_account": 1,
        "add_audiences": 0,
        "enable_flow": 0,
        "disable_flow": 0,
        "blocked": 0,
        "orphans": 0,
    }


def test_apply_in_a_sandbox_without_the_legacy_card_changes_nothing(
    no_legacy: Emulator, tmp_path: Path
) -> None:
    no_legacy.clear_requests()
    result = run_cli(no_legacy, tmp_path, "apply", "--yes", "--sandbox", "dev")
    assert result.exit_code == 0, result.stderr
    assert "Nothing to change" in result.stdout
    assert no_legacy.requests()["write_attempts"] == 0


def test_doctor_warns_that_the_legacy_card_is_gone(no_legacy: Emulator, tmp_path: Path) -> None:
    result = run_cli(no_legacy, tmp_path, "doctor", "--output", "json")
    assert result.exit_code == 0, result.stderr
    checks = {c["name"]: c for c in result.json()["checks"]}
    for sandbox in ("prod", "dev"):
        legacy = checks[f"legacy card in {sandbox}"]
        assert (legacy["status"], legacy["detail"]) == ("warn", GONE.format(sandbox=sandbox))
        assert checks[f"new card in {sandbox}"]["status"] == "ok"


def test_discover_shows_the_new_card_alone(no_legacy: Emulator, tmp_path: Path) -> None:
    result = run_cli(no_legacy, tmp_path, "discover", "--output", "json")
    assert result.exit_code == 0, result.stderr
    inventory = result.json()
    assert [(s["legacy_spec_id"], s["new_spec_id"]) for s in inventory["sandboxes"]] == [
        (None, NEW_SPEC_ID),
        (None, NEW_SPEC_ID),
    ]
    assert inventory["flows"] and {f["card"] for f in inventory["flows"]} == {"new"}
    assert GONE.format(sandbox="prod") in inventory["warnings"]


@pytest.mark.parametrize(
    ("setting", "value"),
    [("legacy_destination", "(Deprecating) Pinterest"), ("legacy_spec_id", "no-such-spec")],
)
def test_a_configured_legacy_card_that_is_missing_stays_an_error(
    no_legacy: Emulator, tmp_path: Path, setting: str, value: str
) -> None:
    result = run_cli(no_legacy, tmp_path, "plan", **{setting: value})
    assert result.exit_code == 1
    line = stderr_line(result)
    assert value in line and f"migration.{setting}" in line
    doctor = run_cli(no_legacy, tmp_path, "doctor", **{setting: value})
    assert doctor.exit_code == 1
    assert "✗ legacy card in prod" in doctor.stdout


# --- the legacy card under another name: an error that lists the candidates -----------------


def test_a_renamed_legacy_card_is_an_error_listing_the_pinterest_like_cards(
    renamed: Emulator, tmp_path: Path
) -> None:
    for command in ("plan", "discover"):
        result = run_cli(renamed, tmp_path, command)
        assert result.exit_code == 1
        line = stderr_line(result)
        assert f"{RENAMED_LEGACY_SPEC_NAME!r} = {LEGACY_SPEC_ID} (delivers flows)" in line
        assert f"'(Beta) Pinterest Conversions' = {DECOY_SPEC_ID}," in line
        assert "migration.legacy_spec_id" in line and "migration.legacy_destination" in line
        assert "Traceback" not in result.stderr


def test_doctor_lists_the_pinterest_like_cards_of_a_renamed_legacy_card(
    renamed: Emulator, tmp_path: Path
) -> None:
    result = run_cli(renamed, tmp_path, "doctor")
    assert result.exit_code == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("✗")]
    assert [line.split(":")[0] for line in failed] == [
        "✗ legacy card in prod",
        "✗ legacy card in dev",
    ]
    for line in failed:
        assert f"{RENAMED_LEGACY_SPEC_NAME!r} = {LEGACY_SPEC_ID} (delivers flows)" in line
        assert "migration.legacy_spec_id" in line


@pytest.mark.parametrize(
    "setting",
    [{"legacy_destination": RENAMED_LEGACY_SPEC_NAME}, {"legacy_spec_id": LEGACY_SPEC_ID}],
)
def test_a_renamed_legacy_card_is_migrated_once_configured(
    renamed: Emulator, tmp_path: Path, setting: dict[str, Any]
) -> None:
    result = run_cli(renamed, tmp_path, "plan", "--output", "json", **setting)
    assert result.exit_code == 0, result.stderr
    summary = result.json()["summary"]
    assert (summary["enable_flow"], summary["disable_flow"], summary["orphans"]) == (4, 4, 1)


# --- the legacy card still named "Pinterest" beside a "(New) Pinterest": never "gone" --------


@pytest.fixture(scope="module")
def legacy_named_pinterest() -> Iterator[Emulator]:
    """The draft naming, before the legacy card was relabelled: the legacy card is called
    "Pinterest" (one of the new card's default names) and the new one "(New) Pinterest"."""
    with Emulator("demo+draft-names") as emu:
        specs = emu.state.flowstore.connection_specs
        specs[LEGACY_SPEC_ID] = {**specs[LEGACY_SPEC_ID], "name": "Pinterest"}
        yield emu


def test_a_legacy_card_named_pinterest_is_an_error_not_an_empty_plan(
    legacy_named_pinterest: Emulator, tmp_path: Path
) -> None:
    emu = legacy_named_pinterest
    assert len(emu.state.flowstore.find("flows", sandbox="prod", card="legacy")) == 6
    by_default = run_cli(emu, tmp_path, "plan", "--sandbox", "prod", "--detailed-exitcode")
    assert by_default.exit_code == 1, by_default.stdout
    line = stderr_line(by_default)
    assert f"'Pinterest' = {LEGACY_SPEC_ID}," in line
    assert f"'(New) Pinterest' = {NEW_SPEC_ID} (delivers flows)" in line
    assert f"migration.new_spec_id to the new card's id if 'Pinterest' = {LEGACY_SPEC_ID}" in line
    assert "Traceback" not in by_default.stderr

    told = run_cli(emu, tmp_path, "plan", "--sandbox", "prod", new_spec_id=NEW_SPEC_ID)
    assert told.exit_code == 1, told.stdout
    assert f"'Pinterest' = {LEGACY_SPEC_ID} (delivers flows)" in stderr_line(told)


def test_doctor_fails_a_legacy_card_named_pinterest(
    legacy_named_pinterest: Emulator, tmp_path: Path
) -> None:
    for settings in ({}, {"new_spec_id": NEW_SPEC_ID}):
        result = run_cli(legacy_named_pinterest, tmp_path, "doctor", "--output", "json", **settings)
        assert result.exit_code == 1
        checks = {c["name"]: c for c in result.json()["checks"]}
        legacy = checks["legacy card in prod"]
        assert legacy["status"] == "fail", legacy
        assert f"'Pinterest' = {LEGACY_SPEC_ID}" in legacy["detail"]


def test_a_legacy_card_named_pinterest_is_migrated_once_both_are_configured(
    legacy_named_pinterest: Emulator, tmp_path: Path
) -> None:
    result = run_cli(
        legacy_named_pinterest,
        tmp_path,
        "plan",
        "--output",
        "json",
        legacy_destination="Pinterest",
        new_destination="(New) Pinterest",
    )
    assert result.exit_code == 0, result.stderr
    summary = result.json()["summary"]
    assert (summary["enable_flow"], summary["disable_flow"], summary["orphans"]) == (4, 4, 1)


# --- a failed read is never "gone" ------------------------------------------------------------


@pytest.fixture
def spec_list_fails(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """No legacy card, and Flow Service answers 500 to the unfiltered connection spec list
    (the name lookups still answer)."""
    with Emulator("demo+no-legacy-card") as emu:
        store = emu.state.flowstore
        served = store.list_objects

        def list_objects(sandbox: str, kind: str, params: Any) -> Any:
            if kind == "connectionSpecs" and "property" not in params:
                raise flow_error(
                    500,
                    "Connection specs are unavailable",
                    sandbox=sandbox,
                    code="FLOW-1500",
                    title="Internal error",
                )
            return served(sandbox, kind, params)

        monkeypatch.setattr(store, "list_objects", list_objects)
        yield emu


def test_a_failed_spec_list_is_one_error_line_not_a_gone_legacy_card(
    spec_list_fails: Emulator, tmp_path: Path
) -> None:
    result = run_cli(spec_list_fails, tmp_path, "plan", "--sandbox", "dev", "--detailed-exitcode")
    assert result.exit_code == 1, result.stdout
    assert "Connection specs are unavailable" in stderr_line(result)
    assert "Traceback" not in result.stderr and result.stdout == ""

    doctor = run_cli(spec_list_fails, tmp_path, "doctor", "--output", "json")
    assert doctor.exit_code == 1
    checks = {c["name"]: c for c in doctor.json()["checks"]}
    legacy = checks["legacy card in dev"]
    assert legacy["status"] == "fail" and "Connection specs are unavailable" in legacy["detail"]
    assert checks["new card in dev"]["status"] == "ok"
