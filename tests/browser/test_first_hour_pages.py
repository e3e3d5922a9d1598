"""A new user's first hour, in Chromium against a real hub: the public register reads as
sentences (the recorded JSON one click away), and no page shows internal names."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

KIND = re.compile(r"\b[a-z_]+\.(?:[a-z_]+\.)?[a-z_]+\b")  # dataset.published, query.answered


def test_the_register_reads_as_sentences(hub_url: str, browser_page: Page) -> None:
    from playwright.sync_api import expect

    page = browser_page
    page.goto(f"{hub_url}/register")
    entries = page.locator("#register > li")
    assert entries.count() >= 1
    for sentence in page.locator(".ndl-register__sentence").all_inner_texts():
        assert sentence[:1].isupper() and sentence.endswith("."), sentence
        codes = [k for k in KIND.findall(sentence) if "/" not in k]
        assert not codes, f"a register code in a sentence: {sentence}"
    published = page.locator(".ndl-register__sentence", has_text="published the description of")
    expect(published.first).to_contain_text("nhs-trust/")
    # The JSON is one click away, not a scroll box in the table.
    first = entries.first
    expect(first.locator(".ndl-register__json")).not_to_be_visible()
    first.get_by_text("The entry as recorded").click()
    expect(first.locator(".ndl-register__json")).to_be_visible()
    expect(first.locator(".ndl-register__json")).to_contain_text('"hash"')


def test_the_dashboard_counts_questions(hub_url: str, browser_page: Page) -> None:
    from playwright.sync_api import expect

    page = browser_page
    page.goto(f"{hub_url}/orgs/nhs-trust")
    expect(page.locator("#stat-queries")).to_contain_text("queries asked")
    for internal in ("make_gaussian", "n_estimate", "None"):
        expect(page.locator("main")).not_to_contain_text(internal)
