"""Catalogue search at scale: p50/p95 of ndl's search over a generated catalogue.

Generates N datasets (default 100,000) with titles, descriptions, keywords, columns and
facets, loads them straight into a hub database (SQLite by default, or --db PostgreSQL URL:
a throwaway database is created on that server and dropped afterwards), then times
``ndl.catalogue.search.search`` (ranked full text + six facet counts + one page of results)
over a mix of queries, and in the same run the bare full-text MATCH that search builds on,
as the reference.

    .venv/bin/python bench/search_catalogue.py [--datasets 100000] [--searches 400]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ndl.catalogue.search import fts5_query, search
from ndl.core.db import Database

TOPICS = ["A&E", "attendances", "admissions", "pupils", "attainment", "absence", "exclusions",
          "social care", "referrals", "housing", "benefits", "employment", "crime", "prisons",
          "transport", "air quality", "births", "deaths", "vaccinations", "GP appointments",
          "prescriptions", "mental health", "cancer", "diabetes", "maternity", "school places"]
QUALIFIERS = ["monthly", "annual", "by ward", "by region", "linked", "survey", "register",
              "extract", "snapshot", "outcomes", "waiting times", "cohort"]
PUBLISHERS = [f"Organisation {i:03d}" for i in range(300)]
THEMES = ["health", "education", "social-care", "population", "economy", "crime-justice",
          "housing", "environment", "transport", "government"]
REGIONS = ["North East", "North West", "Yorkshire and The Humber", "East Midlands",
           "West Midlands", "East of England", "London", "South East", "South West", "England",
           "Wales", "Scotland"]
COLUMNS = ["nhs_number", "postcode", "date_of_birth", "ethnicity", "sex", "region", "ward",
           "arrival_date", "diagnosis", "score", "grade", "upn", "referral_date", "category",
           "income", "tenure", "age_band", "disposal", "acuity", "provider"]
JOIN = {"nhs_number": "nhs_number", "postcode": "postcode", "date_of_birth": "date_of_birth",
        "upn": "upn"}
TARGET_P95_MS = 50.0  # issue 12: a catalogue search at 100,000 datasets
QUERIES = ["A&E", "pupils attainment", "ethnicity", "mental health", "housing benefits",
           "waiting times", "social care referrals", "postcode", "vaccinations by ward",
           "prescriptions", "diabetes register", "crime", "air quality", "school", "cancer",
           "maternity outcomes", "zzzznothing"]


def generate(db: Database, n: int, seed: int) -> float:
    rng = random.Random(seed)
    started = time.perf_counter()
    sqlite = db.backend == "sqlite"
    with db.write() as s:
        s.execute(sa.text("INSERT INTO orgs (id, name, kind, created_at) VALUES "
                          "('bench', 'Bench', 'other', CURRENT_TIMESTAMP)"))
        s.execute(sa.text("INSERT INTO datasites (id, org_id, name, public_key, registered_at) "
                          "VALUES ('bench', 'bench', 'Bench', :k, CURRENT_TIMESTAMP)"),
                  {"k": uuid.uuid4().hex})
    batch: list[dict[str, Any]] = []
    facets: list[dict[str, Any]] = []
    docs: list[dict[str, Any]] = []

    def flush() -> None:
        with db.write() as s:
            s.execute(sa.text(
                "INSERT INTO datasets (id, num, datasite_id, org_id, name, title, description, "
                "publisher, tier, keywords, columns, row_count, version, metadata_hash, meta, "
                "published_at, updated_at) VALUES (:id, :num, 'bench', 'bench', :name, :title, "
                ":description, :publisher, :tier, :keywords, :columns, :rows, 1, :h, '{}', "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"), batch)
            s.execute(sa.text("INSERT INTO dataset_facets (dataset_id, facet, value) "
                              "VALUES (:d, :f, :v)"), facets)
            if sqlite:
                s.execute(sa.text(
                    "INSERT INTO dataset_fts (rowid, dataset_id, title, keywords, publisher, "
                    "description, columns) VALUES (:num, :id, :title, :keywords, :publisher, "
                    ":description, :columns)"), docs)
            else:
                s.execute(sa.text(
                    "INSERT INTO dataset_search (dataset_id, num, doc) VALUES (:id, :num, "
                    "setweight(to_tsvector('english', :title), 'A') || "
                    "setweight(to_tsvector('english', :keywords), 'A') || "
                    "setweight(to_tsvector('english', :publisher), 'B') || "
                    "setweight(to_tsvector('english', :columns), 'B') || "
                    "setweight(to_tsvector('english', :description), 'C'))"), docs)
        batch.clear()
        facets.clear()
        docs.clear()

    for i in range(n):
        topic, qual = rng.choice(TOPICS), rng.choice(QUALIFIERS)
        title = f"{topic.capitalize()} {qual} {i}"
        cols = rng.sample(COLUMNS, rng.randint(3, 8))
        pub, tier = rng.choice(PUBLISHERS), rng.choice(["open", "safeguarded", "controlled"])
        desc = (f"{title}: synthetic catalogue entry about {topic} ({qual}) published by {pub}."
                f" Covers {rng.choice(REGIONS)}.")
        ds_id = f"bench/ds-{i}"
        kw = [topic, qual]
        batch.append({"id": ds_id, "num": i + 1, "name": f"ds-{i}", "title": title,
                      "description": desc,
                      "publisher": pub, "tier": tier, "keywords": json.dumps(kw),
                      "columns": json.dumps([{"name": c, "type": "string"} for c in cols]),
                      "rows": rng.randint(100, 10_000_000), "h": uuid.uuid4().hex})
        year = rng.randint(2010, 2025)
        values = {("publisher", pub), ("tier", tier), ("theme", rng.choice(THEMES)),
                  ("geography", rng.choice(REGIONS)), ("year", str(year)),
                  ("year", str(year + 1))} | {("join_key", JOIN[c]) for c in cols if c in JOIN}
        facets += [{"d": ds_id, "f": f, "v": v} for f, v in values]
        docs.append({"id": ds_id, "num": i + 1, "title": title, "keywords": " ".join(kw),
                     "publisher": pub,
                     "description": desc, "columns": " ".join(c.replace("_", " ") for c in cols)})
        if len(batch) >= 5000:
            flush()
    if batch:
        flush()
    with db.write() as s:
        s.execute(sa.text("ANALYZE"))
    return time.perf_counter() - started


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def summarise(xs: list[float]) -> dict[str, float]:
    ms = [x * 1000 for x in xs]
    return {"p50": pct(ms, 50), "p95": pct(ms, 95), "p99": pct(ms, 99),
            "mean": statistics.fmean(ms), "max": max(ms)}


def run(db: Database, searches: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    plans = []
    for _ in range(searches):
        q = rng.choice([*QUERIES, None])
        filters: dict[str, str | None] = {}
        if rng.random() < 0.4:
            filters["tier"] = rng.choice(["open", "safeguarded", "controlled"])
        if rng.random() < 0.2:
            filters["theme"] = rng.choice(THEMES)
        if rng.random() < 0.1:
            filters["join_key"] = "nhs_number"
        plans.append((q, filters))
    with db.read() as s:
        t = time.perf_counter()
        search(s, "A&E", limit=20)  # the first search builds the in-memory facet index
        cold = time.perf_counter() - t
    full, bare = [], []
    for q, filters in plans:
        with db.read() as s:
            t = time.perf_counter()
            search(s, q, filters=filters, limit=20)
            full.append(time.perf_counter() - t)
        if q:
            with db.read() as s:
                t = time.perf_counter()
                if db.backend == "sqlite":
                    s.execute(sa.text("SELECT count(*) FROM dataset_fts WHERE dataset_fts "
                                      "MATCH :q"), {"q": fts5_query(q)}).scalar()
                else:
                    s.execute(sa.text("SELECT count(*) FROM dataset_search WHERE doc @@ "
                                      "websearch_to_tsquery('english', :q)"), {"q": q}).scalar()
                bare.append(time.perf_counter() - t)
    return {"cold_first_search_ms": cold * 1000, "search": summarise(full),
            "bare_match_count": summarise(bare)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", type=int, default=100_000)
    ap.add_argument("--searches", type=int, default=400)
    ap.add_argument("--db", default=None, help="PostgreSQL server URL (default: SQLite)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    admin = None
    if args.db:
        admin = sa.create_engine(args.db, isolation_level="AUTOCOMMIT")
        name = f"ndl_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = args.db.rsplit("/", 1)[0] + "/" + name
    else:
        url = str(Path(tmp.name) / "hub.db")
    db = Database(url)
    try:
        db.migrate()
        load = generate(db, args.datasets, args.seed)
        print(f"loaded {args.datasets:,} datasets into {db.backend} in {load:.1f} s "
              f"(load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
        res = run(db, args.searches, args.seed)
        print(f"first search (builds the facet index): {res.pop('cold_first_search_ms'):.0f} ms")
        for k, v in res.items():
            print(f"{k:18s} " + "  ".join(f"{m} {x:7.2f} ms" for m, x in v.items()))
        print(f"ratio search/bare match (p50): "
              f"{res['search']['p50'] / res['bare_match_count']['p50']:.1f}x")
        p95 = res["search"]["p95"]
        print(f"target search p95 <= {TARGET_P95_MS:.0f} ms: {p95:.2f} ms, "
              f"{'met' if p95 <= TARGET_P95_MS else 'NOT met'} "
              f"(load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    finally:
        db.dispose()
        if admin is not None:
            with admin.connect() as c:
                c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()
        tmp.cleanup()


if __name__ == "__main__":
    main()
