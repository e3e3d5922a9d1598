"""Ask a datasite something and wait for its answer: the hub's one request/response path.

Queries, open-data SQL and metadata edits all travel the same way: a mailbox message and a
register entry written in one transaction, a wake-up for the datasite's long-poll, then a wait
(bounded by ``--query-timeout``) for the signed reply.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from ndl.access.accounts import Principal, official_actor
from ndl.catalogue import lifecycle
from ndl.catalogue import service as catalogue
from ndl.catalogue.models import Dataset
from ndl.core.db import utcnow
from ndl.core.errors import UpstreamTimeout, error_from_json
from ndl.federation import service as federation
from ndl.federation import standing
from ndl.federation.models import Datasite, Message
from ndl.hub.state import HubState
from ndl.ledger import register


async def ask_datasite(
    state: HubState, who: Principal, dataset_id: str, *, kind: str, body: dict[str, Any],
    check: Callable[[Session, Dataset], dict[str, Any] | None] | None = None, record: str,
    payload: dict[str, Any] | None = None, actor: str | None = None,
) -> dict[str, Any]:
    """Send ``kind`` about ``dataset_id`` to its datasite; return the result or raise its error.

    ``check`` runs on the catalogue entry before anything is queued, so bad requests fail
    fast and leave nothing behind; it may return more fields for the message body (a grant).
    """

    def submit() -> tuple[str, str]:
        with state.db.write() as s:
            ds = catalogue.get_dataset(s, dataset_id)
            lifecycle.require_live(ds)  # a withdrawn dataset takes no questions
            standing.require_site(s, ds.datasite_id)  # a suspended site's data answer nothing
            extra = check(s, ds) if check is not None else None
            full = {**body, **(extra or {})}
            msg = federation.enqueue(
                s, datasite_id=ds.datasite_id, kind=kind,
                body={"dataset": ds.name, "requested_by": who.username,
                      # Leave the datasite time to report a timeout of its own.
                      "time_budget": max(1.0, state.settings.query_timeout - 2.0), **full},
                timeout=state.settings.query_timeout,
            )
            register.append(s, state.key, kind=record, actor=actor or official_actor(who),
                            subject=dataset_id,
                            payload={"message_id": msg.id, **(payload or {})})
            # The datasite's long-poll, in whichever hub process, wakes once this commits.
            state.notifier.notify_on_commit(s, f"site:{ds.datasite_id}")
            return msg.id, ds.datasite_id

    message_id, site = await run_in_threadpool(submit)
    reply = await wait_for_reply(state, message_id, site)
    if not reply.get("ok"):
        raise error_from_json(400, {"error": reply.get("error", {})})
    return {"dataset": dataset_id, "message_id": message_id, **reply["result"]}


async def wait_for_reply(state: HubState, message_id: str, site: str) -> dict[str, Any]:
    key = f"msg:{message_id}"
    ev = state.notifier.event(key)
    deadline = time.monotonic() + state.settings.query_timeout
    try:
        while True:
            ev.clear()

            def look() -> Message | None:
                with state.db.read() as s:
                    return s.get(Message, message_id)

            msg = await run_in_threadpool(look)
            if msg is not None and msg.state == "answered" and msg.reply is not None:
                return msg.reply
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return await run_in_threadpool(_give_up, state, message_id, site)
            try:
                await asyncio.wait_for(ev.wait(),
                                       timeout=min(state.notifier.every(0.5), remaining))
            except TimeoutError:
                pass
    finally:
        state.notifier.forget(key)


def _give_up(state: HubState, message_id: str, site: str) -> dict[str, Any]:
    with state.db.write() as s:
        msg = s.get(Message, message_id)
        if msg is not None and msg.state == "answered" and msg.reply is not None:
            return msg.reply
        federation.expire(s, message_id)
        ds = s.get(Datasite, site)
        seen = ds.last_seen_at if ds else None
    when = (f"last seen {int((utcnow() - seen).total_seconds())} s ago" if seen
            else "never seen")
    raise UpstreamTimeout(
        f"datasite {site!r} did not answer within {state.settings.query_timeout:g} s "
        f"({when}); it may be offline or busy. Try again later."
    )
