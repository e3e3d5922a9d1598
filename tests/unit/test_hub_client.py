"""The one hub client: every operation, sync and async, against a mock hub.

One table lists every operation with the request it must send and an answer to give back;
both drivers run every row and must send the same request and return the same result. A
test fails when an operation is added to ``HubApi`` without a row here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest

from ndl.core.errors import (
    InvalidInput,
    NotFound,
    PermissionDenied,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from ndl.hubclient import AsyncClient, Client, HubApi, Operation, QueryAnswer
from ndl.jobs.bundle import from_files

DS = "nhs-trust/ae-attendances"
TOKEN = "ndl_t"  # a made-up token for the mock hub
PID = "p-1a2b3c4d"
GRANT = "0b5e6c1e-3f1a-4c8e-9d2b-7a4f5e6d7c8b"
COUNT = {"dataset": DS, "columns": ["sex", "n"], "rows": [["F", 12], ["M", None]],
         "suppressed": 1, "threshold": 10, "tier": "safeguarded", "message_id": "m-1"}
SQL = {"dataset": DS, "columns": ["n"], "rows": [[3]], "message_id": "m-2"}
WID = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"
VIEW = {"id": WID, "kind": "export", "dataset": "la/wards", "state": "queued", "progress": 0.0,
        "message": "waiting for the datasite", "created_at": "2026-12-05T16:00:00+00:00",
        "started_at": None, "finished_at": None, "deadline": "2026-12-05T22:00:00+00:00",
        "attempts": 0, "error": None, "result": None, "final": False}
ENV = {"v": 1, "sender": "nhs-trust", "kind": "poll", "body": {"wait": 1}, "sig": "x"}
JID = "job-1a2b3c4d5e6f7a8b"
SHA = "ab" * 32
JOB = {"id": JID, "name": "fsm-by-sen", "project": PID, "requester": "ada",
       "language": "python", "environment": "python-data", "datasets": ["dfe/pupils"],
       "org": "dfe", "code_sha256": SHA, "state": "awaiting_review",
       "state_words": "waiting for a data steward to review the code",
       "created_at": "2026-12-05T16:00:00+00:00", "updated_at": "2026-12-05T16:00:00+00:00"}
BUNDLE_FILES = {"ndl-job.toml": 'name = "fsm-by-sen"\nlanguage = "python"\n'
                'entry = "a.py"\nenvironment = "python-data"\ndatasets = ["dfe/pupils"]\n'
                'context = "c"\n[[outputs]]\nname = "t"\nkind = "table"\n'
                'description = "d"\n', "a.py": "print(1)\n"}


@dataclass
class Case:
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    method: str
    path: str                       # as sent, percent-encoded
    params: dict[str, str] = field(default_factory=dict)
    body: Any = None
    answer: Any = field(default_factory=lambda: {"ok": True})
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name


OPERATIONS = [
    Case("search", ("A&E",), {"tier": "open", "join_key": "nhs_number"}, "GET", "/api/datasets",
         {"q": "A&E", "tier": "open", "join_key": "nhs_number", "limit": "20", "offset": "0"},
         answer={"total": 0, "results": [], "facets": {}}),
    Case("dataset", (DS,), {}, "GET", "/api/datasets/nhs-trust/ae-attendances"),
    Case("versions", (DS,), {}, "GET", "/api/datasets/nhs-trust/ae-attendances/versions"),
    Case("mock", (DS,), {"limit": 5}, "GET", "/api/datasets/nhs-trust/ae-attendances/mock",
         {"limit": "5", "format": "json"}),
    Case("datasites", (), {}, "GET", "/api/datasites",
         answer={"datasites": [{"id": "dfe", "online": True}]}),
    Case("query", (DS,), {"count_by": "sex", "project": PID}, "POST",
         "/api/datasets/nhs-trust/ae-attendances/query",
         body={"op": "count", "by": ["sex"], "project": PID}, answer=COUNT),
    Case("sql", (DS, "SELECT COUNT(*) AS n FROM data"), {"limit": 10}, "POST",
         "/api/datasets/nhs-trust/ae-attendances/sql",
         body={"sql": "SELECT COUNT(*) AS n FROM data", "limit": 10}, answer=SQL),
    Case("private_query", (DS,), {"project": PID, "sql": "SELECT COUNT(*) FROM data",
                                  "rho": 0.1, "preview": True}, "POST",
         "/api/datasets/nhs-trust/ae-attendances/private-query",
         body={"project": PID, "preview": True, "sql": "SELECT COUNT(*) FROM data",
               "rho": 0.1}),
    Case("budget", (DS, PID), {}, "GET", "/api/datasets/nhs-trust/ae-attendances/budget",
         {"project": PID}),
    Case("create_project", (), {"title": "T", "purpose": "P", "lay_summary": "L",
                                "legal_basis": "public-task", "end_date": "2027-01-01"},
         "POST", "/api/projects",
         body={"title": "T", "purpose": "P", "purpose_category": "research",
               "lay_summary": "L", "legal_basis": "public-task", "end_date": "2027-01-01",
               "members": []}),
    Case("project", (PID,), {}, "GET", f"/api/projects/{PID}"),
    Case("my_projects", (), {}, "GET", "/api/projects"),
    Case("request_access", (PID, [DS]), {}, "POST", f"/api/projects/{PID}/requests",
         body={"datasets": [DS]}),
    Case("steward_queue", (), {}, "GET", "/api/stewards/queue",
         answer={"pending": [{"id": 3, "dataset": DS}]}),
    Case("decide", (3, "approve"), {"reason": "fine"}, "POST", "/api/requests/items/3/decision",
         body={"decision": "approve", "reason": "fine"}),
    Case("revoke_grant", (GRANT, "breach"), {}, "POST", f"/api/grants/{GRANT}/revoke",
         body={"reason": "breach"}),
    Case("time_to_access", (), {}, "GET", "/api/metrics/time-to-access"),
    # joining, leaving and the data lifecycle
    Case("approve_datasite", ("dfe",), {}, "POST", "/api/datasites/dfe/approve", body={}),
    Case("retire_datasite", ("dfe", "leaving"), {}, "POST", "/api/datasites/dfe/retire",
         body={"reason": "leaving"}),
    Case("datasite_status", ("dfe",), {}, "GET", "/api/datasites/dfe/status"),
    Case("withdraw_dataset", (DS, "superseded"), {}, "POST",
         "/api/datasets/nhs-trust/ae-attendances/withdraw", body={"reason": "superseded"}),
    Case("delete_dataset", (DS,), {}, "POST", "/api/datasets/nhs-trust/ae-attendances/delete",
         body={}),
    Case("dataset_deletions", (DS,), {}, "GET",
         "/api/datasets/nhs-trust/ae-attendances/deletions"),
    Case("close_project", (PID, "finished"), {}, "POST", f"/api/projects/{PID}/close",
         body={"reason": "finished"}),
    Case("me", (), {}, "GET", "/api/me", answer={"username": "ada", "roles": ["researcher"]}),
    Case("tokens", (), {}, "GET", "/api/auth/tokens",
         answer={"tokens": [{"id": 4, "scope": "full", "current": True}]}),
    Case("create_token", (), {"scope": f"project:{PID}", "days": 7}, "POST", "/api/auth/tokens",
         body={"scope": f"project:{PID}", "name": "agent", "days": 7},
         answer={"id": 5, "token": "ndl_x"}),
    Case("revoke_token", (5,), {}, "DELETE", "/api/auth/tokens/5",
         answer={"id": 5, "revoked": True}),
    Case("logout", (), {}, "POST", "/api/auth/logout", answer={"revoked": True, "id": 4}),
    Case("register_entries", (), {"after": 7, "limit": 2}, "GET", "/api/register",
         {"after": "7", "limit": "2"}),
    Case("wishes", (), {"org": "dfe"}, "GET", "/api/wishes", {"org": "dfe", "sort": "votes"},
         answer={"wishes": [{"id": 1, "votes": 2}]}),
    Case("wish", (1,), {}, "GET", "/api/wishes/1"),
    Case("create_wish", (), {"title": "T", "description": "D", "orgs": ["dfe"]}, "POST",
         "/api/wishes", body={"title": "T", "description": "D", "orgs": ["dfe"],
                              "linkage": "", "purpose": "", "tier_needed": "safeguarded"}),
    Case("vote", (1,), {"up": False}, "POST", "/api/wishes/1/vote", body={"up": False}),
    Case("comment", (1, "yes"), {}, "POST", "/api/wishes/1/comments", body={"text": "yes"}),
    Case("set_wish_state", (1, "published"), {"dataset": DS}, "POST", "/api/wishes/1/state",
         body={"state": "published", "dataset": DS}),
    Case("dashboard", ("dfe",), {}, "GET", "/api/orgs/dfe/dashboard"),
    Case("submit_work", ("export", "la/wards", {"format": "csv"}), {}, "POST", "/api/work",
         body={"kind": "export", "dataset": "la/wards", "params": {"format": "csv"}},
         answer=VIEW),
    Case("work", (WID,), {}, "GET", f"/api/work/{WID}", answer=VIEW),
    Case("work_list", (), {"limit": 5}, "GET", "/api/work", {"limit": "5"},
         answer={"work": [VIEW]}),
    Case("cancel_work", (WID,), {}, "POST", f"/api/work/{WID}/cancel",
         answer={**VIEW, "state": "cancelled", "final": True}),
    Case("submit_job", (from_files(BUNDLE_FILES),), {"project": PID}, "POST", "/api/jobs",
         body={"project": PID, "files": BUNDLE_FILES}, answer=JOB),
    Case("job", (JID,), {}, "GET", f"/api/jobs/{JID}", answer=JOB),
    Case("jobs", (), {"limit": 5}, "GET", "/api/jobs", {"limit": "5"}, answer={"jobs": [JOB]}),
    Case("job_logs", (JID,), {}, "GET", f"/api/jobs/{JID}/logs", answer={"lines": ["a", "b"]}),
    Case("cancel_job", (JID,), {}, "POST", f"/api/jobs/{JID}/cancel",
         answer={**JOB, "state": "cancelled"}),
    Case("job_diff", (JID,), {}, "GET", f"/api/jobs/{JID}/diff",
         answer={"against": None, "diff": "+x\n"}),
    Case("job_code", (SHA,), {}, "GET", f"/api/jobs/code/{SHA}",
         answer={"sha256": SHA, "files": {"a.py": "x"}, "published": True}),
    Case("review_job", (JID, "reject"), {"reasons": "no"}, "POST", f"/api/jobs/{JID}/review",
         body={"decision": "reject", "reasons": "no"}, answer=JOB),
    Case("check_outputs", (JID, "return"), {"comments": "round"}, "POST",
         f"/api/jobs/{JID}/output-check", body={"decision": "return", "reasons": "round"},
         answer=JOB),
    Case("job_output_files", (JID,), {}, "GET", f"/api/jobs/{JID}/outputs/files",
         answer={"files": [{"name": "t.csv", "size": 3, "media_type": "text/csv"}]}),
    Case("review_queue", (), {}, "GET", "/api/jobs/review-queue", answer={"jobs": [JOB]}),
    Case("output_queue", (), {}, "GET", "/api/jobs/output-queue", answer={"jobs": []}),
    Case("job_environments", (), {}, "GET", "/api/jobs/environments",
         answer={"environments": [{"name": "python-data"}]}),
    Case("_request", ("GET", "/api/register/verify"), {"params": {"x": 1}}, "GET",
         "/api/register/verify", {"x": "1"}, answer=[1, 2]),
    Case("post_envelope", ("/api/federation/poll", ENV), {"headers": {"X-Test": "1"}}, "POST",
         "/api/federation/poll", body=ENV, headers={"x-test": "1"}, answer={"messages": []}),
    Case("raise_incident", (), {"title": "Leak", "description": "d", "severity": "high",
                                "datasets": [DS]}, "POST", "/api/incidents",
         body={"title": "Leak", "description": "d", "severity": "high", "datasets": [DS],
               "projects": [], "datasites": [], "orgs": [], "users": []}),
    Case("incidents", (), {"state": "open"}, "GET", "/api/incidents", {"state": "open"},
         answer={"incidents": [{"id": 1}]}),
    Case("incident", (7,), {}, "GET", "/api/incidents/7"),
    Case("notices", (), {}, "GET", "/api/notices", answer={"notices": [{"incident": 1}]}),
    Case("evidence", ("bob",), {}, "GET", "/api/evidence", {"user": "bob"},
         answer={"evidence": [], "renew_within_days": 30}),
    Case("add_evidence", ("bob",), {"kind": "accredited-researcher", "issuer": "UKSA",
                                    "reference": "R1", "expires_on": "2030-01-01"},
         "POST", "/api/users/bob/evidence",
         body={"kind": "accredited-researcher", "issuer": "UKSA", "reference": "R1",
               "expires_on": "2030-01-01"}, answer={"id": 1}),
    Case("evidence_baseline", (), {}, "GET", "/api/evidence/baseline",
         answer={"baseline": []}),
    Case("project_references", (PID,), {}, "GET", f"/api/projects/{PID}/references",
         answer={"references": []}),
    Case("add_project_reference", (PID,), {"kind": "dpia", "issuer": "DPO",
                                           "reference": "D-1", "expires_on": "2030-01-01"},
         "POST", f"/api/projects/{PID}/references",
         body={"kind": "dpia", "issuer": "DPO", "reference": "D-1",
               "expires_on": "2030-01-01"}, answer={"id": 1}),
]
# Cases that use an operation a second way (not counted for coverage of HubApi).
VARIANTS = [
    Case("post_envelope", ("/api/federation/reply", json.dumps(ENV).encode()), {}, "POST",
         "/api/federation/reply", body=ENV, headers={"content-type": "application/json"}),
    Case("post_envelope", ("/api/federation/work/finish", ENV), {}, "POST",
         "/api/federation/work/finish", body=ENV),
]


class Hub:
    """A mock hub for both drivers: records requests, answers with one canned response."""

    def __init__(self, answer: Any = None, status: int = 200, raw: bytes | None = None,
                 fail: Exception | None = None) -> None:
        self.answer, self.status, self.raw, self.fail = answer, status, raw, fail
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if self.fail is not None:
            raise self.fail
        if self.raw is not None:
            return httpx.Response(self.status, content=self.raw)
        return httpx.Response(self.status, json=self.answer)

    def sync(self, token: str | None = TOKEN) -> Client:
        return Client("http://hub.test", token, transport=httpx.MockTransport(self))

    def run_async(self, use: Callable[[AsyncClient], Any], token: str | None = TOKEN) -> Any:
        async def main() -> Any:
            async with AsyncClient("http://hub.test", token,
                                   transport=httpx.MockTransport(self)) as client:
                return await use(client)

        return anyio.run(main)


def _both(hub: Hub, name: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    with hub.sync() as client:
        sync = getattr(client, name)(*args, **kwargs)
    return sync, hub.run_async(lambda c: getattr(c, name)(*args, **kwargs))


def _sent(request: httpx.Request) -> tuple[str, str, dict[str, str], Any]:
    body = json.loads(request.content) if request.content else None
    return request.method, request.url.raw_path.decode().split("?")[0], \
        dict(request.url.params), body


def test_the_table_covers_every_operation() -> None:
    defined = {n for n, v in vars(HubApi).items() if isinstance(v, Operation)}
    assert defined == {c.name for c in OPERATIONS}


@pytest.mark.parametrize("case", OPERATIONS + VARIANTS, ids=str)
def test_sync_and_async_send_the_same_request_and_return_the_same_result(case: Case) -> None:
    hub = Hub(case.answer)
    sync, async_ = _both(hub, case.name, *case.args, **case.kwargs)
    assert sync == async_
    assert len(hub.seen) == 2
    first, second = (_sent(r) for r in hub.seen)
    assert first == second == (case.method, case.path, case.params, case.body)
    for request in hub.seen:
        assert request.headers["authorization"] == "Bearer ndl_t"
        for k, v in case.headers.items():
            assert request.headers[k] == v


def test_results_are_typed() -> None:
    hub = Hub(COUNT)
    answer, _ = _both(hub, "query", DS, count_by=["sex"])
    assert isinstance(answer, QueryAnswer)
    assert (answer.columns, answer.rows, answer.suppressed) == (["sex", "n"], COUNT["rows"], 1)
    hub = Hub({"datasites": [{"id": "dfe"}]})
    assert _both(hub, "datasites") == ([{"id": "dfe"}], [{"id": "dfe"}])


BAD_IDS = [
    ("dataset", ("x/../../auth/login",), "dataset id"),
    ("dataset", ("nhs-trust/ae?limit=1",), "dataset id"),
    ("dataset", ("nhs-trust/ae#frag",), "dataset id"),
    ("dataset", ("nhs-trust/ae/versions",), "dataset id"),
    ("dataset", ("../..",), "dataset id"),
    ("dataset", ("NHS-Trust/ae",), "dataset id"),
    ("dataset", ("",), "dataset id"),
    ("sql", ("nhs-trust/%2e%2e", "SELECT 1"), "dataset id"),
    ("budget", ("a/b c", PID), "dataset id"),
    ("project", ("../auth/login",), "project id"),
    ("project", ("p-1/requests",), "project id"),
    ("request_access", ("p-..", [DS]), "project id"),
    ("revoke_grant", ("../../users/ada/accreditation", "x"), "grant id"),
    ("decide", (-1, "approve"), "request item id"),
    ("decide", (True, "approve"), "request item id"),
    ("decide", ("3/../../x", "approve"), "request item id"),
    ("revoke_token", ("4/../../../me",), "token id"),
    ("wish", ("1/../../auth/tokens",), "wish id"),
    ("vote", (-3,), "wish id"),
    ("dashboard", ("../auth",), "organisation id"),
    ("work", ("../../auth/tokens",), "work id"),
    ("work", (WID + "/result",), "work id"),
    ("cancel_work", (WID.upper(),), "work id"),
    ("submit_work", ("export", "../x"), "dataset id"),
    ("job", ("../../auth/tokens",), "job id"),
    ("job_logs", (JID + "/../x",), "job id"),
    ("review_job", ("job-../me", "approve"), "job id"),
    ("job_code", ("../" + SHA[3:],), "code hash"),
    ("post_envelope", ("/api/auth/login", ENV), "envelope path"),
    ("post_envelope", ("/api/federation/../auth/login", ENV), "envelope path"),
    ("post_envelope", ("/api/federation/work/../../auth", ENV), "envelope path"),
    ("post_envelope", ("/api/federation/work/finish/x", ENV), "envelope path"),
]


@pytest.mark.parametrize(("name", "args", "what"), BAD_IDS, ids=lambda v: repr(v)[:40])
def test_a_malformed_id_is_refused_and_nothing_is_sent(name: str, args: tuple[Any, ...],
                                                      what: str) -> None:
    hub = Hub({})
    with hub.sync() as client, pytest.raises(InvalidInput, match=what) as sync_err:
        getattr(client, name)(*args)
    with pytest.raises(InvalidInput, match=what) as async_err:
        hub.run_async(lambda c: getattr(c, name)(*args))
    assert sync_err.value.message == async_err.value.message
    assert hub.seen == []


def test_the_hubs_refusals_come_back_as_the_error_tree() -> None:
    refusal = {"error": {"code": "not_found", "message": "no dataset 'dfe/x'"}}
    hub = Hub(refusal, status=404)
    for run in (lambda: hub.sync().dataset("dfe/xx"),
                lambda: hub.run_async(lambda c: c.dataset("dfe/xx"))):
        with pytest.raises(NotFound, match="no dataset 'dfe/x'"):
            run()
    hub = Hub({"error": {"code": "permission_denied", "message": "not yours"}}, status=403)
    with pytest.raises(PermissionDenied, match="not yours"):
        hub.sync().project(PID)


@pytest.mark.parametrize("hub", [
    Hub(raw=b"<html>gateway</html>", status=502),
    Hub(raw=b"<html>a login page</html>"),
    Hub(["not", "an", "object"]),
    Hub({"no": "datasites key"}),
], ids=["5xx-html", "200-html", "json-list", "missing-key"])
def test_an_answer_that_is_not_from_a_hub_is_upstream_unavailable(hub: Hub) -> None:
    with pytest.raises(UpstreamUnavailable):
        hub.sync().datasites()
    with pytest.raises(UpstreamUnavailable):
        hub.run_async(lambda c: c.datasites())


@pytest.mark.parametrize(("fail", "error"), [
    (httpx.ConnectError("refused"), UpstreamUnavailable),
    (httpx.ReadTimeout("slow"), UpstreamTimeout),
])
def test_network_failures_are_in_the_error_tree(fail: Exception, error: type[Exception]
                                                ) -> None:
    hub = Hub(fail=fail)
    with pytest.raises(error, match=r"http://hub\.test"):
        hub.sync().me()
    with pytest.raises(error, match=r"http://hub\.test"):
        hub.run_async(lambda c: c.me())


def test_login_makes_the_client_act_as_the_new_token() -> None:
    hub = Hub({"token": "ndl_new", "username": "ada", "roles": []})

    def sync() -> str:
        with hub.sync(token=None) as client:
            token = client.login("ada", "pw")
            client.me()
            return token

    async def async_(client: AsyncClient) -> str:
        token = await client.login("ada", "pw")
        await client.me()
        return token

    assert sync() == hub.run_async(async_, token=None) == "ndl_new"
    login, me = hub.seen[0], hub.seen[1]
    assert "authorization" not in login.headers
    assert json.loads(login.content) == {"username": "ada", "password": "pw"}
    assert me.headers["authorization"] == "Bearer ndl_new"
    assert hub.seen[3].headers["authorization"] == "Bearer ndl_new"


def test_with_token_shares_the_connection_but_not_the_identity() -> None:
    hub = Hub({})

    async def use(client: AsyncClient) -> None:
        await client.with_token("ndl_other").me()
        await client.with_token(None).me()
        await client.me()

    hub.run_async(use)
    assert [r.headers.get("authorization") for r in hub.seen] == \
        ["Bearer ndl_other", None, "Bearer ndl_t"]


def test_a_client_over_someone_elses_connection_leaves_it_open() -> None:
    hub = Hub({"messages": []})
    http = httpx.Client(base_url="http://hub.test/", transport=httpx.MockTransport(hub))
    client = Client.over(http)
    assert client.url == "http://hub.test"
    assert client.post_envelope("/api/federation/poll", ENV,
                                {"Authorization": "Bearer ndl_steward"}) == {"messages": []}
    client.close()
    assert not http.is_closed
    assert hub.seen[0].headers["authorization"] == "Bearer ndl_steward"
    http.close()


def test_methods_keep_the_operations_docstring_and_signature() -> None:
    import inspect

    client = Hub({}).sync()
    assert client.query.__doc__ and "Count rows" in client.query.__doc__
    assert "count_by" in inspect.signature(client.query).parameters
    assert Client.query.__doc__ == AsyncClient.query.__doc__
