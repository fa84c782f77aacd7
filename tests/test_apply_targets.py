"""apply holds every target of a plan to the migration, whatever its seal (issue 12 item 1).

The refusals themselves (an S3 flow, a sandbox outside the configuration, an S3 account,
a broken pair: exit 64, zero writes) are in the bad-input corpus (``plan-file/insider-*``);
here: what must still go through.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

from pinmigrate.emulator import LEGACY_SPEC_ID, NEW_SPEC_ID
from pinmigrate.inventory import Flow
from pinmigrate.planner import twin_problem


def flow_id(emulator: Any, name: str, spec: str, sandbox: str = "prod") -> str:
    state = requests.get(f"{emulator.url}/_emulator/state", timeout=10).json()
    for flow in state["objects"][sandbox]["flows"]:
        card = flow["inheritedAttributes"]["targetConnections"][0]["connectionSpec"]["id"]
        if flow["name"] == name and card == spec:
            return str(flow["id"])
    raise AssertionError(name)


def test_a_pair_made_by_match_with_another_name_is_carried_out(
    cli: Any, emu_env: dict[str, str], emulator: Any, tmp_path: Path
) -> None:
    # Holiday prospects (legacy, enabled) matched by hand with Spring sale (new, enabled):
    # the names differ, the ad account is the same; the plan adds the missing audiences to
    # the new flow and switches the legacy flow off (after the account's reconnect, which
    # waits for a person in Adobe).
    legacy = flow_id(emulator, "Holiday prospects", LEGACY_SPEC_ID)
    new = flow_id(emulator, "Spring sale", NEW_SPEC_ID)
    path = tmp_path / "plan.json"
    made = cli(
        ["plan", "--match", f"{legacy}={new}", "--flow", legacy, "--out", str(path)], emu_env
    )
    assert made.exit_code == 0, made.stderr
    kinds = [a["kind"] for a in json.loads(path.read_text())["actions"]]
    assert kinds == ["reconnect_account", "add_audiences", "disable_flow"]
    emulator.clear_requests()

    applied = cli(["apply", str(path)], emu_env)

    assert "outside the migration" not in applied.stderr
    assert applied.exit_code == 4, applied.stderr  # only the reconnect is left to a person
    by_endpoint = emulator.requests()["by_endpoint"]
    assert by_endpoint.get("PATCH /flows/{id}") == 1, by_endpoint


def flow(name: str, advertiser: str | None, sandbox: str = "prod", card: Any = "new") -> Flow:
    return Flow(
        id=f"{card}-{name}",
        name=name,
        sandbox=sandbox,
        card=card,
        state="enabled",
        advertiser_id=advertiser,
    )


def test_the_pairing_rule_apply_checks_is_the_planners() -> None:
    legacy = flow("Loyalty", "175", card="legacy")
    assert twin_problem(legacy, flow("Loyalty", "175")) is None
    assert "not named alike" in (twin_problem(legacy, flow("Other", "175")) or "")
    assert twin_problem(legacy, flow("Other", "175"), matched=True) is None
    assert "different Pinterest ad accounts (175 and 176)" in (
        twin_problem(legacy, flow("Loyalty", "176"), matched=True) or ""
    )
    assert "different sandboxes (prod and dev)" in (
        twin_problem(legacy, flow("Loyalty", "175", sandbox="dev")) or ""
    )
    no_account = flow("Loyalty", None, card="legacy")
    assert "no Pinterest ad account id" in (twin_problem(no_account, flow("Loyalty", None)) or "")
