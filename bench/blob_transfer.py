"""A large blob from a datasite, through a real hub, to a client; against one plain HTTP stream.

The datasite side uploads with ``ndl.federation.blob_client.upload_file`` (chunks signed by a
datasite key, each hashed), the hub stores it (filesystem store), and a researcher downloads
it with ``blob_client.download`` (hash checked). The baseline copies the same file over one
plain HTTP GET on loopback from a server in its own process, twice: Python's ``http.server``
and a uvicorn app returning a Starlette ``FileResponse`` (the hub's own HTTP stack); the ratio
is taken against the faster of the two. The hub's resident memory is sampled (psutil) while
it works, and its high-water mark read from ``/proc/<pid>/status`` (VmHWM) at the end.

    .venv/bin/python bench/blob_transfer.py              # 1 GiB
    .venv/bin/python bench/blob_transfer.py --size-mb 128
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from ndl.core.envelope import seal
from ndl.core.keys import SigningKey
from ndl.federation import blob_client
from ndl.federation.blob_client import Auth
from ndl.federation.blobs import sha256_file
from ndl.federation.models import Datasite
from ndl.hubclient import _api as api
from ndl.testing import HubProcess, free_port, wait_http

MIB = 1024 * 1024
UVICORN_STATIC = textwrap.dedent("""
    import sys, uvicorn
    from starlette.applications import Starlette
    from starlette.responses import FileResponse
    from starlette.routing import Route
    path = sys.argv[2]
    app = Starlette(routes=[Route("/file", lambda r: FileResponse(path)),
                            Route("/", lambda r: FileResponse(path))])
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                access_log=False)
""")


def make_file(path: Path, size: int) -> None:
    with path.open("wb") as f:
        left = size
        while left > 0:
            n = min(left, 8 * MIB)
            f.write(os.urandom(n))
            left -= n


def plain_get(url: str, dest: Path) -> float:
    start = time.perf_counter()
    with httpx.stream("GET", url, timeout=120) as resp, dest.open("wb") as f:
        resp.raise_for_status()
        for piece in resp.iter_bytes():
            f.write(piece)
    elapsed = time.perf_counter() - start
    dest.unlink()
    return elapsed


def baseline(kind: str, src: Path, dest: Path) -> float:
    port = free_port()
    if kind == "http.server":
        args = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                str(src.parent), str(port)]
        url = f"http://127.0.0.1:{port}/{src.name}"
    else:
        args = [sys.executable, "-c", UVICORN_STATIC, str(port), str(src)]
        url = f"http://127.0.0.1:{port}/file"
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/", 60, proc)
        return plain_get(url, dest)
    finally:
        proc.terminate()
        proc.wait()


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc, self.peak, self.stop_at = psutil.Process(pid), 0, threading.Event()

    def run(self) -> None:
        while not self.stop_at.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.02)


def vm_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def through_hub(src: Path, work: Path, chunk: int) -> dict[str, Any]:
    key = SigningKey.generate()
    hub = HubProcess(work / "hub", extra_args=["--blob-chunk-bytes", str(chunk)])
    hub.create_org("nhs-trust")
    with hub.db.write() as s:
        s.add(Datasite(id="nhs-trust", org_id="nhs-trust", name="NHS",
                       public_key=key.public_b64))
    alice = hub.create_user("alice", ["researcher"])

    def sign(kind: str, body: dict[str, Any]) -> dict[str, Any]:
        return seal(key, sender="nhs-trust", recipient="hub", kind=kind, body=body)

    with hub:
        assert hub.proc is not None
        pid = hub.proc.pid
        idle = psutil.Process(pid).memory_info().rss
        sampler = RssSampler(pid)
        sampler.start()
        cpu0 = psutil.Process(pid).cpu_times()
        with httpx.Client(base_url=hub.url, timeout=300) as http:
            th = time.perf_counter()
            digest = sha256_file(src)  # the datasite names its result (jobs.py does the same)
            t0 = time.perf_counter()
            ref = blob_client.upload_file(http, path=src, kind="result", sign=sign,
                                          media_type="application/octet-stream", sha256=digest)
            t1 = time.perf_counter()
            blob_client._send(http, api.share_blob(ref.sha256, "user:alice",
                                                   Auth(sign=sign).headers))
            t2 = time.perf_counter()
            out = blob_client.download(http, f"/api/blobs/{ref.sha256}", work / "got.bin",
                                       sha256=ref.sha256, token=alice)
            t3 = time.perf_counter()
        sampler.stop_at.set()
        sampler.join()
        hwm = vm_hwm(pid)
        cpu1 = psutil.Process(pid).cpu_times()
        out.unlink()
    return {"hash": t0 - th, "upload": t1 - t0, "download": t3 - t2,
            "total": (t1 - th) + (t3 - t2), "rss_peak": sampler.peak, "rss_idle": idle,
            "vm_hwm": hwm, "hub_cpu": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mb", type=int, default=1024, help="blob size in MiB")
    ap.add_argument("--chunk-mb", type=int, default=8, help="upload chunk size in MiB")
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp dir)")
    args = ap.parse_args()
    size = args.size_mb * MIB
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="ndl-bench-blob-") as tmp:
        work = Path(tmp)
        src = work / "blob.bin"
        make_file(src, size)
        plain = {k: baseline(k, src, work / "plain.bin") for k in ("http.server", "uvicorn")}
        hub = through_hub(src, work, args.chunk_mb * MIB)
    best = min(plain.values())
    mbs = lambda seconds: size / MIB / seconds  # noqa: E731
    print(f"blob {args.size_mb} MiB, chunks {args.chunk_mb} MiB, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print(f"{'path':44} {'seconds':>8} {'MiB/s':>8}")
    for k, v in plain.items():
        print(f"{'plain HTTP GET (' + k + ')':44} {v:8.2f} {mbs(v):8.1f}")
    print(f"{'datasite hashes its file (names the blob)':44} {hub['hash']:8.2f} "
          f"{mbs(hub['hash']):8.1f}")
    print(f"{'hub: datasite upload (signed chunks)':44} {hub['upload']:8.2f} "
          f"{mbs(hub['upload']):8.1f}")
    print(f"{'hub: client download (hash checked)':44} {hub['download']:8.2f} "
          f"{mbs(hub['download']):8.1f}")
    print(f"{'datasite -> hub -> client, end to end':44} {hub['total']:8.2f} "
          f"{mbs(hub['total']):8.1f}")
    print(f"ratio end to end / fastest plain stream: {best / hub['total']:.2f}")
    print(f"hub resident memory: idle {hub['rss_idle'] / MIB:.0f} MiB, peak sampled "
          f"{hub['rss_peak'] / MIB:.0f} MiB, VmHWM {hub['vm_hwm'] / MIB:.0f} MiB; hub CPU "
          f"{hub['hub_cpu']:.2f} s")


if __name__ == "__main__":
    main()
