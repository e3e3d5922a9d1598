"""Signing keys: a datasite or party rotates its own key, an admin revokes any key, anyone
reads which keys are valid. The rules live in :mod:`ndl.federation.key_service`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from starlette.concurrency import run_in_threadpool

from ndl.access.accounts import Principal
from ndl.core.errors import InvalidInput
from ndl.federation import key_service
from ndl.federation.parties import PartyIdentity
from ndl.hub.deps import authenticated, hub, public, signed_by_party
from ndl.hub.openapi import ENVELOPE_BODY
from ndl.hub.state import HubState

router = APIRouter()
HubDep = Annotated[HubState, Depends(hub)]
Signed = Annotated[tuple[PartyIdentity, dict[str, Any]], Depends(signed_by_party)]


@router.post("/api/federation/rotate-key", openapi_extra=ENVELOPE_BODY)
async def rotate_key(signed: Signed, state: HubDep) -> dict[str, Any]:
    """Rotate the caller's signing key: signed with its current key, carrying the new key's
    proof. The old key stays valid for the overlap asked for (at most 30 days)."""
    who, env = signed
    if env["kind"] != key_service.ROTATE_KIND:
        raise InvalidInput(f"expected a {key_service.ROTATE_KIND!r} envelope, got "
                           f"{env['kind']!r}")

    def do() -> dict[str, Any]:
        with state.db.write() as s:
            return key_service.rotate(s, state.key, who.principal, who.public_key,
                                      env).to_json()

    return await run_in_threadpool(do)


@router.post("/api/admin/keys/{fingerprint}/revoke")
def revoke_key(fingerprint: str, state: HubDep,
               who: Annotated[Principal, Depends(authenticated)],
               reason: Annotated[str, Body(embed=True, max_length=500)]) -> dict[str, Any]:
    """Revoke a key at once (admins only): its signatures are refused from now on."""
    with state.db.write() as s:
        return key_service.revoke(s, state.key, who, fingerprint, reason).to_json()


@router.get("/api/keys")
def list_keys(state: HubDep, _: Annotated[Principal | None, Depends(public)],
              owner: str | None = None) -> dict[str, Any]:
    """Every signing key the hub knows, with its state (public keys are public)."""
    if owner is not None and len(owner) > 80:
        raise InvalidInput("owner is 'hub', 'datasite:<id>' or 'party:<id>'")
    with state.db.read() as s:
        return {"keys": [k.to_json() for k in key_service.list_keys(s, owner)]}
