"""Our catalogue in the shapes of CKAN's Action API (API version 3), for CKAN clients.

CKAN names cannot hold "/", so a dataset ``nhs-trust/ae-attendances`` is the package
``nhs-trust--ae-attendances``. CKAN's create schema wants a UUID ``id``, so every package,
resource, organisation and group gets a UUID derived (uuid5) from its ndl id under one fixed
namespace: the same dataset has the same UUID on every hub and every day, with nothing stored.
The ndl id stays in ``extras`` (``ndl_id``) and ``package_show`` takes any of the three.
Tags are offered in the form CKAN's tag validator accepts (letters, digits, spaces, ``-``,
``_``, ``.``), with the publisher's own wording as ``display_name``.
Access tier, join keys and the other ndl fields go in ``extras``, as CKAN sites do.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from ndl.catalogue.exporters._links import HubLinks, Links, dataset_id
from ndl.catalogue.exporters.markdown import TIER_TITLES
from ndl.catalogue.metadata import LICENCES

API_VERSION = 3
NAME_SEPARATOR = "--"
# Fixed for ever: changing it would change every UUID a harvester has stored.
NAMESPACE = uuid.UUID("6f1c1b1e-8d0a-5a43-9c52-2b8f4f1d2e7a")

LICENCE_TITLES = {
    "OGL-UK-3.0": "Open Government Licence v3.0",
    "CC-BY-4.0": "Creative Commons Attribution 4.0",
    "CC0-1.0": "Creative Commons CCZero 1.0",
    "ODbL-1.0": "Open Data Commons Open Database License 1.0",
    "restricted": "Restricted access: see the dataset's access conditions",
}

def package_name(ds_id: str) -> str:
    return ds_id.replace("/", NAME_SEPARATOR, 1)


def package_uuid(ds_id: str) -> str:
    """The dataset's CKAN id: a UUID that only its ndl id decides."""
    return str(uuid.uuid5(NAMESPACE, f"dataset:{ds_id}"))


def resource_uuid(ds_id: str, key: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"resource:{ds_id}#{key}"))


def org_uuid(org_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"organization:{org_id}"))


def group_uuid(name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"group:{name}"))


def ckan_tag(keyword: str) -> str:
    """A keyword in the form CKAN's tag validator accepts: ``A&E`` is ``A and E``,
    ``children's social care`` is ``childrens social care``."""
    text = keyword.replace("&", " and ").replace("+", " plus ").replace("@", " at ")
    text = re.sub(r"['\u2019`]", "", text)
    text = re.sub(r"[^\w\-. ]", " ", text)
    text = re.sub(r"\s+", " ", text).strip()[:100]
    return text if len(text) >= 2 else f"{text}-tag" if text else "tag"


def licence_title(licence: str | None) -> str | None:
    if not licence:
        return None
    return LICENCE_TITLES.get(licence, licence)


def group_title(theme: str) -> str:
    return theme.replace("-", " ").replace("_", " ").capitalize()


def group(theme: str, base_url: str, *, package_count: int | None = None) -> dict[str, Any]:
    """A theme as a CKAN group."""
    out: dict[str, Any] = {
        "id": group_uuid(theme), "name": theme, "title": group_title(theme),
        "display_name": group_title(theme), "type": "group", "is_organization": False,
        "state": "active", "approval_status": "approved", "description": "",
        "image_url": "", "image_display_url": "",
        "url": f"{base_url.rstrip('/')}/search?theme={theme}",
    }
    if package_count is not None:
        out["package_count"] = package_count
    return out


def candidate_ids(name_or_id: str) -> list[str]:
    """The ndl ids a ``package_show`` id could mean (a name may hold "--" more than once).

    UUIDs are not listed here: the caller compares them with :func:`package_uuid`."""
    if "/" in name_or_id:
        return [name_or_id]
    out, start = [], 0
    while (i := name_or_id.find(NAME_SEPARATOR, start)) > 0:
        out.append(f"{name_or_id[:i]}/{name_or_id[i + len(NAME_SEPARATOR):]}")
        start = i + 1
    return out


def _resources(detail: dict[str, Any], links: Links, has_mock: bool) -> list[dict[str, Any]]:
    ds_id = dataset_id(detail)
    pkg_id = package_uuid(ds_id)
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
        # Not "CSV": the rows are made up and need a sign-in, so a harvester counting CSV
        # downloads (the res_format facet) must not count them as the dataset's data.
        rows.append({"key": "mock-csv", "name": "Synthetic mock rows (sign-in required)",
                     "url": links.mock_csv, "format": "Mock CSV", "mimetype": "text/csv",
                     "restricted": "sign-in",
                     "description": "Made-up rows with the real columns and types, describing "
                                    "no real person; any signed-in user may download them. "
                                    "The real rows cannot be downloaded."})
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
            "id": resource_uuid(ds_id, key), "package_id": pkg_id, "position": position,
            "ndl_key": f"{ds_id}#{key}",
            "state": "active", "url_type": None, "datastore_active": False,
            "created": detail.get("published_at"), "last_modified": modified, **r,
        })
    return out


def organization(org: dict[str, Any], base_url: str, *, package_count: int | None = None
                 ) -> dict[str, Any]:
    """A CKAN organization from ``{"id", "name", "kind", "created_at"}``: its ``name`` is the
    ndl organisation id, its ``id`` a UUID derived from it."""
    out: dict[str, Any] = {
        "id": org_uuid(org["id"]), "name": org["id"], "title": org.get("name") or org["id"],
        "display_name": org.get("name") or org["id"], "type": "organization",
        "is_organization": True, "state": "active", "approval_status": "approved",
        "description": "", "image_url": "", "created": org.get("created_at"),
        "ndl_kind": org.get("kind"), "url": HubLinks.of(base_url).org(org["id"]),
    }
    if package_count is not None:
        out["package_count"] = package_count
    return out


def package(detail: dict[str, Any], base_url: str, *, org_title: str | None = None,
            org_created: str | None = None, has_mock: bool = False) -> dict[str, Any]:
    """One dataset as a CKAN package dict."""
    links = Links.of(base_url, detail)
    ds_id = dataset_id(detail)
    org_id = str(detail.get("org") or links.site)
    contact = detail.get("contact") or {}
    licence = detail.get("licence")
    extras = {
        "ndl_id": ds_id,
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
    tags = [{"id": str(uuid.uuid5(NAMESPACE, f"tag:{ckan_tag(k)}")), "name": ckan_tag(k),
             "display_name": k, "state": "active", "vocabulary_id": None}
            for k in dict.fromkeys(detail.get("keywords") or [])]
    resources = _resources(detail, links, has_mock)
    return {
        "id": package_uuid(ds_id), "name": package_name(ds_id), "title": detail["title"],
        "notes": detail.get("description") or "", "url": links.page, "type": "dataset",
        "state": "active", "private": False, "isopen": detail["tier"] == "open",
        "version": str(detail.get("version") or ""),
        "metadata_created": detail.get("published_at"),
        "metadata_modified": detail.get("updated_at"),
        "author": None, "author_email": None,
        "maintainer": contact.get("name"), "maintainer_email": contact.get("email"),
        "license_id": licence, "license_title": licence_title(licence),
        "license_url": LICENCES.get(licence, licence) if licence else None,
        "owner_org": org_uuid(org_id),
        "organization": organization({"id": org_id, "name": org_title or detail["publisher"],
                                      "created_at": org_created}, base_url),
        "tags": tags, "num_tags": len(tags),
        "groups": [{k: g[k] for k in ("id", "name", "title", "display_name", "description",
                                      "image_display_url")}
                   for g in (group(t, base_url) for t in detail.get("themes") or [])],
        "resources": resources, "num_resources": len(resources),
        "extras": [{"key": k, "value": str(v)} for k, v in extras.items()
                   if v not in (None, "")],
    }


FACETABLE = ("organization", "tags", "groups", "license_id", "res_format")


def search_facets(packages: list[dict[str, Any]], fields: list[str], *, limit: int = 50,
                  mincount: int = 1) -> dict[str, Any]:
    """CKAN ``search_facets`` for organization, tags, groups, license_id and res_format, the
    ``limit`` most frequent values of each (all of them when ``limit`` is negative), as
    ``facet.limit`` asks."""
    counters: dict[str, dict[str, tuple[str, int]]] = {f: {} for f in fields}

    def add(field: str, name: str, display: str) -> None:
        if field in counters and name:
            _, n = counters[field].get(name, (display, 0))
            counters[field][name] = (display, n + 1)

    for p in packages:
        add("organization", p["organization"]["name"], p["organization"]["title"])
        for t in p["tags"]:
            add("tags", t["name"], t["display_name"])
        for g in p["groups"]:
            add("groups", g["name"], g["title"])
        add("license_id", p["license_id"] or "", p["license_title"] or "")
        for fmt in {r["format"] for r in p["resources"]}:
            add("res_format", fmt, fmt)
    out: dict[str, Any] = {}
    for f, items in counters.items():
        ranked = [{"name": k, "display_name": d, "count": n}
                  for k, (d, n) in sorted(items.items(), key=lambda kv: (-kv[1][1], kv[0]))
                  if n >= mincount]
        out[f] = {"title": f, "items": ranked if limit < 0 else ranked[:limit]}
    return out
