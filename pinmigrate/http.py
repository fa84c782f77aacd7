"""The one HTTP layer under both API clients: timeouts, retries, backoff, redacted logs, counters.

Retries are decided here once. A request is repeated only when repeating it cannot do harm:
GET/HEAD/OPTIONS by default, or when the caller says so (``retry_safe=True``). Writes whose
answer may be lost after they took (flow enable/disable, ``If-Match`` PATCHes) also pass
``retry_network=False``: they are repeated only after an answer that says they were not
carried out (429, 503); the caller re-reads before deciding anything else.
"""

from __future__ import annotations

import email.utils
import http.client
import io
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar
from requests.structures import CaseInsensitiveDict
from urllib3 import ProxyManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from pinmigrate.errors import ApiError, NotSentError
from pinmigrate.redact import redact

if TYPE_CHECKING:
    from pinmigrate.settings import Settings
    from pinmigrate.throttle import Throttle, Ticket

log = logging.getLogger("pinmigrate.http")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Answers that say the request was not carried out (throttled, or the service unavailable):
#: a write that must not be replayed blind is still repeated after these.
NOT_PROCESSED = frozenset({429, 503})
#: Attempts in all, paced ones included, are capped at this many times max_attempts.
PACED_FACTOR = 3
#: ``apply --concurrency`` allows up to this many writes at once.
MAX_CONCURRENCY = 64
#: Connections kept per host: the writers plus as many readers (the executor's re-reads use
#: the same width), so no thread opens a connection that the pool then throws away.
#: Connections are opened lazily: a large pool costs nothing until it is used.
POOL_SIZE = 2 * MAX_CONCURRENCY
MIB = 1024 * 1024
#: The largest answer read (``http.max_response_mib``): more is an error, never held.
MAX_RESPONSE_BYTES = 8 * MIB
#: Seconds one attempt may take from sending to the answer's last byte
#: (``http.request_deadline``); never more than what the retry cap leaves.
REQUEST_DEADLINE = 60.0
#: Seconds an attempt is given at least (or its whole deadline, if shorter): a retry that
#: would leave less of the retry cap is not made.
MIN_ATTEMPT = 1.0
#: Bytes read from the socket at a time while an answer is streamed in.
CHUNK_SIZE = 64 * 1024


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry one request."""

    #: Failed attempts; an answer that says when to come back (a Retry-After on a 429 or
    #: 503) is the server pacing us, not a failure, and does not count (up to
    #: PACED_FACTOR * max_attempts attempts in all). Ten, because a third of requests failing
    #: (throttling plus dropped connections) must not leave one of a thousand out of
    #: attempts; total_cap, not the count, is what ends a real outage.
    max_attempts: int = 10
    #: seconds; full jitter: sleep(uniform(0, min(max_delay, base_delay * 2**n)))
    base_delay: float = 0.5
    max_delay: float = 30.0
    #: never wait more than this in total for one request
    total_cap: float = 120.0
    retry_statuses: frozenset[int] = frozenset({429, 502, 503, 504})


@dataclass
class HttpStats:
    """Counters shared by every thread using one client."""

    requests: int = 0
    retries: int = 0
    network_errors: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count_request(self) -> None:
        with self._lock:
            self.requests += 1

    def count_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def count_network_error(self) -> None:
        with self._lock:
            self.network_errors += 1

    def count_status(self, status: int) -> None:
        with self._lock:
            self.by_status[status] = self.by_status.get(status, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy, e.g. for a report or a test assertion."""
        with self._lock:
            return {
                "requests": self.requests,
                "retries": self.retries,
                "network_errors": self.network_errors,
                "by_status": dict(self.by_status),
            }


@dataclass(frozen=True)
class RetryNotice:
    """One retry about to wait, as told to :attr:`HttpClient.observer` (e.g. a live line).

    Holds no URL query, header value or body: nothing secret, only what is shown."""

    service: str
    method: str
    #: The URL's path only (no query).
    path: str
    #: The Adobe sandbox the request is for (its ``x-sandbox-name``), when it names one.
    sandbox: str | None
    #: What went wrong: ``HTTP 503``, ``connection reset``, ...
    reason: str
    #: The attempt that just failed (1 for the first request).
    attempt: int
    #: Attempts allowed so far: ``RetryPolicy.max_attempts``, plus the answers paced by
    #: Retry-After (they do not count), at most ``PACED_FACTOR`` times as many.
    attempts: int
    #: Seconds until the next attempt.
    delay: float


#: Told about each retry before its wait, from the thread that makes the request.
RetryObserver = Callable[[RetryNotice], None]


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait per ``Retry-After`` (delta-seconds or an HTTP date); None if unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            # RFC 9110 dates are GMT; a date without a zone is still meant as GMT.
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def describe_url(url: str) -> str:
    """The URL as logs and messages show it: secrets masked."""
    return redact(url)


class _MaskedUrl:
    """A URL for a debug line, with its query and the Platform sandbox it is sent to (the
    ``x-sandbox-name`` header), so that an attempt's line and its answer's line match:
    built and masked only when the line is written (masking costs a regex pass per
    request, and the debug level is usually off)."""

    __slots__ = ("headers", "params", "url")

    def __init__(
        self, url: str, params: Any = None, headers: Mapping[str, str] | None = None
    ) -> None:
        self.url, self.params, self.headers = url, params, headers

    def __str__(self) -> str:
        url = self.url
        if self.params:
            prepared = requests.models.PreparedRequest()
            prepared.prepare_url(url, self.params)
            url = prepared.url or url
        sandbox = self.sandbox
        return describe_url(url + (f" [sandbox {sandbox}]" if sandbox else ""))

    @property
    def sandbox(self) -> str | None:
        """The Platform sandbox the request is sent to (its ``x-sandbox-name``), if any."""
        return next(
            (v for k, v in (self.headers or {}).items() if k.lower() == "x-sandbox-name"), None
        )


# --- a wall-clock deadline on every socket read -----------------------------------------------

#: The monotonic time by which the current thread's attempt must have its whole answer.
_attempt = threading.local()


class _DeadlineReader(io.RawIOBase):
    """The socket's reader for one answer: each read waits at most the read timeout and never
    past the attempt's deadline. A server that drips a byte every few seconds keeps a read
    timeout happy forever; it cannot outlast this."""

    def __init__(self, sock: Any, due: float) -> None:
        super().__init__()
        self._sock = sock
        # An unbuffered SocketIO, as http.client's own makefile: it keeps the socket open
        # while the answer is read, even once the connection has handed it over.
        self._raw = sock.makefile("rb", buffering=0)
        self._due = due
        self._timeout = sock.gettimeout()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        left = self._due - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request's deadline passed")
        self._sock.settimeout(left if self._timeout is None else min(self._timeout, left))
        return int(self._raw.readinto(buffer))

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _DeadlineSocket:
    """What ``http.client.HTTPResponse`` is given instead of the socket: it only calls
    ``makefile``."""

    def __init__(self, sock: Any, due: float) -> None:
        self._sock = sock
        self._due = due

    def makefile(self, mode: str, *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._due))


class _DeadlineResponse(http.client.HTTPResponse):
    """http.client's response, reading through :class:`_DeadlineReader` when the thread's
    attempt has a deadline (the status line and headers too: they can drip as well)."""

    def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
        due = getattr(_attempt, "due", None)
        if due is not None and hasattr(sock, "makefile"):
            sock = _DeadlineSocket(sock, due)
        super().__init__(sock, *args, **kwargs)


class _HTTPConnection(HTTPConnection):
    response_class = _DeadlineResponse


class _HTTPSConnection(HTTPSConnection):
    response_class = _DeadlineResponse


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_DEADLINE_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter whose connections read answers under the attempt's deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_DEADLINE_POOLS)

    def proxy_manager_for(self, proxy: Any, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if isinstance(manager, ProxyManager):  # not SOCKS: those pools are its own
            manager.pool_classes_by_scheme = dict(_DEADLINE_POOLS)
        return manager


class _TooLarge(Exception):
    """An answer longer than the limit: stopped reading."""


class _PastDeadline(Exception):
    """An attempt whose answer was not complete by its deadline."""


class EnvironmentOnceSession(requests.Session):
    """A session that reads the proxy and CA-bundle environment once per host, not per request.

    By default ``requests`` re-reads ``*_PROXY``/``NO_PROXY`` (walking the whole environment
    twice) and ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` on every request, and looks for a
    ``~/.netrc``: a fifth of the CPU cost of a request. Here the CA bundle is read when the
    session is made, and the proxies of a scheme and host at its first request, by the same
    rules (``requests.utils.get_environ_proxies``). ``~/.netrc`` is not consulted:
    pinmigrate's credentials come from its config, and a netrc entry would replace the
    Bearer token.
    """

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False
        self.ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        self._host_proxies: dict[str, dict[str, str]] = {}
        self._host_lock = threading.Lock()

    def environment_proxies(self, url: str) -> dict[str, str]:
        """The proxies the environment names for this URL ({} when NO_PROXY covers it)."""
        parts = urlsplit(url)
        key = f"{parts.scheme.lower()}://{parts.netloc.lower()}"
        found = self._host_proxies.get(key)
        if found is None:
            found = dict(requests.utils.get_environ_proxies(url))
            with self._host_lock:
                self._host_proxies[key] = found
        return found

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        # What requests does when trust_env is set, with the environment read in advance.
        merged: dict[str, str] = dict(proxies or {})
        if "no_proxy" in merged:
            environment = requests.utils.get_environ_proxies(url, no_proxy=merged["no_proxy"])
        else:
            environment = self.environment_proxies(url)
        for scheme, proxy in environment.items():
            merged.setdefault(scheme, proxy)
        if verify is True or verify is None:
            verify = self.ca_bundle or verify
        if self.trust_env or self.proxies:
            return super().merge_environment_settings(url, merged, stream, verify, cert)
        # requests' own merge, less its generic mapping merge of the proxies (a runtime
        # Protocol check per mapping): the session has none of its own.
        return {
            "proxies": {scheme: proxy for scheme, proxy in merged.items() if proxy is not None},
            # As requests merges a setting that is not a mapping: the request's, if given.
            "stream": self.stream if stream is None else stream,
            "verify": self.verify if verify is None else verify,
            "cert": self.cert if cert is None else cert,
        }

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        """What ``requests.Session.prepare_request`` makes, for the requests this session
        sends (dict headers, no cookies, no session auth, params or hooks), with plain
        dict operations instead of requests' generic merges: those check every mapping
        against a runtime Protocol and build and merge two cookie jars, about a tenth of a
        request's CPU. Anything else (a cookie a server set, session params) takes
        requests' own path."""
        headers, params = request.headers, request.params
        if (
            self.trust_env
            or self.auth
            or self.params
            or self.cookies
            or request.cookies
            or self.hooks.get("response") != []
            or not isinstance(headers, dict)
        ):
            return super().prepare_request(request)
        merged = CaseInsensitiveDict(self.headers)
        merged.update(headers)
        prepared = requests.PreparedRequest()
        prepared.prepare(
            method=str(request.method).upper(),
            url=request.url,
            files=request.files,
            data=request.data,
            json=request.json,
            headers=CaseInsensitiveDict({k: v for k, v in merged.items() if v is not None}),
            params=_query(params),
            auth=request.auth,
            cookies=RequestsCookieJar(),
            hooks=request.hooks,
        )
        return prepared


def _query(params: Any) -> Any:
    """The query requests would encode from dict params or a list of (name, value) pairs,
    all text: names and values UTF-8, None values left out (``RequestEncodingMixin.
    _encode_params``), without its runtime Protocol check. Any other form is left to
    requests as it is."""
    if isinstance(params, dict):
        items: Any = params.items()
    elif isinstance(params, list):
        items = params
    else:
        return params
    pairs = []
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2):
            return params
        name, value = item
        if value is None:
            continue
        if type(name) is not str or type(value) is not str:
            return params
        pairs.append((name.encode("utf-8"), value.encode("utf-8")))
    return urlencode(pairs, doseq=True)


def _within(timeout: float | tuple[float, float], budget: float) -> float | tuple[float, float]:
    """The timeout (one, or connect and read), none longer than the attempt's budget."""
    if isinstance(timeout, tuple):
        return min(timeout[0], budget), min(timeout[1], budget)
    return min(timeout, budget)


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path or "/"


#: What a network failure is called in messages, by a marker in requests' text.
_NETWORK_REASONS = (
    ("Connection refused", "connection refused"),
    ("Name or service not known", "host name not found"),
    ("nodename nor servname", "host name not found"),
    ("Temporary failure in name resolution", "host name not found"),
    ("certificate verify failed", "TLS certificate not trusted"),
    ("Connection reset", "connection reset"),
    ("RemoteDisconnected", "connection closed by the server without an answer"),
    ("Connection aborted", "connection closed by the server without an answer"),
    ("Connection broken", "connection closed in the middle of the answer"),
)
#: Failures where the request never reached a server: a wrong URL or a host that is down
#: fails after this many attempts, not after the whole retry budget (a minute or more).
_UNREACHABLE = frozenset({"connection refused", "host name not found"})
UNREACHABLE_ATTEMPTS = 3
#: Failures that no retry can mend.
_HOPELESS = frozenset({"TLS certificate not trusted"})


def _network_reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    text = str(exc)
    for marker, reason in _NETWORK_REASONS:
        if marker in text:
            return reason
    return "connection failed"


class HttpClient:
    """A ``requests.Session`` with timeouts, retries and redacted logs; shared across threads."""

    def __init__(
        self,
        *,
        service: str,
        timeout: float | tuple[float, float] = (5, 60),
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        session: requests.Session | None = None,
        wall_clock: Callable[[], float] = time.time,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        deadline: float = REQUEST_DEADLINE,
        observer: RetryObserver | None = None,
    ) -> None:
        self.service = service
        #: Told about each retry before its wait (the commands show it on a live line).
        self.observer = observer
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.deadline = deadline
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.clock = clock
        self.wall_clock = wall_clock
        self.rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        self.session = session or self._new_session()
        self.stats = HttpStats()
        #: Admits every attempt while a run writes (apply, rollback): a shared pause on
        #: Retry-After, an adaptive window of writes in flight, a pace after refusals.
        self.throttle: Throttle | None = None

    @classmethod
    def for_settings(cls, settings: Settings, *, service: str) -> HttpClient:
        """A client with the answer limits of the settings (``[http]``)."""
        return cls(
            service=service,
            max_response_bytes=settings.http.max_response_bytes,
            deadline=settings.http.request_deadline,
        )

    @staticmethod
    def _new_session() -> requests.Session:
        session = EnvironmentOnceSession()
        adapter = DeadlineAdapter(pool_connections=8, pool_maxsize=POOL_SIZE, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    def close(self) -> None:
        self.session.close()

    def backoff(self, retry_number: int) -> float:
        """Full jitter: uniform(0, min(max_delay, base * 2**n)) for the n-th retry (0-based)."""
        ceiling = min(self.retry.max_delay, self.retry.base_delay * (2**retry_number))
        with self._rng_lock:
            return self.rng.uniform(0, ceiling)

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Any = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        auth: Any = None,
        retry_safe: bool | None = None,
        retry_network: bool | None = None,
        timeout: float | tuple[float, float] | None = None,
        throttled: bool = True,
    ) -> requests.Response:
        """Send one request, retrying where safe; return the final response whatever its status.

        ``throttled=False`` keeps the request out of the run's :attr:`throttle` (the IMS
        token: another service, and one request a run).

        ``retry_network=False`` retries answered 429/503 but not a request whose answer never
        came, nor a gateway's 502/504 (it may have been carried out): for requests that must
        not be replayed blind.
        Raises :class:`ApiError` only when the network failed (refused, dropped, timed out)
        and no retry is allowed or left, when the answer is longer than
        ``max_response_bytes``, or when an attempt's answer is not complete within its
        deadline (``deadline`` seconds, or what the retry cap leaves): neither is retried.
        """
        try:
            return self._send(
                method,
                url,
                params=params,
                json=json,
                data=data,
                headers=headers,
                auth=auth,
                retry_safe=retry_safe,
                retry_network=retry_network,
                timeout=timeout,
                throttled=throttled,
            )
        finally:
            _attempt.due = None

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: Any,
        json: Any,
        data: Any,
        headers: Mapping[str, str] | None,
        auth: Any,
        retry_safe: bool | None,
        retry_network: bool | None,
        timeout: float | tuple[float, float] | None,
        throttled: bool,
    ) -> requests.Response:
        method = method.upper()
        safe = method in SAFE_METHODS if retry_safe is None else retry_safe
        network_safe = safe if retry_network is None else retry_network and safe
        policy = self.retry
        started = self.clock()
        slept = 0.0
        attempt = 0
        paced = 0
        shown = _MaskedUrl(url, params, headers)
        while True:
            attempt += 1
            self.stats.count_request()
            log.debug("%s %s %s (attempt %d)", self.service, method, shown, attempt)
            ticket = None
            if self.throttle is not None and throttled:
                # Admitted by the run's throttle (a pause, the window, the pace): its wait is
                # not the request's own, neither for the attempt's deadline nor the retry cap.
                before = self.clock()
                ticket = self.throttle.admit(method)
                started += self.clock() - before
            sent = self.clock()
            # Each attempt ends by its deadline, and never past the retry cap.
            budget = max(
                min(self.deadline, policy.total_cap - max(sent - started, slept)),
                # A sleep that overran by a moment must not leave a negative timeout.
                0.001,
            )
            due = time.monotonic() + budget
            _attempt.due = due
            try:
                try:
                    response = self.session.request(
                        method,
                        url,
                        params=params,
                        json=json,
                        data=data,
                        headers=dict(headers) if headers else None,
                        auth=auth,
                        timeout=_within(self.timeout if timeout is None else timeout, budget),
                        # Never follow: a 307 re-posts the body (client secret, codes, refresh
                        # tokens) to wherever the Location points, and no API here redirects.
                        allow_redirects=False,
                        # Read here, in bounded chunks: an endless answer is cut at the limit.
                        stream=True,
                    )
                    if not response.is_redirect:
                        self._read_body(response, due)
                except BaseException:
                    if ticket is not None:
                        self._settle(ticket, None, sent)
                    raise
                if ticket is not None:
                    self._settle(ticket, response, sent)
            except _TooLarge:
                raise self._too_large_error(method, url) from None
            except _PastDeadline:
                raise self._deadline_error(method, url, budget, network_safe) from None
            except requests.exceptions.InvalidHeader:
                # requests' own message quotes the header value: the token itself.
                raise NotSentError(
                    f"{self.service}: {method} {_path_of(url)} on {urlsplit(url).netloc} not "
                    "sent: a header value holds a line break or another character HTTP forbids",
                    service=self.service,
                    hint="check the token or secret it carries (pasted with a line break?)",
                ) from None
            except (
                requests.ConnectionError,
                requests.Timeout,
                # The answer's body cut short (fewer bytes than announced, a broken chunk).
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                if time.monotonic() >= due:
                    # The socket read that timed out was cut short by the deadline.
                    raise self._deadline_error(method, url, budget, network_safe) from None
                self.stats.count_network_error()
                reason = _network_reason(exc)
                log.debug("%s %s %s: %s", self.service, method, shown, reason)
                delay = self._next_delay(None, attempt - paced, network_safe, started, slept)
                if reason in _HOPELESS or (
                    reason in _UNREACHABLE and attempt >= UNREACHABLE_ATTEMPTS
                ):
                    delay = None
                if delay is None:
                    raise self._network_error(method, url, reason, attempt, network_safe) from None
                self._wait(method, shown, reason, delay, attempt, paced)
                slept += delay
                continue
            elapsed_ms = (self.clock() - sent) * 1000
            self.stats.count_status(response.status_code)
            request_id = response.headers.get("x-request-id") or response.headers.get(
                "x-pinterest-rid", ""
            )
            log.debug(
                "%s %s %s -> %d (%.0f ms%s)",
                self.service,
                method,
                _MaskedUrl(response.url or url, None if response.url else params, headers),
                response.status_code,
                elapsed_ms,
                f", request id {request_id}" if request_id else "",
            )
            if response.is_redirect:
                response.close()
                raise self._redirect_error(method, url, response)
            if response.status_code not in policy.retry_statuses:
                return response
            if not network_safe and response.status_code not in NOT_PROCESSED:
                # A gateway's 502/504 may come after the service applied the request.
                return response
            if attempt >= policy.max_attempts * PACED_FACTOR:
                return response
            if response.status_code in (429, 503) and self._retry_after(response) is not None:
                paced += 1
            delay = self._next_delay(response, attempt - paced, safe, started, slept)
            if delay is None:
                return response
            response.close()
            self._wait(method, shown, f"HTTP {response.status_code}", delay, attempt, paced)
            slept += delay

    def _read_body(self, response: requests.Response, due: float) -> None:
        """Read the whole answer into ``response`` (as ``stream=False`` would), holding at
        most ``max_response_bytes`` and finishing by ``due``."""
        limit = self.max_response_bytes
        declared = response.headers.get("Content-Length", "")
        try:
            if declared.isdigit() and int(declared) > limit:
                raise _TooLarge
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_content(CHUNK_SIZE):
                size += len(chunk)
                if size > limit:
                    raise _TooLarge
                chunks.append(chunk)
                if time.monotonic() > due:
                    # Also for a session whose sockets do not read under the deadline.
                    raise _PastDeadline
        except BaseException:
            response.close()
            raise
        response._content = b"".join(chunks)

    def _next_delay(
        self,
        response: requests.Response | None,
        attempt: int,
        safe: bool,
        started: float,
        slept: float,
    ) -> float | None:
        """The wait before the next attempt, or None when there must be no next attempt.

        ``attempt`` counts the failed attempts so far, paced answers left out.
        """
        policy = self.retry
        if not safe or attempt >= policy.max_attempts:
            return None
        delay: float | None = None
        if response is not None:
            delay = self._retry_after(response)
        if delay is None:
            delay = self.backoff(attempt - 1)
        # Count both the clock and our own sleeps: with an injected sleep the clock may not move.
        spent = max(self.clock() - started, slept)
        # The next attempt must still have some time of its own under the cap.
        if spent + delay + min(self.deadline, MIN_ATTEMPT) > policy.total_cap:
            log.debug(
                "%s: giving up, waiting %.1fs more would exceed the %.0fs cap",
                self.service,
                delay,
                policy.total_cap,
            )
            return None
        return delay

    def _settle(self, ticket: Ticket, response: requests.Response | None, sent: float) -> None:
        """Tell the throttle how an attempt went: its status (None: no answer), how long it
        took, and the Retry-After of a refusal."""
        assert self.throttle is not None
        status = None if response is None else response.status_code
        wait = (
            self._retry_after(response)
            if response is not None and status in NOT_PROCESSED
            else None
        )
        if wait is not None:
            # A server asking for an hour does not hold the whole run that long: no request
            # waits longer than the retry cap for its own answer either.
            wait = min(wait, self.retry.total_cap)
        try:
            self.throttle.settle(ticket, status, self.clock() - sent, wait)
        except Exception:
            # An answered request never turns into an error of the pacing.
            log.debug("the throttle failed to take an answer", exc_info=True)

    def _retry_after(self, response: requests.Response) -> float | None:
        return parse_retry_after(response.headers.get("Retry-After"), now=self.wall_clock())

    def _wait(
        self,
        method: str,
        shown: _MaskedUrl,
        reason: str,
        delay: float,
        attempt: int,
        paced: int,
    ) -> None:
        """Sleep ``delay`` before attempt ``attempt + 1``; ``paced`` of the attempts so far
        were answers paced by Retry-After, which do not count against max_attempts."""
        self.stats.count_retry()
        log.debug(
            "%s %s %s: %s, retry %d in %.2fs", self.service, method, shown, reason, attempt, delay
        )
        if self.observer is not None:
            sandbox = shown.sandbox
            path = _path_of(shown.url)
            most = self.retry.max_attempts
            limit = min(most + paced, most * PACED_FACTOR)
            self._tell(
                RetryNotice(self.service, method, path, sandbox, reason, attempt, limit, delay)
            )
        self.sleep(delay)

    def _tell(self, notice: RetryNotice) -> None:
        """Tell the observer about a retry; a broken observer never breaks the request."""
        observer = self.observer
        if observer is None:
            return
        try:
            observer(notice)
        except Exception:
            log.debug("the retry observer failed", exc_info=True)

    def _redirect_error(self, method: str, url: str, response: requests.Response) -> ApiError:
        where = urlsplit(url)
        target = urlsplit(response.headers.get("Location", ""))
        to = f"{target.scheme}://{target.netloc}{target.path}" if target.netloc else target.path
        message = (
            f"{self.service}: {method} {_path_of(url)} on {where.netloc} answered a redirect "
            f"(HTTP {response.status_code}) to {to or 'nowhere'}; not followed, nothing was sent "
            "there"
        )
        return ApiError(
            redact(message),
            status=response.status_code,
            service=self.service,
            hint="check the configured URL: use the address the service answers on itself",
        )

    def _too_large_error(self, method: str, url: str) -> ApiError:
        limit = f"{self.max_response_bytes / MIB:g} MiB"
        host = urlsplit(url).netloc or url
        return ApiError(
            redact(
                f"{self.service}: {method} {_path_of(url)} on {host} answered more than "
                f"{limit}; stopped reading"
            ),
            service=self.service,
            hint="check the configured URL; raise http.max_response_mib only if such an "
            "answer is expected",
        )

    def _deadline_error(self, method: str, url: str, budget: float, safe: bool) -> ApiError:
        host = urlsplit(url).netloc or url
        message = (
            f"{self.service}: {method} {_path_of(url)} on {host} did not answer in full within "
            f"{round(budget, 1):g} s; stopped waiting"
        )
        hint = "check the network and the configured URL, or raise http.request_deadline"
        if not safe and method not in SAFE_METHODS:
            hint = "the change may or may not have been applied; re-read before retrying"
        return ApiError(redact(message), service=self.service, hint=hint)

    def _network_error(
        self, method: str, url: str, reason: str, attempts: int, safe: bool
    ) -> ApiError:
        host = urlsplit(url).netloc or url
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        message = f"{self.service}: {method} {_path_of(url)} on {host} failed: {reason}{tries}"
        hint = "check the network and the configured URL"
        if not safe and method not in SAFE_METHODS:
            # A write that died in flight may or may not have been applied: say so.
            hint = "the change may or may not have been applied; re-read before retrying"
        return ApiError(redact(message), service=self.service, hint=hint)


# --- what a failed answer said ----------------------------------------------------------------


def one_line(text: str, limit: int = 300) -> str:
    """Text on one line (whitespace runs become one space), cut at ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def body_kind(response: requests.Response) -> str:
    """What came instead of JSON: "an empty body", "HTML" or "non-JSON text"."""
    if not response.content.strip():
        return "an empty body"
    kind = response.headers.get("Content-Type", "").lower()
    if "html" in kind or response.content.lstrip()[:1] == b"<":
        return "HTML"
    return "non-JSON text"


def error_code(response: requests.Response) -> str:
    """The service's own error code, as text ("" when none): ``error_code`` or ``code``, else
    the last segment of Flow Service's ``type`` URL (``.../FLOW-1409-400`` -> ``FLOW-1409-400``).
    """
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return ""
    if not isinstance(body, dict):
        return ""
    for key in ("error_code", "code"):
        value = body.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    kind = body.get("type")
    if isinstance(kind, str) and kind.strip():
        return kind.strip().rstrip("/").rsplit("/", 1)[-1]
    return ""


def error_detail(response: requests.Response) -> str:
    """The service's own words for a failed call, on one line, whatever shape they came in.

    Adobe's gateway sends ``{error_code, message}`` (a number in Adobe's example, a string
    seen too: both show alike, api-notes.md §2), Flow Service ``{type, title, status,
    errorMessage, errorDetails}``, IMS and OAuth endpoints ``{error, error_description}``,
    Pinterest ``{code, message}`` with a numeric code (shown as "code N").
    """
    try:
        body = response.json()
    except (ValueError, RecursionError):
        body = None
    if isinstance(body, dict):
        message = next(
            (
                str(body[key])
                for key in ("errorMessage", "message", "title", "error_description", "detail")
                if body.get(key)
            ),
            "",
        )
        details = body.get("errorDetails")
        if details and str(details) != message:
            message = f"{message}: {details}" if message else str(details)
        gateway = body.get("error_code")
        code = gateway or body.get("code") or body.get("error")
        kind = body.get("type")
        if not code and isinstance(kind, str) and kind.startswith("http"):
            code = kind.rstrip("/").rsplit("/", 1)[-1]
        numbered = isinstance(code, int) and not isinstance(code, bool) and not gateway
        label = f"code {code}" if numbered else str(code or "")
        if message and label:
            return one_line(f"{message} ({label})")
        if message or label:
            return one_line(message or label)
        return one_line(str(body), 200)
    if body is not None:
        return one_line(str(body), 200)
    kind = body_kind(response)
    if kind == "non-JSON text":
        return f"non-JSON answer: {one_line(response.text, 120)}"
    return f"{kind} instead of JSON"
