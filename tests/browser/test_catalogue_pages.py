"""Find a dataset the way a person does, in Chromium: home page → search → facets → dataset
page → sign in → mock rows → sign out."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ndl.core.tiers import TIERS

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page, Response

pytestmark = pytest.mark.browser


def watch(page: Page) -> list[str]:
    """Console errors (a CSP violation is one), page errors and HTTP errors, as they happen."""
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
    return problems


def test_search_and_open_a_dataset(hub_url: str, browser_page: Page, screenshots: Path) -> None:
    from playwright.sync_api import expect

    page = browser_page
    problems = watch(page)

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
    expect(page.locator("#account")).to_contain_text("Sign in")
    page.screenshot(path=str(screenshots / "home.png"), full_page=True)

    page.get_by_label("Search for datasets").fill("A&E")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r"/search\?q=A%26E"))
    expect(page.locator("#result-count")).to_contain_text("2 datasets found")
    results = page.locator("#results li h2 a")
    expect(results.first).to_have_text("A&E attendances")

    results.first.click()
    page.wait_for_url(re.compile(r"/datasets/nhs-trust/ae-attendances$"))
    expect(page.locator("h1")).to_have_text("A&E attendances")
    expect(page.locator(".govuk-tag", has_text="Safeguarded")).to_be_visible()
    rows = page.locator("#schema > tbody > tr")
    expect(rows).to_have_count(4)
    expect(rows.first.locator("th")).to_have_text("nhs_number")
    expect(page.locator("#schema")).to_contain_text("arrival_date")
    # The tier explained in core.tiers' words.
    expect(page.locator("#access")).to_contain_text(TIERS["safeguarded"].summary)
    expect(page.locator("#json-link")).to_have_attribute(
        "href", "/api/datasets/nhs-trust/ae-attendances")
    assert problems == [], problems


def test_facets_then_sign_in_to_see_mock_rows(
        hub_url: str, browser_page: Page, screenshots: Path, credentials: tuple[str, str],
) -> None:
    from playwright.sync_api import expect

    page = browser_page
    username, password = credentials
    problems = watch(page)

    # Search everything, then narrow by a facet: one click, no JavaScript needed.
    page.goto(f"{hub_url}/search")
    expect(page.locator("#result-count")).to_contain_text("3 datasets found")
    for facet in ("publisher", "tier", "theme", "geography", "year", "join_key"):
        expect(page.locator(f"#facet-{facet}")).to_be_visible()
    page.locator("#facet-tier").get_by_role("link", name="Safeguarded").click()
    page.wait_for_url(re.compile(r"/search\?tier=safeguarded$"))
    expect(page.locator("#result-count")).to_contain_text("1 dataset found")
    expect(page.locator("#results li h2 a")).to_have_text(["A&E attendances"])
    # Facets combine; the chosen value is marked and un-chooses itself.
    page.locator("#facet-join_key").get_by_role("link", name="NHS number").click()
    page.wait_for_url(re.compile(r"tier=safeguarded&join_key=nhs_number"))
    expect(page.locator("#chosen-filters")).to_contain_text("Join key type: NHS number")
    expect(page.locator("#results li")).to_have_count(1)
    expect(page.locator("#results")).to_contain_text("Northshire, 1 April 2019 to 31 March 2024")
    page.screenshot(path=str(screenshots / "search-facets.png"), full_page=True)
    page.locator("#clear-filters").click()
    expect(page.locator("#result-count")).to_contain_text("3 datasets found")

    # Sorting is a GET form: choose, press Sort.
    page.get_by_label("Sort by").select_option("title")
    page.get_by_role("button", name="Sort").click()
    page.wait_for_url(re.compile(r"sort=title"))
    expect(page.locator("#results li h2 a")).to_have_text(
        ["A&E attendances", "Ambulance handovers", "Outpatient appointments"])

    # The dataset page: schema with a code list, how to get access and the wait.
    page.get_by_role("link", name="A&E attendances").click()
    page.wait_for_url(re.compile(r"/datasets/nhs-trust/ae-attendances$"))
    expect(page.locator("#summary-licence a")).to_have_text("Open Government Licence v3.0")
    expect(page.locator("#summary-contact a")).to_have_attribute(
        "href", "mailto:data@northshire.nhs.example")
    expect(page.locator("#schema > tbody > tr")).to_have_count(4)
    codes = page.locator("#column-age_band details")
    codes.locator("summary").click()
    expect(codes.locator("table")).to_contain_text("Older people")
    expect(page.locator("#expected-wait")).to_contain_text("no wait")
    expect(page.locator("#access-linkable a")).to_have_text("Outpatient appointments")
    doc = json.loads(page.locator("script[type='application/ld+json']").text_content() or "")
    assert doc["@type"] == "Dataset" and doc["temporalCoverage"] == "2019-04-01/2024-03-31"
    expect(page.locator("#mock")).to_contain_text("Sign in to preview and download mock rows")
    expect(page.locator("#mock-table")).to_have_count(0)
    page.screenshot(path=str(screenshots / "dataset-anonymous.png"), full_page=True)

    # Sign in from the mock panel and come straight back to the dataset.
    page.locator("#mock").get_by_role("link", name="Sign in to preview").click()
    page.wait_for_url(re.compile(r"/sign-in\?next="))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".govuk-error-summary")).to_contain_text(
        "Enter a correct username and password")
    # The failed attempt was on purpose: its 401, and Chromium's console note of it, are fine.
    problems.remove(f"HTTP 401 for {hub_url}/sign-in")
    problems.remove("Failed to load resource: the server responded with a status of 401 "
                    "(Unauthorized)")
    page.screenshot(path=str(screenshots / "sign-in-error.png"), full_page=True)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/datasets/nhs-trust/ae-attendances$"))
    expect(page.locator("#account")).to_contain_text(f"Signed in as {username}")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["ndl_session"]["httpOnly"] and cookies["ndl_session"]["sameSite"] == "Lax"
    assert page.evaluate("document.cookie").find("ndl_session") == -1  # out of scripts' reach

    mock = page.locator("#mock")
    expect(mock).to_contain_text("Synthetic mock data — not real records")
    expect(page.locator("#mock-table tbody tr")).to_have_count(10)
    expect(page.locator("#mock-table thead th")).to_have_text(
        ["nhs_number", "arrival_date", "age_band", "wait_minutes"])
    expect(page.locator("#mock-download")).to_have_attribute(
        "href", "/api/datasets/nhs-trust/ae-attendances/mock?format=csv")
    page.locator("#mock").screenshot(path=str(screenshots / "mock-preview.png"))
    page.screenshot(path=str(screenshots / "dataset-signed-in.png"), full_page=True)
    # The download link works with the session cookie (a GET, so the API sees the session).
    csv = page.request.get(f"{hub_url}/api/datasets/nhs-trust/ae-attendances/mock?format=csv")
    assert csv.status == 200 and csv.text().startswith('"nhs_number"')

    # Signing out is a form post with its CSRF token.
    page.locator("#account").get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/sign-in\?signed_out=1$"))
    expect(page.locator(".govuk-notification-banner")).to_contain_text("You have signed out")
    expect(page.locator("#account")).to_contain_text("Sign in")
    page.screenshot(path=str(screenshots / "signed-out.png"), full_page=True)
    assert problems == [], problems
