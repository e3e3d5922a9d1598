"""Find a dataset the way a person does: home page → search → dataset page, in Chromium."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page, Response

pytestmark = pytest.mark.browser


def test_search_and_open_a_dataset(hub_url: str, browser_page: Page, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page = browser_page
    problems: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            problems.append(msg.text)

    def on_response(resp: Response) -> None:
        if resp.status >= 400:
            problems.append(f"HTTP {resp.status} for {resp.url}")

    page.on("console", on_console)
    page.on("response", on_response)
    page.on("pageerror", lambda exc: problems.append(str(exc)))

    page.goto(f"{hub_url}/")
    expect(page).to_have_title(re.compile("National Data Library"))
    expect(page.locator(".govuk-generic-header")).to_contain_text("National Data Library (ndl)")
    expect(page.locator("#count-datasets .ndl-stat__number")).to_have_text("3")
    # The GOV.UK Frontend styles and scripts loaded, under the page's CSP.
    expect(page.locator("body")).to_have_class(re.compile(r"\bgovuk-frontend-supported\b"))
    font = page.evaluate("getComputedStyle(document.querySelector('h1')).fontFamily")
    assert font.lower().startswith("arial"), font
    # Not a GOV.UK service: no crown, no GOV.UK wordmark.
    assert page.locator(".govuk-logo, .govuk-header__logotype, .govuk-footer__crown").count() == 0
    page.screenshot(path=str(tmp_path / "home.png"), full_page=True)

    page.get_by_label("Search for datasets").fill("A&E")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r"/search\?q=A%26E"))
    expect(page.locator("#result-count")).to_contain_text("2 datasets found")
    results = page.locator("#results li h2 a")
    expect(results.first).to_have_text("A&E attendances")
    page.screenshot(path=str(tmp_path / "search.png"), full_page=True)

    results.first.click()
    page.wait_for_url(re.compile(r"/datasets/nhs-trust/ae-attendances$"))
    expect(page.locator("h1")).to_have_text("A&E attendances")
    expect(page.locator(".govuk-tag", has_text="Safeguarded")).to_be_visible()
    rows = page.locator("#schema tbody tr")
    expect(rows).to_have_count(4)
    expect(rows.first.locator("th")).to_have_text("nhs_number")
    expect(page.locator("#schema")).to_contain_text("arrival_date")
    expect(page.locator("#access")).to_contain_text("registered researcher with a project")
    expect(page.locator("#json-link")).to_have_attribute(
        "href", "/api/datasets/nhs-trust/ae-attendances")
    page.screenshot(path=str(tmp_path / "dataset.png"), full_page=True)

    assert problems == [], problems
