"""The sandbox module's pieces: the bwrap command line, spec checks, output-file safety,
the refusals of open_sandbox, the seccomp filter, and the logged weaker fallback."""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path

import pytest

from ndl.core.errors import InvalidInput
from ndl.jobs import sandbox as sb
from ndl.jobs import sandbox_types, supervise
from ndl.jobs.sandbox import (
    BubblewrapSandbox,
    Limits,
    Mount,
    SandboxSpec,
    SandboxUnavailable,
    WeakerSandbox,
    open_sandbox,
    output_size,
    runtime_mounts,
    safe_output_files,
)
from ndl.jobs.seccomp_filter import seccomp_filter_fd


def spec_for(tmp_path: Path, code: str = "pass", **limits: float) -> SandboxSpec:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    return SandboxSpec(argv=[sys.executable, "-I", "-c", code],
                       mounts=[Mount(data, "/data"), Mount(out, "/out", writable=True)],
                       workdir="/out", env={"A": "1"}, limits=Limits(**limits))  # type: ignore[arg-type]


def test_bwrap_command_asks_for_every_isolation(tmp_path: Path) -> None:
    spec = spec_for(tmp_path)
    args = BubblewrapSandbox("/usr/bin/bwrap", use_cgroup=False).command(spec, 9)
    joined = " ".join(args)
    for flag in ("--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
                 "--new-session", "--cap-drop ALL", "--clearenv", "--proc /proc", "--dev /dev",
                 f"--size {spec.limits.tmp_bytes} --tmpfs /tmp", "--remount-ro /",
                 "--chdir /out", "--seccomp 9", "--uid 65534"):
        assert flag in joined, flag
    assert args[args.index("--setenv") + 1:args.index("--setenv") + 3] == ["A", "1"]
    assert args.count("--setenv") == 1
    assert f"--ro-bind {tmp_path / 'data'} /data" in joined
    assert f"--bind {tmp_path / 'out'} /out" in joined
    assert args[-len(spec.argv):] == spec.argv and args[-len(spec.argv) - 1] == "--"


def test_runtime_mounts_hold_only_the_runtime() -> None:
    mounts = runtime_mounts()
    targets = {m.target for m in mounts}
    assert all(not m.writable for m in mounts)
    for forbidden in ("/etc", "/root", "/home", "/tmp", "/"):
        assert forbidden not in targets
    assert not any(t.startswith(("/etc/", "/home/", "/tmp/")) for t in targets)
    real_python = os.path.realpath(sys.executable)
    assert any(real_python == t or real_python.startswith(t + "/") for t in targets)
    assert "/usr" in targets


@pytest.mark.parametrize("target", ["relative", "/", "/proc/x", "/dev", "/a/../etc"])
def test_bad_mount_targets_are_refused(tmp_path: Path, target: str) -> None:
    spec = SandboxSpec(argv=["/bin/true"], mounts=[Mount(tmp_path, target)], workdir="/",
                       env={})
    with pytest.raises(InvalidInput, match="mount target"):
        WeakerSandbox().run(spec)


def test_bad_env_names_are_refused(tmp_path: Path) -> None:
    spec = SandboxSpec(argv=["/bin/true"], mounts=[], workdir="/", env={"A=B": "x"})
    with pytest.raises(InvalidInput, match="environment name"):
        WeakerSandbox().run(spec)


def test_safe_output_files_lists_plain_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.csv").write_text("x")
    (tmp_path / "sub" / "b.csv").write_text("y")
    assert safe_output_files(tmp_path) == [tmp_path / "a.csv", tmp_path / "sub" / "b.csv"]


@pytest.mark.parametrize("attack", ["symlink", "hardlink", "fifo", "control", "dots", "setuid"])
def test_safe_output_files_refuses_tricks(tmp_path: Path, attack: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    if attack == "symlink":
        (out / "t.csv").symlink_to(outside)
    elif attack == "hardlink":
        os.link(outside, out / "t.csv")
    elif attack == "fifo":
        os.mkfifo(out / "t.csv")
    elif attack == "control":
        (out / "t\x1b[2J.csv").write_text("x")
    elif attack == "dots":
        (out / "..t.csv").write_text("x")
    else:
        (out / "t.csv").write_text("x")
        os.chmod(out / "t.csv", 0o4700)
    with pytest.raises(InvalidInput):
        safe_output_files(out)


def test_output_size_counts_nested_files_not_link_targets(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"x" * 5000)
    big = tmp_path.parent / f"{tmp_path.name}-big"
    big.write_bytes(b"x" * 100_000)
    (tmp_path / "link").symlink_to(big)
    assert 5000 <= output_size([tmp_path]) < 100_000


def test_sandbox_unavailable_is_a_503_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sb.shutil, "which", lambda name: None)
    with pytest.raises(SandboxUnavailable) as caught:
        open_sandbox("strict")
    assert caught.value.http_status == 503
    assert caught.value.code == "sandbox_unavailable"
    assert "apt-get install bubblewrap" in caught.value.message
    assert "--sandbox weaker" in caught.value.message


def test_root_without_cgroup_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sb.shutil, "which", lambda name: "/usr/bin/bwrap")
    monkeypatch.setattr(sb.os, "geteuid", lambda: 0)
    monkeypatch.setattr(sb, "cgroups_available", lambda: None)
    with pytest.raises(SandboxUnavailable, match="limit processes"):
        open_sandbox("strict")


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(InvalidInput, match="strict"):
        open_sandbox("lenient")  # type: ignore[arg-type]


def test_seccomp_filter_compiles_to_bpf() -> None:
    fd = seccomp_filter_fd()
    try:
        program = os.read(fd, 1 << 20)
    finally:
        os.close(fd)
    # Classic BPF instructions are 8 bytes each; a filter with our rules has dozens.
    assert len(program) % 8 == 0 and len(program) // 8 > 30


def test_weaker_runs_with_only_the_given_env_and_warns(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NDL_DATASITE_TOKEN", "do-not-leak")
    weaker = open_sandbox("weaker")
    assert weaker.mode == "weaker"
    # LC_CTYPE is Python's own C-locale coercion, set inside the child, not inherited.
    spec = spec_for(tmp_path, "import os, json; os.environ.pop('LC_CTYPE', None);"
                              "print(json.dumps(sorted(os.environ)));"
                              "open('result.txt', 'w').write(os.getcwd())")
    with caplog.at_level(logging.WARNING, logger="ndl.jobs"):
        result = weaker.run(spec)
    assert result.returncode == 0, result.stderr
    assert result.mode == "weaker" and result.stopped is None
    assert result.stdout.strip() == b'["A"]'
    assert (tmp_path / "out" / "result.txt").read_text() == str(tmp_path / "out")
    assert any("WITHOUT bubblewrap" in r.getMessage() for r in caplog.records)
    assert weaker.inside_path(spec.mounts[0]) == str(tmp_path / "data")


def test_weaker_enforces_wall_time_and_cancel(tmp_path: Path) -> None:
    weaker = WeakerSandbox()
    result = weaker.run(spec_for(tmp_path, "import time; time.sleep(60)", wall_seconds=1.0))
    assert result.stopped == "wall_time" and result.returncode != 0
    assert result.wall_seconds < 10
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    result = weaker.run(spec_for(tmp_path, "import time; time.sleep(60)"), cancel=cancel)
    assert result.stopped == "cancelled" and result.wall_seconds < 10


def test_output_is_capped_and_marked(tmp_path: Path) -> None:
    code = "import sys; sys.stdout.write('x' * 3 * 1024 * 1024); sys.stderr.write('done')"
    result = WeakerSandbox().run(spec_for(tmp_path, code))
    assert result.returncode == 0
    assert result.stdout.endswith(b"[truncated]\n")
    assert len(result.stdout) == sandbox_types.STREAM_CAP + len(sandbox_types.TRUNCATED)
    assert result.stderr == b"done"


def test_bubblewrap_inside_path_is_the_target(tmp_path: Path) -> None:
    mount = Mount(tmp_path, "/data")
    assert BubblewrapSandbox("/usr/bin/bwrap", use_cgroup=False).inside_path(mount) == "/data"


def test_a_run_ends_when_its_process_does_not_at_the_next_poll(tmp_path: Path) -> None:
    # The supervisor waits on a pidfd: with limits looked at only every 10 s, a process that
    # exits at once must still be seen to end well before that.
    saved = supervise.POLL_SECONDS
    supervise.POLL_SECONDS = 10.0
    try:
        result = WeakerSandbox().run(spec_for(tmp_path))
    finally:
        supervise.POLL_SECONDS = saved
    assert result.returncode == 0
    assert result.wall_seconds < 5.0


def test_importing_ndl_job_does_not_import_the_client() -> None:
    # What a sandboxed step imports: the HTTP client would cost it ~150 ms for nothing.
    import subprocess

    code = ("import sys, ndl.job, ndl.jobs.inside; "
            "print(sorted(m for m in ('httpx', 'ndl.client') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
    import ndl

    assert ndl.Client.__name__ == "Client"  # still there, on first use


def test_stale_empty_run_groups_are_swept_and_fresh_ones_kept() -> None:
    from ndl.jobs import cgroups

    if cgroups.cgroups_available() is None:
        # As root the strict sandbox needs cgroups, so CI (root, NDL_REQUIRE_SANDBOX) has them.
        if os.geteuid() == 0 and os.environ.get("NDL_REQUIRE_SANDBOX", "").lower() in (
                "1", "true", "yes"):
            pytest.fail("NDL_REQUIRE_SANDBOX is set, we are root, and no cgroup is writable")
        pytest.skip("no writable cgroup here (the sweep has nothing to do)")
    made = cgroups.create_run_cgroup(8, 64 * 1024**2)
    dirs = list(made.dirs.values())
    try:
        assert all(d.is_dir() for d in dirs)
        cgroups.sweep_stale(min_age_seconds=3600)  # too young to be anybody's leftover
        assert all(d.is_dir() for d in dirs)
        assert cgroups.sweep_stale(min_age_seconds=0) >= len(dirs)
        assert not any(d.exists() for d in dirs)
    finally:
        made.remove()
