"""The second, trusted step in its own sandbox: recompute every checked output from evidence.

``python -I -m ndl.jobs.evidence`` runs ndl's code only, never the job's, with the job's
output folder mounted read-only and a fresh folder to write. It reads what the helpers of
:mod:`ndl.job` recorded, and from the rows each helper was given it recomputes each table's
cells (contributors, totals, largest contributions) and refits each model. So the figures the
disclosure checks judge, and the tables and model summaries released, are the runner's, not
numbers the job wrote. It runs sandboxed because the files it parses were written by the job.

Its answer is ``stats.json`` (true values: it never leaves the datasite) and, in ``files/``,
the figures and text re-encoded without metadata. Undeclared files are counted, never named:
a file name could carry data.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from ndl.core.csvsafe import csv_text
from ndl.jobs.bundle import SUFFIX

MAX_RECORDS_BYTES = 1024 * 1024
MAX_TEXT_BYTES = 200 * 1024
MAX_PIXELS = 4000 * 4000
MAX_CELLS = 10_000
TOP = 3
MISSING = "(missing)"


class Problem(Exception):
    """An output that cannot be checked automatically; the message is researcher-safe."""


class Review(Problem):
    """A SQL result the checks cannot read: its rows go to an output checker as they are."""


def _records(folder: Path, outputs: dict[str, str], language: str) -> dict[str, dict[str, Any]]:
    path = folder / ".ndl" / "records.jsonl"
    if not path.is_file() or path.is_symlink():
        return {}
    if path.stat().st_size > MAX_RECORDS_BYTES:
        raise Problem("the job's output records are too large to read")
    found: dict[str, dict[str, Any]] = {}
    for line in path.read_text("utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        name = rec.get("name") if isinstance(rec, dict) else None
        if not isinstance(name, str) or name not in outputs or rec.get("kind") != outputs[name]:
            continue
        # Only ndl's own SQL step may say a table came from SQL; a Python job cannot claim it.
        if bool(rec.get("sql")) != (language == "sql"):
            continue
        # ndl.R makes no models, so a model record in an R job's folder is not a helper's.
        if language == "r" and rec.get("kind") == "model_summary":
            continue
        found[name] = rec
    return found


def _read_evidence(folder: Path, rec: dict[str, Any], name: str, max_rows: int,
                   language: str) -> Any:
    import pyarrow.parquet as pq

    # R's helpers (ndl/jobs/r/ndl.R) leave CSV, having no Parquet writer; Python's and SQL's
    # leave Parquet. Each language's evidence is read only where its own helpers write it.
    suffix = ".csv" if language == "r" else ".parquet"
    rel = rec.get("evidence")
    if rel != f".ndl/evidence/{name}{suffix}":
        raise Problem(f"output {name!r} has no evidence where ndl's helpers write it")
    path = folder / rel
    if path.is_symlink() or not path.is_file():
        raise Problem(f"output {name!r}: its evidence is missing")
    too_many = Problem(f"output {name!r}: its evidence has more rows than the granted data "
                       "holds, so it cannot have come from it; an output checker must judge")
    if suffix == ".csv":
        import pandas as pd

        # Every column as text (the group keys are released as text; a value column is
        # converted to numbers by table_stats), an empty field as missing, as ndl.R writes.
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""],
                            encoding="utf-8", nrows=max_rows + 1)
        if len(frame) > max_rows:
            raise too_many
        return frame
    if pq.ParquetFile(path).metadata.num_rows > max_rows:
        raise too_many
    return pq.read_table(path).to_pandas()


def _key(values: tuple[Any, ...]) -> list[str]:
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(MISSING)
        else:
            out.append(str(v))
    return out


def _finite(x: Any) -> float | None:
    """A number, or None when it is NaN or infinite (the checks then suppress its cell)."""
    f = float(x)
    return f if math.isfinite(f) else None


def table_stats(name: str, frame: Any, by: list[str], value: str | None,
                agg: str) -> dict[str, Any]:
    """Cells of the table ``frame`` grouped by ``by``: contributors, statistic, evidence."""
    for c in by + ([value] if value else []):
        if c not in frame.columns:
            # Not named: the column names come from the job-written record, so could be data.
            raise Problem(f"output {name!r}: its evidence lacks a column its record names")
    cells = []
    for keys, group in frame.groupby(by, dropna=False, observed=True, sort=True):
        key = _key(keys if isinstance(keys, tuple) else (keys,))
        n = len(group)
        if value is None:
            cells.append({"key": key, "n": n, "value": float(n)})
            continue
        col = group[value].astype("float64")
        finite = [_finite(v) for v in col.dropna()]
        contributions = sorted((abs(v) for v in finite if v is not None), reverse=True)
        stat = float(col.sum()) if agg == "sum" else float(col.mean()) if n else None
        cells.append({"key": key, "n": int(col.notna().sum()),
                      "value": None if None in finite or stat is None else _finite(stat),
                      "total": float(sum(contributions)), "top": contributions[:TOP]})
        if len(cells) > MAX_CELLS:
            raise Problem(f"output {name!r} has more than {MAX_CELLS:,} cells")
    cells += _empty_cells(name, cells, len(by), "count" if value is None else agg)
    return {"dimensions": by, "statistic": "count" if value is None else agg,
            "value_column": value, "cells": cells}


def _empty_cells(name: str, cells: list[dict[str, Any]], dims: int,
                 statistic: str) -> list[dict[str, Any]]:
    """The combinations of the table's own values that no row has, as cells of nobody.

    A grouped table lists only the combinations that occur, so a missing one would tell that
    the group is empty; listed with n = 0 it meets the zeros rule (suppressed, with what would
    reveal it) like any other cell."""
    import itertools

    seen = {tuple(c["key"]) for c in cells}
    values = [sorted({k[i] for k in seen}) for i in range(dims)]
    size = 1
    for v in values:
        size *= len(v)
    if size > MAX_CELLS:
        raise Problem(f"output {name!r} would have more than {MAX_CELLS:,} cells once every "
                      "combination of its groups is listed")
    empty: dict[str, Any] = {"n": 0, "value": None if statistic == "mean" else 0.0}
    if statistic != "count":
        empty.update(total=0.0, top=[])
    return [{"key": list(k), **empty} for k in itertools.product(*values) if k not in seen]


def sql_stats(name: str, frame: Any, count_column: str | None) -> dict[str, Any]:
    """A SQL job's result: its dimensions are the text columns, the count column its n."""
    if len(frame) > MAX_CELLS:
        raise Problem(f"output {name!r} has more than {MAX_CELLS:,} rows")
    if count_column is None:
        raise Review(f"output {name!r}: no count_column is declared, so its cells cannot be "
                     "checked automatically; an output checker must judge it")
    if count_column not in frame.columns:
        raise Problem(f"output {name!r}: the query returned no column {count_column!r}")
    dims = [c for c in frame.columns if c != count_column]
    numeric = [c for c in dims if str(frame[c].dtype).startswith(("int", "float", "Int",
                                                                  "Float"))]
    if numeric:
        # Counted, not named: a query can name columns after values (DuckDB's PIVOT does).
        raise Review(f"output {name!r}: besides its count it returns {len(numeric)} numeric "
                     "column(s), which are not checked automatically; an output checker must "
                     "judge it")
    cells = []
    for row in frame.itertuples(index=False):
        d = row._asdict()
        n = d[count_column]
        if n is None or (isinstance(n, float) and (math.isnan(n) or n != int(n))) or n < 0:
            raise Problem(f"output {name!r}: {count_column!r} is not a whole count")
        cells.append({"key": _key(tuple(d[c] for c in dims)), "n": int(n), "value": float(n)})
    return {"dimensions": dims, "statistic": "count", "cells": cells}


def model_stats(name: str, frame: Any, formula: str, family: str, out: Path) -> dict[str, Any]:
    import statsmodels.formula.api as smf

    from ndl.job import FAMILIES, FORMULA
    if not isinstance(formula, str) or not FORMULA.match(formula) or family not in FAMILIES:
        raise Problem(f"output {name!r}: its model cannot be refitted (formula or family)")
    fit = smf.ols if family == "ols" else smf.logit
    try:
        res = fit(formula, data=frame).fit(**({"disp": 0} if family == "logit" else {}))
    except Exception as exc:  # a model that will not fit is the researcher's to fix
        raise Problem(f"output {name!r}: the model could not be refitted "
                      f"({type(exc).__name__})") from None
    lines = [f"{family.upper()} regression: {formula}",
             f"observations: {int(res.nobs)}    residual degrees of freedom: {int(res.df_resid)}",
             "", f"{'term':<32}{'coef':>12}{'std err':>12}{'p':>10}"]
    for term in res.params.index:
        lines.append(f"{str(term)[:31]:<32}{res.params[term]:>12.4f}{res.bse[term]:>12.4f}"
                     f"{res.pvalues[term]:>10.4f}")
    (out / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"residual_df": int(res.df_resid), "nobs": int(res.nobs), "file": f"{name}.txt"}


def reencode_png(src: Path, dst: Path) -> None:
    """Pixels only: text chunks, EXIF and every other piece of metadata are dropped."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    with Image.open(src) as im:
        if im.format != "PNG":
            raise Problem(f"{src.name} is not a PNG image")
        if im.width * im.height > MAX_PIXELS:
            raise Problem(f"{src.name} is larger than {MAX_PIXELS:,} pixels")
        clean = Image.new("RGBA", im.size)
        clean.paste(im.convert("RGBA"))
    clean.save(dst, format="PNG")


def copy_text(src: Path, dst: Path) -> None:
    data = src.read_bytes()[:MAX_TEXT_BYTES + 1]
    if len(data) > MAX_TEXT_BYTES:
        raise Problem(f"{src.name} is longer than {MAX_TEXT_BYTES // 1024} KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Problem(f"{src.name} is not UTF-8 text") from None
    dst.write_text(text, encoding="utf-8")


def _regular(path: Path) -> bool:
    return path.is_file() and not path.is_symlink() and path.stat().st_nlink == 1


def collect(cfg: dict[str, Any]) -> dict[str, Any]:
    src, out = Path(cfg["in"]), Path(cfg["out"])
    files = out / "files"
    files.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, str] = cfg["outputs"]
    answer: dict[str, Any] = {"outputs": {}, "problems": [], "undeclared": 0}
    try:
        records = _records(src, outputs, cfg["language"])
    except Problem as exc:
        answer["problems"].append({"output": None, "message": str(exc)})
        records = {}
    declared_files = {n + SUFFIX[k] for n, k in outputs.items()}
    for name, kind in outputs.items():
        rec = records.get(name)
        item: dict[str, Any] = {"kind": kind, "made_by": "helper"}
        try:
            if kind in ("table", "model_summary") and rec is not None:
                frame = _read_evidence(src, rec, name, int(cfg["max_rows"]),
                                       cfg["language"])
                if kind == "model_summary":
                    item.update(model_stats(name, frame, rec.get("formula", ""),
                                            str(rec.get("family")), files))
                elif rec.get("sql"):
                    try:
                        item["table"] = sql_stats(name, frame, cfg["count_columns"].get(name))
                    except Review as exc:
                        (files / f"{name}.csv").write_text(
                            csv_text(list(map(str, frame.columns)),
                                     frame.itertuples(index=False)), encoding="utf-8")
                        item.update(file=f"{name}.csv", review=str(exc))
                else:
                    by, value, agg = rec.get("by"), rec.get("value"), rec.get("agg")
                    if not isinstance(by, list) or not all(isinstance(b, str) for b in by) \
                            or agg not in ("count", "sum", "mean") \
                            or (value is not None and not isinstance(value, str)):
                        raise Problem(f"output {name!r}: its record is not one ndl.job wrote")
                    item["table"] = table_stats(name, frame, by, value, agg)
            else:
                # Not recomputable: figures, text, and anything the job wrote itself.
                item["made_by"] = "helper" if rec is not None else "job"
                path = src / (name + SUFFIX[kind])
                if not _regular(path):
                    raise Problem(f"declared output {name!r} was not produced (expected "
                                  f"{name + SUFFIX[kind]})")
                if kind == "figure":
                    reencode_png(path, files / path.name)
                else:
                    copy_text(path, files / path.name)
                item["file"] = path.name
        except Problem as exc:
            item["problem"] = str(exc)
        except Exception as exc:  # unreadable evidence: never the job's text, only its kind
            item["problem"] = f"output {name!r} could not be read ({type(exc).__name__})"
        answer["outputs"][name] = item
    for path in src.rglob("*"):
        rel = path.relative_to(src).as_posix()
        if rel.startswith(".ndl/") or rel == ".ndl" or rel in declared_files:
            continue
        if not path.is_dir():
            answer["undeclared"] += 1
    return answer


def main() -> int:
    cfg: dict[str, Any] = json.loads(os.environ["NDL_EVIDENCE"])
    answer = collect(cfg)
    (Path(cfg["out"]) / "stats.json").write_text(json.dumps(answer, allow_nan=False),
                                                 encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
