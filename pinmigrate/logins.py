"""Pinterest logins: the record, and the store (``logins.json``, the only place tokens are written).

The planner sees logins only through :attr:`Login.ad_account_ids` and :attr:`Login.user_id`;
tokens are ``SecretStr`` so that printing a login never shows them.

The store file is ``{"version": 1, "logins": [...]}`` with the tokens in clear, so it is
created 0600 (never a moment wider), replaced atomically, and every read-modify-write
happens under an ``flock`` on a separate lock file: a refresh token rotated by one process
is never overwritten by another that read the file before the rotation.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from pinmigrate import redact
from pinmigrate.errors import PinmigrateError
from pinmigrate.files import (
    make_private_dir,
    open_nofollow,
    read_nofollow,
    remove_stale_temps,
    write_atomic,
)
from pinmigrate.moments import aware

log = logging.getLogger("pinmigrate.logins")

STORE_VERSION = 1
STORE_FILE = "logins.json"
LOCK_FILE = "logins.lock"


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
    #: For logins made from ``pinterest.refresh_token``: a SHA-256 digest of that token, so
    #: that later runs with the same setting find the rotated descendant in the store.
    origin: str | None = None

    @field_validator("access_expires_at", "refresh_expires_at", "created_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        # A hand-edited file may hold naive times; comparing them with aware ones would raise.
        return None if value is None else aware(value)

    @property
    def ad_account_ids(self) -> frozenset[str]:
        return frozenset(a.id for a in self.ad_accounts)

    def covers(self, advertiser_ids: set[str] | frozenset[str]) -> bool:
        return bool(advertiser_ids) and set(advertiser_ids) <= self.ad_account_ids

    def usable_at(self, now: datetime) -> bool:
        """Whether the login still gives access at ``now``: its refresh token has not
        expired (or, without one, its access token has not); an unknown expiry is usable."""
        expiry = self.refresh_expires_at if self.refresh_token else self.access_expires_at
        return expiry is None or expiry > aware(now)

    def credential_expiry(self) -> datetime | None:
        """The expiry Adobe should record for this grant (refresh token's when it has one)."""
        return self.refresh_expires_at or self.access_expires_at

    @property
    def label(self) -> str:
        """``username (user id)`` for messages."""
        return f"{self.username} ({self.user_id})" if self.username else self.user_id


def login_to_record(login: Login) -> dict[str, Any]:
    """The store's JSON form of a login: every field, tokens in clear."""
    record = login.model_dump(mode="json")
    record["access_token"] = login.access_token.get_secret_value()
    record["refresh_token"] = (
        login.refresh_token.get_secret_value() if login.refresh_token is not None else None
    )
    return record


class LoginStoreError(PinmigrateError):
    """``logins.json`` cannot be read or written: corrupt, from a newer pinmigrate, or I/O.

    The file is never overwritten in that case: it may hold the only copy of a refresh token.
    """


class LoginStore:
    """``logins.json`` in the state dir: 0600, atomic, locked, keyed by Pinterest user id."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / STORE_FILE
        self.lock_path = self.state_dir / LOCK_FILE
        # flock is per open file, so threads of this process exclude each other through it
        # too; the RLock and depth make nested use within one thread (update -> put) safe.
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._lock_fd: int | None = None

    # -- reading ---------------------------------------------------------------------------

    def load(self) -> list[Login]:
        """Every stored login, in file order; ``[]`` when the file does not exist yet."""
        try:
            raw = read_nofollow(self.path)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise LoginStoreError(
                f"cannot read the login store {self.path}: {exc.strerror}"
            ) from None
        self._warn_if_readable_by_others()
        return self._parse(raw)

    def get(self, user_id: str) -> Login | None:
        return next((login for login in self.load() if login.user_id == user_id), None)

    def find(self, user: str) -> list[Login]:
        """Stored logins whose user id or username is ``user`` (usernames case-insensitively)."""
        logins = self.load()
        exact = [login for login in logins if login.user_id == user]
        if exact:
            return exact
        folded = user.casefold()
        return [login for login in logins if login.username and login.username.casefold() == folded]

    def _parse(self, raw: bytes) -> list[Login]:
        fix = f"move {self.path} aside and run `pinmigrate auth login` again"
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LoginStoreError(
                f"the login store {self.path} is not valid JSON ({exc}); it was left as it is",
                hint=fix,
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("logins"), list):
            raise LoginStoreError(
                f"the login store {self.path} is not a pinmigrate login store "
                '(expected {"version": 1, "logins": [...]}); it was left as it is',
                hint=fix,
            )
        version = data.get("version")
        if version != STORE_VERSION:
            raise LoginStoreError(
                f"the login store {self.path} has version {version!r}; this pinmigrate reads "
                f"version {STORE_VERSION}; it was left as it is",
                hint="use the pinmigrate that wrote it, or " + fix,
            )
        logins: list[Login] = []
        for index, record in enumerate(data["logins"]):
            try:
                login = Login.model_validate(record)
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err["loc"])
                raise LoginStoreError(
                    f"the login store {self.path} has a bad entry (logins[{index}].{where}: "
                    f"{err['msg']}); it was left as it is",
                    hint=fix,
                ) from None
            redact.register(
                login.access_token.get_secret_value(),
                login.refresh_token.get_secret_value() if login.refresh_token else None,
            )
            logins.append(login)
        return logins

    def _warn_if_readable_by_others(self) -> None:
        with contextlib.suppress(OSError):
            mode = stat.S_IMODE(self.path.stat().st_mode)
            if mode & 0o077:
                log.warning(
                    "%s is readable by other users (mode %o); it holds tokens: chmod 600 it",
                    self.path,
                    mode,
                )

    # -- writing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock (re-entrant within a thread) across a read-modify-write."""
        with self._thread_lock:
            if self._depth == 0:
                self._ensure_dir()
                try:
                    fd = open_nofollow(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
                except OSError as exc:
                    raise LoginStoreError(
                        f"cannot open the login store's lock {self.lock_path}: {exc.strerror}"
                    ) from None
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
                self._lock_fd = fd
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._lock_fd is not None:
                    fd, self._lock_fd = self._lock_fd, None
                    try:
                        fcntl.flock(fd, fcntl.LOCK_UN)
                    finally:
                        os.close(fd)

    def update(self, user_id: str, fn: Callable[[Login | None], Login | None]) -> Login | None:
        """Read-modify-write one user's entry under the lock; returns what is stored afterwards.

        ``fn`` gets the stored login (or None) as it is now, after any other process's
        rotation, and returns the login to store; returning the very object it was given
        writes nothing, returning None removes the entry. An exception from ``fn`` writes
        nothing.
        """
        with self.locked():
            logins = self.load()
            index = next((i for i, lg in enumerate(logins) if lg.user_id == user_id), None)
            current = logins[index] if index is not None else None
            new = fn(current)
            if new is current:
                return current
            if new is None:
                assert index is not None
                del logins[index]
            else:
                if new.user_id != user_id:
                    raise ValueError(f"update of user {user_id} returned user {new.user_id}")
                if index is None:
                    logins.append(new)
                else:
                    logins[index] = new
            self._write(logins)
            return new

    def put(self, login: Login) -> None:
        """Store a login, replacing that Pinterest user's previous entry."""
        self.update(login.user_id, lambda _current: login)

    def remove(self, user: str) -> bool:
        """Forget the login of a user id (or username); False when none matched."""
        with self.locked():
            matches = {login.user_id for login in self.find(user)}
            if not matches:
                return False
            self._write([login for login in self.load() if login.user_id not in matches])
            return True

    def remove_temps(self) -> list[Path]:
        """Delete the temp files a killed write of the store left (they may hold tokens)."""
        if not self.state_dir.is_dir():
            return []
        with self.locked():
            return remove_stale_temps(self.path, older_than=0)

    def _ensure_dir(self) -> None:
        try:
            make_private_dir(self.state_dir)
        except OSError as exc:
            raise LoginStoreError(
                f"cannot create the state directory {self.state_dir}: {exc.strerror}",
                hint="set PINMIGRATE_STATE_DIR to a writable directory",
            ) from None

    def _write(self, logins: list[Login]) -> None:
        payload = {"version": STORE_VERSION, "logins": [login_to_record(lg) for lg in logins]}
        text = json.dumps(payload, indent=2) + "\n"
        self._ensure_dir()
        try:
            # 0600 from the start: the tokens are never in a wider file.
            # Under the store's lock no other write is under way: every temp left is stale.
            write_atomic(self.path, text, mode=0o600, stale_after=0)
        except OSError as exc:
            raise LoginStoreError(
                f"cannot write the login store {self.path}: {exc.strerror}"
            ) from None
