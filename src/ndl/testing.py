"""Helpers for testing code built on ndl: run a real hub and real datasites on loopback.

These start the same ``ndl hub`` and ``ndl datasite`` processes users run, so a test
exercises the real wire (HTTP, signed envelopes, long-polling) rather than a fake.

>>> with HubProcess(tmp_path / "hub") as hub:            # doctest: +SKIP
...     token = hub.create_user("alice", ["researcher"])
...     Client(hub.url, token).search("A&E")
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

from ndl.access import accounts
from ndl.access import service as access_service
from ndl.access.models import User
from ndl.core.db import Database
from ndl.core.errors import UpstreamUnavailable
from ndl.core.keys import FileSigningKey, SigningKey
from ndl.core.transport import HOSTS_ENV, LOOPBACK_ENV, is_loopback


def write_dataset(root: Path, name: str, table: pa.Table, *, tier: str = "safeguarded",
                  title: str | None = None, publisher: str = "Test Trust",
                  keywords: list[str] | None = None, description: str = "") -> Path:
    """Write a dataset folder (Parquet + metadata.json) the way a datasite keeps it."""
    types = {pa.string(): "string", pa.int64(): "integer", pa.float64(): "float",
             pa.bool_(): "boolean", pa.date32(): "date"}
    d = root / "datasets" / name
    d.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, d / "data.parquet")
    meta = {
        "name": name, "title": title or name.replace("-", " ").title(),
        "description": description, "publisher": publisher, "tier": tier,
        "keywords": keywords or [], "row_count": table.num_rows,
        "columns": [{"name": f.name, "type": types.get(f.type, "string")}
                    for f in table.schema],
    }
    (d / "metadata.json").write_text(json.dumps(meta), "utf-8")
    return d


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None
              ) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise UpstreamUnavailable(f"process exited with code {proc.returncode} "
                                      f"before {url} came up")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise UpstreamUnavailable(f"{url} did not come up within {timeout:g} s")


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NDL_")}
    # A test network on loopback speaks plain http:// (ndl.core.transport), explicitly.
    env[LOOPBACK_ENV] = "1"
    if os.environ.get(HOSTS_ENV):
        env[HOSTS_ENV] = os.environ[HOSTS_ENV]
    return {**env, **(extra or {})}


def allow_test_http(host: str) -> None:
    """Let this process (and the processes it starts) use plain http:// to ``host``: the test
    hub's loopback or veth address. Never for a deployment (see ndl.core.transport)."""
    os.environ.setdefault(LOOPBACK_ENV, "1")
    if not is_loopback(host):
        named = [h for h in os.environ.get(HOSTS_ENV, "").split(",") if h]
        if host not in named:
            os.environ[HOSTS_ENV] = ",".join([*named, host])


def _die_with_parent() -> None:
    """In the child before exec: on Linux, ask for SIGTERM when the test process dies, so a
    killed or timed-out test run leaves no hub or datasite behind holding ports and CPU."""
    if sys.platform != "linux":
        return
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class _Process:
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path

    def _spawn(self, args: list[str], env: dict[str, str] | None = None,
               prefix: list[str] | None = None) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        # A prefix such as ``nsenter --net=...`` execs (no fork), so the pid, signals and the
        # die-with-parent request still reach the ndl process itself.
        self.proc = subprocess.Popen([*(prefix or []), sys.executable, "-m", "ndl", *args],
                                     stdout=log, stderr=subprocess.STDOUT, env=_child_env(env),
                                     preexec_fn=_die_with_parent)
        log.close()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace") if self.log_path.exists() else ""


class HubProcess(_Process):
    """An ``ndl hub`` on a free loopback port with its own data folder.

    ``host`` is the address it listens on (and its URL names), e.g. a veth address that
    datasites in network namespaces can reach. ``workers`` > 1 runs ``ndl hub --workers N``
    (PostgreSQL only); ``start`` then waits for every worker to be up."""

    def __init__(self, data_dir: Path, db_url: str | None = None, *, port: int | None = None,
                 extra_args: list[str] | None = None, host: str = "127.0.0.1",
                 workers: int = 1) -> None:
        self.data_dir, self.host, self.workers = data_dir, host, workers
        self.db_url = db_url or str(data_dir / "hub.db")
        self.port = port or free_port()
        self.extra_args = extra_args or []
        self.log_path = data_dir / "hub.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(self.db_url)
        self.db.migrate()
        # Follows 'ndl admin rotate-hub-key' like the hub itself does.
        self.key: SigningKey = FileSigningKey(data_dir / "hub-key.pem")
        allow_test_http(host)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> HubProcess:
        return self.spawn().wait_ready()

    def spawn(self) -> HubProcess:
        """Start the process without waiting (start several, then ``wait_ready`` each: from
        this thread, as a child dies with the thread that spawned it)."""
        self._spawn(["hub", "--db", self.db_url, "--data-dir", str(self.data_dir),
                     "--host", self.host, "--port", str(self.port),
                     # Each worker logs its start-up at info: how start() knows all are up.
                     "--log-level", "info" if self.workers > 1 else "warning",
                     *(["--workers", str(self.workers)] if self.workers > 1 else []),
                     *self.extra_args])
        return self

    def wait_ready(self) -> HubProcess:
        # Generous: on a loaded 2-core test machine importing the hub alone can take 30 s.
        try:
            wait_http(f"{self.url}/healthz", 120, self.proc)
            deadline = time.monotonic() + 120
            while self.workers > 1 and \
                    self.log().count("Application startup complete") < self.workers:
                if time.monotonic() > deadline or self.proc is None or \
                        self.proc.poll() is not None:
                    raise UpstreamUnavailable(f"not all {self.workers} hub workers started:"
                                              f"\n{self.log()[-2000:]}")
                time.sleep(0.1)
        except BaseException:
            self.stop()  # a hub that never came up must not outlive its test
            raise
        return self

    def __enter__(self) -> HubProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
        self.db.dispose()

    def create_org(self, org_id: str, name: str | None = None, kind: str = "other") -> None:
        with self.db.write() as s:
            access_service.create_org(s, self.key, access_service.Operator("test"),
                                      access_service.NewOrg(id=org_id, name=name or org_id,
                                                            kind=kind))

    def create_user(self, username: str, roles: list[str], *, org: str | None = None,
                    password: str | None = None, accredited: bool = False) -> str:
        """Create a user and return a fresh API token for it."""
        with self.db.write() as s:
            made = access_service.create_user(
                s, self.key, access_service.Operator("test"),
                access_service.NewUser(username=username, roles=roles, org=org,
                                       password=password))
            user = s.get(User, made.user_id)
            assert user is not None
            user.accredited = accredited
            return accounts.issue_token(s, user, name="test")


def stop_all(*procs: _Process | None, show_logs: bool = False) -> None:
    """Stop processes in the order given (datasites before their hub); on failure, show the
    tail of each one's log first so the reason is not lost with the process."""
    for proc in procs:
        if proc is None:
            continue
        if show_logs:
            sys.stderr.write(f"--- {proc.log_path} (tail)\n{proc.log()[-4000:]}\n")
        proc.stop()
        if isinstance(proc, HubProcess):
            proc.db.dispose()


def granted_project(hub_url: str, token: str, datasets: list[str], *,
                    title: str = "Test project") -> str:
    """Create a project and ask for ``datasets``; return the project id.

    With an accredited researcher and the default safeguarded policy the grants are immediate;
    datasets whose policy routes to a steward stay pending for the caller to decide.
    """
    from ndl.client import Client

    with Client(hub_url, token, allow_http_loopback=True) as c:
        project = c.create_project(
            title=title, purpose="Measure how emergency care use varies by region for planning.",
            lay_summary="Counts of hospital visits by area, to plan services.",
            legal_basis="public-task", end_date="2099-12-31")
        c.request_access(project["id"], datasets)
    return str(project["id"])


class DatasiteProcess(_Process):
    """An ``ndl datasite`` serving the datasets under ``root/datasets``; with ``netns`` (a name
    from ``ip netns add``; needs root), run inside that network namespace."""

    def __init__(self, root: Path, hub_url: str, *, org: str, token: str | None = None,
                 datasite_id: str | None = None, poll_wait: float = 5.0,
                 sandbox: str = "strict", env: dict[str, str] | None = None,
                 netns: str | None = None) -> None:
        self.root, self.hub_url, self.org, self.netns = root, hub_url, org, netns
        self.sandbox, self.env = sandbox, dict(env or {})
        self.token, self.id, self.poll_wait = token, datasite_id or org, poll_wait
        self.log_path = root / "datasite.log"

    def start(self, wait_online: bool = True, hub: Any = None) -> DatasiteProcess:
        self._spawn(["datasite", "--dir", str(self.root), "--hub", self.hub_url,
                     "--org", self.org, "--id", self.id, "--poll-wait", str(self.poll_wait),
                     "--sandbox", self.sandbox],
                    {**self.env, **({"NDL_TOKEN": self.token} if self.token else {})},
                    # nsenter, not ``ip netns exec``: that remounts /sys, hiding the cgroups
                    # the strict sandbox uses; only the network should differ.
                    ["nsenter", f"--net=/run/netns/{self.netns}", "--"] if self.netns else None)
        if wait_online:
            self.wait_online()
        return self

    def wait_online(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise UpstreamUnavailable(f"datasite exited early:\n{self.log()}")
            try:
                sites = httpx.get(f"{self.hub_url}/api/datasites", timeout=2).json()
                if any(s["id"] == self.id and s["online"] for s in sites["datasites"]):
                    return
            except (httpx.TransportError, KeyError, ValueError):
                pass
            time.sleep(0.1)
        raise UpstreamUnavailable(f"datasite {self.id} did not come online:\n{self.log()}")

    def __enter__(self) -> DatasiteProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


__all__ = [
    "DatasiteProcess", "HubProcess", "free_port", "granted_project", "stop_all", "wait_http",
    "write_dataset",
]


class S3TestServer(_Process):
    """moto's S3-compatible HTTP server (``moto[server]``, a dev dependency) on loopback: a
    real server process speaking the S3 protocol, for testing the S3 blob store. Not AWS and
    not MinIO: behaviour they add beyond moto's is not covered."""

    ACCESS_KEY = "ndl-test"
    SECRET_KEY = "ndl-test-secret"  # noqa: S105 - a fake server's fake credentials

    def __init__(self, log_dir: Path, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_dir / "moto.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The AWS variables a client (or a hub process) needs to reach it."""
        return {"AWS_ACCESS_KEY_ID": self.ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": self.SECRET_KEY,
                "AWS_DEFAULT_REGION": "us-east-1"}

    def start(self) -> S3TestServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, env=_child_env(), preexec_fn=_die_with_parent)
        log.close()
        try:
            wait_http(f"{self.url}/", 120, self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def create_bucket(self, name: str) -> None:
        import boto3

        boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                     aws_access_key_id=self.ACCESS_KEY,
                     aws_secret_access_key=self.SECRET_KEY).create_bucket(Bucket=name)

    def __enter__(self) -> S3TestServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
