"""``pinmigrate demo``: a whole migration against the embedded emulator, narrated.

The emulator runs in this process on a free loopback port; settings are built from the
emulator alone (never the user's config file or ``PINMIGRATE_*`` variables) and every file
goes to a temporary state dir that is deleted at the end. The Pinterest login is the real
browser flow, except that the "browser" is a request this process makes itself: the
emulator's consent page approves at once and redirects to the loopback listener.
"""

from __future__ import annotations

import socket
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pinmigrate.actions import ReconnectAccount
from pinmigrate.app import App
from pinmigrate.cli import global_options, pass_app
from pinmigrate.errors import ApplyFailed, PinmigrateError

if TYPE_CHECKING:
    from pinmigrate.apply import ApplyReport
    from pinmigrate.apply.reconnects import PersonReconnect
    from pinmigrate.emulator import Emulator
    from pinmigrate.inventory import Inventory
    from pinmigrate.settings import Settings

NEXT_STEPS = (
    "pinmigrate init",
    "edit pinmigrate.toml (Adobe org, client id and sandboxes; optionally a Pinterest app)",
    "export PINMIGRATE_ADOBE_CLIENT_SECRET=...",
    "pinmigrate doctor",
    "pinmigrate auth login   (optional: the pre-flight)",
    "pinmigrate plan --out plan.json",
    "pinmigrate apply plan.json   (reconnect the accounts it names in Adobe meanwhile)",
)


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def demo_settings(emulator: Emulator, state_dir: Path, redirect_port: int) -> Settings:
    """Settings that point only at the emulator; nothing read from the user's environment."""
    from pinmigrate.settings import (
        AdobeSettings,
        MigrationSettings,
        PinterestSettings,
        Settings,
    )

    env = emulator.env()
    return Settings(
        adobe=AdobeSettings(
            org_id=env["PINMIGRATE_ADOBE_ORG_ID"],
            client_id=env["PINMIGRATE_ADOBE_CLIENT_ID"],
            client_secret=env["PINMIGRATE_ADOBE_CLIENT_SECRET"],
            ims_url=env["PINMIGRATE_ADOBE_IMS_URL"],
            platform_url=env["PINMIGRATE_ADOBE_PLATFORM_URL"],
            ui_url=env["PINMIGRATE_ADOBE_UI_URL"],
            sandboxes=env["PINMIGRATE_ADOBE_SANDBOXES"],
        ),
        pinterest=PinterestSettings(
            app_id=env["PINMIGRATE_PINTEREST_APP_ID"],
            app_secret=env["PINMIGRATE_PINTEREST_APP_SECRET"],
            oauth_url=env["PINMIGRATE_PINTEREST_OAUTH_URL"],
            api_url=env["PINMIGRATE_PINTEREST_API_URL"],
            # Registered on the emulator's app: its consent page takes no other URI.
            redirect_uri=emulator.register_redirect_uri(f"http://127.0.0.1:{redirect_port}/"),
        ),
        migration=MigrationSettings(),
        state_dir=state_dir,
    )


def robot_browser(errors: list[str]) -> Callable[[str], bool]:
    """Stands in for ``webbrowser.open``: fetch the consent page, follow it to the listener."""

    def fetch(url: str) -> None:
        import requests

        try:
            requests.get(url, timeout=30, allow_redirects=True)
        except requests.RequestException as exc:
            errors.append(str(exc))

    def open_url(url: str) -> bool:
        # In a thread: the listener answers the redirect only once the login completes.
        threading.Thread(target=fetch, args=(url,), name="demo-browser", daemon=True).start()
        return True

    return open_url


#: How long the demo's apply waits for its stand-in person (who acts at once).
DEMO_RECONNECT_TIMEOUT = 60.0


def stand_in_person(
    narrator: Narrator, done: list[str]
) -> Callable[[Sequence[PersonReconnect]], None]:
    """What apply asks of a person, done by the demo: press Reconnect OAuth on each page."""
    from pinmigrate.emulator.person import ReconnectError, reconnect_via_ui

    def ask(requests: Sequence[PersonReconnect]) -> None:
        for request in requests:
            narrator.say(f"  apply asks: {request.line}")
        for request in requests:
            try:
                reconnect_via_ui(request.page, timeout=30)
            except ReconnectError as exc:
                narrator.say(f"  the stand-in could not reconnect it: {exc}")
                continue
            done.append(request.action.target_id)
            narrator.say(
                f"  reconnected {request.action.target_name!r} on its Adobe page (Reconnect OAuth)"
            )

    return ask


@dataclass
class Narrator:
    """Numbered steps on stdout in text mode; silent in JSON mode (the summary is printed)."""

    app: App
    step: int = 0

    def heading(self, text: str) -> None:
        self.step += 1
        if not self.app.json:
            self.app.out.print()
            self.app.out.print(f"{self.step}. {text}", style="bold", markup=False, soft_wrap=True)

    def say(self, text: str) -> None:
        if not self.app.json:
            self.app.out.print(f"   {text}", markup=False, highlight=False, soft_wrap=True)


def _counts(inventory: Inventory, now: datetime, margin_days: int) -> dict[str, int]:
    from datetime import timedelta

    from pinmigrate.planner import needs_reconnect

    flows = [f for sb in inventory.sandboxes for f in sb.flows]
    accounts = [a for sb in inventory.sandboxes for a in sb.accounts if a.card == "new"]
    margin = timedelta(days=margin_days)
    return {
        "sandboxes": len(inventory.sandboxes),
        "legacy_flows": sum(1 for f in flows if f.card == "legacy"),
        "legacy_enabled": sum(1 for f in flows if f.card == "legacy" and f.enabled),
        "new_flows": sum(1 for f in flows if f.card == "new"),
        "new_enabled": sum(1 for f in flows if f.card == "new" and f.enabled),
        "new_accounts": len(accounts),
        "accounts_needing_credentials": sum(
            1 for a in accounts if needs_reconnect(a.expires_at, now, margin)
        ),
    }


def run_demo(app: App, narrator: Narrator, emulator: Emulator, state_dir: Path) -> dict[str, Any]:
    from pinmigrate import workflow
    from pinmigrate.logins import LoginStore
    from pinmigrate.oauth.grants import pinterest_client
    from pinmigrate.oauth.resolvers import LoginResolver
    from pinmigrate.redact import register
    from pinmigrate.render import summary_line

    settings = demo_settings(emulator, state_dir, free_loopback_port())
    register(*settings.secret_values())
    sandboxes = ", ".join(settings.adobe.sandboxes)
    narrator.say(
        f"Emulated Adobe (IMS + Flow Service) and Pinterest v5 at {emulator.url}, "
        f"sandboxes {sandboxes}."
    )
    narrator.say(f"State (logins, journal) lives in {state_dir}; it is deleted at the end.")

    narrator.heading("Discover: read both Pinterest cards (reads only)")
    adobe = workflow.adobe_client(settings)
    now = datetime.now(UTC)
    before = workflow.read_inventory(settings, adobe)
    counts = _counts(before, now, settings.migration.reconnect_margin_days)
    cards = before.sandboxes[0] if before.sandboxes else None
    legacy_name = cards.legacy_spec_name if cards else None
    new_name = cards.new_spec_name if cards else None
    narrator.say(
        f"{counts['legacy_flows']} flows on the legacy card '{legacy_name}' "
        f"({counts['legacy_enabled']} enabled) and {counts['new_flows']} copies on the "
        f"new card '{new_name}' ({counts['new_enabled']} enabled)."
    )
    narrator.say(
        f"{counts['new_accounts']} new-card accounts, {counts['accounts_needing_credentials']} "
        "with missing or expiring Pinterest credentials."
    )

    store = LoginStore(state_dir)
    narrator.heading("Plan: a dry run that decides every change and says why")
    first = workflow.plan_for(settings, before)
    narrator.say(summary_line(first))
    reconnects = [a for a in first.actions if isinstance(a, ReconnectAccount)]
    if reconnects:
        narrator.say(
            f"{len(reconnects)} account(s) need Reconnect OAuth in Adobe, which a person does "
            "in Adobe's UI; no Pinterest login is needed to plan or apply."
        )

    narrator.heading("Pre-flight: log in to Pinterest (optional, `pinmigrate auth login`)")
    narrator.say(
        "With your own Pinterest app, plan checks that the Pinterest user reaches every ad "
        "account of each account to reconnect. The emulator's consent page approves at once; "
        "a stand-in browser follows its redirect to pinmigrate's loopback listener."
    )
    browser_errors: list[str] = []
    resolver = LoginResolver(
        settings,
        store,
        pinterest_client(settings),
        notify=lambda message: None,
        open_browser=robot_browser(browser_errors),
    )
    try:
        login = resolver.browser(timeout=30)
    except PinmigrateError as exc:
        detail = f" ({browser_errors[0]})" if browser_errors else ""
        raise PinmigrateError(f"the demo login failed: {exc.line()}{detail}") from None
    narrator.say(
        f"Logged in as {login.label} with {len(login.ad_accounts)} ad account(s); "
        "the login is stored (tokens never leave the state dir)."
    )

    narrator.heading("Plan again, with the pre-flight")
    plan = workflow.plan_for(settings, before)  # the same inventory: a login changes no flow
    narrator.say(summary_line(plan))
    verbs = {
        "reconnect_account": "reconnect account",
        "add_audiences": "add missing audiences to",
        "enable_flow": "enable new flow",
        "disable_flow": "switch off legacy flow",
    }
    for action in plan.actions:  # in the contract's order of kinds
        check = ""
        if isinstance(action, ReconnectAccount):
            check = f" (pre-flight {action.details.preflight}"
            if action.details.preflight_user:
                check += f": {action.details.preflight_user}"
            check += ")"
        narrator.say(f"  {verbs[action.kind]} {action.target_name!r} ({action.sandbox}){check}")
    for blocker in plan.blockers:
        narrator.say(f"  not handled: {blocker.flow_name!r} ({blocker.sandbox}): {blocker.message}")
    for orphan in plan.orphans:
        narrator.say(
            f"  not handled: {orphan.flow_name!r} ({orphan.sandbox}) has no twin on the new card"
        )

    narrator.heading("Apply (--yes): re-read everything, then write in order, journalled")
    narrator.say(
        "Apply names each account to reconnect with its Adobe page, and runs everything that "
        "does not wait for one. By hand you would now, in Adobe: Destinations > Accounts, "
        'filter on Pinterest, the account\'s "..." menu, Edit details, Reconnect OAuth, and '
        "sign in to Pinterest. Here a stand-in person does that on the emulator's Adobe page "
        "(Adobe's own Pinterest app; the consent is approved at once)."
    )
    reconnected: list[str] = []
    emulator.clear_requests()
    report = workflow.apply(
        settings,
        plan,
        adobe=adobe,
        logins=None,
        reconnect_timeout=DEMO_RECONNECT_TIMEOUT,
        ask_person=stand_in_person(narrator, reconnected),
    )
    credential_writes = sum(
        count
        for endpoint, count in emulator.requests()["by_endpoint"].items()
        if endpoint.startswith(("PATCH", "PUT", "POST")) and "/connections" in endpoint
    )
    if not app.json:
        from pinmigrate.report import render_report

        render_report(app.out, report)
    narrator.say(f"Writes to Adobe accounts by pinmigrate: {credential_writes}.")

    narrator.heading("After: discover and plan once more")
    after = workflow.read_inventory(settings, adobe)
    final = workflow.plan_for(settings, after)
    flows = {(f.sandbox, f.card, f.name): f for sb in after.sandboxes for f in sb.flows}
    pairs_after = []
    for pair in plan.pairs:
        legacy = flows.get((pair.sandbox, "legacy", pair.legacy_flow_name))
        new = flows.get((pair.sandbox, "new", pair.new_flow_name or ""))
        if legacy is None or new is None or pair.status == "blocked":
            continue
        pairs_after.append(
            {
                "sandbox": pair.sandbox,
                "name": pair.legacy_flow_name,
                "legacy": legacy.state,
                "new": new.state,
                "audiences": len(new.audiences),
            }
        )
        narrator.say(
            f"{pair.sandbox:<5} {pair.legacy_flow_name!r}: legacy {legacy.state}, "
            f"new {new.state} ({len(new.audiences)} audience(s))"
        )
    narrator.say(summary_line(final))

    narrator.heading("Your turn")
    narrator.say("That was the emulator. To run against your org:")
    for line in NEXT_STEPS:
        narrator.say(f"  {line}")

    return {
        "schema_version": 1,
        "kind": "pinmigrate.demo",
        "emulator": emulator.url,
        "before": counts,
        "plan": plan.summary,
        "login": {"user": login.username or login.user_id, "ad_accounts": len(login.ad_accounts)},
        "reconnected_in_adobe": reconnected,
        "account_writes": credential_writes,
        "apply": report.to_json(),
        "after": {"pairs": pairs_after, "pending_actions": len(final.actions)},
        "ok": report.ok and not final.actions,
        "_report": report,
    }


@click.command("demo")
@global_options
@pass_app
def command(app: App) -> None:
    """Run a whole migration against the embedded emulator, explaining each step.

    \b
    Starts the emulator on a free loopback port with a realistic scenario, then runs
    discover, plan, a Pinterest login (auto-approved), apply and a final discover, all
    in a temporary state dir that is deleted at the end. Never reads your config, never
    opens a browser, never touches a real account.
    """
    from pinmigrate.emulator import Emulator

    narrator = Narrator(app)
    if not app.json:
        app.out.print(
            "pinmigrate demo: move Pinterest destinations from Adobe's retired v4 card to "
            "the v5 card, against a local emulator.",
            style="bold",
            markup=False,
            soft_wrap=True,
        )
    emulator = Emulator(scenario="demo", port=0, auto_approve=True)
    narrator.heading("Start the emulator")
    with tempfile.TemporaryDirectory(prefix="pinmigrate-demo-") as tmp, emulator:
        result = run_demo(app, narrator, emulator, Path(tmp))
    report: ApplyReport = result.pop("_report")
    if app.json:
        app.print_json(result)
    if not result["ok"]:
        raise ApplyFailed(
            "the demo's apply did not converge "
            f"({report.counts()['failed']} failed, {report.counts()['skipped']} skipped)"
        )
