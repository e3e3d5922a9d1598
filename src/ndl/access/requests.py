"""Access requests, steward decisions, grants and revocations: the hub's access process.

One request may name datasets at several organisations. Each dataset's own policy decides:
grant at once, route to that organisation's stewards, or refuse. Every step is a register
entry, with reasons; the time from request to decision is the library's headline measure.
"""

from __future__ import annotations

import statistics
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ndl.access import closure, evidence, rules
from ndl.access.accounts import Principal, official_actor, require_user_standing
from ndl.access.grants import sign_grant
from ndl.access.models import User
from ndl.access.policy import Policy, ProjectFacts, decide, default_policy
from ndl.access.project_models import AccessRequest, Approval, Grant, Project, RequestItem
from ndl.access.projects import get_project, member_of, require_member
from ndl.catalogue.lifecycle import require_live
from ndl.catalogue.models import Dataset
from ndl.catalogue.service import get_dataset
from ndl.core.db import utcnow
from ndl.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from ndl.core.keys import SigningKey
from ndl.federation.service import enqueue
from ndl.ledger import register


def policy_of(ds: Dataset) -> Policy:
    return Policy.model_validate(ds.policy) if ds.policy else default_policy(ds.tier)


def _facts(session: Session, project: Project) -> ProjectFacts:
    # Accreditation as it stands today (evidence lapses), not as it was when a member joined.
    return ProjectFacts(project.purpose, project.purpose_category, project.legal_basis,
                        [evidence.accredited(session, m.user_id) for m in project.members])


def _project_live(project: Project) -> None:
    if project.end_date < date.today():
        raise Conflict(f"project {project.id} ended on {project.end_date}: no new access")


def submit_request(session: Session, key: SigningKey, who: Principal, project_id: str,
                   dataset_ids: list[str]) -> AccessRequest:
    project = get_project(session, project_id)
    require_member(project, who)
    _project_live(project)
    if not dataset_ids:
        raise InvalidInput("datasets: name at least one dataset")
    if len(set(dataset_ids)) != len(dataset_ids):
        raise InvalidInput("datasets: each dataset may appear once")
    closure.require_open(session, project_id)
    datasets = [get_dataset(session, d) for d in dataset_ids]
    for ds in datasets:
        require_live(ds)  # a withdrawn dataset takes no new requests
    for ds in datasets:
        if ds.tier == "open":
            raise InvalidInput(f"{ds.id} is open data: anyone may use it without a request")
        busy = session.scalar(
            select(RequestItem).join(AccessRequest)
            .where(AccessRequest.project_id == project.id, RequestItem.dataset_id == ds.id,
                   RequestItem.state.in_(("pending", "granted"))))
        if busy is not None and not (busy.state == "granted" and not _grant_active(session,
                                                                                  busy)):
            raise Conflict(f"project {project.id} already has a {busy.state} request for "
                           f"{ds.id}")
        # The whole team is on the grant, so every member must hold the evidence it needs.
        rules.require_requirements_met(
            evidence.shortfalls(session, project, [m.user_id for m in project.members],
                                evidence.requirements_for(session, ds.tier,
                                                          policy_of(ds).requires)),
            doing=f"ask for {ds.id}")
    req = AccessRequest(project_id=project.id, requested_by=who.user_id)
    session.add(req)
    for ds in datasets:
        req.items.append(RequestItem(dataset_id=ds.id, org_id=ds.org_id, tier=ds.tier,
                                     approvals_required=policy_of(ds).approvals_required))
    session.flush()
    register.append(session, key, kind="request.submitted", actor=f"project:{project.id}",
                    subject=f"request:{req.id}",
                    payload={"project": project.id, "datasets": dataset_ids})
    for item, ds in zip(req.items, datasets, strict=True):
        decision = decide(policy_of(ds), _facts(session, project))
        if decision.refuse:
            _close(session, key, item, "rejected", "; ".join(decision.reasons), "policy")
        elif decision.grant_now:
            _close(session, key, item, "granted", "; ".join(decision.reasons), "policy")
            issue_grant(session, key, project, item, policy_of(ds))
        else:
            item.decision_reason = "; ".join(decision.reasons)
            register.append(session, key, kind="request.routed", actor="policy",
                            subject=f"request:{req.id}",
                            payload={"dataset": ds.id, "org": ds.org_id,
                                     "reasons": decision.reasons})
    return req


def _close(session: Session, key: SigningKey, item: RequestItem, state: str, reason: str,
           actor: str) -> None:
    item.state, item.decision_reason, item.decided_at = state, reason, utcnow()
    register.append(session, key, kind=f"request.{state}", actor=actor,
                    subject=f"request:{item.request_id}",
                    payload={"dataset": item.dataset_id, "reason": reason,
                             "hours_to_decision": round(_hours(item), 4)})


def _hours(item: RequestItem) -> float:
    end = item.decided_at or utcnow()
    return (end - item.created_at).total_seconds() / 3600


def issue_grant(session: Session, key: SigningKey, project: Project, item: RequestItem,
                policy: Policy) -> Grant:
    now = utcnow()
    expires = min(now + timedelta(days=policy.grant_days),
                  datetime.combine(project.end_date, datetime.max.time(), tzinfo=UTC))
    grant_id = str(uuid.uuid4())
    doc = sign_grant(key, grant_id=grant_id, project=project.id, dataset=item.dataset_id,
                     tier=item.tier, members=[m.username for m in project.members],
                     issued_at=int(now.timestamp()), expires_at=int(expires.timestamp()))
    grant = Grant(id=grant_id, project_id=project.id, dataset_id=item.dataset_id,
                  item_id=item.id, tier=item.tier, granted_at=now, expires_at=expires,
                  document=doc)
    session.add(grant)
    register.append(session, key, kind="grant.issued", actor="hub", subject=f"grant:{grant_id}",
                    payload={"project": project.id, "dataset": item.dataset_id,
                             "expires_at": expires.isoformat()})
    return grant


def decide_item(session: Session, key: SigningKey, who: Principal, item_id: int, *,
                approve: bool, reason: str) -> RequestItem:
    item = session.get(RequestItem, item_id)
    if item is None:
        raise NotFound(f"request item {item_id} does not exist")
    rules.require_steward_of(who, item.org_id, doing="decide this")
    req = session.get(AccessRequest, item.request_id)
    assert req is not None
    project = get_project(session, req.project_id)
    if member_of(project, who):
        raise PermissionDenied("you are a member of this project: another steward must decide")
    if item.state != "pending":
        raise Conflict(f"this request is already {item.state}")
    _project_live(project)
    if not approve and len(reason.strip()) < 5:
        raise InvalidInput("reason: say why the request is rejected (at least 5 characters)")
    if any(a.steward_id == who.user_id for a in item.approvals):
        raise Conflict("you have already decided on this request")
    item.approvals.append(Approval(steward_id=who.user_id, steward=who.username,
                                   decision="approve" if approve else "reject",
                                   reason=reason.strip()))
    # Touch the row so its version moves: two stewards deciding at once then conflict.
    approvals = sum(a.decision == "approve" for a in item.approvals)
    item.decision_reason = f"{approvals} of {item.approvals_required} approvals"
    session.flush()
    register.append(session, key, kind="request.approval" if approve else "request.rejection",
                    actor=official_actor(who), subject=f"request:{item.request_id}",
                    payload={"dataset": item.dataset_id, "reason": reason.strip()})
    if not approve:
        _close(session, key, item, "rejected", reason.strip(), official_actor(who))
    elif approvals >= item.approvals_required:
        _close(session, key, item, "granted", reason.strip() or "approved",
               official_actor(who))
        issue_grant(session, key, project, item, policy_of(get_dataset(session,
                                                                       item.dataset_id)))
    return item


def revoke_grant(session: Session, key: SigningKey, who: Principal, grant_id: str,
                 reason: str, *, timeout: float = 60.0) -> Grant:
    grant = session.get(Grant, grant_id)
    if grant is None:
        raise NotFound(f"grant {grant_id} does not exist")
    ds = get_dataset(session, grant.dataset_id)
    if not (who.has("admin") or (who.has("steward") and who.org_id == ds.org_id)):
        raise PermissionDenied(f"only a data steward of {ds.org_id!r} can revoke this grant")
    if grant.revoked_at is not None:
        raise Conflict(f"grant {grant_id} was already revoked")
    if len(reason.strip()) < 5:
        raise InvalidInput("reason: say why the grant is revoked (at least 5 characters)")
    grant.revoked_at, grant.revoked_reason = utcnow(), reason.strip()
    item = session.get(RequestItem, grant.item_id)
    if item is not None:
        item.state = "revoked"
    # The datasite hears at once, so it stops new work itself rather than trusting the hub.
    enqueue(session, datasite_id=ds.datasite_id, kind="grant.revoked",
            body={"dataset": ds.name, "grant_id": grant_id}, timeout=3600)
    register.append(session, key, kind="grant.revoked", actor=official_actor(who),
                    subject=f"grant:{grant_id}",
                    payload={"project": grant.project_id, "dataset": grant.dataset_id,
                             "reason": reason.strip()})
    return grant


def _grant_active(session: Session, item: RequestItem) -> bool:
    grant = session.scalar(select(Grant).where(Grant.item_id == item.id))
    return grant is not None and grant.revoked_at is None and grant.expires_at > utcnow()


def active_grant(session: Session, who: Principal, project_id: str, dataset_id: str) -> Grant:
    """The project's active grant for ``dataset_id``, checked at every use (queries, job
    submission, a job's approval to run): with it, that ``who`` and the project still hold
    the evidence and references the dataset's policy requires."""
    # A suspended member's grants are unusable, however the request reached here (a job
    # approved later runs on its author's grant).
    member = session.get(User, who.user_id)
    if member is not None:
        require_user_standing(member)
    project = get_project(session, project_id)
    require_member(project, who)
    grants = session.scalars(select(Grant).where(
        Grant.project_id == project_id, Grant.dataset_id == dataset_id))
    now = utcnow()
    best = None
    for g in grants:
        if g.revoked_at is None and g.expires_at > now:
            best = g
    if best is None:
        raise PermissionDenied(
            f"project {project_id} has no active grant for {dataset_id}: ask for access with "
            f"'ndl request {project_id} {dataset_id}' (grants expire and can be revoked)")
    ds = get_dataset(session, dataset_id)
    rules.require_requirements_met(
        evidence.shortfalls(session, project, [who.user_id],
                            evidence.requirements_for(session, ds.tier, policy_of(ds).requires)),
        doing=f"use {dataset_id}")
    return best


def request_json(req: AccessRequest, *, names: bool = True) -> dict[str, Any]:
    """``names=False`` for the public register: stewards appear as their organisation."""
    return {
        "id": req.id, "project": req.project_id, "created_at": req.created_at.isoformat(),
        "items": [item_json(i, names=names) for i in req.items],
    }


def item_json(item: RequestItem, *, names: bool = True) -> dict[str, Any]:
    return {
        "id": item.id, "request": item.request_id, "dataset": item.dataset_id,
        "org": item.org_id, "tier": item.tier, "state": item.state,
        "reason": item.decision_reason, "approvals_required": item.approvals_required,
        "approvals": [{"steward": a.steward if names else f"a steward of {item.org_id}",
                       "decision": a.decision, "reason": a.reason,
                       "at": a.at.isoformat()} for a in item.approvals],
        "created_at": item.created_at.isoformat(),
        "decided_at": item.decided_at.isoformat() if item.decided_at else None,
    }


def grant_json(g: Grant) -> dict[str, Any]:
    now = utcnow()
    state = "revoked" if g.revoked_at else ("expired" if g.expires_at <= now else "active")
    return {"id": g.id, "project": g.project_id, "dataset": g.dataset_id, "tier": g.tier,
            "state": state, "granted_at": g.granted_at.isoformat(),
            "expires_at": g.expires_at.isoformat(),
            "revoked_at": g.revoked_at.isoformat() if g.revoked_at else None,
            "revoked_reason": g.revoked_reason}


def pending_for_org(session: Session, org_id: str) -> list[RequestItem]:
    return list(session.scalars(select(RequestItem).where(
        RequestItem.org_id == org_id, RequestItem.state == "pending")
        .order_by(RequestItem.created_at)))


def time_to_access(session: Session) -> dict[str, Any]:
    """Median and p90 hours from request to decision, by tier and by organisation."""
    items = list(session.scalars(select(RequestItem).where(RequestItem.decided_at.is_not(None))))
    pending = session.scalars(select(RequestItem).where(RequestItem.state == "pending")).all()

    def stats(hours: list[float]) -> dict[str, Any]:
        if not hours:
            return {"decided": 0, "median_hours": None, "p90_hours": None}
        ordered = sorted(hours)
        p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
        return {"decided": len(hours), "median_hours": round(statistics.median(hours), 4),
                "p90_hours": round(p90, 4)}

    by: dict[str, dict[str, list[float]]] = {"tier": {}, "org": {}}
    for i in items:
        if i.state not in ("granted", "revoked"):
            continue
        h = _hours(i)
        by["tier"].setdefault(i.tier, []).append(h)
        by["org"].setdefault(i.org_id, []).append(h)
    granted = [h for hs in by["tier"].values() for h in hs]
    return {
        "overall": stats(granted),
        "by_tier": {k: stats(v) for k, v in sorted(by["tier"].items())},
        "by_org": {k: stats(v) for k, v in sorted(by["org"].items())},
        "pending": len(pending),
        "rejected": sum(1 for i in items if i.state == "rejected"),
    }
