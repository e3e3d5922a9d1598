"""End-to-end encryption between parties: only the recipient's X25519 key opens a payload.

The hub relays what parties send each other but must never read it, so payloads are sealed to
the recipient's public key with HPKE (RFC 9180, base mode) from ``cryptography``:
DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM. The sender, the recipient and the
purpose are bound into HPKE's ``info`` (a :class:`Context`), so a ciphertext made for one
recipient or purpose does not open as another's: a relay that re-addresses it gets a refusal,
not a plaintext.

HPKE base mode does not say who sealed a payload (anyone may encrypt to a public key), so a
sender also signs a :func:`statement` naming sender, recipient, purpose and the ciphertext's
SHA-256 with its Ed25519 key; the recipient checks that signature before trusting the sender
named in the context.

Large payloads (a record set of gigabytes) are sealed as a stream (:func:`seal_file`): HPKE
carries a fresh random 256-bit content key, and the data follows in AES-256-GCM chunks whose
nonces are a counter and a final-chunk flag (the STREAM construction), so memory stays one
chunk whatever the size, and a dropped, reordered, repeated or appended chunk, or a stream cut
at a chunk boundary, fails to open.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import rfc8785
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ndl.core.errors import EnvelopeRejected, InvalidInput
from ndl.core.keys import b64d, b64e, fingerprint, load_or_create_pem
from ndl.core.private import FILE_MODE

SUITE_NAME = "HPKE-base/DHKEM(X25519,HKDF-SHA256)/HKDF-SHA256/AES-256-GCM"
_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_ENC_LEN = 32      # an X25519 encapsulated key
_TAG_LEN = 16      # AES-GCM's tag
# A sealed message: magic and version, then HPKE's enc || ciphertext.
_MESSAGE_MAGIC = b"NDLS\x01"
# A sealed stream: magic and version, chunk size, HPKE header length, HPKE header, chunks.
_STREAM_MAGIC = b"NDLF\x01"
_STREAM_FIXED = struct.Struct(">II")  # chunk size, header length
DEFAULT_CHUNK = 1 << 20
MAX_CHUNK = 16 << 20   # a header asking for bigger chunks is refused: memory stays bounded
MIN_CHUNK = 1 << 10
_CONTENT_KEY_LEN = 32
_PREFIX_LEN = 7        # nonce = 7-byte random prefix || 4-byte counter || 1-byte final flag
_MAX_CHUNKS = 2**32 - 1
MAX_PURPOSE = 200


@dataclass(frozen=True)
class Context:
    """Who a payload is from, who it is for, and what for. All three are principal strings
    or short labels (``datasite:nhs-trust``, ``party:enclave-1``, ``linkage.records``)."""

    sender: str
    recipient: str
    purpose: str

    def __post_init__(self) -> None:
        for name in ("sender", "recipient", "purpose"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or len(value) > MAX_PURPOSE:
                raise InvalidInput(
                    f"sealed-payload {name} must be a non-empty string of at most "
                    f"{MAX_PURPOSE} characters, e.g. 'party:enclave-1'")

    def info(self, kind: str) -> bytes:
        """HPKE ``info``: the context in canonical JSON, labelled with the payload kind."""
        return b"ndl-sealed-v1\x00" + rfc8785.dumps(
            {"kind": kind, "sender": self.sender, "recipient": self.recipient,
             "purpose": self.purpose})


# -- keys -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EncryptionKey:
    """A party's private X25519 key (it opens what others seal to it) and its public half."""

    private: X25519PrivateKey

    @classmethod
    def generate(cls) -> EncryptionKey:
        return cls(X25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, path: Path) -> EncryptionKey:
        """Load the key at ``path``; create it (mode 0600, written atomically) if missing."""
        return cls(load_or_create_pem(path, X25519PrivateKey, X25519PrivateKey.generate,
                                      "X25519"))

    @property
    def public_b64(self) -> str:
        return b64e(self.private.public_key().public_bytes(serialization.Encoding.Raw,
                                                           serialization.PublicFormat.Raw))

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_b64)


def check_encryption_key(public_b64: object) -> str:
    """Return ``public_b64`` if it is a usable X25519 public key; raise InvalidInput if not.

    An all-zero or other low-order point would make every shared secret the same, so keys
    are tried once before they are accepted.
    """
    problem = ("encryption_key must be the URL-safe base64 (no padding) of a raw 32-byte "
               "X25519 public key, as EncryptionKey.public_b64 gives it")
    if not isinstance(public_b64, str) or len(public_b64) != 43:
        raise InvalidInput(problem)
    try:
        raw = b64d(public_b64)
        if b64e(raw) != public_b64:  # one spelling per key: no stray or padding characters
            raise ValueError("not canonical base64")
        public = X25519PublicKey.from_public_bytes(raw)
        X25519PrivateKey.generate().exchange(public)  # refuses low-order points
    except (ValueError, TypeError) as exc:
        raise InvalidInput(problem) from exc
    return public_b64


def _public(public_b64: str) -> X25519PublicKey:
    return X25519PublicKey.from_public_bytes(b64d(check_encryption_key(public_b64)))


# -- one message ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sealed:
    """A sealed payload and what the hub may know about it: its size and SHA-256."""

    ciphertext: bytes
    sha256: str
    size: int
    suite: str = SUITE_NAME


def seal(plaintext: bytes, recipient_key: str, context: Context) -> Sealed:
    """Encrypt ``plaintext`` so only the holder of ``recipient_key`` opens it, in ``context``."""
    body = _SUITE.encrypt(plaintext, _public(recipient_key), info=context.info("message"))
    ciphertext = _MESSAGE_MAGIC + body
    return Sealed(ciphertext, hashlib.sha256(ciphertext).hexdigest(), len(ciphertext))


def open_sealed(ciphertext: bytes, key: EncryptionKey, context: Context) -> bytes:
    """Decrypt a :func:`seal` output. Refuses (EnvelopeRejected) a payload that was altered,
    sealed to another key, or sealed for another sender, recipient or purpose."""
    if not ciphertext.startswith(_MESSAGE_MAGIC):
        raise InvalidInput("not a sealed ndl message (it does not start with the NDLS v1 "
                           "header); was it sealed with ndl.core.sealed.seal?")
    if len(ciphertext) < len(_MESSAGE_MAGIC) + _ENC_LEN + _TAG_LEN:
        raise EnvelopeRejected("the sealed message is truncated: it is shorter than its "
                               "header and tag")
    try:
        return _SUITE.decrypt(ciphertext[len(_MESSAGE_MAGIC):], key.private,
                              info=context.info("message"))
    except (InvalidTag, ValueError) as exc:
        raise EnvelopeRejected(_refusal(context)) from exc


def _refusal(context: Context) -> str:
    return (f"the sealed payload does not open for {context.recipient!r} from "
            f"{context.sender!r} for {context.purpose!r}: it was altered, cut short, or sealed "
            "to another key, recipient or purpose")


def statement(context: Context, sha256: str, size: int) -> bytes:
    """The bytes a sender signs (Ed25519) to say it sealed this ciphertext for this context."""
    return rfc8785.dumps({"v": 1, "from": context.sender, "to": context.recipient,
                          "purpose": context.purpose, "sha256": sha256, "size": size})


# -- streams ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SealedFile:
    """What :func:`seal_file` wrote: the ciphertext's size and SHA-256 (its blob name)."""

    sha256: str
    size: int
    plaintext_size: int
    chunk_size: int
    suite: str = SUITE_NAME


@dataclass(frozen=True)
class OpenedFile:
    """What :func:`open_file` recovered: the plaintext's size and SHA-256."""

    sha256: str
    size: int


def _nonce(prefix: bytes, counter: int, final: bool) -> bytes:
    return prefix + struct.pack(">I", counter) + (b"\x01" if final else b"\x00")


def _read_full(src: BinaryIO, n: int) -> bytes:
    """Read exactly ``n`` bytes unless the stream ends first (pipes return short reads)."""
    parts, got = [], 0
    while got < n:
        part = src.read(n - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def seal_chunks(src: BinaryIO, recipient_key: str, context: Context, *,
                chunk_size: int = DEFAULT_CHUNK) -> Iterator[bytes]:
    """Yield the sealed stream of ``src`` piece by piece (header first, then each chunk)."""
    if not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
        raise InvalidInput(f"chunk_size must be between {MIN_CHUNK:,} and {MAX_CHUNK:,} bytes")
    content_key = secrets.token_bytes(_CONTENT_KEY_LEN)
    prefix = secrets.token_bytes(_PREFIX_LEN)
    header = _SUITE.encrypt(content_key + prefix, _public(recipient_key),
                            info=context.info("stream"))
    head = _STREAM_MAGIC + _STREAM_FIXED.pack(chunk_size, len(header)) + header
    yield head
    # Every chunk also authenticates the header, so chunks cannot be spliced across streams.
    aad = hashlib.sha256(head).digest()
    aes = AESGCM(content_key)
    counter, current = 0, _read_full(src, chunk_size)
    while True:
        following = _read_full(src, chunk_size) if len(current) == chunk_size else b""
        final = not following
        if counter > _MAX_CHUNKS:
            raise InvalidInput("the file is too large for one sealed stream at this chunk size")
        yield aes.encrypt(_nonce(prefix, counter, final), current, aad)
        if final:
            return
        counter, current = counter + 1, following


def seal_file(src: BinaryIO | Path, dst: BinaryIO | Path, recipient_key: str,
              context: Context, *, chunk_size: int = DEFAULT_CHUNK) -> SealedFile:
    """Seal ``src`` into ``dst`` in chunks; memory stays about two chunks whatever the size."""
    with _opened(src, False) as fin, _opened(dst, True) as fout:
        digest, size, plain = hashlib.sha256(), 0, 0
        for i, piece in enumerate(seal_chunks(fin, recipient_key, context,
                                              chunk_size=chunk_size)):
            if i:
                plain += len(piece) - _TAG_LEN
            digest.update(piece)
            size += len(piece)
            fout.write(piece)
    return SealedFile(digest.hexdigest(), size, plain, chunk_size)


def open_chunks(src: BinaryIO, key: EncryptionKey, context: Context) -> Iterator[bytes]:
    """Yield the plaintext of a sealed stream chunk by chunk, each one checked before it is
    yielded. Raises EnvelopeRejected at the first chunk that fails (so a caller writing the
    pieces out must discard what it wrote: :func:`open_file` does)."""
    fixed = _read_full(src, len(_STREAM_MAGIC) + _STREAM_FIXED.size)
    if not fixed.startswith(_STREAM_MAGIC) or len(fixed) < len(_STREAM_MAGIC) + 8:
        raise InvalidInput("not a sealed ndl stream (it does not start with the NDLF v1 "
                           "header); was it sealed with ndl.core.sealed.seal_file?")
    chunk_size, header_len = _STREAM_FIXED.unpack(fixed[len(_STREAM_MAGIC):])
    if not MIN_CHUNK <= chunk_size <= MAX_CHUNK or header_len != (
            _ENC_LEN + _CONTENT_KEY_LEN + _PREFIX_LEN + _TAG_LEN):
        raise InvalidInput(f"the sealed stream's header is malformed (chunk size {chunk_size}, "
                           f"header {header_len} bytes)")
    header = _read_full(src, header_len)
    if len(header) != header_len:
        raise EnvelopeRejected("the sealed stream is truncated inside its header")
    try:
        secret = _SUITE.decrypt(header, key.private, info=context.info("stream"))
    except (InvalidTag, ValueError) as exc:
        raise EnvelopeRejected(_refusal(context)) from exc
    content_key, prefix = secret[:_CONTENT_KEY_LEN], secret[_CONTENT_KEY_LEN:]
    aad = hashlib.sha256(fixed + header).digest()
    aes = AESGCM(content_key)
    block = chunk_size + _TAG_LEN
    counter, current = 0, _read_full(src, block)
    while True:
        if len(current) < _TAG_LEN:
            raise EnvelopeRejected(f"the sealed stream is truncated: chunk {counter} is "
                                   "missing or cut short")
        following = _read_full(src, block) if len(current) == block else b""
        final = not following
        try:
            yield aes.decrypt(_nonce(prefix, counter, final), current, aad)
        except InvalidTag as exc:
            raise EnvelopeRejected(
                f"chunk {counter} of the sealed stream does not open: the stream was "
                "altered, reordered, cut short or extended") from exc
        if final:
            return
        counter, current = counter + 1, following


def open_file(src: BinaryIO | Path, dst: Path, key: EncryptionKey,
              context: Context) -> OpenedFile:
    """Open a sealed stream into ``dst`` (0600). The plaintext goes to ``dst.part`` first and
    is renamed only once every chunk has opened, so a tampered stream leaves nothing behind."""
    part = dst.with_name(dst.name + ".part")
    digest, size = hashlib.sha256(), 0
    try:
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with _opened(src, False) as fin, os.fdopen(fd, "wb") as fout:
            for piece in open_chunks(fin, key, context):
                digest.update(piece)
                size += len(piece)
                fout.write(piece)
        os.replace(part, dst)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return OpenedFile(digest.hexdigest(), size)


@contextmanager
def _opened(target: BinaryIO | Path, write: bool) -> Iterator[BinaryIO]:
    """A path opened here (and closed), or a file object the caller owns (left open)."""
    if not isinstance(target, Path):
        yield target
    elif write:
        with target.open("wb") as fh:
            yield fh
    else:
        with target.open("rb") as fh:
            yield fh


__all__ = [
    "DEFAULT_CHUNK", "MAX_CHUNK", "SUITE_NAME", "Context", "EncryptionKey", "OpenedFile",
    "Sealed", "SealedFile", "check_encryption_key", "open_chunks", "open_file", "open_sealed",
    "seal", "seal_chunks", "seal_file", "statement",
]
