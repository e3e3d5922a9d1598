"""Ed25519 identities for hubs, datasites and enclaves.

Keys live in PEM files created with mode 0600; public keys travel as URL-safe base64 of the
raw 32 bytes, which is what the hub stores and what envelopes name.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ndl.core.errors import InvalidInput
from ndl.core.private import FILE_MODE, private_dir, private_file


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class SigningKey:
    """A private Ed25519 key and its public half."""

    private: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
        """Load the key at ``path``; create it (mode 0600) if the file does not exist."""
        if path.exists():
            private_file(path)  # tighten a key an older version left readable
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(loaded, Ed25519PrivateKey):
                raise InvalidInput(f"{path} holds a key that is not Ed25519; move it away")
            return cls(loaded)
        key = cls.generate()
        private_dir(path.parent, tighten=False)
        pem = key.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # Write to a temp file first so a crash never leaves a half-written key behind.
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        os.fchmod(fd, FILE_MODE)  # a leftover temp file keeps its old mode through O_TRUNC
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        os.replace(tmp, path)
        return key

    @property
    def public_b64(self) -> str:
        raw = self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return b64e(raw)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_b64)

    def sign(self, data: bytes) -> str:
        return b64e(self.private.sign(data))


def fingerprint(public_b64: str) -> str:
    """A short, stable name for a public key (first 16 hex chars of its SHA-256)."""
    return hashlib.sha256(b64d(public_b64)).hexdigest()[:16]


def verify_signature(public_b64: str, signature_b64: str, data: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(b64d(public_b64)).verify(b64d(signature_b64), data)
    except (InvalidSignature, ValueError):
        return False
    return True


def check_public_key(public_b64: str) -> str:
    """Raise InvalidInput unless ``public_b64`` is a well-formed Ed25519 public key."""
    try:
        raw = b64d(public_b64)
        Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            "public_key must be the URL-safe base64 of a raw 32-byte Ed25519 public key"
        ) from exc
    return public_b64
