"""Ask a private question, in Chromium, against a real hub and a real datasite.

An accredited researcher with a granted project signs in, opens the safeguarded dataset's
page, follows the link, previews a count by region (the expected error and the budget left,
nothing spent), confirms, and sees a differentially private answer with the empty region
suppressed and the budget gone down by what was spent. A bad question then shows the
allowed SQL form in a GOV.UK error summary and spends nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pyarrow as pa
import pytest

from ndl.testing import DatasiteProcess, HubProcess, granted_project, write_dataset

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery"
AE = "nhs-trust/ae-attendances"
SQL = "SELECT COUNT(*) AS n FROM data GROUP BY region"
# Wales is in the code list but has no rows: its noisy count falls under suppress_below.
REGIONS = [{"code": "London", "label": "London"}, {"code": "North East", "label": "North East"},
           {"code": "Wales", "label": "Wales"}]
POLICY = ("auto_approve: {}\nbudget:\n  per_query: 0.5\n  per_researcher: 1.0\n"
          "  per_project: 2.0\n  total: 10.0\n  suppress_below: 10\n")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]


@dataclass
class Library:
    url: str
    project: str


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    root = tmp_path_factory.mktemp("private-query")
    regions = ["North East"] * 300 + ["London"] * 150
    folder = write_dataset(root / "nhs", "ae-attendances",
                           pa.table({"region": regions,
                                     "acuity": [i % 3 + 1 for i in range(len(regions))]}),
                           title="A&E attendances", publisher="Northshire NHS Trust")
    meta = json.loads((folder / "metadata.json").read_text("utf-8"))
    for col in meta["columns"]:
        if col["name"] == "region":
            col.update(code_list=REGIONS, description="NHS region of the hospital")
    (folder / "metadata.json").write_text(json.dumps(meta), "utf-8")
    (folder / "policy.yaml").write_text(POLICY, "utf-8")
    hub = HubProcess(root / "hub")
    hub.create_org("nhs-trust", "Northshire NHS Trust", "nhs")
    rita = hub.create_user("rita", ["researcher"], accredited=True, password=PASSWORD)
    nina = hub.create_user("nina", ["steward"], org="nhs-trust", password=PASSWORD)
    with hub, DatasiteProcess(root / "nhs", hub.url, org="nhs-trust", token=nina,
                              poll_wait=2):
        found = httpx.get(f"{hub.url}/api/datasets", timeout=10).json()["results"]
        assert [d["id"] for d in found] == [AE]
        project = granted_project(hub.url, rita, [AE], title="Emergency care by region")
        yield Library(hub.url, project)


@pytest.fixture
def browser(chromium: str) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def sign_in(page: Page, url: str, then: str) -> None:
    page.goto(f"{url}/sign-in?next={then}")
    page.get_by_label("Username").fill("rita")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(re.escape(then) + "$"))


def budget_left(page: Page) -> dict[str, str]:
    rows = page.locator("#budget-left .govuk-summary-list__row")
    return {r.get_attribute("id") or "": r.locator("dd").inner_text().strip()
            for r in rows.all()}


def test_preview_confirm_and_see_the_budget_go_down(
        lib: Library, browser: Browser, screenshots: Path) -> None:
    from playwright.sync_api import expect

    problems: list[str] = []
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    sign_in(page, lib.url, f"/datasets/{AE}")

    # From the dataset page to the form; the only granted project is already chosen.
    page.locator("#private-question").get_by_role("link", name="Ask a private question").click()
    page.wait_for_url(re.compile(r"/private-query$"))
    expect(page.locator("h1")).to_have_text("Ask a private question")
    expect(page.get_by_label("Emergency care by region")).to_be_checked()
    expect(page.locator("#sql-hint")).to_contain_text("Allowed: SELECT <aggregates>")
    expect(page.locator("#sql-hint")).to_contain_text(SQL)  # the example, from the code list
    expect(page.get_by_label("How much privacy budget to spend (rho)")).to_have_value("0.1")
    expect(page.locator("#key-list")).to_contain_text("London, North East, Wales")
    page.screenshot(path=str(screenshots / "private-query-form.png"), full_page=True)

    # Preview: the expected error and the budget left; nothing spent.
    page.get_by_label("Your question, as SQL").fill(SQL)
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#nothing-spent")).to_contain_text("Nothing has been spent")
    error = page.locator("#preview-table tr[data-label='n'] .ndl-error")
    expect(error).to_have_text(re.compile(r"^± \d+(\.\d)?$"))
    half = float(error.inner_text().removeprefix("± "))
    assert 2 < half < 10, half  # discrete Gaussian at rho 0.1: sigma ~ 2.2, 95% ~ 4.4
    expect(page.locator("#preview-facts")).to_contain_text("A row")
    # No internal names: library functions, integer types, parameter names.
    for internal in ("make_gaussian", "i64", "n_estimate", "OpenDP"):
        expect(page.locator("#preview")).not_to_contain_text(internal)
    expect(page.locator("#previewed-question")).to_contain_text(SQL)
    assert budget_left(page) == {"budget-researcher": "1", "budget-project": "2",
                                 "budget-dataset": "10", "budget-next": "0.5"}
    page.screenshot(path=str(screenshots / "private-query-preview.png"), full_page=True)

    # Confirm: a differentially private answer, the empty region suppressed, budget spent.
    page.get_by_role("button", name="Confirm and spend rho 0.1").click()
    answer = page.locator("#answer")
    expect(answer.locator("#dp-warning")).to_contain_text(
        "differentially private: noise was added on purpose")
    table = page.locator("#answer-table")
    expect(table.locator("thead th")).to_have_text(["region", "n"])
    expect(table.locator("tbody th")).to_have_text(["London", "North East", "Wales"])
    cells = table.locator("tbody td").all_inner_texts()
    assert cells[2] == "withheld (too few to show)", cells  # never a 0 shown as if real
    # Each number carries its margin in words (ndl.privacy.wording).
    london, north_east = (int(re.fullmatch(r"about ([\d,]+), give or take [\d,]+ \(95%\)",
                                           c)[1].replace(",", "")) for c in cells[:2])
    assert abs(london - 150) < 20 and abs(north_east - 300) < 20, cells  # ~9 sigma
    expect(page.locator("#answer-suppressed")).to_contain_text("1 cell is suppressed")
    expect(page.locator("#rho-spent")).to_contain_text("rho 0.1")
    assert budget_left(page) == {"budget-researcher": "0.9", "budget-project": "1.9",
                                 "budget-dataset": "9.9", "budget-next": "0.5"}
    page.screenshot(path=str(screenshots / "private-query-answer.png"), full_page=True)

    # A bad question: the allowed form, as a GOV.UK error; nothing spent.
    page.get_by_label("Your question, as SQL").fill("SELECT * FROM data")
    page.get_by_role("button", name="Preview").click()
    summary = page.locator(".govuk-error-summary")
    expect(summary).to_contain_text("SELECT * is not allowed: ask for aggregates")
    # The error first; the grammar is one click away, not ten lines in front of it.
    expect(summary).not_to_contain_text("Allowed: SELECT <aggregates>")
    grammar = page.locator("#allowed-sql-details")
    expect(grammar.get_by_text("Allowed: SELECT <aggregates>")).not_to_be_visible()
    grammar.get_by_text("What questions are allowed").click()
    expect(grammar.get_by_text("Allowed: SELECT <aggregates>")).to_be_visible()
    expect(page.locator("#sql-error")).to_contain_text("SELECT * is not allowed")
    expect(page.locator("#sql-hint")).to_contain_text("No joins, subqueries")
    expect(page.locator("#spent-note")).to_contain_text("Nothing was spent")
    expect(page.locator("#answer, #preview")).to_have_count(0)
    page.screenshot(path=str(screenshots / "private-query-bad-sql.png"), full_page=True)
    summary.get_by_role("link").click()  # the summary's link takes you to the box
    expect(page.get_by_label("Your question, as SQL")).to_be_focused()

    # The budget is where the answer left it.
    page.get_by_label("Your question, as SQL").fill(SQL)
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#nothing-spent")).to_be_visible()
    assert budget_left(page)["budget-researcher"] == "0.9"
    # The bad question (422) was on purpose; nothing else went wrong.
    assert all("status of 422" in p for p in problems), problems
