"""The hub's server-rendered catalogue pages, in-process: home, search, dataset pages."""

from __future__ import annotations

import html as markup
import io
import json
import logging
import re
import shutil
import warnings
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from ndl.access import accounts
from ndl.catalogue import mocks
from ndl.catalogue import service as catalogue
from ndl.catalogue.exporters.schemaorg import dataset_schemaorg
from ndl.catalogue.metadata import LICENCES, DatasetMeta
from ndl.catalogue.models import Dataset
from ndl.core.db import Database
from ndl.core.keys import SigningKey
from ndl.core.tiers import TIERS
from ndl.federation.models import Datasite
from ndl.hub.app import create_app
from ndl.hub.deps import public
from ndl.hub.state import HubSettings
from ndl.web import pages, render, session

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

BASE = "https://testserver"
PASSWORD = "correct horse battery"
OGL = LICENCES["OGL-UK-3.0"]
AE = "nhs-trust/ae-attendances"
AGE_BANDS = [{"code": "0-15", "label": "Children"}, {"code": "16-64", "label": "Adults"},
             {"code": "65+", "label": "Older people"}]


def _meta(**fields: Any) -> DatasetMeta:
    """Metadata validated exactly as the hub validates what a datasite publishes."""
    return DatasetMeta.model_validate(fields)


def ae_meta(**changes: Any) -> DatasetMeta:
    """A&E attendances with every metadata field filled in."""
    fields: dict[str, Any] = dict(
        name="ae-attendances", title="A&E attendances",
        publisher="Northshire NHS Foundation Trust", tier="safeguarded",
        keywords=["A&E", "emergency care"], row_count=1000,
        description="Every attendance at the trust's emergency departments.",
        contact={"name": "Data Access Team", "email": "data@northshire.nhs.example"},
        licence="OGL-UK-3.0", themes=["health"], spatial="Northshire",
        temporal={"start": "2019-04-01", "end": "2024-03-31"}, update_frequency="monthly",
        issued="2019-05-01", modified="2024-04-15", population_size=250_000,
        known_issues="Arrival times before 2020 are rounded to the hour.",
        last_verified="2024-05-01",
        policy_summary="Aggregates only; groups under 10 people are withheld.",
        access={"route": "Ask through the library with a project.", "lead_time_days": 0,
                "cost": "Free for research", "linkable_datasets": [
                    "dfe/school-census", "elsewhere/not-catalogued"]},
        columns=[
            {"name": "nhs_number", "type": "string", "sensitivity": "direct_identifier",
             "join_key": "nhs_number", "description": "NHS number of the patient"},
            {"name": "arrival_date", "type": "date", "description": "Day of arrival"},
            {"name": "age_band", "type": "string", "sensitivity": "quasi_identifier",
             "description": "Age group", "code_list": AGE_BANDS},
            {"name": "wait_minutes", "type": "integer", "unit": "minutes",
             "description": "Minutes from arrival to leaving the department"},
        ],
    )
    fields.update(changes)
    return _meta(**fields)


def mock_parquet(rows: int = 25) -> bytes:
    """Synthetic rows in A&E attendances' schema, as a datasite would send them."""
    table = pa.table({
        "nhs_number": [f"999{i:07d}" for i in range(rows)],
        "arrival_date": [date(2023, 1, 1) + timedelta(days=i) for i in range(rows)],
        "age_band": [AGE_BANDS[i % 3]["code"] for i in range(rows)],
        "wait_minutes": pa.array([30 + i for i in range(rows)], pa.int64()),
    })
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def seed_catalogue(db: Database, key: SigningKey) -> None:
    """Two organisations, two datasites, five datasets across the three tiers, a mock for
    A&E attendances and two users who can sign in (a researcher and an admin)."""
    with db.write() as s:
        accounts.create_org(s, "nhs-trust", "Northshire NHS Foundation Trust", "nhs")
        accounts.create_org(s, "dfe", "Department for Education", "education")
        accounts.create_user(s, "rita", roles=["researcher"], password=PASSWORD)
        accounts.create_user(s, "ada", roles=["admin"], password=PASSWORD)
        nhs = Datasite(id="nhs-trust", org_id="nhs-trust", name="NHS trust datasite",
                       public_key=SigningKey.generate().public_b64)
        dfe = Datasite(id="dfe", org_id="dfe", name="DfE datasite",
                       public_key=SigningKey.generate().public_b64)
        s.add_all([nhs, dfe])
        s.flush()
        trust = "Northshire NHS Foundation Trust"
        catalogue.publish(s, key, nhs, [
            ae_meta(),
            _meta(
                name="ambulance-handovers", title="Ambulance handovers", publisher=trust,
                tier="open", row_count=250, keywords=["ambulance"], themes=["health"],
                description="Time from ambulance arrival to handover at A&E.",
                columns=[{"name": "handover_minutes", "type": "integer"}],
            ),
            _meta(
                name="outpatient-appointments", title="Outpatient appointments",
                publisher=trust, tier="controlled", row_count=5000, themes=["health"],
                description="Outpatient appointments with diagnosis codes.",
                columns=[{"name": "diagnosis_code", "type": "string",
                          "sensitivity": "sensitive"}],
            ),
        ])
        catalogue.publish(s, key, dfe, [
            _meta(
                name="pupil-absence", title="Pupil absence in schools",
                publisher="Department for Education", tier="open", row_count=20000,
                themes=["education"], spatial="England",
                temporal={"start": "2018-09-01", "end": "2023-07-31"},
                description="Sessions missed by pupils, by school and term.",
                columns=[{"name": "school_urn", "type": "string"},
                         {"name": "sessions_missed", "type": "integer"}],
            ),
            _meta(
                name="school-census", title="School census", tier="controlled",
                publisher="Department for Education", row_count=80000,
                themes=["education"], spatial="England", temporal={"start": "2015-09-01"},
                access={"lead_time_days": 90},
                description="Pupil-level census with ethnicity and free school meals.",
                columns=[{"name": "upn", "type": "string", "sensitivity": "direct_identifier",
                          "join_key": "upn"},
                         {"name": "ethnicity", "type": "string", "sensitivity": "sensitive"}],
            ),
        ])
        ae = s.get(Dataset, AE)
        assert ae is not None
        mocks.store_mock(s, key, ae, mock_parquet(), method="test")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hub folder seeded once per module (password hashing is slow on purpose)."""
    folder = tmp_path_factory.mktemp("seeded-hub")
    template = create_app(HubSettings(db_url=str(folder / "hub.db"), data_dir=folder))
    seed_catalogue(template.state.hub.db, template.state.hub.key)
    template.state.hub.db.dispose()
    return folder


def hub_app(seeded: Path, data_dir: Path, **settings: Any) -> FastAPI:
    """A hub on a fresh copy of the seeded database and key (no web secret yet)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for f in seeded.iterdir():
        if f.name.startswith("hub.db") or f.name == "hub-key.pem":
            shutil.copy(f, data_dir / f.name)
    return create_app(HubSettings(db_url=str(data_dir / "hub.db"), data_dir=data_dir,
                                  **settings))


@pytest.fixture
def app(seeded: Path, tmp_path: Path) -> Iterator[FastAPI]:
    app = hub_app(seeded, tmp_path / "hub")
    yield app
    app.state.hub.db.dispose()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url=BASE) as c:
        yield c


def form_token(html: str) -> str:
    """The CSRF token a page's form carries."""
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "the page has no form with a CSRF token"
    return m.group(1)


def sign_in(client: TestClient, username: str = "rita", password: str = PASSWORD,
            next_url: str = "/") -> Any:
    """Sign in through the form, as a browser does."""
    page = client.get("/sign-in")
    return client.post("/sign-in", data={"username": username, "password": password,
                                         "next": next_url,
                                         "csrf_token": form_token(page.text)},
                       follow_redirects=False)


def _titles(html: str) -> list[str]:
    """Dataset titles in the order the results list shows them."""
    return re.findall(r'<a class="govuk-link" href="/datasets/[^"]+">([^<]+)</a>', html)


def _section(html: str, element_id: str, end: str) -> str:
    """The HTML from the element with ``element_id`` to the next ``end`` tag."""
    start = html.index(f'id="{element_id}"')
    return html[start:html.index(end, start)]


def _json_ld(html: str) -> Any:
    blocks = re.findall(r'<script type="application/ld\+json"[^>]*>(.*?)</script>', html, re.S)
    assert len(blocks) == 1
    return json.loads(blocks[0])


# --- home and search --------------------------------------------------------------------

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
    assert 'href="/sign-in"' in html and "Signed in as" not in html
    assert 'href="/llms.txt"' in html
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


def test_every_facet_is_listed_with_counts(client: TestClient) -> None:
    html = client.get("/search").text
    labels = re.findall(r'<div class="ndl-facet" id="facet-(\w+)">\s*<h3[^>]*>([^<]+)</h3>', html)
    assert labels == [("publisher", "Publisher"), ("tier", "Access tier"), ("theme", "Theme"),
                      ("geography", "Geography"), ("year", "Year (time coverage)"),
                      ("join_key", "Join key type")]
    assert re.search(r'href="/search\?tier=open">Open</a> \(2\)', html)
    assert re.search(r'href="/search\?theme=health">Health</a> \(3\)', html)
    assert re.search(r'href="/search\?geography=England">England</a> \(2\)', html)
    assert re.search(r'href="/search\?join_key=nhs_number">NHS number</a> \(1\)', html)
    assert re.search(r'href="/search\?join_key=upn">Unique pupil number \(UPN\)</a> \(1\)', html)
    assert re.search(r'href="/search\?publisher=Department\+for\+Education">'
                     r"Department for Education</a> \(2\)", html)
    # Years run newest first; 2020 is covered by A&E, pupil absence and the census.
    years = re.findall(r'href="/search\?year=(\d{4})"', html)
    assert years == sorted(years, reverse=True)
    assert re.search(r'href="/search\?year=2020">2020</a> \(3\)', html)
    # Long lists keep their tail behind a disclosure that needs no JavaScript.
    year_facet = html[html.index('id="facet-year"'):html.index('id="facet-join_key"')]
    assert '<details class="govuk-details' in year_facet
    assert len(re.findall(r"<li class=\"ndl-facet__item\">", year_facet)) == len(years)


def test_tier_facet_narrows_results(client: TestClient) -> None:
    everything = client.get("/search")
    assert "5 datasets found" in everything.text
    assert len(_titles(everything.text)) == 5

    narrowed = client.get("/search", params={"tier": "open"})
    assert "2 datasets found" in narrowed.text
    assert sorted(_titles(narrowed.text)) == ["Ambulance handovers", "Pupil absence in schools"]
    assert 'aria-current="true"' in narrowed.text
    assert 'href="/search" id="clear-filters">Clear filters</a>' in narrowed.text
    # The chosen value's link un-chooses it.
    assert re.search(r'href="/search" aria-current="true"><strong>Open</strong>', narrowed.text)

    both = client.get("/search", params={"tier": "open", "publisher": "Department for Education"})
    assert _titles(both.text) == ["Pupil absence in schools"]
    assert "1 dataset found" in both.text


@pytest.mark.parametrize("filters,titles", [
    ({"join_key": "nhs_number"}, ["A&amp;E attendances"]),
    ({"theme": "education", "tier": "controlled"}, ["School census"]),
    ({"geography": "England", "year": "2016"}, ["School census"]),
    ({"year": "2019", "theme": "health"}, ["A&amp;E attendances"]),
    ({"theme": "health", "tier": "open"}, ["Ambulance handovers"]),
])
def test_facets_combine(client: TestClient, filters: dict[str, str], titles: list[str]) -> None:
    r = client.get("/search", params=filters)
    assert r.status_code == 200
    assert _titles(r.text) == titles
    assert "Filtered by:" in r.text
    # Every facet link keeps the other filters.
    for name, value in filters.items():
        others = [link for link in re.findall(r'<a class="govuk-link" href="(/search\?[^"]*)">',
                                              r.text)]
        assert others and all(f"{name}=" in link for link in others), name
        assert value


def test_results_show_themes_coverage_and_a_snippet(client: TestClient) -> None:
    html = client.get("/search", params={"q": "pupils"}).text
    result = html[html.index('id="results"'):]
    assert "Pupil absence in schools" in result
    assert "<dt>Themes:</dt> <dd>Education</dd>" in result
    assert "<dt>Coverage:</dt> <dd>England, 1 September 2018 to 31 July 2023</dd>" in result
    assert '<mark class="ndl-mark">pupils</mark>' in result

    census = client.get("/search", params={"q": "ethnicity", "tier": "controlled"}).text
    assert "England, from 1 September 2015" in census

    # A dataset found by a column says which column matched.
    by_column = client.get("/search", params={"q": "handover"}).text
    assert "Matching column:" not in by_column  # its description says "handover" already
    wait = client.get("/search", params={"q": "wait"}).text
    assert re.search(r'Matching column:\s*<code class="ndl-code">wait_minutes</code>', wait)


def test_snippet_marks_words_and_escapes_text() -> None:
    text = "Counts of <b>pupils</b> & schools; " + "filler words " * 40 + "the pupil census."
    out = str(pages.snippet(text, "pupils"))
    assert "&lt;b&gt;" in out and "<b>" not in out and "&amp;" in out
    assert '<mark class="ndl-mark">pupils</mark>' in out
    assert out.endswith("…")
    later = str(pages.snippet(text, "census"))
    assert later.startswith("…") and '<mark class="ndl-mark">census</mark>' in later


def test_sort_is_a_get_form_and_is_kept_in_links(client: TestClient) -> None:
    r = client.get("/search", params={"sort": "title", "tier": "controlled"})
    assert r.status_code == 200
    html = r.text
    form = html[html.index('id="sort-form"'):html.index("</form>", html.index('id="sort-form"'))]
    assert 'method="get"' in html[html.rindex("<form", 0, html.index('id="sort-form"')):][:80]
    assert '<input type="hidden" name="tier" value="controlled">' in form
    options = re.findall(r'<option value="(\w+)"( selected)?>([^<]+)</option>', form)
    assert [(v, t) for v, _, t in options] == [
        ("relevance", "Relevance"), ("title", "Title (A to Z)"),
        ("updated", "Recently updated"), ("rows", "Most rows")]
    assert [v for v, sel, _ in options if sel] == ["title"]
    assert _titles(html) == ["Outpatient appointments", "School census"]
    # Facet links and the search box keep the sort.
    assert 'href="/search?sort=title" aria-current="true">' in html  # un-choosing the tier
    assert 'href="/search?tier=controlled&amp;theme=education&amp;sort=title">' in html
    assert '<input type="hidden" name="sort" value="title">' in html


def test_most_rows_sorts_biggest_first(client: TestClient) -> None:
    titles = _titles(client.get("/search", params={"sort": "rows"}).text)
    assert titles[0] == "School census"


def test_unknown_sort_shows_an_error_summary_not_a_500(client: TestClient) -> None:
    r = client.get("/search", params={"sort": "shoe-size"})
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("text/html")
    assert "govuk-error-summary" in r.text and "There is a problem" in r.text
    assert "sort must be one of relevance, title, updated, rows" in r.text
    assert 'href="#sort"' in r.text
    assert "<title>Error: " in r.text


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

    by_title = client.get("/search", params={"q": "survey", "sort": "title"})
    assert 'href="/search?q=survey&amp;sort=title&amp;page=2"' in by_title.text


def test_pagination_shows_neighbours_and_ellipses() -> None:
    opts = pages.pagination_view("x", {}, page=5, pages=9)
    assert opts is not None
    numbers = [i.get("number", "…") for i in opts["items"]]
    assert numbers == [1, "…", 4, 5, 6, "…", 9]
    assert opts["previous"]["href"] == "/search?q=x&page=4"
    assert opts["next"]["href"] == "/search?q=x&page=6"
    assert pages.pagination_view("x", {}, page=1, pages=1) is None
    sorted_opts = pages.pagination_view("x", {"tier": "open"}, page=1, pages=2, sort="rows")
    assert sorted_opts is not None
    assert sorted_opts["next"]["href"] == "/search?q=x&tier=open&sort=rows&page=2"


# --- dataset pages ----------------------------------------------------------------------

def test_dataset_page_shows_every_metadata_field(client: TestClient) -> None:
    r = client.get("/datasets/nhs-trust/ae-attendances")
    assert r.status_code == 200
    html = r.text
    assert '<h1 class="govuk-heading-xl govuk-!-margin-bottom-4">A&amp;E attendances</h1>' in html
    assert "govuk-tag--yellow" in html and "Safeguarded" in html
    summary = _section(html, "dataset-summary", "</dl>")
    expected = {
        "summary-contact": 'href="mailto:data@northshire.nhs.example"',
        "summary-licence": f'href="{OGL}" rel="license">Open Government Licence v3.0</a>',
        "summary-themes": 'href="/search?theme=health">Health</a>',
        "summary-spatial": "Northshire",
        "summary-temporal": "1 April 2019 to 31 March 2024",
        "summary-frequency": "Monthly",
        "summary-rows": "1,000",
        "summary-population": "250,000",
        "summary-issued": "1 May 2019",
        "summary-modified": "15 April 2024",
        "summary-verified": "1 May 2024",
        "summary-version": "1",
    }
    for row_id, text in expected.items():
        assert row_id in summary, row_id
        row = summary[summary.index(row_id):]
        row = row[:row.index("</div>")]
        assert text in row, (row_id, row)
    assert "Data Access Team" in summary
    assert "Known issues: Arrival times before 2020 are rounded to the hour." in html


def test_dataset_page_schema_has_units_and_code_lists(client: TestClient) -> None:
    html = client.get("/datasets/nhs-trust/ae-attendances").text
    full_schema = html[html.index('id="schema"'):html.index('id="access"')]
    schema = full_schema[:full_schema.index("</thead>")]
    for col in ("nhs_number", "arrival_date", "age_band", "wait_minutes"):
        # Long names may wrap after an underscore, never mid-word.
        wrappable = col.replace("_", "_<wbr>")
        assert f'<code class="ndl-code ndl-code--identifier">{wrappable}</code>' in full_schema
    assert re.findall(r'<th scope="col" class="govuk-table__header">([^<]+)</th>', schema) == [
        "Column", "Type", "Unit", "Description", "Sensitivity", "Join key"]
    wait = full_schema[full_schema.index('id="column-wait_minutes"'):]
    assert '<td class="govuk-table__cell">minutes</td>' in wait
    assert "Direct identifier" in full_schema and "Quasi-identifier" in full_schema
    assert 'href="/search?join_key=nhs_number">NHS number</a>' in full_schema
    # One disclosure, on the column that has a code list, listing every code.
    assert full_schema.count('<details class="govuk-details') == 1
    age = full_schema[full_schema.index('id="column-age_band"'):
                      full_schema.index('id="column-wait_minutes"')]
    assert "Code list (3 codes)" in age
    for entry in AGE_BANDS:
        assert f'<code class="ndl-code">{entry["code"]}</code>' in age
        assert entry["label"] in age


def test_dataset_page_says_how_to_get_access_and_the_wait(client: TestClient) -> None:
    html = client.get("/datasets/nhs-trust/ae-attendances").text
    access = html[html.index('id="access"'):html.index('id="mock"')]
    # The tier is explained in the words of core.tiers, its one definition.
    safeguarded = TIERS["safeguarded"]
    for words in (safeguarded.summary, safeguarded.what_you_get, safeguarded.how_to_reach):
        assert words in markup.unescape(access)
    assert re.search(r"<strong>Expected wait:</strong>\s*no wait", access)
    assert "Ask through the library with a project." in access
    assert "Free for research" in access
    assert "Aggregates only; groups under 10 people are withheld." in access
    linkable = access[access.index('id="access-linkable"'):]
    assert '<a class="govuk-link" href="/datasets/dfe/school-census">School census</a>' in linkable
    assert '<code class="ndl-code">elsewhere/not-catalogued</code>' in linkable
    assert 'href="/datasets/elsewhere' not in linkable

    census = client.get("/datasets/dfe/school-census").text
    access = census[census.index('id="access"'):census.index('id="mock"')]
    assert "govuk-tag--red" in census
    # Controlled data: metadata, mocks, and the steps to run code at the data.
    assert TIERS["controlled"].what_you_get in markup.unescape(access)
    run = access[access.index('id="run-code"'):]
    assert "ndl job init" in run and "ndl run my-job --mock" in run and "ndl submit" in run
    assert re.search("<strong>Expected wait:</strong>\\s*90 days, the publisher\u2019s estimate; "
                     r"then a data steward&#39;s review", access)
    # Without a stated cost or route, no empty rows are shown.
    assert 'id="access-cost"' not in access and 'id="access-route"' not in access

    opened = client.get("/datasets/dfe/pupil-absence").text
    assert "govuk-tag--green" in opened
    assert markup.escape(TIERS["open"].summary) in opened
    assert re.search(r"<strong>Expected wait:</strong>\s*no wait", opened)


def test_dataset_page_lists_versions_and_machine_readable_links(
        app: FastAPI, client: TestClient) -> None:
    state = app.state.hub
    with state.db.write() as s:
        site = s.get(Datasite, "nhs-trust")
        assert site is not None
        catalogue.publish(s, state.key, site, [ae_meta(row_count=1200)])
    html = client.get("/datasets/nhs-trust/ae-attendances").text
    versions = _section(html, "versions-table", "</table>")
    assert re.findall(r'<td class="govuk-table__cell">(\d+)( \(current\))?</td>', versions) == [
        ("2", " (current)"), ("1", "")]
    api = "/api/datasets/nhs-trust/ae-attendances"
    formats = html[html.index('id="formats"'):]
    for link_id, href in [("json-link", api), ("dcat-link", f"{api}/dcat"),
                          ("croissant-link", f"{api}/croissant"),
                          ("markdown-link", "/datasets/nhs-trust/ae-attendances.md"),
                          ("ckan-link", "/api/3/action/package_show?id=nhs-trust--ae-attendances"),
                          ("versions-link", f"{api}/versions")]:
        assert f'href="{href}" id="{link_id}"' in formats, link_id
    head = html[:html.index("</head>")]
    assert f'<link rel="alternate" type="application/ld+json" href="{api}/dcat"' in head
    assert f'<link rel="alternate" type="application/ld+json" href="{api}/croissant"' in head
    assert f'<link rel="alternate" type="application/json" href="{api}"' in head
    md = "/datasets/nhs-trust/ae-attendances.md"
    assert f'<link rel="alternate" type="text/markdown" href="{md}"' in head


def test_machine_readable_links_resolve(client: TestClient) -> None:
    """The JSON link is the lead's API; the others are the open-API engineer's routes."""
    html = client.get("/datasets/nhs-trust/ae-attendances").text
    r = client.get("/api/datasets/nhs-trust/ae-attendances")
    assert r.status_code == 200 and r.json()["title"] == "A&E attendances"
    for href in re.findall(r'href="([^"]+)" id="(?:dcat|croissant|markdown|ckan|versions)-link"',
                           html):
        assert client.get(href.replace("&amp;", "&")).status_code == 200, href


def test_schema_org_json_ld_is_embedded(client: TestClient) -> None:
    html = client.get("/datasets/nhs-trust/ae-attendances").text
    doc = _json_ld(html[:html.index("</head>")])
    page = f"{BASE}/datasets/nhs-trust/ae-attendances"
    assert doc["@context"] == "https://schema.org/" and doc["@type"] == "Dataset"
    assert doc["name"] == "A&E attendances"
    assert doc["url"] == page and doc["identifier"] == AE
    assert doc["description"] == "Every attendance at the trust's emergency departments."
    assert doc["keywords"] == ["A&E", "emergency care", "health"]
    assert doc["publisher"]["@type"] == "Organization"
    assert doc["publisher"]["name"] == "Northshire NHS Foundation Trust"
    assert doc["publisher"]["contactPoint"]["email"] == "data@northshire.nhs.example"
    assert doc["license"] == OGL
    assert doc["temporalCoverage"] == "2019-04-01/2024-03-31"
    assert doc["spatialCoverage"] == {"@type": "Place", "name": "Northshire"}
    assert doc["isAccessibleForFree"] is True  # "Free for research"
    assert doc["conditionsOfAccess"].startswith("Safeguarded")
    assert doc["dateModified"] == "2024-04-15" and doc["datePublished"] == "2019-05-01"
    assert doc["version"] == "1"
    wait = next(v for v in doc["variableMeasured"] if v["name"] == "wait_minutes")
    assert wait == {"@type": "PropertyValue", "name": "wait_minutes", "unitText": "minutes",
                    "description": "Minutes from arrival to leaving the department"}
    assert len(doc["variableMeasured"]) == 4
    downloads = {d["contentUrl"]: d for d in doc["distribution"]}
    assert all(d["@type"] == "DataDownload" for d in downloads.values())
    assert downloads[f"{BASE}/api/datasets/{AE}"]["encodingFormat"] == "application/json"
    assert downloads[f"{BASE}/api/datasets/{AE}/mock?format=csv"]["encodingFormat"] == "text/csv"


def test_json_ld_cannot_be_broken_out_of(app: FastAPI, client: TestClient) -> None:
    nasty = "Ends early </script><script>alert(1)</script> <!-- <script> & more"
    state = app.state.hub
    with state.db.write() as s:
        site = s.get(Datasite, "nhs-trust")
        assert site is not None
        catalogue.publish(s, state.key, site, [ae_meta(description=nasty,
                                                       title="</script><b>Title</b>")])
    html = client.get("/datasets/nhs-trust/ae-attendances").text
    assert "<script>alert(1)" not in html
    assert "<b>Title</b>" not in html
    head = html[:html.index("</head>")]
    # The block still ends where it should and parses back to the publisher's exact text.
    doc = _json_ld(head)
    assert doc["description"] == nasty and doc["name"] == "</script><b>Title</b>"
    block = head[head.index('<script type="application/ld+json"'):]
    assert "<" not in block[1:block.index("</script>")]


def test_mock_preview_asks_anonymous_users_to_sign_in(client: TestClient) -> None:
    html = client.get("/datasets/nhs-trust/ae-attendances").text
    mock = html[html.index('id="mock"'):html.index('id="versions"')]
    assert "Sign in to preview and download mock rows" in mock
    assert 'href="/sign-in?next=%2Fdatasets%2Fnhs-trust%2Fae-attendances"' in mock
    assert 'id="mock-table"' not in mock and "999000" not in html


def test_mock_preview_shows_ten_synthetic_rows_when_signed_in(client: TestClient) -> None:
    assert sign_in(client).status_code == 303
    r = client.get("/datasets/nhs-trust/ae-attendances")
    html = r.text
    assert r.headers["cache-control"] == "private, no-store"
    mock = html[html.index('id="mock"'):html.index('id="versions"')]
    assert "Synthetic mock data — not real records" in mock
    table = mock[mock.index('id="mock-table"'):mock.index("</table>")]
    assert len(re.findall(r"<tr class=\"govuk-table__row\">", table)) == 11  # header + 10
    assert "9990000000" in table and "9990000009" in table and "9990000010" not in table
    assert "2023-01-01" in table
    assert "The first 10 of 25 made-up rows" in mock
    href = "/api/datasets/nhs-trust/ae-attendances/mock?format=csv"
    assert f'href="{href}" id="mock-download"' in mock
    # The download link works with the same session cookie.
    csv = client.get(href)
    assert csv.status_code == 200 and csv.text.startswith('"nhs_number","arrival_date"')

    census = client.get("/datasets/dfe/school-census").text
    assert "There is no mock data for this dataset yet" in census


def test_open_data_offers_sql_instead_of_a_mock(client: TestClient) -> None:
    for signed_in in (False, True):
        if signed_in:
            sign_in(client)
        html = client.get("/datasets/dfe/pupil-absence").text
        mock = html[html.index('id="mock"'):html.index('id="versions"')]
        assert "Open data: query it with SQL" in mock
        assert 'href="/api/docs" id="api-docs-link"' in mock
        assert "POST /api/datasets/dfe/pupil-absence/sql" in mock
        assert "Sign in to preview" not in mock and 'id="mock-table"' not in mock


def test_unknown_dataset_is_an_html_404(client: TestClient) -> None:
    r = client.get("/datasets/nhs-trust/no-such-thing")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "Page not found" in r.text
    assert 'href="/search"' in r.text
    assert r.headers["x-frame-options"] == "DENY"


def test_security_headers_on_pages(client: TestClient) -> None:
    for path in ("/", "/search?q=absence", "/datasets/dfe/pupil-absence", "/sign-in"):
        r = client.get(path)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "same-origin"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["vary"] == "Cookie"
        assert "cache-control" not in r.headers  # anonymous pages may be cached
        # No inline script: every <script> loads a file, or is a JSON-LD data block.
        for tag in re.findall(r"<script[^>]*>", r.text):
            assert "src=" in tag or 'type="application/ld+json"' in tag, tag


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


def test_every_page_route_is_public() -> None:
    # Walk the page routers themselves: this FastAPI keeps included routers nested inside
    # app.routes, so a walk over app.routes alone would see none of them.
    routes = [r for router in (pages.router, session.router) for r in router.routes
              if isinstance(r, APIRoute)]
    assert {(r.path, m) for r in routes for m in r.methods} == {
        ("/", "GET"), ("/search", "GET"), ("/datasets/{site}/{name}", "GET"),
        ("/sign-in", "GET"), ("/sign-in", "POST"), ("/sign-out", "POST")}
    for route in routes:
        calls = [d.call for d in route.dependant.dependencies]
        assert calls.count(public) == 1, route.path


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


# --- the schema.org exporter on its own ---------------------------------------------------

def test_schema_org_for_open_data_and_open_ended_coverage() -> None:
    detail = {"id": "dfe/pupil-absence", "title": "Pupil absence", "publisher": "DfE",
              "org": "dfe", "tier": "open", "description": "", "keywords": [],
              "columns": [{"name": "n", "type": "integer"}], "temporal": {"start": "2015-09-01"},
              "version": 3}
    doc = dataset_schemaorg(detail, "https://library.example/", has_mock=False)
    assert doc["temporalCoverage"] == "2015-09-01/.."
    assert doc["isAccessibleForFree"] is True
    assert doc["url"] == "https://library.example/datasets/dfe/pupil-absence"
    assert doc["description"]  # schema.org needs one; the publisher gave none
    urls = [d["contentUrl"] for d in doc["distribution"]]
    assert urls == ["https://library.example/api/datasets/dfe/pupil-absence",
                    "https://library.example/api/datasets/dfe/pupil-absence/rows?format=csv"]
    assert "license" not in doc and "spatialCoverage" not in doc and "keywords" not in doc
    assert doc["variableMeasured"] == [{"@type": "PropertyValue", "name": "n"}]

    controlled = {**detail, "tier": "controlled", "access": {"cost": "£500 per project"}}
    doc = dataset_schemaorg(controlled, "https://library.example", has_mock=False)
    assert doc["isAccessibleForFree"] is False
    assert len(doc["distribution"]) == 1
    assert dataset_schemaorg({**controlled, "access": {}}, "https://x.example"
                             )["isAccessibleForFree"] is False
