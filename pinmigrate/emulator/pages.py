"""HTML the emulator shows to people: the OAuth consent page, its error page, the index."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape

from pinmigrate.emulator.model import PINTEREST_APP_NAME, PINTEREST_SCOPES, PinterestUser

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
"""


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
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
        if k in ("client_id", "consumer_id", "redirect_uri", "response_type", "scope", "state")
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


def index_page(*, url: str, scenario: str, sandboxes: Iterable[str]) -> str:
    links = "".join(
        f'<li><a href="{escape(path)}"><code>{escape(path)}</code></a> {escape(text)}</li>'
        for path, text in (
            ("/_emulator/state?summary=true", "counts, config and faults"),
            ("/_emulator/state", "full state (secrets in clear: test-only)"),
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
