"""Test-only HTTP servers on a free loopback port, served from a daemon thread.

``serve_forever`` checks for shutdown every ``poll_interval`` seconds; its 0.5 s default
would cost half a second per server at every teardown, so every test server polls at
:data:`POLL_INTERVAL`. The emulator's own runner (``pinmigrate.emulator.Emulator``) does
the same in the package.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

POLL_INTERVAL = 0.05


class LoopbackServer:
    """A started ``ThreadingHTTPServer`` on 127.0.0.1; :meth:`stop` (or ``with``) ends it."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], *, name: str = "test") -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        # Handler threads must not keep a finished test run alive.
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": POLL_INTERVAL},
            name=f"{name}:{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, close the socket and wait for the serving thread; safe to repeat."""
        if not self._thread.is_alive():
            return
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
