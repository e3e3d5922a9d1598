"""The data wishlist and each organisation's demand dashboard."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from ndl.access.accounts import Principal, public_name
from ndl.core.db import RowId
from ndl.hub.deps import authenticated, hub, public, requires
from ndl.hub.state import HubState
from ndl.wishlist import service as wishes

router = APIRouter(prefix="/api")
HubDep = Annotated[HubState, Depends(hub)]


class WishBody(BaseModel):
    title: str = Field(max_length=300)
    description: str = Field(max_length=5000)
    orgs: list[str] = Field(default_factory=list, max_length=20)
    linkage: str = Field(default="", max_length=2000)
    purpose: str = Field(default="", max_length=2000)
    tier_needed: str = "safeguarded"


@router.get("/wishes")
def list_wishes(state: HubDep, _: Annotated[Principal | None, Depends(public)],
                wish_state: str | None = Query(default=None, alias="state"),
                org: str | None = None,
                sort: str = Query(default="votes", pattern="^(votes|new)$")) -> dict[str, Any]:
    with state.db.read() as s:
        return {"wishes": [wishes.wish_json(s, w) for w in
                           wishes.list_wishes(s, state=wish_state, org=org, sort=sort)]}


@router.post("/wishes", status_code=201)
def create_wish(body: WishBody, state: HubDep,
                who: Annotated[Principal, Depends(authenticated)]) -> dict[str, Any]:
    with state.db.write() as s:
        return wishes.wish_json(s, wishes.create_wish(s, state.key, who, **body.model_dump()))


@router.get("/wishes/{wish_id}")
def get_wish(wish_id: RowId, state: HubDep,
             _: Annotated[Principal | None, Depends(public)]) -> dict[str, Any]:
    with state.db.read() as s:
        return wishes.wish_json(s, wishes.get_wish(s, wish_id), with_comments=True)


class VoteBody(BaseModel):
    up: bool = True


@router.post("/wishes/{wish_id}/vote")
def vote(wish_id: RowId, body: VoteBody, state: HubDep,
         who: Annotated[Principal, Depends(authenticated)]) -> dict[str, Any]:
    with state.db.write() as s:
        return {"wish": wish_id, "votes": wishes.vote(s, who, wish_id, up=body.up)}


class CommentBody(BaseModel):
    text: str = Field(max_length=5000)


@router.post("/wishes/{wish_id}/comments", status_code=201)
def comment(wish_id: RowId, body: CommentBody, state: HubDep,
            who: Annotated[Principal, Depends(authenticated)]) -> dict[str, Any]:
    with state.db.write() as s:
        c = wishes.comment(s, who, wish_id, body.text)
        return {"wish": wish_id, "user": public_name(who.roles, who.org_id), "text": c.text,
                "at": c.at.isoformat()}


class StateBody(BaseModel):
    state: str = Field(pattern="^(open|planned|published)$")
    dataset: str | None = None


@router.post("/wishes/{wish_id}/state")
def set_state(wish_id: RowId, body: StateBody, state: HubDep,
              who: Annotated[Principal, Depends(requires("steward", "admin"))]
              ) -> dict[str, Any]:
    with state.db.write() as s:
        if body.state == "planned":
            w = wishes.plan(s, state.key, who, wish_id, body.dataset)
        else:
            w = wishes.set_state(s, state.key, who, wish_id, body.state, body.dataset)
        return wishes.wish_json(s, w)


@router.get("/orgs/{org_id}/dashboard")
def dashboard(org_id: str, state: HubDep,
              _: Annotated[Principal | None, Depends(public)]) -> dict[str, Any]:
    with state.db.read() as s:
        return wishes.dashboard(s, org_id)
