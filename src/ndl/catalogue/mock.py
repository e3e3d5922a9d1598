"""Mock rows for a dataset: the real schema, plausible values, and no real person in them.

Any registered user may download a mock, so it must be safe to give to anyone. Three rules
make it so:

1. **Identifiers are fabricated, never learned.** Join-key identifiers (NHS number, UPN,
   local id, names, postcode), direct identifiers and columns named like record ids or e-mail
   addresses get made-up values: NHS numbers valid under modulus 11 in the 999 test range,
   UPNs with a correct check letter under a local-authority number no council uses, names
   and postcodes from Faker's en_GB lists, ids ``MOCK-000001``. A fabricated value (for names,
   the row's combination of name columns) never equals a real one. Only each such column's
   share of missing values is learned, with DP.
2. **Every other column is an independent DP marginal.** Each column's distribution is
   learned on its own with differential privacy (OpenDP, zero-concentrated DP; mechanisms in
   :mod:`ndl.catalogue._mock_dp`) and columns are sampled independently of each other. No
   joint distribution is learned, so the mock carries no combination of attributes that could
   describe a real person, and values too rare to clear the DP threshold (a category or a
   range held by a handful of people) never appear at all, unless the category is in the
   column's public code list.
3. **No real row is reproduced.** Every mock row is compared (by hash) with every real row
   on all columns; a mock row equal to a real one is drawn again. When the columns' values
   are few enough to list, every combination the mock can produce is checked up front: if
   all of them occur in the real data the function refuses rather than leak a row. (Pass
   the rows not in ``table`` as ``more_real_rows`` to extend both checks to them.) This
   check reads the real rows without noise, so it is outside the DP guarantee: in a table
   with a fabricated identifier it never fires (a fabricated value matches no real one), but
   in a table of a few low-cardinality columns the absence of a combination from the mock
   hints that it is present in the real data. That is the price of the rule.

Privacy accounting. The unit of privacy is a person: where the metadata names a person
identifier (the first column whose join key is ``nhs_number``, ``upn`` or ``local_id``), one
row per identifier is kept, chosen at random, before anything is learned; otherwise each row
is taken to be a different person. Limitation: rows with no identifier, and one person
recorded under two identifiers, count as different people, so for them the guarantee is
row-level. The budget ``rho`` is split evenly over the columns; a column makes one release,
or one per tree level for numbers (four) and dates (three), which share the column's part.
rho adds up under composition, so the whole mock is ``rho``-zCDP apart from a ``delta``
(default 1e-9, split evenly over the thresholded releases) that covers the stability
histograms used where the set of values is not public. The DP noise comes from OpenDP's own
CSPRNG and cannot be seeded, on purpose: noise regenerable from a known seed could be
subtracted again. ``seed`` fixes the sampling of mock rows; the learned marginals are cached
in-process per (data, metadata, rho, delta), so calling again on the same data returns the
same mock for the same seed and spends no new budget (fresh noise per call would let
averaging erode it).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ndl.catalogue._mock_dp import (
    ALL_NULL,
    ColumnModel,
    NumberKind,
    Spend,
    learn_known,
    learn_null_rate,
    learn_tree,
    learn_unknown,
    tree_levels,
)
from ndl.catalogue._mock_fake import Fabricator, FakeSpec, kind_of
from ndl.catalogue.metadata import ColumnMeta, DatasetMeta
from ndl.core.errors import InternalError, InvalidInput

__all__ = ["DEFAULT_DELTA", "MAX_ROWS", "MockResult", "synthesise_mock"]

DEFAULT_DELTA = 1e-9
MAX_ROWS = 1_000_000
ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(), "integer": pa.int64(), "float": pa.float64(),
    "boolean": pa.bool_(), "date": pa.date32(),
}
_PERSON_KEYS = ("nhs_number", "upn", "local_id")
_CACHE_SIZE = 16
_MAX_ROUNDS = 100
_ENUMERATE_LIMIT = 200_000


@dataclass(frozen=True)
class MockResult:
    table: pa.Table  # the real column names and DatasetMeta Arrow types
    method: str  # human-readable description of how the mock was made
    rho: float  # total zCDP budget spent learning the marginals
    delta: float = 0.0  # total delta of the thresholded (stability) histograms


@dataclass(frozen=True, eq=False)
class _Model:
    learned: dict[str, ColumnModel]
    fakes: tuple[FakeSpec, ...]
    rho: float
    delta: float
    method: str


def synthesise_mock(
    table: pa.Table,
    meta: DatasetMeta,
    *,
    rows: int = 1000,
    rho: float = 0.5,
    seed: int | None = None,
    delta: float = DEFAULT_DELTA,
    more_real_rows: Iterable[pa.RecordBatch | pa.Table] = (),
) -> MockResult:
    """Make ``rows`` mock rows of ``table`` (see the module docstring for the guarantees).

    The marginals are learned from ``table``. When that is only a sample of the dataset, pass
    the rest (e.g. ``ParquetFile.iter_batches()``) as ``more_real_rows``: it is streamed once
    and no mock row, and no fabricated identifier, will equal any of those rows either.

    Raises :class:`InvalidInput` if the table is empty, does not match ``meta``, the arguments
    are out of range, or no mock row could avoid reproducing a real one.
    """
    where = f"dataset {meta.name!r}"
    if not (math.isfinite(rho) and rho > 0):
        raise InvalidInput(f"rho must be a positive number for {where}, got {rho!r}")
    if not 0 < delta < 1:
        raise InvalidInput(f"delta must be between 0 and 1 for {where}, got {delta!r}")
    if not 0 <= rows <= MAX_ROWS:
        raise InvalidInput(f"rows must be between 0 and {MAX_ROWS:,} for {where}, got {rows}")
    real = _conform(table, meta)
    if real.num_rows == 0:
        raise InvalidInput(
            f"{where} has no rows: a mock is learned from the real rows, so there is "
            "nothing to learn from; publish data before asking for a mock",
            detail={"dataset": meta.name},
        )
    model = _cached_model(real, meta, rho, delta)
    mock = _sample(model, real, meta, rows, np.random.default_rng(seed), more_real_rows)
    return MockResult(mock, model.method, model.rho, model.delta)


# --- the real table ------------------------------------------------------------------------


def _conform(table: pa.Table, meta: DatasetMeta) -> pa.Table:
    """The real table with each column cast to the Arrow type its metadata declares."""
    described = {c.name for c in meta.columns}
    extra = [n for n in table.column_names if n not in described]
    missing = [c.name for c in meta.columns if c.name not in table.column_names]
    if extra or missing:
        raise InvalidInput(
            f"the data and metadata.json of dataset {meta.name!r} disagree: "
            + "; ".join(filter(None, [
                f"columns not described: {', '.join(extra)}" if extra else "",
                f"columns described but absent: {', '.join(missing)}" if missing else "",
            ]))
            + ". Describe exactly the data's columns in metadata.json",
            detail={"extra": extra, "missing": missing},
        )
    arrays = []
    for name in table.column_names:
        col = meta.column(name)
        assert col is not None
        try:
            arrays.append(table.column(name).cast(ARROW_TYPES[col.type]))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise InvalidInput(
                f"column {name!r} of dataset {meta.name!r} is declared {col.type} in "
                f"metadata.json but holds {table.column(name).type} values that do not "
                f"convert ({exc}); fix the declared type or the data",
            ) from exc
    return pa.table(arrays, names=table.column_names)


def _person_key(meta: DatasetMeta, names: list[str]) -> str | None:
    for name in names:
        col = meta.column(name)
        if col is not None and col.join_key in _PERSON_KEYS:
            return name
    return None


def _one_row_per_person(real: pa.Table, key: str) -> pa.Table:
    """Keep one row per identifier (rows without one are kept: each may be anyone)."""
    ids = real.column(key).to_pylist()
    # Which row stands for a person is chosen at random (not seeded: like the DP noise, it
    # is part of learning) so that the earliest or latest record is not favoured.
    order = np.random.default_rng().permutation(len(ids))
    seen: set[Any] = set()
    keep = []
    for i in order:
        v = ids[i]
        if v is None or v not in seen:
            keep.append(int(i))
            seen.add(v)
    return real.take(sorted(keep))


def _real_sets(real: pa.Table, meta: DatasetMeta, fakes: tuple[FakeSpec, ...],
               more: Iterable[pa.RecordBatch | pa.Table]
               ) -> tuple[set[int], list[set[tuple[Any, ...]]]]:
    """Hashes of every real row, and each fabricated group's real values, in one pass.

    A batch at a time, so the real rows never sit in memory as tuples all at once.
    """
    rows: set[int] = set()
    values: list[set[tuple[Any, ...]]] = [set() for _ in fakes]
    chunks = itertools.chain([real], (_conform(_as_table(c), meta).select(real.column_names)
                                      for c in more))
    for chunk in chunks:
        for batch in chunk.to_batches(max_chunksize=65_536):
            cols = {n: batch.column(n).to_pylist() for n in real.column_names}
            rows.update(map(hash, zip(*cols.values(), strict=True)))
            for seen, spec in zip(values, fakes, strict=True):
                seen.update(zip(*(cols[c] for c in spec.columns), strict=True))
    for seen, spec in zip(values, fakes, strict=True):
        seen.discard((None,) * len(spec.columns))  # no value at all is not a real identifier
    return rows, values


def _as_table(chunk: pa.RecordBatch | pa.Table) -> pa.Table:
    return chunk if isinstance(chunk, pa.Table) else pa.Table.from_batches([chunk])


# --- learning ---------------------------------------------------------------------------------


def _plan(col: ColumnMeta) -> tuple[str, Any]:
    """How a column is mocked: ("fake", kind) | ("known", categories) | ("unknown", None)
    | ("tree", kind)."""
    kind = kind_of(col.name, col.join_key, col.sensitivity == "direct_identifier",
                   bool(col.code_list))
    if kind is not None:
        return "fake", kind
    if col.type == "boolean":
        return "known", [False, True]
    if col.code_list and col.type == "string":
        return "known", [e.code for e in col.code_list]
    if col.code_list and col.type == "integer":
        try:
            return "known", [int(e.code) for e in col.code_list]
        except ValueError:
            pass  # codes that are not integers say nothing usable about the values
    if col.type == "string":
        return "unknown", None
    return "tree", col.type


def _bounds(col: ColumnMeta) -> tuple[float | None, float | None]:
    """Public bounds a steward may give as extra column fields ``minimum`` / ``maximum``."""
    extra = col.model_extra or {}
    out: list[float | None] = []
    for k in ("minimum", "maximum"):
        v = extra.get(k)
        out.append(float(v) if isinstance(v, int | float) and math.isfinite(v) else None)
    lo, hi = out
    if col.type == "integer":
        lo = None if lo is None else math.ceil(lo)
        hi = None if hi is None else math.floor(hi)
    return lo, hi


def _fingerprint(real: pa.Table, meta: DatasetMeta, rho: float, delta: float) -> str:
    h = hashlib.sha256()
    h.update(repr((rho, delta)).encode())
    h.update(str([c.model_dump_json() for c in meta.columns]).encode())
    for batch in real.to_batches():
        h.update(memoryview(batch.serialize()))
    return h.hexdigest()


_CACHE: OrderedDict[str, _Model] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def _cached_model(real: pa.Table, meta: DatasetMeta, rho: float, delta: float) -> _Model:
    key = _fingerprint(real, meta, rho, delta)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    model = _learn(real, meta, rho, delta)
    with _CACHE_LOCK:
        _CACHE[key] = model
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return model


def _learn(real: pa.Table, meta: DatasetMeta, rho: float, delta: float) -> _Model:
    names = real.column_names
    cols = {n: meta.column(n) for n in names}
    plans = {n: _plan(c) for n, c in cols.items() if c is not None}
    person = _person_key(meta, names)
    bounded = _one_row_per_person(real, person) if person else real
    rho_col = rho / len(names)
    thresholded = sum(tree_levels(p[1]) if p[0] == "tree" else p[0] == "unknown"
                      for p in plans.values())
    delta_each = delta / thresholded if thresholded else 0.0

    learned: dict[str, ColumnModel] = {}
    null_rates: dict[str, float] = {}
    spends: list[Spend] = []
    for name, (how, arg) in plans.items():
        values = bounded.column(name).to_pylist()
        if how == "fake":
            null_rates[name], spend = learn_null_rate(values, rho_col)
            spends.append(spend)
        elif how == "known":
            learned[name], spend = learn_known(values, arg, rho_col)
            spends.append(spend)
        elif how == "unknown":
            learned[name], spend = learn_unknown(values, rho_col, delta_each)
            spends.append(spend)
        else:
            kind: NumberKind = arg
            bounds = _bounds(cols[name]) if kind != "date" else (None, None)  # type: ignore[arg-type]
            learned[name], tree_spends = learn_tree(
                values, kind, rho_col, delta_each * tree_levels(kind), bounds)
            spends.extend(tree_spends)

    fakes = _fake_specs(names, cols, plans, null_rates)
    total_rho = sum(s.rho for s in spends)
    total_delta = sum(s.delta for s in spends)
    if total_rho > rho * (1 + 1e-9) or total_delta > delta * (1 + 1e-9):
        raise InternalError(f"mock budget overspent for dataset {meta.name!r}: rho "
                            f"{total_rho} > {rho} or delta {total_delta} > {delta}")
    return _Model(learned, fakes, total_rho, total_delta,
                  _method(learned, fakes, person, total_rho, total_delta, len(names)))


def _fake_specs(names: list[str], cols: dict[str, ColumnMeta | None],
                plans: dict[str, tuple[str, Any]], null_rates: dict[str, float]
                ) -> tuple[FakeSpec, ...]:
    """One fabricated group per identifier column; all name columns form a single group."""
    specs: list[FakeSpec] = []
    name_cols = [n for n in names if plans[n] == ("fake", "name")]
    for n in names:
        how, kind = plans[n]
        if how != "fake" or (kind == "name" and n != name_cols[0]):
            continue
        group = name_cols if kind == "name" else [n]
        specs.append(FakeSpec(
            kind=kind,
            columns=tuple(group),
            types=tuple(cols[g].type for g in group),  # type: ignore[union-attr]
            null_rates=tuple(null_rates[g] for g in group),
        ))
    return tuple(specs)


def _method(learned: dict[str, ColumnModel], fakes: tuple[FakeSpec, ...], person: str | None,
            rho: float, delta: float, n_columns: int) -> str:
    parts = [
        f"independent per-column marginals learned with differential privacy (OpenDP, "
        f"zCDP rho={rho:.3g} in total" + (f", delta={delta:.1g}" if delta else "")
        + f", split evenly over {n_columns} columns)",
        f"one row per {person} kept" if person else "each row treated as one person",
    ]
    fabricated = [c for f in fakes for c in f.columns]
    if fabricated:
        parts.append("fabricated identifiers: " + ", ".join(fabricated))
    empty = [n for n, m in learned.items() if m is ALL_NULL]
    if empty:
        parts.append("no value common enough to release, so left empty: " + ", ".join(empty))
    parts.append("no real row reproduced")
    return "; ".join(parts)


# --- sampling ----------------------------------------------------------------------------------


def _sample(model: _Model, real: pa.Table, meta: DatasetMeta, rows: int,
            rng: np.random.Generator, more: Iterable[pa.RecordBatch | pa.Table]) -> pa.Table:
    names = real.column_names
    real_rows, real_ids = _real_sets(real, meta, model.fakes, more)
    # The dataset's name goes into the fabricators' seeds so that two datasets mocked with the
    # same seed do not share fabricated identifiers, which would look like a linkage.
    base = int(rng.integers(2**62)) ^ zlib.crc32(meta.name.encode())
    fabricators = [Fabricator(spec, ids, base + i)
                   for i, (spec, ids) in enumerate(zip(model.fakes, real_ids, strict=True))]

    def draw(n: int) -> dict[str, list[Any]]:
        cols = {name: m.sample(rng, n) for name, m in model.learned.items()}
        for f in fabricators:
            cols.update(f.draw(rng, n))
        return cols

    allowed = _allowed_rows(model, names, real_rows, meta.name)
    cols = draw(rows)
    bad = _collisions(cols, names, range(rows), real_rows)
    for _ in range(_MAX_ROUNDS):
        if not bad:
            break
        if allowed is not None:  # small finite support: draw from the rows known to be new
            combos, weights = allowed
            for i, j in zip(bad, rng.choice(len(combos), size=len(bad), p=weights), strict=True):
                for name, v in zip(names, combos[j], strict=True):
                    cols[name][i] = v
            bad = []
            break
        redo = draw(len(bad))
        for k, i in enumerate(bad):
            for name in names:
                cols[name][i] = redo[name][k]
        bad = _collisions(cols, names, bad, real_rows)
    if bad:
        raise InvalidInput(
            f"could not draw {rows} mock rows for dataset {meta.name!r} that differ from "
            f"every real row ({len(bad)} still matched after {_MAX_ROUNDS} redraws); the "
            "learned values are too few to avoid the real combinations. Ask for fewer rows "
            "or describe more columns",
        )
    return pa.table(
        [pa.array(cols[n], type=ARROW_TYPES[meta.column(n).type]) for n in names],  # type: ignore[union-attr]
        names=names,
    )


def _collisions(cols: dict[str, list[Any]], names: list[str], idx: Any,
                real_rows: set[int]) -> list[int]:
    return [i for i in idx if hash(tuple(cols[n][i] for n in names)) in real_rows]


def _allowed_rows(model: _Model, names: list[str], real_rows: set[int], dataset: str
                  ) -> tuple[list[tuple[Any, ...]], np.ndarray] | None:
    """Every producible row that is not a real one, with its probability; None if too many.

    Raises :class:`InvalidInput` when every row the mock could produce is a real row.
    """
    supports: list[tuple[list[Any], np.ndarray]] = []
    by_column = {c: (f, k) for f in model.fakes for k, c in enumerate(f.columns)}
    for name in names:
        if name in model.learned:
            s = model.learned[name].support()
        else:
            f, k = by_column[name]
            s = ([None], np.array([1.0])) if f.null_rates[k] >= 1.0 else None
        if s is None:
            return None
        supports.append(s)
    if math.prod(len(v) for v, _ in supports) > _ENUMERATE_LIMIT:
        return None
    combos: list[tuple[Any, ...]] = []
    weights: list[float] = []
    for idx in itertools.product(*(range(len(v)) for v, _ in supports)):
        row = tuple(supports[c][0][i] for c, i in enumerate(idx))
        if hash(row) not in real_rows:
            combos.append(row)
            weights.append(math.prod(float(supports[c][1][i]) for c, i in enumerate(idx)))
    if not combos:
        raise InvalidInput(
            f"cannot mock dataset {dataset!r}: every combination of values the mock "
            f"could produce ({math.prod(len(v) for v, _ in supports)}) occurs in the real "
            "data, so any mock row would reproduce a real person's row. The columns have too "
            "few possible values; a mock is only possible with more columns or values",
            detail={"dataset": dataset},
        )
    w = np.array(weights)
    return combos, w / w.sum()
