"""Ids that would steer the hub client to another endpoint are refused before any request.

The SDK, the CLI, MCP and datasites all build URLs from ids they were handed: by a person,
a script reading a file, or an AI agent. A crafted id such as ``../../users/ada/accreditation``
used as a grant id would otherwise make ``revoke_grant`` POST to another endpoint carrying
the user's token (httpx resolves the dot segments). Each attack here must raise
``InvalidInput`` and reach the hub with nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

from ndl.core.errors import InvalidInput
from ndl.hubclient import AsyncClient, Client
from ndl.mcp.library import HubLibrary

ATTACKS: list[tuple[str, tuple[Any, ...]]] = [
    ("revoke_grant", ("../../users/ada/accreditation", "pwned")),
    ("request_access", ("../../auth/tokens", ["dfe/pupils"])),
    ("project", ("p-1/../../../auth/tokens",)),
    ("decide", ("1/../../../../auth/logout", "approve")),
    ("revoke_token", ("1/../../logout",)),
    ("vote", ("1/../../../auth/logout",)),
    ("dashboard", ("dfe/../../auth/tokens",)),
    ("dataset", ("x/../../auth/login",)),
    ("sql", ("dfe/pupils/../../../auth/tokens", "SELECT 1")),
    ("private_query", ("dfe/pupils?project=p-other#",)),
    ("post_envelope", ("/api/federation/../auth/tokens", {})),
]


def _recording() -> tuple[list[httpx.Request], httpx.MockTransport]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    return seen, httpx.MockTransport(handler)


def _kwargs(name: str) -> dict[str, Any]:
    return {"project": "p-1a2b3c4d"} if name == "private_query" else {}


@pytest.mark.parametrize(("name", "args"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_the_sync_client_sends_nothing(name: str, args: tuple[Any, ...]) -> None:
    seen, transport = _recording()
    with Client("http://hub.test", "ndl_victim", transport=transport) as client, \
            pytest.raises(InvalidInput):
        getattr(client, name)(*args, **_kwargs(name))
    assert seen == []


@pytest.mark.parametrize(("name", "args"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_the_async_client_sends_nothing(name: str, args: tuple[Any, ...]) -> None:
    seen, transport = _recording()

    async def main() -> None:
        async with AsyncClient("http://hub.test", "ndl_victim", transport=transport) as c:
            await getattr(c, name)(*args, **_kwargs(name))

    with pytest.raises(InvalidInput):
        anyio.run(main)
    assert seen == []


@pytest.mark.parametrize("call", [
    lambda lib: lib.dataset("x/../../auth/login"),
    lambda lib: lib.versions("dfe/pupils/../../../../auth/tokens"),
    lambda lib: lib.mock("dfe/pupils%2F..", 1),
    lambda lib: lib.sql("../../auth/login", "SELECT 1", 1),
    lambda lib: lib.private_query("dfe/../auth", {"project": "p-1a2b3c4d"}),
], ids=["dataset", "versions", "mock", "sql", "private_query"])
def test_an_agent_cannot_steer_mcp_to_another_endpoint(call: Callable[[HubLibrary], Any]
                                                        ) -> None:
    seen, transport = _recording()

    async def main() -> None:
        async with HubLibrary("http://hub.test", "ndl_victim", transport=transport) as lib:
            await call(lib)

    with pytest.raises(InvalidInput):
        anyio.run(main)
    assert seen == []
