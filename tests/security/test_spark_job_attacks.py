"""Attacks by a python-spark job on the datasite that runs it, through the real runner.

The datasite's Spark is a real standalone cluster on the host's 127.0.0.1 (its master URL is the
datasite's secret, here also put in the datasite's environment); the granted dataset and a
dataset that is never granted sit in one warehouse folder. One job (one JVM start) tries, after
starting its own Spark: reading the datasite's environment (``os.environ``, every
``/proc/*/environ`` and ``cmdline`` it can see), connecting to the cluster's master, the test
process's own Spark driver (on whatever address it bound) and a plain listener on the host's
loopback, an IPv6 socket, and
reading the other dataset by its host path (Python and Spark) or by the warehouse folder. It
prints what it got; each test asserts on that. A listener the host itself can reach shows a
refusal inside is the sandbox's doing, not an empty port.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from ndl.jobs.runner import JobOutcome
from ndl.jobs.sandbox import Sandbox
from spark_job_site import SECRET_MARKER, SparkSite, make_site, require_spark_and_sandbox

ENV_MARKER = "Datasiteenvmarker"
ATTACK = r'''
import json, os, pathlib, socket
from ndl import job

got = {"env_before": dict(os.environ)}
ae = job.dataset("ae", as_="spark")
spark = ae.sparkSession
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
'''


def _listener() -> Iterator[socket.socket]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def attack(sandbox_strict: Sandbox, spark_engine: Any, spark_cluster: Any,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SparkSite, dict[str, Any],
                                                                       JobOutcome, list[str]]]:
    require_spark_and_sandbox()
    site = make_site(tmp_path_factory.mktemp("spark-attacks"), spark_engine, sandbox_strict)
    listener = _listener()
    plain = next(listener)
    master = spark_cluster.master_url  # spark://127.0.0.1:PORT
    conf = spark_engine.session().conf  # the datasite's own driver (it may bind on eth0)
    ports = [("127.0.0.1", int(master.rsplit(":", 1)[1])),
             (conf.get("spark.driver.host"), int(conf.get("spark.driver.port"))),
             ("127.0.0.1", plain.getsockname()[1])]
    for host, port in ports:  # the host reaches each: a refusal inside is the sandbox's
        socket.create_connection((host, port), timeout=3).close()
    secret_dir = site.warehouse / "secret"
    code = (f"PORTS = {ports!r}\nSECRET_PART = {str(secret_dir / 'part-0.parquet')!r}\n"
            f"SECRET_DIR = {str(secret_dir)!r}\nWAREHOUSE = {str(site.warehouse)!r}\n"
            + ATTACK)
    os.environ["NDL_SPARK_MASTER"] = master
    os.environ["NDL_TEST_SECRET"] = ENV_MARKER
    try:
        o = site.run(code, job_id="spark-attack", outputs=[("notes", "text")])
    finally:
        os.environ.pop("NDL_SPARK_MASTER", None)
        os.environ.pop("NDL_TEST_SECRET", None)
        next(listener, None)
    line = next((x for x in o.full_log.splitlines() if x.startswith("RESULT ")), None)
    assert o.ok and line is not None, (o.error, o.full_log[-3000:])
    yield site, json.loads(line[len("RESULT "):]), o, [master, ENV_MARKER]


def test_the_job_sees_no_master_url_and_no_datasite_variable(attack: Any) -> None:
    _, got, o, secrets = attack
    text = json.dumps(got)
    for secret in [*secrets, SECRET_MARKER]:
        assert secret not in text
        assert secret not in o.full_log
    # Before Spark starts, the environment is exactly the step's fixed one and Spark's needs.
    assert set(got["env_before"]) == {
        "NDL_JOB", "HOME", "TMPDIR", "PATH", "LANG", "MPLBACKEND", "MPLCONFIGDIR",
        "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "POLARS_MAX_THREADS",
        "PYTHONDONTWRITEBYTECODE", "JAVA_HOME", "SPARK_LOCAL_IP", "SPARK_LOCAL_HOSTNAME",
        "PWD"}  # PWD: bubblewrap's, the working folder
    assert got["spark_conf"]["spark.master"] == "local[1]"
    # It sees its own processes only (bubblewrap's pid namespace): the host's pid of this
    # test process is not among them, and pid 1 is bubblewrap's init with no environment.
    assert got["proc"].get("1/environ") == ""
    pids = {k.split("/")[0] for k in got["proc"]}
    assert len(pids) < 10 and not any("pytest" in v for v in got["proc"].values())


def test_the_job_cannot_reach_the_hosts_loopback(attack: Any) -> None:
    _, got, _, _ = attack
    assert len(got["tcp"]) == 3
    for target, result in got["tcp"].items():
        assert result != "connected", target
        # Its own loopback answers "refused"; another address is unreachable from its netns.
        assert result in ("ConnectionRefusedError", "OSError", "TimeoutError"), (target, result)
    assert got["inet6"] == "OSError"  # EAFNOSUPPORT: seccomp allows AF_UNIX and AF_INET only


def test_the_job_cannot_read_a_dataset_it_was_not_granted(attack: Any) -> None:
    site, got, _, _ = attack
    for what, result in got["reads"].items():
        assert isinstance(result, str) and result.startswith("error "), (what, result)
    assert got["data_dir"] == ["0.parquet"]
    assert len(got["granted_rows"]) == sum(1 for _ in got["granted_rows"]) > 0
    assert all(SECRET_MARKER not in json.dumps(r) for r in got["granted_rows"])
    assert got["write_data"] in ("OSError", "PermissionError")
    # The one folder it was given holds Spark's files of the granted rows, and is gone after.
    assert got["granted_files"] and all(
        n == "_SUCCESS" or n.startswith(("part-", ".part-", "._SUCCESS"))
        for n in got["granted_files"])
    assert not (site.root / "jobs" / "spark-attack" / "data").exists()
