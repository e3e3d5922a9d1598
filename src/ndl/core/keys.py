"""Ed25519 identities for hubs, datasites and enclaves.

Keys live in PEM files created with mode 0600; public keys travel as URL-safe base64 of the
raw 32 bytes, which is what the hub stores and what envelopes name.

At rest a key (and the hub's web secret) can be encrypted with a passphrase from the
environment: ``NDL_KEY_PASSPHRASE``, or ``NDL_KEY_PASSPHRASE_FILE`` naming a file that holds
it. Set, new PEMs are written with the best encryption ``cryptography`` offers and encrypted
ones are read back with it; unset, keys are plain PEM (the demo's default). A key that is
encrypted cannot be read without the right passphrase, and says so.

A key can be rotated: :class:`FileSigningKey` re-reads its file when it changes, so a running
hub or datasite signs with the new key as soon as the rotation command writes it.
:class:`KeyValidity` says when a public key may be believed (see :mod:`ndl.federation.keys`).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ndl.core.errors import InvalidInput, KeyLocked
from ndl.core.private import load_or_create

K = TypeVar("K", Ed25519PrivateKey, X25519PrivateKey)
PASSPHRASE_ENV = "NDL_KEY_PASSPHRASE"  # noqa: S105 - a variable name
PASSPHRASE_FILE_ENV = "NDL_KEY_PASSPHRASE_FILE"  # noqa: S105 - a variable name
_FIX = (f"set {PASSPHRASE_ENV} (or {PASSPHRASE_FILE_ENV}, a file holding it) to the "
        "passphrase the key was written with")


def passphrase(environ: Mapping[str, str] | None = None) -> bytes | None:
    """The passphrase keys at rest are encrypted with, if one is configured."""
    env = os.environ if environ is None else environ
    if env.get(PASSPHRASE_ENV):
        return env[PASSPHRASE_ENV].encode("utf-8")
    named = env.get(PASSPHRASE_FILE_ENV)
    if not named:
        return None
    try:
        text = Path(named).read_text("utf-8").rstrip("\r\n")
    except OSError as exc:
        raise KeyLocked(f"{PASSPHRASE_FILE_ENV} names {named}, which cannot be read ({exc}): "
                        "point it at the file holding the key passphrase") from exc
    if not text:
        raise KeyLocked(f"{named} (from {PASSPHRASE_FILE_ENV}) is empty: put the key "
                        "passphrase in it")
    return text.encode("utf-8")


def _encryption(pw: bytes | None) -> serialization.KeySerializationEncryption:
    return serialization.BestAvailableEncryption(pw) if pw else serialization.NoEncryption()


def private_pem(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    """The PEM a key is kept in: encrypted when a passphrase is configured."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             _encryption(passphrase()))


def read_private_pem(path: Path, data: bytes) -> Any:
    """Load a PEM private key, decrypting it with the configured passphrase if it is
    encrypted; a missing or wrong passphrase is refused with the fix."""
    pw = passphrase()
    encrypted = b"ENCRYPTED" in data.split(b"\n", 1)[0]
    if encrypted and pw is None:
        raise KeyLocked(f"{path} is encrypted and no passphrase is set: {_FIX}")
    try:
        return serialization.load_pem_private_key(data, password=pw if encrypted else None)
    except ValueError as exc:
        if encrypted:
            raise KeyLocked(f"{path} could not be decrypted: the passphrase is wrong. "
                            f"{_FIX[0].upper()}{_FIX[1:]}") from exc
        raise InvalidInput(f"{path} is not a PEM private key ({exc}); move it away") from exc


def load_or_create_pem(path: Path, kind: type, generate: Callable[[], K], name: str) -> K:
    """The private key of type ``kind`` in the PEM file ``path``, created with ``generate``
    (kept 0600, written atomically, encrypted if a passphrase is set) if it does not exist."""
    def load(data: bytes) -> K:
        loaded = read_private_pem(path, data)
        if not isinstance(loaded, kind):
            raise InvalidInput(f"{path} holds a key that is not {name}; move it away")
        return cast(K, loaded)

    def create() -> tuple[K, bytes]:
        key = generate()
        return key, private_pem(key)

    return load_or_create(path, load, create)


def write_pem(path: Path, key: Ed25519PrivateKey) -> None:
    """Replace the key in ``path`` atomically (mode 0600): a rotation's new key."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(private_pem(key))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# -- other secrets at rest (the hub's web secret) ----------------------------------------------
_SECRET_PREFIX = "ndl-enc-v1:"  # noqa: S105 - a format marker


def seal_secret(secret: bytes) -> str:
    """``secret`` as text to keep in a file: encrypted (scrypt + AES-GCM) under the configured
    passphrase, or as hex when none is set."""
    pw = passphrase()
    if pw is None:
        return secret.hex()
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    box = AESGCM(Scrypt(salt=salt, length=32, n=2**15, r=8, p=1).derive(pw))
    return _SECRET_PREFIX + b64e(salt + nonce + box.encrypt(nonce, secret, b"ndl-secret"))


def open_secret(text: str, path: Path) -> bytes:
    """The secret :func:`seal_secret` wrote (hex text is read as it is)."""
    if not text.startswith(_SECRET_PREFIX):
        return bytes.fromhex(text)
    pw = passphrase()
    if pw is None:
        raise KeyLocked(f"{path} is encrypted and no passphrase is set: {_FIX}")
    raw = b64d(text[len(_SECRET_PREFIX):])
    salt, nonce, sealed = raw[:16], raw[16:28], raw[28:]
    box = AESGCM(Scrypt(salt=salt, length=32, n=2**15, r=8, p=1).derive(pw))
    try:
        return box.decrypt(nonce, sealed, b"ndl-secret")
    except Exception as exc:  # cryptography's InvalidTag: wrong passphrase or altered file
        raise KeyLocked(f"{path} could not be decrypted: the passphrase is wrong (or the "
                        f"file was altered). {_FIX[0].upper()}{_FIX[1:]}") from exc


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

    def at_file(self, path: Path) -> None:
        """Write this key to ``path`` (replacing what is there, atomically)."""
        write_pem(path, self.private)


class FileSigningKey(SigningKey):
    """A signing key kept in a file, re-read when the file changes (a rotation replaced it),
    so long-running processes follow a rotation without a restart."""

    def __init__(self, path: Path) -> None:
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_lock", threading.Lock())
        object.__setattr__(self, "_stamp", None)
        object.__setattr__(self, "_key", None)
        self._reload()

    def _reload(self) -> Ed25519PrivateKey:
        path: Path = self._path  # type: ignore[attr-defined]
        try:
            st = path.stat()
            stamp: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:  # type: ignore[attr-defined]
            if stamp is None or stamp != self._stamp or self._key is None:  # type: ignore[attr-defined]
                key = load_or_create_pem(path, Ed25519PrivateKey, Ed25519PrivateKey.generate,
                                         "Ed25519")
                object.__setattr__(self, "_key", key)
                object.__setattr__(self, "_stamp", stamp)
            return cast(Ed25519PrivateKey, self._key)  # type: ignore[attr-defined]

    @property
    def private(self) -> Ed25519PrivateKey:
        return self._reload()

    @property
    def path(self) -> Path:
        return cast(Path, self._path)  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"FileSigningKey({self.path}, fingerprint={self.fingerprint})"


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


_FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")


def check_fingerprint(text: object) -> str:
    """Raise InvalidInput unless ``text`` is a key fingerprint (16 lowercase hex digits)."""
    if not isinstance(text, str) or not _FINGERPRINT.match(text):
        raise InvalidInput(f"{str(text)[:40]!r} is not a key fingerprint: give the 16 "
                           "lowercase hex digits 'ndl admin keys' lists")
    return text


# How far apart two machines' clocks may be when judging a key's validity window.
VALIDITY_SKEW = 60


@dataclass(frozen=True)
class KeyValidity:
    """When a public key may be believed: from ``not_before`` until ``retire_at`` (None: no
    end yet), never once revoked. Times are Unix seconds."""

    public_key: str
    not_before: int
    retire_at: int | None = None
    revoked_at: int | None = None

    def valid_at(self, t: float) -> bool:
        if self.revoked_at is not None:
            return False
        if t < self.not_before - VALIDITY_SKEW:
            return False
        return self.retire_at is None or t <= self.retire_at

    def to_json(self) -> dict[str, Any]:
        return {"public_key": self.public_key, "fingerprint": fingerprint(self.public_key),
                "not_before": self.not_before, "retire_at": self.retire_at,
                "revoked_at": self.revoked_at}

    @classmethod
    def from_json(cls, data: Any) -> KeyValidity:
        if not isinstance(data, dict):
            raise InvalidInput("a key's validity is an object with public_key and not_before")
        def when(name: str) -> int | None:
            v = data.get(name)
            if v is None:
                return None
            if isinstance(v, bool) or not isinstance(v, int):
                raise InvalidInput(f"a key's {name} must be a whole Unix time")
            return v
        return cls(check_public_key(str(data.get("public_key"))), when("not_before") or 0,
                   when("retire_at"), when("revoked_at"))


def keys_valid_at(keys: str | Sequence[KeyValidity], t: float) -> list[str]:
    """The public keys of ``keys`` valid at ``t`` (a bare key string is always valid)."""
    if isinstance(keys, str):
        return [keys]
    return [k.public_key for k in keys if k.valid_at(t)]


def verify_any(keys: Sequence[str], signature_b64: str, data: bytes) -> bool:
    return any(verify_signature(k, signature_b64, data) for k in keys)
