"""Blobs through a real hub process on loopback: uploads cut at a random byte (a dropped
connection, a killed uploader, a killed hub) resume and arrive whole, hash checked;
downloads cut at a random byte resume with Range; the S3 store behind a real hub, with
moto's S3-compatible server as its own process."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ndl.core.envelope import seal
from ndl.core.keys import SigningKey
from ndl.federation import blob_client
from ndl.federation.blob_client import Auth
from ndl.federation.models import Datasite
from ndl.hubclient import _api as api
from ndl.testing import HubProcess, S3TestServer

CHUNK = 256 * 1024
SITE = "nhs-trust"


def sha_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def seed() -> random.Random:
    value = int.from_bytes(os.urandom(4), "big")
    print(f"random seed {value}")  # shown on failure, to replay the same cut
    return random.Random(value)


def make_hub(root: Path, key: SigningKey, extra: list[str] | None = None) -> HubProcess:
    hub = HubProcess(root, extra_args=["--blob-chunk-bytes", str(CHUNK), *(extra or [])])
    hub.create_org(SITE)
    with hub.db.write() as s:
        s.add(Datasite(id=SITE, org_id=SITE, name="NHS", public_key=key.public_b64))
    return hub


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def hub(tmp_path: Path, key: SigningKey) -> Iterator[HubProcess]:
    with make_hub(tmp_path / "hub", key) as h:
        yield h


def signer(key: SigningKey) -> blob_client.Sign:
    def sign(kind: str, body: dict[str, Any]) -> dict[str, Any]:
        return seal(key, sender=SITE, recipient="hub", kind=kind, body=body)
    return sign


def random_file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


class CutUpload(httpx.BaseTransport):
    """Drops the connection part way through one chunk PUT, at a random byte of it."""

    def __init__(self, rng: random.Random, which: int) -> None:
        self.inner, self.rng, self.which = httpx.HTTPTransport(), rng, which
        self.puts = 0
        self.cut_at: int | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            self.puts += 1
            if self.puts == self.which:
                body = request.read()
                self.cut_at = self.rng.randrange(1, len(body))
                request.stream = _Partial(body[:self.cut_at])
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


class _Partial(httpx.SyncByteStream):
    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Iterator[bytes]:
        yield self.data
        raise httpx.WriteError("connection dropped mid-chunk (test)")


class CutDownload(httpx.BaseTransport):
    """Cuts the first blob download at a random byte; records every Range asked for."""

    def __init__(self, rng: random.Random, size: int) -> None:
        self.inner, self.cut_at = httpx.HTTPTransport(), rng.randrange(1, size)
        self.ranges: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.ranges.append(request.headers.get("range"))
        resp = self.inner.handle_request(request)
        if len(self.ranges) > 1:
            return resp
        return httpx.Response(resp.status_code, headers=resp.headers, request=request,
                              stream=_CutStream(resp, self.cut_at), extensions=resp.extensions)

    def close(self) -> None:
        self.inner.close()


class _CutStream(httpx.SyncByteStream):
    def __init__(self, resp: httpx.Response, at: int) -> None:
        self.resp, self.at = resp, at

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        assert isinstance(self.resp.stream, httpx.SyncByteStream)
        for piece in self.resp.stream:
            if sent + len(piece) >= self.at:
                yield piece[:self.at - sent]
                raise httpx.ReadError("connection dropped mid-download (test)")
            sent += len(piece)
            yield piece

    def close(self) -> None:
        self.resp.close()


def test_an_upload_cut_at_a_random_byte_resumes_and_arrives_whole(
        hub: HubProcess, key: SigningKey, tmp_path: Path) -> None:
    rng = seed()
    src = random_file(tmp_path / "result.parquet", 20 * CHUNK + rng.randrange(1, CHUNK))
    cut = CutUpload(rng, which=rng.randrange(1, 21))
    seen: list[tuple[int, int]] = []
    with httpx.Client(base_url=hub.url, transport=cut, timeout=60) as http:
        ref = blob_client.upload_file(http, path=src, kind="result", sign=signer(key),
                                      media_type="application/vnd.apache.parquet",
                                      progress=lambda done, total: seen.append((done, total)))
    assert cut.cut_at is not None, "the test never cut a chunk"
    assert ref.sha256 == sha_file(src) and ref.size == src.stat().st_size
    assert seen[-1] == (ref.size, ref.size)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)  # never went backwards
    # The hub holds exactly the file: download it and compare the hash.
    with httpx.Client(base_url=hub.url, timeout=60) as http:
        out = blob_client.download(http, f"/api/blobs/{ref.sha256}", tmp_path / "out.bin",
                                   sha256=ref.sha256, sign=signer(key))
    assert sha_file(out) == ref.sha256
    assert list((hub.data_dir / "blobs" / "staging").glob("*.part")) == []


UPLOADER = textwrap.dedent("""
    import sys, httpx
    from pathlib import Path
    from ndl.core.envelope import seal
    from ndl.core.keys import SigningKey
    from ndl.federation import blob_client
    key = SigningKey.load_or_create(Path(sys.argv[2]))
    sign = lambda kind, body: seal(key, sender="nhs-trust", recipient="hub", kind=kind,
                                   body=body)
    def progress(done, total):
        print(done, flush=True)
    with httpx.Client(base_url=sys.argv[1], timeout=60) as http:
        blob_client.upload_file(http, path=Path(sys.argv[3]), kind="result", sign=sign,
                                progress=progress)
    print("done", flush=True)
""")


def test_an_uploader_killed_mid_stream_resumes_from_what_the_hub_holds(
        tmp_path: Path) -> None:
    rng = seed()
    key_file = tmp_path / "site-key.pem"
    key = SigningKey.load_or_create(key_file)
    src = random_file(tmp_path / "big.bin", 40 * CHUNK + 12345)
    with make_hub(tmp_path / "hub", key) as hub:
        target = rng.randrange(2, 30) * CHUNK
        with subprocess.Popen([sys.executable, "-c", UPLOADER, hub.url, str(key_file),
                               str(src)], stdout=subprocess.PIPE, text=True) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.strip() == "done" or int(line) >= target:
                    break
            time.sleep(rng.random() * 0.05)  # somewhere inside the next chunk, or between
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        seen: list[int] = []
        with httpx.Client(base_url=hub.url, timeout=60) as http:
            ref = blob_client.upload_file(http, path=src, kind="result", sign=signer(key),
                                          progress=lambda done, _: seen.append(done))
            out = blob_client.download(http, f"/api/blobs/{ref.sha256}", tmp_path / "o.bin",
                                       sha256=ref.sha256, sign=signer(key))
        assert seen[0] >= target, f"started again from {seen[0]}, not from the hub's bytes"
        assert sha_file(out) == sha_file(src)


def test_a_hub_killed_mid_upload_keeps_the_verified_chunks(tmp_path: Path) -> None:
    rng = seed()
    key = SigningKey.generate()
    src = random_file(tmp_path / "big.bin", 12 * CHUNK + 99)
    data = src.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    auth = Auth(sign=signer(key))
    hub = make_hub(tmp_path / "hub", key)
    sent = rng.randrange(1, 11)
    with hub:
        with httpx.Client(base_url=hub.url, timeout=60) as http:
            status = blob_client._send(http, api.begin_blob_upload(
                {"sha256": digest, "size": len(data), "kind": "result",
                 "media_type": "application/octet-stream"}, auth.headers))
            for i in range(sent):
                status = blob_client._send(http, api.put_blob_chunk(
                    status["upload_id"], data[i * CHUNK:(i + 1) * CHUNK], i * CHUNK,
                    auth.headers))
        hub.kill()
        hub.start()
        seen: list[int] = []
        with httpx.Client(base_url=hub.url, timeout=60) as http:
            ref = blob_client.upload_file(http, path=src, kind="result", sign=signer(key),
                                          progress=lambda done, _: seen.append(done))
            out = blob_client.download(http, f"/api/blobs/{ref.sha256}", tmp_path / "o.bin",
                                       sha256=ref.sha256, sign=signer(key))
        assert seen[0] == sent * CHUNK
        assert sha_file(out) == digest


def test_a_download_cut_at_a_random_byte_resumes_with_range(
        hub: HubProcess, key: SigningKey, tmp_path: Path) -> None:
    rng = seed()
    src = random_file(tmp_path / "result.csv", 3 * 1024 * 1024 + rng.randrange(1, 1000))
    with httpx.Client(base_url=hub.url, timeout=60) as http:
        ref = blob_client.upload_file(http, path=src, kind="result", sign=signer(key))
    cut = CutDownload(rng, ref.size)
    progress: list[tuple[int, int]] = []
    with httpx.Client(base_url=hub.url, transport=cut, timeout=60) as http:
        out = blob_client.download(http, f"/api/blobs/{ref.sha256}", tmp_path / "got.csv",
                                   sha256=ref.sha256, sign=signer(key),
                                   progress=lambda d, t: progress.append((d, t)))
    assert cut.ranges[0] is None and cut.ranges[1] == f"bytes={cut.cut_at}-"
    assert sha_file(out) == ref.sha256 and not (tmp_path / "got.csv.part").exists()
    assert progress[-1] == (ref.size, ref.size)


def test_a_user_uploads_with_a_token_and_shares_with_another_user(
        hub: HubProcess, key: SigningKey, tmp_path: Path) -> None:
    alice = hub.create_user("alice", ["researcher"])
    bob = hub.create_user("bob", ["researcher"])
    src = random_file(tmp_path / "bundle.zip", 3 * CHUNK + 1)
    with httpx.Client(base_url=hub.url, timeout=60) as http:
        ref = blob_client.upload_file(http, path=src, kind="bundle", token=alice,
                                      media_type="application/zip")
        blob_client._send(http, api.share_blob(ref.sha256, "user:bob",
                                               Auth(token=alice).headers))
        out = blob_client.download(http, f"/api/blobs/{ref.sha256}", tmp_path / "b.zip",
                                   sha256=ref.sha256, token=bob)
        info = blob_client._send(http, api.blob_info(ref.sha256, Auth(token=bob).headers))
    assert sha_file(out) == ref.sha256
    assert info["owner"] == "user:alice" and info["kind"] == "bundle"


def test_the_s3_store_behind_a_real_hub(tmp_path: Path, key: SigningKey,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Tested against moto's S3-compatible server, not AWS or MinIO."""
    import boto3

    with S3TestServer(tmp_path / "moto") as s3:
        for k, v in s3.env.items():
            monkeypatch.setenv(k, v)  # the hub process inherits them
        s3.create_bucket("ndl-blobs")
        hub = make_hub(tmp_path / "hub", key, [
            "--blob-store", f"s3://ndl-blobs/hub?endpoint={s3.url}"])
        src = random_file(tmp_path / "r.bin", 9 * 1024 * 1024 + 7)  # two S3 parts
        with hub, httpx.Client(base_url=hub.url, timeout=120) as http:
            ref = blob_client.upload_file(http, path=src, kind="result", sign=signer(key))
            out = blob_client.download(http, f"/api/blobs/{ref.sha256}", tmp_path / "o.bin",
                                       sha256=ref.sha256, sign=signer(key))
            r = http.get(f"/api/blobs/{ref.sha256}", headers={
                **Auth(sign=signer(key)).headers("GET", f"/api/blobs/{ref.sha256}"),
                "Range": "bytes=100-199"})
        assert sha_file(out) == ref.sha256
        assert r.status_code == 206 and r.content == src.read_bytes()[100:200]
        client = boto3.client("s3", endpoint_url=s3.url, region_name="us-east-1")
        keys = [o["Key"] for o in client.list_objects_v2(Bucket="ndl-blobs")["Contents"]]
        assert keys == [f"hub/{ref.sha256}"]
        store_dir = hub.data_dir / "blobs" / "store"
        assert not store_dir.exists() or not any(store_dir.rglob(ref.sha256))
