"""A party's side of the relay: register, publish keys, send sealed payloads, read the inbox.

Used by enclaves (and any datasite that sends or receives sealed payloads) over plain HTTPS to
the hub. Everything the hub hands over is checked here, not trusted: each inbox envelope must
carry the hub's signature, each payload the sender's signature over its statement, and each
ciphertext must open for exactly this sender, recipient and purpose. A peer's encryption key
is taken only with its holder's signature on it.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from ndl.core.envelope import MemoryReplayGuard, open_envelope, seal
from ndl.core.envelope import _signing_bytes as envelope_signing_bytes
from ndl.core.errors import EnvelopeRejected
from ndl.core.keys import KeyValidity, SigningKey, keys_valid_at, verify_signature
from ndl.core.sealed import (
    Context,
    EncryptionKey,
    OpenedFile,
    open_file,
    open_sealed,
    seal_file,
    statement,
)
from ndl.core.sealed import seal as seal_payload
from ndl.core.transport import check_hub_url
from ndl.federation.key_service import ROTATE_KIND, follow_hub_keys, rotation_body
from ndl.federation.parties import HUB_ID, envelope_sender
from ndl.hubclient import Client


@dataclass(frozen=True)
class PeerKeys:
    """A peer's keys, checked: its encryption key carries its own signature."""

    principal: str
    signing_key: str
    encryption_key: str
    fingerprint: str


@dataclass(frozen=True)
class Received:
    """One payload from the inbox, its sender's signature and its ciphertext checked.

    ``plaintext`` is the opened payload for inline messages; a blob message names the sealed
    blob (``blob_sha256``) to download and open with :func:`ndl.core.sealed.open_file`.
    """

    message_id: str
    sender: str
    purpose: str
    sha256: str
    size: int
    plaintext: bytes | None
    blob_sha256: str | None
    context: Context


class PartyClient:
    """One party talking to one hub, signing every call with its own key."""

    def __init__(self, hub_url: str, *, principal: str, signing_key: SigningKey,
                 encryption_key: EncryptionKey | None = None, hub_key: str | None = None,
                 http: httpx.Client | None = None, timeout: float = 60.0) -> None:
        self.principal, self.key, self.encryption_key = principal, signing_key, encryption_key
        self.sender = envelope_sender(principal)
        if http is None:  # a client handed in is its owner's to vet (tests: in-process)
            check_hub_url(hub_url)
        self.http = http or httpx.Client(base_url=hub_url.rstrip("/"), timeout=timeout)
        self._owns_http = http is None
        self.hub_key = hub_key
        self.guard = MemoryReplayGuard()
        self._hub_ring: list[KeyValidity] | None = None
        self._peers: dict[str, PeerKeys] = {}

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> PartyClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------
    def envelope(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        return seal(self.key, sender=self.sender, recipient=HUB_ID, kind=kind, body=body)

    def post(self, path: str, kind: str, body: dict[str, Any],
             headers: dict[str, str] | None = None) -> dict[str, Any]:
        return Client.over(self.http).post_envelope(path, self.envelope(kind, body), headers)

    def _get(self, path: str) -> Any:
        return Client.over(self.http)._request("GET", path)

    def _hub_key(self) -> str:
        if self.hub_key is None:
            self.hub_key = str(self._get("/api/federation/hub-key")["public_key"])
        return self.hub_key

    def hub_keys(self, *, refresh: bool = False) -> list[KeyValidity]:
        """The hub keys this party believes: the one it pinned, then each key a believed key
        endorsed in a rotation (ndl.federation.key_service.follow_hub_keys)."""
        if self._hub_ring is None:
            self._hub_ring = [KeyValidity(self._hub_key(), 0)]
        if refresh:
            self._hub_ring = follow_hub_keys(self._hub_ring,
                                             self._get("/api/federation/hub-key"))
        return self._hub_ring

    def rotate_key(self, new_key: SigningKey, *, overlap: int = 3600) -> dict[str, Any]:
        """Rotate this party's signing key: the request is signed with the current key and
        carries the new key's proof; the old key stays valid for ``overlap`` seconds. The
        client signs with ``new_key`` from then on (keep it: its file is yours to write)."""
        out = self.post("/api/federation/rotate-key", ROTATE_KIND,
                        rotation_body(self.key, new_key, self.principal, overlap))
        self.key = new_key
        return out

    # -- identity ---------------------------------------------------------------------------
    def register(self, token: str, *, kind: str, org: str, name: str = "") -> dict[str, Any]:
        """Register this party (a steward's or admin's ``token`` vouches for it)."""
        if self.encryption_key is None:
            raise EnvelopeRejected("a party registers with an encryption key: pass one")
        out = self.post("/api/federation/party-register", "party.register", {
            "party_id": self.principal.removeprefix("party:"), "kind": kind, "org": org,
            "name": name, "public_key": self.key.public_b64,
            "encryption_key": self.encryption_key.public_b64},
            headers={"Authorization": f"Bearer {token}"})
        if self.hub_key is not None and out["hub_public_key"] != self.hub_key:
            raise EnvelopeRejected("the hub's public key is not the one pinned: refusing it")
        self.hub_key = str(out["hub_public_key"])
        return out

    def publish_key(self) -> dict[str, Any]:
        """Publish (or rotate to) this party's encryption key, signed by its signing key."""
        if self.encryption_key is None:
            raise EnvelopeRejected("no encryption key to publish")
        return self.post("/api/federation/party-keys", "party.keys",
                         {"encryption_key": self.encryption_key.public_b64})

    def keys_of(self, principal: str) -> PeerKeys:
        """A peer's keys, taken only if the peer signed the encryption key itself."""
        if principal in self._peers:
            return self._peers[principal]
        data = self._get(f"/api/parties/{quote(principal, safe='')}/keys")
        proof, enc, signing = data.get("proof"), data.get("encryption_key"), data["signing_key"]
        if not enc or not isinstance(proof, dict):
            raise EnvelopeRejected(f"{principal} has published no encryption key yet")
        body = proof.get("body") or {}
        try:
            signed = verify_signature(signing, str(proof.get("sig")),
                                      envelope_signing_bytes(proof))
        except (KeyError, TypeError):
            signed = False
        if not signed or body.get("encryption_key") != enc or proof.get("sender") != \
                envelope_sender(principal):
            raise EnvelopeRejected(f"the encryption key the hub gave for {principal} is not "
                                   "signed by that party's own key: refusing to seal to it")
        peer = PeerKeys(principal, signing, enc, str(data.get("fingerprint")))
        self._peers[principal] = peer
        return peer

    # -- the relay --------------------------------------------------------------------------
    def send(self, to: str, purpose: str, plaintext: bytes, *, ttl: int | None = None
             ) -> dict[str, Any]:
        """Seal ``plaintext`` to ``to``'s key and hand the ciphertext to the hub."""
        peer = self.keys_of(to)
        context = Context(self.principal, to, purpose)
        sealed = seal_payload(plaintext, peer.encryption_key, context)
        body: dict[str, Any] = {
            "to": to, "purpose": purpose, "sha256": sealed.sha256, "size": sealed.size,
            "sender_sig": self.key.sign(statement(context, sealed.sha256, sealed.size)),
            "ciphertext_b64": base64.b64encode(sealed.ciphertext).decode("ascii")}
        if ttl is not None:
            body["ttl"] = ttl
        return self.post("/api/federation/party-send", "party.send", body)

    def send_blob(self, to: str, purpose: str, sha256: str, size: int, *,
                  ttl: int | None = None) -> dict[str, Any]:
        """Send a sealed file this party already uploaded as a blob (by its hash)."""
        context = Context(self.principal, to, purpose)
        body: dict[str, Any] = {
            "to": to, "purpose": purpose, "sha256": sha256, "size": size,
            "blob_sha256": sha256,
            "sender_sig": self.key.sign(statement(context, sha256, size))}
        if ttl is not None:
            body["ttl"] = ttl
        return self.post("/api/federation/party-send", "party.send", body)

    def send_file(self, to: str, purpose: str, path: Path, *, workdir: Path,
                  ttl: int | None = None) -> dict[str, Any]:
        """Seal a file of any size to ``to`` in chunks (memory stays flat), upload the
        ciphertext as a ``sealed`` blob, and send its hash. The plaintext never leaves here."""
        from ndl.federation.blob_client import upload_file

        peer = self.keys_of(to)
        context = Context(self.principal, to, purpose)
        sealed_path = workdir / (path.name + ".sealed")
        try:
            info = seal_file(path, sealed_path, peer.encryption_key, context)
            upload_file(self.http, path=sealed_path, kind="sealed", sign=self.envelope,
                        sha256=info.sha256)
        finally:
            sealed_path.unlink(missing_ok=True)
        return self.send_blob(to, purpose, info.sha256, info.size, ttl=ttl)

    def open_blob(self, received: Received, dest: Path) -> OpenedFile:
        """Download a received sealed blob (hash checked) and open it into ``dest``."""
        from ndl.federation.blob_client import download

        if received.blob_sha256 is None:
            raise EnvelopeRejected(f"message {received.message_id} carries no blob")
        if self.encryption_key is None:
            raise EnvelopeRejected("no encryption key to open sealed payloads with")
        sealed_path = dest.with_name(dest.name + ".sealed")
        try:
            download(self.http, f"/api/blobs/{received.blob_sha256}", sealed_path,
                     sha256=received.blob_sha256, sign=self.envelope)
            return open_file(sealed_path, dest, self.encryption_key, received.context)
        finally:
            sealed_path.unlink(missing_ok=True)

    def receive(self, *, wait: float = 0.0, limit: int = 20) -> list[Received]:
        """Lease what is waiting (long-polling up to ``wait`` s), each payload checked and
        opened. Acknowledge with :meth:`ack` once handled, or it is offered again."""
        data = self.post("/api/federation/party-inbox", "party.poll",
                         {"wait": wait, "limit": limit})
        return [self._open(env) for env in data.get("messages", [])]

    def _open(self, env: dict[str, Any]) -> Received:
        def keys(sender: str) -> list[str] | None:
            return keys_valid_at(self.hub_keys(), time.time()) if sender == HUB_ID else None

        try:
            opened = open_envelope(env, public_key_for=keys, recipient=self.sender,
                                   guard=self.guard, kinds=("party.message",))
        except EnvelopeRejected:
            # Perhaps signed by the hub's next key: follow a rotation, then look once more.
            if self.hub_keys() == self.hub_keys(refresh=True):
                raise
            opened = open_envelope(env, public_key_for=keys, recipient=self.sender,
                                   guard=self.guard, kinds=("party.message",))
        b = opened["body"]
        sender, purpose = str(b["from"]), str(b["purpose"])
        sha, size = str(b["sha256"]), int(b["size"])
        context = Context(sender, self.principal, purpose)
        peer_key = self.keys_of(sender).signing_key
        if not verify_signature(peer_key, str(b["sender_sig"]), statement(context, sha, size)):
            raise EnvelopeRejected(f"message {b['message_id']} does not carry {sender}'s "
                                   "signature: it was not sent by them, or was altered")
        plaintext = None
        if "ciphertext_b64" in b:
            ciphertext = base64.b64decode(b["ciphertext_b64"])
            if hashlib.sha256(ciphertext).hexdigest() != sha:
                raise EnvelopeRejected(f"message {b['message_id']}'s ciphertext is not the one "
                                       "its sender signed")
            if self.encryption_key is None:
                raise EnvelopeRejected("no encryption key to open sealed payloads with")
            plaintext = open_sealed(ciphertext, self.encryption_key, context)
        return Received(str(b["message_id"]), sender, purpose, sha, size, plaintext,
                        b.get("blob_sha256"), context)

    def ack(self, message_ids: list[str]) -> list[str]:
        out = self.post("/api/federation/party-ack", "party.ack", {"message_ids": message_ids})
        return list(out["acknowledged"])

    # -- coordination -----------------------------------------------------------------------
    def coordination(self, action: str, coordination_id: str, **fields: Any) -> dict[str, Any]:
        """``action`` is inspect, approve, contribute, withdraw or complete."""
        return self.post(f"/api/federation/coordination-{action}", f"coordination.{action}",
                         {"coordination_id": coordination_id, **fields})


__all__ = ["PartyClient", "PeerKeys", "Received"]
