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

from sqlalchemy import text
from sqlalchemy.orm import Session

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
        session.execute(
            text("INSERT INTO dataset_fts (dataset_id, title, keywords, publisher, description,"
                 " columns) VALUES (:id, :title, :keywords, :publisher, :description, :columns)"),
            {"id": ds.id, **doc},
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


SORTS = {
    "relevance": "m.score, d.title",
    "title": "d.title, d.id",
    "updated": "d.updated_at DESC, d.id",
    "rows": "d.row_count DESC, d.id",
}


def _match_cte(session: Session, q: str | None) -> tuple[str, dict[str, Any]] | None:
    """SQL for (dataset_id, score) rows matching q; lower score is better. None = match all."""
    if not q or not q.strip():
        return None
    if session.get_bind().dialect.name == "sqlite":
        fq = fts5_query(q)
        if fq is None:
            return None
        # Column weights: title and keywords matter most, then columns, publisher, description.
        return (
            "SELECT dataset_id, bm25(dataset_fts, 0, 10.0, 8.0, 3.0, 1.0, 4.0) AS score "
            "FROM dataset_fts WHERE dataset_fts MATCH :fq",
            {"fq": fq},
        )
    return (
        "SELECT dataset_id, -ts_rank_cd(doc, websearch_to_tsquery('english', :q)) AS score "
        "FROM dataset_search WHERE doc @@ websearch_to_tsquery('english', :q)",
        {"q": q},
    )


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
    filters = {k: v for k, v in (filters or {}).items() if v}
    q = q.replace("\x00", "") if q else q  # PostgreSQL text cannot hold NUL; it is never meant
    match = _match_cte(session, q)
    params: dict[str, Any] = {}
    if match is not None:
        source = f"datasets d JOIN ({match[0]}) m ON m.dataset_id = d.id"
        params.update(match[1])
        order = SORTS[sort]
    else:
        source = "datasets d"
        order = SORTS["title" if sort == "relevance" else sort]

    def where(skip: str | None = None) -> str:
        parts = [
            f"d.id IN (SELECT dataset_id FROM dataset_facets WHERE facet = :fk_{k} "  # noqa: S608
            f"AND value = :fv_{k})"
            for k in filters if k != skip
        ]
        return (" WHERE " + " AND ".join(parts)) if parts else ""

    for k, v in filters.items():
        params[f"fk_{k}"], params[f"fv_{k}"] = k, v
    # Only fixed SQL and whitelisted facet names are interpolated; user values are parameters.
    total = session.execute(
        text(f"SELECT count(*) FROM {source}{where()}"), params  # noqa: S608
    ).scalar_one()
    ids = [
        row[0]
        for row in session.execute(
            text(f"SELECT d.id FROM {source}{where()} "  # noqa: S608
                 f"ORDER BY {order} LIMIT :lim OFFSET :off"),
            {**params, "lim": limit, "off": offset},
        )
    ]
    by_id = {d.id: d for d in session.query(Dataset).filter(Dataset.id.in_(ids))} if ids else {}
    facets: dict[str, dict[str, int]] = {}
    for facet in FACETS:
        rows = session.execute(
            text(f"SELECT f.value, count(*) FROM dataset_facets f "  # noqa: S608
                 f"WHERE f.facet = :facet AND f.dataset_id IN "
                 f"(SELECT d.id FROM {source}{where(skip=facet)}) "
                 f"GROUP BY f.value ORDER BY count(*) DESC, f.value"),
            {**params, "facet": facet},
        )
        facets[facet] = {str(k): int(n) for k, n in rows}
    return SearchResult(int(total), [by_id[i] for i in ids if i in by_id], facets)
