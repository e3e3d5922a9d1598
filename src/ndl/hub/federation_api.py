"""Endpoints datasites call. All but ``register`` are authenticated by a signed envelope alone."""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
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
from ndl.federation import key_service, standing, work
from ndl.federation import service as federation
from ndl.federation.models import Datasite
from ndl.hub.deps import hub, public, requires, signed_by_datasite
from ndl.hub.openapi import ENVELOPE_BODY
from ndl.hub.state import HubState
from ndl.jobs import lifecycle as job_lifecycle
from ndl.ledger import register
from ndl.work import service as work_service

router = APIRouter(prefix="/api/federation")
HubDep = Annotated[HubState, Depends(hub)]
Signed = Annotated[tuple[Datasite, dict[str, Any]], Depends(signed_by_datasite)]


@router.get("/hub-key")
def hub_key(state: HubDep, _: Annotated[Principal | None, Depends(public)]) -> dict[str, Any]:
    """The hub's current key, every hub key with its validity, and the signed statements by
    which datasites follow a rotation or a revocation (ndl.federation.key_service)."""
    with state.db.read() as s:
        return key_service.hub_key_document(s, state.key)


@router.post("/register", status_code=201, openapi_extra=ENVELOPE_BODY)
async def register_datasite(
    request: Request, state: HubDep,
    who: Annotated[Principal, Depends(requires("steward", "admin"))],
) -> dict[str, Any]:
    """A steward's token says who may; the envelope, signed by the new key, proves possession."""
    return await registration(request, state, who, may_wait=False)


async def registration(request: Request, state: HubState, who: Principal, *,
                       may_wait: bool) -> dict[str, Any]:
    """Register the datasite whose key signed the body (``/register`` and, pending until a
    steward approves, ``/federation/join``): the one reading of a registration envelope."""
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
                org_id=str(b.get("org")), name=str(b.get("name") or "")[:200],
                public_key=b["public_key"], may_wait=may_wait)
            return {"datasite": federation.datasite_json(site), "created": created,
                    "standing": standing.refusal(site),
                    "hub_id": federation.HUB_ID, "hub_public_key": state.key.public_b64}

    return await run_in_threadpool(do)


@router.post("/publish", openapi_extra=ENVELOPE_BODY)
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


@router.post("/mock", openapi_extra=ENVELOPE_BODY)
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


MAX_LEASED_PER_POLL = 10


@dataclass(frozen=True)
class PollRequest:
    wait: float
    limit: int
    kind_limits: dict[str, int]
    # How many work items the datasite runs at once, in all: the hub counts the ones it has
    # leased out (and not seen lapse), so a finish frees a slot at once.
    work_slots: int | None = None


def _number(value: Any, field: str) -> float:
    """A finite JSON number; a string, bool, NaN or infinity is refused, not guessed at."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(f"poll {field} must be a finite number of seconds, got {value!r}")
    return float(value)


def _poll_request(body: dict[str, Any], wait_max: float) -> PollRequest:
    """Read a poll body: ``wait`` (seconds), ``limit`` (free work slots) and ``kind_limits``
    (how many more of a kind the datasite will run now; 0 leaves that kind queued)."""
    wait = min(max(_number(body.get("wait", 0), "wait"), 0.0), wait_max)
    limit = body.get("limit", MAX_LEASED_PER_POLL)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidInput(f"poll limit must be a whole number >= 0, got {limit!r}")
    kinds = body.get("kind_limits", {})
    if not isinstance(kinds, dict) or len(kinds) > 50 or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in kinds.values()):
        raise InvalidInput("poll kind_limits must map message kinds to whole numbers >= 0")
    slots = body.get("work_slots")
    if slots is not None and (isinstance(slots, bool) or not isinstance(slots, int)
                              or not 0 <= slots <= 1000):
        raise InvalidInput(f"poll work_slots must be a whole number from 0 to 1000, got "
                           f"{slots!r}")
    return PollRequest(wait, min(limit, MAX_LEASED_PER_POLL), dict(kinds), slots)


@router.post("/poll", openapi_extra=ENVELOPE_BODY)
async def poll(request: Request, signed: Signed, state: HubDep) -> dict[str, Any]:
    """Long-poll: return as soon as there is work, or empty-handed after ``wait`` seconds."""
    site, env = signed
    if env["kind"] != "poll":
        raise InvalidInput(f"expected a 'poll' envelope, got {env['kind']!r}")
    ask = _poll_request(env["body"], state.settings.poll_wait_max)

    def take() -> list[dict[str, Any]]:
        with state.db.write() as s:
            out = federation.lease(s, state.key, site.id, lease_seconds=state.settings.lease,
                                   limit=ask.limit, kind_limits=ask.kind_limits)
            # Short questions first: someone is waiting on each, and the next look (at once)
            # hands out work. Work is looked for only when some may be waiting.
            if out or not state.work_hints.due(site.id):
                return out
            room = (ask.kind_limits.get(work.POOL_KIND) if ask.work_slots is None
                    else ask.work_slots - work.active(s, site.id))
            items = work.lease(s, state.key, site.id, lease_seconds=state.settings.lease,
                               limit=ask.limit, room=room)
            if room is None or room <= 0 or len(items) == min(ask.limit, room):
                state.work_hints.mark(site.id)  # more may be waiting for a free slot
            return items

    messages = await state.notifier.long_poll(request, f"site:{site.id}", ask.wait, take)

    def stamp() -> str:
        with state.db.read() as s:
            return key_service.hub_keys_stamp(s)

    # Unsigned, but it only tells the datasite to read the signed key document again.
    return {"messages": messages, "hub_keys": await run_in_threadpool(stamp)}


@router.post("/heartbeat", openapi_extra=ENVELOPE_BODY)
def heartbeat(signed: Signed, state: HubDep) -> dict[str, Any]:
    """The datasite is still working on these messages: extend their leases."""
    site, env = signed
    if env["kind"] != "heartbeat":
        raise InvalidInput(f"expected a 'heartbeat' envelope, got {env['kind']!r}")
    ids = env["body"].get("message_ids", [])
    if not isinstance(ids, list) or len(ids) > 1000 or not all(isinstance(i, str) for i in ids):
        raise InvalidInput("a heartbeat's body needs message_ids, a list of message ids")
    updates = work.parse_progress(env["body"].get("work"))
    with state.db.write() as s:
        renewed = federation.renew(s, site.id, ids, lease_seconds=state.settings.lease)
        work_renewed, stop = work.heartbeat(s, state.key, site.id, updates,
                                            lease_seconds=state.settings.lease)
    for wid in updates:  # wake whoever follows these items
        state.notifier.notify(f"work:{wid}")
    return {"renewed": renewed + work_renewed, "cancel": stop,
            "lease_seconds": state.settings.lease}


@router.post("/work/finish", openapi_extra=ENVELOPE_BODY)
def finish_work(signed: Signed, state: HubDep) -> dict[str, Any]:
    """A datasite's one final answer to a work item; a repeat is accepted and ignored."""
    site, env = signed
    if env["kind"] != "work.finish":
        raise InvalidInput(f"expected a 'work.finish' envelope, got {env['kind']!r}")
    done = work_service.read_finish(env["body"])
    with state.db.write() as s:
        fresh = work_service.finish(s, state.key, site.id, done)
    if fresh:
        job_lifecycle.work_finished(state, done.work_id)
    state.notifier.notify(f"work:{done.work_id}")
    state.work_hints.mark(site.id)  # a work slot is free: its long-poll may fill it
    state.notifier.notify(f"site:{site.id}")
    return {"accepted": fresh}


@router.post("/reply", openapi_extra=ENVELOPE_BODY)
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
                # The waiting caller, in whichever hub process, wakes once this commits.
                state.notifier.notify_on_commit(s, f"msg:{message_id}")
            return fresh

    return {"accepted": await run_in_threadpool(store)}
