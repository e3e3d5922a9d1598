"""``ndl demo`` as a newcomer meets it: up within 60 s, the tour's commands work, Ctrl-C stops
every process."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from ndl.testing import free_port


def _ndl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ndl", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def _alive_under(root: Path, *, servers: bool = False) -> list[int]:
    """Processes whose command line names ``root`` (the demo itself aside); ``servers``: only
    the hub and datasites (not the sandboxes a datasite keeps ready for controlled jobs)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(root) in cmd and " demo " not in cmd and (
                    not servers or " -m ndl " in cmd):
                pids.append(int(entry.name))
    return pids


def _reap(demo: subprocess.Popen[str], root: Path) -> None:
    """Whatever a failed test left: the demo and any child of it still running."""
    if demo.poll() is None:
        demo.kill()
        demo.wait()
    if demo.stdout is not None:
        demo.stdout.close()
    for pid in _alive_under(root):
        os.kill(pid, signal.SIGKILL)


def test_demo_comes_up_answers_the_tour_and_stops_cleanly(tmp_path: Path) -> None:
    port, root = free_port(), tmp_path / "demo"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("NDL_")},
           "NDL_CONFIG_DIR": str(tmp_path / "cfg"), "NDL_HUB": f"http://127.0.0.1:{port}",
           # as the tour says: the demo hub is plain http:// on loopback
           "NDL_ALLOW_HTTP_LOOPBACK": "1"}
    started = time.monotonic()
    demo = subprocess.Popen([sys.executable, "-m", "ndl", "demo", "--dir", str(root),
                             "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    try:
        out = ""
        assert demo.stdout is not None
        while "Press Ctrl-C" not in out:
            line = demo.stdout.readline()
            assert line, f"demo exited early:\n{out}"
            out += line
            assert time.monotonic() - started < 60, out
        ready = time.monotonic() - started
        print(f"demo ready in {ready:.1f} s")
        assert "export NDL_ALLOW_HTTP_LOOPBACK=1" in out  # the tour says how to reach it

        found = _ndl(env, "search", "A&E")
        assert found.returncode == 0 and "nhs-trust/ae-attendances" in found.stdout

        login = _ndl(env, "login", "--username", "alice", "--password",
                     "demo-password-alice")
        assert login.returncode == 0, login.stderr
        project = out.split("project show ", 1)[1].split()[0]
        counts = _ndl(env, "query", "local-authority/ward-population", "--count-by",
                      "ward_name", "--json")
        assert counts.returncode == 0, counts.stderr
        assert '"columns": [\n    "ward_name",\n    "n"\n  ]' in counts.stdout
        # Safeguarded data never gives exact counts, not even to the granted researcher.
        refused = _ndl(env, "query", "nhs-trust/ae-attendances", "--count-by", "region",
                       "--project", project)
        assert refused.returncode == 4 and "dp-query" in refused.stdout + refused.stderr

        times = httpx.get(f"http://127.0.0.1:{port}/api/metrics/time-to-access").json()
        assert set(times["by_tier"]) == {"safeguarded", "controlled"}  # the demo's decisions
        assert times["pending"] == 0
        sites = httpx.get(f"http://127.0.0.1:{port}/api/datasites").json()["datasites"]
        assert sorted(s["id"] for s in sites) == ["dfe", "local-authority", "nhs-trust"]
        verify = _ndl(env, "verify")
        assert verify.returncode == 0, verify.stdout
        # The controlled job went the whole way: reviewed, run, checked, released, fetched.
        assert "released by oscar" in out, out
        by_sen = (root / "job-outputs" / "fsm_by_sen.csv").read_text()
        assert by_sen.startswith("sen_status,fsm_eligible,count")
        by_sex = (root / "job-outputs" / "fsm_by_sex.csv").read_text()
        assert by_sex.count("[suppressed]") >= 2  # the small cell, and one that would tell it
        job_id = out.split("job status ", 1)[1].split()[0]
        job = httpx.get(f"http://127.0.0.1:{port}/api/register", params={"limit": 1000}).json()
        kinds = {e["kind"] for e in job["entries"] if e["subject"] == job_id}
        assert {"job.submitted", "job.reviewed", "job.ran", "job.released"} <= kinds, kinds

        children = _alive_under(root, servers=True)
        assert len(children) == 4, children  # hub + three datasites
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=30) == 0
        assert _alive_under(root) == []
    finally:
        _reap(demo, root)


def _start_demo(env: dict[str, str], root: Path, port: int) -> tuple[subprocess.Popen[str], str]:
    """Start ``ndl demo`` as a real process and read its output up to the tour's last line."""
    demo = subprocess.Popen([sys.executable, "-m", "ndl", "demo", "--dir", str(root),
                             "--port", str(port), "--people", "300"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    out, started = "", time.monotonic()
    assert demo.stdout is not None
    while "Press Ctrl-C" not in out:
        line = demo.stdout.readline()
        assert line, f"demo exited early:\n{out}"
        out += line
        assert time.monotonic() - started < 120, out
    return demo, out


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_sigterm_stops_every_child_and_frees_the_port(tmp_path: Path) -> None:
    port, root = free_port(), tmp_path / "demo"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("NDL_")},
           "NDL_CONFIG_DIR": str(tmp_path / "cfg"), "NDL_HUB": f"http://127.0.0.1:{port}",
           # as the tour says: the demo hub is plain http:// on loopback
           "NDL_ALLOW_HTTP_LOOPBACK": "1"}
    env["COLUMNS"] = "200"  # wide enough that Rich keeps each table cell on one line
    demo, out = _start_demo(env, root, port)
    try:
        # The tour shows the command people type, not the interpreter's path, and the
        # private-question command.
        assert "  ndl search" in out and "-m ndl" not in out and sys.executable not in out
        assert "ndl dp-query nhs-trust/ae-attendances" in out and "ndl project list" in out

        # The first hour at the terminal: the tour's commands say what is true.
        shown = _ndl(env, "show", "nhs-trust/ae-attendances")
        assert shown.returncode == 0 and "How to get it (Safeguarded)" in shown.stdout, shown
        assert "ndl dp-query" in shown.stdout  # the route, in core.tiers' words
        found = _ndl(env, "search", "A&E")
        assert re.search(r"\b1 dataset found|\b\d+ datasets found", found.stdout), found.stdout
        assert "1 datasets" not in found.stdout
        times = _ndl(env, "access-times")
        assert "(hours)" not in times.stdout and re.search(r"\d (seconds?|minutes?|hours|days)",
                                                           times.stdout), times.stdout
        sites = _ndl(env, "datasites")
        assert re.search(r"\d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d UTC \((just now|\d+ \w+ ago)\)",
                         sites.stdout), sites.stdout
        assert _ndl(env, "login", "--username", "alice", "--password",
                    "demo-password-alice").returncode == 0
        mine = _ndl(env, "project", "list")
        project = out.split("project show ", 1)[1].split()[0]
        assert mine.returncode == 0 and project in mine.stdout and "1 project" in mine.stdout, mine
        assert len(_alive_under(root, servers=True)) == 4
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=40) == 0
        assert _alive_under(root) == [], "a child outlived the demo"
        assert _port_free(port), f"port {port} is still held after the demo stopped"
    finally:
        _reap(demo, root)


def test_a_port_in_use_is_a_clear_error_before_anything_starts(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("NDL_")}
        done = subprocess.run([sys.executable, "-m", "ndl", "demo", "--dir", str(root),
                               "--port", str(port)], capture_output=True, text=True, env=env,
                              timeout=60)
    said = done.stdout + done.stderr
    assert done.returncode == 6, said  # Conflict
    assert f"port {port} on 127.0.0.1 is already in use" in said and "--port" in said, said
    assert "Your National Data Library is running" not in said
    assert not root.exists() and _alive_under(root) == []  # nothing generated or started
