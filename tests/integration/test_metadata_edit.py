"""Stewards edit metadata through the hub; the datasite validates and keeps it."""

from __future__ import annotations

import json

import httpx
from netfixture import Network


def _patch(network: Network, token: str, changes: dict) -> httpx.Response:
    return httpx.patch(f"{network.hub.url}/api/datasets/nhs-trust/ward-population/metadata",
                       json=changes, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_steward_edits_and_the_datasite_keeps_it(network: Network) -> None:
    r = _patch(network, network.steward, {"description": "Ward populations, rounded to 5.",
                                          "licence": "OGL-UK-3.0", "themes": ["population"]})
    assert r.status_code == 200, r.text
    local = json.loads((network.site.root / "datasets/ward-population/metadata.json").read_text())
    assert local["description"] == "Ward populations, rounded to 5."
    assert local["licence"] == "OGL-UK-3.0"
    with network.client() as c:
        detail = c.dataset("nhs-trust/ward-population")
        kinds = [e["kind"] for e in c.register_entries()["entries"]]
    assert detail["description"] == "Ward populations, rounded to 5." and detail["version"] == 2
    assert "metadata.edit.submitted" in kinds


def test_bad_values_get_field_errors_and_change_nothing(network: Network) -> None:
    before = (network.site.root / "datasets/ward-population/metadata.json").read_text()
    r = _patch(network, network.steward, {"licence": "do what you like"})
    assert r.status_code == 422 and "licence" in r.text
    r = _patch(network, network.steward, {"name": "renamed"})
    assert r.status_code == 422
    assert (network.site.root / "datasets/ward-population/metadata.json").read_text() == before


def test_only_the_owning_stewards_may_edit(network: Network) -> None:
    assert _patch(network, network.researcher, {"description": "x"}).status_code == 403
    network.hub.create_org("dfe", "DfE", "education")
    dfe_steward = network.hub.create_user("dee", ["steward"], org="dfe")
    r = _patch(network, dfe_steward, {"description": "x"})
    assert r.status_code == 403 and "nhs-trust" in r.json()["error"]["message"]
