"""The executor with a fake Adobe: order, dependencies, parallelism, 412s, staleness, logins,
the journal, rollback and ``--wait-runs``. No HTTP, no real sleeping."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeTime
from pydantic import SecretStr

from pinmigrate.actions import AddAudiences, DisableFlow, EnableFlow, ReconnectAccount
from pinmigrate.apply import ActionResult, apply_plan
from pinmigrate.apply.runs import wait_runs
from pinmigrate.errors import (
    ApiError,
    ApplyFailed,
    AuthError,
    ExitCode,
    InvalidStateError,
    NotFoundError,
    NotSentError,
    PinmigrateError,
    ReconnectPending,
    StaleObjectError,
    StalePlanError,
    UnsureWriteError,
)
from pinmigrate.journal import ActionRef, Journal, new_run_id, read_run
from pinmigrate.logins import AdAccountAccess, Login
from pinmigrate.plan import Action, Plan, action_id
from pinmigrate.rollback import rollback_plan, rollback_run
from pinmigrate.settings import AdobeSettings, MigrationSettings, Settings

NOW = datetime(2024, 1, 10, 12, 0, tzinfo=UTC)
LEGACY_SPEC = "spec-legacy"
NEW_SPEC = "spec-new"
ACCESS = "pina_ACCESS_TOKEN_never_journalled"
REFRESH = "pinr_REFRESH_TOKEN_never_journalled"


# --- a fake Adobe -----------------------------------------------------------------------------


def flow(fid: str, name: str, spec: str, state: str, audiences: Iterable[str] = ()) -> dict:
    return {
        "id": fid,
        "name": name,
        "state": state,
        "etag": f'"{fid}-1"',
        "inheritedAttributes": {
            "targetConnections": [
                {
                    "id": f"tc-{fid}",
                    "connectionSpec": {"id": spec},
                    "baseConnection": {"id": f"acct-{fid}"},
                    "params": {"advertiser_id": "549755885175"},
                }
            ]
        },
        "transformations": [
            {"name": "Other", "params": {}},
            {
                "name": "GeneralTransform",
                "params": {
                    "segmentSelectors": {
                        "selectors": [
                            {"type": "PLATFORM_SEGMENT", "value": {"id": a, "name": a.upper()}}
                            for a in audiences
                        ]
                    }
                },
            },
        ],
    }


def account(aid: str, expires_at: datetime | None) -> dict:
    params = {"expiresAt": expires_at.isoformat()} if expires_at else {}
    return {
        "id": aid,
        "name": f"Pinterest - {aid}",
        "connectionSpec": {"id": NEW_SPEC},
        "auth": {"specName": "OAuth2 Authorization Code", "params": params},
        "etag": f'"{aid}-1"',
    }


class FakeAdobe:
    """Flow Service in memory, with the request log, hooks and faults tests need."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, dict]] = {}
        self.log: list[tuple[str, str, str]] = []
        #: The credentials each reconnect PATCH carried, by account id (the object masks them).
        self.credentials: dict[str, dict] = {}
        self.lock = threading.Lock()
        self.inflight = 0
        self.max_inflight = 0
        self.barrier: threading.Barrier | None = None
        #: (method, object id) -> exception to raise instead of writing
        self.fail: dict[tuple[str, str], Exception] = {}
        #: called before a write is applied; may change the world "behind our back"
        self.before_write: Callable[[str, str], None] | None = None
        #: flow ids whose enable/disable is accepted but never takes effect
        self.ignore_action: set[str] = set()
        #: object id -> how many of its next writes are applied, then their answer lost
        self.lose_answer: dict[str, int] = {}
        #: refuse an enable/disable of a flow already in that state (Flow Service 1409-400)
        self.strict = False
        self.runs_by_flow: dict[str, list[list[dict]]] = {}
        self.http = type("H", (), {"stats": type("S", (), {"retries": 0})()})()
        self.etag_counter = 100

    # world setup
    def add(self, sandbox: str, kind: str, obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        obj["sandboxName"] = sandbox
        self.objects.setdefault((sandbox, kind), {})[obj["id"]] = obj
        return obj

    def obj(self, sandbox: str, kind: str, oid: str) -> dict:
        return self.objects[(sandbox, kind)][oid]

    def bump(self, obj: dict) -> None:
        self.etag_counter += 1
        obj["etag"] = f'"{obj["id"]}-{self.etag_counter}"'

    def writes(self) -> list[tuple[str, str, str]]:
        return [entry for entry in self.log if entry[0] != "GET"]

    def reads(self) -> list[tuple[str, str, str]]:
        return [entry for entry in self.log if entry[0] == "GET"]

    # the AdobeClient surface the executor uses
    def list(
        self,
        resource: str,
        *,
        sandbox: str,
        properties: Sequence[str] = (),
        params: Any = None,
    ) -> Iterator[dict]:
        with self.lock:
            self.log.append(("GET", f"/{resource}", ",".join(properties)))
        if resource == "connectionSpecs":
            specs = {"(Deprecating) Pinterest": LEGACY_SPEC, "Pinterest": NEW_SPEC}
            for prop in properties:
                name = prop.split("==", 1)[1]
                if name in specs:
                    yield {"id": specs[name], "name": name}
            return
        items = list(self.objects.get((sandbox, resource), {}).values())
        for prop in properties:
            path, value = prop.split("==", 1)
            if path.startswith("inheritedAttributes"):
                items = [
                    i
                    for i in items
                    if i["inheritedAttributes"]["targetConnections"][0]["connectionSpec"]["id"]
                    == value
                ]
            elif path == "connectionSpec.id":
                items = [i for i in items if i["connectionSpec"]["id"] == value]
        for item in items:
            yield copy.deepcopy(item)

    def get(self, resource: str, object_id: str, *, sandbox: str) -> dict:
        with self.lock:
            self.log.append(("GET", f"/{resource}/{object_id}", ""))
        found = self.objects.get((sandbox, resource), {}).get(object_id)
        if found is None:
            raise NotFoundError(f"no {resource} {object_id}", status=404)
        return copy.deepcopy(found)

    def connection_specs_named(self, name: str, *, sandbox: str) -> list[dict]:
        return list(self.list("connectionSpecs", sandbox=sandbox, properties=[f"name=={name}"]))

    def _write(self, method: str, resource: str, oid: str) -> None:
        with self.lock:
            self.log.append((method, f"/{resource}/{oid}", ""))
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            if self.barrier is not None:
                self.barrier.wait(timeout=5)
            if self.before_write:
                self.before_write(method, oid)
            if (method, oid) in self.fail:
                raise self.fail.pop((method, oid))
        finally:
            with self.lock:
                self.inflight -= 1

    def patch(self, resource: str, object_id: str, ops: list, *, etag: str, sandbox: str) -> str:
        self._write("PATCH", resource, object_id)
        with self.lock:
            obj = self.objects[(sandbox, resource)][object_id]
            if obj["etag"] != etag:
                raise StaleObjectError("412", object_id=object_id)
            for op in ops:
                if op["op"] == "add":
                    index = int(op["path"].split("/")[2])
                    selectors = obj["transformations"][index]["params"]["segmentSelectors"]
                    assert op["path"].endswith("/segmentSelectors/selectors/-")
                    selectors["selectors"].append(op["value"])
                elif op["op"] == "replace" and op["path"] == "/auth/params":
                    value = op["value"]
                    assert set(value) <= {"accessToken", "refreshToken", "expiresAt"}
                    self.credentials[object_id] = dict(value)
                    obj["auth"]["params"] = {**value, "accessToken": "***", "refreshToken": "***"}
            self.bump(obj)
            self._answer(object_id)
            return obj["etag"]

    def _answer(self, object_id: str) -> None:
        if self.lose_answer.get(object_id, 0) > 0:
            self.lose_answer[object_id] -= 1
            raise UnsureWriteError("no answer (connection reset)", service="adobe")

    def flow_action(self, flow_id: str, op: str, *, sandbox: str, etag: str | None = None) -> dict:
        self._write("POST", "flows", f"{flow_id}/action?op={op}")
        with self.lock:
            obj = self.objects[(sandbox, "flows")][flow_id]
            if etag is not None and obj["etag"] != etag:
                raise StaleObjectError("412", object_id=flow_id)
            goal = "enabled" if op == "enable" else "disabled"
            if self.strict and obj["state"] == goal:
                raise InvalidStateError(
                    f"The operation {op} cannot be applied on the current state {goal} "
                    "(FLOW-1409-400)",
                    status=400,
                )
            if flow_id not in self.ignore_action:
                obj["state"] = goal
            self.bump(obj)
            self._answer(flow_id)
            return {"id": flow_id, "etag": obj["etag"]}

    def runs(self, flow_id: str, *, sandbox: str) -> list[dict]:
        with self.lock:
            self.log.append(("GET", "/runs", flow_id))
        answers = self.runs_by_flow.get(flow_id, [[]])
        return answers.pop(0) if len(answers) > 1 else answers[0]


class FakeGrants:
    """A person who signs in once for each Adobe account: a fresh grant each time."""

    def __init__(
        self, login: Login | None = None, error: Exception | None = None, *, person: bool = True
    ) -> None:
        self.login = login
        self.error = error
        self.person = person
        self.calls: list[tuple[str, list[str], str | None]] = []

    @property
    def can_ask(self) -> bool:
        return self.person

    def cannot_ask(self, accounts: Sequence[str]) -> AuthError:
        return AuthError(f"nobody to sign in for {'; '.join(accounts)}")

    def grant_for(
        self, account: str, advertiser_ids: Iterable[str], *, sign_in_as: str | None = None
    ) -> Login:
        self.calls.append((account, sorted(advertiser_ids), sign_in_as))
        if self.error is not None:
            raise self.error
        assert self.login is not None
        n = len(self.calls)
        return self.login.model_copy(
            update={
                "access_token": SecretStr(f"{ACCESS}_{n}"),
                "refresh_token": SecretStr(f"{REFRESH}_{n}"),
            }
        )


def marketer() -> Login:
    return Login(
        user_id="1000000001",
        username="emu_marketer",
        ad_accounts=[AdAccountAccess(id=str(549755885175 + i)) for i in range(4)],
        access_token=SecretStr(ACCESS),
        refresh_token=SecretStr(REFRESH),
        access_expires_at=NOW + timedelta(days=30),
        refresh_expires_at=NOW + timedelta(days=60),
    )


# --- plans built the planner's way ------------------------------------------------------------


def reconnect(sandbox: str, aid: str, *, login: str | None = "1000000001") -> Action:
    return ReconnectAccount(
        id=action_id("reconnect_account", sandbox, aid),
        sandbox=sandbox,
        target_id=aid,
        target_name=f"Pinterest - {aid}",
        precondition={"expires_at": None},
        details={
            "advertiser_ids": ["549755885175"],
            "login": login,
            "needs_login": login is None,
            "flows": [],
        },
    )


def add_audiences(sandbox: str, new: str, legacy: str, missing: list[str], deps=()) -> Action:
    return AddAudiences(
        id=action_id("add_audiences", sandbox, new),
        sandbox=sandbox,
        target_id=new,
        target_name=f"flow {new}",
        precondition={"legacy_flow_id": legacy, "legacy_state": "enabled", "missing": missing},
        details={
            "audiences": [{"id": a, "name": a.upper(), "description": ""} for a in missing],
            "legacy_flow_id": legacy,
        },
        depends_on=list(deps),
    )


def enable(sandbox: str, new: str, legacy: str, deps=()) -> Action:
    return EnableFlow(
        id=action_id("enable_flow", sandbox, new),
        sandbox=sandbox,
        target_id=new,
        target_name=f"flow {new}",
        precondition={"state": "disabled", "legacy_flow_id": legacy, "legacy_state": "enabled"},
        depends_on=list(deps),
    )


def disable(sandbox: str, legacy: str, twin: str, twin_state: str = "disabled", deps=()) -> Action:
    return DisableFlow(
        id=action_id("disable_flow", sandbox, legacy),
        sandbox=sandbox,
        target_id=legacy,
        target_name=f"flow {legacy}",
        precondition={"state": "enabled", "twin_flow_id": twin, "twin_state": twin_state},
        details={"twin_flow_id": twin},
        depends_on=list(deps),
    )


def make_plan(actions: list[Action]) -> Plan:
    return Plan(org_id="X@AdobeOrg", sandboxes=["prod"], actions=actions).sealed()


def pair(adobe: FakeAdobe, sandbox: str, n: int, *, legacy_aud=("a1",), new_aud=("a1",)) -> None:
    adobe.add(sandbox, "flows", flow(f"L{n}", f"Flow {n}", LEGACY_SPEC, "enabled", legacy_aud))
    adobe.add(sandbox, "flows", flow(f"N{n}", f"Flow {n}", NEW_SPEC, "disabled", new_aud))


def full_pair_actions(sandbox: str, n: int, *, acct: str | None = None, missing=()) -> list[Action]:
    actions: list[Action] = []
    deps: list[str] = []
    if acct:
        actions.append(reconnect(sandbox, acct))
        deps.append(actions[-1].id)
    if missing:
        actions.append(add_audiences(sandbox, f"N{n}", f"L{n}", list(missing)))
        deps.append(actions[-1].id)
    actions.append(enable(sandbox, f"N{n}", f"L{n}", deps))
    actions.append(disable(sandbox, f"L{n}", f"N{n}", deps=[actions[-1].id]))
    return actions


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The experimental API reconnect path: most tests here check the writes it makes."""
    return Settings(
        adobe=AdobeSettings(org_id="X@AdobeOrg"),
        migration=MigrationSettings(reconnect_via="api"),
        state_dir=tmp_path,
    )


def run(
    adobe: FakeAdobe,
    settings: Settings,
    actions: list[Action],
    *,
    logins: FakeGrants | None = None,
    concurrency: int = 4,
    progress: Any = None,
) -> tuple[Any, Journal]:
    journal = Journal(settings.state_dir, "run-test")
    report = apply_plan(
        make_plan(actions),
        adobe=adobe,  # type: ignore[arg-type]
        settings=settings,
        logins=logins or FakeGrants(marketer()),
        journal=journal,
        concurrency=concurrency,
        progress=progress,
        now=lambda: NOW,
    )
    journal.close()
    return report, journal


def statuses(report: Any) -> dict[str, str]:
    return {r.action_id: r.status for r in report.results}


# --- the happy path, order and journal --------------------------------------------------------


def test_a_full_pair_runs_in_the_contracts_order_and_is_journalled(settings: Settings) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1, legacy_aud=("a1", "a2", "a3"), new_aud=("a1",))
    adobe.add("prod", "connections", account("acct-1", None))
    actions = full_pair_actions("prod", 1, acct="acct-1", missing=["a2", "a3"])

    report, journal = run(adobe, settings, actions)

    assert report.ok and set(statuses(report).values()) == {"done"}
    assert adobe.writes() == [
        ("PATCH", "/connections/acct-1", ""),
        ("PATCH", "/flows/N1", ""),
        ("POST", "/flows/N1/action?op=enable", ""),
        ("POST", "/flows/L1/action?op=disable", ""),
    ]
    new = adobe.obj("prod", "flows", "N1")
    ids = [
        s["value"]["id"]
        for s in new["transformations"][1]["params"]["segmentSelectors"]["selectors"]
    ]
    assert ids == ["a1", "a2", "a3"]
    added = new["transformations"][1]["params"]["segmentSelectors"]["selectors"][1:]
    # The documented selector and nothing else (api-notes.md §3 "Patch a flow").
    assert added == [
        {"type": "PLATFORM_SEGMENT", "value": {"id": a, "name": a.upper()}} for a in ("a2", "a3")
    ]
    assert new["state"] == "enabled"
    assert adobe.obj("prod", "flows", "L1")["state"] == "disabled"
    assert adobe.obj("prod", "connections", "acct-1")["auth"]["params"]["expiresAt"].startswith(
        "2024-03-10"
    )

    records = read_run(settings.state_dir, journal.run_id).records
    events = [(r["event"], r.get("kind")) for r in records]
    assert events[0] == ("run_start", "apply") and events[-1][0] == "run_end"
    for a in actions:
        mine = [r["event"] for r in records if r.get("action_id") == a.id]
        assert mine == ["before", "after"], a.id
    reconnect_after = next(
        r for r in records if r["event"] == "after" and r["kind"] == "reconnect_account"
    )
    assert reconnect_after["after"] == {"expiresAt": "2024-03-10T12:00:00Z"}
    audiences_after = next(
        r for r in records if r["event"] == "after" and r["kind"] == "add_audiences"
    )
    assert audiences_after["after"] == {"audiences": ["a1", "a2", "a3"]}
    text = journal.path.read_text()
    assert ACCESS not in text and REFRESH not in text
    assert report.summary() == {
        "done": 4,
        "already_done": 0,
        "skipped": 0,
        "failed": 0,
        "retries": 0,
        "blocked": 0,
        "orphans": 0,
    }


def test_goals_already_reached_are_already_done_with_no_write(settings: Settings) -> None:
    adobe = FakeAdobe()
    adobe.add("prod", "flows", flow("L1", "Flow 1", LEGACY_SPEC, "disabled", ["a1", "a2"]))
    adobe.add("prod", "flows", flow("N1", "Flow 1", NEW_SPEC, "enabled", ["a1", "a2"]))
    adobe.add("prod", "connections", account("acct-1", NOW + timedelta(days=40)))
    actions = full_pair_actions("prod", 1, acct="acct-1", missing=["a2"])
    logins = FakeGrants(error=AuthError("no login"))

    report, _ = run(adobe, settings, actions, logins=logins)

    assert set(statuses(report).values()) == {"already_done"} and report.ok
    assert adobe.writes() == []
    assert logins.calls == []  # nothing to reconnect, so no login was asked for


def test_a_failure_skips_only_what_depends_on_it(settings: Settings) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    pair(adobe, "prod", 2)
    adobe.add("prod", "connections", account("acct-1", None))
    adobe.fail[("PATCH", "acct-1")] = ApiError("Adobe said no", status=500)
    actions = full_pair_actions("prod", 1, acct="acct-1") + full_pair_actions("prod", 2)
    lines: list[str] = []

    class Lines:
        def start(self, total: int) -> None:
            lines.append(f"start {total}")

        def advance(self, result: ActionResult) -> None:
            lines.append(f"{result.action_id} {result.status}")

        def finish(self) -> None:
            lines.append("finish")

    report, journal = run(adobe, settings, actions, progress=Lines())

    got = statuses(report)
    assert got["reconnect_account:prod:acct-1"] == "failed"
    assert got["enable_flow:prod:N1"] == "skipped"
    assert got["disable_flow:prod:L1"] == "skipped"
    assert got["enable_flow:prod:N2"] == "done" and got["disable_flow:prod:L2"] == "done"
    by_id = {r.action_id: r for r in report.results}
    assert "Adobe said no" in (by_id["reconnect_account:prod:acct-1"].error or "")
    assert "reconnect_account:prod:acct-1" in (by_id["enable_flow:prod:N1"].error or "")
    # transitively: the disable depends on the enable, which was skipped
    assert "enable_flow:prod:N1, which was skipped" in (by_id["disable_flow:prod:L1"].error or "")
    assert adobe.obj("prod", "flows", "L1")["state"] == "enabled"  # never left unserved
    assert not report.ok
    assert lines[0] == "start 5" and lines[-1] == "finish" and len(lines) == 7
    records = read_run(settings.state_dir, journal.run_id).records
    assert any(
        r["event"] == "error" and r["action_id"] == "reconnect_account:prod:acct-1" for r in records
    )


def test_independent_actions_run_in_parallel_up_to_the_concurrency(settings: Settings) -> None:
    adobe = FakeAdobe()
    actions = []
    for n in range(9):
        pair(adobe, "prod", n)
        actions.append(enable("prod", f"N{n}", f"L{n}"))
    # Each write waits until three are in flight: a serial executor would break the barrier.
    adobe.barrier = threading.Barrier(3)

    report, _ = run(adobe, settings, actions, concurrency=3)

    assert report.ok
    assert adobe.max_inflight == 3


# --- 412 on add_audiences ---------------------------------------------------------------------


def test_412_with_the_audiences_already_there_is_already_done(settings: Settings) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1, legacy_aud=("a1", "a2"), new_aud=("a1",))

    def meanwhile(method: str, oid: str) -> None:
        if method == "PATCH":
            adobe.before_write = None
            obj = adobe.obj("prod", "flows", "N1")
            obj["transformations"][1]["params"]["segmentSelectors"]["selectors"].append(
                {"type": "PLATFORM_SEGMENT", "value": {"id": "a2", "name": "A2"}}
            )
            adobe.bump(obj)

    adobe.before_write = meanwhile
    report, _ = run(adobe, settings, [add_audiences("prod", "N1", "L1", ["a2"])])

    assert statuses(report) == {"add_audiences:prod:N1": "already_done"}
    selectors = adobe.obj("prod", "flows", "N1")["transformations"][1]["params"]["segmentSelectors"]
    assert [s["value"]["id"] for s in selectors["selectors"]] == ["a1", "a2"]
    assert len([w for w in adobe.writes() if w[0] == "PATCH"]) == 1


def test_412_retries_once_adding_only_what_is_still_missing(settings: Settings) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1, legacy_aud=("a1", "a2", "a3"), new_aud=("a1",))

    def meanwhile(method: str, oid: str) -> None:
        adobe.before_write = None
        obj = adobe.obj("prod", "flows", "N1")
        obj["transformations"][1]["params"]["segmentSelectors"]["selectors"].append(
            {"type": "PLATFORM_SEGMENT", "value": {"id": "a3", "name": "A3"}}
        )
        adobe.bump(obj)

    adobe.before_write = meanwhile
    report, journal = run(adobe, settings, [add_audiences("prod", "N1", "L1", ["a2", "a3"])])

    assert statuses(report) == {"add_audiences:prod:N1": "done"}
    assert "412" in report.results[0].note
    selectors = adobe.obj("prod", "flows", "N1")["transformations"][1]["params"]["segmentSelectors"]
    ids = [s["value"]["id"] for s in selectors["selectors"]]
    assert sorted(ids) == ["a1", "a2", "a3"] and len(ids) == 3  # never twice
    befores = [
        r for r in read_run(settings.state_dir, journal.run_id).records if r["event"] == "before"
    ]
    assert [b["adding"] for b in befores] == [["a2", "a3"], ["a2"]]


def test_a_second_412_fails_the_action_without_duplicates(settings: Settings) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1, legacy_aud=("a1", "a2"), new_aud=("a1",))

    def always_changing(method: str, oid: str) -> None:
        adobe.bump(adobe.obj("prod", "flows", "N1"))

    adobe.before_write = always_changing
    actions = [add_audiences("prod", "N1", "L1", ["a2"])]
    actions.append(enable("prod", "N1", "L1", deps=[actions[0].id]))
    report, _ = run(adobe, settings, actions)

    got = statuses(report)
    assert got == {"add_audiences:prod:N1": "failed", "enable_flow:prod:N1": "skipped"}
    selectors = adobe.obj("prod", "flows", "N1")["transformations"][1]["params"]["segmentSelectors"]
    assert [s["value"]["id"] for s in selectors["selectors"]] == ["a1"]


# --- lost answers and no-op refusals ---------------------------------------------------------


def events_of(settings: Settings, journal: Journal, action_id: str) -> list[str]:
    records = read_run(settings.state_dir, journal.run_id).records
    return [r["event"] for r in records if r.get("action_id") == action_id]


def test_writes_whose_answers_are_lost_are_re_read_and_done_once(settings: Settings) -> None:
    """Every write takes and loses its answer: a re-read shows each done, nothing is sent
    twice, and each is journalled before/after (rollback undoes it)."""
    adobe = FakeAdobe()
    adobe.strict = True
    pair(adobe, "prod", 1, legacy_aud=("a1", "a2"), new_aud=("a1",))
    adobe.add("prod", "connections", account("acct-1", None))
    # N1 loses two answers: the audience PATCH's and the enable's.
    adobe.lose_answer = {"acct-1": 1, "N1": 2, "L1": 1}
    actions = full_pair_actions("prod", 1, acct="acct-1", missing=["a2"])
    report, journal = run(adobe, settings, actions)

    assert set(statuses(report).values()) == {"done"}, statuses(report)
    assert all("answer was lost" in r.note for r in report.results)
    assert len(adobe.writes()) == 4  # one each: nothing repeated
    assert adobe.obj("prod", "flows", "N1")["state"] == "enabled"
    assert adobe.obj("prod", "flows", "L1")["state"] == "disabled"
    for a in actions:
        assert events_of(settings, journal, a.id) == ["before", "after"], a.id
    lost = [r for r in read_run(settings.state_dir, journal.run_id).records if r.get("answer_lost")]
    assert len(lost) == 4


def test_writes_whose_answers_were_lost_are_rolled_back_in_strict_mode(
    settings: Settings,
) -> None:
    adobe = FakeAdobe()
    adobe.strict = True
    pair(adobe, "prod", 1)
    adobe.lose_answer = {"N1": 1, "L1": 1}
    report, journal = run(adobe, settings, full_pair_actions("prod", 1))
    assert report.ok

    plan = rollback_plan(read_run(settings.state_dir, journal.run_id))
    assert [a.kind for a in plan.actions] == ["enable_flow", "disable_flow"]
    adobe.log.clear()
    adobe.lose_answer = {"N1": 1, "L1": 1}  # the undo loses its answers too
    undo = _rollback(adobe, settings, plan, "undo-1", concurrency=4)[0]
    assert undo.ok and set(statuses(undo).values()) == {"done"}
    assert adobe.obj("prod", "flows", "L1")["state"] == "enabled"
    assert adobe.obj("prod", "flows", "N1")["state"] == "disabled"
    assert len(adobe.writes()) == 2


def test_a_lost_answer_of_a_write_that_did_not_take_is_sent_once_more(
    settings: Settings,
) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    adobe.fail[("POST", "N1/action?op=enable")] = UnsureWriteError("no answer", service="adobe")
    report, journal = run(adobe, settings, [enable("prod", "N1", "L1")])

    assert statuses(report) == {"enable_flow:prod:N1": "done"}
    assert "sent again" in report.results[0].note
    assert adobe.writes() == [("POST", "/flows/N1/action?op=enable", "")] * 2
    assert events_of(settings, journal, "enable_flow:prod:N1") == [
        "before",
        "error",
        "before",
        "after",
    ]


def test_a_lost_answer_then_a_changed_flow_is_stale_not_repeated(settings: Settings) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    adobe.fail[("POST", "N1/action?op=enable")] = UnsureWriteError("no answer", service="adobe")

    def operator(method: str, oid: str) -> None:
        adobe.before_write = None
        adobe.obj("prod", "flows", "L1")["state"] = "disabled"  # the legacy flow, meanwhile

    adobe.before_write = operator
    report, _ = run(adobe, settings, [enable("prod", "N1", "L1")])

    [result] = report.results
    assert result.status == "failed" and "L1" in (result.error or "")
    assert len(adobe.writes()) == 1


def test_a_lost_answer_whose_re_read_fails_stays_open_so_rollback_undoes_it(
    settings: Settings,
) -> None:
    """The enable took, its answer was lost, and the re-read failed too: whether it took is
    unknown, so its journal attempt stays open and rollback treats it as possibly done."""
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    adobe.lose_answer = {"N1": 1}
    read = adobe.get
    down = {"once": False}

    def get(resource: str, object_id: str, *, sandbox: str) -> dict:
        if adobe.writes() and not down["once"]:
            down["once"] = True
            raise ApiError("Adobe: GET /flows/N1: connection refused", service="adobe")
        return read(resource, object_id, sandbox=sandbox)

    adobe.get = get  # type: ignore[method-assign]
    report, journal = run(adobe, settings, [enable("prod", "N1", "L1")])

    [result] = report.results
    assert result.status == "failed" and "may or may not have taken" in (result.error or "")
    assert adobe.obj("prod", "flows", "N1")["state"] == "enabled"
    assert events_of(settings, journal, "enable_flow:prod:N1") == ["before"]
    undo = rollback_plan(read_run(settings.state_dir, journal.run_id))
    assert [(a.kind, a.target_id) for a in undo.actions] == [("disable_flow", "N1")]


@pytest.mark.parametrize("landing", ["refused", "412"])
def test_a_lost_write_that_lands_late_is_done_and_journalled(
    settings: Settings, landing: str
) -> None:
    """The first enable's answer is lost and a re-read shows it not applied; it lands just
    before the resend, which Adobe then refuses as a no-op (1409-400) or as stale (412, the
    etag moved): that is our write taking, journalled ``after`` so rollback undoes it."""
    adobe = FakeAdobe()
    adobe.strict = True
    pair(adobe, "prod", 1)
    adobe.fail[("POST", "N1/action?op=enable")] = UnsureWriteError("no answer", service="adobe")
    sent = {"n": 0}

    def late(method: str, oid: str) -> None:
        sent["n"] += 1
        if sent["n"] == 2:  # the first request lands now, just before the second
            flow = adobe.obj("prod", "flows", "N1")
            flow["state"] = "enabled"
            if landing == "412":
                adobe.bump(flow)

    adobe.before_write = late
    report, journal = run(adobe, settings, [enable("prod", "N1", "L1")])

    [result] = report.results
    assert result.status == "done", result.error
    assert "answer was lost" in result.note
    assert len(adobe.writes()) == 2
    assert events_of(settings, journal, "enable_flow:prod:N1")[-1] == "after"
    undo = rollback_plan(read_run(settings.state_dir, journal.run_id))
    assert [(a.kind, a.target_id) for a in undo.actions] == [("disable_flow", "N1")]


def test_a_resend_after_a_lost_answer_follows_the_rules_of_a_run_under_way(
    settings: Settings,
) -> None:
    """The legacy flow's disable loses its answer (not applied) while the operator switches
    the twin off: the re-read judges it as right before a wave would, so the legacy flow
    stays on and is not sent again."""
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)

    def operator(method: str, oid: str) -> None:
        if oid.startswith("L1/"):
            adobe.before_write = None
            adobe.obj("prod", "flows", "N1")["state"] = "disabled"
            raise UnsureWriteError("no answer", service="adobe")

    adobe.before_write = operator
    report, _ = run(adobe, settings, full_pair_actions("prod", 1))

    assert statuses(report)["disable_flow:prod:L1"] == "failed"
    assert adobe.obj("prod", "flows", "L1")["state"] == "enabled"
    assert [w for w in adobe.writes() if w[1].startswith("/flows/L1")] == [
        ("POST", "/flows/L1/action?op=disable", "")
    ]


def test_nothing_is_sent_again_once_the_run_is_being_stopped(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while a write's answer is lost: the write thread re-reads, but sends nothing
    more."""
    from pinmigrate.apply import engine

    events: list[threading.Event] = []

    class Recorded(threading.Event):
        def __init__(self) -> None:
            super().__init__()
            events.append(self)

    monkeypatch.setattr(engine, "threading", type("T", (), {"Event": Recorded}))
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)

    def stop(method: str, oid: str) -> None:
        adobe.before_write = None
        events[-1].set()  # what the engine does on Ctrl-C
        raise UnsureWriteError("no answer", service="adobe")

    adobe.before_write = stop
    report, _ = run(adobe, settings, [enable("prod", "N1", "L1")])

    [result] = report.results
    assert result.status == "failed" and "stopped" in (result.error or "")
    assert len(adobe.writes()) == 1
    assert adobe.obj("prod", "flows", "N1")["state"] == "disabled"


def test_a_no_op_refusal_is_already_done_when_a_re_read_shows_the_state(
    settings: Settings,
) -> None:
    """Someone enabled the flow between apply's read and its action: Flow Service refuses
    the action (1409-400); the re-read shows it enabled, so it is already done."""
    adobe = FakeAdobe()
    adobe.strict = True
    pair(adobe, "prod", 1)

    def meanwhile(method: str, oid: str) -> None:
        adobe.before_write = None
        adobe.obj("prod", "flows", "N1")["state"] = "enabled"  # an earlier write landing

    adobe.before_write = meanwhile
    report, journal = run(adobe, settings, [enable("prod", "N1", "L1")])

    assert statuses(report) == {"enable_flow:prod:N1": "already_done"}
    assert "no-op" in report.results[0].note
    assert len(adobe.writes()) == 1
    assert events_of(settings, journal, "enable_flow:prod:N1") == ["before", "error"]


def test_a_no_op_refusal_the_re_read_contradicts_fails_with_adobes_message(
    settings: Settings,
) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    adobe.fail[("POST", "N1/action?op=enable")] = InvalidStateError(
        "Adobe refused to enable flow N1 in sandbox prod: The operation enable cannot be "
        "applied on the current state enabled. (FLOW-1409-400)",
        status=400,
    )
    actions = full_pair_actions("prod", 1)
    report, _ = run(adobe, settings, actions)

    by_id = {r.action_id: r for r in report.results}
    assert by_id["enable_flow:prod:N1"].status == "failed"
    assert "cannot be applied on the current state" in (by_id["enable_flow:prod:N1"].error or "")
    assert by_id["disable_flow:prod:L1"].status == "skipped"
    assert len(adobe.writes()) == 1  # never repeated
    assert adobe.obj("prod", "flows", "L1")["state"] == "enabled"


# --- staleness --------------------------------------------------------------------------------


def test_legacy_switched_off_since_the_plan_is_stale_before_any_write(settings: Settings) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    pair(adobe, "prod", 2)
    actions = full_pair_actions("prod", 1) + full_pair_actions("prod", 2)
    adobe.obj("prod", "flows", "L2")["state"] = "disabled"  # the operator switched it off

    with pytest.raises(StalePlanError) as err:
        run(adobe, settings, actions)

    assert err.value.exit_code == ExitCode.STALE
    line = err.value.line()
    assert "'Flow 2'" in line and "L2" in line and "now disabled" in line
    assert "nothing was changed" in line
    assert adobe.writes() == []
    assert not (settings.state_dir / "runs").exists()  # no journal for a run that wrote nothing


def test_a_deleted_object_and_a_switched_off_twin_are_stale(settings: Settings) -> None:
    adobe = FakeAdobe()
    adobe.add("prod", "flows", flow("L1", "Flow 1", LEGACY_SPEC, "enabled"))
    adobe.add("prod", "flows", flow("N1", "Flow 1", NEW_SPEC, "disabled"))  # plan saw enabled
    actions = [disable("prod", "L1", "N1", twin_state="enabled"), enable("prod", "N9", "L1")]

    with pytest.raises(StalePlanError) as err:
        run(adobe, settings, actions)

    assert len(err.value.changes) == 2
    assert any("N1" in c and "now disabled" in c for c in err.value.changes)
    assert any("N9" in c and "no longer exists" in c for c in err.value.changes)
    assert adobe.writes() == []


def test_many_objects_are_re_read_with_list_calls_not_one_get_each(settings: Settings) -> None:
    adobe = FakeAdobe()
    actions: list[Action] = []
    for n in range(30):
        pair(adobe, "prod", n)
        actions += full_pair_actions("prod", n)

    report, _ = run(adobe, settings, actions, concurrency=8)

    assert report.ok
    gets = [r for r in adobe.reads() if r[1].startswith("/flows/")]
    assert gets == []
    # the staleness read (2 specs + 2 flow lists), one list of target connections (the ad
    # accounts the pair check compares) and one confirming list per wave
    assert len(adobe.reads()) <= 9
    assert len(adobe.writes()) == 60


def test_a_write_adobe_accepts_but_does_not_keep_fails_and_stops_its_dependents(
    settings: Settings,
) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    adobe.ignore_action.add("N1")
    report, _ = run(adobe, settings, full_pair_actions("prod", 1))

    by_id = {r.action_id: r for r in report.results}
    assert by_id["enable_flow:prod:N1"].status == "failed"
    assert "reads back disabled" in (by_id["enable_flow:prod:N1"].error or "")
    assert by_id["disable_flow:prod:L1"].status == "skipped"
    assert adobe.obj("prod", "flows", "L1")["state"] == "enabled"


# --- logins -----------------------------------------------------------------------------------


def test_without_a_person_the_api_path_fails_with_exit_4_before_any_write(
    settings: Settings,
) -> None:
    from pinmigrate.logins import LoginStore
    from pinmigrate.oauth import AdobeGrants

    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    pair(adobe, "prod", 2)
    adobe.add("prod", "connections", account("acct-1", None))
    adobe.add("prod", "connections", account("acct-2", NOW - timedelta(days=1)))
    actions = [reconnect("prod", "acct-1"), reconnect("prod", "acct-2", login=None)]
    actions += [enable("prod", "N1", "L1", deps=[actions[0].id]), enable("prod", "N2", "L2")]
    store = LoginStore(settings.state_dir)
    store.put(marketer())  # a stored login that covers them is not handed to Adobe either
    before = store.path.read_bytes()
    grants = AdobeGrants(settings, store, client=None)  # type: ignore[arg-type]

    with pytest.raises(AuthError) as err:
        run(adobe, settings, actions, logins=grants)  # type: ignore[arg-type]

    line = err.value.line()
    assert err.value.exit_code == ExitCode.AUTH
    assert "'Pinterest - acct-1' (prod, acct-1)" in line
    assert "'Pinterest - acct-2' (prod, acct-2)" in line
    assert 'reconnect_via = "adobe"' in line and "at a terminal" in line
    assert adobe.writes() == []
    assert store.path.read_bytes() == before
    assert not (settings.state_dir / "runs").exists() or ACCESS not in "".join(
        f.read_text() for f in (settings.state_dir / "runs").glob("*.jsonl")
    )


def test_each_account_gets_its_own_grant_and_no_token_reaches_the_journal(
    settings: Settings,
) -> None:
    adobe = FakeAdobe()
    for n in range(3):
        adobe.add("prod", "connections", account(f"acct-{n}", NOW - timedelta(days=1)))
    grants = FakeGrants(marketer())
    actions = [reconnect("prod", f"acct-{n}", login=None) for n in range(3)]

    report, journal = run(adobe, settings, actions, logins=grants)

    assert report.ok
    assert [c[0] for c in grants.calls] == [
        f"'Pinterest - acct-{n}' (prod, acct-{n})" for n in range(3)
    ]
    sent = [adobe.credentials[f"acct-{n}"] for n in range(3)]
    assert len({c["accessToken"] for c in sent}) == 3
    assert len({c["refreshToken"] for c in sent}) == 3
    text = journal.path.read_text()
    assert ACCESS not in text and REFRESH not in text and "expiresAt" in text
    assert '"pinterest_user": "1000000001"' in text
    out = json.dumps(report.to_json())
    assert ACCESS not in out and REFRESH not in out


def test_a_grant_given_to_two_accounts_is_refused_before_any_write(settings: Settings) -> None:
    adobe = FakeAdobe()
    for n in range(2):
        adobe.add("prod", "connections", account(f"acct-{n}", None))

    class SameGrant(FakeGrants):
        def grant_for(self, *args: Any, **kwargs: Any) -> Login:
            super().grant_for(*args, **kwargs)
            assert self.login is not None
            return self.login

    with pytest.raises(PinmigrateError, match="already given to another account"):
        run(
            adobe,
            settings,
            [reconnect("prod", f"acct-{n}") for n in range(2)],
            logins=SameGrant(marketer()),
        )  # type: ignore[arg-type]
    assert adobe.writes() == []


def test_the_pre_flight_user_is_named_for_the_sign_in(settings: Settings) -> None:
    adobe = FakeAdobe()
    adobe.add("prod", "connections", account("acct-1", None))
    adobe.add("prod", "connections", account("acct-2", None))
    ok = reconnect("prod", "acct-1")
    ok = ok.model_copy(
        update={
            "details": ok.details.model_copy(
                update={"preflight": "ok", "preflight_user": "emu_marketer (1000000001)"}
            )
        }
    )
    missing = reconnect("prod", "acct-2")
    missing = missing.model_copy(
        update={
            "details": missing.details.model_copy(
                update={"preflight": "missing_access", "preflight_user": "emu_analyst (2)"}
            )
        }
    )
    grants = FakeGrants(marketer())

    run(adobe, settings, [ok, missing], logins=grants)

    assert [c[2] for c in grants.calls] == ["emu_marketer (1000000001)", None]


# --- rollback ---------------------------------------------------------------------------------


def test_rollback_restores_flow_states_and_is_idempotent(settings: Settings) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1, legacy_aud=("a1", "a2"), new_aud=("a1",))
    pair(adobe, "prod", 2)
    adobe.add("prod", "connections", account("acct-1", None))
    actions = full_pair_actions("prod", 1, acct="acct-1", missing=["a2"]) + full_pair_actions(
        "prod", 2
    )
    report, journal = run(adobe, settings, actions)
    assert report.ok

    plan = rollback_plan(read_run(settings.state_dir, journal.run_id))
    assert [a.kind for a in plan.actions] == [
        "enable_flow",
        "enable_flow",
        "disable_flow",
        "disable_flow",
    ]
    assert any("audiences" in line for line in plan.left_alone)
    assert any("credentials" in line for line in plan.left_alone)

    adobe.log.clear()
    undo = _rollback(adobe, settings, plan, "undo-1", concurrency=4)[0]
    assert undo.ok and set(statuses(undo).values()) == {"done"}
    for n in (1, 2):
        assert adobe.obj("prod", "flows", f"L{n}")["state"] == "enabled"
        assert adobe.obj("prod", "flows", f"N{n}")["state"] == "disabled"
    # legacy flows come back on before their twins go off
    order = [w[1] for w in adobe.writes()]
    assert order.index("/flows/L1/action?op=enable") < order.index("/flows/N1/action?op=disable")
    # audiences and credentials stay
    selectors = adobe.obj("prod", "flows", "N1")["transformations"][1]["params"]["segmentSelectors"]
    assert len(selectors["selectors"]) == 2
    assert undo.to_json()["kind"] == "pinmigrate.rollback"
    assert undo.to_json()["rollback_of"] == journal.run_id
    assert read_run(settings.state_dir, "undo-1").kind == "rollback"

    adobe.log.clear()
    again = _rollback(adobe, settings, plan, "undo-2", concurrency=4)[0]
    assert set(statuses(again).values()) == {"already_done"}
    assert adobe.writes() == []


def test_rollback_skips_what_changed_since_and_keeps_the_twin_on(settings: Settings) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    report, journal = run(adobe, settings, full_pair_actions("prod", 1))
    assert report.ok
    del adobe.objects[("prod", "flows")]["L1"]  # the legacy flow was deleted since

    plan = rollback_plan(read_run(settings.state_dir, journal.run_id))
    undo = _rollback(adobe, settings, plan, "undo", concurrency=2)[0]
    got = {r.action_id: r for r in undo.results}
    assert got["enable_flow:prod:L1"].status == "skipped"
    assert "no longer exists" in (got["enable_flow:prod:L1"].error or "")
    assert got["disable_flow:prod:N1"].status == "skipped"  # its legacy twin is not back on
    assert adobe.obj("prod", "flows", "N1")["state"] == "enabled"
    assert not undo.ok


# --- --wait-runs ------------------------------------------------------------------------------


def _run(run_id: str, status: str, created: datetime) -> dict:
    return {
        "id": run_id,
        "flowId": "N1",
        "createdAt": int(created.timestamp() * 1000),
        "metrics": {
            "statusSummary": {
                "status": status,
                "errors": [{"code": "E1", "message": "boom"}] if status == "Failed" else [],
            }
        },
    }


def test_wait_runs_polls_until_the_first_run_after_enabling_ends(settings: Settings) -> None:
    adobe = FakeAdobe()
    old = _run("old", "Success", NOW - timedelta(days=3))
    adobe.runs_by_flow["N1"] = [
        [old],
        [old, _run("r1", "Processing", NOW)],
        [old, _run("r1", "Success", NOW)],
    ]
    adobe.runs_by_flow["N2"] = [[_run("r2", "Failed", NOW + timedelta(seconds=1))]]
    fake = FakeTime()
    checks = wait_runs(
        adobe,  # type: ignore[arg-type]
        workers=2,
        now=lambda: NOW,
        sleep=fake.sleep,
        clock=fake.clock,
        flows=[("N1", "prod", "Flow 1"), ("N2", "prod", "Flow 2")],
        timeout=300,
        interval=10,
    )
    assert [(c.flow_id, c.status, c.run_id) for c in checks] == [
        ("N1", "success", "r1"),
        ("N2", "failed", "r2"),
    ]
    assert "E1: boom" in checks[1].detail
    assert fake.sleeps == [10, 10]


def _wait_one(adobe: FakeAdobe, *, timeout: float, fake: FakeTime) -> Any:
    [check] = wait_runs(
        adobe,  # type: ignore[arg-type]
        workers=1,
        now=lambda: NOW,
        sleep=fake.sleep,
        clock=fake.clock,
        flows=[("N1", "prod", "Flow 1")],
        timeout=timeout,
        interval=10,
    )
    return check


def test_wait_runs_gives_up_at_the_timeout(settings: Settings) -> None:
    adobe = FakeAdobe()
    adobe.runs_by_flow["N1"] = [[]]
    fake = FakeTime()
    check = _wait_one(adobe, timeout=35, fake=fake)
    assert check.status == "timeout"
    assert sum(fake.sleeps) <= 35
    assert check.run_id is None
    assert check.detail == "no run had started 35s after enabling"


def test_wait_runs_waits_for_a_run_that_starts_late(settings: Settings) -> None:
    adobe = FakeAdobe()
    adobe.runs_by_flow["N1"] = [
        [],
        [],
        [_run("r1", "processing", NOW)],
        [_run("r1", "success", NOW)],
    ]
    fake = FakeTime()
    check = _wait_one(adobe, timeout=300, fake=fake)
    assert (check.status, check.run_id) == ("success", "r1")
    assert fake.sleeps == [10, 10, 10]


def test_wait_runs_reads_once_more_at_the_timeout(settings: Settings) -> None:
    adobe = FakeAdobe()
    adobe.runs_by_flow["N1"] = [[], [], [], [_run("r1", "SUCCESS", NOW)]]
    fake = FakeTime()
    check = _wait_one(adobe, timeout=25, fake=fake)
    assert check.status == "success"  # seen at 25 s, the timeout itself
    assert fake.sleeps == [10, 10, 5]


def test_a_run_still_going_at_the_timeout_is_named(settings: Settings) -> None:
    adobe = FakeAdobe()
    adobe.runs_by_flow["N1"] = [[], [_run("r1", "Processing", NOW)]]
    fake = FakeTime()
    check = _wait_one(adobe, timeout=60, fake=fake)
    assert (check.status, check.run_id) == ("timeout", "r1")
    assert check.detail == "run r1 was still processing 60s after enabling"


def test_a_read_that_fails_keeps_the_run_already_seen(settings: Settings) -> None:
    class Flaky(FakeAdobe):
        calls = 0

        def runs(self, flow_id: str, *, sandbox: str) -> list[dict]:
            self.calls += 1
            if self.calls == 1:
                return [_run("r1", "processing", NOW)]
            raise TypeError("runs answered a list of strings")

    check = _wait_one(Flaky(), timeout=20, fake=FakeTime())
    assert (check.status, check.run_id) == ("timeout", "r1")
    assert check.detail.startswith("run r1 was still processing 20s after enabling (last read:")


def test_the_apply_json_has_exactly_the_contracts_shape(settings: Settings) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    report, _ = run(adobe, settings, full_pair_actions("prod", 1))
    payload = json.loads(json.dumps(report.to_json()))
    # the contract's shape, plus the itemised blockers and orphans (additive)
    assert list(payload) == [
        "schema_version",
        "kind",
        "run_id",
        "results",
        "blockers",
        "orphans",
        "summary",
    ]
    assert payload["kind"] == "pinmigrate.apply" and payload["schema_version"] == 1
    # the contract's result fields, plus where the object is and its name (additive)
    assert list(payload["results"][0]) == [
        "action_id",
        "kind",
        "sandbox",
        "side",
        "target_id",
        "target_name",
        "status",
        "error",
    ]
    sides = {(r["kind"], r["side"]) for r in payload["results"]}
    assert sides == {("enable_flow", "new"), ("disable_flow", "legacy")}
    assert {r["sandbox"] for r in payload["results"]} == {"prod"}
    assert {r["target_name"] for r in payload["results"]} == {"flow N1", "flow L1"}
    assert set(payload["summary"]) == {
        "done",
        "already_done",
        "skipped",
        "failed",
        "retries",
        "blocked",
        "orphans",
    }


# --- progress and the report -----------------------------------------------------------------


def test_progress_is_plain_lines_off_a_terminal_and_a_bar_on_one() -> None:
    import io

    from rich.console import Console

    from pinmigrate.report import BarProgress, LineProgress, make_progress

    done = ActionResult("enable_flow:prod:N1", "enable_flow", "prod", "N1", "Loyalty members")
    done.status = "done"
    failed = ActionResult("disable_flow:prod:L1", "disable_flow", "prod", "L1", "Loyalty members")
    failed.status, failed.error = "skipped", "not attempted: it depends on x, which failed"

    plain = io.StringIO()
    lines = make_progress(Console(file=plain, width=200))
    assert isinstance(lines, LineProgress)
    lines.start(12)
    lines.advance(done)
    lines.advance(failed)
    lines.finish()
    assert plain.getvalue().splitlines() == [
        "[1/12] enable_flow prod 'Loyalty members' done",
        "[2/12] disable_flow prod 'Loyalty members' skipped: not attempted: it depends on x, "
        "which failed",
    ]

    tty = io.StringIO()
    bar = make_progress(Console(file=tty, force_terminal=True, width=100))
    assert isinstance(bar, BarProgress)
    bar.start(2)
    bar.advance(done)
    bar.advance(failed)
    bar.finish()
    assert "skipped: not attempted" in tty.getvalue()  # problems stay visible above the bar


def test_the_text_report_says_what_happened_and_why(settings: Settings) -> None:
    import io

    from rich.console import Console

    from pinmigrate.plan import Orphan
    from pinmigrate.report import render_report

    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    adobe.add("prod", "connections", account("acct-1", None))
    adobe.fail[("PATCH", "acct-1")] = ApiError("Adobe said no", status=500)
    report, _ = run(adobe, settings, full_pair_actions("prod", 1, acct="acct-1"))
    report.orphans = [Orphan(sandbox="prod", flow_id="h", flow_name="Holiday", reason="no twin")]
    sides = {r.kind: r.side for r in report.results}
    assert sides == {"reconnect_account": "account", "enable_flow": "new", "disable_flow": "legacy"}
    out = io.StringIO()
    render_report(Console(file=out, width=250), report)
    text = out.getvalue()
    assert "0 done, 0 already done, 2 skipped, 1 failed" in text
    assert "Adobe said no" in text and "not attempted" in text
    assert "orphan" in text and "Holiday" in text


def test_a_slow_browser_login_is_followed_by_a_fresh_staleness_check(
    settings: Settings,
) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    adobe.add("prod", "connections", account("acct-1", None))
    actions = [reconnect("prod", "acct-1", login=None), *full_pair_actions("prod", 1)]
    fake = FakeTime()

    class SlowPerson(FakeGrants):
        def grant_for(self, *args: Any, **kwargs: Any) -> Login:
            fake.now += 120  # two minutes in the browser, meanwhile the operator acts
            adobe.obj("prod", "flows", "L1")["state"] = "disabled"
            return super().grant_for(*args, **kwargs)

    with pytest.raises(StalePlanError, match="now disabled"):
        apply_plan(
            make_plan(actions),
            adobe=adobe,  # type: ignore[arg-type]
            settings=settings,
            logins=SlowPerson(marketer()),
            journal=Journal(settings.state_dir, "slow"),
            concurrency=2,
            now=lambda: NOW,
            clock=fake.clock,
        )
    assert adobe.writes() == []


# --- regressions: rollback undoes only what the runs changed ----------------------------------


def _rollback(
    adobe: FakeAdobe, settings: Settings, plan: Any, run_id: str = "undo", *, concurrency: int = 2
) -> tuple[Any, Journal]:
    """Carry out a rollback plan in a journal of its own, as ``pinmigrate rollback`` does."""
    journal = Journal(settings.state_dir, run_id, kind="rollback")
    report = rollback_run(
        plan,
        adobe=adobe,  # type: ignore[arg-type]
        settings=settings,
        journal=journal,
        concurrency=concurrency,
    )
    journal.close()
    return report, journal


def test_rollback_never_switches_on_a_legacy_flow_the_run_did_not_switch_off(
    settings: Settings,
) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)

    def operator(method: str, oid: str) -> None:
        # The operator switches the legacy flow off just before the run's own switch-off.
        if oid == "L1/action?op=disable":
            legacy = adobe.obj("prod", "flows", "L1")
            legacy["state"] = "disabled"
            adobe.bump(legacy)

    adobe.before_write = operator
    report, journal = run(adobe, settings, full_pair_actions("prod", 1))
    adobe.before_write = None
    assert statuses(report)["disable_flow:prod:L1"] == "already_done"  # a 412, then found off

    plan = rollback_plan(read_run(settings.state_dir, journal.run_id))
    assert [(a.kind, a.target_id) for a in plan.actions] == [("disable_flow", "N1")]
    undo, _ = _rollback(adobe, settings, plan)

    assert adobe.obj("prod", "flows", "L1")["state"] == "disabled"  # as the operator left it
    # ... and its twin is not switched off with nothing left to serve the audience
    assert adobe.obj("prod", "flows", "N1")["state"] == "enabled"
    [result] = undo.results
    assert result.status == "skipped" and "L1" in (result.error or "")
    assert ("POST", "/flows/L1/action?op=enable", "") not in adobe.writes()


def _interrupted_run(settings: Settings, run_id: str, kind: str, target: str, state: str) -> None:
    """A journal of a run killed inside one flow-state write."""
    journal = Journal(settings.state_dir, run_id)
    ref = action_id(kind, "prod", target)
    journal.run_start(fingerprint="sha256:x", action_ids=[ref])
    extra = {"twin_flow_id": "N1"} if kind == "disable_flow" else {"legacy_flow_id": "L1"}
    journal.before(
        ActionRef(ref, kind, "prod", target, f"flow {target}"),
        {"state": state},
        attempt=1,
        **extra,
    )
    journal.close()


@pytest.mark.parametrize("happened", [True, False])
def test_an_interrupted_write_is_undone_only_if_the_flow_reads_back_as_it_would_leave_it(
    settings: Settings, happened: bool
) -> None:
    adobe = FakeAdobe()
    adobe.add("prod", "flows", flow("L1", "Flow 1", LEGACY_SPEC, "enabled"))
    adobe.add("prod", "flows", flow("N1", "Flow 1", NEW_SPEC, "enabled"))
    if happened:
        adobe.obj("prod", "flows", "L1")["state"] = "disabled"
    _interrupted_run(settings, "killed", "disable_flow", "L1", "enabled")

    plan = rollback_plan(read_run(settings.state_dir, "killed"))
    undo, _ = _rollback(adobe, settings, plan)

    got = {r.action_id: r for r in undo.results}
    legacy = got["enable_flow:prod:L1"]
    if happened:
        assert legacy.status == "done" and "interrupted write of run killed" in legacy.note
        assert "assumed done" in legacy.note
    else:
        assert legacy.status == "already_done" and "had not taken effect" in legacy.note
    assert adobe.obj("prod", "flows", "L1")["state"] == "enabled"


def test_an_interrupted_write_that_could_change_nothing_is_not_undone(settings: Settings) -> None:
    _interrupted_run(settings, "killed", "disable_flow", "L1", "disabled")
    assert rollback_plan(read_run(settings.state_dir, "killed")).actions == []


# --- regressions: the legacy flow is re-checked during the run --------------------------------


def test_an_audience_removed_from_the_legacy_flow_since_the_plan_is_stale(
    settings: Settings,
) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1, legacy_aud=("a1", "a2"), new_aud=("a1",))
    legacy = adobe.obj("prod", "flows", "L1")
    selectors = legacy["transformations"][1]["params"]["segmentSelectors"]
    selectors["selectors"] = [s for s in selectors["selectors"] if s["value"]["id"] != "a2"]
    adobe.bump(legacy)

    with pytest.raises(StalePlanError) as err:
        run(adobe, settings, full_pair_actions("prod", 1, missing=["a2"]))

    assert err.value.exit_code == ExitCode.STALE
    line = err.value.line()
    assert "'Flow 1' (prod, L1)" in line and "'A2' (a2)" in line and "no longer has" in line
    assert adobe.writes() == []


def _switch_off_legacy_when(adobe: FakeAdobe, trigger: str) -> None:
    def operator(method: str, oid: str) -> None:
        if oid == trigger:
            legacy = adobe.obj("prod", "flows", "L1")
            legacy["state"] = "disabled"
            adobe.bump(legacy)

    adobe.before_write = operator


@pytest.mark.parametrize(
    ("trigger", "first_stopped"),
    # The audiences do not depend on the reconnect (the enable depends on both): they are
    # added at the same time, and the enable is the first action judged after the change.
    [("acct-1", "enable_flow:prod:N1"), ("N1", "enable_flow:prod:N1")],
    ids=["during-reconnect", "during-add-audiences"],
)
def test_a_legacy_flow_switched_off_during_the_run_stops_its_twin_being_enabled(
    settings: Settings, trigger: str, first_stopped: str
) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1, legacy_aud=("a1", "a2"), new_aud=("a1",))
    adobe.add("prod", "connections", account("acct-1", None))
    _switch_off_legacy_when(adobe, trigger)

    report, journal = run(
        adobe, settings, full_pair_actions("prod", 1, acct="acct-1", missing=["a2"])
    )

    by_id = {r.action_id: r for r in report.results}
    stopped = by_id[first_stopped]
    assert stopped.status == "skipped"
    assert "legacy flow 'Flow 1' (prod, L1) was switched off during the run" in (
        stopped.error or ""
    )
    assert by_id["enable_flow:prod:N1"].status == "skipped"
    assert by_id["disable_flow:prod:L1"].status == "skipped"
    assert ("POST", "/flows/N1/action?op=enable", "") not in adobe.writes()
    assert adobe.obj("prod", "flows", "N1")["state"] == "disabled"
    assert not report.ok
    assert read_run(settings.state_dir, journal.run_id).finished


def test_the_legacy_switch_off_uses_an_etag_read_after_the_twin_was_enabled(
    settings: Settings,
) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)

    def operator(method: str, oid: str) -> None:
        if oid == "N1/action?op=enable":  # the legacy flow is edited meanwhile (still on)
            adobe.bump(adobe.obj("prod", "flows", "L1"))

    adobe.before_write = operator
    report, _ = run(adobe, settings, full_pair_actions("prod", 1))

    result = {r.action_id: r for r in report.results}["disable_flow:prod:L1"]
    assert result.status == "done" and "412" not in result.note
    assert adobe.writes().count(("POST", "/flows/L1/action?op=disable", "")) == 1


def test_a_twin_switched_off_during_the_run_keeps_its_legacy_flow_on(settings: Settings) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    pair(adobe, "prod", 2)
    adobe.obj("prod", "flows", "N2")["state"] = "enabled"
    actions = [
        *full_pair_actions("prod", 1),
        disable("prod", "L2", "N2", twin_state="enabled"),
    ]
    # the disable of L2 waits behind the enable of N1; meanwhile N2 is switched off
    actions[-1] = disable("prod", "L2", "N2", twin_state="enabled", deps=[actions[0].id])

    def operator(method: str, oid: str) -> None:
        if oid == "N1/action?op=enable":
            twin = adobe.obj("prod", "flows", "N2")
            twin["state"] = "disabled"
            adobe.bump(twin)

    adobe.before_write = operator
    report, _ = run(adobe, settings, actions)

    result = {r.action_id: r for r in report.results}["disable_flow:prod:L2"]
    assert result.status == "skipped" and "changed during the run" in (result.error or "")
    assert adobe.obj("prod", "flows", "L2")["state"] == "enabled"


# --- regressions: rollback after a rerun ------------------------------------------------------


def _apply(adobe: FakeAdobe, settings: Settings, run_id: str, actions: list[Action]) -> Any:
    journal = Journal(settings.state_dir, run_id)
    report = apply_plan(
        make_plan(actions),
        adobe=adobe,  # type: ignore[arg-type]
        settings=settings,
        logins=FakeGrants(marketer()),
        journal=journal,
        concurrency=2,
        now=lambda: NOW,
    )
    journal.close()
    return report


@pytest.mark.parametrize("rerun", ["same-plan", "fresh-plan"])
def test_rolling_back_a_rerun_also_undoes_the_run_it_carried_on(
    settings: Settings, rerun: str
) -> None:
    from pinmigrate.journal import latest_run, run_chain

    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    adobe.fail[("POST", "L1/action?op=disable")] = ApiError("503 after retries", service="adobe")
    first = _apply(adobe, settings, "20240101T000000000Z-aaaaaa", full_pair_actions("prod", 1))
    assert statuses(first)["disable_flow:prod:L1"] == "failed"
    # The rerun: the same plan file, or a fresh plan (which only switches the legacy flow off).
    again = (
        full_pair_actions("prod", 1)
        if rerun == "same-plan"
        else [disable("prod", "L1", "N1", twin_state="enabled")]
    )
    second = _apply(adobe, settings, "20240101T000001000Z-bbbbbb", again)
    assert second.ok

    latest = latest_run(settings.state_dir, kind="apply", with_writes=True)
    assert latest == "20240101T000001000Z-bbbbbb"
    chain = run_chain(settings.state_dir, latest)
    assert [r.run_id for r in chain] == [latest, "20240101T000000000Z-aaaaaa"]
    plan = rollback_plan(chain[0], chain[1:])
    undo, _ = _rollback(adobe, settings, plan, "20240101T000002000Z-cccccc")

    assert undo.ok
    assert adobe.obj("prod", "flows", "L1")["state"] == "enabled"
    assert adobe.obj("prod", "flows", "N1")["state"] == "disabled"  # never both on
    assert undo.to_json()["covers"] == [latest, "20240101T000000000Z-aaaaaa"]
    assert any("carried on" in note for note in undo.notes)
    # run 1: enable + failed disable; run 2: disable; rollback: each flow change undone once
    assert len(adobe.writes()) == 5


def test_rolling_back_only_the_rerun_still_never_leaves_the_pair_both_on(
    settings: Settings,
) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    adobe.fail[("POST", "L1/action?op=disable")] = ApiError("503 after retries", service="adobe")
    _apply(adobe, settings, "20240101T000000000Z-aaaaaa", full_pair_actions("prod", 1))
    _apply(adobe, settings, "20240101T000001000Z-bbbbbb", full_pair_actions("prod", 1))

    plan = rollback_plan(read_run(settings.state_dir, "20240101T000001000Z-bbbbbb"))
    undo, _ = _rollback(adobe, settings, plan)

    assert adobe.obj("prod", "flows", "L1")["state"] == "enabled"
    assert adobe.obj("prod", "flows", "N1")["state"] == "disabled"
    note = {r.action_id: r.note for r in undo.results}["disable_flow:prod:N1"]
    assert "set out to enable it" in note and "twice" in note


def test_a_twin_that_fails_to_switch_off_sends_its_legacy_flow_back_off(
    settings: Settings,
) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    report, journal = run(adobe, settings, full_pair_actions("prod", 1))
    assert report.ok
    adobe.fail[("POST", "N1/action?op=disable")] = ApiError("Adobe said no", status=500)

    plan = rollback_plan(read_run(settings.state_dir, journal.run_id))
    undo, undo_journal = _rollback(adobe, settings, plan)

    got = {r.action_id: r for r in undo.results}
    assert got["enable_flow:prod:L1"].status == "done"
    assert got["disable_flow:prod:N1"].status == "failed"
    assert got["disable_flow:prod:L1"].status == "done"
    assert "switched off again" in got["disable_flow:prod:L1"].note
    # the pair is as the run left it: never both on
    assert adobe.obj("prod", "flows", "L1")["state"] == "disabled"
    assert adobe.obj("prod", "flows", "N1")["state"] == "enabled"
    assert not undo.ok
    records = read_run(settings.state_dir, undo_journal.run_id).records
    assert [r["event"] for r in records].count("run_start") == 1
    assert records[-1]["event"] == "run_end"


# --- regressions: surprises end in a report ---------------------------------------------------


def test_an_unexpected_error_in_a_write_or_its_read_back_still_ends_in_a_report(
    settings: Settings,
) -> None:
    class Breaking(FakeAdobe):
        broken = False

        def get(self, resource: str, object_id: str, *, sandbox: str) -> dict:
            if self.broken:
                raise ValueError("a payload we could not parse")
            return super().get(resource, object_id, sandbox=sandbox)

    adobe = Breaking()
    pair(adobe, "prod", 1)
    pair(adobe, "prod", 2)
    adobe.fail[("POST", "N2/action?op=enable")] = KeyError("state")

    def after_first(method: str, oid: str) -> None:
        if oid == "N1/action?op=enable":
            adobe.broken = True

    adobe.before_write = after_first
    report, journal = run(
        adobe, settings, [*full_pair_actions("prod", 1), enable("prod", "N2", "L2")]
    )

    by_id = {r.action_id: r for r in report.results}
    assert by_id["enable_flow:prod:N2"].status == "failed"
    assert by_id["enable_flow:prod:N2"].error == "unexpected KeyError: 'state'"
    n1 = by_id["enable_flow:prod:N1"]
    assert n1.status == "failed" and "reading it back failed" in (n1.error or "")
    assert "unexpected ValueError: a payload we could not parse" in (n1.error or "")
    assert by_id["disable_flow:prod:L1"].status == "skipped"
    record = read_run(settings.state_dir, journal.run_id)
    assert record.finished and record.end["summary"]["failed"] == 2


def test_an_unexpected_error_while_waiting_for_runs_is_a_detail_not_a_crash(
    settings: Settings,
) -> None:
    class Breaking(FakeAdobe):
        def runs(self, flow_id: str, *, sandbox: str) -> list[dict]:
            raise TypeError("runs answered a list of strings")

    fake = FakeTime()
    [check] = wait_runs(
        Breaking(),  # type: ignore[arg-type]
        workers=2,
        now=lambda: NOW,
        sleep=fake.sleep,
        clock=fake.clock,
        flows=[("N1", "prod", "Flow 1")],
        timeout=25,
        interval=10,
    )
    assert check.status == "timeout"


def test_ctrl_c_while_writes_are_submitted_cancels_the_queued_ones(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import pinmigrate.apply.engine as executor_module

    adobe = FakeAdobe()
    actions = []
    for n in range(3):
        pair(adobe, "prod", n)
        actions.append(enable("prod", f"N{n}", f"L{n}"))
    release = threading.Event()

    def slow(method: str, oid: str) -> None:
        release.wait(10)

    adobe.before_write = slow

    class Interrupted(ThreadPoolExecutor):
        submitted = 0

        def submit(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            if self._thread_name_prefix.startswith("write"):
                Interrupted.submitted += 1
                if Interrupted.submitted == 3:
                    raise KeyboardInterrupt
            return super().submit(*args, **kwargs)

        def shutdown(self, *args: Any, **kwargs: Any) -> None:
            release.set()  # by now the queued write has been cancelled
            super().shutdown(*args, **kwargs)

    monkeypatch.setattr(executor_module, "ThreadPoolExecutor", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(adobe, settings, actions, concurrency=1)
    assert adobe.writes() == [("POST", "/flows/N0/action?op=enable", "")]


def test_the_apply_json_itemises_blockers_and_orphans(settings: Settings) -> None:
    from pinmigrate.apply import ApplyReport
    from pinmigrate.plan import Blocker, Orphan

    report = ApplyReport(
        run_id="r",
        results=[],
        blockers=[
            Blocker(
                sandbox="prod",
                kind="ambiguous",
                flow_id="l9",
                flow_name="Lookalike",
                candidates=["n8", "n9"],
                message="2 new flows are named 'Lookalike'",
            )
        ],
        orphans=[Orphan(sandbox="prod", flow_id="h1", flow_name="Holiday", reason="no twin")],
    )
    payload = report.to_json()
    assert payload["blockers"] == [
        {
            "sandbox": "prod",
            "flow_id": "l9",
            "name": "Lookalike",
            "kind": "ambiguous",
            "candidates": ["n8", "n9"],
            "reason": "2 new flows are named 'Lookalike'",
        }
    ]
    assert payload["orphans"] == [
        {"sandbox": "prod", "flow_id": "h1", "name": "Holiday", "reason": "no twin"}
    ]
    assert payload["summary"]["blocked"] == 1 and payload["summary"]["orphans"] == 1


# --- reconnects a person does in Adobe (migration.reconnect_via = "adobe") --------------------


@pytest.fixture
def person_settings(tmp_path: Path) -> Settings:
    return Settings(
        adobe=AdobeSettings(
            org_id="X@AdobeOrg", ui_url="http://127.0.0.1:1/ui/{org_id}/{sandbox}/a/{account_id}"
        ),
        state_dir=tmp_path,
    )


def renew(adobe: FakeAdobe, aid: str, days: int = 30) -> None:
    """What a person's Reconnect OAuth does to the account, as reads show it."""
    obj = adobe.obj("prod", "connections", aid)
    obj["auth"]["params"] = {
        "accessToken": "***",
        "expiresAt": (NOW + timedelta(days=days)).isoformat(),
    }
    adobe.bump(obj)


def run_waiting(
    adobe: FakeAdobe,
    settings: Settings,
    actions: list[Action],
    clock: FakeTime,
    *,
    timeout: float,
    asked: list | None = None,
    progress: Any = None,
    wait_runs: bool = False,
    moving_now: bool = False,
) -> tuple[Any, Journal]:
    """Apply ``actions`` on the person path; ``moving_now``: the wall clock follows ``clock``."""
    journal = Journal(settings.state_dir, new_run_id())
    report = apply_plan(
        make_plan(actions),
        adobe=adobe,  # type: ignore[arg-type]
        settings=settings,
        logins=None,
        journal=journal,
        concurrency=4,
        now=(lambda: NOW + timedelta(seconds=clock.now)) if moving_now else (lambda: NOW),
        clock=clock.clock,
        sleep=clock.sleep,
        reconnect_timeout=timeout,
        ask_person=(asked.extend if asked is not None else None),
        progress=progress,
        wait_runs=wait_runs,
        run_timeout=60,
    )
    journal.close()
    return report, journal


def one_waiting_pair_and_one_free(adobe: FakeAdobe) -> list[Action]:
    """Pair 1's account (acct-N1) has no credentials; pair 2's needs nothing."""
    pair(adobe, "prod", 1)
    pair(adobe, "prod", 2)
    adobe.add("prod", "connections", account("acct-N1", None))
    return [*full_pair_actions("prod", 1, acct="acct-N1"), *full_pair_actions("prod", 2)]


class RenewAt(FakeTime):
    """A clock at which a person reconnects accounts: ``{seconds: [account ids]}``."""

    def __init__(self, adobe: FakeAdobe, when: dict[float, list[str]]) -> None:
        super().__init__()
        self.adobe = adobe
        self.when = dict(when)

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        for moment in sorted(self.when):
            if self.now >= moment:
                for aid in self.when.pop(moment):
                    renew(self.adobe, aid)


def test_a_person_reconnects_in_adobe_and_apply_carries_on_without_writing_credentials(
    person_settings: Settings,
) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    adobe.add("prod", "connections", account("acct-N1", None))
    actions = full_pair_actions("prod", 1, acct="acct-N1")
    clock = RenewAt(adobe, {20.0: ["acct-N1"]})
    asked: list = []

    report, journal = run_waiting(adobe, person_settings, actions, clock, timeout=60, asked=asked)

    assert report.ok, [r.error for r in report.results]
    assert [r.status for r in report.results] == ["done", "done", "done"]
    assert "reconnected in Adobe" in report.results[0].note
    assert not any(w[1].startswith("/connections") for w in adobe.writes())
    # noticed within one re-read interval of the renewal, never more than 15 s apart
    assert clock.now - 20.0 <= 15.0
    assert max(clock.sleeps) <= 1.0
    [request] = asked
    assert request.page == "http://127.0.0.1:1/ui/X%40AdobeOrg/prod/a/acct-N1"
    assert "'Pinterest - acct-N1' (acct-N1)" in request.line and "prod" in request.line
    assert "549755885175" in request.line
    events = [json.loads(line)["event"] for line in journal.path.read_text().splitlines()]
    assert "waiting" in events and "observed" in events


def test_each_account_releases_its_own_actions_as_soon_as_it_is_renewed(
    person_settings: Settings,
) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    pair(adobe, "prod", 2)
    adobe.add("prod", "connections", account("acct-N1", None))
    adobe.add("prod", "connections", account("acct-N2", None))
    actions = [
        *full_pair_actions("prod", 1, acct="acct-N1"),
        *full_pair_actions("prod", 2, acct="acct-N2"),
    ]
    clock = RenewAt(adobe, {10.0: ["acct-N1"], 200.0: ["acct-N2"]})
    enabled_at: dict[str, float] = {}
    adobe.before_write = lambda method, oid: enabled_at.setdefault(oid, clock.now)

    report, _ = run_waiting(adobe, person_settings, actions, clock, timeout=600)

    assert report.ok
    assert enabled_at["N1/action?op=enable"] < 30.0  # long before the second account
    assert enabled_at["N2/action?op=enable"] >= 200.0


def test_an_account_not_reconnected_in_time_fails_its_own_actions_only_and_exits_4(
    person_settings: Settings,
) -> None:
    adobe = FakeAdobe()
    actions = one_waiting_pair_and_one_free(adobe)
    clock = FakeTime()

    report, _ = run_waiting(adobe, person_settings, actions, clock, timeout=60)

    got = statuses(report)
    assert got["reconnect_account:prod:acct-N1"] == "failed"
    assert got["enable_flow:prod:N1"] == got["disable_flow:prod:L1"] == "skipped"
    assert got["enable_flow:prod:N2"] == got["disable_flow:prod:L2"] == "done"
    assert 60.0 <= clock.now <= 61.0
    # re-read at most 15 s apart: count the account reads
    reads = [r for r in adobe.reads() if r[1] == "/connections/acct-N1"]
    assert len(reads) >= 60 / 15
    with pytest.raises(ReconnectPending) as err:
        report.raise_if_failed()
    assert err.value.exit_code == ExitCode.AUTH
    assert "'Pinterest - acct-N1' (prod, acct-N1)" in err.value.line()
    assert "\n" not in err.value.line()
    assert adobe.obj("prod", "flows", "N1")["state"] == "disabled"
    assert adobe.obj("prod", "flows", "L1")["state"] == "enabled"


def test_without_a_wait_apply_reads_once_and_does_everything_else(
    person_settings: Settings,
) -> None:
    adobe = FakeAdobe()
    actions = one_waiting_pair_and_one_free(adobe)
    clock = FakeTime()

    report, _ = run_waiting(adobe, person_settings, actions, clock, timeout=0)

    assert clock.sleeps == []
    assert statuses(report)["enable_flow:prod:N2"] == "done"
    with pytest.raises(ReconnectPending):
        report.raise_if_failed()


def test_a_failure_other_than_a_reconnect_exits_1(person_settings: Settings) -> None:
    adobe = FakeAdobe()
    actions = one_waiting_pair_and_one_free(adobe)
    adobe.fail[("POST", "N2/action?op=enable")] = ApiError("Adobe said no", status=400)

    report, _ = run_waiting(adobe, person_settings, actions, FakeTime(), timeout=0)

    with pytest.raises(ApplyFailed) as err:
        report.raise_if_failed()
    assert not isinstance(err.value, ReconnectPending)


def test_a_plan_made_for_a_person_is_never_carried_out_by_writing_credentials(
    settings: Settings,
) -> None:
    # settings say "api", but the plan was made (and approved) for a person
    adobe = FakeAdobe()
    adobe.add("prod", "connections", account("acct-1", None))
    action = reconnect("prod", "acct-1")
    action = action.model_copy(
        update={"details": action.details.model_copy(update={"via": "adobe"})}
    )
    logins = FakeGrants(marketer())

    report, _ = run_waiting(adobe, settings, [action], FakeTime(), timeout=0)

    assert statuses(report)[action.id] == "failed"
    assert adobe.writes() == [] and logins.calls == []


@pytest.mark.parametrize(
    ("before", "after", "renewed"),
    [
        ({"etag": "1", "exp": 1}, {"etag": "1", "exp": 40}, False),  # same etag
        ({"etag": "1", "exp": 1}, {"etag": "2", "exp": 1}, False),  # renamed, not renewed
        ({"etag": "1", "exp": 1}, {"etag": "2", "exp": 40}, True),
        ({"etag": "1", "exp": None}, {"etag": "2", "exp": 40}, True),
        ({"etag": "1", "exp": 5}, {"etag": "2", "exp": None}, False),  # disconnected
    ],
)
def test_a_renewal_is_a_new_etag_and_a_later_expiry(
    before: dict, after: dict, renewed: bool
) -> None:
    from pinmigrate.apply.reconnects import renewed as is_renewal
    from pinmigrate.inventory import Account

    def acc(d: dict) -> Account:
        exp = NOW + timedelta(days=d["exp"]) if d["exp"] is not None else None
        return Account("a", "A", "prod", "new", etag=d["etag"], expires_at=exp)

    assert is_renewal(acc(before), acc(after)) is renewed


def test_a_renewal_without_any_expiry_field_is_read_from_updated_at(
    person_settings: Settings,
) -> None:
    adobe = FakeAdobe()
    adobe.add("prod", "connections", account("acct-1", None))
    old = int((NOW - timedelta(days=29)).timestamp() * 1000)
    obj = adobe.obj("prod", "connections", "acct-1")
    obj["auth"]["params"] = {"accessToken": "***"}
    obj["updatedAt"] = old
    action = reconnect("prod", "acct-1")

    class Later(FakeTime):
        def sleep(self, seconds: float) -> None:
            super().sleep(seconds)
            if self.now >= 5 and obj["updatedAt"] == old:
                obj["updatedAt"] = int(NOW.timestamp() * 1000)
                adobe.bump(obj)

    report, _ = run_waiting(adobe, person_settings, [action], Later(), timeout=60)

    assert report.ok
    assert "updatedAt+30d" in report.results[0].note


def two_pairs_waiting_for_accounts(adobe: FakeAdobe) -> list[Action]:
    """Pairs 1 and 2, whose accounts (acct-N1, acct-N2) have no credentials yet."""
    actions: list[Action] = []
    for n in (1, 2):
        pair(adobe, "prod", n)
        adobe.add("prod", "connections", account(f"acct-N{n}", None))
        actions += full_pair_actions("prod", n, acct=f"acct-N{n}")
    return actions


def test_wait_runs_sees_the_run_of_a_flow_enabled_long_before_the_last_reconnect(
    person_settings: Settings,
) -> None:
    # Account N1 is reconnected at 10 s and its flow enabled then; N2's only at 300 s. The
    # first run of N1 started at 10 s: it is the run to report, not a run "from before".
    adobe = FakeAdobe()
    actions = two_pairs_waiting_for_accounts(adobe)
    adobe.runs_by_flow["N1"] = [[_run("r1", "Success", NOW + timedelta(seconds=10))]]
    adobe.runs_by_flow["N2"] = [[_run("r2", "Success", NOW + timedelta(seconds=300))]]
    clock = RenewAt(adobe, {10.0: ["acct-N1"], 300.0: ["acct-N2"]})
    report, _ = run_waiting(
        adobe, person_settings, actions, clock, timeout=600, wait_runs=True, moving_now=True
    )

    assert report.ok
    assert [(r.flow_id, r.status, r.run_id) for r in report.runs] == [
        ("N1", "success", "r1"),
        ("N2", "success", "r2"),
    ]


def test_several_waiting_accounts_are_re_read_with_one_list_call_per_sandbox(
    person_settings: Settings,
) -> None:
    adobe = FakeAdobe()
    adobe.add("prod", "connectionSpecs", {"id": NEW_SPEC, "name": "Pinterest"})
    for n in (1, 2, 3):
        pair(adobe, "prod", n)
        adobe.add("prod", "connections", account(f"acct-N{n}", None))
    actions = [a for n in (1, 2, 3) for a in full_pair_actions("prod", n, acct=f"acct-N{n}")]
    clock = RenewAt(adobe, {30.0: ["acct-N1", "acct-N2", "acct-N3"]})
    adobe.log.clear()

    report, _ = run_waiting(adobe, person_settings, actions, clock, timeout=120)

    assert report.ok
    account_gets = [e for e in adobe.reads() if e[1].startswith("/connections/")]
    account_lists = [e for e in adobe.reads() if e[1] == "/connections"]
    assert len(account_gets) <= 3  # the staleness check's; the waiting re-reads list
    assert len(account_lists) >= 3  # one per re-read while waiting


class Recorder:
    """A progress that remembers which actions it was told about."""

    def __init__(self) -> None:
        self.total = 0
        self.advanced: list[str] = []

    def start(self, total: int) -> None:
        self.total = total

    def advance(self, result: ActionResult) -> None:
        self.advanced.append(result.action_id)

    def finish(self) -> None:
        return None

    def status(self, text: str) -> None:
        return None


def test_a_legacy_flow_stays_on_while_its_already_enabled_twins_account_waits(
    person_settings: Settings,
) -> None:
    # The twin was switched on by hand after the plan (its enable is already done); its
    # account is never reconnected: the legacy flow must not be switched off.
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    adobe.obj("prod", "flows", "N1")["state"] = "enabled"
    adobe.add("prod", "connections", account("acct-N1", None))
    progress = Recorder()
    actions = full_pair_actions("prod", 1, acct="acct-N1")

    report, _ = run_waiting(adobe, person_settings, actions, FakeTime(), timeout=30)

    got = statuses(report)
    assert got["enable_flow:prod:N1"] == "already_done"
    assert got["disable_flow:prod:L1"] == "skipped"
    assert adobe.obj("prod", "flows", "L1")["state"] == "enabled"
    with pytest.raises(ReconnectPending):
        report.raise_if_failed()
    # ... and every action, the one already done too, reaches the progress display.
    clock = RenewAt(adobe, {5.0: ["acct-N1"]})
    run_waiting(adobe, person_settings, actions, clock, timeout=30, progress=progress)
    assert sorted(progress.advanced) == sorted(a.id for a in actions)


def test_the_api_path_keeps_the_legacy_flow_on_when_the_reconnect_fails(
    settings: Settings,
) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    adobe.obj("prod", "flows", "N1")["state"] = "enabled"
    adobe.add("prod", "connections", account("acct-N1", None))
    adobe.fail[("PATCH", "acct-N1")] = ApiError("Adobe said no", status=400)

    report, _ = run(adobe, settings, full_pair_actions("prod", 1, acct="acct-N1"))

    assert statuses(report)["disable_flow:prod:L1"] == "skipped"
    assert adobe.obj("prod", "flows", "L1")["state"] == "enabled"


def test_an_account_deleted_while_waiting_fails_at_once_with_exit_1(
    person_settings: Settings,
) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    adobe.add("prod", "connections", account("acct-N1", None))

    class Delete(FakeTime):
        def sleep(self, seconds: float) -> None:
            super().sleep(seconds)
            adobe.objects[("prod", "connections")].pop("acct-N1", None)

    clock = Delete()
    actions = full_pair_actions("prod", 1, acct="acct-N1")
    report, _ = run_waiting(adobe, person_settings, actions, clock, timeout=900)

    assert clock.now < 30  # not the whole wait
    assert "no longer exists" in (report.results[0].error or "")
    with pytest.raises(ApplyFailed) as err:
        report.raise_if_failed()
    assert err.value.exit_code == ExitCode.FAILED


def test_re_reads_that_keep_failing_are_not_reported_as_a_reconnect_to_do(
    person_settings: Settings,
) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    adobe.add("prod", "connections", account("acct-N1", None))
    real_get = adobe.get
    calls = {"n": 0}

    def get(resource: str, oid: str, *, sandbox: str) -> dict:
        if resource == "connections":
            calls["n"] += 1
            if calls["n"] > 1:  # the staleness check reads; every later re-read fails
                raise ApiError("Adobe 503 Service Unavailable", status=503, service="adobe")
        return real_get(resource, oid, sandbox=sandbox)

    adobe.get = get  # type: ignore[method-assign]
    actions = full_pair_actions("prod", 1, acct="acct-N1")
    report, _ = run_waiting(adobe, person_settings, actions, FakeTime(), timeout=60)

    assert "the last re-read failed" in (report.results[0].error or "")
    with pytest.raises(ApplyFailed) as err:
        report.raise_if_failed()
    assert err.value.exit_code == ExitCode.FAILED


def test_a_failed_first_run_wins_over_a_waiting_reconnect() -> None:
    from pinmigrate.apply.results import ApplyReport, RunCheck

    waiting = ActionResult(
        "reconnect_account:prod:a",
        "reconnect_account",
        "prod",
        "a",
        status="failed",
        error="not reconnected",
        waits_for="'A' (prod, a)",
    )
    done = ActionResult("enable_flow:prod:N2", "enable_flow", "prod", "N2", status="done")
    report = ApplyReport("run", [waiting, done], runs=[RunCheck("N2", "prod", "F", "failed")])
    with pytest.raises(ApplyFailed) as err:
        report.raise_if_failed()
    assert err.value.exit_code == ExitCode.FAILED


# --- verified cutover: a legacy flow goes off only after its twin's first run succeeded -------


def run_gated(
    adobe: FakeAdobe,
    settings: Settings,
    actions: list[Action],
    *,
    wait_runs: bool = True,
    timeout: float = 60,
    clock: FakeTime | None = None,
    progress: Any = None,
) -> tuple[Any, Journal]:
    """Apply ``actions`` on a fake clock (and a wall clock that follows it)."""
    clock = clock or FakeTime()
    journal = Journal(settings.state_dir, new_run_id())
    report = apply_plan(
        make_plan(actions),
        adobe=adobe,  # type: ignore[arg-type]
        settings=settings,
        logins=FakeGrants(marketer()),
        journal=journal,
        concurrency=4,
        now=lambda: NOW + timedelta(seconds=clock.now),
        clock=clock.clock,
        sleep=clock.sleep,
        progress=progress,
        wait_runs=wait_runs,
        run_timeout=timeout,
    )
    journal.close()
    return report, journal


def failed_run(run_id: str, flow_id: str, created: datetime) -> dict:
    raw = _run(run_id, "failed", created)
    raw["flowId"] = flow_id
    raw["metrics"]["statusSummary"]["errors"] = [
        {"code": "CONNECTOR-2001-500", "message": "Pinterest refused the audience upload"}
    ]
    return raw


def switched(adobe: FakeAdobe, flow_id: str) -> bool:
    """Was any write about ``flow_id`` sent?"""
    return any(f"/{flow_id}/" in path for _, path, _ in adobe.writes())


def journal_events(settings: Settings, journal: Journal) -> list[dict]:
    return read_run(settings.state_dir, journal.run_id).records


def test_a_failed_first_run_keeps_its_legacy_flow_on_and_the_others_go_off(
    settings: Settings,
) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    pair(adobe, "prod", 2)
    adobe.runs_by_flow["N1"] = [[], [_run("r1", "processing", NOW)], [_run("r1", "success", NOW)]]
    adobe.runs_by_flow["N2"] = [[failed_run("r2", "N2", NOW)]]
    actions = [*full_pair_actions("prod", 1), *full_pair_actions("prod", 2)]

    report, _ = run_gated(adobe, settings, actions)

    by_id = {r.action_id: r for r in report.results}
    assert by_id["disable_flow:prod:L1"].status == "done"
    assert adobe.obj("prod", "flows", "L1")["state"] == "disabled"
    skipped = by_id["disable_flow:prod:L2"]
    assert skipped.status == "skipped"
    assert skipped.error == (
        "not attempted: its twin's first run r2 failed: CONNECTOR-2001-500: Pinterest refused "
        "the audience upload; the legacy flow stays on"
    )
    assert adobe.obj("prod", "flows", "L2")["state"] == "enabled"
    assert switched(adobe, "L1") and not switched(adobe, "L2")  # never even sent
    runs = {r.flow_id: r for r in report.runs}
    assert (runs["N1"].status, runs["N2"].status) == ("success", "failed")
    assert runs["N2"].errors == [
        {"code": "CONNECTOR-2001-500", "message": "Pinterest refused the audience upload"}
    ]
    assert runs["N2"].kept_on == ["L2"]
    payload = report.to_json()
    [failed] = [r for r in payload["runs"] if r["status"] == "failed"]
    assert failed["errors"][0]["code"] == "CONNECTOR-2001-500"
    assert failed["legacy_flows_kept_on"] == ["L2"]
    with pytest.raises(ApplyFailed) as caught:
        report.raise_if_failed()
    line = caught.value.line()
    assert "the first run failed for 1 new flow: 'flow N2';" in line
    assert "its legacy flow stays on" in line
    assert "`pinmigrate apply` again (it resumes)" in line
    assert "`pinmigrate rollback`" in line


def test_every_switch_off_comes_after_its_twins_first_run_was_seen_ended(
    settings: Settings,
) -> None:
    adobe = FakeAdobe()
    for n in (1, 2, 3):
        pair(adobe, "prod", n)
        adobe.runs_by_flow[f"N{n}"] = [[], [_run(f"r{n}", "success", NOW)]]
    actions = [a for n in (1, 2, 3) for a in full_pair_actions("prod", n)]

    report, journal = run_gated(adobe, settings, actions)

    assert report.ok and [r.status for r in report.runs] == ["success"] * 3
    records = journal_events(settings, journal)
    seen = {r["target_id"]: i for i, r in enumerate(records) if r["event"] == "first_run"}
    disables = [
        (i, r["target_id"])
        for i, r in enumerate(records)
        if r["event"] == "before" and r["kind"] == "disable_flow"
    ]
    assert len(seen) == 3 and len(disables) == 3
    for index, legacy in disables:
        assert seen[legacy.replace("L", "N")] < index


def test_without_wait_runs_the_legacy_flows_go_off_before_any_run_is_read(
    settings: Settings,
) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    adobe.runs_by_flow["N1"] = [[failed_run("r1", "N1", NOW)]]
    report, _ = run_gated(adobe, settings, full_pair_actions("prod", 1), wait_runs=False)
    assert report.ok and report.runs == []
    assert adobe.obj("prod", "flows", "L1")["state"] == "disabled"
    assert ("GET", "/runs", "N1") not in adobe.log


def test_a_plan_made_with_wait_runs_waits_even_without_the_flag(settings: Settings) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    adobe.runs_by_flow["N1"] = [[failed_run("r1", "N1", NOW)]]
    actions = full_pair_actions("prod", 1)
    gated = actions[-1]
    assert isinstance(gated, DisableFlow)
    actions[-1] = gated.model_copy(
        update={"details": gated.details.model_copy(update={"after": "first_run_succeeds"})}
    )

    report, _ = run_gated(adobe, settings, actions, wait_runs=False)

    assert adobe.obj("prod", "flows", "L1")["state"] == "enabled"
    assert report.results[-1].status == "skipped"
    assert [r.status for r in report.runs] == ["failed"]


def test_a_disable_whose_twins_run_does_not_end_in_time_is_skipped(settings: Settings) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    adobe.runs_by_flow["N1"] = [[], [_run("r1", "processing", NOW)]]
    clock = FakeTime()

    report, _ = run_gated(adobe, settings, full_pair_actions("prod", 1), timeout=120, clock=clock)

    assert adobe.obj("prod", "flows", "L1")["state"] == "enabled"
    result = report.results[-1]
    assert result.status == "skipped"
    assert result.error == (
        "not attempted: its twin's first run had not ended: run r1 was still processing 120s "
        "after enabling; the legacy flow stays on"
    )
    assert 120 <= clock.now <= 121  # the wait ran to its timeout, no further
    with pytest.raises(ApplyFailed) as caught:
        report.raise_if_failed()
    assert "had not ended when the wait ran out" in caught.value.line()
    assert "wait longer with --run-timeout" in caught.value.line()


def test_a_twin_already_on_is_judged_by_its_latest_run(settings: Settings) -> None:
    # Enabled before this apply (by hand, or by an earlier run whose switch-offs were held):
    # its latest run tells, whatever its age. A latest run that failed before this apply is
    # waited past, since the operator may have fixed its cause: a newer run decides, else
    # the old failure stands at the timeout.
    adobe = FakeAdobe()
    for n in (1, 2, 3):
        pair(adobe, "prod", n)
        adobe.obj("prod", "flows", f"N{n}")["state"] = "enabled"
    old = NOW - timedelta(days=1)
    early = failed_run("r0", "N1", old - timedelta(hours=1))
    adobe.runs_by_flow["N1"] = [[early, _run("r1", "success", old)]]
    adobe.runs_by_flow["N2"] = [[failed_run("r2", "N2", old)]]
    fixed = _run("r3b", "success", NOW + timedelta(seconds=15))
    adobe.runs_by_flow["N3"] = [[failed_run("r3", "N3", old)], [failed_run("r3", "N3", old), fixed]]
    actions = [a for n in (1, 2, 3) for a in full_pair_actions("prod", n)]
    clock = FakeTime()

    report, _ = run_gated(adobe, settings, actions, clock=clock, timeout=60)

    statuses = {r.action_id: r.status for r in report.results}
    assert statuses["enable_flow:prod:N1"] == "already_done"
    assert statuses["disable_flow:prod:L1"] == "done"
    assert statuses["disable_flow:prod:L2"] == "skipped"
    assert statuses["disable_flow:prod:L3"] == "done"
    checks = {r.flow_id: r for r in report.runs}
    assert [(f, c.status, c.run_id) for f, c in checks.items()] == [
        ("N1", "success", "r1"),
        ("N2", "failed", "r2"),
        ("N3", "success", "r3b"),
    ]
    assert checks["N2"].detail.endswith("(before this apply; no newer run in 60s)")
    assert checks["N2"].errors[0]["code"] == "CONNECTOR-2001-500"
    assert 60 <= clock.now <= 61


def test_the_wait_for_first_runs_shows_how_far_it_got(settings: Settings) -> None:
    class Lines:
        def __init__(self) -> None:
            self.statuses: list[str] = []

        def start(self, total: int) -> None: ...

        def advance(self, result: ActionResult) -> None: ...

        def finish(self) -> None: ...

        def status(self, text: str) -> None:
            self.statuses.append(text)

    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    pair(adobe, "prod", 2)
    adobe.runs_by_flow["N1"] = [[failed_run("r1", "N1", NOW)]]
    adobe.runs_by_flow["N2"] = [[], [], [_run("r2", "success", NOW)]]
    lines = Lines()
    run_gated(
        adobe,
        settings,
        [*full_pair_actions("prod", 1), *full_pair_actions("prod", 2)],
        timeout=300,
        progress=lines,
    )
    head = "waiting for the first runs of 2 new flows"
    waits = [s for s in lines.statuses if s.startswith(head)]
    assert waits[:2] == [
        f"{head} (5:00 left): 0 succeeded, 0 failed, 2 running",  # shown while reading
        f"{head} (5:00 left): 0 succeeded, 1 failed, 1 running",
    ]
    assert "4:59 left" in waits[2]  # counted down between reads


def test_ctrl_c_during_the_wait_for_runs_switches_nothing_off(settings: Settings) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    adobe.runs_by_flow["N1"] = [[]]

    class Interrupted(FakeTime):
        def sleep(self, seconds: float) -> None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_gated(adobe, settings, full_pair_actions("prod", 1), clock=Interrupted())
    assert adobe.obj("prod", "flows", "N1")["state"] == "enabled"
    assert adobe.obj("prod", "flows", "L1")["state"] == "enabled"


def test_switch_offs_released_by_a_reconnect_in_adobe_also_wait_for_first_runs(
    person_settings: Settings,
) -> None:
    adobe = FakeAdobe()
    actions = two_pairs_waiting_for_accounts(adobe)
    adobe.runs_by_flow["N1"] = [[failed_run("r1", "N1", NOW + timedelta(seconds=10))]]
    adobe.runs_by_flow["N2"] = [[_run("r2", "success", NOW + timedelta(seconds=30))]]
    clock = RenewAt(adobe, {10.0: ["acct-N1"], 30.0: ["acct-N2"]})

    report, _ = run_waiting(
        adobe, person_settings, actions, clock, timeout=600, wait_runs=True, moving_now=True
    )

    statuses = {r.action_id: r.status for r in report.results}
    assert statuses["enable_flow:prod:N1"] == statuses["enable_flow:prod:N2"] == "done"
    assert statuses["disable_flow:prod:L1"] == "skipped"
    assert statuses["disable_flow:prod:L2"] == "done"
    assert adobe.obj("prod", "flows", "L1")["state"] == "enabled"
    assert adobe.obj("prod", "flows", "L2")["state"] == "disabled"


def test_rounds_of_run_reads_start_an_interval_apart_however_long_a_round_takes(
    settings: Settings,
) -> None:
    clock = FakeTime()
    started: list[float] = []

    class Slow(FakeAdobe):
        def runs(self, flow_id: str, *, sandbox: str) -> list[dict]:
            started.append(clock.now)
            clock.now += 4  # 2,000 flows at some latency: a round takes seconds
            return super().runs(flow_id, sandbox=sandbox)

    adobe = Slow()
    pair(adobe, "prod", 1)
    adobe.runs_by_flow["N1"] = [[], [], [_run("r1", "success", NOW)]]
    report, _ = run_gated(adobe, settings, full_pair_actions("prod", 1), clock=clock)
    assert report.ok
    assert started == [0, 10, 20]


def test_ctrl_c_during_a_round_of_run_reads_drops_the_reads_not_yet_sent() -> None:
    from pinmigrate.apply.runs import RunWatch, Watched

    class Interrupted(FakeAdobe):
        def runs(self, flow_id: str, *, sandbox: str) -> list[dict]:
            super().runs(flow_id, sandbox=sandbox)
            raise KeyboardInterrupt  # what the main thread meets as Ctrl-C

    adobe = Interrupted()
    flows = [Watched(f"N{n}", "prod", f"Flow {n}", NOW) for n in range(50)]
    watch = RunWatch(adobe, flows, timeout=60, clock=FakeTime().clock, workers=1)  # type: ignore[arg-type]
    with pytest.raises(KeyboardInterrupt):
        watch.poll()
    time.sleep(0.2)  # a worker still running would go on reading
    assert len(adobe.reads()) < 5


def test_a_wait_for_first_runs_never_holds_up_the_wait_for_a_person(
    person_settings: Settings,
) -> None:
    # Pair 2 needs nothing from the person, but its twin's run only ends at 100 s; pair 1's
    # account is reconnected at 30 s, within the 60 s reconnect wait. Waiting for pair 2's
    # run first would miss that.
    adobe = FakeAdobe()
    actions = one_waiting_pair_and_one_free(adobe)
    adobe.runs_by_flow["N1"] = [[_run("r1", "success", NOW + timedelta(seconds=30))]]
    late = _run("r2", "processing", NOW)
    adobe.runs_by_flow["N2"] = [[late]] * 12 + [[_run("r2", "success", NOW)]]
    clock = RenewAt(adobe, {30.0: ["acct-N1"]})
    written_at: dict[str, float] = {}
    adobe.before_write = lambda _method, target: written_at.setdefault(target, clock.now)

    report, _ = run_waiting(
        adobe, person_settings, actions, clock, timeout=60, wait_runs=True, moving_now=True
    )

    statuses = {r.action_id: r.status for r in report.results}
    assert statuses["reconnect_account:prod:acct-N1"] == "done"
    assert written_at["N1/action?op=enable"] < 45  # noticed within a re-read or two
    assert statuses["disable_flow:prod:L1"] == "done"
    assert statuses["disable_flow:prod:L2"] == "skipped"  # 60 s of --run-timeout in run_waiting
    assert adobe.obj("prod", "flows", "L2")["state"] == "enabled"


@pytest.mark.parametrize(("state", "switched_off"), [("success", True), ("failed", False)])
def test_a_twin_on_before_with_no_run_listed_is_judged_by_its_last_run_details(
    settings: Settings, state: str, switched_off: bool
) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    twin = adobe.obj("prod", "flows", "N1")
    twin["state"] = "enabled"
    started = int((NOW - timedelta(hours=2)).timestamp() * 1000)
    twin["lastRunDetails"] = {"id": "r-last", "state": state, "startedAtUTC": started}
    adobe.runs_by_flow["N1"] = [[]]  # GET /runs lists none
    actions = [disable("prod", "L1", "N1", twin_state="enabled")]

    report, _ = run_gated(adobe, settings, actions, timeout=30)

    assert [(r.status, r.run_id) for r in report.runs] == [(state, "r-last")]
    assert (adobe.obj("prod", "flows", "L1")["state"] == "disabled") is switched_off


def test_a_switch_off_already_done_reaches_the_progress_while_a_person_reconnects(
    person_settings: Settings,
) -> None:
    # Pair 2 was migrated by hand after the plan (twin on, legacy off): its switch-off is
    # already done. With --wait-runs and a person reconnecting pair 1's account, it must
    # still be counted, or the count stops short of its total.
    adobe = FakeAdobe()
    actions = one_waiting_pair_and_one_free(adobe)
    adobe.obj("prod", "flows", "N2")["state"] = "enabled"
    adobe.obj("prod", "flows", "L2")["state"] = "disabled"
    adobe.runs_by_flow["N1"] = [[_run("r1", "success", NOW + timedelta(seconds=10))]]
    adobe.runs_by_flow["N2"] = [[_run("r2", "success", NOW)]]
    clock = RenewAt(adobe, {5.0: ["acct-N1"]})
    progress = Recorder()

    report, _ = run_waiting(
        adobe,
        person_settings,
        actions,
        clock,
        timeout=60,
        progress=progress,
        wait_runs=True,
        moving_now=True,
    )

    assert statuses(report)["disable_flow:prod:L2"] == "already_done"
    assert sorted(progress.advanced) == sorted(a.id for a in actions)


def test_a_token_in_a_first_runs_error_is_masked_in_the_report(settings: Settings) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 1)
    raw = failed_run("r1", "N1", NOW)
    raw["metrics"]["statusSummary"]["errors"][0]["message"] = "upload refused: Bearer eyJ0.a1.b2"
    adobe.runs_by_flow["N1"] = [[raw]]

    report, _ = run_gated(adobe, settings, full_pair_actions("prod", 1), timeout=30)

    assert report.runs[0].status == "failed"
    shown = json.dumps(report.to_json())
    assert "upload refused" in shown
    assert "eyJ0.a1.b2" not in shown


def test_a_switch_off_waits_for_a_pending_indirect_dependency(settings: Settings) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 0, legacy_aud=("a1", "a2"))
    actions = full_pair_actions("prod", 0, missing=["a2"])  # add N0 -> enable N0 -> disable L0
    # After the plan, the operator switched N0 on by hand: its enable is already done, its
    # audiences are still missing, and the switch-off waits for them through the enable.
    adobe.obj("prod", "flows", "N0")["state"] = "enabled"
    report, _ = run(adobe, settings, actions)
    assert statuses(report) == {
        "add_audiences:prod:N0": "done",
        "enable_flow:prod:N0": "already_done",
        "disable_flow:prod:L0": "done",
    }


def test_a_twin_deleted_during_the_run_keeps_its_legacy_flow_on(settings: Settings) -> None:
    adobe = FakeAdobe()
    pair(adobe, "prod", 0)
    adobe.obj("prod", "flows", "N0")["state"] = "enabled"  # the twin is already on
    adobe.add("prod", "connections", account("A0", NOW + timedelta(days=2)))
    fix = reconnect("prod", "A0")
    off = disable("prod", "L0", "N0", twin_state="enabled", deps=[fix.id])

    def delete_twin(method: str, target: str) -> None:
        if target == "A0":  # while the account is reconnected, someone deletes the twin
            del adobe.objects[("prod", "flows")]["N0"]

    adobe.before_write = delete_twin
    report, _ = run(adobe, settings, [fix, off], logins=FakeGrants(marketer()))
    assert ("POST", "/flows/L0/action?op=disable", "") not in adobe.writes()
    assert statuses(report)["disable_flow:prod:L0"] == "skipped"


def test_a_write_never_sent_closes_its_journal_attempt_once(settings: Settings) -> None:
    from e2e_support import open_writes

    adobe = FakeAdobe()
    pair(adobe, "prod", 0)

    def refuse(method: str, target: str) -> None:
        # As a throttle stopped by Ctrl-C refuses a write that waited for its turn.
        raise NotSentError("stopped before it was sent (Ctrl-C)", service="adobe")

    adobe.before_write = refuse
    report, journal = run(adobe, settings, [enable("prod", "N0", "L0")])
    assert statuses(report) == {"enable_flow:prod:N0": "failed"}
    records = read_run(settings.state_dir, journal.run_id).records
    errors = [r["error"] for r in records if r["event"] == "error"]
    assert errors == ["not sent: stopped before it was sent (Ctrl-C)"]
    assert open_writes(records) == []
