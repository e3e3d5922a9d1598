"""Append to and verify the hash-chained register.

Each entry's hash is SHA-256 over the previous hash and the RFC 8785 canonical JSON of the
entry (seq, ts, kind, actor, subject, payload); the hub signs every hash with its Ed25519 key.
Editing an entry breaks its hash; deleting or reordering breaks the chain; rewriting the
whole tail needs the hub's private key; dropping the tail disagrees with the head row and with
any head a reader saved earlier (``ndl verify --expect-head``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import rfc8785
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ndl.core.keys import SigningKey, verify_signature
from ndl.ledger.models import LedgerEntry, LedgerHead

GENESIS = "0" * 64


def compute_hash(
    prev_hash: str, seq: int, ts: str, kind: str, actor: str, subject: str,
    payload: dict[str, Any],
) -> str:
    body = rfc8785.dumps(
        {"seq": seq, "ts": ts, "kind": kind, "actor": actor, "subject": subject,
         "payload": payload}
    )
    return hashlib.sha256(prev_hash.encode("ascii") + body).hexdigest()


def append(
    session: Session, key: SigningKey, *, kind: str, actor: str, subject: str,
    payload: dict[str, Any] | None = None,
) -> LedgerEntry:
    """Append one entry inside the caller's transaction (so it commits with the change)."""
    payload = payload or {}
    # Bumping the head first takes the row's write lock, so concurrent appends queue up here
    # instead of both reading the same previous hash.
    seq, prev_hash = session.execute(
        update(LedgerHead)
        .where(LedgerHead.id == 1)
        .values(seq=LedgerHead.seq + 1)
        .returning(LedgerHead.seq, LedgerHead.hash)
    ).one()
    ts = datetime.now(UTC).isoformat(timespec="microseconds")
    digest = compute_hash(prev_hash, seq, ts, kind, actor, subject, payload)
    entry = LedgerEntry(
        seq=seq, ts=ts, kind=kind, actor=actor, subject=subject, payload=payload,
        prev_hash=prev_hash, hash=digest, sig=key.sign(bytes.fromhex(digest)),
    )
    session.add(entry)
    session.execute(update(LedgerHead).where(LedgerHead.id == 1).values(hash=digest))
    return entry


def entry_json(e: LedgerEntry) -> dict[str, Any]:
    return {
        "seq": e.seq, "ts": e.ts, "kind": e.kind, "actor": e.actor, "subject": e.subject,
        "payload": e.payload, "prev_hash": e.prev_hash, "hash": e.hash, "sig": e.sig,
    }


def list_entries(
    session: Session, *, after: int = 0, limit: int = 100, kind: str | None = None
) -> list[LedgerEntry]:
    stmt = select(LedgerEntry).where(LedgerEntry.seq > after)
    if kind:
        stmt = stmt.where(LedgerEntry.kind == kind)
    return list(session.scalars(stmt.order_by(LedgerEntry.seq).limit(limit)))


@dataclass
class VerifyReport:
    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "head_seq": self.head_seq,
                "head_hash": self.head_hash, "problems": self.problems}


class EntryLike(Protocol):
    seq: int
    ts: str
    kind: str
    actor: str
    subject: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str
    sig: str


HubKeys = str | Callable[[EntryLike], Sequence[str]]


def _keys_for(public_key: HubKeys, entry: EntryLike) -> Sequence[str]:
    """The hub keys ``entry`` may be signed by: one key, or (after key rotations) those the
    hub held when the entry was made (:func:`ndl.federation.key_service.register_keys`)."""
    return [public_key] if isinstance(public_key, str) else public_key(entry)


def verify_entries(
    entries: Iterable[EntryLike], public_key: HubKeys, *, head: tuple[int, str] | None,
    expect_head: tuple[int, str] | None = None,
) -> VerifyReport:
    """Walk a whole chain (from the database or a downloaded feed) and report every fault.

    ``head`` is the (seq, hash) the register claims to end at; ``expect_head`` is one a
    reader saved earlier, which must still be in the chain unchanged.
    """
    problems: list[str] = []
    prev_hash, expected_seq, count = GENESIS, 1, 0
    hashes: dict[int, str] = {}
    for e in entries:
        count += 1
        if e.seq != expected_seq:
            problems.append(
                f"entries {expected_seq}..{e.seq - 1} are missing: they were deleted"
                if e.seq > expected_seq else f"entry {e.seq} is out of sequence"
            )
        if e.prev_hash != prev_hash:
            problems.append(
                f"entry {e.seq} does not follow the entry before it: entries were deleted, "
                "reordered or rewritten"
            )
        recomputed = compute_hash(
            e.prev_hash, e.seq, e.ts, e.kind, e.actor, e.subject, e.payload
        )
        if recomputed != e.hash:
            problems.append(f"entry {e.seq} was edited: its content does not match its hash")
        elif not any(verify_signature(k, e.sig, bytes.fromhex(e.hash))
                     for k in _keys_for(public_key, e)):
            problems.append(f"entry {e.seq} is not signed by the hub key")
        prev_hash, expected_seq = e.hash, e.seq + 1
        if expect_head is not None and e.seq == expect_head[0]:
            hashes[e.seq] = e.hash
    head_seq, head_hash = head if head is not None else (expected_seq - 1, prev_hash)
    if head is None:
        problems.append("the register head is missing")
    elif head_seq != expected_seq - 1 or head_hash != prev_hash:
        problems.append(
            f"the register ends at entry {expected_seq - 1} but its head says {head_seq}: "
            "entries were dropped from the end or the head was changed"
        )
    if expect_head is not None and hashes.get(expect_head[0]) != expect_head[1]:
        problems.append(
            f"entry {expect_head[0]} no longer has the hash {expect_head[1][:12]}... you "
            "saved: history was rewritten or cut"
        )
    return VerifyReport(not problems, count, head_seq, head_hash, problems)


def verify(
    session: Session, public_key: HubKeys, *, expect_head: tuple[int, str] | None = None
) -> VerifyReport:
    """Verify the register held in the hub database."""
    row = session.get(LedgerHead, 1)
    entries = session.scalars(select(LedgerEntry).order_by(LedgerEntry.seq)).yield_per(1000)
    return verify_entries(entries, public_key, head=(row.seq, row.hash) if row else None,
                          expect_head=expect_head)


def head(session: Session) -> tuple[int, str]:
    row = session.get(LedgerHead, 1)
    return (row.seq, row.hash) if row else (0, GENESIS)


@dataclass(frozen=True)
class EntryPage:
    total: int                 # entries matching, on every page
    entries: list[LedgerEntry]


def newest_first(session: Session, *, kind: str = "", subject: str = "", offset: int = 0,
                 limit: int = 50) -> EntryPage:
    """One page of entries, newest first, filtered by kind and by text in the subject.

    :func:`list_entries` walks forwards from a sequence number, for verifiers; people
    reading the register want the latest first.
    """
    stmt = select(LedgerEntry)
    if kind:
        stmt = stmt.where(LedgerEntry.kind == kind)
    if subject:
        stmt = stmt.where(LedgerEntry.subject.contains(subject, autoescape=True))
    total = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    rows = session.scalars(stmt.order_by(LedgerEntry.seq.desc()).offset(offset).limit(limit))
    return EntryPage(total, list(rows))


def kinds(session: Session) -> list[str]:
    """Every kind of entry the register holds, in order."""
    return list(session.scalars(select(LedgerEntry.kind).distinct().order_by(LedgerEntry.kind)))
