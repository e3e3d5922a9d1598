"""The Spark engine: a datasite's data computed on a Spark cluster (or ``local[*]``).

The datasite's process is the Spark driver: one :class:`pyspark.sql.SparkSession` per
datasite, made on first use (or by :meth:`SparkEngine.prepare`, before the datasite comes
online), with the UI off, no Hive (an in-memory catalogue) and its temporary and warehouse
folders inside the datasite's own ``spark/`` folder (mode 0700).

Rows come from the dataset's ``data.parquet`` or its recorded :class:`Source` (a Parquet
folder or a catalogue table); only the columns the metadata publishes are ever visible.

Open SQL is locked down as tightly as DuckDB's:

1. the same allow-list (:func:`ndl.datasite.sql_guard.check_select`: one SELECT over ``data``,
   allow-listed functions only, no other table, file or catalogue name), and no optimizer
   hints (``/*+ ... */``, which Spark obeys and DuckDB treats as a comment);
2. it runs in a new session of its own whose only view is ``data`` over that one dataset,
   with ``spark.sql.runSQLOnFiles`` off (no ``parquet.`/path```) and ANSI SQL on; the analysed
   plan may read no file the dataset does not (``DataFrame.inputFiles``);
3. at most ``limit`` rows (+1 to tell truncation), stopped at the deadline by cancelling its
   job group; the answer's size is bounded on the cluster before any row reaches the driver
   (rows past :data:`ANSWER_BYTES` arrive empty), then checked exactly as DuckDB's;
4. errors are scrubbed of paths, URIs and versions.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa

from ndl.core.errors import InvalidInput, NdlError, PayloadTooLarge, UpstreamTimeout
from ndl.core.jsonsafe import json_safe
from ndl.core.private import private_dir
from ndl.datasite import engine as duck
from ndl.datasite.engines.base import (
    ColumnProfile,
    DatasetProfile,
    Rows,
    check_columns,
    column_names,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from ndl.datasite.store import LocalDataset
    from ndl.privacy.spec import DpResult, PrivateQuery, SdcRules

log = logging.getLogger("ndl.datasite.spark")
ANSWER_BYTES = duck.ANSWER_BYTES
# read_columns hands whole columns to the driver: refused above this many rows.
COLLECT_ROWS = 2_000_000
# Settings an operator's --conf or spark-defaults.conf may not loosen.
LOCKED: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.catalogImplementation": "in-memory",
    "spark.sql.ansi.enabled": "true",
    "spark.sql.ansi.doubleQuotedIdentifiers": "true",  # "col" names a column, as in DuckDB
    "spark.sql.runSQLOnFiles": "false",
    # A query stopped at its deadline must stop burning the cluster: cancelling the job group
    # interrupts its tasks, but a task that ignores the interruption runs on (an executor was
    # seen busy for 20 minutes). The reaper kills an executor whose killed task is still
    # running after 10 s; the worker starts a fresh one.
    "spark.task.reaper.enabled": "true",
    "spark.task.reaper.pollingInterval": "1s",
    "spark.task.reaper.killTimeout": "10s",
}
_HINT = re.compile(r"/\*\s*\+")
_URI = re.compile(r"\b[a-zA-Z][\w+.-]*:/+[^\s'\"`,;)\]]*")
T = TypeVar("T")


def _ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class SparkEngine:
    """:class:`ndl.datasite.engines.base.Engine` on Spark; see the module docstring."""

    name = "spark"

    def __init__(self, master: str, work_dir: Path, *, conf: Mapping[str, str] | None = None,
                 collect_rows: int = COLLECT_ROWS) -> None:
        if not (master.startswith(("spark://", "local")) or master == "yarn"):
            raise InvalidInput(f"--spark-master {master!r}: give spark://HOST:PORT or local[*]")
        self.master, self.work_dir = master, work_dir
        self.conf = dict(conf or {})
        self.collect_rows = collect_rows
        self._spark: SparkSession | None = None
        self._lock = threading.Lock()

    # -- the session ----------------------------------------------------------------------
    def session(self) -> SparkSession:
        with self._lock:
            if self._spark is None:
                self._spark = self._start()
            return self._spark

    def _start(self) -> SparkSession:
        from pyspark.sql import SparkSession

        private_dir(self.work_dir)
        tmp, warehouse = self.work_dir / "tmp", self.work_dir / "warehouse"
        for d in (tmp, warehouse):
            private_dir(d)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = SparkSession.builder.master(self.master).appName("ndl-datasite")
        # The driver JVM's own temporary files go in our folder too. Through the launcher's
        # environment, so spark-defaults.conf's spark.driver.extraJavaOptions still apply.
        opts = os.environ.get("SPARK_SUBMIT_OPTS", "")
        if "-Djava.io.tmpdir=" not in opts:
            os.environ["SPARK_SUBMIT_OPTS"] = f"{opts} -Djava.io.tmpdir={tmp}".strip()
        settings = {
            "spark.local.dir": str(tmp),
            "spark.sql.warehouse.dir": str(warehouse),
            **self.conf, **LOCKED,
        }
        for key, value in settings.items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel("ERROR")
        # pyspark logs every failed query with its plan and stack: a researcher's typo is
        # not the operator's error (the scrubbed message goes back to the researcher).
        logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
        logging.getLogger("py4j").setLevel(logging.WARNING)  # a line per closed connection
        log.info("Spark session on %s (Spark %s)", self.master, spark.version)
        return spark

    def prepare(self, open_sql: bool) -> None:
        """Start the session and run one tiny job before going online: the JVM, the
        executors' start and the first job's warm-up take seconds the first query would
        otherwise wait."""
        self.session().range(1).count()

    def close(self) -> None:
        with self._lock:
            if self._spark is not None:
                self._spark.stop()
                self._spark = None

    # -- a dataset's rows -----------------------------------------------------------------
    def frame(self, ds: LocalDataset, spark: SparkSession | None = None) -> DataFrame:
        """The dataset's published columns (and nothing else) as a DataFrame."""
        from pyspark.sql import functions as F

        spark = spark or self.session()
        src = ds.source
        if src is None:
            df = spark.read.parquet(str(ds.path))
        elif src.kind == "parquet":
            df = spark.read.parquet(src.location)
        else:
            df = spark.table(src.table)
        have = set(df.columns)
        missing = [c for c in column_names(ds) if c not in have]
        if missing:
            raise InvalidInput(f"the data of {ds.meta.name} lacks columns its metadata lists: "
                               f"{', '.join(missing)}; republish the dataset")
        return df.select(*[F.col(_ident(c)) for c in column_names(ds)])

    def _safely(self, ds: LocalDataset, fn: Callable[[], T]) -> T:
        """Run ``fn`` with Spark's failures as ndl errors, scrubbed of server details."""
        try:
            return fn()
        except NdlError:
            raise
        except Exception as exc:
            raise InvalidInput(f"the query failed: {self.scrub(str(exc), ds)}") from exc

    # -- the operations -------------------------------------------------------------------
    def count_by(self, ds: LocalDataset, by: list[str]) -> tuple[list[str], Rows]:
        from pyspark.sql import functions as F

        check_columns(ds, by)

        def go() -> Rows:
            df = self.frame(ds)
            if not by:
                return [[df.count()]]
            keys = [F.col(_ident(c)) for c in by]
            counted = df.groupBy(*keys).agg(F.count(F.lit(1)).alias("n"))
            ordered = counted.orderBy(*[F.col(_ident(c)).asc_nulls_last() for c in by])
            return [[_value(v) for v in row] for row in ordered.collect()]

        return [*by, "n"], self._safely(ds, go)

    def read_columns(self, ds: LocalDataset, columns: list[str]) -> pa.Table:
        check_columns(ds, columns)

        def go() -> pa.Table:
            df = self.frame(ds).select(*[_ident(c) for c in columns])
            head = df.limit(self.collect_rows + 1).count()
            if head > self.collect_rows:
                raise InvalidInput(
                    f"{ds.meta.name} has more than {self.collect_rows:,} rows: too many to "
                    "bring to the datasite; this operation must run on the cluster")
            return df.toArrow()

        return self._safely(ds, go)

    def private_answer(self, ds: LocalDataset, q: PrivateQuery, *, sdc: SdcRules | None,
                       max_rows_per_person: int | None) -> DpResult:
        from ndl.privacy import check_query, run

        plan = check_query(q, ds.meta, max_rows_per_person=max_rows_per_person)
        answer_on_cluster = _dp_on_spark()
        if answer_on_cluster is not None:
            return self._safely(ds, lambda: answer_on_cluster(
                q, self.frame(ds).select(*[_ident(c) for c in plan.columns]), ds.meta,
                sdc=sdc, max_rows_per_person=max_rows_per_person))
        # Without ndl.privacy.dp_spark: only the plan's columns come to the driver.
        table = self.read_columns(ds, list(plan.columns))
        return run(q, table, ds.meta, sdc=sdc, max_rows_per_person=max_rows_per_person)

    def profile(self, ds: LocalDataset) -> DatasetProfile:
        from pyspark.sql import functions as F

        names = column_names(ds)

        def go() -> DatasetProfile:
            aggs = [F.count(F.lit(1))]
            for n in names:
                c = F.col(_ident(n))
                aggs += [F.count(F.lit(1)) - F.count(c), F.count_distinct(c), F.min(c),
                         F.max(c)]
            row = self.frame(ds).agg(*aggs).collect()[0]
            return DatasetProfile(int(row[0]), [
                ColumnProfile(n, int(row[1 + 4 * i]), int(row[2 + 4 * i]),
                              _value(row[3 + 4 * i]), _value(row[4 + 4 * i]))
                for i, n in enumerate(names)])

        return self._safely(ds, go)

    def sample(self, ds: LocalDataset, rows: int) -> pa.Table:
        return self._safely(ds, lambda: self.frame(ds).limit(rows).toArrow())

    # -- open SQL -------------------------------------------------------------------------
    def run_sql(self, ds: LocalDataset, sql: str, *, limit: int, timeout: float
                ) -> tuple[list[str], Rows, bool]:
        from ndl.datasite.sql_guard import check_select

        check_select(sql)
        if _HINT.search(sql):
            raise InvalidInput("optimizer hints (/*+ ... */) are not allowed: write the query "
                               "without them")
        spark = self.session().newSession()  # its own views and settings, nothing else
        for key, value in LOCKED.items():
            if key.startswith("spark.sql.") and key != "spark.sql.catalogImplementation":
                spark.conf.set(key, value)
        group = f"ndl-sql-{uuid.uuid4().hex}"
        with self._deadline(spark, group, timeout) as expired:
            try:
                return self._safely(ds, lambda: self._answer(spark, ds, sql, limit))
            except InvalidInput as exc:
                if expired.is_set():
                    raise UpstreamTimeout(f"the query ran longer than {timeout:g} s and was "
                                          "stopped; add filters or aggregate") from exc
                raise
            finally:
                spark.catalog.dropTempView("data")  # the session goes; so does its view
        raise AssertionError("unreachable")  # pragma: no cover - mypy's view of `with`

    @contextmanager
    def _deadline(self, spark: SparkSession, group: str, timeout: float
                  ) -> Iterator[threading.Event]:
        """Jobs started in this thread belong to ``group``; at the deadline the group is
        cancelled (again every 0.2 s, catching a job started after the first cancel)."""
        sc = spark.sparkContext
        done, expired = threading.Event(), threading.Event()

        def watch() -> None:
            if done.wait(timeout):
                return
            expired.set()
            while not done.is_set():
                sc.cancelJobGroup(group)
                done.wait(0.2)

        sc.setJobGroup(group, "ndl open SQL", interruptOnCancel=True)
        watcher = threading.Thread(target=watch, daemon=True, name="ndl-spark-deadline")
        watcher.start()
        try:
            yield expired
        finally:
            done.set()
            watcher.join()
            sc.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]

    def _answer(self, spark: SparkSession, ds: LocalDataset, sql: str, limit: int
                ) -> tuple[list[str], Rows, bool]:
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        data = self.frame(ds, spark)
        data.createOrReplaceTempView("data")
        allowed = set(data.inputFiles())
        df = spark.sql(sql)
        extra = [f for f in df.inputFiles() if f not in allowed]
        if extra:  # the guard should make this impossible; a second lock all the same
            raise InvalidInput("the query reads data other than this dataset: only the table "
                               "data may be queried")
        columns = list(df.columns)
        # Positional names: a SELECT may repeat a column name.
        cols = [f"_c{i}" for i in range(len(columns))]
        df = df.toDF(*cols).limit(limit + 1)
        size = sum((F.coalesce(F.octet_length(F.col(c).cast("string")), F.lit(0)) + 8
                    for c in cols), F.lit(0))
        # After the limit there is one partition: this id is the row's position in it.
        df = df.withColumn("_i", F.monotonically_increasing_id()).withColumn("_b", size)
        running = Window.orderBy("_i").rowsBetween(Window.unboundedPreceding, Window.currentRow)
        df = df.withColumn("_sum", F.sum("_b").over(running))
        over = F.col("_sum") > ANSWER_BYTES
        shown = df.select(*[F.when(over, None).otherwise(F.col(c)).alias(c) for c in cols],
                          "_sum").orderBy("_i")
        return _fetch(columns, shown.collect(), limit)

    def scrub(self, message: str, ds: LocalDataset | None = None) -> str:
        """The first line of a Spark error, without paths, URIs, versions or stack traces."""
        text = next((line for line in message.splitlines() if line.strip()), "")
        secrets = [str(self.work_dir), str(self.work_dir.parent)]
        if ds is not None:
            secrets += [str(ds.path), str(ds.path.parent)]
            if ds.source is not None:
                secrets += [ds.source.location or ds.source.table]
        try:
            import pyspark

            secrets += [pyspark.__version__]
        except ImportError:
            pass
        for secret in sorted((s for s in secrets if len(s) > 2), key=len, reverse=True):
            text = text.replace(secret, "<hidden>")
        text = _URI.sub("<path>", text)
        text = re.sub(r"\bSQLSTATE: \w+", "", text)
        return duck.scrub(text).strip()[:500]


def _fetch(columns: list[str], rows: list[Any], limit: int
           ) -> tuple[list[str], Rows, bool]:
    import json

    size = len(json.dumps(columns))
    out: Rows = []
    for raw in rows:
        if raw[-1] is not None and raw[-1] > ANSWER_BYTES:
            size = ANSWER_BYTES + 1
        else:
            row = [_value(v) for v in list(raw)[:-1]]
            size += len(json.dumps(row, ensure_ascii=False).encode())
            out.append(row)
        if size > ANSWER_BYTES:
            raise PayloadTooLarge(
                f"the answer would be larger than {ANSWER_BYTES:,} bytes (at row "
                f"{len(out) + 1:,}); select fewer columns or rows, shorten long values "
                "or aggregate")
    return columns, out[:limit], len(out) > limit


def _value(v: Any) -> Any:
    """A Spark value as JSON, by the DuckDB engine's convention (:func:`json_safe`)."""
    from pyspark.sql import Row

    if isinstance(v, Row):
        return {str(k): _value(x) for k, x in v.asDict().items()}
    if isinstance(v, bytes | bytearray):
        return bytes(v).hex()
    if isinstance(v, list):
        return [_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _value(x) for k, x in v.items()}
    return json_safe(v)


def _dp_on_spark() -> Callable[..., DpResult] | None:
    """The privacy package's statistics-on-Spark entry point, once it exists."""
    try:
        from ndl.privacy import dp_spark  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return None
    fn = getattr(dp_spark, "run_spark", None)
    return fn if callable(fn) else None
