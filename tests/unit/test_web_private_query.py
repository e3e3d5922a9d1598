"""The "Ask a private question" page in-process: who gets the form, what it offers, and every
refusal shown as a GOV.UK error with nothing sent to a datasite and nothing spent.

There is no datasite here, so a question that passes every check waits for an answer that
never comes: those tests assert the timeout. The browser test runs a real datasite and sees
real previews, answers and the budget going down. The answer's table is checked here by
rendering a real OpenDP answer (``ndl.privacy.run``) with a real budget ledger.
"""

from __future__ import annotations

import html as markup
import re
import warnings
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import func, select
from starlette.requests import Request
from test_web_access_pages import (
    AE,
    ask,
    create_project,
    grant_id,
    post_form,
    section,
    summary_items,
    token_for,
)
from test_web_pages import PASSWORD, seed_catalogue

from ndl.access import accounts
from ndl.access.policy import PrivacyBudget
from ndl.access.project_models import Grant
from ndl.catalogue.metadata import DatasetMeta
from ndl.core.db import utcnow
from ndl.federation.models import Message
from ndl.hub.app import create_app
from ndl.hub.deps import public
from ndl.hub.state import HubSettings
from ndl.ledger.models import LedgerEntry
from ndl.privacy import ALLOWED_SQL, SdcRules, from_sql, preview, run
from ndl.privacy.budget import BudgetLedger
from ndl.web import privacy_pages
from ndl.web.privacy_pages import (
    answer_view,
    mechanism_text,
    page_context,
    plain,
    plus_minus,
    preview_view,
    unit_text,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

BASE = "https://testserver"
PAGE = f"/datasets/{AE}/private-query"
OPEN = "nhs-trust/ambulance-handovers"
GOOD_SQL = "SELECT COUNT(*) AS n FROM data GROUP BY age_band"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The catalogue pages' seed, plus two accredited researchers and a steward."""
    folder = tmp_path_factory.mktemp("private-query-hub")
    template = create_app(HubSettings(db_url=str(folder / "hub.db"), data_dir=folder))
    db = template.state.hub.db
    seed_catalogue(db, template.state.hub.key)
    with db.write() as s:
        for name, roles, org in (("alice", ["researcher"], None), ("bob", ["researcher"], None),
                                 ("nina", ["steward"], "nhs-trust")):
            user = accounts.create_user(s, name, roles=roles, org_id=org, password=PASSWORD)
            user.accredited = roles == ["researcher"]
    db.dispose()
    return folder


# The `app` and `login` fixtures live in tests/unit/conftest.py.
Login = Callable[[str], TestClient]


def granted(client: TestClient, title: str = "Waiting times by age") -> str:
    """A project of the signed-in researcher with an active grant for A&E attendances."""
    pid = create_project(client, title=title)
    assert ask(client, pid, [AE]).status_code == 303
    return pid


def question(client: TestClient, data: dict[str, str]) -> Any:
    """Post the question form as the browser does, with this page's CSRF token."""
    return post_form(client, PAGE, PAGE, data)


def sent(app: FastAPI) -> tuple[int, int]:
    """Messages queued for datasites and register entries: a refusal adds neither."""
    with app.state.hub.db.read() as s:
        return (int(s.scalar(select(func.count()).select_from(Message)) or 0),
                int(s.scalar(select(func.count()).select_from(LedgerEntry)) or 0))


def text(html: str) -> str:
    return markup.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))).strip()


def inner(html: str, element_id: str, end: str = "</table>") -> str:
    """The text inside the element with ``element_id``, up to the next ``end``."""
    part = section(html, element_id, end)
    return text(part[part.index(">") + 1:])


# --- who gets the form ----------------------------------------------------------------------

def test_routes_depend_on_public_only() -> None:
    routes = [r for r in privacy_pages.router.routes if isinstance(r, APIRoute)]
    assert {(r.path, m) for r in routes for m in r.methods} == {
        ("/datasets/{site}/{name}/private-query", "GET"),
        ("/datasets/{site}/{name}/private-query", "POST")}
    for route in routes:
        assert [d.call for d in route.dependant.dependencies] == [public], route.path


def test_visitors_are_sent_to_sign_in_and_back(login: Login) -> None:
    anonymous = login("")
    r = anonymous.get(PAGE, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/sign-in?next=%2Fdatasets%2Fnhs-trust%2Fae-attendances" \
                                    "%2Fprivate-query"
    r = anonymous.post(PAGE, data={"sql": GOOD_SQL, "rho": "0.1"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/sign-in?next=")


def test_only_researchers_get_the_form(app: FastAPI, login: Login) -> None:
    nina = login("nina")
    r = nina.get(PAGE)
    assert r.status_code == 403 and r.headers["content-type"].startswith("text/html")
    assert "Only researchers can ask private questions" in r.text
    assert 'id="question-form"' not in r.text
    before = sent(app)
    r = post_form(nina, f"/datasets/{AE}", PAGE, {"project": "p-x", "sql": GOOD_SQL,
                                                  "rho": "0.1"})
    assert r.status_code == 403 and "Only researchers" in r.text
    assert sent(app) == before


def test_other_tiers_and_unknown_datasets_are_refused(login: Login) -> None:
    alice = login("alice")
    r = alice.get(f"/datasets/{OPEN}/private-query")
    assert r.status_code == 403
    # The refusal says what the tier offers instead, in core.tiers' words.
    assert ("private (differentially private) questions are only for safeguarded data"
            in markup.unescape(r.text))
    assert "open data needs no grant: download it, or query it with SQL" \
        in markup.unescape(r.text)
    r = post_form(alice, PAGE, f"/datasets/{OPEN}/private-query",
                  {"project": "p-x", "sql": GOOD_SQL, "rho": "0.1"})
    assert r.status_code == 403 and "safeguarded data" in r.text
    assert alice.get("/datasets/nhs-trust/nothing-here/private-query").status_code == 404


def test_without_a_grant_the_page_says_how_to_get_one(login: Login) -> None:
    bob = login("bob")
    create_project(bob)  # a project, but no grant for A&E
    r = bob.get(PAGE)
    assert r.status_code == 200
    assert 'id="no-grant"' in r.text and 'href="/projects"' in r.text
    assert 'id="question-form"' not in r.text


# --- what the form offers -------------------------------------------------------------------

def test_the_form_offers_granted_projects_the_allowed_sql_and_an_example(
        login: Login) -> None:
    alice = login("alice")
    pid = granted(alice)
    other = create_project(alice, title="No grant here")
    html = alice.get(PAGE).text
    form = section(html, "question-form", "</form>")
    assert re.findall(r'name="project" type="radio" value="([^"]+)"', form) == [pid]
    assert other not in form
    assert "checked" in form.split('name="project"')[1].split(">")[0]  # the only one
    assert ALLOWED_SQL in text(form)
    assert f"For example: {GOOD_SQL}" in text(form)  # built from the public key age_band
    assert re.search(r'id="rho" name="rho"[^>]* value="0.1"', form)
    assert "More than 0 and at most 0.5, this dataset" in text(form)
    keys = inner(html, "key-list", "</dl>")
    assert keys == "age_band 0-15, 16-64, 65+"


def test_the_dataset_and_project_pages_link_to_it(login: Login) -> None:
    alice = login("alice")
    pid = granted(alice)
    assert f'href="/datasets/{AE}/private-query"' in alice.get(f"/datasets/{AE}").text
    project = alice.get(f"/projects/{pid}").text
    assert f'href="/datasets/{AE}/private-query?project={pid}"' in project
    anonymous = login("").get(f"/datasets/{AE}").text
    assert f'href="/sign-in?next=/datasets/{AE}/private-query"' in anonymous
    assert "Sign in to ask a private question" in anonymous
    steward = login("nina").get(f"/datasets/{AE}").text
    assert "private-query" not in steward
    assert "Ask a private question" not in login("alice").get(f"/datasets/{OPEN}").text


def test_a_project_can_be_chosen_through_the_address(login: Login) -> None:
    alice = login("alice")
    first, second = granted(alice, "First"), granted(alice, "Second")
    form = section(alice.get(f"{PAGE}?project={first}").text, "question-form", "</form>")
    checked = re.findall(r'value="(p-[0-9a-f]+)" checked', form)
    assert checked == [first] and second in form


# --- refusals: GOV.UK errors, nothing sent, nothing spent -----------------------------------

@pytest.mark.parametrize("sql,first_words", [
    ("SELECT * FROM data", "SELECT * is not allowed: ask for aggregates"),
    ("SELECT COUNT(*) FROM data; DROP TABLE data", "Only one statement is allowed"),
    ("SELECT COUNT(*) FROM data GROUP BY wait_minutes", "Group_by: 'wait_minutes' is not a "
                                                        "public key"),
    ("SELECT SUM(nhs_number) FROM data", "identifies people"),
])
def test_bad_sql_shows_the_allowed_form_and_sends_nothing(
        app: FastAPI, login: Login, sql: str, first_words: str) -> None:
    alice = login("alice")
    pid = granted(alice)
    before = sent(app)
    r = question(alice, {"project": pid, "sql": sql, "rho": "0.1", "action": "preview"})
    assert r.status_code == 422
    (message,) = summary_items(r.text)
    assert first_words in message and "Allowed" not in message  # not the JSON spec's list
    summary = inner(r.text, "error-summary", "</ul>")
    # The error first; the SQL form's grammar (not the JSON spec's) one click away.
    assert summary.startswith("There is a problem ") and first_words in summary
    assert ALLOWED_SQL not in summary and "(sum)" not in summary and "(mean)" not in summary
    assert ALLOWED_SQL in inner(r.text, "allowed-sql-details", "</details>")
    assert 'href="#sql"' in r.text and first_words in inner(r.text, "sql-error", "</p>")
    assert ALLOWED_SQL in inner(r.text, "sql-hint", "</div>")
    assert f">{markup.escape(sql)}</textarea>" in r.text  # what was typed is kept
    assert "Nothing was spent" in section(r.text, "spent-note", "</div>")
    assert sent(app) == before


@pytest.mark.parametrize("rho,message", [
    ("", "Enter how much privacy budget to spend (rho), for example 0.1"),
    ("lots", "Rho must be a number, for example 0.1"),
    ("nan", "Rho must be a number, for example 0.1"),
    ("0", "Rho must be more than 0"),
    ("0.9", "Rho must be 0.5 or less: that is this dataset's limit for one question"),
])
def test_rho_is_checked(app: FastAPI, login: Login, rho: str, message: str) -> None:
    alice = login("alice")
    pid = granted(alice)
    before = sent(app)
    r = question(alice, {"project": pid, "sql": GOOD_SQL, "rho": rho, "action": "run"})
    assert r.status_code == 422
    assert summary_items(r.text) == [message]
    assert 'href="#rho"' in r.text and 'id="rho-error"' in r.text
    assert sent(app) == before


def test_every_missing_answer_is_listed_in_order(app: FastAPI, login: Login) -> None:
    alice = login("alice")
    granted(alice)
    before = sent(app)
    r = question(alice, {"project": "", "sql": " ", "rho": "", "action": "preview"})
    assert r.status_code == 422
    assert summary_items(r.text) == [
        "Choose the project you are asking for",
        "Enter your question as SQL, for example SELECT COUNT(*) AS n FROM data",
        "Enter how much privacy budget to spend (rho), for example 0.1"]
    box = r.text.split("govuk-error-summary__list")[1].split("</ul>")[0]
    assert re.findall(r'<a href="(#[^"]+)">', box) == [
        "#project", "#sql", "#rho"]
    assert sent(app) == before


@pytest.mark.parametrize("how", ["revoked", "expired"])
def test_a_revoked_or_expired_grant_is_refused_before_anything_is_sent(
        app: FastAPI, login: Login, how: str) -> None:
    alice = login("alice")
    pid = granted(alice)
    page = alice.get(PAGE).text  # the form, as it was while the grant was active
    gid = grant_id(app, pid, AE)
    if how == "revoked":
        r = post_form(login("nina"), "/stewards", f"/stewards/grants/{gid}/revoke",
                      {"reason": "The project broke its terms of use."})
        assert r.status_code == 303
    else:
        with app.state.hub.db.write() as s:
            grant = s.get(Grant, gid)
            assert grant is not None
            grant.expires_at = utcnow() - timedelta(minutes=1)
    before = sent(app)
    for action in ("preview", "run"):
        r = alice.post(PAGE, follow_redirects=False, data={
            "project": pid, "sql": GOOD_SQL, "rho": "0.1", "action": action,
            "csrf_token": token_for(page, PAGE)})
        assert r.status_code == 403
        assert summary_items(r.text) == [
            f"Project {pid} has no active grant for {AE}: ask for access with 'ndl request "
            f"{pid} {AE}' (grants expire and can be revoked)"]
        assert 'href="#project"' in r.text and 'id="project-error"' in r.text
        assert 'id="no-grant"' in r.text  # no project has a grant now
        assert "Nothing was spent" in r.text
    assert sent(app) == before


def test_someone_elses_project_is_refused(app: FastAPI, login: Login) -> None:
    pid = granted(login("alice"))
    bob = login("bob")
    granted(bob, "Bob's own")
    before = sent(app)
    r = question(bob, {"project": pid, "sql": GOOD_SQL, "rho": "0.1", "action": "preview"})
    assert r.status_code == 403
    assert summary_items(r.text) == [f"You are not a member of project {pid}"]
    r = question(bob, {"project": "p-nothere", "sql": GOOD_SQL, "rho": "0.1"})
    assert r.status_code == 404 and "does not exist" in summary_items(r.text)[0]
    assert sent(app) == before


def test_posts_without_this_sessions_csrf_token_change_nothing(
        app: FastAPI, login: Login) -> None:
    alice = login("alice")
    pid = granted(alice)
    before = sent(app)
    bob_token = token_for(login("bob").get(PAGE).text, PAGE)
    for token in ("", "forged", bob_token):
        r = alice.post(PAGE, follow_redirects=False, data={
            "project": pid, "sql": GOOD_SQL, "rho": "0.1", "action": "run",
            "csrf_token": token})
        assert r.status_code == 403 and "This form has expired" in r.text, token
    assert sent(app) == before


def test_a_datasite_that_does_not_answer_is_a_timeout_error(app: FastAPI, login: Login) -> None:
    alice = login("alice")
    pid = granted(alice)
    r = question(alice, {"project": pid, "sql": GOOD_SQL, "rho": "0.1", "action": "preview"})
    assert r.status_code == 504
    (message,) = summary_items(r.text)
    assert message.startswith("Datasite 'nhs-trust' did not answer within 1 s")
    assert 'href="#question"' in r.text and 'id="question-error"' in r.text
    assert "Nothing was spent" in section(r.text, "spent-note", "</div>")
    assert f">{GOOD_SQL}</textarea>" in r.text and 'id="preview"' not in r.text
    r = question(alice, {"project": pid, "sql": GOOD_SQL, "rho": "0.1", "action": "run"})
    assert r.status_code == 504 and 'id="answer"' not in r.text
    assert "preview again to see the budget left" in section(r.text, "spent-note", "</div>")
    with app.state.hub.db.read() as s:
        kinds = [(m.kind, m.state) for m in s.scalars(select(Message).order_by(
            Message.created_at))]
    assert kinds == [("budget.status", "expired"), ("private_query", "expired")]


# --- what a preview and an answer look like -------------------------------------------------

def _meta() -> DatasetMeta:
    return DatasetMeta.model_validate({
        "name": "ae", "title": "A&E", "publisher": "Trust", "tier": "safeguarded",
        "columns": [{"name": "region", "type": "string",
                     "code_list": [{"code": r} for r in ("North", "South", "Wales")]},
                    {"name": "age", "type": "integer", "minimum": 0, "maximum": 110}]})


def _table() -> pa.Table:
    # Wales has 2 rows: its noisy count falls under the suppression threshold.
    regions = ["North"] * 400 + ["South"] * 300 + ["Wales"] * 2
    return pa.table({"region": regions, "age": [i % 90 for i in range(len(regions))]})


def test_plus_minus_says_what_the_noise_is_likely_to_be() -> None:
    assert plus_minus(12.345) == "± 12.3"
    assert plus_minus(1234.5) == "± 1,234"
    assert plus_minus(0.01234) == "± 0.012"
    assert plus_minus([2.0, None, 5.5]) == "± 2.0 to ± 5.5, by group"
    assert plus_minus([None]) == "Shown with the answer, by group"
    assert plus_minus(None) == "Not stated"


def test_a_preview_shows_each_error_the_unit_and_the_budget(tmp_path: Path) -> None:
    meta = _meta()
    q = from_sql("SELECT COUNT(*) AS n, AVG(age) AS mean_age FROM data GROUP BY region", meta,
                 rho=0.1)
    limits = PrivacyBudget()
    left = BudgetLedger(tmp_path / "budget.db").remaining(
        limits, dataset="ae", project="p-1", researcher="alice")
    view = preview_view({"preview": preview(q, meta, 700), "budget_remaining": left.to_json(),
                         "spent": 0})
    assert view["rho"] == "0.1" and view["groups"] == 3 and view["confidence"] == 95
    assert [(a["label"], a["what"]) for a in view["aggregates"]] == [
        ("n", "Count of rows"), ("mean_age", "Mean of age")]
    assert all(re.fullmatch(r"± [\d,.]+", a["error"]) for a in view["aggregates"])
    assert view["unit"].startswith("A row")
    assert all("make_" not in a["mechanism"] and "i64" not in a["mechanism"]
               and "n_estimate" not in a["note"] for a in view["aggregates"]), view
    assert [(b["key"], b["value"]) for b in view["budget"]] == [
        ("Yours, on this dataset", "2"), ("Your project's, on this dataset", "5"),
        ("The dataset's, for everyone", "50"),
        ("Most you can spend on the next question", "0.5")]


def test_an_answer_names_suppressed_cells_and_the_budget_left(
        app: FastAPI, login: Login, tmp_path: Path) -> None:
    meta = _meta()
    q = from_sql("SELECT COUNT(*) AS n, AVG(age) AS mean_age FROM data GROUP BY region", meta,
                 rho=0.5)
    limits = PrivacyBudget(suppress_below=20)
    left = BudgetLedger(tmp_path / "budget.db").spend(
        limits, dataset="ae", project="p-1", researcher="alice", rho=0.5, message_id="m-1")
    result = run(q, _table(), meta, sdc=SdcRules(suppress_below=20))
    view = answer_view({**result.model_dump(mode="json"), "budget_remaining": left.to_json()})
    assert view["columns"] == ["region", "n", "mean_age"] and view["n_keys"] == 1
    rows = {r[0]["text"]: [c["text"] for c in r[1:]] for r in view["rows"]}
    # A tiny group, after the noise: withheld in words, never a count or a mean of 0.
    assert rows["Wales"] == ["withheld (too few to show)", "withheld (too few to show)"]
    # Each number carries its margin in words (ndl.privacy.wording).
    north = re.fullmatch(r"about ([\d,]+), give or take [\d,]+ \(95%\)", rows["North"][0])
    assert north and abs(int(north[1].replace(",", "")) - 400) < 60, rows["North"]
    assert re.fullmatch(r"about [\d.,]+, give or take [\d.,]+ \(95%\)", rows["South"][1])
    assert view["suppressed"] == 2 and view["suppress_below"] == 20
    assert result.suppressed >= 1  # the count; the mean may be withheld for having no rows
    assert view["rho_spent"] == "0.5"
    assert [b["value"] for b in view["budget"]] == ["1.5", "4.5", "49.5", "0.5"]

    # The page shows it as a noisy answer, with the budget left.
    alice = login("alice")
    granted(alice)
    with app.state.hub.db.read() as s:
        who = accounts.authenticate_token(s, alice.cookies["ndl_session"])
        template, context = page_context(s, AE, who, answer=view)
    request = Request({"type": "http", "method": "POST", "path": PAGE, "headers": [],
                       "query_string": b"", "app": app, "scheme": "https",
                       "server": ("testserver", 443), "root_path": ""})
    html = app.state.ndl_pages.render(request, template, context).body.decode()
    answer = inner(html, "answer-table")
    assert "Noisy by design" in answer
    assert "Wales withheld (too few to show) withheld (too few to show)" in answer
    assert "differentially private: noise was added on purpose" in inner(
        html, "dp-warning", "</div>")
    assert "2 cells are suppressed: noisy counts under 20" in html
    assert inner(html, "rho-spent", "</div>") == "Privacy budget spent rho 0.5"
    assert inner(html, "budget-left", "</dl>").startswith(
        "Yours, on this dataset 1.5 Your project's, on this dataset 4.5")
    assert 'id="confirm-form"' not in html  # an answer, not a preview


def test_the_privacy_unit_is_read_from_the_service_words() -> None:
    # The service says "person (identified by ...; at most N rows each)": the page must
    # say "a person", not fall back to "a row".
    assert unit_text("person (identified by nhs_number; at most 5 rows each)", 5) == (
        "A person: at most 5 rows per person are used, so the noise hides whether any one "
        "person is in the data")
    assert unit_text("row (the dataset has no person identifier)", None).startswith("A row")


def test_internal_names_become_plain_words() -> None:
    assert mechanism_text("discrete Gaussian (OpenDP make_gaussian, i64)") == (
        "Whole-number noise (discrete Gaussian)")
    assert mechanism_text("Gaussian (OpenDP make_gaussian, f64)") == "Bell-curve noise (Gaussian)"
    assert "n_estimate" not in plain("over the mean's position; give n_estimate (rows per group)")


def test_sql_errors_speak_sql() -> None:
    from ndl.web.privacy_pages import _sql_error

    said = _sql_error("Aggregate 2 (mean): column 'age' needs bounds. Allowed: count, mean(col)")
    assert said.startswith("AVG (item 2 after SELECT): column 'age' needs bounds"), said
    assert "mean" not in said and "Allowed" not in said
