"""The command-line skin: global options, lazy dispatch, and the one top-level error handler.

Commands live in :mod:`pinmigrate.commands`, one module each, imported only when run so
that ``pinmigrate --help`` stays cheap.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from pinmigrate import __version__
from pinmigrate.app import App
from pinmigrate.errors import ExitCode, PinmigrateError

F = TypeVar("F", bound=Callable[..., Any])

#: name -> (module, one-line help shown by ``pinmigrate --help`` without importing it)
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("pinmigrate.commands.init", "Write a commented starter config file."),
    "doctor": ("pinmigrate.commands.doctor", "Check config, credentials, sandboxes and cards."),
    "discover": ("pinmigrate.commands.discover", "Show both cards' accounts, flows and pairing."),
    "plan": ("pinmigrate.commands.plan", "Dry run: show what apply would change."),
    "show": ("pinmigrate.commands.show", "Render a saved plan file."),
    "apply": ("pinmigrate.commands.apply", "Carry out a plan (a fresh one if no file is given)."),
    "rollback": ("pinmigrate.commands.rollback", "Undo the flow-state changes of a run."),
    "auth": ("pinmigrate.commands.auth", "Pinterest v5 OAuth: login, status, logout."),
    "emulator": ("pinmigrate.commands.emulator", "Serve the local Adobe + Pinterest emulator."),
    "demo": ("pinmigrate.commands.demo", "Run a whole migration against the embedded emulator."),
}

_GLOBALS_KEY = "pinmigrate.globals"


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Store a global option given at any level; the level nearest the command wins."""
    source = ctx.get_parameter_source(param.name or "")
    if source not in (ParameterSource.DEFAULT, None):
        ctx.meta.setdefault(_GLOBALS_KEY, {})[param.name] = value
    return value


def global_options(func: F) -> F:
    """Add the global options, so they are accepted before or after the command name."""
    options = [
        click.option(
            "--config",
            "config_path",
            envvar="PINMIGRATE_CONFIG",
            metavar="PATH",
            help="Config file (default ./pinmigrate.toml, then $XDG_CONFIG_HOME/pinmigrate).",
        ),
        click.option(
            "--output",
            type=click.Choice(["text", "json"]),
            envvar="PINMIGRATE_OUTPUT",
            help="Output format on stdout.",
        ),
        click.option("--no-input", is_flag=True, help="Never prompt; fail instead."),
        click.option("--no-color", is_flag=True, help="No colour (also NO_COLOR)."),
        click.option("-v", "--verbose", count=True, help="Log requests (secrets redacted)."),
    ]
    for option in reversed(options):
        func = option(func)
    for param in getattr(func, "__click_params__", []):
        if param.name in {"config_path", "output", "no_input", "no_color", "verbose"}:
            param.expose_value = False
            param.callback = _remember
            param.is_eager = True
    return func


def get_app(ctx: click.Context | None = None) -> App:
    """The App for this invocation, built from the global options seen so far."""
    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    app = root.obj
    if not isinstance(app, App):
        app = App()
        root.obj = app
    for name, value in ctx.meta.get(_GLOBALS_KEY, {}).items():
        if name == "verbose":
            app.verbose = max(app.verbose, int(value))
        else:
            setattr(app, name, value)
    app.setup_logging()
    return app


def pass_app(func: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: call the command with the App as first argument."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(get_app(), *args, **kwargs)

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


class LazyGroup(click.Group):
    """Imports a command's module only when that command runs (or its help is shown)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(entry[0])
        command: click.Command = module.command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, help_text) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="pinmigrate")
@global_options
def cli() -> None:
    """Migrate Adobe Real-Time CDP Pinterest destinations from the retired v4 card
    ("(Deprecating) Pinterest") to the v5 card, account by account and flow by flow.

    \b
    Typical session:
      pinmigrate doctor          check config and access
      pinmigrate auth login      reconnect Pinterest (v5 OAuth)
      pinmigrate plan --out p.json
      pinmigrate apply p.json

    Exit codes: 0 ok, 1 failed, 2 changes pending (plan --detailed-exitcode),
    3 stale plan, 4 authentication, 5 confirmation needed, 64 usage/config.
    """


def _verbose_requested(argv: list[str]) -> bool:
    return any(a == "--verbose" or (a.startswith("-v") and set(a[1:]) == {"v"}) for a in argv)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn every failure into one stderr line and an exit code."""
    from pinmigrate.terminal import guard_standard_streams

    args = list(sys.argv[1:] if argv is None else argv)
    # A closed pipe or a full disk stops the output, never the work (terminal.py).
    out, err = guard_standard_streams()
    relax_garbage_collection()
    code = run(args)
    out.flush()
    err.flush()
    sys.exit(code)


def relax_garbage_collection() -> None:
    """Collect cycles less often: a process-wide setting, so only the entry point makes it.

    Discovery decodes tens of thousands of JSON objects into short-lived dicts. At the
    default threshold (a pass every 700 new containers) the cyclic collector ran thousands
    of times and re-walked every live object on each full pass: 4 s of a 15 s ``plan`` of
    40,000 flows (docs/performance.md). Nothing pinmigrate builds relies on prompt cycle
    collection; the memory it holds is what it reads, not garbage.
    """
    import gc

    # What start-up imported lives as long as the process: keep it out of every pass.
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 100)


#: New containers between two passes of the youngest generation (CPython's default: 700).
GC_THRESHOLD = 50_000


def run(args: list[str]) -> int:
    try:
        result = cli.main(args=args, prog_name="pinmigrate", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("pinmigrate: aborted", err=True)
        return 130
    except click.ClickException as exc:
        # Usage errors (bad flag, missing argument) are exit 64, never click's 2.
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            # A bare `pinmigrate` (or `pinmigrate auth`) asks for help, as in gh and kubectl.
            click.echo(ctx.get_help())
            return ExitCode.OK
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        click.echo(f"pinmigrate: {exc.format_message()}{hint}", err=True)
        return ExitCode.USAGE
    except PinmigrateError as exc:
        from pinmigrate.redact import redact
        from pinmigrate.terminal import LINES, safe_text

        if _verbose_requested(args):
            import traceback

            click.echo(safe_text(redact(traceback.format_exc()), keep=LINES), err=True)
        click.echo(f"pinmigrate: {safe_text(redact(exc.line()))}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("pinmigrate: interrupted", err=True)
        return 130
    except BrokenPipeError:
        return ExitCode.FAILED
    except Exception as exc:  # noqa: BLE001 - the last line of defence: never a bare traceback
        from pinmigrate.redact import redact
        from pinmigrate.terminal import LINES, safe_text

        if _verbose_requested(args):
            import traceback

            click.echo(safe_text(redact(traceback.format_exc()), keep=LINES), err=True)
        click.echo(
            f"pinmigrate: internal error: {type(exc).__name__}: {safe_text(redact(str(exc)))} "
            "(rerun with -v for details)",
            err=True,
        )
        return ExitCode.FAILED
    # A command may return its exit code (plan --detailed-exitcode returns 2).
    return result if isinstance(result, int) else ExitCode.OK
