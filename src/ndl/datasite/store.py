"""A datasite's folder: its identity, its datasets and its durable state.

Layout::

    <root>/datasite.json                 id, organisation, hub URL, the hub's pinned key
    <root>/key.pem                       the datasite's Ed25519 key (mode 0600)
    <root>/state.sqlite                  answered messages, unsent replies, seen nonces
    <root>/datasets/<name>/data.parquet  the data (never leaves except as checked aggregates)
    <root>/datasets/<name>/metadata.json what the catalogue shows
    <root>/datasets/<name>/source.json   instead of data.parquet: rows Spark reads where they
                                         are (see :mod:`ndl.datasite.engines.source`)
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from ndl.access.policy import Policy, load_policy
from ndl.catalogue.metadata import DatasetMeta
from ndl.core.envelope import CLOCK_SKEW
from ndl.core.errors import InvalidInput, NotFound
from ndl.core.keys import FileSigningKey, SigningKey
from ndl.core.private import private_dir, private_file
from ndl.datasite.engines.source import SOURCE_FILE, Source, load_source

if TYPE_CHECKING:
    from ndl.catalogue.mock import MockResult

MOCK_ROWS = 1000
MOCK_SAMPLE_ROWS = 1_000_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    message_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,            -- 'working', 'done' or 'parked'
    reply TEXT,                     -- the JSON reply body once done
    sent INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL
);
-- attempts, send_failures and reason are added by _upgrade() to files made before them.
CREATE TABLE IF NOT EXISTS revoked_grants (
    grant_id TEXT PRIMARY KEY, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS nonces (
    sender TEXT NOT NULL, nonce TEXT NOT NULL, expires INTEGER NOT NULL,
    PRIMARY KEY (sender, nonce)
);
"""


# Columns added after the first release; older state files get them on open.
_ADDED_COLUMNS = {
    "attempts": "INTEGER NOT NULL DEFAULT 0",       # times work on it started here
    "send_failures": "INTEGER NOT NULL DEFAULT 0",  # times the hub refused its reply
    "reason": "TEXT",                              # why it was parked
}


@dataclass(frozen=True)
class ParkedMessage:
    """A message the datasite gave up on, and why; ``ndl datasite status`` lists them."""

    message_id: str
    reason: str
    at: float


@dataclass(frozen=True)
class LocalDataset:
    meta: DatasetMeta
    path: Path  # data.parquet; absent when ``source`` says where Spark reads the rows
    policy: Policy
    source: Source | None = None


class DatasiteStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        private_dir(root)  # the data, the key and the state: this account's eyes only
        (root / "datasets").mkdir(exist_ok=True)
        # Re-read when 'ndl datasite rotate-key' replaces the file: the running agent signs
        # with the new key at once.
        self.key: SigningKey = FileSigningKey(root / "key.pem")
        self._lock = threading.Lock()
        self._db = sqlite3.connect(private_file(root / "state.sqlite"), check_same_thread=False,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # an answered message must survive a crash
        self._db.executescript(_SCHEMA)
        self._upgrade()

    def _upgrade(self) -> None:
        have = {r[1] for r in self._db.execute("PRAGMA table_info(messages)")}
        for name, decl in _ADDED_COLUMNS.items():
            if name not in have:
                self._db.execute(f"ALTER TABLE messages ADD COLUMN {name} {decl}")

    # -- identity -------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / "datasite.json"

    def config(self) -> dict[str, Any]:
        if not self.config_path.exists():
            return {}
        data: dict[str, Any] = json.loads(self.config_path.read_text("utf-8"))
        return data

    def save_config(self, **changes: Any) -> dict[str, Any]:
        cfg = {**self.config(), **changes}
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cfg, indent=2) + "\n", "utf-8")
        os.replace(tmp, self.config_path)
        return cfg

    # -- datasets -------------------------------------------------------------------------
    def datasets(self) -> list[LocalDataset]:
        out = []
        for meta_path in sorted((self.root / "datasets").glob("*/metadata.json")):
            out.append(self._load(meta_path))
        return out

    def fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        """Cheap change detector for the datasets folder (names, sizes and mtimes)."""
        out = []
        for p in sorted((self.root / "datasets").glob("*/*")):
            if p.name in ("metadata.json", "data.parquet", "policy.yaml", "policy.yml",
                          "policy.json", SOURCE_FILE):
                st = p.stat()
                out.append((str(p.relative_to(self.root)), st.st_size, st.st_mtime_ns))
        return tuple(out)

    def dataset(self, name: str) -> LocalDataset:
        meta_path = self.root / "datasets" / name / "metadata.json"
        if "/" in name or ".." in name or not meta_path.exists():
            raise NotFound(f"dataset {name!r} is not held at this datasite")
        return self._load(meta_path)

    def _load(self, meta_path: Path) -> LocalDataset:
        try:
            meta = DatasetMeta.model_validate_json(meta_path.read_text("utf-8"))
        except (ValidationError, ValueError) as exc:
            raise InvalidInput(f"{meta_path} is not valid dataset metadata: {exc}") from exc
        data = meta_path.parent / "data.parquet"
        source = load_source(meta_path.parent)
        if source is None and not data.exists():
            raise InvalidInput(f"{meta_path.parent} has metadata but no data.parquet")
        return LocalDataset(meta, data, load_policy(meta_path.parent, meta.tier), source)

    # -- mock data ----------------------------------------------------------------------
    def mock_for(self, ds: LocalDataset, sample: Callable[[int], pa.Table] | None = None
                 ) -> tuple[bytes, str]:
        """The dataset's mock as Parquet bytes and its method, synthesised if stale.

        Cached beside the data as mock.parquet with mock.json naming the metadata it was made
        for, so restarts do not spend privacy budget again. A dataset with a Spark ``source``
        is learned from ``sample(rows)`` (the engine's), and its cache is kept until its
        metadata or source.json change.
        """
        from ndl.catalogue.mock import synthesise_mock

        folder = ds.path.parent
        stamp, cache = folder / "mock.json", folder / "mock.parquet"
        digest = ds.meta.content_hash()
        data_mtime = (folder / SOURCE_FILE if ds.source else ds.path).stat().st_mtime_ns
        if stamp.exists() and cache.exists():
            info = json.loads(stamp.read_text("utf-8"))
            if info.get("metadata_hash") == digest and info.get("data_mtime") == data_mtime:
                return cache.read_bytes(), str(info["method"])
        if ds.source is not None:
            if sample is None:
                raise InvalidInput(f"{ds.meta.name} is read by Spark ({ds.source.describe()}):"
                                   " start the datasite with --spark-master to make its mock")
            result = synthesise_mock(sample(MOCK_SAMPLE_ROWS), ds.meta, rows=MOCK_ROWS,
                                     seed=int(digest[:8], 16))
            return self._cache_mock(result, cache, stamp, digest, data_mtime)
        pf = pq.ParquetFile(ds.path)
        # Learning marginals needs no more than a large sample; bounded memory matters more.
        batches, rows = [], 0
        stream = pf.iter_batches(batch_size=65_536)
        for batch in stream:
            batches.append(batch)
            rows += batch.num_rows
            if rows >= MOCK_SAMPLE_ROWS:
                break
        table = pa.Table.from_batches(batches, schema=pf.schema_arrow)
        # The rest of the file is streamed past the no-real-row check, never held in memory.
        result = synthesise_mock(table, ds.meta, rows=MOCK_ROWS, seed=int(digest[:8], 16),
                                 more_real_rows=stream)
        return self._cache_mock(result, cache, stamp, digest, data_mtime)

    def _cache_mock(self, result: MockResult, cache: Path, stamp: Path, digest: str,
                    data_mtime: int) -> tuple[bytes, str]:
        buf = io.BytesIO()
        pq.write_table(result.table, buf)
        tmp = cache.with_suffix(".tmp")
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, cache)
        self._write_json(stamp, {"metadata_hash": digest, "data_mtime": data_mtime,
                                 "method": result.method, "rows": result.table.num_rows,
                                 "rho": result.rho, "delta": result.delta})
        return buf.getvalue(), result.method

    @staticmethod
    def _write_json(path: Path, data: dict[str, Any]) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", "utf-8")
        os.replace(tmp, path)

    # -- durable message state ------------------------------------------------------------
    def message(self, message_id: str) -> tuple[str, dict[str, Any] | None, bool] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT state, reply, sent FROM messages WHERE message_id = ?", (message_id,)
            ).fetchone()
        if row is None:
            return None
        return row[0], (json.loads(row[1]) if row[1] else None), bool(row[2])

    def mark_working(self, message_id: str) -> int:
        """Record that work on the message starts; return how many times it has started.

        More than one start means an earlier run died with the datasite: the count is what
        lets a message that crashes the datasite every time be parked instead of retried
        for ever.
        """
        with self._lock:
            self._db.execute(
                "INSERT INTO messages (message_id, state, updated, attempts) "
                "VALUES (?, 'working', ?, 1) ON CONFLICT (message_id) DO UPDATE SET "
                "attempts = attempts + 1, updated = excluded.updated WHERE state = 'working'",
                (message_id, time.time()),
            )
            row = self._db.execute("SELECT attempts FROM messages WHERE message_id = ?",
                                   (message_id,)).fetchone()
        return int(row[0])

    def mark_done(self, message_id: str, reply: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE messages SET state = 'done', reply = ?, updated = ? "
                "WHERE message_id = ?",
                (json.dumps(reply), time.time(), message_id),
            )

    def mark_sent(self, message_id: str, sent: bool = True) -> None:
        with self._lock:
            self._db.execute("UPDATE messages SET sent = ? WHERE message_id = ?",
                             (int(sent), message_id))

    def unsent(self) -> list[tuple[str, dict[str, Any]]]:
        """Stored replies the hub has not taken yet (answers, and parked messages' errors)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT message_id, reply FROM messages WHERE state IN ('done', 'parked') "
                "AND sent = 0 AND reply IS NOT NULL ORDER BY updated"
            ).fetchall()
        out = []
        for message_id, raw in rows:
            try:
                out.append((message_id, json.loads(raw)))
            except ValueError:  # a damaged row must not stop the others being sent
                out.append((message_id, {}))
        return out

    def reply_failed(self, message_id: str, reason: str,
                     replacement: dict[str, Any] | None = None) -> int:
        """The hub would not take this reply: count it, keep why, maybe swap in an error."""
        with self._lock:
            if replacement is not None:
                self._db.execute("UPDATE messages SET reply = ? WHERE message_id = ?",
                                 (json.dumps(replacement), message_id))
            self._db.execute(
                "UPDATE messages SET send_failures = send_failures + 1, reason = ?, "
                "updated = ? WHERE message_id = ?", (reason, time.time(), message_id))
            row = self._db.execute("SELECT send_failures FROM messages WHERE message_id = ?",
                                   (message_id,)).fetchone()
        return int(row[0]) if row else 0

    def park(self, message_id: str, reason: str, reply: dict[str, Any] | None = None) -> None:
        """Give up on a message. With ``reply`` (an error) the hub is still told, so whoever
        asked is not left waiting; without, nothing more is sent."""
        with self._lock:
            self._db.execute(
                "INSERT INTO messages (message_id, state, updated) VALUES (?, 'parked', ?) "
                "ON CONFLICT (message_id) DO NOTHING", (message_id, time.time()))
            self._db.execute(
                "UPDATE messages SET state = 'parked', reason = ?, updated = ?, "
                "reply = COALESCE(?, reply), sent = ? WHERE message_id = ?",
                (reason, time.time(), json.dumps(reply) if reply is not None else None,
                 0 if reply is not None else 1, message_id))

    def parked(self, limit: int = 100) -> list[ParkedMessage]:
        with self._lock:
            rows = self._db.execute(
                "SELECT message_id, reason, updated FROM messages WHERE state = 'parked' "
                "ORDER BY updated DESC LIMIT ?", (limit,)).fetchall()
        return [ParkedMessage(r[0], r[1] or "", r[2]) for r in rows]

    def message_counts(self) -> dict[str, int]:
        """Messages by state, plus ``unsent`` replies: the operator's one-line summary."""
        with self._lock:
            rows = self._db.execute("SELECT state, count(*) FROM messages GROUP BY state")
            counts = {str(r[0]): int(r[1]) for r in rows}
            counts["unsent"] = int(self._db.execute(
                "SELECT count(*) FROM messages WHERE state IN ('done', 'parked') AND sent = 0 "
                "AND reply IS NOT NULL").fetchone()[0])
        return counts

    # -- revoked grants -------------------------------------------------------------------
    def revoke(self, grant_id: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO revoked_grants VALUES (?, ?)",
                             (grant_id, time.time()))

    def revoked_grants(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT grant_id FROM revoked_grants")}

    # -- replay guard (the ReplayGuard protocol) ------------------------------------------
    def claim(self, sender: str, nonce: str, expires_at: int) -> bool:
        with self._lock:
            self._db.execute("DELETE FROM nonces WHERE expires < ?",
                             (int(time.time()) - CLOCK_SKEW,))
            try:
                self._db.execute("INSERT INTO nonces VALUES (?, ?, ?)",
                                 (sender, nonce, expires_at))
            except sqlite3.IntegrityError:
                return False
        return True

    def close(self) -> None:
        self._db.close()
