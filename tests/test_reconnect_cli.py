"""The reconnect a person does in Adobe, end to end: the installed CLI in a subprocess with no
terminal, the emulator's Adobe pages, and a scripted person pressing Reconnect OAuth.

Covers what an operator's CI job sees: a wait that ends when the person reconnects (exit 0,
no account written by pinmigrate), no wait at all (exit 4 naming every account, the rest
done), a rerun after the reconnect that finishes with nothing done twice, a run killed while
it waits, and an expiry shape other than the emulator's default.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from e2e_support import PROCESS_TIMEOUT, kill, spawn, wait_for

from pinmigrate.emulator import Emulator
from pinmigrate.emulator.person import reconnect_via_ui

pytestmark = pytest.mark.slow

#: (sandbox, flow name) -> the account it waits for; Newsletter subscribers' is valid.
WAITING_FLOWS = {
    ("prod", "Loyalty members"),
    ("prod", "Cart abandoners"),
    ("dev", "Dev smoke test"),
}
INDEPENDENT_FLOWS = {("dev", "Newsletter subscribers")}


@pytest.fixture(params=["demo", "demo+no-expiry"])
def emu(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """The demo scenario, with the default expiry shape and with no expiry field at all."""
    emulator = Emulator(scenario=request.param, port=0, auto_approve=True)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def env(emu: Emulator, tmp_path: Path) -> dict[str, str]:
    state = tmp_path / "state"
    state.mkdir()
    return {
        **emu.env(),
        "PINMIGRATE_STATE_DIR": str(state),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        "XDG_STATE_HOME": str(tmp_path / "xdg-state"),
    }


def journal_records(env: dict[str, str]) -> list[dict[str, Any]]:
    runs = sorted((Path(env["PINMIGRATE_STATE_DIR"]) / "runs").glob("*.jsonl"))
    records: list[dict[str, Any]] = []
    for path in runs:
        records += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return records


def waiting(env: dict[str, str]) -> list[dict[str, Any]]:
    return [r for r in journal_records(env) if r["event"] == "waiting"]


def flow_states(emu: Emulator) -> dict[tuple[str, str, str], str]:
    from pinmigrate.emulator import LEGACY_SPEC_ID, NEW_SPEC_ID

    cards = {LEGACY_SPEC_ID: "legacy", NEW_SPEC_ID: "new"}
    found = {}
    for sandbox, kinds in emu.state.dump()["objects"].items():
        for flow in kinds["flows"]:
            spec = flow["inheritedAttributes"]["targetConnections"][0]["connectionSpec"]["id"]
            if flow["name"] != "Lookalike seeds" and spec in cards:
                found[(sandbox, flow["name"], cards[spec])] = flow["state"]
    return found


def account_writes(emu: Emulator) -> int:
    by_endpoint = emu.requests()["by_endpoint"]
    return sum(n for e, n in by_endpoint.items() if "/connections" in e and e.startswith("PATCH"))


def flow_writes(emu: Emulator) -> Counter[tuple[str, str]]:
    """(method, path) -> how often Flow Service accepted that write."""
    return Counter(
        (e["method"], e["path"] + "?" + ",".join(e["query"].get("op", [])))
        for e in emu.requests()["log"]
        if e["method"] in ("POST", "PATCH")
        and "/flowservice/" in e["path"]
        and e["status"] is not None
        and 200 <= e["status"] < 300
    )


def secrets_in(emu: Emulator) -> list[str]:
    """Every secret the emulator handed out: IMS tokens, both apps' Pinterest tokens, codes."""
    from pinmigrate.emulator import CLIENT_SECRET, PINTEREST_APP_SECRET

    hidden = emu.state.dump()["secrets"]
    found = [CLIENT_SECRET, PINTEREST_APP_SECRET]
    found += [r["token"] for r in hidden["ims_tokens"]]
    found += [r["token"] for r in hidden["pinterest_tokens"]]
    found += [r["code"] for r in hidden["pinterest_codes"]]
    return found


def test_apply_waits_for_a_person_who_reconnects_in_adobe_then_finishes(
    emu: Emulator, env: dict[str, str]
) -> None:
    emu.clear_requests()
    proc = spawn(
        ["apply", "--yes", "--no-input", "--reconnect-timeout", "60", "--output", "json"], env
    )
    try:
        wait_for(lambda: len(waiting(env)) == 3, "apply to name the accounts it waits for")
        time.sleep(2)  # the person takes a moment
        renewed_at: dict[str, float] = {}
        for record in waiting(env):
            reconnect_via_ui(record["page"])  # the page apply names, as a person opens it
            renewed_at[record["target_id"]] = time.time()
            time.sleep(1)
        out, err = proc.communicate(timeout=PROCESS_TIMEOUT)
    finally:
        kill(proc)

    assert proc.returncode == 0, err.decode()
    report = json.loads(out)
    assert report["summary"]["done"] == 12 and report["summary"]["failed"] == 0
    stderr = err.decode()
    assert "3 accounts need Reconnect OAuth in Adobe" in stderr
    assert "Reconnect OAuth for account 'Pinterest - ad account 549755885175'" in stderr
    observed = {r["target_id"]: r["ts"] for r in journal_records(env) if r["event"] == "observed"}
    assert set(observed) == set(renewed_at)
    from datetime import datetime

    for account, at in renewed_at.items():
        seen = datetime.fromisoformat(observed[account].replace("Z", "+00:00")).timestamp()
        assert seen - at <= 20, f"the renewal of {account} was noticed after {seen - at:.1f} s"
    assert account_writes(emu) == 0  # pinmigrate never wrote credentials
    # Adobe's own tokens (from the person's Reconnect OAuth) and every other secret stay out
    # of what pinmigrate printed and wrote.
    written = out.decode() + stderr + json.dumps(journal_records(env))
    tokens = secrets_in(emu)
    assert any(t.startswith("pina_") for t in tokens)  # the person's grant is in the scan
    assert [t for t in tokens if t in written] == []
    states = flow_states(emu)
    for sandbox, name in WAITING_FLOWS | INDEPENDENT_FLOWS:
        assert states[(sandbox, name, "new")] == "enabled", name
        assert states[(sandbox, name, "legacy")] == "disabled", name


def test_without_a_wait_apply_does_the_rest_and_exits_4_then_a_rerun_finishes(
    emu: Emulator, env: dict[str, str]
) -> None:
    started = time.monotonic()
    proc = spawn(["apply", "--yes", "--no-input", "--output", "json"], env)
    out, err = proc.communicate(timeout=PROCESS_TIMEOUT)
    took = time.monotonic() - started

    assert proc.returncode == 4, err.decode()
    assert took < 10
    last = err.decode().strip().splitlines()[-1]
    assert last.startswith("pinmigrate: 3 account(s) still need Reconnect OAuth in Adobe")
    for advertiser in ("549755885175", "549755885176", "549755885178"):
        assert f"'Pinterest - ad account {advertiser}'" in last
    report = json.loads(out)
    statuses = Counter(r["status"] for r in report["results"])
    assert statuses == {"done": 3, "failed": 3, "skipped": 6}
    waiting_json = report["reconnects_waiting"]  # for scripts: what a person still has to do
    assert sorted(w["advertiser_ids"][0] for w in waiting_json) == [
        "549755885175",
        "549755885176",
        "549755885178",
    ]
    assert all(w["page"].startswith(emu.url + "/ui/") for w in waiting_json)
    states = flow_states(emu)
    for sandbox, name in WAITING_FLOWS:
        assert states[(sandbox, name, "new")] == "disabled", f"{name}: its account waits"
        assert states[(sandbox, name, "legacy")] == "enabled", name
    for sandbox, name in INDEPENDENT_FLOWS:
        assert states[(sandbox, name, "new")] == "enabled", name
        assert states[(sandbox, name, "legacy")] == "disabled", name
    assert account_writes(emu) == 0

    # The person reconnects the accounts in Adobe; the rerun finishes, nothing twice.
    for record in waiting(env):
        answer = requests.post(
            f"{emu.url}/_emulator/accounts/{record['target_id']}/reconnect", json={}
        )
        assert answer.status_code == 200, answer.text
    rerun = spawn(["apply", "--yes", "--no-input", "--output", "json"], env)
    out, err = rerun.communicate(timeout=PROCESS_TIMEOUT)
    assert rerun.returncode == 0, err.decode()
    # A fresh plan: the accounts no longer need a reconnect; what was done is not planned.
    again = Counter((r["kind"], r["status"]) for r in json.loads(out)["results"])
    assert again == {("enable_flow", "done"): 3, ("disable_flow", "done"): 3}
    assert all(n == 1 for n in flow_writes(emu).values()), flow_writes(emu)
    states = flow_states(emu)
    for sandbox, name in WAITING_FLOWS | INDEPENDENT_FLOWS:
        assert states[(sandbox, name, "new")] == "enabled", name
        assert states[(sandbox, name, "legacy")] == "disabled", name


def test_a_run_killed_while_it_waits_is_finished_by_a_rerun(
    emu: Emulator, env: dict[str, str]
) -> None:
    proc = spawn(["apply", "--yes", "--no-input", "--reconnect-timeout", "120"], env)
    try:
        wait_for(lambda: len(waiting(env)) == 3, "apply to start waiting")
    finally:
        kill(proc)
    for record in waiting(env):
        requests.post(f"{emu.url}/_emulator/accounts/{record['target_id']}/reconnect", json={})

    rerun = spawn(["apply", "--yes", "--no-input"], env)
    _, err = rerun.communicate(timeout=PROCESS_TIMEOUT)

    assert rerun.returncode == 0, err.decode()
    assert "did not finish" in err.decode()  # the interrupted run is named
    assert all(n == 1 for n in flow_writes(emu).values()), flow_writes(emu)
    assert account_writes(emu) == 0
    states = flow_states(emu)
    for sandbox, name in WAITING_FLOWS | INDEPENDENT_FLOWS:
        assert states[(sandbox, name, "new")] == "enabled", name


def test_plan_without_any_pinterest_login_lists_the_reconnects_not_checked(
    emu: Emulator, env: dict[str, str]
) -> None:
    bare = {k: v for k, v in env.items() if not k.startswith("PINMIGRATE_PINTEREST_")}
    proc = spawn(["plan", "--detailed-exitcode", "--output", "json"], bare)
    out, err = proc.communicate(timeout=PROCESS_TIMEOUT)
    assert proc.returncode == 2, err.decode()
    reconnects = [a for a in json.loads(out)["actions"] if a["kind"] == "reconnect_account"]
    assert len(reconnects) == 3
    assert {a["details"]["preflight"] for a in reconnects} == {"not_checked"}
    rules = {a["details"]["expiry_rule"] for a in reconnects}
    no_expiry = emu.state.scenario.endswith("+no-expiry")
    assert rules == ({"updatedAt+30d", "none"} if no_expiry else {"expiresAt", "none"})
