"""Attacks on incidents, notices and the security log.

Against a real hub process (every role), and a real datasite agent given envelopes by hand:

* a member reading incidents that are not theirs (API and page), or learning they exist;
* every role but admin recording a response, containing or closing an incident;
* huge and malformed fields, which must be refused with a clear error and change nothing;
* forged notices at the datasite: a forged envelope, a notice not signed by the hub, a notice
  altered after signing, a replayed envelope;
* the public register (JSON and page) never holding an incident's description or title;
* the security log exported by anyone but an admin, or fetched by a steward from a hub that
  shares nothing;
* passwords and tokens reaching the security log by any path (API and web sign-in, a password
  typed as a username, lockout, minted and revoked tokens, sign-out).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
import rfc8785
from sqlalchemy import func, select, text

from ndl.core.envelope import seal
from ndl.core.errors import UpstreamUnavailable
from ndl.core.keys import SigningKey
from ndl.datasite import notices as kept
from ndl.datasite.agent import Agent
from ndl.datasite.store import DatasiteStore
from ndl.federation.incident_models import Incident, IncidentAction
from ndl.testing import HubProcess, write_dataset

PASSWORD = "correct horse battery staple"
SECRET = "Confidential-7f3a: the extract was emailed to a personal account"
TITLE = "Title-9c1e: an extract left the building"
ROLES = ("anonymous", "researcher", "other_researcher", "steward_A", "steward_B",
         "output_checker", "admin")
USERS = {"researcher": "alice", "other_researcher": "bob", "steward_A": "sam",
         "steward_B": "dee", "output_checker": "olga", "admin": "root"}


class Hub:
    def __init__(self, proc: HubProcess, tokens: dict[str, str]) -> None:
        self.proc, self.tokens = proc, tokens
        self.http = httpx.Client(base_url=proc.url, timeout=60)

    def call(self, method: str, path: str, role: str = "anonymous", **kw: Any
             ) -> httpx.Response:
        headers = kw.pop("headers", {})
        if role in self.tokens:
            headers["Authorization"] = f"Bearer {self.tokens[role]}"
        return self.http.request(method, path, headers=headers, **kw)

    def raise_incident(self, role: str, **body: Any) -> dict[str, Any]:
        r = self.call("POST", "/api/incidents", role, json={
            "title": TITLE, "description": SECRET, "severity": "medium", **body})
        assert r.status_code == 201, r.text
        return dict(r.json())

    def incidents_count(self) -> int:
        with self.proc.db.read() as s:
            return int(s.scalar(select(func.count()).select_from(Incident)) or 0)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    proc = HubProcess(tmp_path_factory.mktemp("incident-hub"))
    proc.create_org("org-a", "Organisation A", "nhs")
    proc.create_org("org-b", "Organisation B", "government")
    tokens = {
        "researcher": proc.create_user("alice", ["researcher"], password=PASSWORD),
        "other_researcher": proc.create_user("bob", ["researcher"], password=PASSWORD),
        "steward_A": proc.create_user("sam", ["steward"], org="org-a", password=PASSWORD),
        "steward_B": proc.create_user("dee", ["steward"], org="org-b"),
        "output_checker": proc.create_user("olga", ["output_checker"]),
        "admin": proc.create_user("root", ["admin"], password=PASSWORD),
    }
    with proc:
        h = Hub(proc, tokens)
        yield h
        h.http.close()


# --- reading others' incidents -----------------------------------------------------------------

def test_members_cannot_read_or_find_incidents_that_are_not_theirs(hub: Hub) -> None:
    """Bob's incident names organisation A: Bob, A's steward and admins see it; nobody else
    learns it exists (404 exactly as for a missing one, and absent from their lists)."""
    iid = hub.raise_incident("other_researcher", orgs=["org-a"])["id"]
    missing = iid + 10_000
    for role in ("researcher", "steward_B", "output_checker"):
        r = hub.call("GET", f"/api/incidents/{iid}", role)
        gone = hub.call("GET", f"/api/incidents/{missing}", role)
        assert r.status_code == gone.status_code == 404, (role, r.text)
        assert r.json()["error"]["code"] == "not_found"
        assert iid not in [i["id"] for i in hub.call("GET", "/api/incidents", role)
                           .json()["incidents"]]
        assert iid not in [n["incident"] for n in hub.call("GET", "/api/notices", role)
                           .json()["notices"]]
        page = hub.call("GET", f"/incidents/{iid}", role)
        assert page.status_code == 404 and SECRET not in page.text and TITLE not in page.text
    assert hub.call("GET", f"/api/incidents/{iid}").status_code == 401
    touched = hub.call("GET", f"/api/incidents/{iid}", "steward_A").json()
    assert "description" not in touched and "raised_by" not in touched
    assert hub.call("GET", f"/api/incidents/{iid}", "other_researcher").json()[
        "description"] == SECRET


# --- acting without the right ----------------------------------------------------------------

@pytest.mark.parametrize("role", [r for r in ROLES if r != "admin"])
def test_only_admins_act_contain_or_close(hub: Hub, role: str) -> None:
    # Raised by the role itself where it can, so even the raiser is refused.
    raiser = role if role != "anonymous" else "researcher"
    iid = hub.raise_incident(raiser, orgs=["org-a"])["id"]
    attempts = [
        hub.call("POST", f"/api/incidents/{iid}/actions", role,
                 json={"action": "suspension", "subject": "user:bob"}),
        hub.call("POST", f"/api/incidents/{iid}/state", role, json={"state": "closed"}),
        hub.call("POST", f"/api/incidents/{iid}/state", role, json={"state": "contained"}),
    ]
    want = 401 if role == "anonymous" else 403
    for r in attempts:
        assert r.status_code == want, (role, r.status_code, r.text)
    with hub.proc.db.read() as s:
        inc = s.get(Incident, iid)
        assert inc is not None and inc.state == "open"
        assert s.scalar(select(func.count()).select_from(IncidentAction)
                        .where(IncidentAction.incident_id == iid)) == 0


# --- huge and malformed input ------------------------------------------------------------------

GOOD = {"title": "Lost laptop", "description": "It was lost.", "severity": "low"}


@pytest.mark.parametrize("body,where", [
    ({**GOOD, "title": "x" * 201}, "title"),
    ({**GOOD, "title": "two\nlines"}, "title"),
    ({**GOOD, "title": ""}, "title"),
    ({**GOOD, "description": "x" * 20_001}, "description"),
    ({**GOOD, "description": ""}, "description"),
    ({**GOOD, "severity": "apocalyptic"}, "severity"),
    ({**GOOD, "severity": None}, "severity"),
    ({**GOOD, "datasets": [f"s/d{i}" for i in range(51)]}, "datasets"),
    ({**GOOD, "users": ["a" * 201]}, "users"),
    ({**GOOD, "projects": ["p-1\x00"]}, "projects"),
    ({**GOOD, "orgs": "org-a"}, "orgs"),
    ({**GOOD, "datasites": [{"id": 1}]}, "datasites"),
    ({"title": "Lost laptop"}, "description"),
    ([GOOD], "body"),
])
def test_malformed_incidents_are_refused_and_change_nothing(hub: Hub, body: Any,
                                                            where: str) -> None:
    before = hub.incidents_count()
    r = hub.call("POST", "/api/incidents", "researcher", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_input" and where in r.text
    assert hub.incidents_count() == before


def test_unknown_names_huge_bodies_and_ids_are_refused(hub: Hub) -> None:
    before = hub.incidents_count()
    unknown = hub.call("POST", "/api/incidents", "researcher",
                       json={**GOOD, "datasets": ["org-a/no-such-data"]})
    assert unknown.status_code == 404 and "no dataset 'org-a/no-such-data'" in unknown.text
    huge = hub.call("POST", "/api/incidents", "researcher",
                    content=b'{"title": "' + b"x" * 3_000_000 + b'"}',
                    headers={"Content-Type": "application/json"})
    assert huge.status_code == 413
    assert hub.incidents_count() == before
    for bad in ("abc", "-1", str(2**70), "1.5"):
        r = hub.call("GET", f"/api/incidents/{bad}", "admin")
        assert r.status_code in (404, 422), (bad, r.status_code, r.text)
    iid = hub.raise_incident("researcher")["id"]
    for body, code in (
            ({"action": "nuke", "subject": "user:bob"}, 422),
            ({"action": "suspension", "subject": ""}, 422),
            ({"action": "suspension", "subject": "x" * 301}, 422),
            ({"action": "suspension", "subject": "user:bob\nforged"}, 422),
            ({"action": "suspension", "subject": "user:bob", "note": "n" * 2001}, 422),
            ({"action": "suspension", "subject": "user:bob", "register_seq": 10**9}, 404),
            ({"action": "suspension", "subject": "user:bob", "register_seq": 2**60}, 422)):
        r = hub.call("POST", f"/api/incidents/{iid}/actions", "admin", json=body)
        assert r.status_code == code, (body, r.status_code, r.text)
    for state in ("open", "deleted", ""):
        r = hub.call("POST", f"/api/incidents/{iid}/state", "admin", json={"state": state})
        assert r.status_code == 422, (state, r.text)
    view = hub.call("GET", f"/api/incidents/{iid}", "admin").json()
    assert view["state"] == "open" and view["actions"] == []
    for params in ({"since": "yesterday"}, {"kind": "auth.everything"},
                   {"until": "x" * 41}):
        r = hub.call("GET", "/api/admin/security-log", "admin", params=params)
        assert r.status_code == 422, (params, r.text)


# --- the public register keeps the secret ------------------------------------------------------

def test_the_register_never_holds_an_incidents_description_or_title(hub: Hub) -> None:
    iid = hub.raise_incident("researcher", users=["bob"], orgs=["org-b"])["id"]
    assert hub.call("POST", f"/api/incidents/{iid}/actions", "admin", json={
        "action": "notification", "subject": "user:bob", "note": SECRET}).status_code == 201
    assert hub.call("POST", f"/api/incidents/{iid}/state", "admin",
                    json={"state": "closed"}).status_code == 200
    feed = hub.call("GET", "/api/register", params={"limit": 1000}).text
    page = hub.call("GET", "/register").text
    assert f"incident:{iid}" in feed
    for private in (SECRET, TITLE, "Confidential-7f3a", "Title-9c1e", '"alice"', '"bob"',
                    "user:bob"):
        assert private not in feed and private not in page
    assert hub.call("GET", "/api/register/verify").json()["ok"] is True


# --- the security log: who may read it, and what it never holds --------------------------------

@pytest.mark.parametrize("role", [r for r in ROLES if r != "admin"])
def test_only_admins_export_the_security_log(hub: Hub, role: str) -> None:
    r = hub.call("GET", "/api/admin/security-log", role)
    assert r.status_code == (401 if role == "anonymous" else 403), r.text
    assert '"kind"' not in r.text
    # This hub shares nothing: even a steward of the organisation gets nothing.
    shared = hub.call("GET", "/api/security-log", role)
    assert shared.status_code == (401 if role == "anonymous" else 403), shared.text
    if role.startswith("steward"):
        assert "--share-security-log org" in shared.text


def _web_sign_in(hub: Hub, username: str, password: str) -> httpx.Response:
    page = hub.http.get("/sign-in")
    pre = re.search(r"ndl_csrf=([^;]+)", page.headers.get("set-cookie", ""))
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert pre and token
    return hub.http.post("/sign-in", data={"username": username, "password": password,
                                           "csrf_token": token.group(1), "next": "/"},
                         headers={"Cookie": f"ndl_csrf={pre.group(1)}"})


def test_passwords_and_tokens_never_reach_the_security_log(hub: Hub) -> None:
    typed_as_name = "Hunter2-typed-into-the-username-box"
    secrets = {PASSWORD, typed_as_name, "wrong-password-123"}
    hub.http.cookies.clear()
    signed = hub.call("POST", "/api/auth/login", json={"username": "sam",
                                                        "password": PASSWORD})
    assert signed.status_code == 200
    secrets.add(signed.json()["token"])
    minted = hub.call("POST", "/api/auth/tokens", "admin",
                      json={"scope": "read-only", "name": "siem-agent", "days": 1})
    assert minted.status_code == 201
    secrets.add(minted.json()["token"])
    assert hub.call("DELETE", f"/api/auth/tokens/{minted.json()['id']}", "admin"
                    ).status_code == 200
    assert hub.call("POST", "/api/auth/logout", headers={
        "Authorization": f"Bearer {signed.json()['token']}"}).status_code == 200
    assert hub.call("POST", "/api/auth/login", json={
        "username": typed_as_name.lower(), "password": "x"}).status_code in (401, 422)
    assert _web_sign_in(hub, "bob", "wrong-password-123").status_code == 401
    assert _web_sign_in(hub, typed_as_name.lower(), PASSWORD).status_code == 401
    web = _web_sign_in(hub, "bob", PASSWORD)
    assert web.status_code == 303
    session = re.search(r"ndl_session=([^;]+)", web.headers.get("set-cookie", ""))
    assert session
    secrets.add(session.group(1))
    # Past the allowed failures from one address: a lockout, logged without the guess.
    for _ in range(11):
        last = hub.call("POST", "/api/auth/login", json={"username": "dee",
                                                          "password": "wrong-password-123"})
    assert last.status_code == 429
    secrets |= set(hub.tokens.values())

    exported = hub.call("GET", "/api/admin/security-log", "admin").text
    with hub.proc.db.read() as s:
        table = json.dumps([list(map(str, row)) for row in
                            s.execute(text("SELECT * FROM security_events"))])
    kinds = {json.loads(line)["kind"] for line in exported.splitlines()}
    assert {"auth.sign_in", "auth.sign_in_failed", "auth.lockout", "auth.token_issued",
            "auth.token_revoked", "auth.sign_out"} <= kinds
    for secret in secrets:
        for where in (exported, table):
            assert secret not in where and secret.lower() not in where
    web_events = [json.loads(x) for x in exported.splitlines()
                  if json.loads(x)["details"].get("via") == "web"]
    assert {e["kind"] for e in web_events} >= {"auth.sign_in", "auth.sign_in_failed"}
    assert "unknown-account" in {e["actor"] for e in web_events}


# --- forged notices at the datasite --------------------------------------------------------------

HUB_KEY = SigningKey.generate()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    root = tmp_path / "site"
    write_dataset(root, "wards", pa.table({"ward": ["A", "B"]}), tier="open")
    store = DatasiteStore(root)
    store.save_config(hub_key=HUB_KEY.public_b64, registered=True)
    a = Agent(store, "http://127.0.0.1:9", datasite_id="nhs-trust", org="nhs-trust")
    yield a
    a.close(grace=0)


def _notice(signer: SigningKey = HUB_KEY, **over: Any) -> dict[str, Any]:
    notice = {"incident": 7, "event": "raised", "severity": "high", "state": "open",
              "title": "Exposed", "touches": ["dataset nhs-trust/wards"],
              "at": "2026-12-06T10:00:00+00:00"}
    sig = signer.sign(rfc8785.dumps(notice))
    notice.update(over)  # altered after signing, if anything is given
    return {"notice": notice, "notice_sig": sig}


def _deliver(agent: Agent, env: dict[str, Any]) -> None:
    try:
        agent.handle(env)
    except UpstreamUnavailable:  # the answer is stored; there is no hub here to send it to
        pass


def _envelope(body: dict[str, Any], *, key: SigningKey = HUB_KEY, sender: str = "hub",
              message_id: str = "m-1") -> dict[str, Any]:
    return seal(key, sender=sender, recipient="nhs-trust", kind="notice",
                body={**body, "message_id": message_id, "attempt": 1, "lease_seconds": 8})


@pytest.mark.parametrize("env,why", [
    (_envelope(_notice(), key=SigningKey.generate()), "forged envelope"),
    (_envelope(_notice(), sender="party:evil"), "unknown sender"),
    (_envelope(_notice(signer=SigningKey.generate())), "notice not signed by the hub"),
    (_envelope(_notice(title="Nothing to see")), "notice altered after signing"),
    (_envelope(_notice(incident="7; drop table")), "malformed incident"),
    (_envelope({"notice": "x" * 10_000, "notice_sig": "AAAA"}), "not an object"),
    (_envelope({}), "no notice at all"),
])
def test_forged_or_altered_notices_are_refused_and_not_kept(agent: Agent,
                                                            env: dict[str, Any],
                                                            why: str) -> None:
    _deliver(agent, env)
    assert kept.received(agent.store.root) == [], why
    known = agent.store.message("m-1")
    if known is not None:  # the envelope was the hub's: the refusal is the answer
        assert known[1] is not None and known[1]["ok"] is False, why


def test_a_genuine_notice_is_kept_once_and_a_replay_is_refused(agent: Agent) -> None:
    env = _envelope(_notice())
    _deliver(agent, env)
    (got,) = kept.received(agent.store.root)
    assert got.incident == 7 and got.touches == ["dataset nhs-trust/wards"]
    assert agent.store.message("m-1") is not None
    assert agent.store.message("m-1")[1] == {"ok": True,  # type: ignore[index]
                                             "result": {"recorded": 7, "event": "raised"}}
    _deliver(agent, env)  # the same envelope again: its nonce was used
    assert len(kept.received(agent.store.root)) == 1
    assert kept.verify_kept(agent.store.root, HUB_KEY.public_b64) == []
    # Editing the kept record afterwards is detected by its signature.
    db = sqlite3.connect(agent.store.root / kept.FILE)
    db.execute("UPDATE notices SET notice = replace(notice, 'Exposed', 'Fine')")
    db.commit()
    db.close()
    assert kept.verify_kept(agent.store.root, HUB_KEY.public_b64) == [7]
