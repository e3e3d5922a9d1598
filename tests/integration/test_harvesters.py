"""Harvesters against a real hub process: ckanext-harvest's CKAN harvester, replayed request by
request, and a DCAT harvester reading Turtle and RDF/XML (parsed by rdflib, checked against the
DCAT-AP 3.0.0 SHACL shapes by pyshacl) and following dataset IRIs.

The CKAN harvester cannot run outside a CKAN site, so its requests are replayed here exactly as
its source builds them: ckanext/harvest/harvesters/ckanharvester.py in ckan/ckanext-harvest
(``CKANHarvester.gather_stage``, ``_search_for_datasets``, ``fetch_stage``, ``import_stage``,
``_get_organization``, ``_get_group``). What it sends:

* gather: ``fq_terms`` are ``' OR '.join('organization:%s' ...)`` for
  ``organizations_filter_include``, or one ``'-organization:%s'`` each for
  ``organizations_filter_exclude`` (the same with ``groups:`` for the group filters); after an
  error-free job it adds ``'metadata_modified:[{since}Z TO *]'`` where ``since`` is
  ``(gather_started - 1 hour).isoformat()``, and falls back to a full search on a search error;
* ``_search_for_datasets``: ``GET {base}/api/3/action/package_search?`` +
  ``urlencode({'rows': '100', 'start': '0', 'sort': 'id asc', 'fq': ' '.join(fq_terms)})``,
  ``start`` += 100 until a page is empty; a page identical to the last is an error ("The paging
  doesn't seem to work"); ids seen on an earlier page are dropped;
* fetch: nothing (the package dicts came with the search);
* import (``remote_orgs``/``remote_groups`` = ``create``):
  ``GET {base}/api/3/action/organization_show?id={owner_org}`` and
  ``GET {base}/api/3/action/group_show?id={group['id']}``.
"""

from __future__ import annotations

import datetime as dt
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import rdflib
import test_ckan_client
from pyshacl import validate
from rdflib.compare import isomorphic
from rdflib.namespace import DCAT, RDF

from ndl.testing import HubProcess

demo_hub = test_ckan_client.demo_hub  # one read-only hub with the demo catalogue
SHAPES_PATH = test_ckan_client.SHAPES_PATH


class SearchError(Exception):
    """ckanext-harvest's SearchError: the harvest job records a gather error."""


class Harvester:
    """The HTTP side of ckanext-harvest's CKANHarvester, line for line (see the module doc)."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")
        self.urls: list[str] = []
        self.http = httpx.Client(timeout=30)

    def _get_content(self, url: str) -> str:
        self.urls.append(url)
        return self.http.get(url).text  # requests.get(url).text: the status is not checked

    def _search_for_datasets(self, fq_terms: list[str]) -> list[dict[str, Any]]:
        base_search_url = self.base + "/api/3/action/package_search"
        params = {"rows": "100", "start": "0", "sort": "id asc"}
        if fq_terms:
            params["fq"] = " ".join(fq_terms)
        pkg_dicts: list[dict[str, Any]] = []
        pkg_ids: set[str] = set()
        previous_content = None
        while True:
            url = base_search_url + "?" + urlencode(params)
            content = self._get_content(url)
            if previous_content and content == previous_content:
                raise SearchError(f"The paging doesn't seem to work. URL: {url}")
            previous_content = content
            response_dict = httpx.Response(200, text=content).json()
            if not response_dict.get("success"):
                raise SearchError(f"Error searching: {response_dict.get('error')}")
            page = response_dict.get("result", {}).get("results", [])
            ids_in_page = {p["id"] for p in page}
            page = [p for p in page if p["id"] not in ids_in_page & pkg_ids]
            pkg_ids |= ids_in_page
            pkg_dicts.extend(page)
            if len(page) == 0:
                break
            params["start"] = str(int(params["start"]) + int(params["rows"]))
        return pkg_dicts

    def gather(self, config: dict[str, Any], last_gather_started: dt.datetime | None = None
               ) -> list[dict[str, Any]]:
        fq_terms: list[str] = []
        if config.get("organizations_filter_include"):
            fq_terms.append(" OR ".join(
                f"organization:{o}" for o in config["organizations_filter_include"]))
        elif config.get("organizations_filter_exclude"):
            fq_terms.extend(f"-organization:{o}" for o in config["organizations_filter_exclude"])
        if config.get("groups_filter_include"):
            fq_terms.append(" OR ".join(
                f"groups:{g}" for g in config["groups_filter_include"]))
        elif config.get("groups_filter_exclude"):
            fq_terms.extend(f"-groups:{g}" for g in config["groups_filter_exclude"])
        if last_gather_started is not None:
            since = (last_gather_started - dt.timedelta(hours=1)).isoformat()
            # No fall-back here: the incremental search must work, not be quietly replaced.
            return self._search_for_datasets(
                [*fq_terms, f"metadata_modified:[{since}Z TO *]"])
        return self._search_for_datasets(fq_terms)

    def import_lookups(self, pkg: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The remote organisation and groups import_stage reads to create them locally."""
        action = self.base + "/api/3/action/"
        org = httpx.Response(200, text=self._get_content(
            action + "organization_show?id=" + pkg["owner_org"])).json()["result"]
        groups = [httpx.Response(200, text=self._get_content(
            action + "group_show?id=" + g["id"])).json().pop("result") for g in pkg["groups"]]
        return org, groups


@pytest.fixture
def harvester(demo_hub: HubProcess) -> Iterator[Harvester]:
    h = Harvester(demo_hub.url)
    yield h
    h.http.close()


def test_a_first_harvest_gets_every_dataset_by_paging_on_id(harvester: Harvester) -> None:
    pkgs = harvester.gather({})
    assert len(pkgs) == 6 and len({p["id"] for p in pkgs}) == 6
    assert harvester.urls == [
        f"{harvester.base}/api/3/action/package_search?rows=100&start=0&sort=id+asc",
        f"{harvester.base}/api/3/action/package_search?rows=100&start=100&sort=id+asc"]
    for pkg in pkgs:  # what CKAN 2.11's package_create will validate on import
        assert str(uuid.UUID(pkg["id"])) == pkg["id"]
        assert pkg["type"] == "dataset" and pkg["name"].count("--") == 1


def test_an_incremental_harvest_asks_for_changes_since_the_last_job(harvester: Harvester
                                                                    ) -> None:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)  # gather_started is naive UTC
    assert len(harvester.gather({}, last_gather_started=now)) == 6  # published minutes ago
    assert "fq=metadata_modified%3A%5B" in harvester.urls[0]
    assert harvester.gather({}, last_gather_started=now + dt.timedelta(hours=3)) == []


def test_organisation_and_group_filters(harvester: Harvester) -> None:
    def names(config: dict[str, Any]) -> list[str]:
        return sorted(p["name"] for p in harvester.gather(config))

    assert names({"organizations_filter_include": ["dfe", "nhs-trust"]}) == [
        "dfe--attainment", "dfe--pupils", "nhs-trust--ae-attendances", "nhs-trust--patients"]
    assert names({"organizations_filter_exclude": ["dfe", "nhs-trust"]}) == [
        "local-authority--childrens-social-care", "local-authority--ward-population"]
    health = names({"groups_filter_include": ["health"]})
    assert health and all(n.startswith("nhs-trust--") for n in health)
    assert set(names({"groups_filter_exclude": ["health"]})).isdisjoint(health)


def test_the_import_stage_finds_the_remote_organisation_and_groups(harvester: Harvester
                                                                   ) -> None:
    for pkg in harvester.gather({}):
        org, groups = harvester.import_lookups(pkg)
        assert org["id"] == pkg["owner_org"] and org["name"] == pkg["organization"]["name"]
        assert org["created"] and org["title"]
        assert [g["name"] for g in groups] == [g["name"] for g in pkg["groups"]]


# --- DCAT harvesters -------------------------------------------------------------------------

def _graph(text: str, fmt: str) -> rdflib.Graph:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "ConjunctiveGraph is deprecated", DeprecationWarning)
        return rdflib.Graph().parse(data=text, format=fmt)


@pytest.fixture(scope="module")
def shapes() -> rdflib.Graph:
    return rdflib.Graph().parse(Path(SHAPES_PATH))


def test_a_dcat_harvester_gets_turtle_rdf_xml_and_json_ld_of_one_graph(
        demo_hub: HubProcess, shapes: rdflib.Graph) -> None:
    graphs = []
    for accept, fmt in (("text/turtle", "turtle"), ("application/rdf+xml", "xml"),
                        ("application/ld+json", "json-ld")):
        r = httpx.get(f"{demo_hub.url}/api/catalogue/dcat", headers={"Accept": accept},
                      timeout=30)
        assert r.status_code == 200 and r.headers["content-type"].startswith(accept)
        g = _graph(r.text, fmt)
        conforms, _, report = validate(g, shacl_graph=shapes)
        assert conforms, f"{accept}:\n{report}"
        graphs.append(g)
    assert all(isomorphic(graphs[0], g) for g in graphs[1:])
    ttl = httpx.get(f"{demo_hub.url}/api/catalogue/dcat.ttl", timeout=30)
    assert isomorphic(_graph(ttl.text, "turtle"), graphs[0])


def test_dataset_iris_in_the_dcat_dereference_to_rdf(demo_hub: HubProcess) -> None:
    catalogue = _graph(httpx.get(f"{demo_hub.url}/api/catalogue/dcat.ttl", timeout=30).text,
                       "turtle")
    iris = list(catalogue.subjects(RDF.type, DCAT.Dataset))
    assert len(iris) == 6
    for iri in iris:
        r = httpx.get(str(iri), headers={"Accept": "text/turtle"}, timeout=30)
        assert r.status_code == 200, iri
        assert (iri, RDF.type, DCAT.Dataset) in _graph(r.text, "turtle")
        page = httpx.get(str(iri), headers={"Accept": "text/html"}, timeout=30)
        assert page.status_code == 303 and page.headers["location"].startswith(
            f"{demo_hub.url}/datasets/")
