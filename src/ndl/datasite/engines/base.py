"""The one interface a datasite computes through, whatever engine holds the rows.

An :class:`Engine` answers the datasite's data operations for one :class:`LocalDataset`:

* :meth:`Engine.count_by`: exact row counts by groups (the caller applies the tier's rules);
* :meth:`Engine.run_sql`: one allow-listed SELECT over the view ``data`` (open data only; the
  caller checks the tier), with a row limit, a deadline, the answer-size cap and scrubbed
  errors;
* :meth:`Engine.private_answer`: the safeguarded tier's DP answer to a checked plan. The
  engine decides where the exact, contribution-bounded statistics are computed (DuckDB reads
  the plan's columns into this process; Spark computes them on the cluster);
* :meth:`Engine.profile` and :meth:`Engine.sample`: what publishing needs (exact per-column
  figures; up to N real rows to learn a synthetic mock from).

:meth:`Engine.read_columns` hands whole columns to this process, so it is only for data the
engine knows to be small enough to hold.

Tier and policy checks are not here: they stay in the agent's handlers
(:mod:`ndl.access.rules`, :mod:`ndl.core.tiers`), the same for every engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pyarrow as pa

    from ndl.datasite.store import LocalDataset
    from ndl.privacy.spec import DpResult, PrivateQuery, SdcRules

Rows = list[list[Any]]


@dataclass(frozen=True)
class ColumnProfile:
    """Exact figures for one column: equal whichever engine computed them."""

    name: str
    nulls: int
    distinct: int  # distinct non-null values
    min: Any = None  # JSON-safe; None for an all-null column
    max: Any = None


@dataclass(frozen=True)
class DatasetProfile:
    rows: int
    columns: list[ColumnProfile] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "columns": [vars(c) for c in self.columns]}


@runtime_checkable
class Engine(Protocol):
    """What a datasite's handlers call; see the module docstring."""

    name: str

    def count_by(self, ds: LocalDataset, by: list[str]) -> tuple[list[str], Rows]:
        """Row counts grouped by ``by`` (validated against the metadata), sorted by groups,
        NULL groups last; columns ``[*by, "n"]``."""
        ...

    def run_sql(self, ds: LocalDataset, sql: str, *, limit: int, timeout: float
                ) -> tuple[list[str], Rows, bool]:
        """(columns, JSON-safe rows, truncated). Raises InvalidInput (refused or failed SQL,
        errors scrubbed of server paths), PayloadTooLarge or UpstreamTimeout."""
        ...

    def read_columns(self, ds: LocalDataset, columns: list[str]) -> pa.Table:
        """Whole columns in this process: only where the engine holds small data."""
        ...

    def private_answer(self, ds: LocalDataset, q: PrivateQuery, *, sdc: SdcRules | None,
                       max_rows_per_person: int | None) -> DpResult:
        """The DP answer to ``q`` (already checked and paid for by the caller)."""
        ...

    def profile(self, ds: LocalDataset) -> DatasetProfile:
        ...

    def sample(self, ds: LocalDataset, rows: int) -> pa.Table:
        """Up to ``rows`` real rows (for learning a mock; never sent anywhere)."""
        ...

    def prepare(self, open_sql: bool) -> None:
        """Start what the first query would otherwise wait for."""
        ...

    def close(self) -> None:
        ...


def column_names(ds: LocalDataset) -> list[str]:
    return [c.name for c in ds.meta.columns]


def check_columns(ds: LocalDataset, wanted: list[str]) -> None:
    """Every name in ``wanted`` is a column of the dataset's metadata (names are then safe to
    quote into SQL or look up in a DataFrame)."""
    from ndl.core.errors import InvalidInput

    have = set(column_names(ds))
    for col in wanted:
        if col not in have:
            raise InvalidInput(f"column {col!r} is not in this dataset")
