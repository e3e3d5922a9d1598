"""A datasite whose controlled data Spark reads where it lives, for python-spark job tests.

Two datasets sit side by side in one warehouse folder (``warehouse/ae`` and
``warehouse/secret``), each registered with a ``source.json`` and no ``data.parquet``. A job is
run through the real runner and strict sandbox, its granted rows written by the Spark engine of
``spark_cluster.py`` (a real standalone master and workers on 127.0.0.1), as the datasite's
``controlled.spark_rows`` does it.

A JVM start is the cost of a Spark job, so ONE job (:func:`shared_run`, once per test session)
serves both tests/integration/test_controlled_spark_jobs.py (it counts by region in Spark and
declares a table) and tests/security/test_spark_job_attacks.py (it then tries, from the same
Spark: the datasite's environment through ``os.environ`` and every ``/proc/*/environ`` and
``cmdline`` it can see; TCP to the cluster's master, the datasite's own Spark driver (on
whatever address it bound) and a plain listener on the host's loopback; an IPv6 socket; the
ungranted dataset by its host path, through Python and Spark, and the warehouse folder; writing
into its data). It prints what it got as one ``RESULT`` line.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ndl.datasite.controlled import spark_rows
from ndl.datasite.store import DatasiteStore
from ndl.jobs.bundle import from_files
from ndl.jobs.runner import JobInput, JobOutcome, run_job
from ndl.jobs.sandbox import Limits, Sandbox
from ndl.privacy.sdc_ledger import ReleaseLedger
from ndl.testing import write_dataset
from needs import required

ORG = "nhs"
GRANTED, SECRET = f"{ORG}/ae", f"{ORG}/secret"
SECRET_MARKER = "Secretrowmarker"  # in every row of the dataset that is never granted
# A slow shared machine starts a JVM in seconds to tens of seconds.
LIMITS = Limits(cpu_seconds=300, wall_seconds=300.0, memory_bytes=2 * 1024**3)
# Attendances by region: West is under the threshold of 10 and must be suppressed.
REGIONS = {"North": 123, "South": 61, "East": 37, "West": 3}


def require_spark_and_sandbox() -> None:
    """Skip without Java/pyspark (NDL_REQUIRE_SPARK=1 fails instead); the sandbox fixture
    does the same for bubblewrap under NDL_REQUIRE_SANDBOX=1."""
    from ndl.jobs import environments

    if "python-spark" not in environments.offered():
        if required("NDL_REQUIRE_SPARK"):
            pytest.fail("NDL_REQUIRE_SPARK is set but the python-spark environment is not "
                        "offered (it needs Java and pyspark)")
        pytest.skip("python-spark needs Java and pyspark")


def ae_table() -> pa.Table:
    region, sex, age = [], [], []
    for name, n in REGIONS.items():
        region += [name] * n
        sex += ["F" if i % 3 else "M" for i in range(n)]
        age += [20 + (i * 7) % 60 for i in range(n)]
    return pa.table({"region": region, "sex": sex, "age": age})


def secret_table() -> pa.Table:
    return pa.table({"region": ["North"] * 20, "name": [SECRET_MARKER] * 20})


@dataclass
class SparkSite:
    root: Path
    warehouse: Path
    store: DatasiteStore
    engine: Any
    sandbox: Sandbox

    def run(self, code: str, *, job_id: str, outputs: list[tuple[str, str]],
            datasets: tuple[str, ...] = (GRANTED,)) -> JobOutcome:
        decls = "".join(f'\n[[outputs]]\nname = "{n}"\nkind = "{k}"\ndescription = "{n}"\n'
                        for n, k in outputs)
        manifest = (f'name = "spark-job"\nlanguage = "python"\nentry = "analysis.py"\n'
                    f'environment = "python-spark"\ndatasets = {json.dumps(list(datasets))}\n'
                    f'context = "Attendances by region, counted in Spark."\n{decls}')
        bundle = from_files({"ndl-job.toml": manifest, "analysis.py": code})
        found = {i: self.store.dataset(i.split("/", 1)[1]) for i in datasets}
        agent = cast(Any, SimpleNamespace(engine=self.engine))
        job = JobInput(job_id=job_id, bundle=bundle,
                       datasets={i: ds.path for i, ds in found.items()}, project="p1",
                       limits=LIMITS, spark_rows=spark_rows(agent, found),
                       columns=tuple(c for ds in found.values() for c in ds.meta.columns))
        return run_job(job, sandbox=self.sandbox, workdir=self.root / "jobs",
                       ledger=ReleaseLedger(self.root / f"releases-{job_id}.sqlite"))


def make_site(root: Path, engine: Any, sandbox: Sandbox) -> SparkSite:
    warehouse = root / "warehouse"
    for name, table in (("ae", ae_table()), ("secret", secret_table())):
        folder = warehouse / name
        folder.mkdir(parents=True)
        half = table.num_rows // 2  # two part files, as a warehouse holds them
        pq.write_table(table.slice(0, half), folder / "part-0.parquet")
        pq.write_table(table.slice(half), folder / "part-1.parquet")
        ds = write_dataset(root, name, table, tier="controlled")
        (ds / "data.parquet").unlink()
        (ds / "source.json").write_text(json.dumps({"kind": "parquet",
                                                    "location": str(folder)}))
    (root / "jobs").mkdir()
    return SparkSite(root, warehouse, DatasiteStore(root), engine, sandbox)


COUNT = """
import json, os, pathlib, socket
from ndl import job

got = {"env_before": dict(os.environ)}  # before Spark starts
ae = job.dataset("ae", as_="spark")
spark = ae.sparkSession
counts = sorted((r["region"], r["count"]) for r in ae.groupBy("region").count().collect())
print("spark counts", counts)
print("master", spark.sparkContext.master, "ui", spark.conf.get("spark.ui.enabled"),
      "catalog", spark.conf.get("spark.sql.catalogImplementation"))
# The same folder of part files through the other readers.
print("rows", ae.count(), len(job.dataset("ae", as_="pandas")),
      job.dataset("ae", as_="polars").height, job.dataset("ae").num_rows)
names = os.listdir("/job/data/0.parquet")
print("parts", any(n.startswith("part-") and n.endswith(".parquet") for n in names)
      and "_SUCCESS" in names)
job.table("by_region", ae, by="region")
"""
ENV_MARKER = "Datasiteenvmarker"
JOB_ID = "spark-job"
ATTACK = r"""
got["env_after"] = dict(os.environ)
got["spark_conf"] = dict(spark.sparkContext.getConf().getAll())
seen = {}
for p in pathlib.Path("/proc").iterdir():
    if p.name.isdigit():
        for f in ("environ", "cmdline"):
            try:
                seen[p.name + "/" + f] = (p / f).read_bytes().decode("utf-8", "replace")
            except OSError as e:
                seen[p.name + "/" + f] = "error " + type(e).__name__
got["proc"] = seen
tcp = {}
for host, port in PORTS:
    try:
        socket.create_connection((host, port), timeout=3).close()
        tcp[f"{host}:{port}"] = "connected"
    except OSError as e:
        tcp[f"{host}:{port}"] = type(e).__name__
got["tcp"] = tcp
try:
    socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close()
    got["inet6"] = "created"
except OSError as e:
    got["inet6"] = type(e).__name__
reads = {}
for path in (SECRET_PART, SECRET_DIR, WAREHOUSE):
    try:
        reads["python " + path] = len(pathlib.Path(path).read_bytes()) if path.endswith(
            ".parquet") else os.listdir(path)
    except OSError as e:
        reads["python " + path] = "error " + type(e).__name__
    try:
        reads["spark " + path] = spark.read.parquet(path).count()
    except Exception as e:
        reads["spark " + path] = "error " + type(e).__name__
got["reads"] = reads
got["data_dir"] = sorted(os.listdir("/job/data"))
got["granted_files"] = sorted(os.listdir("/job/data/0.parquet"))
got["granted_rows"] = [list(r) for r in ae.collect()]
try:
    open("/job/data/0.parquet/extra.parquet", "wb").close()
    got["write_data"] = "written"
except OSError as e:
    got["write_data"] = type(e).__name__
print("RESULT " + json.dumps(got, default=str))
"""


@dataclass
class SharedRun:
    site: SparkSite
    outcome: JobOutcome
    got: dict[str, Any]       # what the attacks got (the RESULT line)
    secrets: list[str]        # the master URL and a datasite environment variable's value


_shared: list[SharedRun] = []


def shared_run(sandbox: Sandbox, engine: Any, cluster: Any,
               tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    """The one python-spark job of the session (see the module docstring)."""
    require_spark_and_sandbox()
    if _shared:
        return _shared[0]
    site = make_site(tmp_path_factory.mktemp("spark-jobs"), engine, sandbox)
    with socket.socket() as plain:
        plain.bind(("127.0.0.1", 0))
        plain.listen()
        master = cluster.master_url  # spark://127.0.0.1:PORT
        conf = engine.session().conf  # the datasite's own driver (it may bind on eth0)
        ports = [("127.0.0.1", int(master.rsplit(":", 1)[1])),
                 (conf.get("spark.driver.host"), int(conf.get("spark.driver.port"))),
                 ("127.0.0.1", plain.getsockname()[1])]
        for host, port in ports:  # the host reaches each: a refusal inside is the sandbox's
            socket.create_connection((host, port), timeout=3).close()
        secret_dir = site.warehouse / "secret"
        code = (f"PORTS = {ports!r}\nSECRET_PART = {str(secret_dir / 'part-0.parquet')!r}\n"
                f"SECRET_DIR = {str(secret_dir)!r}\nWAREHOUSE = {str(site.warehouse)!r}\n"
                + COUNT + ATTACK)
        os.environ["NDL_SPARK_MASTER"] = master
        os.environ["NDL_TEST_SECRET"] = ENV_MARKER
        try:
            o = site.run(code, job_id=JOB_ID, outputs=[("by_region", "table")])
        finally:
            os.environ.pop("NDL_SPARK_MASTER", None)
            os.environ.pop("NDL_TEST_SECRET", None)
    line = next((x for x in o.full_log.splitlines() if x.startswith("RESULT ")), None)
    assert o.ok and line is not None, (o.error, o.full_log[-3000:])
    _shared.append(SharedRun(site, o, json.loads(line[len("RESULT "):]), [master, ENV_MARKER]))
    return _shared[0]
