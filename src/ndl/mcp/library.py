"""What the MCP tools read from: the hub's JSON API, reached over HTTP or in-process.

The tools never touch the hub's database. They call the same public JSON API a person's
program would, with the caller's own token, so an agent can see and do exactly what its
user could — no more. ``ndl mcp`` (stdio) reaches a hub over the network; the ``/mcp``
endpoint inside the hub reaches its own app through ``httpx.ASGITransport`` (no network hop,
the same access rules).
"""

from __future__ import annotations

import copy
import re
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from ndl.core.errors import (
    InvalidInput,
    UpstreamTimeout,
    UpstreamUnavailable,
    error_from_json,
)

# Dataset ids are "<datasite>/<name>", both slugs; checked before they become a URL path so
# no id can walk to another endpoint ("x/../../auth/login").
_DATASET_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}/[a-z0-9][a-z0-9-]{1,62}$")


def check_dataset_id(dataset_id: str) -> str:
    """Return ``dataset_id`` if it looks like ``site/name``; raise :class:`InvalidInput` if not."""
    if not _DATASET_ID.match(dataset_id):
        raise InvalidInput(
            f"dataset id {dataset_id!r} is not valid: ids look like 'dfe/attainment' "
            "(datasite id, a slash, dataset name); find them with search_datasets"
        )
    return dataset_id


class Library(Protocol):
    """The calls the MCP tools make. Every method returns the hub's JSON answer."""

    @property
    def signed_in(self) -> bool: ...

    @property
    def base_url(self) -> str: ...

    def with_token(self, token: str | None) -> Library: ...

    async def search(self, params: dict[str, Any]) -> dict[str, Any]: ...

    async def dataset(self, dataset_id: str) -> dict[str, Any]: ...

    async def versions(self, dataset_id: str) -> dict[str, Any]: ...

    async def mock(self, dataset_id: str, limit: int) -> dict[str, Any]: ...

    async def sql(self, dataset_id: str, sql: str, limit: int) -> dict[str, Any]: ...

    async def private_query(self, dataset_id: str, body: dict[str, Any]) -> dict[str, Any]: ...


class _Connection:
    """One ``httpx.AsyncClient``, opened on first use and shared by every token's view.

    Opened lazily because the hub's ``/mcp`` endpoint lives across app lifespans (tests run
    several), and an async client belongs to the event loop that made it.
    """

    def __init__(self, base_url: str, transport: httpx.AsyncBaseTransport | None,
                 timeout: float) -> None:
        self.base_url, self.transport, self.timeout = base_url, transport, timeout
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(base_url=self.base_url, transport=self.transport,
                                             timeout=self.timeout)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


class HubLibrary:
    """The hub's JSON API as a :class:`Library`.

    >>> lib = HubLibrary("http://127.0.0.1:8700", token="ndl_...")   # doctest: +SKIP
    >>> (await lib.search({"q": "attainment"}))["total"]                # doctest: +SKIP
    1
    """

    def __init__(self, base_url: str, token: str | None = None, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 timeout: float = 60.0) -> None:
        self._base_url = base_url.rstrip("/")
        self.token = token
        self._conn = _Connection(self._base_url, transport, timeout)

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def signed_in(self) -> bool:
        return self.token is not None

    def with_token(self, token: str | None) -> HubLibrary:
        """The same connection, acting as the holder of ``token``."""
        view = copy.copy(self)
        view.token = token
        return view

    async def aclose(self) -> None:
        await self._conn.aclose()

    async def __aenter__(self) -> HubLibrary:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def _request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            resp = await self._conn.client().request(method, path, headers=headers, **kw)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(
                f"the hub at {self._base_url} did not answer {method} {path} in time; "
                "try again, or a smaller request"
            ) from exc
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(
                f"cannot reach the hub at {self._base_url} ({exc}); is 'ndl hub' running "
                "and is the URL right?"
            ) from exc
        try:
            data: Any = resp.json()
        except ValueError:
            data = resp.text
        if resp.status_code >= 400:
            raise error_from_json(resp.status_code, data)
        if not isinstance(data, dict):
            raise UpstreamUnavailable(
                f"the hub answered {method} {path} with something that is not a JSON object; "
                "is the URL an ndl hub?"
            )
        return data

    @staticmethod
    def _path(dataset_id: str, suffix: str = "") -> str:
        site, name = check_dataset_id(dataset_id).split("/")
        return f"/api/datasets/{quote(site, safe='')}/{quote(name, safe='')}{suffix}"

    async def search(self, params: dict[str, Any]) -> dict[str, Any]:
        clean = {k: v for k, v in params.items() if v is not None and v != ""}
        return await self._request("GET", "/api/datasets", params=clean)

    async def dataset(self, dataset_id: str) -> dict[str, Any]:
        return await self._request("GET", self._path(dataset_id))

    async def versions(self, dataset_id: str) -> dict[str, Any]:
        return await self._request("GET", self._path(dataset_id, "/versions"))

    async def mock(self, dataset_id: str, limit: int) -> dict[str, Any]:
        return await self._request("GET", self._path(dataset_id, "/mock"),
                                   params={"limit": limit, "format": "json"})

    async def sql(self, dataset_id: str, sql: str, limit: int) -> dict[str, Any]:
        return await self._request("POST", self._path(dataset_id, "/sql"),
                                   json={"sql": sql, "limit": limit})

    async def private_query(self, dataset_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request("POST", self._path(dataset_id, "/private-query"), json=body)


__all__ = ["HubLibrary", "Library", "check_dataset_id"]
