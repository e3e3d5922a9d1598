"""Attacks by a python-spark job on the datasite that runs it, through the real runner.

The datasite's Spark is a real standalone cluster on the host's 127.0.0.1 (its master URL is the
datasite's secret, here also put in the datasite's environment, with another marker); the
granted dataset and a dataset that is never granted sit in one warehouse folder. The job (the
session's one Spark job, ``spark_job_site.shared_run``: a JVM start is its cost) tries, after
starting its own Spark: the datasite's environment (``os.environ``, every ``/proc/*/environ``
and ``cmdline`` it can see); TCP to the cluster's master, the datasite's own Spark driver and a
plain listener on the host's loopback (each reachable from the host, so a refusal inside is the
sandbox's doing); an IPv6 socket; the other dataset by its host path (Python and Spark) and the
warehouse folder; writing into its data. Each test asserts on what it got.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ndl.jobs.sandbox import Sandbox
from spark_job_site import JOB_ID, REGIONS, SECRET_MARKER, SharedRun, shared_run


@pytest.fixture(scope="module")
def run(sandbox_strict: Sandbox, spark_engine: Any, spark_cluster: Any,
        tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    return shared_run(sandbox_strict, spark_engine, spark_cluster, tmp_path_factory)


def test_the_job_sees_no_master_url_and_no_datasite_variable(run: SharedRun) -> None:
    got, o = run.got, run.outcome
    text = json.dumps(got)
    for secret in [*run.secrets, SECRET_MARKER]:
        assert secret not in text
        assert secret not in o.full_log
    # Before Spark starts, the environment is exactly the step's fixed one and Spark's needs.
    assert set(got["env_before"]) == {
        "NDL_JOB", "HOME", "TMPDIR", "PATH", "LANG", "MPLBACKEND", "MPLCONFIGDIR",
        "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "POLARS_MAX_THREADS",
        "PYTHONDONTWRITEBYTECODE", "JAVA_HOME", "SPARK_LOCAL_IP", "SPARK_LOCAL_HOSTNAME",
        "PWD"}  # PWD: bubblewrap's, the working folder
    assert got["spark_conf"]["spark.master"] == "local[1]"
    # It sees its own processes only (bubblewrap's pid namespace), and pid 1 is bubblewrap's
    # init, with no environment.
    assert got["proc"].get("1/environ") == ""
    pids = {k.split("/")[0] for k in got["proc"]}
    # No process of the test runner (pytest, or an xdist worker's bootstrap) is among them;
    # only argv is looked at: paths under the runner's temporary folder may name it.
    argvs = [v.split("\0") for k, v in got["proc"].items() if k.endswith("/cmdline")]
    runner = [a for a in argvs if any(w == "pytest" or w.endswith(("/pytest", "/py.test"))
                                      or "sys.stdin.readline" in w for w in a)]
    assert len(pids) < 10 and runner == [], runner


def test_the_job_cannot_reach_the_hosts_loopback(run: SharedRun) -> None:
    got = run.got
    assert len(got["tcp"]) == 3
    for target, result in got["tcp"].items():
        assert result != "connected", target
        # Its own loopback answers "refused"; another address is unreachable from its netns.
        assert result in ("ConnectionRefusedError", "OSError", "TimeoutError"), (target, result)
    assert got["inet6"] == "OSError"  # EAFNOSUPPORT: seccomp allows AF_UNIX and AF_INET only


def test_the_job_cannot_read_a_dataset_it_was_not_granted(run: SharedRun) -> None:
    got = run.got
    for what, result in got["reads"].items():
        assert isinstance(result, str) and result.startswith("error "), (what, result)
    assert got["data_dir"] == ["0.parquet"]
    assert len(got["granted_rows"]) == sum(REGIONS.values())
    assert all(SECRET_MARKER not in json.dumps(r) for r in got["granted_rows"])
    assert got["write_data"] in ("OSError", "PermissionError")
    # The one folder it was given holds Spark's files of the granted rows, and is gone after.
    assert got["granted_files"] and all(
        n == "_SUCCESS" or n.startswith(("part-", ".part-", "._SUCCESS"))
        for n in got["granted_files"])
    assert not (run.site.root / "jobs" / JOB_ID / "data").exists()


FAMILIES = """
import errno, socket
out = []
for name in ("AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET"):
    try:
        socket.socket(getattr(socket, name), socket.SOCK_RAW if name == "AF_PACKET"
                      else socket.SOCK_DGRAM).close()
        out.append(name + " ok")
    except OSError as e:
        out.append(name + " " + errno.errorcode[e.errno])
lines = open("/proc/net/dev").read().splitlines()[2:]  # this network namespace's
out.append("interfaces " + ",".join(sorted(x.split(":")[0].strip() for x in lines)))
print("; ".join(out))
"""


@pytest.mark.parametrize("inet", [True, False])
def test_a_spark_step_may_open_inet_sockets_alone_on_its_own_loopback(
        sandbox_strict: Sandbox, inet: bool) -> None:
    """No JVM needed: the seccomp rule a python-spark step gets (``inet=True``) lets AF_INET
    through and nothing more, and its network namespace has only ``lo``."""
    import sys

    from ndl.jobs.sandbox import Limits, SandboxSpec

    r = sandbox_strict.run(SandboxSpec(
        argv=[sys.executable, "-I", "-c", FAMILIES], mounts=[], workdir="/", env={},
        limits=Limits(cpu_seconds=20, wall_seconds=30.0, memory_bytes=512 * 1024**2),
        inet=inet))
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.decode().strip() == (
        f"AF_INET {'ok' if inet else 'EAFNOSUPPORT'}; AF_INET6 EAFNOSUPPORT; "
        "AF_NETLINK EAFNOSUPPORT; AF_PACKET EAFNOSUPPORT; interfaces lo")
