"""Attacks on evidence about people and references on projects, against a real hub.

* Every role but admin recording or revoking evidence; an admin (or anyone) vouching for
  themselves.
* Malformed and impossible dates, expiry already past at creation, issue in the future.
* Huge fields, control characters, an unknown kind, and the migration-only ``legacy-flag``.
* Reading another person's evidence; recording, revoking or reading another project's
  references.

Every refusal changes nothing: the target's evidence and the register stay as they were.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from ndl.testing import HubProcess

TODAY = date.today()
LATER = (TODAY + timedelta(days=200)).isoformat()
GOOD = {"kind": "accredited-researcher", "issuer": "UK Statistics Authority",
        "reference": "DEA-1", "expires_on": LATER}
PROJECT = {"title": "Attacked project", "purpose_category": "research",
           "purpose": "Measure how emergency care use varies by region, for planning.",
           "lay_summary": "Counts of visits by area.", "legal_basis": "public-task",
           "end_date": "2099-12-31"}
ROLES = ("anonymous", "rita", "sam", "olly", "ada")  # researcher, steward, checker, admin


class Hub:
    def __init__(self, proc: HubProcess, tokens: dict[str, str]) -> None:
        self.proc, self.tokens = proc, tokens
        self.http = httpx.Client(base_url=proc.url, timeout=30)

    def call(self, method: str, path: str, who: str = "anonymous",
             **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who in self.tokens else {}
        return self.http.request(method, path, headers=headers, **kw)

    def evidence_of(self, username: str) -> list[dict[str, Any]]:
        r = self.call("GET", "/api/evidence", "ada", params={"user": username})
        assert r.status_code == 200, r.text
        rows: list[dict[str, Any]] = r.json()["evidence"]
        return rows

    def recorded(self) -> int:
        r = self.call("GET", "/api/register", params={"kind": "evidence.recorded"})
        return len(r.json()["entries"])


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    proc = HubProcess(tmp_path_factory.mktemp("evidence-attacks"))
    proc.create_org("org-a", "Organisation A", "nhs")
    tokens = {"rita": proc.create_user("rita", ["researcher"]),
              "rob": proc.create_user("rob", ["researcher"]),
              "sam": proc.create_user("sam", ["steward"], org="org-a"),
              "olly": proc.create_user("olly", ["output_checker"]),
              "ada": proc.create_user("ada", ["admin"]),
              "abe": proc.create_user("abe", ["admin"])}
    proc.create_user("target", ["researcher"])
    with proc:
        h = Hub(proc, tokens)
        yield h
        h.http.close()


@pytest.mark.parametrize("role", [r for r in ROLES if r != "ada"])
def test_only_admins_record_evidence(hub: Hub, role: str) -> None:
    before = hub.recorded()
    r = hub.call("POST", "/api/users/target/evidence", role, json=GOOD)
    assert r.status_code == (401 if role == "anonymous" else 403), r.text
    assert hub.evidence_of("target") == [] and hub.recorded() == before


@pytest.mark.parametrize("who", ["rita", "ada"])
def test_nobody_records_evidence_about_themselves(hub: Hub, who: str) -> None:
    r = hub.call("POST", f"/api/users/{who}/evidence", who, json=GOOD)
    assert r.status_code == 403
    if who == "ada":
        assert "another admin" in r.json()["error"]["message"]
    assert hub.evidence_of(who) == []


@pytest.mark.parametrize("expires", ["2027-02-30", "tomorrow", "", "31/12/2027", "99999-01-01",
                                     None, 20270101, ["2027-01-01"]])
def test_malformed_dates_are_refused(hub: Hub, expires: Any) -> None:
    before = hub.recorded()
    r = hub.call("POST", "/api/users/target/evidence", "ada",
                 json={**GOOD, "expires_on": expires})
    assert r.status_code == 422, r.text
    assert "expires_on" in r.text
    assert hub.evidence_of("target") == [] and hub.recorded() == before


@pytest.mark.parametrize("change,words", [
    ({"expires_on": (TODAY - timedelta(days=1)).isoformat()}, "not in the future"),
    ({"expires_on": TODAY.isoformat()}, "not in the future"),
    ({"expires_on": "1970-01-01"}, "not in the future"),
    ({"expires_on": (TODAY + timedelta(days=366 * 11)).isoformat()}, "10 years"),
    ({"issued_on": (TODAY + timedelta(days=1)).isoformat()}, "in the future"),
])
def test_evidence_already_lapsed_or_from_the_future_is_refused(hub: Hub, change: dict[str, str],
                                                               words: str) -> None:
    r = hub.call("POST", "/api/users/target/evidence", "ada", json={**GOOD, **change})
    assert r.status_code == 422 and words in r.json()["error"]["message"], r.text
    assert hub.evidence_of("target") == []


@pytest.mark.parametrize("change", [
    {"issuer": "x" * 201}, {"reference": "R" * 10_000}, {"reference": ""}, {"issuer": " "},
    {"reference": "DEA-1\nforged: line"}, {"issuer": "a\x00b"},
    {"kind": "legacy-flag"}, {"kind": "superuser"}, {"kind": None},
    {"extra": "x" * 3_000_000},
])
def test_huge_or_odd_fields_are_refused(hub: Hub, change: dict[str, Any]) -> None:
    r = hub.call("POST", "/api/users/target/evidence", "ada", json={**GOOD, **change})
    assert r.status_code in (413, 422), r.text
    assert hub.evidence_of("target") == []


def test_unknown_and_odd_usernames(hub: Hub) -> None:
    for name in ("nobody", "..%2Fada", "a" * 500):
        r = hub.call("POST", f"/api/users/{name}/evidence", "ada", json=GOOD)
        assert r.status_code in (404, 422), (name, r.text)


def test_revoking_evidence_needs_another_admin(hub: Hub) -> None:
    made = hub.call("POST", "/api/users/rob/evidence", "ada", json=GOOD)
    assert made.status_code == 201, made.text
    eid = made.json()["id"]
    for role in ("anonymous", "rita", "rob", "sam", "olly"):
        r = hub.call("POST", f"/api/evidence/{eid}/revoke", role, json={"reason": "no longer"})
        assert r.status_code == (401 if role == "anonymous" else 403), (role, r.text)
    assert [e["state"] for e in hub.evidence_of("rob")] == ["valid"]
    for bad in ("0", "-1", "99999999999999999999", "x"):
        assert hub.call("POST", f"/api/evidence/{bad}/revoke", "ada",
                        json={"reason": "no longer"}).status_code == 422
    assert hub.call("POST", "/api/evidence/999999/revoke", "ada",
                    json={"reason": "no longer"}).status_code == 404
    r = hub.call("POST", f"/api/evidence/{eid}/revoke", "abe", json={"reason": "x" * 3000})
    assert r.status_code == 422
    assert hub.call("POST", f"/api/evidence/{eid}/revoke", "abe",
                    json={"reason": "Certificate withdrawn."}).status_code == 200
    assert hub.call("POST", f"/api/evidence/{eid}/revoke", "abe",
                    json={"reason": "Certificate withdrawn."}).status_code == 409
    assert [e["state"] for e in hub.evidence_of("rob")] == ["revoked"]


def test_only_admins_set_the_federation_baseline(hub: Hub) -> None:
    body = {"tier": "safeguarded", "evidence": ["safe-researcher-training"]}
    for role in ("anonymous", "rita", "sam", "olly"):
        r = hub.call("PUT", "/api/evidence/baseline", role, json=body)
        assert r.status_code == (401 if role == "anonymous" else 403), (role, r.text)
    for bad in ({"tier": "open"}, {"tier": "safeguarded", "evidence": ["legacy-flag"]},
                {"tier": "controlled", "references": ["dpia"] * 4}, {"tier": "x" * 10_000}):
        assert hub.call("PUT", "/api/evidence/baseline", "ada", json=bad).status_code == 422
    got = hub.call("GET", "/api/evidence/baseline").json()["baseline"]
    assert all(b["evidence"] == [] and b["references"] == [] for b in got), got


def test_reading_someone_elses_evidence(hub: Hub) -> None:
    for role, status in (("anonymous", 401), ("rita", 403), ("olly", 403), ("sam", 200),
                         ("abe", 200)):
        r = hub.call("GET", "/api/evidence", role, params={"user": "rob"})
        assert r.status_code == status, (role, r.text)


def test_project_references_belong_to_the_lead(hub: Hub) -> None:
    made = hub.call("POST", "/api/projects", "rita", json={**PROJECT, "members": ["rob"]})
    assert made.status_code == 201, made.text
    pid = made.json()["id"]
    body = {"kind": "dpia", "issuer": "Trust DPO", "reference": "DPIA-1", "expires_on": LATER}
    # A member who is not the lead, a steward, a checker, a stranger: none may record one.
    for role in ("anonymous", "rob", "sam", "olly"):
        r = hub.call("POST", f"/api/projects/{pid}/references", role, json=body)
        assert r.status_code == (401 if role == "anonymous" else 403), (role, r.text)
    for change in ({"expires_on": (TODAY - timedelta(days=3)).isoformat()},
                   {"expires_on": "2027-13-01"}, {"kind": "consent-form"},
                   {"reference": "R" * 201}, {"issuer": "x\ny"}):
        r = hub.call("POST", f"/api/projects/{pid}/references", "rita",
                     json={**body, **change})
        assert r.status_code == 422, (change, r.text)
    assert hub.call("GET", f"/api/projects/{pid}/references", "rita").json() == {
        "references": []}
    ref = hub.call("POST", f"/api/projects/{pid}/references", "rita", json=body).json()
    # Reading: members, stewards and admins; not an output checker or a stranger.
    for role, status in (("anonymous", 401), ("olly", 403), ("rob", 200), ("sam", 200),
                         ("ada", 200)):
        r = hub.call("GET", f"/api/projects/{pid}/references", role)
        assert r.status_code == status, (role, r.text)
    assert hub.call("POST", f"/api/projects/{pid}/references/{ref['id']}/revoke",
                    "rob").status_code == 403
    assert hub.call("POST", f"/api/projects/p-00000000/references/{ref['id']}/revoke",
                    "rita").status_code == 404
    assert hub.call("GET", f"/api/projects/{pid}/references", "rita").json()[
        "references"][0]["state"] == "valid"
