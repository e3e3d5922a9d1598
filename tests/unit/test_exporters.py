"""The catalogue for machines, in-process: DCAT-3 checked against the DCAT-AP 3.0.0 SHACL
shapes, Croissant checked by mlcroissant, the CKAN Action API, llms.txt and Markdown pages.

The demo catalogue (``ndl.demo.synth``) is published into a real hub database exactly as a
datasite would publish it; the standards' own validators are the judges.
"""

from __future__ import annotations

import copy
import io
import json
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rdflib
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pyshacl import validate
from rdflib.namespace import DCAT, DCTERMS, FOAF, RDF

from ndl.access import accounts
from ndl.catalogue import mocks
from ndl.catalogue import service as catalogue
from ndl.catalogue.exporters import (
    catalogue_dcat,
    catalogue_markdown,
    ckan_query,
    dataset_croissant,
    dataset_dcat,
    dataset_markdown,
    llms_txt,
)
from ndl.catalogue.exporters import ckan as ckan_export
from ndl.catalogue.exporters import dcat as dcat_export
from ndl.catalogue.metadata import DatasetMeta
from ndl.catalogue.models import Dataset
from ndl.core.db import Database
from ndl.core.keys import SigningKey
from ndl.demo.synth import ORGS, generate_demo_data
from ndl.federation.models import Datasite
from ndl.hub import ckan_api, dcat_api, open_api
from ndl.hub.app import create_app
from ndl.hub.state import HubSettings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import mlcroissant as mlc
    from fastapi.testclient import TestClient

SHAPES_PATH = Path(__file__).resolve().parents[3] / "shared/standards/dcat-ap-3.0.0-SHACL.ttl"
BASE = "http://testserver"
ADMS = rdflib.Namespace("http://www.w3.org/ns/adms#")
EU = "http://publications.europa.eu/resource/authority"
MOCKED = "nhs-trust/ae-attendances"
ARROW = {"string": pa.string(), "integer": pa.int64(), "float": pa.float64(),
         "boolean": pa.bool_(), "date": pa.date32()}


# --- fixtures ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shapes() -> rdflib.Graph:
    if not SHAPES_PATH.is_file():
        pytest.fail(f"the DCAT-AP shapes are missing at {SHAPES_PATH}")
    return rdflib.Graph().parse(SHAPES_PATH)


@pytest.fixture(scope="module")
def demo_metas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[DatasetMeta]]:
    """The demo organisations' metadata.json files, validated as the hub validates them."""
    demo = generate_demo_data(tmp_path_factory.mktemp("demo"), people=200, seed=7)
    return {slug: [DatasetMeta.model_validate_json((d / "metadata.json").read_text("utf-8"))
                   for d in dirs] for slug, dirs in demo.datasets.items()}


def _mock_parquet(columns: list[dict[str, Any]], rows: int = 5) -> bytes:
    values = {"string": "x", "integer": 1, "float": 1.5, "boolean": True, "date": None}
    table = pa.table({c["name"]: pa.array([values[c["type"]]] * rows, type=ARROW[c["type"]])
                      for c in columns})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def seed_demo(db: Database, key: SigningKey, metas: dict[str, list[DatasetMeta]]) -> None:
    """Publish the demo catalogue the way each datasite would, and one dataset's mock."""
    with db.write() as s:
        for org in ORGS:
            accounts.create_org(s, org.slug, org.name, org.kind)
            site = Datasite(id=org.slug, org_id=org.slug, name=f"{org.name} datasite",
                            public_key=SigningKey.generate().public_b64)
            s.add(site)
            s.flush()
            catalogue.publish(s, key, site, metas[org.slug])
        ds = s.get(Dataset, MOCKED)
        assert ds is not None
        mocks.store_mock(s, key, ds, _mock_parquet(ds.columns), method="test")


def _app(db_url: str, tmp_path: Path, metas: dict[str, list[DatasetMeta]]) -> FastAPI:
    app = create_app(HubSettings(db_url=db_url, data_dir=tmp_path))
    seed_demo(app.state.hub.db, app.state.hub.key, metas)
    return app


@pytest.fixture
def client(tmp_path: Path, demo_metas: dict[str, list[DatasetMeta]]) -> Iterator[TestClient]:
    app = _app(str(tmp_path / "hub.db"), tmp_path, demo_metas)
    with TestClient(app) as c:
        yield c
    app.state.hub.db.dispose()


@pytest.fixture
def any_db_client(db_url: str, tmp_path: Path, demo_metas: dict[str, list[DatasetMeta]]
                  ) -> Iterator[TestClient]:
    """The same hub on SQLite and on PostgreSQL (search differs between the two)."""
    app = _app(db_url, tmp_path, demo_metas)
    with TestClient(app) as c:
        yield c
    app.state.hub.db.dispose()


def _ids(client: TestClient) -> list[str]:
    return [d["id"] for d in client.get("/api/datasets", params={"limit": 100}).json()["results"]]


def _conforms(doc: dict[str, Any], shapes: rdflib.Graph) -> tuple[bool, str, rdflib.Graph]:
    with warnings.catch_warnings():
        # rdflib's own JSON-LD parser still builds a ConjunctiveGraph it deprecates.
        warnings.filterwarnings("ignore", "ConjunctiveGraph is deprecated", DeprecationWarning)
        graph = rdflib.Graph().parse(data=json.dumps(doc), format="json-ld")
    conforms, _, report = validate(graph, shacl_graph=shapes)
    return bool(conforms), str(report), graph


def _full_detail(detail: dict[str, Any]) -> dict[str, Any]:
    """A demo dataset with every optional DCAT field its publisher could set."""
    return {**detail, "contact": {"name": "Data team", "email": "data@trust.example"},
            "licence": "OGL-UK-3.0", "themes": ["health", "population", "social-care"],
            "spatial": "Northshire", "temporal": {"start": "2022-04-01", "end": "2025-08-31"},
            "update_frequency": "irregular", "issued": "2022-05-01", "modified": "2025-09-01",
            "access": {"route": "Ask the trust", "lead_time_days": 5, "cost": "",
                       "linkable_datasets": ["nhs-trust/patients"]}}


# --- DCAT-3 / DCAT-AP 3.0.0 -------------------------------------------------------------

def test_every_demo_dataset_conforms_to_dcat_ap(client: TestClient, shapes: rdflib.Graph
                                                ) -> None:
    ids = _ids(client)
    assert len(ids) == 6
    for ds_id in ids:
        r = client.get(f"/api/datasets/{ds_id}/dcat")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/ld+json")
        conforms, report, graph = _conforms(r.json(), shapes)
        assert conforms, f"{ds_id}:\n{report}"
        subject = rdflib.URIRef(f"{BASE}/id/datasets/{ds_id}")
        assert (subject, RDF.type, DCAT.Dataset) in graph
        assert graph.value(subject, DCTERMS.identifier) == rdflib.Literal(ds_id)


def test_whole_catalogue_conforms_to_dcat_ap(client: TestClient, shapes: rdflib.Graph) -> None:
    r = client.get("/api/catalogue/dcat")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/ld+json")
    conforms, report, graph = _conforms(r.json(), shapes)
    assert conforms, report
    cat = rdflib.URIRef(f"{BASE}/api/catalogue/dcat")
    assert (cat, RDF.type, DCAT.Catalog) in graph
    assert set(graph.objects(cat, DCAT.dataset)) == {
        rdflib.URIRef(f"{BASE}/id/datasets/{i}") for i in _ids(client)}
    assert len(set(graph.objects(cat, DCAT.record))) == 6
    assert "hydra:view" not in r.json()  # one page holds it all


def test_bare_metadata_still_conforms(client: TestClient, shapes: rdflib.Graph) -> None:
    """A dataset whose publisher set none of the optional DCAT fields, nor a description."""
    optional = ("contact", "licence", "themes", "spatial", "temporal", "update_frequency",
                "issued", "modified", "access", "keywords")
    detail = {k: v for k, v in client.get(f"/api/datasets/{MOCKED}").json().items()
              if k not in optional}
    detail["description"] = ""
    doc = dataset_dcat(detail, BASE, has_mock=True)
    conforms, report, g = _conforms(doc, shapes)
    assert conforms, report
    ds = rdflib.URIRef(f"{BASE}/id/datasets/{MOCKED}")
    assert "has not written a description" in str(g.value(ds, DCTERMS.description))
    assert g.value(ds, DCTERMS.accrualPeriodicity) is None and g.value(ds, DCAT.theme) is None
    assert _conforms(catalogue_dcat([detail], BASE), shapes)[0]


def test_every_optional_field_still_conforms_and_uses_eu_vocabularies(
        client: TestClient, shapes: rdflib.Graph) -> None:
    detail = _full_detail(client.get(f"/api/datasets/{MOCKED}").json())
    conforms, report, g = _conforms(dataset_dcat(detail, BASE, has_mock=True), shapes)
    assert conforms, report
    ds = rdflib.URIRef(f"{BASE}/id/datasets/{MOCKED}")
    assert g.value(ds, DCTERMS.accrualPeriodicity) == rdflib.URIRef(f"{EU}/frequency/IRREG")
    assert g.value(ds, DCTERMS.accessRights) == rdflib.URIRef(f"{EU}/access-right/RESTRICTED")
    themes = set(g.objects(ds, DCAT.theme))
    assert themes == {rdflib.URIRef(f"{EU}/data-theme/HEAL"),
                      rdflib.URIRef(f"{EU}/data-theme/SOCI")}
    contact = g.value(ds, DCAT.contactPoint)
    assert g.value(contact, rdflib.URIRef("http://www.w3.org/2006/vcard/ns#hasEmail")) == \
        rdflib.URIRef("mailto:data@trust.example")
    licences = {g.value(d, DCTERMS.license) for d in g.objects(ds, DCAT.distribution)}
    assert licences == {rdflib.URIRef(
        "http://www.nationalarchives.gov.uk/doc/open-government-licence/version/3/")}
    period = g.value(ds, DCTERMS.temporal)
    assert str(g.value(period, DCAT.startDate)) == "2022-04-01"
    # And the whole catalogue with such a dataset in it.
    catalogue_doc = catalogue_dcat([detail], BASE, with_mock={MOCKED})
    assert _conforms(catalogue_doc, shapes)[0]


@pytest.mark.parametrize("breakage", [
    "no title", "no description", "untyped access URL", "distribution without access URL",
    "nameless publisher", "licence of the wrong class", "catalogue without publisher",
])
def test_broken_documents_do_not_conform(client: TestClient, shapes: rdflib.Graph,
                                         breakage: str) -> None:
    """The check is honest: the shapes catch what DCAT-AP forbids."""
    doc = client.get(f"/api/datasets/{MOCKED}/dcat").json()
    doc = copy.deepcopy(doc)
    dist = doc["dcat:distribution"][0]
    if breakage == "no title":
        del doc["dct:title"]
    elif breakage == "no description":
        del doc["dct:description"]
    elif breakage == "untyped access URL":
        dist["dcat:accessURL"] = {"@id": dist["dcat:accessURL"]["@id"]}
    elif breakage == "distribution without access URL":
        del dist["dcat:accessURL"]
    elif breakage == "nameless publisher":
        del doc["dct:publisher"]["foaf:name"]
    elif breakage == "licence of the wrong class":
        dist["dct:license"] = {"@id": "https://creativecommons.org/licenses/by/4.0/",
                               "@type": "foaf:Document"}
    elif breakage == "catalogue without publisher":
        doc = client.get("/api/catalogue/dcat").json()
        del doc["dct:publisher"]
    conforms, report, _ = _conforms(doc, shapes)
    assert not conforms, f"{breakage} was accepted"
    assert "Violation" in report


def test_distributions_follow_the_tier(client: TestClient, shapes: rdflib.Graph) -> None:
    def graph(ds_id: str) -> rdflib.Graph:
        return _conforms(client.get(f"/api/datasets/{ds_id}/dcat").json(), shapes)[2]

    opened = "local-authority/ward-population"
    g = graph(opened)
    ds = rdflib.URIRef(f"{BASE}/id/datasets/{opened}")
    downloads = {str(u) for d in g.objects(ds, DCAT.distribution)
                 for u in g.objects(d, DCAT.downloadURL)}
    assert downloads == {f"{BASE}/api/datasets/{opened}/rows?format=csv"}
    assert g.value(ds, DCTERMS.accessRights) == rdflib.URIRef(f"{EU}/access-right/PUBLIC")

    g = graph(MOCKED)  # safeguarded, with a mock at the hub
    ds = rdflib.URIRef(f"{BASE}/id/datasets/{MOCKED}")
    sample = g.value(ds, ADMS.sample)
    assert str(g.value(sample, DCAT.downloadURL)) == \
        f"{BASE}/api/datasets/{MOCKED}/mock?format=csv"
    assert not any(g.value(d, DCAT.downloadURL) for d in g.objects(ds, DCAT.distribution))
    api = next(iter(g.objects(ds, DCAT.distribution)))
    assert str(g.value(api, DCAT.accessURL)) == f"{BASE}/datasets/{MOCKED}"
    service = g.value(api, DCAT.accessService)
    assert str(g.value(service, DCAT.endpointURL)) == f"{BASE}/api"

    g = graph("nhs-trust/patients")  # controlled, no mock sent yet: no sample claimed
    ds = rdflib.URIRef(f"{BASE}/id/datasets/nhs-trust/patients")
    assert g.value(ds, ADMS.sample) is None
    assert g.value(ds, DCTERMS.accessRights) == rdflib.URIRef(f"{EU}/access-right/NON_PUBLIC")


def test_publisher_is_an_agent_with_the_org_name(client: TestClient, shapes: rdflib.Graph
                                                 ) -> None:
    g = _conforms(client.get("/api/catalogue/dcat").json(), shapes)[2]
    names = {str(g.value(p, FOAF.name)) for p in g.objects(None, DCTERMS.publisher)}
    assert names == {o.name for o in ORGS} | {"National Data Library"}


def test_catalogue_pages_link_with_hydra(client: TestClient) -> None:
    details = [client.get(f"/api/datasets/{i}").json() for i in _ids(client)]
    doc = catalogue_dcat(details[:2], BASE, page=2, total=5, page_size=2)
    view = doc["hydra:view"]
    assert view["hydra:next"]["@id"].endswith("?page=3")
    assert view["hydra:previous"]["@id"].endswith("?page=1")
    assert view["hydra:last"]["@id"].endswith("?page=3")
    assert doc["hydra:totalItems"] == 5
    r = client.get("/api/catalogue/dcat", params={"page": 2})
    assert r.status_code == 404 and "page 2 is empty" in r.json()["error"]["message"]
    assert dcat_export.CATALOGUE_PAGE_SIZE == 1000


def test_unknown_dataset_is_a_404_in_every_format(client: TestClient) -> None:
    for path in ("/api/datasets/nope/nada/dcat", "/api/datasets/nope/nada/croissant",
                 "/datasets/nope/nada.md"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert "not in the catalogue" in r.json()["error"]["message"]


# --- Croissant --------------------------------------------------------------------------

def _load_croissant(doc: dict[str, Any]) -> Any:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "ConjunctiveGraph is deprecated", DeprecationWarning)
        return mlc.Dataset(jsonld=doc)


def test_every_demo_dataset_loads_in_mlcroissant(client: TestClient) -> None:
    for ds_id in _ids(client):
        r = client.get(f"/api/datasets/{ds_id}/croissant")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/ld+json")
        doc = r.json()
        metadata = _load_croissant(doc).metadata
        issues = metadata.ctx.issues
        assert not issues.errors and not issues.warnings, f"{ds_id}: {issues.report()}"
        assert str(metadata.ctx.conforms_to.value) == "http://mlcommons.org/croissant/1.1"
        detail = client.get(f"/api/datasets/{ds_id}").json()
        (record_set,) = metadata.record_sets
        assert [f.name for f in record_set.fields] == [c["name"] for c in detail["columns"]]
        (file,) = metadata.distribution
        expected = "rows?format=csv" if detail["tier"] == "open" else "mock?format=csv"
        assert file.content_url == f"{BASE}/api/datasets/{ds_id}/{expected}"


def test_croissant_field_types_follow_the_schema(client: TestClient) -> None:
    detail = client.get(f"/api/datasets/{MOCKED}").json()
    detail["columns"] = [{"name": n, "type": t} for n, t in (
        ("s", "string"), ("i", "integer"), ("f", "float"), ("b", "boolean"), ("d", "date"))]
    metadata = _load_croissant(dataset_croissant(detail, BASE, has_mock=True)).metadata
    types = {f.name: str(f.data_types[0]) for f in metadata.record_sets[0].fields}
    sc = "https://schema.org/"
    assert types == {"s": f"{sc}Text", "i": f"{sc}Integer", "f": f"{sc}Float",
                     "b": f"{sc}Boolean", "d": f"{sc}Date"}


def test_croissant_without_licence_says_so_and_with_one_names_it(client: TestClient) -> None:
    detail = {**client.get(f"/api/datasets/{MOCKED}").json(), "licence": None}
    unlicensed = dataset_croissant(detail, BASE)
    assert unlicensed["license"]["name"].startswith("No licence stated by the publisher")
    assert unlicensed["isLiveDataset"] is True
    licensed = dataset_croissant(_full_detail(detail), BASE, has_mock=True)
    assert licensed["license"].startswith("http://www.nationalarchives.gov.uk/")
    metadata = _load_croissant(licensed).metadata
    assert not metadata.ctx.issues.errors


@pytest.mark.parametrize("breakage,message", [
    ("file without contentUrl", "contentUrl\" is mandatory"),
    ("file without encodingFormat", "encodingFormat\" is mandatory"),
    ("field reading a missing file", "this node doesn't exist"),
    ("unknown data type", "does not specify a valid"),
])
def test_broken_croissant_is_refused_by_mlcroissant(client: TestClient, breakage: str,
                                                   message: str) -> None:
    """The check is honest: mlcroissant refuses what Croissant forbids."""
    doc = client.get(f"/api/datasets/{MOCKED}/croissant").json()
    file, field = doc["distribution"][0], doc["recordSet"][0]["field"][0]
    if breakage == "file without contentUrl":
        del file["contentUrl"]
    elif breakage == "file without encodingFormat":
        del file["encodingFormat"]
    elif breakage == "field reading a missing file":
        field["source"]["fileObject"]["@id"] = "nope.csv"
    else:
        field["dataType"] = "sc:Nonsense"
    with pytest.raises(mlc.ValidationError, match=re.escape(message)):
        _load_croissant(doc)


# --- Markdown and llms.txt --------------------------------------------------------------

def test_markdown_dataset_page(client: TestClient) -> None:
    r = client.get(f"/datasets/{MOCKED}.md")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/markdown")
    md = r.text
    assert md.startswith("# A&E attendances\n")
    assert "**Publisher:** Northshire NHS Foundation Trust" in md
    from ndl.core.tiers import TIERS

    # The tier explained in the one tier definition's words, with the one route it serves.
    assert TIERS["safeguarded"].summary in md and "/private-query" in md
    assert "/query`" not in md  # exact counts are not offered for safeguarded data
    assert "## How to get access" in md and f"/api/datasets/{MOCKED}/private-query" in md
    detail = client.get(f"/api/datasets/{MOCKED}").json()
    table = md[md.index("| Column |"):md.index("## Machine-readable")]
    assert len([ln for ln in table.splitlines() if ln.startswith("| `")]) == \
        len(detail["columns"])
    assert "| `nhs_number` | string |" in table and "direct identifier | nhs_number |" in table
    for link in ("/dcat)", "/croissant)", f"{BASE}/api/datasets/{MOCKED})"):
        assert link in md


def test_markdown_route_wins_over_the_html_page(client: TestClient) -> None:
    html = client.get(f"/datasets/{MOCKED}")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    md = client.get(f"/datasets/{MOCKED}.md")
    assert md.headers["content-type"].startswith("text/markdown")


def test_markdown_table_cells_cannot_break_rows() -> None:
    detail = {"id": "s/d", "datasite": "s", "name": "d", "title": "T", "publisher": "P",
              "tier": "open", "columns": [{"name": "a|b", "type": "string",
                                           "description": "one\nline | two"}]}
    md = dataset_markdown(detail, BASE)
    row = next(ln for ln in md.splitlines() if ln.startswith("| `a"))
    assert row.count(" | ") == 5 and "\\|" in row and "\n" not in row


def test_llms_txt_follows_the_proposal_and_its_links_work(client: TestClient) -> None:
    r = client.get("/llms.txt")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/markdown")
    lines = r.text.splitlines()
    assert lines[0] == "# National Data Library"
    assert lines[1] == "" and lines[2].startswith("> ")
    sections = [ln[3:] for ln in lines if ln.startswith("## ")]
    assert sections == ["Catalogue", "Datasets", "APIs", "Access tiers", "Optional"]
    assert not any(ln.startswith("# ") for ln in lines[1:])
    links = re.findall(r"\]\((http[^)]+)\)", r.text)
    for ds_id in _ids(client):
        assert f"{BASE}/datasets/{ds_id}.md" in links
    for url in links:
        if url.endswith("/mcp"):
            continue  # MCP speaks JSON-RPC over POST, not GET
        got = client.get(url)
        assert got.status_code == 200, f"{url} -> {got.status_code}"


def test_catalogue_markdown_groups_by_publisher(client: TestClient) -> None:
    md = client.get("/catalogue.md").text
    assert md.startswith("# National Data Library catalogue")
    for org in ORGS:
        assert f"\n## {org.name}\n" in md
    assert md.count("\n- [") == 6
    details = [client.get(f"/api/datasets/{i}").json() for i in _ids(client)]
    capped = catalogue_markdown(details[:2], BASE, total=6)
    assert "The first 2 are listed here" in capped
    assert "## Datasets" not in llms_txt(details, BASE, total=5000)


# --- CKAN Action API --------------------------------------------------------------------

def _ckan(client: TestClient, action: str, method: str = "GET", **params: Any
          ) -> tuple[int, dict[str, Any]]:
    url = f"/api/3/action/{action}"
    r = client.get(url, params=params) if method == "GET" else client.post(url, json=params)
    return r.status_code, r.json()


def test_ckan_package_search(any_db_client: TestClient) -> None:
    status, body = _ckan(any_db_client, "package_search", q="A&E")
    assert status == 200 and body["success"] is True
    assert body["help"].endswith("/api/3/action/help_show?name=package_search")
    result = body["result"]
    assert result["results"][0]["name"] == "nhs-trust--ae-attendances"
    assert result["count"] == len(result["results"]) >= 1

    status, body = _ckan(any_db_client, "package_search", method="POST", q="*:*", rows=2,
                         start=2, sort="title_string asc")
    assert body["result"]["count"] == 6
    titles = [p["title"] for p in body["result"]["results"]]
    everything = [p["title"] for p in _ckan(any_db_client, "package_search", rows=10,
                                            sort="title_string asc")[1]["result"]["results"]]
    assert titles == everything[2:4] and everything == sorted(everything)


def test_ckan_package_search_filters(any_db_client: TestClient) -> None:
    def names(**params: Any) -> list[str]:
        body = _ckan(any_db_client, "package_search", rows=100, **params)[1]
        assert body["success"], body
        return sorted(p["name"] for p in body["result"]["results"])

    assert names(fq="organization:dfe") == ["dfe--attainment", "dfe--pupils"]
    assert names(fq="tier:open") == ["local-authority--ward-population"]
    assert names(fq='tags:"A&E" organization:nhs-trust') == ["nhs-trust--ae-attendances"]
    assert names(fq="organization:dfe tier:open") == []
    assert names(fq="tier:open tier:controlled") == []
    body = _ckan(any_db_client, "package_search", rows=0,
                 **{"facet.field": '["organization"]'})[1]["result"]
    items = {i["name"]: i["count"] for i in body["search_facets"]["organization"]["items"]}
    assert items == {"dfe": 2, "local-authority": 2, "nhs-trust": 2}
    assert body["results"] == [] and body["count"] == 6


def test_ckan_package_shape(client: TestClient) -> None:
    for ref in (MOCKED, "nhs-trust--ae-attendances", ckan_export.package_uuid(MOCKED)):
        status, body = _ckan(client, "package_show", id=ref)
        assert status == 200 and body["success"]
        pkg = body["result"]
        assert pkg["id"] == ckan_export.package_uuid(MOCKED)
        assert pkg["name"] == "nhs-trust--ae-attendances"
        assert pkg["organization"] == {**pkg["organization"], "name": "nhs-trust",
                                       "title": "Northshire NHS Foundation Trust"}
        extras = {e["key"]: e["value"] for e in pkg["extras"]}
        assert extras["access_tier"] == "safeguarded" and extras["join_keys"] == "nhs_number"
        assert extras["ndl_id"] == MOCKED
        assert {"name": "A and E", "display_name": "A&E"}.items() <= next(
            t for t in pkg["tags"] if t["display_name"] == "A&E").items()
        formats = [r["format"] for r in pkg["resources"]]
        # page, synthetic mock (not "CSV": it needs a sign-in), DCAT, Croissant
        assert formats == ["HTML", "Mock CSV", "JSON-LD", "JSON-LD"]
        assert pkg["num_resources"] == 4 and all(r["package_id"] == pkg["id"]
                                                 for r in pkg["resources"])


def test_ckan_errors_use_ckan_envelope_and_statuses(client: TestClient) -> None:
    status, body = _ckan(client, "package_show", id="nope--nada")
    assert status == 404 and body["success"] is False
    assert body["error"]["__type"] == "Not Found Error" and "nope--nada" in body["error"][
        "message"]
    status, body = _ckan(client, "package_search", rows="lots")
    assert status == 409 and body["error"]["__type"] == "Validation Error"
    status, body = _ckan(client, "package_search", rows=5000)
    assert status == 409 and "between 0 and 1000" in body["error"]["message"]
    status, body = _ckan(client, "package_search", fq="colour:red")
    assert status == 400 and body["error"]["__type"] == "Search Query Error"
    status, body = _ckan(client, "package_search", fq="(tier:open")
    assert status == 400 and "field:value" in body["error"]["message"]
    status, body = _ckan(client, "package_create", name="x")
    assert status == 400 and body["success"] is False
    assert "Action name not known: package_create" in body["error"]["message"]
    status, body = _ckan(client, "help_show", name="package_show")
    assert status == 200 and "site--name" in body["result"]


def test_ckan_organization_list(client: TestClient) -> None:
    status, body = _ckan(client, "organization_list")
    assert status == 200 and body["result"] == sorted(o.slug for o in ORGS)
    body = _ckan(client, "organization_list", all_fields="true")[1]
    orgs = {o["name"]: o for o in body["result"]}
    assert orgs["dfe"]["title"] == "Department for Education"
    assert orgs["dfe"]["package_count"] == 2 and orgs["dfe"]["is_organization"] is True
    body = _ckan(client, "organization_list", method="POST", sort="title desc", limit=1)[1]
    assert body["result"] == ["nhs-trust"]  # "Northshire NHS..." sorts last by title


def test_ckan_unversioned_path_is_served_too(client: TestClient) -> None:
    r = client.post("/api/action/package_show", json={"id": MOCKED})
    assert r.status_code == 200 and r.json()["result"]["name"] == "nhs-trust--ae-attendances"


def test_ckan_names_with_double_hyphens_resolve() -> None:
    assert ckan_export.candidate_ids("a--b--c") == ["a/b--c", "a--b/c"]
    assert ckan_export.candidate_ids("site/name") == ["site/name"]
    assert ckan_query.parse('organization:nhs-trust tags:"emergency care"') == ckan_query.All((
        ckan_query.Term("organization", ("nhs-trust",)),
        ckan_query.Term("tags", ("emergency care",))))


# --- the routes ---------------------------------------------------------------------------

def test_downloading_rows_is_for_open_data_only(client: TestClient) -> None:
    r = client.get(f"/api/datasets/{MOCKED}/rows")
    assert r.status_code == 403
    assert "only for open data" in r.json()["error"]["message"]


def test_every_route_here_is_public() -> None:
    routes = [r for module in (open_api, dcat_api, ckan_api) for r in module.router.routes
              if isinstance(r, APIRoute)]
    assert len(routes) == 13  # open_api's router includes dcat_api's and ckan_api's
    for route in routes:
        rules = [getattr(d.call, "__ndl_access__", None) for d in route.dependant.dependencies]
        assert [r for r in rules if r] == ["public"], route.path
