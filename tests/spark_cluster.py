"""A real Spark standalone cluster for the tests: one master and two workers on 127.0.0.1.

Started with pyspark's own launcher (``bin/spark-class``, the script ``start-master.sh`` calls)
as direct child processes this module owns and kills, on free ports, with logs, work and temp
folders under the test's tmp. Executors ask for 512 MB and one core (see
:data:`EXECUTOR_CONF`). One cluster serves a whole test session; the driver's session starts
while the workers are still registering.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from ndl.testing import free_port
from needs import required

WORKERS = 2
_FAST_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
# Each worker offers room for two 512 MB executors, so two drivers (this test process and a
# datasite process) each get one executor on each worker at the same time.
WORKER_MEMORY = "1g"
WORKER_CORES = 2
EXECUTOR_CONF = {"spark.executor.memory": "512m", "spark.executor.cores": "1",
                 "spark.cores.max": str(WORKERS),
                 # Tiny test data: a few shuffle partitions, no waiting for locality.
                 "spark.sql.shuffle.partitions": "4", "spark.locality.wait": "0s",
                 # Short-lived JVMs start and warm up faster with the C1 compiler only.
                 "spark.executor.extraJavaOptions": _FAST_JVM,
                 "spark.driver.extraJavaOptions": _FAST_JVM}
START_SECONDS = 60.0


def missing() -> str | None:
    """Why no cluster can start here (no Java, no pyspark), or None."""
    if shutil.which("java") is None:
        return "Java is not installed (the Spark engine needs Java 17)"
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed (pip install 'ndl[spark]')"
    return None


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


@dataclass
class SparkCluster:
    """A running master and its workers; :attr:`master_url` is ``spark://127.0.0.1:PORT``."""

    root: Path
    master_url: str = ""
    master_ui: str = ""
    conf_dir: Path = field(default_factory=Path)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self, max_cores: int | None = None) -> dict[str, str]:
        """The environment of a process that uses the cluster (the datasite's ``ndl``);
        ``max_cores`` caps its executors (one core each)."""
        conf_dir = self.conf_dir
        if max_cores is not None:
            conf_dir = self.root / f"conf-{max_cores}"
            conf_dir.mkdir(exist_ok=True)
            conf = {**EXECUTOR_CONF, "spark.cores.max": str(max_cores)}
            (conf_dir / "spark-defaults.conf").write_text(
                "".join(f"{k} {v}\n" for k, v in conf.items()))
        return {"SPARK_CONF_DIR": str(conf_dir), "PYSPARK_PYTHON": sys.executable}

    def start(self) -> SparkCluster:
        home = spark_home()
        self.root.mkdir(parents=True, exist_ok=True)
        self.conf_dir = self.root / "conf"
        self.conf_dir.mkdir(exist_ok=True)
        # spark-submit (which pyspark's driver goes through) reads this file.
        (self.conf_dir / "spark-defaults.conf").write_text(
            "".join(f"{k} {v}\n" for k, v in EXECUTOR_CONF.items()))
        env = {**os.environ, "SPARK_HOME": str(home), "SPARK_CONF_DIR": str(self.conf_dir),
               "SPARK_LOG_DIR": str(self.root / "logs"), "SPARK_LOCAL_IP": "127.0.0.1",
               "SPARK_DAEMON_MEMORY": "256m", "SPARK_DAEMON_JAVA_OPTS": _FAST_JVM,
               "PYSPARK_PYTHON": sys.executable,
               "SPARK_WORKER_DIR": str(self.root / "work")}
        port, ui = free_port(), free_port()
        self.master_url = f"spark://127.0.0.1:{port}"
        self.master_ui = f"http://127.0.0.1:{ui}"
        self._launch("master", [str(home / "bin" / "spark-class"),
                                "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                "--port", str(port), "--webui-port", str(ui)], env)
        for i in range(WORKERS):
            work = self.root / "work" / f"w{i}"
            work.mkdir(parents=True, exist_ok=True)
            self._launch(f"worker{i}", [
                str(home / "bin" / "spark-class"), "org.apache.spark.deploy.worker.Worker",
                "--host", "127.0.0.1", "--port", str(free_port()),
                "--webui-port", str(free_port()), "--cores", str(WORKER_CORES),
                "--memory", WORKER_MEMORY,
                "--work-dir", str(work), self.master_url], {**env, "TMPDIR": str(work)})
        self._wait(lambda state: state.get("status") == "ALIVE", "the master")
        return self

    def wait_for_workers(self) -> None:
        self._wait(lambda state: sum(1 for w in state.get("workers", [])
                                     if w.get("state") == "ALIVE") >= WORKERS, "the workers")

    def _launch(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log = (self.root / f"{name}.log").open("ab")
        # Its own process group, so stop() ends the JVM and anything spark-class started.
        self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                           cwd=self.root, start_new_session=True))
        log.close()

    def _wait(self, ready: Callable[[dict[str, Any]], bool], what: str) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"a Spark daemon exited early:\n{self.logs()}")
            try:
                if ready(httpx.get(f"{self.master_ui}/json/", timeout=2).json()):
                    return
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{what} did not come up in {START_SECONDS:g} s:\n{self.logs()}")

    def alive_workers(self) -> int:
        state = httpx.get(f"{self.master_ui}/json/", timeout=5).json()
        return sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.root.glob("*.log")))

    def stop(self) -> None:
        for p in reversed(self.procs):  # workers first, then the master
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)  # the group we started, by its id
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs.clear()


# -- fixtures (tests/conftest.py makes them available everywhere) ------------------------------


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkCluster]:
    """A master and two workers for the whole session. Skips without Java or pyspark, unless
    NDL_REQUIRE_SPARK=1 (CI sets it) makes that a failure."""
    why = missing()
    if why:
        if required("NDL_REQUIRE_SPARK"):
            pytest.fail(f"NDL_REQUIRE_SPARK is set but {why}")
        pytest.skip(why)
    cluster = SparkCluster(tmp_path_factory.mktemp("spark-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def spark_engine(spark_cluster: SparkCluster, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[Any]:
    """This test process as a Spark driver on the cluster (one session for all tests)."""
    from ndl.datasite.engines.spark_engine import SparkEngine

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    engine = SparkEngine(spark_cluster.master_url, tmp_path_factory.mktemp("spark-driver"),
                         conf=EXECUTOR_CONF)
    engine.session()  # the driver starts while the workers register
    spark_cluster.wait_for_workers()
    engine.prepare(True)  # one tiny job: the executors are up before the first test
    try:
        yield engine
    finally:
        engine.close()
