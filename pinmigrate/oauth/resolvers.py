"""How a login is obtained, decided once by the resolver class (twine's split):
:class:`LoginResolver` asks the person at the terminal (browser or paste);
:class:`NonInteractiveLoginResolver` raises instead, naming the settings that make a login
possible without a person. :class:`LoginProvider` hands ``apply`` fresh logins.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
import webbrowser
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pinmigrate import redact
from pinmigrate.errors import AuthError
from pinmigrate.logins import Login, LoginStore
from pinmigrate.oauth.grants import (
    DEFAULT_TIMEOUT,
    ENV_ACCESS_TOKEN,
    ENV_REFRESH_TOKEN,
    LOGIN_HINT,
    PinterestAuth,
    authorization_url,
    environment_login,
    fresh_login,
    has_environment_token,
    login_from_grant,
    parse_token_text,
    utcnow,
)
from pinmigrate.oauth.listener import Callback, CallbackListener, code_from_callback, parse_pasted

if TYPE_CHECKING:
    from pinmigrate.app import App
    from pinmigrate.settings import Settings

log = logging.getLogger("pinmigrate.oauth")

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

    def __init__(
        self,
        settings: Settings,
        store: LoginStore,
        client: PinterestAuth,
        *,
        browser_command: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(settings, store, client, **kwargs)
        #: A browser command named in BROWSER (a headless browser in CI) can finish the login
        #: with nobody at the keyboard; without one, nobody would answer the consent page.
        self.browser_command = browser_command

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


def resolver_for(
    app: App, settings: Settings, store: LoginStore, client: PinterestAuth, **kwargs: Any
) -> LoginResolver:
    """The interactive/CI split, decided here once for the whole command.

    A person can answer (:meth:`App.can_prompt`): they are asked. Otherwise nobody is, and a
    browser login happens only through a BROWSER command, which ``--no-input`` rules out too:
    the consent page is a question to a person.
    """
    if app.can_prompt():
        return LoginResolver(settings, store, client, notify=app.note, **kwargs)
    return NonInteractiveLoginResolver(
        settings,
        store,
        client,
        notify=app.note,
        browser_command=not app.no_input and bool(os.environ.get("BROWSER")),
        **kwargs,
    )


# --- logins for apply -------------------------------------------------------------------


def _stderr_note(message: str) -> None:
    import click

    click.echo(message, err=True)


class LoginProvider:
    """Fresh logins that cover an account's ad accounts, for ``apply``; shared by its threads.

    Refreshes go through :func:`fresh_login`, which holds the store's lock (threads and
    processes alike), so one user's token is never refreshed twice at once. Whether a person
    may be asked for a browser login is the resolver's to say (:func:`resolver_for`); without
    one, nobody is asked.
    """

    def __init__(
        self,
        settings: Settings,
        store: LoginStore,
        client: PinterestAuth,
        *,
        resolver: LoginResolver | None = None,
        now: Callable[[], datetime] = utcnow,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.resolver = resolver or NonInteractiveLoginResolver(
            settings, store, client, notify=_stderr_note, now=now
        )
        self.now = now
        self.timeout = timeout
        self._notify = self.resolver.notify
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
    ) -> Login:
        """A fresh login covering every advertiser id, or AuthError (exit 4) saying why not.

        Tried in order: the stored login the plan named, the environment's login, any other
        stored login that covers, and (when the resolver may ask a person) a browser login.
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
        if self.resolver.interactive:
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
            self._notify(
                f"Pinterest ad account(s) {', '.join(sorted(wanted))} need a login: "
                "starting a browser login."
            )
            try:
                login = self.resolver.browser(timeout=self.timeout)
            except AuthError as exc:
                self._browser_failed = f"the browser login failed: {exc.message}"
                reasons.append(self._browser_failed)
                return None
        if login.covers(wanted):
            return login
        reasons.append(f"the new login of {login.label} does not cover them")
        return None
