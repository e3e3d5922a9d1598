"""A python-spark controlled job, end to end through the real runner and strict sandbox.

The controlled dataset's rows live in a warehouse folder that the datasite's Spark (a real
standalone cluster on 127.0.0.1) reads; the datasite has the cluster write the granted rows into
the job's run folder; the job counts them with ``groupBy`` in a local Spark of its own inside
bubblewrap and declares a table; ndl recomputes it from the evidence and the released table is
the true counts with the disclosure rules applied.
"""

from __future__ import annotations

import zipfile
from collections import Counter
from typing import Any

import pytest

from ndl.jobs.runner import JobOutcome
from ndl.jobs.sandbox import Sandbox
from ndl.privacy import sdc
from spark_job_site import (
    GRANTED,
    REGIONS,
    SparkSite,
    ae_table,
    make_site,
    require_spark_and_sandbox,
)

CODE = """
from ndl import job

ae = job.dataset("ae", as_="spark")
spark = ae.sparkSession
counts = sorted((r["region"], r["count"]) for r in ae.groupBy("region").count().collect())
print("spark counts", counts)
print("master", spark.sparkContext.master, "ui", spark.conf.get("spark.ui.enabled"),
      "catalog", spark.conf.get("spark.sql.catalogImplementation"))
# The same folder of part files through the other readers.
print("rows", ae.count(), len(job.dataset("ae", as_="pandas")),
      job.dataset("ae", as_="polars").height, job.dataset("ae").num_rows)
import os
names = os.listdir("/job/data/0.parquet")
print("parts", any(n.startswith("part-") and n.endswith(".parquet") for n in names)
      and "_SUCCESS" in names)
job.table("by_region", ae, by="region")
"""


@pytest.fixture(scope="module")
def outcome(sandbox_strict: Sandbox, spark_engine: Any,
            tmp_path_factory: pytest.TempPathFactory) -> tuple[SparkSite, JobOutcome]:
    require_spark_and_sandbox()
    site = make_site(tmp_path_factory.mktemp("spark-jobs"), spark_engine, sandbox_strict)
    return site, site.run(CODE, job_id="spark-count", outputs=[("by_region", "table")])


def test_a_spark_job_counts_the_granted_rows(outcome: tuple[SparkSite, JobOutcome]) -> None:
    site, o = outcome
    assert o.ok, (o.error, o.full_log[-3000:])
    truth = sorted(REGIONS.items())
    assert f"spark counts {truth}" in o.full_log
    assert "master local[1] ui false catalog in-memory" in o.full_log
    n = sum(REGIONS.values())
    assert f"rows {n} {n} {n} {n}" in o.full_log
    # The job read a folder of Spark's part files; the copy went when its step ended.
    assert "parts True" in o.full_log
    assert not (site.root / "jobs" / "spark-count" / "data").exists()


def test_the_released_table_is_the_true_counts_after_the_checks(
        outcome: tuple[SparkSite, JobOutcome]) -> None:
    _, o = outcome
    assert o.ok and o.archive is not None and o.report is not None
    with zipfile.ZipFile(o.archive) as z:
        rows = z.read("by_region.csv").decode().splitlines()
    released = dict(line.split(",") for line in rows[1:])
    assert rows[0] == "region,count"
    # Independently: count the source rows, then apply the policy to those true counts.
    truth = Counter(ae_table().column("region").to_pylist())
    table = sdc.TableStats(name="by_region", dataset=GRANTED, dimensions=("region",),
                           statistic="count",
                           cells=tuple(sdc.CellStats(key=(k,), n=v, value=float(v))
                                       for k, v in sorted(truth.items())))
    check = sdc.check_table(table, sdc.SdcPolicy(), [])
    expected = {k[0]: ("[suppressed]" if v is None else str(int(v)))
                for k, v in check.released.items()}
    assert released == expected
    # And by hand: West (3) is under the threshold; the rest are rounded to base 5.
    assert released["West"] == "[suppressed]"
    for region in ("North", "South", "East"):
        if released[region] != "[suppressed]":
            assert int(released[region]) == 5 * round(REGIONS[region] / 5)
    (out,) = o.report.outputs
    assert (out.status, out.made_by) in {("checked", "helper"), ("review", "helper")}
