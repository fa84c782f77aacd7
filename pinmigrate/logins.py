"""Pinterest logins: the record, and the store (``logins.json``, the only place tokens are written).

The planner sees logins only through :attr:`Login.ad_account_ids` and :attr:`Login.user_id`;
tokens are ``SecretStr`` so that printing a login never shows them.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class AdAccountAccess(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    name: str = ""
    permissions: list[str] = Field(default_factory=list)


class Login(BaseModel):
    """A verified Pinterest v5 grant."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    user_id: str
    username: str = ""
    ad_accounts: list[AdAccountAccess] = Field(default_factory=list)
    scopes: list[str] = Field(default_factory=list)
    access_token: SecretStr
    refresh_token: SecretStr | None = None
    access_expires_at: datetime | None = None
    refresh_expires_at: datetime | None = None
    #: "browser" | "paste" | "token" | "environment"
    source: str = "browser"
    created_at: datetime | None = None

    @property
    def ad_account_ids(self) -> frozenset[str]:
        return frozenset(a.id for a in self.ad_accounts)

    def covers(self, advertiser_ids: set[str] | frozenset[str]) -> bool:
        return bool(advertiser_ids) and set(advertiser_ids) <= self.ad_account_ids

    def credential_expiry(self) -> datetime | None:
        """The expiry Adobe should record for this grant (refresh token's when it has one)."""
        return self.refresh_expires_at or self.access_expires_at
