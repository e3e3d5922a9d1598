"""The authorisation matrix: every hub endpoint, called as every role, allowed or denied.

Roles: anonymous (no token), researcher (member of project P, accredited, with grants on
organisation A's safeguarded and controlled datasets), other_researcher (member of project Q
only), steward_A and steward_B (data stewards of organisations A and B), output_checker and
admin. One real hub and two datasites serve the whole module (``authz_fixture``).

Outcomes:

* ALLOW: the call gets past the access check. Each row names what an allowed call returns
  (``ok``), and its body is one that succeeds, so the matrix also shows real success.
* DENY: 401 for anonymous and 403 for everyone signed in, with the API's error codes
  (``deny="role"``). Some refusals do not depend on who asks, and say so:
  ``"envelope"`` (401 envelope_rejected for every role, for a forged envelope and for a body
  that is no envelope at all: a bearer token is never a datasite's signature), ``"tier"``
  (403 for every role: only open data leaves as rows) and ``"csrf"`` (403 "form has expired"
  for every role: a form post without its CSRF token). ``"mcp_tool"``: MCP answers a refused
  tool call with HTTP 200 and a JSON-RPC result marked ``isError``.

``test_the_matrix_covers_every_route`` fails when the hub has a route this table does not
list, so a new endpoint cannot ship without a decision for every role.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from authz_fixture import (
    CTRL,
    CTRL_B,
    JOB_FILES,
    OPEN,
    ORG_A,
    ORG_B,
    PASSWORD,
    ROLES,
    SAFE,
    Library,
    running_library,
)
from starlette.routing import Mount, Route
from test_api_safety import api_routes

from ndl.core.envelope import seal
from ndl.core.keys import SigningKey
from ndl.core.sealed import EncryptionKey
from ndl.federation.service import HUB_ID
from ndl.hub.app import create_app
from ndl.hub.state import HubSettings

ANYONE = frozenset(ROLES)
SIGNED_IN = ANYONE - {"anonymous"}
NOBODY: frozenset[str] = frozenset()
ORG_OF = {"steward_A": ORG_A, "steward_B": ORG_B}
USERNAME = {"researcher": "researcher", "other_researcher": "other_researcher",
            "steward_A": "steward_a", "steward_B": "steward_b", "output_checker": "checker",
            "admin": "admin"}
EXTRA_SITE_KEY = SigningKey.generate()   # a new datasite that stewards of A may register
FORGER_KEY = SigningKey.generate()       # anyone's key but organisation A's datasite's
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}
Body = Callable[[Library, str, httpx.Client], dict[str, Any]]
Check = Callable[[Library, str, httpx.Response], None]


@dataclass(frozen=True)
class Row:
    """One endpoint call. ``args`` fill the path template; "$name" values (in args and JSON
    bodies) are the library's ids, per role where the library has ``name@role``."""

    method: str
    path: str
    allow: frozenset[str]
    args: dict[str, str] = field(default_factory=dict)
    json: Any = None
    params: dict[str, str] = field(default_factory=dict)
    body: Body | None = None          # request keywords built per call (fresh envelopes, forms)
    ok: tuple[int, ...] = (200,)
    deny: str = "role"
    variant: str = ""
    check: Check | None = None        # more about an allowed answer, e.g. what it must not show
    bugs: dict[str, str] = field(default_factory=dict)  # role -> "BUG: ..." (xfail, strict)
    seen: frozenset[str] = frozenset()  # "hidden_page": roles who may see it (denied: 403)

    def title(self) -> str:
        return f"{self.method} {self.path}" + (f" ({self.variant})" if self.variant else "")


def ds(dataset: str) -> dict[str, str]:
    site, name = dataset.split("/")
    return {"site": site, "name": name}


# --- request bodies built per call -------------------------------------------------------

def _register_extra_site(_: Library, __: str, ___: httpx.Client) -> dict[str, Any]:
    env = seal(EXTRA_SITE_KEY, sender="org-a-extra", recipient=HUB_ID, kind="register",
               body={"datasite_id": "org-a-extra", "org": ORG_A, "name": "A's second site",
                     "public_key": EXTRA_SITE_KEY.public_b64})
    return {"json": env}


def _join_unknown_org(_: Library, __: str, ___: httpx.Client) -> dict[str, Any]:
    """Joining names an organisation that does not exist: any signed-in user gets past the
    route's rule and is told so, and no datasite is made (joining itself, pending approval,
    is tested in tests/integration/test_membership.py)."""
    key = SigningKey.generate()
    env = seal(key, sender="joiner", recipient=HUB_ID, kind="register",
               body={"datasite_id": "joiner", "org": "no-such-org", "name": "joiner",
                     "public_key": key.public_b64})
    return {"json": env}


def _register_enclave(_: Library, role: str, __: httpx.Client) -> dict[str, Any]:
    """A new enclave of organisation A, one per role allowed to register it."""
    key, name = SigningKey.generate(), f"enclave-{role.lower().replace('_', '-')}"
    env = seal(key, sender=f"party:{name}", recipient=HUB_ID, kind="party.register",
               body={"party_id": name, "kind": "enclave", "org": ORG_A, "name": name,
                     "public_key": key.public_b64,
                     "encryption_key": EncryptionKey.generate().public_b64})
    return {"json": env}


def _forged(kind: str, body: dict[str, Any]) -> Body:
    """A well-formed envelope claiming to be organisation A's datasite, signed by another key."""
    def make(_: Library, __: str, ___: httpx.Client) -> dict[str, Any]:
        return {"json": seal(FORGER_KEY, sender=ORG_A, recipient=HUB_ID, kind=kind, body=body)}
    return make


def _forged_request(method: str, path: str) -> Body:
    """A request signed in the X-Ndl-Envelope header as organisation A's datasite, by
    another key (the header wins over any token the role also sends)."""
    def make(_: Library, __: str, ___: httpx.Client) -> dict[str, Any]:
        env = seal(FORGER_KEY, sender=ORG_A, recipient=HUB_ID, kind="request",
                   body={"method": method, "path": path, "args": {}})
        raw = base64.urlsafe_b64encode(json.dumps(env).encode()).decode().rstrip("=")
        return {"headers": {"X-Ndl-Envelope": raw}}
    return make


def _form(fields: dict[str, str]) -> Body:
    """A web form post carrying the CSRF token the sign-in page hands out."""
    def make(_: Library, __: str, http: httpx.Client) -> dict[str, Any]:
        page = http.get("/sign-in")
        pre = re.search(r"ndl_csrf=([^;]+)", page.headers.get("set-cookie", ""))
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert pre and token, "the sign-in page gave no CSRF cookie and token"
        return {"data": {**fields, "csrf_token": token.group(1)},
                "headers": {"Cookie": f"ndl_csrf={pre.group(1)}"}}
    return make


def _mcp(method: str, params: dict[str, Any] | None = None) -> Body:
    def make(_: Library, __: str, ___: httpx.Client) -> dict[str, Any]:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
        if params is not None:
            msg["params"] = params
        return {"json": msg, "headers": dict(MCP_HEADERS)}
    return make


# --- checks on allowed answers -----------------------------------------------------------

def _own_work_only(lib: Library, role: str, r: httpx.Response) -> None:
    ids = {w["id"] for w in r.json()["work"]}
    assert lib.ids["anon_work"] not in ids  # never listed, to anyone
    assert (lib.ids["work"] in ids) == (role == "researcher"), ids


def _event_stream(_: Library, __: str, r: httpx.Response) -> None:
    assert r.headers["content-type"].startswith("text/event-stream")
    assert "event: state" in r.text and '"state":"succeeded"' in r.text


def _still_succeeded(_: Library, __: str, r: httpx.Response) -> None:
    assert r.json()["state"] == "succeeded"  # a finished item is not cancelled


def _confirmation_only(_: Library, __: str, r: httpx.Response) -> None:
    assert "Start the download" in r.text



def _incident_detail_for_raiser_and_admin(_: Library, role: str, r: httpx.Response) -> None:
    """Those it touches see what it is, not what happened (the confidential description)."""
    assert ("description" in r.json()) == (role in ("other_researcher", "admin")), r.json()


def _is_me(_: Library, role: str, r: httpx.Response) -> None:
    assert r.json()["username"] == USERNAME[role]


def _own_tokens_without_secrets(lib: Library, role: str, r: httpx.Response) -> None:
    tokens = r.json()["tokens"]
    assert any(t["current"] for t in tokens) and str(lib.token(role)) not in r.text
    others = {v for k, v in lib.ids.items() if k.startswith("spare_token@")  # not theirs
              and k != f"spare_token@{role}"}
    assert not others & {t["id"] for t in tokens}


def _read_only_token(lib: Library, _: str, r: httpx.Response) -> None:
    made = r.json()
    assert made["scope"] == "read-only"
    me = httpx.get(f"{lib.hub.url}/api/me", headers={"Authorization": f"Bearer {made['token']}"})
    assert me.json()["scope"] == "read-only"


def _fresh_token(lib: Library, role: str, _: httpx.Client) -> dict[str, Any]:
    """Log out with a token minted for the purpose, so the role's own token survives the
    row: the row's caller uses it in place of the role's token until ``_logged_out``."""
    token = lib.token(role)
    if token is not None:
        r = httpx.post(f"{lib.hub.url}/api/auth/tokens", json={"name": "to log out"},
                       headers={"Authorization": f"Bearer {token}"})
        lib.ids[f"kept_token@{role}"] = token
        lib.tokens[role] = r.json()["token"]
    return {}


def _logged_out(lib: Library, role: str, _: httpx.Response) -> None:
    fresh, lib.tokens[role] = lib.tokens[role], lib.ids.pop(f"kept_token@{role}")
    for token, status in ((fresh, 401), (lib.tokens[role], 200)):
        me = httpx.get(f"{lib.hub.url}/api/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == status, me.text


def _sees_p_only_if_member(lib: Library, role: str, r: httpx.Response) -> None:
    mine = {p["id"] for p in r.json()["projects"]}
    assert (lib.ids["P"] in mine) == (role == "researcher"), mine


def _team_and_grants_only_for_members(_: Library, role: str, r: httpx.Response) -> None:
    body = r.json()
    assert "title" in body and "team_size" in body  # the public register page
    private = {"members", "grants"} & set(body)
    assert private == ({"members", "grants"} if role == "researcher" else set()), private


def _own_org_queue(_: Library, role: str, r: httpx.Response) -> None:
    body = r.json()
    assert body["org"] == ORG_OF[role]
    assert {i["org"] for i in body["pending"]} <= {ORG_OF[role]}


def _open_count(_: Library, __: str, r: httpx.Response) -> None:
    assert r.json()["rows"] == [[50]]


def _counts_by_region(_: Library, __: str, r: httpx.Response) -> None:
    assert [row[0] for row in r.json()["rows"]] == ["London", "North East"]


def _session_tokens_survive(lib: Library, role: str, r: httpx.Response) -> None:
    """Signing out ends the browser session only, never the caller's API token."""
    token = lib.token(role)
    if token is not None:
        me = httpx.get(f"{lib.hub.url}/api/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200


def _mcp_ok(_: Library, __: str, r: httpx.Response) -> None:
    result = r.json()["result"]
    assert result.get("tools") or result.get("isError") is False, result


def _mcp_mock_rows(_: Library, __: str, r: httpx.Response) -> None:
    result = r.json()["result"]
    assert result["isError"] is False and result["structuredContent"]["real_data"] is False


def _granted_projects_only(lib: Library, role: str, r: httpx.Response) -> None:
    """The private-question form offers only the caller's projects with an active grant."""
    offered = set(re.findall(r'name="project" type="radio" value="([^"]+)"', r.text))
    assert (lib.ids["P"] in offered) == (role == "researcher"), offered
    assert lib.ids["Q"] not in offered
    assert ('id="no-grant"' in r.text) == (not offered)


# --- the table -----------------------------------------------------------------------------

QUERY = "/api/datasets/{site}/{name}/query"
SQL = "/api/datasets/{site}/{name}/sql"
ROWS_PATH = "/api/datasets/{site}/{name}/rows"
ENVELOPE_ROUTES = {"publish": {"datasets": []}, "mock": {"dataset": "safe-data"},
                   "poll": {"wait": 0}, "reply": {"message_id": "m-1", "ok": True},
                   "heartbeat": {"message_ids": ["m-1"]}}
PARTY_ENVELOPE_ROUTES = {
    "party-keys": ("party.keys", {"encryption_key": EncryptionKey.generate().public_b64}),
    "party-send": ("party.send", {"to": "party:x", "purpose": "x", "sha256": "0" * 64}),
    "party-inbox": ("party.poll", {"wait": 0}),
    "party-ack": ("party.ack", {"message_ids": []}),
    # A key rotation (ndl.federation.key_service; attacks in tests/security/test_key_attacks.py)
    "rotate-key": ("key.rotate", {"public_key": SigningKey.generate().public_b64,
                                  "overlap": 60, "proof": "x"}),
    **{f"coordination-{a}": (f"coordination.{a}", {"coordination_id": "x"})
       for a in ("inspect", "approve", "contribute", "withdraw", "complete")},
}
IN_TWO_YEARS = f"{date.today().year + 2}-01-01"
PROJECT_BODY = {"title": "A new project", "purpose_category": "research",
                "purpose": "Measure how emergency care use varies by region, for planning.",
                "lay_summary": "Counts of visits by area.", "legal_basis": "public-task",
                "end_date": "2099-12-31"}

ROWS: list[Row] = [
    # Accounts and organisations
    Row("POST", "/api/auth/login", ANYONE,
        json={"username": "researcher", "password": PASSWORD}),
    Row("GET", "/api/me", SIGNED_IN, check=_is_me),
    Row("GET", "/api/auth/tokens", SIGNED_IN, check=_own_tokens_without_secrets),
    Row("POST", "/api/auth/tokens", SIGNED_IN, json={"scope": "read-only", "days": 1},
        ok=(201,), check=_read_only_token),
    Row("DELETE", "/api/auth/tokens/{token_id}", SIGNED_IN, args={"token_id": "$spare_token"}),
    Row("POST", "/api/auth/logout", SIGNED_IN, body=_fresh_token, check=_logged_out),
    Row("GET", "/api/orgs", ANYONE),
    Row("POST", "/api/orgs", frozenset({"admin"}), json={"id": "org-new", "name": "New"},
        ok=(201,)),
    Row("POST", "/api/users", frozenset({"admin"}),
        json={"username": "new-user", "roles": ["researcher"]}, ok=(201,)),
    Row("POST", "/api/users/{username}/accreditation", frozenset({"admin"}),
        args={"username": "accreditee"}, json={"accredited": True}),
    # Evidence on people and references on projects (IN_TWO_YEARS: a valid expiry)
    Row("GET", "/api/evidence", SIGNED_IN),
    Row("GET", "/api/evidence/baseline", ANYONE),
    Row("PUT", "/api/evidence/baseline", frozenset({"admin"}),
        json={"tier": "controlled", "evidence": [], "references": []}),
    Row("POST", "/api/users/{username}/evidence", frozenset({"admin"}), ok=(201,),
        args={"username": "accreditee"},
        json={"kind": "information-governance-training", "issuer": "NHS England",
              "reference": "IG-1", "expires_on": IN_TWO_YEARS}),
    Row("POST", "/api/evidence/{evidence_id}/revoke", frozenset({"admin"}),
        args={"evidence_id": "$evidence"}, json={"reason": "Certificate withdrawn."}),
    Row("GET", "/api/projects/{project_id}/references",
        frozenset({"researcher", "steward_A", "steward_B", "admin"}), args={"project_id": "$P"}),
    Row("POST", "/api/projects/{project_id}/references", frozenset({"researcher", "admin"}),
        ok=(201,), args={"project_id": "$P"},
        json={"kind": "ethics-approval", "issuer": "HRA REC", "reference": "REC-1",
              "expires_on": IN_TWO_YEARS}),
    Row("POST", "/api/projects/{project_id}/references/{reference_id}/revoke",
        frozenset({"researcher", "admin"}), args={"project_id": "$P",
                                                  "reference_id": "$reference"}),
    # The catalogue
    Row("GET", "/api/datasets", ANYONE),
    Row("GET", "/api/datasets/{site}/{name}", ANYONE, args=ds(CTRL)),
    Row("GET", "/api/datasets/{site}/{name}/versions", ANYONE, args=ds(CTRL)),
    Row("GET", "/api/datasets/{site}/{name}/mock", SIGNED_IN, args=ds(SAFE)),
    Row("GET", "/api/datasites", ANYONE),
    Row("PATCH", "/api/datasets/{site}/{name}/metadata", frozenset({"steward_A", "admin"}),
        args=ds(OPEN), json={"description": "Edited through the authorisation matrix."}),
    # Rows and counts
    Row("POST", SQL, ANYONE, args=ds(OPEN), json={"sql": "SELECT count(*) AS n FROM data"},
        variant="open", check=_open_count),
    Row("POST", SQL, NOBODY, args=ds(SAFE), json={"sql": "SELECT * FROM data"},
        variant="safeguarded", deny="tier"),
    Row("GET", ROWS_PATH, ANYONE, args=ds(OPEN), variant="open"),
    Row("GET", ROWS_PATH, NOBODY, args=ds(CTRL), variant="controlled", deny="tier"),
    Row("POST", QUERY, ANYONE, args=ds(OPEN), json={"by": ["region"]}, variant="open",
        check=_counts_by_region),
    Row("POST", "/api/datasets/{site}/{name}/private-query", frozenset({"researcher"}),
        args=ds(SAFE), json={"project": "$P", "sql": "SELECT COUNT(*) AS n FROM data",
                             "rho": 0.05}, variant="safeguarded, project P"),
    Row("POST", "/api/datasets/{site}/{name}/private-query", frozenset({"researcher"}),
        args=ds(SAFE), json={"project": "$P", "sql": "SELECT COUNT(*) AS n FROM data",
                             "rho": 0.05, "preview": True}, variant="preview, project P"),
    Row("GET", "/api/datasets/{site}/{name}/budget", frozenset({"researcher"}), args=ds(SAFE),
        params={"project": "$P"}),
    # Exact counts are open data only (core/tiers.py): refused on the other tiers for every
    # role, the granted researcher included (the breach these rows once allowed).
    Row("POST", QUERY, NOBODY, args=ds(SAFE), json={"by": ["region"], "project": "$P"},
        variant="safeguarded, project P", deny="tier"),
    Row("POST", QUERY, NOBODY, args=ds(CTRL), json={"by": ["region"], "project": "$P"},
        variant="controlled, project P", deny="tier"),
    Row("POST", QUERY, NOBODY, args=ds(SAFE), json={"by": ["region"], "project": "$Q"},
        variant="safeguarded, project Q without a grant", deny="tier"),
    # The register and the measure
    Row("GET", "/api/register", ANYONE),
    Row("GET", "/api/register/verify", ANYONE),
    Row("GET", "/api/metrics/time-to-access", ANYONE),
    # Datasites. Only the envelope's key authenticates a datasite; a token adds nothing.
    Row("GET", "/api/federation/hub-key", ANYONE),
    Row("POST", "/api/federation/register", frozenset({"steward_A", "admin"}),
        body=_register_extra_site, ok=(201,)),
    # Joining and leaving, status, withdrawal, deletion, closure (ndl.federation.membership,
    # ndl.catalogue.lifecycle, ndl.access.closure; every role against real targets in
    # tests/security/test_lifecycle_attacks.py). Rows here change nothing: approving an
    # approved site and deleting a live dataset are refused as conflicts after the rule.
    Row("POST", "/api/federation/join", SIGNED_IN, body=_join_unknown_org, ok=(404,),
        variant="an organisation that does not exist"),
    *[Row("POST", f"/api/federation/{route}", NOBODY, body=_forged(kind, {}),
          variant="forged envelope", deny="envelope")
      for route, kind in (("status", "status"), ("deletions", "dataset.deleted"))],
    Row("GET", "/api/datasites/{datasite_id}/status", ANYONE, args={"datasite_id": ORG_A}),
    # Suspension (every role against real targets in tests/security/test_suspension_attacks.py).
    # Rows here change nothing: an unknown name is not found, and reinstating someone who is
    # not suspended is a conflict, both after the rule.
    *[Row("POST", f"/api/admin/{kind}/{{{param}}}/suspend", frozenset({"admin"}), ok=(404,),
          args={param: "no-such-name"}, json={"reason": "A test."}, variant="an unknown name")
      for kind, param in (("users", "username"), ("datasites", "datasite_id"))],
    Row("POST", "/api/admin/users/{username}/reinstate", frozenset({"admin"}), ok=(409,),
        args={"username": "accreditee"}, variant="not suspended"),
    Row("POST", "/api/admin/datasites/{datasite_id}/reinstate", frozenset({"admin"}),
        ok=(409,), args={"datasite_id": ORG_B}, variant="not suspended"),
    Row("POST", "/api/datasites/{datasite_id}/approve", frozenset({"steward_A", "admin"}),
        args={"datasite_id": ORG_A}, ok=(409,), variant="already approved"),
    Row("POST", "/api/datasites/{datasite_id}/retire", SIGNED_IN,
        args={"datasite_id": "no-such-site"}, json={"reason": "Leaving the federation."},
        ok=(404,), variant="an unknown datasite"),
    Row("POST", "/api/datasets/{site}/{name}/withdraw", SIGNED_IN,
        args={"site": ORG_A, "name": "no-such-data"}, json={"reason": "Superseded."},
        ok=(404,), variant="an unknown dataset"),
    Row("POST", "/api/datasets/{site}/{name}/delete", frozenset({"steward_A", "admin"}),
        args=ds(OPEN), ok=(409,), variant="still in the catalogue"),
    Row("GET", "/api/datasets/{site}/{name}/deletions", ANYONE, args=ds(OPEN)),
    Row("POST", "/api/projects/{project_id}/close", SIGNED_IN,
        args={"project_id": "no-such-project"}, json={"reason": "Work finished."}, ok=(404,),
        variant="an unknown project"),
    *[Row("POST", f"/api/federation/{kind}", NOBODY, body=_forged(kind, body),
          variant="forged envelope", deny="envelope")
      for kind, body in ENVELOPE_ROUTES.items()],
    *[Row("POST", f"/api/federation/{kind}", NOBODY, json={"v": 1}, variant="no envelope",
          deny="envelope") for kind in ENVELOPE_ROUTES],
    # Parties and coordination (ndl.federation.parties, .coordination): the envelope's key
    # alone speaks for a datasite or party; a user's token creates and inspects coordinations.
    Row("POST", "/api/federation/party-register", frozenset({"steward_A", "admin"}),
        body=_register_enclave, ok=(201,)),
    *[Row("POST", f"/api/federation/{route}", NOBODY, body=_forged(kind, body),
          variant="forged envelope", deny="envelope")
      for route, (kind, body) in PARTY_ENVELOPE_ROUTES.items()],
    *[Row("POST", f"/api/federation/{route}", NOBODY, json={"v": 1}, variant="no envelope",
          deny="envelope") for route in PARTY_ENVELOPE_ROUTES],
    Row("GET", "/api/parties", ANYONE),
    # Signing keys: anyone reads them; only an admin revokes (this row changes nothing: an
    # unknown fingerprint is not found, after the rule).
    Row("GET", "/api/keys", ANYONE),
    Row("POST", "/api/admin/keys/{fingerprint}/revoke", frozenset({"admin"}), ok=(404,),
        args={"fingerprint": "0123456789abcdef"}, json={"reason": "A test."},
        variant="an unknown key"),
    Row("GET", "/api/parties/{principal}/keys", ANYONE, args={"principal": f"datasite:{ORG_A}"}),
    Row("POST", "/api/coordinations", SIGNED_IN, ok=(201,), json={
        "purpose": "Link two datasets", "parties": [f"datasite:{ORG_A}"],
        "approvals_needed": 1, "params_sha256": "0" * 64}),
    Row("GET", "/api/coordinations/{coordination_id}", frozenset({"researcher"}),
        args={"coordination_id": "$coordination"}),
    Row("POST", "/api/coordinations/{coordination_id}/cancel", frozenset({"researcher"}),
        args={"coordination_id": "$coordination_to_cancel"}, json={"reason": "Not needed."}),
    # Blobs (ndl.federation.blob_service): any signed-in user may upload; an upload or a blob
    # is "not found" to all but its owner and readers (so these rows get past the access
    # rule and find nothing); datasites sign in the X-Ndl-Envelope header instead
    # (the attacks are in tests/security/test_blob_attacks.py).
    Row("POST", "/api/blobs/uploads", SIGNED_IN,
        json={"sha256": "a" * 64, "size": 10, "kind": "result"}),
    Row("POST", "/api/blobs/uploads", NOBODY, body=_forged_request("POST", "/api/blobs/uploads"),
        variant="forged signed request", deny="envelope"),
    *[Row(method, "/api/blobs/uploads/{upload_id}", SIGNED_IN, args={"upload_id": "0" * 32},
          ok=(404,), variant="nobody's upload") for method in ("GET", "DELETE")],
    Row("PUT", "/api/blobs/uploads/{upload_id}", SIGNED_IN, args={"upload_id": "0" * 32},
        ok=(404,), variant="nobody's upload", body=lambda *_: {"content": b"x", "headers": {
            "X-Ndl-Offset": "0", "X-Ndl-Chunk-Sha256": hashlib.sha256(b"x").hexdigest()}}),
    *[Row(method, path, SIGNED_IN, args={"sha256": "b" * 64}, ok=(404,),
          variant="a blob the caller may not read")
      for method, path in (("GET", "/api/blobs/{sha256}"), ("GET", "/api/blobs/{sha256}/info"),
                           ("DELETE", "/api/blobs/{sha256}"))],
    Row("POST", "/api/blobs/{sha256}/readers", SIGNED_IN, args={"sha256": "b" * 64},
        json={"reader": "user:admin"}, ok=(404,), variant="a blob the caller may not read"),
    # Projects, requests, decisions, grants
    Row("POST", "/api/projects", frozenset({"researcher", "other_researcher"}),
        json=PROJECT_BODY, ok=(201,)),
    Row("GET", "/api/projects", SIGNED_IN, check=_sees_p_only_if_member),
    Row("GET", "/api/projects/{project_id}", ANYONE, args={"project_id": "$P"},
        check=_team_and_grants_only_for_members),
    Row("POST", "/api/projects/{project_id}/requests", frozenset({"researcher"}),
        args={"project_id": "$P"}, json={"datasets": [CTRL_B]}, ok=(201,), variant="P"),
    Row("POST", "/api/projects/{project_id}/requests", frozenset({"other_researcher"}),
        args={"project_id": "$Q"}, json={"datasets": [CTRL_B]}, ok=(201,), variant="Q"),
    Row("GET", "/api/requests/{request_id}", frozenset({"researcher", "steward_A", "admin"}),
        args={"request_id": "$request"}),
    Row("GET", "/api/stewards/queue", frozenset({"steward_A", "steward_B"}),
        check=_own_org_queue),
    Row("POST", "/api/requests/items/{item_id}/decision", frozenset({"steward_A"}),
        args={"item_id": "$item"}, json={"decision": "approve", "reason": "Sound purpose."}),
    Row("POST", "/api/grants/{grant_id}/revoke", frozenset({"steward_A", "admin"}),
        args={"grant_id": "$grant"}, json={"reason": "The project broke its terms."}),
    # The wishlist and demand
    Row("GET", "/api/wishes", ANYONE),
    Row("POST", "/api/wishes", SIGNED_IN, ok=(201,), json={
        "title": "Visits by week", "description": "Weekly counts.", "orgs": [ORG_A]}),
    Row("GET", "/api/wishes/{wish_id}", ANYONE, args={"wish_id": "$wish"}),
    Row("POST", "/api/wishes/{wish_id}/vote", SIGNED_IN, args={"wish_id": "$wish"},
        json={"up": True}),
    Row("POST", "/api/wishes/{wish_id}/comments", SIGNED_IN, args={"wish_id": "$wish"},
        json={"text": "Yes please."}, ok=(201,)),
    Row("POST", "/api/wishes/{wish_id}/state", frozenset({"steward_A", "admin"}),
        args={"wish_id": "$wish"}, json={"state": "planned"}),
    Row("GET", "/api/orgs/{org_id}/dashboard", ANYONE, args={"org_id": ORG_A}),
    # Incidents and notices: anyone signed in raises one; it is seen by whoever raised it, those
    # it touches (A's stewards, for A's dataset) and admins; only admins act on or close it.
    # The security log is exported by admins; this hub shares none of it with stewards.
    Row("POST", "/api/incidents", SIGNED_IN, ok=(201,), json={
        "title": "A laptop was lost", "description": "It held a token.", "severity": "low"}),
    Row("GET", "/api/incidents", SIGNED_IN),
    Row("GET", "/api/incidents/{incident_id}",
        frozenset({"other_researcher", "steward_A", "admin"}), args={"incident_id": "$incident"},
        deny="hidden_signed_in", check=_incident_detail_for_raiser_and_admin),
    Row("POST", "/api/incidents/{incident_id}/actions", frozenset({"admin"}), ok=(201,),
        args={"incident_id": "$incident"},
        json={"action": "notification", "subject": f"org:{ORG_A}"}),
    Row("POST", "/api/incidents/{incident_id}/state", frozenset({"admin"}),
        args={"incident_id": "$incident"}, json={"state": "contained"}),
    Row("GET", "/api/notices", SIGNED_IN),
    Row("GET", "/api/admin/security-log", frozenset({"admin"})),
    Row("GET", "/api/security-log", NOBODY),
    # The catalogue for machines
    Row("GET", "/api/datasets/{site}/{name}/dcat", ANYONE, args=ds(CTRL)),
    Row("GET", "/api/catalogue/dcat", ANYONE),
    Row("GET", "/api/datasets/{site}/{name}/dcat.{ext}", ANYONE, args={**ds(CTRL), "ext": "ttl"}),
    Row("GET", "/api/catalogue/dcat.{ext}", ANYONE, args={"ext": "rdf"}),
    Row("GET", "/id/datasets/{site}/{name}", ANYONE, args=ds(CTRL), ok=(303,),
        variant="a browser is sent to the page"),
    Row("GET", "/id/datasets/{site}/{name}", ANYONE, args=ds(CTRL), variant="RDF",
        body=lambda *_: {"headers": {"Accept": "text/turtle"}}),
    Row("GET", "/api/datasets/{site}/{name}/croissant", ANYONE, args=ds(CTRL)),
    Row("GET", "/llms.txt", ANYONE),
    Row("GET", "/catalogue.md", ANYONE),
    Row("GET", "/datasets/{site}/{name}.md", ANYONE, args=ds(CTRL)),
    *[Row(method, path, ANYONE, args={"action": "package_show"},
          **({"params": {"id": CTRL}} if method == "GET" else {"json": {"id": CTRL}}))
      for path in ("/api/3/action/{action}", "/api/action/{action}")
      for method in ("GET", "POST")],
    Row("GET", "/api/openapi.json", ANYONE),
    Row("GET", "/api/docs", ANYONE),
    # MCP: the caller's own token, forwarded; the tools have exactly the user's rights.
    Row("POST", "/mcp", ANYONE, body=_mcp("tools/list"), check=_mcp_ok, variant="tools/list"),
    Row("POST", "/mcp", ANYONE, variant="query_open_data, open", check=_mcp_ok,
        body=_mcp("tools/call", {"name": "query_open_data", "arguments": {
            "dataset_id": OPEN, "sql": "SELECT count(*) AS n FROM data"}})),
    Row("POST", "/mcp", SIGNED_IN, variant="get_sample, safeguarded (mock rows)",
        deny="mcp_tool", check=_mcp_mock_rows,
        body=_mcp("tools/call", {"name": "get_sample", "arguments": {
            "dataset_id": SAFE, "rows": 3}})),
    # Web pages: public to read; sign-in and sign-out need the form's CSRF token.
    Row("GET", "/", ANYONE),
    Row("GET", "/search", ANYONE),
    Row("GET", "/datasets/{site}/{name}", ANYONE, args=ds(CTRL)),
    Row("GET", "/sign-in", ANYONE),
    # Sign-in through an identity provider: none is configured on this hub (the flow itself is
    # tested against a real provider in tests/integration/test_oidc_sign_in.py).
    Row("GET", "/sign-in/oidc/{provider}", ANYONE, args={"provider": "uni"}, ok=(404,),
        variant="no such provider"),
    Row("GET", "/sign-in/oidc/{provider}/callback", ANYONE, args={"provider": "uni"},
        ok=(400,), variant="no sign-in was started"),
    Row("GET", "/account/cli-token", SIGNED_IN, deny="page"),
    Row("POST", "/account/cli-token", NOBODY, deny="form", variant="bearer token, no session",
        body=lambda *_: {"data": {}}),
    Row("POST", "/sign-in", ANYONE, ok=(303,), variant="with CSRF token",
        body=_form({"username": "researcher", "password": PASSWORD, "next": "/"})),
    Row("POST", "/sign-in", NOBODY, deny="csrf", variant="without CSRF token",
        body=lambda *_: {"data": {"username": "researcher", "password": PASSWORD}}),
    Row("POST", "/sign-out", ANYONE, ok=(303,), variant="with CSRF token", body=_form({}),
        check=_session_tokens_survive),
    Row("POST", "/sign-out", NOBODY, deny="csrf", variant="without CSRF token",
        body=lambda *_: {"data": {}}),
    # Access, register and wishlist pages: "page" denials are a 303 to sign-in for anonymous
    # callers and a 403 page for signed-in users without the role.
    Row("GET", "/projects", SIGNED_IN, deny="page"),
    Row("GET", "/account", SIGNED_IN, deny="page"),
    Row("GET", "/projects/new", frozenset({"researcher", "other_researcher"}), deny="page"),
    Row("GET", "/projects/{project_id}", ANYONE, args={"project_id": "$P"}),
    Row("GET", "/stewards", frozenset({"steward_A", "steward_B"}), deny="page"),
    Row("GET", "/register", ANYONE),
    Row("GET", "/access-times", ANYONE),
    Row("GET", "/wishlist", ANYONE),
    Row("GET", "/wishlist/new", SIGNED_IN, deny="page"),
    Row("GET", "/notices", SIGNED_IN, deny="page"),
    Row("GET", "/incidents/{incident_id}", frozenset({"other_researcher", "steward_A", "admin"}),
        args={"incident_id": "$incident"}, deny="hidden_page"),
    Row("GET", "/wishlist/{wish_id}", ANYONE, args={"wish_id": "$wish"}),
    Row("GET", "/orgs/{org_id}", ANYONE, args={"org_id": "org-a"}),
    Row("GET", "/datasites/{datasite_id}", ANYONE, args={"datasite_id": ORG_A}),
    Row("GET", "/datasets/{site}/{name}/private-query",
        frozenset({"researcher", "other_researcher"}), args=ds(SAFE), deny="page",
        check=_granted_projects_only),
    # Forms act only for the browser session's own user: a bearer token, with no session and
    # no CSRF token, is sent to sign in and changes nothing.
    *[Row("POST", path, NOBODY, deny="form", variant="bearer token, no session", args=args,
          body=lambda *_: {"data": {}})
      for path, args in (
          ("/projects/new", {}),
          ("/projects/{project_id}/requests", {"project_id": "$P"}),
          ("/datasets/{site}/{name}/private-query", ds(SAFE)),
          ("/stewards/items/{item_id}/decision", {"item_id": "$item"}),
          ("/stewards/grants/{grant_id}/revoke", {"grant_id": "$grant_project"}),
          ("/wishlist/new", {}),
          ("/wishlist/{wish_id}/vote", {"wish_id": "$wish"}),
          ("/wishlist/{wish_id}/comments", {"wish_id": "$wish"}),
          ("/wishlist/{wish_id}/state", {"wish_id": "$wish"}),
          ("/datasites/{datasite_id}/approve", {"datasite_id": ORG_A}))],
]
# Long work (work items): anyone may export open data; an item is its requester's (and an
# admin's); one started signed out is reached by its id alone. The items are final before
# the matrix runs (authz_fixture), so event streams end.
ROWS += [
    Row("POST", "/api/work", ANYONE, ok=(202,), variant="export of open data",
        json={"kind": "export", "dataset": OPEN, "params": {"format": "csv", "limit": 2}}),
    Row("POST", "/api/work", NOBODY, deny="tier", variant="export of safeguarded data",
        json={"kind": "export", "dataset": SAFE}),
    Row("GET", "/api/work", SIGNED_IN, check=_own_work_only),
    *[Row(method, path, frozenset({"researcher", "admin"}), deny="hidden",
          args={"work_id": "$work"}, check=check)
      for method, path, check in (
          ("GET", "/api/work/{work_id}", None),
          ("GET", "/api/work/{work_id}/events", _event_stream),
          ("GET", "/api/work/{work_id}/result", None),
          ("POST", "/api/work/{work_id}/cancel", _still_succeeded),
          ("GET", "/work/{work_id}", None))],
    *[Row(method, path, ANYONE, variant="an item started signed out, by its id",
          args={"work_id": "$anon_work"})
      for method, path in (("GET", "/api/work/{work_id}"), ("GET", "/work/{work_id}"),
                           ("GET", "/api/work/{work_id}/result"))],
    Row("POST", "/api/federation/work/finish", NOBODY, deny="envelope",
        body=_forged("work.finish", {"work_id": "00000000-0000-4000-8000-000000000000",
                                     "ok": False})),
    # The web forms: with no token a signed-out browser is asked to confirm (nothing queued);
    # with the pre-session token the export is nobody's; a cancel needs a token.
    Row("POST", "/datasets/{site}/{name}/export", ANYONE, args=ds(OPEN),
        variant="no CSRF token: a confirmation page", body=lambda *_: {"data": {}},
        check=_confirmation_only),
    Row("POST", "/datasets/{site}/{name}/export", ANYONE, args=ds(OPEN), ok=(303,),
        variant="pre-session CSRF token", body=_form({"format": "csv"})),
    Row("POST", "/work/{work_id}/cancel", NOBODY, deny="csrf", args={"work_id": "$work"},
        variant="no CSRF token", body=lambda *_: {"data": {}}),
    Row("POST", "/work/{work_id}/cancel", ANYONE, ok=(303,), args={"work_id": "$anon_work"},
        variant="pre-session CSRF token, an item started signed out", body=_form({})),
]
# Controlled jobs: a job is seen by its project, the data's stewards and admins (others: not
# found); code is reviewed by the data's stewards, outputs by output checkers; the outputs
# reach the project once released.
JOB_READERS = frozenset({"researcher", "steward_A", "admin"})
ROWS += [
    Row("GET", "/api/jobs/environments", ANYONE),
    Row("POST", "/api/jobs", frozenset({"researcher"}), ok=(202,),
        json={"project": "$P", "files": JOB_FILES}),
    Row("GET", "/api/jobs", SIGNED_IN),
    Row("GET", "/api/jobs/review-queue", frozenset({"steward_A", "steward_B"})),
    Row("GET", "/api/jobs/output-queue", frozenset({"output_checker"})),
    Row("GET", "/api/jobs/code/{sha256}", ANYONE, args={"sha256": "$job_code"},
        variant="code approved to run: public"),
    Row("GET", "/api/jobs/code/{sha256}", JOB_READERS, deny="hidden",
        args={"sha256": "$job_code_unpublished"}, variant="code not yet approved"),
    *[Row("GET", path, JOB_READERS, deny="hidden", args={"job_id": "$job"})
      for path in ("/api/jobs/{job_id}", "/api/jobs/{job_id}/diff", "/api/jobs/{job_id}/logs")],
    Row("POST", "/api/jobs/{job_id}/review", frozenset({"steward_A"}),
        args={"job_id": "$job_to_review"}, json={"decision": "reject", "reasons": "matrix"}),
    Row("POST", "/api/jobs/{job_id}/cancel", frozenset({"researcher", "admin"}),
        deny="hidden_signed_in", args={"job_id": "$job_to_cancel"}),
    Row("POST", "/api/jobs/{job_id}/output-check", frozenset({"output_checker"}),
        args={"job_id": "$checked_job"}, json={"decision": "return", "reasons": "context?"}),
    *[Row("GET", path, frozenset({"researcher", "output_checker", "admin"}), deny="hidden",
          args={"job_id": "$released_job"})
      for path in ("/api/jobs/{job_id}/outputs", "/api/jobs/{job_id}/outputs/files")],
    # The pages over the same services.
    Row("GET", "/jobs", SIGNED_IN, deny="page"),
    Row("GET", "/code-to-review", frozenset({"steward_A", "steward_B"}), deny="page"),
    Row("GET", "/outputs-to-check", frozenset({"output_checker"}), deny="page"),
    Row("GET", "/jobs/{job_id}", JOB_READERS, deny="hidden_page", args={"job_id": "$job"}),
    Row("GET", "/jobs/{job_id}/review", frozenset({"steward_A"}), deny="hidden_page",
        args={"job_id": "$job"}, seen=frozenset({"researcher", "admin"})),
    Row("GET", "/jobs/{job_id}/check", frozenset({"output_checker"}), deny="hidden_page",
        args={"job_id": "$checked_job"}),
    Row("GET", "/jobs/code/{sha256}", ANYONE, args={"sha256": "$job_code"},
        variant="code approved to run: public"),
    Row("GET", "/jobs/code/{sha256}", JOB_READERS, deny="hidden",
        args={"sha256": "$job_code_unpublished"}, variant="code not yet approved"),
    Row("GET", "/jobs/{job_id}/figures/{name}", frozenset({"researcher", "output_checker",
                                                            "admin"}),
        deny="hidden", args={"job_id": "$released_job", "name": "chart.png"}),
    *[Row("POST", path, NOBODY, deny="form", variant="bearer token, no session", args=args,
          body=lambda *_: {"data": {}})
      for path, args in (("/jobs/{job_id}/cancel", {"job_id": "$job_to_cancel"}),
                         ("/jobs/{job_id}/review", {"job_id": "$job_to_review"}),
                         ("/jobs/{job_id}/check", {"job_id": "$checked_job"}))],
]
# Routes that are not endpoints of the library: the liveness probe and the built assets.
# Static files anyone may fetch (page styles; the API docs' Swagger UI script and style).
EXCLUDED = {("GET", "/healthz"), ("MOUNT", "/static"), ("MOUNT", "/api/docs/assets")}


# --- running the matrix --------------------------------------------------------------------

@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    with running_library(tmp_path_factory.mktemp("authz")) as library:
        yield library


@pytest.fixture(scope="module")
def http(lib: Library) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=lib.hub.url, timeout=30) as client:
        yield client


def _resolve(value: Any, lib: Library, role: str) -> Any:
    if isinstance(value, str) and value.startswith("$"):
        return lib.id(value[1:], role)
    if isinstance(value, dict):
        return {k: _resolve(v, lib, role) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, lib, role) for v in value]
    return value


def call(lib: Library, http: httpx.Client, row: Row, role: str) -> httpx.Response:
    path = row.path.format(**{k: _resolve(v, lib, role) for k, v in row.args.items()})
    kwargs = row.body(lib, role, http) if row.body else (
        {"json": _resolve(row.json, lib, role)} if row.json is not None else {})
    headers = kwargs.pop("headers", {})
    token = lib.token(role)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    http.cookies.clear()  # no row may ride on a cookie another row was given
    params = _resolve(row.params, lib, role)
    return http.request(row.method, path, headers=headers, params=params, **kwargs)


def _denied(row: Row, role: str, r: httpx.Response) -> None:
    where = f"{row.title()} as {role}: {r.status_code} {r.text[:300]}"
    if row.deny == "mcp_tool":  # MCP reports a refused tool call inside a 200 JSON-RPC answer
        result = r.json()["result"]
        assert r.status_code == 200 and result["isError"] is True, where
        assert "signed-in" in result["content"][0]["text"], where
        return
    if row.deny == "hidden":  # someone else's item: not found, exactly as a missing one
        assert r.status_code == 404, where
        if r.headers["content-type"].startswith("application/json"):
            assert r.json()["error"]["code"] == "not_found", where
        return
    if row.deny == "csrf":
        assert r.status_code == 403 and "This form has expired" in r.text, where
        return
    if row.deny == "hidden_signed_in":  # a write: sign in first, then not found
        want = 401 if role == "anonymous" else 404
        assert r.status_code == want, where
        return
    if row.deny == "hidden_page":  # a page about something private: sign in, then not found
        if role == "anonymous":     # (or refused, for one who may see the thing but not act)
            assert r.status_code == 303 and r.headers["location"].startswith("/sign-in"), where
        else:
            assert r.status_code == (403 if role in row.seen else 404), where
        return
    if row.deny == "form":
        assert r.status_code == 303 and r.headers["location"].startswith("/sign-in"), where
        return
    if row.deny == "page":
        if role == "anonymous":
            assert r.status_code == 303 and r.headers["location"].startswith("/sign-in"), where
        else:
            assert r.status_code == 403 and "text/html" in r.headers["content-type"], where
        return
    if row.deny == "envelope":
        want, code = 401, "envelope_rejected"
    elif row.deny == "role" and role == "anonymous":
        want, code = 401, "authentication_required"
    else:  # "role" for a signed-in user, or "tier"
        want, code = 403, "permission_denied"
    assert r.status_code == want and r.json()["error"]["code"] == code, where


def _cases() -> list[Any]:
    cases = []
    for row in ROWS:
        for role in ROLES:
            verdict = "ALLOW" if role in row.allow else "DENY"
            marks = [pytest.mark.xfail(strict=True, reason=row.bugs[role])] \
                if role in row.bugs else []
            cases.append(pytest.param(row, role, marks=marks,
                                      id=f"{row.title()} - {role} - {verdict}"))
    return cases


@pytest.mark.parametrize("row,role", _cases())
def test_matrix(lib: Library, http: httpx.Client, row: Row, role: str) -> None:
    r = call(lib, http, row, role)
    if role not in row.allow:
        _denied(row, role, r)
        return
    assert r.status_code in row.ok, f"{row.title()} as {role}: {r.status_code} {r.text[:300]}"
    if row.check is not None:
        row.check(lib, role, r)


# --- the table covers every route ------------------------------------------------------------

def hub_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves. A route that answers any method (the
    MCP endpoint) is listed as ("*", path); mounted sub-apps as ("MOUNT", path)."""
    found = {(m, path) for path, route in api_routes(app.routes) for m in route.methods}
    for route in app.routes:
        if isinstance(route, Route) and not hasattr(route, "dependant"):  # not an APIRoute
            methods = (route.methods or {"*"}) - {"HEAD"}
            found |= {(m, route.path) for m in methods}
        elif isinstance(route, Mount):
            found.add(("MOUNT", route.path))
    return found


def test_the_matrix_covers_every_route(tmp_path: Path) -> None:
    app = create_app(HubSettings(db_url=str(tmp_path / "hub.db"), data_dir=tmp_path))
    try:
        served = hub_routes(app)
    finally:
        app.state.hub.db.dispose()
    table = {(row.method, row.path) for row in ROWS}
    uncovered = sorted(
        (m, p) for m, p in served - EXCLUDED
        if (m, p) not in table and not (m == "*" and any(row.path == p for row in ROWS)))
    assert not uncovered, ("routes with no row in the authorisation matrix (add one, with "
                           f"ALLOW or DENY for every role): {uncovered}")
    stale = sorted(k for k in table if k not in served and ("*", k[1]) not in served)
    assert not stale, f"matrix rows for routes the hub no longer has: {stale}"


def test_every_role_is_exercised() -> None:
    """Each role is allowed somewhere and refused somewhere, so no column is vacuous."""
    for role in ROLES:
        assert any(role in row.allow for row in ROWS), role
        assert any(role not in row.allow for row in ROWS), role


def test_refused_calls_changed_nothing(lib: Library, http: httpx.Client) -> None:
    """Runs after the matrix: only the allowed callers left a mark."""
    auth = {"Authorization": f"Bearer {lib.token('researcher')}"}
    req = http.get(f"/api/requests/{lib.ids['request']}", headers=auth).json()
    (item,) = req["items"]
    assert item["state"] == "granted"
    assert [(a["steward"], a["decision"]) for a in item["approvals"]] == [
        ("steward_a", "approve")]
    kept = http.get(f"/api/projects/{lib.ids['grant_project']}", headers=auth).json()
    assert [g["state"] for g in kept["grants"]] == ["active"]
    revoked = http.get("/api/register", params={"kind": "grant.revoked"}).json()["entries"]
    assert sorted(e["subject"] for e in revoked) == sorted(
        f"grant:{lib.ids[f'grant@{role}']}" for role in ("steward_A", "admin"))
    sites = {d["id"] for d in http.get("/api/datasites").json()["datasites"]}
    assert sites == {ORG_A, ORG_B, "org-a-extra"}
    members = http.get(f"/api/projects/{lib.ids['P']}", headers=auth).json()["members"]
    assert [m["username"] for m in members] == ["researcher"]
