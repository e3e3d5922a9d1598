"""R jobs: what the runner does differently for a bundle whose language is ``r``.

Debian's R (``r-base-core``) has no Parquet reader and CRAN cannot be reached, so each granted
Parquet file is converted here, outside the sandbox, to a CSV in the run's own folder, and the
job is given those CSVs instead (read-only, like the Parquet files of a Python job). The first
step runs ``Rscript --vanilla`` on :file:`r/inside.R`, which loads the helpers of
:file:`r/ndl.R`, parses every R file, then sources the entry. Its configuration comes in plain
``NDL_R_*`` variables (base R reads no JSON). The second step (:mod:`.evidence`) reads the CSV
evidence the R helpers leave, and recomputes every table from it, as for Python.

R reads its own configuration from ``R_HOME/etc``, which Debian links into ``/etc/R``: that one
folder of ``/etc`` is bound read-only. R's BLAS and LAPACK (and the ``which`` it runs) are
reached through Debian's "alternatives" links (``/usr/lib/<arch>/libblas.so.3`` →
``/etc/alternatives/...`` → the chosen library under ``/usr``): for each such link, the file it
resolves to (under ``/usr``, never anything of ``/etc``'s own) is bound at the
``/etc/alternatives`` path the link names. Nothing else of ``/etc`` is there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ndl.jobs import environments
from ndl.jobs.sandbox import Mount

HERE = Path(__file__).resolve().parent / "r"
HELPERS = HERE / "ndl.R"
WRAPPER = HERE / "inside.R"
ETC_R = Path("/etc/R")
ALTERNATIVES = "/etc/alternatives"
COMMANDS = ("/usr/bin/which",)  # the alternatives-chosen commands R runs itself
# The condition classes base R signals, whose names the runner may repeat to the researcher
# (a job can signal a condition of any class name, which could carry a value from the data).
R_CONDITIONS = frozenset({"simpleError", "packageNotFoundError", "JobError", "SyntaxError"})


def _r_class(arrow_type: Any) -> str:
    """The R column class ``read.csv`` should give a column of this Arrow type."""
    import pyarrow as pa

    t = arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type
    if pa.types.is_boolean(t):
        return "logical"
    # R's integers are 32-bit: wider ones (and unsigned 32-bit) are read as doubles.
    if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_int32(t) \
            or pa.types.is_uint8(t) or pa.types.is_uint16(t):
        return "integer"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "numeric"
    return "character"  # text, dates and times (ISO 8601), anything else


def to_csv(parquet: Path, dest: Path) -> tuple[str, ...]:
    """Write ``parquet`` as the CSV an R job reads; return each column's R class.

    Dictionary columns are written as their values; a nested column (list, struct, map), which
    CSV cannot hold, is written as its JSON-like text so the job still sees the column.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    table = pq.read_table(parquet)
    columns, classes = [], []
    for field, column in zip(table.schema, table.columns, strict=True):
        t = field.type
        if pa.types.is_dictionary(t):
            column = pc.cast(column, t.value_type)
        elif pa.types.is_nested(t):
            column = pa.array([None if v is None else str(v) for v in column.to_pylist()],
                              pa.string())
        columns.append(column)
        classes.append(_r_class(t))
    dest.parent.mkdir(parents=True, exist_ok=True)
    pcsv.write_csv(pa.Table.from_arrays(columns, names=table.column_names), dest)
    return tuple(classes)


def data_mount(index: int, parquet: Path, folder: Path) -> tuple[Mount, tuple[str, ...]]:
    """The CSV copy of one granted dataset, made in ``folder``, and how to mount it."""
    csv = folder / f"{index}.csv"
    classes = to_csv(parquet, csv)
    return Mount(csv, f"/job/data/{index}.csv"), classes


def _lines(rows: list[tuple[str, ...]]) -> str:
    for row in rows:
        for field in row:
            # Ours, not the researcher's: ids, declared names and the sandbox's paths.
            if "\t" in field or "\n" in field:
                raise ValueError(f"cannot pass {field[:60]!r} to an R job")
    return "\n".join("\t".join(row) for row in rows)


def first_step(cfg: dict[str, Any], classes: dict[str, tuple[str, ...]],
               env: dict[str, str]) -> tuple[list[str], dict[str, str], list[Mount]]:
    """Step 1 of an R job: its argv, its environment (``env`` plus the R settings) and the
    extra read-only mounts R needs to start."""
    rscript = environments.rscript()
    if rscript is None:  # the environment is offered only where R is, so this is ours
        raise RuntimeError("Rscript is not installed on this datasite")
    r_env = {
        **env,
        "NDL_R_CODE": cfg["code"], "NDL_R_ENTRY": cfg["entry"], "NDL_R_OUT": cfg["out"],
        "NDL_R_MOCK": "true" if cfg.get("mock") is True else "false",
        "NDL_R_HELPERS": str(HELPERS),
        "NDL_R_OUTPUTS": _lines(sorted(cfg["outputs"].items())),
        "NDL_R_DATASETS": _lines([(ds_id, path, ",".join(classes[ds_id]))
                                  for ds_id, path in sorted(cfg["datasets"].items())]),
    }
    mounts = [Mount(ETC_R, str(ETC_R))] if ETC_R.is_dir() else []
    return [rscript, "--vanilla", str(WRAPPER)], r_env, [*mounts, *alternatives()]


def alternatives(candidates: list[Path] | None = None) -> list[Mount]:
    """Read-only binds for what Debian chooses through ``/etc/alternatives`` and R uses.

    The candidates are the shared libraries (``lib*.so*``) in the system's library folders and
    the ``which`` command (R's utils package runs it as it loads). For each one that is a link
    into ``/etc/alternatives`` resolving to a regular file under ``/usr``, that one file is
    bound at the link's ``/etc/alternatives`` path.
    """
    if candidates is None:
        candidates = [entry for folder in sorted(Path("/usr/lib").glob("*-linux-gnu*"))
                      for entry in sorted(folder.glob("lib*.so*"))]
        candidates += [Path(p) for p in COMMANDS]
    found: dict[str, Path] = {}
    for entry in candidates:
        if not entry.is_symlink():
            continue
        link = os.readlink(entry)
        if not link.startswith(ALTERNATIVES + "/"):
            continue
        real = entry.resolve()
        if real.is_file() and real.is_relative_to("/usr"):
            found[link] = real
    return [Mount(real, link) for link, real in sorted(found.items())]
