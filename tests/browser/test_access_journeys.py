"""Access without months of waiting, in Chromium, against a real hub and two real datasites.

Journey 1: a researcher asks for two datasets at two organisations in one request; one is
granted at once by its policy, a steward of the other organisation approves the other, and the
researcher sees both granted, each with what its tier offers, and previews a private question
on the safeguarded one. Journey 2: a steward revokes a grant and the researcher's next private
question is refused.
"""

from __future__ import annotations

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
AE = "nhs-trust/ae-attendances"   # organisation A, safeguarded: granted at once
PUPILS = "dfe/pupils"             # organisation B, controlled: a steward decides
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]


@dataclass
class Library:
    hub: HubProcess
    rita: str  # the accredited researcher's API token (journey 2's setup only)

    @property
    def url(self) -> str:
        return self.hub.url


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    root = tmp_path_factory.mktemp("journeys")
    regions = ["North East"] * 30 + ["London"] * 15
    write_dataset(root / "nhs", "ae-attendances",
                  pa.table({"region": regions, "acuity": [i % 3 + 1 for i in range(45)]}),
                  title="A&E attendances", publisher="Northshire NHS Trust")
    write_dataset(root / "dfe", "pupils", pa.table({"region": regions}), tier="controlled",
                  title="Pupil census", publisher="Department for Education")
    hub = HubProcess(root / "hub")
    hub.create_org("nhs-trust", "Northshire NHS Trust", "nhs")
    hub.create_org("dfe", "Department for Education", "education")
    rita = hub.create_user("rita", ["researcher"], accredited=True, password=PASSWORD)
    nina = hub.create_user("nina", ["steward"], org="nhs-trust", password=PASSWORD)
    dan = hub.create_user("dan", ["steward"], org="dfe", password=PASSWORD)
    with hub, DatasiteProcess(root / "nhs", hub.url, org="nhs-trust", token=nina,
                              poll_wait=2), \
            DatasiteProcess(root / "dfe", hub.url, org="dfe", token=dan, poll_wait=2):
        found = httpx.get(f"{hub.url}/api/datasets", timeout=10).json()["results"]
        assert {d["id"] for d in found} == {AE, PUPILS}
        yield Library(hub, rita)


@pytest.fixture
def browser(chromium: str) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def new_page(browser: Browser, problems: list[str]) -> Page:
    """A page in its own browser context (its own cookies), recording console errors."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    return page


def sign_in(page: Page, url: str, username: str, then: str = "/") -> None:
    page.goto(f"{url}/sign-in?next={then}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(re.escape(then) + "$"))


def sign_out(page: Page) -> None:
    page.locator("#account").get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/sign-in\?signed_out=1$"))


SQL = "SELECT COUNT(*) AS n FROM data"


def preview_question(page: Page) -> None:
    """Preview a private question on the open private-question page: the expected error and
    the budget left come back from the datasite, and nothing is spent."""
    from playwright.sync_api import expect

    page.get_by_label("Your question, as SQL").fill(SQL)
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#nothing-spent")).to_contain_text("Nothing has been spent")
    expect(page.locator("#preview-table tr[data-label='n'] .ndl-error")).to_have_text(
        re.compile(r"^± [\d.,]+$"))


def test_one_request_two_organisations_auto_grant_and_steward_approval(
        lib: Library, browser: Browser, screenshots: Path) -> None:
    from playwright.sync_api import expect

    problems: list[str] = []
    page = new_page(browser, problems)
    sign_in(page, lib.url, "rita")

    # A new project, from the header's Projects link.
    page.locator(".govuk-service-navigation").get_by_role("link", name="Projects").click()
    page.get_by_role("button", name="Create a new project").click()
    page.get_by_label("Project title").fill("Emergency care and schooling")
    page.get_by_label("Purpose", exact=True).fill(
        "Measure how emergency care use relates to school attendance, by region.")
    page.get_by_label("Research", exact=True).check()
    page.get_by_label("Summary for the public").fill("Counts by region to plan services.")
    page.get_by_label("Legal basis").select_option("public-task")
    page.get_by_label("Day").fill("31")
    page.get_by_label("Month").fill("12")
    page.get_by_label("Year").fill("2099")
    page.get_by_role("button", name="Create project").click()
    page.wait_for_url(re.compile(r"/projects/p-[0-9a-f]+\?created=1$"))
    project_url = page.url.split("?")[0]
    expect(page.locator("h1")).to_have_text("Emergency care and schooling")

    # Both datasets, at two organisations, in one request.
    page.get_by_label("A&E attendances").check()
    page.get_by_label("Pupil census").check()
    page.screenshot(path=str(screenshots / "project-request-form.png"), full_page=True)
    page.get_by_role("button", name="Ask for access").click()
    expect(page.locator("#request-sent")).to_contain_text(
        "1 granted at once, 1 waiting for a data steward")
    items = page.locator("table[id^='request-'] tbody tr")
    expect(items).to_have_count(2)
    expect(items.filter(has_text="A&E attendances").locator(".ndl-state")).to_contain_text(
        "Granted")
    expect(items.filter(has_text="Pupil census").locator(".ndl-state")).to_have_text(
        "Waiting for a steward")
    page.screenshot(path=str(screenshots / "project-one-granted-one-pending.png"),
                    full_page=True)
    sign_out(page)

    # Organisation B's steward approves, from the queue.
    sign_in(page, lib.url, "dan")
    page.locator(".govuk-service-navigation").get_by_role("link", name="Stewards").click()
    queued = page.locator(f"section[data-dataset='{PUPILS}']")
    expect(queued).to_contain_text("Emergency care and schooling")
    expect(queued).to_contain_text("needs a data steward")
    queued.get_by_label("Reason").fill("Sound purpose and legal basis.")
    page.screenshot(path=str(screenshots / "stewards-queue.png"), full_page=True)
    queued.get_by_role("button", name="Approve").click()
    expect(page.locator("#done")).to_contain_text("You approved the request.")
    expect(page.locator(f"section[data-dataset='{PUPILS}'] form[action$='/revoke']")
           ).to_have_count(1)  # now an active grant of dfe's
    sign_out(page)

    # The researcher sees both granted, and counts each at its own datasite.
    sign_in(page, lib.url, "rita", then="/projects")
    page.get_by_role("link", name="Emergency care and schooling").click()
    page.wait_for_url(project_url)
    for dataset in (AE, PUPILS):
        expect(page.locator(f"table[id^='request-'] tr[data-dataset='{dataset}'] .ndl-state")
               ).to_contain_text("Granted")
        expect(page.locator(f"#grants-table tr[data-dataset='{dataset}']")).to_contain_text(
            "Active")
    expect(page.locator("table[id^='request-']")).to_contain_text(
        "Approved by dan: “Sound purpose and legal basis.”")
    # What each grant's tier offers: controlled data runs code at the data; safeguarded
    # data is asked private questions, from the link that names this project.
    pupils = page.locator(f"#offer-{PUPILS.replace('/', '--')}")
    expect(pupils).to_contain_text("ndl submit BUNDLE --project")
    expect(pupils.get_by_role("link", name="See its metadata and mock rows")).to_have_count(1)
    page.screenshot(path=str(screenshots / "project-grant-offers.png"), full_page=True)
    page.locator(f"#private-{AE.replace('/', '--')}").get_by_role("link").click()
    page.wait_for_url(re.compile(r"/private-query\?project=p-[0-9a-f]+$"))
    expect(page.get_by_label("Emergency care and schooling")).to_be_checked()
    preview_question(page)

    # The wait is measured: both organisations appear on the time-to-access page.
    page.locator(".govuk-service-navigation").get_by_role("link", name="Time to access").click()
    expect(page.locator("#by-org")).to_contain_text("Northshire NHS Trust")
    expect(page.locator("#by-org")).to_contain_text("Department for Education")
    page.screenshot(path=str(screenshots / "access-times.png"), full_page=True)
    assert problems == [], problems


def test_revoked_grant_refuses_the_next_question(
        lib: Library, browser: Browser, screenshots: Path) -> None:
    from playwright.sync_api import expect

    pid = granted_project(lib.url, lib.rita, [AE], title="Waiting times by region")
    problems: list[str] = []
    researcher, steward = new_page(browser, problems), new_page(browser, problems)
    # Journey 1's project holds a grant too: the link from a project names which one.
    sign_in(researcher, lib.url, "rita", then=f"/datasets/{AE}/private-query?project={pid}")
    expect(researcher.get_by_label("Waiting times by region")).to_be_checked()
    preview_question(researcher)  # granted: it works

    sign_in(steward, lib.url, "nina", then="/stewards")
    grant = steward.locator(f"section[data-project='{pid}'][data-dataset='{AE}']")
    grant.get_by_role("button", name="Revoke grant").click()
    expect(steward.locator(".govuk-error-summary")).to_contain_text(
        "Say why the grant is revoked")
    grant.get_by_label("Reason for revoking").fill("The project broke its terms of use.")
    grant.get_by_role("button", name="Revoke grant").click()
    expect(steward.locator("#done")).to_contain_text("You revoked the grant")
    expect(steward.locator(f"section[data-project='{pid}']")).to_have_count(0)

    # The researcher's page still shows the form; the next question is refused at the hub.
    researcher.get_by_role("button", name="Preview").click()
    expect(researcher.locator(".govuk-error-summary")).to_contain_text(
        f"has no active grant for {AE}")
    expect(researcher.locator("#spent-note")).to_contain_text("Nothing was spent")
    expect(researcher.locator("#preview, #answer")).to_have_count(0)
    researcher.screenshot(path=str(screenshots / "question-refused-after-revocation.png"),
                          full_page=True)
    researcher.goto(f"{lib.url}/projects/{pid}")
    expect(researcher.locator(f"#grants-table tr[data-dataset='{AE}']")).to_contain_text(
        "Revoked")
    expect(researcher.locator(f"#grants-table tr[data-dataset='{AE}']")).to_contain_text(
        "The project broke its terms of use.")
    expect(researcher.locator(f"#offer-{AE.replace('/', '--')}")).to_have_count(0)

    # The public register records the revocation, for anyone to check.
    researcher.goto(f"{lib.url}/register?kind=grant.revoked")
    # Each entry is a sentence a member of the public reads; the JSON is one click away.
    expect(researcher.locator("#register > li")).to_have_count(1)
    entry = researcher.locator("#register > li").first
    expect(entry.locator(".ndl-register__sentence")).to_have_text(re.compile(
        r"^A data steward of nhs-trust withdrew project \S+'s access to "
        + re.escape(AE) + r" \(reason: The project broke its terms of use\)\.$"))
    json_box = entry.locator(".ndl-register__json")
    expect(json_box).not_to_be_visible()
    entry.get_by_text("The entry as recorded").click()
    expect(json_box).to_be_visible()
    expect(json_box).to_contain_text('"kind": "grant.revoked"')
    researcher.screenshot(path=str(screenshots / "register.png"), full_page=True)
    # The refused question (403) and the missing reason (422) were on purpose; nothing else.
    assert all("status of 403" in p or "status of 422" in p for p in problems), problems
