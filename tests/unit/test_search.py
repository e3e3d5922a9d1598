"""Catalogue search on SQLite FTS5 and PostgreSQL: ranking, columns, facets, hostile input."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ndl.access import accounts
from ndl.catalogue import service as catalogue
from ndl.catalogue.metadata import DatasetMeta
from ndl.catalogue.search import fts5_query, search
from ndl.core.db import Database
from ndl.core.keys import SigningKey
from ndl.federation.models import Datasite

KEY = SigningKey.generate()


def _meta(name: str, title: str, publisher: str, tier: str, cols: list[str],
          **kw: object) -> DatasetMeta:
    return DatasetMeta.model_validate({
        "name": name, "title": title, "publisher": publisher, "tier": tier,
        "columns": [{"name": c, "type": "string"} for c in cols], **kw,
    })


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    database.migrate()
    with database.write() as s:
        # The catalogue names each dataset's publisher after its datasite's organisation.
        for org, name in (("nhs-trust", "NHS Trust"), ("dfe", "Department for Education")):
            accounts.create_org(s, org, name)
            s.add(Datasite(id=org, org_id=org, name=org,
                           public_key=SigningKey.generate().public_b64))
        s.flush()
        catalogue.publish(s, KEY, s.get(Datasite, "nhs-trust"), [  # type: ignore[arg-type]
            _meta("ae-attendances", "A&E attendances", "NHS Trust", "safeguarded",
                  ["arrival_date", "acuity"], keywords=["A&E", "emergency"]),
            _meta("patients", "Patients", "NHS Trust", "controlled",
                  ["nhs_number", "ethnicity"]),
        ])
        catalogue.publish(s, KEY, s.get(Datasite, "dfe"), [  # type: ignore[arg-type]
            _meta("attainment", "Pupil attainment", "Department for Education", "safeguarded",
                  ["upn", "score"], description="Key stage results for emergency planning"),
            _meta("school-places", "School places", "Department for Education", "open",
                  ["school", "places"]),
        ])
    yield database
    database.dispose()


def _ids(db: Database, q: str | None, **filters: str) -> list[str]:
    with db.read() as s:
        return [d.id for d in search(s, q, filters=filters).items]


def test_title_match_ranks_first(db: Database) -> None:
    ids = _ids(db, "A&E")
    assert ids[0] == "nhs-trust/ae-attendances"


def test_column_names_are_searchable(db: Database) -> None:
    assert _ids(db, "ethnicity") == ["nhs-trust/patients"]


def test_stemming_finds_plural_forms(db: Database) -> None:
    assert "dfe/attainment" in _ids(db, "pupils")


def test_empty_query_lists_everything_by_title(db: Database) -> None:
    assert len(_ids(db, None)) == 4
    assert _ids(db, "   ") == _ids(db, None)


def test_facets_count_and_filter(db: Database) -> None:
    with db.read() as s:
        res = search(s, None, filters={"tier": "safeguarded"})
    assert res.total == 2
    assert res.facets["publisher"] == {"Department for Education": 1, "NHS Trust": 1}
    # A facet ignores its own filter so users can switch value.
    assert res.facets["tier"] == {"safeguarded": 2, "controlled": 1, "open": 1}
    assert _ids(db, None, publisher="NHS Trust", tier="controlled") == ["nhs-trust/patients"]


def test_pagination(db: Database) -> None:
    with db.read() as s:
        first = search(s, None, limit=3, offset=0)
        rest = search(s, None, limit=3, offset=3)
    assert first.total == rest.total == 4
    assert len(first.items) == 3 and len(rest.items) == 1
    assert not {d.id for d in first.items} & {d.id for d in rest.items}


@pytest.mark.parametrize("hostile", [
    '"', "*", "NEAR(a b)", "a OR", "'; DROP TABLE datasets; --", "title:foo", "^x", "a AND (",
    "\x00", "ü" * 300, "-", "!!!",
])
def test_hostile_queries_never_error_or_change_anything(db: Database, hostile: str) -> None:
    _ids(db, hostile)
    assert len(_ids(db, None)) == 4


def test_fts5_query_quotes_every_word() -> None:
    assert fts5_query('A&E "x" OR') == '"a e" AND "x" AND "or"'
    assert fts5_query("!!!") is None


def test_republishing_changed_metadata_bumps_the_version(db: Database) -> None:
    with db.write() as s:
        site = s.get(Datasite, "dfe")
        assert site is not None
        same = catalogue.publish(s, KEY, site, [_meta(
            "school-places", "School places", "Department for Education", "open",
            ["school", "places"])])
        changed = catalogue.publish(s, KEY, site, [_meta(
            "school-places", "School places and capacity", "Department for Education", "open",
            ["school", "places"])])
    assert same == [{"id": "dfe/school-places", "version": 1, "changed": False}]
    assert changed == [{"id": "dfe/school-places", "version": 2, "changed": True}]
    assert _ids(db, "capacity") == ["dfe/school-places"]


def test_sorts_by_rows_and_update_time_put_the_biggest_and_newest_first(db: Database) -> None:
    with db.write() as s:
        site = s.get(Datasite, "dfe")
        assert site is not None
        catalogue.publish(s, KEY, site, [_meta("big", "Big table", "DfE", "open", ["x"],
                                               row_count=10**9)])
    with db.read() as s:
        by_rows = [d.id for d in search(s, None, sort="rows").items]
        by_update = [d.id for d in search(s, None, sort="updated").items]
    assert by_rows[0] == "dfe/big" and by_update[0] == "dfe/big"
