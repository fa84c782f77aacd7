"""HTML the emulator shows to people: Pinterest's OAuth consent page and its error page,
Adobe's destination account pages (with "Reconnect OAuth"), and the index."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING

from pinmigrate.emulator.model import PINTEREST_APP_NAME, PINTEREST_SCOPES, PinterestUser

if TYPE_CHECKING:
    from pinmigrate.emulator.adobeui import AccountView

_STYLE = """
body { font-family: system-ui, sans-serif; background: #f5f5f5; margin: 0; }
main { max-width: 32rem; margin: 3rem auto; background: #fff; border-radius: 16px;
       padding: 2rem; box-shadow: 0 2px 12px rgba(0,0,0,.08); }
h1 { font-size: 1.4rem; margin-top: 0; }
.badge { display: inline-block; background: #e60023; color: #fff; border-radius: 50%;
         width: 2.2rem; height: 2.2rem; text-align: center; line-height: 2.2rem;
         font-weight: bold; margin-right: .5rem; }
ul.scopes li { margin: .3rem 0; }
fieldset { border: 1px solid #ddd; border-radius: 8px; margin: 1rem 0; }
.buttons { display: flex; gap: 1rem; margin-top: 1.5rem; }
button { flex: 1; padding: .8rem; border-radius: 24px; border: 0; font-size: 1rem;
         cursor: pointer; }
button.allow { background: #e60023; color: #fff; }
button.deny { background: #efefef; }
.note { color: #767676; font-size: .85rem; }
.error { color: #b00020; }
code { background: #f0f0f0; padding: 0 .2rem; }
.adobe { background: #eb1000; border-radius: 4px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1rem; }
dt { color: #767676; }
dd { margin: 0; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; padding: .4rem; border-bottom: 1px solid #eee; vertical-align: top; }
button.reconnect { background: #1473e6; color: #fff; flex: none; padding: .5rem 1rem; }
"""


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


#: The authorize parameters the consent form carries on to its POST.
AUTHORIZE_FIELDS = (
    "client_id",
    "consumer_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
)


def consent_page(
    *,
    params: Mapping[str, str],
    scopes: Iterable[str],
    users: Iterable[PinterestUser],
    default_user: str,
    app_name: str = PINTEREST_APP_NAME,
) -> str:
    """The "Allow access" page: the app, the scopes asked for, a user choice, Allow/Deny."""
    hidden = "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
        for k, v in params.items()
        if k in AUTHORIZE_FIELDS
    )
    scope_items = "".join(
        f"<li><code>{escape(s)}</code> — {escape(PINTEREST_SCOPES.get(s, ''))}</li>" for s in scopes
    )
    user_items = "".join(
        f'<label><input type="radio" name="user" value="{escape(u.username)}"'
        f"{' checked' if u.username == default_user else ''}> "
        f"<strong>{escape(u.username)}</strong> ({escape(u.business_name)}, "
        f"{len(u.ad_account_ids)} ad account{'s' if len(u.ad_account_ids) != 1 else ''})"
        "</label><br>"
        for u in users
    )
    body = (
        f'<h1><span class="badge">P</span>{escape(app_name)} wants access to your '
        "Pinterest account</h1>"
        f'<p>The app will be able to:</p><ul class="scopes">{scope_items}</ul>'
        '<form method="post" action="/oauth/">'
        f"{hidden}"
        f"<fieldset><legend>Continue as</legend>{user_items}</fieldset>"
        '<div class="buttons">'
        '<button class="deny" type="submit" name="decision" value="deny">Deny</button>'
        '<button class="allow" type="submit" name="decision" value="allow">Allow</button>'
        "</div></form>"
        f'<p class="note">pinmigrate emulator — you will be sent back to '
        f"<code>{escape(params.get('redirect_uri', ''))}</code>.</p>"
    )
    return _page("Allow access - Pinterest (emulator)", body)


def error_page(message: str) -> str:
    body = (
        '<h1><span class="badge">P</span>Something went wrong</h1>'
        f'<p class="error">{escape(message)}</p>'
        '<p class="note">pinmigrate emulator: the authorization request was not accepted, '
        "so you are not sent back to the app.</p>"
    )
    return _page("Error - Pinterest (emulator)", body)


def index_page(
    *,
    url: str,
    scenario: str,
    sandboxes: Iterable[str],
    account_lists: Sequence[tuple[str, str]] = (),
) -> str:
    links = "".join(
        f'<li><a href="{escape(path)}"><code>{escape(path)}</code></a> {escape(text)}</li>'
        for path, text in (
            *account_lists,
            ("/_emulator/state?summary=true", "counts, config and faults"),
            ("/_emulator/state", "full state (tokens hidden)"),
            ("/_emulator/state?secrets=1", "full state, tokens and codes in clear (test-only)"),
            ("/_emulator/requests", "request log with counts"),
            ("/_emulator/config", "behaviour switches"),
        )
    )
    body = (
        "<h1>pinmigrate emulator</h1>"
        f"<p>Serving Adobe IMS, Flow Service and Pinterest at <code>{escape(url)}</code>, "
        f"scenario <code>{escape(scenario)}</code>, sandboxes "
        f"<code>{escape(', '.join(sandboxes))}</code>.</p>"
        f"<ul>{links}</ul>"
    )
    return _page("pinmigrate emulator", body)


# --- Adobe's destination account pages -------------------------------------------------------

_ADOBE_BADGE = '<span class="badge adobe">A</span>'


def _when(at: datetime | None, now: float) -> str:
    """An expiry in clear: the UTC time and how far it is from now."""
    if at is None:
        return "no credentials: reconnect the account"
    stamp = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    days = (at.timestamp() - now) / 86400
    if days <= 0:
        return f"{stamp} (expired {-days:.1f} days ago)"
    return f"{stamp} (in {days:.1f} days)"


def _reconnect_form(action: str) -> str:
    return (
        f'<form method="post" action="{escape(action)}" class="reconnect">'
        '<button class="reconnect" type="submit">Reconnect OAuth</button></form>'
    )


def account_page(view: AccountView, *, now: float, reconnect_action: str, accounts_url: str) -> str:
    """An account's "Edit details": what it is, when its credentials expire, Reconnect OAuth."""
    rows = [
        ("Name", escape(view.name)),
        ("Account id", f"<code>{escape(view.id)}</code>"),
        ("Sandbox", escape(view.sandbox)),
        ("Destination", escape(view.card_name)),
        ("State", escape(str(view.account.get("state") or ""))),
        ("Ad accounts", escape(", ".join(view.advertisers) or "none")),
        ("Credentials expire", escape(_when(view.expiry.at, now))),
        ("Pinterest user", escape(view.owner or "unknown")),
    ]
    details = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows)
    action = (
        _reconnect_form(reconnect_action)
        if view.reconnectable
        else '<p class="note">The legacy card cannot be reconnected: Pinterest has switched '
        "off the API it uses.</p>"
    )
    body = (
        f"<h1>{_ADOBE_BADGE}{escape(view.name)}</h1>"
        f"<dl>{details}</dl>{action}"
        f'<p class="note"><a href="{escape(accounts_url)}">All Pinterest accounts of this '
        "sandbox</a> — Adobe Experience Platform (emulator), Destinations &gt; Accounts.</p>"
    )
    return _page(f"{view.name} - Accounts - Adobe Experience Platform (emulator)", body)


def accounts_page(views: Sequence[tuple[AccountView, str]], *, sandbox: str, now: float) -> str:
    """Destinations > Accounts, filtered on Pinterest: ``views`` pairs each with its page URL."""
    rows = "".join(
        "<tr>"
        f'<td><a href="{escape(url)}">{escape(view.name)}</a><br>'
        f'<code class="note">{escape(view.id)}</code></td>'
        f"<td>{escape(view.card_name)}</td>"
        f"<td>{escape(', '.join(view.advertisers) or 'none')}</td>"
        f"<td>{escape(_when(view.expiry.at, now))}</td>"
        f"<td>{_reconnect_form(url + '/reconnect') if view.reconnectable else ''}</td>"
        "</tr>"
        for view, url in views
    )
    body = (
        f"<h1>{_ADOBE_BADGE}Pinterest accounts in {escape(sandbox)}</h1>"
        "<table><tr><th>Account</th><th>Destination</th><th>Ad accounts</th>"
        f"<th>Credentials expire</th><th></th></tr>{rows}</table>"
        if views
        else f"<h1>{_ADOBE_BADGE}Pinterest accounts in {escape(sandbox)}</h1>"
        "<p>No Pinterest account in this sandbox.</p>"
    )
    return _page(f"Accounts ({sandbox}) - Adobe Experience Platform (emulator)", body)


def reconnected_page(view: AccountView, *, now: float, account_url: str) -> str:
    """What Adobe shows after its callback stored the new credentials."""
    body = (
        f'<h1 data-reconnected="{escape(view.id)}">{_ADOBE_BADGE}Account reconnected</h1>'
        f"<p><strong>{escape(view.name)}</strong> (<code>{escape(view.id)}</code>, sandbox "
        f"{escape(view.sandbox)}) is connected to Pinterest as "
        f"<strong>{escape(view.owner or 'unknown')}</strong>.</p>"
        f"<p>Credentials expire {escape(_when(view.expiry.at, now))}.</p>"
        f'<p><a href="{escape(account_url)}">Back to the account</a></p>'
    )
    return _page("Account reconnected - Adobe Experience Platform (emulator)", body)


def adobe_error_page(title: str, message: str) -> str:
    body = (
        f"<h1>{_ADOBE_BADGE}{escape(title)}</h1>"
        f'<p class="error">{escape(message)}</p>'
        '<p class="note">Adobe Experience Platform (emulator).</p>'
    )
    return _page(f"{title} - Adobe Experience Platform (emulator)", body)
