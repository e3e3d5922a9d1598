"""Attacks on blob uploads and downloads, against a real hub process on loopback.

Corrupted and oversized chunks, sizes over the kind's limit or the quota, someone else's
upload or blob, replayed and re-aimed signed requests, names that try to be paths, and
numbers that are negative, huge, NaN or not numbers at all.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from ndl.core.envelope import seal
from ndl.core.keys import SigningKey
from ndl.federation.blob_models import BlobUpload
from ndl.federation.models import Datasite
from ndl.testing import HubProcess

CHUNK = 64 * 1024
NHS_KEY, DFE_KEY = SigningKey.generate(), SigningKey.generate()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Env:
    hub: HubProcess
    alice: str
    readonly: str

    @property
    def url(self) -> str:
        return self.hub.url


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    h = HubProcess(tmp_path_factory.mktemp("hub"), extra_args=[
        "--blob-chunk-bytes", str(CHUNK), "--blob-max-bundle-bytes", "100000",
        "--blob-quota-bytes", "1000000"])
    h.create_org("nhs-trust")
    h.create_org("dfe")
    with h.db.write() as s:
        s.add(Datasite(id="nhs-trust", org_id="nhs-trust", name="NHS",
                       public_key=NHS_KEY.public_b64))
        s.add(Datasite(id="dfe", org_id="dfe", name="DfE", public_key=DFE_KEY.public_b64))
    alice = h.create_user("alice", ["researcher"])
    with h:
        readonly = httpx.post(f"{h.url}/api/auth/tokens", json={"scope": "read-only"},
                              headers={"Authorization": f"Bearer {alice}"}).json()["token"]
        yield Env(h, alice, readonly)


def signed(method: str, path: str, args: dict[str, Any] | None = None, *,
           key: SigningKey = NHS_KEY, sender: str = "nhs-trust") -> dict[str, str]:
    """A signed request header. Arguments no signer can sign (NaN, integers past 2**53) are
    put in after signing, as an attacker crafting the envelope by hand would."""
    body = {"method": method, "path": path, "args": args or {}}
    try:
        env = seal(key, sender=sender, recipient="hub", kind="request", body=body)
    except ValueError:
        env = seal(key, sender=sender, recipient="hub", kind="request",
                   body={**body, "args": {}})
        env["body"] = body
    text = json.dumps(env, allow_nan=True)
    return {"X-Ndl-Envelope": base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def begin(env: Env, data: bytes, *, kind: str = "result", key: SigningKey = NHS_KEY,
          sender: str = "nhs-trust", size: Any = "same") -> httpx.Response:
    args = {"sha256": sha(data), "size": len(data) if size == "same" else size, "kind": kind,
            "media_type": "text/csv"}
    return httpx.post(f"{env.url}/api/blobs/uploads", timeout=30,
                      headers=signed("POST", "/api/blobs/uploads", args, key=key, sender=sender))


def put(env: Env, upload_id: str, data: bytes, offset: int, *, sha256: str | None = None,
        length: Any = None, key: SigningKey = NHS_KEY, sender: str = "nhs-trust",
        headers: dict[str, str] | None = None) -> httpx.Response:
    path = f"/api/blobs/uploads/{upload_id}"
    args = {"offset": offset, "length": len(data) if length is None else length,
            "sha256": sha256 or sha(data)}
    return httpx.put(f"{env.url}{path}", content=data, timeout=30,
                     headers=headers or signed("PUT", path, args, key=key, sender=sender))


def status(env: Env, upload_id: str, key: SigningKey = NHS_KEY, sender: str = "nhs-trust"
           ) -> httpx.Response:
    path = f"/api/blobs/uploads/{upload_id}"
    return httpx.get(f"{env.url}{path}", headers=signed("GET", path, key=key, sender=sender))


def upload_whole(env: Env, data: bytes) -> None:
    r = begin(env, data)
    assert r.status_code == 200, r.text
    st = r.json()
    while not st["complete"]:
        piece = data[st["offset"]:st["offset"] + CHUNK]
        r = put(env, st["upload_id"], piece, st["offset"])
        assert r.status_code == 200, r.text
        st = r.json()


def error(r: httpx.Response, status_code: int, code: str | None = None) -> str:
    assert r.status_code == status_code, r.text
    err = r.json()["error"]
    if code is not None:
        assert err["code"] == code, err
    return str(err["message"])


def uploads_in_db(env: Env) -> int:
    with env.hub.db.read() as s:
        return int(s.scalar(select(func.count()).select_from(BlobUpload)) or 0)


def staged_bytes(env: Env, upload_id: str) -> int:
    path = env.hub.data_dir / "blobs" / "staging" / f"{upload_id}.part"
    return path.stat().st_size if path.exists() else 0


# -- corruption and size ----------------------------------------------------------------------

def test_a_corrupted_chunk_is_refused_and_not_stored(env: Env) -> None:
    data = os.urandom(2 * CHUNK)
    st = begin(env, data).json()
    assert put(env, st["upload_id"], data[:CHUNK], 0).status_code == 200
    damaged = bytearray(data[CHUNK:])
    damaged[-1] ^= 1
    r = put(env, st["upload_id"], bytes(damaged), CHUNK, sha256=sha(data[CHUNK:]))
    assert "was not stored" in error(r, 422, "invalid_input")
    assert status(env, st["upload_id"]).json()["offset"] == CHUNK
    assert staged_bytes(env, st["upload_id"]) == CHUNK


def test_over_the_kinds_limit_is_refused_before_it_is_stored_and_names_the_limit(env: Env
                                                                                 ) -> None:
    before = uploads_in_db(env)
    r = begin(env, os.urandom(100_001), kind="bundle")
    msg = error(r, 413, "payload_too_large")
    assert "at most 100,000 bytes" in msg and "--blob-max-bundle-bytes" in msg
    assert uploads_in_db(env) == before


def test_over_the_quota_is_refused_before_it_is_stored_and_names_the_quota(env: Env) -> None:
    before = uploads_in_db(env)
    r = begin(env, b"q" * 10, size=1_000_001)
    assert "quota of 1,000,000 bytes" in error(r, 413, "payload_too_large")
    assert uploads_in_db(env) == before


def test_a_body_over_the_chunk_size_is_refused_before_the_route(env: Env) -> None:
    data = os.urandom(CHUNK + 1)
    st = begin(env, data).json()
    r = put(env, st["upload_id"], data, 0)
    assert f"{CHUNK:,} byte limit" in error(r, 413, "payload_too_large")

    def stream() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield data

    path = f"/api/blobs/uploads/{st['upload_id']}"
    r = httpx.put(f"{env.url}{path}", content=stream(), timeout=30, headers=signed(
        "PUT", path, {"offset": 0, "length": CHUNK, "sha256": sha(data[:CHUNK])}))
    assert r.status_code in (413, 422), r.text  # over the cap, or longer than declared
    assert staged_bytes(env, st["upload_id"]) == 0


def test_a_body_longer_than_the_signed_length_is_refused(env: Env) -> None:
    data = os.urandom(1000)
    st = begin(env, data).json()
    r = put(env, st["upload_id"], data, 0, length=500, sha256=sha(data[:500]))
    assert "differs from the chunk's declared length" in error(r, 422)
    assert staged_bytes(env, st["upload_id"]) == 0


def test_the_json_body_limit_still_applies_to_every_other_route(env: Env) -> None:
    r = httpx.post(f"{env.url}/api/blobs/uploads", content=b"{" + b" " * 2_100_000 + b"}",
                   headers={**bearer(env.alice), "Content-Type": "application/json"})
    assert r.status_code == 413


# -- someone else's things --------------------------------------------------------------------

def test_another_party_cannot_see_resume_or_abandon_an_upload(env: Env) -> None:
    data = os.urandom(CHUNK + 5)
    st = begin(env, data).json()
    uid = st["upload_id"]
    assert status(env, uid, key=DFE_KEY, sender="dfe").status_code == 404
    r = put(env, uid, data[:CHUNK], 0, key=DFE_KEY, sender="dfe")
    assert "of yours" in error(r, 404)
    path = f"/api/blobs/uploads/{uid}"
    r = httpx.delete(f"{env.url}{path}", headers=signed("DELETE", path, key=DFE_KEY,
                                                        sender="dfe"))
    assert r.status_code == 404
    r = httpx.get(f"{env.url}{path}", headers=bearer(env.alice))
    assert r.status_code == 404
    assert staged_bytes(env, uid) == 0 and status(env, uid).json()["offset"] == 0


def test_only_the_owner_and_allowed_readers_can_read_a_blob(env: Env) -> None:
    data = os.urandom(3000)
    upload_whole(env, data)
    path = f"/api/blobs/{sha(data)}"
    assert httpx.get(f"{env.url}{path}", headers=signed("GET", path)).content == data
    r = httpx.get(f"{env.url}{path}", headers=signed("GET", path, key=DFE_KEY, sender="dfe"))
    assert r.status_code == 404 and data not in r.content
    assert httpx.get(f"{env.url}{path}", headers=bearer(env.alice)).status_code == 404
    assert httpx.get(f"{env.url}{path}/info", headers=bearer(env.alice)).status_code == 404
    assert httpx.get(f"{env.url}{path}").status_code == 401
    # alice cannot give herself access; the owner can
    r = httpx.post(f"{env.url}{path}/readers", json={"reader": "user:alice"},
                   headers=bearer(env.alice))
    assert r.status_code == 404
    r = httpx.post(f"{env.url}{path}/readers", headers=signed(
        "POST", f"{path}/readers", {"reader": "user:alice"}))
    assert r.status_code == 200, r.text
    assert httpx.get(f"{env.url}{path}", headers=bearer(env.alice)).content == data
    # a reader is not an owner: it cannot delete or share further
    assert httpx.delete(f"{env.url}{path}", headers=bearer(env.alice)).status_code == 403
    r = httpx.post(f"{env.url}{path}/readers", json={"reader": "user:mallory"},
                   headers=bearer(env.alice))
    assert r.status_code == 403


def test_claiming_a_known_hash_does_not_grant_reading_it(env: Env) -> None:
    data = os.urandom(2000)
    upload_whole(env, data)
    r = begin(env, data, key=DFE_KEY, sender="dfe")
    assert r.status_code == 200 and r.json()["complete"] is False
    path = f"/api/blobs/{sha(data)}"
    r = httpx.get(f"{env.url}{path}", headers=signed("GET", path, key=DFE_KEY, sender="dfe"))
    assert r.status_code == 404


def test_a_read_only_token_cannot_upload_and_no_token_cannot_do_anything(env: Env) -> None:
    args = {"sha256": "a" * 64, "size": 10, "kind": "result"}
    r = httpx.post(f"{env.url}/api/blobs/uploads", json=args, headers=bearer(env.readonly))
    assert r.status_code == 403
    r = httpx.post(f"{env.url}/api/blobs/uploads", json=args)
    assert r.status_code == 401


# -- signed requests --------------------------------------------------------------------------

def test_a_replayed_chunk_request_is_refused(env: Env) -> None:
    data = os.urandom(2 * CHUNK)
    st = begin(env, data).json()
    path = f"/api/blobs/uploads/{st['upload_id']}"
    headers = signed("PUT", path, {"offset": 0, "length": CHUNK, "sha256": sha(data[:CHUNK])})
    assert put(env, st["upload_id"], data[:CHUNK], 0, headers=headers).status_code == 200
    r = put(env, st["upload_id"], data[:CHUNK], 0, headers=headers)
    assert "replayed" in error(r, 401, "envelope_rejected")
    assert status(env, st["upload_id"]).json()["offset"] == CHUNK


def test_a_signed_request_cannot_be_aimed_at_another_upload_or_method(env: Env) -> None:
    a, b = os.urandom(100), os.urandom(100)
    ua, ub = begin(env, a).json()["upload_id"], begin(env, b).json()["upload_id"]
    for_a = signed("PUT", f"/api/blobs/uploads/{ua}", {"offset": 0, "length": 100,
                                                        "sha256": sha(b)})
    r = put(env, ub, b, 0, headers=for_a)
    assert "sign each request for its own method and path" in error(r, 401)
    get_a = signed("GET", f"/api/blobs/uploads/{ua}")
    r = httpx.delete(f"{env.url}/api/blobs/uploads/{ua}", headers=get_a)
    assert error(r, 401, "envelope_rejected")
    assert status(env, ua).status_code == 200 and status(env, ub).json()["offset"] == 0


def test_a_forged_or_garbled_signed_request_is_refused(env: Env) -> None:
    forged = signed("POST", "/api/blobs/uploads", {"sha256": "b" * 64, "size": 5,
                                                   "kind": "result"}, key=DFE_KEY)
    r = httpx.post(f"{env.url}/api/blobs/uploads", headers=forged)
    assert "bad signature" in error(r, 401, "envelope_rejected")
    r = httpx.post(f"{env.url}/api/blobs/uploads", headers={"X-Ndl-Envelope": "!!not b64"})
    assert "base64url" in error(r, 422)
    r = httpx.post(f"{env.url}/api/blobs/uploads", headers={"X-Ndl-Envelope": "e30"})  # {}
    assert error(r, 401, "envelope_rejected")
    unknown = SigningKey.generate()
    r = httpx.post(f"{env.url}/api/blobs/uploads", headers=signed(
        "POST", "/api/blobs/uploads", {}, key=unknown, sender="nobody"))
    assert "unknown sender" in error(r, 401, "envelope_rejected")


# -- names and numbers ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["..%2F..%2F..%2Fetc%2Fpasswd", "%2e%2e", "A" * 64, "a" * 63,
                                  "a" * 64 + "%00", "..", "a" * 62 + "%2F."])
def test_a_blob_name_that_is_not_a_sha256_never_reaches_the_disk(env: Env, name: str) -> None:
    r = httpx.get(f"{env.url}/api/blobs/{name}", headers=bearer(env.alice))
    assert r.status_code in (404, 422), r.text
    assert b"root:" not in r.content
    r = httpx.get(f"{env.url}/api/blobs/uploads/{name}", headers=bearer(env.alice))
    assert r.status_code in (404, 422), r.text


def test_traversal_in_a_begun_sha256_is_refused(env: Env) -> None:
    r = httpx.post(f"{env.url}/api/blobs/uploads", headers=bearer(env.alice), json={
        "sha256": "../../../../etc/passwd", "size": 10, "kind": "result"})
    assert "64 lowercase hexadecimal" in error(r, 422)


@pytest.mark.parametrize("size", [-1, 0, 2**63, 2**70, 1.5, "10", True, None])
def test_bad_sizes_are_refused_from_users_and_parties(env: Env, size: Any) -> None:
    r = httpx.post(f"{env.url}/api/blobs/uploads", headers=bearer(env.alice), json={
        "sha256": "c" * 64, "size": size, "kind": "result"})
    assert r.status_code == 422, r.text
    r = begin(env, b"x", size=size)
    assert r.status_code in (401, 422), r.text  # unsignable numbers: refused as unsigned


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-0.0",
                                     "99999999999999999999999999"])
def test_nan_and_out_of_range_numbers_in_a_json_body_are_refused(env: Env, literal: str
                                                                 ) -> None:
    body = '{"sha256": "' + "d" * 64 + '", "size": ' + literal + ', "kind": "result"}'
    r = httpx.post(f"{env.url}/api/blobs/uploads", content=body,
                   headers={**bearer(env.alice), "Content-Type": "application/json"})
    assert r.status_code == 422, r.text


@pytest.mark.parametrize("offset,length", [(-1, 10), (2**63, 10), (2**80, 10),
                                           (float("nan"), 10), (0, float("nan")),
                                           (0, -10), ("0", 10), (None, 10)])
def test_bad_offsets_and_lengths_in_a_signed_chunk_are_refused(env: Env, offset: Any,
                                                               length: Any) -> None:
    st = begin(env, os.urandom(20)).json()
    path = f"/api/blobs/uploads/{st['upload_id']}"
    headers = signed("PUT", path, {"offset": offset, "length": length, "sha256": "0" * 64})
    r = httpx.put(f"{env.url}{path}", content=b"", headers=headers)
    assert r.status_code in (401, 422), r.text  # unsignable numbers: refused as unsigned
    assert staged_bytes(env, st["upload_id"]) == 0


@pytest.mark.parametrize("offset", ["-1", "1e3", "9" * 25, "", "0x10", "+1", "\u0661"])
def test_bad_offsets_from_a_user_are_refused(env: Env, offset: str) -> None:
    r = httpx.post(f"{env.url}/api/blobs/uploads", headers=bearer(env.alice), json={
        "sha256": "e" * 64, "size": 10, "kind": "result"})
    uid = r.json()["upload_id"]
    r = httpx.put(f"{env.url}/api/blobs/uploads/{uid}", content=b"0123456789", headers={
        **bearer(env.alice), "X-Ndl-Offset": offset.encode(),  # type: ignore[dict-item]
        "X-Ndl-Chunk-Sha256": sha(b"0123456789")})
    assert r.status_code == 422, r.text


@pytest.mark.parametrize("rng", ["bytes=" + "9" * 30 + "-", "bytes=0-1,2-3", "bytes=-0",
                                 "bytes=5000-", "lines=0-1", "bytes=10-5"])
def test_ranges_that_cannot_be_served_are_416(env: Env, rng: str) -> None:
    data = os.urandom(1000)
    upload_whole(env, data)
    path = f"/api/blobs/{sha(data)}"
    r = httpx.get(f"{env.url}{path}", headers={**signed("GET", path), "Range": rng})
    assert r.status_code == 416 and r.headers["content-range"] == "bytes */1000"
    assert r.json()["error"]["code"] == "range_not_satisfiable"


def test_a_blob_is_never_rendered_by_a_browser(env: Env) -> None:
    data = b"<script>alert(document.cookie)</script>" + os.urandom(8)
    args = {"sha256": sha(data), "size": len(data), "kind": "result",
            "media_type": "text/html"}
    st = httpx.post(f"{env.url}/api/blobs/uploads",
                    headers=signed("POST", "/api/blobs/uploads", args)).json()
    put(env, st["upload_id"], data, 0)
    path = f"/api/blobs/{sha(data)}"
    r = httpx.get(f"{env.url}{path}", headers=signed("GET", path))
    assert r.content == data
    assert r.headers["content-disposition"].startswith("attachment")
    assert "sandbox" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
