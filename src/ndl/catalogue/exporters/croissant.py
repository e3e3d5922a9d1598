"""Croissant 1.1 JSON-LD: a dataset's schema in the form ML tools load records from.

The one ``FileObject`` is what a program can actually fetch over HTTP GET: the rows of an
open dataset as CSV, or, for safeguarded and controlled data, the synthetic mock rows (same
columns and types, no real person; any signed-in user). Each column becomes a ``cr:Field``
read from that file's column of the same name.

Both files change whenever the publisher republishes, so the dataset is marked
``isLiveDataset`` and carries no checksum: Croissant 1.1 ("Live Datasets") advises against
checksums on files that are expected to change, and a stale one would make loaders fail.
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import quote

from ndl.catalogue.exporters._links import LIBRARY_NAME, TIER_SUMMARY, HubLinks, Links
from ndl.catalogue.metadata import LICENCES

CROISSANT_VERSION = "http://mlcommons.org/croissant/1.1"

# The context of Croissant 1.1 (its Appendix 1), with the schema.org namespace and the extra
# terms mlcroissant 1.1 expects, so loaders see the standard context.
_TERMS = (
    "annotation arrayShape citeAs column containedIn equivalentProperty excludes extract field "
    "fileObject fileProperty fileSet format includes isArray isLiveDataset jsonPath key md5 "
    "parentField path readLines recordSet references regex repeated replace samplingRate "
    "sdVersion separator source subField transform unArchive value"
).split()
CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "sc": "https://schema.org/",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "dct": "http://purl.org/dc/terms/",
    **{term: f"cr:{term}" for term in _TERMS},
    "conformsTo": "dct:conformsTo",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "examples": {"@id": "cr:examples", "@type": "@json"},
}

DATA_TYPES: dict[str, str] = {
    "string": "sc:Text", "integer": "sc:Integer", "float": "sc:Float",
    "boolean": "sc:Boolean", "date": "sc:Date",
}

_SENSITIVITY = {
    "direct_identifier": "direct identifier", "quasi_identifier": "quasi-identifier",
    "sensitive": "sensitive",
}


def _field_description(col: dict[str, Any]) -> str:
    notes = []
    if col.get("unit"):
        notes.append(f"unit: {col['unit']}")
    if col.get("sensitivity") in _SENSITIVITY:
        notes.append(f"sensitivity: {_SENSITIVITY[col['sensitivity']]}")
    if col.get("join_key"):
        notes.append(f"join key: {col['join_key']}")
    text = str(col.get("description") or "").strip()
    return f"{text} ({'; '.join(notes)})".strip() if notes else text


def _org(hub: HubLinks, detail: dict[str, Any]) -> dict[str, Any]:
    return {"@type": "sc:Organization", "name": detail["publisher"],
            "url": hub.org(str(detail.get("org") or detail["publisher"]))}


def _licence(detail: dict[str, Any], links: Links) -> str | dict[str, Any]:
    licence = str(detail.get("licence") or "")
    if licence:
        return LICENCES.get(licence, licence)
    # Croissant requires a licence; when the publisher named none, the terms that do apply
    # are the access tier's, and the dataset page says so. Nothing more is claimed.
    return {"@type": "sc:CreativeWork",
            "name": f"No licence stated by the publisher; access follows the {detail['tier']} "
                    f"tier rules of the {LIBRARY_NAME}",
            "url": links.page}


def _file(detail: dict[str, Any], links: Links, has_mock: bool) -> dict[str, Any]:
    if detail["tier"] == "open":
        return {"@type": "cr:FileObject", "@id": "rows.csv", "name": "rows.csv",
                "description": "The rows as CSV, read at the datasite through the hub's SQL "
                               "endpoint; at most 10,000 rows per download.",
                "contentUrl": links.rows_csv, "encodingFormat": "text/csv"}
    # Croissant fields must read from a file, so the mock is named even before the datasite
    # has sent it; the description says when it is not there yet.
    later = "" if has_mock else (" The datasite has not sent them yet: until it does, this "
                                 "address answers 404.")
    return {"@type": "cr:FileObject", "@id": "mock.csv", "name": "mock.csv",
            "description": "Synthetic mock rows: the same columns and types as the real "
                           "data, describing no real person. Sign in to download them "
                           f"(send 'Authorization: Bearer <token>').{later}",
            "contentUrl": links.mock_csv, "encodingFormat": "text/csv"}


def _field(col: dict[str, Any], file_id: str) -> dict[str, Any]:
    name = str(col["name"])
    field: dict[str, Any] = {
        "@type": "cr:Field", "@id": f"rows/{quote(name, safe='')}", "name": name,
        "description": _field_description(col),
        "dataType": DATA_TYPES.get(str(col.get("type")), "sc:Text"),
        "source": {"fileObject": {"@id": file_id}, "extract": {"column": name}},
    }
    return field


def _cite(detail: dict[str, Any], links: Links, year: str) -> str:
    return f"{detail['publisher']} ({year}). {detail['title']}. {LIBRARY_NAME}. {links.page}"


def dataset_croissant(detail: dict[str, Any], base_url: str, *, has_mock: bool = False
                      ) -> dict[str, Any]:
    """The dataset as a Croissant 1.1 ``sc:Dataset`` with one record set of its columns."""
    links, hub = Links.of(base_url, detail), HubLinks.of(base_url)
    published = str(detail.get("issued") or detail.get("published_at") or "")[:10]
    modified = str(detail.get("modified") or detail.get("updated_at") or "")[:10]
    file = _file(detail, links, has_mock)
    description = str(detail.get("description") or "").strip() or (
        f"{detail['title']}. The publisher has not written a description yet.")
    doc: dict[str, Any] = {
        "@context": copy.deepcopy(CONTEXT),  # consumers may edit the document
        "@type": "sc:Dataset",
        "@id": links.api,
        "conformsTo": CROISSANT_VERSION,
        "name": detail["title"],
        "description": description,
        "url": links.page,
        "license": _licence(detail, links),
        "creator": _org(hub, detail),
        "publisher": _org(hub, detail),
        "isLiveDataset": True,
        "usageInfo": {"@type": "sc:CreativeWork", "name": TIER_SUMMARY[detail["tier"]],
                      "url": links.page},
        "distribution": [file],
        "recordSet": [{
            "@type": "cr:RecordSet", "@id": "rows", "name": "rows",
            "description": f"One record per row of {detail['title']}.",
            "field": [_field(c, file["@id"]) for c in detail.get("columns") or []],
        }],
    }
    if published:
        doc["datePublished"] = published
        doc["citeAs"] = _cite(detail, links, published[:4])
    if modified:
        doc["dateModified"] = modified
    if detail.get("version") is not None:
        # Croissant asks for MAJOR.MINOR.PATCH; each republication is a new metadata version.
        doc["version"] = f"{int(detail['version'])}.0.0"
    if detail.get("keywords"):
        doc["keywords"] = list(detail["keywords"])
    if detail.get("spatial"):
        doc["spatialCoverage"] = detail["spatial"]
    temporal = detail.get("temporal")
    if temporal:
        doc["temporalCoverage"] = f"{temporal['start']}/{temporal.get('end') or '..'}"
    return doc
