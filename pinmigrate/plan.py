"""The plan object and file (schema_version 1): models, fingerprint, atomic save, strict load.

Action semantics (typed in :mod:`pinmigrate.actions`; the planner writes them, apply checks
them):

``reconnect_account`` (target: new-card account id)
    precondition ``{"expires_at": ISO|None}``; details ``{"advertiser_ids": [...],
    "login": USER_ID|None, "needs_login": bool, "flows": [FLOW_ID...], "via": "adobe"|"api",
    "expiry_rule": RULE, "preflight": "ok"|"missing_access"|"not_checked",
    "preflight_user": "NAME (ID)", "missing_access": [AD_ACCOUNT...]}`` (the last five only
    when known: plans saved before them load unchanged).
    Goal: the account's credentials expire later than the reconnect margin. With ``via``
    "adobe" a person reconnects it in Adobe's UI and apply waits for the renewal.
``add_audiences`` (target: new flow id)
    precondition ``{"legacy_flow_id", "legacy_state": "enabled", "missing": [AUDIENCE_ID...]}``;
    details ``{"audiences": [{"id", "name", "description"}], "legacy_flow_id"}``.
    Goal: every audience id in details is on the target flow.
``enable_flow`` (target: new flow id)
    precondition ``{"state": "disabled", "legacy_flow_id", "legacy_state": "enabled"}``.
    Goal: the target flow is enabled.
``disable_flow`` (target: legacy flow id)
    precondition ``{"state": "enabled", "twin_flow_id", "twin_state": "enabled"|"disabled"}``.
    Goal: the target flow is disabled.

Action ids are ``KIND:SANDBOX:TARGET_ID``: stable across replans, so a rerun resumes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pinmigrate.actions import (
    KIND_ORDER,
    Action,
    ActionKind,
    AddAudiences,
    DisableFlow,
    EnableFlow,
    action_id,
)
from pinmigrate.errors import PlanFileError
from pinmigrate.files import missing_directory, write_atomic
from pinmigrate.ids import id_problem
from pinmigrate.plankey import SCHEME

if TYPE_CHECKING:
    from pinmigrate.plankey import PlanKey

SCHEMA_VERSION: Literal[1] = 1
PLAN_KIND: Literal["pinmigrate.plan"] = "pinmigrate.plan"

__all__ = [
    "KIND_ORDER",
    "Action",
    "ActionKind",
    "Blocker",
    "CardRef",
    "Orphan",
    "Pair",
    "Plan",
    "SandboxCards",
    "action_id",
    "load_plan",
    "save_plan",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CardRef(_Model):
    """A connection spec found for a card; no name when the id came from a setting."""

    id: str
    name: str | None = None


class SandboxCards(_Model):
    """Which connection spec served as each Pinterest card in one sandbox."""

    sandbox: str
    #: None: the sandbox has no legacy card, so nothing to migrate (the warnings say so).
    legacy: CardRef | None
    new: CardRef


class Pair(_Model):
    sandbox: str
    legacy_flow_id: str
    legacy_flow_name: str
    new_flow_id: str | None
    new_flow_name: str | None = None
    advertiser_id: str | None = None
    legacy_state: str
    new_state: str | None = None
    #: "migrate" (actions planned), "migrated", "legacy_disabled", "blocked", "excluded"
    status: str
    missing_audiences: list[str] = Field(default_factory=list)
    note: str = ""


class Orphan(_Model):
    sandbox: str
    flow_id: str
    flow_name: str
    advertiser_id: str | None = None
    state: str = ""
    reason: str = ""


class Blocker(_Model):
    sandbox: str
    kind: str  # "ambiguous" | ...
    flow_id: str
    flow_name: str = ""
    candidates: list[str] = Field(default_factory=list)
    message: str


def _is_empty(value: list[Any]) -> bool:
    return not value


class Plan(_Model):
    schema_version: Literal[1] = SCHEMA_VERSION
    kind: Literal["pinmigrate.plan"] = PLAN_KIND
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    org_id: str
    sandboxes: list[str]
    fingerprint: str = ""
    #: Plans saved before the cards were recorded have no "cards": they must read back (and
    #: fingerprint) exactly as written. Left out by pydantic itself: a Python serializer
    #: around the plan would make its JSON dump go through Python objects first.
    cards: list[SandboxCards] = Field(default_factory=list, exclude_if=_is_empty)
    summary: dict[str, int] = Field(default_factory=dict)
    actions: list[Action] = Field(default_factory=list)
    pairs: list[Pair] = Field(default_factory=list)
    orphans: list[Orphan] = Field(default_factory=list)
    blockers: list[Blocker] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    def written_fields(self) -> list[str]:
        """The fields the plan file holds, in order (``cards`` only when there are some)."""
        return [name for name in type(self).model_fields if name != "cards" or self.cards]

    @property
    def has_changes(self) -> bool:
        return bool(self.actions)

    def action(self, action_id_: str) -> Action | None:
        return next((a for a in self.actions if a.id == action_id_), None)

    def content(self) -> dict[str, Any]:
        """The canonical content the fingerprint covers: everything but the fingerprint."""
        data = self.model_dump(mode="json")
        data.pop("fingerprint", None)
        return data

    def compute_fingerprint(self) -> str:
        """sha256 of the canonical JSON of :meth:`content` (sorted keys, no spaces)."""
        digest = hashlib.sha256()
        for part in self._canonical_parts():
            digest.update(part.encode("utf-8"))
        return "sha256:" + digest.hexdigest()

    def _canonical_parts(self) -> Iterator[str]:
        """``json.dumps(self.content(), sort_keys=True, separators=(",", ":"))``, in pieces.

        JSON encoding composes, so lists are dumped a slice at a time: a plan of tens of
        thousands of actions is fingerprinted without holding its whole dump and text in
        memory, and without paying two calls' overhead per item (a third of the cost).
        """
        from pydantic_core import to_jsonable_python

        names = sorted(name for name in self.written_fields() if name != "fingerprint")
        yield "{"
        for index, name in enumerate(names):
            yield ("," if index else "") + _canonical(name) + ":"
            value = getattr(self, name)
            if isinstance(value, list):
                yield "["
                for start in range(0, len(value), _SLICE):
                    # "[a,b]" without its brackets is "a,b": slices join with a comma.
                    text = _canonical(to_jsonable_python(value[start : start + _SLICE]))
                    yield ("," if start else "") + text[1:-1]
                yield "]"
            else:
                yield _canonical(self.model_dump(mode="json", include={name})[name])
        yield "}"

    def sealed(self, key: PlanKey | None = None) -> Plan:
        """This plan with its summary and fingerprint filled in: sealed with ``key``
        (``hmac-sha256:KEY_ID:MAC``, what plan files carry), else a plain sha256 checksum
        (plans in memory: anyone can recompute it, so ``apply`` trusts no file sealed so)."""
        summary = summarize(self.actions, len(self.blockers), len(self.orphans))
        plan = self.model_copy(update={"summary": summary, "fingerprint": ""})
        seal = key.seal(plan._canonical_parts()) if key is not None else plan.compute_fingerprint()
        return plan.model_copy(update={"fingerprint": seal})

    def to_json(self) -> str:
        # pydantic's serializer writes the same text as json.dumps(indent=2, ensure_ascii=False),
        # many times faster (json's indenting encoder is pure Python): plans can be large.
        return self.model_dump_json(indent=2) + "\n"


#: List items dumped per call when fingerprinting.
_SLICE = 1000


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def summarize(actions: list[Action], blocked: int, orphans: int) -> dict[str, int]:
    summary: dict[str, int] = {kind: 0 for kind in KIND_ORDER}
    for action in actions:
        summary[action.kind] += 1
    summary["blocked"] = blocked
    summary["orphans"] = orphans
    return summary


def json_parts(plan: Plan) -> Iterator[bytes]:
    """:meth:`Plan.to_json` as UTF-8, in pieces: the long lists go item by item.

    The same bytes as the whole document (indenting composes: a nested value's lines are
    its own lines, shifted right), without ever holding tens of megabytes of text at once.
    """
    from pydantic_core import to_json

    names = plan.written_fields()
    yield b"{\n"
    for index, name in enumerate(names):
        value = getattr(plan, name)
        end = b",\n" if index < len(names) - 1 else b"\n"
        head = b"  " + to_json(name) + b": "
        if isinstance(value, list) and value:
            yield head + b"[\n"
            last = len(value) - 1
            for position, item in enumerate(value):
                text = to_json(item, indent=2).replace(b"\n", b"\n    ")
                yield b"    " + text + (b",\n" if position < last else b"\n")
            yield b"  ]" + end
        else:
            yield head + to_json(value, indent=2).replace(b"\n", b"\n  ") + end
    yield b"}\n"


def save_plan(plan: Plan, path: Path) -> None:
    """Write the plan file (0600), atomically, into a directory that already exists."""
    check_plan_path(path)
    try:
        # 0600: a plan names every flow and account of the org.
        # Streamed: the text of a large plan (34 MB at 20,000 pairs) is never held whole.
        write_atomic(Path(path), json_parts(plan), mode=0o600)
    except OSError as exc:
        raise PlanFileError(f"cannot write plan file {path}: {exc.strerror}") from None


def check_plan_path(path: Path) -> None:
    """Refuse a plan file whose directory does not exist (exit 64), before any work."""
    problem = missing_directory(path)
    if problem:
        raise PlanFileError(
            f"cannot save the plan to {path}: {problem}", hint="create it first or pick another"
        )


def load_plan(
    path: Path,
    *,
    org_id: str | None = None,
    key: PlanKey | None = None,
    review: bool = False,
) -> Plan:
    """Read a plan file strictly: kind, version and seal must all hold (else exit 64).

    A plan is carried out only when sealed with ``key``, this state dir's plan key
    (:mod:`pinmigrate.plankey`). With ``review`` (``show``), a plan made with another state
    dir's key, or with a plain sha256 checksum (plans saved before plans were sealed), reads
    too, so that a person can review it and accept it (``show --accept``); :func:`seal_of`
    says which it is. A plan whose seal or checksum does not match is refused either way.
    """
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanFileError(f"plan file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanFileError(f"cannot read plan file {path}: {exc}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise PlanFileError(
            f"plan file {path} is not valid JSON (truncated?): {exc.msg} at line {exc.lineno}"
        ) from None
    except RecursionError:
        raise PlanFileError(
            f"plan file {path} is not a pinmigrate plan (nested too deeply)"
        ) from None
    if not isinstance(data, dict):
        raise PlanFileError(f"plan file {path} is not a pinmigrate plan (not a JSON object)")
    if data.get("kind") != PLAN_KIND:
        raise PlanFileError(
            f"plan file {path} is not a pinmigrate plan (kind is {data.get('kind')!r})"
        )
    version = data.get("schema_version")
    # type(): true equals 1 in Python, and Literal[1] takes it, but no plan says true.
    if type(version) is not int or version != SCHEMA_VERSION:
        raise PlanFileError(
            f"plan file {path} has schema_version {version!r}; "
            f"this pinmigrate reads version {SCHEMA_VERSION}",
            hint="make a new plan with `pinmigrate plan --out FILE`",
        )
    try:
        # Strict: a value is read as the type pinmigrate writes, or refused (no 1 for true),
        # so that the typed plan reads back as the file only if it equals it (below).
        plan = Plan.model_validate(data, strict=True)
    except ValidationError as exc:
        where, message = _first_error(exc)
        raise PlanFileError(f"plan file {path} is malformed at {where}: {message}") from None
    # The seal covers the file as written; the typed plan must read back the same,
    # or the file says something other than what will be carried out.
    body = _canonical({k: v for k, v in data.items() if k != "fingerprint"})
    checksum = "sha256:" + hashlib.sha256(body.encode("utf-8")).hexdigest()
    _check_seal(path, plan.fingerprint, body, checksum, key, review)
    # Equal as decoded JSON, every value of the type it was written as (strict reading):
    # the same canonical text, so the same fingerprint, without encoding the plan again.
    if plan.model_dump(mode="json") != data:
        raise PlanFileError(
            f"plan file {path} is not a plan pinmigrate made: {_unlike(plan, data)} is not "
            "written as pinmigrate writes it",
            hint="make a new plan with `pinmigrate plan --out FILE`",
        )
    if org_id is not None and plan.org_id != org_id:
        raise PlanFileError(
            f"plan file {path} was made for org {plan.org_id}, not the configured {org_id}"
        )
    problem = structure_problem(plan)
    if problem:
        raise PlanFileError(
            f"plan file {path} is not a plan pinmigrate made: {problem}",
            hint="make a new plan with `pinmigrate plan --out FILE`",
        )
    return plan


#: What a plan file's fingerprint shows: sealed with this state dir's key, with another
#: state dir's key, or with a plain checksum that anyone can recompute.
SealOrigin = Literal["here", "elsewhere", "checksum"]


def seal_of(plan: Plan, key: PlanKey | None) -> SealOrigin:
    """Where a plan that :func:`load_plan` read was sealed (its seal already checked)."""
    if plan.fingerprint.startswith("sha256:"):
        return "checksum"
    return "here" if key is not None and _key_id(plan.fingerprint) == key.id else "elsewhere"


def seal_problem(path: Path, fingerprint: str, key: PlanKey | None) -> str:
    """Why ``apply`` refuses a plan sealed elsewhere or with a checksum, in one sentence."""
    if fingerprint.startswith("sha256:"):
        return (
            f"plan file {path} carries a plain sha256 checksum, not this state dir's seal: "
            "anyone who edits a plan can recompute one (a plan saved before plans were sealed, "
            "or edited and re-sealed)"
        )
    here = f"is {key.id} ({key.path})" if key is not None else "is not made yet"
    return (
        f"plan file {path} was made elsewhere: it is sealed with plan key "
        f"{_key_id(fingerprint)} of another state dir, and the plan key here {here}"
    )


def _key_id(fingerprint: str) -> str:
    """The key id of ``hmac-sha256:KEY_ID:MAC`` ("" when it is not one)."""
    parts = fingerprint.split(":")
    return parts[1] if len(parts) == 3 and parts[0] == SCHEME else ""


def _check_seal(
    path: Path, fingerprint: str, body: str, checksum: str, key: PlanKey | None, review: bool
) -> None:
    """Refuse a plan whose seal does not match it, or (unless ``review``) one not sealed
    with ``key``; every refusal says how to go on."""
    accept = f"review it with `pinmigrate show {path} --accept`"
    edited = PlanFileError(
        f"plan file {path} does not match its fingerprint (edited by hand?)",
        hint="make a new plan with `pinmigrate plan --out FILE`",
    )
    if fingerprint.startswith("sha256:"):
        if fingerprint != checksum:
            raise edited
        if not review:
            raise PlanFileError(
                seal_problem(path, fingerprint, key),
                hint=f"{accept} to seal it with this state dir's key if you trust it, or make "
                "a new plan with `pinmigrate plan --out FILE`",
            )
        return
    key_id = _key_id(fingerprint)
    if not key_id:
        raise PlanFileError(
            f"plan file {path} has a fingerprint pinmigrate does not know "
            f"({fingerprint.split(':')[0][:20]!r}; expected {SCHEME})",
            hint="make a new plan with `pinmigrate plan --out FILE`",
        )
    if key is not None and key_id == key.id:
        if not key.verifies(fingerprint, [body]):
            raise edited
        return
    if not review:
        raise PlanFileError(
            seal_problem(path, fingerprint, key),
            hint=f"{accept} to seal it here if you trust it, or make a new plan here with "
            "`pinmigrate plan --out FILE`",
        )


def _unlike(plan: Plan, data: dict[str, Any]) -> str:
    """The first part of a plan file that its typed reading would write differently."""
    dumped = plan.model_dump(mode="json")
    for key in sorted(set(dumped) | set(data)):
        ours, theirs = dumped.get(key), data.get(key)
        if ours == theirs or key == "fingerprint":
            continue
        if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
            index = next(i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b)
            return f"{key}.{index}"
        return key
    return "the file"


def _first_error(exc: ValidationError) -> tuple[str, str]:
    """Where and what, for the first error; an action's location leaves out its kind tag."""
    err = exc.errors()[0]
    loc = [str(part) for part in err["loc"]]
    if len(loc) > 2 and loc[0] == "actions" and loc[2] in KIND_ORDER:
        del loc[2]
    if err["type"] == "union_tag_invalid":
        tag = (err.get("ctx") or {}).get("tag")
        return ".".join([*loc, "kind"]), f"{tag!r} is not one of {', '.join(KIND_ORDER)}"
    return ".".join(loc), err["msg"]


def structure_problem(plan: Plan) -> str | None:
    """What makes this plan one the planner cannot have made, or None.

    The seal proves the file was not edited after it was sealed, but whoever can read the
    state dir can seal (and a plan from elsewhere may be accepted after review). The types
    already hold every precondition field; what they cannot say is checked here: ids that
    match their action, the pair each flow action belongs to, and dependencies that run in
    the contract's order. A plan without them is refused whole rather than half carried out.
    """
    rank = {kind: index for index, kind in enumerate(KIND_ORDER)}
    by_id: dict[str, Action] = {}
    # Most ids recur (a sandbox in every action, a flow in its twin's actions): each is
    # checked once.
    id_problems: dict[str, str | None] = {}
    for number, action in enumerate(plan.actions):
        where = f"action {number} ({action.id})"
        if action.id in by_id:
            return f"{where} appears twice"
        by_id[action.id] = action
        problem = _id_problem(action, id_problems)
        if problem:
            return f"{where} {problem}"
        if action.id != action_id(action.kind, action.sandbox, action.target_id):
            return f"{where} does not match its kind, sandbox and target_id"
        if action.sandbox not in plan.sandboxes:
            return f"{where} is in sandbox {action.sandbox!r}, not one of the plan's sandboxes"
        problem = _pair_problem(action) or _audiences_problem(action)
        if problem:
            return f"{where} {problem}"
    for action in plan.actions:
        for dep in action.depends_on:
            first = by_id.get(dep)
            if first is None:
                return f"action {action.id} depends on {dep}, which is not in the plan"
            # The contract's order: every dependency is of an earlier kind (so no cycles).
            if rank[first.kind] >= rank[action.kind]:
                return f"action {action.id} depends on {dep}, which does not come before it"
    return None


def _id_problem(action: Action, known: dict[str, str | None]) -> str | None:
    """An id of the action that would go into an address but cannot (``ids.py``), or None.

    ``known``: the answers for ids already checked, added to."""
    parts = (("", action), ("precondition.", action.precondition), ("details.", action.details))
    for where, holder in parts:
        for key in _ids_of(type(holder)):
            value = getattr(holder, key)
            problem = _checked(value, known)
            if problem:
                return f"has {where}{key} {value!r}: {problem}"
    return None


def _checked(value: str | None, known: dict[str, str | None]) -> str | None:
    if value is None:
        return None
    if value not in known:
        known[value] = id_problem(value)
    return known[value]


#: Per model: the fields holding ids that go into addresses, in the order they are checked.
_IDS_OF: dict[type[BaseModel], tuple[str, ...]] = {}


def _ids_of(model: type[BaseModel]) -> tuple[str, ...]:
    """``sandbox`` and ``target_id`` of an action; every ``*_id`` field of its parts."""
    if model not in _IDS_OF:
        names = tuple(name for name in model.model_fields if name.endswith("_id"))
        is_action = "precondition" in model.model_fields
        _IDS_OF[model] = ("sandbox", "target_id") if is_action else names
    return _IDS_OF[model]


def _audiences_problem(action: Action) -> str | None:
    """An ``add_audiences`` whose audiences are not the ones its precondition says the twin
    lacks (the planner writes the same set twice), or None."""
    if not isinstance(action, AddAudiences):
        return None
    adding = {a.id for a in action.details.audiences}
    missing = set(action.precondition.missing)
    if not adding or (missing and adding != missing):
        return "adds other audiences than its precondition says the twin lacks"
    return None


def _pair_problem(action: Action) -> str | None:
    """What is wrong with the pair a flow action of a plan file names, or None."""
    if isinstance(action, EnableFlow | AddAudiences):
        pre = action.precondition
        if pre.legacy_flow_id is None or pre.legacy_state is None:
            return "lacks precondition legacy_flow_id, legacy_state"
        if pre.legacy_flow_id == action.target_id:
            return "names its own target as its legacy flow"
    if isinstance(action, DisableFlow):
        off = action.precondition
        if off.twin_flow_id is None or off.twin_state is None:
            return "lacks precondition twin_flow_id, twin_state"
        if off.legacy_flow_id is not None or off.twin_flow_id == action.target_id:
            return "switches off a flow that is not the legacy flow of its pair"
    return None
