"""Signing keys over time: rotation with an overlap, revocation, and which keys to believe.

Every principal that signs (the hub, each datasite, each party) has one *current* key and
may have others still valid: a key it rotated away from stays valid until the end of the
overlap (``retire_at``), so messages already signed, queued or in flight are still accepted.
A revoked key is refused at once, everywhere, whatever was signed with it.

* A datasite or party rotates by sending ``key.rotate`` signed with its current key and
  carrying the new key's signature over the same request (proof it holds the new key).
* The hub rotates with ``ndl admin rotate-hub-key``: the old key signs a statement naming the
  new one, which datasites and parties check before they believe the new key
  (:func:`follow_hub_keys`), so they follow the rotation without a restart or a re-pin.
* Documents the hub signed (grants, approvals) are checked against the hub keys valid when
  they were *issued*: a grant signed by a retired hub key is good until it expires; one
  signed by a revoked key is not.

Every rotation and revocation is a register entry. Tables: :mod:`ndl.federation.key_models`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import rfc8785
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ndl.access import rules
from ndl.access.accounts import Principal, official_actor
from ndl.core.db import Database, utcnow
from ndl.core.envelope import _signing_bytes
from ndl.core.errors import Conflict, EnvelopeRejected, InvalidInput, NotFound
from ndl.core.keys import (
    KeyValidity,
    SigningKey,
    check_fingerprint,
    check_public_key,
    fingerprint,
    verify_signature,
    write_pem,
)
from ndl.federation.key_models import SigningKeyRecord
from ndl.federation.models import Datasite
from ndl.federation.party_models import Party
from ndl.ledger import register

HUB = "hub"
ROTATE_KIND = "key.rotate"
MAX_OVERLAP = 30 * 24 * 3600
_REASON_MAX = 500


def _ts(when: datetime | None) -> int | None:
    return int(when.timestamp()) if when is not None else None


def state_of(rec: SigningKeyRecord, now: datetime | None = None) -> str:
    """``active``, ``retiring`` (in its overlap), ``retired`` or ``revoked``."""
    now = now or utcnow()
    if rec.revoked_at is not None:
        return "revoked"
    if rec.retire_at is None:
        return "active"
    return "retiring" if rec.retire_at > now else "retired"


def validity(rec: SigningKeyRecord) -> KeyValidity:
    return KeyValidity(rec.public_key, _ts(rec.not_before) or 0, _ts(rec.retire_at),
                       _ts(rec.revoked_at))


@dataclass(frozen=True)
class KeyInfo:
    """One key as the hub records it (public, shown to anyone)."""

    owner: str
    fingerprint: str
    public_key: str
    state: str
    not_before: str
    retire_at: str | None
    revoked_at: str | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"owner": self.owner, "fingerprint": self.fingerprint,
                "public_key": self.public_key, "state": self.state,
                "not_before": self.not_before, "retire_at": self.retire_at,
                "revoked_at": self.revoked_at, "reason": self.reason}


def info(rec: SigningKeyRecord, now: datetime | None = None) -> KeyInfo:
    return KeyInfo(rec.owner, rec.fingerprint, rec.public_key, state_of(rec, now),
                   rec.not_before.isoformat(),
                   rec.retire_at.isoformat() if rec.retire_at else None,
                   rec.revoked_at.isoformat() if rec.revoked_at else None, rec.reason)


def parse_overlap(text: str | int | float) -> int:
    """Seconds from ``90``, ``90s``, ``30m``, ``12h`` or ``1d``; from 0 to 30 days."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    raw = str(text).strip().lower()
    try:
        seconds = (float(raw[:-1]) * units[raw[-1]]) if raw and raw[-1] in units else float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_OVERLAP or seconds != seconds:
        raise InvalidInput(f"overlap {str(text)[:20]!r} is not a time from 0 to 30 days: "
                           "write e.g. 3600, 30m, 12h or 1d")
    return int(seconds)


# -- lookups ----------------------------------------------------------------------------------

def _rows(session: Session, owner: str) -> list[SigningKeyRecord]:
    return list(session.scalars(select(SigningKeyRecord).where(SigningKeyRecord.owner == owner)
                                .order_by(SigningKeyRecord.not_before, SigningKeyRecord.id)))


def _by_key(session: Session, public_key: str) -> SigningKeyRecord | None:
    return session.scalar(select(SigningKeyRecord)
                          .where(SigningKeyRecord.public_key == public_key))


def accepted_keys(session: Session, owner: str, current: str,
                  now: datetime | None = None) -> list[str]:
    """The public keys ``owner`` may sign with now: its current key unless revoked, and any
    earlier key still in its overlap. A current key registered before keys had rows (or by
    a registration that adds none) is believed as the active key."""
    now = now or utcnow()
    out: list[str] = []
    has_current = False
    for rec in _rows(session, owner):
        has_current = has_current or rec.public_key == current
        if state_of(rec, now) in ("active", "retiring"):
            out.append(rec.public_key)
    if not has_current:
        known = _by_key(session, current)
        if known is None:  # no row yet: the registered key, active
            out.append(current)
    return out


def ensure_key(session: Session, owner: str, public_key: str,
               since: datetime | None = None) -> SigningKeyRecord:
    """The row for ``public_key`` (made, active, if missing)."""
    rec = _by_key(session, public_key)
    if rec is None:
        rec = SigningKeyRecord(owner=owner, public_key=public_key,
                               fingerprint=fingerprint(public_key),
                               not_before=since or utcnow(), reason="")
        session.add(rec)
        session.flush()
    elif rec.owner != owner:
        raise Conflict(f"key {rec.fingerprint} belongs to {rec.owner}, not {owner}")
    return rec


def ensure_hub_key(session: Session, key: SigningKey) -> SigningKeyRecord:
    """Give the hub's key its row (at start-up). A revoked hub key is not started with.

    The hub's first key has signed since the register began, so it is valid from then."""
    first = session.scalar(select(SigningKeyRecord.id).where(SigningKeyRecord.owner == HUB))
    rec = ensure_key(session, HUB, key.public_b64,
                     since=None if first is not None else datetime.fromtimestamp(0, UTC))
    if rec.revoked_at is not None:
        raise Conflict(f"the hub's key {rec.fingerprint} was revoked: rotate to a new one "
                       "with 'ndl admin rotate-hub-key' before starting the hub")
    return rec


def start_hub_key(db: Database, key: SigningKey) -> None:
    """:func:`ensure_hub_key` at a hub process's start; several workers starting at once may
    race to make the row, and the loser finds the winner's."""
    for attempt in (1, 2):
        try:
            with db.write() as s:
                ensure_hub_key(s, key)
            return
        except IntegrityError:
            if attempt == 2:
                raise


def list_keys(session: Session, owner: str | None = None) -> list[KeyInfo]:
    stmt = select(SigningKeyRecord).order_by(SigningKeyRecord.owner,
                                             SigningKeyRecord.not_before)
    if owner:
        stmt = stmt.where(SigningKeyRecord.owner == owner)
    now = utcnow()
    return [info(r, now) for r in session.scalars(stmt)]


# -- a datasite's or party's rotation --------------------------------------------------------

def rotation_statement(principal: str, old_key: str, new_key: str) -> bytes:
    """What the new key signs to prove its holder asked to take over from the old one (the
    envelope around it, signed by the old key, carries the nonce that stops a replay)."""
    return rfc8785.dumps({"v": 1, "kind": ROTATE_KIND, "principal": principal,
                          "old": old_key, "new": new_key})


def rotation_body(old: SigningKey, new: SigningKey, principal: str,
                  overlap: int) -> dict[str, Any]:
    """The body of a ``key.rotate`` envelope (to be signed with ``old``)."""
    return {"public_key": new.public_b64, "overlap": overlap,
            "proof": new.sign(rotation_statement(principal, old.public_b64, new.public_b64))}


def _key_in_use(session: Session, public_key: str) -> bool:
    return (_by_key(session, public_key) is not None
            or session.scalar(select(Datasite.id).where(Datasite.public_key == public_key))
            is not None
            or session.scalar(select(Party.id).where(Party.public_key == public_key)) is not None)


@dataclass(frozen=True)
class Rotation:
    owner: str
    old_fingerprint: str
    new_fingerprint: str
    retire_at: str

    def to_json(self) -> dict[str, Any]:
        return {"owner": self.owner, "old_fingerprint": self.old_fingerprint,
                "new_fingerprint": self.new_fingerprint, "retire_at": self.retire_at}


def rotate(session: Session, hub_key: SigningKey, owner: str, current: str,
           env: dict[str, Any]) -> Rotation:
    """Rotate ``owner`` (``datasite:<id>`` or ``party:<id>``) from ``current`` to the key in
    the opened ``key.rotate`` envelope ``env``, which must be signed by ``current`` itself
    (not by a key in its overlap) and carry the new key's proof."""
    body = env["body"]
    new_key = body.get("public_key")
    if not isinstance(new_key, str):
        raise InvalidInput("a key.rotate body needs public_key, the new Ed25519 public key")
    check_public_key(new_key)
    overlap = body.get("overlap")
    if isinstance(overlap, bool) or not isinstance(overlap, int):
        raise InvalidInput("a key.rotate body needs overlap, whole seconds from 0 to 30 days")
    overlap = parse_overlap(overlap)
    if not verify_signature(current, str(env["sig"]), _signing_bytes(env)):
        raise EnvelopeRejected("a rotation must be signed with the current key, not one "
                               "that is being retired: sign it with the newest key")
    cur = _by_key(session, current)
    if cur is not None and cur.revoked_at is not None:
        raise EnvelopeRejected(f"key {cur.fingerprint} is revoked: it cannot rotate")
    proof = body.get("proof")
    if not isinstance(proof, str) or not verify_signature(
            new_key, proof, rotation_statement(owner, current, new_key)):
        raise EnvelopeRejected("the rotation's proof is not the new key's signature over "
                               "this request: sign rotation_statement(...) with the new key")
    if new_key == current or _key_in_use(session, new_key):
        raise Conflict("that key is already in use (or was used before): make a new one")
    kind, _, ident = owner.partition(":")
    row: Datasite | Party | None = (session.get(Datasite, ident) if kind == "datasite"
                                    else session.get(Party, ident))
    if row is None:
        raise NotFound(f"{owner} is not registered with this hub")
    now = utcnow()
    old = ensure_key(session, owner, current, since=row.registered_at)
    old.retire_at = now + timedelta(seconds=overlap)
    session.add(SigningKeyRecord(owner=owner, public_key=new_key,
                                 fingerprint=fingerprint(new_key), not_before=now,
                                 endorsement=env, reason=""))
    row.public_key = new_key
    session.flush()
    out = Rotation(owner, old.fingerprint, fingerprint(new_key), old.retire_at.isoformat())
    register.append(session, hub_key, kind="key.rotated", actor=owner, subject=owner,
                    payload={"old": out.old_fingerprint, "new": out.new_fingerprint,
                             "retire_at": out.retire_at})
    return out


# -- the hub's own rotation ------------------------------------------------------------------

def hub_statement(previous: str, new: str, not_before: int, previous_retire_at: int
                  ) -> dict[str, Any]:
    return {"v": 1, "kind": "hub.key.rotated", "previous": previous, "next": new,
            "not_before": not_before, "previous_retire_at": previous_retire_at}


def rotate_hub(session: Session, key_path: Path, old: SigningKey, overlap: int,
               actor: str) -> tuple[Rotation, SigningKey]:
    """Make the hub's next key, endorsed by ``old``; write it to ``key_path`` + ``.next``
    (the caller moves it into place once this commits). The old key signs for ``overlap``
    seconds more in datasites' eyes; running hub processes switch at once."""
    overlap = parse_overlap(overlap)
    prev = ensure_hub_key(session, old)
    now = utcnow()
    new = SigningKey.generate()
    prev.retire_at = now + timedelta(seconds=overlap)
    statement = hub_statement(old.public_b64, new.public_b64, int(now.timestamp()),
                              int(prev.retire_at.timestamp()))
    endorsed = {**statement, "sig": old.sign(rfc8785.dumps(statement)),
                "next_sig": new.sign(rfc8785.dumps(statement))}
    session.add(SigningKeyRecord(owner=HUB, public_key=new.public_b64,
                                 fingerprint=new.fingerprint, not_before=now,
                                 endorsement=endorsed, reason=""))
    session.flush()
    out = Rotation(HUB, prev.fingerprint, new.fingerprint, prev.retire_at.isoformat())
    write_pem(key_path.with_name(key_path.name + ".next"), new.private)
    register.append(session, new, kind="key.rotated", actor=actor, subject=HUB,
                    payload={"old": out.old_fingerprint, "new": out.new_fingerprint,
                             "retire_at": out.retire_at})
    return out, new


# -- revocation ------------------------------------------------------------------------------

def _find(session: Session, fp: str) -> SigningKeyRecord:
    rec = session.scalar(select(SigningKeyRecord).where(SigningKeyRecord.fingerprint == fp))
    if rec is not None:
        return rec
    # A key registered without a row yet: give it one so it can be revoked.
    for model, prefix in ((Datasite, "datasite:"), (Party, "party:")):
        for ident, public_key in session.execute(select(model.id, model.public_key)):
            if fingerprint(public_key) == fp:
                return ensure_key(session, prefix + ident, public_key)
    raise NotFound(f"no key with fingerprint {fp} is known here: 'ndl admin keys' lists them")


def revoke(session: Session, hub_key: SigningKey, who: Principal | str, fp: str,
           reason: str) -> KeyInfo:
    """Revoke a key at once: nothing it signed is accepted from now on. ``who`` is an admin's
    principal (checked here) or the name of an operator acting with the hub's own key."""
    actor = who if isinstance(who, str) else official_actor(
        rules.require_admin(who, doing="revoke a signing key"))
    fp = check_fingerprint(fp)
    if not isinstance(reason, str) or not reason.strip() or len(reason) > _REASON_MAX:
        raise InvalidInput(f"give a reason for the revocation (1 to {_REASON_MAX} characters), "
                           "e.g. --reason 'laptop lost'")
    rec = _find(session, fp)
    if rec.revoked_at is not None:
        return info(rec)
    if rec.owner == HUB and rec.public_key == hub_key.public_b64:
        raise Conflict("that is the hub's current key: rotate first ('ndl admin "
                       "rotate-hub-key --overlap 0'), then revoke the old one")
    now = utcnow()
    rec.revoked_at, rec.reason = now, reason.strip()
    statement: dict[str, Any] = {"v": 1, "kind": "key.revoked", "owner": rec.owner,
                 "public_key": rec.public_key, "revoked_at": int(now.timestamp()),
                 "reason": rec.reason}
    rec.revocation = {**statement, "by": hub_key.public_b64,
                      "sig": hub_key.sign(rfc8785.dumps(statement))}
    session.flush()
    register.append(session, hub_key, kind="key.revoked", actor=actor, subject=rec.owner,
                    payload={"fingerprint": rec.fingerprint, "reason": rec.reason})
    return info(rec, now)


# -- what the hub publishes about its own keys, and how others follow it ---------------------

def hub_key_document(session: Session, current: SigningKey) -> dict[str, Any]:
    """The hub's keys with their validity, the statements that endorse each new key, and the
    hub-signed revocations: what datasites and parties need to follow a rotation."""
    rows = _rows(session, HUB)
    now = utcnow()
    return {
        "hub_id": HUB, "public_key": current.public_b64,
        "keys": [{**validity(r).to_json(), "state": state_of(r, now)} for r in rows]
        or [KeyValidity(current.public_b64, 0).to_json()],
        "endorsements": [r.endorsement for r in rows if r.endorsement],
        "revocations": [r.revocation for r in rows if r.revocation],
    }


def _statement_ok(statement: Any, signer: str, sig_field: str = "sig") -> bool:
    if not isinstance(statement, dict):
        return False
    body = {k: v for k, v in statement.items() if k not in ("sig", "next_sig", "by")}
    try:
        return verify_signature(signer, str(statement.get(sig_field)), rfc8785.dumps(body))
    except (TypeError, ValueError):
        return False


def follow_hub_keys(known: Sequence[KeyValidity], doc: Any) -> list[KeyValidity]:
    """The hub keys to believe after reading the hub's key document ``doc``.

    Starting from the keys already believed (the one pinned at registration, at first), a new
    key is believed only if a believed key endorsed it, and a key is revoked only by a
    revocation a believed key signed; whatever else the document says is ignored.
    """
    keys = {k.public_key: k for k in known}
    if not isinstance(doc, dict):
        return list(keys.values())
    changed = True
    endorsements = [e for e in doc.get("endorsements") or [] if isinstance(e, dict)]
    while changed:  # a chain of rotations: each step endorsed by the one before
        changed = False
        for e in endorsements:
            prev, nxt = e.get("previous"), e.get("next")
            if not isinstance(prev, str) or not isinstance(nxt, str) or nxt in keys:
                continue
            believed = keys.get(prev)
            if believed is None or believed.revoked_at is not None:
                continue
            if not _statement_ok(e, prev) or not _statement_ok(e, nxt, "next_sig"):
                continue
            try:
                nb, retire = int(e["not_before"]), int(e["previous_retire_at"])
                check_public_key(nxt)
            except (KeyError, TypeError, ValueError, InvalidInput):
                continue
            keys[prev] = KeyValidity(prev, believed.not_before,
                                     min(retire, believed.retire_at or retire),
                                     believed.revoked_at)
            keys[nxt] = KeyValidity(nxt, nb)
            changed = True
    for r in doc.get("revocations") or []:
        if not isinstance(r, dict):
            continue
        target, by = r.get("public_key"), r.get("by")
        signer = keys.get(str(by))
        if (not isinstance(target, str) or target not in keys or signer is None
                or signer.revoked_at is not None or not _statement_ok(r, str(by))):
            continue
        old = keys[target]
        at = r.get("revoked_at")
        keys[target] = KeyValidity(target, old.not_before, old.retire_at,
                                   int(at) if isinstance(at, int) else int(time.time()))
    return sorted(keys.values(), key=lambda k: k.not_before)


def register_keys(keys: Sequence[KeyValidity]) -> Callable[[Any], list[str]]:
    """For verifying the register: the hub keys an entry may be signed by, judged by the
    entry's time. A key revoked later still vouches for entries made before its revocation:
    later entries, signed by a key not revoked, chain over their hashes."""
    def for_entry(entry: Any) -> list[str]:
        try:
            t = datetime.fromisoformat(str(entry.ts)).astimezone(UTC).timestamp()
        except ValueError:
            return []
        out = []
        for k in keys:
            end = min(x for x in (k.retire_at, k.revoked_at, float("inf")) if x is not None)
            if k.not_before - 60 <= t <= end + 60:
                out.append(k.public_key)
        return out

    return for_entry


def hub_validities(session: Session, current: SigningKey) -> list[KeyValidity]:
    rows = _rows(session, HUB)
    return [validity(r) for r in rows] or [KeyValidity(current.public_b64, 0)]


def hub_keys_stamp(session: Session) -> str:
    """A short mark that changes whenever the hub's keys do (a rotation, a revocation): sent
    with each poll, so a datasite reads the signed key document only when it changed."""
    rows = session.execute(select(SigningKeyRecord.fingerprint, SigningKeyRecord.retire_at,
                                  SigningKeyRecord.revoked_at)
                           .where(SigningKeyRecord.owner == HUB)
                           .order_by(SigningKeyRecord.id)).all()
    text = ";".join(f"{fp},{_ts(r)},{_ts(v)}" for fp, r, v in rows)
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:16]
