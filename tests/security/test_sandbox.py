"""Attacks on the controlled tier's strict sandbox (bubblewrap + seccomp + rlimits + cgroup).

Each test runs hostile Python inside the sandbox with ``python -I -c CODE``, asserts the attack
failed, and where a limit could leave the machine damaged, that a harmless run right after works.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from ndl.core.errors import InvalidInput
from ndl.jobs.sandbox import (
    Limits,
    Mount,
    Sandbox,
    SandboxResult,
    SandboxSpec,
    runtime_mounts,
    safe_output_files,
)

FAST = Limits(cpu_seconds=10, wall_seconds=20.0, memory_bytes=512 * 1024**2, processes=32,
              file_bytes=20 * 1024**2, output_bytes=40 * 1024**2, tmp_bytes=8 * 1024**2)

# Shared ctypes preamble: call raw libc/syscalls and report (result, errno) as JSON.
LIBC = """
import ctypes, ctypes.util, errno, json, os
libc = ctypes.CDLL(None, use_errno=True)
def call(fn, *args):
    ctypes.set_errno(0)
    r = fn(*args)
    return [r, ctypes.get_errno()]
"""


def run(sb: Sandbox, code: str, tmp_path: Path, *, limits: Limits = FAST,
        mounts: list[Mount] | None = None, env: dict[str, str] | None = None,
        cancel: threading.Event | None = None) -> SandboxResult:
    out = tmp_path / "out"
    out.mkdir(parents=True, exist_ok=True)
    spec = SandboxSpec(argv=[sys.executable, "-I", "-c", code],
                       mounts=[Mount(out, "/out", writable=True), *(mounts or [])],
                       workdir="/out", env=env or {"HOME": "/tmp"}, limits=limits)
    return sb.run(spec, cancel=cancel)


def answer(result: SandboxResult) -> object:
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return json.loads(result.stdout.decode().strip().splitlines()[-1])


def assert_still_works(sb: Sandbox, tmp_path: Path) -> None:
    result = run(sb, "print(6 * 7)", tmp_path / "after")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == b"42"
    assert result.stopped is None


def test_host_files_are_not_visible(sandbox_strict: Sandbox, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("the datasite's key")
    code = f"""
import json, os
seen = {{}}
for p in ("/etc/passwd", "/etc/shadow", {str(secret)!r}, "/root/.bash_history"):
    try:
        seen[p] = open(p).read()
    except OSError as e:
        seen[p] = "refused:" + type(e).__name__
try:
    seen["/root"] = sorted(os.listdir("/root"))
except OSError as e:
    seen["/root"] = "refused"
print(json.dumps(seen))
"""
    seen = answer(run(sandbox_strict, code, tmp_path))
    assert isinstance(seen, dict)
    for path in ("/etc/passwd", "/etc/shadow", str(secret), "/root/.bash_history"):
        assert str(seen[path]).startswith("refused:"), (path, seen[path])
    # /root exists only as the path down to a bound Python prefix, nothing else in it.
    allowed = {Path(m.target).relative_to("/root").parts[0] for m in runtime_mounts()
               if m.target.startswith("/root/")}
    assert seen["/root"] == "refused" or set(seen["/root"]) <= allowed


def test_read_only_mount_cannot_be_changed(sandbox_strict: Sandbox, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "cohort.csv").write_text("id\n1\n")
    code = """
import json, os
tries = {}
for name, act in {
    "write": lambda: open("/data/new.csv", "w").write("x"),
    "append": lambda: open("/data/cohort.csv", "a").write("2\\n"),
    "delete": lambda: os.remove("/data/cohort.csv"),
    "chmod": lambda: os.chmod("/data/cohort.csv", 0o777),
}.items():
    try:
        act(); tries[name] = "done"
    except OSError as e:
        tries[name] = e.errno
print(json.dumps({"read": open("/data/cohort.csv").read(), **tries}))
"""
    seen = answer(run(sandbox_strict, code, tmp_path, mounts=[Mount(data, "/data")]))
    assert isinstance(seen, dict)
    assert seen["read"] == "id\n1\n"
    assert all(seen[k] != "done" for k in ("write", "append", "delete", "chmod")), seen
    assert sorted(p.name for p in data.iterdir()) == ["cohort.csv"]
    assert (data / "cohort.csv").read_text() == "id\n1\n"


def test_writes_land_only_in_the_output_folder(sandbox_strict: Sandbox, tmp_path: Path) -> None:
    marker = f"ndl-sandbox-{os.getpid()}-{time.monotonic_ns()}"
    code = f"""
import json, sys
tries = {{}}
for path in ("/{marker}", "/usr/{marker}", sys.prefix + "/{marker}", "/proc/{marker}",
             "/dev/{marker}", "/out/../{marker}"):
    try:
        open(path, "w").write("x"); tries[path] = "done"
    except OSError as e:
        tries[path] = e.errno
open("/tmp/{marker}", "w").write("private")
open("/out/result.txt", "w").write("ok")
print(json.dumps(tries))
"""
    seen = answer(run(sandbox_strict, code, tmp_path))
    assert isinstance(seen, dict)
    assert all(v != "done" for v in seen.values()), seen
    assert not Path("/tmp", marker).exists(), "the sandbox's /tmp must be private"
    assert not Path(sys.prefix, marker).exists()
    assert (tmp_path / "out" / "result.txt").read_text() == "ok"


def test_symlink_escape_is_refused_by_the_caller(sandbox_strict: Sandbox, tmp_path: Path) -> None:
    host_secret = tmp_path / "host-secret"
    host_secret.write_text("do not release")
    code = f"""
import os
os.symlink("/etc/shadow", "/out/shadow.csv")
os.symlink({str(host_secret)!r}, "/out/table.csv")
print("made")
"""
    result = run(sandbox_strict, code, tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == b"made", result.stderr
    with pytest.raises(InvalidInput, match="symbolic link"):
        safe_output_files(tmp_path / "out")


def test_job_cannot_leave_a_setuid_file(sandbox_strict: Sandbox, tmp_path: Path) -> None:
    code = """
import os, shutil
shutil.copy("/bin/sh" if os.path.exists("/bin/sh") else "/usr/bin/env", "/out/tool")
os.chmod("/out/tool", 0o6755)
print(oct(os.stat("/out/tool").st_mode))
"""
    result = run(sandbox_strict, code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "tool").stat().st_mode & 0o6000 == 0


def test_no_secret_in_any_environment_inside(sandbox_strict: Sandbox, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "ndl-secret-" + os.urandom(8).hex()
    monkeypatch.setenv("NDL_DATASITE_TOKEN", secret)
    code = """
import json, os
environs = {}
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            environs[pid] = open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace")
        except OSError as e:
            environs[pid] = "unreadable"
print(json.dumps({"environs": environs, "mine": dict(os.environ)}))
"""
    result = run(sandbox_strict, code, tmp_path, env={"HOME": "/tmp", "JOB": "1"})
    seen = answer(result)
    assert isinstance(seen, dict)
    assert "1" in seen["environs"], "pid 1 (bubblewrap's init) must be visible to check it"
    assert secret not in result.stdout.decode()
    assert seen["environs"]["1"] in ("", "unreadable")
    assert set(seen["mine"]) - {"PWD", "LC_CTYPE"} == {"HOME", "JOB"}


def test_network_is_unreachable(sandbox_strict: Sandbox, tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    code = f"""
import json, socket
tries = {{}}
def attempt(name, fn):
    try:
        fn(); tries[name] = "done"
    except OSError as e:
        tries[name] = str(e)
attempt("tcp_local", lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2))
attempt("tcp_remote", lambda: socket.create_connection(("10.0.0.1", 80), timeout=2))
attempt("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(
    b"x", ("10.0.0.1", 53)))
attempt("dns", lambda: socket.getaddrinfo("example.org", 443))
attempt("ipv6", lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM))
attempt("raw", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW))
a, b = socket.socketpair()
a.sendall(b"ping")
tries["unix"] = b.recv(4).decode()
print(json.dumps(tries))
"""
    try:
        seen = answer(run(sandbox_strict, code, tmp_path))
    finally:
        listener.close()
    assert isinstance(seen, dict)
    for name in ("tcp_local", "tcp_remote", "udp", "dns", "ipv6", "raw"):
        assert seen[name] != "done", (name, seen)
    assert seen["unix"] == "ping"


def test_kernel_attack_surface_is_refused(sandbox_strict: Sandbox, tmp_path: Path) -> None:
    code = LIBC + """
import os
NR = {"keyctl": 250, "add_key": 248, "bpf": 321, "perf_event_open": 298,
      "userfaultfd": 323, "io_uring_setup": 425, "process_vm_readv": 310}
out = {name: call(libc.syscall, nr, 0, 0, 0, 0, 0) for name, nr in NR.items()}
out["ptrace_traceme"] = call(libc.ptrace, 0, 0, None, None)
out["ptrace_attach_1"] = call(libc.ptrace, 16, 1, None, None)
out["unshare_user"] = call(libc.unshare, 0x10000000)
out["unshare_net"] = call(libc.unshare, 0x40000000)
out["clone_newuser"] = call(libc.syscall, 56, 0x10000000 | 17, 0, 0, 0, 0)
out["mount"] = call(libc.mount, b"none", b"/tmp", b"tmpfs", 0, None)
out["chroot"] = call(libc.chroot, b"/tmp")
out["setns"] = call(libc.setns, os.open("/proc/self/ns/net", os.O_RDONLY), 0)
pid = os.fork()  # clone3 says ENOSYS; glibc must fall back to a plain clone
if pid == 0:
    os._exit(7)
out["fork_status"] = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), 0]
print(json.dumps(out))
"""
    seen = answer(run(sandbox_strict, code, tmp_path))
    assert isinstance(seen, dict)
    assert seen.pop("fork_status") == [7, 0]
    for name, (result, err) in seen.items():
        assert result == -1 and err != 0, (name, result, err)


def test_fork_bomb_is_contained(sandbox_strict: Sandbox, tmp_path: Path) -> None:
    code = """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""
    limits = Limits(cpu_seconds=10, wall_seconds=8.0, memory_bytes=512 * 1024**2, processes=24)
    result = run(sandbox_strict, code, tmp_path, limits=limits)
    assert result.returncode != 0
    assert result.wall_seconds < 20
    assert_still_works(sandbox_strict, tmp_path)


def test_memory_is_limited(sandbox_strict: Sandbox, tmp_path: Path) -> None:
    huge = run(sandbox_strict, "x = bytearray(50 * 1024**3); print(len(x))", tmp_path)
    assert huge.returncode != 0
    assert huge.stopped == "memory" or b"MemoryError" in huge.stderr
    growing = run(sandbox_strict, "x = []\nwhile True: x.append(b'x' * 10**7)", tmp_path)
    assert growing.returncode != 0
    assert growing.stopped == "memory" or b"MemoryError" in growing.stderr
    assert_still_works(sandbox_strict, tmp_path)


def test_busy_loop_hits_the_cpu_limit(sandbox_strict: Sandbox, tmp_path: Path) -> None:
    limits = Limits(cpu_seconds=2, wall_seconds=15.0, memory_bytes=512 * 1024**2)
    result = run(sandbox_strict, "while True: pass", tmp_path, limits=limits)
    assert result.returncode != 0
    assert result.stopped in ("cpu_time", "wall_time")
    assert result.wall_seconds < 15


def test_huge_file_is_stopped(sandbox_strict: Sandbox, tmp_path: Path) -> None:
    code = """
with open("/out/big.bin", "wb") as f:
    for _ in range(1024):
        f.write(b"x" * 1024**2)
"""
    result = run(sandbox_strict, code, tmp_path)
    assert result.returncode != 0
    assert (tmp_path / "out" / "big.bin").stat().st_size <= FAST.file_bytes


def test_output_folder_size_is_watched(sandbox_strict: Sandbox, tmp_path: Path) -> None:
    code = """
import time
for i in range(100):
    with open(f"/out/part{i}.bin", "wb") as f:
        f.write(b"x" * 10 * 1024**2)
    time.sleep(0.05)
"""
    result = run(sandbox_strict, code, tmp_path)
    assert result.stopped == "output_size"
    assert result.returncode != 0


def test_private_tmp_is_size_limited(sandbox_strict: Sandbox, tmp_path: Path) -> None:
    code = """
import errno, sys
try:
    with open(sys.argv[1], "wb") as f:
        for _ in range(64):
            f.write(b"x" * 1024**2)
            f.flush()
    print("filled")
except OSError as e:
    print(errno.errorcode[e.errno])
"""
    for where in ("/tmp/fill", "/dev/shm/fill"):
        result = run(sandbox_strict, code.replace("sys.argv[1]", repr(where)), tmp_path)
        assert result.stdout.strip() in (b"ENOSPC", b"EFBIG"), (where, result)


def test_inherited_file_descriptor_is_not_open_inside(sandbox_strict: Sandbox,
                                                      tmp_path: Path) -> None:
    secret = tmp_path / "held-open"
    secret.write_text("inherited secret")
    fd = os.open(secret, os.O_RDONLY)
    os.set_inheritable(fd, True)
    code = """
import json, os
n = int(os.environ["FD"])
try:
    leaked = os.read(n, 100).decode()
except OSError as e:
    leaked = "closed:" + str(e.errno)
print(json.dumps({"leaked": leaked, "fds": sorted(os.listdir("/proc/self/fd"))}))
"""
    try:
        seen = answer(run(sandbox_strict, code, tmp_path, env={"FD": str(fd)}))
    finally:
        os.close(fd)
    assert isinstance(seen, dict)
    assert seen["leaked"].startswith("closed:")
    # stdin, stdout, stderr and the directory listing itself: nothing else is open.
    assert len(seen["fds"]) <= 4


def test_wall_time_stops_a_sleeping_job(sandbox_strict: Sandbox, tmp_path: Path) -> None:
    limits = Limits(cpu_seconds=10, wall_seconds=1.5, memory_bytes=512 * 1024**2)
    result = run(sandbox_strict, "import time; time.sleep(60)", tmp_path, limits=limits)
    assert result.stopped == "wall_time"
    assert result.wall_seconds < 10
    assert_still_works(sandbox_strict, tmp_path)


def test_cancel_mid_run(sandbox_strict: Sandbox, tmp_path: Path) -> None:
    cancel = threading.Event()
    timer = threading.Timer(1.0, cancel.set)
    timer.start()
    try:
        result = run(sandbox_strict, "import time; time.sleep(60)", tmp_path, cancel=cancel)
    finally:
        timer.cancel()
    assert result.stopped == "cancelled"
    assert result.wall_seconds < 10


def test_job_environment_works_within_the_memory_limit(sandbox_strict: Sandbox,
                                                       tmp_path: Path) -> None:
    code = """
import json
import duckdb, matplotlib, numpy as np, pandas as pd, polars as pl, pyarrow as pa
import sklearn.linear_model, statsmodels.api as sm
matplotlib.use("Agg")
import matplotlib.pyplot as plt
n = 200_000
df = pl.DataFrame({"g": np.arange(n) % 10, "x": np.random.default_rng(1).random(n)})
by = duckdb.sql("select g, count(*) as n from df group by g order by g").pl()
fit = sm.OLS(np.arange(50.0), sm.add_constant(np.arange(50.0))).fit()
model = sklearn.linear_model.LinearRegression().fit(np.arange(10.0).reshape(-1, 1), np.arange(10.0))
plt.plot([1, 2, 3]); plt.savefig("/out/plot.png")
print(json.dumps({"groups": by.height, "rows": pa.table(df.to_pandas()).num_rows,
                  "slope": round(float(fit.params[1]), 6),
                  "coef": round(float(model.coef_[0]), 6)}))
"""
    limits = Limits(cpu_seconds=60, wall_seconds=60.0, memory_bytes=1024**3)
    seen = answer(run(sandbox_strict, code, tmp_path, limits=limits,
                      env={"HOME": "/tmp", "MPLCONFIGDIR": "/tmp"}))
    assert seen == {"groups": 10, "rows": 200_000, "slope": 1.0, "coef": 1.0}
    assert (tmp_path / "out" / "plot.png").stat().st_size > 0
