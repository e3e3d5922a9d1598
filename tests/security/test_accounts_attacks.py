"""Attacks on accounts and tokens, against real hub processes.

* Locking a victim out by failing their password from elsewhere (the lockout is per account
  and address, so it only slows the attacker).
* Claiming another address in ``X-Forwarded-For`` (believed only from ``--trusted-proxy``).
* A read-only or one-project token (for an agent) doing more than its scope.
* Listing or revoking someone else's tokens; a token that outlives a logout.
* Learning usernames from the public wishlist, or writing free text into the register.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ndl.core.errors import UpstreamUnavailable
from ndl.testing import HubProcess, wait_http

PASSWORD = "correct horse battery staple"
PROJECT = {"title": "Scoped project", "purpose_category": "research",
           "purpose": "Measure how emergency care use varies by region, for planning.",
           "lay_summary": "Counts of visits by area.", "legal_basis": "public-task",
           "end_date": "2099-12-31"}
FAILS = 10  # HubSettings.login_failures_allowed


class Hub:
    def __init__(self, proc: HubProcess, tokens: dict[str, str]) -> None:
        self.proc, self.tokens = proc, tokens
        self.http = httpx.Client(base_url=proc.url, timeout=30)

    def call(self, method: str, path: str, who: str | None = None, **kw: Any) -> httpx.Response:
        headers = kw.pop("headers", {})
        if who is not None:
            headers["Authorization"] = f"Bearer {self.tokens.get(who, who)}"
        return self.http.request(method, path, headers=headers, **kw)

    def login(self, username: str, password: str, source: str | None = None) -> httpx.Response:
        headers = {"X-Forwarded-For": source} if source else {}
        return self.call("POST", "/api/auth/login", headers=headers,
                         json={"username": username, "password": password})


def _start(root: Path, extra: list[str]) -> tuple[HubProcess, dict[str, str]]:
    proc = HubProcess(root, extra_args=extra)
    proc.create_org("org-a", "Organisation A", "nhs")
    tokens = {
        "alice": proc.create_user("alice", ["researcher"], accredited=True, password=PASSWORD),
        "bob": proc.create_user("bob", ["researcher"], password=PASSWORD),
        "sam": proc.create_user("sam", ["steward"], org="org-a"),
    }
    for name in ("victim", "victim2"):
        proc.create_user(name, ["researcher"], password=PASSWORD)
    return proc, tokens


def _running(proc: HubProcess, tokens: dict[str, str]) -> Iterator[Hub]:
    try:
        proc.start()
    except UpstreamUnavailable:  # a busy shared machine: give the hub longer to come up
        wait_http(f"{proc.url}/healthz", 120, proc.proc)
    h = Hub(proc, tokens)
    try:
        yield h
    finally:
        h.http.close()
        proc.stop()
        proc.db.dispose()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """A hub behind a reverse proxy on loopback (``--trusted-proxy 127.0.0.1``)."""
    yield from _running(*_start(tmp_path_factory.mktemp("hub"),
                                ["--trusted-proxy", "127.0.0.1"]))


@pytest.fixture(scope="module")
def exposed_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """A hub that trusts no proxy on loopback (its proxy is elsewhere)."""
    yield from _running(*_start(tmp_path_factory.mktemp("exposed"),
                                ["--trusted-proxy", "10.9.9.9"]))


# --- lockout ---------------------------------------------------------------------------------

def test_an_attacker_elsewhere_cannot_lock_the_victim_out(hub: Hub) -> None:
    attacker, victim_address = "198.51.100.66", "203.0.113.5"
    for _ in range(FAILS):
        assert hub.login("victim", "wrong password!", attacker).status_code == 401
    # The attacker is paused, and the pause grows with each further try ...
    paused = hub.login("victim", "wrong password!", attacker)
    assert paused.status_code == 429, paused.text
    assert paused.json()["error"]["code"] == "rate_limited"
    assert paused.json()["error"]["detail"]["retry_after"] >= 1
    # ... even with the right password, from the attacker's address ...
    assert hub.login("victim", PASSWORD, attacker).status_code == 429
    # ... but the victim, from their own address, signs in at once.
    ok = hub.login("victim", PASSWORD, victim_address)
    assert ok.status_code == 200, ok.text


def test_forwarded_for_from_an_untrusted_peer_is_ignored(exposed_hub: Hub) -> None:
    """Loopback is not a trusted proxy here, so a claimed address is no escape from a pause
    (and cannot be used to aim a pause at someone else's address either)."""
    for i in range(FAILS):
        r = exposed_hub.login("victim2", "wrong password!", f"198.51.100.{i + 1}")
        assert r.status_code == 401
    r = exposed_hub.login("victim2", PASSWORD, "203.0.113.99")
    assert r.status_code == 429, "X-Forwarded-For from an untrusted peer was believed"


def test_the_web_sign_in_shares_the_limiter(hub: Hub) -> None:
    attacker = "198.51.100.77"
    with httpx.Client(base_url=hub.proc.url, headers={"X-Forwarded-For": attacker}) as web:
        page = web.get("/sign-in")
        pre = re.search(r"ndl_csrf=([^;]+)", page.headers.get("set-cookie", ""))
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert pre and csrf
        for _ in range(FAILS):
            assert hub.login("victim2", "wrong password!", attacker).status_code == 401
        r = web.post("/sign-in", headers={"Cookie": f"ndl_csrf={pre.group(1)}"},
                     data={"username": "victim2", "password": PASSWORD,
                           "csrf_token": csrf.group(1), "next": "/"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert hub.login("victim2", PASSWORD, "203.0.113.6").status_code == 200


# --- tokens: lifetime, listing, revoking ---------------------------------------------------

def test_owners_see_their_tokens_without_secrets_and_revoke_only_their_own(hub: Hub) -> None:
    login = hub.login("bob", PASSWORD, "203.0.113.20").json()
    token = login["token"]
    assert login["expires_in_days"] == 7
    listed = hub.call("GET", "/api/auth/tokens", token).json()["tokens"]
    mine = next(t for t in listed if t["current"])
    assert token not in str(listed) and mine["prefix"] == token[:12] + "…"
    assert set(mine) == {"id", "name", "scope", "prefix", "created_at", "expires_at",
                         "last_used_at", "current"}
    assert mine["expires_at"][:10] > mine["created_at"][:10]
    # Alice cannot see Bob's tokens, nor revoke one (it is "not found" to her).
    alice_ids = {t["id"] for t in hub.call("GET", "/api/auth/tokens", "alice").json()["tokens"]}
    assert mine["id"] not in alice_ids
    r = hub.call("DELETE", f"/api/auth/tokens/{mine['id']}", "alice")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert hub.call("GET", "/api/me", token).status_code == 200
    # Bob revokes it himself: it stops working at once.
    assert hub.call("DELETE", f"/api/auth/tokens/{mine['id']}", token).status_code == 200
    assert hub.call("GET", "/api/me", token).status_code == 401


def test_logout_revokes_the_calling_token_only(hub: Hub) -> None:
    first = hub.login("bob", PASSWORD, "203.0.113.21").json()["token"]
    second = hub.login("bob", PASSWORD, "203.0.113.21").json()["token"]
    assert hub.call("POST", "/api/auth/logout", first).status_code == 200
    assert hub.call("GET", "/api/me", first).status_code == 401
    assert hub.call("GET", "/api/me", second).status_code == 200


# --- scoped tokens ---------------------------------------------------------------------------

def _mint(hub: Hub, who: str, scope: str) -> str:
    r = hub.call("POST", "/api/auth/tokens", who, json={"scope": scope, "name": "agent"})
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


def _denied(r: httpx.Response, why: str = "this token") -> None:
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "permission_denied" and why in r.text


def test_a_read_only_token_reads_but_changes_nothing(hub: Hub) -> None:
    ro = _mint(hub, "alice", "read-only")
    me = hub.call("GET", "/api/me", ro).json()
    assert me["username"] == "alice" and me["scope"] == "read-only"
    assert hub.call("GET", "/api/projects", ro).status_code == 200
    assert hub.call("GET", "/api/auth/tokens", ro).status_code == 200
    # Questions sent by POST are reads: past the scope check, to "no such dataset".
    r = hub.call("POST", "/api/datasets/org-a/none/sql", ro, json={"sql": "SELECT 1"})
    assert r.status_code == 404, r.text
    _denied(hub.call("POST", "/api/projects", ro, json=PROJECT), "read-only")
    _denied(hub.call("POST", "/api/wishes", ro, json={
        "title": "Anything at all", "description": "A wish from an agent.", "orgs": []}))
    _denied(hub.call("POST", "/api/auth/tokens", ro, json={"scope": "full"}))
    wishes = hub.call("GET", "/api/wishes").json()["wishes"]
    assert all(w["title"] != "Anything at all" for w in wishes)
    # Ending itself is always allowed.
    assert hub.call("POST", "/api/auth/logout", ro).status_code == 200
    assert hub.call("GET", "/api/me", ro).status_code == 401


def test_a_project_token_acts_only_within_its_project(hub: Hub) -> None:
    mine = hub.call("POST", "/api/projects", "alice", json=PROJECT).json()["id"]
    other = hub.call("POST", "/api/projects", "alice",
                     json={**PROJECT, "title": "Another project"}).json()["id"]
    agent = _mint(hub, "alice", f"project:{mine}")
    assert hub.call("GET", f"/api/projects/{mine}", agent).json()["members"]
    _denied(hub.call("GET", f"/api/projects/{other}", agent), other)
    _denied(hub.call("POST", f"/api/projects/{other}/requests", agent,
                     json={"datasets": ["org-a/none"]}), other)
    # Within its project it gets past the scope (here to the catalogue's "no such dataset").
    r = hub.call("POST", f"/api/projects/{mine}/requests", agent,
                 json={"datasets": ["org-a/none"]})
    assert r.status_code in (404, 422), r.text
    _denied(hub.call("POST", "/api/projects", agent, json=PROJECT), "names no project")
    _denied(hub.call("POST", "/api/auth/tokens", agent, json={"scope": "read-only"}))
    # Nobody can scope a token to a project they are not in.
    r = hub.call("POST", "/api/auth/tokens", "bob", json={"scope": f"project:{mine}"})
    assert r.status_code == 403, r.text


# --- the public wishlist and the register ----------------------------------------------------

def test_the_wishlist_names_no_one_and_the_register_keeps_no_wish_text(hub: Hub) -> None:
    title = "Ambulance handovers by hour, please"
    wish = hub.call("POST", "/api/wishes", "bob", json={
        "title": title, "description": "Hourly handover delays by trust.", "orgs": ["org-a"]})
    assert wish.status_code == 201, wish.text
    wid = wish.json()["id"]
    said = hub.call("POST", f"/api/wishes/{wid}/comments", "bob", json={"text": "Me too"})
    assert said.json()["user"] == "a researcher"
    hub.call("POST", f"/api/wishes/{wid}/comments", "sam", json={"text": "Planned for May"})
    public = hub.call("GET", f"/api/wishes/{wid}").json()
    assert [c["user"] for c in public["comments"]] == ["a researcher", "steward@org-a"]
    page = hub.call("GET", f"/wishlist/{wid}").text
    assert "Planned for May" in page and "steward@org-a" in page
    for username in ("bob", "sam"):
        assert not re.search(rf"\b{username}\b", str(public) + page), username
    entries = hub.call("GET", "/api/register", params={"kind": "wish.created"}).json()
    assert entries["entries"] and title not in str(entries)
