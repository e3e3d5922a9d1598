"""DCAT-3 JSON-LD that conforms to the DCAT-AP 3.0.0 application profile.

The shapes of DCAT-AP check ranges with ``sh:class``, and a SHACL validator does not infer
classes, so every node we point at says what it is: a licence is a ``dct:LicenseDocument``, an
access URL an ``rdfs:Resource``, a frequency a ``dct:Frequency`` and so on. Controlled
vocabularies are the EU Publications Office authority tables DCAT-AP asks for (frequency,
access right, data theme, file type, language).

Only what the publisher said is exported: optional properties are left out when the metadata
does not give them, never guessed. The two things DCAT-AP makes mandatory that a datasite may
not give, a description and (for the catalogue) a publisher, come from the hub itself.
"""

from __future__ import annotations

from typing import Any

from ndl.catalogue.exporters._links import (
    LIBRARY_NAME,
    TIER_SUMMARY,
    HubLinks,
    Links,
    dataset_id,
)
from ndl.catalogue.metadata import LICENCES

EU = "http://publications.europa.eu/resource/authority"
IANA = "http://www.iana.org/assignments/media-types"

CONTEXT: dict[str, str] = {
    "adms": "http://www.w3.org/ns/adms#",
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "hydra": "http://www.w3.org/ns/hydra/core#",
    "locn": "http://www.w3.org/ns/locn#",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "vcard": "http://www.w3.org/2006/vcard/ns#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
}

FREQUENCIES: dict[str, str] = {
    "daily": "DAILY", "weekly": "WEEKLY", "monthly": "MONTHLY", "quarterly": "QUARTERLY",
    "annual": "ANNUAL", "irregular": "IRREG", "never": "NEVER",
}

# EU data themes (http://publications.europa.eu/resource/authority/data-theme) and their
# English labels; several of our finer themes share one EU theme.
DATA_THEMES: dict[str, tuple[str, str]] = {
    "health": ("HEAL", "Health"),
    "education": ("EDUC", "Education, culture and sport"),
    "social-care": ("SOCI", "Population and society"),
    "population": ("SOCI", "Population and society"),
    "housing": ("SOCI", "Population and society"),
    "economy": ("ECON", "Economy and finance"),
    "crime-justice": ("JUST", "Justice, legal system and public safety"),
    "environment": ("ENVI", "Environment"),
    "transport": ("TRAN", "Transport"),
    "government": ("GOVE", "Government and public sector"),
}

ACCESS_RIGHTS: dict[str, str] = {
    "open": "PUBLIC", "safeguarded": "RESTRICTED", "controlled": "NON_PUBLIC",
}

CATALOGUE_PAGE_SIZE = 1000


def _typed(iri: str, *types: str, **props: Any) -> dict[str, Any]:
    node: dict[str, Any] = {"@id": iri, "@type": list(types) if len(types) > 1 else types[0]}
    node.update({k.replace("__", ":"): v for k, v in props.items()})
    return node


def _resource(iri: str) -> dict[str, Any]:
    return _typed(iri, "rdfs:Resource")


def _date(value: str) -> dict[str, str]:
    return {"@value": value, "@type": "xsd:date"}


def _datetime(value: str) -> dict[str, str]:
    return {"@value": value, "@type": "xsd:dateTime"}


def _media_type(mime: str) -> dict[str, Any]:
    return _typed(f"{IANA}/{mime}", "dct:MediaType")


def _file_type(code: str) -> dict[str, Any]:
    return _typed(f"{EU}/file-type/{code}", "dct:MediaTypeOrExtent")


def publisher_agent(hub: HubLinks, detail: dict[str, Any]) -> dict[str, Any]:
    return _typed(hub.org(str(detail.get("org") or detail["publisher"])),
                  "foaf:Agent", "foaf:Organization", foaf__name=detail["publisher"])


def library_agent(hub: HubLinks) -> dict[str, Any]:
    return _typed(f"{hub.home}#library", "foaf:Agent", "foaf:Organization",
                  foaf__name=LIBRARY_NAME)


def hub_service(hub: HubLinks) -> dict[str, Any]:
    return _typed(
        f"{hub.api}#service", "dcat:DataService",
        dct__title=f"{LIBRARY_NAME} hub API",
        dct__description=("The hub's HTTP API: search the catalogue, read dataset metadata, "
                          "ask aggregate questions and request access. Described by OpenAPI."),
        dcat__endpointURL=_resource(hub.api),
        dcat__endpointDescription=_resource(hub.openapi),
    )


def _description(detail: dict[str, Any]) -> str:
    text = str(detail.get("description") or "").strip()
    # dct:description is mandatory in DCAT-AP; say plainly that the publisher gave none.
    return text or f"{detail['title']}. The publisher has not written a description yet."


def _licence(detail: dict[str, Any]) -> dict[str, Any] | None:
    licence = detail.get("licence")
    if not licence:
        return None
    return _typed(LICENCES.get(licence, licence), "dct:LicenseDocument")


def _distributions(detail: dict[str, Any], links: Links, hub: HubLinks,
                   service: dict[str, Any]) -> list[dict[str, Any]]:
    tier = detail["tier"]
    licence = _licence(detail)
    rights = {"@type": "dct:RightsStatement", "rdfs:label": TIER_SUMMARY[tier]}
    titles = {
        "open": "Rows and aggregates through the library API",
        "safeguarded": "Differentially-private aggregate queries through the library API",
        "controlled": "Reviewed code-to-data jobs, after an approved access request",
    }
    access: dict[str, Any] = _typed(
        f"{links.api}#distribution-api", "dcat:Distribution",
        dct__title=titles[tier],
        dct__description=(f"{TIER_SUMMARY[tier]} The landing page says how to get access "
                          f"and how long it takes; the API is described at {hub.openapi}."),
        dcat__accessURL=_resource(links.page),
        dcat__accessService=service,
        dct__rights=rights,
    )
    if tier != "controlled":
        access["dcat:mediaType"] = _media_type("application/json")
    out = [access]
    if tier == "open":
        out.append(_typed(
            f"{links.api}#distribution-csv", "dcat:Distribution",
            dct__title="Rows as CSV",
            dct__description=("The rows, read through the hub's SQL endpoint "
                              f"(POST {links.sql} takes any SELECT over the table 'data'); "
                              "one answer holds at most 10,000 rows."),
            dcat__accessURL=_resource(links.rows_csv),
            dcat__downloadURL=_resource(links.rows_csv),
            dcat__mediaType=_media_type("text/csv"),
            dct__format=_file_type("CSV"),
            dct__rights=rights,
        ))
    for dist in out:
        if licence is not None:
            dist["dct:license"] = licence
    return out


def _mock_sample(links: Links) -> dict[str, Any]:
    return _typed(
        f"{links.api}#sample-mock", "dcat:Distribution",
        dct__title="Synthetic mock rows",
        dct__description=("Made-up rows with the same columns and types as the real data, so "
                          "code can be written before access is granted. They describe no real "
                          "person. Any signed-in user may download them."),
        dcat__accessURL=_resource(links.mock_csv),
        dcat__downloadURL=_resource(links.mock_csv),
        dcat__mediaType=_media_type("text/csv"),
        dct__format=_file_type("CSV"),
    )


def dataset_node(detail: dict[str, Any], base_url: str, *, has_mock: bool = False,
                 service_described: bool = False) -> dict[str, Any]:
    """One dataset as a ``dcat:Dataset`` node (no ``@context``), with its distributions.

    ``service_described`` says the document describes the hub's API service elsewhere (the
    catalogue does, once), so distributions only refer to it by IRI.
    """
    links, hub = Links.of(base_url, detail), HubLinks.of(base_url)
    service = hub_service(hub)
    if service_described:
        service = {"@id": service["@id"]}
    node: dict[str, Any] = {
        "@id": links.iri,
        "@type": "dcat:Dataset",
        "dct:identifier": f"{links.site}/{links.name}",
        "dct:title": detail["title"],
        "dct:description": _description(detail),
        "dct:publisher": publisher_agent(hub, detail),
        "dcat:landingPage": _typed(links.page, "foaf:Document"),
        "dct:accessRights": _typed(f"{EU}/access-right/{ACCESS_RIGHTS[detail['tier']]}",
                                   "dct:RightsStatement"),
        "dcat:distribution": _distributions(detail, links, hub, service),
    }
    if detail.get("version") is not None:
        node["dcat:version"] = str(detail["version"])
    if detail.get("keywords"):
        node["dcat:keyword"] = list(detail["keywords"])
    themes = {DATA_THEMES[t] for t in detail.get("themes") or [] if t in DATA_THEMES}
    if themes:
        node["dcat:theme"] = [
            _typed(f"{EU}/data-theme/{code}", "skos:Concept", skos__prefLabel=label,
                   skos__inScheme={"@id": f"{EU}/data-theme"})
            for code, label in sorted(themes)
        ]
    contact = detail.get("contact")
    if contact:
        node["dcat:contactPoint"] = {
            "@type": "vcard:Kind", "vcard:fn": contact["name"],
            "vcard:hasEmail": {"@id": f"mailto:{contact['email']}"},
        }
    if detail.get("spatial"):
        node["dct:spatial"] = {"@type": "dct:Location",
                               "locn:geographicName": detail["spatial"]}
    temporal = detail.get("temporal")
    if temporal:
        period: dict[str, Any] = {"@type": "dct:PeriodOfTime",
                                  "dcat:startDate": _date(temporal["start"])}
        if temporal.get("end"):
            period["dcat:endDate"] = _date(temporal["end"])
        node["dct:temporal"] = period
    frequency = FREQUENCIES.get(str(detail.get("update_frequency")))
    if frequency:
        node["dct:accrualPeriodicity"] = _typed(f"{EU}/frequency/{frequency}", "dct:Frequency")
    for field in ("issued", "modified"):
        if detail.get(field):
            node[f"dct:{field}"] = _date(str(detail[field]))
    related = [d for d in (detail.get("access") or {}).get("linkable_datasets", [])
               if isinstance(d, str) and d.count("/") == 1]
    if related:
        node["dct:relation"] = [_resource(Links.of(base_url, {"id": d}).iri) for d in related]
    if has_mock and detail["tier"] != "open":
        # A mock is a sample of the dataset, not a way to get its data: adms:sample.
        node["adms:sample"] = _mock_sample(links)
    return node


def dataset_dcat(detail: dict[str, Any], base_url: str, *, has_mock: bool = False
                 ) -> dict[str, Any]:
    """A JSON-LD document holding one ``dcat:Dataset``."""
    return {"@context": dict(CONTEXT), **dataset_node(detail, base_url, has_mock=has_mock)}


def _record(detail: dict[str, Any], links: Links) -> dict[str, Any]:
    record: dict[str, Any] = {
        "@id": f"{links.api}#record", "@type": "dcat:CatalogRecord",
        "foaf:primaryTopic": {"@id": links.iri, "@type": "dcat:Resource"},
        "dct:modified": _datetime(str(detail.get("updated_at") or detail["published_at"])),
    }
    if detail.get("published_at"):
        record["dct:issued"] = _datetime(str(detail["published_at"]))
    return record


def catalogue_dcat(details: list[dict[str, Any]], base_url: str, *,
                   with_mock: set[str] | frozenset[str] = frozenset(), page: int = 1,
                   total: int | None = None, page_size: int = CATALOGUE_PAGE_SIZE,
                   ) -> dict[str, Any]:
    """The whole catalogue (or one page of it) as a ``dcat:Catalog``.

    ``with_mock`` holds the ids of datasets that have mock rows. When ``total`` exceeds one
    page, a Hydra ``PartialCollectionView`` links the pages.
    """
    hub = HubLinks.of(base_url)
    datasets = [dataset_node(d, base_url, has_mock=dataset_id(d) in with_mock,
                             service_described=True) for d in details]
    doc: dict[str, Any] = {
        "@context": dict(CONTEXT),
        "@id": hub.catalogue_dcat,
        "@type": "dcat:Catalog",
        "dct:title": f"{LIBRARY_NAME} catalogue",
        "dct:description": (
            "Datasets held by organisations across the library. Each organisation keeps its "
            "data at home; the catalogue says what exists, who holds it, which access tier "
            "it is in and how to get access."
        ),
        "dct:publisher": library_agent(hub),
        "foaf:homepage": _typed(hub.home, "foaf:Document"),
        "dct:language": _typed(f"{EU}/language/ENG", "dct:LinguisticSystem"),
        "dcat:themeTaxonomy": _typed(f"{EU}/data-theme", "skos:ConceptScheme",
                                     dct__title="Data theme"),
        "dcat:service": hub_service(hub),
        "dcat:dataset": datasets,
        "dcat:record": [_record(d, Links.of(base_url, d)) for d in details],
    }
    if total is not None and total > page_size:
        last = max(1, -(-total // page_size))
        view: dict[str, Any] = {
            "@id": f"{hub.catalogue_dcat}?page={page}", "@type": "hydra:PartialCollectionView",
            "hydra:first": {"@id": f"{hub.catalogue_dcat}?page=1"},
            "hydra:last": {"@id": f"{hub.catalogue_dcat}?page={last}"},
        }
        if page > 1:
            view["hydra:previous"] = {"@id": f"{hub.catalogue_dcat}?page={page - 1}"}
        if page < last:
            view["hydra:next"] = {"@id": f"{hub.catalogue_dcat}?page={page + 1}"}
        doc["hydra:view"] = view
        doc["hydra:totalItems"] = total
    return doc
