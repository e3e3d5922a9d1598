"""What a controlled job's code calls: read the granted datasets, write checked outputs.

Inside a job (at the datasite, or locally with ``ndl run BUNDLE --mock``)::

    from ndl import job

    pupils = job.dataset("dfe/pupils", as_="pandas")      # or "arrow" (default), "polars",
                                                           # "spark" (python-spark only)
    job.table("fsm_by_sen", pupils, by=["sen_status", "fsm"])          # counts per cell
    job.table("mean_score", pupils, by=["fsm"], value="ks2_score", agg="mean")
    job.model("attainment", "ks2_score ~ fsm + C(sen_status)", pupils)  # OLS (or "logit")
    job.figure("scores", fig)                                           # a matplotlib figure
    job.text("notes", "Method: ...")

Each helper writes its output and leaves *evidence* (the rows it was given, only the columns it
used) for the runner. The runner does not trust the job's own files for tables and models: a
separate, trusted step recomputes every table and refits every model from that evidence, and
what is checked and released is the recomputation. Figures, text and files written directly
(:func:`output_path`) are not checked automatically: an output checker judges them.

Every output must be declared in ``ndl-job.toml``; names are checked here so a mistake fails at
once, with the fix.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # the job's environment has these; importing ndl.job must stay light
    import pandas as pd

ENV = "NDL_JOB"
RECORDS = ".ndl/records.jsonl"
EVIDENCE = ".ndl/evidence"
# Formulas the trusted step can refit without evaluating code: names, +, :, *, C(name), 1, -1.
FORMULA = re.compile(
    r"^\s*[A-Za-z_][A-Za-z0-9_]*\s*~\s*(?:-?\s*1|C\([A-Za-z_][A-Za-z0-9_]*\)|[A-Za-z_]"
    r"[A-Za-z0-9_]*)(?:\s*[+:*]\s*(?:-?\s*1|C\([A-Za-z_][A-Za-z0-9_]*\)|[A-Za-z_]"
    r"[A-Za-z0-9_]*))*\s*$")
AGGS = ("count", "sum", "mean")
FAMILIES = ("ols", "logit")


class JobError(Exception):
    """A mistake in the job's use of ndl.job (the message says what to change)."""


def _config() -> dict[str, Any]:
    raw = os.environ.get(ENV)
    if not raw:
        raise JobError("ndl.job works only inside a job: run the bundle with "
                       "'ndl run BUNDLE --mock' (or submit it with 'ndl submit')")
    cfg: dict[str, Any] = json.loads(raw)
    return cfg


def _out() -> Path:
    return Path(_config()["out"])


def _declared(name: str, kind: str) -> None:
    outputs: dict[str, str] = _config()["outputs"]
    if name not in outputs:
        raise JobError(f"output {name!r} is not declared: add it to ndl-job.toml under "
                       f"[[outputs]] (declared: {', '.join(sorted(outputs)) or 'none'})")
    if outputs[name] != kind:
        raise JobError(f"output {name!r} is declared as a {outputs[name]}, not a {kind}")


def _record(entry: dict[str, Any]) -> None:
    path = _out() / RECORDS
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def _frame(data: Any, columns: list[str] | None = None) -> pd.DataFrame:
    import pandas as pd
    import pyarrow as pa

    if isinstance(data, pd.DataFrame):
        return data
    if type(data).__module__.startswith("pyspark.") and callable(getattr(data, "toArrow", None)):
        # A Spark DataFrame: only the columns the helper uses leave the JVM.
        if columns is not None:
            missing = [c for c in columns if c not in data.columns]
            if missing:
                raise JobError(f"no column {missing[0]!r} in the data given (its columns: "
                               f"{', '.join(map(str, data.columns))})")
            data = data.select(*columns)
        frame = data.toArrow().to_pandas()
        assert isinstance(frame, pd.DataFrame)
        return frame
    if isinstance(data, pa.Table):
        frame = data.to_pandas()
        assert isinstance(frame, pd.DataFrame)
        return frame
    to_pandas = getattr(data, "to_pandas", None)  # Polars
    if callable(to_pandas):
        frame = to_pandas()
        if isinstance(frame, pd.DataFrame):
            return frame
    raise JobError("pass a pandas, Polars or Spark DataFrame or an Arrow table")


def _evidence(name: str, frame: pd.DataFrame, columns: list[str]) -> str:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise JobError(f"output {name!r}: no column {missing[0]!r} in the data given "
                       f"(its columns: {', '.join(map(str, frame.columns))})")
    rel = f"{EVIDENCE}/{name}.parquet"
    path = _out() / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    frame[columns].reset_index(drop=True).to_parquet(path, index=False)
    return rel


def datasets() -> list[str]:
    """The datasets this job may read (its grant's)."""
    return sorted(_config()["datasets"])


def dataset(name: str, *,
            as_: Literal["arrow", "pandas", "polars", "spark"] = "arrow") -> Any:
    """A granted dataset, read-only, as an Arrow table, a pandas, Polars or Spark DataFrame.

    ``name`` is the dataset's id (``dfe/pupils``) or its short name (``pupils``). ``"spark"``
    (environment ``python-spark``) is a DataFrame of a local Spark started in the job's own
    sandbox on first use (seconds: a JVM starts); it reads the same read-only rows.
    """
    found: dict[str, str] = _config()["datasets"]
    path = found.get(name) or next((p for d, p in found.items()
                                    if d.split("/", 1)[-1] == name), None)
    if path is None:
        raise JobError(f"dataset {name!r} is not granted to this job; it may read "
                       f"{', '.join(sorted(found))}")
    if as_ == "spark":
        memory = _config().get("spark_memory")
        if not isinstance(memory, str):  # set by the runner for python-spark alone
            raise JobError("as_='spark' needs environment = \"python-spark\" in ndl-job.toml "
                           "('ndl job environments' lists what this datasite offers)")
        from ndl.jobs.spark_jobs import job_session

        return job_session(memory).read.parquet(path)
    # A dataset Spark wrote for the job is a folder of part files.
    is_dir = os.path.isdir(path)
    if as_ == "polars":
        import polars as pl
        return pl.read_parquet(f"{path}/*.parquet" if is_dir else path)
    import pyarrow.parquet as pq
    table = pq.read_table(path)
    if as_ == "pandas":
        return table.to_pandas()
    if as_ == "arrow":
        return table
    raise JobError("as_ is 'arrow', 'pandas' or 'polars'")


def table(name: str, data: Any, *, by: list[str] | str, value: str | None = None,
          agg: Literal["count", "sum", "mean"] = "count") -> pd.DataFrame:
    """A table of ``agg`` of ``value`` (or the count of rows) for each combination of ``by``.

    Returns the table (true values, for the job's own use); what is released is the runner's
    recomputation, after the disclosure checks.
    """
    _declared(name, "table")
    keys = [by] if isinstance(by, str) else list(by)
    if not keys or len(keys) > 4:
        raise JobError(f"output {name!r}: group by 1 to 4 columns")
    if agg not in AGGS:
        raise JobError(f"output {name!r}: agg is one of {', '.join(AGGS)}")
    if (agg == "count") != (value is None):
        raise JobError(f"output {name!r}: a count takes no value column; a {agg} needs one")
    frame = _frame(data, keys + ([value] if value else []))
    rel = _evidence(name, frame, keys + ([value] if value else []))
    _record({"name": name, "kind": "table", "by": keys, "value": value, "agg": agg,
             "evidence": rel})
    grouped = frame.groupby(keys, dropna=False, observed=True)
    out = grouped.size() if value is None else getattr(grouped[value], agg)()
    result = out.reset_index(name=agg if value is None else f"{agg}_{value}")
    return result


def model(name: str, formula: str, data: Any, *,
          family: Literal["ols", "logit"] = "ols") -> Any:
    """Fit an OLS or logistic regression with statsmodels; returns the fitted result.

    The formula may use column names, ``+``, ``:``, ``*`` and ``C(column)`` (the trusted step
    refits it without evaluating code).
    """
    _declared(name, "model_summary")
    if family not in FAMILIES:
        raise JobError(f"output {name!r}: family is one of {', '.join(FAMILIES)}")
    if not isinstance(formula, str) or not FORMULA.match(formula):
        raise JobError(f"output {name!r}: the formula may use column names, +, :, *, and "
                       "C(column) only, e.g. 'score ~ fsm + C(sen_status)'")
    columns = sorted(set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", formula)) - {"C"})
    frame = _frame(data, columns)
    rel = _evidence(name, frame, columns)
    _record({"name": name, "kind": "model_summary", "formula": formula, "family": family,
             "evidence": rel})
    import statsmodels.formula.api as smf
    fit = smf.ols if family == "ols" else smf.logit
    return fit(formula, data=frame[columns]).fit(**({"disp": 0} if family == "logit" else {}))


def figure(name: str, fig: Any = None) -> Path:
    """Save a matplotlib figure (the current one by default) as PNG, for human review."""
    _declared(name, "figure")
    if fig is None:
        import matplotlib.pyplot as plt
        fig = plt.gcf()
    path = _out() / f"{name}.png"
    fig.savefig(path, format="png", dpi=100)
    _record({"name": name, "kind": "figure"})
    return path


def text(name: str, body: str) -> Path:
    """Release words of the job's own (methods, notes), for human review."""
    _declared(name, "text")
    if not isinstance(body, str):
        raise JobError(f"output {name!r}: text takes a string")
    path = _out() / f"{name}.txt"
    path.write_text(body, encoding="utf-8")
    _record({"name": name, "kind": "text"})
    return path


def output_path(name: str) -> Path:
    """Where to write a declared output yourself (it then goes to human review unchecked)."""
    outputs: dict[str, str] = _config()["outputs"]
    if name not in outputs:
        raise JobError(f"output {name!r} is not declared in ndl-job.toml")
    suffix = {"table": ".csv", "figure": ".png", "model_summary": ".txt", "text": ".txt"}
    return _out() / f"{name}{suffix[outputs[name]]}"
