"""A local Spark session (``local[2]``) for tests of code that computes in Spark.

Skips when Java or pyspark is missing, unless ``NDL_REQUIRE_SPARK=1`` makes that a failure.
The session is stopped at the end of the module that started it, so a later test that wants
a different master (the standalone cluster of ``spark_cluster.py``) does not get this one
back from ``getOrCreate``; where that cluster's session is already running in this process,
it is used instead, and left running.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from needs import required
from spark_cluster import missing


@contextmanager
def local_spark(tmp: Path) -> Iterator[Any]:
    """A ``local[2]`` SparkSession with small shuffles and no UI; stopped on exit."""
    why = missing()
    if why is not None:
        if required("NDL_REQUIRE_SPARK"):
            pytest.fail(f"NDL_REQUIRE_SPARK is set but {why}")
        pytest.skip(why)
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    # One SparkContext per process: where the cluster engine's session is already running
    # in this test process, getOrCreate would hand it back and stopping it here would kill
    # the engine for every later test. Use it as it is, and leave it running.
    if SparkContext._active_spark_context is not None:
        yield SparkSession.builder.getOrCreate()
        return
    spark = (SparkSession.builder.master("local[2]").appName("ndl-tests")
             .config("spark.ui.enabled", "false")
             .config("spark.sql.shuffle.partitions", "4")
             .config("spark.driver.memory", "1g")
             .config("spark.local.dir", str(tmp))
             .config("spark.driver.extraJavaOptions", f"-Djava.io.tmpdir={tmp}")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    try:
        yield spark
    finally:
        spark.stop()
