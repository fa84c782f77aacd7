"""A scripted person who presses "Reconnect OAuth" in the emulator's Adobe UI.

For the demo and tests: :func:`reconnect_via_ui` opens an account page (the ``adobe.ui_url``
pinmigrate opens), submits its Reconnect OAuth form, goes through Pinterest's consent page
(Allow, as the chosen user, when it is not auto-approved) and Adobe's callback, and checks the
answer says the account was reconnected. It talks to loopback hosts only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import unquote, urljoin, urlsplit

import requests

from pinmigrate.settings import is_loopback_host

RECONNECT_BUTTON = "Reconnect OAuth"
MAX_REDIRECTS = 10


class ReconnectError(RuntimeError):
    """The account page could not be reconnected: the message says at which step and why."""


@dataclass
class _Form:
    action: str
    method: str
    #: hidden and text inputs, and the checked radio of each group: what a browser sends
    fields: dict[str, str] = field(default_factory=dict)
    #: radio choices per group name
    radios: dict[str, list[str]] = field(default_factory=dict)
    #: submit buttons: (name, value, label)
    buttons: list[tuple[str, str, str]] = field(default_factory=list)


class _PageParser(HTMLParser):
    """The forms of a page, and the marks the result and error pages carry."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[_Form] = []
        self.reconnected: str | None = None
        self.errors: list[str] = []
        self.title = ""
        self._form: _Form | None = None
        self._button: list[str] | None = None
        self._button_attrs: dict[str, str] = {}
        self._in_error = False
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {k: v or "" for k, v in attrs}
        if "data-reconnected" in named:
            self.reconnected = named["data-reconnected"]
        if tag == "title":
            self._in_title = True
        elif tag == "p" and "error" in named.get("class", "").split():
            self._in_error = True
            self.errors.append("")
        elif tag == "form":
            self._form = _Form(named.get("action", ""), named.get("method", "get").lower())
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None:
            name = named.get("name")
            kind = named.get("type", "text").lower()
            if not name:
                return
            if kind == "radio":
                self._form.radios.setdefault(name, []).append(named.get("value", ""))
                if "checked" in named:
                    self._form.fields[name] = named.get("value", "")
            elif kind not in ("submit", "button", "checkbox"):
                self._form.fields[name] = named.get("value", "")
        elif tag == "button" and self._form is not None:
            self._button = []
            self._button_attrs = named

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag == "p":
            self._in_error = False
        elif tag == "form":
            self._form = None
        elif tag == "button" and self._form is not None and self._button is not None:
            label = " ".join("".join(self._button).split())
            attrs = self._button_attrs
            self._form.buttons.append((attrs.get("name", ""), attrs.get("value", ""), label))
            self._button = None

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self._button.append(data)
        if self._in_error and self.errors:
            self.errors[-1] += data
        if self._in_title:
            self.title += data


def _parse(html: str) -> _PageParser:
    parser = _PageParser()
    parser.feed(html)
    parser.close()
    return parser


def _check_loopback(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not is_loopback_host(parts.hostname):
        raise ReconnectError(f"refusing to visit {url}: only loopback http(s) addresses are used")


def reconnect_via_ui(
    page_url: str,
    *,
    timeout: float = 10.0,
    username: str | None = None,
    session: requests.Session | None = None,
) -> None:
    """Reconnect the account whose Adobe page is ``page_url``, as a person would.

    Submits the page's Reconnect OAuth form, follows the redirects, allows access on
    Pinterest's consent page when it is shown (as ``username`` when given, else as the page
    preselects) and checks Adobe's callback answered "Account reconnected" for that account.
    Raises :class:`ReconnectError` otherwise, or when ``timeout`` seconds are used up.
    """
    _check_loopback(page_url)
    deadline = time.monotonic() + timeout
    http = session or requests.Session()
    try:
        _Visit(http, deadline).run(page_url, username)
    finally:
        if session is None:
            http.close()


class _Visit:
    def __init__(self, http: requests.Session, deadline: float) -> None:
        self.http = http
        self.deadline = deadline

    def request(
        self, method: str, url: str, data: dict[str, str] | None = None
    ) -> requests.Response:
        _check_loopback(url)
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ReconnectError(f"timed out before {method} {url}")
        try:
            return self.http.request(method, url, data=data, timeout=left, allow_redirects=False)
        except requests.Timeout:
            raise ReconnectError(f"timed out waiting for {method} {url}") from None
        except requests.RequestException as exc:
            raise ReconnectError(f"{method} {url} failed: {exc}") from None

    def follow(self, answer: requests.Response) -> tuple[str, requests.Response]:
        """Follow redirects (each to a loopback host) to the page they end on."""
        url = answer.url
        for _ in range(MAX_REDIRECTS):
            if answer.status_code not in (301, 302, 303, 307, 308):
                return url, answer
            location = answer.headers.get("Location")
            if not location:
                raise ReconnectError(f"{url} redirected without a Location")
            url = urljoin(url, location)
            answer = self.request("GET", url)
        raise ReconnectError(f"more than {MAX_REDIRECTS} redirects from {answer.url}")

    def run(self, page_url: str, username: str | None) -> None:
        page = self.request("GET", page_url)
        if page.status_code != 200:
            raise ReconnectError(
                f"the account page {page_url} answered HTTP {page.status_code}"
                + _said(_parse(page.text))
            )
        parsed = _parse(page.text)
        form = next(
            (f for f in parsed.forms if any(b[2] == RECONNECT_BUTTON for b in f.buttons)), None
        )
        if form is None:
            raise ReconnectError(f"the page {page_url} has no {RECONNECT_BUTTON} button")
        data = dict(form.fields)
        url, answer = self.follow(
            self.request(form.method.upper(), urljoin(page_url, form.action), data)
        )
        consent = _parse(answer.text) if answer.status_code == 200 else None
        if consent is not None and consent.reconnected is None:
            url, answer = self.follow(self.allow(url, consent, username))
        result = _parse(answer.text)
        expected = unquote(urlsplit(page_url).path.rstrip("/").rsplit("/", 1)[-1])
        if answer.status_code != 200 or result.reconnected is None:
            raise ReconnectError(
                f"the account was not reconnected: {url} answered HTTP {answer.status_code}"
                + _said(result)
            )
        if result.reconnected != expected:
            raise ReconnectError(f"Adobe reconnected account {result.reconnected}, not {expected}")

    def allow(self, url: str, page: _PageParser, username: str | None) -> requests.Response:
        """Press Allow on Pinterest's consent page, as ``username`` when given."""
        form = next((f for f in page.forms if any(b[1] == "allow" for b in f.buttons)), None)
        if form is None:
            raise ReconnectError(
                f"{url} is neither a consent page nor Adobe's answer" + _said(page)
            )
        data = dict(form.fields)
        if username is not None:
            choices = [c for group in form.radios.values() for c in group]
            if username not in choices:
                raise ReconnectError(
                    f"the consent page offers no user {username!r} (it offers "
                    f"{', '.join(choices) or 'none'})"
                )
            for name, group in form.radios.items():
                if username in group:
                    data[name] = username
        name, value, _ = next(b for b in form.buttons if b[1] == "allow")
        data[name] = value
        return self.request(form.method.upper(), urljoin(url, form.action), data)


def _said(page: _PageParser) -> str:
    message = "; ".join(e.strip() for e in page.errors if e.strip())
    title = page.title.strip()
    return f" ({message})" if message else (f" ({title})" if title else "")
