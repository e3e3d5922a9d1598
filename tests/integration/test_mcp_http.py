"""MCP over the wire: streamable HTTP at the hub's /mcp, and ``ndl mcp`` on stdio.

Real ``ndl hub`` and ``ndl datasite`` processes (the ``network`` fixture, on SQLite and
PostgreSQL), spoken to with the MCP SDK's own clients.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult
from netfixture import Network

from ndl.testing import HubProcess

T = TypeVar("T")


def _over_http(url: str, token: str | None, body: Callable[[Client], Awaitable[T]]) -> T:
    async def main() -> T:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
            async with Client(streamable_http_client(f"{url}/mcp", http_client=http)) as c:
                return await body(c)

    return anyio.run(main)


def wait_for_mock(url: str, token: str, dataset_id: str, timeout: float = 20) -> None:
    """Datasites send their mocks after publishing; give the upload a moment to land."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = httpx.get(f"{url}/api/datasets/{dataset_id}/mock", params={"limit": 1},
                         headers={"Authorization": f"Bearer {token}"}, timeout=5)
        if resp.status_code == 200:
            return
        time.sleep(0.2)
    raise AssertionError(f"no mock of {dataset_id} reached the hub: {resp.text}")


def _ok(res: CallToolResult) -> dict[str, Any]:
    assert not res.is_error, res.content
    assert res.structured_content is not None
    return res.structured_content


def _text(res: CallToolResult) -> str:
    block = res.content[0]
    assert block.type == "text"
    return block.text


def test_streamable_http_search_get_and_query(network: Network) -> None:
    async def calls(c: Client) -> tuple[Any, ...]:
        tools = (await c.list_tools()).tools
        found = await c.call_tool("search_datasets", {"query": "A&E"})
        detail = await c.call_tool("get_dataset", {"dataset_id": "nhs-trust/ae-attendances"})
        rows = await c.call_tool("query_open_data", {
            "dataset_id": "nhs-trust/ward-population",
            "sql": "SELECT ward, population FROM data ORDER BY ward"})
        refused = await c.call_tool("query_open_data", {
            "dataset_id": "nhs-trust/ae-attendances", "sql": "SELECT * FROM data"})
        return tools, found, detail, rows, refused

    tools, found, detail, rows, refused = _over_http(network.hub.url, None, calls)
    assert len(tools) == 15
    # Every tool is read-only but run_private_query (it spends privacy budget),
    # export_dataset (it starts work at a datasite) and submit_job (it queues code).
    assert sorted(t.name for t in tools if not t.annotations.read_only_hint) == [
        "export_dataset", "run_private_query", "submit_job"]
    assert _ok(found)["results"][0]["id"] == "nhs-trust/ae-attendances"
    info = _ok(detail)
    assert (info["title"], info["tier"], info["row_count"]) == ("A&E attendances",
                                                                "safeguarded", 40)
    assert info["column_names"] == ["region", "acuity"]
    assert info["page"] == f"{network.hub.url}/datasets/nhs-trust/ae-attendances"
    assert "A&E attendances" in _text(detail)
    assert _ok(rows)["rows"] == [["A", 100], ["B", 5], ["C", 7]]
    assert refused.is_error and "only for open data" in _text(refused)


def test_http_forwards_the_callers_token(network: Network) -> None:
    async def sample(c: Client) -> CallToolResult:
        return await c.call_tool("get_sample",
                                 {"dataset_id": "nhs-trust/ae-attendances", "rows": 5})

    anonymous = _over_http(network.hub.url, None, sample)
    assert anonymous.is_error and "signed-in" in _text(anonymous)
    # The hub's mock endpoint needs a signed-in user: rows come back only if the caller's
    # token reached it.
    wait_for_mock(network.hub.url, network.researcher, "nhs-trust/ae-attendances")
    signed_in = _ok(_over_http(network.hub.url, network.researcher, sample))
    assert signed_in["kind"] == "synthetic mock rows" and signed_in["real_data"] is False
    assert signed_in["columns"] == ["region", "acuity"] and 0 < len(signed_in["rows"]) <= 5


def test_hub_mcp_refuses_bad_tokens_and_starts_and_stops_cleanly(tmp_path: Path) -> None:
    async def search(c: Client) -> CallToolResult:
        return await c.call_tool("search_datasets", {"query": "ward"})

    hub = HubProcess(tmp_path / "hub", extra_args=["--log-level", "info"])
    with hub:
        assert _ok(_over_http(hub.url, None, search))["total"] == 0
        # A token that is not valid is refused before any tool runs, as on the API.
        resp = httpx.post(
            f"{hub.url}/mcp", timeout=10,
            headers={"Authorization": "Bearer ndl_forged", "Accept": "application/json"},
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert resp.status_code == 401
        assert resp.json()["error"]["code"] == "authentication_required"
        assert resp.headers["www-authenticate"] == "Bearer"
        proc = hub.proc
        assert proc is not None
        proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal once its graceful shutdown is done.
        assert proc.wait(timeout=10) in (0, -signal.SIGTERM)
    log = hub.log()
    assert "Application startup complete" in log and "Application shutdown complete" in log
    assert "Traceback" not in log and "ERROR" not in log, log


def test_ndl_mcp_over_stdio(network: Network, tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "ndl", "mcp", "--hub", network.hub.url],
        env={"NDL_CONFIG_DIR": str(tmp_path / "no-config"),
             "NDL_ALLOW_HTTP_LOOPBACK": "1"})  # the test hub is plain http:// on loopback

    async def main() -> tuple[Any, ...]:
        async with Client(params) as c:
            tools = (await c.list_tools()).tools
            found = await c.call_tool("search_datasets", {"query": "ward population"})
            access = await c.call_tool("get_access_requirements",
                                       {"dataset_id": "nhs-trust/ward-population"})
            return tools, found, access

    tools, found, access = anyio.run(main)
    assert {t.name for t in tools} >= {"search_datasets", "get_dataset", "find_linkage"}
    assert _ok(found)["results"][0]["id"] == "nhs-trust/ward-population"
    a = _ok(access)
    assert a["tier"] == "open" and a["expected_wait"].startswith("none")
    assert a["page"] == f"{network.hub.url}/datasets/nhs-trust/ward-population"


def test_llms_txt_parses_and_its_mcp_link_answers_a_plain_get_at_once(network: Network) -> None:
    from llms_txt import parse_llms_file  # the llms.txt reference parser

    url = network.hub.url
    text = httpx.get(f"{url}/llms.txt", timeout=10).text
    parsed = parse_llms_file(text)  # crashed on a list item with no link
    assert parsed["title"] == "National Data Library"
    links = [item for items in parsed["sections"].values() for item in items]
    assert links and all(item["url"].startswith(url) for item in links)
    assert "Croissant" in {item["title"] for item in links}
    mcp = next(item["url"] for item in links if item["title"] == "MCP server")

    # A link checker's GET: a short answer saying what this is, never an endless stream.
    for method, accept in (("GET", "*/*"), ("GET", "text/html"), ("HEAD", "*/*")):
        with httpx.stream(method, mcp, headers={"Accept": accept},
                          timeout=httpx.Timeout(5)) as resp:
            body = resp.read()
        assert resp.status_code == 405 and resp.headers["allow"] == "POST", (method, accept)
        assert resp.headers["content-type"].startswith("application/json")
        if method == "GET":
            assert b"MCP server" in body and b"POST" in body

    # The Markdown resources over HTTP link to the hub as it was reached.
    async def read(c: Client) -> tuple[Any, ...]:
        catalogue = await c.read_resource("ndl://catalogue.md")
        page = await c.read_resource("ndl://datasets/nhs-trust/ae-attendances.md")
        prompt = await c.get_prompt("find_data", {"question": "A&E waits by age"})
        return catalogue, page, prompt

    catalogue, page, prompt = _over_http(url, None, read)
    assert f"{url}/datasets/nhs-trust/ae-attendances.md" in catalogue.contents[0].text
    assert "http://ndl-hub" not in catalogue.contents[0].text + page.contents[0].text
    assert "A&E waits by age" in prompt.messages[0].content.text
