"""What every service backend of the emulator shares: the lock, the clock, the config, etags."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Config:
    """Behaviour switches, set with ``POST /_emulator/config``."""

    page_size: int = 100
    auto_approve: bool = False
    auto_approve_user: str = "emu_marketer"
    #: 200 with ``{"id", "etag"}`` or 202 with no body: Adobe documents both for PATCH.
    patch_status: int = 200
    #: How the token response joins scopes (Pinterest's separator is unconfirmed).
    scope_separator: str = " "
    #: A scope granted on top of those asked for (Pinterest may grant more).
    extra_scope: str | None = None
    #: A refresh revokes the refresh token it replaces (True) or leaves it valid until it
    #: expires (False): whether Pinterest revokes it is unconfirmed (api-notes.md §4).
    revoke_rotated_refresh: bool = True
    #: Token answers carry ``expires_in`` and ``refresh_token_expires_in`` as strings
    #: ("2592000", as in Pinterest's quickstart fixtures) instead of the spec's integers.
    expires_as_string: bool = False
    #: Unknown query parameters on Flow Service lists answer 400 (False: ignored).
    strict_queries: bool = True
    #: ``limit`` above 100: ``"error"`` (400) or ``"cap"`` (served as 100); Adobe documents
    #: neither.
    limit_over_max: str = "error"
    #: Seconds a flow write (enable/disable, PATCH) takes to apply, on the emulator's clock.
    #: The write answers at once; until then reads show the flow as before, with
    #: ``lastOperation`` in progress. A write to a flow with one pending is queued after it.
    write_delay: float = 0.0
    #: When set, every delayed flow write ends ``failed`` with this message, changing nothing.
    write_error: str | None = None
    #: ``metrics.statusSummary.status`` of a successful run. Adobe's examples write
    #: ``success`` and ``failed`` (help/dataflows/api/monitor.md, help/sources/notifications.md,
    #: the vendored spec's ``FlowRunItemDTO``); api-notes.md §3 "Runs" has seen ``Success``
    #: too: the other statuses of a run follow this one's case.
    run_status: str = "success"
    #: The gateway's ``error_code`` as a string ("401013") instead of the number of Adobe's
    #: example (api-notes.md §2): clients must read both.
    gateway_code_text: bool = False
    #: Seconds after an enable before its run shows in ``GET /runs`` at all (emulator clock).
    run_delay: float = 0.0
    #: Seconds that run then reads as ``processing`` before it ends (emulator clock).
    run_duration: float = 0.0
    #: Runs that end ``failed``: flow id or flow name (``"*"``: every flow) -> the message
    #: of the run's one error (code ``CONNECTOR-2001-500``); a run's own credential problem
    #: comes first.
    run_failures: dict[str, str] = field(default_factory=dict)
    #: PKCE (RFC 7636) on Pinterest's OAuth, which Pinterest does not document (api-notes.md
    #: §4): ``"verify"`` checks a ``code_challenge`` when one is sent (S256 or plain) against
    #: the exchange's ``code_verifier``; ``"ignore"`` accepts both parameters and checks
    #: nothing; ``"refuse"`` answers them as unknown parameters (consent page error, 400).
    pkce: str = "verify"
    #: The next-page link of the Sandbox Management API's ``GET /sandboxes`` (api-notes.md
    #: §3b), which Adobe documents two ways: ``"next"``, a link to follow as it is;
    #: ``"templated"``, Adobe's example (help/sandboxes/api/sandboxes.md:
    #: ``?limit={limit}&offset={offset}``, ``"templated": true``); ``"none"``, no next link
    #: (``_links.page`` only): a client pages by ``offset`` while pages come back full.
    sandbox_links: str = "next"


class Context:
    """One re-entrant lock for the whole world, so a call that spans services stays atomic."""

    def __init__(
        self, clock: Callable[[], float] = time.time, config: Config | None = None
    ) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.config = config or Config()
        #: per-process salt, so ids and etags of two emulator runs never collide.
        self.salt = secrets.token_hex(6)
        #: ``http://HOST:PORT`` once a server listens (Adobe's callback is registered on it).
        self.base_url: str | None = None
        self._etag_counter = 0

    def next_etag(self) -> str:
        # Adobe's etags are quoted strings; only their change matters, not their content.
        with self.lock:
            self._etag_counter += 1
            return f'"{self._etag_counter:08x}-0000-0200-0000-{self.salt}"'

    def now_ms(self) -> int:
        return int(self.clock() * 1000)
