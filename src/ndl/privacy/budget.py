"""The privacy budget ledger a datasite keeps for each of its datasets.

Spending is check-and-record in one ``BEGIN IMMEDIATE`` transaction on the datasite's own
SQLite file, so concurrent queries (threads or processes) queue for the write lock and can
never together spend more than a limit. The spend is recorded before the answer is computed:
a crash in between wastes budget, never leaks an unaccounted answer.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from ndl.access.policy import PrivacyBudget
from ndl.core.errors import BudgetExhausted, InvalidInput
from ndl.core.private import private_file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS budget_spend (
    id INTEGER PRIMARY KEY,
    dataset TEXT NOT NULL, project TEXT NOT NULL, researcher TEXT NOT NULL,
    rho REAL NOT NULL, message_id TEXT NOT NULL UNIQUE, at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_budget_dataset ON budget_spend (dataset, project, researcher);
"""
# Float sums of many small spends must not refuse the last exact spend.
_EPS = 1e-9


@dataclass(frozen=True)
class Remaining:
    per_query: float
    researcher: float
    project: float
    dataset: float | None

    def allows(self) -> float:
        caps = [self.per_query, self.researcher, self.project]
        if self.dataset is not None:
            caps.append(self.dataset)
        return max(0.0, min(caps))

    def to_json(self) -> dict[str, float | None]:
        return {"per_query": self.per_query, "researcher": round(self.researcher, 9),
                "project": round(self.project, 9),
                "dataset": None if self.dataset is None else round(self.dataset, 9),
                "max_next_query": round(self.allows(), 9)}


class BudgetLedger:
    def __init__(self, path: Path) -> None:
        self.path = private_file(path)  # created 0600 before SQLite makes it by the umask
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    @staticmethod
    def _remaining(db: sqlite3.Connection, limits: PrivacyBudget, dataset: str, project: str,
                   researcher: str) -> Remaining:
        def spent(where: str, *args: str) -> float:
            row = db.execute(f"SELECT coalesce(sum(rho), 0) FROM budget_spend WHERE {where}",  # noqa: S608
                             args).fetchone()
            return float(row[0])

        total = spent("dataset = ?", dataset)
        return Remaining(
            per_query=limits.per_query,
            researcher=limits.per_researcher - spent("dataset = ? AND researcher = ?", dataset,
                                                     researcher),
            project=limits.per_project - spent("dataset = ? AND project = ?", dataset, project),
            dataset=None if limits.total is None else limits.total - total,
        )

    def remaining(self, limits: PrivacyBudget, *, dataset: str, project: str,
                  researcher: str) -> Remaining:
        with self._connect() as db:
            return self._remaining(db, limits, dataset, project, researcher)

    def spend(self, limits: PrivacyBudget, *, dataset: str, project: str, researcher: str,
              rho: float, message_id: str) -> Remaining:
        """Record ``rho`` against every limit, or refuse and record nothing."""
        if not rho > 0:
            raise InvalidInput("rho must be a positive number")
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")  # one writer at a time: no two can both see "enough"
            if db.execute("SELECT 1 FROM budget_spend WHERE message_id = ?",
                          (message_id,)).fetchone():
                db.execute("ROLLBACK")  # this message already paid (a redelivery)
                return self._remaining(db, limits, dataset, project, researcher)
            left = self._remaining(db, limits, dataset, project, researcher)
            for name, value in (("per-query limit", left.per_query),
                                ("your budget on this dataset", left.researcher),
                                ("your project's budget on this dataset", left.project),
                                ("the dataset's total budget", left.dataset)):
                if value is not None and rho > value + _EPS:
                    db.execute("ROLLBACK")
                    raise BudgetExhausted(
                        f"this query needs rho={rho:g} but {name} has {max(value, 0):g} left; "
                        f"nothing was spent. Ask for less (smaller rho) or fewer aggregates")
            db.execute("INSERT INTO budget_spend (dataset, project, researcher, rho, message_id,"
                       " at) VALUES (?, ?, ?, ?, ?, ?)",
                       (dataset, project, researcher, rho, message_id, time.time()))
            db.execute("COMMIT")
            return self._remaining(db, limits, dataset, project, researcher)
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()
