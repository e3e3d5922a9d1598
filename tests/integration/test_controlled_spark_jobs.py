"""A python-spark controlled job, end to end through the real runner and strict sandbox.

The controlled dataset's rows live in a warehouse folder that the datasite's Spark (a real
standalone cluster on 127.0.0.1) reads; the datasite has the cluster write the granted rows into
the job's run folder; the job counts them with ``groupBy`` in a local Spark of its own inside
bubblewrap and declares a table; ndl recomputes it from the evidence and the released table is
the true counts with the disclosure rules applied. The job is the session's one Spark job
(``spark_job_site.shared_run``), which the security tests also read.
"""

from __future__ import annotations

import zipfile
from collections import Counter
from typing import Any

import pytest

from ndl.jobs.sandbox import Sandbox
from ndl.privacy import sdc
from spark_job_site import GRANTED, JOB_ID, REGIONS, SharedRun, ae_table, shared_run


@pytest.fixture(scope="module")
def run(sandbox_strict: Sandbox, spark_engine: Any, spark_cluster: Any,
        tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    return shared_run(sandbox_strict, spark_engine, spark_cluster, tmp_path_factory)


def test_a_spark_job_counts_the_granted_rows(run: SharedRun) -> None:
    o = run.outcome
    assert o.ok, (o.error, o.full_log[-3000:])
    assert f"spark counts {sorted(REGIONS.items())}" in o.full_log
    assert "master local[1] ui false catalog in-memory" in o.full_log
    n = sum(REGIONS.values())
    assert f"rows {n} {n} {n} {n}" in o.full_log
    # The job read a folder of Spark's part files; the copy went when its step ended.
    assert "parts True" in o.full_log
    assert not (run.site.root / "jobs" / JOB_ID / "data").exists()


def test_the_released_table_is_the_true_counts_after_the_checks(run: SharedRun) -> None:
    o = run.outcome
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
    assert out.made_by == "helper" and out.status in ("checked", "review")
