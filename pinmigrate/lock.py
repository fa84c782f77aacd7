"""The state-dir lock (``state_dir/lock``): one run at a time per state dir.

It keeps two runs from writing to one org from one state dir at once. It holds ``{pid,
host, run_id, started}`` and appears atomically (a fully written temp file hard-linked into
place); a lock left by a dead process on this host is taken over, one from another host
never is.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from pinmigrate.errors import LockedError
from pinmigrate.files import fsync_dir, make_private_dir, open_nofollow, read_nofollow
from pinmigrate.journal import now_iso

LOCK_NAME = "lock"
#: A lock read empty or half written is read again this often, this far apart, first.
UNREADABLE_RETRIES = 10
UNREADABLE_PAUSE = 0.05
#: link() errors meaning "this filesystem has no hard links" (then O_EXCL is used).
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK})


@dataclass(frozen=True)
class LockHolder:
    pid: int
    host: str
    run_id: str
    started: str

    def describe(self) -> str:
        return f"pid {self.pid}@{self.host}, run {self.run_id}, since {self.started}"

    @classmethod
    def parse(cls, text: str) -> LockHolder | None:
        try:
            data = json.loads(text)
            return cls(
                int(data["pid"]), str(data["host"]), str(data["run_id"]), str(data["started"])
            )
        except (ValueError, KeyError, TypeError):
            return None


def pid_alive(pid: int) -> bool:
    """True unless the process certainly does not exist (EPERM means it does, as another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError as exc:
        return exc.errno != errno.ESRCH
    return True


class StateLock:
    """The state dir's exclusive lock, as a context manager.

    ``acquire`` raises :class:`LockedError` (exit 1) naming the holder. The lock file is
    written in full to a private temp file and hard-linked into place, so it never exists
    empty or half written. A lock whose process is gone (same host, no such pid) is taken
    over: takeovers serialise on an ``flock`` of that stale file, see :meth:`_take_over`.
    """

    def __init__(
        self,
        state_dir: Path,
        run_id: str,
        *,
        host: str | None = None,
        pid: int | None = None,
        alive: Any = pid_alive,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.path = Path(state_dir) / LOCK_NAME
        self.run_id = run_id
        self.host = host or socket.gethostname()
        self.pid = os.getpid() if pid is None else pid
        self._alive = alive
        self._sleep = sleep
        self.held = False
        self.took_over: LockHolder | None = None

    def _content(self) -> str:
        return json.dumps(
            {"pid": self.pid, "host": self.host, "run_id": self.run_id, "started": now_iso()}
        )

    def holder(self) -> LockHolder | None:
        """Who holds the lock now (None when free or unreadable)."""
        try:
            return LockHolder.parse(read_nofollow(self.path).decode("utf-8", "replace"))
        except OSError:
            return None

    def _settled_holder(self) -> LockHolder | None:
        """The holder; a lock that reads empty or half written (older versions created the
        file first and wrote it after) is read again for a moment before it counts as
        unreadable."""
        for _ in range(UNREADABLE_RETRIES):
            holder = self.holder()
            if holder is not None or not self.path.exists():
                return holder
            self._sleep(UNREADABLE_PAUSE)
        return self.holder()

    def _written_temp(self) -> Path:
        """A private file next to the lock holding this process's lock content, fsynced."""
        tmp = self.path.with_name(f".{LOCK_NAME}.{os.getpid()}.{secrets.token_hex(6)}")
        fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(self._content())
            handle.flush()
            os.fsync(handle.fileno())
        return tmp

    def _create(self) -> bool:
        """Put this process's lock in place; False when a lock is there already."""
        tmp = self._written_temp()
        try:
            try:
                # Atomic, and refuses an existing path: the lock appears complete or not at all.
                os.link(tmp, self.path)
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise
                return self._create_exclusive()
            fsync_dir(self.path.parent)
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _create_exclusive(self) -> bool:
        # Filesystems without hard links: O_EXCL, then the content. A reader can catch the
        # file empty for a moment; _settled_holder reads it again before giving up.
        try:
            fd = open_nofollow(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(self._content())
            handle.flush()
            os.fsync(handle.fileno())
        return True

    def _owned(self) -> bool:
        current = self.holder()
        return current is not None and current.run_id == self.run_id and current.pid == self.pid

    def acquire(self) -> StateLock:
        make_private_dir(self.path.parent)
        for _ in range(3):
            if self._create():
                self.held = True
                return self
            holder = self._settled_holder()
            if holder is None:
                if not self.path.exists():
                    continue  # released between our attempt and the read: try again
                raise LockedError(
                    f"the state dir lock {self.path} exists but is unreadable",
                    hint=f"if no pinmigrate run is active, remove {self.path}",
                )
            if holder.host != self.host:
                raise LockedError(
                    f"another pinmigrate run holds the lock ({holder.describe()})",
                    hint=(
                        f"it runs on another machine, so it is never taken over automatically; "
                        f"if that run is gone, remove {self.path}"
                    ),
                )
            if self._alive(holder.pid):
                raise LockedError(
                    f"another pinmigrate run holds the lock ({holder.describe()})",
                    hint="wait for it to finish",
                )
            if self._take_over(holder):
                self.held = True
                self.took_over = holder
                return self
        holder = self.holder()
        raise LockedError(
            "another pinmigrate run holds the lock"
            + (f" ({holder.describe()})" if holder else f" ({self.path})"),
            hint="wait for it to finish",
        )

    def _take_over(self, stale: LockHolder) -> bool:
        """Replace the lock of a dead process; False when someone else got there first.

        Every contender opens the lock file and takes an exclusive ``flock`` on it. The first
        to get it checks that the lock path still names that very file (same inode) with the
        stale content, then swaps its own lock in with an atomic rename. A contender that gets
        the flock later finds the path naming another file and backs off. Nothing is ever
        deleted on a guess, and the flock dies with its process, so no guard is left behind
        for others to judge (the old ``lock.takeover`` guard file is ignored).
        """
        try:
            fd = open_nofollow(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                named = os.stat(self.path)
            except FileNotFoundError:
                return False
            opened = os.fstat(fd)
            if (named.st_dev, named.st_ino) != (opened.st_dev, opened.st_ino):
                return False
            if LockHolder.parse(os.pread(fd, 1 << 16, 0).decode("utf-8", "replace")) != stale:
                return False
            tmp = self._written_temp()
            try:
                os.replace(tmp, self.path)
            except OSError:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                raise
            fsync_dir(self.path.parent)
            return self._owned()
        finally:
            os.close(fd)

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        current = self.holder()
        if current is not None and current.run_id == self.run_id and current.pid == self.pid:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def __enter__(self) -> StateLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


@contextlib.contextmanager
def locked(state_dir: Path, run_id: str) -> Iterator[StateLock]:
    """Hold the state dir's lock for the duration of the block."""
    lock = StateLock(state_dir, run_id)
    with lock:
        yield lock
