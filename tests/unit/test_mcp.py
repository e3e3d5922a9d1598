"""The MCP tools, driven by an in-process MCP client against a real hub with the demo data.

The server runs in-process (``mcp.Client(server)``); its library talks HTTP to a real
``ndl hub`` process fed by three real datasites holding the synthetic demo data.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import httpx
import pytest
from mcp import Client
from mcp.types import CallToolResult

from ndl.demo.synth import ORGS, generate_demo_data
from ndl.mcp import HubLibrary, create_server
from ndl.testing import DatasiteProcess, HubProcess

T = TypeVar("T")
QUESTION = "which datasets have pupils' attainment by ethnicity?"


@dataclass
class Demo:
    hub: HubProcess
    researcher: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    root = tmp_path_factory.mktemp("mcp")
    generate_demo_data(root / "sites", people=200, seed=7)
    hub = HubProcess(root / "hub")
    stewards = {}
    for org in ORGS:
        hub.create_org(org.slug, org.name, org.kind)
        stewards[org.slug] = hub.create_user(f"steward-{org.slug}", ["steward"], org=org.slug)
    researcher = hub.create_user("ada", ["researcher"], accredited=True)
    with hub:
        sites = [DatasiteProcess(root / "sites" / o.slug, hub.url, org=o.slug,
                                 token=stewards[o.slug], poll_wait=2) for o in ORGS]
        try:
            for site in sites:
                site.start(wait_online=False)
            for site in sites:
                site.wait_online()
            _wait_for_catalogue(hub.url, 6)
            yield Demo(hub, researcher)
        finally:
            for site in sites:
                site.stop()


def _wait_for_catalogue(url: str, n: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/api/datasets", timeout=5).json()["total"] >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"the catalogue did not reach {n} datasets")


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


def _with_client(url: str, token: str | None,
                 body: Callable[[Client], Awaitable[T]]) -> T:
    async def main() -> T:
        async with HubLibrary(url, token) as lib, Client(create_server(lib)) as client:
            return await body(client)

    return anyio.run(main)


def _ok(res: CallToolResult) -> dict[str, Any]:
    assert not res.is_error, res.content
    assert res.structured_content is not None
    assert res.content and res.content[0].type == "text" and res.content[0].text
    return res.structured_content


def _text(res: CallToolResult) -> str:
    block = res.content[0]
    assert block.type == "text"
    return block.text


def test_an_agent_goes_from_a_question_to_dataset_schema_and_access_route(demo: Demo) -> None:
    """Must show: 'which datasets have pupils' attainment by ethnicity?' answered with tools
    alone: attainment lives in dfe/attainment, ethnicity in dfe/pupils, they link on UPN, and
    each says how to get access."""

    async def journey(client: Client) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        seen["search"] = _ok(await client.call_tool("search_datasets", {"query": QUESTION}))
        seen["attainment"] = _ok(await client.call_tool(
            "describe_schema", {"dataset_id": "dfe/attainment"}))
        seen["linkage"] = _ok(await client.call_tool(
            "find_linkage", {"dataset_id": "dfe/attainment"}))
        seen["pupils"] = _ok(await client.call_tool(
            "describe_schema", {"dataset_id": "dfe/pupils"}))
        seen["access_attainment"] = _ok(await client.call_tool(
            "get_access_requirements", {"dataset_id": "dfe/attainment"}))
        seen["access_pupils"] = _ok(await client.call_tool(
            "get_access_requirements", {"dataset_id": "dfe/pupils"}))
        return seen

    seen = _with_client(demo.hub.url, None, journey)

    # 1. The question as asked: no dataset holds every word, so the tool ranks by words
    # matched, and the two DfE datasets come first.
    search = seen["search"]
    top = [d["id"] for d in search["results"][:2]]
    assert search["match"] == "any_word"
    assert sorted(top) == ["dfe/attainment", "dfe/pupils"]
    by_id = {d["id"]: d for d in search["results"]}
    assert "attainment" in by_id["dfe/attainment"]["matched_terms"]
    assert "ethnicity" in by_id["dfe/pupils"]["matched_terms"]

    # 2. Attainment has results keyed by UPN but no ethnicity ...
    att_cols = {c["name"]: c for c in seen["attainment"]["columns"]}
    assert "ethnicity" not in att_cols and {"grade", "scaled_score"} <= set(att_cols)
    assert att_cols["upn"]["join_key"] == "upn"
    assert seen["attainment"]["join_keys"] == ["upn"]

    # 3. ... and links on UPN to pupils, and only to pupils.
    groups = {g["join_key"]: g for g in seen["linkage"]["groups"]}
    assert [d["id"] for d in groups["upn"]["datasets"]] == ["dfe/pupils"]
    assert groups["upn"]["datasets"][0]["columns"] == ["upn"]

    # 4. Pupils holds ethnicity, marked sensitive.
    pupil_cols = {c["name"]: c for c in seen["pupils"]["columns"]}
    assert pupil_cols["ethnicity"]["sensitivity"] == "sensitive"
    assert pupil_cols["upn"]["join_key"] == "upn"

    # 5. The access route for each: attainment is safeguarded, pupils controlled.
    att, pup = seen["access_attainment"], seen["access_pupils"]
    assert (att["tier"], pup["tier"]) == ("safeguarded", "controlled")
    assert "aggregate" in att["route"].lower() and "steward" in pup["route"].lower()
    assert "code runs at the data" in pup["route"]  # controlled data: code-to-data jobs
    assert "controlled" in pup["tier_meaning"].lower()
    assert any("project" in step for step in pup["how_to_apply"])
    assert att["page"].endswith("/datasets/dfe/attainment")


def test_every_tool_is_listed_read_only_with_an_output_schema(demo: Demo) -> None:
    async def tools(client: Client) -> Any:
        return (await client.list_tools()).tools

    listed = _with_client(demo.hub.url, None, tools)
    assert sorted(t.name for t in listed) == [
        "describe_schema", "export_dataset", "find_linkage", "get_access_requirements",
        "get_dataset", "get_sample", "job_code", "job_status", "list_facets", "list_jobs",
        "query_open_data", "read_job_outputs", "run_private_query", "search_datasets",
        "submit_job"]
    for t in listed:
        # Spends privacy budget / starts an export / queues a job: honestly not read-only.
        if t.name in ("run_private_query", "export_dataset", "submit_job"):
            assert t.annotations is not None and t.annotations.read_only_hint is False
            assert t.annotations.destructive_hint is False and not t.annotations.idempotent_hint
            continue
        assert t.annotations is not None and t.annotations.read_only_hint is True, t.name
        assert t.annotations.open_world_hint is False and t.annotations.idempotent_hint
        assert t.output_schema and t.output_schema.get("type") == "object", t.name
        assert t.description, t.name


def test_search_filters_and_facets(demo: Demo) -> None:
    async def calls(client: Client) -> tuple[dict[str, Any], ...]:
        open_only = _ok(await client.call_tool("search_datasets", {"tier": "open"}))
        words = _ok(await client.call_tool("search_datasets", {"query": "attainment"}))
        facets = _ok(await client.call_tool("list_facets", {}))
        return open_only, words, facets

    open_only, words, facets = _with_client(demo.hub.url, None, calls)
    assert [d["id"] for d in open_only["results"]] == ["local-authority/ward-population"]
    assert words["match"] == "all_words" and words["results"][0]["id"] == "dfe/attainment"
    assert facets["total"] == 6
    assert facets["facets"]["tier"] == {"controlled": 3, "open": 1, "safeguarded": 2}
    assert facets["facets"]["publisher"]["Department for Education"] == 2


def test_get_dataset_gives_metadata_and_versions(demo: Demo) -> None:
    async def call(client: Client) -> CallToolResult:
        return await client.call_tool("get_dataset", {"dataset_id": "dfe/pupils"})

    res = _with_client(demo.hub.url, None, call)
    info = _ok(res)
    assert (info["title"], info["tier"]) == ("Pupil records", "controlled")
    assert info["publisher"] == "Department for Education"
    assert "ethnicity" in info["column_names"] and info["join_keys"] == [
        "date_of_birth", "name", "postcode", "upn"]
    assert info["versions"] and info["versions"][0]["version"] == 1
    assert "Pupil records" in _text(res) and "Tier: controlled" in _text(res)


def test_hub_refusals_come_back_as_tool_errors_with_the_hubs_message(demo: Demo) -> None:
    async def calls(client: Client) -> tuple[CallToolResult, ...]:
        return (
            await client.call_tool("get_dataset", {"dataset_id": "dfe/no-such"}),
            await client.call_tool("get_dataset", {"dataset_id": "../api/me"}),
            await client.call_tool("query_open_data", {"dataset_id": "dfe/pupils",
                                                       "sql": "SELECT * FROM data"}),
            await client.call_tool("get_sample", {"dataset_id": "dfe/pupils"}),
        )

    missing, bad_id, not_open, no_token = _with_client(demo.hub.url, None, calls)
    assert missing.is_error and "'dfe/no-such' is not in the catalogue" in _text(missing)
    assert bad_id.is_error and "is not valid" in _text(bad_id)
    assert not_open.is_error and "SQL over rows is only for open data" in _text(not_open)
    assert no_token.is_error and "signed-in" in _text(no_token)


def test_open_data_gives_real_rows_and_sql(demo: Demo) -> None:
    ds = "local-authority/ward-population"

    async def calls(client: Client) -> tuple[CallToolResult, ...]:
        return (
            await client.call_tool("get_sample", {"dataset_id": ds, "rows": 3}),
            await client.call_tool("query_open_data", {
                "dataset_id": ds, "max_rows": 50,
                "sql": "SELECT year, sum(population) AS people FROM data GROUP BY year "
                       "ORDER BY year"}),
        )

    sample, query = _with_client(demo.hub.url, None, calls)
    s = _ok(sample)
    assert (s["kind"], s["real_data"], len(s["rows"])) == ("open rows", True, 3)
    assert s["columns"][:3] == ["ward_code", "ward_name", "year"]
    q = _ok(query)
    assert q["columns"] == ["year", "people"]
    assert [row[0] for row in q["rows"]] == [2021, 2022, 2023, 2024, 2025]
    assert q["truncated"] is False and all(row[1] > 0 for row in q["rows"])


def test_other_tiers_give_mock_rows_clearly_labelled(demo: Demo) -> None:
    async def call(client: Client) -> CallToolResult:
        return await client.call_tool("get_sample", {"dataset_id": "dfe/pupils", "rows": 5})

    wait_for_mock(demo.hub.url, demo.researcher, "dfe/pupils")
    res = _with_client(demo.hub.url, demo.researcher, call)
    s = _ok(res)
    assert (s["kind"], s["real_data"]) == ("synthetic mock rows", False)
    assert 0 < len(s["rows"]) <= 5 and "ethnicity" in s["columns"]
    assert "NOT REAL DATA" in _text(res)


def test_a_bad_token_is_refused_by_the_hub(demo: Demo) -> None:
    async def call(client: Client) -> CallToolResult:
        return await client.call_tool("search_datasets", {"query": "pupils"})

    res = _with_client(demo.hub.url, "ndl_not-a-real-token", call)
    assert res.is_error and "token" in _text(res).lower()


def test_find_linkage_groups_by_every_join_key(demo: Demo) -> None:
    async def call(client: Client) -> CallToolResult:
        return await client.call_tool("find_linkage",
                                      {"dataset_id": "local-authority/childrens-social-care"})

    k = _ok(_with_client(demo.hub.url, None, call))
    groups = {g["join_key"]: {d["id"] for d in g["datasets"]} for g in k["groups"]}
    assert set(groups) == {"date_of_birth", "local_id", "name", "nhs_number", "postcode"}
    assert groups["nhs_number"] == {"nhs-trust/patients", "nhs-trust/ae-attendances"}
    assert groups["local_id"] == set()
    assert "dfe/pupils" in groups["postcode"] and "dfe/attainment" not in groups["postcode"]


def test_run_private_query_previews_then_spends_within_the_grant(demo: Demo) -> None:
    from ndl.testing import granted_project

    project = granted_project(demo.hub.url, demo.researcher, ["nhs-trust/ae-attendances"])
    args = {"dataset_id": "nhs-trust/ae-attendances", "project": project,
            "sql": "SELECT COUNT(*) AS n FROM data GROUP BY region", "rho": 0.1}

    async def calls(client: Client) -> tuple[Any, ...]:
        preview = await client.call_tool("run_private_query", args)
        spent = await client.call_tool("run_private_query", {**args, "confirm": True})
        other = await client.call_tool("run_private_query",
                                       {**args, "dataset_id": "nhs-trust/patients"})
        return preview, spent, other

    preview, spent, other = _with_client(demo.hub.url, demo.researcher, calls)
    p = preview.structured_content
    assert p["confirmed"] is False and p["spent"] == 0 and p["expected_error"]
    s = spent.structured_content
    assert s["confirmed"] is True and abs(s["spent"] - 0.1) < 1e-9
    assert s["columns"][0] == "region" and len(s["rows"]) == 9  # every English region
    assert s["budget_remaining"]["researcher"] < p["budget_remaining"]["researcher"]
    assert other.is_error and "safeguarded" in other.content[0].text
    anon = _with_client(demo.hub.url, None,
                        lambda c: c.call_tool("run_private_query", args))
    assert anon.is_error


def test_a_private_answer_says_each_numbers_uncertainty_and_bands_cost_one_spend(
        demo: Demo) -> None:
    from ndl.testing import granted_project

    project = granted_project(demo.hub.url, demo.researcher, ["nhs-trust/ae-attendances"])
    # "A&E attendances by age band": one query, one spend (it took four before).
    args = {"dataset_id": "nhs-trust/ae-attendances", "project": project, "rho": 0.1,
            "sql": "SELECT region, HISTOGRAM(age_at_arrival, [0, 18, 65, 110]) AS bands "
                   "FROM data GROUP BY region"}

    async def calls(client: Client) -> tuple[CallToolResult, CallToolResult]:
        preview = await client.call_tool("run_private_query", args)
        return preview, await client.call_tool("run_private_query", {**args, "confirm": True})

    preview, spent = _with_client(demo.hub.url, demo.researcher, calls)
    assert re.search(r"bands: give or take \d+ \(95%\)", _text(preview)), _text(preview)
    s = _ok(spent)
    assert abs(s["spent"] - 0.1) < 1e-9 and len(s["expected_error"]) == 1
    assert s["columns"][1:] == ["age_at_arrival < 0", "age_at_arrival in [0, 18)",
                                "age_at_arrival in [18, 65)", "age_at_arrival in [65, 110]",
                                "age_at_arrival > 110"]
    # The text an agent reads carries every number's error bar, not only structuredContent.
    lines = [ln for ln in _text(spent).splitlines() if ln.startswith("- region = ")]
    assert len(lines) == len(s["rows"]) == 9
    for line in lines:
        assert len(re.findall(r"about [\d,]+, give or take [\d,]+ \(95%\)", line)) == 5, line


def test_find_linkage_suggests_bridge_datasets_along_the_join_key_graph(demo: Demo) -> None:
    async def calls(client: Client) -> tuple[CallToolResult, CallToolResult]:
        care = await client.call_tool("find_linkage",
                                      {"dataset_id": "local-authority/childrens-social-care"})
        return care, await client.call_tool("find_linkage", {"dataset_id": "dfe/attainment"})

    care, attainment = _with_client(demo.hub.url, None, calls)
    k = _ok(care)
    direct = {d["id"] for g in k["groups"] for d in g["datasets"]}
    bridges = {b["id"]: b for b in k["bridges"]}
    # Social care shares no key with attainment; pupils bridges them (postcode, then UPN).
    assert "dfe/attainment" not in direct and "dfe/attainment" in bridges
    path = bridges["dfe/attainment"]
    assert path["via"] == ["dfe/pupils"] and len(path["hops"]) == 2
    assert path["hops"][0]["from_id"] == "local-authority/childrens-social-care"
    assert "upn" in path["hops"][1]["join_keys"] and path["hops"][0]["join_keys"]
    assert "dfe/attainment" in _text(care) and "via dfe/pupils" in _text(care)
    # Every bridge is further than one hop, and none is the dataset itself.
    assert not set(bridges) & (direct | {k["dataset_id"]})
    a = _ok(attainment)
    assert {b["id"] for b in a["bridges"]} >= {"nhs-trust/ae-attendances"}
    assert all(2 <= len(b["hops"]) <= 3 for b in a["bridges"])


def test_catalogue_and_dataset_markdown_are_resources_and_prompts_plan_tasks(
        demo: Demo) -> None:
    async def calls(client: Client) -> tuple[Any, ...]:
        resources = (await client.list_resources()).resources
        templates = (await client.list_resource_templates()).resource_templates
        catalogue = await client.read_resource("ndl://catalogue.md")
        pupils = await client.read_resource("ndl://datasets/dfe/pupils.md")
        prompts = (await client.list_prompts()).prompts
        find = await client.get_prompt("find_data", {"question": QUESTION})
        plan = await client.get_prompt("plan_access_request", {
            "dataset_id": "nhs-trust/ae-attendances", "purpose": "waits by age"})
        ask = await client.get_prompt("ask_private_question", {
            "dataset_id": "nhs-trust/ae-attendances", "question": "waits by age band",
            "project": "p-1"})
        try:
            await client.read_resource("ndl://datasets/dfe/nothing-here.md")
            missing = None
        except Exception as exc:  # the SDK raises the server's error
            missing = exc
        return resources, templates, catalogue, pupils, prompts, find, plan, ask, missing

    resources, templates, catalogue, pupils, prompts, find, plan, ask, missing = \
        _with_client(demo.hub.url, None, calls)
    assert [str(r.uri) for r in resources] == ["ndl://catalogue.md"]
    assert [t.uri_template for t in templates] == ["ndl://datasets/{site}/{name}.md"]
    text = catalogue.contents[0].text
    assert text.startswith("# National Data Library catalogue") and text.count("\n- [") == 6
    assert f"{demo.hub.url}/datasets/dfe/pupils.md" in text
    page = pupils.contents[0]
    assert page.mime_type == "text/markdown" and "dfe/pupils" in page.text
    assert missing is not None and "nothing-here" in str(missing)
    assert {p.name for p in prompts} == {"find_data", "plan_access_request",
                                         "ask_private_question"}
    found = find.messages[0].content.text
    assert QUESTION in found and "find_linkage" in found and "Safeguarded" in found
    assert "get_access_requirements" in plan.messages[0].content.text
    assert "HISTOGRAM(col, [e0, e1, ...])" in ask.messages[0].content.text


def test_export_dataset_returns_the_work_and_its_file(demo: Demo) -> None:
    ds = "local-authority/ward-population"

    async def calls(client: Client) -> tuple[CallToolResult, ...]:
        return (
            await client.call_tool("export_dataset", {"dataset_id": ds, "format": "csv",
                                                      "wait_seconds": 120}),
            await client.call_tool("export_dataset", {"dataset_id": "dfe/pupils"}),
            await client.call_tool("export_dataset", {"dataset_id": ds, "limit": 0}),
        )

    done, refused, bad = _with_client(demo.hub.url, None, calls)
    e = _ok(done)
    assert (e["state"], e["final"], e["progress"]) == ("succeeded", True, 1.0)
    assert e["result_url"] == f"{demo.hub.url}/api/work/{e['work_id']}/result"
    assert e["page_url"] == f"{demo.hub.url}/work/{e['work_id']}"
    assert e["fetch_command"] == f"ndl work fetch {e['work_id']}"
    assert e["filename"] == "ward-population.csv" and e["rows"] > 0
    file = httpx.get(e["result_url"], timeout=60)
    assert hashlib.sha256(file.content).hexdigest() == e["sha256"]
    assert len(file.content) == e["size_bytes"]
    assert refused.is_error and "downloading rows is only for open data" in _text(refused)
    assert bad.is_error and "limit" in _text(bad)
