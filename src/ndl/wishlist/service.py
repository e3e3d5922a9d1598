"""Wishes, votes, comments, and each organisation's demand dashboard."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ndl.access.accounts import Principal, get_org, official_actor, public_name
from ndl.access.models import User
from ndl.access.project_models import Grant, RequestItem
from ndl.catalogue.metadata import TIERS
from ndl.catalogue.models import Dataset
from ndl.catalogue.service import get_dataset
from ndl.core.db import utcnow
from ndl.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from ndl.core.keys import SigningKey
from ndl.jobs.models import Job
from ndl.ledger import register
from ndl.ledger.models import LedgerEntry
from ndl.wishlist.models import Wish, WishComment, WishVote

STATES = ("open", "planned", "published")
# The register kinds that record a question asked of a dataset (the dashboard's "queries").
QUESTION_KINDS = ("query.submitted", "open.sql", "private_query.submitted")


def create_wish(session: Session, key: SigningKey, who: Principal, *, title: str,
                description: str, orgs: list[str], linkage: str = "", purpose: str = "",
                tier_needed: str = "safeguarded") -> Wish:
    problems = []
    if len(title.strip()) < 5:
        problems.append({"field": "title", "problem": "say what data you want (5+ characters)"})
    if len(description.strip()) < 10:
        problems.append({"field": "description",
                         "problem": "describe the data and why (10+ characters)"})
    if tier_needed not in TIERS:
        problems.append({"field": "tier_needed", "problem": f"must be one of {', '.join(TIERS)}"})
    if problems:
        raise InvalidInput(f"{problems[0]['field']}: {problems[0]['problem']}", detail=problems)
    for org in orgs:
        get_org(session, org)
    wish = Wish(title=title.strip(), description=description.strip(), orgs=sorted(set(orgs)),
                linkage=linkage.strip(), purpose=purpose.strip(), tier_needed=tier_needed,
                created_by=who.user_id)
    session.add(wish)
    session.flush()
    # The register records the decision to ask, not the asker's words (those stay on the
    # wishlist, where they can be edited or removed): who by role, which organisations.
    register.append(session, key, kind="wish.created", actor=official_actor(who),
                    subject=f"wish:{wish.id}",
                    payload={"orgs": wish.orgs, "tier_needed": wish.tier_needed})
    return wish


def get_wish(session: Session, wish_id: int) -> Wish:
    wish = session.get(Wish, wish_id)
    if wish is None:
        raise NotFound(f"wish {wish_id} does not exist")
    return wish


def vote(session: Session, who: Principal, wish_id: int, *, up: bool = True) -> int:
    get_wish(session, wish_id)
    existing = session.scalar(select(WishVote).where(WishVote.wish_id == wish_id,
                                                     WishVote.user_id == who.user_id))
    if up and existing is None:
        try:
            with session.begin_nested():
                session.add(WishVote(wish_id=wish_id, user_id=who.user_id))
        except IntegrityError:
            pass  # a double click raced us: one vote either way
    elif not up and existing is not None:
        session.delete(existing)
    session.flush()
    return votes(session, wish_id)


def votes(session: Session, wish_id: int) -> int:
    return int(session.scalar(select(func.count()).select_from(WishVote)
                              .where(WishVote.wish_id == wish_id)) or 0)


def comment(session: Session, who: Principal, wish_id: int, text: str) -> WishComment:
    get_wish(session, wish_id)
    if not text.strip() or len(text) > 5000:
        raise InvalidInput("text: write a comment of 1 to 5,000 characters")
    c = WishComment(wish_id=wish_id, user_id=who.user_id, username=who.username,
                    text=text.strip())
    session.add(c)
    session.flush()
    return c


def set_state(session: Session, key: SigningKey, who: Principal, wish_id: int, state: str,
              dataset_id: str | None = None) -> Wish:
    wish = get_wish(session, wish_id)
    if state not in STATES:
        raise InvalidInput(f"state must be one of {', '.join(STATES)}")
    if not (who.has("admin") or (who.has("steward") and who.org_id in wish.orgs)):
        raise PermissionDenied("only a steward of an organisation the wish names can change it")
    if state == "published":
        if not dataset_id:
            raise InvalidInput("dataset: name the dataset that answers this wish")
        ds = get_dataset(session, dataset_id)
        if not who.has("admin") and ds.org_id != who.org_id:
            raise PermissionDenied("link a dataset of your own organisation")
    wish.state, wish.dataset_id, wish.updated_at = state, dataset_id, utcnow()
    register.append(session, key, kind=f"wish.{state}", actor=official_actor(who),
                    subject=f"wish:{wish.id}", payload={"dataset": dataset_id})
    return wish


def link_published(session: Session, key: SigningKey, ds: Dataset) -> list[int]:
    """A newly published dataset answers the planned wishes that named it in advance."""
    linked = []
    for wish in session.scalars(select(Wish).where(Wish.state == "planned",
                                                   Wish.dataset_id == ds.id)):
        wish.state, wish.updated_at = "published", utcnow()
        register.append(session, key, kind="wish.published", actor="hub",
                        subject=f"wish:{wish.id}", payload={"dataset": ds.id})
        linked.append(wish.id)
    return linked


def plan(session: Session, key: SigningKey, who: Principal, wish_id: int,
         dataset_id: str | None) -> Wish:
    """Mark planned, optionally naming the dataset id it will be published as."""
    wish = set_state(session, key, who, wish_id, "planned")
    if dataset_id:
        if "/" not in dataset_id:
            raise InvalidInput("dataset: give the future dataset id as <datasite>/<name>")
        if session.get(Dataset, dataset_id) is not None:
            raise Conflict(f"{dataset_id} is already published: mark the wish published")
        wish.dataset_id = dataset_id
    return wish


def wish_json(session: Session, wish: Wish, *, with_comments: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": wish.id, "title": wish.title, "description": wish.description,
        "orgs": wish.orgs, "linkage": wish.linkage, "purpose": wish.purpose,
        "tier_needed": wish.tier_needed, "state": wish.state, "dataset": wish.dataset_id,
        "votes": votes(session, wish.id), "created_at": wish.created_at.isoformat(),
    }
    if with_comments:
        rows = session.execute(
            select(WishComment, User).join(User, User.id == WishComment.user_id)
            .where(WishComment.wish_id == wish.id).order_by(WishComment.at, WishComment.id))
        out["comments"] = [
            {"user": commenter_name(u), "text": c.text, "at": c.at.isoformat()}
            for c, u in rows]
    return out


def commenter_name(user: User) -> str:
    """Comments are public: officials by role and organisation, others as "a researcher",
    never a username."""
    return public_name(frozenset(user.role_names), user.org_id)


def list_wishes(session: Session, *, state: str | None = None, org: str | None = None,
                sort: str = "votes") -> list[Wish]:
    stmt = select(Wish)
    if state:
        stmt = stmt.where(Wish.state == state)
    wishes = list(session.scalars(stmt))
    if org:
        wishes = [w for w in wishes if org in w.orgs]
    if sort == "votes":
        counts = dict(session.execute(select(WishVote.wish_id, func.count())
                                      .group_by(WishVote.wish_id)).all())
        wishes.sort(key=lambda w: (-counts.get(w.id, 0), -w.id))
    else:
        wishes.sort(key=lambda w: -w.id)
    return wishes


def dashboard(session: Session, org_id: str) -> dict[str, Any]:
    """The value an organisation's data creates, and the demand it has not met yet."""
    org = get_org(session, org_id)
    datasets = list(session.scalars(select(Dataset).where(Dataset.org_id == org_id)))
    ids = [d.id for d in datasets]
    wishes = [w for w in session.scalars(select(Wish)) if org_id in w.orgs]
    items = list(session.scalars(select(RequestItem).where(RequestItem.org_id == org_id)))
    grants = list(session.scalars(select(Grant).where(Grant.dataset_id.in_(ids)))) if ids else []
    queries: dict[str, int] = dict(session.execute(
        select(LedgerEntry.subject, func.count()).where(
            # Every question asked of the data: exact (open) and private (safeguarded) alike;
            # leaving out private queries undercounted exactly the sensitive datasets.
            LedgerEntry.kind.in_(QUESTION_KINDS),
            LedgerEntry.subject.in_(ids)).group_by(LedgerEntry.subject)).all()) if ids else {}
    # Controlled jobs that ran on the organisation's data (the register's job.ran), each
    # counted once per dataset it read.
    ran = set(session.scalars(select(LedgerEntry.subject).where(
        LedgerEntry.kind == "job.ran", LedgerEntry.subject.in_(
            select(Job.id).where(Job.org_id == org_id)))))
    jobs: dict[str, int] = {}
    for job in session.scalars(select(Job).where(Job.id.in_(ran))) if ran else []:
        for ds_id in set(job.datasets or []):
            jobs[ds_id] = jobs.get(ds_id, 0) + 1
    now = utcnow()
    per_dataset = [{
        "id": d.id, "title": d.title, "tier": d.tier,
        "requests": sum(1 for i in items if i.dataset_id == d.id),
        "grants_active": sum(1 for g in grants if g.dataset_id == d.id and g.revoked_at is None
                             and g.expires_at > now),
        "queries": queries.get(d.id, 0), "jobs": jobs.get(d.id, 0),
    } for d in sorted(datasets, key=lambda d: d.id)]
    return {
        "org": {"id": org.id, "name": org.name},
        "datasets": len(datasets),
        "wishes": len(wishes),
        "wish_votes": sum(votes(session, w.id) for w in wishes),
        "wishes_open": sum(1 for w in wishes if w.state == "open"),
        "requests": len(items),
        "requests_pending": sum(1 for i in items if i.state == "pending"),
        "grants": len(grants),
        "queries": sum(queries.values()),
        "jobs": len(ran),
        "per_dataset": per_dataset,
        "top_wishes": [{"id": w.id, "title": w.title, "votes": votes(session, w.id),
                        "state": w.state} for w in wishes][:10],
    }


def can_steward(who: Principal | None, wish: Wish) -> bool:
    """Whether ``who`` may mark ``wish`` planned or published (an admin, or a steward of an
    organisation it names): the rule :func:`set_state` enforces, for faces offering forms."""
    from ndl.access import rules

    # An official of no organisation in particular is an admin.
    return rules.is_org_official(who, None) or any(
        rules.is_org_official(who, o) for o in wish.orgs)


def voted_by(session: Session, who: Principal | None) -> set[int]:
    """The wishes ``who`` has voted for."""
    if who is None:
        return set()
    return set(session.scalars(select(WishVote.wish_id).where(WishVote.user_id == who.user_id)))


def publishable_datasets(session: Session, who: Principal, limit: int) -> list[Dataset]:
    """Datasets ``who`` may name as publishing a wish: an admin any, a steward their own."""
    from ndl.access import rules
    from ndl.catalogue.service import datasets_of_org

    return datasets_of_org(session, None if rules.is_org_official(who, None) else
                           who.org_id or "", limit)
