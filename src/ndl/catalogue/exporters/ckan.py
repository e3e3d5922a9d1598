"""Our catalogue in the shapes of CKAN's Action API (API version 3), for CKAN clients.

CKAN names cannot hold "/", so a dataset ``nhs-trust/ae-attendances`` is the package
``nhs-trust--ae-attendances``; its ``id`` stays the ndl id, and ``package_show`` takes either.
Access tier, join keys and the other ndl fields go in ``extras``, as CKAN sites do.
"""

from __future__ import annotations

import re
from typing import Any

from ndl.catalogue.exporters._links import HubLinks, Links, dataset_id
from ndl.catalogue.exporters.markdown import TIER_TITLES
from ndl.catalogue.metadata import LICENCES
from ndl.core.errors import InvalidInput

API_VERSION = 3
NAME_SEPARATOR = "--"

# fq fields and what they filter on: a search facet, or a package field checked here.
FACET_FIELDS = {"tier": "tier", "theme": "theme", "groups": "theme", "publisher": "publisher",
                "geography": "geography", "year": "year", "join_key": "join_key"}
PACKAGE_FIELDS = ("organization", "owner_org", "tags", "name", "id", "license_id", "res_format")
SORTS = {"score": "relevance", "title_string": "title", "title": "title",
         "metadata_modified": "updated", "name": "title"}
_FQ_TERM = re.compile(r'(\+?)([A-Za-z_][\w.]*):(?:"((?:[^"\\]|\\.)*)"|(\S+))')


def package_name(ds_id: str) -> str:
    return ds_id.replace("/", NAME_SEPARATOR, 1)


def candidate_ids(name_or_id: str) -> list[str]:
    """The ndl ids a ``package_show`` id could mean (a name may hold "--" more than once)."""
    if "/" in name_or_id:
        return [name_or_id]
    out, start = [], 0
    while (i := name_or_id.find(NAME_SEPARATOR, start)) > 0:
        out.append(f"{name_or_id[:i]}/{name_or_id[i + len(NAME_SEPARATOR):]}")
        start = i + 1
    return out


def _resources(detail: dict[str, Any], links: Links, has_mock: bool) -> list[dict[str, Any]]:
    pkg_id = dataset_id(detail)
    modified = detail.get("updated_at")
    rows = [{"key": "page", "name": "Dataset page: how to get access", "url": links.page,
             "format": "HTML", "mimetype": "text/html",
             "description": "Tier, coverage, columns, and the steps to reach the data."}]
    if detail["tier"] == "open":
        rows.append({"key": "rows-csv", "name": "Rows (CSV)", "url": links.rows_csv,
                     "format": "CSV", "mimetype": "text/csv",
                     "description": "The rows, read through the SQL endpoint (at most 10,000 "
                                    "rows per download)."})
    elif has_mock:
        rows.append({"key": "mock-csv", "name": "Synthetic mock rows (CSV)",
                     "url": links.mock_csv, "format": "CSV", "mimetype": "text/csv",
                     "description": "Made-up rows with the real columns; any signed-in user."})
    rows += [
        {"key": "dcat", "name": "DCAT-3 metadata (JSON-LD)", "url": links.dcat,
         "format": "JSON-LD", "mimetype": "application/ld+json",
         "description": "DCAT-AP 3.0 description of the dataset and its distributions."},
        {"key": "croissant", "name": "Croissant metadata (JSON-LD)", "url": links.croissant,
         "format": "JSON-LD", "mimetype": "application/ld+json",
         "description": "The columns and their types, for ML data loaders."},
    ]
    out = []
    for position, r in enumerate(rows):
        key = r.pop("key")
        out.append({
            "id": f"{pkg_id}#{key}", "package_id": pkg_id, "position": position,
            "state": "active", "url_type": None, "datastore_active": False,
            "created": detail.get("published_at"), "last_modified": modified, **r,
        })
    return out


def organization(org: dict[str, Any], base_url: str, *, package_count: int | None = None
                 ) -> dict[str, Any]:
    """A CKAN organization from ``{"id", "name", "kind", "created_at"}``."""
    out: dict[str, Any] = {
        "id": org["id"], "name": org["id"], "title": org.get("name") or org["id"],
        "display_name": org.get("name") or org["id"], "type": "organization",
        "is_organization": True, "state": "active", "approval_status": "approved",
        "description": "", "image_url": "", "created": org.get("created_at"),
        "ndl_kind": org.get("kind"), "url": HubLinks.of(base_url).org(org["id"]),
    }
    if package_count is not None:
        out["package_count"] = package_count
    return out


def package(detail: dict[str, Any], base_url: str, *, org_title: str | None = None,
            has_mock: bool = False) -> dict[str, Any]:
    """One dataset as a CKAN package dict."""
    links = Links.of(base_url, detail)
    ds_id = dataset_id(detail)
    org_id = str(detail.get("org") or links.site)
    contact = detail.get("contact") or {}
    licence = detail.get("licence")
    extras = {
        "access_tier": detail["tier"],
        "access_tier_title": TIER_TITLES.get(detail["tier"], detail["tier"]),
        "join_keys": ",".join(sorted({str(c["join_key"]) for c in detail.get("columns") or []
                                      if c.get("join_key")})),
        "row_count": detail.get("row_count"),
        "datasite": detail.get("datasite"),
        "spatial_text": detail.get("spatial"),
        "temporal_start": (detail.get("temporal") or {}).get("start"),
        "temporal_end": (detail.get("temporal") or {}).get("end"),
        "frequency": detail.get("update_frequency"),
        "issued": detail.get("issued"),
        "modified": detail.get("modified"),
        "access_route": (detail.get("access") or {}).get("route"),
        "access_lead_time_days": (detail.get("access") or {}).get("lead_time_days"),
        "population_size": detail.get("population_size"),
        "dcat_url": links.dcat,
        "croissant_url": links.croissant,
        "markdown_url": links.markdown,
    }
    tags = [{"name": k, "display_name": k, "state": "active", "vocabulary_id": None}
            for k in detail.get("keywords") or []]
    resources = _resources(detail, links, has_mock)
    return {
        "id": ds_id, "name": package_name(ds_id), "title": detail["title"],
        "notes": detail.get("description") or "", "url": links.page, "type": "dataset",
        "state": "active", "private": False, "isopen": detail["tier"] == "open",
        "version": str(detail.get("version") or ""),
        "metadata_created": detail.get("published_at"),
        "metadata_modified": detail.get("updated_at"),
        "author": None, "author_email": None,
        "maintainer": contact.get("name"), "maintainer_email": contact.get("email"),
        "license_id": licence, "license_title": licence,
        "license_url": LICENCES.get(licence, licence) if licence else None,
        "owner_org": org_id,
        "organization": organization({"id": org_id, "name": org_title or detail["publisher"]},
                                     base_url),
        "tags": tags, "num_tags": len(tags),
        "groups": [{"name": t, "title": t, "display_name": t} for t in detail.get("themes") or []],
        "resources": resources, "num_resources": len(resources),
        "extras": [{"key": k, "value": str(v)} for k, v in extras.items()
                   if v not in (None, "")],
    }


def parse_fq(fq: str) -> list[tuple[str, str]]:
    """Solr-style ``field:value field:"two words"`` terms, all required (AND).

    Only plain positive terms are understood; anything else is refused rather than ignored,
    so a harvester never gets a silently wider result than it asked for.
    """
    terms: list[tuple[str, str]] = []
    pos = 0
    text = fq.strip()
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        m = _FQ_TERM.match(text, pos)
        if m is None:
            raise InvalidInput(
                f"fq: cannot read {text[pos:pos + 40]!r}; write terms as field:value or "
                'field:"two words", e.g. organization:nhs-trust tags:"A&E"')
        field = m.group(2)
        value = m.group(3) if m.group(3) is not None else m.group(4)
        value = value.replace('\\"', '"')
        if field not in FACET_FIELDS and field not in PACKAGE_FIELDS:
            known = ", ".join(sorted({*FACET_FIELDS, *PACKAGE_FIELDS}))
            raise InvalidInput(f"fq: unknown field {field!r}; filter on one of {known}")
        terms.append((field, value))
        pos = m.end()
    return terms


def package_matches(pkg: dict[str, Any], terms: list[tuple[str, str]]) -> bool:
    """Whether a package passes the fq terms that are not search facets."""
    for field, value in terms:
        if field in ("organization", "owner_org"):
            ok = pkg["owner_org"] == value
        elif field == "tags":
            ok = any(t["name"].lower() == value.lower() for t in pkg["tags"])
        elif field in ("name", "id"):
            ok = pkg[field] == value
        elif field == "license_id":
            ok = pkg["license_id"] == value
        elif field == "res_format":
            ok = any(r["format"].lower() == value.lower() for r in pkg["resources"])
        else:
            continue
        if not ok:
            return False
    return True


def parse_sort(sort: str | None) -> str:
    """CKAN's ``sort`` (e.g. ``metadata_modified desc``) as one of our search orders."""
    if not sort or not sort.strip():
        return "relevance"
    first = sort.split(",")[0].split()
    if not first:
        return "relevance"
    field = first[0]
    if field not in SORTS:
        raise InvalidInput(f"sort: cannot sort on {field!r}; use one of {', '.join(SORTS)}")
    return SORTS[field]


def search_facets(packages: list[dict[str, Any]], fields: list[str]) -> dict[str, Any]:
    """CKAN ``search_facets`` for organization, tags, groups, license_id and res_format."""
    counters: dict[str, dict[str, tuple[str, int]]] = {f: {} for f in fields}

    def add(field: str, name: str, display: str) -> None:
        if field in counters and name:
            _, n = counters[field].get(name, (display, 0))
            counters[field][name] = (display, n + 1)

    for p in packages:
        add("organization", p["owner_org"], p["organization"]["title"])
        for t in p["tags"]:
            add("tags", t["name"], t["display_name"])
        for g in p["groups"]:
            add("groups", g["name"], g["title"])
        add("license_id", p["license_id"] or "", p["license_title"] or "")
        for fmt in {r["format"] for r in p["resources"]}:
            add("res_format", fmt, fmt)
    return {
        f: {"title": f, "items": [{"name": k, "display_name": d, "count": n}
                                  for k, (d, n) in sorted(items.items(),
                                                          key=lambda kv: (-kv[1][1], kv[0]))]}
        for f, items in counters.items()
    }
