"""``pinmigrate emulator``: serve the local Adobe + Pinterest emulator until Ctrl-C."""

from __future__ import annotations

import errno
import shlex
import signal
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from pinmigrate.app import App
from pinmigrate.cli import global_options, pass_app
from pinmigrate.errors import PinmigrateError, UsageError
from pinmigrate.settings import is_loopback_host

if TYPE_CHECKING:
    from pinmigrate.emulator import Emulator


def serve_until_interrupted(emulator: Emulator) -> None:
    """Block until Ctrl-C or SIGTERM; tests replace this to return at once."""
    stop = threading.Event()
    previous: Any = None
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        # SIGTERM (docker stop, kill) ends the emulator as cleanly as Ctrl-C does.
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if in_main and previous is not None:
            signal.signal(signal.SIGTERM, previous)


#: Replaced in tests; the command calls whatever is here.
wait: Callable[[Emulator], None] = serve_until_interrupted


@click.command("emulator")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Loopback address to listen on (the emulator holds fake secrets).",
)
@click.option(
    "--port",
    default=0,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on; 0 (the default) picks a free one, printed first with the "
    "export lines. Give one to keep the same URLs across restarts.",
)
@click.option(
    "--scenario",
    default="demo",
    show_default=True,
    metavar="NAME",
    help="World to serve: demo, empty or scale:N, with +options, e.g. demo+strict+next-query. "
    "Options: +strict (no-op flow actions answer 400 1409-400); next links +next-position "
    "(the default) or +next-query; cards +draft-names, +no-legacy-card, +renamed-legacy-card; "
    "expiry shapes +expiry-ms, +expiration-date, +expires-in, +no-expiry. Each serves one "
    "reading of what Adobe or Pinterest leave unconfirmed: see docs/emulator.md.",
)
@click.option(
    "--latency-ms",
    default=0.0,
    type=click.FloatRange(min=0),
    metavar="N",
    help="Added latency per API request, in milliseconds.",
)
@click.option(
    "--faults",
    "fault_spec",
    metavar="SPEC",
    help="Injected faults, e.g. 429=0.2,5xx=0.1,drop=0.05,jitter=20,seed=1 "
    "(also latency=MS, retry_after=SECONDS).",
)
@click.option(
    "--rate-limit",
    "rate_limit_specs",
    multiple=True,
    metavar="SPEC",
    help="A token-bucket rate limit on one service (repeatable): "
    "SERVICE=RATE/s[:burst=N][:retry-after=seconds|date|none][:scope=all|writes], e.g. "
    "flowservice=50/s or 'pinterest=100/s:burst=10:scope=writes'. SERVICE: flowservice, "
    "pinterest or ims; burst defaults to one second's worth; a request that finds no token "
    "is answered 429 at once.",
)
@click.option(
    "--page-size",
    default=100,
    show_default=True,
    type=click.IntRange(1, 1000),
    metavar="N",
    help="Largest Flow Service page served.",
)
@click.option(
    "--auto-approve",
    is_flag=True,
    help="Approve OAuth consent at once for the default user (no browser clicks).",
)
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    metavar="URI",
    help="Register one more OAuth redirect URI on pinmigrate's Pinterest app (repeatable). "
    "Like Pinterest, the consent page takes only registered URIs, matched exactly; "
    "http://localhost:8085/ (pinmigrate's default) is always registered.",
)
@global_options
@pass_app
def command(
    app: App,
    host: str,
    port: int,
    scenario: str,
    latency_ms: float,
    fault_spec: str | None,
    rate_limit_specs: tuple[str, ...],
    page_size: int,
    auto_approve: bool,
    redirect_uris: tuple[str, ...],
) -> None:
    """Serve the local emulator of Adobe IMS, Flow Service and Pinterest v5.

    One port serves every service. On start it prints its URL, the
    `export PINMIGRATE_...` lines that point pinmigrate at it and the
    `adobe.ui_url` of its Adobe account pages (stdout), then serves until Ctrl-C.
    Inspect and steer it under /_emulator/ (state, reset, faults, rate-limits, requests,
    config),
    e.g. `curl -s URL/_emulator/state?summary=true`.
    """
    from pinmigrate.emulator import Emulator
    from pinmigrate.emulator.limits import rate_limits_from
    from pinmigrate.emulator.scenarios import parse_scenario
    from pinmigrate.emulator.state import parse_fault_spec

    if not is_loopback_host(host):
        raise UsageError(
            f"--host {host} is not a loopback address",
            hint="the emulator accepts fake credentials and must not be reachable from other "
            "machines; use 127.0.0.1, ::1 or localhost",
        )
    try:
        parse_scenario(scenario)
    except ValueError as exc:
        raise UsageError(f"--scenario: {exc}") from None
    try:
        faults = parse_fault_spec(fault_spec) if fault_spec else None
    except ValueError as exc:
        raise UsageError(f"--faults: {exc}") from None
    try:
        rate_limits = rate_limits_from(rate_limit_specs)
    except ValueError as exc:
        raise UsageError(f"--rate-limit: {exc}") from None

    try:
        emulator = Emulator(
            scenario=scenario,
            host=host,
            port=port,
            latency_ms=latency_ms,
            faults=faults,
            page_size=page_size,
            auto_approve=auto_approve,
            redirect_uris=redirect_uris,
            rate_limits=rate_limits,
            verbose=app.verbose > 0,
        )
    except ValueError as exc:
        raise UsageError(f"--redirect-uri: {exc}") from None
    try:
        emulator.start()
    except OSError as exc:
        in_use = exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1))
        reason = "is already in use" if in_use else f"failed: {exc.strerror}"
        raise PinmigrateError(
            f"cannot listen on {host}:{port}: the port {reason}",
            hint="pick another with --port (0 picks a free one)",
        ) from None
    try:
        _announce(app, emulator, scenario)
        wait(emulator)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how one stops it: a clean exit, not an abort
    finally:
        emulator.stop()
    app.note("emulator stopped")


def _announce(app: App, emulator: Emulator, scenario: str) -> None:
    env = emulator.env()
    if app.json:
        app.print_json(
            {
                "schema_version": 1,
                "kind": "pinmigrate.emulator",
                "url": emulator.url,
                "port": emulator.port,
                "scenario": scenario,
                "sandboxes": emulator.state.sandboxes,
                "env": env,
                "ui_url": emulator.ui_url,
            }
        )
    else:
        lines = [
            f"# pinmigrate emulator: {emulator.url} (port {emulator.port}, scenario {scenario}); "
            "Ctrl-C stops it"
        ]
        lines += [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
    app.note(
        f"Serving {emulator.url} (scenario {scenario}, sandboxes "
        f"{', '.join(emulator.state.sandboxes)}). Control API: {emulator.url}/_emulator/ . "
        f"Adobe's account pages: {emulator.url}/ui/ (PINMIGRATE_ADOBE_UI_URL above). "
        "Pinterest's consent page takes only the redirect URIs registered on pinmigrate's app: "
        f"{', '.join(emulator.redirect_uris())} (more with --redirect-uri). Ctrl-C to stop."
    )
