"""Endpoints datasites call. All but ``register`` are authenticated by a signed envelope alone."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from ndl.access.accounts import Principal
from ndl.catalogue import mocks
from ndl.catalogue import service as catalogue
from ndl.catalogue.metadata import DatasetMeta
from ndl.core.db import utcnow
from ndl.core.envelope import open_envelope
from ndl.core.errors import InvalidInput
from ndl.core.tiers import Operation, tier_def
from ndl.federation import service as federation
from ndl.federation.models import Datasite
from ndl.hub.deps import hub, public, requires, signed_by_datasite
from ndl.hub.state import HubState
from ndl.ledger import register

router = APIRouter(prefix="/api/federation")
HubDep = Annotated[HubState, Depends(hub)]
Signed = Annotated[tuple[Datasite, dict[str, Any]], Depends(signed_by_datasite)]


@router.get("/hub-key")
def hub_key(state: HubDep, _: Annotated[Principal | None, Depends(public)]) -> dict[str, Any]:
    return {"hub_id": federation.HUB_ID, "public_key": state.key.public_b64}


@router.post("/register", status_code=201)
async def register_datasite(
    request: Request, state: HubDep,
    who: Annotated[Principal, Depends(requires("steward", "admin"))],
) -> dict[str, Any]:
    """A steward's token says who may; the envelope, signed by the new key, proves possession."""
    try:
        env = await request.json()
    except ValueError as exc:
        raise InvalidInput("the body must be a JSON signed envelope") from exc
    body = env.get("body") if isinstance(env, dict) else None
    if not isinstance(body, dict) or not isinstance(body.get("public_key"), str):
        raise InvalidInput("the envelope body needs datasite_id, org, name and public_key")

    def do() -> dict[str, Any]:
        opened = open_envelope(env, public_key_for=lambda _s: body["public_key"],
                               recipient=federation.HUB_ID, guard=state.guard,
                               kinds=("register",))
        b = opened["body"]
        if opened["sender"] != b.get("datasite_id"):
            raise InvalidInput("the envelope sender must be the datasite_id being registered")
        with state.db.write() as s:
            site, created = federation.register_datasite(
                s, state.key, who, datasite_id=str(b.get("datasite_id")),
                org_id=str(b.get("org")), name=str(b.get("name") or ""),
                public_key=b["public_key"],
            )
            return {"datasite": federation.datasite_json(site), "created": created,
                    "hub_id": federation.HUB_ID, "hub_public_key": state.key.public_b64}

    return await run_in_threadpool(do)


@router.post("/publish")
def publish(signed: Signed, state: HubDep) -> dict[str, Any]:
    site, env = signed
    if env["kind"] != "publish":
        raise InvalidInput(f"expected a 'publish' envelope, got {env['kind']!r}")
    raw = env["body"].get("datasets")
    if not isinstance(raw, list):
        raise InvalidInput("a publish envelope's body needs a list 'datasets'")
    try:
        metas = [DatasetMeta.model_validate(d) for d in raw]
    except ValidationError as exc:
        raise InvalidInput("dataset metadata is not valid",
                           detail=exc.errors(include_url=False, include_input=False)) from exc
    with state.db.write() as s:
        site_row = s.get(Datasite, site.id)
        assert site_row is not None
        site_row.last_seen_at = utcnow()  # a signed message is as good a heartbeat as a poll
        return {"published": catalogue.publish(s, state.key, site_row, metas)}


@router.post("/mock")
def upload_mock(signed: Signed, state: HubDep) -> dict[str, Any]:
    """A datasite sends the synthetic mock of one of its non-open datasets."""
    site, env = signed
    if env["kind"] != "mock":
        raise InvalidInput(f"expected a 'mock' envelope, got {env['kind']!r}")
    body = env["body"]
    try:
        parquet = base64.b64decode(str(body.get("parquet_b64", "")), validate=True)
    except ValueError as exc:
        raise InvalidInput("parquet_b64 is not base64") from exc
    with state.db.write() as s:
        ds = catalogue.get_dataset(s, f"{site.id}/{body.get('dataset')}")
        if not tier_def(ds.tier).allows(Operation.MOCK):
            raise InvalidInput(f"{ds.id} is {ds.tier} data: it needs no mock")
        mock = mocks.store_mock(s, state.key, ds, parquet, method=str(body.get("method", "")))
        return {"dataset": ds.id, "rows": mock.rows, "version": mock.version}


@router.post("/poll")
async def poll(request: Request, signed: Signed, state: HubDep) -> dict[str, Any]:
    """Long-poll: return as soon as there is work, or empty-handed after ``wait`` seconds."""
    site, env = signed
    if env["kind"] != "poll":
        raise InvalidInput(f"expected a 'poll' envelope, got {env['kind']!r}")
    wait = min(float(env["body"].get("wait", 0) or 0), state.settings.poll_wait_max)
    deadline = time.monotonic() + max(wait, 0.0)
    ev = state.notifier.event(f"site:{site.id}")

    def take() -> list[dict[str, Any]]:
        with state.db.write() as s:
            return federation.lease(s, state.key, site.id,
                                    lease_seconds=state.settings.lease_seconds)

    while True:
        ev.clear()  # before leasing, so a message queued after our look still wakes us
        messages = await run_in_threadpool(take)
        remaining = deadline - time.monotonic()
        if messages or remaining <= 0:
            return {"messages": messages}
        if await request.is_disconnected():
            # The datasite went away; leaving now also lets the hub shut down promptly.
            return {"messages": []}
        try:
            await asyncio.wait_for(ev.wait(), timeout=min(0.25, remaining))
        except TimeoutError:
            pass


@router.post("/reply")
async def reply(signed: Signed, state: HubDep) -> dict[str, Any]:
    site, env = signed
    if env["kind"] != "reply":
        raise InvalidInput(f"expected a 'reply' envelope, got {env['kind']!r}")
    body = env["body"]
    message_id = str(body.get("message_id", ""))
    result = body.get("result")
    summary: dict[str, Any] = {"message_id": message_id, "ok": bool(body.get("ok"))}
    if isinstance(result, dict):
        summary["groups"] = len(result.get("rows", []))
        summary["suppressed"] = result.get("suppressed", 0)
        if "rho_spent" in result:
            summary["rho_spent"] = result["rho_spent"]
            if result.get("register_answer"):  # the dataset's policy publishes DP answers
                summary["answer"] = {"columns": result.get("columns"),
                                     "rows": result.get("rows")}

    def store() -> bool:
        with state.db.write() as s:
            fresh = federation.answer(s, site.id, message_id,
                                      {k: body[k] for k in ("ok", "result", "error") if k in body})
            if fresh:
                register.append(s, state.key, kind="query.answered",
                                actor=f"datasite:{site.id}", subject=message_id, payload=summary)
            return fresh

    fresh = await run_in_threadpool(store)
    # Wake the waiting request from the event loop thread: asyncio events are not thread-safe.
    state.notifier.notify(f"msg:{message_id}")
    return {"accepted": fresh}
