"""A datasite whose controlled data Spark reads where it lives, for python-spark job tests.

Two datasets sit side by side in one warehouse folder (``warehouse/ae`` and
``warehouse/secret``), each registered with a ``source.json`` and no ``data.parquet``. A job is
run through the real runner and strict sandbox, its granted rows written by the Spark engine of
``spark_cluster.py`` (a real standalone master and workers on 127.0.0.1), as the datasite's
``controlled.spark_rows`` does it.
"""

from __future__ import annotations

import json
import os
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
        if os.environ.get("NDL_REQUIRE_SPARK", "").lower() in ("1", "true", "yes"):
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
