"""Pinterest v5 grants: the authorize URL, verification of a grant, refresh with rotation,
environment (CI) logins and tokens read from stdin.

Every token and code is registered with :mod:`pinmigrate.redact` the moment it is seen, and
:class:`~pinmigrate.logins.LoginStore` is the only place one is written.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from pydantic import SecretStr

from pinmigrate import redact
from pinmigrate.errors import ApiError, AuthError, ConfigError, UsageError
from pinmigrate.logins import AdAccountAccess, Login, LoginStore
from pinmigrate.models import seconds_of
from pinmigrate.settings import env_name, is_loopback_host

if TYPE_CHECKING:
    from pinmigrate.settings import Settings

log = logging.getLogger("pinmigrate.oauth")

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

    def exchange_code(self, code: str, *, code_verifier: str | None = None) -> dict[str, Any]: ...
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
    """A lifetime Pinterest sent (:func:`models.seconds_of`), None when negative too."""
    number = seconds_of(value)
    return number if number is not None and number >= 0 else None


def _later(now: datetime, seconds: float | None) -> datetime | None:
    """``now`` plus ``seconds``; None when there are none, or the date is beyond a calendar."""
    if seconds is None:
        return None
    try:
        return now + timedelta(seconds=seconds)
    except OverflowError:
        return None


def _moment(epoch: float) -> datetime | None:
    """An epoch time in seconds (or milliseconds); None when beyond a calendar."""
    try:
        return datetime.fromtimestamp(epoch / 1000 if epoch > 1e11 else epoch, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def token_expiries(
    token: Mapping[str, Any], now: datetime
) -> tuple[datetime | None, datetime | None]:
    """(access expiry, refresh expiry) from ``expires_in`` / ``refresh_token_expires_at|_in``.

    A value that is no date (not a number, or beyond the calendar) reads as not reported.
    """
    access = _later(now, _seconds(token.get("expires_in")))
    refresh: datetime | None = None
    if token.get("refresh_token"):
        at = _seconds(token.get("refresh_token_expires_at"))
        if at is not None and at > 0:
            # Epoch seconds per the docs; tolerate milliseconds.
            refresh = _moment(at)
        else:
            refresh = _later(now, _seconds(token.get("refresh_token_expires_in")))
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


def verify_grant(
    client: PinterestAuth,
    token: Mapping[str, Any],
    *,
    settings: Settings,
    source: str,
    now: datetime,
    origin: str | None = None,
    on_user: Callable[[Login], None] | None = None,
) -> Login:
    """Check scopes and verify a grant (``/user_account``, every ``/ad_accounts`` page).

    Stores nothing: :func:`login_from_grant` stores pinmigrate's own logins; a grant made for
    one Adobe account is only verified. ``on_user`` sees the login as soon as its user is
    known, before the ad accounts are read.
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
                "check that the app has those scopes, then sign in again",
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
    if on_user is not None:
        on_user(login)
    accounts = [a for a in map(_ad_account, client.ad_accounts(access)) if a is not None]
    return login.model_copy(update={"ad_accounts": accounts})


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
    """Verify a grant (:func:`verify_grant`) and store it as pinmigrate's own login.

    ``rotated``: the grant came from a refresh, so an older refresh token may now be dead;
    the new one is stored as soon as the user is known, before the ad accounts are read.
    """

    def keep_rotated(login: Login) -> None:
        store.update(
            login.user_id,
            lambda previous: login.model_copy(
                update={"ad_accounts": previous.ad_accounts if previous else []}
            ),
        )

    login = verify_grant(
        client,
        token,
        settings=settings,
        source=source,
        now=now,
        origin=origin,
        on_user=keep_rotated if rotated else None,
    )
    stored = store.update(
        login.user_id,
        lambda previous: _keeping_refresh(previous, _first_expiry(previous, login), now),
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


# --- the authorize URL ------------------------------------------------------------------


@dataclass(frozen=True)
class Pkce:
    """RFC 7636 S256: the verifier stays in this process; its challenge goes to Pinterest.

    Sent only when ``pinterest.pkce`` is true: Pinterest documents no PKCE (api-notes.md §4;
    pinterest/api-description ``v5/openapi.json`` ``OauthAccessTokenRequestCode`` lists
    ``code`` and ``redirect_uri`` only), and an unknown parameter might be refused.
    """

    verifier: str = field(repr=False)

    @classmethod
    def new(cls) -> Pkce:
        # 64 random bytes: 86 characters of [A-Za-z0-9_-], within RFC 7636's 43 to 128.
        verifier = secrets.token_urlsafe(64)
        redact.register(verifier)
        return cls(verifier)

    @property
    def challenge(self) -> str:
        return pkce_challenge(self.verifier)


def pkce_challenge(verifier: str) -> str:
    """BASE64URL(SHA256(verifier)) without padding (RFC 7636 §4.2, S256)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def authorization_url(settings: Settings, state: str, *, pkce: Pkce | None = None) -> str:
    """Pinterest's authorize URL; scopes comma-joined as Pinterest expects; the PKCE
    challenge (S256) when ``pkce`` is given."""
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
    # oauthlib builds https:// URLs only, unless OAUTHLIB_INSECURE_TRANSPORT is set, and that
    # would be for the whole process and every thread. The loopback emulator is the one
    # http:// endpoint allowed (checked above), and the scheme plays no part in the query:
    # build the URL over https, then give it back its own scheme.
    extra = {"code_challenge": pkce.challenge, "code_challenge_method": "S256"} if pkce else {}
    url, _state = session.authorization_url(parts._replace(scheme="https").geturl(), **extra)
    return urlsplit(str(url))._replace(scheme=parts.scheme).geturl()


# --- tokens from stdin, the client ------------------------------------------------------


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


def pinterest_client(settings: Settings) -> PinterestAuth:
    """The Pinterest client; imported here, not at the top, as it pulls in requests."""
    from pinmigrate.pinterest import PinterestClient

    return PinterestClient(settings)
