"""What every command receives: global options, settings (loaded lazily), consoles, prompts.

The interactive/CI split is decided here once: :meth:`App.can_prompt` is the only question
commands ask before prompting.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from pinmigrate import redact

if TYPE_CHECKING:
    from rich.console import Console

    from pinmigrate.settings import Settings

log = logging.getLogger("pinmigrate")
#: stdout's width when it is not a terminal (and COLUMNS is not set): wide enough that no
#: table or line is wrapped, so a pipe or file gets each row on one line.
PIPE_WIDTH = 10_000


class SafeFormatter(logging.Formatter):
    """Log lines on stderr carry server words too: escaped like everything printed."""

    def format(self, record: logging.LogRecord) -> str:
        from pinmigrate.terminal import LINES, safe_text

        return safe_text(super().format(record), keep=LINES)


@dataclass
class App:
    config_path: str | None = None
    output: str = "text"
    no_input: bool = False
    no_color: bool = False
    verbose: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)
    #: The flag that set each override (for messages: "flag --concurrency").
    flags: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] | None = None

    @property
    def json(self) -> bool:
        return self.output == "json"

    @cached_property
    def settings(self) -> Settings:
        from pinmigrate.settings import load_settings

        settings = load_settings(
            config_path=self.config_path, env=self.env, overrides=self.overrides, flags=self.flags
        )
        redact.register(*settings.secret_values())
        return settings

    def use_flag(self, key: str, flag: str, value: Any) -> None:
        """A command flag that sets setting ``key`` (flags > environment > file > defaults).

        The one way flags become settings; a flag left unset (None) changes nothing.
        """
        if "settings" in self.__dict__:
            raise RuntimeError(f"{flag} was given after the settings were read")
        if value is not None:
            self.overrides[key] = value
            self.flags[key] = flag

    def _colour_off(self) -> bool:
        return self.no_color or "NO_COLOR" in os.environ

    @cached_property
    def out(self) -> Console:
        """stdout: the command's result (text or JSON), nothing else."""
        from pinmigrate.terminal import safe_console

        console = safe_console(no_color=self._colour_off(), highlight=False, soft_wrap=self.json)
        if not console.is_terminal and "COLUMNS" not in os.environ:
            # Piped: rich would wrap at 80 columns; lines and tables keep their own width.
            console.width = PIPE_WIDTH
        return console

    @cached_property
    def err(self) -> Console:
        """stderr: progress, notes and warnings."""
        from pinmigrate.terminal import safe_console

        return safe_console(
            stderr=True, no_color=self._colour_off(), highlight=False, soft_wrap=True
        )

    def stdin_is_tty(self) -> bool:
        try:
            return sys.stdin is not None and sys.stdin.isatty()
        except (ValueError, OSError):
            return False

    def can_prompt(self) -> bool:
        """True when a person can answer a prompt: not ``--no-input`` and stdin is a terminal."""
        return not self.no_input and self.stdin_is_tty()

    def confirm(
        self,
        question: str,
        *,
        yes: bool,
        what: str,
        instead: str = " (or a plan file)",
        hint: str | None = None,
    ) -> None:
        """Go ahead with ``--yes``; ask a person at a terminal; otherwise refuse (exit 5).

        JSON mode never asks: what is to be confirmed is not shown there, so a prompt would
        ask for a blind yes (terraform's ``-json`` likewise needs ``-auto-approve``). ``hint``
        replaces apply's advice when no one can be asked."""
        from pinmigrate.errors import ConfirmationError

        if yes:
            return
        if self.json:
            raise ConfirmationError(
                f"--output json needs --yes{instead}: JSON mode does not show what {what} "
                "would change, so there is nothing to confirm; nothing was changed",
                hint="pass --yes, or save a plan with `pinmigrate plan --out FILE` and apply FILE"
                if instead
                else "pass --yes, or run it in text mode to see it first",
            )
        if not self.can_prompt():
            raise ConfirmationError(
                f"{what} needs confirmation and this session cannot prompt "
                "(--no-input or no terminal on stdin); nothing was changed",
                hint=hint
                or "pass --yes, or save a plan with `pinmigrate plan --out FILE` and apply FILE",
            )
        import click

        if not click.confirm(question, default=False, err=True):
            raise ConfirmationError(f"{what} declined; nothing was changed")

    def print_json_parts(self, parts: Iterable[bytes]) -> None:
        """Write one JSON document, given as UTF-8 pieces, to stdout (large plans stream)."""
        stdout = sys.stdout
        stdout.flush()
        binary = getattr(stdout, "buffer", None)
        from pinmigrate.terminal import json_for_terminal

        # At a terminal, names from a server must not move the cursor or reorder lines.
        shown = bool(getattr(stdout, "isatty", lambda: False)())
        for part in parts:
            if shown:
                part = json_for_terminal(part.decode("utf-8")).encode("utf-8")
            if binary is None:
                stdout.write(part.decode("utf-8"))
            else:
                binary.write(part)
        (binary or stdout).flush()

    def print_json(self, payload: Any) -> None:
        """Write one JSON document to stdout."""
        sys.stdout.write(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
        sys.stdout.flush()

    def note(self, message: str) -> None:
        """A human note on stderr (suppressed in JSON mode only if it would confuse nobody)."""
        self.err.print(message, markup=False, highlight=False)

    def setup_logging(self) -> None:
        handler = logging.StreamHandler(sys.stderr)
        handler.addFilter(redact.RedactingFilter())
        handler.setFormatter(SafeFormatter("%(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger("pinmigrate")
        root.handlers[:] = [handler]
        root.propagate = False
        root.setLevel(logging.DEBUG if self.verbose else logging.WARNING)
