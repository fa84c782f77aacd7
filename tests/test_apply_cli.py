"""``pinmigrate apply`` end to end: the real CLI against the emulator's demo scenario.

Covers convergence (plan, apply, plan again), the exact end state, staleness (exit 3 with
zero writes), unattended runs (exit 5), SIGKILL at several points followed by a rerun, and
the state-dir lock (a live holder blocks; a dead one is taken over).

The runs that write take the experimental api reconnect path (``migration.reconnect_via =
"api"``), the one whose reconnects are writes: a person at the terminal signs in to
Pinterest once for each account (the emulator approves at once), and that grant, never
pinmigrate's own login, is written into the account.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from e2e_support import (
    api_path_env,
    browser_command,
    person_at_terminal,
    spawn,
)

from pinmigrate.app import App
from pinmigrate.emulator import LEGACY_SPEC_ID, NEW_SPEC_ID
from pinmigrate.journal import list_runs, read_run
from pinmigrate.plan import Plan, load_plan, save_plan
from pinmigrate.plankey import load_key
from pinmigrate.report import is_progress_line

pytestmark = pytest.mark.slow

#: (sandbox, name) -> legacy state, new twin state, the twin's audiences (by name).
EXPECTED_AFTER: dict[tuple[str, str], tuple[str, str, list[str]]] = {
    ("prod", "Loyalty members"): (
        "disabled",
        "enabled",
        ["Gold tier members", "Silver tier members"],
    ),
    ("prod", "Cart abandoners"): (
        "disabled",
        "enabled",
        ["Abandoned cart 30d", "Abandoned cart 7d", "High-value abandoners"],
    ),
    ("prod", "Winback 2023"): ("disabled", "disabled", ["Lapsed 180d"]),
    ("prod", "Spring sale"): ("disabled", "enabled", ["Spring sale prospects"]),
    ("dev", "Newsletter subscribers"): ("disabled", "enabled", ["Newsletter subscribers"]),
    ("dev", "Dev smoke test"): ("disabled", "enabled", ["Smoke test audience"]),
}
#: Left alone: the orphan and the ambiguous pair (both twins stay disabled).
UNTOUCHED = {
    ("prod", "Holiday prospects", "legacy"): "enabled",
    ("prod", "Lookalike seeds", "legacy"): "enabled",
}
TOTAL_WRITES = 12  # 3 reconnects, 1 audience patch, 4 enables, 4 disables


# --- reading the emulator ---------------------------------------------------------------------


def card_of(flow: dict[str, Any]) -> str:
    spec = flow["inheritedAttributes"]["targetConnections"][0]["connectionSpec"]["id"]
    return {LEGACY_SPEC_ID: "legacy", NEW_SPEC_ID: "new"}.get(spec, "other")


def audience_names(flow: dict[str, Any]) -> list[str]:
    for t in flow.get("transformations", []):
        selectors = t.get("params", {}).get("segmentSelectors")
        if selectors:
            return [s["value"]["name"] for s in selectors["selectors"]]
    return []


def flows_by_key(emulator: Any) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    dump = emulator.state.dump()
    found: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for sandbox, kinds in dump["objects"].items():
        for flow in kinds["flows"]:
            found.setdefault((sandbox, flow["name"], card_of(flow)), []).append(flow)
    return found


def assert_end_state(emulator: Any) -> None:
    flows = flows_by_key(emulator)
    for (sandbox, name), (legacy_state, new_state, audiences) in EXPECTED_AFTER.items():
        [legacy] = flows[(sandbox, name, "legacy")]
        [new] = flows[(sandbox, name, "new")]
        assert legacy["state"] == legacy_state, (sandbox, name)
        assert new["state"] == new_state, (sandbox, name)
        got = audience_names(new)
        assert sorted(got) == audiences, (sandbox, name)
        assert len(got) == len(set(got)), f"an audience was added twice to {name}"
    for (sandbox, name, card), state in UNTOUCHED.items():
        assert [f["state"] for f in flows[(sandbox, name, card)]] == [state]
    assert [f["state"] for f in flows[("prod", "Lookalike seeds", "new")]] == ["disabled"] * 2
    dump = emulator.state.dump()
    for sandbox, kinds in dump["objects"].items():
        for account in kinds["connections"]:
            name = account.get("name", "")
            if (
                name.endswith(("549755885175", "549755885176", "549755885178"))
                and card_of_account(account) == "new"
            ):
                assert account["auth"]["params"].get("expiresAt"), name


def card_of_account(account: dict[str, Any]) -> str:
    return {LEGACY_SPEC_ID: "legacy", NEW_SPEC_ID: "new"}.get(
        account.get("connectionSpec", {}).get("id"), "other"
    )


def s3_etag(emulator: Any) -> str:
    [flow] = flows_by_key(emulator)[("prod", "S3 nightly export", "other")]
    return str(flow["etag"])


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def env(emulator: Any, emu_env: dict[str, str]) -> dict[str, str]:
    """The emulator's settings on the api reconnect path, plus a Pinterest login minted for
    emu_marketer in the environment (it serves the plan's pre-flight, never Adobe)."""
    answer = requests.post(f"{emulator.url}/_emulator/tokens", json={"user": "emu_marketer"})
    answer.raise_for_status()
    token = answer.json()["refresh_token"]
    return {**api_path_env(emulator, emu_env), "PINMIGRATE_PINTEREST_REFRESH_TOKEN": token}


@pytest.fixture
def person(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A person at the terminal who signs in to Pinterest for each account when asked."""
    return person_at_terminal(monkeypatch)


@pytest.fixture
def plan_file(cli: Callable[..., Any], env: dict[str, str], tmp_path: Path) -> Path:
    path = tmp_path / "plan.json"
    result = cli(["plan", "--out", str(path)], env)
    assert result.exit_code == 0, result.stderr
    return path


# --- convergence ------------------------------------------------------------------------------


def test_plan_apply_then_nothing_left_and_the_end_state_is_exact(
    cli: Callable[..., Any],
    env: dict[str, str],
    plan_file: Path,
    emulator: Any,
    person: list[str],
) -> None:
    s3_before = s3_etag(emulator)
    emulator.clear_requests()

    result = cli(["apply", str(plan_file), "--output", "json"], env)

    assert result.exit_code == 0, result.stderr
    assert 'Warning: migration.reconnect_via = "api" is experimental' in result.stderr
    report = result.json()  # stdout holds the JSON and nothing else
    assert report["kind"] == "pinmigrate.apply" and report["schema_version"] == 1
    assert Counter(r["status"] for r in report["results"]) == {"done": TOTAL_WRITES}
    assert report["summary"]["done"] == TOTAL_WRITES
    assert report["summary"]["blocked"] == 1 and report["summary"]["orphans"] == 1
    assert report["summary"]["retries"] == 0
    assert list(report) == [
        "schema_version",
        "kind",
        "run_id",
        "results",
        "blockers",
        "orphans",
        "summary",
        "pacing",  # additive: how the writes were paced
    ]
    assert "[12/12]" in result.stderr  # progress lines on stderr, not stdout
    assert emulator.requests()["writes"] == TOTAL_WRITES
    assert_end_state(emulator)
    assert s3_etag(emulator) == s3_before

    again = cli(["plan", "--detailed-exitcode", "--output", "json"], env)
    assert again.exit_code == 0, again.stderr
    assert again.json()["actions"] == []

    # The same plan file again: every goal is reached, nothing is written.
    emulator.clear_requests()
    rerun = cli(["apply", str(plan_file), "--output", "json"], env)
    assert rerun.exit_code == 0, rerun.stderr
    assert {r["status"] for r in rerun.json()["results"]} == {"already_done"}
    assert emulator.requests()["writes"] == 0

    state_dir = Path(env["PINMIGRATE_STATE_DIR"])
    journal = read_run(state_dir, report["run_id"])
    text = journal.path.read_text()
    assert journal.finished
    assert env["PINMIGRATE_PINTEREST_REFRESH_TOKEN"] not in text
    assert "pina_" not in text and "pinr_" not in text
    stored = json.loads((state_dir / "logins.json").read_text())
    tokens = [v for v in json.dumps(stored).split('"') if v.startswith(("pina_", "pinr_"))]
    assert tokens and not any(token in text for token in tokens)
    assert not any(token in result.stdout + result.stderr for token in tokens)


def test_every_list_query_pinmigrate_sends_is_one_the_emulator_takes(
    cli: Callable[..., Any],
    env: dict[str, str],
    tmp_path: Path,
    emulator: Any,
    person: list[str],
) -> None:
    """Small pages, strict list queries: doctor, plan, apply, rollback never meet a 400."""
    emulator.configure(page_size=2)
    emulator.clear_requests()
    plan = tmp_path / "small-pages.json"
    cli(["doctor"], env)  # its verdict is not the point here: the queries it sends are
    assert cli(["plan", "--out", str(plan)], env).exit_code == 0
    applied = cli(["apply", str(plan), "--output", "json"], env)
    assert applied.exit_code == 0, applied.stderr
    assert_end_state(emulator)
    assert cli(["rollback", "--yes", "--output", "json"], env).exit_code == 0
    log = emulator.requests()["log"]
    lists = [e for e in log if e["method"] == "GET" and e["endpoint"].count("/") == 1]
    assert any("continuationToken" in e["query"] for e in lists)  # several pages were read
    assert [e for e in log if e["status"] == 400] == []


def test_text_report_lists_what_was_done_and_what_was_not_handled(
    cli: Callable[..., Any], env: dict[str, str], plan_file: Path, person: list[str]
) -> None:
    result = cli(["apply", str(plan_file)], env)
    assert result.exit_code == 0, result.stderr
    assert "12 done" in result.stdout
    assert "Lookalike seeds" in result.stdout and "Holiday prospects" in result.stdout
    assert "not handled" in result.stdout.lower()
    assert "[1/12]" in result.stderr and "[1/12]" not in result.stdout


# --- staleness --------------------------------------------------------------------------------


def test_a_flow_changed_since_the_plan_is_stale_with_zero_writes(
    cli: Callable[..., Any], env: dict[str, str], plan_file: Path, emulator: Any
) -> None:
    [legacy] = flows_by_key(emulator)[("prod", "Loyalty members", "legacy")]
    changed = requests.patch(
        f"{emulator.url}/_emulator/objects/flows/{legacy['id']}", json={"state": "disabled"}
    )
    assert changed.status_code == 200, changed.text
    emulator.clear_requests()

    result = cli(["apply", str(plan_file)], env)

    assert result.exit_code == 3
    assert "Loyalty members" in result.stderr and legacy["id"] in result.stderr
    assert "nothing was changed" in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len([line for line in lines if not is_progress_line(line)]) == 1  # no traceback
    assert emulator.requests()["writes"] == 0
    assert emulator.requests()["write_attempts"] == 0
    assert result.stdout == ""


def test_a_plan_for_another_org_or_with_narrowing_flags_is_a_usage_error(
    cli: Callable[..., Any], env: dict[str, str], plan_file: Path, tmp_path: Path
) -> None:
    # Sealed with this state dir's own key: the org check holds even for a trusted plan.
    key = load_key(Path(env["PINMIGRATE_STATE_DIR"]))
    plan = load_plan(plan_file, key=key)
    other = Plan.model_validate(
        {**plan.model_dump(mode="json"), "org_id": "OTHER0000000000000000000@AdobeOrg"}
    ).sealed(key)
    other_file = tmp_path / "other.json"
    save_plan(other, other_file)
    result = cli(["apply", str(other_file)], env)
    assert result.exit_code == 64 and "OTHER0000" in result.stderr

    flagged = cli(["apply", str(plan_file), "--sandbox", "prod"], env)
    assert flagged.exit_code == 64 and "--sandbox" in flagged.stderr


def test_a_failed_enable_stops_its_legacy_switch_off_and_exits_1(
    cli: Callable[..., Any],
    env: dict[str, str],
    plan_file: Path,
    emulator: Any,
    person: list[str],
) -> None:
    from pinmigrate.emulator.state import Problem

    [loyalty] = flows_by_key(emulator)[("prod", "Loyalty members", "new")]
    original = emulator.state.flow_action

    def refuse(caller: Any, ident: str, *args: Any, **kwargs: Any) -> Any:
        if ident == loyalty["id"]:
            raise Problem(400, {"errorMessage": "Flow cannot be enabled right now"})
        return original(caller, ident, *args, **kwargs)

    emulator.state.flow_action = refuse

    result = cli(["apply", str(plan_file), "--output", "json"], env)

    assert result.exit_code == 1
    assert "did not finish" in result.stderr and "1 failed, 1 skipped" in result.stderr
    by_kind = {(r["kind"], r["target_id"]): r for r in result.json()["results"]}
    failed = by_kind[("enable_flow", loyalty["id"])]
    assert failed["status"] == "failed" and "cannot be enabled" in failed["error"]
    [legacy] = flows_by_key(emulator)[("prod", "Loyalty members", "legacy")]
    skipped = by_kind[("disable_flow", legacy["id"])]
    assert skipped["status"] == "skipped" and "enable_flow" in skipped["error"]
    assert legacy["state"] == "enabled"  # never switched off without its twin
    assert result.json()["summary"]["done"] == TOTAL_WRITES - 2


@pytest.mark.parametrize("terminal", [False, True])
def test_the_api_path_without_a_person_exits_4_before_any_write(
    cli: Callable[..., Any],
    env: dict[str, str],
    plan_file: Path,
    emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    terminal: bool,
) -> None:
    # No terminal, or a terminal with --no-input: nobody can sign in for the accounts, and
    # pinmigrate's own login (stored by the plan's pre-flight) is not handed over instead.
    opened = person_at_terminal(monkeypatch) if terminal else []
    if not terminal:
        monkeypatch.setattr(App, "stdin_is_tty", lambda self: False)
    store = Path(env["PINMIGRATE_STATE_DIR"]) / "logins.json"
    before = store.read_bytes()
    emulator.clear_requests()

    result = cli(["apply", str(plan_file), *(["--no-input"] if terminal else [])], env)

    assert result.exit_code == 4
    [line] = result.stderr.strip().splitlines()[-1:]
    for advertiser in ("549755885175", "549755885176", "549755885178"):
        assert f"Pinterest - ad account {advertiser}" in line
    assert 'reconnect_via = "adobe"' in line and "at a terminal" in line
    assert emulator.requests()["write_attempts"] == 0
    assert opened == [] and store.read_bytes() == before


def test_each_account_gets_its_own_grant_and_pinmigrates_logins_stay_its_own(
    cli: Callable[..., Any],
    env: dict[str, str],
    plan_file: Path,
    emulator: Any,
    person: list[str],
) -> None:
    state_dir = Path(env["PINMIGRATE_STATE_DIR"])
    store = state_dir / "logins.json"
    before = store.read_bytes()  # the environment's login, made by the plan's pre-flight
    kept = {v for v in before.decode().split('"') if v.startswith(("pina_", "pinr_"))}
    kept.add(env["PINMIGRATE_PINTEREST_REFRESH_TOKEN"])

    result = cli(["apply", str(plan_file), "--output", "json"], env)

    assert result.exit_code == 0, result.stderr
    assert store.read_bytes() == before
    assert len(person) == 3  # one sign-in for each account
    accounts = [
        account
        for kinds in emulator.state.dump()["objects"].values()
        for account in kinds["connections"]
        if card_of_account(account) == "new"
        and account["name"].endswith(("549755885175", "549755885176", "549755885178"))
    ]
    assert len(accounts) == 3
    sent = [
        (account["auth"]["params"]["accessToken"], account["auth"]["params"]["refreshToken"])
        for account in accounts
    ]
    given = {token for pair in sent for token in pair}
    assert len(given) == 6  # no grant shared by two accounts
    assert not given & kept  # neither a stored login nor the environment's token
    journal = read_run(state_dir, result.json()["run_id"]).path.read_text()
    for token in given | kept:
        assert token not in journal
        assert token not in result.stdout and token not in result.stderr
    for account in accounts:
        assert f"Pinterest sign-in for Adobe account {account['name']!r}" in result.stderr


# --- confirmation -----------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [[], ["--no-input"], ["--output", "json"]])
def test_unattended_apply_without_yes_refuses_with_exit_5_and_no_write(
    cli: Callable[..., Any], env: dict[str, str], emulator: Any, extra: list[str]
) -> None:
    emulator.clear_requests()
    result = cli(["apply", *extra], env)  # CliRunner's stdin is not a terminal
    assert result.exit_code == 5
    assert "pass --yes" in result.stderr
    assert emulator.requests()["write_attempts"] == 0
    if "--output" in extra:
        assert result.stdout == ""


def test_a_person_can_decline_or_confirm_at_the_terminal(
    cli: Callable[..., Any], env: dict[str, str], emulator: Any, person: list[str]
) -> None:
    emulator.clear_requests()
    declined = cli(["apply"], env, input="n\n")
    assert declined.exit_code == 5 and "declined" in declined.stderr
    assert "Plan:" in declined.stdout  # the fresh plan was shown first
    assert emulator.requests()["write_attempts"] == 0

    confirmed = cli(["apply"], env, input="y\n")
    assert confirmed.exit_code == 0, confirmed.stderr
    assert_end_state(emulator)


def test_apply_yes_with_a_fresh_plan_prints_only_json(
    cli: Callable[..., Any], env: dict[str, str], emulator: Any, person: list[str]
) -> None:
    result = cli(["apply", "--yes", "--output", "json", "--concurrency", "2"], env)
    assert result.exit_code == 0, result.stderr
    assert result.json()["summary"]["done"] == TOTAL_WRITES
    assert_end_state(emulator)

    nothing = cli(["apply", "--output", "json"], env)  # converged: no --yes needed
    assert nothing.exit_code == 0, nothing.stderr
    assert nothing.json()["results"] == [] and nothing.json()["run_id"] is None


def test_wait_runs_reports_each_enabled_flows_first_run(
    cli: Callable[..., Any], env: dict[str, str], plan_file: Path, person: list[str]
) -> None:
    result = cli(["apply", str(plan_file), "--wait-runs", "--output", "json"], env)
    assert result.exit_code == 0, result.stderr
    runs = result.json()["runs"]
    assert len(runs) == 4
    assert {r["status"] for r in runs} == {"success"}


# --- crash and resume -------------------------------------------------------------------------


def kill_at_write(
    emulator: Any, k: int, target: dict[str, Any], *, applied: bool
) -> Counter[tuple[str, ...]]:
    """Make the emulator SIGKILL the apply process at its k-th write, after applying that
    write (the client never hears the answer) or instead of applying it. Returns a counter
    of the writes the emulator applied, kept on the server side (the request log may miss
    the answer that went to a dead process)."""
    state = emulator.state
    lock = threading.Lock()
    count = {"n": 0}
    applied_writes: Counter[tuple[str, ...]] = Counter()

    def wrap(original: Callable[..., Any], name: str) -> Callable[..., Any]:
        def hooked(*args: Any, **kwargs: Any) -> Any:
            with lock:
                count["n"] += 1
                now = count["n"] == k
            if now and not applied:
                os.kill(target["pid"], signal.SIGKILL)
                raise ConnectionAbortedError("killed before this write was applied")
            answer = original(*args, **kwargs)
            key = (name, *(str(a) for a in args[1:3]))
            with lock:
                applied_writes[key] += 1
            if now:
                os.kill(target["pid"], signal.SIGKILL)
            return answer

        return hooked

    state.flow_action = wrap(state.flow_action, "action")
    state.patch_object = wrap(state.patch_object, "patch")
    return applied_writes


def subprocess_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The settings of a CLI in a subprocess, whose browser (BROWSER) signs in when asked."""
    return {**env, "PINMIGRATE_OUTPUT": "json", "BROWSER": browser_command(tmp_path)}


@pytest.mark.parametrize(
    ("k", "applied"), [(1, True), (4, True), (6, True), (9, True), (12, True), (5, False)]
)
def test_a_run_killed_at_write_k_is_finished_by_a_rerun(
    cli: Callable[..., Any],
    env: dict[str, str],
    plan_file: Path,
    emulator: Any,
    k: int,
    applied: bool,
    person: list[str],
    tmp_path: Path,
) -> None:
    state_dir = Path(env["PINMIGRATE_STATE_DIR"])
    emulator.clear_requests()
    target: dict[str, Any] = {}
    applied_writes = kill_at_write(emulator, k, target, applied=applied)
    proc = spawn(["apply", str(plan_file)], subprocess_env(env, tmp_path), terminal=True)
    target["pid"] = proc.pid
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    [first_id] = list_runs(state_dir)
    first = read_run(state_dir, first_id)
    assert not first.finished
    assert len(first.writes) >= k  # every write it sent was journalled first
    if not applied:
        assert first.interrupted_writes()  # a "before" with no "after"
    assert (state_dir / "lock").exists()  # left behind by the killed process

    result = cli(["apply", str(plan_file), "--output", "json"], env)

    assert result.exit_code == 0, result.stderr
    assert "Took over the lock" in result.stderr
    assert "did not finish" in result.stderr
    assert_end_state(emulator)
    # Nothing was done twice: one applied write per object and kind of change.
    assert sum(applied_writes.values()) == TOTAL_WRITES, applied_writes
    assert max(applied_writes.values()) == 1, applied_writes
    # The journals agree with what happened.
    statuses = {r["action_id"]: r["status"] for r in result.json()["results"]}
    finished_before = {r["action_id"] for r in first.records if r["event"] == "after"}
    assert len(finished_before) <= k
    for action in finished_before:
        assert statuses[action] == "already_done", action
    assert set(statuses.values()) <= {"done", "already_done"}
    second = read_run(state_dir, result.json()["run_id"])
    assert second.finished and not second.interrupted_writes()
    assert not (state_dir / "lock").exists()


# --- the lock ---------------------------------------------------------------------------------


def test_a_second_concurrent_apply_exits_1_naming_the_first(
    cli: Callable[..., Any], env: dict[str, str], plan_file: Path, emulator: Any, tmp_path: Path
) -> None:
    started, release = threading.Event(), threading.Event()
    original = emulator.state.patch_object

    def held(*args: Any, **kwargs: Any) -> Any:
        started.set()
        release.wait(30)
        return original(*args, **kwargs)

    emulator.state.patch_object = held
    proc = spawn(["apply", str(plan_file)], subprocess_env(env, tmp_path), terminal=True)
    try:
        assert started.wait(30), "the first apply never wrote"
        second = cli(["apply", str(plan_file)], env)
    finally:
        release.set()
        out, err = proc.communicate(timeout=60)
    assert second.exit_code == 1
    assert f"pid {proc.pid}@{socket.gethostname()}" in second.stderr
    assert "holds the lock" in second.stderr
    assert proc.returncode == 0, err.decode()
    assert json.loads(out)["summary"]["done"] == TOTAL_WRITES


def test_a_lock_left_by_a_dead_process_is_taken_over(
    cli: Callable[..., Any],
    env: dict[str, str],
    plan_file: Path,
    emulator: Any,
    person: list[str],
) -> None:
    ghost = subprocess.Popen([sys.executable, "-c", "pass"])
    ghost.wait()
    lock = Path(env["PINMIGRATE_STATE_DIR"]) / "lock"
    lock.write_text(
        json.dumps(
            {"pid": ghost.pid, "host": socket.gethostname(), "run_id": "ghost", "started": "x"}
        )
    )
    result = cli(["apply", str(plan_file)], env)
    assert result.exit_code == 0, result.stderr
    assert "Took over the lock" in result.stderr and "ghost" in result.stderr
    assert not lock.exists()
    assert_end_state(emulator)


def test_json_output_at_a_terminal_needs_yes_and_never_prompts_blind(
    cli: Callable[..., Any], env: dict[str, str], emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(App, "stdin_is_tty", lambda self: True)
    emulator.clear_requests()
    result = cli(["apply", "--output", "json"], env, input="y\n")
    assert result.exit_code == 5
    assert "--output json needs --yes (or a plan file)" in result.stderr
    assert "pass --yes" in result.stderr
    assert result.stdout == ""  # no plan, no prompt, no report
    assert emulator.requests()["write_attempts"] == 0


def test_the_json_report_itemises_what_the_plan_left_out(
    cli: Callable[..., Any], env: dict[str, str], plan_file: Path, person: list[str]
) -> None:
    result = cli(["apply", str(plan_file), "--output", "json"], env)
    assert result.exit_code == 0, result.stderr
    report = result.json()
    [blocker] = report["blockers"]
    assert blocker["name"] == "Lookalike seeds" and blocker["kind"] == "ambiguous"
    assert len(blocker["candidates"]) == 2 and blocker["reason"]
    [orphan] = report["orphans"]
    assert orphan["name"] == "Holiday prospects" and orphan["sandbox"] == "prod"
    assert set(orphan) == {"sandbox", "flow_id", "name", "reason"}
