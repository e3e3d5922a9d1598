"""The hub's server-rendered catalogue pages, in-process."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from ndl.access import accounts
from ndl.catalogue import service as catalogue
from ndl.catalogue.metadata import DatasetMeta
from ndl.core.db import Database
from ndl.core.keys import SigningKey
from ndl.federation.models import Datasite
from ndl.hub.app import create_app
from ndl.hub.state import HubSettings
from ndl.web import pages, render

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def _meta(**fields: Any) -> DatasetMeta:
    """Metadata validated exactly as the hub validates what a datasite publishes."""
    return DatasetMeta.model_validate(fields)


def seed_catalogue(db: Database, key: SigningKey) -> None:
    """Two organisations, two datasites, five datasets across the three tiers."""
    with db.write() as s:
        accounts.create_org(s, "nhs-trust", "Northshire NHS Foundation Trust", "nhs")
        accounts.create_org(s, "dfe", "Department for Education", "education")
        nhs = Datasite(id="nhs-trust", org_id="nhs-trust", name="NHS trust datasite",
                       public_key=SigningKey.generate().public_b64)
        dfe = Datasite(id="dfe", org_id="dfe", name="DfE datasite",
                       public_key=SigningKey.generate().public_b64)
        s.add_all([nhs, dfe])
        s.flush()
        trust = "Northshire NHS Foundation Trust"
        catalogue.publish(s, key, nhs, [
            _meta(
                name="ae-attendances", title="A&E attendances", publisher=trust,
                tier="safeguarded", keywords=["A&E", "emergency care"], row_count=1000,
                description="Every attendance at the trust's emergency departments.",
                columns=[
                    {"name": "nhs_number", "type": "string", "sensitivity": "direct_identifier",
                     "join_key": "nhs_number", "description": "NHS number of the patient"},
                    {"name": "arrival_date", "type": "date", "description": "Day of arrival"},
                    {"name": "age_band", "type": "string", "sensitivity": "quasi_identifier"},
                    {"name": "wait_minutes", "type": "integer",
                     "description": "Minutes from arrival to leaving the department"},
                ],
            ),
            _meta(
                name="ambulance-handovers", title="Ambulance handovers", publisher=trust,
                tier="open", row_count=250, keywords=["ambulance"],
                description="Time from ambulance arrival to handover at A&E.",
                columns=[{"name": "handover_minutes", "type": "integer"}],
            ),
            _meta(
                name="outpatient-appointments", title="Outpatient appointments",
                publisher=trust, tier="controlled", row_count=5000,
                description="Outpatient appointments with diagnosis codes.",
                columns=[{"name": "diagnosis_code", "type": "string",
                          "sensitivity": "sensitive"}],
            ),
        ])
        catalogue.publish(s, key, dfe, [
            _meta(
                name="pupil-absence", title="Pupil absence in schools",
                publisher="Department for Education", tier="open", row_count=20000,
                description="Sessions missed by pupils, by school and term.",
                columns=[{"name": "school_urn", "type": "string"},
                         {"name": "sessions_missed", "type": "integer"}],
            ),
            _meta(
                name="school-census", title="School census", tier="controlled",
                publisher="Department for Education", row_count=80000,
                description="Pupil-level census with ethnicity and free school meals.",
                columns=[{"name": "upn", "type": "string", "sensitivity": "direct_identifier",
                          "join_key": "upn"},
                         {"name": "ethnicity", "type": "string", "sensitivity": "sensitive"}],
            ),
        ])


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    app = create_app(HubSettings(db_url=str(tmp_path / "hub.db"), data_dir=tmp_path))
    state = app.state.hub
    seed_catalogue(state.db, state.key)
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def _titles(html: str) -> list[str]:
    """Dataset titles in the order the results list shows them."""
    return re.findall(r'<a class="govuk-link" href="/datasets/[^"]+">([^<]+)</a>', html)


def test_home_shows_counts_and_search_box(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "National Data Library (ndl)" in html
    assert re.search(r'id="count-datasets">\s*<span class="ndl-stat__number">5<', html)
    assert re.search(r'id="count-datasites">\s*<span class="ndl-stat__number">2<', html)
    assert re.search(r'id="count-organisations">\s*<span class="ndl-stat__number">2<', html)
    assert '<form action="/search" method="get"' in html
    assert 'name="q"' in html
    # Not a GOV.UK service: no crown, no GOV.UK wordmark.
    assert "govuk-header__logotype" not in html
    assert "govuk-logo" not in html
    assert "Crown copyright" not in html


def test_search_for_ae_lists_the_ae_dataset_first(client: TestClient) -> None:
    r = client.get("/search", params={"q": "A&E"})
    assert r.status_code == 200
    titles = _titles(r.text)
    assert titles[0] == "A&amp;E attendances"
    assert "Ambulance handovers" in titles  # mentions A&E in its description
    assert "2 datasets found" in r.text
    assert 'href="/datasets/nhs-trust/ae-attendances"' in r.text


def test_tier_facet_narrows_results(client: TestClient) -> None:
    everything = client.get("/search")
    assert "5 datasets found" in everything.text
    assert len(_titles(everything.text)) == 5
    # Facet links carry their counts.
    assert re.search(r'href="/search\?tier=open">Open</a> \(2\)', everything.text)

    narrowed = client.get("/search", params={"tier": "open"})
    assert "2 datasets found" in narrowed.text
    assert sorted(_titles(narrowed.text)) == ["Ambulance handovers", "Pupil absence in schools"]
    assert 'aria-current="true"' in narrowed.text
    assert 'href="/search">Clear filters</a>' in narrowed.text

    both = client.get("/search", params={"tier": "open", "publisher": "Department for Education"})
    assert _titles(both.text) == ["Pupil absence in schools"]
    assert "1 dataset found" in both.text


def test_search_text_is_escaped(client: TestClient) -> None:
    r = client.get("/search", params={"q": "<script>alert(1)</script>"})
    assert r.status_code == 200
    assert "<script>alert(1)</script>" not in r.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    assert "<script" not in r.text.replace('<script type="module" src="/static/ndl.js">', "")


def test_bad_page_number_is_tolerated(client: TestClient) -> None:
    for page in ("0", "-3", "abc", "99"):
        r = client.get("/search", params={"page": page})
        assert r.status_code == 200


def test_dataset_page_shows_schema_and_access(client: TestClient) -> None:
    r = client.get("/datasets/nhs-trust/ae-attendances")
    assert r.status_code == 200
    html = r.text
    assert '<h1 class="govuk-heading-xl govuk-!-margin-bottom-4">A&amp;E attendances</h1>' in html
    assert "govuk-tag--yellow" in html and "Safeguarded" in html
    schema = html[html.index('id="schema"'):html.index("</table>", html.index('id="schema"'))]
    for col in ("nhs_number", "arrival_date", "age_band", "wait_minutes"):
        assert f'<code class="ndl-code">{col}</code>' in schema
    assert "Direct identifier" in schema and "nhs number" in schema
    assert "registered researcher with a project" in html
    assert "aggregate answers" in html
    assert 'href="/api/datasets/nhs-trust/ae-attendances"' in html
    assert "1,000" in html

    controlled = client.get("/datasets/dfe/school-census").text
    assert "govuk-tag--red" in controlled
    assert "an approved project" in controlled and "Your code runs at the data" in controlled

    opened = client.get("/datasets/dfe/pupil-absence").text
    assert "govuk-tag--green" in opened
    assert "Anyone can use it" in opened


def test_json_link_on_dataset_page_works(client: TestClient) -> None:
    r = client.get("/api/datasets/nhs-trust/ae-attendances")
    assert r.status_code == 200
    assert r.json()["title"] == "A&E attendances"


def test_unknown_dataset_is_an_html_404(client: TestClient) -> None:
    r = client.get("/datasets/nhs-trust/no-such-thing")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "Page not found" in r.text
    assert 'href="/search"' in r.text
    assert r.headers["x-frame-options"] == "DENY"


def test_security_headers_on_pages(client: TestClient) -> None:
    for path in ("/", "/search?q=absence", "/datasets/dfe/pupil-absence"):
        r = client.get(path)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "same-origin"
        assert r.headers["x-frame-options"] == "DENY"
        # No inline script: every <script> loads a file.
        assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", r.text))


def test_pages_render_plain_without_built_assets(app: FastAPI, client: TestClient) -> None:
    app.state.ndl_pages.styled = False
    r = client.get("/")
    assert r.status_code == 200
    assert "/static/ndl.css" not in r.text and "/static/ndl.js" not in r.text
    assert "National Data Library" in r.text


def test_missing_assets_are_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ndl.web"):
        assert render.assets_built(tmp_path) is False
    assert "scripts/build_assets.sh" in caplog.text
    for name in render.ASSET_FILES:
        (tmp_path / name).write_text("x")
    assert render.assets_built(tmp_path) is True


def test_missing_static_file_is_a_404(client: TestClient) -> None:
    r = client.get("/static/no-such-file.css")
    assert r.status_code == 404


def test_every_page_route_is_public(app: FastAPI) -> None:
    from ndl.hub.deps import public

    paths = {r.path for r in pages.router.routes if isinstance(r, APIRoute)}
    assert paths == {"/", "/search", "/datasets/{site}/{name}"}
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path in paths:
            calls = [d.call for d in route.dependant.dependencies]
            assert calls.count(public) == 1, route.path


def test_results_are_paged(app: FastAPI, client: TestClient) -> None:
    state = app.state.hub
    with state.db.write() as s:
        site = s.get(Datasite, "dfe")
        assert site is not None
        catalogue.publish(s, state.key, site, [
            _meta(name=f"survey-{i:02d}", title=f"Survey {i:02d}", tier="open",
                  publisher="Department for Education", description="A survey.",
                  columns=[{"name": "answer", "type": "string"}])
            for i in range(40)
        ])
    first = client.get("/search", params={"q": "survey"})
    assert "40 datasets found" in first.text
    assert _titles(first.text) == [f"Survey {i:02d}" for i in range(20)]
    assert 'href="/search?q=survey&amp;page=2"' in first.text
    assert "govuk-pagination__next" in first.text
    assert "govuk-pagination__prev" not in first.text

    second = client.get("/search", params={"q": "survey", "page": "2"})
    assert _titles(second.text) == [f"Survey {i:02d}" for i in range(20, 40)]
    assert "govuk-pagination__prev" in second.text
    assert "govuk-pagination__next" not in second.text
    assert 'aria-current="page"' in second.text


def test_pagination_shows_neighbours_and_ellipses() -> None:
    opts = pages._pagination("x", {}, page=5, pages=9)
    assert opts is not None
    numbers = [i.get("number", "…") for i in opts["items"]]
    assert numbers == [1, "…", 4, 5, 6, "…", 9]
    assert opts["previous"]["href"] == "/search?q=x&page=4"
    assert opts["next"]["href"] == "/search?q=x&page=6"
    assert pages._pagination("x", {}, page=1, pages=1) is None


def test_a_crash_is_an_html_500(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(pages, "search", broken)
    r = client.get("/search", params={"q": "x"})
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("text/html")
    assert "Sorry, there is a problem with the service" in r.text
    assert "boom" not in r.text
    assert r.headers["x-content-type-options"] == "nosniff"
