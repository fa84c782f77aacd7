"""``pinmigrate rollback`` end to end against the emulator's demo scenario.

The applies it undoes take the api reconnect path (``migration.reconnect_via = "api"``),
where the reconnects are writes of their own (left alone by rollback): a person at the
terminal signs in to Pinterest for each account, the emulator approving at once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from e2e_support import api_path_env, person_at_terminal

from pinmigrate.emulator import LEGACY_SPEC_ID, NEW_SPEC_ID
from pinmigrate.journal import read_run

pytestmark = pytest.mark.slow


def flows_by_key(emulator: Any) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """Every flow of the emulator by (sandbox, name, card)."""
    cards = {LEGACY_SPEC_ID: "legacy", NEW_SPEC_ID: "new"}
    found: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for sandbox, kinds in emulator.state.dump()["objects"].items():
        for flow in kinds["flows"]:
            spec = flow["inheritedAttributes"]["targetConnections"][0]["connectionSpec"]["id"]
            key = (sandbox, flow["name"], cards.get(spec, "other"))
            found.setdefault(key, []).append(flow)
    return found


def audience_names(flow: dict[str, Any]) -> list[str]:
    for transformation in flow.get("transformations", []):
        selectors = transformation.get("params", {}).get("segmentSelectors")
        if selectors:
            return [s["value"]["name"] for s in selectors["selectors"]]
    return []


def flow_states(emulator: Any) -> dict[tuple[str, str, str], list[str]]:
    return {key: [f["state"] for f in flows] for key, flows in flows_by_key(emulator).items()}


@pytest.fixture
def env(emulator: Any, emu_env: dict[str, str]) -> dict[str, str]:
    answer = requests.post(f"{emulator.url}/_emulator/tokens", json={"user": "emu_marketer"})
    answer.raise_for_status()
    token = answer.json()["refresh_token"]
    return {**api_path_env(emulator, emu_env), "PINMIGRATE_PINTEREST_REFRESH_TOKEN": token}


def apply_at_terminal(cli: Callable[..., Any], args: list[str], env: dict[str, str]) -> Any:
    """``pinmigrate ARGS`` with a person at the terminal who signs in when asked."""
    with pytest.MonkeyPatch.context() as patch:
        person_at_terminal(patch)
        return cli(args, env)


@pytest.fixture
def applied(cli: Callable[..., Any], env: dict[str, str], emulator: Any) -> dict[str, Any]:
    """The demo world before, and the JSON report of an apply of it."""
    before = flow_states(emulator)
    result = apply_at_terminal(cli, ["apply", "--yes", "--output", "json"], env)
    assert result.exit_code == 0, result.stderr
    return {"before": before, "report": result.json()}


def test_rollback_restores_flow_states_and_a_second_run_changes_nothing(
    cli: Callable[..., Any], env: dict[str, str], emulator: Any, applied: dict[str, Any]
) -> None:
    assert flow_states(emulator) != applied["before"]
    emulator.clear_requests()

    result = cli(["rollback", "--yes", "--output", "json"], env)

    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["kind"] == "pinmigrate.rollback"
    assert report["rollback_of"] == applied["report"]["run_id"]
    assert {r["status"] for r in report["results"]} == {"done"}
    assert len(report["results"]) == 8  # 4 legacy flows back on, 4 new flows off
    # Each result says which side it touched, where, and the flow's name.
    assert {(r["kind"], r["side"]) for r in report["results"]} == {
        ("enable_flow", "legacy"),
        ("disable_flow", "new"),
    }
    states = flow_states(emulator)
    for r in report["results"]:
        assert (r["sandbox"], r["target_name"], r["side"]) in states
    assert flow_states(emulator) == applied["before"]
    assert emulator.requests()["writes"] == 8
    # Audiences and reconnects stay, and the report says so.
    [cart] = flows_by_key(emulator)[("prod", "Cart abandoners", "new")]
    assert len(audience_names(cart)) == 3
    assert any("audiences" in line for line in report["left_alone"])
    assert any("credentials" in line for line in report["left_alone"])
    journal = read_run(Path(env["PINMIGRATE_STATE_DIR"]), report["run_id"])
    assert journal.kind == "rollback" and journal.finished

    # The journal shows the run rolled back in full: nothing is left to undo, nothing read.
    emulator.clear_requests()
    again = cli(["rollback", "--yes", "--output", "json"], env)
    assert again.exit_code == 0, again.stderr
    assert again.json()["results"] == []
    assert again.json()["run_id"] is None
    assert again.json()["rollback_of"] == applied["report"]["run_id"]
    assert again.json()["undone_by"] == report["run_id"]
    assert emulator.requests()["writes"] == 0

    text = cli(["rollback", "--yes"], env)
    assert text.exit_code == 0, text.stderr
    assert text.stdout == ""
    assert text.stderr.splitlines() == [
        f"Nothing left to undo: run {applied['report']['run_id']} was rolled back by run "
        f"{report['run_id']}."
    ]
    assert emulator.requests()["total"] == 0


def test_a_flow_changed_since_the_run_is_left_as_it_is(
    cli: Callable[..., Any], env: dict[str, str], emulator: Any, applied: dict[str, Any]
) -> None:
    [legacy] = flows_by_key(emulator)[("prod", "Loyalty members", "legacy")]
    # The operator deleted nothing but re-enabled this legacy flow by hand since the run.
    requests.patch(
        f"{emulator.url}/_emulator/objects/flows/{legacy['id']}", json={"state": "enabled"}
    ).raise_for_status()

    result = cli(["rollback", applied["report"]["run_id"], "--yes"], env)

    assert result.exit_code == 0, result.stderr
    assert "already done" in result.stdout
    assert flow_states(emulator) == applied["before"]


def test_rollback_needs_yes_without_a_terminal(
    cli: Callable[..., Any], env: dict[str, str], emulator: Any, applied: dict[str, Any]
) -> None:
    emulator.clear_requests()
    result = cli(["rollback"], env)
    assert result.exit_code == 5 and "run `pinmigrate rollback --yes`" in result.stderr
    assert "apply" not in result.stderr and "plan" not in result.stderr
    assert emulator.requests()["write_attempts"] == 0
    # The preview says which side each flow is on.
    assert "enable legacy flow 'Loyalty members' (prod, " in result.stdout
    assert "disable new flow 'Loyalty members' (prod, " in result.stdout
    run_id = applied["report"]["run_id"]
    named = cli(["rollback", run_id], env)
    assert named.exit_code == 5 and f"run `pinmigrate rollback {run_id} --yes`" in named.stderr


def test_a_rollback_that_did_not_finish_is_not_taken_for_done(
    cli: Callable[..., Any], env: dict[str, str], emulator: Any, applied: dict[str, Any]
) -> None:
    done = cli(["rollback", "--yes", "--output", "json"], env)
    assert done.exit_code == 0, done.stderr
    journal = Path(env["PINMIGRATE_STATE_DIR"]) / "runs" / f"{done.json()['run_id']}.jsonl"
    # The rollback run as a kill would have left it: no run_end.
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(line for line in lines if '"run_end"' not in line) + "\n")

    again = cli(["rollback", "--yes", "--output", "json"], env)
    assert again.exit_code == 0, again.stderr
    assert again.json()["undone_by"] is None
    assert {r["status"] for r in again.json()["results"]} == {"already_done"}


def test_unknown_run_ids_and_empty_state_dirs_are_usage_errors(
    cli: Callable[..., Any], env: dict[str, str]
) -> None:
    nothing = cli(["rollback", "--yes"], env)
    assert nothing.exit_code == 64 and "no apply run" in nothing.stderr
    unknown = cli(["rollback", "20200101T000000000Z-abcdef", "--yes"], env)
    assert unknown.exit_code == 64 and "20200101T000000000Z-abcdef" in unknown.stderr


def test_rollback_of_a_rerun_undoes_the_partial_run_it_finished(
    cli: Callable[..., Any], env: dict[str, str], emulator: Any
) -> None:
    from pinmigrate.emulator.state import bad_request

    before = flow_states(emulator)
    [legacy] = flows_by_key(emulator)[("prod", "Loyalty members", "legacy")]
    original = emulator.state.flow_action

    def refuse_once(caller: Any, ident: str, op: str | None, if_match: str | None) -> Any:
        if ident == legacy["id"] and (op or "").lower() == "disable":
            emulator.state.flow_action = original
            raise bad_request("this flow is being edited", sandbox=caller.sandbox)
        return original(caller, ident, op, if_match)

    emulator.state.flow_action = refuse_once
    first = apply_at_terminal(cli, ["apply", "--yes", "--output", "json"], env)
    assert first.exit_code == 1  # its twin is on, the legacy flow is not off
    # A fresh plan finishes it.
    second = apply_at_terminal(cli, ["apply", "--yes", "--output", "json"], env)
    assert second.exit_code == 0, second.stderr
    runs = [first.json()["run_id"], second.json()["run_id"]]

    result = cli(["rollback", "--yes", "--output", "json"], env)

    assert result.exit_code == 0, result.stderr
    assert flow_states(emulator) == before  # Loyalty members: legacy on, twin off again
    report = result.json()
    assert report["rollback_of"] == runs[1] and report["covers"] == runs[::-1]
    state_dir = Path(env["PINMIGRATE_STATE_DIR"])
    assert read_run(state_dir, runs[1]).start["continues"] == [runs[0]]
    text = cli(["rollback", "--yes"], env)
    assert text.exit_code == 0, text.stderr
    assert text.stderr == (
        f"Nothing left to undo: run {runs[1]} and the run(s) it carried on ({runs[0]}) were "
        f"rolled back by run {report['run_id']}.\n"
    )
    # The earlier run, named on its own, was undone by the same rollback.
    earlier = cli(["rollback", runs[0], "--yes"], env)
    assert earlier.exit_code == 0, earlier.stderr
    assert earlier.stderr == (
        f"Nothing left to undo: run {runs[0]} was rolled back by run {report['run_id']}.\n"
    )


def test_rollback_with_json_output_needs_yes_even_at_a_terminal(
    cli: Callable[..., Any],
    env: dict[str, str],
    emulator: Any,
    applied: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pinmigrate.app import App

    monkeypatch.setattr(App, "stdin_is_tty", lambda self: True)
    emulator.clear_requests()
    result = cli(["rollback", "--output", "json"], env, input="y\n")
    assert result.exit_code == 5 and "--output json needs --yes" in result.stderr
    assert emulator.requests()["write_attempts"] == 0
