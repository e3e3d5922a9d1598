"""Joining and leaving the federation, and each datasite's signed compliance status.

A datasite JOINS when a data steward of its organisation (or an admin) says so: registered
by them it is approved in the same act; registered by anyone else (``POST
/api/federation/join``, the operator's own account) it waits, ``pending``, and everything it
signs is refused (:mod:`ndl.federation.standing`) until a steward approves it (``ndl steward
approve-datasite ID``). It LEAVES by retiring (``ndl admin retire-datasite ID``): its
catalogue entries are withdrawn, its grants end, its queued work is cancelled and its key is
refused from then on. Nothing at the datasite is deleted: its data stay at home.

A running datasite reports a signed STATUS (software version, policy and configuration
hashes, sandbox mode, engine, last self-check) at start and every few minutes; the hub keeps
the latest, envelope and all, so anyone can check the signature, and calls it ``stale`` when
the next one is late.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ndl.access import rules
from ndl.access.accounts import Principal, check_slug, official_actor
from ndl.core.db import utcnow
from ndl.core.errors import (
    AuthenticationRequired,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from ndl.core.keys import SigningKey
from ndl.federation import standing, work
from ndl.federation.lifecycle_models import DatasiteStatus
from ndl.federation.models import Datasite, Message
from ndl.ledger import register

# A report is stale once it is this much later than the datasite said the next would come.
STALE_GRACE = timedelta(seconds=5)


def get_site(session: Session, datasite_id: str) -> Datasite:
    check_slug(datasite_id, "datasite id")
    site = session.get(Datasite, datasite_id)
    if site is None:
        raise NotFound(f"datasite {datasite_id!r} is not registered; list them with "
                       "GET /api/datasites")
    return site


# -- joining ------------------------------------------------------------------------------------

def approve(session: Session, key: SigningKey, who: Principal | None, datasite_id: str
            ) -> Datasite:
    """A data steward of the datasite's organisation (or an admin) lets it in."""
    site = get_site(session, datasite_id)
    official = rules.require_membership_official(who, site.org_id,
                                                 doing=f"approve datasite {datasite_id}")
    if site.state != "pending":
        raise Conflict(f"datasite {datasite_id!r} is {site.state}, not pending approval: "
                       "nothing to approve")
    mark_approved(site, official)
    register.append(session, key, kind="datasite.approved", actor=official_actor(official),
                    subject=datasite_id, payload={"org": site.org_id})
    return site


def may_approve(who: Principal | None, site: Datasite) -> bool:
    """Whether ``approve`` would let ``who`` approve ``site`` now (pages offer the button)."""
    if site.state != "pending":
        return False
    try:
        rules.require_membership_official(who, site.org_id, doing="approve a datasite")
    except (AuthenticationRequired, PermissionDenied):
        return False
    return True


def mark_approved(site: Datasite, who: Principal) -> None:
    site.state, site.approved_by, site.approved_at = "approved", who.username, utcnow()


# -- leaving ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Retirement:
    datasite: str
    withdrawn: list[str]
    grants_ended: int
    messages_cancelled: int
    work_cancelled: int


def retire(session: Session, key: SigningKey, who: Principal | None, datasite_id: str, *,
           reason: str) -> Retirement:
    """The datasite leaves: entries withdrawn, grants ended, queued work cancelled, key
    refused. Its data stay where they are (nothing is sent to it: it no longer listens)."""
    from ndl.catalogue import lifecycle

    site = get_site(session, datasite_id)
    official = rules.require_membership_official(who, site.org_id,
                                                 doing=f"retire datasite {datasite_id}")
    if site.state == "retired":
        raise Conflict(f"datasite {datasite_id!r} was already retired")
    reason = reason.strip()
    if len(reason) < 5:
        raise InvalidInput("reason: say why the datasite leaves (at least 5 characters)")
    actor = official_actor(official)
    site.state, site.retired_at, site.retired_reason = "retired", utcnow(), reason
    why = f"datasite {datasite_id} retired: {reason}"
    withdrawn, ended = lifecycle.withdraw_all_of_site(session, key, datasite_id, actor=actor,
                                                      reason=why)
    cancelled = 0
    for m in session.scalars(select(Message).where(
            Message.datasite_id == datasite_id,
            or_(Message.state == "queued", Message.state == "leased"))):
        m.state, cancelled = "cancelled", cancelled + 1
    work_cancelled = work.cancel_all_for(session, key, datasite_id, actor=actor, reason=why)
    _revoke_key(session, key, site, actor=actor)
    register.append(session, key, kind="datasite.retired", actor=actor, subject=datasite_id,
                    payload={"org": site.org_id, "reason": reason,
                             "datasets_withdrawn": len(withdrawn), "grants_ended": ended,
                             "messages_cancelled": cancelled,
                             "work_cancelled": work_cancelled})
    return Retirement(datasite_id, withdrawn, ended, cancelled, work_cancelled)


def _revoke_key(session: Session, key: SigningKey, site: Datasite, *, actor: str) -> None:
    """Revoke every key the datasite holds at the hub's key service (issue 13 part 2), so
    its signatures are refused by everything that checks keys; the retired state alone
    refuses it at every datasite route as well (standing.refusal)."""
    from ndl.core.keys import fingerprint
    from ndl.federation import key_service

    prints = {fingerprint(site.public_key)} | {
        k.fingerprint for k in key_service.list_keys(session, f"datasite:{site.id}")
        if k.revoked_at is None}
    for fp in sorted(prints):
        # The retirement's own rule (a steward of its org, or an admin) authorised this.
        key_service.revoke(session, key, actor, fp, "datasite retired")


# -- status reports -----------------------------------------------------------------------------

class SelfCheck(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: datetime
    ok: bool
    engine_ok: bool
    sandbox_ok: bool | None = None  # None: controlled jobs are not enabled here
    datasets_checked: int = Field(ge=0, le=1_000_000)
    problems: list[str] = Field(default_factory=list, max_length=100)


HEX64 = r"^[0-9a-f]{64}$"


class StatusReport(BaseModel):
    """What a datasite says about itself, signed with its key."""

    model_config = ConfigDict(extra="forbid")

    software_version: str = Field(min_length=1, max_length=50)
    policy_hash: str = Field(pattern=HEX64)
    config_hash: str = Field(pattern=HEX64)
    sandbox_mode: Literal["strict", "weaker"]
    engine: str = Field(min_length=1, max_length=40)
    every_seconds: float = Field(ge=1, le=86_400)
    self_check: SelfCheck


def read_report(body: Any) -> StatusReport:
    if not isinstance(body, dict):
        raise InvalidInput("a status envelope's body must be a JSON object")
    try:
        report = StatusReport.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"status report: {where}: {first['msg']}",
                           detail=exc.errors(include_url=False, include_input=False)) from exc
    if any(len(p) > 500 for p in report.self_check.problems):
        raise InvalidInput("status report: each self-check problem is at most 500 characters")
    return report


def record_status(session: Session, site: Datasite, report: StatusReport,
                  envelope: dict[str, Any]) -> DatasiteStatus:
    """Keep the datasite's latest report (signature checked by the route) in place of the
    last one; the register hears only when the self-check outcome changes."""
    row = session.get(DatasiteStatus, site.id)
    data = report.model_dump(mode="json")
    if row is None:
        row = DatasiteStatus(datasite_id=site.id, report=data, envelope=envelope)
        session.add(row)
    row.reported_at, row.report, row.envelope = utcnow(), data, envelope
    live = session.get(Datasite, site.id)
    if live is not None:
        live.last_seen_at = row.reported_at
    return row


def report_status(session: Session, key: SigningKey, site: Datasite, envelope: dict[str, Any]
                  ) -> None:
    """A datasite's signed ``status`` envelope (signature and standing checked by the route's
    dependency): keep it, and tell the register when the self-check outcome changes."""
    if envelope["kind"] != "status":
        raise InvalidInput(f"expected a 'status' envelope, got {envelope['kind']!r}")
    report = read_report(envelope["body"])
    before = site_status(session, site).report
    record_status(session, site, report, envelope)
    if self_check_changed(before, report):
        register.append(session, key, kind="datasite.status", actor=f"datasite:{site.id}",
                        subject=site.id, payload={
                            "self_check_ok": report.self_check.ok,
                            "software_version": report.software_version,
                            "policy_hash": report.policy_hash,
                            "config_hash": report.config_hash,
                            "sandbox_mode": report.sandbox_mode,
                            "engine": report.engine})


def self_check_changed(previous: dict[str, Any] | None, report: StatusReport) -> bool:
    before = (previous or {}).get("self_check", {}).get("ok")
    return before is None or bool(before) != report.self_check.ok


@dataclass(frozen=True)
class SiteStatus:
    """A datasite's membership and latest report, as the federation sees it."""

    id: str
    org: str
    name: str
    state: str
    refusal: str | None
    approved_at: str | None
    retired_at: str | None
    reported_at: str | None
    stale: bool
    report: dict[str, Any] | None
    envelope: dict[str, Any] | None

    def to_json(self, *, envelope: bool = False) -> dict[str, Any]:
        out = {"id": self.id, "org": self.org, "name": self.name, "state": self.state,
               "approved_at": self.approved_at, "retired_at": self.retired_at,
               "reported_at": self.reported_at, "stale": self.stale, "report": self.report}
        if self.refusal is not None:
            out["standing"] = self.refusal
        if envelope:
            out["envelope"] = self.envelope
        return out


def site_status(session: Session, site: Datasite) -> SiteStatus:
    row = session.get(DatasiteStatus, site.id)
    stale = True
    if row is not None and site.state == "approved":
        every = timedelta(seconds=float(row.report.get("every_seconds", 300)))
        stale = utcnow() - row.reported_at > 2 * every + STALE_GRACE
    return SiteStatus(
        site.id, site.org_id, site.name, site.state, standing.refusal(site),
        site.approved_at.isoformat() if site.approved_at else None,
        site.retired_at.isoformat() if site.retired_at else None,
        row.reported_at.isoformat() if row is not None else None, stale,
        row.report if row is not None else None, row.envelope if row is not None else None)


def statuses(session: Session) -> dict[str, SiteStatus]:
    return {s.id: site_status(session, s)
            for s in session.scalars(select(Datasite).order_by(Datasite.id))}


def pending_for(session: Session, who: Principal | None) -> list[Datasite]:
    """Datasites waiting for ``who``'s approval (an admin sees every organisation's)."""
    if who is None:
        return []
    stmt = select(Datasite).where(Datasite.state == "pending").order_by(Datasite.registered_at)
    if not who.has("admin"):
        if not who.has("steward") or who.org_id is None:
            return []
        stmt = stmt.where(Datasite.org_id == who.org_id)
    return list(session.scalars(stmt))
