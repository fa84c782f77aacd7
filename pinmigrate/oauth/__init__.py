"""Pinterest v5 OAuth: browser (loopback) and pasted logins, tokens from stdin or settings,
verification, refresh with rotation, and the logins ``apply`` uses.

- :mod:`~pinmigrate.oauth.grants`: the authorize URL, verifying and storing a grant,
  refresh with rotation, environment (CI) logins, ``--with-token`` text;
- :mod:`~pinmigrate.oauth.listener`: the loopback listener and the checks on the callback
  (state, Pinterest's refusal) or on a pasted address;
- :mod:`~pinmigrate.oauth.resolvers`: :func:`resolver_for` decides once whether a person
  can be asked (:class:`LoginResolver`) or not (:class:`NonInteractiveLoginResolver`);
  :class:`AdobeGrants` makes the one-account grants ``apply``'s api reconnect path hands to
  Adobe (never stored).

The names below are the package's public surface; everything else is reached through its
module.
"""

from __future__ import annotations

from pinmigrate.oauth.grants import (
    authorization_url,
    environment_login,
    fresh_login,
    has_environment_token,
    login_from_grant,
    needs_refresh,
    parse_scopes,
    parse_token_text,
    pinterest_client,
    token_digest,
    token_expiries,
    utcnow,
    verify_grant,
)
from pinmigrate.oauth.listener import (
    Callback,
    CallbackListener,
    code_from_callback,
    parse_pasted,
)
from pinmigrate.oauth.resolvers import (
    AdobeGrants,
    LoginResolver,
    NonInteractiveLoginResolver,
    resolver_for,
)

__all__ = [
    "AdobeGrants",
    "Callback",
    "CallbackListener",
    "LoginResolver",
    "NonInteractiveLoginResolver",
    "authorization_url",
    "code_from_callback",
    "environment_login",
    "fresh_login",
    "has_environment_token",
    "login_from_grant",
    "needs_refresh",
    "parse_pasted",
    "parse_scopes",
    "parse_token_text",
    "pinterest_client",
    "resolver_for",
    "token_digest",
    "token_expiries",
    "utcnow",
    "verify_grant",
]
