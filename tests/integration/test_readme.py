"""Every ``ndl`` command README.md shows, run as written against real processes.

The commands are read from README.md itself, so the test follows the README when it changes:

- the demo tour's block runs, in order, against a demo network (``run_demo``: a real hub and
  the three real datasites with synthetic data), each command checked for exit 0 and a
  fragment of its output from ``EXPECT``; ``ndl dp-query`` is answered "y" at its prompt and
  ``ndl mcp`` is started and asked for its tools over stdio;
- "Running the parts yourself" runs against a fresh hub: ``ndl hub`` and ``ndl datasite``
  are started and must come up, the ``ndl admin`` commands between them must succeed;
- the Python SDK snippet runs in a fresh interpreter against the demo network.

A README command whose subcommand is in neither ``EXPECT`` nor ``ELSEWHERE`` fails the
first test: add what it should print (or the test that covers it) there.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pyarrow as pa
import pytest

from ndl.client import Client
from ndl.demo.network import run_demo, stop_all
from ndl.testing import free_port, wait_http, write_dataset

README = Path(__file__).resolve().parents[2] / "README.md"

# What each subcommand must print (all fragments, on stdout) when it succeeds.
EXPECT: dict[str, tuple[str, ...]] = {
    "search": ("found",),  # "1 dataset found" or "3 datasets found"
    "show": ("rows", "column"),
    "query": (": count",),
    "download": ("saved wards.csv", "rows"),
    "login": ("logged in to",),
    "project show": ("requests", "grant "),
    "project list": ("project",),
    "dp-query": ("expected error at rho=", "differentially private answer", "spent rho="),
    "access-times": ("time to access",),
    "datasites": ("online",),
    "verify": ("register OK",),
    "job status": ("outputs released", "sandbox:"),
    "job outputs": ("fsm_by_sen.csv", "fsm_by_sex.csv"),
    "job init": ("wrote",),
    "run": ("safe log", "fsm_by_sen", "passed the automatic checks"),
    "submit": ("submitted job", "code SHA-256"),
    "admin create-org": ("created organisation",),
    "admin create-user": ("created user",),
    # Servers: started and checked to come up rather than run to completion.
    "mcp": ("serverInfo",),  # the initialize reply on stdout; see _run_mcp
    "hub": (),  # /healthz answers; see test_running_the_parts_yourself
    "datasite": (),  # online at the hub, its datasets published
}
# Shown only in the README's prose, and run by other tests.
ELSEWHERE: dict[str, str] = {
    "job": "tests/unit/test_job_cli.py (status, logs, cancel, outputs, review, check, ...)",
    "demo": "tests/integration/test_demo.py (`make demo` runs `ndl demo`)",
    "publish": "tests/integration/test_publish_cli.py",
    "work": "tests/integration/test_work_export.py (list, show, wait, cancel, fetch)",
}
SERVERS = {"hub", "datasite", "mcp"}
# What a test that points the README's commands at a loopback hub adds: the README's own tour
# exports it itself (ndl.core.transport refuses plain http:// without it).
LOOPBACK = {"NDL_ALLOW_HTTP_LOOPBACK": "1"}
PLACEHOLDER = re.compile(r"<[^<>\n]+>")


@dataclass
class Command:
    text: str  # the README line(s), for messages
    env: dict[str, str]  # VAR=value prefixes
    argv: list[str]  # after "ndl"

    @property
    def key(self) -> str:
        grouped = self.argv[0] in ("admin", "project", "job") and len(self.argv) > 1
        return " ".join(self.argv[:2]) if grouped else self.argv[0]


def code_blocks(lang: str) -> list[str]:
    text = README.read_text("utf-8")
    return [body for tag, body in re.findall(r"^```(\w*)\n(.*?)^```", text, re.M | re.S)
            if tag == lang]


def commands(block: str, fill: Callable[[str], str]) -> Iterator[Command]:
    """The ``ndl`` commands of a shell block; ``fill`` replaces each ``<placeholder>``.

    A generator: a line's placeholders are filled only when it is reached, so a value an
    earlier command printed (a token) can fill a later line.
    """
    exported: dict[str, str] = {}
    for raw in block.replace("\\\n", " ").splitlines():
        words = shlex.split(PLACEHOLDER.sub(lambda m: fill(m.group(0)), raw), comments=True)
        if words[:1] == ["export"]:  # `export VAR=value` holds for the commands after it
            exported.update(w.partition("=")[::2] for w in words[1:] if "=" in w)
            continue
        env = dict(exported)
        while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
            name, _, value = words.pop(0).partition("=")
            env[name] = value
        if words and words[0] == "ndl":
            yield Command(raw.split("  #")[0].strip(), env, words[1:])


def _any(_: str) -> str:
    return "x"


def tour_and_parts() -> tuple[list[str], list[str]]:
    """The shell blocks of the demo tour, and those that start their own hub."""
    tour: list[str] = []
    parts: list[str] = []
    for block in code_blocks("sh"):
        own_hub = any(c.key == "hub" for c in commands(block, _any))
        (parts if own_hub else tour).append(block)
    return tour, parts


def all_commands(blocks: list[str], fill: Callable[[str], str]) -> Iterator[Command]:
    for block in blocks:
        yield from commands(block, fill)


def test_every_readme_command_is_checked() -> None:
    tour_blocks, parts_blocks = tour_and_parts()
    tour, parts = list(all_commands(tour_blocks, _any)), list(all_commands(parts_blocks, _any))
    assert len(tour) >= 5 and len(parts) >= 4, "the README's command blocks were not found"
    unchecked = [c.text for c in tour + parts if c.key not in EXPECT]
    assert not unchecked, f"add the output these should show to EXPECT: {unchecked}"
    prose = re.findall(r"`ndl ([a-z][\w-]*)[^`]*`", README.read_text("utf-8"))
    unknown = sorted({p for p in prose if p not in EXPECT and p not in ELSEWHERE})
    assert not unknown, f"the README mentions ndl {unknown}: test them here or in ELSEWHERE"


# --- the demo network ------------------------------------------------------------------


@dataclass
class Demo:
    url: str
    project: str
    job: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    root = tmp_path_factory.mktemp("readme-demo")
    port = free_port()
    procs = run_demo(root, port=port, people=1500, block=False)
    try:
        project = (root / "hub" / "demo-project").read_text().strip()
        job = (root / "hub" / "demo-job").read_text().strip()
        yield Demo(f"http://127.0.0.1:{port}", project, job)
    finally:
        stop_all(procs)


def _env(home: Path, hub: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("NDL_")}
    # A wide terminal so Rich does not wrap the fragments EXPECT looks for.
    return {**base, "NDL_CONFIG_DIR": str(home / "cfg"), "NDL_HUB": hub, "COLUMNS": "200",
            **(extra or {})}


def _ndl(argv: list[str], env: dict[str, str], cwd: Path, stdin: str = ""
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ndl", *argv], input=stdin, env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def _check(cmd: Command, res: subprocess.CompletedProcess[str]) -> None:
    said = f"`ndl {shlex.join(cmd.argv)}` (README: {cmd.text})\n{res.stdout}\n{res.stderr}"
    assert res.returncode == 0, said
    for fragment in EXPECT[cmd.key]:
        assert fragment in res.stdout, f"expected {fragment!r} from {said}"


def _lines(stream: IO[str]) -> queue.Queue[str]:
    """Lines of a child's stdout, read on a thread so a test can wait with a timeout."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _run_mcp(cmd: Command, env: dict[str, str], cwd: Path) -> None:
    """Start ``ndl mcp`` as the README shows it and speak MCP to it on stdio.

    (tests/integration/test_mcp_http.py::test_ndl_mcp_over_stdio covers its tools in depth.)
    """
    proc = subprocess.Popen([sys.executable, "-m", "ndl", *cmd.argv], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=cwd)
    assert proc.stdin is not None and proc.stdout is not None
    lines = _lines(proc.stdout)

    def ask(msg_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": method,
                                     "params": params}) + "\n")
        proc.stdin.flush()
        while True:
            line = lines.get(timeout=30)
            reply: dict[str, Any] = json.loads(line)
            if reply.get("id") == msg_id:
                return reply

    try:
        hello = ask(1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                      "clientInfo": {"name": "readme-test", "version": "1"}})
        assert all(f in json.dumps(hello) for f in EXPECT[cmd.key]), hello
        proc.stdin.write(json.dumps({"jsonrpc": "2.0",
                                     "method": "notifications/initialized"}) + "\n")
        proc.stdin.flush()
        tools = ask(2, "tools/list", {})["result"]["tools"]
        assert "search_datasets" in {t["name"] for t in tools}, tools
        proc.stdin.close()  # end of input: the server stops by itself
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_the_demo_tour_runs_as_written(demo: Demo, tmp_path: Path) -> None:
    values = {"<project id from the tour>": demo.project, "<id>": demo.project,
              "<job id from the tour>": demo.job}

    def fill(placeholder: str) -> str:
        assert placeholder in values, f"README placeholder {placeholder} has no value here"
        return values[placeholder]

    env = _env(tmp_path, demo.url)
    ran = 0
    for cmd in all_commands(tour_and_parts()[0], fill):
        ran += 1
        if cmd.key == "mcp":
            _run_mcp(cmd, {**env, **cmd.env}, tmp_path)
            continue
        # "y" answers the one prompt the tour meets: dp-query's "Spend rho=...?".
        _check(cmd, _ndl(cmd.argv, {**env, **cmd.env}, tmp_path, stdin="y\n"))
    assert ran >= 5


def test_dp_query_previews_then_spends_only_when_told(demo: Demo, tmp_path: Path) -> None:
    """The issue's crash: ``ndl dp-query`` died after its preview, every time."""
    with Client(demo.url) as c:
        token = c.login("alice", "demo-password-alice")
        before = c.budget("nhs-trust/ae-attendances", demo.project)["budget_remaining"]
    env = _env(tmp_path, demo.url, {"NDL_TOKEN": token, **LOOPBACK})
    base = ["dp-query", "nhs-trust/ae-attendances", "--project", demo.project, "--rho", "0.1",
            "--sql", "SELECT COUNT(*) AS n, AVG(age_at_arrival) AS age FROM data "
                     "GROUP BY region"]
    preview = _ndl([*base, "--preview"], env, tmp_path)
    assert preview.returncode == 0, preview.stderr
    assert "expected error at rho=0.1" in preview.stdout and "budget left:" in preview.stdout
    assert "differentially private answer" not in preview.stdout

    declined = _ndl(base, env, tmp_path, stdin="n\n")
    assert declined.returncode == 1 and "Spend rho=0.1" in declined.stdout

    spent = _ndl([*base, "--yes", "--json"], env, tmp_path)
    assert spent.returncode == 0, spent.stderr
    answer = json.loads(spent.stdout[spent.stdout.index("{\n"):])  # after the preview table
    assert answer["columns"] == ["region", "n", "age"] and len(answer["rows"]) == 9
    assert answer["rho_spent"] == pytest.approx(0.1)
    with Client(demo.url, token) as c:
        after = c.budget("nhs-trust/ae-attendances", demo.project)["budget_remaining"]
    # Only the --yes run spent: the preview and the declined run left the budget alone.
    assert after["researcher"] == pytest.approx(before["researcher"] - 0.1)


def test_the_sdk_snippet_runs(demo: Demo, tmp_path: Path) -> None:
    (code,) = code_blocks("python")
    url, token = '"http://127.0.0.1:8700"', '"ndl_..."'
    assert url in code and token in code, "the SDK snippet's URL or token placeholder changed"
    with Client(demo.url) as c:
        real = c.login("alice", "demo-password-alice")
    values = {"<project id>": demo.project}
    unknown = set(PLACEHOLDER.findall(code)) - set(values)
    assert not unknown, f"the SDK snippet gained placeholders {unknown}: give them values"
    code = PLACEHOLDER.sub(lambda m: values[m.group(0)], code)
    script = (code.replace(url, json.dumps(demo.url)).replace(token, json.dumps(real))
              + "\nassert len(answer.to_pandas()) > 0 and answer.to_arrow().num_rows > 0\n"
              + "import pyarrow.parquet as pq\nassert pq.read_table(path).num_rows > 0\n"
              + "print('snippet ok')\n")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=tmp_path, env=_env(tmp_path, demo.url), timeout=120)
    assert res.returncode == 0 and "snippet ok" in res.stdout, f"{script}\n{res.stderr}"


# --- running the parts yourself ----------------------------------------------------------


def test_running_the_parts_yourself(tmp_path: Path) -> None:
    """The deployment block, with its example locations swapped for local ones.

    ``ndl admin`` there names the hub's --db and --data-dir, as an operator must: both
    become one local folder (the database a SQLite file in it), so hub and admin meet.
    """
    hub_dir, port = tmp_path / ".ndl" / "hub", free_port()
    hub_url = f"http://127.0.0.1:{port}"
    site = tmp_path / "site"
    write_dataset(site, "ae-attendances", pa.table({"region": ["London"] * 12}),
                  title="A&E attendances")
    where = {"postgresql+psycopg://user@host/ndl": str(hub_dir / "hub.db"),
             "/var/lib/ndl-hub": str(hub_dir), "https://hub.example": hub_url,
             "/srv/datasite": str(site)}
    values: dict[str, str] = {}

    def fill(placeholder: str) -> str:
        assert placeholder in values, f"README placeholder {placeholder} has no value yet"
        return values[placeholder]

    # The README's https://hub.example becomes this loopback hub, over plain http://.
    env = _env(tmp_path, hub_url, LOOPBACK)
    started: list[subprocess.Popen[bytes]] = []
    servers: list[str] = []
    try:
        for cmd in all_commands(tour_and_parts()[1], fill):
            argv = [where.get(w, w) for w in cmd.argv]
            if cmd.key in SERVERS:
                servers.append(cmd.key)
                extra = ["--port", str(port)] if cmd.key == "hub" else ["--poll-wait", "2"]
                log = (tmp_path / f"{cmd.key}.log").open("ab")
                started.append(subprocess.Popen(
                    [sys.executable, "-m", "ndl", *argv, *extra], stdout=log,
                    stderr=subprocess.STDOUT, env={**env, **cmd.env}, cwd=tmp_path))
                log.close()
                if cmd.key == "hub":
                    # A fresh hub migrates its database first: slow on a busy machine.
                    wait_http(f"{hub_url}/healthz", 120, started[-1])
                else:
                    _wait_published(hub_url, "nhs-trust/ae-attendances", started[-1])
                continue
            res = _ndl(argv, {**env, **cmd.env}, tmp_path)
            _check(cmd, res)
            if cmd.key == "admin create-user" and "--token" in argv:
                values[f"<{argv[2]}'s token>"] = res.stdout.strip().splitlines()[-1]
        assert servers == ["hub", "datasite"]
    finally:
        for proc in reversed(started):  # the datasite before its hub
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_published(hub_url: str, dataset: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"ndl datasite exited with code {proc.returncode}"
        r = httpx.get(f"{hub_url}/api/datasets/{dataset}", timeout=2)
        if r.status_code == 200:
            return
        time.sleep(0.2)
    raise AssertionError(f"{dataset} was not published within 90 s")
