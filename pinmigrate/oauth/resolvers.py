"""How a login is obtained, decided once by the resolver class (twine's split):
:class:`LoginResolver` asks the person at the terminal (browser or paste);
:class:`NonInteractiveLoginResolver` raises instead, naming the settings that make a login
possible without a person. :class:`AdobeGrants` makes the one-account grants that ``apply``'s
api reconnect path hands to Adobe.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import threading
import time
import webbrowser
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pinmigrate import redact
from pinmigrate.errors import AuthError, PinmigrateError, name_all
from pinmigrate.logins import Login, LoginStore
from pinmigrate.oauth.grants import (
    DEFAULT_TIMEOUT,
    ENV_ACCESS_TOKEN,
    ENV_REFRESH_TOKEN,
    PinterestAuth,
    Pkce,
    authorization_url,
    environment_login,
    has_environment_token,
    login_from_grant,
    parse_token_text,
    utcnow,
    verify_grant,
)
from pinmigrate.oauth.listener import Callback, CallbackListener, code_from_callback, parse_pasted
from pinmigrate.settings import ENV_PREFIX

if TYPE_CHECKING:
    from pinmigrate.app import App
    from pinmigrate.settings import Settings

log = logging.getLogger("pinmigrate.oauth")

Opener = Callable[[str], bool]
Prompt = Callable[[str], str]


#: How many pastes ``auth login --no-browser`` reads before it gives up.
PASTE_TRIES = 3


def _click_prompt(text: str) -> str:
    import click

    return str(click.prompt(text, err=True, prompt_suffix=": "))


#: Words in an environment name that mark a secret the browser command is not given.
SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD")


def browser_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without pinmigrate's settings and secrets, for the browser command.

    Every ``PINMIGRATE_*`` name goes (``PINMIGRATE_ADOBE_CLIENT_SECRET``,
    ``PINMIGRATE_PINTEREST_APP_SECRET``, ``PINMIGRATE_PINTEREST_REFRESH_TOKEN``, ...), and so
    does any other name holding SECRET, TOKEN or PASSWORD: a browser needs none of them.
    """
    return {
        name: value
        for name, value in environ.items()
        if not name.upper().startswith(ENV_PREFIX)
        and not any(word in name.upper() for word in SECRET_WORDS)
    }


#: Run in a child Python (isolated: no current directory on sys.path) with the stripped
#: environment, so webbrowser and the BROWSER command it starts inherit no secret.
_LAUNCH = (
    "import sys, webbrowser\n"
    "try:\n"
    "    opened = webbrowser.open(sys.argv[1], new=1)\n"
    "except Exception:\n"
    "    opened = False\n"
    "sys.exit(0 if opened else 1)\n"
)


def _launch(url: str) -> bool:
    done = subprocess.run(
        [sys.executable, "-I", "-c", _LAUNCH, url],
        env=browser_environment(os.environ),
        check=False,
    )
    return done.returncode == 0


def _open_browser(url: str, *, settle: float = 1.0) -> bool:
    """Open ``url`` without waiting for the browser to finish.

    ``webbrowser`` runs a ``BROWSER`` command in the foreground and waits for it. A headless
    browser or curl only finishes once our listener has answered, and the listener answers
    from the thread that called this: waiting here would deadlock. So the browser runs on its
    own thread; a browser that fails at once is still reported as not opened. It runs in a
    child process whose environment holds none of pinmigrate's secrets
    (:func:`browser_environment`).
    """
    outcome: list[bool] = []

    def launch() -> None:
        try:
            outcome.append(_launch(url))
        except OSError as exc:
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
        for_adobe: str | None = None,
    ) -> Login:
        """RFC 8252: a loopback listener catches Pinterest's redirect.

        ``must_open``: nobody is at the terminal to open the address by hand, so a browser
        that cannot start ends the login at once instead of waiting for the timeout.
        ``for_adobe``: the Adobe account the grant is made for; it is verified, not stored.
        """
        self.settings.require_pinterest_app()
        state = secrets.token_urlsafe(32)
        pkce = self._pkce()
        url = authorization_url(self.settings, state, pkce=pkce)
        with CallbackListener(
            self.settings.pinterest.redirect_uri, state=state, clock=self.clock
        ) as listener:
            purpose = (
                f"to give Adobe account {for_adobe} a Pinterest grant of its own"
                if for_adobe
                else "to let pinmigrate use your Pinterest account"
            )
            # The person's own terminal may show the state; the browser command's argv
            # (readable by every local user) gets a one-time address on the listener instead.
            self.notify(f"Open this address {purpose}:\n{url}")
            if open_browser and not self._open(listener.start_url(url)):
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
                code = code_from_callback(callback, state)
                login = self._exchange(code, source="browser", for_adobe=for_adobe, pkce=pkce)
                if for_adobe:
                    return login, (
                        f"Signed in to Pinterest as {login.label} for Adobe account {for_adobe}."
                    )
                return login, f"pinmigrate is now logged in to Pinterest as {login.label}."

            try:
                return listener.wait(timeout, complete, notify=self.notify)
            except KeyboardInterrupt:
                self.notify("Login cancelled; nothing was stored.")
                raise

    def paste(self, *, for_adobe: str | None = None) -> Login:
        """No local browser: the person opens the URL anywhere and pastes where it led.

        ``for_adobe``: the Adobe account the grant is made for; it is verified, not stored.
        """
        self.settings.require_pinterest_app()
        state = secrets.token_urlsafe(32)
        pkce = self._pkce()
        url = authorization_url(self.settings, state, pkce=pkce)
        purpose = f" (a Pinterest grant for Adobe account {for_adobe})" if for_adobe else ""
        self.notify(
            f"Open this address in a browser{purpose}, choose Allow, then copy the address "
            "the browser "
            f"was sent to (it starts with {self.settings.pinterest.redirect_uri}; the page "
            f"itself may fail to load):\n{url}"
        )
        code = self._ask_for_paste(state)
        return self._exchange(code, source="paste", for_adobe=for_adobe, pkce=pkce)

    def _ask_for_paste(self, state: str) -> str:
        """The code from a paste; a bad paste (empty, not the address, another attempt's
        state, a refusal) is asked for again, up to :data:`PASTE_TRIES` in all; then the last
        problem is the one error line. The end of input after a bad paste ends it too."""
        import click

        prompt = self.prompt or _click_prompt
        problem: AuthError | None = None
        for attempt in range(1, PASTE_TRIES + 1):
            try:
                pasted = prompt("Paste that address (or just the code)")
            except (click.exceptions.Abort, EOFError):
                if problem is None:
                    raise
                if self.prompt is None:
                    click.echo(err=True)  # end the prompt's line: the error gets its own
                attempt -= 1
                break
            try:
                return parse_pasted(pasted, state)
            except AuthError as exc:
                problem = exc
                if attempt < PASTE_TRIES:
                    left = PASTE_TRIES - attempt
                    self.notify(
                        f"That paste did not work: {exc.message}. Paste again "
                        f"({left} more {'try' if left == 1 else 'tries'})."
                    )
        assert problem is not None
        tries = f"{attempt} tr{'y' if attempt == 1 else 'ies'}"
        raise AuthError(
            f"no usable paste after {tries}: {problem.message}",
            hint=problem.hint,
        )

    def _pkce(self) -> Pkce | None:
        return Pkce.new() if self.settings.pinterest.pkce else None

    def _exchange(
        self, code: str, *, source: str, for_adobe: str | None = None, pkce: Pkce | None = None
    ) -> Login:
        redact.register(code)
        if pkce is not None:
            token = self.client.exchange_code(code, code_verifier=pkce.verifier)
        else:
            # Without PKCE the call is the one every PinterestAuth has always taken.
            token = self.client.exchange_code(code)
        if for_adobe:
            # Adobe's own copy: verified, never stored, never refreshed by pinmigrate.
            return verify_grant(
                self.client, token, settings=self.settings, source=source, now=self.now()
            )
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
        for_adobe: str | None = None,
    ) -> Login:
        if open_browser and self.browser_command and not for_adobe:
            return super().browser(timeout=timeout, open_browser=True, must_open=True)
        raise self.cannot_prompt()

    def paste(self, *, for_adobe: str | None = None) -> Login:
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


# --- grants for Adobe (the experimental api reconnect path) -------------------------------


def _stderr_note(message: str) -> None:
    import click

    click.echo(message, err=True)


_ADOBE_PATH = 'migration.reconnect_via = "adobe", the default'
#: What to do when no person can sign in for the Adobe accounts.
NO_PERSON_HINT = f"reconnect them in Adobe instead ({_ADOBE_PATH}), or run apply at a terminal"
#: What to do when one sign-in did not give a usable grant.
RETRY_HINT = f"run apply again, or reconnect the account in Adobe ({_ADOBE_PATH})"


class AdobeGrants:
    """Fresh Pinterest grants for ``apply``'s api reconnect path: one per Adobe account.

    Adobe refreshes the grant it is given, and Pinterest rotates (and may revoke) a refresh
    token on every refresh: a token that pinmigrate also kept, or that two accounts shared,
    would be cut off by the other holder's next refresh (api-notes §0). So each grant comes
    from a person's authorization-code sign-in made for that one account, is verified, and
    is never stored, refreshed or handed out twice. pinmigrate's own logins (logins.json,
    ``pinterest.refresh_token`` / ``access_token``) never leave here: they serve the plan's
    pre-flight and the ``auth`` commands. Only a resolver that may ask a person
    (:func:`resolver_for`) makes grants; a BROWSER command alone is nobody's consent.
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
        #: Read only, to refuse a grant that equals a stored login's tokens.
        self.store = store
        self.resolver = resolver or NonInteractiveLoginResolver(
            settings, store, client, notify=_stderr_note, now=now
        )
        self.timeout = timeout
        self._handed: set[str] = set()

    @property
    def can_ask(self) -> bool:
        """True when a person is at the terminal to sign in (not ``--no-input``)."""
        return self.resolver.interactive

    def cannot_ask(self, accounts: Sequence[str]) -> AuthError:
        """The exit-4 error when nobody can sign in for ``accounts`` (before any write)."""
        return AuthError(
            'migration.reconnect_via = "api" needs a person to sign in to Pinterest once for '
            f"each account, and nobody can here (--no-input or no terminal): "
            f"{name_all(accounts, 'account', sep='; ')}; nothing was written",
            hint=NO_PERSON_HINT,
        )

    def grant_for(
        self, account: str, advertiser_ids: Iterable[str], *, sign_in_as: str | None = None
    ) -> Login:
        """A verified grant made for Adobe ``account`` alone, reaching every advertiser id.

        Raises AuthError (exit 4) when nobody can sign in, the sign-in fails, its user does
        not reach the ad accounts, or Pinterest answered tokens pinmigrate already holds.
        """
        wanted = sorted({str(a) for a in advertiser_ids})
        if not self.can_ask:
            raise self.cannot_ask([account])
        who = f"; sign in as {sign_in_as}, who reaches them" if sign_in_as else ""
        self.resolver.notify(
            f"Pinterest sign-in for Adobe account {account} (ad account(s) "
            f"{', '.join(wanted)}){who}. The grant goes to that account only: pinmigrate "
            "neither keeps nor refreshes it."
        )
        try:
            grant = self.resolver.browser(timeout=self.timeout, for_adobe=account)
        except AuthError as exc:
            raise AuthError(
                f"the Pinterest sign-in for Adobe account {account} failed: {exc.message}; "
                "nothing was written",
                hint=RETRY_HINT,
            ) from None
        tokens = {
            t.get_secret_value() for t in (grant.access_token, grant.refresh_token) if t is not None
        }
        redact.register(*tokens)
        if not grant.covers(set(wanted)):
            missing = name_all((a for a in wanted if a not in grant.ad_account_ids), "ad account")
            raise AuthError(
                f"the Pinterest user {grant.label} who signed in for Adobe account {account} "
                f"does not reach {missing}; nothing was written",
                hint="run apply again and sign in as a Pinterest user with access to them",
            )
        if tokens & (self._handed | self._kept_tokens()):
            raise AuthError(
                f"Pinterest answered the sign-in for Adobe account {account} with tokens "
                "pinmigrate already holds (its own login, or another account's grant); "
                "nothing was written",
                hint=RETRY_HINT,
            )
        self._handed |= tokens
        return grant

    def _kept_tokens(self) -> set[str]:
        """pinmigrate's own tokens: the stored logins' and the environment's."""
        pin = self.settings.pinterest
        values = {t.get_secret_value() for t in (pin.refresh_token, pin.access_token) if t}
        try:
            stored = self.store.load()
        except PinmigrateError as exc:
            log.debug("the login store could not be read to compare tokens: %s", exc)
            stored = []
        for login in stored:
            values.add(login.access_token.get_secret_value())
            if login.refresh_token is not None:
                values.add(login.refresh_token.get_secret_value())
        return {v for v in values if v}
