"""Scenarios: the worlds the emulator can be reset to (``demo``, ``empty``, ``scale:N``).

A scenario name may carry options after ``+``, each serving one variant of behaviour that
the real services may show (api-notes.md marks them unconfirmed): ``demo+draft-names``
names the new card "(New) Pinterest", as an earlier draft of Adobe's notice did;
``+no-legacy-card`` has no legacy card at all, nor any of its objects (a later revision of the
notice filters on just "Pinterest": the card may be retired), and ``+renamed-legacy-card``
names the legacy card "(Legacy) Pinterest", which no default lookup takes; the
expiry options (``+expiry-ms``, ``+expiration-date``, ``+expires-in``, ``+no-expiry``; at
most one) choose how every account with credentials carries its expiry, from the start and
after a reconnect. Options combine: ``demo+draft-names+expires-in``.

Next links carry the continuation token alone (``/flows?continuationToken=...``), as Adobe's
only published example does (api-notes.md §3 "Lists and filters"); whether Adobe's token
holds the whole query or only a position is unconfirmed, so both are served. ``+next-position``
(the default, the stricter one): the token holds the position only, and the filters, ``orderby``
and ``limit`` come from each request, so a client that does not send its filters again is
served an unfiltered page. ``+next-query``: the token holds the whole query; a request may
repeat it, but other filters or another ``orderby`` with the token answer 400.

``demo`` is the shared fixture described in docs/architecture.md ("The ``demo`` scenario");
the planner, executor and demo tests rely on its exact content, so change it only together
with that document. Ids are uuid5 of a readable key (see :func:`flow_id` and friends), and
credential expiry dates are relative to the emulator's clock at reset.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pinmigrate.emulator.model import (
    COPY_EPOCH_MS,
    DECOY_SPEC_ID,
    DECOY_SPEC_NAME,
    DRAFT_NEW_SPEC_NAME,
    EXPIRY_SHAPES,
    FLOW_SPEC_ID,
    LEGACY_SPEC_ID,
    LEGACY_SPEC_NAME,
    NEW_SPEC_ID,
    NEW_SPEC_NAME,
    PINTEREST_AUTH_SPEC,
    PROFILE_SELECTORS,
    PROFILE_SOURCE_SPEC_ID,
    RENAMED_LEGACY_SPEC_NAME,
    S3_SPEC_ID,
    S3_SPEC_NAME,
    AdAccount,
    JsonDict,
    PinterestUser,
    World,
    base_fields,
    connection_spec,
    credential_timing,
    emu_id,
    segment,
    spec_ref,
)

SCENARIOS = ("demo", "empty", "scale:N")
#: Options a scenario name may carry after ``+`` (``demo+draft-names``).
#: How a list's next link continues it (at most one; ``next-position`` when neither is given).
NEXT_MODES = {
    "next-position": "continuation tokens carry the position only: filters must be sent again",
    "next-query": "continuation tokens carry the whole query: filters need not be sent again",
}
OPTIONS = {
    "draft-names": 'name the new card "(New) Pinterest", as a draft of the notice did',
    "strict": "refuse enabling an enabled flow or disabling a disabled one (400 1409-400)",
    "no-legacy-card": "no legacy card, and none of its accounts or flows: nothing to migrate",
    "renamed-legacy-card": f"name the legacy card {RENAMED_LEGACY_SPEC_NAME!r}",
    **EXPIRY_SHAPES,
    **NEXT_MODES,
}
DAY = 86400.0
SCALE_MAX = 200_000
SCALE_SANDBOXES = ("prod", "dev", "stage")
#: What the Sandbox Management API lists besides a scenario's own sandboxes (api-notes.md
#: §3b), in every scenario: ``archive`` is inactive, and ``restricted`` is active but not
#: readable with the emulator's credential (its reads answer the gateway's 403027, as a
#: sandbox that does not exist does).
OTHER_SANDBOXES = (("archive", "inactive"), ("restricted", "active"))


def sandbox_listing(sandboxes: Sequence[str]) -> list[JsonDict]:
    """The org's sandboxes as ``GET /sandboxes`` lists them (the fields of Adobe's example in
    AdobeDocs/experience-platform.en help/sandbox/api/sandboxes.md; those beyond ``name``
    and ``state`` are unconfirmed)."""
    every = [(name, "active") for name in sandboxes] + [
        other for other in OTHER_SANDBOXES if other[0] not in sandboxes
    ]
    return [
        {
            "name": name,
            "title": name.title(),
            "state": state,
            "type": "production" if name == "prod" else "development",
            "region": "VA7",
            "isDefault": name == "prod",
        }
        for name, state in every
    ]


#: When the legacy flows were set up (before Adobe's copy to the new card).
LEGACY_EPOCH_MS = 1685577600000  # 2023-06-01T00:00:00Z

CARD_SPECS = {"legacy": LEGACY_SPEC_ID, "new": NEW_SPEC_ID, "s3": S3_SPEC_ID}


def flow_id(sandbox: str, card: str, name: str, n: int = 1) -> str:
    """Id of a scenario flow; ``n`` tells apart twins of the same name."""
    return emu_id(sandbox, "flow", card, name, str(n))


def account_id(sandbox: str, card: str, advertiser_id: str) -> str:
    """Id of the base connection ("account") of a card for one Pinterest ad account."""
    return emu_id(sandbox, "connection", card, advertiser_id)


def target_connection_id(flow: str) -> str:
    return emu_id("targetConnection", flow)


def audience_id(sandbox: str, name: str) -> str:
    return emu_id(sandbox, "audience", name)


def parse_scenario(name: str) -> tuple[str, int]:
    """``("demo", 0)``, ``("empty", 0)`` or ``("scale", N)``; ValueError names the valid forms."""
    text, *options = (name or "").strip().split("+")
    unknown = [option for option in options if option not in OPTIONS]
    if unknown:
        raise ValueError(
            f"unknown scenario option {unknown[0]!r} in {name!r}; options: "
            + ", ".join(f"+{option} ({what})" for option, what in OPTIONS.items())
        )
    shapes = sorted({option for option in options if option in EXPIRY_SHAPES})
    if len(shapes) > 1:
        raise ValueError(
            f"scenario {name!r} names {len(shapes)} expiry options (+{', +'.join(shapes)}); "
            "choose at most one"
        )
    modes = sorted({option for option in options if option in NEXT_MODES})
    if len(modes) > 1:
        raise ValueError(
            f"scenario {name!r} names {len(modes)} next-link options (+{', +'.join(modes)}); "
            "choose at most one"
        )
    if {"no-legacy-card", "renamed-legacy-card"} <= set(options):
        raise ValueError(
            f"scenario {name!r}: +no-legacy-card and +renamed-legacy-card exclude each other"
        )
    if text in ("demo", "empty"):
        return text, 0
    if text.startswith("scale:"):
        try:
            count = int(text.split(":", 1)[1])
        except ValueError:
            count = -1
        if 1 <= count <= SCALE_MAX:
            return "scale", count
        raise ValueError(f"scale:N needs N between 1 and {SCALE_MAX}, got {text!r}")
    raise ValueError(f"unknown scenario {name!r}; choose one of: {', '.join(SCENARIOS)}")


def options_of(name: str) -> frozenset[str]:
    """The ``+option`` suffixes of a scenario name (validated by :func:`parse_scenario`)."""
    parse_scenario(name)
    return frozenset((name or "").strip().split("+")[1:])


def expiry_shape_of(name: str) -> str | None:
    """The expiry option of a scenario name (one of ``EXPIRY_SHAPES``), None for ``expiresAt``."""
    return next((option for option in options_of(name) if option in EXPIRY_SHAPES), None)


def next_mode_of(name: str) -> str:
    """``"query"`` with ``+next-query``, else ``"position"`` (the stricter mode is the default)."""
    return "query" if "next-query" in options_of(name) else "position"


def sandboxes_of(name: str) -> list[str]:
    kind, _ = parse_scenario(name)
    return {"demo": ["prod", "dev"], "empty": ["prod"], "scale": list(SCALE_SANDBOXES)}[kind]


def build(name: str, *, now: float, new_etag: Callable[[], str]) -> World:
    """The world of a scenario at clock time ``now`` (epoch seconds)."""
    kind, count = parse_scenario(name)
    world = World(scenario=name, sandboxes=sandboxes_of(name), expiry_shape=expiry_shape_of(name))
    builder = _Builder(world, now, new_etag)
    # Building 10^5 small dicts triggers the cyclic collector over and over for nothing:
    # none of them can form a cycle.
    collecting = gc.isenabled()
    gc.disable()
    try:
        builder.common()
        if kind == "demo":
            _demo(builder)
        elif kind == "scale":
            _scale(builder, count)
    finally:
        if collecting:
            gc.enable()
    if "no-legacy-card" in options_of(name):
        _without_legacy_card(builder.world)
    return builder.world


def _without_legacy_card(world: World) -> None:
    """Take the legacy card away, with every account, target connection, flow and run of it."""
    del world.connection_specs[LEGACY_SPEC_ID]
    for objects in world.objects.values():
        for kind in ("connections", "targetConnections", "flows"):
            objects[kind] = {
                ident: obj for ident, obj in objects[kind].items() if not _is_legacy(obj)
            }
        objects["runs"] = {
            ident: run
            for ident, run in objects["runs"].items()
            if run["flowId"] in objects["flows"]
        }


def _is_legacy(obj: JsonDict) -> bool:
    spec = obj.get("connectionSpec") or {}
    targets = (obj.get("inheritedAttributes") or {}).get("targetConnections") or [{}]
    return LEGACY_SPEC_ID in (spec.get("id"), (targets[0].get("connectionSpec") or {}).get("id"))


@dataclass(frozen=True)
class _FlowSpec:
    sandbox: str
    card: str
    name: str
    state: str
    account: str
    advertiser: str | None
    audiences: Sequence[JsonDict]
    n: int = 1
    created_ms: int = LEGACY_EPOCH_MS
    description: str = ""
    #: Keep a past run record for an enabled flow (scale skips them: they cost build time).
    with_run: bool = True


class _Builder:
    def __init__(self, world: World, now: float, new_etag: Callable[[], str]) -> None:
        self.world = world
        self.now = now
        self.etag = new_etag
        self.sources: dict[str, JsonDict] = {}
        self.inherited_sources: dict[str, list[JsonDict]] = {}

    # --- common to every scenario --------------------------------------------------------

    def new_card_name(self) -> str:
        draft = "draft-names" in options_of(self.world.scenario)
        return DRAFT_NEW_SPEC_NAME if draft else NEW_SPEC_NAME

    def legacy_card_name(self) -> str:
        renamed = "renamed-legacy-card" in options_of(self.world.scenario)
        return RENAMED_LEGACY_SPEC_NAME if renamed else LEGACY_SPEC_NAME

    def common(self) -> None:
        specs = [
            connection_spec(
                LEGACY_SPEC_ID,
                self.legacy_card_name(),
                category="advertising",
                auth=PINTEREST_AUTH_SPEC,
            ),
            connection_spec(
                NEW_SPEC_ID, self.new_card_name(), category="advertising", auth=PINTEREST_AUTH_SPEC
            ),
            connection_spec(
                DECOY_SPEC_ID, DECOY_SPEC_NAME, category="advertising", auth="Bearer Token"
            ),
            connection_spec(S3_SPEC_ID, S3_SPEC_NAME, category="cloudStorage", auth="Access Key"),
        ]
        self.world.connection_specs = {spec["id"]: spec for spec in specs}
        for sandbox in self.world.sandboxes:
            self.world.ensure_sandbox(sandbox)
            self.profile_source(sandbox)
        self.users(["549755885175", "549755885176", "549755885177", "549755885178"])

    def users(self, marketer_accounts: list[str]) -> None:
        marketer = PinterestUser("1000000001", "emu_marketer", "Emulator Marketing", [])
        analyst = PinterestUser("1000000002", "emu_analyst", "Emulator Analytics", [])
        self.world.users = [marketer, analyst]
        for advertiser in marketer_accounts:
            self.ad_account(advertiser, marketer)
        analyst.ad_account_ids.append("549755885175")

    def ad_account(self, advertiser: str, owner: PinterestUser) -> None:
        self.world.ad_accounts[advertiser] = AdAccount(
            id=advertiser,
            name=f"Emulator ad account {advertiser}",
            owner_id=owner.id,
            owner_username=owner.username,
        )
        owner.ad_account_ids.append(advertiser)

    def profile_source(self, sandbox: str) -> None:
        base_id = emu_id(sandbox, "connection", "profile-source")
        source_id = emu_id(sandbox, "sourceConnection", "profile-source")
        self.world.add(
            sandbox,
            "connections",
            {
                "id": base_id,
                **base_fields(sandbox, LEGACY_EPOCH_MS, self.etag()),
                "name": "Profile Service",
                "description": "",
                "connectionSpec": spec_ref(PROFILE_SOURCE_SPEC_ID),
                "auth": {"specName": "Profile Service", "params": {}},
                "state": "enabled",
            },
        )
        self.sources[sandbox] = self.world.add(
            sandbox,
            "sourceConnections",
            {
                "id": source_id,
                **base_fields(sandbox, LEGACY_EPOCH_MS, self.etag()),
                "name": "Profile Service source",
                "baseConnectionId": base_id,
                "state": "enabled",
                "connectionSpec": spec_ref(PROFILE_SOURCE_SPEC_ID),
                "params": {},
            },
        )
        self.inherited_sources[sandbox] = [
            {
                "id": source_id,
                "connectionSpec": spec_ref(PROFILE_SOURCE_SPEC_ID),
                "baseConnection": {
                    "id": base_id,
                    "connectionSpec": spec_ref(PROFILE_SOURCE_SPEC_ID),
                },
                "typeInfo": {"type": "ProfileFragments", "id": "ups"},
            }
        ]

    # --- object builders -----------------------------------------------------------------

    def account(self, sandbox: str, card: str, advertiser: str, *, expires_in: float | None) -> str:
        """A Pinterest-card account; ``expires_in`` seconds from now, None = no credentials."""
        ident = account_id(sandbox, card, advertiser)
        params: JsonDict = {}
        created = LEGACY_EPOCH_MS if card == "legacy" else COPY_EPOCH_MS
        fields = base_fields(sandbox, created, self.etag())
        if expires_in is not None:
            timing = credential_timing(self.world.expiry_shape, self.now + expires_in, now=self.now)
            params = {
                "accessToken": f"pina_emu_{card}_{advertiser}",
                "refreshToken": f"pinr_emu_{card}_{advertiser}",
                **timing.params,
            }
            if timing.updated_ms is not None:
                fields["updatedAt"] = timing.updated_ms
        self.world.add(
            sandbox,
            "connections",
            {
                "id": ident,
                **fields,
                "name": f"Pinterest - ad account {advertiser}",
                "description": "",
                "connectionSpec": spec_ref(CARD_SPECS[card]),
                "auth": {"specName": PINTEREST_AUTH_SPEC, "params": params},
                "state": "enabled",
            },
        )
        return ident

    def s3_account(self, sandbox: str) -> str:
        ident = emu_id(sandbox, "connection", "s3", "exports")
        self.world.add(
            sandbox,
            "connections",
            {
                "id": ident,
                **base_fields(sandbox, LEGACY_EPOCH_MS, self.etag()),
                "name": "amazon-s3",
                "description": "",
                "connectionSpec": spec_ref(S3_SPEC_ID),
                "auth": {
                    "specName": "Access Key",
                    "params": {
                        "authorizedDate": "2023-05-30",
                        "s3AccessKey": "AKIAEMULATOR0000",
                        "s3SecretKey": "emulator-s3-secret-key",
                    },
                },
                "state": "enabled",
            },
        )
        return ident

    def flow(self, spec: _FlowSpec) -> str:
        sandbox, card = spec.sandbox, spec.card
        ident = flow_id(sandbox, card, spec.name, spec.n)
        dest_spec = CARD_SPECS[card]
        tc_id = target_connection_id(ident)
        params: JsonDict = (
            {"advertiser_id": spec.advertiser}
            if spec.advertiser is not None
            else {"bucketName": "emulator-exports", "path": "nightly", "fileType": "CSV"}
        )
        self.world.add(
            sandbox,
            "targetConnections",
            {
                "id": tc_id,
                **base_fields(sandbox, spec.created_ms, self.etag()),
                "name": f"{spec.name} target",
                "description": "",
                "baseConnectionId": spec.account,
                "state": "enabled",
                "connectionSpec": spec_ref(dest_spec),
                "params": params,
                "inheritedAttributes": {
                    "baseConnection": {"id": spec.account, "connectionSpec": spec_ref(dest_spec)}
                },
            },
        )
        source = self.sources[sandbox]
        created = spec.created_ms
        flow: JsonDict = {
            "id": ident,
            **base_fields(sandbox, created, self.etag()),
            "name": spec.name,
            "description": spec.description or f"{spec.name} ({card} card)",
            "flowSpec": spec_ref(FLOW_SPEC_ID),
            "state": spec.state,
            "sourceConnectionIds": [source["id"]],
            "targetConnectionIds": [tc_id],
            "inheritedAttributes": {
                "properties": {"isDestinationFlow": True},
                "sourceConnections": self.inherited_sources[sandbox],
                "targetConnections": [
                    {
                        "id": tc_id,
                        "connectionSpec": spec_ref(dest_spec),
                        "baseConnection": {
                            "id": spec.account,
                            "connectionSpec": spec_ref(dest_spec),
                        },
                    }
                ],
            },
            "transformations": [
                {
                    "name": "GeneralTransform",
                    "params": {
                        "profileSelectors": PROFILE_SELECTORS,
                        "segmentSelectors": {"selectors": list(spec.audiences)},
                    },
                }
            ],
            "runs": f"/runs?property=flowId=={ident}",
            "lastOperation": {
                "started": created,
                "updated": created,
                "percentCompleted": 100,
                "status": {"value": "completed", "properties": None, "errors": []},
                "ops": [],
                "operation": "create",
            },
        }
        if card == "s3":
            flow["scheduleParams"] = {
                "interval": 1,
                "timeUnit": "day",
                "startTime": created // 1000,
            }
        if spec.state == "enabled":
            run_ms = created + 3_600_000
            run_id = emu_id(sandbox, "run", ident, "1")
            flow["lastRunDetails"] = {
                "id": run_id,
                "state": "success",
                "startedAtUTC": run_ms,
                "completedAtUTC": run_ms + 5000,
            }
            if spec.with_run:
                self.run(sandbox, ident, run_id, run_ms)
        self.world.add(sandbox, "flows", flow)
        return ident

    def run(self, sandbox: str, flow: str, run_id: str, started_ms: int) -> None:
        self.world.add(
            sandbox,
            "runs",
            make_run(
                sandbox=sandbox,
                flow_id=flow,
                run_id=run_id,
                started_ms=started_ms,
                status="success",
                errors=[],
                etag=self.etag(),
            ),
        )


def make_run(
    *,
    sandbox: str,
    flow_id: str,
    run_id: str,
    started_ms: int,
    status: str,
    errors: list[JsonDict],
    etag: str,
    duration_ms: int | None = 5000,
) -> JsonDict:
    """A dataflow run shaped like Adobe's ``Batch_Flow_Run_Success`` example.

    ``duration_ms`` None is a run still going: no ``completedAtUTC`` and no record counts
    yet, as in the failed run of help/sources/notifications.md, whose summary has only
    ``startedAtUTC``."""
    summary: JsonDict = {"status": status}
    if errors:
        summary["errors"] = errors
    duration: JsonDict = {"startedAtUTC": started_ms}
    records: JsonDict = {}
    if duration_ms is not None:
        duration["completedAtUTC"] = started_ms + duration_ms
        records = {
            "inputRecordCount": 0 if errors else 1200,
            "outputRecordCount": 0 if errors else 1180,
        }
    return {
        "id": run_id,
        **base_fields(sandbox, started_ms, etag),
        "flowId": flow_id,
        "flowSpec": spec_ref(FLOW_SPEC_ID),
        "providerRefId": emu_id("providerRef", run_id).replace("-", ""),
        "metrics": {
            "durationSummary": duration,
            "recordSummary": records,
            "statusSummary": summary,
        },
        "activities": [],
    }


# --- demo ------------------------------------------------------------------------------------

#: (sandbox, name, advertiser, legacy state, legacy audiences, twins [(state, audiences)])
_DEMO_FLOWS: list[tuple[str, str, str, str, list[str], list[tuple[str, list[str]]]]] = [
    (
        "prod",
        "Loyalty members",
        "549755885175",
        "enabled",
        ["Gold tier members", "Silver tier members"],
        [("disabled", ["Gold tier members", "Silver tier members"])],
    ),
    (
        "prod",
        "Cart abandoners",
        "549755885176",
        "enabled",
        ["Abandoned cart 7d", "Abandoned cart 30d", "High-value abandoners"],
        [("disabled", ["Abandoned cart 7d", "Abandoned cart 30d"])],
    ),
    (
        "prod",
        "Winback 2023",
        "549755885175",
        "disabled",
        ["Lapsed 180d"],
        [("disabled", ["Lapsed 180d"])],
    ),
    (
        "prod",
        "Spring sale",
        "549755885175",
        "disabled",
        ["Spring sale prospects"],
        [("enabled", ["Spring sale prospects"])],
    ),
    ("prod", "Holiday prospects", "549755885175", "enabled", ["Holiday shoppers 2022"], []),
    (
        "prod",
        "Lookalike seeds",
        "549755885175",
        "enabled",
        ["Top spenders"],
        [("disabled", ["Top spenders"]), ("disabled", ["Top spenders"])],
    ),
    (
        "dev",
        "Newsletter subscribers",
        "549755885177",
        "enabled",
        ["Newsletter subscribers"],
        [("disabled", ["Newsletter subscribers"])],
    ),
    (
        "dev",
        "Dev smoke test",
        "549755885178",
        "enabled",
        ["Smoke test audience"],
        [("disabled", ["Smoke test audience"])],
    ),
]

#: New-card account credentials: seconds from now until expiry, None = missing.
_DEMO_NEW_ACCOUNTS: list[tuple[str, str, float | None]] = [
    ("prod", "549755885175", None),
    ("prod", "549755885176", -2 * DAY),
    ("dev", "549755885177", 50 * DAY),
    ("dev", "549755885178", 3 * DAY),
]


def _demo(b: _Builder) -> None:
    new_accounts = {
        (sandbox, adv): b.account(sandbox, "new", adv, expires_in=expiry)
        for sandbox, adv, expiry in _DEMO_NEW_ACCOUNTS
    }
    legacy_accounts = {
        (sandbox, adv): b.account(sandbox, "legacy", adv, expires_in=300 * DAY)
        for sandbox, adv, _ in _DEMO_NEW_ACCOUNTS
    }

    def audiences(sandbox: str, names: list[str]) -> list[JsonDict]:
        return [segment(audience_id(sandbox, n), n) for n in names]

    for sandbox, name, adv, state, legacy_aud, twins in _DEMO_FLOWS:
        b.flow(
            _FlowSpec(
                sandbox,
                "legacy",
                name,
                state,
                legacy_accounts[(sandbox, adv)],
                adv,
                audiences(sandbox, legacy_aud),
            )
        )
        for n, (twin_state, twin_aud) in enumerate(twins, start=1):
            b.flow(
                _FlowSpec(
                    sandbox,
                    "new",
                    name,
                    twin_state,
                    new_accounts[(sandbox, adv)],
                    adv,
                    audiences(sandbox, twin_aud),
                    n=n,
                    created_ms=COPY_EPOCH_MS,
                )
            )
    s3 = b.s3_account("prod")
    b.flow(
        _FlowSpec(
            "prod",
            "s3",
            "S3 nightly export",
            "enabled",
            s3,
            None,
            audiences("prod", ["All profiles with email"]),
            description="Nightly export of profiles to Amazon S3",
        )
    )


# --- scale:N ---------------------------------------------------------------------------------


def scale_advertiser(sandbox_index: int, slot: int) -> str:
    return str(549755900000 + sandbox_index * 10 + slot)


def _scale(b: _Builder, count: int) -> None:
    marketer = b.world.users[0]
    pools: dict[str, list[JsonDict]] = {}
    accounts: dict[tuple[str, str, str], str] = {}
    for s_index, sandbox in enumerate(SCALE_SANDBOXES):
        pools[sandbox] = [
            segment(audience_id(sandbox, f"Scale audience {k:02d}"), f"Scale audience {k:02d}")
            for k in range(20)
        ]
        for slot in range(10):
            adv = scale_advertiser(s_index, slot)
            b.ad_account(adv, marketer)
            for card in ("legacy", "new"):
                accounts[(sandbox, card, adv)] = b.account(
                    sandbox, card, adv, expires_in=(300 if card == "legacy" else 45) * DAY
                )
    for i in range(count):
        s_index = i % len(SCALE_SANDBOXES)
        sandbox = SCALE_SANDBOXES[s_index]
        adv = scale_advertiser(s_index, (i // len(SCALE_SANDBOXES)) % 10)
        pool = pools[sandbox]
        legacy_aud = [pool[i % 20], pool[(i + 7) % 20]]
        # Every 10th twin misses its second audience: add_audiences for N/10 pairs.
        twin_aud = legacy_aud[:1] if i % 10 == 0 else legacy_aud
        name = f"Scale flow {i:06d}"
        b.flow(
            _FlowSpec(
                sandbox,
                "legacy",
                name,
                "enabled",
                accounts[(sandbox, "legacy", adv)],
                adv,
                legacy_aud,
                created_ms=LEGACY_EPOCH_MS + i,
                with_run=False,
            )
        )
        b.flow(
            _FlowSpec(
                sandbox,
                "new",
                name,
                "disabled",
                accounts[(sandbox, "new", adv)],
                adv,
                twin_aud,
                created_ms=COPY_EPOCH_MS + i,
            )
        )
