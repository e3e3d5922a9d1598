"""The OpenAPI document says what the hub answers (schemathesis checks it against a real hub in
tests/integration/test_api_contract.py; this checks the declarations themselves, quickly)."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any, get_args

import pytest

from ndl.catalogue.search import SORTS
from ndl.hub.api import Sort
from ndl.hub.app import create_app
from ndl.hub.ckan_api import ACTIONS
from ndl.hub.state import HubSettings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("hub")
    app = create_app(HubSettings(db_url=str(tmp / "hub.db"), data_dir=tmp))
    with TestClient(app) as c:
        found: dict[str, Any] = c.get("/api/openapi.json").json()
    app.state.hub.db.dispose()
    return found


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, ops in doc["paths"].items() for m, op in ops.items()]


def test_every_operation_declares_its_errors_in_the_one_envelope(doc: dict[str, Any]) -> None:
    envelope = {"$ref": "#/components/schemas/ErrorEnvelope"}
    for method, path, op in _operations(doc):
        responses = op["responses"]
        assert {"401", "413"} <= set(responses), f"{method} {path}"
        if "{" in path:
            assert "404" in responses, f"{method} {path}"
        if method != "GET":
            assert "409" in responses, f"{method} {path}"
        for status in ("401", "413"):
            assert responses[status]["content"]["application/json"]["schema"] == envelope


def test_role_routes_declare_403_and_say_which_role(doc: dict[str, Any]) -> None:
    refused = doc["paths"]["/api/orgs"]["post"]["responses"]["403"]["description"]
    assert "admin" in refused


def test_no_dangling_references_and_no_fastapi_422_shape(doc: dict[str, Any]) -> None:
    text = json.dumps(doc)
    refs = set(re.findall(r"#/components/schemas/([\w.-]+)", text))
    assert refs <= set(doc["components"]["schemas"])
    assert "HTTPValidationError" not in text


def test_sort_and_ckan_actions_are_enumerated(doc: dict[str, Any]) -> None:
    assert get_args(Sort) == SORTS
    sort = next(p for p in doc["paths"]["/api/datasets"]["get"]["parameters"]
                if p["name"] == "sort")
    assert sort["schema"]["enum"] == list(SORTS)
    action = doc["paths"]["/api/3/action/{action}"]["get"]["parameters"][0]
    assert action["schema"]["enum"] == sorted(ACTIONS)


def test_federation_bodies_are_signed_envelopes(doc: dict[str, Any]) -> None:
    for name in ("register", "publish", "mock", "poll", "heartbeat", "reply"):
        body = doc["paths"][f"/api/federation/{name}"]["post"]["requestBody"]
        assert body["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/SignedEnvelope"}
    assert {"sender", "sig", "body", "nonce"} <= set(
        doc["components"]["schemas"]["SignedEnvelope"]["required"])


def test_csv_answers_are_declared(doc: dict[str, Any]) -> None:
    for path in ("/api/datasets/{site}/{name}/rows", "/api/datasets/{site}/{name}/mock"):
        assert "text/csv" in doc["paths"][path]["get"]["responses"]["200"]["content"]


def test_docs_page_loads_nothing_from_other_servers(tmp_path: Path) -> None:
    app = create_app(HubSettings(db_url=str(tmp_path / "hub.db"), data_dir=tmp_path))
    with TestClient(app) as c:
        html = c.get("/api/docs").text
    app.state.hub.db.dispose()
    assert "/api/docs/assets/swagger-ui-bundle.js" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
