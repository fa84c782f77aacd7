"""``pinmigrate discover | plan | show``: the real CLI against the emulator's demo scenario."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pinmigrate.report import is_progress_line

pytestmark = pytest.mark.slow

DEMO_SUMMARY = {
    "reconnect_account": 3,
    "add_audiences": 1,
    "enable_flow": 4,
    "disable_flow": 4,
    "blocked": 1,
    "orphans": 1,
}
SUMMARY_LINE = (
    "Plan: 3 to reconnect, 1 to add audiences, 4 to enable, 4 to disable; 1 blocked, 1 orphan."
)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def plan_json(cli: Any, env: dict[str, str], *args: str) -> dict[str, Any]:
    result = cli(["plan", "--output", "json", *args], env=env)
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = result.json()
    return data


def legacy_id(plan: dict[str, Any], name: str) -> str:
    for pair in plan["pairs"]:
        if pair["legacy_flow_name"] == name:
            return str(pair["legacy_flow_id"])
    raise AssertionError(f"no pair named {name}")


def test_plan_json_is_the_documented_demo_plan(cli: Any, emu_env: dict[str, str]) -> None:
    result = cli(["plan", "--output", "json"], env=emu_env)
    assert result.exit_code == 0, result.stderr
    plan = result.json()
    assert plan["schema_version"] == 1
    assert plan["kind"] == "pinmigrate.plan"
    assert plan["org_id"] == "EMULATOR0000000000000000@AdobeOrg"
    assert plan["sandboxes"] == ["prod", "dev"]
    # Sealed with the state dir's plan key (hmac-sha256:KEY_ID:MAC), not a bare checksum.
    assert re.fullmatch(r"hmac-sha256:[0-9a-f]{16}:[0-9a-f]{64}", plan["fingerprint"])
    assert plan["created_at"]
    assert plan["summary"] == DEMO_SUMMARY
    for action in plan["actions"]:
        assert set(action) == {
            "id",
            "kind",
            "sandbox",
            "target_id",
            "target_name",
            "precondition",
            "details",
            "depends_on",
        }
        assert action["id"] == f"{action['kind']}:{action['sandbox']}:{action['target_id']}"
    reconnects = [a for a in plan["actions"] if a["kind"] == "reconnect_account"]
    assert sorted(a["details"]["advertiser_ids"][0] for a in reconnects) == [
        "549755885175",
        "549755885176",
        "549755885178",
    ]
    assert all(a["details"]["needs_login"] and a["details"]["login"] is None for a in reconnects)
    # No Pinterest login at all: the pre-flight is not checked, and nothing is blocked by it.
    assert {a["details"]["preflight"] for a in reconnects} == {"not_checked"}
    assert {a["details"]["via"] for a in reconnects} == {"adobe"}
    assert {a["details"]["expiry_rule"] for a in reconnects} == {"expiresAt", "none"}
    statuses = {p["legacy_flow_name"]: p["status"] for p in plan["pairs"]}
    assert statuses["Winback 2023"] == "legacy_disabled"
    assert statuses["Spring sale"] == "migrated"
    assert statuses["Lookalike seeds"] == "blocked"
    assert [o["flow_name"] for o in plan["orphans"]] == ["Holiday prospects"]
    assert plan["blockers"][0]["kind"] == "ambiguous"
    assert len(plan["blockers"][0]["candidates"]) == 2
    # The other destination's flow never enters the plan.
    assert "S3 nightly export" not in result.stdout
    # JSON mode: stdout is exactly one JSON document; nothing but progress may go to stderr.
    assert "Traceback" not in result.stderr


def test_plan_reads_lists_only(cli: Any, emu_env: dict[str, str], emulator: Any) -> None:
    emulator.clear_requests()
    plan_json(cli, emu_env)
    endpoints = emulator.requests()["by_endpoint"]
    assert not [e for e in endpoints if "{id}" in e], endpoints
    assert not [e for e in endpoints if not e.startswith(("GET ", "POST /ims/"))], endpoints


def test_plan_text_summary(cli: Any, emu_env: dict[str, str]) -> None:
    result = cli(["plan"], env=emu_env)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert SUMMARY_LINE in lines
    assert lines.index(SUMMARY_LINE) <= 2  # summary first
    assert "Will switch off 4 legacy flows:" in lines
    assert "Reconnect in Adobe: 3 accounts need Reconnect OAuth by a person" in result.stdout
    assert "Pre-flight not checked for 3 accounts: `pinmigrate auth login`" in result.stdout
    assert "Lookalike seeds" in result.stdout
    assert "\x1b[" not in result.stdout


def test_detailed_exitcode(cli: Any, emu_env: dict[str, str]) -> None:
    assert cli(["plan", "--detailed-exitcode"], env=emu_env).exit_code == 2
    winback = legacy_id(plan_json(cli, emu_env), "Winback 2023")
    quiet = cli(["plan", "--detailed-exitcode", "--flow", winback], env=emu_env)
    assert quiet.exit_code == 0, quiet.stderr
    assert "Nothing to change." in quiet.stdout
    # Without the flag, pending changes still exit 0.
    assert cli(["plan"], env=emu_env).exit_code == 0


def test_keep_legacy(cli: Any, emu_env: dict[str, str]) -> None:
    plan = plan_json(cli, emu_env, "--keep-legacy")
    assert plan["summary"] == {**DEMO_SUMMARY, "disable_flow": 0}


def test_sandbox_narrowing(cli: Any, emu_env: dict[str, str]) -> None:
    plan = plan_json(cli, emu_env, "--sandbox", "dev")
    assert plan["sandboxes"] == ["dev"]
    assert plan["summary"] == {
        "reconnect_account": 1,
        "add_audiences": 0,
        "enable_flow": 2,
        "disable_flow": 2,
        "blocked": 0,
        "orphans": 0,
    }
    assert {a["sandbox"] for a in plan["actions"]} == {"dev"}


def test_unknown_sandbox_is_a_usage_error(cli: Any, emu_env: dict[str, str]) -> None:
    result = cli(["plan", "--sandbox", "stage"], env=emu_env)
    assert result.exit_code == 64
    assert "1 unknown sandbox: stage" in result.stderr
    assert "prod, dev" in result.stderr
    assert result.stdout == ""


def test_flow_narrowing(cli: Any, emu_env: dict[str, str]) -> None:
    loyalty = legacy_id(plan_json(cli, emu_env), "Loyalty members")
    plan = plan_json(cli, emu_env, "--flow", loyalty)
    assert plan["summary"] == {
        "reconnect_account": 1,
        "add_audiences": 0,
        "enable_flow": 1,
        "disable_flow": 1,
        "blocked": 0,
        "orphans": 0,
    }
    (pair,) = plan["pairs"]
    reconnect = plan["actions"][0]
    # Only the narrowed flow's account, and only that flow (not Spring sale's twin on it).
    assert reconnect["details"]["flows"] == [pair["new_flow_id"]]


def test_unknown_flow_is_a_usage_error(cli: Any, emu_env: dict[str, str]) -> None:
    result = cli(["plan", "--flow", "no-such-flow"], env=emu_env)
    assert result.exit_code == 64
    assert "no-such-flow" in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len([line for line in lines if not is_progress_line(line)]) == 1


def test_match_settles_the_ambiguity(cli: Any, emu_env: dict[str, str]) -> None:
    before = plan_json(cli, emu_env)
    blocker = before["blockers"][0]
    chosen = blocker["candidates"][1]
    plan = plan_json(cli, emu_env, "--match", f"{blocker['flow_id']}={chosen}")
    assert plan["summary"] == {**DEMO_SUMMARY, "enable_flow": 5, "disable_flow": 5, "blocked": 0}
    enabled = {a["target_id"] for a in plan["actions"] if a["kind"] == "enable_flow"}
    assert chosen in enabled
    assert blocker["candidates"][0] not in enabled


@pytest.mark.parametrize("value", ["abc", "=x", "x=", "a=b=c"])
def test_malformed_match_is_a_usage_error(cli: Any, emu_env: dict[str, str], value: str) -> None:
    result = cli(["plan", "--match", value], env=emu_env)
    assert result.exit_code == 64
    assert "LEGACY_ID=NEW_ID" in result.stderr


def test_match_of_flows_that_do_not_exist(cli: Any, emu_env: dict[str, str]) -> None:
    result = cli(["plan", "--match", "nope=nada"], env=emu_env)
    assert result.exit_code == 64
    assert "nope" in result.stderr


def test_plan_out_and_show_round_trip(cli: Any, emu_env: dict[str, str], tmp_path: Path) -> None:
    made = cli(["plan", "--out", "plan.json"], env=emu_env)
    assert made.exit_code == 0, made.stderr
    assert "pinmigrate apply plan.json" in made.stderr
    saved = json.loads((tmp_path / "plan.json").read_text())
    assert saved["summary"] == DEMO_SUMMARY

    # No config: only the state dir, whose plan key sealed the plan.
    state = {"PINMIGRATE_STATE_DIR": emu_env["PINMIGRATE_STATE_DIR"]}
    shown = cli(["show", "plan.json"], env=state)
    assert shown.exit_code == 0, shown.stderr
    assert shown.stderr == ""
    assert SUMMARY_LINE in shown.stdout.splitlines()
    assert "Will switch off 4 legacy flows:" in shown.stdout

    as_json = cli(["show", "plan.json", "--output", "json"], env=state)
    assert as_json.exit_code == 0
    assert as_json.json() == saved


def test_plan_json_and_out_file_agree(cli: Any, emu_env: dict[str, str], tmp_path: Path) -> None:
    result = cli(["--output", "json", "plan", "--out", "p.json"], env=emu_env)
    assert result.exit_code == 0
    assert result.json() == json.loads((tmp_path / "p.json").read_text())


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["actions"][0].update(target_id="someone-else"), "fingerprint"),
        (lambda d: d.update(kind="pinmigrate.apply"), "not a pinmigrate plan"),
        (lambda d: d.update(schema_version=2), "schema_version 2"),
    ],
)
def test_show_refuses_a_tampered_plan(
    cli: Any, emu_env: dict[str, str], tmp_path: Path, edit: Any, message: str
) -> None:
    assert cli(["plan", "--out", "plan.json"], env=emu_env).exit_code == 0
    path = tmp_path / "plan.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    result = cli(
        ["show", "plan.json"], env={"PINMIGRATE_STATE_DIR": emu_env["PINMIGRATE_STATE_DIR"]}
    )
    assert result.exit_code == 64
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert message in lines[0]


def test_show_of_a_missing_or_truncated_file(cli: Any, tmp_path: Path) -> None:
    missing = cli(["show", "nope.json"], env={"PINMIGRATE_STATE_DIR": str(tmp_path / "s")})
    assert missing.exit_code == 64
    assert "does not exist" in missing.stderr
    (tmp_path / "half.json").write_text('{"schema_version": 1, "kind": "pinmig')
    truncated = cli(["show", "half.json"], env={"PINMIGRATE_STATE_DIR": str(tmp_path / "s")})
    assert truncated.exit_code == 64
    assert "not valid JSON" in truncated.stderr


def test_environment_login_is_named_and_never_printed(
    cli: Any, emu_env: dict[str, str], emulator: Any, tmp_path: Path
) -> None:
    refresh = emulator.tokens("emu_marketer")["refresh_token"]
    env = {**emu_env, "PINMIGRATE_PINTEREST_REFRESH_TOKEN": refresh}
    result = cli(["plan", "--output", "json", "--out", "p.json"], env=env)
    assert result.exit_code == 0, result.stderr
    plan = result.json()
    reconnects = [a for a in plan["actions"] if a["kind"] == "reconnect_account"]
    assert {a["details"]["login"] for a in reconnects} == {"1000000001"}
    assert not any(a["details"]["needs_login"] for a in reconnects)
    everything = result.stdout + result.stderr + (tmp_path / "p.json").read_text()
    assert refresh not in everything
    assert "pina_" not in everything and "pinr_" not in everything


def test_a_login_lacking_an_ad_account_is_named_by_the_preflight_and_blocks_nothing(
    cli: Any, emu_env: dict[str, str], emulator: Any
) -> None:
    # emu_analyst reaches ad account 549755885175 only.
    refresh = emulator.tokens("emu_analyst")["refresh_token"]
    env = {**emu_env, "PINMIGRATE_PINTEREST_REFRESH_TOKEN": refresh}
    result = cli(["plan", "--output", "json", "--detailed-exitcode"], env=env)
    assert result.exit_code == 2, result.stderr
    by_ad = {
        a["details"]["advertiser_ids"][0]: a["details"]
        for a in result.json()["actions"]
        if a["kind"] == "reconnect_account"
    }
    assert by_ad["549755885175"]["preflight"] == "ok"
    assert by_ad["549755885175"]["preflight_user"] == "emu_analyst (1000000002)"
    for ad in ("549755885176", "549755885178"):
        assert by_ad[ad]["preflight"] == "missing_access"
        assert by_ad[ad]["missing_access"] == [ad]
    assert any(
        "cannot manage audiences of 1 ad account: 549755885176" in w
        for w in result.json()["warnings"]
    )
    text = cli(["plan"], env=env)
    assert "lacks" in text.stdout  # the pre-flight column (cells wrap in a narrow table)


def test_a_bad_environment_login_only_warns(cli: Any, emu_env: dict[str, str]) -> None:
    env = {**emu_env, "PINMIGRATE_PINTEREST_REFRESH_TOKEN": "pinr_not_a_real_token"}
    result = cli(["plan", "--output", "json"], env=env)
    assert result.exit_code == 0, result.stderr
    plan = result.json()
    assert plan["summary"] == DEMO_SUMMARY
    assert any("environment" in w for w in plan["warnings"])
    assert "pinr_not_a_real_token" not in result.stdout + result.stderr


def test_plan_needs_the_adobe_settings(cli: Any, tmp_path: Path) -> None:
    result = cli(["plan"], env={"PINMIGRATE_STATE_DIR": str(tmp_path / "s")})
    assert result.exit_code == 64
    assert "adobe.org_id" in result.stderr


def test_discover_json(cli: Any, emu_env: dict[str, str]) -> None:
    result = cli(["discover", "--output", "json"], env=emu_env)
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["kind"] == "pinmigrate.inventory"
    assert [s["name"] for s in data["sandboxes"]] == ["prod", "dev"]
    names = {f["name"] for f in data["flows"]}
    assert "S3 nightly export" not in names
    assert {f["card"] for f in data["flows"]} == {"legacy", "new"}
    assert len([f for f in data["flows"] if f["card"] == "legacy"]) == 8
    expiries = {a["name"]: a["expires_at"] for a in data["accounts"] if a["card"] == "new"}
    assert expiries["Pinterest - ad account 549755885175"] is None
    assert len(data["pairing"]["blockers"]) == 1
    assert [o["flow_name"] for o in data["pairing"]["orphans"]] == ["Holiday prospects"]


def test_discover_text(cli: Any, emu_env: dict[str, str]) -> None:
    result = cli(["discover"], env=emu_env)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "Inventory of EMULATOR0000000000000000@AdobeOrg: 2 sandboxes" in out
    assert "missing" in out and "expired 2d ago" in out and "in 3d" in out
    assert "Lookalike seeds, ad account 549755885175: BLOCKED (ambiguous)" in out
    assert "S3 nightly export" not in out


def test_the_cards_are_found_by_the_notice_name_or_the_draft_name(
    cli: Any, emulator: Any, emu_env: dict[str, str]
) -> None:
    from pinmigrate.emulator.model import LEGACY_SPEC_ID, NEW_SPEC_ID

    plans = {}
    for scenario, new_name in (("demo", "Pinterest"), ("demo+draft-names", "(New) Pinterest")):
        emulator.reset(scenario)
        plan = plan_json(cli, emu_env)
        assert plan["summary"] == DEMO_SUMMARY
        assert plan["cards"] == [
            {
                "sandbox": sandbox,
                "legacy": {"id": LEGACY_SPEC_ID, "name": "(Deprecating) Pinterest"},
                "new": {"id": NEW_SPEC_ID, "name": new_name},
            }
            for sandbox in ("prod", "dev")
        ]
        text = cli(["plan"], env=emu_env)
        assert text.exit_code == 0, text.stderr
        assert f"  legacy card  '(Deprecating) Pinterest' ({LEGACY_SPEC_ID})\n" in text.stdout
        assert f"  new card     '{new_name}' ({NEW_SPEC_ID})\n" in text.stdout
        plans[scenario] = {(a["kind"], a["target_id"]) for a in plan["actions"]}
    assert plans["demo"] == plans["demo+draft-names"]


def test_the_discover_view_names_the_cards(cli: Any, emu_env: dict[str, str]) -> None:
    result = cli(["discover", "--output", "json"], env=emu_env)
    assert result.exit_code == 0, result.stderr
    names = {(s["legacy_spec_name"], s["new_spec_name"]) for s in result.json()["sandboxes"]}
    assert names == {("(Deprecating) Pinterest", "Pinterest")}


@pytest.mark.parametrize("parent", ["missing", "a-file"])
def test_plan_out_into_a_missing_directory_is_a_usage_error_and_writes_nothing(
    cli: Any, emu_env: dict[str, str], emulator: Any, tmp_path: Path, state_dir: Path, parent: str
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    emulator.clear_requests()
    out = tmp_path / parent / "plan.json"
    before = sorted(p.name for p in tmp_path.iterdir())
    result = cli(["plan", "--out", str(out)], env=emu_env)
    assert result.exit_code == 64
    problem = "is not a directory" if parent == "a-file" else "does not exist"
    assert result.stderr.splitlines() == [
        f"pinmigrate: cannot save the plan to {out}: {'' if parent == 'a-file' else 'directory '}"
        f"{tmp_path / parent} {problem}; create it first or pick another"
    ]
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no silent mkdir
    assert list(state_dir.iterdir()) == []  # no plan key made either
    assert emulator.requests()["total"] == 0  # refused before discovery


def test_flow_by_name_is_the_pair_of_that_name(cli: Any, emu_env: dict[str, str]) -> None:
    by_id = plan_json(cli, emu_env, "--flow", legacy_id(plan_json(cli, emu_env), "Loyalty members"))
    # The legacy flow and its twin share the name: one pair, as by id.
    by_name = plan_json(cli, emu_env, "--flow", "Loyalty members")
    assert by_name["pairs"] == by_id["pairs"] and by_name["summary"] == by_id["summary"]
    assert [p["legacy_flow_name"] for p in by_name["pairs"]] == ["Loyalty members"]


def test_flow_by_a_name_of_several_flows_names_their_ids(cli: Any, emu_env: dict[str, str]) -> None:
    [blocker] = plan_json(cli, emu_env)["blockers"]  # Lookalike seeds: two twins by name
    result = cli(["plan", "--flow", "Lookalike seeds"], env=emu_env)
    assert result.exit_code == 64 and result.stdout == ""
    [line] = [x for x in result.stderr.splitlines() if not is_progress_line(x)]
    assert line.startswith("pinmigrate: --flow 'Lookalike seeds' names 3 flows: ")
    for flow_id in (blocker["flow_id"], *blocker["candidates"]):
        assert flow_id in line
    assert line.endswith("; pass the id of the one you mean")


def test_flow_names_are_compared_exactly_with_near_names_pointed_out(
    cli: Any, emu_env: dict[str, str]
) -> None:
    result = cli(["plan", "--flow", "loyalty  Members"], env=emu_env)
    assert result.exit_code == 64
    assert [x for x in result.stderr.splitlines() if not is_progress_line(x)] == [
        "pinmigrate: no Pinterest flow with id or name 'loyalty  Members' (--flow); names are "
        "compared exactly: did you mean 'Loyalty members'?"
    ]


def test_verbose_request_lines_match_each_attempt_with_its_answer(
    cli: Any, emu_env: dict[str, str]
) -> None:
    result = cli(["plan", "-v"], env=emu_env)
    assert result.exit_code == 0, result.stderr
    sent = re.findall(
        r"pinmigrate\.http: adobe (GET \S+ \[sandbox \w+\]) \(attempt 1\)", result.stderr
    )
    answered = re.findall(
        r"pinmigrate\.http: adobe (GET \S+ \[sandbox \w+\]) -> 200 ", result.stderr
    )
    assert sent and sorted(sent) == sorted(answered)
    assert {s.split("[sandbox ")[1] for s in sent} == {"prod]", "dev]"}
    assert any("/flows?" in s and "property=" in s for s in sent)
