"""Start a whole local library: one hub and three datasites, on loopback, as real processes.

Everything lives under one folder (``--dir``): the synthetic data (``sites/``), the hub's
database and key (``hub/``), each datasite's state and logs (``logs/``). Running the demo
again reuses it; ``--fresh`` starts over. Children run in their own sessions so that Ctrl-C
reaches only this process, which then stops them in order and waits for them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import httpx
from rich.console import Console

from ndl.access import accounts, evidence
from ndl.access import service as access_service
from ndl.access.models import Org, User
from ndl.core.db import Database
from ndl.core.errors import Conflict, UpstreamUnavailable
from ndl.core.keys import SigningKey
from ndl.core.transport import LOOPBACK_ENV
from ndl.demo.job_tour import DemoJob, run_demo_job, sandbox_mode
from ndl.demo.synth import ORGS, generate_demo_data

console = Console()
# Local demo only (the hub listens on 127.0.0.1); the tour prints it.
PASSWORD = "demo-password"  # noqa: S105
DEMO = access_service.Operator("demo")  # how the register names the demo's bootstrap


@dataclass
class DemoUser:
    username: str
    roles: tuple[str, ...]
    org: str | None
    display: str


USERS = [
    DemoUser("admin", ("admin",), None, "Library administrator"),
    DemoUser("alice", ("researcher",), None, "Alice Researcher (University of Northshire)"),
    DemoUser("oscar", ("output_checker",), None, "Oscar Output-Checker"),
    *[DemoUser(f"steward-{o.slug}", ("steward",), o.slug, f"Data steward, {o.name}") for o in ORGS],
]


def bootstrap_hub(hub_dir: Path, db_url: str) -> dict[str, str]:
    """Create the demo's organisations and users (once); return a steward token per org."""
    db = Database(db_url)
    db.migrate()
    key = SigningKey.load_or_create(hub_dir / "hub-key.pem")
    tokens: dict[str, str] = {}
    with db.write() as s:
        for org in ORGS:
            if s.get(Org, org.slug) is None:
                access_service.create_org(s, key, DEMO, access_service.NewOrg(
                    id=org.slug, name=org.name, kind=org.kind))
        for u in USERS:
            user = s.query(User).filter_by(username=u.username).one_or_none()
            if user is None:
                made = access_service.create_user(s, key, DEMO, access_service.NewUser(
                    username=u.username, roles=list(u.roles), org=u.org,
                    display_name=u.display, password=f"{PASSWORD}-{u.username}"))
                user = s.get(User, made.user_id)
                assert user is not None
                if u.username == "alice":  # accredited, with the evidence an admin records
                    evidence.add_evidence(s, key, DEMO, u.username, evidence.NewEvidence(
                        kind="accredited-researcher", issuer="UK Statistics Authority",
                        reference="DEA-DEMO-0001",
                        expires_on=date.today() + timedelta(days=365)))
            if u.org:
                tokens[u.org] = accounts.issue_token(s, user, name="demo-datasite")
    db.dispose()
    return tokens


def wait_for(url: str, timeout: float, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise UpstreamUnavailable(f"a demo process exited early (code {p.returncode})")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise UpstreamUnavailable(f"{url} did not come up within {timeout:g} s")


def stop_all(procs: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    """Datasites first, then the hub: SIGTERM, then SIGKILL after ten seconds."""
    if signal.getsignal(signal.SIGTERM) is _raise_stop:
        # A second signal (an impatient Ctrl-C, systemd's repeat) must not cut the stopping
        # short and orphan the children it has not reached yet.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
    for _, p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for name, p in reversed(procs):
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            console.print(f"{name} did not stop in 10 s; killing it")
            p.kill()
            p.wait()


class DemoStopped(BaseException):
    """A stop signal arrived (SIGTERM, SIGHUP): unwind like Ctrl-C so every child is stopped.

    The children run in sessions of their own (so one Ctrl-C reaches only us, and we stop
    them in order); Python's default SIGTERM kills us without running ``finally``, which left
    the hub and the datasites running with the port held.
    """


def _raise_stop(signum: int, _frame: object) -> None:
    raise DemoStopped(signal.Signals(signum).name)


def stop_on_signals() -> None:
    """Turn SIGTERM and SIGHUP into :class:`DemoStopped` (SIGINT is KeyboardInterrupt)."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _raise_stop)


def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    """Fail before anything starts if the hub's port is taken (often an earlier demo)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As uvicorn binds: an earlier run's TIME_WAIT connections are no conflict, a
        # listener is.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise Conflict(
                f"port {port} on {host} is already in use ({exc.strerror}), so the demo's hub "
                "cannot start; stop whatever holds it (an earlier demo still running?) or "
                "pass --port with a free port") from None


def run_demo(
    root: Path,
    *,
    port: int = 8700,
    people: int = 2000,
    seed: int = 7,
    fresh: bool = False,
    db: str | None = None,
    block: bool = True,
) -> list[tuple[str, subprocess.Popen[bytes]]]:
    started = time.monotonic()
    if block:
        stop_on_signals()
    check_port_free(port)
    root = root.resolve()
    if fresh and root.exists():
        shutil.rmtree(root)
    sites, hub_dir, logs = root / "sites", root / "hub", root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    if not (sites / ".complete").exists():
        with console.status(f"generating synthetic data for {people:,} people…"):
            generate_demo_data(sites, people=people, seed=seed)
        (sites / ".complete").write_text(f"people={people} seed={seed}\n")
    db_url = db or str(hub_dir / "hub.db")
    tokens = bootstrap_hub(hub_dir, db_url)
    hub_url = f"http://127.0.0.1:{port}"
    # Children get a minimal environment: tokens travel by env, never on the command line.
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("NDL_")}
    # The demo's hub is plain http:// on loopback: say so explicitly (ndl.core.transport).
    base_env[LOOPBACK_ENV] = "1"
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    sandbox, sandbox_note = sandbox_mode()

    specs: dict[str, tuple[list[str], dict[str, str] | None]] = {}

    def start(name: str) -> subprocess.Popen[bytes]:
        args, extra = specs[name]
        # The child keeps its own copy of the log's descriptor; ours is closed at once.
        with (logs / f"{name}.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "ndl", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**base_env, **(extra or {})},
                start_new_session=True,
            )

    def spawn(name: str, args: list[str], extra: dict[str, str] | None = None) -> None:
        specs[name] = (args, extra)
        procs.append((name, start(name)))

    try:
        spawn(
            "hub",
            [
                "hub",
                "--db",
                db_url,
                "--data-dir",
                str(hub_dir),
                "--port",
                str(port),
                "--insecure-cookies",
                "--log-level",
                "warning",
            ],
        )
        wait_for(f"{hub_url}/healthz", 30, [p for _, p in procs])
        for org in ORGS:
            spawn(
                f"datasite-{org.slug}",
                [
                    "datasite",
                    "--dir",
                    str(sites / org.slug),
                    "--hub",
                    hub_url,
                    "--org",
                    org.slug,
                    "--name",
                    f"{org.name} datasite",
                    "--sandbox",
                    sandbox,
                ],
                {"NDL_TOKEN": tokens[org.slug]},
            )
        _wait_published(hub_url, len(ORGS), 45, [p for _, p in procs])
        project = _demo_access(hub_url, root)
        with console.status("running the controlled job: review, sandbox, checks, release…"):
            job = run_demo_job(hub_url, root, project, PASSWORD)
    except BaseException:
        stop_all(procs)
        raise
    _tour(hub_url, root, time.monotonic() - started, project, job, sandbox_note)
    if not block:
        return procs
    why = ""
    try:
        why = supervise(procs, start)
        console.print(f"[red]stopping: {why}; see {logs}[/]")
    except (KeyboardInterrupt, DemoStopped):
        console.print("\nstopping the demo…")
    finally:
        stop_all(procs)
    console.print("demo stopped")
    if why:  # the demo failed: say so with a non-zero exit, not a quiet 0
        raise UpstreamUnavailable(f"the demo stopped because {why}; see the logs in {logs}")
    return procs


RESTARTS_PER_MINUTE = 5


def supervise(
    procs: list[tuple[str, subprocess.Popen[bytes]]],
    restart: Callable[[str], subprocess.Popen[bytes]],
    *, stop: threading.Event | None = None, tick: float = 0.5,
) -> str:
    """Keep the demo running; return why it cannot go on.

    A datasite that exits is started again, and the console says so: one dead datasite must
    not take the whole network down (its unfinished work is redelivered to it once it is
    back). The hub exiting, or a datasite that keeps exiting (five times in a minute), ends
    the demo. ``procs`` is updated in place so the caller stops the live processes.
    """
    exits: dict[str, deque[float]] = defaultdict(deque)
    while stop is None or not stop.is_set():
        for i, (name, p) in enumerate(procs):
            if p.poll() is None:
                continue
            if name == "hub":
                return f"the hub stopped unexpectedly (exit {p.returncode})"
            now, recent = time.monotonic(), exits[name]
            while recent and now - recent[0] > 60:
                recent.popleft()
            recent.append(now)
            if len(recent) >= RESTARTS_PER_MINUTE:
                return (f"{name} stopped {len(recent)} times within a minute "
                        f"(last exit {p.returncode})")
            console.print(f"[yellow]{name} stopped (exit {p.returncode}); restarting it[/]")
            procs[i] = (name, restart(name))
        time.sleep(tick)
    return "asked to stop"


def _wait_published(
    hub_url: str, n_sites: int, timeout: float, procs: list[subprocess.Popen[bytes]]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise UpstreamUnavailable(
                    f"a demo process exited early (code {p.returncode}); see the logs folder"
                )
        try:
            sites = httpx.get(f"{hub_url}/api/datasites", timeout=2).json()["datasites"]
            ds = httpx.get(f"{hub_url}/api/datasets", params={"limit": 1}, timeout=2).json()
            if len(sites) >= n_sites and all(s["online"] for s in sites) and ds["total"] > 0:
                return
        except (httpx.TransportError, KeyError, ValueError):
            pass
        time.sleep(0.3)
    raise UpstreamUnavailable(f"the datasites did not come online within {timeout:g} s")


def _demo_access(hub_url: str, root: Path) -> str:
    """Walk the access process once, for real, so the demo has grants and figures to show.

    Alice (an accredited researcher) asks for three datasets at two organisations in one
    request: the two safeguarded ones are granted at once by policy; the controlled one goes
    to the DfE's steward, who approves it. Re-runs reuse the project.
    """
    from ndl.client import Client

    marker = root / "hub" / "demo-project"
    if marker.exists():
        return marker.read_text().strip()
    with Client(hub_url, allow_http_loopback=True) as alice:
        alice.login("alice", f"{PASSWORD}-alice")
        project = alice.create_project(
            title="Emergency care and school outcomes in Northshire",
            purpose="Estimate how A&E use varies by region and how it relates to pupils' "
                    "attainment, to target support for children.",
            lay_summary="Counts of hospital visits and school results by area, to plan "
                        "children's services.",
            legal_basis="public-task", end_date="2030-03-31")
        alice.request_access(project["id"], ["nhs-trust/ae-attendances", "dfe/attainment",
                                             "dfe/pupils"])
    with Client(hub_url, allow_http_loopback=True) as steward:
        steward.login("steward-dfe", f"{PASSWORD}-steward-dfe")
        for item in steward.steward_queue():
            steward.decide(item["id"], "approve", "Purpose and legal basis are sound.")
    marker.write_text(project["id"])
    return str(project["id"])


def _job_lines(job: DemoJob, note: str) -> str:
    if job.state != "released":
        return (f"  job {job.id} {job.state}: {job.error or 'see ndl job status ' + job.id}"
                + (f"\n  NOTE: {note}" if note else ""))
    lines = [f"  alice's job {job.id} (free school meals by SEN status on dfe/pupils): "
             f"approved by steward-dfe, run in the {job.sandbox} sandbox, "
             f"{job.suppressed} of {job.cells} cells suppressed, released by oscar",
             f"  outputs downloaded to {job.outputs}"]
    if note:
        lines.append(f"  NOTE: {note}")
    return "\n".join(lines)


def _tour(hub_url: str, root: Path, took: float, project: str, job: DemoJob,
          sandbox_note: str) -> None:
    # The command people type once the venv is active, never the interpreter's full path.
    ndl = "ndl"
    console.print(
        f"""
[bold green]Your National Data Library is running[/] (ready in {took:.1f} s)

  Web catalogue   {hub_url}/
  API docs        {hub_url}/api/docs
  Register (JSON) {hub_url}/api/register
  Demo data       {root}   (logs in {root / "logs"})

Datasites: nhs-trust, dfe, local-authority. Users (password = demo-password-<username>):
  alice (researcher), oscar (output checker), admin, steward-nhs-trust, steward-dfe,
  steward-local-authority

Controlled job:
{_job_lines(job, sandbox_note)}

Try, in another shell (after `source .venv/bin/activate`, or use .venv/bin/ndl):
  export NDL_ALLOW_HTTP_LOOPBACK=1   # this demo hub is plain http:// on loopback
  {ndl} search "A&E"
  {ndl} show nhs-trust/ae-attendances
  {ndl} login --username alice --password demo-password-alice
  {ndl} project list
  {ndl} project show {project}
  {ndl} query local-authority/ward-population --count-by ward_name     # open data
  {ndl} dp-query nhs-trust/ae-attendances --project {project} --rho 0.1 \\
      --sql "SELECT COUNT(*) AS n FROM data GROUP BY region"  # safeguarded: DP answers
  {ndl} job status {job.id}            # controlled: reviewed code run at the data
  {ndl} job outputs {job.id} --out ./fsm-outputs
  {ndl} job init ./my-job && {ndl} run ./my-job --mock   # develop against mock data
  {ndl} access-times
  {ndl} datasites
  {ndl} verify
  {ndl} mcp          # an MCP server on stdio for AI agents (also at {hub_url}/mcp)

Press Ctrl-C to stop every process.
""",  # noqa: S608 - a tour for a person to read: the SQL is an example to type
        highlight=False,
        soft_wrap=True,
    )
