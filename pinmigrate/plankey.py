"""The plan key: the secret that seals plan files made with this state dir (HMAC-SHA256).

A plain sha256 fingerprint only shows that a file was not damaged: anyone who edits a plan
can compute a new one. A plan sealed with this key (``hmac-sha256:KEY_ID:MAC`` in its
``fingerprint``) can only have been sealed by someone who can read this state dir, so
``apply`` trusts exactly the plans this state dir made or accepted (``pinmigrate show
PLAN_FILE --accept``). The key is 32 random bytes, written as hex to
``state_dir/plan.key`` (mode 0600) on first use. It appears atomically: a fully written
temp file is hard-linked into place, so two processes that make it at once agree on one
key. It is never printed; ``KEY_ID`` names it (a one-way digest of it) so that a plan made
with another state dir's key is told apart from an edited one.

CI jobs that plan and apply in different state dirs share one key through the environment
(``PINMIGRATE_PLAN_KEY``, 64 hex digits, a secret of the pipeline) instead.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import os
import secrets
import stat
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from pinmigrate import redact
from pinmigrate.errors import ConfigError
from pinmigrate.files import fsync_dir, make_private_dir

KEY_FILE = "plan.key"
#: A plan key given by the environment instead (64 hex digits), e.g. a CI secret.
ENV_NAME = "PINMIGRATE_PLAN_KEY"
#: The fingerprint scheme of a sealed plan: ``hmac-sha256:KEY_ID:HEX``.
SCHEME = "hmac-sha256"
_KEY_BYTES = 32
_HINT = (
    "move it aside to make a new key (plans sealed with the old one then need "
    "`pinmigrate show PLAN_FILE --accept`)"
)


class PlanKey:
    """This state dir's plan key; its value never leaves the object (no repr of it)."""

    def __init__(self, secret: bytes, path: Path) -> None:
        self._secret = secret
        self.path = path
        #: A one-way name of the key, written in every fingerprint it seals.
        self.id = hashlib.sha256(b"pinmigrate plan key id\0" + secret).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"PlanKey(id={self.id}, path={str(self.path)!r})"

    def seal(self, parts: Iterable[str]) -> str:
        """``hmac-sha256:KEY_ID:HEX`` over the canonical text given in ``parts``."""
        mac = hmac.new(self._secret, digestmod=hashlib.sha256)
        for part in parts:
            mac.update(part.encode("utf-8"))
        return f"{SCHEME}:{self.id}:{mac.hexdigest()}"

    def verifies(self, fingerprint: str, parts: Iterable[str]) -> bool:
        """Whether ``fingerprint`` is this key's seal of ``parts`` (constant-time compare)."""
        return hmac.compare_digest(fingerprint.encode("utf-8"), self.seal(parts).encode("utf-8"))


def key_path(state_dir: Path) -> Path:
    return Path(state_dir) / KEY_FILE


def load_key(
    state_dir: Path, *, create: bool = False, env: Mapping[str, str] | None = None
) -> PlanKey | None:
    """The plan key: ``PINMIGRATE_PLAN_KEY`` when set (a CI secret shared by the jobs that
    plan and apply, never written to disk), else the state dir's; None when there is none
    yet and ``create`` is False.

    ConfigError (exit 64) when the key is damaged, or the file not a regular file or
    readable by others: a key others can read seals nothing."""
    given = (os.environ if env is None else env).get(ENV_NAME, "").strip()
    if given:
        return _key(given, Path(f"${ENV_NAME}"), hint=f"set {ENV_NAME} to 64 hex digits")
    path = key_path(state_dir)
    text = _read(path)
    if text is None:
        if not create:
            return None
        text = _make(path)
    return _key(text, path, hint=_HINT)


def _key(text: str, path: Path, *, hint: str) -> PlanKey:
    """The key that ``text`` (hex) holds; ConfigError, never echoing it, when it is not one."""
    text = text.strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) != _KEY_BYTES:
        raise ConfigError(
            f"the plan key {path} is damaged (not {_KEY_BYTES} bytes of hex)", hint=hint
        )
    redact.register(text)  # a damaged one is never echoed either: no message quotes it
    return PlanKey(secret, path)


def _read(path: Path) -> str | None:
    """The key file's text, or None when it does not exist; never follows a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(f"the plan key {path} is a symbolic link", hint=_HINT) from None
        raise ConfigError(f"cannot read the plan key {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"the plan key {path} is not a regular file", hint=_HINT)
        if info.st_mode & 0o077:
            raise ConfigError(
                f"the plan key {path} can be read by others (mode {stat.S_IMODE(info.st_mode):o})",
                hint=f"`chmod 600 {path}` if nobody else read it, else {_HINT}",
            )
        raw = handle.read(4 * _KEY_BYTES)
    return raw.decode("ascii", errors="replace")


def _make(path: Path) -> str:
    """Create the key: a 0600 temp file, fully written, hard-linked into place. When another
    process made it first, its key is the key."""
    text = secrets.token_hex(_KEY_BYTES) + "\n"
    try:
        make_private_dir(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the plan key {path}: {exc.strerror}") from None
    fsync_dir(path.parent)
    made = _read(path)
    if made is None:
        raise ConfigError(f"cannot create the plan key {path}: it vanished as it was made")
    return made
