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
from psycopg.errors import QueryCanceled
from sqlalchemy import text
from sqlalchemy.orm import Session

from ndl.catalogue.facet_index import bitset, get_index, members
from ndl.catalogue.models import Dataset
from ndl.core.errors import InvalidInput

FACETS = ("publisher", "tier", "theme", "geography", "year", "join_key")
_WORD = re.compile(r"\w+", re.UNICODE)
# Ranking cost grows with the words in a query (on PostgreSQL ts_rank_cd's cost per match grows
# faster than linearly with OR alternatives), so a search takes at most this many words...
MAX_WORDS = 32
# ...and PostgreSQL stops one that still ranks too long (e.g. 16 ORed common words, ~4 s at
# 100,000 datasets) rather than let a request hold a connection and a core.
PG_SEARCH_TIMEOUT_MS = 2000


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
                "INSERT INTO dataset_search (dataset_id, num, doc) VALUES (:id, :num, "
                "setweight(to_tsvector('english', :title), 'A') || "
                "setweight(to_tsvector('english', :keywords), 'A') || "
                "setweight(to_tsvector('english', :publisher), 'B') || "
                "setweight(to_tsvector('english', :columns), 'B') || "
                "setweight(to_tsvector('english', :description), 'C'))"
            ),
            {"id": ds.id, "num": ds.num, **doc},
        )


def unindex(session: Session, ds: Dataset) -> None:
    """Take a withdrawn dataset out of the text index (ndl.catalogue.lifecycle)."""
    table = "dataset_fts" if session.get_bind().dialect.name == "sqlite" else "dataset_search"
    session.execute(text(f"DELETE FROM {table} WHERE dataset_id = :id"),  # noqa: S608
                    {"id": ds.id})


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


def _matches(session: Session, q: str, *, scored: bool, rank_only: bytes | None = None
             ) -> tuple[np.ndarray, np.ndarray | None] | None:
    """Dataset numbers matching ``q`` and, if ``scored``, their scores (lower is better).

    None when ``q`` has no words. Unscored matching skips the ranking function: much cheaper.
    ``rank_only`` (a bitmap, as ``FacetIndex`` packs them) lets PostgreSQL score just the
    datasets the filters keep; the others' scores are 0 and must not be used.
    """
    if session.get_bind().dialect.name == "sqlite":
        fq = fts5_query(q)
        if fq is None:
            return None
        cols = f"rowid, {_BM25}" if scored else "rowid"
        rows = _raw_rows(session, f"SELECT {cols} FROM dataset_fts "  # noqa: S608
                         "WHERE dataset_fts MATCH :fq", {"fq": fq})
        nums = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        if not scored:
            return nums, None
        return nums, np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows))
    if not _WORD.search(q):
        return None
    return _pg_matches(session, q, scored=scored, rank_only=rank_only)


# The tsquery is a FROM item so PostgreSQL parses it once per search, never once per row (in a
# generic plan of a prepared statement, a call in WHERE or ORDER BY is evaluated per row).
_PG_MATCH = "FROM dataset_search, websearch_to_tsquery('english', %(q)s) AS q WHERE doc @@ q"


def _pg_matches(session: Session, q: str, *, scored: bool, rank_only: bytes | None
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """PostgreSQL's matches as packed big-endian arrays: one row, not one per match.

    The ~27,000 matches of a common word cost ~8 ms more as Python row tuples than as one
    ``bytea`` decoded by numpy. Scores are negated ``ts_rank_cd`` (float4, so the float64
    copy orders exactly as ``ORDER BY ts_rank_cd(...) DESC`` would). ts_rank_cd is most of
    the cost (~16 us a match for two words), so with filters only the datasets they keep are
    scored (``get_bit``; CASE tests the range first, as a number past the bitmap is an error).
    """
    params: dict[str, Any] = {"q": q}
    if scored:
        rank = "ts_rank_cd(doc, q)"
        if rank_only is not None:
            rank = ("CASE WHEN num >= %(bits)s THEN 0 WHEN get_bit(%(only)s, num) = 1 "
                    f"THEN {rank} ELSE 0 END")
            params |= {"bits": len(rank_only) * 8, "only": rank_only}
        sql = (f"SELECT string_agg(int4send(num) || float4send({rank}), ''::bytea) "
               + _PG_MATCH)
        layout = np.dtype([("num", ">i4"), ("rank", ">f4")])
    else:
        sql = "SELECT string_agg(int4send(num), ''::bytea) " + _PG_MATCH
        layout = np.dtype([("num", ">i4")])
    dbapi = session.connection().connection.dbapi_connection
    assert dbapi is not None
    cur = dbapi.cursor()
    # The timeout is set inside a savepoint that is always rolled back (the query changes
    # nothing), so it never outlives this query and a stopped query leaves the caller's
    # transaction usable.
    cur.execute("SAVEPOINT ndl_search")
    try:
        # The lower of ours and any the operator set (0 = none): never loosen theirs.
        cur.execute("SELECT set_config('statement_timeout', CASE WHEN s::interval > '0'::interval "
                    "AND s::interval < make_interval(secs => %(ms)s / 1000.0) THEN s "
                    "ELSE %(text)s END, true) FROM current_setting('statement_timeout') AS s",
                    {"ms": PG_SEARCH_TIMEOUT_MS, "text": str(PG_SEARCH_TIMEOUT_MS)})
        cur.execute(sql, params)
        row = cur.fetchone()
    except QueryCanceled as exc:
        raise InvalidInput(
            f"the search {q[:60]!r} takes too long to rank; use fewer words or OR "
            "alternatives, or more specific words") from exc
    finally:
        cur.execute("ROLLBACK TO SAVEPOINT ndl_search")
        cur.execute("RELEASE SAVEPOINT ndl_search")
        cur.close()
    packed = row[0] if row else None
    got = np.frombuffer(bytes(packed or b""), dtype=layout)
    nums = got["num"].astype(np.int64)
    return nums, (-got["rank"].astype(np.float64) if scored else None)


def _flags(mask: int, size: int) -> np.ndarray:
    """A bitmap as one bool per dataset number: membership of many numbers in one lookup."""
    raw = np.frombuffer(mask.to_bytes((size + 7) // 8, "little"), dtype=np.uint8)
    return np.unpackbits(raw, bitorder="little")[:size].astype(bool)


def _ranked_page(session: Session, q: str, limit: int, offset: int) -> list[int]:
    """SQLite's page of best matches, ranked by FTS5's BM25 without scoring every match."""
    sql = (f"SELECT rowid FROM dataset_fts WHERE dataset_fts MATCH :fq "  # noqa: S608
           f"ORDER BY {_BM25}, rowid LIMIT :lim OFFSET :off")
    params: dict[str, Any] = {"fq": fts5_query(q), "lim": limit, "off": offset}
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
    words = len(_WORD.findall(q))
    if words > MAX_WORDS:
        raise InvalidInput(f"a search takes at most {MAX_WORDS} words and this one has "
                           f"{words}; keep the most specific ones")
    idx = get_index(session, str(session.get_bind().engine.url))
    masks = {k: idx.mask({k: v}) for k, v in chosen.items()}
    wanted = idx.everything
    for m in masks.values():
        wanted &= m
    # Rank in Python from scores fetched with the matches when filters narrow them, and
    # always on PostgreSQL: there one pass that finds and scores every match costs less than
    # a second query that finds them again to rank them (EXPLAIN ANALYZE, bench/RESULTS.md).
    postgres = session.get_bind().dialect.name != "sqlite"
    ranked_here = bool(q) and sort == "relevance" and (bool(chosen) or postgres)
    only = wanted.to_bytes((idx.size + 7) // 8, "little") if chosen else None
    found = _matches(session, q, scored=ranked_here, rank_only=only) if q else None
    matched = scores = None
    if found is not None:
        matched, scores = found
        fresh = matched < idx.size  # anything published after the index was built waits
        matched, scores = matched[fresh], (scores[fresh] if scores is not None else None)
    match_mask = bitset(matched, idx.size) if matched is not None else idx.everything
    base = match_mask & wanted
    facets = {}
    for facet in FACETS:
        others = match_mask
        for k, m in masks.items():
            if k != facet:
                others &= m
        facets[facet] = idx.counts(others, facet)
    if matched is not None and sort == "relevance":
        if scores is not None:
            if chosen:  # filters narrow the matches: rank the survivors
                keep = _flags(base, idx.size)[matched]
                matched, scores = matched[keep], scores[keep]
            # Best score first, ties by number: the order of ORDER BY score, num.
            order = np.lexsort((matched, scores))
            page = [int(n) for n in matched[order][offset:offset + limit]]
        else:
            page = _ranked_page(session, q, limit, offset)
    else:
        nums = members(base, idx.size)
        rank = idx.order["title" if sort == "relevance" else sort][nums]
        # Ranks are distinct positions, so only the first offset + limit need sorting: a full
        # argsort of 100,000 ranks was ~10 ms of every search without words.
        top = offset + limit
        first = np.argpartition(rank, top)[:top] if top < len(rank) else np.arange(len(rank))
        page = nums[first[np.argsort(rank[first])]][offset:top].tolist()
    by_num = ({d.num: d for d in session.query(Dataset).filter(Dataset.num.in_(page))}
              if page else {})
    return SearchResult(base.bit_count(), [by_num[n] for n in page if n in by_num], facets)
