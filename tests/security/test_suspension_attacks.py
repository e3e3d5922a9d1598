"""A suspended user or datasite tries everything it used to do, against a real hub process.

Users: API tokens (full, read-only agent tokens as MCP and the CLI use them), the web
session cookie, password sign-in, and their grants. Datasites: polling, heartbeats,
publishing, replying, requests signed as a party (envelope header and body), and queries
or work aimed at their datasets. Then: nobody but an admin may suspend or reinstate, and
suspending what does not exist says so and changes nothing.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from ndl.core.envelope import seal
from ndl.core.keys import SigningKey
from ndl.federation.blobs import ENVELOPE_HEADER, REQUEST_KIND
from ndl.ledger.security_models import SecurityEvent
from ndl.testing import HubProcess

SITE = "nhs-trust"
SITE_KEY = SigningKey.generate()
PASSWORD = "a long enough password"


@dataclass
class Lib:
    hub: HubProcess
    tokens: dict[str, str]

    @property
    def url(self) -> str:
        return self.hub.url

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def admin(self, path: str, **body: Any) -> httpx.Response:
        return httpx.post(f"{self.url}/api/admin/{path}", headers=self.as_("admin"),
                          json=body or None, timeout=10)

    def register_head(self) -> int:
        return int(httpx.get(f"{self.url}/api/register", params={"limit": 1}
                             ).json()["head"]["seq"])


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lib]:
    h = HubProcess(tmp_path_factory.mktemp("hub"), extra_args=["--insecure-cookies"])
    h.create_org(SITE, "NHS trust", "nhs")
    tokens = {
        "admin": h.create_user("root", ["admin"]),
        "steward": h.create_user("sam", ["steward"], org=SITE),
        "checker": h.create_user("olive", ["output_checker"]),
        "researcher": h.create_user("alice", ["researcher"], password=PASSWORD),
        "victim": h.create_user("vic", ["researcher"], password=PASSWORD),
    }
    with h:
        env = seal(SITE_KEY, sender=SITE, recipient="hub", kind="register",
                   body={"datasite_id": SITE, "org": SITE, "name": "NHS",
                         "public_key": SITE_KEY.public_b64})
        r = httpx.post(f"{h.url}/api/federation/register", json=env,
                       headers={"Authorization": f"Bearer {tokens['steward']}"})
        assert r.status_code == 201, r.text
        published = _signed(h.url, "publish", {"datasets": [{
            "name": "ae", "title": "A&E attendances", "publisher": "NHS", "tier": "open",
            "columns": [{"name": "age", "type": "integer"}]}]})
        assert published.status_code == 200, published.text
        yield Lib(h, tokens)


def _signed(url: str, kind: str, body: dict[str, Any], path: str | None = None
            ) -> httpx.Response:
    env = seal(SITE_KEY, sender=SITE, recipient="hub", kind=kind, body=body)
    return httpx.post(f"{url}/api/federation/{path or kind}", json=env, timeout=10)


def _suspended(r: httpx.Response, words: str = "suspended") -> None:
    assert r.status_code == 403, r.text
    err = r.json()["error"]
    assert err["code"] == "suspended" and words in err["message"]


# --- users ---------------------------------------------------------------------------------

@pytest.fixture
def victim(lib: Lib) -> Iterator[str]:
    """The victim's name, suspended for the test and reinstated after it."""
    r = lib.admin("users/vic/suspend", reason="incident 3: credentials posted online")
    assert r.status_code == 200, r.text
    yield "vic"
    assert lib.admin("users/vic/reinstate").status_code == 200


def test_a_suspended_users_tokens_stop_at_once(lib: Lib) -> None:
    agent = httpx.post(f"{lib.url}/api/auth/tokens", headers=lib.as_("victim"),
                       json={"scope": "read-only", "name": "mcp-agent", "days": 1}).json()
    agent_h = {"Authorization": f"Bearer {agent['token']}"}
    assert httpx.get(f"{lib.url}/api/me", headers=agent_h).status_code == 200
    assert lib.admin("users/vic/suspend", reason="incident 3").status_code == 200
    try:
        for headers in (lib.as_("victim"), agent_h):
            _suspended(httpx.get(f"{lib.url}/api/me", headers=headers), "'vic' is suspended")
            _suspended(httpx.post(f"{lib.url}/api/projects", headers=headers,
                                  json={"id": "p-vic", "title": "x", "purpose": "x"}))
        # The MCP endpoint goes through the same check with the agent's token.
        mcp = httpx.post(f"{lib.url}/mcp", headers={**agent_h, "Accept": "application/json"},
                         json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        _suspended(mcp, "'vic' is suspended")
        # Minting a fresh token is refused too (the caller is refused before any rule).
        _suspended(httpx.post(f"{lib.url}/api/auth/tokens", headers=lib.as_("victim"),
                              json={"scope": "full", "days": 1}))
    finally:
        assert lib.admin("users/vic/reinstate").status_code == 200
    assert httpx.get(f"{lib.url}/api/me", headers=agent_h).status_code == 200


def test_a_suspended_user_cannot_sign_in_with_a_password(lib: Lib, victim: str) -> None:
    r = httpx.post(f"{lib.url}/api/auth/login",
                   json={"username": victim, "password": PASSWORD})
    _suspended(r)
    wrong = httpx.post(f"{lib.url}/api/auth/login",
                       json={"username": victim, "password": "not the password"})
    # A wrong password says nothing about suspension: nobody probes standing by guessing.
    assert wrong.status_code == 401 and "suspended" not in wrong.text


def test_a_suspended_users_web_session_ends_at_once(lib: Lib) -> None:
    with httpx.Client(base_url=lib.url) as browser:
        form = browser.get("/sign-in").text
        csrf = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        r = browser.post("/sign-in", data={"csrf_token": csrf, "username": "vic",
                                            "password": PASSWORD, "next": "/"})
        assert r.status_code == 303 and browser.cookies.get("ndl_session")
        assert browser.get("/api/me").json()["username"] == "vic"
        assert lib.admin("users/vic/suspend", reason="incident 4").status_code == 200
        try:
            page = browser.get("/")
            assert page.status_code == 403 and "Your account is suspended" in page.text
            assert not browser.cookies.get("ndl_session")
            assert browser.get("/api/me").status_code == 401  # signed out now
        finally:
            assert lib.admin("users/vic/reinstate").status_code == 200


def test_a_suspended_users_grants_cannot_be_used(lib: Lib, victim: str) -> None:
    """Any query naming a project is refused before a grant is looked at."""
    r = httpx.post(f"{lib.url}/api/datasets/{SITE}/ae/query", headers=lib.as_("victim"),
                   json={"project": "any-project", "measure": "count"})
    _suspended(r)


# --- datasites -----------------------------------------------------------------------------

@pytest.fixture
def suspended_site(lib: Lib) -> Iterator[str]:
    r = lib.admin(f"datasites/{SITE}/suspend", reason="incident 9: host compromised")
    assert r.status_code == 200, r.text
    yield SITE
    assert lib.admin(f"datasites/{SITE}/reinstate").status_code == 200


def test_a_suspended_datasite_is_refused_everywhere(lib: Lib, suspended_site: str) -> None:
    _suspended(_signed(lib.url, "poll", {"wait": 0}), f"datasite '{SITE}' is suspended")
    _suspended(_signed(lib.url, "heartbeat", {"message_ids": []}))
    _suspended(_signed(lib.url, "publish", {"datasets": []}))
    _suspended(_signed(lib.url, "reply", {"message_id": "00000000-0000-0000-0000-000000000000",
                                          "ok": True, "result": {}}))
    # Signed as a party, in the body (party routes) and in the request header (blobs).
    _suspended(_signed(lib.url, "party-inbox", {"wait": 0}))
    path = "/api/blobs/uploads"
    env = seal(SITE_KEY, sender=SITE, recipient="hub", kind=REQUEST_KIND,
               body={"method": "POST", "path": path, "args": {}})
    header = base64.urlsafe_b64encode(json.dumps(env).encode()).decode().rstrip("=")
    _suspended(httpx.post(f"{lib.url}{path}", headers={ENVELOPE_HEADER: header}, json={}))


def test_a_suspended_datasites_data_answer_nothing(lib: Lib, suspended_site: str) -> None:
    sites = httpx.get(f"{lib.url}/api/datasites").json()["datasites"]
    assert [s["suspended"] for s in sites if s["id"] == SITE] == [True]
    assert "incident 9" not in json.dumps(sites)  # that it is, never why
    before = lib.register_head()
    r = httpx.post(f"{lib.url}/api/datasets/{SITE}/ae/sql", headers=lib.as_("researcher"),
                   json={"sql": "select count(*) from data"})
    _suspended(r, "answer no queries")
    w = httpx.post(f"{lib.url}/api/work", headers=lib.as_("researcher"),
                   json={"kind": "export", "dataset": f"{SITE}/ae"})
    _suspended(w)
    assert lib.register_head() == before  # nothing was queued or recorded


def test_a_reinstated_datasite_polls_again(lib: Lib) -> None:
    assert lib.admin(f"datasites/{SITE}/suspend", reason="x").status_code == 200
    _suspended(_signed(lib.url, "poll", {"wait": 0}))
    assert lib.admin(f"datasites/{SITE}/reinstate").status_code == 200
    r = _signed(lib.url, "poll", {"wait": 0})
    assert r.status_code == 200 and r.json()["messages"] == []


def test_the_register_records_suspension_without_the_reason(lib: Lib) -> None:
    assert lib.admin(f"datasites/{SITE}/suspend",
                     reason="secret-incident-detail").status_code == 200
    assert lib.admin(f"datasites/{SITE}/reinstate").status_code == 200
    feed = httpx.get(f"{lib.url}/api/register", params={"limit": 1000}).json()["entries"]
    kinds = [(e["kind"], e["actor"], e["subject"]) for e in feed]
    assert ("datasite.suspended", "admin", SITE) in kinds
    assert ("datasite.reinstated", "admin", SITE) in kinds
    assert "secret-incident-detail" not in json.dumps(feed)
    # The security log (admins and the SIEM only) keeps who did it and why.
    with lib.hub.db.read() as s:
        events = s.scalars(select(SecurityEvent).where(
            SecurityEvent.kind == "admin.suspension",
            SecurityEvent.subject == f"datasite:{SITE}")).all()
        assert any(e.actor == "user:root" and e.details.get("reason") ==
                   "secret-incident-detail" for e in events)


# --- who may suspend, and bad names ---------------------------------------------------------

@pytest.mark.parametrize("role", ["steward", "checker", "researcher", None])
@pytest.mark.parametrize("path", ["users/vic/suspend", "users/vic/reinstate",
                                  f"datasites/{SITE}/suspend", f"datasites/{SITE}/reinstate"])
def test_only_an_admin_may_suspend_or_reinstate(lib: Lib, role: str | None, path: str) -> None:
    before = lib.register_head()
    headers = lib.as_(role) if role else {}
    r = httpx.post(f"{lib.url}/api/admin/{path}", headers=headers, json={"reason": "x"})
    assert r.status_code == (403 if role else 401), r.text
    if role:
        assert "admin" in r.json()["error"]["message"]
    assert lib.register_head() == before
    assert httpx.get(f"{lib.url}/api/me", headers=lib.as_("victim")).status_code == 200
    assert _signed(lib.url, "poll", {"wait": 0}).status_code == 200


@pytest.mark.parametrize("path,words", [
    ("users/nobody/suspend", "there is no user 'nobody'"),
    ("users/nobody/reinstate", "there is no user 'nobody'"),
    ("datasites/no-such-site/suspend", "there is no datasite 'no-such-site'"),
    ("datasites/no-such-site/reinstate", "there is no datasite 'no-such-site'"),
])
def test_unknown_names_are_clear_errors_and_change_nothing(lib: Lib, path: str,
                                                           words: str) -> None:
    before = lib.register_head()
    r = lib.admin(path, reason="x")
    assert r.status_code == 404 and words in r.json()["error"]["message"]
    assert lib.register_head() == before


def test_bad_requests_change_nothing(lib: Lib) -> None:
    before = lib.register_head()
    # No reason, a blank one, one too long; reinstating who is not suspended; twice.
    assert lib.admin("users/vic/suspend").status_code == 422
    assert lib.admin("users/vic/suspend", reason="   ").status_code == 422
    assert lib.admin("users/vic/suspend", reason="x" * 2001).status_code == 422
    r = lib.admin("users/vic/reinstate")
    assert r.status_code == 409 and "not suspended" in r.json()["error"]["message"]
    # An admin cannot lock themself out.
    r = lib.admin("users/root/suspend", reason="x")
    assert r.status_code == 403 and "yourself" in r.json()["error"]["message"]
    assert lib.register_head() == before
    assert httpx.get(f"{lib.url}/api/me", headers=lib.as_("victim")).status_code == 200


def test_suspending_twice_is_a_conflict(lib: Lib, victim: str) -> None:
    before = lib.register_head()
    r = lib.admin(f"users/{victim}/suspend", reason="again")
    assert r.status_code == 409 and "already suspended" in r.json()["error"]["message"]
    assert lib.register_head() == before


def _ndl_admin(lib: Lib, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ndl", "admin", *args, "--db", lib.hub.db_url,
                           "--data-dir", str(lib.hub.data_dir)],
                          capture_output=True, text=True, timeout=120)


def test_the_admin_cli_suspends_and_reinstates(lib: Lib) -> None:
    done = _ndl_admin(lib, "suspend", "user", "vic", "--reason", "incident 11")
    assert done.returncode == 0 and "user vic suspended" in done.stdout, done.stderr
    try:
        _suspended(httpx.get(f"{lib.url}/api/me", headers=lib.as_("victim")))
        site = _ndl_admin(lib, "suspend", "datasite", SITE, "--reason", "incident 11")
        assert site.returncode == 0, site.stderr
        _suspended(_signed(lib.url, "poll", {"wait": 0}))
    finally:
        assert _ndl_admin(lib, "reinstate", "user", "vic").returncode == 0
        assert _ndl_admin(lib, "reinstate", "datasite", SITE).returncode == 0
    assert httpx.get(f"{lib.url}/api/me", headers=lib.as_("victim")).status_code == 200
    assert _signed(lib.url, "poll", {"wait": 0}).status_code == 200
    before = lib.register_head()
    unknown = _ndl_admin(lib, "suspend", "user", "nobody", "--reason", "x")
    assert unknown.returncode == 5  # NotFound's exit code
    assert "there is no user 'nobody'" in unknown.stdout + unknown.stderr
    blank = _ndl_admin(lib, "suspend", "datasite", SITE, "--reason", " ")
    assert blank.returncode == 2 and "say why" in blank.stdout + blank.stderr
    assert lib.register_head() == before
