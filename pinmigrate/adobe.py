"""Adobe Experience Platform: the IMS token and the Flow Service calls pinmigrate makes.

A small typed wrapper over :class:`~pinmigrate.http.HttpClient`. It knows Adobe's habits
(wrapped single objects, relative next links, two error shapes, quoted etags) so that
nothing above it has to.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import SplitResult, parse_qsl, quote, urlsplit

from pinmigrate import answers, redact
from pinmigrate.errors import (
    ApiError,
    AuthError,
    ConfigError,
    InvalidStateError,
    NotFoundError,
    NotSentError,
    PinmigrateError,
    StaleObjectError,
    UnsureWriteError,
    listed,
)
from pinmigrate.http import HttpClient, body_kind, error_code, error_detail
from pinmigrate.ids import checked_id
from pinmigrate.models import seconds_of

if TYPE_CHECKING:
    import requests

    from pinmigrate.settings import Settings

log = logging.getLogger("pinmigrate.adobe")

#: Named here because ``AdobeClient.list`` shadows the builtin inside the class body.
JsonObjects = list[dict[str, Any]]

FLOWSERVICE = "/data/foundation/flowservice"
#: The Sandbox Management API's list of the org's sandboxes (api-notes.md §3b).
SANDBOXES = "/data/foundation/sandbox-management/sandboxes"
#: Its page size: Adobe's default (help/sandboxes/api/appendix.md).
SANDBOX_PAGE = 50
#: Stop paging after this much, whatever the server says: a broken next link must not spin forever.
MAX_PAGES = 5000
MAX_ITEMS = 100_000
#: The largest page a list serves (api-notes.md §3 "Lists and filters": ``limit`` max 100).
MAX_LIMIT = 100
#: Lists whose published parameters are ``property`` alone (flow-service.yaml in
#: AdobeDocs/experience-platform-apis, ``GET /connectionSpecs``): no ``limit`` is sent.
UNPAGED = frozenset({"connectionSpecs"})
#: Renew the IMS token this long before it expires (at most a tenth of its lifetime).
TOKEN_MARGIN = 300.0
_NOUNS = {
    "flows": "flow",
    "connections": "account (connection)",
    "targetConnections": "target connection",
    "sourceConnections": "source connection",
    "connectionSpecs": "connection spec",
    "runs": "run",
}
#: Flow Service's "The operation {OPERATION} cannot be applied on the current state {STATE}"
#: (AdobeDocs/experience-platform.en help/sources/errors.md; api-notes.md §3 "Enable /
#: disable"), as a ``type`` URL's last segment (``FLOW-1409-400``) or a ``code`` field.
STATE_REFUSAL_CODE = "1409-400"
#: Gateway answers after which a write may or may not have been applied.
UNSURE_STATUSES = frozenset({502, 504})
UNSURE_HINT = "the change may or may not have been applied; re-read before retrying"


def unwrap(body: Any, *, what: str) -> dict[str, Any]:
    """The single object of ``{"items": [obj]}``; a bare object is accepted as it is."""
    if isinstance(body, dict) and "items" in body and isinstance(body["items"], list):
        items = body["items"]
        if not items:
            raise NotFoundError(f"Adobe: {what} answered no object", status=404, service="adobe")
        first = items[0]
        if not isinstance(first, dict):
            raise ApiError(f"Adobe: {what} answered an item that is not an object", service="adobe")
        return first
    if isinstance(body, dict):
        return body
    raise ApiError(f"Adobe: {what} answered {type(body).__name__}, not an object", service="adobe")


class AdobeClient:
    """IMS token, Platform headers, paged lists, wrapped GETs, actions and ``If-Match`` PATCHes."""

    def __init__(
        self,
        settings: Settings,
        *,
        http: HttpClient | None = None,
        page_limit: int = 100,
    ) -> None:
        self.settings = settings
        self.http = http or HttpClient.for_settings(settings, service="adobe")
        self.page_limit = page_limit
        self.base = settings.adobe.platform_url.rstrip("/") + FLOWSERVICE
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = threading.Lock()
        #: The org's sandboxes, read once when a sandbox read is refused (``[]``: unreadable).
        self._listing: JsonObjects | None = None
        self._listing_lock = threading.Lock()
        self.token_fetches = 0

    # --- IMS ---------------------------------------------------------------------------

    def token(self) -> str:
        """The cached IMS access token, fetched again shortly before it expires."""
        with self._token_lock:
            now = self.http.clock()
            if self._token is not None and now < self._token_expires:
                return self._token
            token, lifetime = self._fetch_token()
            margin = min(TOKEN_MARGIN, lifetime / 10)
            self._token = token
            self._token_expires = now + max(0.0, lifetime - margin)
            return token

    def _forget(self, token: str) -> None:
        with self._token_lock:
            # Another thread may already have replaced it; only drop the one that failed.
            if self._token == token:
                self._token = None

    def _fetch_token(self) -> tuple[str, float]:
        self.settings.require_adobe()
        adobe = self.settings.adobe
        assert adobe.client_secret is not None and adobe.client_id is not None
        secret = adobe.client_secret.get_secret_value()
        redact.register(secret)
        url = f"{adobe.ims_url.rstrip('/')}/ims/token/v3"
        self.token_fetches += 1
        # Asking for a client-credentials token changes nothing at IMS: safe to repeat.
        response = self.http.request(
            "POST",
            url,
            data={
                "grant_type": "client_credentials",
                "client_id": adobe.client_id,
                "client_secret": secret,
                "scope": ",".join(adobe.scopes),
            },
            headers={"Accept": "application/json"},
            retry_safe=True,
            # IMS is another service: its answers say nothing of Flow Service's limits.
            throttled=False,
        )
        status = response.status_code
        if status in (400, 401, 403):
            detail = error_detail(response)
            try:
                body = response.json()
            except (ValueError, RecursionError):
                body = {}
            if isinstance(body, dict) and body.get("error") == "invalid_scope":
                raise AuthError(
                    f"Adobe IMS refused the requested scopes: {detail}",
                    hint="check adobe.scopes against the credential's product profiles",
                )
            raise AuthError(
                f"Adobe IMS refused the credentials: {detail}",
                hint="check adobe.client_id and adobe.client_secret (the OAuth Server-to-Server "
                "credential in the Adobe Developer Console)",
            )
        if status != 200:
            raise ApiError(
                f"Adobe IMS answered HTTP {status}: {error_detail(response)}",
                status=status,
                service="adobe",
                hint="check adobe.ims_url, or retry later",
            )
        body = self._json(response, "POST /ims/token/v3")
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise ApiError("Adobe IMS answered without an access_token", service="adobe")
        redact.register(token)
        return token, token_lifetime(body.get("expires_in"))

    # --- plumbing ----------------------------------------------------------------------

    def _headers(self, token: str, sandbox: str | None) -> dict[str, str]:
        adobe = self.settings.adobe
        headers = {
            "Authorization": f"Bearer {token}",
            "x-api-key": adobe.client_id or "",
            "x-gw-ims-org-id": adobe.org_id or "",
            "x-sandbox-name": sandbox or "",
            "Accept": "application/json",
        }
        if sandbox is None:  # an org-wide call (the sandbox listing)
            del headers["x-sandbox-name"]
        return headers

    def _call(
        self,
        method: str,
        url: str,
        *,
        sandbox: str | None,
        what: str,
        params: Any = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        retry_safe: bool | None = None,
        write: bool = False,
    ) -> requests.Response:
        """One Platform call; a 401 gets one fresh token and one more try, then AuthError.

        ``write``: a change that must not be replayed blind. It is repeated only after an
        answer that says it was not carried out (429, 503); a lost answer, or a gateway's
        502/504, raises :class:`UnsureWriteError` for the caller to re-read and decide.
        """
        response: requests.Response | None = None
        for attempt in (1, 2):
            token = self.token()
            all_headers = self._headers(token, sandbox)
            all_headers.update(headers or {})
            try:
                response = self.http.request(
                    method,
                    url,
                    params=params,
                    json=json,
                    headers=all_headers,
                    retry_safe=retry_safe,
                    retry_network=False if write else None,
                )
            except ApiError as exc:
                if not write or exc.status is not None or isinstance(exc, NotSentError):
                    raise
                raise UnsureWriteError(
                    f"{what} in sandbox {sandbox}: no answer ({exc.message})",
                    service="adobe",
                    hint=UNSURE_HINT,
                ) from None
            if write and response.status_code in UNSURE_STATUSES:
                raise UnsureWriteError(
                    f"{what} in sandbox {sandbox}: HTTP {response.status_code} from the "
                    f"gateway ({error_detail(response)})",
                    status=response.status_code,
                    service="adobe",
                    hint=UNSURE_HINT,
                )
            if response.status_code != 401:
                return response
            self._forget(token)
            if attempt == 1:
                log.debug("Adobe answered 401 to %s; fetching a new IMS token once", what)
        assert response is not None
        where = f" in sandbox {sandbox}" if sandbox is not None else ""
        raise AuthError(
            f"Adobe refused the access token for {what}{where}: {error_detail(response)}",
            hint="check that the credential's product profile covers this sandbox",
        )

    def _raise_for(self, response: requests.Response, what: str, sandbox: str) -> None:
        status = response.status_code
        if status < 400:
            return
        detail = error_detail(response)
        where = f"in sandbox {sandbox}"
        if status == 403:
            # A sandbox that does not exist is refused as one the credential may not read:
            # the org's sandbox list tells them apart (one more request, on this path only).
            raise self.sandbox_problem(sandbox) or AuthError(
                f"Adobe denied {what} {where}: {detail}",
                hint="give the credential's product profile access to this sandbox and to "
                "destinations (View/Manage Destinations, Activate Destinations)",
            )
        if status == 404:
            raise NotFoundError(
                f"Adobe: {what} {where} not found: {detail}", status=404, service="adobe"
            )
        if status == 429:
            raise ApiError(
                f"Adobe kept rate-limiting {what} {where}: {detail}",
                status=429,
                service="adobe",
                hint="retry later or lower migration.concurrency",
            )
        raise ApiError(
            f"Adobe {what} {where} failed: HTTP {status}: {detail}", status=status, service="adobe"
        )

    @staticmethod
    def _json(response: requests.Response, what: str) -> Any:
        try:
            return answers.decoded(response)
        except (ValueError, RecursionError):  # too deeply nested is not usable JSON either
            raise ApiError(
                f"Adobe answered {body_kind(response)}, not JSON, to {what} "
                f"(HTTP {response.status_code})",
                status=response.status_code,
                service="adobe",
                hint="check adobe.platform_url and adobe.ims_url; a proxy or sign-in page may be "
                "answering instead of Adobe",
            ) from None

    def _url(self, resource: str, *parts: str) -> str:
        """The address of a resource or of one object in it; ids are checked (``ids.py``)."""
        tail = "".join(f"/{quote(checked_id(part, f'{resource} id'), safe='')}" for part in parts)
        return f"{self.base}/{resource}{tail}"

    def _resolve_next(self, href: str, resource: str) -> str:
        """The absolute URL of a next link, without its query; refuses any other host.

        A link to the list being read, however it spells the path (relative to the Flow
        Service base or from the host, another case, a trailing slash), is read from the
        list's own URL; any other path is followed as given.
        """
        link = self._on_platform_host(href)
        base = urlsplit(self.base)
        path = link.path
        prefix = base.path.rstrip("/") + "/"
        if path.casefold().startswith(prefix.casefold()):
            path = path[len(prefix) :]
        if path.strip("/").casefold() in ("", resource.casefold()):
            return self._url(resource)
        # Documented form: relative to the Flow Service base, e.g. /flows?continuationToken=..
        return f"{base.scheme}://{base.netloc}{prefix}{path.lstrip('/')}"

    def _follow(
        self, href: str, resource: str, first: Sequence[tuple[str, str]]
    ) -> tuple[str, list[tuple[str, str]]]:
        """The URL and the query of the request a next link asks for.

        The only published link carries the token alone, and whether Adobe's token holds the
        query is unconfirmed (api-notes.md §3 "Lists and filters"), so the first request's
        parameters are sent again and the link's own are added, the link's winning by name:
        a ``property`` in the link replaces every first ``property``. The link's parameters
        travel exactly as the link spells them (a token is never decoded and re-encoded).
        """
        url = self._resolve_next(href, resource)
        raw = urlsplit(href).query
        carried = {name for name, _ in parse_qsl(raw, keep_blank_values=True)}
        kept = [(name, value) for name, value in first if name not in carried]
        if raw:
            url = f"{url}?{raw}"
        return url, kept

    # --- reads -------------------------------------------------------------------------

    def list(
        self,
        resource: str,
        *,
        sandbox: str,
        properties: Sequence[str] = (),
        params: Mapping[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every item of a Flow Service list, following ``_links.next.href`` to the end."""
        what = f"GET /{resource}"
        query: dict[str, list[str]] = {}
        if resource not in UNPAGED:
            query["limit"] = [str(min(self.page_limit, MAX_LIMIT))]
        if properties:
            query["property"] = [str(p) for p in properties]
        for key, value in (params or {}).items():
            query[key] = [str(value)]
        first = [(key, value) for key, values in query.items() for value in values]

        url = self._url(resource)
        extra: list[tuple[str, str]] = first
        seen: set[str] = set()
        pages = items = 0
        while True:
            response = self._call("GET", url, sandbox=sandbox, what=what, params=extra or None)
            self._raise_for(response, what, sandbox)
            body = self._json(response, what)
            if not isinstance(body, dict):
                raise ApiError(
                    f"Adobe: {what} answered {type(body).__name__}, not a list page",
                    service="adobe",
                )
            page = body.get("items") or []
            if not isinstance(page, list):
                raise ApiError(f"Adobe: {what} answered items that are not a list", service="adobe")
            for item in page:
                if not isinstance(item, dict):
                    raise ApiError(
                        f"Adobe: {what} answered an item that is not an object", service="adobe"
                    )
                items += 1
                yield item
            pages += 1
            href = _next_href(body)
            if not href:
                return
            url, extra = self._follow(href, resource, first)
            if url in seen:
                raise ApiError(
                    f"Adobe: {what} in sandbox {sandbox} sent the same next-page link twice; "
                    "stopped paging to avoid a loop",
                    service="adobe",
                )
            seen.add(url)
            if pages >= MAX_PAGES or items >= MAX_ITEMS:
                raise ApiError(
                    f"Adobe: {what} in sandbox {sandbox} did not end after {pages} pages and "
                    f"{items} items; stopped paging",
                    service="adobe",
                )

    def sandboxes(self) -> JsonObjects:
        """Every sandbox of the org, whatever its state: the Sandbox Management API's
        ``GET /sandboxes`` (api-notes.md §3b; AdobeDocs/experience-platform.en
        help/sandboxes/api/sandboxes.md), sent without ``x-sandbox-name``.

        Tolerant of the paging shapes Adobe documents: a ``_links.next.href`` to follow, a
        templated one (``?limit={limit}&offset={offset}``) or none; without a link to
        follow, the next ``offset`` is asked for while pages come back full (``limit`` and
        ``offset`` go together: help/sandboxes/api/appendix.md). ``items`` is read when
        ``sandboxes`` is absent. ApiError or AuthError when the list cannot be read."""
        what = "GET /sandboxes"
        root = self.settings.adobe.platform_url.rstrip("/") + SANDBOXES
        url = root
        params: dict[str, str] | None = {"limit": str(SANDBOX_PAGE), "offset": "0"}
        offset = 0
        found: dict[str, dict[str, Any]] = {}
        for _ in range(MAX_PAGES):
            response = self._call("GET", url, sandbox=None, what=what, params=params)
            if response.status_code >= 400:
                detail = error_detail(response)
                if response.status_code == 403:
                    raise AuthError(f"Adobe denied {what}: {detail}")
                raise ApiError(
                    f"Adobe {what} failed: HTTP {response.status_code}: {detail}",
                    status=response.status_code,
                    service="adobe",
                )
            body = self._json(response, what)
            page = body.get("sandboxes", body.get("items")) if isinstance(body, dict) else None
            if not isinstance(page, list):
                raise ApiError(f"Adobe: {what} answered no list of sandboxes", service="adobe")
            new = 0
            for item in page:
                name = item.get("name") if isinstance(item, dict) else None
                if isinstance(name, str) and name and name not in found:
                    found[name] = item
                    new += 1
            if not page or not new:
                break  # the end, or a page already seen: no loop
            href = _next_href(body)
            if href and "{" not in href:
                url, params = self._same_host(href), None
                continue
            size = (body.get("_page") or {}).get("limit") if isinstance(body, dict) else None
            if len(page) < (size if isinstance(size, int) and size > 0 else SANDBOX_PAGE):
                break  # a page that is not full is the last
            offset += len(page)
            url, params = root, {"limit": str(SANDBOX_PAGE), "offset": str(offset)}
        return list(found.values())

    def _on_platform_host(self, href: str) -> SplitResult:
        """A next link, split, once it is known to stay on the Platform host (a relative
        link does; an absolute one must name the same scheme, host and port, a default port
        written or not, as Adobe's examples write ``platform.adobe.io:443``); else ApiError:
        the access token is never sent anywhere else."""
        base = urlsplit(self.settings.adobe.platform_url)
        link = urlsplit(href)
        theirs = _origin(link)
        if (link.scheme or link.netloc) and (theirs is None or theirs != _origin(base)):
            raise ApiError(
                f"Adobe's next-page link points to {link.scheme}://{link.netloc}, not "
                f"{base.scheme}://{base.netloc}; refusing to send the access token there",
                service="adobe",
            )
        return link

    def _same_host(self, href: str) -> str:
        """The absolute URL of a next link that stays on the Platform host."""
        link = self._on_platform_host(href)
        if link.scheme or link.netloc:
            return href
        base = urlsplit(self.settings.adobe.platform_url)
        return f"{base.scheme}://{base.netloc}/{href.lstrip('/')}"

    def sandbox_problem(self, sandbox: str) -> PinmigrateError | None:
        """Why reads in ``sandbox`` are refused, when the org's sandbox list says: it does not
        exist (naming those that do), or it is not active. None when it exists and is active
        (then the credential may not read it) or when the list cannot be read. The list is
        read once per client, and only when a read was refused."""
        with self._listing_lock:
            if self._listing is None:
                try:
                    self._listing = self.sandboxes()
                except PinmigrateError as exc:
                    log.debug("the sandbox list could not be read: %s", exc.message)
                    self._listing = []
            every = self._listing
        if not every:
            return None
        states = {str(s["name"]).lower(): str(s.get("state") or "") for s in every}
        org = self.settings.adobe.org_id
        if sandbox.lower() not in states:
            # Every configured one that is missing, not only the one whose read failed first.
            wanted = [*self.settings.adobe.sandboxes, sandbox]
            missing = list(dict.fromkeys(n for n in wanted if n.lower() not in states))
            names = [n if st in ("", "active") else f"{n} ({st})" for n, st in states.items()]
            gone = (
                f"sandbox {sandbox} does not exist in org {org}"
                if len(missing) == 1
                else f"{len(missing)} sandboxes do not exist in org {org}: {listed(missing)}"
            )
            return ConfigError(
                f"{gone}; its sandboxes are: {listed(names)}",
                hint="correct adobe.sandboxes (or PINMIGRATE_ADOBE_SANDBOXES)",
            )
        state = states[sandbox.lower()]
        if state and state != "active":
            active = [n for n, st in states.items() if st == "active"]
            return ConfigError(
                f"sandbox {sandbox} of org {org} is {state}, not active",
                hint=f"its active sandboxes are: {listed(active) or 'none'}",
            )
        return None

    def get(self, resource: str, object_id: str, *, sandbox: str) -> dict[str, Any]:
        """One object; Adobe wraps it as ``{"items": [obj]}`` (a bare object is accepted too)."""
        what = f"GET /{resource}/{object_id}"
        response = self._call("GET", self._url(resource, object_id), sandbox=sandbox, what=what)
        if response.status_code == 404:
            noun = _NOUNS.get(resource, resource)
            raise NotFoundError(
                f"Adobe has no {noun} {object_id} in sandbox {sandbox} ({error_detail(response)})",
                status=404,
                service="adobe",
            )
        self._raise_for(response, what, sandbox)
        return unwrap(self._json(response, what), what=what)

    def connection_specs_named(self, name: str, *, sandbox: str) -> JsonObjects:
        """The connection specs (destination cards) with exactly this name; usually one.

        ``property=name==`` is an exact filter, but only the names are trusted: a server that
        ignores the filter answers every spec. When no name is equal, names equal but for case
        or spacing are answered instead.
        """
        specs = list(self.list("connectionSpecs", sandbox=sandbox, properties=[f"name=={name}"]))
        exact = [spec for spec in specs if spec.get("name") == name]
        if exact:
            return exact
        folded = fold_name(name)
        return [spec for spec in specs if fold_name(str(spec.get("name", ""))) == folded]

    def runs(self, flow_id: str, *, sandbox: str) -> JsonObjects:
        """The runs of one flow (newest pages as Adobe orders them)."""
        return list(self.list("runs", sandbox=sandbox, properties=[f"flowId=={flow_id}"]))

    # --- writes ------------------------------------------------------------------------

    def flow_action(
        self,
        flow_id: str,
        op: Literal["enable", "disable"],
        *,
        sandbox: str,
        etag: str | None = None,
    ) -> dict[str, Any]:
        """``POST /flows/{id}/action?op=enable|disable``; returns Adobe's answer (id, etag)."""
        op_name = str(op).lower()
        if op_name not in ("enable", "disable"):
            raise ValueError(f"unknown flow action {op!r}")
        what = f"POST /flows/{flow_id}/action?op={op_name}"
        headers = {"If-Match": etag} if etag else None
        # Enabling an enabled flow may be refused (1409-400), and a lost answer does not say
        # whether the action took: no blind replay (api-notes.md §3 "Enable / disable").
        response = self._call(
            "POST",
            self._url("flows", flow_id, "action"),
            sandbox=sandbox,
            what=what,
            params={"op": op_name},
            headers=headers,
            retry_safe=True,
            write=True,
        )
        if response.status_code == 412:
            raise StaleObjectError(
                f"flow {flow_id} in sandbox {sandbox} changed since it was read "
                f"(Adobe refused If-Match {etag})",
                object_id=flow_id,
            )
        if response.status_code == 400 and is_state_refusal(response):
            raise InvalidStateError(
                f"Adobe refused to {op_name} flow {flow_id} in sandbox {sandbox}: "
                f"{error_detail(response)}",
                status=400,
                service="adobe",
            )
        self._raise_for(response, what, sandbox)
        if not response.content.strip():
            return {}
        body = self._json(response, what)
        if isinstance(body, dict) and isinstance(body.get("items"), list):
            return unwrap(body, what=what)
        return body if isinstance(body, dict) else {}

    def patch(
        self,
        resource: Literal["flows", "connections"],
        object_id: str,
        ops: JsonObjects,
        *,
        etag: str,
        sandbox: str,
    ) -> str | None:
        """JSON-Patch an object under ``If-Match``; the new etag, or None when Adobe gave none."""
        noun = _NOUNS.get(resource, resource)
        what = f"PATCH /{resource}/{object_id}"
        if not etag:
            raise ApiError(f"cannot change {noun} {object_id} without its etag", service="adobe")
        # A throttled PATCH is sent again; a lost answer is the caller's to re-read (a replay
        # of an applied change would only meet 412).
        response = self._call(
            "PATCH",
            self._url(resource, object_id),
            sandbox=sandbox,
            what=what,
            json=ops,
            headers={"If-Match": etag, "Content-Type": "application/json"},
            retry_safe=True,
            write=True,
        )
        if response.status_code == 412:
            raise StaleObjectError(
                f"{noun} {object_id} in sandbox {sandbox} changed since it was read "
                f"(Adobe refused If-Match {etag}: {error_detail(response)})",
                object_id=object_id,
            )
        self._raise_for(response, what, sandbox)
        if response.status_code == 202 or not response.content.strip():
            return None
        body = self._json(response, what)
        if isinstance(body, dict) and isinstance(body.get("items"), list) and body["items"]:
            body = body["items"][0]
        new_etag = body.get("etag") if isinstance(body, dict) else None
        return new_etag if isinstance(new_etag, str) and new_etag else None


#: An IMS token's lifetime when its answer gives none that can be used (seconds).
DEFAULT_TOKEN_LIFETIME = 3600.0


def token_lifetime(value: Any) -> float:
    """Seconds an IMS token lasts, from ``expires_in``; an hour when it is absent or beyond
    reason (not a number, NaN, infinite, not positive, or beyond a float)."""
    lifetime = seconds_of(value)
    if lifetime is None or lifetime <= 0:
        return DEFAULT_TOKEN_LIFETIME
    if lifetime > 10_000_000:
        # The retired JWT exchange spoke milliseconds; a value this large is one of those.
        lifetime /= 1000
    return lifetime


def is_state_refusal(response: requests.Response) -> bool:
    """Flow Service's ``1409-400``: the action cannot be applied on the current state."""
    code = error_code(response).upper()
    return code.endswith(STATE_REFUSAL_CODE) or code in ("1409", "FLOW-1409")


def _origin(url: SplitResult) -> tuple[str, str | None, int | None] | None:
    """Scheme, host and port, the default port filled in; None for a port that is no number."""
    scheme = url.scheme.lower()
    try:
        port = url.port
    except ValueError:
        return None
    return scheme, url.hostname, port or {"https": 443, "http": 80}.get(scheme)


def _next_href(body: Mapping[str, Any]) -> str | None:
    links = body.get("_links")
    if not isinstance(links, dict):
        return None
    nxt = links.get("next")
    if isinstance(nxt, dict):
        href = nxt.get("href")
    elif isinstance(nxt, str):
        href = nxt
    else:
        return None
    return href.strip() if isinstance(href, str) and href.strip() else None


def fold_name(name: str) -> str:
    """A card name as compared when no name is exactly equal: case and spacing aside."""
    return " ".join(name.split()).casefold()
