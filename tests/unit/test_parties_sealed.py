"""End-to-end sealing (ndl.core.sealed): round trips, refusals and HPKE interoperability."""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.bindings._rust import openssl as rust_openssl
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ndl.core.errors import EnvelopeRejected, InvalidInput
from ndl.core.keys import b64d, b64e
from ndl.core.sealed import (
    MIN_CHUNK,
    Context,
    EncryptionKey,
    check_encryption_key,
    open_file,
    open_sealed,
    seal,
    seal_file,
)

CTX = Context(sender="datasite:nhs-trust", recipient="party:enclave-1", purpose="linkage")


def test_round_trip_and_typed_result() -> None:
    key = EncryptionKey.generate()
    sealed = seal(b"NHS 943 476 5919", key.public_b64, CTX)
    assert sealed.size == len(sealed.ciphertext)
    assert sealed.sha256 == hashlib.sha256(sealed.ciphertext).hexdigest()
    assert b"943 476" not in sealed.ciphertext
    assert open_sealed(sealed.ciphertext, key, CTX) == b"NHS 943 476 5919"
    # A fresh ephemeral key each time: the same plaintext never seals to the same bytes.
    assert seal(b"NHS 943 476 5919", key.public_b64, CTX).ciphertext != sealed.ciphertext


@pytest.mark.parametrize("other", [
    Context("datasite:dfe", CTX.recipient, CTX.purpose),        # claimed by another sender
    Context(CTX.sender, "party:enclave-2", CTX.purpose),        # re-addressed
    Context(CTX.sender, CTX.recipient, "analysis"),             # replayed for another purpose
])
def test_another_context_does_not_open(other: Context) -> None:
    key = EncryptionKey.generate()
    sealed = seal(b"secret", key.public_b64, CTX)
    with pytest.raises(EnvelopeRejected, match="does not open"):
        open_sealed(sealed.ciphertext, key, other)


def test_wrong_key_tampered_and_truncated_are_refused() -> None:
    key = EncryptionKey.generate()
    sealed = seal(b"secret", key.public_b64, CTX).ciphertext
    with pytest.raises(EnvelopeRejected):
        open_sealed(sealed, EncryptionKey.generate(), CTX)
    for i in (6, 20, len(sealed) - 1):  # in enc, in the body, in the tag
        bad = bytearray(sealed)
        bad[i] ^= 0x01
        with pytest.raises(EnvelopeRejected):
            open_sealed(bytes(bad), key, CTX)
    with pytest.raises(EnvelopeRejected):
        open_sealed(sealed[:-1], key, CTX)
    with pytest.raises(EnvelopeRejected, match="truncated"):
        open_sealed(sealed[:30], key, CTX)
    with pytest.raises(InvalidInput, match="not a sealed ndl message"):
        open_sealed(b"hello" + sealed[5:], key, CTX)


@pytest.mark.parametrize("bad", [
    "", "short", "A" * 44, 12, None, b64e(b"\x00" * 32),  # wrong length, not text, low order
    b64e(b"\x01" + b"\x00" * 31), "x" * 42 + "!", "+" * 43,
])
def test_malformed_public_keys_are_refused(bad: object) -> None:
    with pytest.raises(InvalidInput, match="X25519 public key"):
        check_encryption_key(bad)


def test_context_must_name_everyone() -> None:
    with pytest.raises(InvalidInput, match="recipient"):
        Context("datasite:a", "", "x")
    with pytest.raises(InvalidInput, match="purpose"):
        Context("datasite:a", "party:b", "p" * 201)


def test_key_file_is_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "encryption-key.pem"
    first = EncryptionKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert EncryptionKey.load_or_create(path).public_b64 == first.public_b64
    path.chmod(0o644)
    EncryptionKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_signing_key_file_is_not_taken_for_an_encryption_key(tmp_path: Path) -> None:
    from ndl.core.keys import SigningKey

    SigningKey.load_or_create(tmp_path / "key.pem")
    with pytest.raises(InvalidInput, match="not X25519"):
        EncryptionKey.load_or_create(tmp_path / "key.pem")


# -- streams ----------------------------------------------------------------------------------

def _stream(key: EncryptionKey, data: bytes, chunk: int = MIN_CHUNK) -> bytes:
    out = io.BytesIO()
    info = seal_file(io.BytesIO(data), out, key.public_b64, CTX, chunk_size=chunk)
    assert info.size == len(out.getvalue())
    assert info.sha256 == hashlib.sha256(out.getvalue()).hexdigest()
    assert info.plaintext_size == len(data)
    return out.getvalue()


def _header_len(blob: bytes) -> int:
    return 5 + 8 + int.from_bytes(blob[9:13], "big")


@pytest.mark.parametrize("size", [0, 1, MIN_CHUNK - 1, MIN_CHUNK, 3 * MIN_CHUNK,
                                  3 * MIN_CHUNK + 17])
def test_stream_round_trip(tmp_path: Path, size: int) -> None:
    key = EncryptionKey.generate()
    data = os.urandom(size)
    src, dst = tmp_path / "records.bin", tmp_path / "records.sealed"
    src.write_bytes(data)
    sealed = seal_file(src, dst, key.public_b64, CTX, chunk_size=MIN_CHUNK)
    opened = open_file(dst, tmp_path / "out.bin", key, CTX)
    assert (tmp_path / "out.bin").read_bytes() == data
    assert opened.sha256 == hashlib.sha256(data).hexdigest() and opened.size == size
    assert stat.S_IMODE((tmp_path / "out.bin").stat().st_mode) == 0o600
    assert sealed.sha256 == hashlib.sha256(dst.read_bytes()).hexdigest()


def test_stream_tampering_is_refused_and_leaves_no_plaintext(tmp_path: Path) -> None:
    key = EncryptionKey.generate()
    data = os.urandom(4 * MIN_CHUNK + 100)
    blob = _stream(key, data)
    head = _header_len(blob)
    block = MIN_CHUNK + 16
    chunks = [blob[head + i:head + i + block] for i in range(0, len(blob) - head, block)]
    assert len(chunks) == 5
    cases = {
        "reordered": blob[:head] + chunks[1] + chunks[0] + b"".join(chunks[2:]),
        "dropped": blob[:head] + chunks[0] + b"".join(chunks[2:]),
        "cut at a chunk boundary": blob[:head] + b"".join(chunks[:4]),
        "cut inside a chunk": blob[:-7],
        "repeated chunk": blob[:head] + chunks[0] + b"".join(chunks),
        "extended": blob + chunks[4],
        "flipped bit": blob[:head + 100] + bytes([blob[head + 100] ^ 1]) + blob[head + 101:],
        "header only": blob[:head],
    }
    for name, bad in cases.items():
        dst = tmp_path / f"{name}.out"
        with pytest.raises(EnvelopeRejected):
            open_file(io.BytesIO(bad), dst, key, CTX)
        assert not dst.exists(), name
        assert not dst.with_name(dst.name + ".part").exists(), name
    with pytest.raises(EnvelopeRejected, match="does not open"):
        open_file(io.BytesIO(blob), tmp_path / "x", key, Context(CTX.sender, CTX.recipient, "x"))
    with pytest.raises(EnvelopeRejected):
        open_file(io.BytesIO(blob), tmp_path / "y", EncryptionKey.generate(), CTX)


def test_stream_chunks_cannot_be_spliced_from_another_stream(tmp_path: Path) -> None:
    key = EncryptionKey.generate()
    a, b = _stream(key, b"a" * 3000), _stream(key, b"b" * 3000)
    head = _header_len(a)
    with pytest.raises(EnvelopeRejected):
        open_file(io.BytesIO(a[:head] + b[head:]), tmp_path / "spliced", key, CTX)
    assert not (tmp_path / "spliced").exists()


def test_stream_header_asking_for_huge_chunks_is_refused(tmp_path: Path) -> None:
    key = EncryptionKey.generate()
    blob = bytearray(_stream(key, b"x" * 100))
    blob[5:9] = (1 << 30).to_bytes(4, "big")  # a 1 GiB chunk would be held in memory
    with pytest.raises(InvalidInput, match="malformed"):
        open_file(io.BytesIO(bytes(blob)), tmp_path / "o", key, CTX)
    with pytest.raises(InvalidInput, match="not a sealed ndl stream"):
        open_file(io.BytesIO(b"PK\x03\x04" + bytes(blob[4:])), tmp_path / "o", key, CTX)


def test_stream_memory_is_one_chunk(tmp_path: Path) -> None:
    """Sealing reads the source a chunk at a time: a reader that refuses larger reads works."""

    class Strict(io.RawIOBase):
        def __init__(self, total: int) -> None:
            self.left = total

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            assert 0 < n <= MIN_CHUNK, f"asked for {n} bytes at once"
            n = min(n, self.left)
            self.left -= n
            return b"z" * n

    key = EncryptionKey.generate()
    out = tmp_path / "big.sealed"
    info = seal_file(Strict(200 * MIN_CHUNK), out, key.public_b64, CTX,  # type: ignore[arg-type]
                     chunk_size=MIN_CHUNK)
    assert info.plaintext_size == 200 * MIN_CHUNK
    assert open_file(out, tmp_path / "big.out", key, CTX).size == 200 * MIN_CHUNK


# -- interoperability: an independent HPKE (RFC 9180 section 4-5) written from the RFC -------

def _extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        out, i = out + block, i + 1
    return out[:length]


def _labeled_extract(suite: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(salt, b"HPKE-v1" + suite + label + ikm)


def _labeled_expand(suite: bytes, prk: bytes, label: bytes, info: bytes, n: int) -> bytes:
    return _expand(prk, n.to_bytes(2, "big") + b"HPKE-v1" + suite + label + info, n)


def _independent_open(sk: bytes, enc: bytes, ct: bytes, info: bytes, aad: bytes,
                      aead_id: int) -> bytes:
    """HPKE base-mode open for DHKEM(X25519, HKDF-SHA256) and HKDF-SHA256 with AES-GCM,
    built from X25519, HMAC and AES-GCM alone (not from cryptography's HPKE)."""
    kem_suite = b"KEM" + (0x0020).to_bytes(2, "big")
    priv = X25519PrivateKey.from_private_bytes(sk)
    dh = priv.exchange(X25519PublicKey.from_public_bytes(enc))
    pk_r = priv.public_key().public_bytes_raw()
    eae_prk = _labeled_extract(kem_suite, b"", b"eae_prk", dh)
    shared = _labeled_expand(kem_suite, eae_prk, b"shared_secret", enc + pk_r, 32)
    suite = b"HPKE" + (0x0020).to_bytes(2, "big") + (1).to_bytes(2, "big") + aead_id.to_bytes(
        2, "big")
    context = (b"\x00" + _labeled_extract(suite, b"", b"psk_id_hash", b"")
               + _labeled_extract(suite, b"", b"info_hash", info))
    secret = _labeled_extract(suite, shared, b"secret", b"")
    key = _labeled_expand(suite, secret, b"key", context, 16 if aead_id == 1 else 32)
    nonce = _labeled_expand(suite, secret, b"base_nonce", context, 12)
    return AESGCM(key).decrypt(nonce, ct, aad)


# RFC 9180 appendix A.1.1 (base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM),
# first encryption. The RFC publishes no X25519 vector with AES-256-GCM; this one pins the
# KEM, the key schedule and the info handling both implementations share.
RFC_INFO = bytes.fromhex("4f6465206f6e2061204772656369616e2055726e")
RFC_SK_R = bytes.fromhex("4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8")
RFC_ENC = bytes.fromhex("37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431")
RFC_AAD = bytes.fromhex("436f756e742d30")
RFC_PT = bytes.fromhex("4265617574792069732074727574682c20747275746820626561757479")
RFC_CT = bytes.fromhex("f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a9"
                       "6d8770ac83d07bea87e13c512a")


def test_rfc9180_vector_opens_with_cryptography_and_the_independent_code() -> None:
    assert _independent_open(RFC_SK_R, RFC_ENC, RFC_CT, RFC_INFO, RFC_AAD, 1) == RFC_PT
    suite = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_128_GCM)
    opened = rust_openssl.hpke._decrypt_with_aad(
        suite, RFC_ENC + RFC_CT, X25519PrivateKey.from_private_bytes(RFC_SK_R),
        info=RFC_INFO, aad=RFC_AAD)
    assert opened == RFC_PT


def test_our_ciphertext_opens_with_the_independent_hpke() -> None:
    """What ndl seals is standard HPKE (AES-256-GCM, aead id 2): another implementation with
    the same info opens it, and no other info does."""
    key = EncryptionKey.generate()
    sealed = seal(b"interop marker", key.public_b64, CTX).ciphertext
    body = sealed[5:]
    sk = key.private.private_bytes_raw()
    assert _independent_open(sk, body[:32], body[32:], CTX.info("message"), b"", 2) == (
        b"interop marker")
    from cryptography.exceptions import InvalidTag

    with pytest.raises(InvalidTag):
        _independent_open(sk, body[:32], body[32:], CTX.info("stream"), b"", 2)
    assert b64d(key.public_b64) == key.private.public_key().public_bytes_raw()
