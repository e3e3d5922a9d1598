"""Search ranking, totals and facets at a few hundred datasets, SQLite and PostgreSQL side by side.

One generated catalogue is published (through the real publish path, so the search rows are
written as a hub writes them) into a SQLite file and a PostgreSQL database once per module.
The tests hold each backend to its own database's ranking (BM25, ts_rank_cd) computed
directly in SQL, and the two backends to the same totals and facet counts.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from ndl.access import accounts
from ndl.catalogue import service as catalogue
from ndl.catalogue.metadata import THEMES, DatasetMeta
from ndl.catalogue.search import fts5_query, search
from ndl.core.db import Database
from ndl.core.keys import SigningKey
from ndl.federation.models import Datasite

N = 240
ORGS = {"nhs-trust": "NHS Trust", "dfe": "Department for Education", "ons": "ONS"}
TOPICS = ["attendances", "admissions", "pupils", "absence", "housing", "benefits", "crime",
          "births", "deaths", "vaccinations", "prescriptions", "cancer"]
COLUMNS = ["nhs_number", "postcode", "ethnicity", "sex", "region", "ward", "diagnosis",
           "score", "upn", "income", "tenure", "acuity"]
JOIN = {"nhs_number", "postcode", "upn"}
REGIONS = ["London", "Wales", "North East", "South West"]
# "zebra" is in the title of datasets 0, 10, 20... and only in the description of 5, 15, 25...
TITLE_WORD = "zebra"
QUERIES = ["zebra", "ethnicity", "pupils", "cancer", "postcode ward", "housing benefits",
           "vaccinations", "nothingmatchesthis"]
FILTERS: list[dict[str, str]] = [
    {}, {"tier": "open"}, {"tier": "controlled"}, {"theme": "health"},
    {"join_key": "nhs_number"}, {"publisher": "ONS", "tier": "safeguarded"},
]


def _catalogue() -> dict[str, list[DatasetMeta]]:
    rng = random.Random(12)
    out: dict[str, list[DatasetMeta]] = {org: [] for org in ORGS}
    for i in range(N):
        org = list(ORGS)[i % len(ORGS)]
        topic = rng.choice(TOPICS)
        title = f"{topic.capitalize()} {rng.choice(['monthly', 'annual', 'by ward'])} {i}"
        description = f"Synthetic entry {i} about {topic}."
        if i % 10 == 0:
            title = f"{title} {TITLE_WORD}"
        elif i % 10 == 5:
            description = f"{description} Mentions a {TITLE_WORD} once, in passing."
        cols = rng.sample(COLUMNS, rng.randint(2, 5))
        out[org].append(DatasetMeta.model_validate({
            "name": f"ds-{i}", "title": title, "description": description,
            "publisher": ORGS[org], "tier": rng.choice(["open", "safeguarded", "controlled"]),
            "keywords": [topic], "themes": rng.sample(THEMES, rng.randint(1, 2)),
            "spatial": rng.choice(REGIONS),
            "columns": [{"name": c, "type": "string", **({"join_key": c} if c in JOIN else {})}
                        for c in cols],
        }))
    return out


def _publish(db: Database) -> None:
    db.migrate()
    key = SigningKey.generate()
    with db.write() as s:
        for org, name in ORGS.items():
            accounts.create_org(s, org, name)
            s.add(Datasite(id=org, org_id=org, name=org,
                           public_key=SigningKey.generate().public_b64))
        s.flush()
        for org, metas in _catalogue().items():
            site = s.get(Datasite, org)
            assert site is not None
            catalogue.publish(s, key, site, metas)


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    db = Database(str(tmp_path_factory.mktemp("ranking") / "hub.db"))
    _publish(db)
    yield db
    db.dispose()


@pytest.fixture(scope="module")
def pg_db(pg_server: str) -> Iterator[Database]:
    """A database of its own on the session's server: pg_url would empty it between tests."""
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    name = f"ndl_test_rank_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    db = Database(pg_server.rsplit("/", 1)[0] + "/" + name)
    try:
        _publish(db)
        yield db
    finally:
        db.dispose()
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest) -> Database:
    name = "sqlite_db" if request.param == "sqlite" else "pg_db"
    database: Database = request.getfixturevalue(name)
    return database


def _all_ids(db: Database, q: str | None, filters: dict[str, str], page: int = 20
             ) -> tuple[int, list[str]]:
    """Total and every result, fetched page by page as a client would."""
    ids: list[str] = []
    with db.read() as s:
        while True:
            res = search(s, q, filters=dict(filters), limit=page, offset=len(ids))
            ids += [d.id for d in res.items]
            if len(res.items) < page:
                return res.total, ids


def _facet_ids(db: Database, filters: dict[str, str]) -> set[str]:
    with db.read() as s:
        sql = "SELECT dataset_id FROM dataset_facets WHERE facet = :f AND value = :v"
        keep: set[str] | None = None
        for f, v in filters.items():
            got = {r[0] for r in s.execute(sa.text(sql), {"f": f, "v": v})}
            keep = got if keep is None else keep & got
    return keep if keep is not None else set()


def _sql_ranked(db: Database, q: str) -> list[str]:
    """Every match in the database's own ranking, straight from SQL, ties by number."""
    if db.backend == "sqlite":
        sql = ("SELECT d.id FROM dataset_fts f JOIN datasets d ON d.num = f.rowid "
               "WHERE dataset_fts MATCH :fq "
               "ORDER BY bm25(dataset_fts, 0, 10.0, 8.0, 3.0, 1.0, 4.0), d.num")
        params = {"fq": fts5_query(q)}
    else:
        sql = ("SELECT d.id FROM dataset_search s JOIN datasets d ON d.id = s.dataset_id "
               "WHERE s.doc @@ websearch_to_tsquery('english', :q) "
               "ORDER BY ts_rank_cd(s.doc, websearch_to_tsquery('english', :q)) DESC, d.num")
        params = {"q": q}
    with db.read() as s:
        return [r[0] for r in s.execute(sa.text(sql), params)]


def test_title_matches_rank_above_description_only_matches(db: Database) -> None:
    tiers = {m.name: m.tier for metas in _catalogue().values() for m in metas}
    for filters in ({}, {"tier": "open"}):  # unfiltered and filtered take different paths
        total, ids = _all_ids(db, TITLE_WORD, filters)
        nums = [int(i.rsplit("-", 1)[1]) for i in ids]
        expected = {n for n in range(N) if n % 5 == 0
                    and tiers[f"ds-{n}"] == filters.get("tier", tiers[f"ds-{n}"])}
        assert set(nums) == expected and total == len(nums) == len(expected)
        in_title = {n for n in nums if n % 10 == 0}
        assert in_title and len(in_title) < len(nums)
        assert set(nums[:len(in_title)]) == in_title, "a description-only match outranked a title"


@pytest.mark.parametrize("q", QUERIES)
def test_pages_follow_the_databases_own_ranking(db: Database, q: str) -> None:
    expected = _sql_ranked(db, q)
    total, ids = _all_ids(db, q, {}, page=7)  # pages that split ties
    assert ids == expected
    assert total == len(expected)
    if q == QUERIES[-1]:
        assert total == 0
    for filters in FILTERS[1:]:
        keep = _facet_ids(db, filters)
        total, ids = _all_ids(db, q, filters, page=7)
        assert ids == [i for i in expected if i in keep]
        assert total == len(ids)


@pytest.mark.parametrize("q", [*QUERIES, None])
def test_totals_and_facet_counts_agree_between_sqlite_and_postgresql(
        sqlite_db: Database, pg_db: Database, q: str | None) -> None:
    for filters in FILTERS:
        with sqlite_db.read() as s:
            lite = search(s, q, filters=dict(filters), limit=500)
        with pg_db.read() as s:
            pg = search(s, q, filters=dict(filters), limit=500)
        assert lite.total == pg.total == len(lite.items) == len(pg.items)
        assert lite.facets == pg.facets
        assert {d.id for d in lite.items} == {d.id for d in pg.items}
        # A facet's counts apply every filter but its own: its chosen value counts the total.
        for facet, value in filters.items():
            assert lite.facets[facet].get(value, 0) == lite.total
    with sqlite_db.read() as s:
        everything = search(s, q, limit=1)
    expected = sum(everything.facets["tier"].values())
    assert everything.total == expected  # one tier per dataset: the tier counts sum to the total



@pytest.mark.parametrize("sort", ["relevance", "title", "updated", "rows"])
def test_pages_of_a_sorted_listing_add_up_to_the_whole_listing(db: Database, sort: str) -> None:
    with db.read() as s:
        titles = {i: t for i, t in s.execute(sa.text("SELECT id, lower(title) FROM datasets"))}
    for q, filters in ((None, {}), (None, {"tier": "open"}), ("cancer", {})):
        with db.read() as s:
            whole = [d.id for d in search(s, q, filters=dict(filters), sort=sort,
                                          limit=N).items]
            paged: list[str] = []
            while len(paged) < len(whole):
                res = search(s, q, filters=dict(filters), sort=sort, limit=7,
                             offset=len(paged))
                assert res.items, (q, filters, sort)
                paged += [d.id for d in res.items]
        assert whole and paged == whole and len(set(whole)) == len(whole)
        if sort == "title" or (sort == "relevance" and q is None):
            assert [titles[i] for i in whole] == sorted(titles[i] for i in whole)
