"""The emulated world as plain data: constants, deterministic ids and object builders.

Objects are JSON-ready dicts shaped like Adobe's published examples (``components/examples``
of the destinations API description) and Pinterest's v5 schemas. They are treated as
immutable once stored: every write replaces the stored dict with a new one, so readers may
serialise what they got without holding the state's lock, and scenarios may share
sub-structures between objects.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

JsonDict = dict[str, Any]

#: Credentials the emulator accepts (printed on start; documented in docs/architecture.md).
ORG_ID = "EMULATOR0000000000000000@AdobeOrg"
CLIENT_ID = "pinmigrate-emulator"
CLIENT_SECRET = "emulator-client-secret"
PINTEREST_APP_ID = "1234567"
PINTEREST_APP_SECRET = "emulator-app-secret"
PINTEREST_APP_NAME = "pinmigrate (emulator)"
#: Adobe's own Pinterest app, the client of the Pinterest card's "Reconnect OAuth" (api-notes.md
#: §3 "Accounts"). Its secret is drawn per emulator process and never shown.
ADOBE_APP_ID = "1484062"
ADOBE_APP_NAME = "Adobe Experience Platform"
#: Adobe's OAuth callback for destinations; the emulator serves it on its own base URL.
ADOBE_CALLBACK_PATH = "/data/core/activation/oauth/api/v1/callback"
#: What Adobe's Pinterest card asks for on "Reconnect OAuth".
ADOBE_SCOPES = "ads:read,ads:write,user_accounts:read"

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:pinmigrate:emulator")
_NAMESPACE_BYTES = _NAMESPACE.bytes


def emu_id(*parts: str) -> str:
    """A deterministic uuid5 for a key, so tests and scenarios agree on ids across runs."""
    # uuid.uuid5 computed by hand: the scale scenario makes ~10^5 ids and the UUID object
    # would triple the build time.
    digest = bytearray(
        hashlib.sha1(_NAMESPACE_BYTES + "/".join(parts).encode(), usedforsecurity=False).digest()[
            :16
        ]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


#: Flow spec of profile-based destinations and the Profile Service source spec (published).
FLOW_SPEC_ID = "71471eba-b620-49e4-90fd-23f1fa0174d8"
PROFILE_SOURCE_SPEC_ID = "8a9c3494-9708-43d7-ae3f-cda01e5030e1"
#: Amazon S3 destination spec id as it appears in Adobe's examples.
S3_SPEC_ID = "4890fc95-5a1f-4983-94bb-e060c08e3f81"
#: The Pinterest card ids are not published; these stand in for them.
LEGACY_SPEC_ID = emu_id("connectionSpec", "pinterest-v4")
NEW_SPEC_ID = emu_id("connectionSpec", "pinterest-v5")
#: The card names of Adobe's customer notice (api-notes.md §3, "Connection specs").
LEGACY_SPEC_NAME = "(Deprecating) Pinterest"
NEW_SPEC_NAME = "Pinterest"
#: The new card's name in an earlier draft; scenario option ``+draft-names`` serves it.
DRAFT_NEW_SPEC_NAME = "(New) Pinterest"
#: The legacy card's name under scenario option ``+renamed-legacy-card``: Pinterest-like, but
#: not a name pinmigrate looks up, so only the id setting can find it.
RENAMED_LEGACY_SPEC_NAME = "(Legacy) Pinterest"
#: Another Pinterest-like card, which an exact-name lookup must never take for either card.
DECOY_SPEC_ID = emu_id("connectionSpec", "pinterest-conversions")
DECOY_SPEC_NAME = "(Beta) Pinterest Conversions"
S3_SPEC_NAME = "Amazon S3"

#: ``auth.specName`` and the credential keys of the Pinterest cards (api-notes.md §3).
PINTEREST_AUTH_SPEC = "OAuth2 Authorization Code"
#: Keys of ``auth.params`` that reads answer masked.
SECRET_PARAM_KEYS = frozenset(
    {"accessToken", "refreshToken", "s3SecretKey", "password", "clientSecret", "privateKey"}
)
MASK = "***"

#: The date Adobe copied every legacy dataflow to the new card.
COPY_EPOCH_MS = 1700092800000  # 2023-11-16T00:00:00Z
CREATED_BY = "0A4334FA556585B77F000101@AdobeID"
CREATED_CLIENT = "exc_app"

FLOW_KINDS = ("flows", "connections", "targetConnections", "sourceConnections", "runs")
#: Kinds the control API may change behind the tool's back.
MUTABLE_KINDS = ("flows", "connections", "targetConnections", "sourceConnections")

#: Pinterest OAuth scopes (from the v5 description's security schemes).
PINTEREST_SCOPES: dict[str, str] = {
    "ads:read": "See all of your advertising data, including ads, ad groups, campaigns etc.",
    "ads:write": "Create, update, or delete ads, ad groups, campaigns etc.",
    "billing:read": "See all of your billing data, billing profile, etc.",
    "billing:write": "Create, update, or delete billing data, billing profiles, etc.",
    "biz_access:read": "See business access data",
    "biz_access:write": "Create, update, or delete business access data",
    "boards:read": "See your public boards, including group boards you join",
    "boards:read_secret": "See your secret boards",
    "boards:write": "Create, update, or delete your public boards",
    "boards:write_secret": "Create, update, or delete your secret boards",
    "catalogs:read": "See all of your catalogs data",
    "catalogs:write": "Create, update, or delete your catalogs data",
    "pins:read": "See your public Pins",
    "pins:read_secret": "See your secret Pins",
    "pins:write": "Create, update, or delete your public Pins",
    "pins:write_secret": "Create, update, or delete your secret Pins",
    "user_accounts:read": "See your user accounts and followers",
    "user_accounts:write": "Update your user accounts and followers",
}


def iso(epoch_seconds: float) -> str:
    """ISO-8601 UTC with a ``Z``, the form of ``auth.params.expiresAt``."""
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> float:
    """Epoch seconds of an ISO-8601 timestamp; naive means UTC. Raises ValueError."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


#: Pinterest's access-token lifetime, which is also what a reconnect in Adobe gives (30 days).
PINTEREST_ACCESS_LIFETIME = 2_592_000

#: Scenario options choosing how accounts carry their credential expiry (api-notes.md §3
#: "Accounts" lists every form a reader must accept). Without one: ``expiresAt`` ISO-8601.
EXPIRY_SHAPES: dict[str, str] = {
    "expiry-ms": "auth.params.expiresAt as epoch milliseconds",
    "expiration-date": "auth.params.expirationDate (ISO-8601) instead of expiresAt",
    "expires-in": "auth.params.expiresIn seconds, counted from the account's updatedAt",
    "no-expiry": "no expiry field: the credentials last 30 days from the account's updatedAt",
}


@dataclass(frozen=True)
class CredentialTiming:
    """How an account shows one expiry: its ``auth.params`` fields and the ``updatedAt`` they
    need (epoch ms; None when any will do), and the expiry a reader gets from them."""

    params: JsonDict
    updated_ms: int | None
    expires_at: float


def credential_timing(shape: str | None, expires_at: float, *, now: float) -> CredentialTiming:
    """The expiry fields of an account whose credentials run out at ``expires_at``.

    ``shape`` is one of :data:`EXPIRY_SHAPES` or None. The shapes read against ``updatedAt``
    never date it later than ``now``: with ``no-expiry`` credentials can then last at most 30
    days from ``now`` (Adobe's rule for a reconnect), so a later expiry is cut to that.
    """
    if shape is None:
        return CredentialTiming({"expiresAt": iso(expires_at)}, None, float(int(expires_at)))
    if shape == "expiry-ms":
        ms = int(expires_at * 1000)
        return CredentialTiming({"expiresAt": ms}, None, ms / 1000)
    if shape == "expiration-date":
        return CredentialTiming({"expirationDate": iso(expires_at)}, None, float(int(expires_at)))
    if shape == "expires-in":
        updated_ms = int(min(now, expires_at - PINTEREST_ACCESS_LIFETIME) * 1000)
        seconds = round(expires_at - updated_ms / 1000)
        return CredentialTiming({"expiresIn": seconds}, updated_ms, updated_ms / 1000 + seconds)
    if shape == "no-expiry":
        updated_ms = int(min(now, expires_at - PINTEREST_ACCESS_LIFETIME) * 1000)
        return CredentialTiming({}, updated_ms, updated_ms / 1000 + PINTEREST_ACCESS_LIFETIME)
    raise ValueError(f"unknown expiry shape {shape!r}; known: {', '.join(EXPIRY_SHAPES)}")


def spec_ref(spec_id: str) -> JsonDict:
    return {"id": spec_id, "version": "1.0"}


@dataclass
class PinterestUser:
    id: str
    username: str
    business_name: str
    ad_account_ids: list[str]

    def account(self) -> JsonDict:
        """``GET /v5/user_account`` (schema ``Account``)."""
        return {
            "account_type": "BUSINESS",
            "id": self.id,
            "username": self.username,
            "business_name": self.business_name,
            "profile_image": f"https://i.pinimg.com/600x600_R/{self.id}.jpg",
            "website_url": f"https://{self.username.replace('_', '-')}.example.com",
            "about": "Emulated Pinterest business account",
            "board_count": 3,
            "pin_count": 42,
            "follower_count": 10,
            "following_count": 5,
            "monthly_views": 163,
        }


@dataclass
class AdAccount:
    id: str
    name: str
    owner_id: str
    owner_username: str
    country: str = "US"
    currency: str = "USD"
    created_time: int = 1_600_000_000

    def as_json(self, viewer_id: str) -> JsonDict:
        """``AdAccount`` as the viewing user sees it (their permissions on it)."""
        permissions = ["OWNER"] if viewer_id == self.owner_id else ["AUDIENCE_MANAGER"]
        return {
            "id": self.id,
            "name": self.name,
            "owner": {"id": self.owner_id, "username": self.owner_username},
            "country": self.country,
            "currency": self.currency,
            "permissions": permissions,
            "created_time": self.created_time,
            "updated_time": self.created_time,
        }


@dataclass
class World:
    """Everything a scenario defines: Adobe objects per sandbox and Pinterest's users."""

    scenario: str
    sandboxes: list[str]
    #: connection specs are global (visible in every sandbox), keyed by id.
    connection_specs: dict[str, JsonDict] = field(default_factory=dict)
    #: sandbox -> kind -> id -> object (insertion order is creation order).
    objects: dict[str, dict[str, dict[str, JsonDict]]] = field(default_factory=dict)
    users: list[PinterestUser] = field(default_factory=list)
    ad_accounts: dict[str, AdAccount] = field(default_factory=dict)
    default_user: str = "emu_marketer"
    #: How accounts carry their expiry: one of :data:`EXPIRY_SHAPES`, None = ``expiresAt``.
    expiry_shape: str | None = None

    def ensure_sandbox(self, sandbox: str) -> dict[str, dict[str, JsonDict]]:
        if sandbox not in self.objects:
            self.objects[sandbox] = {kind: {} for kind in FLOW_KINDS}
        return self.objects[sandbox]

    def add(self, sandbox: str, kind: str, obj: JsonDict) -> JsonDict:
        self.ensure_sandbox(sandbox)[kind][obj["id"]] = obj
        return obj


@cache
def sandbox_id(name: str) -> str:
    return emu_id("sandbox", name)


def base_fields(sandbox: str, created_ms: int, etag: str) -> JsonDict:
    """The bookkeeping fields every Flow Service object carries, in Adobe's order."""
    return {
        "createdAt": created_ms,
        "updatedAt": created_ms,
        "createdBy": CREATED_BY,
        "updatedBy": CREATED_BY,
        "createdClient": CREATED_CLIENT,
        "updatedClient": CREATED_CLIENT,
        "sandboxId": sandbox_id(sandbox),
        "sandboxName": sandbox,
        "imsOrgId": ORG_ID,
        "version": etag,
        "etag": etag,
    }


def connection_spec(spec_id: str, name: str, *, category: str, auth: str) -> JsonDict:
    return {
        "id": spec_id,
        "name": name,
        "providerId": emu_id("provider", name),
        "version": "1.0",
        "authSpec": [{"name": auth, "type": "OAuth2" if "OAuth" in auth else "KeyBased"}],
        "attributes": {"category": category, "isDestination": True, "connectorName": name},
    }


def segment(audience_id: str, name: str) -> JsonDict:
    return {
        "type": "PLATFORM_SEGMENT",
        "value": {"id": audience_id, "name": name, "description": ""},
    }


PROFILE_SELECTORS: JsonDict = {
    "selectors": [
        {
            "type": "JSON_PATH",
            "value": {
                "path": "personalEmail.address",
                "operator": "EXISTS",
                "mapping": {
                    "sourceType": "text/x.schema-path",
                    "source": "personalEmail.address",
                    "destination": "email",
                    "identity": False,
                    "primaryIdentity": False,
                    "functionVersion": 0,
                    "sourceAttribute": "personalEmail.address",
                    "destinationXdmPath": "email",
                },
            },
        }
    ]
}
