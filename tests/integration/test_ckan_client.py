"""The catalogue for machines over the real wire: the ``ckanapi`` client against a real hub
process, and an open dataset's rows fetched by GET and read with its Croissant description.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ckanapi
import httpx
import pytest
import rdflib
from netfixture import Network
from pyshacl import validate

from ndl.access import accounts
from ndl.catalogue import service as catalogue
from ndl.catalogue.exporters import ckan as ckan_export
from ndl.catalogue.metadata import DatasetMeta
from ndl.core.keys import SigningKey
from ndl.demo.synth import ORGS, generate_demo_data
from ndl.federation.models import Datasite
from ndl.testing import HubProcess

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import mlcroissant as mlc

SHAPES_PATH = Path(__file__).resolve().parents[3] / "shared/standards/dcat-ap-3.0.0-SHACL.ttl"


def seed_demo_catalogue(hub: HubProcess, root: Path) -> None:
    """Publish the demo organisations' metadata into the hub's database before it starts,
    signed with the key the hub process will load."""
    demo = generate_demo_data(root, people=200, seed=7)
    with hub.db.write() as s:
        for org in ORGS:
            accounts.create_org(s, org.slug, org.name, org.kind)
            site = Datasite(id=org.slug, org_id=org.slug, name=f"{org.name} datasite",
                            public_key=SigningKey.generate().public_b64)
            s.add(site)
            s.flush()
            metas = [DatasetMeta.model_validate_json((d / "metadata.json").read_text("utf-8"))
                     for d in demo.datasets[org.slug]]
            catalogue.publish(s, hub.key, site, metas)


@pytest.fixture(scope="module")
def demo_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """One read-only hub for this module's tests: none of them changes it."""
    root = tmp_path_factory.mktemp("ckan")
    hub = HubProcess(root / "hub")
    seed_demo_catalogue(hub, root / "demo")
    with hub:
        yield hub


@pytest.fixture
def ckan(demo_hub: HubProcess) -> Iterator[ckanapi.RemoteCKAN]:
    with ckanapi.RemoteCKAN(demo_hub.url, user_agent="ndl-tests") as client:
        yield client


def test_ckanapi_searches_the_catalogue(ckan: ckanapi.RemoteCKAN) -> None:
    result = ckan.action.package_search(q="A&E")
    assert result["results"][0]["name"] == "nhs-trust--ae-attendances"
    assert result["count"] >= 1
    everything = ckan.action.package_search(rows=100)
    assert everything["count"] == 6 and len(everything["results"]) == 6
    dfe = ckan.action.package_search(fq="organization:dfe", rows=100)
    assert sorted(p["name"] for p in dfe["results"]) == ["dfe--attainment", "dfe--pupils"]
    page = ckan.action.package_search(rows=2, start=4, sort="title_string asc")
    assert [p["title"] for p in page["results"]] == sorted(
        p["title"] for p in everything["results"])[4:6]


def test_ckanapi_shows_a_package_and_lists_organisations(ckan: ckanapi.RemoteCKAN) -> None:
    pkg = ckan.action.package_show(id="nhs-trust--ae-attendances")
    assert pkg["id"] == ckan_export.package_uuid("nhs-trust/ae-attendances")
    assert pkg["title"] == "A&E attendances"
    assert ckan.action.package_show(id=pkg["id"])["name"] == "nhs-trust--ae-attendances"
    assert pkg["organization"]["title"] == "Northshire NHS Foundation Trust"
    extras = {e["key"]: e["value"] for e in pkg["extras"]}
    assert extras["access_tier"] == "safeguarded"
    assert ckan.action.organization_list() == sorted(o.slug for o in ORGS)
    orgs = ckan.action.organization_list(all_fields=True)
    assert {o["name"]: o["package_count"] for o in orgs} == {o.slug: 2 for o in ORGS}


def _ckanapi_dump(hub: HubProcess, thing: str, out: Path) -> list[dict[str, Any]]:
    """``ckanapi dump THING --all``, the real command line; its workers are ``ckanapi``
    processes found on PATH, so the venv's bin comes first."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ckanapi"), "dump", thing, "--all", "-r", hub.url,
         "-O", str(out), "-p", "1", "-q"],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in out.read_text("utf-8").splitlines()]


def test_ckanapi_dump_copies_the_whole_catalogue(ckan: ckanapi.RemoteCKAN, demo_hub: HubProcess,
                                                 tmp_path: Path) -> None:
    datasets = _ckanapi_dump(demo_hub, "datasets", tmp_path / "datasets.jsonl")
    assert sorted(p["name"] for p in datasets) == ckan.action.package_list()
    assert len(datasets) == 6
    for pkg in datasets:
        assert str(uuid.UUID(pkg["id"])) == pkg["id"]
        assert all(str(uuid.UUID(r["id"])) == r["id"] for r in pkg["resources"])
    orgs = _ckanapi_dump(demo_hub, "organizations", tmp_path / "orgs.jsonl")
    assert sorted(o["name"] for o in orgs) == sorted(o.slug for o in ORGS)
    groups = _ckanapi_dump(demo_hub, "groups", tmp_path / "groups.jsonl")
    assert {g["name"] for g in groups} == set(ckan.action.group_list())


def test_ckanapi_reads_every_action_a_harvester_needs(ckan: ckanapi.RemoteCKAN) -> None:
    assert ckan.action.status_show()["ckan_version"].startswith("2.")
    first = ckan.action.current_package_list_with_resources(limit=2)
    assert len(first) == 2 and all(p["resources"] for p in first)
    org = ckan.action.organization_show(id=first[0]["owner_org"])
    assert org["name"] == first[0]["organization"]["name"]
    res = ckan.action.resource_show(id=first[0]["resources"][0]["id"])
    assert res["package_id"] == first[0]["id"]
    assert "A and E" in ckan.action.tag_list()
    assert {lic["id"] for lic in ckan.action.license_list()} >= {"OGL-UK-3.0"}
    picked = ckan.action.package_search(fq="organization:dfe OR organization:nhs-trust",
                                        sort="id asc", rows=100)
    assert picked["count"] == 4
    assert [p["id"] for p in picked["results"]] == sorted(p["id"] for p in picked["results"])


def test_ckanapi_gets_ckan_errors(ckan: ckanapi.RemoteCKAN, demo_hub: HubProcess) -> None:
    with pytest.raises(ckanapi.NotFound):
        ckan.action.package_show(id="nobody--nothing")
    with pytest.raises(ckanapi.ValidationError):
        ckan.action.package_search(rows="lots")
    with pytest.raises(ckanapi.SearchQueryError):
        ckan.action.package_search(fq="colour:red")
    # The GET-only mode (for read-only mirrors) reaches the same actions.
    with ckanapi.RemoteCKAN(demo_hub.url, get_only=True) as get_only:
        assert get_only.action.package_show(id="dfe--pupils")["name"] == "dfe--pupils"


def test_the_real_hub_serves_conforming_dcat_and_llms_txt(demo_hub: HubProcess) -> None:
    shapes = rdflib.Graph().parse(SHAPES_PATH)
    doc = httpx.get(f"{demo_hub.url}/api/catalogue/dcat", timeout=10).json()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "ConjunctiveGraph is deprecated", DeprecationWarning)
        graph = rdflib.Graph().parse(data=json.dumps(doc), format="json-ld")
    conforms, _, report = validate(graph, shacl_graph=shapes)
    assert conforms, report
    llms = httpx.get(f"{demo_hub.url}/llms.txt", timeout=10)
    assert llms.status_code == 200 and llms.text.startswith("# National Data Library\n")
    assert f"{demo_hub.url}/datasets/dfe/pupils.md" in llms.text


def _records(doc: dict[str, Any], csv_path: Path) -> list[dict[str, Any]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rdflib and pandas deprecations inside mlcroissant
        dataset = mlc.Dataset(jsonld=doc, mapping={"rows.csv": str(csv_path)})
        return list(dataset.records("rows"))


def test_open_rows_download_and_load_through_croissant(network: Network, tmp_path: Path
                                                       ) -> None:
    """The file a Croissant description names is really served, and reads as described."""
    url = network.hub.url
    doc = httpx.get(f"{url}/api/datasets/nhs-trust/ward-population/croissant", timeout=10).json()
    (file,) = doc["distribution"]
    assert file["contentUrl"] == f"{url}/api/datasets/nhs-trust/ward-population/rows?format=csv"
    r = httpx.get(file["contentUrl"], timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["x-ndl-truncated"] == "false"
    assert r.text.splitlines() == ["ward,population", "A,100", "B,5", "C,7"]
    csv_path = tmp_path / "rows.csv"
    csv_path.write_bytes(r.content)
    records = _records(doc, csv_path)
    assert [(rec["rows/ward"], rec["rows/population"]) for rec in records] == [
        (b"A", 100), (b"B", 5), (b"C", 7)]
    refused = httpx.get(f"{url}/api/datasets/nhs-trust/ae-attendances/rows", timeout=10)
    assert refused.status_code == 403
