"""A dataset's end: withdrawn from the catalogue, then, at its owner's word, deleted at home.

WITHDRAWN (its organisation's data steward, or an admin; or the hub when its retention date
``retain_until`` passes, or its datasite retires): it leaves search, facets, listings, DCAT,
CKAN and Croissant catalogues; its metadata stay readable by id with a withdrawn notice; new
queries, downloads, jobs and access requests are refused; its grants end.

DELETED (only once withdrawn): the hub queues a signed ``dataset.delete`` message; the
datasite removes the dataset's folder (data, mock, caches) and answers with a deletion record
it signs itself (what, when, each file's SHA-256 and size), which the hub keeps whole, so
anyone can check the datasite's signature, and names in the public register.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from typing import Any

import rfc8785
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from ndl.access import rules
from ndl.access.accounts import Principal, official_actor
from ndl.catalogue.models import CatalogueState, Dataset, DatasetFacet
from ndl.catalogue.search import unindex
from ndl.catalogue.service import get_dataset
from ndl.core.db import utcnow
from ndl.core.errors import Conflict, InvalidInput, NotFound
from ndl.core.keys import SigningKey
from ndl.federation.lifecycle_models import DeletionRecord
from ndl.federation.models import Datasite
from ndl.federation.service import enqueue
from ndl.ledger import register

DELETE_KIND = "dataset.delete"
DELETED_KIND = "dataset.deleted"
# A delete message waits this long for a datasite that is down (it is done when it returns).
DELETE_TTL = 7 * 24 * 3600.0


def listed() -> Any:
    """The condition catalogue listings and search use: entries not withdrawn."""
    return Dataset.withdrawn_at.is_(None)


def require_live(ds: Dataset) -> None:
    """Refuse any new use of a withdrawn dataset, saying what remains."""
    if ds.withdrawn_at is not None:
        gone = " and deleted at its datasite" if ds.deleted_at is not None else ""
        raise Conflict(
            f"{ds.id} was withdrawn on {ds.withdrawn_at.date().isoformat()}{gone} "
            f"({ds.withdrawn_reason or 'no reason given'}): it takes no queries, downloads, "
            f"jobs or access requests. Its metadata stay at GET /api/datasets/{ds.id}")


# -- withdrawal --------------------------------------------------------------------------------

def withdraw(session: Session, key: SigningKey, who: Principal | None, dataset_id: str, *,
             reason: str) -> Dataset:
    ds = get_dataset(session, dataset_id)
    official = rules.require_data_owner(who, ds.org_id, doing=f"withdraw {ds.id}")
    reason = reason.strip()
    if len(reason) < 5:
        raise InvalidInput("reason: say why the dataset is withdrawn (at least 5 characters)")
    if ds.withdrawn_at is not None:
        raise Conflict(f"{ds.id} was already withdrawn on {ds.withdrawn_at.date()}")
    _withdraw(session, key, ds, actor=official_actor(official), reason=reason, notify=True)
    return ds


def _withdraw(session: Session, key: SigningKey, ds: Dataset, *, actor: str, reason: str,
              notify: bool) -> int:
    """Withdraw ``ds`` and end its grants; how many grants ended."""
    from ndl.access import closure

    ds.withdrawn_at, ds.withdrawn_reason = utcnow(), reason
    # Out of every way of finding it: the facet rows, the text index and (by the generation
    # bump) the cached facet bitmaps, which are rebuilt without withdrawn entries.
    session.execute(delete(DatasetFacet).where(DatasetFacet.dataset_id == ds.id))
    unindex(session, ds)
    session.execute(update(CatalogueState).where(CatalogueState.id == 1)
                    .values(generation=CatalogueState.generation + 1))
    ended = closure.end_grants_on(session, key, [ds.id], actor=actor,
                                  reason=f"{ds.id} withdrawn: {reason}", notify=notify)
    closure.close_pending_requests(session, [ds.id], reason=f"{ds.id} was withdrawn")
    register.append(session, key, kind="dataset.withdrawn", actor=actor, subject=ds.id,
                    payload={"reason": reason, "grants_ended": ended})
    return ended


def withdraw_all_of_site(session: Session, key: SigningKey, datasite_id: str, *, actor: str,
                         reason: str) -> tuple[list[str], int]:
    """Withdraw every live entry of a retiring datasite (it is told nothing: it has left);
    the ids withdrawn and how many grants ended."""
    out, ended = [], 0
    for ds in session.scalars(select(Dataset).where(Dataset.datasite_id == datasite_id,
                                                    listed()).order_by(Dataset.id)).all():
        ended += _withdraw(session, key, ds, actor=actor, reason=reason, notify=False)
        out.append(ds.id)
    return out, ended


# -- deletion ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Deletion:
    id: int
    dataset: str
    datasite: str
    state: str
    requested_at: str
    deleted_at: str | None
    record: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "dataset": self.dataset, "datasite": self.datasite,
                "state": self.state, "requested_at": self.requested_at,
                "deleted_at": self.deleted_at, "record": self.record}


def deletion_view(rec: DeletionRecord) -> Deletion:
    return Deletion(rec.id, rec.dataset_id, rec.datasite_id, rec.state,
                    rec.requested_at.isoformat(),
                    rec.deleted_at.isoformat() if rec.deleted_at else None, rec.record)


def request_deletion(session: Session, key: SigningKey, who: Principal | None,
                     dataset_id: str) -> DeletionRecord:
    """Ask the dataset's datasite to delete it (it must be withdrawn first)."""
    ds = get_dataset(session, dataset_id)
    official = rules.require_data_owner(who, ds.org_id, doing=f"delete {ds.id}")
    return _request_deletion(session, key, ds, actor=official_actor(official),
                             requested_by=official.username)


def _request_deletion(session: Session, key: SigningKey, ds: Dataset, *, actor: str,
                      requested_by: str) -> DeletionRecord:
    if ds.withdrawn_at is None:
        raise Conflict(f"{ds.id} is still in the catalogue: withdraw it first ('ndl dataset "
                       f"withdraw {ds.id} --reason ...'), then delete it")
    if ds.deleted_at is not None:
        raise Conflict(f"{ds.id} was already deleted at its datasite on {ds.deleted_at.date()}")
    if session.scalar(select(DeletionRecord.id).where(
            DeletionRecord.dataset_id == ds.id, DeletionRecord.state == "requested")):
        raise Conflict(f"deletion of {ds.id} was already requested; its datasite does it on "
                       "its next poll")
    site = session.get(Datasite, ds.datasite_id)
    if site is None or site.state != "approved":
        raise Conflict(f"datasite {ds.datasite_id!r} is {site.state if site else 'gone'}: it "
                       "takes no messages, so its operator deletes the data by hand there")
    rec = DeletionRecord(dataset_id=ds.id, datasite_id=ds.datasite_id,
                         requested_by=requested_by, requested_at=utcnow(), state="requested")
    session.add(rec)
    session.flush()
    msg = enqueue(session, datasite_id=ds.datasite_id, kind=DELETE_KIND,
                  body={"dataset": ds.name, "deletion_id": rec.id}, timeout=DELETE_TTL)
    rec.message_id = msg.id
    register.append(session, key, kind="dataset.deletion_requested", actor=actor,
                    subject=ds.id, payload={"deletion_id": rec.id})
    return rec


def record_deletion(session: Session, key: SigningKey, site: Datasite,
                    envelope: dict[str, Any]) -> tuple[DeletionRecord, bool]:
    """Keep a datasite's signed deletion record (the route checked its signature and
    standing); whether it is new. Only the datasite asked may answer, and only once."""
    body = envelope.get("body")
    if not isinstance(body, dict):
        raise InvalidInput("a deletion record's body must be a JSON object")
    rid, files = body.get("deletion_id"), body.get("files")
    if isinstance(rid, bool) or not isinstance(rid, int):
        raise InvalidInput("a deletion record needs deletion_id, the number the hub sent")
    if not isinstance(files, list) or len(files) > 100_000 or not all(
            isinstance(f, dict) and isinstance(f.get("path"), str)
            and isinstance(f.get("sha256"), str) and len(f["sha256"]) == 64
            and isinstance(f.get("bytes"), int) for f in files):
        raise InvalidInput("a deletion record's files must be a list of {path, sha256, bytes}")
    rec = session.get(DeletionRecord, rid, with_for_update=True)
    if rec is None or rec.datasite_id != site.id:
        raise NotFound(f"deletion {rid} was not asked of datasite {site.id!r}")
    ds = get_dataset(session, rec.dataset_id)
    if body.get("dataset") != ds.name:
        raise InvalidInput(f"deletion {rid} is of {ds.name!r}, not {body.get('dataset')!r}")
    if rec.state == "deleted":
        return rec, False
    now = utcnow()
    rec.state, rec.deleted_at, rec.record = "deleted", now, envelope
    ds.deleted_at = now
    register.append(session, key, kind="dataset.deleted", actor=f"datasite:{site.id}",
                    subject=ds.id, payload={
                        "deletion_id": rec.id, "files": len(files),
                        "bytes": sum(int(f["bytes"]) for f in files),
                        # The signed record itself is kept at the hub; its hash pins it here.
                        "record_sha256": hashlib.sha256(rfc8785.dumps(envelope)).hexdigest()})
    return rec, True


def deletions_of(session: Session, dataset_id: str) -> list[Deletion]:
    get_dataset(session, dataset_id)
    return [deletion_view(r) for r in session.scalars(
        select(DeletionRecord).where(DeletionRecord.dataset_id == dataset_id)
        .order_by(DeletionRecord.id))]


# -- retention ---------------------------------------------------------------------------------

def retain_until(ds: Dataset) -> date | None:
    """The dataset's ``retain_until`` metadata field (an ISO date), if it set a valid one."""
    raw = (ds.meta or {}).get("retain_until")
    try:
        return date.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        return None


def enforce_retention(session: Session, key: SigningKey, today: date | None = None,
                      limit: int = 100) -> list[str]:
    """Withdraw, and ask deletion of, every live dataset past its ``retain_until`` date."""
    today = today or date.today()
    due = []
    for ds in session.scalars(select(Dataset).where(listed()).order_by(Dataset.id)):
        until = retain_until(ds)
        if until is not None and until < today:
            due.append(ds)
        if len(due) >= limit:
            break
    for ds in due:
        _withdraw(session, key, ds, actor="hub", notify=True,
                  reason=f"retention period ended on {retain_until(ds)}")
        site = session.get(Datasite, ds.datasite_id)
        if site is not None and site.state == "approved":
            _request_deletion(session, key, ds, actor="hub", requested_by="hub")
    return [d.id for d in due]

