"""The access pages in-process: projects, requests, stewards, grants, the register, time to
access, the wishlist and organisation dashboards, through the forms a browser would post.

There is no datasite here, so a count query that passes every check waits for an answer
that never comes: those tests assert the timeout message; the browser journeys run real
datasites and see real counts.
"""

from __future__ import annotations

import html as markup
import re
import warnings
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import func, select
from test_web_pages import PASSWORD, form_token, seed_catalogue

from ndl.access import accounts
from ndl.access.models import User
from ndl.access.project_models import AccessRequest, Grant, Project, RequestItem
from ndl.core.tiers import TIERS
from ndl.hub.app import create_app
from ndl.hub.deps import public
from ndl.hub.state import HubSettings
from ndl.ledger.models import LedgerEntry
from ndl.web import access_pages, forms, register_pages, steward_pages, wishlist_pages
from ndl.wishlist.models import Wish, WishVote

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

BASE = "https://testserver"
AE = "nhs-trust/ae-attendances"          # safeguarded: auto-granted to accredited researchers
OUTPATIENT = "nhs-trust/outpatient-appointments"  # controlled
CENSUS = "dfe/school-census"              # controlled: a dfe steward decides
NEXT_YEAR = date.today() + timedelta(days=365)
PROJECT = {"title": "Children's health and schooling",
           "purpose": "Understand how emergency care use relates to school attendance.",
           "purpose_category": "research",
           "lay_summary": "Counts by area to plan children's services.",
           "legal_basis": "public-task", "members": "",
           "end_date-day": str(NEXT_YEAR.day), "end_date-month": str(NEXT_YEAR.month),
           "end_date-year": str(NEXT_YEAR.year)}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The catalogue pages' seed, plus stewards and researchers (hashed once per module)."""
    folder = tmp_path_factory.mktemp("access-hub")
    template = create_app(HubSettings(db_url=str(folder / "hub.db"), data_dir=folder))
    db = template.state.hub.db
    seed_catalogue(db, template.state.hub.key)
    with db.write() as s:
        for name, roles, org, accredited in (
            ("alice", ["researcher"], None, True), ("bob", ["researcher"], None, True),
            ("nina", ["steward"], "nhs-trust", False), ("dan", ["steward"], "dfe", False),
            ("dual", ["researcher", "steward"], "dfe", True),
            ("oscar", ["output_checker"], None, False),
        ):
            user = accounts.create_user(s, name, roles=roles, org_id=org, password=PASSWORD)
            user.accredited = accredited
    db.dispose()
    return folder


# The `app` and `login` fixtures live in tests/unit/conftest.py.
Login = Callable[[str], TestClient]


def token_for(html: str, action: str) -> str:
    """The CSRF token of the form posting to ``action`` on a page; the header's sign-out
    form's token if the page has no such form (a stranger posting anyway)."""
    start = html.find(f'<form action="{action}')
    if start < 0:
        return form_token(html)
    form = html[start:html.index("</form>", start)]
    m = re.search(r'name="csrf_token" value="([^"]*)"', form)
    assert m and m.group(1), f"the form for {action} carries no CSRF token"
    return m.group(1)


def post_form(client: TestClient, page: str, action: str, data: dict[str, Any]) -> Any:
    """Post ``data`` to ``action`` with the CSRF token from ``page``, as the browser does."""
    token = token_for(client.get(page).text, action)
    return client.post(action, data={**data, "csrf_token": token}, follow_redirects=False)


def create_project(client: TestClient, **changes: str) -> str:
    r = post_form(client, "/projects/new", "/projects/new", {**PROJECT, **changes})
    assert r.status_code == 303, r.text
    m = re.fullmatch(r"/projects/(p-[0-9a-f]+)\?created=1", r.headers["location"])
    assert m, r.headers["location"]
    return m.group(1)


def ask(client: TestClient, project_id: str, datasets: list[str]) -> Any:
    return post_form(client, f"/projects/{project_id}", f"/projects/{project_id}/requests",
                     {"datasets": datasets})


def pending_item(app: FastAPI, project_id: str, dataset: str) -> int:
    with app.state.hub.db.read() as s:
        item_id = s.scalar(select(RequestItem.id).join(AccessRequest).where(
            AccessRequest.project_id == project_id, RequestItem.dataset_id == dataset))
    assert item_id is not None
    return int(item_id)


def grant_id(app: FastAPI, project_id: str, dataset: str) -> str:
    with app.state.hub.db.read() as s:
        gid = s.scalar(select(Grant.id).where(Grant.project_id == project_id,
                                              Grant.dataset_id == dataset))
    assert gid is not None
    return str(gid)


def count(app: FastAPI, model: type[Any]) -> int:
    with app.state.hub.db.read() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def section(html: str, element_id: str, end: str = "</table>") -> str:
    start = html.index(f'id="{element_id}"')
    return html[start:html.index(end, start)]


def summary_items(html: str) -> list[str]:
    """The messages of the GOV.UK error summary, in order."""
    box = html[html.index('class="govuk-error-summary"'):]
    box = box[:box.index("</ul>")]
    return [markup.unescape(re.sub(r"\s+", " ", m).strip())
            for m in re.findall(r'<a href="#[^"]*">([^<]*)</a>', box)]


def state_of(html: str, item_id: int) -> str:
    """The state cell of a request item's row, as text."""
    row = section(html, f"item-{item_id}", "</tr>")
    cell = row.split('ndl-state">')[1].split("</td>")[0]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", cell)).strip()


# --- every route is a page with one access rule ---------------------------------------------

def test_every_new_page_route_depends_on_public_only() -> None:
    routes = [r for m in (access_pages, steward_pages, register_pages, wishlist_pages)
              for r in m.router.routes if isinstance(r, APIRoute)]
    assert {(r.path, m) for r in routes for m in r.methods} == {
        ("/projects", "GET"), ("/projects/new", "GET"), ("/projects/new", "POST"),
        ("/projects/{project_id}", "GET"), ("/projects/{project_id}/requests", "POST"),
        ("/stewards", "GET"),
        ("/stewards/items/{item_id}/decision", "POST"),
        ("/stewards/grants/{grant_id}/revoke", "POST"), ("/register", "GET"),
        ("/access-times", "GET"), ("/wishlist", "GET"), ("/wishlist/new", "GET"),
        ("/wishlist/new", "POST"), ("/wishlist/{wish_id}", "GET"),
        ("/wishlist/{wish_id}/vote", "POST"), ("/wishlist/{wish_id}/comments", "POST"),
        ("/wishlist/{wish_id}/state", "POST"), ("/orgs/{org_id}", "GET")}
    for route in routes:
        calls = [d.call for d in route.dependant.dependencies]
        assert calls == [public], route.path


@pytest.mark.parametrize("path", ["/projects", "/projects/new", "/stewards", "/wishlist/new"])
def test_signed_in_pages_send_visitors_to_sign_in_and_back(login: Login, path: str) -> None:
    r = login("").get(path, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/sign-in?next=" + path.replace("/", "%2F")


def test_header_links_the_new_pages_and_stewards_only_for_stewards(login: Login) -> None:
    nav = re.compile(r'class="govuk-service-navigation__link" href="([^"]+)"')
    anonymous = nav.findall(login("").get("/").text)
    assert anonymous[:7] == ["/", "/search", "/projects", "/register", "/access-times",
                             "/wishlist", "/api/docs"]
    assert "/stewards" in nav.findall(login("nina").get("/register").text)
    assert "/stewards" not in nav.findall(login("alice").get("/register").text)
    home = login("").get("/").text
    assert 'href="/access-times"' in home.split('id="main-content"')[1]
    assert 'href="/register"' in home.split('id="main-content"')[1]


# --- projects -------------------------------------------------------------------------------

def test_new_project_shows_govuk_errors_for_each_field(app: FastAPI, login: Login) -> None:
    alice = login("alice")
    r = post_form(alice, "/projects/new", "/projects/new", {
        **PROJECT, "title": "", "purpose": "too short", "purpose_category": "",
        "legal_basis": "vibes", "lay_summary": "", "end_date-day": "1", "end_date-month": "1",
        "end_date-year": "2001"})
    assert r.status_code == 422
    assert r.text.count("<title>Error: ") == 1
    assert summary_items(r.text) == [
        "Give the project a title",
        "State the purpose in at least 20 characters: what question, and why the public "
        "benefits",
        "Choose what kind of purpose the project has",
        "Add a plain-English summary for the public register",
        "The legal basis must be one of public-task, legitimate-interests, consent, "
        "research-exemption, section-251, statutory-gateway",
        "The end date must be in the future"]
    hrefs = re.findall(r'<a href="(#[^"]+)">', r.text.split("</ul>")[1])
    assert hrefs[-1] == "#end_date-day" and "#purpose_category" in hrefs
    # Each field carries its own message, and what was typed is kept.
    for field in ("title", "purpose", "purpose_category", "lay_summary", "legal_basis",
                  "end_date"):
        assert f'id="{field}-error"' in r.text, field
    assert ">too short</textarea>" in r.text
    assert count(app, Project) == 0


@pytest.mark.parametrize("day,month,year,message", [
    ("31", "2", "2030", "The end date must be a real date, for example 31 3 2027"),
    ("", "", "", "Enter the date the project ends"),
    ("1", "", "2030", "The end date must include a month"),
])
def test_an_unreadable_end_date_still_gets_every_field_checked(
        app: FastAPI, login: Login, day: str, month: str, year: str, message: str) -> None:
    r = post_form(login("alice"), "/projects/new", "/projects/new", {
        **PROJECT, "purpose": "short", "end_date-day": day, "end_date-month": month,
        "end_date-year": year})
    assert r.status_code == 422
    assert summary_items(r.text) == [
        "State the purpose in at least 20 characters: what question, and why the public "
        "benefits", message]
    r = post_form(login("alice"), "/projects/new", "/projects/new", {
        **PROJECT, "end_date-day": day, "end_date-month": month, "end_date-year": year})
    assert summary_items(r.text) == [message]
    assert count(app, Project) == 0  # the dry run left nothing behind
    with app.state.hub.db.read() as s:
        assert s.scalar(select(func.count()).select_from(LedgerEntry)
                        .where(LedgerEntry.kind == "project.created")) == 0


def test_unknown_team_member_is_a_field_error(login: Login) -> None:
    r = post_form(login("alice"), "/projects/new", "/projects/new",
                  {**PROJECT, "members": "bob, nobody-here"})
    assert r.status_code == 422
    assert summary_items(r.text) == ["'nobody-here' is not a registered researcher"]
    assert 'id="members-error"' in r.text


def test_only_researchers_create_projects(login: Login) -> None:
    nina = login("nina")
    r = nina.get("/projects/new")
    assert r.status_code == 403 and "Only researchers can create projects" in r.text
    r = post_form(nina, "/projects", "/projects/new", PROJECT)
    assert r.status_code == 403
    assert "Create a new project" not in nina.get("/projects").text


def test_create_a_project_and_list_it(login: Login) -> None:
    alice = login("alice")
    pid = create_project(alice, members="bob")
    page = alice.get(f"/projects/{pid}?created=1")
    assert page.status_code == 200
    assert "Project created" in page.text
    assert "<h1 class=\"govuk-heading-xl\">Children&#39;s health and schooling</h1>" in page.text
    members = section(page.text, "members", "</ul>")
    assert "<strong>alice</strong>, lead, accredited researcher" in members
    assert "<strong>bob</strong>, researcher" in members
    assert "2 people, 2 accredited" in page.text
    mine = alice.get("/projects").text
    assert f'href="/projects/{pid}"' in mine and "Lead" in mine
    assert f'href="/projects/{pid}"' in login("bob").get("/projects").text
    assert f'href="/projects/{pid}"' not in login("dual").get("/projects").text


def test_one_request_for_two_organisations(app: FastAPI, login: Login) -> None:
    alice = login("alice")
    pid = create_project(alice)
    form = alice.get(f"/projects/{pid}").text
    # Non-open datasets of both organisations, in one form; open data needs no request.
    boxes = re.findall(r'name="datasets" type="checkbox" value="([^"]+)"', form)
    assert sorted(boxes) == [CENSUS, AE, OUTPATIENT]
    assert "Department for Education" in section(form, "request-form", "</form>")
    assert "Granted at once to accredited researchers" in form  # the policy, beside the box
    r = ask(alice, pid, [AE, CENSUS])
    assert r.status_code == 303
    assert r.headers["location"].startswith(f"/projects/{pid}?requested=")
    page = alice.get(r.headers["location"]).text
    assert "Your request has been sent: 1 granted at once, 1 waiting for a data steward." \
        in page
    assert state_of(page, pending_item(app, pid, AE)).startswith("Granted")
    assert state_of(page, pending_item(app, pid, CENSUS)) == "Waiting for a steward"
    assert "meets the dataset&#39;s auto-approval rules" in page
    grants = section(page, "grants-table")
    assert "A&amp;E attendances" in grants and "Active" in grants and "School census" \
        not in grants
    # What the granted dataset's tier offers, for it only: private questions, never counts.
    offer = section(page, "offer-nhs-trust--ae-attendances", "</div>")
    assert TIERS["safeguarded"].what_you_get in markup.unescape(offer)
    assert f'href="/datasets/nhs-trust/ae-attendances/private-query?project={pid}"' in offer
    assert 'id="offer-dfe--school-census"' not in page
    assert "count query" not in page.lower() and f"/projects/{pid}/query" not in page
    # What was asked for is no longer offered.
    boxes = re.findall(r'name="datasets" type="checkbox" value="([^"]+)"', page)
    assert boxes == [OUTPATIENT]


def test_request_errors_show_on_the_form(app: FastAPI, login: Login) -> None:
    alice = login("alice")
    pid = create_project(alice)
    r = ask(alice, pid, [])
    assert r.status_code == 422
    assert summary_items(r.text) == ["Datasets: name at least one dataset"]
    assert 'id="datasets-error"' in r.text
    ask(alice, pid, [CENSUS])
    # A stale form can still offer a dataset that now has a pending request.
    r = ask(alice, pid, [CENSUS])
    assert r.status_code == 409
    assert summary_items(r.text) == [f"Project {pid} already has a pending request for "
                                     f"{CENSUS}"]
    r = ask(alice, pid, ["dfe/pupil-absence"])
    assert r.status_code == 422 and "is open data" in r.text
    assert count(app, AccessRequest) == 1


def test_strangers_see_only_the_public_record(app: FastAPI, login: Login) -> None:
    alice = login("alice")
    pid = create_project(alice, members="bob")
    ask(alice, pid, [AE, CENSUS])
    item = pending_item(app, pid, CENSUS)
    post_form(login("dan"), "/stewards", f"/stewards/items/{item}/decision",
              {"decision": "reject", "reason": "No legal gateway for this."})
    for who in ("", "dual", "nina"):
        page = login(who).get(f"/projects/{pid}")
        assert page.status_code == 200
        html = page.text
        assert "Counts by area to plan children&#39;s services." in html
        assert "2 people, 2 accredited" in html
        assert "Public task" in html and "Research" in html
        assert state_of(html, item).startswith("Rejected")
        assert "No legal gateway for this." in html
        # No names, no grants, no forms.
        main = html.split('id="main-content"')[1]
        assert not re.search(r"\b(alice|bob|dan)\b", main), who
        assert "a steward of dfe" in html
        for private in ('id="members"', 'id="grants"', 'id="request-form"', "offer-",
                        'name="csrf_token" value="', "private-query"):
            if private == 'name="csrf_token" value="' and who:
                # The sign-out button in the header is the only form a member of the public
                # sees; it must be the only one.
                assert html.count(private) == 1
                continue
            assert private not in html, (who, private)
    members = login("bob").get(f"/projects/{pid}").text
    assert 'id="grants"' in members and "Approved" not in members
    assert "Rejected by dan" in members  # members see who decided


def test_strangers_cannot_act_on_a_project(app: FastAPI, login: Login) -> None:
    alice = login("alice")
    pid = create_project(alice)
    ask(alice, pid, [AE])
    dual = login("dual")
    before = count(app, AccessRequest), count(app, LedgerEntry)
    r = post_form(dual, "/projects", f"/projects/{pid}/requests", {"datasets": [CENSUS]})
    assert r.status_code == 403
    assert f"You are not a member of project {pid}" in r.text
    assert (count(app, AccessRequest), count(app, LedgerEntry)) == before
    assert post_form(dual, "/projects", "/projects/p-nothere/requests",
                     {"datasets": [AE]}).status_code == 404


def test_posts_without_this_sessions_csrf_token_change_nothing(
        app: FastAPI, login: Login) -> None:
    alice = login("alice")
    pid = create_project(alice)
    before = count(app, AccessRequest)
    for token in ("", "forged", form_token(login("bob").get("/projects").text)):
        r = alice.post(f"/projects/{pid}/requests",
                       data={"datasets": [AE], "csrf_token": token}, follow_redirects=False)
        assert r.status_code == 403, token
        assert "This form has expired" in r.text
    r = alice.post("/projects/new", data=PROJECT, follow_redirects=False)
    assert r.status_code == 403
    assert count(app, AccessRequest) == before and count(app, Project) == 1
    # Signed out, a post asks to sign in (and come back to the page the form was on).
    r = login("").post(f"/projects/{pid}/requests", data={"datasets": [AE]},
                       follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == f"/sign-in?next=%2Fprojects%2F{pid}"
    # A form acts for the browser's session only, never for an API token sent along with it.
    with app.state.hub.db.write() as s:
        bob = s.scalar(select(User).where(User.username == "bob"))
        assert bob is not None
        token = accounts.issue_token(s, bob)
    headers = {"Authorization": f"Bearer {token}"}
    r = login("").post(f"/projects/{pid}/requests", data={"datasets": [AE]},
                       headers=headers, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/sign-in")
    page = alice.get(f"/projects/{pid}").text
    r = alice.post(f"/projects/{pid}/requests", headers=headers, follow_redirects=False,
                   data={"datasets": [AE], "csrf_token": token_for(page, f"/projects/{pid}/")})
    assert r.status_code == 403 and "This form has expired" in r.text
    assert count(app, AccessRequest) == before


def test_user_text_is_escaped_everywhere(app: FastAPI, login: Login) -> None:
    alice = login("alice")
    evil = '<script>alert("x")</script>'
    pid = create_project(alice, title=evil, lay_summary=f"{evil} & more")
    ask(alice, pid, [CENSUS])
    pages = [alice.get(f"/projects/{pid}").text, login("").get(f"/projects/{pid}").text,
             login("dan").get("/stewards").text, alice.get("/projects").text,
             login("").get("/register?kind=project.created").text]
    for html in pages:
        assert evil not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in pages[0]
    assert "&lt;script&gt;" in pages[2] and "&lt;script&gt;" in pages[4]


# --- stewards -------------------------------------------------------------------------------

def test_stewards_page_is_for_stewards_of_the_organisation(app: FastAPI, login: Login) -> None:
    alice = login("alice")
    pid = create_project(alice)
    ask(alice, pid, [CENSUS])
    r = alice.get("/stewards")
    assert r.status_code == 403 and "This page is for data stewards" in r.text
    nina = login("nina").get("/stewards").text
    assert "Northshire NHS Foundation Trust" in nina and 'id="queue-empty"' in nina
    dan = login("dan").get("/stewards").text
    item = pending_item(app, pid, CENSUS)
    queued = section(dan, f"pending-{item}", "</section>")
    assert "School census for “Children&#39;s health and schooling”" in queued
    assert "Understand how emergency care use relates to school attendance." in queued
    assert "1 person, 1 accredited" in queued
    assert "this dataset&#39;s policy needs a data steward&#39;s approval" in queued
    assert "alice" not in queued  # the public record: no names
    assert 'value="approve"' in queued and 'value="reject"' in queued


def test_steward_approves_and_the_researcher_sees_both_granted(
        app: FastAPI, login: Login) -> None:
    alice = login("alice")
    pid = create_project(alice)
    ask(alice, pid, [AE, CENSUS])
    item = pending_item(app, pid, CENSUS)
    dan = login("dan")
    r = post_form(dan, "/stewards", f"/stewards/items/{item}/decision",
                  {"decision": "approve", "reason": "Sound purpose."})
    assert r.status_code == 303 and r.headers["location"] == "/stewards?done=approve"
    after = dan.get(r.headers["location"]).text
    assert "You approved the request." in after and f'id="pending-{item}"' not in after
    assert "School census" in after.split('id="active-grants"')[1]
    page = alice.get(f"/projects/{pid}").text
    assert state_of(page, item).startswith("Granted")
    assert "Approved by dan: “Sound purpose.”" in page
    grants = section(page, "grants-table")
    assert grants.count("Active") == 2
    # Controlled data offers metadata, mock rows and jobs run at the data.
    offer = markup.unescape(section(page, "offer-dfe--school-census", "</div>"))
    assert TIERS["controlled"].what_you_get in offer
    assert f"ndl submit BUNDLE --project {pid}" in offer and 'href="/jobs"' in offer
    assert 'href="/datasets/dfe/school-census#mock"' in offer and "private-query" not in offer


def test_rejecting_needs_a_reason_shown_at_the_box(app: FastAPI, login: Login) -> None:
    alice = login("alice")
    pid = create_project(alice)
    ask(alice, pid, [CENSUS])
    item = pending_item(app, pid, CENSUS)
    r = post_form(login("dan"), "/stewards", f"/stewards/items/{item}/decision",
                  {"decision": "reject", "reason": " "})
    assert r.status_code == 422
    assert summary_items(r.text) == ["Say why the request is rejected (at least 5 characters)"]
    assert f'href="#reason-{item}"' in r.text and f'id="reason-{item}-error"' in r.text
    assert state_of(alice.get(f"/projects/{pid}").text, item) == "Waiting for a steward"


def test_decision_errors_are_error_summaries(app: FastAPI, login: Login) -> None:
    dual = login("dual")  # a researcher who is also a dfe steward
    own = create_project(dual)
    ask(dual, own, [CENSUS])
    own_item = pending_item(app, own, CENSUS)
    r = post_form(dual, "/stewards", f"/stewards/items/{own_item}/decision",
                  {"decision": "approve", "reason": ""})
    assert r.status_code == 403
    assert summary_items(r.text) == [
        "You are a member of this project: another steward must decide"]
    assert "You are a member of this project, so another steward must decide." in r.text
    # A steward of another organisation cannot decide it either.
    r = post_form(login("nina"), "/stewards", f"/stewards/items/{own_item}/decision",
                  {"decision": "approve"})
    assert r.status_code == 403
    assert summary_items(r.text) == ["Only a data steward of 'dfe' can decide this"]
    # Decided once; a second decision (a stale page) is refused.
    dan = login("dan")
    assert post_form(dan, "/stewards", f"/stewards/items/{own_item}/decision",
                     {"decision": "approve"}).status_code == 303
    r = post_form(dan, "/stewards", f"/stewards/items/{own_item}/decision",
                  {"decision": "reject", "reason": "Changed my mind."})
    assert r.status_code == 409
    assert summary_items(r.text) == ["This request is already granted"]
    # A researcher is not a steward at all.
    r = post_form(login("alice"), "/projects", f"/stewards/items/{own_item}/decision",
                  {"decision": "approve"})
    assert r.status_code == 403 and "This page is for data stewards" in r.text


def test_revoke_needs_a_reason_and_the_next_question_is_refused(
        app: FastAPI, login: Login) -> None:
    alice = login("alice")
    pid = create_project(alice)
    ask(alice, pid, [AE])
    question = f"/datasets/{AE}/private-query"
    stale = alice.get(question).text  # the form the researcher has open
    assert f'value="{pid}"' in stale
    gid = grant_id(app, pid, AE)
    nina = login("nina")
    listed = nina.get("/stewards").text
    assert f'id="grant-{gid}"' in listed and "Children&#39;s health and schooling" in listed
    assert f'id="grant-{gid}"' not in login("dan").get("/stewards").text
    r = post_form(nina, "/stewards", f"/stewards/grants/{gid}/revoke", {"reason": ""})
    assert r.status_code == 422
    assert summary_items(r.text) == ["Say why the grant is revoked (at least 5 characters)"]
    assert f'id="revoke-reason-{gid}-error"' in r.text
    assert post_form(login("dan"), "/stewards", f"/stewards/grants/{gid}/revoke",
                     {"reason": "Not ours to revoke."}).status_code == 403
    r = post_form(nina, "/stewards", f"/stewards/grants/{gid}/revoke",
                  {"reason": "The project broke its terms."})
    assert r.status_code == 303 and r.headers["location"] == "/stewards?done=revoke"
    assert f'id="grant-{gid}"' not in nina.get("/stewards").text
    # The researcher previews a private question from the form they still have open: refused
    # at the hub, before anything is sent to the datasite or recorded.
    r = alice.post(question, data={
        "project": pid, "sql": "SELECT COUNT(*) AS n FROM data", "rho": "0.1",
        "action": "preview", "csrf_token": form_token(stale)})
    assert r.status_code == 403
    assert summary_items(r.text)[0].startswith(f"Project {pid} has no active grant")
    page = alice.get(f"/projects/{pid}").text
    assert "Revoked" in section(page, "grants-table")
    assert "The project broke its terms." in page
    assert 'id="offer-nhs-trust--ae-attendances"' not in page
    with app.state.hub.db.read() as s:
        assert s.scalar(select(func.count()).select_from(LedgerEntry).where(
            LedgerEntry.kind.in_(("budget.checked", "private_query.submitted")))) == 0


def test_the_project_page_offers_no_exact_counts(app: FastAPI, login: Login) -> None:
    """Exact counts are for open data only: the old count form and its route are gone."""
    alice = login("alice")
    pid = create_project(alice)
    ask(alice, pid, [AE])
    page = alice.get(f"/projects/{pid}").text
    r = alice.post(f"/projects/{pid}/query", data={
        "dataset": AE, "by": "age_band", "csrf_token": form_token(page)})
    assert r.status_code in (404, 405)
    with app.state.hub.db.read() as s:
        assert s.scalar(select(func.count()).select_from(LedgerEntry)
                        .where(LedgerEntry.kind == "query.submitted")) == 0


# --- the register and time to access ------------------------------------------------------

def test_register_newest_first_with_filters_and_verify_help(
        app: FastAPI, login: Login) -> None:
    alice = login("alice")
    pid = create_project(alice)
    ask(alice, pid, [AE, CENSUS])
    anon = login("")
    html = anon.get("/register").text
    seqs = [int(s) for s in re.findall(r'<li class="ndl-register__entry" id="entry-(\d+)">', html)]
    assert seqs == sorted(seqs, reverse=True) and len(seqs) > 5
    assert "ndl verify --hub https://testserver" in html
    assert 'href="/api/register"' in html
    with app.state.hub.db.read() as s:
        head = s.scalar(select(LedgerEntry).order_by(LedgerEntry.seq.desc()).limit(1))
    assert head is not None
    assert f"{head.seq}:{head.hash}" in html and f">{head.hash}</code>" in html
    only = anon.get("/register", params={"kind": "grant.issued"}).text
    # Each entry is a sentence, with the entry as recorded one click away.
    assert "1 entry" in only and f"Project {pid} was given access to {AE} until " in only
    assert "<summary" in only and f"&#34;project&#34;: &#34;{pid}&#34;" in only
    assert 'href="/api/register?kind=grant.issued"' in only
    kind = re.compile(r'Kind <code class="ndl-code">([^<]+)<')
    subject = anon.get("/register", params={"subject": pid}).text
    assert kind.findall(subject) == ["project.created"]
    assert f'href="/projects/{pid}"' in subject
    requests = anon.get("/register", params={"subject": "request:"}).text
    assert kind.findall(requests) == ["request.routed", "request.granted", "request.submitted"]
    assert "No entries match" in anon.get("/register", params={"subject": "%"}).text


def test_register_pages_through_entries(app: FastAPI, login: Login) -> None:
    with app.state.hub.db.read() as s:
        total = int(s.scalar(select(func.count()).select_from(LedgerEntry)) or 0)
    alice = login("alice")
    while total <= register_pages.PAGE_SIZE:
        create_project(alice)
        total += 1
    first = login("").get("/register").text
    assert first.count('<li class="ndl-register__entry" id="entry-') == register_pages.PAGE_SIZE
    assert 'href="/register?page=2"' in first
    second = login("").get("/register?page=2").text
    assert second.count('id="entry-') == total - register_pages.PAGE_SIZE
    assert login("").get("/register?page=nonsense").status_code == 200


def test_access_times_by_tier_and_organisation(app: FastAPI, login: Login) -> None:
    empty = login("").get("/access-times").text
    assert "No requests have been granted yet." in empty and "no decisions yet" in empty
    alice = login("alice")
    pid = create_project(alice)
    ask(alice, pid, [AE, CENSUS])
    html = login("").get("/access-times").text
    assert re.search(r'id="median"><span class="ndl-stat__number">(under a second|\d+ seconds?)<',
                     html)
    assert "1 request waiting" in html
    tiers = section(html, "by-tier")
    assert "Safeguarded" in tiers and "Controlled" not in tiers
    orgs = section(html, "by-org")
    assert 'href="/orgs/nhs-trust">Northshire NHS Foundation Trust</a>' in orgs


@pytest.mark.parametrize("hours,text", [
    (None, "no decisions yet"), (0.0001, "under a second"), (1 / 3600, "1 second"),
    (30 / 3600, "30 seconds"), (0.5, "30 minutes"), (1 / 60, "1 minute"), (3.25, "3.2 hours"),
    (72, "3 days"),
])
def test_durations_read_as_people_say_them(hours: float | None, text: str) -> None:
    assert forms.duration(hours) == text


# --- the wishlist and dashboards ------------------------------------------------------------

def _wish(client: TestClient, **changes: Any) -> Any:
    data = {"title": "School absence by ward", "description": "Absence rates per ward.",
            "orgs": ["dfe"], "linkage": "", "purpose": "", "tier_needed": "open", **changes}
    return post_form(client, "/wishlist/new", "/wishlist/new", data)


def test_wish_form_errors_and_a_new_wish(app: FastAPI, login: Login) -> None:
    bob = login("bob")
    r = _wish(bob, title="abc", description="short", tier_needed="secret")
    assert r.status_code == 422
    assert summary_items(r.text) == ["Say what data you want (5+ characters)",
                                     "Describe the data and why (10+ characters)",
                                     "Must be one of open, safeguarded, controlled"]
    assert 'id="title-error"' in r.text and 'value="abc"' in r.text
    r = _wish(bob, orgs=["no-such-org"])
    assert r.status_code == 422 and 'id="orgs-error"' in r.text
    assert count(app, Wish) == 0
    r = _wish(bob, title='<img src=x onerror="alert(1)">')
    assert r.status_code == 303
    wid = r.headers["location"].split("/")[2].split("?")[0]
    page = bob.get(r.headers["location"]).text
    assert "Your wish was added." in page and "<img src=x" not in page
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in page
    assert f'href="/wishlist/{wid}"' in login("").get("/wishlist").text


def test_votes_comments_and_ordering(app: FastAPI, login: Login) -> None:
    bob, alice = login("bob"), login("alice")
    first = _wish(bob, title="Pupil travel to school").headers["location"].split("?")[0]
    second = _wish(bob, title="Hospital parking use").headers["location"].split("?")[0]
    for client in (bob, alice):
        r = post_form(client, second, f"{second}/vote", {"up": "1", "back": "/wishlist"})
        assert r.status_code == 303 and r.headers["location"] == "/wishlist?done=voted"
    post_form(bob, second, f"{second}/vote", {"up": "1"})  # a second click counts once
    listed = login("").get("/wishlist").text
    titles = re.findall(r'<h2 class="govuk-heading-m govuk-!-margin-bottom-2"><a class="govuk-link"'
                        r' href="/wishlist/\d+">([^<]+)</a>', listed)
    assert titles == ["Hospital parking use", "Pupil travel to school"]
    assert "2 votes" in listed
    assert "Take back my vote" in bob.get(second).text
    post_form(bob, second, f"{second}/vote", {"up": "0"})
    assert count(app, WishVote) == 1
    r = post_form(alice, first, f"{first}/comments", {"text": "<b>Yes</b> please"})
    assert r.status_code == 303
    page = alice.get(first).text
    assert "&lt;b&gt;Yes&lt;/b&gt; please" in page and "<strong>alice</strong>" in page
    r = post_form(alice, first, f"{first}/comments", {"text": "  "})
    assert r.status_code == 422 and 'id="comment-error"' in r.text
    assert "Sign in</a> to vote or comment" in login("").get(first).text


def test_stewards_of_a_named_org_plan_and_publish(app: FastAPI, login: Login) -> None:
    url = _wish(login("bob")).headers["location"].split("?")[0]
    assert 'id="steward-actions"' not in login("bob").get(url).text
    assert 'id="steward-actions"' not in login("nina").get(url).text  # not a named org
    dan = login("dan")
    page = dan.get(url).text
    assert 'id="plan-form"' in page and 'id="publish-form"' in page
    options = re.findall(r'<option value="([^"]+)"', section(page, "publish-form", "</form>"))
    assert sorted(options) == ["dfe/pupil-absence", "dfe/school-census"]
    r = post_form(dan, url, f"{url}/state", {"state": "planned", "dataset": "no-slash"})
    assert r.status_code == 422 and 'id="dataset-planned-error"' in r.text
    r = post_form(dan, url, f"{url}/state", {"state": "planned", "dataset": "dfe/absence"})
    assert r.status_code == 303
    assert "Will be published as" in dan.get(url).text
    r = post_form(login("nina"), url, f"{url}/state", {"state": "published",
                                                       "dataset": "dfe/pupil-absence"})
    assert r.status_code == 403
    r = post_form(dan, url, f"{url}/state", {"state": "published",
                                             "dataset": "dfe/pupil-absence"})
    assert r.status_code == 303
    page = login("").get(url).text
    assert "Published as" in page and 'href="/datasets/dfe/pupil-absence"' in page


def test_org_dashboard(app: FastAPI, login: Login) -> None:
    alice = login("alice")
    pid = create_project(alice)
    ask(alice, pid, [CENSUS])
    wish = _wish(login("bob")).headers["location"].split("?")[0]
    post_form(alice, wish, f"{wish}/vote", {"up": "1"})
    html = login("").get("/orgs/dfe").text
    assert "Department for Education" in html
    stat = re.compile(r'id="stat-(\w+)"><span class="ndl-stat__number">([^<]+)<')
    assert dict(stat.findall(html)) == {"datasets": "2", "requests": "1", "grants": "0",
                                        "queries": "0", "wishes": "1", "wish_votes": "1"}
    assert "1 request is waiting" in html
    assert 'data-dataset="dfe/school-census"' in html
    assert login("").get("/orgs/nowhere").status_code == 404


def test_org_dashboard_counts_private_questions_too(app: FastAPI, login: Login) -> None:
    from ndl.ledger import register

    hub_state = app.state.hub
    with hub_state.db.write() as s:
        for kind in ("private_query.submitted", "query.submitted", "budget.checked"):
            register.append(s, hub_state.key, kind=kind, actor="project:p-1",
                            subject="dfe/school-census", payload={"message_id": kind})
    html = login("").get("/orgs/dfe").text
    stat = re.compile(r'id="stat-(\w+)"><span class="ndl-stat__number">([^<]+)<')
    assert dict(stat.findall(html))["queries"] == "2"  # a budget check is not a question


def test_an_output_checker_is_pointed_at_their_queue(login: Login) -> None:
    note = login("oscar").get("/").text
    assert 'id="output-checker-note"' in note and 'href="/outputs-to-check"' in note
    assert "not available yet" not in note
    assert 'id="output-checker-note"' not in login("alice").get("/").text


def test_missing_things_are_html_404s(login: Login) -> None:
    anon = login("")
    for path in ("/projects/p-nothere", "/wishlist/999", "/wishlist/abc"):
        r = anon.get(path)
        assert r.status_code == 404, path
        assert r.headers["content-type"].startswith("text/html")

