"""Full-text search with facets, on SQLite FTS5 or PostgreSQL full-text search.

The index holds a dataset's title, keywords, publisher, description and its columns' names
and descriptions, so "ethnicity" finds datasets that merely have such a column. User text is
never spliced into SQL: on SQLite it is reduced to quoted phrases of word characters before it
reaches FTS5's MATCH; on PostgreSQL ``websearch_to_tsquery`` parses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from ndl.catalogue.facet_index import bitset, get_index, members
from ndl.catalogue.models import Dataset
from ndl.core.errors import InvalidInput

FACETS = ("publisher", "tier", "theme", "geography", "year", "join_key")
_WORD = re.compile(r"\w+", re.UNICODE)


def index_text(ds: Dataset) -> dict[str, str]:
    cols = " ".join(f"{c.get('name', '')} {c.get('description', '')}".replace("_", " ")
                    for c in ds.columns)
    return {
        "title": ds.title,
        "keywords": " ".join(ds.keywords),
        "publisher": ds.publisher,
        "description": ds.description,
        "columns": cols,
    }


def reindex(session: Session, ds: Dataset) -> None:
    doc = index_text(ds)
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("DELETE FROM dataset_fts WHERE dataset_id = :id"), {"id": ds.id})
        # rowid = the dataset's number, so matches map straight onto the facet bitmaps.
        session.execute(
            text("INSERT INTO dataset_fts (rowid, dataset_id, title, keywords, publisher, "
                 "description, columns) VALUES (:num, :id, :title, :keywords, :publisher, "
                 ":description, :columns)"),
            {"num": ds.num, "id": ds.id, **doc},
        )
    else:
        session.execute(text("DELETE FROM dataset_search WHERE dataset_id = :id"), {"id": ds.id})
        session.execute(
            text(
                "INSERT INTO dataset_search (dataset_id, doc) VALUES (:id, "
                "setweight(to_tsvector('english', :title), 'A') || "
                "setweight(to_tsvector('english', :keywords), 'A') || "
                "setweight(to_tsvector('english', :publisher), 'B') || "
                "setweight(to_tsvector('english', :columns), 'B') || "
                "setweight(to_tsvector('english', :description), 'C'))"
            ),
            {"id": ds.id, **doc},
        )


def fts5_query(q: str) -> str | None:
    """Turn free text into a safe FTS5 query: each word becomes a quoted phrase, ANDed."""
    phrases = []
    for word in q.split():
        tokens = _WORD.findall(word)
        if tokens:
            phrases.append('"' + " ".join(t.lower() for t in tokens) + '"')
    return " AND ".join(phrases) if phrases else None


@dataclass
class SearchResult:
    total: int
    items: list[Dataset]
    facets: dict[str, dict[str, int]]


SORTS = ("relevance", "title", "updated", "rows")
# FTS5 column weights: title and keywords matter most, then columns, publisher, description.
_BM25 = "bm25(dataset_fts, 0, 10.0, 8.0, 3.0, 1.0, 4.0)"


def _raw_rows(session: Session, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Rows straight from the DB-API cursor: tens of thousands of ids without ORM overhead."""
    dbapi = session.connection().connection.dbapi_connection
    assert dbapi is not None
    cur = dbapi.cursor()
    try:
        cur.execute(sql, params)
        return list(cur.fetchall())
    finally:
        cur.close()


def _matches(session: Session, q: str, *, scored: bool
             ) -> tuple[np.ndarray, np.ndarray | None] | None:
    """Dataset numbers matching ``q`` and, if ``scored``, their scores (lower is better).

    None when ``q`` has no words. Unscored matching skips the ranking function: much cheaper.
    """
    if session.get_bind().dialect.name == "sqlite":
        fq = fts5_query(q)
        if fq is None:
            return None
        cols = f"rowid, {_BM25}" if scored else "rowid"
        rows = _raw_rows(session, f"SELECT {cols} FROM dataset_fts "  # noqa: S608
                         "WHERE dataset_fts MATCH :fq", {"fq": fq})
    else:
        if not _WORD.search(q):
            return None
        cols = ("d.num, -ts_rank_cd(s.doc, websearch_to_tsquery('english', %(q)s))"
                if scored else "d.num")
        rows = _raw_rows(session, f"SELECT {cols} FROM dataset_search s JOIN datasets d "  # noqa: S608
                         "ON d.id = s.dataset_id "
                         "WHERE s.doc @@ websearch_to_tsquery('english', %(q)s)", {"q": q})
    nums = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    if not scored:
        return nums, None
    return nums, np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows))


def _ranked_page(session: Session, q: str, limit: int, offset: int) -> list[int]:
    """The page of best matches, ranked by the database's own scorer (BM25 / ts_rank_cd)."""
    if session.get_bind().dialect.name == "sqlite":
        sql = (f"SELECT rowid FROM dataset_fts WHERE dataset_fts MATCH :fq "  # noqa: S608
               f"ORDER BY {_BM25}, rowid LIMIT :lim OFFSET :off")
        params: dict[str, Any] = {"fq": fts5_query(q), "lim": limit, "off": offset}
    else:
        sql = ("SELECT d.num FROM dataset_search s JOIN datasets d ON d.id = s.dataset_id "
               "WHERE s.doc @@ websearch_to_tsquery('english', :q) "
               "ORDER BY ts_rank_cd(s.doc, websearch_to_tsquery('english', :q)) DESC, d.num "
               "LIMIT :lim OFFSET :off")
        params = {"q": q, "lim": limit, "off": offset}
    return [r[0] for r in session.execute(text(sql), params)]


def search(
    session: Session, q: str | None = None, *, filters: dict[str, str | None] | None = None,
    limit: int = 20, offset: int = 0, sort: str = "relevance",
) -> SearchResult:
    """Ranked full-text search with facet filters and counts.

    ``filters`` maps a facet in :data:`FACETS` to one value. Each facet's counts apply every
    filter but its own, so a user can switch between that facet's values.
    """
    if sort not in SORTS:
        raise InvalidInput(f"sort must be one of {', '.join(SORTS)}")
    unknown = [k for k in (filters or {}) if k not in FACETS]
    if unknown:
        raise InvalidInput(f"unknown filter {unknown[0]!r}; filters are {', '.join(FACETS)}")
    chosen = {k: str(v) for k, v in (filters or {}).items() if v}
    q = (q or "").replace("\x00", "").strip()  # PostgreSQL text cannot hold NUL
    idx = get_index(session, str(session.get_bind().engine.url))
    ranked_here = bool(q) and sort == "relevance" and bool(chosen)
    found = _matches(session, q, scored=ranked_here) if q else None
    matched = scores = None
    if found is not None:
        matched, scores = found
        fresh = matched < idx.size  # anything published after the index was built waits
        matched, scores = matched[fresh], (scores[fresh] if scores is not None else None)
    match_mask = bitset(matched, idx.size) if matched is not None else idx.everything
    masks = {k: idx.mask({k: v}) for k, v in chosen.items()}
    base = match_mask
    for m in masks.values():
        base &= m
    facets = {}
    for facet in FACETS:
        others = match_mask
        for k, m in masks.items():
            if k != facet:
                others &= m
        facets[facet] = idx.counts(others, facet)
    if matched is not None and sort == "relevance":
        if scores is not None:
            # Filters narrow the matches: rank the survivors from the scores already fetched.
            keep = np.isin(matched, members(base, idx.size))
            order = np.lexsort((matched[keep], scores[keep]))
            page = [int(n) for n in matched[keep][order][offset:offset + limit]]
        else:
            page = _ranked_page(session, q, limit, offset)
    else:
        nums = members(base, idx.size)
        rank = idx.order["title" if sort == "relevance" else sort][nums]
        page = nums[np.argsort(rank, kind="stable")][offset:offset + limit].tolist()
    by_num = ({d.num: d for d in session.query(Dataset).filter(Dataset.num.in_(page))}
              if page else {})
    return SearchResult(base.bit_count(), [by_num[n] for n in page if n in by_num], facets)
