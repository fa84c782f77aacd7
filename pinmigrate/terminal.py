"""What reaches a person's terminal: text from a server made harmless, in one place.

Names of flows, accounts, audiences and sandboxes, and the words of an error answer, come
from Adobe or Pinterest and are printed in front of the person approving a plan. Printed
raw, an escape sequence in a flow name can erase or rewrite the plan lines before it, a
carriage return or backspace can overwrite them, and a BIDI override can show them in
another order. Every such character is shown escaped instead (``\\x1b``, ``\\u202e``), as
Python's ``repr`` shows it, so the person sees that the name is odd.

Two places apply it, and nothing else needs to: every rich console pinmigrate prints
through comes from :func:`safe_console` (plans, inventories, reports, notes, progress,
log lines), and the top-level error line goes through :func:`safe_text`. Rich is imported
only when a console is made: ``pinmigrate --help`` stays light. JSON output is not
touched: JSON escapes control characters itself and keeps the real value.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import threading
import unicodedata
from collections.abc import Iterable, Iterator
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.segment import Segment

#: Joiners that emoji and several scripts need; harmless on a terminal.
_JOINERS = frozenset("\u200c\u200d")
#: Categories escaped: controls (C0, DEL, C1), format characters (BIDI embeddings,
#: overrides and isolates, invisible marks), line and paragraph separators, surrogates.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
#: Anything but printable ASCII is looked at character by character.
_SUSPECT = re.compile(r"[^\x20-\x7e]")
#: Line breaks, kept in multi-line text (a traceback, a log record).
LINES = frozenset("\n")
#: What rich's own layout writes into the text it prints: kept there.
_LAYOUT = frozenset("\n\t")


def unsafe_char(char: str) -> bool:
    """True for a character that can move the cursor, erase, or reorder what is shown."""
    return char not in _JOINERS and unicodedata.category(char) in _UNSAFE_CATEGORIES


def _escaped(char: str) -> str:
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char)
    if named:
        return named
    point = ord(char)
    if point <= 0xFF:
        return f"\\x{point:02x}"
    if point <= 0xFFFF:
        return f"\\u{point:04x}"
    return f"\\U{point:08x}"


def safe_text(text: str, *, keep: frozenset[str] = frozenset()) -> str:
    """``text`` with every unsafe character (:func:`unsafe_char`) escaped, except ``keep``."""
    if not _SUSPECT.search(text):
        return text
    return "".join(_escaped(c) if c not in keep and unsafe_char(c) else c for c in text)


def _harmless(segments: Iterable[Segment]) -> Iterator[Segment]:
    from rich.segment import Segment

    for segment in segments:
        text, style, control = segment
        if control or not _SUSPECT.search(text):
            yield segment
        else:
            yield Segment(safe_text(text, keep=_LAYOUT), style, control)


@cache
def _safe_console_class() -> type[Console]:
    from rich.console import Console

    class SafeConsole(Console):
        """A rich console that never writes a terminal control character given as text.

        Rich adds its own colours and cursor moves when it turns segments into output (and
        marks cursor moves as control segments), so the text of every other segment is what
        was given to print: escaping it there covers every table, line, note and progress
        bar, however it was built. Newlines and tabs are rich's layout and are kept: a name
        holding one can start a new line, never erase or rewrite one.
        """

        def _render_buffer(self, buffer: Iterable[Segment]) -> str:
            return super()._render_buffer(_harmless(buffer))

    return SafeConsole


def safe_console(**options: Any) -> Console:
    """A rich ``Console(**options)`` whose output holds no control character it was given."""
    return _safe_console_class()(**options)


def json_for_terminal(text: str) -> str:
    """JSON text with every unsafe character inside its strings written as a ``\\u`` escape:
    the same JSON document, but one a terminal shows as it is. (``ensure_ascii=False``
    output leaves C1 controls, DEL and BIDI overrides raw; outside strings JSON has only
    plain whitespace, which is kept.)"""
    if not _SUSPECT.search(text):
        return text
    return "".join(
        json.dumps(c)[1:-1] if c not in _LAYOUT and c != " " and unsafe_char(c) else c for c in text
    )


# --- streams that can close under us -------------------------------------------------------------


class GuardedStream:
    """A text stream (stdout or stderr) whose failed write stops the output, never the work.

    ``pinmigrate apply ... | head -2`` closes the pipe after two lines; every later write
    to it fails (EPIPE), and so does a write to a full disk (ENOSPC) or a terminal that went
    away (EIO). Raised from inside a progress line or a note, such an error would end a run
    half-way. Here the first failure marks the stream dead: later writes are dropped, and
    the file descriptor is pointed at the null device, so that what the interpreter still
    holds in its buffers, and its own flush at exit, go nowhere instead of raising
    ("Exception ignored ... BrokenPipeError"; the Python docs' note on SIGPIPE does the
    same). Everything else (``isatty``, ``fileno``, ``encoding``) is the stream's own.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.dead = False
        inner = getattr(stream, "buffer", None)
        self.buffer = _GuardedBinary(self, inner) if inner is not None else None

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if not self.dead:
            try:
                return int(self._stream.write(text))
            except UnicodeError:
                raise
            except (OSError, ValueError):
                self.die()
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if not self.dead:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self.die()

    def isatty(self) -> bool:
        try:
            return bool(self._stream.isatty())
        except (OSError, ValueError):
            return False

    def die(self) -> None:
        """Drop everything written from now on (the reader is gone)."""
        with self._lock:
            if self.dead:
                return
            self.dead = True
            with contextlib.suppress(OSError, ValueError, AttributeError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                try:
                    os.dup2(devnull, self._stream.fileno())
                finally:
                    os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _GuardedBinary:
    """The binary side (``sys.stdout.buffer``) of a :class:`GuardedStream`: one life for both."""

    def __init__(self, owner: GuardedStream, stream: Any) -> None:
        self._owner = owner
        self._stream = stream

    def write(self, data: bytes) -> int:
        if not self._owner.dead:
            try:
                return int(self._stream.write(data))
            except (OSError, ValueError):
                self._owner.die()
        return len(data)

    def flush(self) -> None:
        if not self._owner.dead:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._owner.die()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_standard_streams() -> tuple[GuardedStream, GuardedStream]:
    """Make ``sys.stdout`` and ``sys.stderr`` :class:`GuardedStream` s (once per process).

    Called by the entry point before anything is printed: rich consoles, ``click.echo``,
    log handlers and the JSON printers all look the streams up there."""
    streams = []
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None:
            # Started with the descriptor closed (``>&-``, ``2>&-``): Python leaves the stream
            # None. Output goes nowhere, and the null device takes the free descriptor, so
            # that no file opened later (a journal) becomes fd 1 or 2.
            stream = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
        if not isinstance(stream, GuardedStream):
            stream = GuardedStream(stream)
            setattr(sys, name, stream)
        streams.append(stream)
    return streams[0], streams[1]
