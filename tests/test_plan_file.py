"""The plan file stays schema_version 1 while its actions are typed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from pinmigrate.actions import (
    AddAudiences,
    DisableDetails,
    DisableFlow,
    DisablePrecondition,
    EnableDetails,
    EnableFlow,
    EnablePrecondition,
    ReconnectAccount,
    ReconnectDetails,
    ReconnectPrecondition,
)
from pinmigrate.errors import PlanFileError
from pinmigrate.plan import json_parts, load_plan, save_plan
from pinmigrate.plankey import ENV_NAME, load_key

DATA = Path(__file__).parent / "data"
#: Saved by pinmigrate before the actions were typed (`plan --out`, emulator demo scenario).
EARLIER = DATA / "plan-v1-demo.json"
#: Saved by an earlier pinmigrate still, before plans recorded which cards were found.
BEFORE_CARDS = DATA / "plan-v1-before-cards.json"
#: Saved by main at f67f1c3 (`plan --out`, emulator demo and scale:10 scenarios), sealed
#: with SEALED_WITH: what plan files look like before plans were made and read faster.
SEALED_DEMO = DATA / "plan-v1-sealed-demo.json"
SEALED_SCALE10 = DATA / "plan-v1-sealed-scale10.json"
#: The plan key those two were sealed with (PINMIGRATE_PLAN_KEY): bytes 0 to 31, not a secret.
SEALED_WITH = bytes(range(32)).hex()


@pytest.mark.parametrize("saved", [EARLIER, BEFORE_CARDS], ids=lambda p: p.stem)
def test_a_plan_saved_by_an_earlier_version_loads_and_saves_byte_for_byte(
    tmp_path: Path, saved: Path
) -> None:
    # Saved before plans were sealed with a key: it reads for review (show), and apply
    # refuses it until a person accepts it (tests/test_seal.py).
    plan = load_plan(saved, review=True)
    kinds = {type(a) for a in plan.actions}
    assert kinds == {ReconnectAccount, AddAudiences, EnableFlow, DisableFlow}
    assert plan.fingerprint == plan.compute_fingerprint()
    assert ("cards" in json.loads(saved.read_text())) == bool(plan.cards)
    again = tmp_path / "plan.json"
    save_plan(plan, again)
    assert again.read_bytes() == saved.read_bytes()


def test_preconditions_are_typed_per_kind() -> None:
    plan = load_plan(EARLIER, review=True)
    disable = next(a for a in plan.actions if isinstance(a, DisableFlow))
    enable = next(a for a in plan.actions if isinstance(a, EnableFlow))
    assert disable.precondition.twin_flow_id and disable.precondition.state == "enabled"
    assert enable.precondition.legacy_flow_id and enable.precondition.legacy_state == "enabled"


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        # A misspelt key is refused by name, not silently read as "no check".
        (lambda p: p.update(legacy_flow=p.pop("legacy_flow_id")), "precondition.legacy_flow"),
        (lambda p: p.update(state="paused"), "precondition.state"),
    ],
)
def test_a_misspelt_or_wrong_precondition_is_refused(tmp_path: Path, edit, where) -> None:
    data = json.loads(EARLIER.read_text())
    enable = next(a for a in data["actions"] if a["kind"] == "enable_flow")
    edit(enable["precondition"])
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PlanFileError, match=rf"malformed at actions\.\d+\.{where}"):
        load_plan(path, review=True)


def test_a_resealed_plan_that_reads_back_otherwise_is_refused(tmp_path: Path) -> None:
    # Resealed by hand with details the typed plan fills in: what would be carried out is
    # not what the file says, so it is refused, naming the action, not "edited by hand".
    import hashlib

    data = json.loads(EARLIER.read_text())
    index = next(i for i, a in enumerate(data["actions"]) if a["kind"] == "enable_flow")
    data["actions"][index]["details"] = {}
    body = {key: value for key, value in data.items() if key != "fingerprint"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    data["fingerprint"] = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PlanFileError, match=rf"not a plan pinmigrate made: actions\.{index} "):
        load_plan(path, review=True)


def _reseal(data: dict[str, Any]) -> None:
    """Give an edited plan the plain checksum of what it now says (as anyone can)."""
    import hashlib

    body = {key: value for key, value in data.items() if key != "fingerprint"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    data["fingerprint"] = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _first(kind: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda data: next(a for a in data["actions"] if a["kind"] == kind)


@pytest.mark.parametrize(
    "edit",
    [
        # Each reads as the same plan to a lenient reader, but pinmigrate never writes it.
        lambda d: _first("reconnect_account")(d)["details"].update(needs_login=1),
        lambda d: _first("reconnect_account")(d)["details"].update(via=None),
        lambda d: _first("enable_flow")(d)["precondition"].update(legacy_state=None),
        lambda d: d["summary"].update(blocked=float(d["summary"]["blocked"])),
        lambda d: d["summary"].update(orphans=True),
        lambda d: d.update(schema_version=True),
        lambda d: d.update(cards=[]),
        lambda d: d["pairs"][0].pop("note"),
        lambda d: _first("add_audiences")(d)["details"]["audiences"][0].pop("description"),
    ],
    ids=[
        "1-for-true",
        "null-for-left-out",
        "null-precondition",
        "float-count",
        "true-for-a-count",
        "true-for-version",
        "empty-cards",
        "default-left-out",
        "nested-default-left-out",
    ],
)
def test_a_resealed_plan_not_written_as_pinmigrate_writes_it_is_refused(
    tmp_path: Path, edit: Callable[[dict[str, Any]], Any]
) -> None:

    data = json.loads(EARLIER.read_text())
    edit(data)
    _reseal(data)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    with pytest.raises(
        PlanFileError, match=r"malformed at|not a plan pinmigrate made|schema_version"
    ):
        load_plan(path, review=True)
    # Unedited, the same file reads.
    path.write_text(EARLIER.read_text())
    assert (
        load_plan(path, review=True).fingerprint == json.loads(EARLIER.read_text())["fingerprint"]
    )


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("enable_flow", "precondition.legacy_flow_id"),
        ("add_audiences", "precondition.legacy_flow_id"),
        ("disable_flow", "precondition.twin_flow_id"),
        ("add_audiences", "details.legacy_flow_id"),
        ("enable_flow", "details.account_id"),
        ("enable_flow", "details.advertiser_id"),
        ("disable_flow", "details.twin_flow_id"),
        ("disable_flow", "details.advertiser_id"),
    ],
)
def test_an_id_of_any_part_that_would_change_an_address_is_refused(
    tmp_path: Path, kind: str, field: str
) -> None:
    part, name = field.split(".")
    data = json.loads(EARLIER.read_text())
    _first(kind)(data)[part][name] = "../connections"
    _reseal(data)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PlanFileError, match=rf"has {field} '../connections': it holds '/'"):
        load_plan(path, review=True)


#: The fields a plan file leaves out while they are None (added after plans were first
#: saved, or used by rollback's undo actions only); every other field is written, null or not.
LEFT_OUT_WHILE_NONE = {
    ReconnectDetails: {"via", "expiry_rule", "preflight", "preflight_user", "missing_access"},
    EnablePrecondition: {"legacy_flow_id", "legacy_state"},
    DisablePrecondition: {"twin_flow_id", "twin_state", "legacy_flow_id", "legacy_state"},
    DisableDetails: {"after"},
    EnableDetails: set(),
    ReconnectPrecondition: set(),
}


@pytest.mark.parametrize("part", list(LEFT_OUT_WHILE_NONE), ids=lambda c: c.__name__)
def test_only_the_fields_added_later_are_left_out_while_none(part: type[BaseModel]) -> None:
    required = {"advertiser_ids": [], "state": "enabled", "expires_at": None}
    fields = set(part.model_fields)
    unset = part(**{k: v for k, v in required.items() if k in fields})
    values = {"via": "adobe", "preflight": "ok", "after": "twin_enabled", "missing_access": []}
    values.update(twin_state="enabled", legacy_state="enabled")
    full = unset.model_copy(
        update={name: values.get(name, "x") for name in LEFT_OUT_WHILE_NONE[part]}
    )
    for mode in ("json", "python"):
        assert set(unset.model_dump(mode=mode)) == fields - LEFT_OUT_WHILE_NONE[part]
        assert set(full.model_dump(mode=mode)) == fields
    assert set(json.loads(unset.model_dump_json())) == fields - LEFT_OUT_WHILE_NONE[part]


@pytest.mark.parametrize("saved", [SEALED_DEMO, SEALED_SCALE10], ids=lambda p: p.stem)
def test_a_plan_sealed_by_the_previous_version_loads_sealed_here_and_saves_byte_for_byte(
    tmp_path: Path, saved: Path
) -> None:
    from pinmigrate.plan import seal_of

    key = load_key(tmp_path, env={ENV_NAME: SEALED_WITH})
    plan = load_plan(saved, key=key)
    assert seal_of(plan, key) == "here"
    # Sealed again now, the same plan gets the same seal: the fingerprint is unchanged.
    assert plan.sealed(key).fingerprint == plan.fingerprint
    again = tmp_path / "plan.json"
    save_plan(plan, again)
    assert again.read_bytes() == saved.read_bytes()
    assert b"".join(json_parts(plan)) == saved.read_bytes()
    # One character changed anywhere in the file breaks the seal.
    text = saved.read_text()
    at = text.index('"target_name": "') + len('"target_name": "')
    again.write_text(text[:at] + text[at:].replace(text[at], "#", 1))
    with pytest.raises(PlanFileError, match="does not match its fingerprint"):
        load_plan(again, key=key)


def test_a_plan_sealed_by_the_previous_version_applies(tmp_path: Path, cli: Any) -> None:
    from pinmigrate.emulator import Emulator

    state = tmp_path / "state"
    with Emulator(scenario="scale:10", port=0) as emulator:
        env = {
            **emulator.env(),
            "PINMIGRATE_STATE_DIR": str(state),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            ENV_NAME: SEALED_WITH,
        }
        result = cli(["apply", str(SEALED_SCALE10), "--output", "json"], env)
        assert result.exit_code == 0, result.stderr
        done = [r for r in result.json()["results"] if r["status"] == "done"]
        assert len(done) == 21  # 1 audience patch, 10 enables, 10 disables
