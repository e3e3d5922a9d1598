"""Endpoints for multi-party coordination (k-of-n approvals and contributions).

A signed-in user creates, inspects and cancels a coordination with a token; the parties act
on it with envelopes signed by their own keys. The state machine is
:mod:`ndl.federation.coordination`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel, Field

from ndl.access.accounts import Principal
from ndl.core.errors import InvalidInput
from ndl.federation import coordination
from ndl.federation.parties import PartyIdentity
from ndl.hub.deps import authenticated, hub, signed_by_party
from ndl.hub.openapi import ENVELOPE_BODY
from ndl.hub.state import HubState

router = APIRouter()
T = TypeVar("T")
HubDep = Annotated[HubState, Depends(hub)]
Signed = Annotated[tuple[PartyIdentity, dict[str, Any]], Depends(signed_by_party)]
User = Annotated[Principal, Depends(authenticated)]


class CancelBody(BaseModel):
    reason: str = Field(default="", max_length=300)


@router.post("/api/coordinations", status_code=201)
def create(raw: Annotated[dict[str, Any], Body()], state: HubDep, who: User) -> dict[str, Any]:
    """Start work that needs k of n parties' approvals and some parties' contributions:
    ``{purpose, parties, approvals_needed, params_sha256, contributors?, ttl_seconds?}``."""
    req = coordination.NewCoordination.parse(raw)
    with state.db.write() as s:
        return coordination.create(s, state.key, who, req).to_json()


@router.get("/api/coordinations/{coordination_id}")
def inspect(coordination_id: str, state: HubDep, who: User) -> dict[str, Any]:
    """Who approved, who contributed, what is waiting on whom (the requester only; parties
    inspect with a signed envelope)."""
    with state.db.write() as s:  # an overdue coordination is marked expired as it is read
        return coordination.inspect_for_user(s, state.key, who, coordination_id).to_json()


@router.post("/api/coordinations/{coordination_id}/cancel")
def cancel(coordination_id: str, body: CancelBody, state: HubDep, who: User) -> dict[str, Any]:
    with state.db.write() as s:
        return coordination.cancel(s, state.key, who, coordination_id, body.reason).to_json()


def _body(env: dict[str, Any], kind: str) -> dict[str, Any]:
    if env["kind"] != kind:
        raise InvalidInput(f"expected a {kind!r} envelope, got {env['kind']!r}")
    body: dict[str, Any] = env["body"]
    return body


def _party_act(signed: tuple[PartyIdentity, dict[str, Any]], state: HubState, kind: str,
               act: Callable[..., T], *fields: str) -> T:
    """What every party route does: check the envelope is a ``kind`` one, then call
    ``act(session, hub key, party, coordination_id, *body[fields])`` in one transaction."""
    who, env = signed
    body = _body(env, kind)
    with state.db.write() as s:
        return act(s, state.key, who, body.get("coordination_id"),
                   *(body.get(f) for f in fields))


@router.post("/api/federation/coordination-inspect", openapi_extra=ENVELOPE_BODY)
def party_inspect(signed: Signed, state: HubDep) -> dict[str, Any]:
    return _party_act(signed, state, "coordination.inspect",
                      coordination.inspect_for_party).to_json()


@router.post("/api/federation/coordination-approve", openapi_extra=ENVELOPE_BODY)
def approve(signed: Signed, state: HubDep) -> dict[str, Any]:
    """Approve the work named by its hash; a second approval by the same party counts once."""
    done = _party_act(signed, state, "coordination.approve", coordination.approve,
                      "params_sha256")
    return {"counted": done.counted, "coordination": done.view.to_json()}


@router.post("/api/federation/coordination-contribute", openapi_extra=ENVELOPE_BODY)
def contribute(signed: Signed, state: HubDep) -> dict[str, Any]:
    return _party_act(signed, state, "coordination.contribute", coordination.contribute,
                      "sha256").to_json()


@router.post("/api/federation/coordination-withdraw", openapi_extra=ENVELOPE_BODY)
def withdraw(signed: Signed, state: HubDep) -> dict[str, Any]:
    """A party withdraws: the coordination stops and its linked work items are cancelled."""
    return _party_act(signed, state, "coordination.withdraw", coordination.withdraw,
                      "reason").to_json()


@router.post("/api/federation/coordination-complete", openapi_extra=ENVELOPE_BODY)
def complete(signed: Signed, state: HubDep) -> dict[str, Any]:
    return _party_act(signed, state, "coordination.complete", coordination.complete,
                      "result_sha256").to_json()
