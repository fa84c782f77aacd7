"""doctor, discover, plan and apply of the real CLI against the independent fake: three
sandboxes, Unicode names, pages of two, 202 PATCHes, a rotating refresh token in the
environment, strict headers and etags."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from .fake_services import (
    ANALYST,
    APP_SECRET,
    CLIENT_SECRET,
    FLOWSERVICE,
    KAMPAGNE,
    LEGACY_SPEC,
    LONG_NAME,
    LOYALTY_JA,
    MARKETER,
    NEW_SPEC,
    NO_SELECTORS,
    PROMO,
    SANDBOXES,
    SOLDES,
    Expected,
    Logged,
    Request,
    World,
    audience_ids,
    ids_by_name,
)

#: every test runs the real CLI as a separate process against the fake services
pytestmark = pytest.mark.slow

NAMES = (SOLDES, LOYALTY_JA, KAMPAGNE, "Newsletter abonnés", PROMO, LONG_NAME, NO_SELECTORS)
Actions = Iterable[tuple[str, str]]


def refresh_env(world: World, user: str = MARKETER) -> dict[str, str]:
    return {"PINMIGRATE_PINTEREST_REFRESH_TOKEN": world.issue_refresh_token(user)}


def assert_no_secret(world: World, *texts: str, spent: Iterable[str] = ()) -> None:
    with world.lock:
        known = [
            CLIENT_SECRET,
            APP_SECRET,
            *world.ims_tokens,
            *world.access_tokens,
            *world.refresh_tokens,
            *world.codes,
            *spent,
        ]
    for secret in known:
        for text in texts:
            assert secret not in text, "a secret was printed or written"


def expected_orphan(plan: dict[str, Any], name: str) -> str:
    return str(next(o["flow_id"] for o in plan["orphans"] if o["flow_name"] == name))


def action_set(plan: dict[str, Any]) -> set[tuple[str, str]]:
    return {(a["kind"], a["target_id"]) for a in plan["actions"]}


def as_action(entry: Logged) -> tuple[str, str]:
    """A Platform write as the plan action it stands for."""
    parts = entry.path[len(FLOWSERVICE) :].strip("/").split("/")
    if entry.method == "PATCH" and parts[0] == "flows":
        return ("add_audiences", parts[1])
    if entry.method == "PATCH" and parts[0] == "connections":
        return ("reconnect_account", parts[1])
    if entry.method == "POST" and parts[2:] == ["action"]:
        return (f"{dict(entry.query).get('op', '').lower()}_flow", parts[1])
    return (f"{entry.method} {entry.path}", "")


def check_final_state(
    world: World, before: dict[str, Any], actions: Actions, expected: Expected
) -> None:
    """Exactly the planned changes happened; every other object reads as before."""
    actions = set(actions)
    want = {
        fid: {"state": f["state"], "audiences": f["audiences"]}
        for fid, f in before["flows"].items()
    }
    for kind, target in actions:
        if kind == "enable_flow":
            want[target]["state"] = "enabled"
        elif kind == "disable_flow":
            want[target]["state"] = "disabled"
        elif kind == "add_audiences":
            legacy = world.flow(expected.twins[target])
            want[target]["audiences"] = sorted(
                set(want[target]["audiences"]) | audience_ids(legacy)
            )
    after = world.snapshot()
    got = {
        fid: {"state": f["state"], "audiences": f["audiences"]} for fid, f in after["flows"].items()
    }
    assert got == want
    changed = {target for _, target in actions}
    for fid, flow in after["flows"].items():
        if fid not in changed:
            assert flow["etag"] == before["flows"][fid]["etag"], f"untouched flow {fid} changed"
    for cid, account in after["accounts"].items():
        if ("reconnect_account", cid) not in actions:
            assert account == before["accounts"][cid], f"account {cid} was changed"
            continue
        # Reconnected by a person in Adobe: a grant of Adobe's own app, never pinmigrate's.
        params = account["auth"]["params"]
        grant = world.adobe_grants.get(params["accessToken"])
        assert grant is not None and grant.user == MARKETER
        assert params["accessToken"] not in world.access_tokens
        assert set(expected.reconnect_advertisers[cid]) <= set(world.users[grant.user].ad_accounts)
        expires = account["updatedAt"] / 1000 + params["expiresIn"]
        assert expires - time.time() > 8 * 86400


def reconnect_in_adobe(world: World, actions: Actions) -> None:
    """A person presses Reconnect OAuth in Adobe for every account the plan lists."""
    for kind, target in actions:
        if kind == "reconnect_account":
            world.reconnect_in_adobe(target)


def expected_statuses(actions: Actions, reconnected_before: bool) -> Counter[tuple[str, str]]:
    """Each action's status when the accounts were reconnected before apply (already done)
    or while it waited (done)."""
    return Counter(
        (kind, "already_done" if kind == "reconnect_account" and reconnected_before else "done")
        for kind, _ in actions
    )


def check_writes_follow_the_plan(world: World, actions: Actions) -> None:
    """Every write is one planned action, made once, in the action's sandbox, with If-Match."""
    # A reconnect is a person's step in Adobe: pinmigrate never writes an account.
    actions = [a for a in actions if a[0] != "reconnect_account"]
    writes = world.writes()
    assert Counter(map(as_action, writes)) == Counter(actions), "a write outside the plan"
    for entry in writes:
        assert entry.status in (200, 202), f"{entry.method} {entry.path} -> {entry.status}"
        assert entry.sandbox == world.sandbox_of(as_action(entry)[1])
        if entry.method == "PATCH":
            assert entry.headers["if-match"].startswith('"')
            assert entry.headers["content-type"].startswith("application/json")


# --- read-only commands -------------------------------------------------------------------------


@pytest.mark.parametrize("new_card_name", ["Pinterest", "(New) Pinterest"])
def test_doctor_passes_with_three_separate_services(
    pinmigrate: Any, world: World, new_card_name: str
) -> None:
    result = pinmigrate("doctor")
    assert result.code == 0, result.stderr
    for sandbox in SANDBOXES:
        assert f"sandbox {sandbox}:" in result.stdout
        assert f"legacy card in {sandbox}: (Deprecating) Pinterest = {LEGACY_SPEC}" in result.stdout
        assert f"new card in {sandbox}: {new_card_name} = {NEW_SPEC}" in result.stdout
    assert "logins:" in result.stdout  # no login yet: a warning, not a failure
    assert_no_secret(world, result.stdout, result.stderr)


@pytest.mark.parametrize("new_card_name", ["Pinterest", "(New) Pinterest"])
@pytest.mark.parametrize("next_links", ["position", "query"])
def test_plan_lists_exactly_the_expected_actions(
    pinmigrate: Any, world: World, expected: Expected, new_card_name: str, next_links: str
) -> None:
    """Whether the next link's token carries only a position or the whole query."""
    world.next_links = next_links
    before = world.snapshot()
    result = pinmigrate("plan", "--output", "json", "--detailed-exitcode")
    assert result.code == 2, result.stderr
    plan = result.json()
    assert action_set(plan) == set(expected.actions)
    assert len(plan["actions"]) == len(expected.actions)
    assert plan["sandboxes"] == list(SANDBOXES)
    assert plan["cards"] == [
        {
            "sandbox": sandbox,
            "legacy": {"id": LEGACY_SPEC, "name": "(Deprecating) Pinterest"},
            "new": {"id": NEW_SPEC, "name": new_card_name},
        }
        for sandbox in SANDBOXES
    ]
    assert {b["flow_id"] for b in plan["blockers"]} == set(expected.blocked)
    for action in plan["actions"]:
        if action["kind"] == "reconnect_account":
            assert (
                action["details"]["advertiser_ids"]
                == expected.reconnect_advertisers[action["target_id"]]
            )
            assert action["details"]["needs_login"] is True  # no login, no token
    # "Equal name" is exact: a case or trailing-space difference is no twin, and a twin of
    # another ad account neither. They are orphans, and the look-alikes stay untouched.
    assert {o["flow_id"] for o in plan["orphans"]} == set(expected.orphans)
    assert {o["flow_name"] for o in plan["orphans"]} == {
        "Loyalty Members",
        "Cart abandoners",
        "Prospects",
    }
    lookalikes = ids_by_name(world, "prod", "loyalty members", NEW_SPEC) + ids_by_name(
        world, "prod", "Cart abandoners ", NEW_SPEC
    )
    assert len(lookalikes) == 2
    assert not set(lookalikes) & {a["target_id"] for a in plan["actions"]}
    # ... but the operator is told, with the --match that would pair them.
    reasons = {o["flow_name"]: o["reason"] for o in plan["orphans"]}
    for name, twin in zip(("Loyalty Members", "Cart abandoners"), lookalikes, strict=True):
        assert f"--match {expected_orphan(plan, name)}={twin}" in reasons[name]
    assert "--match" not in reasons["Prospects"]  # another ad account: not a near miss
    # The other destination's flow of the very same name is never read as Pinterest's.
    [s3_soldes] = ids_by_name(world, "prod", SOLDES, "4fce964d-3f37-408f-9778-e597338a21ee")
    assert s3_soldes not in result.stdout
    # Names come through byte for byte.
    assert {SOLDES, LOYALTY_JA, KAMPAGNE, PROMO, NO_SELECTORS} <= {
        a["target_name"] for a in plan["actions"]
    }
    # Every list was read to its end through the relative next links, tokens whole.
    followed = [e for e in world.log if any(k == "continuationToken" for k, _ in e.query)]
    assert {e.path.rsplit("/", 1)[1] for e in followed} >= {
        "flows",
        "connections",
        "targetConnections",
    }
    assert all(dict(e.query)["continuationToken"].endswith("==") for e in followed)
    assert not [e for e in world.log if e.status >= 400]
    # A dry run writes nothing.
    assert world.writes() == []
    assert world.snapshot() == before
    assert_no_secret(world, result.stdout, result.stderr)


@pytest.mark.parametrize(
    ("command", "locale"),
    [(["plan", "--detailed-exitcode"], {}), (["discover"], {"LC_ALL": "C", "LANG": "C"})],
)
def test_text_output_keeps_names_whole(
    pinmigrate: Any, world: World, command: list[str], locale: dict[str, str]
) -> None:
    result = pinmigrate(*command, extra=locale)
    assert result.code == (2 if "plan" in command else 0), result.stderr
    for name in NAMES:
        assert name in result.stdout, f"{name!r} is not shown whole"
    assert world.writes() == []


# --- plan, then apply -------------------------------------------------------------------------


class Person(threading.Thread):
    """Someone who presses Reconnect OAuth in Adobe for each account apply names, a little
    after apply starts waiting (read from its journal, as an operator reads its stderr)."""

    def __init__(self, world: World, state_dir: Path, delay: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.world, self.state_dir, self.delay = world, state_dir, delay
        self.renewed_at: dict[str, float] = {}
        self.stop = threading.Event()

    def waiting(self) -> list[str]:
        found = []
        for path in sorted((self.state_dir / "runs").glob("*.jsonl")):
            for line in path.read_text("utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line still being written
                if record.get("event") == "waiting":
                    found.append(str(record["target_id"]))
        return found

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001 - shown in the test, not lost in a thread
            self.error = exc

    error: Exception | None = None

    def _run(self) -> None:
        while not self.stop.is_set():
            accounts = self.waiting() if (self.state_dir / "runs").is_dir() else []
            if accounts:
                time.sleep(self.delay)
                for account in accounts:
                    self.world.reconnect_in_adobe(account)
                    self.renewed_at[account] = time.time()
                    time.sleep(1)
                return
            time.sleep(0.05)


def observed_at(state_dir: Path) -> dict[str, float]:
    """When apply saw each account renewed (its journal's ``observed`` records)."""
    from datetime import datetime

    seen = {}
    for path in (state_dir / "runs").glob("*.jsonl"):
        for line in path.read_text("utf-8").splitlines():
            record = json.loads(line)
            if record.get("event") == "observed":
                at = datetime.fromisoformat(record["ts"].replace("Z", "+00:00")).timestamp()
                seen[str(record["target_id"])] = at
    return seen


def test_plan_file_then_apply_while_a_person_reconnects_in_adobe(
    pinmigrate: Any, world: World, expected: Expected, tmp_path: Path, state_dir: Path
) -> None:
    token_env = refresh_env(world)
    configured = token_env["PINMIGRATE_PINTEREST_REFRESH_TOKEN"]
    before = world.snapshot()
    plan_file = tmp_path / "plan.json"

    # The CI job: doctor (never spends the token), plan with changes pending (2), apply.
    doctor = pinmigrate("doctor", "--no-input", extra=token_env)
    assert doctor.code == 0, doctor.stdout + doctor.stderr
    assert configured in world.refresh_tokens
    planned = pinmigrate(
        "plan", "--out", str(plan_file), "--output", "json", "--detailed-exitcode", extra=token_env
    )
    assert planned.code == 2, planned.stderr
    plan = json.loads(plan_file.read_text("utf-8"))
    assert plan == planned.json()
    assert action_set(plan) == set(expected.actions)
    for action in plan["actions"]:
        if action["kind"] == "reconnect_account":
            # The pre-flight: the environment's Pinterest user reaches every ad account.
            assert action["details"]["preflight"] == "ok"
            assert action["details"]["login"] == MARKETER
            assert action["details"]["expiry_rule"] in ("updatedAt+expiresIn", "none")
    # Rotated at once: the configured token is spent, its successor is stored.
    assert configured not in world.refresh_tokens
    stored = json.loads((state_dir / "logins.json").read_text())["logins"]
    assert [s["user_id"] for s in stored] == [MARKETER]
    assert stored[0]["refresh_token"] in world.refresh_tokens
    assert world.writes() == []

    # apply waits; a person reconnects the accounts in Adobe a few seconds in.
    person = Person(world, state_dir)
    person.start()
    applied = pinmigrate(
        "apply",
        str(plan_file),
        "--yes",
        "--no-input",
        "--reconnect-timeout",
        "60",
        "--output",
        "json",
        "--wait-runs",
        extra=token_env,
    )
    person.stop.set()
    assert person.error is None, repr(person.error)
    assert applied.code == 0, applied.stderr
    report = applied.json()
    assert report["kind"] == "pinmigrate.apply"
    assert {r["status"] for r in report["results"]} == {"done"}, report
    assert {(r["kind"], r["target_id"]) for r in report["results"]} == set(expected.actions)
    assert {r["status"] for r in report["runs"]} == {"success"}  # lower case on the wire
    check_final_state(world, before, expected.actions, expected)
    check_writes_follow_the_plan(world, expected.actions)
    assert not [e for e in world.writes() if "/connections" in e.path]
    seen = observed_at(state_dir)
    assert set(seen) == set(person.renewed_at) == set(expected.reconnect_advertisers)
    for account, at in person.renewed_at.items():
        assert seen[account] - at <= 20, f"{account} was noticed {seen[account] - at:.1f} s late"
    assert not [e for e in world.log if e.status >= 400]
    # One IMS token per process (doctor, plan, apply).
    assert len([e for e in world.log if e.service == "ims"]) == 3

    # Again: every action is already done, nothing is written; the plan has converged.
    writes = len(world.writes())
    again = pinmigrate("apply", str(plan_file), "--output", "json", extra=token_env)
    assert again.code == 0, again.stderr
    assert {r["status"] for r in again.json()["results"]} == {"already_done"}
    assert len(world.writes()) == writes
    converged = pinmigrate("plan", "--detailed-exitcode", "--no-input", extra=token_env)
    assert converged.code == 0, converged.stdout + converged.stderr

    journals = "".join(p.read_text("utf-8") for p in (state_dir / "runs").glob("*.jsonl"))
    assert journals
    assert_no_secret(
        world,
        doctor.stdout,
        doctor.stderr,
        planned.stdout,
        planned.stderr,
        applied.stdout,
        applied.stderr,
        again.stdout,
        again.stderr,
        converged.stdout,
        converged.stderr,
        plan_file.read_text("utf-8"),
        journals,
        spent=[configured, *world.adobe_grants],
    )


def test_fresh_apply_needs_yes_then_runs_non_interactively(
    pinmigrate: Any, world: World, expected: Expected
) -> None:
    refused = pinmigrate("apply", "--no-input")
    assert refused.code == 5, refused.stderr
    assert "--yes" in refused.stderr
    assert world.writes() == []

    # The accounts were reconnected in Adobe beforehand: the fresh plan has no reconnect.
    reconnect_in_adobe(world, expected.actions)
    flows_only = {a for a in expected.actions if a[0] != "reconnect_account"}
    before = world.snapshot()
    applied = pinmigrate("apply", "--yes", "--no-input")  # no Pinterest secret at all
    assert applied.code == 0, applied.stderr
    check_final_state(world, before, flows_only, expected)
    check_writes_follow_the_plan(world, flows_only)
    # The text report names every flow whole.
    for name in (SOLDES, LOYALTY_JA, KAMPAGNE, PROMO, LONG_NAME, NO_SELECTORS):
        assert name in applied.stdout + applied.stderr, f"{name!r} is not shown whole"
    assert_no_secret(world, refused.stderr, applied.stdout, applied.stderr)


def test_a_login_lacking_ad_accounts_is_named_and_apply_does_the_rest_then_exits_4(
    pinmigrate: Any, world: World, expected: Expected
) -> None:
    # The analyst sees one ad account only: the pre-flight names the others; nothing blocks.
    token_env = refresh_env(world, ANALYST)
    planned = pinmigrate("plan", "--output", "json", extra=token_env)
    assert planned.code == 0, planned.stderr
    missing = {
        a["target_id"]: a["details"]["missing_access"]
        for a in planned.json()["actions"]
        if a["kind"] == "reconnect_account"
    }
    assert missing == {
        account: [ad for ad in ads if ad != "549755800001"]
        for account, ads in expected.reconnect_advertisers.items()
    }

    started = time.monotonic()
    applied = pinmigrate("apply", "--yes", "--no-input", "--output", "json", extra=token_env)
    assert applied.code == 4, applied.stderr
    assert time.monotonic() - started < 10
    last = applied.stderr.strip().splitlines()[-1]
    assert "still need Reconnect OAuth in Adobe" in last
    for account in expected.reconnect_advertisers:
        assert account in last
    assert not [e for e in world.writes() if "/connections" in e.path]
    # Everything that does not wait for those accounts is done (the dev sandbox's).
    done = {(r["kind"], r["target_id"]) for r in applied.json()["results"] if r["status"] == "done"}
    dev = {a for a in expected.actions if world.sandbox_of(a[1]) == "dev"}
    assert dev and dev <= done


def test_a_change_behind_the_plans_back_stops_apply_before_any_write(
    pinmigrate: Any, world: World, tmp_path: Path
) -> None:
    plan_file = tmp_path / "plan.json"
    assert pinmigrate("plan", "--out", str(plan_file)).code == 0
    # The operator switches a legacy flow off in the UI after the plan was made.
    [legacy] = ids_by_name(world, "prod", LOYALTY_JA, LEGACY_SPEC)
    with world.lock:
        flow = world.flow(legacy)
        flow["state"] = "disabled"
        flow["etag"] = '"changed-in-the-ui"'
    applied = pinmigrate("apply", str(plan_file), "--no-input")
    assert applied.code == 3, applied.stderr
    assert LOYALTY_JA in applied.stderr
    assert world.writes() == []


def test_an_access_token_from_the_environment_serves_the_preflight_and_apply_converges(
    pinmigrate: Any, world: World, expected: Expected, tmp_path: Path
) -> None:
    # CI with a bare access token: no refresh token, no expiry in hand.
    grant = world.refresh_tokens.pop(world.issue_refresh_token(MARKETER))
    access = "pina_ci_" + "x" * 24
    world.access_tokens[access] = grant
    token_env = {"PINMIGRATE_PINTEREST_ACCESS_TOKEN": access}
    before = world.snapshot()
    plan_file = tmp_path / "plan.json"
    planned = pinmigrate("plan", "--out", str(plan_file), "--output", "json", extra=token_env)
    assert planned.code == 0, planned.stderr
    reconnects = [a for a in planned.json()["actions"] if a["kind"] == "reconnect_account"]
    assert {a["details"]["preflight"] for a in reconnects} == {"ok"}
    reconnect_in_adobe(world, expected.actions)  # the person's step between plan and apply
    applied = pinmigrate("apply", str(plan_file), "--output", "json", extra=token_env)
    assert applied.code == 0, applied.stderr
    assert Counter(
        (r["kind"], r["status"]) for r in applied.json()["results"]
    ) == expected_statuses(expected.actions, reconnected_before=True)
    check_final_state(world, before, expected.actions, expected)
    again = pinmigrate("plan", "--output", "json", "--detailed-exitcode", extra=token_env)
    assert again.code == 0, again.stderr
    assert again.json()["actions"] == []
    assert_no_secret(world, applied.stdout, applied.stderr, again.stdout, again.stderr)


def test_an_ims_token_revoked_mid_run_is_fetched_again_once(
    pinmigrate: Any, world: World, expected: Expected
) -> None:
    seen = {"requests": 0}

    def revoke_once(req: Request) -> None:
        seen["requests"] += 1
        if seen["requests"] == 40:
            world.ims_tokens.clear()

    world.platform_hook = revoke_once
    reconnect_in_adobe(world, expected.actions)
    flows_only = {a for a in expected.actions if a[0] != "reconnect_account"}
    before = world.snapshot()
    result = pinmigrate("apply", "--yes", "--no-input", extra=refresh_env(world))
    assert result.code == 0, result.stderr
    check_final_state(world, before, flows_only, expected)
    assert len([e for e in world.log if e.status == 401]) == 1
    assert len([e for e in world.log if e.service == "ims"]) == 2


def test_a_concurrent_change_answers_412_and_is_merged_not_clobbered(
    pinmigrate: Any, world: World, tmp_path: Path
) -> None:
    plan_file = tmp_path / "plan.json"
    token_env = refresh_env(world)
    assert pinmigrate("plan", "--out", str(plan_file), extra=token_env).code == 0
    reconnect_in_adobe(world, action_set(json.loads(plan_file.read_text("utf-8"))))
    [target] = ids_by_name(world, "prod", SOLDES, NEW_SPEC)
    [legacy] = ids_by_name(world, "prod", SOLDES, LEGACY_SPEC)
    theirs = {"type": "PLATFORM_SEGMENT", "value": {"id": "added-in-the-ui", "name": "UI"}}

    def edit_in_the_ui(req: Request) -> None:
        # Someone adds an audience in the UI just before pinmigrate's PATCH lands.
        if req.method == "PATCH" and req.path.endswith(target):
            flow = world.flow(target)
            flow["transformations"][0]["params"]["segmentSelectors"]["selectors"].append(theirs)
            flow["etag"] = '"edited-in-the-ui"'
            world.platform_hook = None

    world.platform_hook = edit_in_the_ui
    result = pinmigrate("apply", str(plan_file), "--output", "json", extra=token_env)
    assert result.code == 0, result.stderr
    statuses = {(r["kind"], r["target_id"]): r["status"] for r in result.json()["results"]}
    assert statuses[("add_audiences", target)] == "done"
    patches = [e for e in world.log if e.method == "PATCH" and e.path.endswith(target)]
    assert [e.status for e in patches] == [412, 202]
    assert patches[1].headers["if-match"] == '"edited-in-the-ui"'
    assert audience_ids(world.flow(target)) == audience_ids(world.flow(legacy)) | {
        "added-in-the-ui"
    }


def test_apply_in_a_fresh_ci_job_needs_no_pinterest_secret(
    pinmigrate: Any, world: World, expected: Expected, tmp_path: Path
) -> None:
    # Job 1 plans (its state dir is thrown away); a person reconnects the accounts in Adobe;
    # job 2 applies the saved plan in a new state dir with no Pinterest setting at all. The
    # plan was sealed by job 1's state dir: job 2 accepts it explicitly first.
    plan_file = tmp_path / "plan.json"
    assert pinmigrate("plan", "--out", str(plan_file), extra=refresh_env(world)).code == 0
    reconnect_in_adobe(world, expected.actions)
    before = world.snapshot()
    job2 = tmp_path / "job-2-state"
    bare = {
        "PINMIGRATE_STATE_DIR": str(job2),
        "PINMIGRATE_PINTEREST_APP_ID": "",
        "PINMIGRATE_PINTEREST_APP_SECRET": "",
    }
    refused = pinmigrate("apply", str(plan_file), "--output", "json", extra=bare)
    assert refused.code == 64 and "was made elsewhere" in refused.stderr
    accepted = pinmigrate("show", str(plan_file), "--accept", "--yes", extra=bare)
    assert accepted.code == 0, accepted.stderr
    applied = pinmigrate("apply", str(plan_file), "--output", "json", extra=bare)
    assert applied.code == 0, applied.stderr
    assert Counter(
        (r["kind"], r["status"]) for r in applied.json()["results"]
    ) == expected_statuses(expected.actions, reconnected_before=True)
    check_final_state(world, before, expected.actions, expected)
    assert not (job2 / "logins.json").exists()


def test_auth_status_goes_on_from_the_rotated_token(pinmigrate: Any, world: World) -> None:
    token_env = refresh_env(world)
    configured = token_env["PINMIGRATE_PINTEREST_REFRESH_TOKEN"]
    first = pinmigrate("auth", "status", "--output", "json", extra=token_env)
    assert first.code == 0, first.stderr
    assert configured not in world.refresh_tokens  # spent by the rotation
    # The next command, same (now spent) setting, continues from the stored successor.
    second = pinmigrate("auth", "status", "--output", "json", extra=token_env)
    assert second.code == 0, second.stderr
    [login] = second.json()["logins"]
    assert login["user_id"] == MARKETER and login["environment"] is True
    assert len(login["ad_accounts"]) == 5  # five pages of one
    assert "pins:read" in login["scopes"]
    assert_no_secret(
        world, first.stdout, first.stderr, second.stdout, second.stderr, spent=[configured]
    )


def test_match_settles_the_ambiguous_pair_in_one_sandbox_then_rollback(
    pinmigrate: Any, world: World, expected: Expected, tmp_path: Path
) -> None:
    legacy, chosen = expected.lookalikes["legacy"], expected.lookalikes["new"]
    plan_file = tmp_path / "plan.json"
    token_env = refresh_env(world)
    planned = pinmigrate(
        "plan",
        "--sandbox",
        "emea-test",
        "--match",
        f"{legacy}={chosen}",
        "--out",
        str(plan_file),
        "--output",
        "json",
        extra=token_env,
    )
    assert planned.code == 0, planned.stderr
    plan = planned.json()
    assert plan["sandboxes"] == ["emea-test"] and plan["blockers"] == []
    emea = {a for a in expected.actions if world.sandbox_of(a[1]) == "emea-test"}
    settled = emea | {("enable_flow", chosen), ("disable_flow", legacy)}
    assert action_set(plan) == settled
    reconnect_in_adobe(world, settled)
    before = world.snapshot()
    applied = pinmigrate("apply", str(plan_file), extra=token_env)
    assert applied.code == 0, applied.stderr
    check_final_state(world, before, settled, expected)
    check_writes_follow_the_plan(world, settled)

    # Rollback puts every flow state back; audiences and credentials stay (documented).
    rolled = pinmigrate("rollback", "--yes", "--no-input", "--output", "json", extra=token_env)
    assert rolled.code == 0, rolled.stderr
    after = world.snapshot()
    assert {f: v["state"] for f, v in after["flows"].items()} == {
        f: v["state"] for f, v in before["flows"].items()
    }
    changed = [e for e in world.writes() if as_action(e)[0].endswith("_flow")]
    assert Counter(as_action(e)[1] for e in changed) == Counter(
        target for kind, target in settled if kind.endswith("_flow")
    ) + Counter(target for kind, target in settled if kind.endswith("_flow"))


def test_without_the_legacy_card_there_is_no_flow_to_migrate(pinmigrate: Any, world: World) -> None:
    """A later revision of Adobe's notice: the legacy card is gone, with its flows. Nothing
    is left to pair or switch; a new-card account that an enabled flow needs may still have
    to be reconnected."""
    with world.lock:
        world.specs = [s for s in world.specs if s["id"] != LEGACY_SPEC]
        for sandbox in SANDBOXES:
            for resource in ("flows", "connections", "targetConnections"):
                objects = world.sandbox(sandbox)[resource]
                for key in [k for k, o in objects.items() if LEGACY_SPEC in json.dumps(o)]:
                    del objects[key]
    planned = pinmigrate("plan", "--output", "json")
    assert planned.code == 0, planned.stderr
    plan = planned.json()
    assert {a["kind"] for a in plan["actions"]} <= {"reconnect_account"}
    assert plan["blockers"] == [] and plan["orphans"] == []
    assert [c["legacy"] for c in plan["cards"]] == [None] * len(SANDBOXES)
    gone = [w for w in plan["warnings"] if "no legacy card" in str(w)]
    assert len(gone) == len(SANDBOXES), plan["warnings"]
    assert world.writes() == []
