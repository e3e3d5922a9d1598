"""What harvesters need, in-process: the CKAN Action API speaking the Solr subset CKAN clients
send, ids and tags CKAN 2.11 accepts, and DCAT in Turtle, RDF/XML and JSON-LD from one graph
(checked by rdflib and the DCAT-AP 3.0.0 SHACL shapes), plus schema.org for search engines.

The demo catalogue is published into a real hub database as in ``test_exporters``.
"""

from __future__ import annotations

import json
import re
import uuid
import warnings
from typing import Any

import pytest
import rdflib
import test_exporters
from pyshacl import validate
from rdflib.compare import isomorphic
from rdflib.namespace import DCAT, RDF
from test_exporters import BASE, MOCKED, _ckan

from ndl.catalogue.exporters import ckan as ckan_export
from ndl.catalogue.exporters import ckan_query
from ndl.catalogue.exporters.schemaorg import dataset_schemaorg
from ndl.demo.synth import ORGS

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

# The same hub as test_exporters (fixtures are found by name in this module).
client = test_exporters.client
demo_metas = test_exporters.demo_metas
shapes = test_exporters.shapes

# CKAN 2.11's validators (ckan/logic/validators.py): package and organisation names, tags.
CKAN_NAME = re.compile(r"^[a-z0-9_-]{2,100}$")
CKAN_TAG = re.compile(r"^[\w\-. ]{2,100}$", re.UNICODE)


def _ok(client: TestClient, action: str, **params: Any) -> Any:
    status, body = _ckan(client, action, **params)
    assert status == 200 and body["success"], body
    return body["result"]


def _names(client: TestClient, **params: Any) -> list[str]:
    return [p["name"] for p in _ok(client, "package_search", rows=100, **params)["results"]]


# --- CKAN: the query language harvesters send ----------------------------------------------

def test_ckan_harvester_paging_sorts_on_id(client: TestClient) -> None:
    """ckanext-harvest always pages ``rows=100&start=N&sort=id asc``."""
    seen: list[str] = []
    for start in range(0, 8, 2):
        page = _ok(client, "package_search", rows=2, start=start, sort="id asc")
        assert page["count"] == 6
        seen += [p["id"] for p in page["results"]]
    assert seen == sorted(seen) and len(set(seen)) == 6
    assert [p["id"] for p in _ok(client, "package_search", rows=6, sort="id desc")[
        "results"]] == sorted(seen, reverse=True)


def test_ckan_fq_ranges_or_and_negation(client: TestClient) -> None:
    assert len(_names(client, fq="metadata_modified:[2000-01-01T00:00:00Z TO *]")) == 6
    assert _names(client, fq="metadata_modified:[2999-01-01T00:00:00Z TO *]") == []
    assert len(_names(client, fq="metadata_modified:[* TO NOW]")) == 6
    assert sorted(_names(client, fq="organization:dfe OR organization:nhs-trust")) == [
        "dfe--attainment", "dfe--pupils", "nhs-trust--ae-attendances", "nhs-trust--patients"]
    assert sorted(_names(client, fq="-organization:dfe -organization:nhs-trust")) == [
        "local-authority--childrens-social-care", "local-authority--ward-population"]
    assert _names(client, fq="organization:dfe -name:dfe--pupils") == ["dfe--attainment"]
    assert _names(client, fq="+dataset_type:dataset tier:open") == [
        "local-authority--ward-population"]
    assert _names(client, fq='tags:"A and E"') == _names(client, fq='tags:"A&E"') == [
        "nhs-trust--ae-attendances"]
    assert sorted(_names(client, fq="organization:(dfe OR local-authority) NOT tier:open")) == [
        "dfe--attainment", "dfe--pupils", "local-authority--childrens-social-care"]
    status, body = _ckan(client, "package_search", fq="metadata_modified:[yesterday TO *]")
    assert status == 400 and "is not a date and time" in body["error"]["message"]
    status, body = _ckan(client, "package_search", fq="colour:red OR tier:open")
    assert status == 400 and "unknown field 'colour'" in body["error"]["message"]


def test_ckan_q_field_syntax_sorting_and_facets(client: TestClient) -> None:
    assert _names(client, q="title:attainment") == ["dfe--attainment"]
    assert _names(client, q="name:dfe--pupils") == ["dfe--pupils"]
    names = _names(client, sort="name asc")
    assert names == sorted(names) and len(names) == 6
    assert _names(client, sort="name desc") == sorted(names, reverse=True)
    result = _ok(client, "package_search", rows=0, **{
        "facet.field": '["tags", "res_format", "organization"]', "facet.limit": 2})
    assert len(result["search_facets"]["tags"]["items"]) == 2
    assert len(result["search_facets"]["organization"]["items"]) == 2
    everything = _ok(client, "package_search", rows=0, **{
        "facet.field": '["res_format", "organization"]', "facet.limit": -1})
    formats = {i["name"]: i["count"] for i in everything["search_facets"]["res_format"]["items"]}
    # Only the open dataset offers real rows as CSV; the mock needs a sign-in.
    assert formats["CSV"] == 1 and formats["HTML"] == 6 and formats.get("Mock CSV") == 1
    assert len(everything["search_facets"]["organization"]["items"]) == 3


# --- CKAN: the read actions -----------------------------------------------------------------

def test_ckan_ids_tags_and_names_pass_ckan_validators(client: TestClient) -> None:
    pkgs = _ok(client, "current_package_list_with_resources")
    assert len(pkgs) == 6
    for pkg in pkgs:
        assert str(uuid.UUID(pkg["id"])) == pkg["id"]
        assert CKAN_NAME.match(pkg["name"]) and CKAN_NAME.match(pkg["organization"]["name"])
        assert str(uuid.UUID(pkg["owner_org"])) == pkg["organization"]["id"] == pkg["owner_org"]
        assert all(CKAN_TAG.match(t["name"]) for t in pkg["tags"]), pkg["tags"]
        assert all(str(uuid.UUID(r["id"])) == r["id"] for r in pkg["resources"])
        assert pkg["organization"]["created"]
        assert pkg["license_title"] != pkg["license_id"] or pkg["license_id"] is None
        if pkg["extras"] and {"key": "access_tier", "value": "open"} not in pkg["extras"]:
            assert "CSV" not in {r["format"] for r in pkg["resources"]}, pkg["name"]
    # Stable: the same UUID from the same ndl id, on any hub, on any day.
    assert ckan_export.package_uuid(MOCKED) == str(uuid.uuid5(
        ckan_export.NAMESPACE, f"dataset:{MOCKED}"))
    assert ckan_export.ckan_tag("A&E") == "A and E"
    assert ckan_export.ckan_tag("children's social care") == "childrens social care"


def test_ckan_read_actions_answer(client: TestClient) -> None:
    status = _ok(client, "status_show")
    assert status["ckan_version"].startswith("2.") and status["site_url"] == BASE
    names = _ok(client, "package_list")
    assert names == sorted(names) and len(names) == 6
    assert _ok(client, "package_list", limit=2, offset=1) == names[1:3]
    org = _ok(client, "organization_show", id="dfe", include_datasets="true")
    assert org["title"] == "Department for Education" and org["package_count"] == 2
    assert sorted(p["name"] for p in org["packages"]) == ["dfe--attainment", "dfe--pupils"]
    assert _ok(client, "organization_show", id=org["id"])["name"] == "dfe"
    groups = _ok(client, "group_list", all_fields="true")
    assert {g["name"] for g in groups} >= {"health", "education"}
    health = _ok(client, "group_show", id="health", include_datasets=True)
    assert health["package_count"] == len(health["packages"]) >= 1
    assert _ok(client, "group_show", id=health["id"])["name"] == "health"
    tags = _ok(client, "tag_list", all_fields="true")
    assert {"name": "A and E", "display_name": "A&E"}.items() <= next(
        t for t in tags if t["display_name"] == "A&E").items()
    assert "emergency care" in _ok(client, "tag_list", query="emerg")
    assert "A and E" not in _ok(client, "tag_list", query="emerg")
    pkg = _ok(client, "package_show", id=MOCKED)
    res = _ok(client, "resource_show", id=pkg["resources"][0]["id"])
    assert res == pkg["resources"][0]
    licences = {lic["id"]: lic["title"] for lic in _ok(client, "license_list")}
    assert licences["OGL-UK-3.0"] == "Open Government Licence v3.0"
    for action, ref in (("organization_show", "nobody"), ("group_show", "nothing"),
                        ("resource_show", str(uuid.uuid4()))):
        status_code, body = _ckan(client, action, id=ref)
        assert status_code == 404 and body["error"]["__type"] == "Not Found Error"
    assert ORGS  # the demo organisations are the ones counted above


def test_ckan_query_parser_reads_the_subset_exactly() -> None:
    tree = ckan_query.parse("organization:a OR organization:b -groups:c")
    assert tree == ckan_query.Any_((
        ckan_query.Term("organization", ("a",)),
        ckan_query.All((ckan_query.Term("organization", ("b",)),
                        ckan_query.Not(ckan_query.Term("groups", ("c",)))))))
    rng = ckan_query.parse("metadata_modified:[2026-12-05T11:00:00Z TO *]")
    assert rng == ckan_query.Term("metadata_modified", (), "2026-12-05T11:00:00Z", "*", True)
    for bad in ("(tier:open", "tier:[a TO]", "tier", "colour:red"):
        with pytest.raises(Exception, match="fq"):
            ckan_query.parse(bad)


# --- DCAT in every syntax ------------------------------------------------------------------

def _graph(text: str, fmt: str) -> rdflib.Graph:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "ConjunctiveGraph is deprecated", DeprecationWarning)
        return rdflib.Graph().parse(data=text, format=fmt)


SYNTAXES = {"text/turtle": ("ttl", "turtle"), "application/rdf+xml": ("rdf", "xml"),
            "application/ld+json": ("jsonld", "json-ld")}


@pytest.mark.parametrize("path", [f"/api/datasets/{MOCKED}/dcat", "/api/catalogue/dcat"])
def test_every_rdf_syntax_holds_one_conforming_graph(client: TestClient, shapes: rdflib.Graph,
                                                     path: str) -> None:
    graphs = []
    for media, (ext, fmt) in SYNTAXES.items():
        by_accept = client.get(path, headers={"Accept": f"{media};q=0.9, */*;q=0.1"})
        by_ext = client.get(f"{path}.{ext}")
        for r in (by_accept, by_ext):
            assert r.status_code == 200 and r.headers["content-type"].startswith(media)
        assert by_accept.headers["vary"] == "Accept"
        g = _graph(by_accept.text, fmt)
        assert isomorphic(g, _graph(by_ext.text, fmt))
        conforms, _, report = validate(g, shacl_graph=shapes)
        assert conforms, f"{media}:\n{report}"
        graphs.append(g)
    assert all(isomorphic(graphs[0], g) for g in graphs[1:])
    # No Accept, or a browser's: JSON-LD as before.
    plain = client.get(path, headers={"Accept": "text/html,*/*;q=0.8"})
    assert plain.headers["content-type"].startswith("application/ld+json")
    assert client.get(f"{path}.exe").status_code in (404, 422)


def test_dataset_iri_dereferences_to_rdf_and_browsers_get_the_page(client: TestClient) -> None:
    iri = f"/id/datasets/{MOCKED}"
    r = client.get(iri, headers={"Accept": "text/turtle"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/turtle")
    g = _graph(r.text, "turtle")
    assert (rdflib.URIRef(f"{BASE}{iri}"), RDF.type, DCAT.Dataset) in g
    r = client.get(iri, headers={"Accept": "application/rdf+xml"})
    assert (rdflib.URIRef(f"{BASE}{iri}"), RDF.type, DCAT.Dataset) in _graph(r.text, "xml")
    browser = client.get(iri, headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"},
                         follow_redirects=False)
    assert browser.status_code == 303 and browser.headers["location"] == \
        f"{BASE}/datasets/{MOCKED}"
    assert client.get("/id/datasets/nobody/nothing",
                      headers={"Accept": "text/turtle"}).status_code == 404


# --- schema.org ---------------------------------------------------------------------------

def test_schema_org_has_a_creator_and_the_home_page_a_data_catalog(client: TestClient
                                                                   ) -> None:
    detail = client.get(f"/api/datasets/{MOCKED}").json()
    doc = dataset_schemaorg(detail, BASE)
    assert doc["creator"]["@type"] == "Organization"
    assert doc["creator"]["name"] == "Northshire NHS Foundation Trust"
    page = client.get(f"/datasets/{MOCKED}").text
    embedded = json.loads(re.search(r'id="schema-org">(.*?)</script>', page, re.S).group(1))
    assert embedded["creator"]["name"] == "Northshire NHS Foundation Trust"
    home = client.get("/").text
    found = re.search(r'id="schema-org-catalog">(.*?)</script>', home, re.S)
    assert found is not None
    catalog = json.loads(found.group(1))
    assert catalog["@type"] == "DataCatalog" and catalog["url"] == f"{BASE}/"
    assert f"{BASE}/api/catalogue/dcat" in {d["contentUrl"] for d in catalog["distribution"]}
