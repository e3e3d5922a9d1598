"""The first step inside the sandbox: run the job's own code (``python -I -m ndl.jobs.inside``).

Its configuration comes in ``NDL_JOB`` (no secret: dataset paths inside the sandbox, the
declared outputs, the entry). A Python job runs as ``__main__`` from its bundle folder; a SQL
job's single SELECT runs here, in a locked-down DuckDB that can read only the granted files.

On a failure the full traceback goes to the job's log (which only an output checker can
release); the researcher is told a *safe* summary written to ``.ndl/error.json``: the kind of
error and where in their own code it happened, never the exception's message, which can hold
a value read from the data (``KeyError: 'Smith'``).
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import traceback
from pathlib import Path
from typing import Any

ERROR = ".ndl/error.json"


def _safe_error(exc: BaseException, code_dir: Path, *, mock: bool = False) -> dict[str, Any]:
    where: dict[str, Any] = {}
    for frame in traceback.extract_tb(exc.__traceback__):
        try:
            rel = Path(frame.filename).resolve().relative_to(code_dir.resolve())
        except ValueError:
            continue
        where = {"file": rel.as_posix(), "line": frame.lineno}
    kind = type(exc).__name__
    # Our own helper's message holds no data value; in a mock run the data is synthetic (and
    # the runner repeats a message only for the mock runs it started itself).
    if mock or type(exc).__module__ == "ndl.job":
        return {"type": kind, "message": str(exc)[:500], **where}
    return {"type": kind, **where}


def _sql(cfg: dict[str, Any], code_dir: Path) -> None:
    import duckdb

    from ndl import job

    con = duckdb.connect(":memory:", config={"threads": 1})
    paths = dict(cfg["datasets"])
    # A dataset Spark wrote for the job is a folder of part files: its files, and that folder
    # alone, are what may be read.
    folders = [p.rstrip("/") + "/" for p in paths.values() if os.path.isdir(p)]
    for ds_id, path in paths.items():
        view = ds_id.split("/", 1)[-1]
        if os.path.isdir(path):
            path = path.rstrip("/") + "/*.parquet"
        # Both parts are ours: the view is a checked dataset id, the path the sandbox's own.
        con.execute(f'CREATE VIEW "{view}" AS SELECT * FROM read_parquet(\'{path}\')')  # noqa: S608
    # Locked down in the order DuckDB needs: only the granted files, then nothing external,
    # then the configuration frozen so the query cannot undo it.
    con.execute("SET allowed_paths = ?", [[p for p in paths.values() if not os.path.isdir(p)]])
    if folders:
        con.execute("SET allowed_directories = ?", [folders])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    sql = (code_dir / cfg["entry"]).read_text("utf-8")
    result = con.execute(sql).to_arrow_table()
    if result is None:
        raise ValueError("the query returned no result: write one SELECT")
    (name, _kind), = cfg["outputs"].items()
    out = Path(cfg["out"])
    rel = f"{job.EVIDENCE}/{name}.parquet"
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    import pyarrow.parquet as pq
    pq.write_table(result, out / rel)
    job._record({"name": name, "kind": "table", "sql": True, "evidence": rel})
    print(f"query returned {result.num_rows} rows")


def main() -> int:
    cfg: dict[str, Any] = json.loads(os.environ["NDL_JOB"])
    code_dir = Path(cfg["code"])
    out = Path(cfg["out"])
    (out / ".ndl").mkdir(parents=True, exist_ok=True)
    # A process the job forked returns here too; only ours writes the error file, or a child
    # killed between truncating and writing it leaves it empty (a fork bomb does just that).
    me = os.getpid()
    try:
        if cfg["language"] == "sql":
            _sql(cfg, code_dir)
        else:
            sys.path.insert(0, str(code_dir))
            sys.argv = [str(code_dir / cfg["entry"])]
            runpy.run_path(str(code_dir / cfg["entry"]), run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            if os.getpid() == me:
                (out / ERROR).write_text(json.dumps({"type": "SystemExit",
                                                     "message": "the job exited with an "
                                                                "error"}))
            return 1
    except BaseException as exc:  # the job's failure, reported safely
        traceback.print_exc()
        if os.getpid() == me:
            (out / ERROR).write_text(json.dumps(_safe_error(exc, code_dir,
                                                            mock=cfg.get("mock") is True)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
