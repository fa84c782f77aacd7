"""Files written so that a crash never leaves half of one: temp file, fsync, rename."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

#: A temp file of ``write_atomic`` older than this was left by a killed process: a live
#: write holds its temp for milliseconds. Callers that write under a lock pass 0.
STALE_TEMP_AGE = 60.0


def temp_prefix(path: Path) -> str:
    """The name every ``write_atomic`` temp file of ``path`` starts with (``.NAME.``)."""
    return f".{Path(path).name}."


def remove_stale_temps(path: Path, *, older_than: float = STALE_TEMP_AGE) -> list[Path]:
    """Delete the temp files a killed ``write_atomic`` of ``path`` left behind; returns them.

    Only files named as ``write_atomic`` names them (``.NAME.*.tmp``) and not modified for
    ``older_than`` seconds are removed; a symlink is removed, never followed.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    prefix = temp_prefix(path)
    removed: list[Path] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    now = time.time()
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        candidate = directory / name
        with contextlib.suppress(OSError):
            if now - os.lstat(candidate).st_mtime >= older_than:
                candidate.unlink()
                removed.append(candidate)
    return removed


def write_atomic(
    path: Path,
    text: str | Iterable[bytes],
    *,
    mode: int = 0o644,
    stale_after: float = STALE_TEMP_AGE,
) -> None:
    """Write ``text`` to ``path`` via a temp file in the same directory, fsync and rename.

    ``text`` is a string (written as UTF-8) or UTF-8 pieces, written one after the other
    (a large plan file is never held whole). The temp file is created 0600 and only then
    given ``mode``, so a secret written with ``mode=0o600`` is never in a wider file.
    Raises OSError; no temp file is left behind, and temps a killed earlier write left
    (older than ``stale_after`` seconds) are removed.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path, older_than=stale_after)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=directory)
    try:
        if mode != 0o600:  # mkstemp made it 0600; some filesystems refuse chmod
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            if isinstance(text, str):
                handle.write(text.encode("utf-8"))
            else:
                handle.writelines(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(directory)


def missing_directory(path: Path) -> str | None:
    """Why ``path`` cannot be written where it is (its directory is missing or is not a
    directory), or None. Output files go only into directories that exist: a misspelt
    directory is the user's to fix, never made silently."""
    directory = Path(path).parent
    if directory.is_dir():
        return None
    if directory.exists() or directory.is_symlink():
        return f"{directory} is not a directory"
    return f"directory {directory} does not exist"


def fsync_dir(directory: Path) -> None:
    """Make a new or renamed file's directory entry durable; not every filesystem allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def open_nofollow(path: Path, flags: int, mode: int = 0o600) -> int:
    """``os.open`` that refuses a symlink at ``path`` (state files are never links).

    Raises OSError; for a link, one whose ``strerror`` says so in words.
    """
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(
                errno.ELOOP, "it is a symbolic link, and pinmigrate does not follow links there"
            ) from None
        raise


def read_nofollow(path: Path) -> bytes:
    """The bytes of ``path``, refusing a symlink (see :func:`open_nofollow`)."""
    fd = open_nofollow(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def make_private_dir(path: Path) -> None:
    """Create ``path`` and its missing parents as directories only their owner can enter
    (0700); an existing directory is left as it is."""
    path = Path(path)
    missing = []
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            break
        missing.append(candidate)
    for candidate in reversed(missing):
        with contextlib.suppress(FileExistsError):
            candidate.mkdir(mode=0o700)


def unsafe_dir_problem(path: Path) -> str | None:
    """Why an existing directory must not hold pinmigrate's state, or None.

    Another user's directory, or one that group or others may write to, lets someone else
    plant a link or a forged journal or login store in it.
    """
    try:
        # The directory itself may be a link (a state dir kept elsewhere): its target is judged.
        info = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot inspect it ({exc.strerror})"
    if not stat.S_ISDIR(info.st_mode):
        return "it is not a directory"
    if info.st_uid != os.geteuid():
        return f"it is owned by another user (uid {info.st_uid}, not {os.geteuid()})"
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        return f"group or others may write to it (mode {mode:04o})"
    return None
