"""``/llms.txt``: where a language model should start reading this library.

Follows the llms.txt proposal (https://llmstxt.org/): an H1 with the name, a blockquote
summary, a few lines of context, then H2 sections of link lists; the "Optional" section holds
what a reader with little context to spare can skip.
"""

from __future__ import annotations

from typing import Any

from ndl.catalogue.exporters._links import LIBRARY_NAME, TIER_SUMMARY, HubLinks
from ndl.catalogue.exporters.markdown import TIER_TITLES, dataset_line

# Past this many datasets the file lists only the catalogue page, to stay small enough to read.
MAX_LISTED = 200


def llms_txt(details: list[dict[str, Any]], base_url: str, *, total: int | None = None) -> str:
    """The llms.txt document for a hub whose catalogue holds ``details`` (or their first page)."""
    hub = HubLinks.of(base_url)
    count = total if total is not None else len(details)
    out = [
        f"# {LIBRARY_NAME}",
        "",
        "> A federated library of UK public-sector data. Each organisation keeps its data at "
        "home in a datasite; this hub holds the catalogue, the access rules and a public "
        "register. Search the catalogue, read any dataset's metadata and schema, and reach the "
        "data through the tier it is in.",
        "",
        f"The catalogue holds {count} datasets. Every dataset page has a Markdown version "
        "(add `.md` to its address) and machine-readable metadata as JSON, DCAT-3 and "
        "Croissant. Agents use the same access rules as people: open data is open, "
        "safeguarded data answers aggregate questions with differential privacy, controlled "
        "data needs an approved request.",
        "",
        "## Catalogue",
        "",
        f"- [Catalogue in Markdown]({hub.base}/catalogue.md): every dataset by publisher, "
        "with its tier",
        f"- [Search API]({hub.api}/datasets?q=): full-text and faceted search as JSON "
        "(`q`, `publisher`, `tier`, `theme`, `geography`, `year`, `join_key`)",
        "",
    ]
    if details and count <= MAX_LISTED:
        out += ["## Datasets", ""]
        out += [dataset_line(d, base_url)
                for d in sorted(details, key=lambda d: (str(d["publisher"]), str(d["title"])))]
        out.append("")
    out += [
        "## APIs",
        "",
        f"- [OpenAPI description]({hub.openapi}): every endpoint of the hub API",
        f"- [DCAT-3 catalogue]({hub.catalogue_dcat}): the whole catalogue as JSON-LD "
        "conforming to DCAT-AP 3.0; each dataset also at `/api/datasets/{site}/{name}/dcat`",
        # Every list item is a link (the llms.txt format; its reference parser requires it).
        f"- [Croissant]({_croissant_example(details, hub)}): each dataset's schema for ML "
        "loaders at `/api/datasets/{site}/{name}/croissant`",
        f"- [CKAN Action API]({hub.ckan}/package_search?q=): `package_search`, "
        "`package_show`, `organization_list` for CKAN clients and harvesters",
        f"- [MCP server]({hub.mcp}): search and use the library from an AI agent (streamable "
        "HTTP)",
        "",
        "## Access tiers",
        "",
    ]
    for tier, summary in TIER_SUMMARY.items():
        out.append(f"- [{TIER_TITLES[tier]} datasets]({hub.base}/search?tier={tier}): "
                   f"{summary.split(': ', 1)[-1]}")
    out += [
        "",
        "## Optional",
        "",
        f"- [Public register]({hub.api}/register): every decision, query and release, "
        "hash-chained",
        f"- [Organisations]({hub.orgs}): who publishes here",
        "",
    ]
    return "\n".join(out)


def _croissant_example(details: list[dict[str, Any]], hub: HubLinks) -> str:
    """One dataset's Croissant address (the first by id), or the API description if none."""
    ids = sorted(str(d["id"]) for d in details if d.get("id"))
    return f"{hub.api}/datasets/{ids[0]}/croissant" if ids else hub.openapi
