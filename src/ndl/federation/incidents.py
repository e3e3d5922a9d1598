"""Incidents: raise one, tell the parties it touches, link the response, contain, close.

An incident is private to the hub. What the public register holds is only that it happened:
its number, severity, state changes and the kinds of response taken, with times — never its
description, title, or the names of the people involved. The people it touches are told
through notices (``GET /api/notices``); each datasite it touches gets a ``notice`` message in
its mailbox whose notice is signed by the hub, which the datasite checks, keeps and
acknowledges (:mod:`ndl.datasite.notices`).

Who sees what (``ndl.access.rules``): admins see every incident and its description; whoever
raised one sees it and its description; the people it touches see its title, severity, state,
what it touches and the responses, not its description. Only admins act on, contain or close
incidents. Other services record their response against an incident with
:func:`link_response` (a suspension or key revocation names the incident it answers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import rfc8785
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ndl.access import rules
from ndl.access.accounts import Principal
from ndl.access.models import Org, User, UserRole
from ndl.access.project_models import Project, ProjectMember
from ndl.catalogue.models import Dataset
from ndl.core.db import utcnow
from ndl.core.errors import Conflict, InvalidInput, NotFound, RateLimited
from ndl.core.keys import SigningKey
from ndl.federation.incident_models import Incident, IncidentAction, IncidentLink, Notice
from ndl.federation.models import Datasite, Message
from ndl.federation.service import enqueue
from ndl.ledger import register, security_log
from ndl.ledger.models import LedgerEntry

SEVERITIES = ("low", "medium", "high", "critical")
STATES = ("open", "contained", "closed")
# Where each state may go next: closing is final.
NEXT_STATES = {"open": ("contained", "closed"), "contained": ("closed",), "closed": ()}
STATE_KINDS = {"contained": "incident.contained", "closed": "incident.closed"}
ACTIONS = ("suspension", "reinstatement", "key_revocation", "key_rotation",
           "grant_revocation", "token_revocation", "dataset_withdrawal", "notification",
           "other")
LINK_KINDS = ("dataset", "project", "datasite", "org", "user")
NOTICE_KIND = "notice"
# A datasite offline for a week still hears of an incident when it comes back.
NOTICE_TTL = 7 * 24 * 3600.0
MAX_REFS = 50
MAX_RAISED_PER_DAY = 20
_REF_CHARS = 200


def _refs(values: list[str], what: str) -> list[str]:
    out = []
    for v in values:
        v = v.strip()
        if not v or len(v) > _REF_CHARS or any(ord(c) < 32 for c in v):
            raise ValueError(f"each {what} must be 1-{_REF_CHARS} printable characters")
        out.append(v)
    return sorted(set(out))


class NewIncident(BaseModel):
    """What someone raising an incident says."""

    title: str = Field(min_length=3, max_length=200,
                       description="A short line the affected parties are told.")
    description: str = Field(min_length=1, max_length=20_000,
                             description="What happened: confidential (admins and you).")
    severity: Literal["low", "medium", "high", "critical"]
    datasets: list[str] = Field(default_factory=list, max_length=MAX_REFS)
    projects: list[str] = Field(default_factory=list, max_length=MAX_REFS)
    datasites: list[str] = Field(default_factory=list, max_length=MAX_REFS)
    orgs: list[str] = Field(default_factory=list, max_length=MAX_REFS)
    users: list[str] = Field(default_factory=list, max_length=MAX_REFS)

    @field_validator("datasets", "projects", "datasites", "orgs", "users")
    @classmethod
    def _clean(cls, v: list[str]) -> list[str]:
        return _refs(v, "name")

    @field_validator("title")
    @classmethod
    def _title(cls, v: str) -> str:
        if any(ord(c) < 32 for c in v):
            raise ValueError("the title is one line of text")
        return v.strip()


@dataclass(frozen=True)
class ActionView:
    action: str
    subject: str
    actor: str
    note: str
    at: datetime
    register_seq: int | None
    register_hash: str | None

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "subject": self.subject, "actor": self.actor,
                "note": self.note, "at": self.at.isoformat(),
                "register_seq": self.register_seq, "register_hash": self.register_hash}


@dataclass(frozen=True)
class NoticeView:
    """A notice as its recipient (or an admin) sees it."""

    incident: int
    recipient_kind: str
    recipient: str
    event: str
    why: str
    title: str
    severity: str
    state: str
    at: datetime
    acknowledged: bool | None = None  # a datasite's notice: whether it answered

    def to_json(self) -> dict[str, Any]:
        out = {"incident": self.incident, "event": self.event, "why": self.why,
               "title": self.title, "severity": self.severity, "state": self.state,
               "at": self.at.isoformat(), "recipient_kind": self.recipient_kind,
               "recipient": self.recipient}
        if self.acknowledged is not None:
            out["acknowledged"] = self.acknowledged
        return out


@dataclass(frozen=True)
class IncidentView:
    id: int
    title: str
    severity: str
    state: str
    created_at: datetime
    updated_at: datetime
    touches: dict[str, list[str]]
    actions: list[ActionView]
    description: str | None = None  # admins and the raiser only
    raised_by: str | None = None    # admins and the raiser only
    notices: list[NoticeView] = field(default_factory=list)  # admins only
    register_seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "title": self.title, "severity": self.severity,
            "state": self.state, "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(), "touches": self.touches,
            "actions": [a.to_json() for a in self.actions], "register_seq": self.register_seq}
        if self.description is not None:
            out["description"] = self.description
        if self.raised_by is not None:
            out["raised_by"] = self.raised_by
        if self.notices:
            out["notices"] = [n.to_json() for n in self.notices]
        return out


@dataclass(frozen=True)
class Raised:
    """A new incident and the datasites whose mailboxes now hold its notice (to wake)."""

    incident: IncidentView
    datasites: list[str]


# -- who an incident touches --------------------------------------------------------------------

def _check_refs(session: Session, body: NewIncident) -> None:
    """Every name must exist: a typo would leave a party untold without anyone knowing."""
    checks: list[tuple[str, list[str], Any]] = [
        ("dataset", body.datasets, Dataset), ("project", body.projects, Project),
        ("datasite", body.datasites, Datasite), ("organisation", body.orgs, Org)]
    for what, refs, model in checks:
        for ref in refs:
            if session.get(model, ref) is None:
                raise NotFound(f"no {what} {ref!r}: name it as the catalogue does (datasets "
                               "as 'datasite/name'), or leave it out")
    for name in body.users:
        if session.scalar(select(User.id).where(User.username == name)) is None:
            raise NotFound(f"no user {name!r}: give usernames, or leave it out")


def _touches(session: Session, inc_id: int) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {k: [] for k in LINK_KINDS}
    for link in session.scalars(select(IncidentLink).where(IncidentLink.incident_id == inc_id)
                                .order_by(IncidentLink.kind, IncidentLink.ref)):
        out[link.kind].append(link.ref)
    return out


def _stewards(session: Session, orgs: set[str]) -> dict[str, str]:
    if not orgs:
        return {}
    rows = session.execute(select(User.username, User.org_id).join(UserRole).where(
        UserRole.role == "steward", User.org_id.in_(orgs)))
    return {u: f"you are a data steward of {o}" for u, o in rows}


def affected(session: Session, touches: dict[str, list[str]]
             ) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Who to tell, and why: usernames -> reason, datasite -> what of it is touched."""
    sites: dict[str, list[str]] = {}
    orgs: set[str] = set(touches["org"])
    for ds_id in touches["dataset"]:
        ds = session.get(Dataset, ds_id)
        if ds is not None:
            sites.setdefault(ds.datasite_id, []).append(f"dataset {ds_id}")
            orgs.add(ds.org_id)
    for site_id in touches["datasite"]:
        site = session.get(Datasite, site_id)
        if site is not None:
            sites.setdefault(site_id, []).append(f"datasite {site_id}")
            orgs.add(site.org_id)
    if touches["org"]:
        for site in session.scalars(select(Datasite).where(
                Datasite.org_id.in_(touches["org"]))):
            sites.setdefault(site.id, []).append(f"organisation {site.org_id}")
    users = _stewards(session, orgs)
    for pid in touches["project"]:
        for m in session.scalars(select(ProjectMember).where(ProjectMember.project_id == pid)):
            users.setdefault(m.username, f"you are a member of project {pid}")
    for name in touches["user"]:
        users[name] = "it names you"
    return users, {k: sorted(set(v)) for k, v in sites.items()}


# -- raising, telling, acting ----------------------------------------------------------------

def _register_actor(who: Principal | str) -> str:
    # Never a name, nor a user number: a member who reports an incident is not exposed.
    if isinstance(who, str):
        return "admin" if who == "admin-cli" else who
    return "admin" if who.has("admin") else "member"


def _notice_body(key: SigningKey, inc: Incident, event: str, touched: list[str]
                 ) -> dict[str, Any]:
    """The notice a datasite keeps, signed by the hub on its own (not just its envelope), so
    the record stays verifiable after the message is gone."""
    notice: dict[str, Any] = {"incident": inc.id, "event": event, "severity": inc.severity,
              "state": inc.state, "title": inc.title, "touches": touched,
              "at": utcnow().isoformat(timespec="seconds")}
    return {"notice": notice, "notice_sig": key.sign(notice_signed_bytes(notice))}


def _tell(session: Session, key: SigningKey, inc: Incident, event: str) -> list[str]:
    """Notices to every affected user and datasite; returns the datasites to wake."""
    users, sites = affected(session, _touches(session, inc.id))
    for name, why in sorted(users.items()):
        if name != inc.raised_by:
            session.add(Notice(incident_id=inc.id, recipient_kind="user", recipient=name,
                               event=event, why=why[:300]))
    for site_id, touched in sorted(sites.items()):
        msg = enqueue(session, datasite_id=site_id, kind=NOTICE_KIND,
                      body=_notice_body(key, inc, event, touched), timeout=NOTICE_TTL)
        session.add(Notice(incident_id=inc.id, recipient_kind="datasite", recipient=site_id,
                           event=event, why=("it touches " + ", ".join(touched))[:300],
                           message_id=msg.id))
    return sorted(sites)


def _check_flood(session: Session, who: Principal) -> None:
    """Each incident messages datasites and people: a member raises a bounded number a day
    (admins, who answer them, are not limited)."""
    if rules.may_see_every_incident(who):
        return
    since = utcnow() - timedelta(days=1)
    raised = session.scalar(select(func.count()).select_from(Incident).where(
        Incident.raised_by == who.username, Incident.created_at >= since)) or 0
    if raised >= MAX_RAISED_PER_DAY:
        raise RateLimited(f"you have raised {raised} incidents in the last 24 hours, the most "
                          "a member may; add to one of them through an admin, or wait",
                          detail={"retry_after": 3600})


def raise_incident(session: Session, key: SigningKey, who: Principal, body: NewIncident,
                   *, source: str = "") -> Raised:
    """Record an incident, tell those it touches, and put that it happened in the register."""
    rules.require_signed_in(who, doing="raise an incident")
    _check_flood(session, who)
    _check_refs(session, body)
    now = utcnow()
    inc = Incident(title=body.title, description=body.description, severity=body.severity,
                   state="open", raised_by=who.username, created_at=now, updated_at=now)
    session.add(inc)
    session.flush()
    refs = {"dataset": body.datasets, "project": body.projects, "datasite": body.datasites,
            "org": body.orgs, "user": body.users}
    for kind, values in refs.items():
        for ref in values:
            session.add(IncidentLink(incident_id=inc.id, kind=kind, ref=ref))
    session.flush()
    entry = register.append(
        session, key, kind="incident.raised", actor=_register_actor(who),
        subject=f"incident:{inc.id}",
        payload={"severity": inc.severity, "state": "open",
                 "touches": {k: len(v) for k, v in refs.items() if v}})
    inc.register_seq = entry.seq
    sites = _tell(session, key, inc, "raised")
    security_log.record(session, "admin.incident_raised", actor=f"user:{who.username}",
                        subject=f"incident:{inc.id}", source=source, org=who.org_id,
                        details={"severity": inc.severity})
    return Raised(_view(session, who, inc), sites)


def _get(session: Session, incident_id: int, *, lock: bool = False) -> Incident:
    q = select(Incident).where(Incident.id == incident_id)
    inc = session.scalar(q.with_for_update() if lock else q)
    if inc is None:
        raise NotFound(f"no incident {incident_id}; list yours with 'ndl incident list'")
    return inc


def _notified(session: Session, inc_id: int) -> set[str]:
    return set(session.scalars(select(Notice.recipient).where(
        Notice.incident_id == inc_id, Notice.recipient_kind == "user")))


def get_incident(session: Session, who: Principal | None, incident_id: int) -> IncidentView:
    """One incident, as much of it as ``who`` may see; someone else's is "not found"."""
    rules.require_signed_in(who, doing="see an incident")
    assert who is not None
    inc = session.get(Incident, incident_id)
    if inc is None or not rules.may_see_incident(who, raised_by=inc.raised_by,
                                                 affected=_notified(session, inc.id)):
        raise NotFound(f"no incident {incident_id} that you may see; list yours with "
                       "'ndl incident list'")
    return _view(session, who, inc)


def _view(session: Session, who: Principal | None, inc: Incident) -> IncidentView:
    actions = [ActionView(a.action, a.subject, a.actor, a.note, a.at, a.register_seq,
                          a.register_hash)
               for a in session.scalars(select(IncidentAction).where(
                   IncidentAction.incident_id == inc.id).order_by(IncidentAction.id))]
    detail = rules.may_read_incident_detail(who, raised_by=inc.raised_by)
    is_admin = rules.may_see_every_incident(who)
    return IncidentView(
        inc.id, inc.title, inc.severity, inc.state, inc.created_at, inc.updated_at,
        _touches(session, inc.id), actions,
        description=inc.description if detail else None,
        raised_by=inc.raised_by if detail else None,
        notices=_notice_views(session, inc, admin=True) if is_admin else [],
        register_seq=inc.register_seq)


def list_incidents(session: Session, who: Principal | None, *, state: str | None = None,
                   limit: int = 100) -> list[IncidentView]:
    """Admins: every incident. Others: those they raised or were told about."""
    who = rules.require_signed_in(who, doing="list incidents")
    if state is not None and state not in STATES:
        raise InvalidInput(f"state must be one of {', '.join(STATES)}, not {state[:20]!r}")
    q = select(Incident)
    if not rules.may_see_every_incident(who):
        told = select(Notice.incident_id).where(Notice.recipient_kind == "user",
                                                Notice.recipient == who.username)
        q = q.where((Incident.raised_by == who.username) | Incident.id.in_(told))
    if state is not None:
        q = q.where(Incident.state == state)
    rows = session.scalars(q.order_by(Incident.id.desc()).limit(max(1, min(limit, 1000))))
    return [_view(session, who, inc) for inc in rows]


def _notice_views(session: Session, inc: Incident, *, admin: bool,
                  username: str | None = None) -> list[NoticeView]:
    q = select(Notice).where(Notice.incident_id == inc.id)
    if username is not None:
        q = q.where(Notice.recipient_kind == "user", Notice.recipient == username)
    out = []
    for n in session.scalars(q.order_by(Notice.id)):
        acked = None
        if admin and n.message_id is not None:
            msg = session.get(Message, n.message_id)
            acked = msg is not None and msg.state == "answered"
        out.append(NoticeView(inc.id, n.recipient_kind, n.recipient, n.event, n.why,
                              inc.title, inc.severity, inc.state, n.created_at, acked))
    return out


def my_notices(session: Session, who: Principal | None, *, limit: int = 200
               ) -> list[NoticeView]:
    """The notices addressed to ``who``, newest first."""
    who = rules.require_signed_in(who, doing="see your notices")
    rows = session.execute(select(Notice, Incident).join(
        Incident, Incident.id == Notice.incident_id).where(
        Notice.recipient_kind == "user", Notice.recipient == who.username)
        .order_by(Notice.id.desc()).limit(max(1, min(limit, 1000))))
    return [NoticeView(inc.id, "user", n.recipient, n.event, n.why, inc.title, inc.severity,
                       inc.state, n.created_at) for n, inc in rows]


# -- the response -------------------------------------------------------------------------------

def _check_action(action: str, subject: str, note: str) -> None:
    if action not in ACTIONS:
        raise InvalidInput(f"action must be one of {', '.join(ACTIONS)}, not {action[:40]!r}")
    if not subject.strip() or len(subject) > 300 or any(ord(c) < 32 for c in subject):
        raise InvalidInput("subject: name what was acted on in 1-300 characters, e.g. "
                           "'user:alice', 'datasite:nhs-trust' or 'grant:g-123'")
    if len(note) > 2000:
        raise InvalidInput("note: at most 2,000 characters")


def link_response(session: Session, incident_id: int, action: str, subject: str, *,
                  actor: str = "hub", note: str = "", entry: LedgerEntry | None = None
                  ) -> ActionView:
    """Record that ``action`` on ``subject`` answers incident ``incident_id``.

    For services that have already checked who may act (a suspension, a key revocation): it
    checks no rule itself. ``entry`` is the register entry the action wrote, if it wrote one;
    without it the newest entry about ``subject`` (in this transaction or before) is linked.
    """
    _check_action(action, subject, note)
    inc = _get(session, incident_id, lock=True)
    if inc.state == "closed":
        raise Conflict(f"incident {incident_id} is closed; raise a new one for new events")
    if entry is None:
        session.flush()
        entry = session.scalar(select(LedgerEntry).where(LedgerEntry.subject == subject)
                               .order_by(LedgerEntry.seq.desc()).limit(1))
    row = IncidentAction(incident_id=inc.id, action=action, subject=subject.strip(),
                         actor=actor[:64], note=note.strip(), at=utcnow(),
                         register_seq=entry.seq if entry else None,
                         register_hash=entry.hash if entry else None)
    session.add(row)
    inc.updated_at = row.at
    security_log.record(session, "admin.incident_action", actor=actor,
                        subject=f"incident:{inc.id}",
                        details={"action": action, "on": subject.strip()})
    return ActionView(row.action, row.subject, row.actor, row.note, row.at, row.register_seq,
                      row.register_hash)


def _actor_name(who: Principal | str) -> str:
    return who if isinstance(who, str) else f"user:{who.username}"


def record_action(session: Session, key: SigningKey, who: Principal | str, incident_id: int,
                  *, action: str, subject: str, note: str = "",
                  register_seq: int | None = None) -> ActionView:
    """An admin records a response (``who`` a string: an operator with the hub's database).

    The register says that a response of this kind was taken, and which entry it was (e.g.
    the ``user.suspended`` entry), not on whom.
    """
    if not isinstance(who, str):
        rules.require_incident_responder(who, doing="record a response to an incident")
    _check_action(action, subject, note)
    entry = None
    if register_seq is not None:
        entry = session.get(LedgerEntry, register_seq)
        if entry is None:
            raise NotFound(f"the register has no entry {register_seq}; see 'ndl register'")
    view = link_response(session, incident_id, action, subject, actor=_actor_name(who),
                         note=note, entry=entry)
    register.append(session, key, kind="incident.action", actor=_register_actor(who),
                    subject=f"incident:{incident_id}",
                    payload={"action": action, "entry": view.register_seq})
    return view


def set_state(session: Session, key: SigningKey, who: Principal | str, incident_id: int,
              new_state: str) -> Raised:
    """Contain or close an incident; the register and everyone told hear of it."""
    if not isinstance(who, str):
        rules.require_incident_responder(who, doing=f"mark an incident {new_state[:20]}")
    if new_state not in STATES:
        raise InvalidInput(f"state must be one of {', '.join(STATES)}, not {new_state[:20]!r}")
    inc = _get(session, incident_id, lock=True)
    if new_state not in NEXT_STATES[inc.state]:
        raise Conflict(f"incident {incident_id} is {inc.state}: it can go to "
                       + (" or ".join(NEXT_STATES[inc.state]) or "no other state"))
    inc.state, inc.updated_at = new_state, utcnow()
    register.append(session, key, kind=STATE_KINDS[new_state], actor=_register_actor(who),
                    subject=f"incident:{inc.id}",
                    payload={"severity": inc.severity, "state": new_state})
    sites = _tell(session, key, inc, new_state)
    security_log.record(session, "admin.incident_state", actor=_actor_name(who),
                        subject=f"incident:{inc.id}", details={"state": new_state})
    viewer = who if not isinstance(who, str) else None
    view = _view(session, viewer, inc) if viewer is not None else IncidentView(
        inc.id, inc.title, inc.severity, inc.state, inc.created_at, inc.updated_at,
        _touches(session, inc.id), [], register_seq=inc.register_seq)
    return Raised(view, sites)


def notice_signed_bytes(notice: dict[str, Any]) -> bytes:
    """The bytes a notice's signature covers (the datasite checks them)."""
    return bytes(rfc8785.dumps(notice))
