"""The datasite's loop: register, publish, long-poll the hub, answer, never twice.

Delivery is at-least-once from the hub and exactly-once in effect here: before working on a
message the agent records it; once answered it stores the reply (fsync'd by SQLite) before
sending. A redelivered message that is already answered gets the stored reply again; a reply
that could not be sent (hub down) is retried until the hub takes it.

Nothing one message does can stop the loop: work runs in a bounded pool off the poll loop
(:mod:`ndl.datasite.work`), with its lease renewed by a heartbeat while it runs; an answer
that could never be signed or sent is replaced by an error reply before it is stored; a reply
the hub keeps refusing, or a message that keeps killing the datasite, is parked with its
reason (``ndl datasite status``) and the loop moves on.
"""

from __future__ import annotations

import base64
import functools
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from ndl.access.grants import check_grant
from ndl.core import tiers
from ndl.core.envelope import open_envelope, seal
from ndl.core.errors import (
    EnvelopeRejected,
    InvalidInput,
    NdlError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from ndl.core.keys import KeyValidity, keys_valid_at
from ndl.core.sealed import EncryptionKey
from ndl.core.tiers import ColumnUse, Operation
from ndl.core.transport import check_hub_url
from ndl.datasite import jobs, lifecycle, notices
from ndl.datasite.controlled import Controlled
from ndl.datasite.engines import Engine, make_engine
from ndl.datasite.hub_keys import HubKeyRing
from ndl.datasite.store import DatasiteStore, LocalDataset
from ndl.datasite.work import Job, WorkPool, encode, error_reply, reply_problem
from ndl.hubclient import Client
from ndl.privacy.budget import BudgetLedger
from ndl.query.spec import DEFAULT_THRESHOLD, CountQuery, QueryResult

log = logging.getLogger("ndl.datasite")
HUB_ID = "hub"
# A message whose work has started this many times without finishing (each time the datasite
# died under it) is parked rather than tried again.
MAX_ATTEMPTS = 3
# A reply the hub refused this many times is given up on (parked).
MAX_SEND_FAILURES = 3
# Failures that are the hub's or the network's, not the reply's: retried until they pass.
_TRANSIENT = (UpstreamUnavailable, UpstreamTimeout, EnvelopeRejected)


class Agent:
    def __init__(
        self, store: DatasiteStore, hub_url: str, *, datasite_id: str, org: str,
        name: str | None = None, token: str | None = None, hub_key: str | None = None,
        poll_wait: float = 20.0, threshold: int = DEFAULT_THRESHOLD,
        workers: int = 4, per_kind: dict[str, int] | None = None,
        max_body_bytes: int = 2_000_000, sandbox: str = "strict",
        engine: Engine | None = None,
    ) -> None:
        self.store, self.hub_url = store, check_hub_url(hub_url).rstrip("/")
        self.id, self.org, self.name = datasite_id, org, name or datasite_id
        self.token, self.pinned_key = token, hub_key
        self.poll_wait, self.threshold = poll_wait, threshold
        self.http = httpx.Client(base_url=self.hub_url, timeout=httpx.Timeout(10.0,
                                 read=poll_wait + 15.0))
        self.stop_event = threading.Event()
        self.budget = BudgetLedger(store.root / "budget.sqlite")
        # What computes on the data (DuckDB here unless given, e.g. Spark).
        self.engine: Engine = engine or make_engine(store.root)
        self.backoff = 0.5
        self.max_body_bytes = max_body_bytes  # the hub's request limit (HubSettings)
        self.pool = WorkPool(workers, per_kind)
        self._send_lock = threading.Lock()  # one sender at a time keeps failure counts right
        self._heartbeat = threading.Thread(target=self._beat, daemon=True,
                                           name="ndl-heartbeat")
        self._heartbeat.start()
        self._mocks: threading.Thread | None = None
        self._status: threading.Thread | None = None
        self._mocks_wanted = False
        self.work_items = jobs.WorkItems(store.root / "outbox")
        # Controlled jobs: the sandbox ("strict" bubblewrap, or the operator's logged
        # "weaker" choice), the release ledger and the run folders.
        self.controlled = Controlled(store.root, mode=sandbox)
        self.hub_ring = HubKeyRing(store, self.http)  # followed through rotations

    def prepare(self) -> None:
        """Start what this datasite's tiers will need before it goes online: the open-SQL
        worker when a dataset's tier serves SQL, or the Spark session (each takes seconds)."""
        self.engine.prepare(any(tiers.tier_def(ds.meta.tier).allows(Operation.OPEN_SQL)
                                for ds in self.store.datasets()))

    # -- talking to the hub ---------------------------------------------------------------
    def sign(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """A signed envelope from this datasite to the hub (blob uploads sign their chunks)."""
        return seal(self.store.key, sender=self.id, recipient=HUB_ID, kind=kind, body=body)

    def post(self, path: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._post(path, kind, body)

    def _post(self, path: str, kind: str, body: dict[str, Any],
              headers: dict[str, str] | None = None) -> dict[str, Any]:
        env = self.sign(kind, body)
        content = encode(env)
        if len(content) > self.max_body_bytes:
            raise PayloadTooLarge(f"the {kind} message is {len(content):,} bytes, over the "
                                  f"hub's {self.max_body_bytes:,} byte limit")
        return Client.over(self.http).post_envelope(path, content, headers)

    def register(self) -> None:
        cfg = self.store.config()
        if cfg.get("registered") and cfg.get("hub_url") == self.hub_url and cfg.get("hub_key"):
            return
        if not self.token:
            raise InvalidInput(
                "this datasite is not registered with the hub yet: pass a data steward's API "
                "token with --token (or NDL_TOKEN) for the first start"
            )
        ask = {"datasite_id": self.id, "org": self.org, "name": self.name,
               "public_key": self.store.key.public_b64}
        auth = {"Authorization": f"Bearer {self.token}"}
        try:
            data = self._post("/api/federation/register", "register", ask, headers=auth)
        except PermissionDenied:
            # Not a data steward of the organisation: join, and wait for one to approve.
            data = self._post("/api/federation/join", "register", ask, headers=auth)
            log.warning("datasite %s joined and waits for a data steward of %s to approve "
                        "it ('ndl steward approve-datasite %s')", self.id, self.org, self.id)
        hub_key = data["hub_public_key"]
        if self.pinned_key and hub_key != self.pinned_key:
            raise EnvelopeRejected(
                "the hub's public key is not the one given with --hub-key: refusing to trust it"
            )
        self.store.save_config(id=self.id, org=self.org, name=self.name,
                               hub_url=self.hub_url, hub_key=hub_key, registered=True,
                               hub_keys=self.hub_ring.pin(hub_key))
        self.hub_ring.refresh()  # keys the hub rotated from before we met it
        log.info("registered datasite %s with %s", self.id, self.hub_url)

    def publish_encryption_key(self) -> bool:
        """Publish the X25519 key parties seal payloads to this datasite with (it stays in
        ``encryption-key.pem`` in the datasite folder, mode 0600). Unchanged keys change
        nothing at the hub; a hub without the party relay is not an error."""
        key = EncryptionKey.load_or_create(self.store.root / "encryption-key.pem")
        try:
            self._post("/api/federation/party-keys", "party.keys",
                       {"encryption_key": key.public_b64})
        except NotFound:
            log.info("the hub relays no sealed payloads; encryption key not published")
            return False
        return True

    def publish(self) -> list[dict[str, Any]]:
        metas = [{**d.meta.model_dump(mode="json"), "policy": d.policy.model_dump(mode="json")}
                 for d in self.store.datasets()]
        out: list[dict[str, Any]] = self._post("/api/federation/publish", "publish",
                                               {"datasets": metas})["published"]
        log.info("published %d datasets (%d changed)", len(out),
                 sum(1 for p in out if p["changed"]))
        return out

    def publish_mocks(self) -> int:
        """Make (if stale) and send the synthetic mock of every non-open dataset."""
        sent = 0
        for ds in self.store.datasets():
            if ds.meta.tier == "open":
                continue
            try:
                # Rows Spark reads where they are are sampled by the engine.
                parquet, method = self.store.mock_for(ds, functools.partial(
                    self.engine.sample, ds))
                self._post("/api/federation/mock", "mock", {
                    "dataset": ds.meta.name, "method": method,
                    "parquet_b64": base64.b64encode(parquet).decode("ascii")})
                sent += 1
            except (InvalidInput, NotFound) as exc:
                # A dataset we cannot mock should not stop the others, nor the datasite.
                log.warning("no mock for %s: %s", ds.meta.name, exc)
        return sent

    def flush_replies(self) -> None:
        """Send every stored reply the hub has not taken; raise only if the hub is down."""
        with self._send_lock:
            for message_id, reply in self.store.unsent():
                self._send_reply(message_id, reply)

    def _send_reply(self, message_id: str, reply: dict[str, Any]) -> None:
        try:
            if jobs.is_work(message_id):  # a work item: its blob, then its one final answer
                jobs.deliver(self, message_id.removeprefix(jobs.PREFIX), reply)
            else:
                self._post("/api/federation/reply", "reply",
                           {**reply, "message_id": message_id})
        except _TRANSIENT:
            raise  # the hub (or the way to it) is down: keep the reply and try again later
        except Exception as exc:  # this reply cannot be signed, or the hub refuses it
            reason = f"the hub would not take the reply: {exc}"
            replacement = (error_reply("internal_error", f"the datasite's answer could not "
                                       f"be delivered ({exc}); nothing else is affected")
                           if reply.get("ok", True) else None)
            failures = self.store.reply_failed(message_id, reason, replacement)
            if failures >= MAX_SEND_FAILURES:
                self.store.park(message_id, reason)
                log.error("parked message %s: %s", message_id, reason)
            elif replacement is not None:
                log.warning("message %s: %s; sending an error reply instead", message_id,
                            reason)
                self._send_reply(message_id, replacement)
            else:
                log.warning("message %s: %s (try %d of %d)", message_id, reason, failures,
                            MAX_SEND_FAILURES)
            return
        self.store.mark_sent(message_id)

    def poll_once(self, wait: float | None = None) -> int:
        """Send stored replies, then take as much new work as the pool has room for."""
        self.flush_replies()
        free, kinds = self.pool.room()
        # Work items are counted at the hub against this total (a finish frees a slot there
        # at once); the other limited kinds are counted here.
        kinds.pop(jobs.POOL_KIND, None)
        slots = self.pool.per_kind.get(jobs.POOL_KIND)
        if free == 0:  # every worker is busy: do not take work that would only wait here
            self.pool.wait_for_room(timeout=self.poll_wait if wait is None else wait)
            return 0
        wait = self.poll_wait if wait is None else wait
        if 0 in kinds.values():
            # A kind at its limit frees a slot while we poll, and the hub cannot know: look
            # again soon (long work queued behind a full kind would otherwise wait a poll).
            wait = min(wait, 0.2)
        data = self._post("/api/federation/poll", "poll",
                          {"wait": wait, "limit": free, "kind_limits": kinds,
                           **({"work_slots": slots} if slots is not None else {})})
        # The hub's keys changed (a rotation, a revocation): read the signed statements
        # before opening what came with this poll.
        self.hub_ring.seen(data.get("hub_keys"))
        for env in data.get("messages", []):
            self.dispatch(env)
        return len(data.get("messages", []))

    # -- doing the work -------------------------------------------------------------------
    def hub_keys(self) -> list[KeyValidity]:
        """The hub keys this datasite believes, each with when it may sign."""
        return self.hub_ring.keys()

    def _open(self, env: dict[str, Any]) -> dict[str, Any] | None:
        def keys(sender: str) -> list[str] | None:
            return keys_valid_at(self.hub_keys(), time.time()) if sender == HUB_ID else None

        for attempt in (1, 2):
            try:
                return open_envelope(env, public_key_for=keys, recipient=self.id,
                                     guard=self.store, kinds=(*HANDLERS, "work", notices.KIND))
            except EnvelopeRejected as exc:
                # Signed by a hub key we have not met: the hub may have rotated; follow it
                # (only a key a believed key endorsed is taken) and look once more.
                if attempt == 1 and ("signature" in str(exc) or "no key" in str(exc)):
                    try:
                        if self.hub_ring.refresh(force=False):
                            continue
                    except NdlError as fail:
                        log.warning("could not read the hub's keys: %s", fail)
                log.warning("refused a message: %s", exc)
                return None
        return None

    def dispatch(self, env: dict[str, Any]) -> None:
        """Check the envelope here, in the loop, then run its work in the pool."""
        opened = self._open(env)
        if opened is None:
            return
        body = opened["body"]
        lease = body.get("lease_seconds")
        job = Job(message_id=_job_id(opened), kind=str(opened["kind"]),
                  lease_seconds=float(lease) if isinstance(lease, int | float) else 8.0,
                  run=lambda: self._work_and_send(opened))
        if not self.pool.submit(job):
            log.info("message %s is already being worked on here", job.message_id)

    def _work_and_send(self, opened: dict[str, Any]) -> None:
        try:
            self.work(opened)
        except _TRANSIENT as exc:
            log.warning("answer to %s stored, not yet sent: %s", opened["body"]["message_id"],
                        exc)

    def handle(self, env: dict[str, Any]) -> None:
        """Check one envelope and do its work now, in this thread."""
        opened = self._open(env)
        if opened is not None:
            self.work(opened)

    def work(self, opened: dict[str, Any]) -> None:
        """Answer one opened message at most once, store the reply, then send it."""
        message_id = _job_id(opened)
        known = self.store.message(message_id)
        if known is not None and known[0] in ("done", "parked"):
            log.info("message %s was answered before; re-sending the stored reply", message_id)
            if known[1] is not None:
                self.store.mark_sent(message_id, sent=False)
        else:
            started = self.store.mark_working(message_id)
            if started > MAX_ATTEMPTS:
                reason = (f"work on it started {started - 1} times and the datasite stopped "
                          "each time before it finished")
                self.store.park(message_id, reason, error_reply(
                    "internal_error", f"the datasite gave up on this message: {reason}. Its "
                    "operator can see it with 'ndl datasite status'"))
                log.error("parked message %s: %s", message_id, reason)
            else:
                reply = (jobs.run(self, opened["body"]) if opened["kind"] == "work"
                         # an incident notice: its own hub signature checked, then kept
                         else notices.receive(self.store.root, self.store.config().get(
                             "hub_key"), opened["body"]) if opened["kind"] == notices.KIND
                         else self.answer(opened["kind"], opened["body"]))
                # An answer that could never be signed or sent is replaced before it is
                # stored, so it cannot jam the datasite (now or after a restart).
                self.store.mark_done(message_id,
                                     reply_problem(reply, self.max_body_bytes) or reply)
        self.flush_replies()

    def _beat(self) -> None:
        """Renew the leases of the work in hand, a few times per lease, until stopped."""
        while True:
            leases = self.pool.in_flight()
            every = min(leases.values(), default=3.0) / 3
            if self.stop_event.wait(max(every, 0.2)):
                return
            ids = [m for m in self.pool.in_flight() if m in leases]
            if not ids:
                continue
            work_ids = [m.removeprefix(jobs.PREFIX) for m in ids if jobs.is_work(m)]
            try:
                # Work items report progress as they renew; the answer names any to stop.
                answer = self._post("/api/federation/heartbeat", "heartbeat", {
                    "message_ids": [m for m in ids if not jobs.is_work(m)],
                    "work": self.work_items.progress(work_ids)})
                if answer.get("cancel"):
                    self.work_items.cancel([str(w) for w in answer["cancel"]])
            except Exception as exc:  # a missed beat only risks a redelivery, never a crash
                log.warning("could not renew %d leases: %s", len(ids), exc)

    def answer(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """Run one handler; any failure becomes an error reply rather than a crash."""
        try:
            ds = self.store.dataset(str(body.get("dataset")))
            op = DATA_OPERATIONS.get(kind)
            if op is not None:  # the one tier definition, checked again here at the data
                tiers.require_operation(ds.meta.tier, op, dataset=ds.meta.name)
            if kind in NEEDS_GRANT and ds.meta.tier != "open":
                self.check_grant(ds, body)
            result = HANDLERS[kind](self, ds, body)
            return {"ok": True, "result": result}
        except NdlError as exc:
            return {"ok": False, "error": exc.to_json()["error"]}
        except Exception as exc:
            log.exception("%s failed", kind)
            return {"ok": False, "error": {"code": "internal_error",
                                           "message": f"the datasite failed to run it: {exc}"}}

    def check_grant(self, ds: LocalDataset, body: dict[str, Any]) -> None:
        """Re-check the signed grant here: the hub's word is not enough."""
        ring = self.hub_keys()
        if not ring:
            raise PermissionDenied("this datasite has no pinned hub key; re-register it")
        check_grant(body.get("grant"), ring, dataset=f"{self.id}/{ds.meta.name}",
                    project=str(body.get("project")), member=str(body.get("requested_by")),
                    revoked=self.store.revoked_grants())

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        """Run until stop() is called; every failure to reach the hub backs off and retries."""
        ready, seen = False, None
        while not self.stop_event.is_set():
            try:
                if not ready:
                    self.register()
                    self.publish_encryption_key()
                    ready = True
                if self._status is None:  # signed status reports, now and every few minutes
                    self._status = lifecycle.start_reporter(self)
                now = self.store.fingerprint()
                if now != seen:  # first start, or a steward published or edited something
                    # Remember what we publish *before* publishing: a change made meanwhile
                    # is then seen on the next turn instead of being absorbed and lost.
                    seen = now
                    try:
                        self.publish()
                    except Exception:
                        seen = None  # not published: try again on the next turn
                        raise
                    self._mocks_wanted = True
                self._start_mocks()
                self.poll_once()
                self.backoff = 0.5
            except UpstreamUnavailable as exc:
                self._sleep(f"hub unreachable ({exc})")
            except EnvelopeRejected as exc:
                if "unknown sender" in str(exc):
                    # The hub forgot us (a fresh database): register again when we can.
                    self.store.save_config(registered=False)
                    ready, seen = False, None
                self._sleep(f"hub refused our message: {exc}")
            except PermissionDenied as exc:
                if not self.store.config().get("registered"):
                    raise
                # Registered but refused (pending approval, suspended, retired): a person
                # can lift that at any moment, so look again within seconds, not minutes.
                self.backoff = min(self.backoff, 4.0)
                self._sleep(f"hub refused us: {exc}")
            except NdlError as exc:
                if exc.http_status < 500 and not ready:
                    raise
                self._sleep(f"hub error: {exc}")
            except Exception as exc:  # a bug must cost a retry, never the datasite
                log.exception("unexpected failure in the datasite loop")
                self._sleep(f"unexpected failure: {exc!r}")

    def _start_mocks(self) -> None:
        """Synthesise and send mocks in the background: making one can take seconds, and a
        fresh datasite must not leave its first questions unanswered meanwhile."""
        if not self._mocks_wanted or (self._mocks is not None and self._mocks.is_alive()):
            return
        self._mocks_wanted = False

        def send() -> None:
            try:
                self.publish_mocks()
            except UpstreamUnavailable as exc:
                log.warning("mocks not sent yet (%s); trying again later", exc)
                self._mocks_wanted = True
            except Exception:
                log.exception("mocks not sent")

        self._mocks = threading.Thread(target=send, daemon=True, name="ndl-mocks")
        self._mocks.start()

    def _sleep(self, why: str) -> None:
        delay = self.backoff * (0.5 + random.random())  # jitter, so sites do not stampede
        log.warning("%s; retrying in %.1f s", why, delay)
        self.stop_event.wait(delay)
        self.backoff = min(self.backoff * 2, 30.0)

    def stop(self) -> None:
        self.stop_event.set()

    def close(self, grace: float = 5.0) -> None:
        """Stop, giving running work ``grace`` seconds to finish and send its answers (what
        is still running after that is redelivered by the hub and resumed on restart)."""
        self.stop_event.set()
        self.pool.wait_idle(grace)
        self._heartbeat.join(timeout=2)
        self.controlled.close()
        self.engine.close()
        self.http.close()
        self.store.close()


# -- what the datasite does for each kind of message -----------------------------------------
# Each handler re-checks what it is asked against the datasite's own copy of the metadata:
# the hub's checks are a convenience, these are the ones that count.

def _job_id(opened: dict[str, Any]) -> str:
    """The durable id of a message's work here: its message id, or ``work:<id>``."""
    body = opened["body"]
    return (jobs.job_id(str(body["work_id"])) if opened["kind"] == "work"
            else str(body["message_id"]))


def _count(agent: Agent, ds: LocalDataset, body: dict[str, Any]) -> dict[str, Any]:
    spec = CountQuery.model_validate(body.get("spec") or {})
    spec.check_against([c.model_dump() for c in ds.meta.columns])
    tiers.check_column_use(ds.meta.tier, ds.meta.columns, spec.by, ColumnUse.GROUP_KEY)
    columns, rows = agent.engine.count_by(ds, spec.by)
    suppressed, threshold = 0, None
    if ds.meta.tier != "open":
        threshold = max(agent.threshold, ds.policy.min_cell_count)
        for row in rows:
            if row[-1] is not None and row[-1] < threshold:
                row[-1], suppressed = None, suppressed + 1
    return QueryResult(columns=columns, rows=rows, suppressed=suppressed, threshold=threshold,
                       tier=ds.meta.tier).model_dump()


def _open_sql(agent: Agent, ds: LocalDataset, body: dict[str, Any]) -> dict[str, Any]:
    if ds.meta.tier != "open":
        raise PermissionDenied(
            f"{ds.meta.name} is {ds.meta.tier} data: SQL over rows is only for open data")
    sql = body.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        raise InvalidInput("give the SQL as a string, e.g. SELECT * FROM data LIMIT 10")
    try:
        limit = int(body.get("limit") or OPEN_SQL_MAX_ROWS)
        budget = float(body.get("time_budget") or OPEN_SQL_TIMEOUT)
    except (TypeError, ValueError) as exc:
        raise InvalidInput("limit must be a whole number of rows and time_budget a number of "
                           "seconds, e.g. {\"limit\": 100}") from exc
    limit = max(1, min(limit, OPEN_SQL_MAX_ROWS))
    # the engine checks the SQL, runs it locked to this dataset, returns JSON-safe rows
    columns, rows, truncated = agent.engine.run_sql(
        ds, sql, limit=limit, timeout=max(0.1, min(budget, OPEN_SQL_TIMEOUT)))
    return {"columns": columns, "rows": rows, "truncated": truncated, "limit": limit}


def _update_metadata(agent: Agent, ds: LocalDataset, body: dict[str, Any]) -> dict[str, Any]:
    from ndl.datasite.metadata_edit import apply_metadata_changes

    changes = body.get("changes")
    if not isinstance(changes, dict) or not changes:
        raise InvalidInput("give the changes as an object of field: value")
    meta = apply_metadata_changes(agent.store.root, ds.meta.name, changes)
    agent.publish()
    return {"metadata": meta.model_dump(mode="json")}


def _grant_revoked(agent: Agent, ds: LocalDataset, body: dict[str, Any]) -> dict[str, Any]:
    agent.store.revoke(str(body.get("grant_id")))
    log.info("grant %s revoked: new work under it is refused", body.get("grant_id"))
    return {"revoked": body.get("grant_id")}


def _private_query(agent: Agent, ds: LocalDataset, body: dict[str, Any]) -> dict[str, Any]:
    """A differentially private answer: check, spend (atomically, first), then compute."""
    from ndl.privacy import SdcRules, check_query, from_sql, parse_query

    if ds.meta.tier != "safeguarded":
        raise PermissionDenied(
            f"{ds.meta.name} is {ds.meta.tier} data: private (DP) queries are for the "
            "safeguarded tier" + ("; open data can be queried directly" if ds.meta.tier ==
                                  "open" else "; controlled data is reached by reviewed code"))
    limits = ds.policy.budget
    project = str(body.get("project"))
    if body.get("sql"):
        q = from_sql(str(body["sql"]), ds.meta, rho=float(body.get("rho") or 0),
                     project=project, max_rows_per_person=limits.max_rows_per_person)
    else:
        q = parse_query({**(body.get("query") or {}), "dataset": ds.meta.name,
                         "project": project})
    check_query(q, ds.meta, max_rows_per_person=limits.max_rows_per_person)  # before spending
    left = agent.budget.spend(limits, dataset=ds.meta.name, project=project,
                              researcher=str(body.get("requested_by")), rho=q.rho,
                              message_id=str(body.get("message_id")))
    sdc = (SdcRules(round_to=limits.round_to, suppress_below=limits.suppress_below)
           if limits.round_to or limits.suppress_below else None)
    # The engine computes the exact statistics where the data is (the plan is checked again
    # there, against the same metadata), then the noise is added as for every engine.
    result = agent.engine.private_answer(ds, q, sdc=sdc,
                                         max_rows_per_person=limits.max_rows_per_person)
    return {**result.model_dump(mode="json"), "budget_remaining": left.to_json(),
            "register_answer": ds.policy.register_dp_answers}


def _budget_status(agent: Agent, ds: LocalDataset, body: dict[str, Any]) -> dict[str, Any]:
    left = agent.budget.remaining(ds.policy.budget, dataset=ds.meta.name,
                                  project=str(body.get("project")),
                                  researcher=str(body.get("requested_by")))
    return {"budget_remaining": left.to_json(),
            "limits": ds.policy.budget.model_dump(mode="json")}


OPEN_SQL_MAX_ROWS = 10_000
OPEN_SQL_TIMEOUT = 10.0
HANDLERS: dict[str, Callable[[Agent, LocalDataset, dict[str, Any]], dict[str, Any]]] = {
    "query": _count,
    "open_sql": _open_sql,
    "metadata.update": _update_metadata,
    "grant.revoked": _grant_revoked,
    "private_query": _private_query,
    "budget.status": _budget_status,
    lifecycle.DELETE_KIND: lifecycle.delete_dataset,
}
# The tier operation each kind of work is; kinds not listed administer the datasite.
DATA_OPERATIONS: dict[str, Operation] = {
    "query": Operation.EXACT_AGGREGATE,
    "open_sql": Operation.OPEN_SQL,
    "private_query": Operation.PRIVATE_QUERY,
    "budget.status": Operation.BUDGET_STATUS,
}
# Work on non-open data needs a grant; the rest is the hub administering the datasite.
NEEDS_GRANT = frozenset({"query", "private_query", "budget.status"})
