"""What the MCP tools read from: the hub's JSON API, reached over HTTP or in-process.

The tools never touch the hub's database. They call the same public JSON API a person's
program would, with the caller's own token, so an agent can see and do exactly what its
user could — no more. ``ndl mcp`` (stdio) reaches a hub over the network; the ``/mcp``
endpoint inside the hub reaches its own app through ``httpx.ASGITransport`` (no network hop,
the same access rules).
"""

from __future__ import annotations

from typing import Any, Protocol

import httpx

from ndl.hubclient import AsyncClient, check_dataset_id
from ndl.jobs.bundle import from_files
from ndl.jobs.views import CodeView, JobView, OutputFile


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

    async def submit_work(self, kind: str, dataset_id: str, params: dict[str, Any]
                          ) -> dict[str, Any]: ...

    async def work(self, work_id: str) -> dict[str, Any]: ...

    # Controlled jobs: typed views (ndl.jobs.views), as the SDK returns them.
    async def submit_job(self, project: str, files: dict[str, str]) -> JobView: ...

    async def job(self, job_id: str) -> JobView: ...

    async def jobs(self) -> list[JobView]: ...

    async def job_output_files(self, job_id: str) -> list[OutputFile]: ...

    async def job_code(self, sha256: str) -> CodeView: ...


class HubLibrary:
    """The hub's JSON API as a :class:`Library`: a thin adapter over :class:`AsyncClient`.

    >>> lib = HubLibrary("http://127.0.0.1:8700", token="ndl_...")   # doctest: +SKIP
    >>> (await lib.search({"q": "attainment"}))["total"]                # doctest: +SKIP
    1
    """

    def __init__(self, base_url: str, token: str | None = None, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 timeout: float = 60.0) -> None:
        self.client = AsyncClient(base_url, token, transport=transport, timeout=timeout)

    @property
    def base_url(self) -> str:
        return self.client.url

    @property
    def token(self) -> str | None:
        return self.client.token

    @property
    def signed_in(self) -> bool:
        return self.client.token is not None

    def with_token(self, token: str | None) -> HubLibrary:
        """The same connection, acting as the holder of ``token``."""
        view = HubLibrary.__new__(HubLibrary)
        view.client = self.client.with_token(token)
        return view

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> HubLibrary:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def search(self, params: dict[str, Any]) -> dict[str, Any]:
        return await self.client.search(**params)

    async def dataset(self, dataset_id: str) -> dict[str, Any]:
        return await self.client.dataset(dataset_id)

    async def versions(self, dataset_id: str) -> dict[str, Any]:
        return await self.client.versions(dataset_id)

    async def mock(self, dataset_id: str, limit: int) -> dict[str, Any]:
        return await self.client.mock(dataset_id, limit=limit)

    async def sql(self, dataset_id: str, sql: str, limit: int) -> dict[str, Any]:
        return (await self.client.sql(dataset_id, sql, limit=limit)).raw

    async def private_query(self, dataset_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.client.private_query(dataset_id, **body)

    async def submit_work(self, kind: str, dataset_id: str, params: dict[str, Any]
                          ) -> dict[str, Any]:
        return (await self.client.submit_work(kind, dataset_id, params)).raw

    async def work(self, work_id: str) -> dict[str, Any]:
        return (await self.client.work(work_id)).raw

    async def submit_job(self, project: str, files: dict[str, str]) -> JobView:
        # Checked here as the hub would (file, line and fix), before anything is sent.
        return await self.client.submit_job(from_files(files), project=project)

    async def job(self, job_id: str) -> JobView:
        return await self.client.job(job_id)

    async def jobs(self) -> list[JobView]:
        return await self.client.jobs()

    async def job_output_files(self, job_id: str) -> list[OutputFile]:
        return await self.client.job_output_files(job_id)

    async def job_code(self, sha256: str) -> CodeView:
        return await self.client.job_code(sha256)


__all__ = ["HubLibrary", "Library", "check_dataset_id"]
