"""The hub's JSON API for people and their programs (the SDK, the CLI, the web pages' forms)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from ndl.access import accounts
from ndl.access.accounts import Principal
from ndl.access.models import Org
from ndl.catalogue import service as catalogue
from ndl.catalogue.search import search
from ndl.federation import service as federation
from ndl.federation.models import Datasite
from ndl.hub.deps import authenticated, hub, public, requires
from ndl.hub.roundtrip import ask_datasite
from ndl.hub.state import HubState
from ndl.ledger import register
from ndl.query.spec import CountQuery

router = APIRouter(prefix="/api")
HubDep = Annotated[HubState, Depends(hub)]


class LoginBody(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1000)


@router.post("/auth/login")
def login(body: LoginBody, request: Request, state: HubDep,
          _: Annotated[Principal | None, Depends(public)]) -> dict[str, Any]:
    ip = request.client.host if request.client else "?"
    keys = (f"ip:{ip}", f"user:{body.username}")
    state.limiter.check(*keys)
    try:
        with state.db.write() as s:
            user, token = accounts.login(s, body.username, body.password)
            who = accounts.principal_of(user)
    except Exception:
        state.limiter.failed(*keys)
        raise
    return {"token": token, "username": who.username, "roles": sorted(who.roles)}


@router.get("/me")
def me(who: Annotated[Principal, Depends(authenticated)]) -> dict[str, Any]:
    return {"username": who.username, "roles": sorted(who.roles), "org": who.org_id}


class OrgBody(BaseModel):
    id: str
    name: str
    kind: str = "other"


@router.get("/orgs")
def list_orgs(state: HubDep, _: Annotated[Principal | None, Depends(public)]) -> dict[str, Any]:
    with state.db.read() as s:
        orgs = s.scalars(select(Org).order_by(Org.id))
        return {"orgs": [{"id": o.id, "name": o.name, "kind": o.kind} for o in orgs]}


@router.post("/orgs", status_code=201)
def create_org(body: OrgBody, state: HubDep,
               who: Annotated[Principal, Depends(requires("admin"))]) -> dict[str, Any]:
    with state.db.write() as s:
        org = accounts.create_org(s, body.id, body.name, body.kind)
        register.append(s, state.key, kind="org.created", actor=who.username, subject=org.id,
                        payload={"name": org.name, "kind": org.kind})
        return {"id": org.id, "name": org.name, "kind": org.kind}


class UserBody(BaseModel):
    username: str
    roles: list[str]
    display_name: str | None = None
    org: str | None = None
    password: str | None = None


@router.post("/users", status_code=201)
def create_user(body: UserBody, state: HubDep,
                who: Annotated[Principal, Depends(requires("admin"))]) -> dict[str, Any]:
    with state.db.write() as s:
        user = accounts.create_user(
            s, body.username, roles=body.roles, display_name=body.display_name,
            org_id=body.org, password=body.password,
        )
        register.append(s, state.key, kind="user.created", actor=who.username,
                        subject=f"user:{user.username}",
                        payload={"roles": sorted(body.roles), "org": body.org})
        return {"username": user.username, "roles": sorted(body.roles), "org": body.org}


@router.get("/datasets")
def search_datasets(
    state: HubDep, _: Annotated[Principal | None, Depends(public)],
    q: str | None = Query(default=None, max_length=500),
    publisher: str | None = None, tier: str | None = None,
    limit: int = Query(default=20, ge=1, le=100), offset: int = Query(default=0, ge=0),
) -> dict[str, Any]:
    with state.db.read() as s:
        res = search(s, q, filters={"publisher": publisher, "tier": tier}, limit=limit,
                     offset=offset)
        return {"total": res.total, "limit": limit, "offset": offset,
                "results": [catalogue.summary_json(d) for d in res.items],
                "facets": res.facets}


@router.get("/datasets/{site}/{name}")
def get_dataset(site: str, name: str, state: HubDep,
                _: Annotated[Principal | None, Depends(public)]) -> dict[str, Any]:
    with state.db.read() as s:
        return catalogue.detail_json(catalogue.get_dataset(s, f"{site}/{name}"))


@router.get("/datasites")
def list_datasites(state: HubDep,
                   _: Annotated[Principal | None, Depends(public)]) -> dict[str, Any]:
    with state.db.read() as s:
        sites = s.scalars(select(Datasite).order_by(Datasite.id))
        return {"datasites": [federation.datasite_json(d) for d in sites]}


@router.post("/datasets/{site}/{name}/query")
async def query_dataset(
    site: str, name: str, spec: CountQuery, state: HubDep,
    who: Annotated[Principal, Depends(requires("researcher"))],
) -> dict[str, Any]:
    """Send an aggregate query to the dataset's datasite and wait for its answer."""
    return await ask_datasite(
        state, who, f"{site}/{name}", kind="query", body={"spec": spec.model_dump()},
        check=lambda ds: spec.check_against(ds.columns), record="query.submitted",
        payload={"spec": spec.model_dump()},
    )


@router.get("/register")
def register_feed(
    state: HubDep, _: Annotated[Principal | None, Depends(public)],
    after: int = Query(default=0, ge=0), limit: int = Query(default=100, ge=1, le=1000),
    kind: str | None = None,
) -> dict[str, Any]:
    with state.db.read() as s:
        entries = register.list_entries(s, after=after, limit=limit, kind=kind)
        seq, digest = register.head(s)
        return {"entries": [register.entry_json(e) for e in entries],
                "head": {"seq": seq, "hash": digest}, "hub_public_key": state.key.public_b64}


@router.get("/register/verify")
def register_verify(state: HubDep,
                    _: Annotated[Principal | None, Depends(public)]) -> dict[str, Any]:
    with state.db.read() as s:
        return register.verify(s, state.key.public_b64).to_json()
