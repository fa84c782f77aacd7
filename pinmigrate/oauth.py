"""Pinterest v5 OAuth: browser (loopback) and pasted logins, tokens from stdin or settings,
verification, refresh with rotation, and the logins ``apply`` uses.

How a login is obtained is decided once, by the resolver class: :class:`LoginResolver` asks
the person at the terminal (browser or paste); :class:`NonInteractiveLoginResolver` raises
instead, naming the settings that make a login possible without a person (twine's split).

Every token and code is registered with :mod:`pinmigrate.redact` the moment it is seen, and
:class:`~pinmigrate.logins.LoginStore` is the only place one is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import html
import json
import logging
import os
import queue
import secrets
import socket
import threading
import time
import webbrowser
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import parse_qs, urlsplit

from pydantic import SecretStr

from pinmigrate import redact
from pinmigrate.errors import ApiError, AuthError, ConfigError, PinmigrateError, UsageError
from pinmigrate.logins import AdAccountAccess, Login, LoginStore
from pinmigrate.settings import env_name, is_loopback_host

if TYPE_CHECKING:
    from pinmigrate.app import App
    from pinmigrate.settings import Settings

log = logging.getLogger("pinmigrate.oauth")

T = TypeVar("T")

#: An access token closer than this to its expiry is refreshed before use.
REFRESH_MARGIN = timedelta(minutes=5)
#: Pinterest access tokens last 30 days: the most a bare token (no ``expires_in``) has left.
ACCESS_TOKEN_LIFETIME = timedelta(days=30)
DEFAULT_TIMEOUT = 300.0
ENV_REFRESH_TOKEN = env_name("pinterest.refresh_token")
ENV_ACCESS_TOKEN = env_name("pinterest.access_token")
LOGIN_HINT = "run `pinmigrate auth login`"


class PinterestAuth(Protocol):
    """What OAuth needs of :class:`pinmigrate.pinterest.PinterestClient`."""

    def exchange_code(self, code: str) -> dict[str, Any]: ...
    def refresh(self, refresh_token: str) -> dict[str, Any]: ...
    def user_account(self, access_token: str) -> dict[str, Any]: ...
    def ad_accounts(self, access_token: str) -> list[dict[str, Any]]: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


def token_digest(token: str) -> str:
    """A one-way name for a token, to recognise its descendants in the store."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def has_environment_token(settings: Settings) -> bool:
    pin = settings.pinterest
    return any(
        t is not None and t.get_secret_value() for t in (pin.refresh_token, pin.access_token)
    )


# --- scopes and expiries ----------------------------------------------------------------


def parse_scopes(value: Any) -> list[str]:
    """Scopes as Pinterest returns them: comma- or space-separated (or a list), de-duplicated."""
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else str(value).replace(",", " ").split()
    seen: dict[str, None] = {}
    for item in items:
        text = str(item).strip()
        if text:
            seen.setdefault(text, None)
    return list(seen)


def missing_scopes(granted: Sequence[str], required: Sequence[str]) -> list[str]:
    have = set(granted)
    return [scope for scope in required if scope not in have]


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


def token_expiries(
    token: Mapping[str, Any], now: datetime
) -> tuple[datetime | None, datetime | None]:
    """(access expiry, refresh expiry) from ``expires_in`` / ``refresh_token_expires_at|_in``."""
    access_in = _seconds(token.get("expires_in"))
    access = now + timedelta(seconds=access_in) if access_in is not None else None
    refresh: datetime | None = None
    if token.get("refresh_token"):
        at = _seconds(token.get("refresh_token_expires_at"))
        if at is not None and at > 0:
            # Epoch seconds per the docs; tolerate milliseconds.
            refresh = datetime.fromtimestamp(at / 1000 if at > 1e11 else at, UTC)
        else:
            refresh_in = _seconds(token.get("refresh_token_expires_in"))
            refresh = now + timedelta(seconds=refresh_in) if refresh_in is not None else None
    return access, refresh


def needs_refresh(login: Login, now: datetime) -> bool:
    """True when the access token is expired or expires within :data:`REFRESH_MARGIN`."""
    return login.access_expires_at is not None and login.access_expires_at - now <= REFRESH_MARGIN


def _access_token_of(token: Mapping[str, Any]) -> str:
    access = token.get("access_token")
    if not isinstance(access, str) or not access:
        raise AuthError("Pinterest's answer holds no access_token", hint=LOGIN_HINT)
    refresh = token.get("refresh_token")
    redact.register(access, refresh if isinstance(refresh, str) else None)
    return access


def _ad_account(item: Mapping[str, Any]) -> AdAccountAccess | None:
    if item.get("id") in (None, ""):
        return None
    permissions = item.get("permissions") or []
    return AdAccountAccess(
        id=str(item["id"]),
        name=str(item.get("name") or ""),
        permissions=[str(p) for p in permissions] if isinstance(permissions, list) else [],
    )


# --- verification -----------------------------------------------------------------------


def login_from_grant(
    client: PinterestAuth,
    store: LoginStore,
    token: Mapping[str, Any],
    *,
    settings: Settings,
    source: str,
    now: datetime,
    origin: str | None = None,
    rotated: bool = False,
) -> Login:
    """Check scopes, verify (``/user_account``, every ``/ad_accounts`` page) and store a grant.

    ``rotated``: the grant came from a refresh, so an older refresh token may now be dead;
    the new one is stored as soon as the user is known, before the ad accounts are read.
    """
    access = _access_token_of(token)
    refresh = token.get("refresh_token")
    refresh = refresh if isinstance(refresh, str) and refresh else None
    scopes = parse_scopes(token.get("scope"))
    if token.get("scope") is not None:
        missing = missing_scopes(scopes, settings.pinterest.scopes)
        if missing:
            raise AuthError(
                f"Pinterest granted the scopes {', '.join(scopes) or '(none)'} but pinmigrate "
                f"needs {', '.join(missing)} as well; nothing was stored",
                hint="allow every requested permission on Pinterest's consent page and "
                "check that the app has those scopes, then run `pinmigrate auth login` again",
            )
    access_expires, refresh_expires = token_expiries(token, now)
    if access_expires is None:
        # A bare access token tells nothing of its age. Without an expiry Adobe would record
        # none, and every later plan would reconnect again; the documented lifetime is the
        # most it has left (and the first sighting's value is kept, below).
        access_expires = now + ACCESS_TOKEN_LIFETIME
    user = client.user_account(access)
    user_id = str(user.get("id") or "")
    if not user_id:
        raise ApiError("Pinterest /user_account answered without a user id", service="pinterest")
    login = Login(
        user_id=user_id,
        username=str(user.get("username") or ""),
        scopes=scopes,
        access_token=SecretStr(access),
        refresh_token=SecretStr(refresh) if refresh else None,
        access_expires_at=access_expires,
        refresh_expires_at=refresh_expires,
        source=source,
        created_at=now,
        origin=origin,
    )
    if rotated:
        store.update(
            user_id,
            lambda previous: login.model_copy(
                update={"ad_accounts": previous.ad_accounts if previous else []}
            ),
        )
    accounts = [a for a in map(_ad_account, client.ad_accounts(access)) if a is not None]
    login = login.model_copy(update={"ad_accounts": accounts})
    stored = store.update(
        user_id, lambda previous: _keeping_refresh(previous, _first_expiry(previous, login), now)
    )
    return stored or login


def _first_expiry(previous: Login | None, login: Login) -> Login:
    """``login``, keeping the expiry stored for the same access token (it cannot grow)."""
    if (
        previous is None
        or previous.access_expires_at is None
        or login.access_expires_at is None
        or previous.access_token.get_secret_value() != login.access_token.get_secret_value()
    ):
        return login
    return login.model_copy(
        update={"access_expires_at": min(previous.access_expires_at, login.access_expires_at)}
    )


def _keeping_refresh(previous: Login | None, login: Login, now: datetime) -> Login:
    """``login``, but with the stored refresh token when it brings none of its own.

    A grant made from a bare access token (``--with-token``, ``pinterest.access_token``)
    must not destroy a live refresh token of the same user: that token may be the only way
    to keep the login alive without a browser.
    """
    if login.refresh_token is not None or previous is None or previous.refresh_token is None:
        return login
    if previous.refresh_expires_at is not None and previous.refresh_expires_at <= now:
        return login
    return login.model_copy(
        update={
            "refresh_token": previous.refresh_token,
            "refresh_expires_at": previous.refresh_expires_at,
        }
    )


def _reverified(login: Login, client: PinterestAuth, store: LoginStore) -> Login:
    """Re-read a stored login's user and ad accounts (they change) and store them."""
    access = login.access_token.get_secret_value()
    user = client.user_account(access)
    accounts = [a for a in map(_ad_account, client.ad_accounts(access)) if a is not None]
    changes: dict[str, Any] = {"ad_accounts": accounts}
    if user.get("username"):
        changes["username"] = str(user["username"])
    # Keep whatever tokens are stored now: another process may have rotated them meanwhile.
    stored = store.update(
        login.user_id, lambda current: (current or login).model_copy(update=changes)
    )
    return stored or login


# --- refresh ----------------------------------------------------------------------------


def _refreshed(login: Login, client: PinterestAuth, now: datetime) -> Login:
    expiry = (
        login.access_expires_at.isoformat(timespec="seconds") if login.access_expires_at else ""
    )
    if login.refresh_token is None:
        raise AuthError(
            f"the Pinterest login of {login.label} expired at {expiry} and cannot be refreshed "
            "(it was made from an access token)",
            hint=LOGIN_HINT,
        )
    if login.refresh_expires_at is not None and login.refresh_expires_at <= now:
        when = login.refresh_expires_at.isoformat(timespec="seconds")
        raise AuthError(
            f"the Pinterest login of {login.label} expired: its refresh token expired at {when}",
            hint=LOGIN_HINT,
        )
    try:
        token = client.refresh(login.refresh_token.get_secret_value())
    except AuthError as exc:
        raise AuthError(
            f"cannot refresh the Pinterest login of {login.label}: {exc.message}", hint=LOGIN_HINT
        ) from None
    access = _access_token_of(token)
    access_expires, refresh_expires = token_expiries(token, now)
    new_refresh = token.get("refresh_token")
    changes: dict[str, Any] = {
        "access_token": SecretStr(access),
        "access_expires_at": access_expires,
    }
    if isinstance(new_refresh, str) and new_refresh:
        changes["refresh_token"] = SecretStr(new_refresh)
        changes["refresh_expires_at"] = refresh_expires
    if token.get("scope") is not None:
        changes["scopes"] = parse_scopes(token.get("scope"))
    return login.model_copy(update=changes)


def fresh_login(
    login: Login,
    settings: Settings,
    store: LoginStore,
    *,
    now: datetime,
    client: PinterestAuth,
) -> Login:
    """The login, refreshed first when its access token expires within 5 minutes.

    The refresh happens under the store's lock after re-reading the entry: when another
    process rotated it meanwhile, its newer tokens are used and no second refresh is made.
    The rotated refresh token is stored before this returns.
    """
    del settings  # in the interface for symmetry; the client holds the app credentials
    if not needs_refresh(login, now):
        return login

    def rotate(current: Login | None) -> Login | None:
        if current is not None and not needs_refresh(current, now):
            return current
        return _refreshed(current or login, client, now)

    result = store.update(login.user_id, rotate)
    assert result is not None
    return result


# --- environment (CI) logins ------------------------------------------------------------


def environment_login(
    settings: Settings,
    store: LoginStore,
    client: PinterestAuth,
    *,
    now: datetime | None = None,
    notify: Callable[[str], None] | None = None,
) -> Login | None:
    """The login ``pinterest.refresh_token`` / ``access_token`` yields, verified and stored.

    None when neither is set. A refresh token is refreshed (its rotated successor is stored at
    once, and later runs with the same setting continue from that successor); an access token
    is used as it is and cannot be refreshed.
    """
    pin = settings.pinterest
    now = now or utcnow()
    say = notify or (lambda _message: None)
    if pin.refresh_token is not None and pin.refresh_token.get_secret_value():
        return _from_environment_refresh(
            pin.refresh_token.get_secret_value(), settings, store, client, now=now, notify=say
        )
    if pin.access_token is not None and pin.access_token.get_secret_value():
        where = settings.source_of("pinterest.access_token")
        token = {"access_token": pin.access_token.get_secret_value()}
        try:
            return login_from_grant(
                client, store, token, settings=settings, source="environment", now=now
            )
        except AuthError as exc:
            raise AuthError(
                f"the Pinterest access token from {where} was refused: {exc.message}",
                hint=f"set a valid {ENV_ACCESS_TOKEN} (or {ENV_REFRESH_TOKEN}), or {LOGIN_HINT}",
            ) from None
    return None


def _from_environment_refresh(
    refresh_token: str,
    settings: Settings,
    store: LoginStore,
    client: PinterestAuth,
    *,
    now: datetime,
    notify: Callable[[str], None],
) -> Login:
    redact.register(refresh_token)
    origin = token_digest(refresh_token)
    where = settings.source_of("pinterest.refresh_token")
    # Under the lock: two commands started together with the same setting must not both
    # spend the configured token (a refresh kills it); the second finds the first's successor.
    with store.locked():
        descendant = next((lg for lg in store.load() if lg.origin == origin), None)
        if descendant is not None:
            try:
                current = fresh_login(descendant, settings, store, now=now, client=client)
                return _reverified(current, client, store)
            except AuthError as exc:
                log.info("stored login from %s no longer works (%s); refreshing again", where, exc)
        try:
            token = client.refresh(refresh_token)
        except AuthError as exc:
            raise AuthError(
                # exc says whether Pinterest refused it or its answer was lost.
                f"the refresh token from {where} did not work: {exc.message}",
                hint=f"mint a new one and set {ENV_REFRESH_TOKEN}, or {LOGIN_HINT}",
            ) from None
        login = login_from_grant(
            client,
            store,
            token,
            settings=settings,
            source="environment",
            now=now,
            origin=origin,
            rotated=True,
        )
    if login.refresh_token is not None:
        notify(
            f"Pinterest rotated the refresh token from {where}; the new one is saved in "
            f"{store.path} (login of {login.label})."
        )
    return login


# --- the authorize URL and the callback -------------------------------------------------

_transport_lock = threading.Lock()


@contextlib.contextmanager
def _http_allowed(allowed: bool) -> Iterator[None]:
    """Let oauthlib build an http:// URL (the loopback emulator) for the duration only."""
    if not allowed:
        yield
        return
    name = "OAUTHLIB_INSECURE_TRANSPORT"
    with _transport_lock:
        before = os.environ.get(name)
        os.environ[name] = "1"
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before


def authorization_url(settings: Settings, state: str) -> str:
    """Pinterest's authorize URL; scopes comma-joined as Pinterest expects."""
    settings.require_pinterest_app()
    pin = settings.pinterest
    parts = urlsplit(pin.oauth_url)
    loopback = is_loopback_host(parts.hostname)
    if parts.scheme != "https" and not loopback:
        raise ConfigError(
            f"invalid setting pinterest.oauth_url (from "
            f"{settings.source_of('pinterest.oauth_url')}): {pin.oauth_url!r} must be https "
            "(plain http only for a loopback emulator)"
        )
    from requests_oauthlib import OAuth2Session

    # A pre-joined string: oauthlib would join a list with spaces, Pinterest wants commas.
    session = OAuth2Session(
        pin.app_id, redirect_uri=pin.redirect_uri, scope=",".join(pin.scopes), state=state
    )
    with _http_allowed(parts.scheme == "http" and loopback):
        url, _state = session.authorization_url(pin.oauth_url)
    return str(url)


@dataclass(frozen=True)
class Callback:
    """The query of a redirect back from Pinterest."""

    code: str | None = None
    state: str | None = None
    error: str | None = None
    error_description: str | None = None

    @classmethod
    def from_query(cls, query: str) -> Callback:
        values = parse_qs(query, keep_blank_values=True)

        def first(name: str) -> str | None:
            found = values.get(name)
            return found[0] if found else None

        callback = cls(
            code=first("code"),
            state=first("state"),
            error=first("error"),
            error_description=first("error_description"),
        )
        redact.register(callback.code)
        return callback

    @property
    def is_oauth(self) -> bool:
        return any(v is not None for v in (self.code, self.state, self.error))


def code_from_callback(callback: Callback, expected_state: str) -> str:
    """The authorization code, once the state matches and Pinterest did not refuse."""
    retry = "run `pinmigrate auth login` again"
    if callback.state and not hmac.compare_digest(
        callback.state.encode("utf-8"), expected_state.encode("utf-8")
    ):
        raise AuthError(
            "the OAuth callback's state does not match this login attempt (an old browser tab, "
            "or a request that did not come from Pinterest); nothing was stored",
            hint=retry,
        )
    if callback.error is not None:
        reason = callback.error_description or callback.error or "no reason given"
        raise AuthError(
            f"Pinterest did not grant access: {redact.redact(reason)} ({callback.error}); "
            "nothing was stored",
            hint=f"{retry} and choose Allow",
        )
    if not callback.state:
        raise AuthError(
            "the OAuth callback carries no state, so it cannot be matched to this login "
            "attempt; nothing was stored",
            hint=retry,
        )
    if not callback.code:
        raise AuthError("the OAuth callback carries no code; nothing was stored", hint=retry)
    return callback.code


def parse_pasted(text: str, expected_state: str) -> str:
    """The code from what was pasted: the redirected URL (state checked) or a bare code."""
    text = text.strip()
    if not text:
        raise AuthError("nothing was pasted; nothing was stored", hint=LOGIN_HINT)
    if "://" in text or "?" in text or "=" in text:
        query = urlsplit(text).query if "://" in text else text.partition("?")[2] or text
        callback = Callback.from_query(query)
        if not callback.is_oauth:
            raise AuthError(
                "the pasted URL carries no code, state or error from Pinterest; nothing was stored",
                hint="paste the whole address your browser shows after you chose Allow",
            )
        return code_from_callback(callback, expected_state)
    if any(ch.isspace() for ch in text):
        raise AuthError(
            "the pasted text is neither the redirected URL nor a code; nothing was stored",
            hint=LOGIN_HINT,
        )
    redact.register(text)
    return text


# --- the loopback listener --------------------------------------------------------------


def _page(ok: bool, message: str) -> bytes:
    title = "pinmigrate: Pinterest login" + (" done" if ok else " failed")
    tail = "You can close this tab and return to the terminal."
    body = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head>"
        "<body style='font-family: sans-serif; margin: 3em'>"
        f"<h1>{'Logged in' if ok else 'Login failed'}</h1>"
        f"<p>{html.escape(message)}</p><p>{tail}</p></body></html>"
    )
    return body.encode("utf-8")


@dataclass
class _Reply:
    ready: threading.Event = field(default_factory=threading.Event)
    sent: threading.Event = field(default_factory=threading.Event)
    status: int = 200
    page: bytes = b""

    def set(self, status: int, page: bytes) -> None:
        self.status, self.page = status, page
        self.ready.set()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # A browser may open a speculative connection and send nothing on it.
    timeout = 10
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        self.server.listener.on_request(self)

    def do_POST(self) -> None:
        self.respond(405, _page(False, "This address only answers Pinterest's redirect."))

    def respond(self, status: int, page: bytes) -> None:
        with contextlib.suppress(OSError):
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Referrer-Policy", "no-referrer")
            self.end_headers()
            self.wfile.write(page)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line carries the authorization code: never let http.server print it.
        log.debug("callback listener: %s", redact.redact(format % args))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], family: int, listener: CallbackListener):
        self.address_family = family
        self.listener = listener
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup for server_name: not needed here.
        import socketserver

        socketserver.TCPServer.server_bind(self)
        self.server_name = "localhost"
        self.server_port = self.server_address[1]


class CallbackListener:
    """A one-shot HTTP listener on the loopback address of ``pinterest.redirect_uri``."""

    def __init__(
        self,
        redirect_uri: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        poll: float = 0.05,
        reply_timeout: float = 120.0,
    ) -> None:
        parts = urlsplit(redirect_uri)
        if parts.scheme != "http" or not is_loopback_host(parts.hostname) or parts.port is None:
            raise ConfigError(
                f"invalid setting pinterest.redirect_uri: {redirect_uri!r} must be an http:// "
                "loopback URL with a port, such as http://localhost:8085/"
            )
        host = parts.hostname or ""
        self.redirect_uri = redirect_uri
        # Bind the loopback address itself, never every interface.
        self.host = "127.0.0.1" if host.lower() == "localhost" else host.strip("[]")
        self.port = parts.port
        self.path = parts.path or "/"
        self.clock = clock
        self.poll = poll
        self.reply_timeout = reply_timeout
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue[tuple[Callback, _Reply]] = queue.Queue()
        self._lock = threading.Lock()
        self._answered = False

    def __enter__(self) -> CallbackListener:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            self._server = _Server((self.host, self.port), family, self)
        except OSError as exc:
            raise PinmigrateError(
                f"cannot listen on {self.host}:{self.port} for Pinterest's redirect "
                f"(pinterest.redirect_uri = {self.redirect_uri}): {exc.strerror or exc}",
                hint="stop the program using that port, or set "
                f"{env_name('pinterest.redirect_uri')} to another loopback URI registered on "
                "the Pinterest app",
            ) from None
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": self.poll},
            name="pinmigrate-oauth-callback",
            daemon=True,
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def on_request(self, handler: _Handler) -> None:
        """Called on the server's threads: hand an OAuth callback over, ignore the rest."""
        parts = urlsplit(handler.path)
        if parts.path != self.path:
            handler.respond(404, _page(False, "Not found. This address only answers Pinterest."))
            return
        callback = Callback.from_query(parts.query)
        if not callback.is_oauth:
            handler.respond(
                400,
                _page(False, "pinmigrate is waiting for Pinterest to redirect here after login."),
            )
            return
        with self._lock:
            taken, self._answered = self._answered, True
        if taken:
            handler.respond(
                409, _page(False, "This login attempt was already answered; see the terminal.")
            )
            return
        reply = _Reply()
        self._queue.put((callback, reply))
        if not reply.ready.wait(self.reply_timeout):
            reply.set(202, _page(False, "Still working; see the terminal for the result."))
        handler.respond(reply.status, reply.page)
        reply.sent.set()

    def wait(self, timeout: float, complete: Callable[[Callback], tuple[T, str]]) -> T:
        """Wait for Pinterest's redirect, then run ``complete`` on this thread.

        ``complete`` returns the result and the sentence shown in the browser; an error it
        raises is shown there too, then re-raised here. Requests that are not the callback
        (``/favicon.ico``) are answered and the wait goes on.
        """
        deadline = self.clock() + timeout
        while True:
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise AuthError(
                    f"timed out after {timeout:g} s waiting for Pinterest to redirect to "
                    f"{self.redirect_uri}; nothing was stored",
                    hint="run `pinmigrate auth login` again (--timeout SECONDS to wait longer, "
                    "--no-browser to paste the address instead)",
                )
            try:
                callback, reply = self._queue.get(timeout=min(remaining, self.poll))
            except queue.Empty:
                continue
            try:
                result, message = complete(callback)
            except PinmigrateError as exc:
                self._answer(reply, 400, _page(False, redact.redact(exc.line())))
                raise
            except BaseException:
                self._answer(reply, 500, _page(False, "pinmigrate failed; see the terminal."))
                raise
            self._answer(reply, 200, _page(True, message))
            return result

    @staticmethod
    def _answer(reply: _Reply, status: int, page: bytes) -> None:
        reply.set(status, page)
        # Let the page reach the browser before the process may exit.
        reply.sent.wait(5)


# --- resolvers: how `auth login` gets a grant -------------------------------------------

Opener = Callable[[str], bool]
Prompt = Callable[[str], str]


def _click_prompt(text: str) -> str:
    import click

    return str(click.prompt(text, err=True, prompt_suffix=": "))


def _open_browser(url: str, *, settle: float = 1.0) -> bool:
    """Open ``url`` without waiting for the browser to finish.

    ``webbrowser`` runs a ``BROWSER`` command in the foreground and waits for it. A headless
    browser or curl only finishes once our listener has answered, and the listener answers
    from the thread that called this: waiting here would deadlock. So the browser runs on its
    own thread; a browser that fails at once is still reported as not opened.
    """
    outcome: list[bool] = []

    def launch() -> None:
        try:
            outcome.append(bool(webbrowser.open(url, new=1)))
        except (webbrowser.Error, OSError) as exc:
            log.debug("could not open a browser: %s", exc)
            outcome.append(False)

    thread = threading.Thread(target=launch, name="pinmigrate-browser", daemon=True)
    thread.start()
    thread.join(settle)
    return outcome[0] if outcome else True


class LoginResolver:
    """Obtains, verifies and stores a Pinterest login, asking the person at the terminal."""

    interactive = True

    def __init__(
        self,
        settings: Settings,
        store: LoginStore,
        client: PinterestAuth,
        *,
        notify: Callable[[str], None],
        prompt: Prompt | None = None,
        open_browser: Opener | None = None,
        now: Callable[[], datetime] = utcnow,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.notify = notify
        self.prompt = prompt
        self.open_browser = open_browser
        self.now = now
        self.clock = clock

    def login(
        self,
        *,
        no_browser: bool = False,
        token_text: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Login:
        """The one decision of `auth login`: stdin token, environment, paste or browser."""
        if token_text is not None:
            return self.from_token_text(token_text)
        if has_environment_token(self.settings) and not no_browser:
            login = self.from_environment()
            assert login is not None
            return login
        if no_browser:
            return self.paste()
        return self.browser(timeout=timeout)

    def from_environment(self) -> Login | None:
        return environment_login(
            self.settings, self.store, self.client, now=self.now(), notify=self.notify
        )

    def from_token_text(self, text: str) -> Login:
        """An access token, or the token endpoint's JSON, as read from stdin."""
        token = parse_token_text(text)
        return login_from_grant(
            self.client, self.store, token, settings=self.settings, source="token", now=self.now()
        )

    def browser(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        open_browser: bool = True,
        must_open: bool = False,
    ) -> Login:
        """RFC 8252: a loopback listener catches Pinterest's redirect.

        ``must_open``: nobody is at the terminal to open the address by hand, so a browser
        that cannot start ends the login at once instead of waiting for the timeout.
        """
        self.settings.require_pinterest_app()
        state = secrets.token_urlsafe(32)
        url = authorization_url(self.settings, state)
        with CallbackListener(self.settings.pinterest.redirect_uri, clock=self.clock) as listener:
            self.notify(f"Open this address to let pinmigrate use your Pinterest account:\n{url}")
            if open_browser and not self._open(url):
                if must_open:
                    raise AuthError(
                        "could not start the browser named by BROWSER; nothing was stored",
                        hint="check the BROWSER command, or set "
                        f"{ENV_REFRESH_TOKEN} for logins without a browser",
                    )
                self.notify("Could not start a browser: open the address above yourself.")
            self.notify(
                f"Waiting up to {timeout:g} s for Pinterest to send you back to "
                f"{self.settings.pinterest.redirect_uri} (Ctrl-C to cancel)..."
            )

            def complete(callback: Callback) -> tuple[Login, str]:
                login = self._exchange(code_from_callback(callback, state), source="browser")
                return login, f"pinmigrate is now logged in to Pinterest as {login.label}."

            try:
                return listener.wait(timeout, complete)
            except KeyboardInterrupt:
                self.notify("Login cancelled; nothing was stored.")
                raise

    def paste(self) -> Login:
        """No local browser: the person opens the URL anywhere and pastes where it led."""
        self.settings.require_pinterest_app()
        state = secrets.token_urlsafe(32)
        url = authorization_url(self.settings, state)
        self.notify(
            "Open this address in a browser, choose Allow, then copy the address the browser "
            f"was sent to (it starts with {self.settings.pinterest.redirect_uri}; the page "
            f"itself may fail to load):\n{url}"
        )
        pasted = (self.prompt or _click_prompt)("Paste that address (or just the code)")
        return self._exchange(parse_pasted(pasted, state), source="paste")

    def _exchange(self, code: str, *, source: str) -> Login:
        redact.register(code)
        token = self.client.exchange_code(code)
        return login_from_grant(
            self.client, self.store, token, settings=self.settings, source=source, now=self.now()
        )

    def _open(self, url: str) -> bool:
        try:
            return bool((self.open_browser or _open_browser)(url))
        except (webbrowser.Error, OSError) as exc:
            log.debug("could not open a browser: %s", exc)
            return False


class NonInteractiveLoginResolver(LoginResolver):
    """For ``--no-input`` and sessions without a terminal: never prompts, never waits."""

    interactive = False
    #: A browser command named in BROWSER (a headless browser in CI) can finish the login with
    #: nobody at the keyboard; without one, nobody would ever answer the consent page.
    #: ``--no-input`` rules it out too: the consent page is a question to a person.
    browser_command = False

    def browser(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        open_browser: bool = True,
        must_open: bool = False,
    ) -> Login:
        if open_browser and self.browser_command:
            return super().browser(timeout=timeout, open_browser=True, must_open=True)
        raise self.cannot_prompt()

    def paste(self) -> Login:
        raise self.cannot_prompt()

    @staticmethod
    def cannot_prompt() -> AuthError:
        return AuthError(
            "cannot log in to Pinterest here: a browser login needs a terminal (this session "
            "has --no-input or no terminal on stdin) and no token is configured",
            hint=f"set {ENV_REFRESH_TOKEN} (or {ENV_ACCESS_TOKEN}), pipe a token to "
            "`pinmigrate auth login --with-token`, or name a browser command in BROWSER",
        )


def parse_token_text(text: str) -> dict[str, Any]:
    """stdin of ``--with-token``: a bare access token or the token endpoint's JSON."""
    text = text.strip()
    usage = (
        "pipe an access token or the token endpoint's JSON: "
        "`pinmigrate auth login --with-token < token.json`"
    )
    if not text:
        raise UsageError("no token on stdin", hint=usage)
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            # exc.msg only: the text itself may hold a token.
            raise UsageError(
                f"the token JSON on stdin is not valid JSON ({exc.msg})", hint=usage
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
            raise UsageError("the token JSON on stdin has no access_token", hint=usage)
        _access_token_of(data)
        return data
    if any(ch.isspace() for ch in text):
        raise UsageError("stdin holds more than one word; expected one access token", hint=usage)
    redact.register(text)
    return {"access_token": text}


def resolver_for(
    app: App, settings: Settings, store: LoginStore, client: PinterestAuth, **kwargs: Any
) -> LoginResolver:
    """The interactive/CI split, decided once from :meth:`App.can_prompt`."""
    if app.can_prompt():
        return LoginResolver(settings, store, client, notify=app.note, **kwargs)
    resolver = NonInteractiveLoginResolver(settings, store, client, notify=app.note, **kwargs)
    resolver.browser_command = not app.no_input and bool(os.environ.get("BROWSER"))
    return resolver


def pinterest_client(settings: Settings) -> PinterestAuth:
    from pinmigrate.pinterest import PinterestClient

    return PinterestClient(settings)


# --- logins for apply -------------------------------------------------------------------


def _stderr_note(message: str) -> None:
    import click

    click.echo(message, err=True)


class LoginProvider:
    """Fresh logins that cover an account's ad accounts, for ``apply``; shared by its threads.

    Refreshes go through :func:`fresh_login`, which holds the store's lock (threads and
    processes alike), so one user's token is never refreshed twice at once.
    """

    def __init__(
        self,
        settings: Settings,
        store: LoginStore,
        client: PinterestAuth,
        app: App | None = None,
        *,
        interactive: bool | None = None,
        now: Callable[[], datetime] = utcnow,
        timeout: float = DEFAULT_TIMEOUT,
        resolver: LoginResolver | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.app = app
        self.interactive = (
            (app is not None and app.can_prompt()) if interactive is None else interactive
        )
        self.now = now
        self.timeout = timeout
        self._resolver = resolver
        self._notify: Callable[[str], None] = app.note if app is not None else _stderr_note
        self._env_lock = threading.Lock()
        self._env_checked = False
        self._env_login: Login | None = None
        self._env_error: str | None = None
        self._browser_lock = threading.Lock()
        self._browser_failed: str | None = None

    def environment(self) -> Login | None:
        """The login of ``pinterest.refresh_token`` / ``access_token``, made once per run."""
        with self._env_lock:
            if not self._env_checked:
                self._env_checked = True
                try:
                    self._env_login = environment_login(
                        self.settings, self.store, self.client, now=self.now(), notify=self._notify
                    )
                except AuthError as exc:
                    self._env_error = exc.message
            return self._env_login

    def for_account(
        self,
        advertiser_ids: Iterable[str],
        login_user_id: str | None,
        *,
        allow_interactive: bool = False,
    ) -> Login:
        """A fresh login covering every advertiser id, or AuthError (exit 4) saying why not.

        Tried in order: the stored login the plan named, the environment's login, any other
        stored login that covers, and (when allowed and a person is there) a browser login.
        """
        wanted = {str(a) for a in advertiser_ids}
        reasons: list[str] = []
        tried: set[str] = set()
        if login_user_id:
            tried.add(login_user_id)
            named = self.store.get(login_user_id)
            if named is None:
                reasons.append(f"the login {login_user_id} named by the plan is no longer stored")
            elif not named.covers(wanted):
                reasons.append(f"the login of {named.label} no longer covers them")
            elif (found := self._fresh(named, reasons)) is not None:
                return found
        env = self.environment()
        if env is not None:
            tried.add(env.user_id)
            if not env.covers(wanted):
                reasons.append(
                    f"the login from {ENV_REFRESH_TOKEN}/{ENV_ACCESS_TOKEN} "
                    f"({env.label}) does not cover them"
                )
            elif (found := self._fresh(env, reasons)) is not None:
                return found
        elif self._env_error:
            reasons.append(self._env_error)
        found = self._any_stored(wanted, tried, reasons)
        if found is not None:
            return found
        if allow_interactive and self.interactive:
            found = self._browser(wanted, tried, reasons)
            if found is not None:
                return found
        ids = ", ".join(sorted(wanted)) or "(none)"
        because = f": {'; '.join(reasons)}" if reasons else ""
        raise AuthError(
            f"no usable Pinterest login covers ad account(s) {ids}{because}",
            hint=f"{LOGIN_HINT} as a Pinterest user with access to them, or set "
            f"{ENV_REFRESH_TOKEN}",
        )

    def _fresh(self, login: Login, reasons: list[str]) -> Login | None:
        try:
            return fresh_login(login, self.settings, self.store, now=self.now(), client=self.client)
        except AuthError as exc:
            reasons.append(exc.message)
            return None

    def _any_stored(self, wanted: set[str], skip: set[str], reasons: list[str]) -> Login | None:
        for stored in self.store.load():
            if stored.user_id not in skip and stored.covers(wanted):
                found = self._fresh(stored, reasons)
                if found is not None:
                    return found
        return None

    def _browser(self, wanted: set[str], tried: set[str], reasons: list[str]) -> Login | None:
        # One browser at a time; a thread that waited may find the login another one made.
        with self._browser_lock:
            found = self._any_stored(wanted, tried, [])
            if found is not None:
                return found
            if self._browser_failed is not None:
                reasons.append(self._browser_failed)
                return None
            resolver = self._resolver or LoginResolver(
                self.settings, self.store, self.client, notify=self._notify, now=self.now
            )
            self._notify(
                f"Pinterest ad account(s) {', '.join(sorted(wanted))} need a login: "
                "starting a browser login."
            )
            try:
                login = resolver.browser(timeout=self.timeout)
            except AuthError as exc:
                self._browser_failed = f"the browser login failed: {exc.message}"
                reasons.append(self._browser_failed)
                return None
        if login.covers(wanted):
            return login
        reasons.append(f"the new login of {login.label} does not cover them")
        return None
