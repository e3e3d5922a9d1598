"""MCP resources and prompts: the catalogue to read, and the library's usual questions.

Resources are the same Markdown the hub serves at ``/catalogue.md`` and
``/datasets/{site}/{name}.md`` (one renderer, :mod:`ndl.catalogue.exporters.markdown`), read
through the caller's own view of the library, so an agent can load them into its context
without a tool call. Prompts are starting points a client offers its user: find data for a
question, plan an access request, ask a private question. Their text names the tools to call
in order and the tiers from the one tier definition (:data:`ndl.core.tiers.TIERS`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

from mcp.server.mcpserver import Context, MCPServer
from starlette.requests import Request

from ndl.catalogue.exporters.markdown import catalogue_markdown, dataset_markdown
from ndl.core.tiers import TIERS
from ndl.mcp.library import Library, check_dataset_id

CATALOGUE_URI = "ndl://catalogue.md"
DATASET_URI = "ndl://datasets/{site}/{name}.md"
CATALOGUE_LIMIT = 100  # the search API's page; more datasets are found with search_datasets

# The public address of the hub a request to /mcp came to (set by the endpoint per request):
# links in the Markdown must be the caller's, not the in-process "http://ndl-hub".
PUBLIC_BASE: ContextVar[str | None] = ContextVar("ndl_mcp_public_base", default=None)


def _root(library: Library, ctx: Context | None = None) -> str:
    request = ctx.request_context.request if ctx is not None else None
    if isinstance(request, Request):
        return str(request.base_url).rstrip("/")
    return PUBLIC_BASE.get() or library.base_url


def _tiers_text() -> str:
    return "\n".join(f"- {t.title}: {t.summary} How to reach it: {t.how_to_reach}; you get "
                     f"{t.what_you_get}." for t in TIERS.values())


def register(server: MCPServer, library: Library,
             caller: Callable[[Library, Context], Library]) -> None:
    """Add the resources and prompts to ``server``; ``caller`` gives the caller's library."""

    @server.resource(CATALOGUE_URI, name="catalogue", title="The catalogue in Markdown",
                     mime_type="text/markdown", description=(
                         "Every dataset by publisher, with its tier and a link to its page "
                         f"(the first {CATALOGUE_LIMIT}); each dataset's own Markdown is the "
                         f"resource {DATASET_URI}."))
    async def catalogue() -> str:
        # A static resource gets no request context: it reads the public catalogue.
        found = await library.search({"limit": CATALOGUE_LIMIT})
        return catalogue_markdown(list(found["results"]), _root(library),
                                  total=int(found["total"]))

    @server.resource(DATASET_URI, name="dataset", title="A dataset's page in Markdown",
                     mime_type="text/markdown", description=(
                         "One dataset: tier and how to reach it, coverage, licence, every "
                         "column with its type, sensitivity and join key."))
    async def dataset(site: str, name: str, ctx: Context) -> str:
        lib = caller(library, ctx)
        detail = await lib.dataset(check_dataset_id(f"{site}/{name}"))
        return dataset_markdown(detail, _root(library, ctx))

    @server.prompt(title="Find data for a question", description=(
        "Search the library for the datasets that could answer a research question, "
        "including those reached only by linking through others."))
    def find_data(question: str) -> str:
        return (
            f"Find data in the National Data Library to answer: {question}\n\n"
            "1. Call search_datasets with the question's key words (it falls back to any "
            "word when nothing matches all of them); try synonyms if little comes back.\n"
            "2. For each promising dataset call describe_schema: check it has the measures "
            "and the groupings the question needs, and note its join keys.\n"
            "3. If no one dataset has everything, call find_linkage on the best one: its "
            "groups list datasets sharing a join key, and its bridges list datasets reached "
            "through others (e.g. social care -> pupils -> attainment), with the keys of "
            "each hop.\n"
            "4. Call get_access_requirements for each dataset you would use.\n\n"
            "Answer with the datasets (ids, publishers, tiers), which columns answer which "
            "part of the question, how they would be linked, and how to reach each. The "
            f"tiers:\n{_tiers_text()}")

    @server.prompt(title="Plan an access request", description=(
        "What it takes to use one dataset for a stated purpose: tier, route, wait, and the "
        "steps and documents to prepare."))
    def plan_access_request(dataset_id: str, purpose: str) -> str:
        return (
            f"Plan how to get access to {dataset_id} for this purpose: {purpose}\n\n"
            f"1. Call get_dataset and get_access_requirements for {dataset_id}.\n"
            "2. Say which tier it is in and what that tier gives; if a lower tier answers "
            "the purpose (aggregates from safeguarded data instead of rows), say so.\n"
            "3. List the steps from get_access_requirements in order, what to prepare for "
            "each (a project with a lay summary, legal basis and end date; the columns "
            "needed and why: ask for the fewest), who decides and the expected wait.\n"
            "4. For safeguarded data, draft the first private question in SQL and preview "
            "it with run_private_query (confirm=false), which spends nothing.\n\n"
            f"The tiers:\n{_tiers_text()}")

    @server.prompt(title="Ask a private question", description=(
        "Turn a question about safeguarded data into one differentially private query, "
        "preview its error, and report the answer with its uncertainty."))
    def ask_private_question(dataset_id: str, question: str, project: str) -> str:
        from ndl.privacy import ALLOWED_SQL  # sqlglot loads on first use

        return (
            f"Answer from {dataset_id}, within project {project}: {question}\n\n"
            "1. Call describe_schema: group only by columns with published values (code "
            "lists); count numbers in bands with one HISTOGRAM(col, [edges]) rather than "
            "several queries, since each query spends budget.\n"
            "2. Write ONE query in the restricted SQL. "
            f"{ALLOWED_SQL}\n"
            "3. Call run_private_query with confirm=false to see the expected error and the "
            "budget left; choose rho so the error is small enough for the question.\n"
            "4. Only then call it with confirm=true. Report every number with its "
            "uncertainty as the answer states it ('about N, give or take M (95%)'), never "
            "as exact.")


__all__ = ["CATALOGUE_URI", "DATASET_URI", "PUBLIC_BASE", "register"]
