"""schema.org ``Dataset`` JSON-LD: what search engines (Google Dataset Search) read from a page.

The dataset page embeds this in a ``<script type="application/ld+json">`` block. Like the other
exporters it is a pure function of the hub's dataset detail dict
(:func:`ndl.catalogue.service.detail_json`) and the hub's base URL.

Only what the publisher said is exported, except where schema.org needs a value to make sense
(``isAccessibleForFree`` and ``conditionsOfAccess`` follow from the access tier).
"""

from __future__ import annotations

import re
from typing import Any

from ndl.catalogue.exporters._links import LIBRARY_NAME, TIER_SUMMARY, HubLinks, Links, dataset_id
from ndl.catalogue.metadata import LICENCES

CONTEXT = "https://schema.org/"
# A stated cost that says there is none, e.g. "Free", "No charge", "None for academic use".
_NO_COST = re.compile(r"\b(free|no charge|no cost|none|nil)\b", re.IGNORECASE)


def temporal_coverage(temporal: dict[str, Any] | None) -> str | None:
    """ISO 8601 interval; an open end is written ``..`` as schema.org's examples do."""
    if not temporal or not temporal.get("start"):
        return None
    return f"{temporal['start']}/{temporal.get('end') or '..'}"


def accessible_for_free(detail: dict[str, Any]) -> bool:
    """Free when the publisher says so; with no cost stated, only open data is taken as free."""
    cost = str((detail.get("access") or {}).get("cost") or "").strip()
    if cost:
        return bool(_NO_COST.search(cost))
    return bool(detail.get("tier") == "open")


def _publisher(detail: dict[str, Any], hub: HubLinks) -> dict[str, Any]:
    org: dict[str, Any] = {"@type": "Organization", "name": detail["publisher"],
                           "url": hub.org(str(detail.get("org") or detail["publisher"]))}
    contact = detail.get("contact")
    if contact:
        org["contactPoint"] = {"@type": "ContactPoint", "contactType": "data enquiries",
                               "name": contact["name"], "email": contact["email"]}
    return org


def _variable(column: dict[str, Any]) -> dict[str, Any]:
    var: dict[str, Any] = {"@type": "PropertyValue", "name": column["name"]}
    if column.get("description"):
        var["description"] = column["description"]
    if column.get("unit"):
        var["unitText"] = column["unit"]
    return var


def _distributions(detail: dict[str, Any], links: Links, has_mock: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{
        "@type": "DataDownload", "name": "Metadata as JSON (library API)",
        "contentUrl": links.api, "encodingFormat": "application/json",
    }]
    if detail.get("tier") == "open":
        out.append({
            "@type": "DataDownload", "name": "Rows as CSV",
            "description": "The rows, read through the library's SQL endpoint; at most 10,000 "
                           "rows per request.",
            "contentUrl": links.rows_csv, "encodingFormat": "text/csv",
        })
    elif has_mock:
        out.append({
            "@type": "DataDownload", "name": "Synthetic mock rows as CSV",
            "description": "Made-up rows with the same columns and types as the real data; "
                           "they describe no real person. Any signed-in user may download them.",
            "contentUrl": links.mock_csv, "encodingFormat": "text/csv",
        })
    return out


def dataset_schemaorg(detail: dict[str, Any], base_url: str, *,
                      has_mock: bool = True) -> dict[str, Any]:
    """One dataset as a schema.org ``Dataset`` with ``@context``, ready to embed in its page.

    ``has_mock`` says the hub holds synthetic mock rows for it, so the mock CSV is offered as
    a download (never for open data, whose real rows are offered instead).
    """
    links, hub = Links.of(base_url, detail), HubLinks.of(base_url)
    tier = str(detail["tier"])
    keywords = list(dict.fromkeys([*detail.get("keywords", []), *detail.get("themes", [])]))
    doc: dict[str, Any] = {
        "@context": CONTEXT,
        "@type": "Dataset",
        "@id": links.page,
        "name": detail["title"],
        "description": str(detail.get("description") or "").strip()
        or f"{detail['title']}, published by {detail['publisher']}.",
        "url": links.page,
        "identifier": dataset_id(detail),
        "publisher": _publisher(detail, hub),
        # The publishing organisation made the data as far as a reader can tell; Google
        # Dataset Search lists creator as recommended, so it is always given.
        "creator": {"@type": "Organization", "name": detail["publisher"],
                    "url": hub.org(str(detail.get("org") or detail["publisher"]))},
        "isAccessibleForFree": accessible_for_free(detail),
        "conditionsOfAccess": TIER_SUMMARY.get(tier, tier),
        "variableMeasured": [_variable(c) for c in detail.get("columns", [])],
        "distribution": _distributions(detail, links, has_mock),
        "includedInDataCatalog": {"@type": "DataCatalog", "name": LIBRARY_NAME,
                                  "url": hub.home},
    }
    if keywords:
        doc["keywords"] = keywords
    if detail.get("licence"):
        doc["license"] = LICENCES.get(detail["licence"], detail["licence"])
    coverage = temporal_coverage(detail.get("temporal"))
    if coverage:
        doc["temporalCoverage"] = coverage
    if detail.get("spatial"):
        doc["spatialCoverage"] = {"@type": "Place", "name": detail["spatial"]}
    modified = detail.get("modified") or detail.get("updated_at")
    if modified:
        doc["dateModified"] = modified
    published = detail.get("issued") or detail.get("published_at")
    if published:
        doc["datePublished"] = published
    if detail.get("version") is not None:
        doc["version"] = str(detail["version"])
    return doc
