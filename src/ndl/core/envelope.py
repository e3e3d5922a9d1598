"""Signed envelopes: every hub <-> datasite message travels in one.

An envelope names its sender and recipient, carries a random nonce, an issue time and an
expiry, and is signed with the sender's Ed25519 key over the RFC 8785 canonical JSON of every
field but the signature. :func:`open_envelope` refuses forged, altered, misaddressed, expired
and replayed envelopes; a sender may hold more than one valid key at once (the overlap of a
key rotation), so ``public_key_for`` may name several, and any one of them signing is enough.
The replay check is delegated to a :class:`ReplayGuard` so the hub
(SQL) and the datasite (its own state file) each keep their own memory of nonces.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import rfc8785

from ndl.core.errors import EnvelopeRejected
from ndl.core.keys import SigningKey, verify_any

VERSION = 1
DEFAULT_TTL = 120
MAX_TTL = 600
# Clocks on an organisation's network drift; allow this much skew on "issued in the future".
CLOCK_SKEW = 60

_SIGNED_FIELDS = ("v", "kind", "sender", "recipient", "nonce", "iat", "exp", "body")


class ReplayGuard(Protocol):
    def claim(self, sender: str, nonce: str, expires_at: int) -> bool:
        """Record the nonce; return False if it was seen before (a replay)."""
        ...


class MemoryReplayGuard:
    """A replay guard for one process; used in tests and by short-lived clients."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], int] = {}

    def claim(self, sender: str, nonce: str, expires_at: int) -> bool:
        now = int(time.time())
        self._seen = {k: v for k, v in self._seen.items() if v >= now - CLOCK_SKEW}
        if (sender, nonce) in self._seen:
            return False
        self._seen[(sender, nonce)] = expires_at
        return True


def _signing_bytes(env: dict[str, Any]) -> bytes:
    return rfc8785.dumps({k: env[k] for k in _SIGNED_FIELDS})


def seal(
    key: SigningKey,
    *,
    sender: str,
    recipient: str,
    kind: str,
    body: dict[str, Any],
    ttl: int = DEFAULT_TTL,
    now: float | None = None,
) -> dict[str, Any]:
    """Build and sign an envelope."""
    issued = int(now if now is not None else time.time())
    env: dict[str, Any] = {
        "v": VERSION,
        "kind": kind,
        "sender": sender,
        "recipient": recipient,
        "nonce": secrets.token_urlsafe(18),
        "iat": issued,
        "exp": issued + min(ttl, MAX_TTL),
        "body": body,
    }
    env["sig"] = key.sign(_signing_bytes(env))
    return env


def open_envelope(
    env: Any,
    *,
    public_key_for: Callable[[str], str | Sequence[str] | None],
    recipient: str,
    guard: ReplayGuard,
    kinds: tuple[str, ...] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Verify an envelope and return it. Raises EnvelopeRejected saying why."""
    if not isinstance(env, dict) or not all(k in env for k in (*_SIGNED_FIELDS, "sig")):
        raise EnvelopeRejected(
            "not a signed envelope: it needs v, kind, sender, recipient, nonce, iat, exp, "
            "body and sig"
        )
    if env["v"] != VERSION:
        raise EnvelopeRejected(f"envelope version {env['v']!r} is not supported (want 1)")
    if kinds is not None and env["kind"] not in kinds:
        raise EnvelopeRejected(f"envelope kind {env['kind']!r} is not accepted here")
    if env["recipient"] != recipient:
        raise EnvelopeRejected(f"envelope is addressed to {env['recipient']!r}, not {recipient!r}")
    found = public_key_for(str(env["sender"]))
    if found is None:
        raise EnvelopeRejected(f"unknown sender {env['sender']!r}: register it first")
    keys = [found] if isinstance(found, str) else list(found)
    if not keys:
        raise EnvelopeRejected(
            f"sender {env['sender']!r} has no key valid now: its keys were revoked or retired "
            "(rotate to a new key, or ask the hub's admin)")
    try:
        signed = _signing_bytes(env)
    except (ValueError, TypeError) as exc:  # rfc8785 cannot canonicalise NaN, 2**53+, ...
        raise EnvelopeRejected(
            f"not a signable envelope ({exc}): JSON numbers must be finite and within "
            "+-(2**53 - 1); send such values as text") from exc
    if not isinstance(env["sig"], str) or not verify_any(keys, env["sig"], signed):
        raise EnvelopeRejected("bad signature: the envelope was forged or altered in transit")
    t = int(now if now is not None else time.time())
    iat, exp = env["iat"], env["exp"]
    if not isinstance(iat, int) or not isinstance(exp, int):
        raise EnvelopeRejected("iat and exp must be integer Unix times")
    if iat > t + CLOCK_SKEW:
        raise EnvelopeRejected("envelope was issued in the future: check the sender's clock")
    if exp - iat > MAX_TTL:
        raise EnvelopeRejected(f"envelope lifetime {exp - iat}s exceeds the {MAX_TTL}s maximum")
    if exp < t:
        raise EnvelopeRejected(f"envelope expired {t - exp}s ago: send a fresh one")
    if not guard.claim(str(env["sender"]), str(env["nonce"]), exp):
        raise EnvelopeRejected("replayed envelope: this nonce was already used")
    return env
