"""A minimal Adobe caller for the emulator's own tests: what a real client sends, nothing more."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests

from pinmigrate.emulator import CLIENT_ID, CLIENT_SECRET, ORG_ID, Emulator

FS = "/data/foundation/flowservice"


class Platform:
    """A minimal Adobe caller: one IMS token, the four headers, relative next links."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.http = requests.Session()
        answer = self.http.post(
            emu.url + "/ims/token/v3",
            data={
                "grant_type": "client_credentials",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "scope": "openid,AdobeID",
            },
        )
        assert answer.status_code == 200, answer.text
        self.token = answer.json()["access_token"]

    def headers(self, sandbox: str | None = "prod", **extra: str) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self.token}",
            "x-api-key": CLIENT_ID,
            "x-gw-ims-org-id": ORG_ID,
        }
        if sandbox is not None:
            headers["x-sandbox-name"] = sandbox
        headers.update(extra)
        return headers

    def call(
        self,
        method: str,
        path: str,
        *,
        sandbox: str | None = "prod",
        headers: Any = None,
        **kwargs: Any,
    ) -> requests.Response:
        all_headers = self.headers(sandbox)
        all_headers.update(headers or {})
        return self.http.request(method, self.emu.url + FS + path, headers=all_headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("GET", path, **kwargs)

    def one(self, kind: str, ident: str, sandbox: str = "prod") -> dict[str, Any]:
        answer = self.get(f"/{kind}/{ident}", sandbox=sandbox)
        assert answer.status_code == 200, answer.text
        return answer.json()["items"][0]  # type: ignore[no-any-return]

    def pages(
        self,
        kind: str,
        *,
        sandbox: str = "prod",
        properties: tuple[str, ...] = (),
        params: dict[str, str] | None = None,
        resend: bool = True,
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Every item of a list, following next links; also the hrefs followed.

        Each next page sends the first request's parameters again with the link's (the
        link's winning by name), as a real client must; ``resend=False`` follows the bare
        link, as a client that forgets its filters would.
        """
        first = [("property", p) for p in properties] + list((params or {}).items())
        answer = self.get(f"/{kind}", sandbox=sandbox, params=first)
        items: list[dict[str, Any]] = []
        hrefs: list[str] = []
        while True:
            assert answer.status_code == 200, answer.text
            body = answer.json()
            items.extend(body["items"])
            nxt = body["_links"].get("next")
            if not nxt:
                assert body["_links"] == {}
                return items, hrefs
            hrefs.append(nxt["href"])
            assert len(hrefs) < 500
            carried = {name for name, _ in parse_qsl(urlsplit(nxt["href"]).query)}
            again = [(name, value) for name, value in first if name not in carried]
            answer = self.http.get(
                self.emu.url + FS + nxt["href"],
                headers=self.headers(sandbox),
                params=again if resend else None,
            )
