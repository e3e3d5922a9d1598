"""Ed25519 identities for hubs, datasites and enclaves.

Keys live in PEM files created with mode 0600; public keys travel as URL-safe base64 of the
raw 32 bytes, which is what the hub stores and what envelopes name.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ndl.core.errors import InvalidInput
from ndl.core.private import load_or_create

K = TypeVar("K", Ed25519PrivateKey, X25519PrivateKey)


def load_or_create_pem(path: Path, kind: type, generate: Callable[[], K], name: str) -> K:
    """The private key of type ``kind`` in the PEM file ``path``, created with ``generate``
    (kept 0600, written atomically) if the file does not exist."""
    def load(data: bytes) -> K:
        loaded = serialization.load_pem_private_key(data, password=None)
        if not isinstance(loaded, kind):
            raise InvalidInput(f"{path} holds a key that is not {name}; move it away")
        return cast(K, loaded)

    def create() -> tuple[K, bytes]:
        key = generate()
        return key, key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    return load_or_create(path, load, create)


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
        return cls(load_or_create_pem(path, Ed25519PrivateKey, Ed25519PrivateKey.generate,
                                      "Ed25519"))

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
