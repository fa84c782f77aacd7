"""``pinmigrate auth login|status|logout``: Pinterest v5 OAuth logins in the local store.

Output never holds a token: only users, ad accounts, scopes and expiries.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from pinmigrate.app import App
from pinmigrate.cli import global_options, pass_app
from pinmigrate.errors import AuthError, UsageError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pinmigrate.logins import Login, LoginStore
    from pinmigrate.settings import Settings

#: What the stored logins are for, said by `auth status`.
LOGIN_PURPOSE = (
    "These logins serve plan's pre-flight: which Pinterest user reaches which ad account. "
    "The new card's accounts are reconnected by a person in Adobe (Reconnect OAuth)."
)


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment is not None else None


def _in(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 2 * 86400:
        return f"{seconds // 86400} days"
    if seconds >= 7200:
        return f"{seconds // 3600} hours"
    return f"{max(seconds // 60, 0)} minutes"


def _relative(moment: datetime, now: datetime) -> str:
    return f"in {_in(moment - now)}" if moment > now else f"{_in(now - moment)} ago"


def login_warnings(
    login: Login, *, now: datetime, margin_days: int, required_scopes: Sequence[str]
) -> list[str]:
    """What needs the operator's attention about a login (expiry within the margin, scopes)."""
    warnings: list[str] = []
    margin = timedelta(days=margin_days)
    renew = "run `pinmigrate auth login` to renew it"
    if login.refresh_token is not None:
        expiry = login.refresh_expires_at
        if expiry is not None and expiry <= now:
            warnings.append(f"its refresh token expired {_relative(expiry, now)}: {renew}")
        elif expiry is not None and expiry - now <= margin:
            warnings.append(
                f"its refresh token expires {_relative(expiry, now)}, within "
                f"migration.reconnect_margin_days ({margin_days}): {renew}"
            )
    else:
        expiry = login.access_expires_at
        if expiry is not None and expiry <= now:
            warnings.append(
                f"its access token expired {_relative(expiry, now)} and cannot be refreshed: "
                f"{renew}"
            )
        elif expiry is not None and expiry - now <= margin:
            warnings.append(
                f"its access token expires {_relative(expiry, now)} and cannot be refreshed: "
                f"{renew}"
            )
    if login.scopes:
        missing = [s for s in required_scopes if s not in login.scopes]
        if missing:
            warnings.append(f"it lacks the scope(s) {', '.join(missing)}: {renew}")
    return warnings


def login_summary(
    login: Login, settings: Settings, *, now: datetime, environment: bool = False
) -> dict[str, Any]:
    """A login as JSON, without its tokens."""
    return {
        "user_id": login.user_id,
        "username": login.username,
        "source": login.source,
        "environment": environment,
        "ad_accounts": [
            {"id": a.id, "name": a.name, "permissions": list(a.permissions)}
            for a in login.ad_accounts
        ],
        "scopes": list(login.scopes),
        "access_expires_at": _when(login.access_expires_at),
        "refresh_expires_at": _when(login.refresh_expires_at),
        "can_refresh": login.refresh_token is not None,
        "created_at": _when(login.created_at),
        "warnings": login_warnings(
            login,
            now=now,
            margin_days=settings.migration.reconnect_margin_days,
            required_scopes=settings.pinterest.scopes,
        ),
    }


def _text_lines(summary: dict[str, Any], now: datetime) -> list[str]:
    user = summary["username"] or summary["user_id"]
    label = f"{user} ({summary['user_id']})" if summary["username"] else user
    origin = "the environment's token" if summary["environment"] else f"{summary['source']} login"
    lines = [f"{label}, from {origin}"]
    accounts = summary["ad_accounts"]
    lines.append(f"  ad accounts ({len(accounts)}):" if accounts else "  ad accounts: none")
    for account in accounts:
        permissions = ", ".join(account["permissions"]) or "no permissions listed"
        name = f"  {account['name']}" if account["name"] else ""
        lines.append(f"    {account['id']}{name}  [{permissions}]")
    lines.append(f"  scopes: {', '.join(summary['scopes']) or 'not reported'}")
    for key, what in (("access_expires_at", "access token"), ("refresh_expires_at", "refresh")):
        value = summary[key]
        if key == "refresh_expires_at" and not summary["can_refresh"]:
            lines.append("  refresh: not possible (made from an access token)")
            continue
        if value is None:
            lines.append(f"  {what}: expiry not reported")
            continue
        moment = datetime.fromisoformat(value)
        verb = "expires" if moment > now else "expired"
        lines.append(f"  {what} {verb} {value} ({_relative(moment, now)})")
    lines.extend(f"  ! {warning}" for warning in summary["warnings"])
    return lines


def _store(settings: Settings) -> LoginStore:
    from pinmigrate.logins import LoginStore

    return LoginStore(settings.state_dir)


@click.group("auth")
@global_options
def command() -> None:
    """Your own Pinterest v5 login: log in, show and forget the logins pinmigrate stores.

    The login is optional. It powers the pre-flight: plan checks that its Pinterest user
    reaches every ad account of each account to reconnect, with a permission that can
    manage audiences. The accounts themselves are reconnected by a person in Adobe
    (Reconnect OAuth); this login is never handed to Adobe.

    \b
    pinmigrate auth login                 browser login (loopback redirect)
    pinmigrate auth login --no-browser    open the URL anywhere, paste where it led
    pinmigrate auth login --with-token    read a token (or token JSON) from stdin
    pinmigrate auth status                users, ad accounts, scopes, expiries
    pinmigrate auth logout [USER]         forget a stored login

    In CI set PINMIGRATE_PINTEREST_REFRESH_TOKEN (or _ACCESS_TOKEN): no prompt is needed.
    """


@command.command("login")
@click.option(
    "--no-browser",
    is_flag=True,
    help="Do not open a browser: print the URL and read the address it led to (or the code); "
    "a bad paste is asked for again, three tries in all.",
)
@click.option(
    "--with-token",
    is_flag=True,
    help="Read an access token, or the token endpoint's JSON, from stdin.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for the browser to come back.",
)
@global_options
@pass_app
def login_command(app: App, no_browser: bool, with_token: bool, timeout: float) -> None:
    """Log in to Pinterest (v5 OAuth), verify the grant and store it.

    The browser is opened with Python's webbrowser module, so BROWSER is honoured. It is
    given a one-time address on the loopback listener that redirects to Pinterest, and an
    environment without pinmigrate's secrets; the Pinterest URL itself is printed on stderr.
    Answers on the listener whose state is wrong are ignored until the timeout. With
    PINMIGRATE_PINTEREST_REFRESH_TOKEN or PINMIGRATE_PINTEREST_ACCESS_TOKEN set (and no
    other flag), that token is used.
    """
    from pinmigrate.oauth.grants import pinterest_client, utcnow
    from pinmigrate.oauth.resolvers import resolver_for

    if no_browser and with_token:
        raise UsageError("--no-browser and --with-token cannot be combined")
    settings = app.settings
    store = _store(settings)
    resolver = resolver_for(app, settings, store, pinterest_client(settings))
    token_text = sys.stdin.read() if with_token else None
    login = resolver.login(no_browser=no_browser, token_text=token_text, timeout=timeout)
    summary = login_summary(
        login, settings, now=utcnow(), environment=login.source == "environment"
    )
    if app.json:
        app.print_json(
            {
                "schema_version": 1,
                "kind": "pinmigrate.auth.login",
                "store": str(store.path),
                "login": summary,
            }
        )
    else:
        count = len(login.ad_accounts)
        app.note(
            f"Logged in to Pinterest as {login.label} with {count} ad account"
            f"{'' if count == 1 else 's'}; saved in {store.path}."
        )
    for warning in summary["warnings"]:
        app.note(f"warning: {login.label}: {warning}")


@command.command("status")
@global_options
@pass_app
def status_command(app: App) -> None:
    """Show stored Pinterest logins and the environment's login (never a token).

    They serve plan's pre-flight: which Pinterest user reaches which ad account.

    Warns about logins that expire within migration.reconnect_margin_days. When
    PINMIGRATE_PINTEREST_REFRESH_TOKEN or _ACCESS_TOKEN is set, its login is verified and
    stored like any other.

    Exits 4 (authentication) when no usable login remains: none is stored, or every one
    has expired beyond refresh. The logins are listed first either way.
    """
    from pinmigrate.oauth.grants import (
        environment_login,
        has_environment_token,
        pinterest_client,
        utcnow,
    )

    settings = app.settings
    store = _store(settings)
    env_error: AuthError | None = None
    env_user: str | None = None
    if has_environment_token(settings):
        try:
            env = environment_login(
                settings, store, pinterest_client(settings), now=utcnow(), notify=app.note
            )
            env_user = env.user_id if env is not None else None
        except AuthError as exc:
            env_error = exc
    now = utcnow()
    logins = store.load()
    summaries = [
        login_summary(lg, settings, now=now, environment=lg.user_id == env_user) for lg in logins
    ]
    if app.json:
        app.print_json(
            {
                "schema_version": 1,
                "kind": "pinmigrate.auth.status",
                "store": str(store.path),
                "purpose": LOGIN_PURPOSE,
                "logins": summaries,
            }
        )
    elif not summaries:
        app.out.print(
            f"No Pinterest login stored in {store.path}. It is optional: "
            f"{LOGIN_PURPOSE} Run `pinmigrate auth login` to add one.",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    else:
        lines = [f"Pinterest logins stored in {store.path}:"]
        for summary in summaries:
            lines.append("")
            lines.extend(_text_lines(summary, now))
        lines += ["", LOGIN_PURPOSE]
        app.out.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)
    if env_error is not None:
        raise env_error
    if not any(login.usable_at(now) for login in logins):
        held = ", ".join(login.label for login in logins)
        raise AuthError(
            f"no usable Pinterest login: every stored one has expired beyond refresh ({held})"
            if logins
            else f"no usable Pinterest login: none is stored in {store.path}",
            hint="run `pinmigrate auth login` (optional: only plan's pre-flight needs it)",
        )


@command.command("logout")
@click.argument("user", required=False)
@global_options
@pass_app
def logout_command(app: App, user: str | None) -> None:
    """Forget the stored login of USER (a Pinterest user id or username).

    Without USER, the only stored login is forgotten. With nothing stored, it says so and
    exits 0. Pinterest keeps honouring its tokens
    until they expire: revoke pinmigrate's access in Pinterest's settings to end them now.
    """
    settings = app.settings
    store = _store(settings)
    # A write killed half way leaves a temp copy of the store, tokens and all: gone now too.
    store.remove_temps()
    logins = store.load()
    listed = ", ".join(lg.label for lg in logins) or "none"
    if not logins:
        if app.json:
            app.print_json(
                {
                    "schema_version": 1,
                    "kind": "pinmigrate.auth.logout",
                    "store": str(store.path),
                    "removed": [],
                }
            )
        else:
            app.note(f"No Pinterest login is stored in {store.path}; nothing to forget.")
        return
    if user is None:
        if len(logins) > 1:
            raise UsageError(
                f"{len(logins)} Pinterest logins are stored ({listed}); say which one to forget",
                hint="pinmigrate auth logout USER (a user id or username)",
            )
        target = logins[0]
    else:
        matches = store.find(user)
        if not matches:
            raise UsageError(
                f"no stored Pinterest login for {user!r} (stored: {listed})",
                hint="pass a user id or username shown by `pinmigrate auth status`",
            )
        target = matches[0]
    store.remove(target.user_id)
    if app.json:
        app.print_json(
            {
                "schema_version": 1,
                "kind": "pinmigrate.auth.logout",
                "store": str(store.path),
                "removed": [{"user_id": target.user_id, "username": target.username}],
            }
        )
    else:
        app.note(f"Forgot the Pinterest login of {target.label} (removed from {store.path}).")
    if target.source == "environment":
        app.note(
            "It comes back at the next command while PINMIGRATE_PINTEREST_REFRESH_TOKEN or "
            "PINMIGRATE_PINTEREST_ACCESS_TOKEN is set."
        )
