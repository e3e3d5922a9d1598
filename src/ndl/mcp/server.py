"""The MCP server: the library's catalogue and open data as tools an AI agent can call.

One set of tools over a :class:`~ndl.mcp.library.Library`, served two ways:

* ``ndl mcp --hub URL`` on stdin/stdout (:func:`serve_stdio`), acting as the token it was given;
* streamable HTTP at ``/mcp`` inside the hub (:func:`mount_mcp`), acting as the caller's own
  ``Authorization: Bearer`` token, forwarded to the hub's API in-process.

Every tool but three only reads, and is annotated ``readOnlyHint``: ``run_private_query``
spends privacy budget, ``export_dataset`` starts an export at a datasite and ``submit_job``
queues code for a data steward's review (:mod:`ndl.mcp.job_tools`). Each returns a
structured result (``structuredContent``, schema in ``outputSchema``) and a readable text
rendering. A refusal from the hub (unknown dataset, not open, not signed in) comes back as a
tool error whose text is the hub's own message.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, TypeVar

import httpx
from fastapi import FastAPI
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ndl import __version__
from ndl.core.errors import AuthenticationRequired, NdlError, NotFound, UpstreamUnavailable
from ndl.core.tiers import TIERS, Operation, tier_def
from ndl.mcp import job_tools, work_tool
from ndl.mcp import results as r
from ndl.mcp.hosts import check_host_and_origin, transport_security
from ndl.mcp.library import HubLibrary, Library, check_dataset_id
from ndl.mcp.linkage import bridges, key_graph
from ndl.mcp.resources import PUBLIC_BASE
from ndl.mcp.resources import register as register_resources

INSTRUCTIONS = """\
ndl is a federated National Data Library: each organisation keeps its data at home and the
hub holds a catalogue of it. Start with search_datasets (plain words or a question), read a
dataset with get_dataset and describe_schema, find datasets it can be joined with through
find_linkage, and ask get_access_requirements how to reach it. Open datasets can be read
with get_sample and query_open_data, and exported whole with export_dataset (it returns a
link to the file); other tiers show synthetic mock rows only. Controlled data is reached by
code run at the data: submit_job (on a project's grant), then job_status, list_jobs,
read_job_outputs (once released) and job_code. The
catalogue and each dataset are also resources in Markdown (ndl://catalogue.md,
ndl://datasets/{site}/{name}.md), and the prompts plan common tasks.
"""
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                            open_world_hint=False)
TierArg = Literal["open", "safeguarded", "controlled"]
JoinKeyArg = Literal["nhs_number", "upn", "postcode", "date_of_birth", "name", "local_id"]
DatasetId = Annotated[str, Field(description="A dataset id such as 'dfe/attainment'.")]
_STOP_WORDS = frozenset(
    "a about all an and any are as at be by can data dataset datasets do does find for from "
    "get has have how i in is it list me of on or show that the their there these this to "
    "what where which who whose with".split())
_MAX_WORDS = 8
_F = TypeVar("_F", bound=Callable[..., Awaitable[CallToolResult]])


def _answer(model: BaseModel, text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)],
                          structured_content=model.model_dump(mode="json"))


def _refusals(fn: _F) -> _F:
    """Turn ndl's errors (the hub's refusals included) into a tool error carrying the message."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> CallToolResult:
        try:
            return await fn(*args, **kwargs)
        except NdlError as exc:
            return CallToolResult(content=[TextContent(type="text", text=exc.message)],
                                  is_error=True)

    return wrapper  # type: ignore[return-value]


def _library(base: Library, ctx: Context) -> Library:
    """The library as the caller: over HTTP, the bearer token the request carried."""
    headers = ctx.headers
    auth = headers.get("authorization", "") if headers is not None else ""
    if auth.lower().startswith("bearer ") and auth[7:].strip():
        return base.with_token(auth[7:].strip())
    return base


def _root(base: Library, ctx: Context) -> str:
    """The hub's address as the caller reached it (over HTTP), or the library's."""
    request = ctx.request_context.request
    return str(request.base_url).rstrip("/") if isinstance(request, Request) else base.base_url


def _page(base: Library, ctx: Context, dataset_id: str) -> str:
    return f"{_root(base, ctx)}/datasets/{dataset_id}"


def _columns(detail: dict[str, Any]) -> list[r.Column]:
    return [r.Column.model_validate(c) for c in detail.get("columns") or []]


def _join_keys(columns: list[r.Column]) -> list[str]:
    return sorted({c.join_key for c in columns if c.join_key})


def _names(columns: list[Any]) -> list[str]:
    """Column names, whether the hub sent plain names or column objects."""
    return [str(c.get("name")) if isinstance(c, dict) else str(c) for c in columns]


def _summary(d: dict[str, Any], matched: list[str] | None = None) -> r.DatasetSummary:
    return r.DatasetSummary.model_validate({**d, "matched_terms": matched})


async def _search(lib: Library, query: str, filters: dict[str, Any], limit: int
                  ) -> r.SearchResults:
    res = await lib.search({"q": query or None, **filters, "limit": limit})
    if res["total"] or not query:
        return r.SearchResults(query=query, match="all_words", total=res["total"],
                               results=[_summary(d) for d in res["results"]],
                               facets=res.get("facets") or {})
    # The hub's search wants every word; agents ask questions. Try the content words one by
    # one and rank datasets by how many they match.
    tokens = list(dict.fromkeys(re.findall(r"\w+", query.lower())))
    words = [w for w in tokens if w not in _STOP_WORDS and len(w) > 1]
    if tokens == words and len(words) == 1:  # nothing else to try
        words = []
    words = words[:_MAX_WORDS]  # one hub search per word: bound the work a question costs
    found: dict[str, tuple[dict[str, Any], list[str], int]] = {}
    for word in words:
        hits = await lib.search({"q": word, **filters, "limit": 100})
        for pos, d in enumerate(hits["results"]):
            prev = found.get(d["id"], (d, [], 0))
            found[d["id"]] = (d, [*prev[1], word], prev[2] + pos)
    ranked = sorted(found.values(), key=lambda t: (-len(t[1]), t[2], t[0]["id"]))
    note = ("Nothing matched every word, so these are datasets matching some of: "
            f"{', '.join(words)}. Read their schemas (describe_schema) and look for datasets "
            "that can be joined (find_linkage) to cover the rest.") if ranked else (
            "Nothing matched. Try fewer or different words, or list_facets to browse.")
    return r.SearchResults(query=query, match="any_word", total=len(ranked),
                           results=[_summary(d, m) for d, m, _ in ranked[:limit]], note=note)


def _dataset_info(d: dict[str, Any], versions: list[dict[str, Any]], page: str
                  ) -> r.DatasetInfo:
    columns = _columns(d)
    fields = set(r.DatasetInfo.model_fields) - {"column_names", "join_keys", "versions", "page"}
    return r.DatasetInfo.model_validate({
        **{k: v for k, v in d.items() if k in fields and v is not None},
        "column_names": [c.name for c in columns], "join_keys": _join_keys(columns),
        "versions": versions, "page": page,
    })


# Worded from the one tier definition (ndl.core.tiers), so MCP promises what the hub serves.
_ROUTES: dict[str, str] = {name: f"{t.title}: {t.how_to_reach}; you get {t.what_you_get}."
                           for name, t in TIERS.items()}
_WAITS: dict[str, str] = {name: "none: available now" if t.wait == "none" else t.wait
                          for name, t in TIERS.items()}


def _how_to_apply(tier: str, dataset_id: str, publisher: str) -> list[str]:
    served = tier_def(tier).operations
    if Operation.REQUEST_ACCESS not in served:
        return ["No application is needed.",
                f"Read rows of {dataset_id} with get_sample, or run SQL over the table "
                "'data' with query_open_data.",
                "Cite the publisher and follow the licence."]
    steps = ["Register on the hub and sign in ('ndl login'); you need the researcher role.",
             "Set up a project saying its purpose, team and legal basis, and ask for access "
             f"to {dataset_id} in it."]
    if Operation.PRIVATE_QUERY in served:
        return [*steps,
                "The dataset's policy decides at once or routes it to a data steward; once "
                "granted, ask private questions with run_private_query: differentially "
                "private aggregates, spent from a privacy budget."]
    return [*steps,
            f"A data steward of {publisher} reviews the request.",
            "Develop your analysis against the synthetic mock data (get_sample shows it).",
            f"What you get: {tier_def(tier).what_you_get}."]


def _access(d: dict[str, Any], page: str) -> r.AccessRequirements:
    tier, access = str(d["tier"]), r.Access.model_validate(d.get("access") or {})
    lead = access.lead_time_days
    return r.AccessRequirements(
        dataset_id=d["id"], title=d["title"], publisher=d["publisher"], tier=tier,
        tier_meaning=r.TIER_MEANINGS.get(tier, tier), tiers=r.TIER_MEANINGS,
        route=access.route or _ROUTES.get(tier, "").replace("{id}", d["id"]),
        route_from_publisher=bool(access.route), lead_time_days=lead,
        expected_wait=(f"about {lead} day(s), the publisher's estimate" if lead is not None
                       else _WAITS.get(tier, "unknown")),
        cost=access.cost or ("free" if tier == "open" else ""),
        policy_summary=str(d.get("policy_summary") or ""),
        how_to_apply=_how_to_apply(tier, d["id"], d["publisher"]),
        contact=d.get("contact"), page=page,
    )


async def _linkage(lib: Library, d: dict[str, Any]) -> r.Linkage:
    columns = _columns(d)
    keys = _join_keys(columns)
    candidates: dict[str, set[str]] = {}
    for key in keys:
        hits = await lib.search({"join_key": key, "limit": 100})
        for other in hits["results"]:
            if other["id"] != d["id"]:
                candidates.setdefault(other["id"], set()).add(key)
    # Read each candidate's schema: it names the joining columns, and it checks the match
    # rather than trusting the search filter alone.
    gate = asyncio.Semaphore(8)

    async def detail(ds_id: str) -> dict[str, Any] | None:
        async with gate:
            try:
                return await lib.dataset(ds_id)
            except NotFound:  # withdrawn between the search and now
                return None

    details = [x for x in await asyncio.gather(*map(detail, sorted(candidates))) if x]
    groups = []
    for key in keys:
        linked = []
        for other in details:
            cols = [c.name for c in _columns(other) if c.join_key == key]
            if cols:
                linked.append(r.LinkedDataset(id=other["id"], title=other["title"],
                                              publisher=other["publisher"],
                                              tier=other["tier"], columns=cols))
        groups.append(r.LinkageGroup(join_key=key, datasets=linked,
                                     columns_here=[c.name for c in columns if c.join_key == key]))
    declared = list((d.get("access") or {}).get("linkable_datasets") or [])
    paths: list[r.BridgePath] = []
    if keys:
        has, summary, _ = await key_graph(lib)
        paths = bridges(d["id"], keys, has, summary)
    return r.Linkage(
        dataset_id=d["id"], join_keys=keys, groups=groups, declared_linkable=declared,
        bridges=paths,
        note="Sharing a join-key type means records can be matched; it grants no access. "
             "Linking person-level records is controlled-tier work: a linkage job whose code "
             "every owner approves, run at the datasite or in the attested enclave, releasing "
             "only disclosure-checked aggregates.")


def create_server(library: Library) -> MCPServer:
    """An MCP server whose tools read the library through ``library``."""
    server = _quietly(lambda: MCPServer(
        "ndl", title="ndl National Data Library", instructions=INSTRUCTIONS,
        version=__version__, log_level="WARNING"))

    def tool(title: str) -> Callable[[_F], _F]:
        annotations = READ_ONLY.model_copy(update={"title": title})

        def register(fn: _F) -> _F:
            server.add_tool(_refusals(fn), annotations=annotations, title=title)
            return fn

        return register

    @tool("Search the catalogue")
    async def search_datasets(
        ctx: Context,
        query: Annotated[str, Field(description="Words or a question, e.g. 'pupil attainment "
                                                "by ethnicity'. Empty lists everything.")] = "",
        publisher: str | None = None, tier: TierArg | None = None,
        theme: Annotated[str | None, Field(description="e.g. health, education")] = None,
        geography: str | None = None,
        year: Annotated[int | None, Field(description="A year the data covers.")] = None,
        join_key: JoinKeyArg | None = None,
        limit: Annotated[int, Field(ge=1, le=100)] = 10,
    ) -> Annotated[CallToolResult, r.SearchResults]:
        """Search the library's catalogue: dataset titles, descriptions, keywords and column
        names. Filters narrow by publisher, tier, theme, geography, year covered or join-key
        type. Returns matching datasets (ids, titles, tiers), the total and facet counts."""
        filters = {"publisher": publisher, "tier": tier, "theme": theme,
                   "geography": geography, "year": year, "join_key": join_key}
        res = await _search(_library(library, ctx), query.strip(), filters, limit)
        return _answer(res, r.search_text(res))

    @tool("Read a dataset's metadata")
    async def get_dataset(ctx: Context, dataset_id: DatasetId
                          ) -> Annotated[CallToolResult, r.DatasetInfo]:
        """A dataset's catalogue entry: title, publisher, tier, description, coverage, licence,
        contact, access route and lead time, policy, known issues and version history."""
        lib = _library(library, ctx)
        d = await lib.dataset(check_dataset_id(dataset_id))
        try:
            versions = (await lib.versions(dataset_id)).get("versions", [])
        except NotFound:  # a hub without version history: the entry itself is still right
            versions = []
        info = _dataset_info(d, versions, _page(library, ctx, dataset_id))
        return _answer(info, r.dataset_text(info))

    @tool("Describe a dataset's columns")
    async def describe_schema(ctx: Context, dataset_id: DatasetId
                              ) -> Annotated[CallToolResult, r.Schema]:
        """A dataset's columns: name, type, description, unit, code list, sensitivity
        (direct identifier, quasi-identifier, sensitive, none) and join-key type."""
        d = await _library(library, ctx).dataset(check_dataset_id(dataset_id))
        columns = _columns(d)
        schema = r.Schema(dataset_id=d["id"], title=d["title"], tier=d["tier"],
                          row_count=d.get("row_count"), columns=columns,
                          join_keys=_join_keys(columns))
        return _answer(schema, r.schema_text(schema))

    @tool("Show sample rows")
    async def get_sample(
        ctx: Context, dataset_id: DatasetId,
        rows: Annotated[int, Field(ge=1, le=100, description="How many rows (1-100).")] = 10,
    ) -> Annotated[CallToolResult, r.Sample]:
        """Example rows. Open datasets give real rows; every other tier gives synthetic mock
        rows (same columns and types, no real person), which need a signed-in user. The
        result always says which it is."""
        lib = _library(library, ctx)
        d = await lib.dataset(check_dataset_id(dataset_id))
        if d["tier"] == "open":
            # rows is an int the tool's schema bounded to 1..100: nothing else enters the SQL.
            ans = await lib.sql(dataset_id, f"SELECT * FROM data LIMIT {rows:d}", rows)  # noqa: S608
            sample = r.Sample(
                dataset_id=dataset_id, tier="open", kind="open rows", real_data=True,
                note=f"Real rows of the open dataset {dataset_id} (open tier: anyone may "
                     "see them).", columns=_names(ans["columns"]), rows=ans["rows"])
            return _answer(sample, r.sample_text(sample))
        if not lib.signed_in:
            raise AuthenticationRequired(
                f"{dataset_id} is {d['tier']}: its real rows never leave the datasite, and its "
                "synthetic mock rows are shown only to signed-in users. Start 'ndl mcp' with "
                "--token (or after 'ndl login'), or send 'Authorization: Bearer <token>' to "
                "/mcp.")
        ans = await lib.mock(dataset_id, rows)
        sample = r.Sample(
            dataset_id=dataset_id, tier=d["tier"], kind="synthetic mock rows", real_data=False,
            note=f"SYNTHETIC MOCK ROWS, NOT REAL DATA: generated to match the schema of "
                 f"{dataset_id} ({d['tier']} tier); use them to write code, never to draw "
                 "conclusions.", columns=_names(ans["columns"]), rows=ans["rows"][:rows],
            method=ans.get("method"))
        return _answer(sample, r.sample_text(sample))

    @tool("Query an open dataset with SQL")
    async def query_open_data(
        ctx: Context, dataset_id: DatasetId,
        sql: Annotated[str, Field(max_length=10_000, description=(
            "One SELECT over the table 'data', e.g. SELECT year, sum(population) FROM data "
            "GROUP BY year"))],
        max_rows: Annotated[int, Field(ge=1, le=1000)] = 1000,
    ) -> Annotated[CallToolResult, r.QueryResult]:
        """Run a read-only SQL SELECT on an OPEN dataset, at its datasite, with a row limit and
        a time limit. The dataset is the table 'data'. Other tiers are refused."""
        ans = await _library(library, ctx).sql(check_dataset_id(dataset_id), sql, max_rows)
        rows = ans["rows"]
        res = r.QueryResult(dataset_id=dataset_id, sql=sql, columns=_names(ans["columns"]),
                            rows=rows, row_count=len(rows), truncated=bool(ans.get("truncated")))
        return _answer(res, r.query_text(res))

    async def run_private_query(
        ctx: Context, dataset_id: DatasetId,
        project: Annotated[str, Field(max_length=64, description=(
            "Your project id; it needs an active grant for the dataset"))],
        sql: Annotated[str, Field(max_length=10_000, description=(
            "SELECT COUNT(*), SUM(col), AVG(col), MEDIAN(col), HISTOGRAM(col, [e0, e1, ...]) "
            "... FROM data [WHERE ...] [GROUP BY public_key]; HISTOGRAM counts each band "
            "between the edges in one answer and one spend"))],
        rho: Annotated[float, Field(gt=0, le=10, description=(
            "Privacy budget (zCDP rho) this answer may spend, e.g. 0.1"))],
        confirm: Annotated[bool, Field(description=(
            "False: preview the expected error and remaining budget, spending nothing. "
            "True: spend rho and get the answer."))] = False,
    ) -> Annotated[CallToolResult, r.PrivateAnswer]:
        """A differentially private answer from SAFEGUARDED data, within your project's grant
        and privacy budget, exactly as a person would get it. Call with confirm=false first to
        see the expected error, then confirm=true to spend the budget."""
        lib = _library(library, ctx)
        body = {"project": project, "sql": sql, "rho": rho, "preview": not confirm}
        ans = await lib.private_query(check_dataset_id(dataset_id), body)
        if not confirm:
            res = r.PrivateAnswer(
                dataset_id=dataset_id, project=project, confirmed=False, rho=rho, spent=0.0,
                expected_error=ans["preview"]["aggregates"],
                budget_remaining=ans["budget_remaining"],
                note="Call again with confirm=true to spend the budget and get the answer.")
        else:
            res = r.PrivateAnswer(
                dataset_id=dataset_id, project=project, confirmed=True, rho=rho,
                spent=ans["rho_spent"], columns=ans["columns"], rows=ans["rows"],
                expected_error=ans["aggregates"], budget_remaining=ans["budget_remaining"],
                note="Noisy by design (differential privacy); suppressed cells are null.")
        return _answer(res, r.private_text(res))

    # Not read-only: it starts an export at the datasite (see ndl.mcp.work_tool).
    work_tool.register(server, library, as_caller=_library, base_url=_root, wrap=_refusals)
    # Controlled jobs: submit_job queues code for review; the others only read.
    job_tools.register(server, library, as_caller=_library, base_url=_root, wrap=_refusals)

    # Not read-only: a confirmed call spends privacy budget (never data or anything else).
    title = "Ask a safeguarded dataset a private (DP) question"
    server.add_tool(_refusals(run_private_query), title=title, annotations=ToolAnnotations(
        title=title, read_only_hint=False, destructive_hint=False, idempotent_hint=False,
        open_world_hint=False))

    @tool("Find datasets to link with")
    async def find_linkage(ctx: Context, dataset_id: DatasetId
                           ) -> Annotated[CallToolResult, r.Linkage]:
        """Datasets that share a join-key type (NHS number, UPN, postcode, date of birth, ...)
        with this one, grouped by join key, so their records could be linked; and bridges:
        datasets 2-3 hops away along shared join keys, with the path and keys of each hop
        (e.g. social care -> pupils -> attainment)."""
        lib = _library(library, ctx)
        res = await _linkage(lib, await lib.dataset(check_dataset_id(dataset_id)))
        return _answer(res, r.linkage_text(res))

    @tool("How to get access")
    async def get_access_requirements(ctx: Context, dataset_id: DatasetId
                                      ) -> Annotated[CallToolResult, r.AccessRequirements]:
        """What it takes to use a dataset: its tier and what the tiers mean, the access route,
        the expected wait, cost, policy and the steps to apply."""
        d = await _library(library, ctx).dataset(check_dataset_id(dataset_id))
        res = _access(d, _page(library, ctx, dataset_id))
        return _answer(res, r.access_text(res))

    @tool("List catalogue facets")
    async def list_facets(ctx: Context) -> Annotated[CallToolResult, r.Facets]:
        """Every facet (publisher, tier, theme, geography, year, join key) with its values and
        how many datasets have each; use them as search_datasets filters."""
        res = await _library(library, ctx).search({"limit": 1})
        facets = r.Facets(facets=res.get("facets") or {}, total=res["total"])
        return _answer(facets, r.facets_text(facets))

    register_resources(server, library, _library)
    return server


def _quietly(make: Callable[[], MCPServer]) -> MCPServer:
    """Build without letting the SDK configure the process's root logger (it calls
    ``logging.basicConfig``); logging belongs to the program that embeds us."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return make()
    finally:
        root.handlers[:], root.level = handlers, level


async def serve_stdio(library: HubLibrary) -> None:
    """Serve the tools on stdin/stdout until the client closes them."""
    async with library:
        await create_server(library).run_stdio_async()


MCP_METHODS = "POST"
NOT_A_PAGE: dict[str, Any] = {"error": {
    "code": "method_not_allowed",
    "message": "This is the library's MCP server (streamable HTTP, stateless JSON): an AI "
               "agent's MCP client POSTs JSON-RPC here, with 'Accept: application/json, "
               "text/event-stream'. It is not a web page; people start at / and agents may "
               "read /llms.txt.",
    "detail": {"transport": "streamable-http", "methods": [MCP_METHODS],
               "instructions": INSTRUCTIONS.replace("\n", " ").strip()},
}}


def _wants_page(request: Request) -> bool:
    """A GET or HEAD that does not ask for an event stream (anything else goes to the SDK)."""
    return (request.method in ("GET", "HEAD")
            and "text/event-stream" not in request.headers.get("accept", "").lower())


class McpEndpoint:
    """The ASGI app behind the hub's ``/mcp``: checks the caller, then speaks streamable HTTP.

    The tools call the hub's own API in-process with the caller's bearer token, so an agent
    gets exactly its user's rights. Stateless JSON mode: no session lives in one hub process,
    so several hub processes behind a balancer all serve ``/mcp``.
    """

    def __init__(self, hub_app: FastAPI, allowed_hosts: Iterable[str] = ()) -> None:
        transport = httpx.ASGITransport(app=hub_app, raise_app_exceptions=False)
        self.library = HubLibrary("http://ndl-hub", transport=transport)
        self.server = create_server(self.library)
        self.security = transport_security(allowed_hosts)
        self._manager: StreamableHTTPSessionManager | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run while the hub runs (its lifespan); a new session manager each time."""
        # Anonymous callers may use the open-data tools, so a page that rebinds its name to a
        # hub inside a private network could reach them: Host and Origin are checked (ndl.mcp.
        # hosts) here, by the SDK, as well as first in __call__ with the hub's error shape.
        self.server.streamable_http_app(stateless_http=True, json_response=True,
                                        transport_security=self.security)
        manager = self.server.session_manager
        async with self.library, manager.run():
            self._manager = manager
            try:
                yield
            finally:
                self._manager = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from ndl.hub.deps import public  # the hub imports this module

        manager = self._manager
        try:
            if manager is None:
                raise UpstreamUnavailable("the MCP endpoint is not running: it starts with the "
                                          "hub (ASGI lifespan); restart the hub")
            request = Request(scope)
            check_host_and_origin(request, self.security)
            if _wants_page(request):
                # A link checker or browser following llms.txt: a short answer, never the
                # SDK's event stream, which stays open for as long as the client waits.
                await JSONResponse(NOT_A_PAGE, status_code=405, headers={
                    "Allow": MCP_METHODS})(scope, receive, send)
                return
            # The same rule as the public API: anyone, but a token given must be valid.
            await public(request)
        except NdlError as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
            await JSONResponse(exc.to_json(), status_code=exc.http_status,
                               headers=headers)(scope, receive, send)
            return
        # The Markdown resources link to the hub as the caller reached it.
        token = PUBLIC_BASE.set(str(Request(scope).base_url).rstrip("/"))
        try:
            await manager.handle_request(scope, receive, send)
        finally:
            PUBLIC_BASE.reset(token)


def mount_mcp(app: FastAPI, path: str = "/mcp", *, allowed_hosts: Iterable[str] = ()
              ) -> McpEndpoint:
    """Serve MCP at ``path`` on the hub ``app`` and run it inside the app's lifespan.

    ``allowed_hosts``: host names it answers to besides loopback (see :mod:`ndl.mcp.hosts`).
    """
    endpoint = McpEndpoint(app, allowed_hosts)
    # A plain Route (not a Mount) so "/mcp" itself matches, with no redirect to "/mcp/".
    app.router.routes.append(Route(path, endpoint=endpoint, include_in_schema=False))
    previous = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with previous(a) as state, endpoint.running():
            yield state

    app.router.lifespan_context = lifespan
    return endpoint


__all__ = ["INSTRUCTIONS", "McpEndpoint", "create_server", "mount_mcp", "serve_stdio"]
