"""Endpoints for parties: registration, encryption keys, and the relay of sealed payloads.

Parties (datasites and enclaves) call the ``/api/federation/party-*`` routes with envelopes
signed by their own keys; ``/api/parties`` lets anyone read the public keys a sender needs.
The relay moves ciphertext only: see :mod:`ndl.federation.parties`.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from ndl.access.accounts import Principal
from ndl.core.envelope import open_envelope
from ndl.core.errors import InvalidInput
from ndl.federation import parties
from ndl.federation.parties import PartyIdentity
from ndl.hub.deps import hub, public, requires, signed_by_party
from ndl.hub.openapi import ENVELOPE_BODY
from ndl.hub.state import HubState

router = APIRouter()
HubDep = Annotated[HubState, Depends(hub)]
Signed = Annotated[tuple[PartyIdentity, dict[str, Any]], Depends(signed_by_party)]


def _expect(env: dict[str, Any], kind: str) -> dict[str, Any]:
    if env["kind"] != kind:
        raise InvalidInput(f"expected a {kind!r} envelope, got {env['kind']!r}")
    body: dict[str, Any] = env["body"]
    return body


def inbox_key(principal: str) -> str:
    return f"inbox:{principal}"


@router.post("/api/federation/party-register", status_code=201, openapi_extra=ENVELOPE_BODY)
async def register_party(
    request: Request, state: HubDep,
    who: Annotated[Principal, Depends(requires("steward", "admin"))],
) -> dict[str, Any]:
    """A steward's token says who may; the envelope, signed by the party's new key, proves
    possession and carries its encryption key."""
    try:
        env = await request.json()
    except ValueError as exc:
        raise InvalidInput("the body must be a JSON signed envelope") from exc
    body = env.get("body") if isinstance(env, dict) else None
    if not isinstance(body, dict) or not isinstance(body.get("public_key"), str):
        raise InvalidInput("the envelope body needs party_id, kind, org, name, public_key "
                           "and encryption_key")

    def do() -> dict[str, Any]:
        opened = open_envelope(env, public_key_for=lambda _s: body["public_key"],
                               recipient=parties.HUB_ID, guard=state.guard,
                               kinds=("party.register",))
        b = opened["body"]
        if opened["sender"] != f"party:{b.get('party_id')}":
            raise InvalidInput("the envelope sender must be 'party:<party_id>' of the party "
                               "being registered")
        with state.db.write() as s:
            info, created = parties.register_party(
                s, state.key, who, party_id=str(b.get("party_id")), kind=str(b.get("kind")),
                org_id=str(b.get("org")), name=str(b.get("name") or ""),
                public_key=b["public_key"], encryption_key=b.get("encryption_key"),
                proof=opened)
            return {"party": info.to_json(), "created": created, "hub_id": parties.HUB_ID,
                    "hub_public_key": state.key.public_b64}

    return await run_in_threadpool(do)


@router.post("/api/federation/party-keys", openapi_extra=ENVELOPE_BODY)
def publish_keys(signed: Signed, state: HubDep) -> dict[str, Any]:
    """A datasite or party publishes (or rotates) the X25519 key others seal to."""
    who, env = signed
    body = _expect(env, "party.keys")
    with state.db.write() as s:
        keys, changed = parties.publish_key(s, state.key, who, body.get("encryption_key"), env)
        return {"keys": keys.to_json(), "changed": changed}


@router.get("/api/parties")
def list_parties(state: HubDep, _: Annotated[Principal | None, Depends(public)]
                 ) -> dict[str, Any]:
    with state.db.read() as s:
        return {"parties": [p.to_json() for p in parties.list_parties(s)]}


@router.get("/api/parties/{principal}/keys")
def party_keys(principal: str, state: HubDep,
               _: Annotated[Principal | None, Depends(public)]) -> dict[str, Any]:
    """The public keys a sender seals to, with the holder's signed publication of them."""
    with state.db.read() as s:
        return parties.keys_of(s, principal).to_json()


@router.post("/api/federation/party-send", status_code=201, openapi_extra=ENVELOPE_BODY)
async def send(signed: Signed, state: HubDep) -> dict[str, Any]:
    """Queue a sealed payload for another party (ciphertext inline, or a sealed blob)."""
    who, env = signed
    req = parties.parse_send(_expect(env, "party.send"))

    def store() -> dict[str, Any]:
        with state.db.write() as s:
            return parties.send(s, who, req).to_json()

    out = await run_in_threadpool(store)
    state.notifier.notify(inbox_key(out["to"]))  # from the event loop: events are not threadsafe
    return out


def _wait(body: dict[str, Any], wait_max: float) -> tuple[float, int]:
    wait, limit = body.get("wait", 0), body.get("limit", parties.MAX_PER_POLL)
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not math.isfinite(wait):
        raise InvalidInput(f"wait must be a finite number of seconds, got {wait!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidInput(f"limit must be a whole number >= 1, got {limit!r}")
    return min(max(float(wait), 0.0), wait_max), min(limit, parties.MAX_PER_POLL)


@router.post("/api/federation/party-inbox", openapi_extra=ENVELOPE_BODY)
async def inbox(request: Request, signed: Signed, state: HubDep) -> dict[str, Any]:
    """Long-poll the caller's own inbox: leased messages, or none after ``wait`` seconds.

    Leased messages come back after the lease (the hub's lease time) unless acknowledged.
    """
    who, env = signed
    wait, limit = _wait(_expect(env, "party.poll"), state.settings.poll_wait_max)

    def take() -> list[dict[str, Any]]:
        with state.db.write() as s:
            return parties.lease_inbox(s, state.key, who, lease_seconds=state.settings.lease,
                                       limit=limit)

    return {"messages": await state.notifier.long_poll(request, inbox_key(who.principal),
                                                       wait, take)}


@router.post("/api/federation/party-ack", openapi_extra=ENVELOPE_BODY)
def acknowledge(signed: Signed, state: HubDep) -> dict[str, Any]:
    """The recipient has what it leased: delete those messages from the hub."""
    who, env = signed
    ids = _expect(env, "party.ack").get("message_ids")
    if not isinstance(ids, list) or len(ids) > 1000 or not all(isinstance(i, str) for i in ids):
        raise InvalidInput("an acknowledgement's body needs message_ids, a list of at most "
                           "1,000 message ids")
    with state.db.write() as s:
        return {"acknowledged": parties.acknowledge(s, who, ids)}
