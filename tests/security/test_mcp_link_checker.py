"""/mcp against what follows links: a link checker or crawler reading llms.txt.

A GET to /mcp without ``Accept: text/event-stream`` once got the SDK's event stream, which
never ends: a link checker hung on it for ten minutes, holding a connection (and a hub
worker's attention) the whole time. Any number of such GETs could pin the hub. It must get a
short, finite answer, and a Markdown resource's address must not reach past the dataset ids.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from ndl.testing import HubProcess


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    with HubProcess(tmp_path_factory.mktemp("mcp-get") / "hub") as h:
        yield h


@pytest.mark.parametrize("accept", ["*/*", "text/html", "application/json", ""])
def test_a_plain_get_to_mcp_ends_at_once_with_405_and_allow(hub: HubProcess,
                                                           accept: str) -> None:
    started = time.monotonic()
    headers = {"Accept": accept} if accept else {}
    # A read timeout turns a stream that never ends into a failure, not a hung test.
    with httpx.stream("GET", f"{hub.url}/mcp", headers=headers,
                      timeout=httpx.Timeout(10)) as resp:
        body = resp.read()
    assert resp.status_code == 405 and resp.headers["allow"] == "POST"
    assert b"MCP" in body and len(body) < 4000
    assert time.monotonic() - started < 10
    assert resp.headers.get("x-content-type-options") == "nosniff"


def test_a_dataset_resource_takes_only_a_dataset_id(hub: HubProcess) -> None:
    async def main() -> list[str]:
        errors = []
        async with httpx2.AsyncClient(timeout=30) as http, \
                Client(streamable_http_client(f"{hub.url}/mcp", http_client=http)) as c:
            for uri in ("ndl://datasets/../x.md", "ndl://datasets/a%2F..%2F..%2Fb/c.md",
                        "ndl://datasets/a/..%2Fapi.md"):
                try:
                    await c.read_resource(uri)
                    errors.append(f"{uri}: read")
                except Exception as exc:  # the SDK raises the server's refusal
                    errors.append(str(exc))
        return errors

    for err in anyio.run(main):
        assert not err.endswith(": read"), err
