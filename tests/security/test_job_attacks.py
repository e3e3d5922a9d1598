"""Attacks by a job BUNDLE on the controlled tier, through the real runner and strict sandbox.

The sandbox's own attacks are in test_sandbox.py; here the attacker is a researcher's bundle
going through :func:`ndl.jobs.runner.run_job`, and each test asserts on what the RESEARCHER
could get back: the outcome's error and safe log, the report, and the ZIP an output checker
reviews. Every test asserts the attack failed, then that a normal job run right after works.

The granted dataset holds marker strings (a surname no test writes anywhere else); the
datasite around it holds other markers (another dataset, a key, its state, another job's
output). A marker found where it should not be is the attack succeeding.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import sqlite3
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ndl.jobs.bundle import Bundle, from_files
from ndl.jobs.runner import JobInput, JobOutcome, run_job
from ndl.jobs.sandbox import Limits, Sandbox
from ndl.privacy.sdc_ledger import ReleaseLedger

LIMITS = Limits(cpu_seconds=20, wall_seconds=20.0, memory_bytes=1024**3, processes=32,
                file_bytes=20 * 1024**2, output_bytes=40 * 1024**2, tmp_bytes=8 * 1024**2)
DATASET = "dfe/pupils"
SURNAME = "Quuxleyfarthing"        # row 0's surname in the granted data
OTHER = "Otherdatasetmarker"       # in the dataset next to it, not granted
KEY = "Keymaterialmarker"          # the datasite's key file
STATE = "Statedatabasemarker"      # the datasite's state database
OLD_OUT = "Otherjoboutputmarker"   # another job's output folder
ENV_SECRET = "Envsecretmarker"     # an environment variable of the datasite's process
MARKERS = (SURNAME, OTHER, KEY, STATE, OLD_OUT, ENV_SECRET)
NORMAL = """
from ndl import job
d = job.dataset("dfe/pupils", as_="pandas")
job.table("by_region", d, by=["region"])
"""


@dataclass
class Site:
    """A fake datasite root laid out as a real one, around the granted Parquet file."""

    root: Path
    data: Path
    other: Path
    sandbox: Sandbox

    @property
    def workdir(self) -> Path:
        return self.root / "jobs"


@pytest.fixture
def site(sandbox_strict: Sandbox, tmp_path: Path) -> Site:
    root = tmp_path / "site"
    data = root / "datasets" / "pupils" / "data.parquet"
    other = root / "datasets" / "other" / "data.parquet"
    for p in (data.parent, other.parent, root / "keys", root / "jobs" / "older-job" / "out"):
        p.mkdir(parents=True)
    n = 200
    pq.write_table(pa.table({
        "region": ["North"] * 120 + ["South"] * 80,
        "rare": [i < 3 for i in range(n)],
        "score": [50 + i % 37 for i in range(n)],
        "surname": [SURNAME if i == 0 else f"Person{i:03d}" for i in range(n)],
    }), data)
    pq.write_table(pa.table({"surname": [OTHER] * 20}), other)
    (root / "keys" / "datasite.key").write_text(KEY)
    (root / "jobs" / "older-job" / "out" / "secret.txt").write_text(OLD_OUT)
    with sqlite3.connect(root / "state.sqlite") as db:
        db.execute("CREATE TABLE t (v TEXT)")
        db.execute("INSERT INTO t VALUES (?)", (STATE,))
    db.close()
    return Site(root, data, other, sandbox_strict)


def manifest(outputs: list[tuple[str, str]]) -> str:
    decls = "".join(f'\n[[outputs]]\nname = "{n}"\nkind = "{k}"\ndescription = "{n}"\n'
                    for n, k in outputs)
    return ('name = "attack"\nlanguage = "python"\nentry = "analysis.py"\n'
            'environment = "python-data"\ndatasets = ["dfe/pupils"]\n'
            'context = "An attack, for the tests."\n' + decls)


def bundle(code: str, outputs: list[tuple[str, str]]) -> Bundle:
    return from_files({"ndl-job.toml": manifest(outputs), "analysis.py": code})


def run(site: Site, code: str, outputs: list[tuple[str, str]], *, job_id: str = "job-attack",
        limits: Limits = LIMITS, ledger: ReleaseLedger | None = None) -> JobOutcome:
    job = JobInput(job_id=job_id, bundle=bundle(code, outputs), datasets={DATASET: site.data},
                   project="proj-1", limits=limits)
    return run_job(job, sandbox=site.sandbox, ledger=ledger, workdir=site.workdir)


def researcher_view(o: JobOutcome) -> str:
    """What the researcher sees before any output checker: error, safe log, report."""
    report = o.report.model_dump_json() if o.report is not None else ""
    return "\n".join([o.error or "", *o.safe_log, report])


def zip_members(o: JobOutcome) -> dict[str, bytes]:
    if o.archive is None:
        return {}
    with zipfile.ZipFile(o.archive) as z:
        return {name: z.read(name) for name in z.namelist()}


def released_view(o: JobOutcome) -> str:
    """The ZIP's names and files other than the job's raw log (which only a checker reads)."""
    members = zip_members(o)
    return "\n".join([*members, *(v.decode("latin-1") for k, v in members.items()
                                  if k != "log.txt")])


def everything(o: JobOutcome) -> str:
    return "\n".join([researcher_view(o), released_view(o), o.full_log,
                      zip_members(o).get("log.txt", b"").decode("latin-1")])


def probe(o: JobOutcome) -> dict[str, str]:
    """The job's own account of its attempts, released as its 'probe' text output."""
    assert o.ok, o.error
    found: dict[str, str] = json.loads(zip_members(o)["probe.txt"])
    return found


def assert_normal_job_works(site: Site) -> None:
    o = run(site, NORMAL, [("by_region", "table")], job_id="job-normal")
    assert o.ok, o.error
    assert o.report is not None and o.report.outputs[0].status == "checked"
    assert zip_members(o)["by_region.csv"] == b"region,count\r\nNorth,120\r\nSouth,80\r\n"


TRY = """
import json, os
from ndl import job
seen = {}
def attempt(label, act):
    try:
        seen[label] = "done:" + str(act())[:200]
    except BaseException as e:
        seen[label] = "refused:" + type(e).__name__
"""
DONE = "\njob.text('probe', json.dumps(seen))\nprint(json.dumps(seen))\n"


# ------------------------------------------------------------------ reading what is not granted


def test_job_reads_nothing_but_its_grant(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NDL_TEST_DATASITE_SECRET", ENV_SECRET)
    jobs = site.workdir
    paths = {
        "other dataset": str(site.other), "key": str(site.root / "keys" / "datasite.key"),
        "state": str(site.root / "state.sqlite"),
        "older job": str(jobs / "older-job" / "out" / "secret.txt"),
        "older job, relative": "../../older-job/out/secret.txt",
        "data folder, relative": "/job/data/../../../" + str(site.other).lstrip("/"),
        "passwd": "/etc/passwd", "shadow": "/etc/shadow",
    }
    code = TRY + f"""
for label, path in {paths!r}.items():
    attempt(label, lambda: open(path, "rb").read())
attempt("granted", lambda: sorted(os.listdir("/job/data")))
attempt("job", lambda: sorted(os.listdir("/job")))
attempt("root", lambda: sorted(os.listdir("/")))
attempt("environ", lambda: dict(os.environ))
for pid in ("1", "self"):
    attempt("proc " + pid, lambda: open(f"/proc/{{pid}}/environ", "rb").read())
""" + DONE
    o = run(site, code, [("probe", "text")])
    seen = probe(o)
    for label in paths:
        assert seen[label].startswith("refused:"), (label, seen[label])
    assert seen["granted"] == "done:['0.parquet']"
    assert "datasets" not in seen["root"] and "keys" not in seen["root"]
    for marker in (OTHER, KEY, STATE, OLD_OUT, ENV_SECRET):
        assert marker not in everything(o), marker
    assert_normal_job_works(site)


# ------------------------------------------------------------------ network


def test_job_has_no_network(site: Site) -> None:
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(4)
    tcp.setblocking(False)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.setblocking(False)
    try:
        code = TRY + f"""
import socket
def tcp(family, addr):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(addr)
    return "connected"
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    return s.sendto(b"{SURNAME}", ("127.0.0.1", {udp.getsockname()[1]}))
attempt("tcp host", lambda: tcp(socket.AF_INET, ("127.0.0.1", {tcp.getsockname()[1]})))
attempt("tcp outside", lambda: tcp(socket.AF_INET, ("1.1.1.1", 53)))
attempt("tcp ipv6", lambda: tcp(socket.AF_INET6, ("::1", {tcp.getsockname()[1]})))
attempt("udp", udp)
attempt("dns", lambda: socket.getaddrinfo("example.org", 443))
""" + DONE
        o = run(site, code, [("probe", "text")])
        seen = probe(o)
        for label in ("tcp host", "tcp outside", "tcp ipv6", "udp", "dns"):
            assert seen[label].startswith("refused:"), (label, seen[label])
        with pytest.raises(BlockingIOError):
            tcp.accept()
        with pytest.raises(BlockingIOError):
            udp.recv(100)
    finally:
        tcp.close()
        udp.close()
    assert_normal_job_works(site)


# ------------------------------------------------------------------ resources

FORK_BOMB = "import os\nwhile True:\n    os.fork()\n"
MEMORY = "big = bytearray(50 * 2**30)\nbig[-1] = 1\n"
FOREVER = "while True:\n    pass\n"
FILL = """
import os
try:  # the private /tmp first: it is small and must say so
    with open("/tmp/fill", "wb") as f:
        while True:
            f.write(b"x" * 2**20)
except OSError as e:
    print("tmp full:", e.errno)
i = 0
while True:
    with open(f"/job/out/fill{i}.bin", "wb") as f:
        for _ in range(8):
            f.write(os.urandom(2**20))
    i += 1
"""


@pytest.mark.parametrize(("code", "limits", "expected"), [
    pytest.param(FORK_BOMB, LIMITS, ("the job failed with BlockingIOError",
                                     "the job was stopped"), id="fork-bomb"),
    pytest.param(MEMORY, LIMITS, ("the job failed with MemoryError at analysis.py line 1",
                                  "the job was stopped: it used more memory"), id="50GB"),
    pytest.param(FOREVER, Limits(cpu_seconds=60, wall_seconds=4.0, memory_bytes=1024**3),
                 ("the job was stopped: it ran past its time limit (4 s)",), id="forever"),
    pytest.param(FILL, LIMITS, ("the job was stopped: it wrote more than its output limit "
                                "(40 MiB)",), id="fill-disk"),
])
def test_resource_attacks_are_stopped(site: Site, code: str, limits: Limits,
                                      expected: tuple[str, ...]) -> None:
    o = run(site, code, [("probe", "text")], limits=limits)
    assert not o.ok and o.archive is None and o.report is None
    assert o.error is not None and o.error.startswith(expected), o.error
    assert o.safe_log[-1] == o.error
    assert_normal_job_works(site)


def test_writes_outside_out_change_nothing(site: Site) -> None:
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in site.root.rglob("*")
              if p.is_file()}
    targets = {
        "code": "/job/code/analysis.py", "new code": "/job/code/extra.py",
        "data": "/job/data/0.parquet", "data folder": "/job/data/new.parquet", "root": "/x",
        "usr": "/usr/x", "key on host": str(site.root / "keys" / "datasite.key"),
        "older job on host": str(site.workdir / "older-job" / "out" / "secret.txt"),
        "data on host": str(site.data),
    }
    code = TRY + f"""
for label, path in {targets!r}.items():
    attempt(label, lambda: open(path, "w").write("overwritten"))
attempt("tmp", lambda: open("/tmp/scratch", "w").write("private"))
""" + DONE
    o = run(site, code, [("probe", "text")])
    seen = probe(o)
    for label in targets:
        assert seen[label].startswith("refused:"), (label, seen[label])
    assert seen["tmp"] == "done:7"  # its private /tmp, gone with the run
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in site.root.rglob("*")
             if p.is_file() and not p.is_relative_to(site.workdir / "job-attack")}
    assert after == before
    assert (site.workdir / "job-attack" / "code" / "analysis.py").read_text() == code
    assert "scratch" not in released_view(o)
    assert_normal_job_works(site)


def test_symlinks_named_as_outputs_are_not_released(site: Site, tmp_path: Path) -> None:
    host = tmp_path / "host-secret.txt"
    host.write_text(KEY)
    code = f"""
import json, os
os.symlink({str(host)!r}, "/job/out/notes.txt")
os.symlink("/job/data/0.parquet", "/job/out/plot.png")
os.makedirs("/job/out/.ndl/evidence", exist_ok=True)
os.symlink("/job/data/0.parquet", "/job/out/.ndl/evidence/by_region.parquet")
with open("/job/out/.ndl/records.jsonl", "w") as f:
    f.write(json.dumps({{"name": "by_region", "kind": "table", "by": ["region"],
                         "value": None, "agg": "count",
                         "evidence": ".ndl/evidence/by_region.parquet"}}) + "\\n")
"""
    outputs = [("notes", "text"), ("plot", "figure"), ("by_region", "table")]
    o = run(site, code, outputs)
    assert o.ok and o.report is not None
    assert {r.name: r.status for r in o.report.outputs} == dict.fromkeys(
        ("notes", "plot", "by_region"), "withheld")
    assert set(zip_members(o)) == {"log.txt", "report.json"}
    assert KEY not in everything(o) and SURNAME not in everything(o)
    assert_normal_job_works(site)


LIBC = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
def call(fn, *args):
    if fn(*args) == -1:
        raise OSError(ctypes.get_errno(), "refused")
    return "allowed"
"""


@pytest.mark.parametrize("attack", [
    pytest.param(LIBC + """
attempt("attack", lambda: call(libc.ptrace, 16, 1, 0, 0))  # PTRACE_ATTACH to init
""", id="ptrace"),
    pytest.param("""
attempt("attack", lambda: os.unshare(os.CLONE_NEWUSER))
""", id="user-namespace"),
    pytest.param("""
def inherited():
    got = []
    for fd in range(3, 256):
        try:
            got.append(os.read(fd, 200).decode("latin-1"))
        except OSError:
            pass
    if not got:
        raise OSError("no fd")
    return got
attempt("attack", inherited)
""", id="inherited-fd"),
])
def test_kernel_surface_is_closed(site: Site, tmp_path: Path, attack: str) -> None:
    secret = tmp_path / "fd-secret.txt"
    secret.write_text(KEY)
    fd = os.open(secret, os.O_RDONLY)
    os.set_inheritable(fd, True)
    try:
        o = run(site, TRY + attack + DONE, [("probe", "text")])
    finally:
        os.close(fd)
    assert probe(o)["attack"].startswith("refused:"), probe(o)
    assert KEY not in everything(o)
    assert_normal_job_works(site)


# ------------------------------------------------------------------ smuggling data out

READ = """
import os, sys
from ndl import job
d = job.dataset("dfe/pupils", as_="pandas")
names = list(d["surname"][:5])
"""


def test_output_names_do_not_carry_data(site: Site) -> None:
    code = READ + """
for n in names:
    open(f"/job/out/{n}.txt", "w").close()
    os.makedirs(f"/job/out/{n}", exist_ok=True)
    open(f"/job/out/{n}/{n}.csv", "w").close()
job.table("by_region", d, by=["region"])
"""
    o = run(site, code, [("by_region", "table")])
    assert o.ok and o.report is not None
    assert SURNAME not in researcher_view(o) and SURNAME not in released_view(o)
    assert "Person001" not in researcher_view(o) + released_view(o)
    assert set(zip_members(o)) == {"by_region.csv", "log.txt", "report.json"}
    assert o.report.undeclared == 1  # "some": their number could carry data too
    assert_normal_job_works(site)


def test_number_of_undeclared_files_is_not_told(site: Site) -> None:
    # Three pupils are "rare": too few to release, so too few to count through empty files.
    code = READ + """
for i in range(int(d["rare"].sum())):
    open(f"/job/out/f{i}", "w").close()
job.table("by_region", d, by=["region"])
"""
    o = run(site, code, [("by_region", "table")])
    assert o.ok and o.report is not None
    assert o.report.undeclared == 1
    said = [line for line in o.safe_log if "not declared" in line]
    assert len(said) == 1 and not any(ch.isdigit() for ch in said[0]), said
    assert_normal_job_works(site)


def test_printed_values_reach_only_the_checkers_log(site: Site) -> None:
    code = READ + """
print(names[0])
print("stderr:", names[0], file=sys.stderr)
job.table("by_region", d, by=["region"])
"""
    o = run(site, code, [("by_region", "table")])
    assert o.ok
    assert SURNAME not in researcher_view(o) and SURNAME not in released_view(o)
    assert SURNAME in zip_members(o)["log.txt"].decode()  # for the output checker to judge
    assert_normal_job_works(site)


@pytest.mark.parametrize("crash", [
    pytest.param("raise KeyError(names[0])", id="key-error"),
    pytest.param("raise ValueError('bad value ' + names[0])", id="message"),
    pytest.param("sys.exit(names[0])", id="exit-message"),
    pytest.param("raise type(names[0] + 'Error', (Exception,), {})()", id="class-name"),
    pytest.param("job.table(names[0].lower(), d, by=['region'])", id="job-error"),
    pytest.param("""
import json
with open("/job/out/.ndl/error.json", "w") as f:
    json.dump({"type": names[0] + "Error", "message": names[0], "file": "analysis.py",
               "line": 1}, f)
os._exit(1)""", id="forged-error-json"),
])
def test_errors_do_not_carry_data(site: Site, crash: str) -> None:
    o = run(site, READ + crash + "\n", [("by_region", "table")])
    assert not o.ok and o.error is not None
    assert o.error.startswith("the job failed with "), o.error
    assert SURNAME not in researcher_view(o)
    assert SURNAME.lower() not in researcher_view(o).lower()
    assert_normal_job_works(site)


def test_released_files_carry_no_metadata(site: Site) -> None:
    code = READ + """
from PIL import Image, PngImagePlugin
info = PngImagePlugin.PngInfo()
info.add_text("Comment", names[0])
Image.new("RGB", (8, 4), (200, 10, 10)).save(job.output_path("plot"), pnginfo=info)
notes = job.text("notes", "method notes")
os.utime(notes, (int(d["score"].sum()), int(d["score"].sum())))
os.chmod(notes, 0o4755)
"""
    o = run(site, code, [("plot", "figure"), ("notes", "text")])
    assert o.ok and o.archive is not None
    with zipfile.ZipFile(o.archive) as z:
        infos = z.infolist()
        assert {i.filename for i in infos} == {"plot.png", "notes.txt", "log.txt",
                                               "report.json"}
        assert {i.date_time for i in infos} == {(2020, 1, 1, 0, 0, 0)}
        assert {i.external_attr >> 16 for i in infos} == {0o644}
        png = z.read("plot.png")
    assert SURNAME.encode() not in png and b"tEXt" not in png
    from PIL import Image
    with Image.open(io.BytesIO(png)) as im:
        assert im.text == {}  # type: ignore[attr-defined]
        assert im.size == (8, 4) and im.convert("RGB").getpixel((0, 0)) == (200, 10, 10)
    assert_normal_job_works(site)


# ------------------------------------------------------------------ forged evidence

FORGE = READ + """
import json
os.makedirs("/job/out/.ndl/evidence", exist_ok=True)
def record(**entry):
    with open("/job/out/.ndl/records.jsonl", "a") as f:
        f.write(json.dumps({"name": "by_region", "kind": "table", "by": ["region"],
                            "value": None, "agg": "count", **entry}) + "\\n")
"""


def test_evidence_with_more_rows_than_the_data_is_withheld(site: Site) -> None:
    code = FORGE + """
import pandas as pd
pd.concat([d[["region"]]] * 10).to_parquet("/job/out/.ndl/evidence/by_region.parquet")
record(evidence=".ndl/evidence/by_region.parquet")
"""
    o = run(site, code, [("by_region", "table")])
    assert o.ok and o.report is not None
    (out,) = o.report.outputs
    assert out.status == "withheld" and out.problem is not None
    assert "more rows than the granted data" in out.problem
    assert "by_region.csv" not in zip_members(o)
    assert_normal_job_works(site)


@pytest.mark.parametrize("forged", [
    pytest.param("""
d[["region"]].to_parquet("/job/out/.ndl/evidence/by_region.parquet")
record(evidence=".ndl/evidence/by_region.parquet", sql=True)""", id="claims-sql"),
    pytest.param("""
os.makedirs("/job/out/x/y", exist_ok=True)
d[["region"]].to_parquet("/job/out/x/something.parquet")
record(evidence="../../something.parquet")
record(evidence="x/something.parquet")""", id="evidence-elsewhere"),
    pytest.param("""
d[["region"]].to_parquet("/job/out/.ndl/evidence/by_region.parquet")
record(evidence=".ndl/evidence/by_region.parquet", by=[names[0]])""", id="names-a-value"),
])
def test_forged_records_are_not_trusted(site: Site, forged: str) -> None:
    o = run(site, FORGE + forged + "\n", [("by_region", "table")])
    assert o.ok and o.report is not None
    (out,) = o.report.outputs
    assert out.status == "withheld" and out.problem, out
    assert "by_region.csv" not in zip_members(o)
    assert SURNAME not in researcher_view(o)
    assert_normal_job_works(site)


def test_released_table_is_the_recomputation_not_the_jobs_file(site: Site) -> None:
    code = READ + """
job.table("by_region", d, by=["region"])
with open(job.output_path("by_region"), "w") as f:
    f.write("region,count\\nNorth,5\\nSouth,3\\nIslands,1\\n")
"""
    o = run(site, code, [("by_region", "table")])
    assert o.ok and o.report is not None
    (out,) = o.report.outputs
    assert (out.made_by, out.status, out.cells) == ("helper", "checked", 2)
    assert zip_members(o)["by_region.csv"] == b"region,count\r\nNorth,120\r\nSouth,80\r\n"
    assert_normal_job_works(site)


# ------------------------------------------------------------------ differencing


def test_second_job_over_the_population_minus_three_is_caught(site: Site,
                                                              tmp_path: Path) -> None:
    ledger = ReleaseLedger(tmp_path / "releases.sqlite")
    first = run(site, NORMAL, [("by_region", "table")], job_id="job-diff-1", ledger=ledger)
    assert first.ok and first.report is not None
    assert first.report.outputs[0].status == "checked"
    assert first.report.outputs[0].findings == []
    minus_three = NORMAL.replace('as_="pandas")', 'as_="pandas").iloc[3:]')
    second = run(site, minus_three, [("by_region", "table")], job_id="job-diff-2",
                 ledger=ledger)
    assert second.ok and second.report is not None
    (out,) = second.report.outputs
    rules = {f.rule for f in out.findings}
    assert "differencing" in rules, out.findings
    assert out.status == "review" and out.suppressed >= 1
    north = zip_members(second)["by_region.csv"].decode().splitlines()[1]
    assert north == "North,[suppressed]"  # 117 would tell the three people's region
    assert_normal_job_works(site)
