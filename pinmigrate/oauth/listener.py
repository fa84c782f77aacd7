"""The loopback listener of a browser login (RFC 8252) and the checks on what comes back:
Pinterest's redirect, caught on ``pinterest.redirect_uri``, or the address a person pasted.
"""

from __future__ import annotations

import contextlib
import hmac
import html
import logging
import queue
import secrets
import socket
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from pinmigrate import redact
from pinmigrate.errors import AuthError, ConfigError, PinmigrateError
from pinmigrate.oauth.grants import LOGIN_HINT
from pinmigrate.settings import env_name, is_loopback_host

log = logging.getLogger("pinmigrate.oauth")

T = TypeVar("T")


# --- the callback -----------------------------------------------------------------------


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
        return callback

    @property
    def is_oauth(self) -> bool:
        return any(v is not None for v in (self.code, self.state, self.error))


#: The most of a callback's own words (``error``, ``error_description``) ever printed.
MAX_SHOWN = 300


def printable(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` safe for a terminal line: control and format characters (escape sequences,
    line breaks, bidi overrides) become spaces or go, and it is cut at ``limit`` characters."""
    kept: list[str] = []
    for ch in text:
        category = unicodedata.category(ch)
        if category in ("Cc", "Zl", "Zp"):
            kept.append(" ")
        elif category not in ("Cf", "Cs", "Co", "Cn"):
            kept.append(ch)
    shown = " ".join("".join(kept).split())
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def state_matches(callback: Callback, expected_state: str) -> bool:
    """True when the callback carries this login attempt's state (compared in constant time)."""
    return bool(callback.state) and hmac.compare_digest(
        (callback.state or "").encode("utf-8"), expected_state.encode("utf-8")
    )


def code_from_callback(callback: Callback, expected_state: str) -> str:
    """The authorization code, once the state matches and Pinterest did not refuse."""
    retry = "run `pinmigrate auth login` again"
    if callback.state and not state_matches(callback, expected_state):
        raise AuthError(
            "the OAuth callback's state does not match this login attempt (an old browser tab, "
            "or a request that did not come from Pinterest); nothing was stored",
            hint=retry,
        )
    if callback.error is not None:
        reason = printable(callback.error_description or callback.error or "") or "no reason given"
        raise AuthError(
            f"Pinterest did not grant access: {redact.redact(reason)} "
            f"({printable(callback.error, 80)}); nothing was stored",
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
    # Only the code of the answer that is ours is a secret to mask: registering every
    # ignored callback's words would let any local program blank out pinmigrate's output.
    redact.register(callback.code)
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


@dataclass(frozen=True)
class _Event:
    """What the server threads hand to :meth:`CallbackListener.wait`: the callback to
    complete, a request that was ignored (said on the terminal), or a reason to stop."""

    callback: Callback | None = None
    reply: _Reply | None = None
    ignored: str | None = None
    stop: AuthError | None = None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # A browser may open a speculative connection and send nothing on it.
    timeout = 10
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        self.server.listener.on_request(self)

    def do_POST(self) -> None:
        self.respond(405, _page(False, "This address only answers Pinterest's redirect."))

    def respond(self, status: int, page: bytes, *, location: str | None = None) -> None:
        with contextlib.suppress(OSError):
            self.send_response(status)
            if location is not None:
                self.send_header("Location", location)
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


#: Where the browser is sent first (:meth:`CallbackListener.start_url`); the callback path
#: of ``pinterest.redirect_uri`` wins when it is the same.
START_PATH = "/start"


class CallbackListener:
    """A one-shot HTTP listener on the loopback address of ``pinterest.redirect_uri``.

    ``state``: this login attempt's state. A callback without it is answered with an error
    page and ignored (the wait goes on until the timeout or the right callback): another
    local user racing the browser cannot end the login. Requests whose ``Host`` is not the
    listener's own loopback name are refused (DNS rebinding). :meth:`start_url` gives the
    browser a one-time address that redirects to the authorize URL, so the browser
    command's argv never carries the state.
    """

    def __init__(
        self,
        redirect_uri: str,
        *,
        state: str | None = None,
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
        self.hostname = host.lower()
        # Bind the loopback address itself, never every interface.
        self.host = "127.0.0.1" if host.lower() == "localhost" else host.strip("[]")
        self.port = parts.port
        self.path = parts.path or "/"
        self.state = state
        self.clock = clock
        self.poll = poll
        self.reply_timeout = reply_timeout
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue[_Event] = queue.Queue()
        self._lock = threading.Lock()
        self._answered = False
        self._start: tuple[str, str] | None = None  # (nonce, authorize URL)
        self._start_used = False
        self._ignored = 0

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

    # --- what the listener answers -----------------------------------------------------

    @property
    def start_path(self) -> str:
        return START_PATH if self.path != START_PATH else START_PATH + "-login"

    def _netloc(self, name: str) -> str:
        return f"{name}:{self.port}"

    def allowed_hosts(self) -> frozenset[str]:
        """The ``Host`` values this listener answers: its own loopback names and port."""
        names = {self.hostname if ":" not in self.hostname else f"[{self.hostname}]"}
        if self.host == "127.0.0.1":
            names |= {"127.0.0.1", "localhost"}
        elif self.host == "::1":
            names |= {"[::1]", "localhost"}
        else:
            names.add(f"[{self.host}]" if ":" in self.host else self.host)
        hosts = {self._netloc(n) for n in names}
        if self.port == 80:
            hosts |= names
        return frozenset(hosts)

    def start_url(self, authorize_url: str) -> str:
        """A one-time address on this listener that redirects to ``authorize_url``.

        It is what the browser command is given: its argv (readable by other local users)
        carries an unguessable nonce, not the state. The nonce works once; a second use
        means someone else read it, and ends the login (:meth:`wait` raises).
        """
        nonce = secrets.token_urlsafe(32)
        with self._lock:
            self._start, self._start_used = (nonce, authorize_url), False
        host = self.hostname if ":" not in self.hostname else f"[{self.hostname}]"
        return f"http://{self._netloc(host)}{self.start_path}?n={nonce}"

    def on_request(self, handler: _Handler) -> None:
        """Called on the server's threads: hand an OAuth callback over, ignore the rest."""
        parts = urlsplit(handler.path)
        host = (handler.headers.get("Host") or "").strip().lower()
        if host not in self.allowed_hosts():
            log.debug("callback listener: refused a request for Host %r", printable(host))
            handler.respond(
                400, _page(False, "This address only answers requests for this computer.")
            )
            if parts.path == self.path and Callback.from_query(parts.query).is_oauth:
                self._ignore("an answer sent to another host name (Host header)")
            return
        if parts.path == self.start_path and parts.path != self.path:
            self._on_start(handler, parts.query)
            return
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
        if self.state is not None and not state_matches(callback, self.state):
            handler.respond(
                400,
                _page(
                    False,
                    "This answer does not belong to the login pinmigrate is waiting for "
                    "(its state is wrong or missing); it was ignored.",
                ),
            )
            self._ignore(
                "an answer whose state is wrong or missing (an old tab, or a request "
                "that did not come from Pinterest)"
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
        self._queue.put(_Event(callback=callback, reply=reply))
        if not reply.ready.wait(self.reply_timeout):
            reply.set(202, _page(False, "Still working; see the terminal for the result."))
        handler.respond(reply.status, reply.page)
        reply.sent.set()

    def _ignore(self, what: str) -> None:
        with self._lock:
            self._ignored += 1
        self._queue.put(_Event(ignored=f"Ignored {what} on {self.redirect_uri}; still waiting."))

    def _on_start(self, handler: _Handler, query: str) -> None:
        given = (parse_qs(query).get("n") or [""])[0]
        with self._lock:
            start = self._start
            known = start is not None and hmac.compare_digest(
                given.encode("utf-8"), start[0].encode("utf-8")
            )
            used = self._start_used
            if known:
                self._start_used = True
        if start is None or not known:
            handler.respond(404, _page(False, "Not found. This address only answers Pinterest."))
            return
        if used:
            handler.respond(
                410, _page(False, "This sign-in address was already used; see the terminal.")
            )
            self._queue.put(
                _Event(
                    stop=AuthError(
                        "the one-time sign-in address given to the browser was opened twice: "
                        "another program on this computer may have read it, so this login "
                        "attempt is abandoned; nothing was stored",
                        hint="run `pinmigrate auth login` again",
                    )
                )
            )
            return
        handler.respond(302, b"", location=start[1])

    # --- waiting -------------------------------------------------------------------------

    def wait(
        self,
        timeout: float,
        complete: Callable[[Callback], tuple[T, str]],
        *,
        notify: Callable[[str], None] | None = None,
    ) -> T:
        """Wait for Pinterest's redirect, then run ``complete`` on this thread.

        ``complete`` returns the result and the sentence shown in the browser; an error it
        raises is shown there too, then re-raised here. Requests that are not the callback
        (``/favicon.ico``) are answered and the wait goes on; so are callbacks with a wrong
        or missing state, which ``notify`` is told of.
        """
        deadline = self.clock() + timeout
        while True:
            remaining = deadline - self.clock()
            if remaining <= 0:
                ignored = (
                    f" (ignored {self._ignored} answer(s) that did not belong to this login: "
                    "a wrong or missing state, or another host name)"
                    if self._ignored
                    else ""
                )
                raise AuthError(
                    f"timed out after {timeout:g} s waiting for Pinterest to redirect to "
                    f"{self.redirect_uri}{ignored}; nothing was stored",
                    hint="run `pinmigrate auth login` again (--timeout SECONDS to wait longer, "
                    "--no-browser to paste the address instead); if Pinterest showed an error "
                    f"page, register {self.redirect_uri} on the Pinterest app exactly as "
                    "written (pinterest.redirect_uri)",
                )
            try:
                event = self._queue.get(timeout=min(remaining, self.poll))
            except queue.Empty:
                continue
            if event.stop is not None:
                raise event.stop
            if event.ignored is not None:
                if notify is not None:
                    notify(event.ignored)
                continue
            assert event.callback is not None and event.reply is not None
            reply = event.reply
            try:
                result, message = complete(event.callback)
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
