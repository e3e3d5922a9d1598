"""Parties besides the hub and datasites, their keys, and the relay of sealed payloads.

A party (an enclave today) registers like a datasite: a steward of its organisation (or an
admin) vouches with a token, and an envelope signed by the party's new Ed25519 key proves it
holds that key. Every party, datasites included, publishes an X25519 encryption key in a
signed envelope; others seal payloads to it (:mod:`ndl.core.sealed`).

The hub relays sealed payloads from party to party. It stores the ciphertext (inline up to
:data:`INLINE_MAX`, or as a sealed blob named by SHA-256), its size and hash, who sent it to
whom and the sender's signature over those; never a plaintext, never a key that opens one.
A recipient leases its inbox by long-polling, acknowledges, and the message is deleted then
(or when it expires).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from ndl.access.accounts import Principal, check_slug, get_org, official_actor
from ndl.core.db import utcnow
from ndl.core.envelope import seal as seal_envelope
from ndl.core.errors import (
    Conflict,
    EnvelopeRejected,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
)
from ndl.core.keys import SigningKey, check_public_key, fingerprint, verify_any
from ndl.core.sealed import Context, check_encryption_key, statement
from ndl.federation.models import Datasite
from ndl.federation.party_models import EncryptionKeyRecord, Party, PartyMessage
from ndl.ledger import register

HUB_ID = "hub"
PARTY_KINDS = ("enclave",)
# Inline ciphertext is for keys, small manifests and answers; a record set goes as a blob.
INLINE_MAX = 256 * 1024
DEFAULT_TTL = 24 * 3600
MAX_TTL = 7 * 24 * 3600
MAX_PER_POLL = 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PURPOSE = re.compile(r"^[a-z0-9][a-z0-9._:-]{0,99}$")


# -- who is who --------------------------------------------------------------------------------

@dataclass(frozen=True)
class PartyIdentity:
    """A signed caller resolved: ``principal`` is ``datasite:<id>`` or ``party:<id>``."""

    principal: str
    kind: str            # "datasite" or a party kind ("enclave")
    id: str
    public_key: str      # Ed25519


def envelope_sender(principal: str) -> str:
    """How a principal names itself as an envelope sender: datasites by their bare id (as
    they always have), other parties as ``party:<id>``."""
    kind, _, ident = principal.partition(":")
    return ident if kind == "datasite" else principal


def _principal_of_sender(sender: str) -> str:
    return sender if sender.startswith("party:") else f"datasite:{sender}"


def identity(session: Session, principal: str) -> PartyIdentity | None:
    """The registered datasite or party a principal string names, if any."""
    kind, sep, ident = principal.partition(":")
    if not sep:
        return None
    if kind == "datasite":
        site = session.get(Datasite, ident)
        return PartyIdentity(principal, "datasite", ident, site.public_key) if site else None
    if kind == "party":
        party = session.get(Party, ident)
        return PartyIdentity(principal, party.kind, ident, party.public_key) if party else None
    return None


def identity_of_sender(session: Session, sender: object) -> PartyIdentity | None:
    """The identity behind an envelope's ``sender`` field (bare datasite id or party:<id>)."""
    if not isinstance(sender, str) or not sender:
        return None
    return identity(session, _principal_of_sender(sender))


def require_identity(session: Session, principal: object, what: str = "party") -> PartyIdentity:
    if not isinstance(principal, str) or not re.fullmatch(r"(datasite|party):[a-z0-9-]{2,63}",
                                                          principal):
        raise InvalidInput(f"{what} {principal!r} is not valid: name parties as "
                           "'datasite:<id>' or 'party:<id>', e.g. 'party:enclave-1'")
    found = identity(session, principal)
    if found is None:
        raise NotFound(f"{what} {principal!r} is not registered with this hub")
    return found


# -- registration and keys --------------------------------------------------------------------

@dataclass(frozen=True)
class PartyInfo:
    principal: str
    id: str
    kind: str
    org: str
    name: str
    public_key: str
    encryption_key: str | None
    registered_at: str

    def to_json(self) -> dict[str, Any]:
        return {"principal": self.principal, "id": self.id, "kind": self.kind, "org": self.org,
                "name": self.name, "public_key": self.public_key,
                "encryption_key": self.encryption_key, "registered_at": self.registered_at}


@dataclass(frozen=True)
class PartyKeys:
    """What a sender needs to seal to a party: its keys and the envelope that published the
    encryption key, signed by the party's own signing key."""

    principal: str
    kind: str
    signing_key: str
    encryption_key: str | None
    fingerprint: str | None
    proof: dict[str, Any] | None
    updated_at: str | None

    def to_json(self) -> dict[str, Any]:
        return {"principal": self.principal, "kind": self.kind, "signing_key": self.signing_key,
                "encryption_key": self.encryption_key, "fingerprint": self.fingerprint,
                "proof": self.proof, "updated_at": self.updated_at}


def _info(session: Session, party: Party) -> PartyInfo:
    rec = session.get(EncryptionKeyRecord, f"party:{party.id}")
    return PartyInfo(f"party:{party.id}", party.id, party.kind, party.org_id, party.name,
                     party.public_key, rec.public_key if rec else None,
                     party.registered_at.isoformat())


def register_party(
    session: Session, key: SigningKey, who: Principal, *, party_id: str, kind: str,
    org_id: str, name: str, public_key: str, encryption_key: object, proof: dict[str, Any],
) -> tuple[PartyInfo, bool]:
    """Record a party's keys. Only a steward of its organisation (or an admin) may; ``proof``
    is the registration envelope, already checked as signed by ``public_key``."""
    check_slug(party_id, "party id")
    if kind not in PARTY_KINDS:
        raise InvalidInput(f"party kind {kind!r} is not known: use one of "
                           f"{', '.join(PARTY_KINDS)} (datasites register as datasites)")
    check_public_key(public_key)
    encryption_key = check_encryption_key(encryption_key)
    get_org(session, org_id)
    if not (who.has("admin") or (who.has("steward") and who.org_id == org_id)):
        raise PermissionDenied(
            f"only a data steward of {org_id!r} or an admin can register a party for it")
    existing = session.get(Party, party_id)
    if existing is not None:
        if (existing.public_key != public_key or existing.org_id != org_id
                or existing.kind != kind):
            raise Conflict(f"party {party_id!r} is already registered with another key, kind "
                           "or organisation; ask an admin to retire it before re-registering")
        publish_key(session, key, PartyIdentity(f"party:{party_id}", kind, party_id,
                                                public_key), encryption_key, proof)
        return _info(session, existing), False
    taken = (session.scalar(select(Party).where(Party.public_key == public_key)) is not None
             or session.scalar(select(Datasite).where(Datasite.public_key == public_key))
             is not None)
    if taken:
        raise Conflict("that signing key already belongs to another party or datasite")
    party = Party(id=party_id, kind=kind, org_id=org_id, name=name or party_id,
                  public_key=public_key)
    session.add(party)
    session.flush()
    register.append(session, key, kind="party.registered", actor=official_actor(who),
                    subject=f"party:{party_id}",
                    payload={"kind": kind, "org": org_id, "public_key": public_key,
                             "encryption_key_fingerprint": fingerprint(encryption_key)})
    publish_key(session, key, PartyIdentity(f"party:{party_id}", kind, party_id, public_key),
                encryption_key, proof, announce=False)
    return _info(session, party), True


def publish_key(session: Session, key: SigningKey, who: PartyIdentity, encryption_key: object,
                proof: dict[str, Any], *, announce: bool = True) -> tuple[PartyKeys, bool]:
    """Set the X25519 key others seal to for ``who``; True if it changed.

    A change is a register entry (``party.key_changed``) naming both fingerprints, so a
    substituted key is visible in the public register.
    """
    new_key = check_encryption_key(encryption_key)
    rec = session.get(EncryptionKeyRecord, who.principal)
    if rec is not None and rec.public_key == new_key:
        return keys_of(session, who.principal), False
    before = fingerprint(rec.public_key) if rec is not None else None
    if rec is None:
        rec = EncryptionKeyRecord(principal=who.principal, public_key=new_key, proof=proof)
        session.add(rec)
    else:
        rec.public_key, rec.proof, rec.updated_at = new_key, proof, utcnow()
    session.flush()
    if announce or before is not None:
        register.append(session, key, kind="party.key_changed", actor=who.principal,
                        subject=who.principal,
                        payload={"fingerprint": fingerprint(new_key),
                                 "previous_fingerprint": before})
    return keys_of(session, who.principal), True


def keys_of(session: Session, principal: str) -> PartyKeys:
    who = require_identity(session, principal)
    rec = session.get(EncryptionKeyRecord, principal)
    return PartyKeys(principal, who.kind, who.public_key,
                     rec.public_key if rec else None,
                     fingerprint(rec.public_key) if rec else None,
                     rec.proof if rec else None,
                     rec.updated_at.isoformat() if rec else None)


def list_parties(session: Session) -> list[PartyInfo]:
    return [_info(session, p) for p in session.scalars(select(Party).order_by(Party.id))]


def touch(session: Session, who: PartyIdentity) -> None:
    if who.kind != "datasite":
        party = session.get(Party, who.id)
        if party is not None:
            party.last_seen_at = utcnow()


# -- the relay --------------------------------------------------------------------------------

@dataclass(frozen=True)
class SendRequest:
    """A parsed ``party.send`` body."""

    to: str
    purpose: str
    sha256: str
    size: int
    sender_sig: str
    ttl: int
    ciphertext: bytes | None
    blob_sha256: str | None


@dataclass(frozen=True)
class SentMessage:
    message_id: str
    recipient: str
    sha256: str
    size: int
    expires_at: str

    def to_json(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "to": self.recipient, "sha256": self.sha256,
                "size": self.size, "expires_at": self.expires_at}


def _int(body: dict[str, Any], field: str, default: int | None = None) -> int:
    value = body.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{field} must be a whole number, got {value!r}")
    return value


def parse_send(body: dict[str, Any]) -> SendRequest:
    """Check a send body's shape (no database needed); limits are stated in each refusal."""
    purpose = body.get("purpose")
    if not isinstance(purpose, str) or not _PURPOSE.match(purpose):
        raise InvalidInput("purpose must be a short label of lowercase letters, digits and "
                           "._:- (at most 100), e.g. 'linkage.records'")
    sha = body.get("sha256")
    if not isinstance(sha, str) or not _SHA256.match(sha):
        raise InvalidInput("sha256 must be the 64 lowercase hex digits of the ciphertext's "
                           "SHA-256")
    sig = body.get("sender_sig")
    if not isinstance(sig, str) or not 20 <= len(sig) <= 100:
        raise InvalidInput("sender_sig must be the sender's Ed25519 signature over the sealed "
                           "statement (ndl.core.sealed.statement), URL-safe base64")
    ttl = _int(body, "ttl", DEFAULT_TTL)
    if not 60 <= ttl <= MAX_TTL:
        raise InvalidInput(f"ttl must be between 60 and {MAX_TTL} seconds, got {ttl}")
    size = _int(body, "size")
    inline, blob = body.get("ciphertext_b64"), body.get("blob_sha256")
    if (inline is None) == (blob is None):
        raise InvalidInput("give exactly one of ciphertext_b64 (inline, up to "
                           f"{INLINE_MAX:,} bytes) or blob_sha256 (a sealed blob you uploaded)")
    ciphertext = None
    if inline is not None:
        if not isinstance(inline, str):
            raise InvalidInput("ciphertext_b64 must be a base64 string")
        # Refuse by length before decoding: base64 is 4/3 of the bytes.
        if len(inline) > (INLINE_MAX + 2) // 3 * 4 + 4:
            raise PayloadTooLarge(
                f"inline ciphertext is over the {INLINE_MAX:,} byte limit: upload it as a "
                "sealed blob and send its blob_sha256 instead")
        try:
            ciphertext = base64.b64decode(inline, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput("ciphertext_b64 is not valid base64") from exc
        if len(ciphertext) > INLINE_MAX:
            raise PayloadTooLarge(
                f"inline ciphertext is {len(ciphertext):,} bytes, over the {INLINE_MAX:,} "
                "byte limit: upload it as a sealed blob and send its blob_sha256 instead")
        if hashlib.sha256(ciphertext).hexdigest() != sha or len(ciphertext) != size:
            raise InvalidInput("sha256 and size must be those of ciphertext_b64's bytes: the "
                               "ciphertext was altered or the fields were filled in wrong")
    elif not isinstance(blob, str) or blob != sha:
        raise InvalidInput("blob_sha256 must equal sha256: name the sealed blob you uploaded")
    return SendRequest(str(body.get("to")), purpose, sha, size, sig, ttl, ciphertext,
                       blob if isinstance(blob, str) else None)


def send(session: Session, sender: PartyIdentity, req: SendRequest) -> SentMessage:
    """Queue a sealed payload for ``req.to``, after checking the sender signed its statement."""
    recipient = require_identity(session, req.to, "recipient")
    if recipient.principal == sender.principal:
        raise InvalidInput("a party cannot send a sealed payload to itself")
    context = Context(sender.principal, recipient.principal, req.purpose)
    # Any key the sender may sign with now (a rotation's overlap), never a revoked one.
    from ndl.federation.key_service import accepted_keys

    if not verify_any(accepted_keys(session, sender.principal, sender.public_key),
                      req.sender_sig, statement(context, req.sha256, req.size)):
        raise EnvelopeRejected(
            "sender_sig is not the sender's signature over {from, to, purpose, sha256, size}: "
            "sign ndl.core.sealed.statement(...) with the key you registered")
    if req.blob_sha256 is not None:
        _share_blob(session, sender, recipient, req)
    if session.scalar(select(PartyMessage.id).where(
            PartyMessage.recipient == recipient.principal,
            PartyMessage.sha256 == req.sha256)) is not None:
        raise Conflict("this ciphertext is already waiting for that recipient: a payload is "
                       "delivered once (seal it afresh to send it again)")
    now = utcnow()
    msg = PartyMessage(
        id=str(uuid.uuid4()), sender=sender.principal, recipient=recipient.principal,
        purpose=req.purpose, sha256=req.sha256, size=req.size, ciphertext=req.ciphertext,
        blob_sha256=req.blob_sha256, sender_sig=req.sender_sig, state="queued",
        created_at=now, expires_at=now + timedelta(seconds=req.ttl))
    session.add(msg)
    return SentMessage(msg.id, recipient.principal, req.sha256, req.size,
                       msg.expires_at.isoformat())


def _share_blob(session: Session, sender: PartyIdentity, recipient: PartyIdentity,
                req: SendRequest) -> None:
    """Let the recipient read the sender's sealed blob (blobs are private to their owner)."""
    try:
        from ndl.federation import blob_service
    except ImportError as exc:  # a hub built without the blob store relays inline only
        raise InvalidInput(f"this hub has no blob store: send the ciphertext inline (up to "
                           f"{INLINE_MAX:,} bytes)") from exc
    info = blob_service.blob_info(session, req.blob_sha256 or "")
    if info is None or not info.complete:
        raise NotFound(f"no complete blob {req.blob_sha256} at the hub: finish uploading the "
                       "sealed file first")
    if info.owner != sender.principal:
        raise PermissionDenied("that blob is not yours to send: upload your own sealed copy")
    if info.size != req.size:
        raise InvalidInput(f"size {req.size} is not the blob's size {info.size}")
    blob_service.allow_reader(session, info.sha256, recipient.principal)


def sweep_expired(session: Session) -> int:
    """Delete messages nobody acknowledged before they expired."""
    result = session.execute(delete(PartyMessage).where(PartyMessage.expires_at <= utcnow()))
    return int(getattr(result, "rowcount", 0) or 0)


def lease_inbox(session: Session, key: SigningKey, who: PartyIdentity, *,
                lease_seconds: float, limit: int = MAX_PER_POLL) -> list[dict[str, Any]]:
    """Hand out the recipient's deliverable messages as envelopes signed by the hub.

    Each carries the ciphertext (or its blob's hash), the sender, the purpose and the
    sender's signature over them, so the recipient checks the sender itself.
    """
    now = utcnow()
    touch(session, who)
    sweep_expired(session)
    msgs = session.scalars(
        select(PartyMessage)
        .where(PartyMessage.recipient == who.principal, PartyMessage.expires_at > now)
        .where(or_(PartyMessage.state == "queued",
                   (PartyMessage.state == "leased") & (PartyMessage.lease_until < now)))
        .order_by(PartyMessage.created_at).limit(max(0, min(limit, MAX_PER_POLL)))).all()
    out = []
    for m in msgs:
        m.state, m.attempts = "leased", m.attempts + 1
        m.lease_until = now + timedelta(seconds=lease_seconds)
        body: dict[str, Any] = {
            "message_id": m.id, "from": m.sender, "purpose": m.purpose, "sha256": m.sha256,
            "size": m.size, "sender_sig": m.sender_sig, "attempt": m.attempts,
            "lease_seconds": lease_seconds, "expires_at": m.expires_at.isoformat()}
        if m.ciphertext is not None:
            body["ciphertext_b64"] = base64.b64encode(m.ciphertext).decode("ascii")
        else:
            body["blob_sha256"] = m.blob_sha256
        ttl = max(1, min(600, int((m.expires_at - now).total_seconds())))
        out.append(seal_envelope(key, sender=HUB_ID, recipient=envelope_sender(who.principal),
                                 kind="party.message", body=body, ttl=ttl))
    return out


def acknowledge(session: Session, who: PartyIdentity, message_ids: list[str]) -> list[str]:
    """Delete the recipient's messages it has taken; ids not its own are ignored (a party
    cannot touch another's inbox), so an acknowledgement replayed later changes nothing."""
    if not message_ids:
        return []
    msgs = session.scalars(select(PartyMessage).where(
        PartyMessage.id.in_(message_ids), PartyMessage.recipient == who.principal)).all()
    done = []
    for m in msgs:
        done.append(m.id)
        if m.blob_sha256 is not None:
            from ndl.federation import blob_service

            blob_service.mark_delivered(session, m.blob_sha256)  # the sweep removes it
        session.delete(m)
    return done

