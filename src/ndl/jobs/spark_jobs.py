"""Controlled jobs in the ``python-spark`` environment: Spark rows in, a local Spark inside.

Two halves, never in one process:

* **At the datasite** (:func:`write_rows`): a dataset whose rows live where Spark reads them
  (``source.json``) has its *granted, published* columns written by the datasite's own Spark
  (the engine's session, which alone holds the cluster's address and credentials) as a Parquet
  folder of part files inside the job's run folder. The runner mounts that folder read-only
  into the sandbox exactly as it mounts a ``data.parquet``.
* **In the sandbox** (:func:`job_session`): ``ndl.job.dataset(name, as_="spark")`` starts a
  ``local[1]`` SparkSession there: UI off, no Hive, its driver heap a share of the step's
  memory limit, its scratch folders under the job's private ``/tmp``. It can reach nothing but
  the sandbox's own loopback.

What the JVM needs from the strict sandbox (:func:`sandbox_needs`), each measured by starting
Spark in it (see docs/jobs.md, "Spark"):

* AF_INET sockets (seccomp): pyspark reaches its JVM through py4j over 127.0.0.1. The network
  namespace has only ``lo``, so this opens nothing outside the sandbox;
* more open files (the launcher opens its ~280 jars at once: 256 was too few) and more
  processes (the JVM's threads count against ``pids.max``: 64 refused the listener thread);
* the JDK's own configuration files, read-only, where the JDK links to them outside ``/usr``
  (Debian: ``/etc/java-17-openjdk/security/java.security``; without it the JVM will not start);
* three generated files: ``/etc/hosts`` (the sandbox's host name resolves to 127.0.0.1, which
  Spark and log4j look up at start), and ``/etc/passwd`` and ``/etc/group`` with one line for
  the sandbox user (Java takes ``user.home`` and Hadoop the user's name from them);
* ``JAVA_HOME`` and ``SPARK_LOCAL_IP=127.0.0.1`` in the step's environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ndl.jobs.sandbox_types import SANDBOX_UID, Limits, Mount

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from ndl.datasite.engines.base import Engine
    from ndl.datasite.store import LocalDataset

# Floors for a Spark step (measured: 64 processes and 256 open files stop the JVM).
MIN_PROCESSES = 512
MIN_OPEN_FILES = 4096
LOOPBACK = "127.0.0.1"
_session: SparkSession | None = None


@dataclass(frozen=True)
class SparkNeeds:
    """What a Spark step adds to a cold step's spec."""

    mounts: list[Mount]
    env: dict[str, str]
    limits: Limits


def driver_memory(limits: Limits) -> str:
    """The driver's heap: 45% of the step's memory limit (the JVM's own overhead, Python and
    pandas share the rest), at least the 512 MiB Spark refuses to start below (measured: a
    409 MiB heap is "Insufficient driver memory"), so a step needs a limit of 1 GiB or more."""
    return f"{max(512, int(limits.memory_bytes * 0.45) // 2**20)}m"


def sandbox_needs(folder: Path, limits: Limits) -> SparkNeeds:
    """The mounts, environment and limits a Spark step needs (module docstring); the
    generated /etc files are written under ``folder`` (the run's own)."""
    from ndl.jobs.environments import java_home

    home = java_home()
    if home is None:  # the environment is offered only where Java is, so this is ours
        raise RuntimeError("Java is not installed on this datasite")
    etc = folder / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    files = {
        "hosts": f"{LOOPBACK} localhost sandbox\n",
        "passwd": f"job:x:{SANDBOX_UID}:{SANDBOX_UID}:ndl job:/tmp:/usr/sbin/nologin\n",
        "group": f"job:x:{SANDBOX_UID}:\n",
    }
    mounts = []
    for name, text in files.items():
        (etc / name).write_text(text, "utf-8")
        mounts.append(Mount(etc / name, f"/etc/{name}"))
    mounts += jdk_config_mounts(home)
    env = {"JAVA_HOME": str(home), "SPARK_LOCAL_IP": LOOPBACK,
           "SPARK_LOCAL_HOSTNAME": "localhost"}
    return SparkNeeds(mounts, env, replace(
        limits, processes=max(limits.processes, MIN_PROCESSES),
        open_files=max(limits.open_files, MIN_OPEN_FILES)))


def jdk_config_mounts(home: Path) -> list[Mount]:
    """Read-only binds of the files the JDK links to outside ``/usr`` (already bound), each at
    its own path and nothing beside it."""
    mounts: dict[str, Mount] = {}
    for root, dirs, names in os.walk(home):
        for name in dirs + names:
            link = Path(root) / name
            if not link.is_symlink():
                continue
            target = link.resolve()
            if target.is_file() and not str(target).startswith("/usr/"):
                mounts[str(target)] = Mount(target, str(target))
    return sorted(mounts.values(), key=lambda m: m.target)


# -- at the datasite ---------------------------------------------------------------------
def write_rows(engine: Engine, ds: LocalDataset, folder: Path) -> None:
    """Have the datasite's Spark write ``ds``'s published columns as Parquet part files into
    ``folder`` (which must not exist yet).

    The cluster's executors write, so ``folder`` must be on a filesystem they see (true for
    ``local[*]`` and a cluster on this machine; a remote cluster needs the datasite's jobs
    folder on shared storage).
    """
    frame = getattr(engine, "frame", None)
    if not callable(frame):
        raise RuntimeError(f"the {engine.name} engine cannot write a dataset's rows for a job")
    df: DataFrame = frame(ds)
    df.write.mode("errorifexists").parquet(str(folder))


# -- inside the sandbox ------------------------------------------------------------------
def job_session(memory: str | None = None) -> SparkSession:
    """The job's local SparkSession (one per step), started on first use."""
    global _session
    if _session is not None:
        return _session
    from pyspark.sql import SparkSession

    tmp = os.environ.get("TMPDIR") or "/tmp"  # noqa: S108 - the sandbox's private tmpfs
    # Serial GC: one small heap in one sandbox needs no parallel collector threads (each a
    # process against pids.max).
    java_opts = f"-Djava.io.tmpdir={tmp} -Duser.home={tmp} -XX:-UsePerfData -XX:+UseSerialGC"
    settings: dict[str, Any] = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.catalogImplementation": "in-memory",
        "spark.driver.host": LOOPBACK,
        "spark.driver.bindAddress": LOOPBACK,
        "spark.driver.memory": memory or "512m",
        "spark.driver.extraJavaOptions": java_opts,
        "spark.local.dir": f"{tmp}/spark",
        "spark.sql.warehouse.dir": f"{tmp}/spark-warehouse",
        "spark.jars.ivy": f"{tmp}/ivy",
        "spark.sql.shuffle.partitions": "2",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
    }
    builder = SparkSession.builder.master("local[1]").appName("ndl-job")
    for key, value in settings.items():
        builder = builder.config(key, value)
    _session = builder.getOrCreate()
    _session.sparkContext.setLogLevel("ERROR")
    return _session
