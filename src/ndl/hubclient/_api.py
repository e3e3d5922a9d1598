"""Every call the hub's JSON API offers its clients, each defined once.

Each function checks its arguments (ids before they enter a path) and returns a
:class:`~ndl.hubclient._call.Call`; it sends nothing. ``_drivers.HubApi`` turns each into a
method of both the sync and the async client.

Adding an operation: write its builder here, then add one line to ``HubApi`` in
``_drivers.py`` (and a row to the table in ``tests/unit/test_hub_client.py``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ndl.core.errors import InvalidInput
from ndl.federation.blobs import ENVELOPE_HEADER, check_sha256, check_upload_id
from ndl.hubclient._call import (
    Call,
    QueryAnswer,
    count_answer,
    json_object,
    object_list,
    sql_answer,
    token,
)
from ndl.hubclient._ids import (
    check_dataset_id,
    check_federation_path,
    check_grant_id,
    check_number_id,
    check_org_id,
    check_project_id,
    check_work_id,
    dataset_path,
    segment,
)
from ndl.hubclient._work import Work, work_view
from ndl.hubclient._work import work_list as work_list_of
from ndl.jobs.bundle import Bundle, read_folder
from ndl.jobs.views import CodeView, JobView, OutputFile

Json = dict[str, Any]


def _get(path: str, **params: str | int | float | bool | None) -> Call[Json]:
    clean = {k: v for k, v in params.items() if v is not None and v != ""}
    return Call("GET", path, json_object, params=clean or None)


def _post(path: str, body: Any) -> Call[Json]:
    return Call("POST", path, json_object, json=body)


# -- catalogue --------------------------------------------------------------------------------

def search(q: str | None = None, *, publisher: str | None = None, tier: str | None = None,
           theme: str | None = None, geography: str | None = None, year: str | None = None,
           join_key: str | None = None, sort: str | None = None, limit: int = 20,
           offset: int = 0) -> Call[Json]:
    """Search the catalogue (datasets and their columns); empty filters are left out."""
    return _get("/api/datasets", q=q, publisher=publisher, tier=tier, theme=theme,
                geography=geography, year=year, join_key=join_key, sort=sort, limit=limit,
                offset=offset)


def dataset(dataset_id: str) -> Call[Json]:
    """One dataset's catalogue entry."""
    return _get(dataset_path(dataset_id))


def versions(dataset_id: str) -> Call[Json]:
    """The published versions of a dataset's metadata."""
    return _get(dataset_path(dataset_id, "/versions"))


def mock(dataset_id: str, *, limit: int = 100) -> Call[Json]:
    """Synthetic mock rows of a dataset (any signed-in user): same schema, no real row."""
    return _get(dataset_path(dataset_id, "/mock"), limit=limit, format="json")


def datasites() -> Call[list[Json]]:
    """The datasites known to the hub, and whether each is online."""
    return Call("GET", "/api/datasites", object_list("datasites"))


# -- queries ----------------------------------------------------------------------------------

def query(dataset_id: str, *, count_by: list[str] | str | None = None,
          project: str | None = None) -> Call[QueryAnswer]:
    """Count rows of a dataset, grouped by zero to three columns, computed at its datasite.

    Non-open data needs ``project``: a project of yours with an active grant for it.
    """
    by = [count_by] if isinstance(count_by, str) else list(count_by or [])
    body: Json = {"op": "count", "by": by}
    if project:
        body["project"] = project
    return Call("POST", dataset_path(dataset_id, "/query"), count_answer, json=body)


def sql(dataset_id: str, sql: str, *, limit: int = 1000) -> Call[QueryAnswer]:
    """Run one read-only SELECT over an open dataset (the table is called ``data``)."""
    return Call("POST", dataset_path(dataset_id, "/sql"), sql_answer,
                json={"sql": sql, "limit": limit})


def private_query(dataset_id: str, *, project: str, sql: str | None = None,
                  query: Json | None = None, rho: float | None = None,
                  preview: bool = False) -> Call[Json]:
    """A differentially private answer from safeguarded data (spends privacy budget).

    ``preview=True`` returns the expected error and the budget left, and spends nothing.
    """
    body: Json = {"project": project, "preview": preview}
    for k, v in (("sql", sql), ("query", query), ("rho", rho)):
        if v is not None:
            body[k] = v
    return _post(dataset_path(dataset_id, "/private-query"), body)


def budget(dataset_id: str, project: str) -> Call[Json]:
    """What is left of the privacy budget for you and ``project`` on a dataset."""
    return Call("GET", dataset_path(dataset_id, "/budget"), json_object,
                params={"project": project})


# -- access -----------------------------------------------------------------------------------

def create_project(*, title: str, purpose: str, lay_summary: str, legal_basis: str,
                   end_date: str, purpose_category: str = "research",
                   members: list[str] | None = None) -> Call[Json]:
    """Create a project (you lead it)."""
    return _post("/api/projects", {
        "title": title, "purpose": purpose, "purpose_category": purpose_category,
        "lay_summary": lay_summary, "legal_basis": legal_basis, "end_date": end_date,
        "members": members or []})


def my_projects() -> Call[Json]:
    """The projects you are a member of (``{"projects": [...]}``)."""
    return _get("/api/projects")


def project(project_id: str) -> Call[Json]:
    """A project, its requests and (to members) its grants."""
    return _get(f"/api/projects/{segment(check_project_id(project_id))}")


def request_access(project_id: str, datasets: list[str]) -> Call[Json]:
    """Ask for several datasets (at several organisations) in one request."""
    return _post(f"/api/projects/{segment(check_project_id(project_id))}/requests",
                 {"datasets": datasets})


def evidence(user: str | None = None) -> Call[Json]:
    """Your evidence (or, for admins and data stewards, ``user``'s), with renewal flags."""
    return _get("/api/evidence", user=user)


def add_evidence(username: str, *, kind: str, issuer: str, reference: str, expires_on: str,
                 issued_on: str | None = None) -> Call[Json]:
    """Record evidence about another user (admins)."""
    body = {"kind": kind, "issuer": issuer, "reference": reference, "expires_on": expires_on,
            **({"issued_on": issued_on} if issued_on else {})}
    return _post(f"/api/users/{segment(username)}/evidence", body)


def evidence_baseline() -> Call[Json]:
    """What the federation agreed every user of each tier's data must hold."""
    return _get("/api/evidence/baseline")


def project_references(project_id: str) -> Call[Json]:
    """A project's references: ethics approval, DPIA, data-sharing agreement."""
    return _get(f"/api/projects/{segment(check_project_id(project_id))}/references")


def add_project_reference(project_id: str, *, kind: str, issuer: str, reference: str,
                          expires_on: str) -> Call[Json]:
    """Record one of a project's references (its lead, or an admin)."""
    return _post(f"/api/projects/{segment(check_project_id(project_id))}/references",
                 {"kind": kind, "issuer": issuer, "reference": reference,
                  "expires_on": expires_on})


def steward_queue() -> Call[list[Json]]:
    """The request items waiting for your decision."""
    return Call("GET", "/api/stewards/queue", object_list("pending"))


def decide(item_id: int, decision: str, reason: str = "") -> Call[Json]:
    """Approve or reject one request item."""
    item = segment(check_number_id(item_id, "request item id"))
    return _post(f"/api/requests/items/{item}/decision",
                 {"decision": decision, "reason": reason})


def revoke_grant(grant_id: str, reason: str) -> Call[Json]:
    """Revoke a grant; its datasite refuses it from the next message on."""
    return _post(f"/api/grants/{segment(check_grant_id(grant_id))}/revoke", {"reason": reason})


def time_to_access() -> Call[Json]:
    """How long access requests take, from asking to a decision."""
    return _get("/api/metrics/time-to-access")


# -- accounts and the register -----------------------------------------------------------------

def login(username: str, password: str) -> Call[str]:
    """A new API token for a username and password (the drivers then act as it)."""
    return Call("POST", "/api/auth/login", token,
                json={"username": username, "password": password})


def me() -> Call[Json]:
    """Who the token belongs to: username, roles, organisation."""
    return _get("/api/me")


def tokens() -> Call[list[Json]]:
    """Your own tokens that still work (``current`` marks the one this client uses)."""
    return Call("GET", "/api/auth/tokens", object_list("tokens"))


def create_token(*, scope: str = "read-only", name: str = "agent", days: int = 30
                 ) -> Call[Json]:
    """Mint a token for yourself (``full``, ``read-only`` or ``project:<id>``); the answer is
    the only time the token itself is shown."""
    return _post("/api/auth/tokens", {"scope": scope, "name": name, "days": days})


def revoke_token(token_id: int) -> Call[Json]:
    """Revoke one of your tokens; it stops working on its next request."""
    return Call("DELETE", f"/api/auth/tokens/{segment(check_number_id(token_id, 'token id'))}",
                json_object)


def logout() -> Call[Json]:
    """Revoke the token this client uses."""
    return _post("/api/auth/logout", None)


def register_entries(*, after: int = 0, limit: int = 1000) -> Call[Json]:
    """A page of the public register of decisions, after entry ``after``."""
    return _get("/api/register", after=after, limit=limit)


# -- the wishlist and demand ------------------------------------------------------------------

def _wish(wish_id: int, suffix: str = "") -> str:
    return f"/api/wishes/{segment(check_number_id(wish_id, 'wish id'))}{suffix}"


def wishes(*, state: str | None = None, org: str | None = None, sort: str = "votes"
           ) -> Call[list[Json]]:
    """Wishes for data not yet in the library, most votes first (or ``sort="new"``)."""
    params = {k: v for k, v in {"state": state, "org": org, "sort": sort}.items() if v}
    return Call("GET", "/api/wishes", object_list("wishes"), params=params)


def wish(wish_id: int) -> Call[Json]:
    """One wish with its comments."""
    return _get(_wish(wish_id))


def create_wish(*, title: str, description: str, orgs: list[str] | None = None,
                linkage: str = "", purpose: str = "", tier_needed: str = "safeguarded"
                ) -> Call[Json]:
    """Wish for data: what, from which organisations, linked how, and why."""
    return _post("/api/wishes", {"title": title, "description": description,
                                 "orgs": orgs or [], "linkage": linkage, "purpose": purpose,
                                 "tier_needed": tier_needed})


def vote(wish_id: int, *, up: bool = True) -> Call[Json]:
    """Vote for a wish (``up=False`` takes the vote back)."""
    return _post(_wish(wish_id, "/vote"), {"up": up})


def comment(wish_id: int, text: str) -> Call[Json]:
    """Comment on a wish."""
    return _post(_wish(wish_id, "/comments"), {"text": text})


def set_wish_state(wish_id: int, state: str, *, dataset: str | None = None) -> Call[Json]:
    """A steward marks a wish ``open``, ``planned`` or ``published`` (naming the dataset)."""
    return _post(_wish(wish_id, "/state"), {"state": state, "dataset": dataset})


def dashboard(org_id: str) -> Call[Json]:
    """An organisation's demand: wishes naming it, requests for its data, time to access."""
    return _get(f"/api/orgs/{segment(check_org_id(org_id))}/dashboard")


# -- long work (submit, follow, cancel; Client.export waits and downloads too) ---------------

def _work(work_id: str, suffix: str = "") -> str:
    return f"/api/work/{segment(check_work_id(work_id))}{suffix}"


def submit_work(kind: str, dataset_id: str, params: Json | None = None) -> Call[Work]:
    """Queue long work (``kind="export"``: params ``format``, ``limit``) and return at once;
    follow it with ``work``, ``wait_work`` or ``follow_work``."""
    return Call("POST", "/api/work", work_view, json={
        "kind": kind, "dataset": check_dataset_id(dataset_id), "params": params or {}})


def work(work_id: str) -> Call[Work]:
    """One work item of yours: its state, progress and result."""
    return Call("GET", _work(work_id), work_view)


def work_list(limit: int = 100) -> Call[list[Work]]:
    """Your work items, newest first (items started without signing in are never listed)."""
    return Call("GET", "/api/work", work_list_of, params={"limit": limit})


def cancel_work(work_id: str) -> Call[Work]:
    """Cancel a work item that has not finished (the datasite stops on its next heartbeat);
    a finished item is returned unchanged."""
    return Call("POST", _work(work_id, "/cancel"), work_view)


# -- controlled jobs (Client.wait_job and Client.job_outputs wait and download too) ----------

_JOB_ID = re.compile(r"^job-[0-9a-f]{8,32}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class JobDiff:
    """A job's code against the code last approved for its project (``against`` is that
    code's SHA-256, or None when nothing was approved before)."""

    against: str | None
    diff: str


def check_job_id(job_id: str) -> str:
    """Return ``job_id`` if it looks like ``job-1a2b3c4d5e6f7a8b``; raise InvalidInput if not."""
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise InvalidInput(f"job id {str(job_id)[:80]!r} is not valid: job ids look like "
                           "'job-1a2b3c4d5e6f7a8b', as 'ndl submit' or 'ndl job list' printed "
                           "them")
    return job_id


def check_code_sha256(sha256: str) -> str:
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise InvalidInput(f"code hash {str(sha256)[:80]!r} is not valid: it is the 64 "
                           "lower-case hex digits of a SHA-256, as 'ndl job status' shows it")
    return sha256


def _job(job_id: str, suffix: str = "") -> str:
    return f"/api/jobs/{segment(check_job_id(job_id))}{suffix}"


def job_view(data: Any) -> JobView:
    return JobView.model_validate(json_object(data))


def _job_list(data: Any) -> list[JobView]:
    items = json_object(data)["jobs"]
    if not isinstance(items, list):
        raise TypeError("'jobs' is not a list")
    return [JobView.model_validate(i) for i in items]


def _lines(data: Any) -> list[str]:
    lines = json_object(data)["lines"]
    if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
        raise TypeError("'lines' is not a list of text")
    return lines


def _diff(data: Any) -> JobDiff:
    d = json_object(data)
    against, text = d["against"], d["diff"]
    if not (against is None or isinstance(against, str)) or not isinstance(text, str):
        raise TypeError("a diff is {'against': hash or null, 'diff': text}")
    return JobDiff(against, text)


def _bundle_files(bundle: Path | str | Bundle) -> dict[str, str]:
    checked = bundle if isinstance(bundle, Bundle) else read_folder(Path(bundle))
    return dict(sorted(checked.files.items()))


def submit_job(bundle: Path | str | Bundle, *, project: str) -> Call[JobView]:
    """Submit a job bundle (a folder holding ``ndl-job.toml``) for ``project``'s data.

    The bundle is read and checked here, so a mistake is reported with its file and line and
    nothing is sent. The hub queues the code for a data steward's review (or runs it at once
    when the same code was approved before for the project).
    """
    files = _bundle_files(bundle)
    return Call("POST", "/api/jobs", job_view,
                json={"project": check_project_id(project), "files": files})


def job(job_id: str) -> Call[JobView]:
    """One job: its state (in words too), progress, reviews and, once run, its report."""
    return Call("GET", _job(job_id), job_view)


def jobs(limit: int = 100) -> Call[list[JobView]]:
    """The jobs of your projects, newest first."""
    return Call("GET", "/api/jobs", _job_list, params={"limit": limit})


def job_logs(job_id: str) -> Call[list[str]]:
    """The researcher-safe log: ndl's own lines, never what the job printed."""
    return Call("GET", _job(job_id, "/logs"), _lines)


def cancel_job(job_id: str) -> Call[JobView]:
    """Cancel a job of yours that is waiting for review or running."""
    return Call("POST", _job(job_id, "/cancel"), job_view)


def job_diff(job_id: str) -> Call[JobDiff]:
    """The job's code as a unified diff against the code last approved for its project."""
    return Call("GET", _job(job_id, "/diff"), _diff)


def job_code(sha256: str) -> Call[CodeView]:
    """A bundle's files by their SHA-256 (public once a job running that code was approved)."""
    return Call("GET", f"/api/jobs/code/{check_code_sha256(sha256)}", CodeView.model_validate)


def review_job(job_id: str, decision: str, reasons: str = "") -> Call[JobView]:
    """A data steward approves (``"approve"``) or rejects (``"reject"``, with reasons) a job's
    code."""
    return Call("POST", _job(job_id, "/review"), job_view,
                json={"decision": decision, "reasons": reasons})


def check_outputs(job_id: str, decision: str, comments: str = "") -> Call[JobView]:
    """An output checker approves, returns (with comments) or rejects a job's outputs."""
    return Call("POST", _job(job_id, "/output-check"), job_view,
                json={"decision": decision, "reasons": comments})


def job_output_files(job_id: str) -> Call[list[OutputFile]]:
    """The outputs file by file (CSV parsed, text shown), for judging them."""
    def parse(data: Any) -> list[OutputFile]:
        return [OutputFile.model_validate(f) for f in json_object(data)["files"]]

    return Call("GET", _job(job_id, "/outputs/files"), parse)


def review_queue() -> Call[list[JobView]]:
    """Jobs whose code waits for a review by a steward of your organisation."""
    return Call("GET", "/api/jobs/review-queue", _job_list)


def output_queue() -> Call[list[JobView]]:
    """Jobs whose outputs wait for you, an output checker."""
    return Call("GET", "/api/jobs/output-queue", _job_list)


def job_environments() -> Call[list[Json]]:
    """The environments jobs may name: each with its languages and fixed package versions."""
    return Call("GET", "/api/jobs/environments", object_list("environments"))


# -- blobs (sent by ndl.federation.blob_client, which streams the bytes) ----------------------

RequestAuth = Callable[[str, str, "Json | None"], dict[str, str]]


def _blob_call(method: str, path: str, auth: RequestAuth | None, args: Json | None = None,
               *, content: bytes | None = None, user_headers: dict[str, str] | None = None
               ) -> Call[Json]:
    """A party signs ``args`` into the X-Ndl-Envelope header; a user sends them as the JSON
    body (or, for a chunk, as ``user_headers``)."""
    headers = auth(method, path, args) if auth is not None else {}
    signed = ENVELOPE_HEADER in headers
    if not signed:
        headers.update(user_headers or {})
    if content is not None:
        headers["Content-Type"] = "application/octet-stream"
        return Call(method, path, json_object, content=content, headers=headers)
    return Call(method, path, json_object, json=None if signed or content else args,
                headers=headers)


def begin_blob_upload(args: Json, auth: RequestAuth | None = None) -> Call[Json]:
    """Begin (or find, to resume) the upload of a blob: ``{sha256, size, kind, media_type}``."""
    return _blob_call("POST", "/api/blobs/uploads", auth, args)


def blob_upload_status(upload_id: str, auth: RequestAuth | None = None) -> Call[Json]:
    """How many bytes of an upload the hub holds (resume from ``offset``)."""
    return _blob_call("GET", f"/api/blobs/uploads/{segment(check_upload_id(upload_id))}", auth)


def put_blob_chunk(upload_id: str, data: bytes, offset: int,
                   auth: RequestAuth | None = None, *, sha256: str | None = None
                   ) -> Call[Json]:
    """One chunk of an upload: ``data`` starting at byte ``offset``, with its SHA-256
    (``sha256`` if the caller already hashed it)."""
    digest = hashlib.sha256(data).hexdigest() if sha256 is None else check_sha256(sha256)
    return _blob_call(
        "PUT", f"/api/blobs/uploads/{segment(check_upload_id(upload_id))}", auth,
        {"offset": offset, "length": len(data), "sha256": digest}, content=data,
        user_headers={"X-Ndl-Offset": str(offset), "X-Ndl-Chunk-Sha256": digest})


def blob_info(sha256: str, auth: RequestAuth | None = None) -> Call[Json]:
    """A blob's size, kind, media type, owner and expiry (if you may read it)."""
    return _blob_call("GET", f"/api/blobs/{check_sha256(sha256)}/info", auth)


def share_blob(sha256: str, reader: str, auth: RequestAuth | None = None) -> Call[Json]:
    """Let ``reader`` (``user:<name>``, ``party:<id>``...) read a blob you own."""
    return _blob_call("POST", f"/api/blobs/{check_sha256(sha256)}/readers", auth,
                      {"reader": reader})


def delete_blob(sha256: str, auth: RequestAuth | None = None) -> Call[Json]:
    """Remove a blob you own now (otherwise it goes once delivered, or when it expires)."""
    return _blob_call("DELETE", f"/api/blobs/{check_sha256(sha256)}", auth)


# -- datasites --------------------------------------------------------------------------------

# -- incidents and notices ----------------------------------------------------------------------

def raise_incident(*, title: str, description: str, severity: str,
                   datasets: list[str] | None = None, projects: list[str] | None = None,
                   datasites: list[str] | None = None, orgs: list[str] | None = None,
                   users: list[str] | None = None) -> Call[Json]:
    """Raise an incident; the hub tells those it touches (the description stays private)."""
    return _post("/api/incidents", {
        "title": title, "description": description, "severity": severity,
        "datasets": datasets or [], "projects": projects or [], "datasites": datasites or [],
        "orgs": orgs or [], "users": users or []})


def incidents(*, state: str | None = None) -> Call[list[Json]]:
    """The incidents you may see: all (admins), or those you raised or were told about."""
    return Call("GET", "/api/incidents", object_list("incidents"),
                params={"state": state} if state else None)


def incident(incident_id: int) -> Call[Json]:
    return _get(f"/api/incidents/{check_number_id(incident_id, 'incident id')}")


def notices() -> Call[list[Json]]:
    """Incident notices addressed to you."""
    return Call("GET", "/api/notices", object_list("notices"))


def post_envelope(path: str, envelope: Json | bytes, headers: dict[str, str] | None = None
                  ) -> Call[Json]:
    """Send a datasite's signed envelope to one of the hub's federation endpoints.

    ``envelope`` is the sealed envelope, or its JSON bytes exactly as they should travel (a
    datasite encodes it first to check it fits the hub's size limit).
    """
    path = check_federation_path(path)
    if isinstance(envelope, bytes):
        return Call("POST", path, json_object, content=envelope,
                    headers={"Content-Type": "application/json", **(headers or {})})
    return Call("POST", path, json_object, json=envelope, headers=headers)


# -- joining, leaving and the data lifecycle -------------------------------------------------

def approve_datasite(datasite_id: str) -> Call[Json]:
    """Approve a datasite that joined and waits (a data steward of its org, or an admin)."""
    return _post(f"/api/datasites/{segment(datasite_id)}/approve", {})


def retire_datasite(datasite_id: str, reason: str) -> Call[Json]:
    """Retire a datasite: its entries withdrawn, grants ended, key refused; data stay home."""
    return _post(f"/api/datasites/{segment(datasite_id)}/retire", {"reason": reason})


def datasite_status(datasite_id: str) -> Call[Json]:
    """A datasite's membership state and its latest signed status report."""
    return _get(f"/api/datasites/{segment(datasite_id)}/status")


def withdraw_dataset(dataset_id: str, reason: str) -> Call[Json]:
    """Withdraw a dataset from the catalogue (its data steward or an admin)."""
    return _post(dataset_path(dataset_id, "/withdraw"), {"reason": reason})


def delete_dataset(dataset_id: str) -> Call[Json]:
    """Ask a withdrawn dataset's datasite to delete it; a signed record comes back."""
    return _post(dataset_path(dataset_id, "/delete"), {})


def dataset_deletions(dataset_id: str) -> Call[Json]:
    """Deletion requests for a dataset and the datasite's signed records."""
    return _get(dataset_path(dataset_id, "/deletions"))


def close_project(project_id: str, reason: str) -> Call[Json]:
    """Close a project (its lead or an admin): grants revoked, outputs archived."""
    return _post(f"/api/projects/{segment(check_project_id(project_id))}/close",
                 {"reason": reason})


def raw(method: str, path: str, *, params: dict[str, Any] | None = None,
        json: Any = None) -> Call[Any]:
    """Any call, unchecked: for tests of the hub itself. Prefer a named operation."""
    if not path.startswith("/"):
        raise InvalidInput(f"path {path!r} is not valid: it starts with '/', e.g. '/api/me'")
    return Call(method, path, lambda data: data, params=params, json=json)


# New operations go above, in the section they belong to; then one line in HubApi.
