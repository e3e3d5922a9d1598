"""What a dataset page shows, gathered from the catalogue services in one read session.

Everything comes from :func:`ndl.catalogue.service.detail_json`, so the page shows what the
JSON API, DCAT and Croissant say, and nothing they do not.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from sqlalchemy.orm import Session

from ndl.access.accounts import Principal
from ndl.catalogue import service as catalogue
from ndl.catalogue.exporters.schemaorg import dataset_schemaorg
from ndl.catalogue.metadata import LICENCES
from ndl.catalogue.models import Dataset
from ndl.work import service as work_service

MOCK_PREVIEW_ROWS = 10
# How CKAN names a package: "site--name" (ndl.catalogue.exporters.ckan), as package_show takes.
CKAN_NAME_SEPARATOR = "--"


def dataset_path(dataset_id: str) -> str:
    site, _, name = dataset_id.partition("/")
    return f"{quote(site, safe='')}/{quote(name, safe='')}"


def links_for(dataset_id: str) -> dict[str, str]:
    """Site-relative addresses of a dataset's page and its machine-readable forms."""
    path = dataset_path(dataset_id)
    site, _, name = dataset_id.partition("/")
    api = f"/api/datasets/{path}"
    return {
        "page": f"/datasets/{path}", "markdown": f"/datasets/{path}.md", "json": api,
        "dcat": f"{api}/dcat", "croissant": f"{api}/croissant", "versions": f"{api}/versions",
        "mock_csv": f"{api}/mock?format=csv", "mock_json": f"{api}/mock",
        "rows_csv": f"{api}/rows?format=csv", "sql": f"{api}/sql",
        "ckan": "/api/3/action/package_show?"
                + urlencode({"id": f"{site}{CKAN_NAME_SEPARATOR}{name}"}),
    }


def licence_view(licence: str | None) -> dict[str, str] | None:
    """The licence's name and the URI to link to (known short names map to their URI)."""
    if not licence:
        return None
    uri = LICENCES.get(licence, licence)
    return {"code": licence, "uri": uri}


def _linkable(session: Session, ids: list[str]) -> list[dict[str, Any]]:
    """Linkable datasets with their titles; ids not (or no longer) in the catalogue as text."""
    found = catalogue.titles(session, ids)
    return [{"id": i, "title": found.get(i), "href": links_for(i)["page"] if i in found else None}
            for i in ids]


def _mock_preview(session: Session, ds: Dataset, who: Principal | None) -> dict[str, Any]:
    """What the mock panel shows: open data (no mock), a sign-in prompt, no mock yet, or rows."""
    preview = catalogue.mock_preview(session, who, ds, MOCK_PREVIEW_ROWS)
    if preview.mock is None or preview.table is None:
        return {"state": "open" if preview.state == "not_served" else preview.state}
    mock = preview.mock
    return {"state": "rows", "method": mock.method, "total": mock.rows,
            "version": mock.version, "stale": mock.version != ds.version, **preview.table}


def dataset_context(session: Session, dataset_id: str, who: Principal | None,
                    base_url: str) -> dict[str, Any]:
    """Everything dataset.html needs. Raises NotFound for an id not in the catalogue."""
    ds = catalogue.get_dataset(session, dataset_id)
    detail = catalogue.detail_json(ds)
    access = {"route": "", "lead_time_days": None, "cost": "", "linkable_datasets": [],
              **(detail.get("access") or {})}
    mock = _mock_preview(session, ds, who)
    has_mock = mock["state"] == "rows" or (
        mock["state"] != "open" and catalogue.has_mock(session, ds.id))
    return {
        "ds": detail,
        "links": links_for(ds.id),
        "licence": licence_view(detail.get("licence")),
        "access": access,
        "linkable": _linkable(session, list(access["linkable_datasets"])),
        "code_list_columns": [c for c in detail["columns"] if c.get("code_list")],
        "mock": mock,
        "can_export": work_service.can_export(who, ds.tier),
        "sign_in_href": "/sign-in?" + urlencode({"next": links_for(ds.id)["page"]}),
        "versions": [{"version": v.version, "published_at": v.published_at,
                      "metadata_hash": v.metadata_hash}
                     for v in catalogue.versions(session, ds.id)],
        "schema_org": dataset_schemaorg(detail, base_url, has_mock=has_mock),
    }
