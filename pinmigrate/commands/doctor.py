"""``pinmigrate doctor``: check config, Adobe access, both cards, the Pinterest app and logins.

One line per check, each printed as soon as it is known. Only reads: it never refreshes a
Pinterest token (that would rotate it) and never writes a file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import click

from pinmigrate.app import App
from pinmigrate.cli import global_options, pass_app
from pinmigrate.errors import (
    AuthError,
    ConfigError,
    ExitCode,
    PinmigrateError,
)

if TYPE_CHECKING:
    from pinmigrate.adobe import AdobeClient
    from pinmigrate.inventory import Card
    from pinmigrate.settings import Settings

Status = Literal["ok", "warn", "fail"]
#: Makes the Adobe client the checks talk through (tests pass one whose retries do not sleep).
AdobeFactory = Callable[["Settings"], "AdobeClient"]
SYMBOLS: dict[str, tuple[str, str]] = {
    "ok": ("✓", "green"),
    "warn": ("!", "yellow"),
    "fail": ("✗", "red"),
}


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    #: exit code this failure stands for (config 64, auth 4, else 1); None unless failed
    code: int | None = None

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


def ok(name: str, detail: str) -> Check:
    return Check(name, "ok", detail)


def warn(name: str, detail: str) -> Check:
    return Check(name, "warn", detail)


def fail(name: str, error: PinmigrateError | str, code: int | None = None) -> Check:
    if isinstance(error, PinmigrateError):
        from pinmigrate.redact import redact

        return Check(name, "fail", redact(error.line()), code or error.exit_code)
    return Check(name, "fail", error, code or ExitCode.FAILED)


class Doctor:
    """Runs the checks in order; later checks are skipped when what they need is missing."""

    def __init__(
        self, app: App, report: Callable[[Check], None], *, adobe_client: AdobeFactory
    ) -> None:
        self.app = app
        self.report = report
        self.adobe_client = adobe_client
        self.checks: list[Check] = []

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        self.report(check)
        return check

    def run(self) -> list[Check]:
        settings = self.config()
        if settings is None:
            return self.checks
        # init's placeholders would only send a made-up org and client to IMS.
        adobe = None if settings.placeholders() else self.adobe_token(settings)
        if adobe is not None:
            reachable = [s for s in settings.adobe.sandboxes if self.sandbox(adobe, s)]
            for sandbox in reachable or settings.adobe.sandboxes[:1]:
                self.card(adobe, settings, "legacy", sandbox)
                self.card(adobe, settings, "new", sandbox)
        self.reconnect(settings)
        self.pinterest_app(settings)
        self.logins(settings)
        return self.checks

    # --- the checks ----------------------------------------------------------------------

    def config(self) -> Settings | None:
        try:
            settings = self.app.settings
        except PinmigrateError as exc:
            self.add(fail("config", exc))
            return None
        if settings.config_path is not None:
            where = f"loaded from {settings.config_path}"
        else:
            from pinmigrate.settings import no_config_file

            where = f"{no_config_file()}: environment and defaults; `pinmigrate init` writes one"
        from_env = sum(1 for source in settings.sources.values() if source.startswith("environ"))
        if from_env:
            where += f", {from_env} setting{'s' if from_env != 1 else ''} from the environment"
        self.add(ok("config", where))
        for key in settings.placeholders():
            self.add(
                fail(
                    key,
                    f"still holds the placeholder {settings.value_of(key)!r} that "
                    f"`pinmigrate init` wrote (from {settings.source_of(key)}); set your own",
                    ExitCode.USAGE,
                )
            )
        return settings

    def adobe_token(self, settings: Settings) -> AdobeClient | None:
        name = "adobe credentials"
        try:
            settings.require_adobe()
        except ConfigError as exc:
            self.add(fail(name, exc))
            return None
        client = self.adobe_client(settings)
        try:
            client.token()
        except PinmigrateError as exc:
            self.add(fail(name, exc))
            return None
        adobe = settings.adobe
        self.add(ok(name, f"IMS issued a token for client {adobe.client_id} ({adobe.ims_url})"))
        return client

    def sandbox(self, adobe: AdobeClient, sandbox: str) -> bool:
        name = f"sandbox {sandbox}"
        try:
            # One page of at most one flow: proof of access without reading the sandbox.
            next(iter(adobe.list("flows", sandbox=sandbox, params={"limit": "1"})), None)
        except PinmigrateError as exc:
            self.add(fail(name, exc))
            return False
        self.add(ok(name, f"reachable at {adobe.settings.adobe.platform_url}"))
        return True

    def card(self, adobe: AdobeClient, settings: Settings, which: Card, sandbox: str) -> None:
        from pinmigrate.cards import LegacyCardGone, find_card, spec_by_id

        name = f"{which} card in {sandbox}"
        spec_key = f"migration.{which}_spec_id"
        try:
            spec = find_card(adobe, settings, which, sandbox)
            if spec.name is None:
                found = spec_by_id(adobe, which, spec.id, sandbox)
                shown = found.get("name") or "?"
                self.add(ok(name, f"{shown} = {spec.id} (from {spec_key})"))
                return
        except LegacyCardGone as gone:
            self.add(warn(name, gone.message))
            return
        except PinmigrateError as exc:
            self.add(fail(name, exc))
            return
        self.add(ok(name, f"{spec.name} = {spec.id}"))

    def reconnect(self, settings: Settings) -> None:
        name = "reconnect"
        if settings.migration.reconnect_via == "api":
            self.add(
                warn(
                    name,
                    'reconnect_via = "api": experimental, Adobe documents no API that writes '
                    'Pinterest credentials into an account; the default "adobe" has a person '
                    "press Reconnect OAuth in Adobe",
                )
            )
            return
        self.add(
            ok(
                name,
                "by a person in Adobe (Reconnect OAuth); apply names the accounts and opens "
                f"{settings.adobe.ui_url}",
            )
        )

    def pinterest_app(self, settings: Settings) -> None:
        name = "pinterest app"
        pin = settings.pinterest
        missing = [key for key in ("app_id", "app_secret") if getattr(pin, key) is None]
        if missing and settings.migration.reconnect_via != "api" and pin.access_token is None:
            keys = " and ".join(f"pinterest.{key}" for key in missing)
            self.add(
                warn(
                    name,
                    f"{keys} not set: optional; `pinmigrate auth login` needs it for the "
                    "pre-flight (which Pinterest user reaches which ad account)",
                )
            )
            return
        if missing:
            keys = " and ".join(f"pinterest.{key}" for key in missing)
            if pin.access_token is not None:
                self.add(
                    warn(
                        name,
                        f"{keys} not set: only pinterest.access_token can be used (no "
                        "browser login, no refresh)",
                    )
                )
                return
            try:
                settings.require_pinterest_app()
            except ConfigError as exc:
                self.add(
                    fail(name, f"{exc.line()} (needed for `pinmigrate auth login`)", ExitCode.USAGE)
                )
            return
        self.add(ok(name, f"app {pin.app_id}, redirect {pin.redirect_uri} (loopback)"))

    def logins(self, settings: Settings) -> None:
        name = "logins"
        path = Path(settings.state_dir) / "logins.json"
        env_login = [
            f"pinterest.{key}"
            for key in ("refresh_token", "access_token")
            if getattr(settings.pinterest, key) is not None
        ]
        also = f"; {' and '.join(env_login)} set" if env_login else ""
        try:
            summaries = _stored_logins(Path(settings.state_dir))
        except PinmigrateError as exc:
            self.add(fail(name, exc))
            return
        if not summaries:
            if env_login:
                self.add(ok(name, f"no stored login yet{also} (verified by plan and apply)"))
            else:
                self.add(
                    warn(
                        name,
                        f"no login stored yet in {path.parent}; optional: `pinmigrate auth "
                        "login` lets plan check that a Pinterest user reaches every ad account",
                    )
                )
            return
        expired = [label for label, is_expired in summaries if is_expired]
        listed = ", ".join(label for label, _ in summaries)
        count = f"{len(summaries)} stored: {listed}{also}"
        if expired and len(expired) == len(summaries) and not env_login:
            self.add(warn(name, f"{count}; every one has expired: run `pinmigrate auth login`"))
        elif expired:
            self.add(warn(name, f"{count}; expired: {', '.join(expired)}"))
        else:
            self.add(ok(name, count))


def _stored_logins(state_dir: Path) -> list[tuple[str, bool]]:
    """``(label, expired)`` per stored login (read only: no lock, no write)."""
    from pinmigrate.logins import LoginStore

    now = datetime.now(UTC)
    result = []
    for login in LoginStore(state_dir).load():
        expiry = login.credential_expiry()
        label = login.username or login.user_id
        if expiry is not None:
            label = f"{label}, until {expiry.date().isoformat()}"
        result.append((label, expiry is not None and expiry <= now))
    return result


def exit_code_of(checks: list[Check]) -> int:
    """0 when nothing failed; else the most relevant failure: config 64, then auth 4, then 1."""
    codes = {check.code for check in checks if check.status == "fail"}
    if not codes:
        return ExitCode.OK
    for code in (ExitCode.USAGE, ExitCode.AUTH):
        if code in codes:
            return code
    return ExitCode.FAILED


def _print_line(app: App, check: Check) -> None:
    from rich.text import Text

    symbol, colour = SYMBOLS[check.status]
    line = Text()
    line.append(symbol, style=colour)
    line.append(f" {check.name}: ", style="bold")
    line.append(check.detail)
    app.out.print(line, highlight=False, soft_wrap=True)


def real_adobe_client(settings: Settings) -> AdobeClient:
    """The Adobe client of a real run (imported only once the config is known to be good)."""
    from pinmigrate.adobe import AdobeClient

    return AdobeClient(settings)


def doctor(app: App, *, adobe_client: AdobeFactory) -> int:
    """Run the checks, print them (lines or JSON) and raise one error if any failed."""
    report: Callable[[Check], None]
    report = (lambda _check: None) if app.json else (lambda check: _print_line(app, check))
    checks = Doctor(app, report, adobe_client=adobe_client).run()
    code = exit_code_of(checks)
    if app.json:
        app.print_json(
            {
                "schema_version": 1,
                "kind": "pinmigrate.doctor",
                "ok": code == ExitCode.OK,
                "checks": [check.as_json() for check in checks],
            }
        )
    failed = [check for check in checks if check.status == "fail"]
    if failed:
        # One stderr line: which checks failed, and the words of the one that sets the code.
        names = ", ".join(check.name for check in failed)
        first = next((check for check in failed if check.code == code), failed[0])
        noun = "check" if len(failed) == 1 else "checks"
        message = f"doctor: {len(failed)} {noun} failed ({names}); {first.name}: {first.detail}"
        error: type[PinmigrateError] = {
            ExitCode.USAGE: ConfigError,
            ExitCode.AUTH: AuthError,
        }.get(code, PinmigrateError)
        raise error(message)
    return ExitCode.OK


@click.command("doctor")
@global_options
@pass_app
def command(app: App) -> int:
    """Check config, the Adobe token, each sandbox, both cards, the Pinterest app and logins.

    One line per check. A warning (e.g. no login stored yet) does not fail the run.
    Exit 0 when no check failed; otherwise 64 (config), 4 (authentication) or 1.
    """
    return doctor(app, adobe_client=real_adobe_client)
