"""A new user's first hour, in Chromium against a real hub: the public register reads as
sentences (the recorded JSON one click away), and no page shows internal names."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

CHECKER_PASSWORD = "correct horse battery staple"
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


def test_an_output_checker_is_told_there_is_nothing_to_check_yet(
        hub_url: str, browser_page: Page, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    hub_dir = tmp_path / "hub"  # the hub_url fixture's data folder (same tmp_path)
    made = subprocess.run(
        [sys.executable, "-m", "ndl", "admin", "create-user", "oscar", "--role",
         "output_checker", "--password-stdin", "--db", str(hub_dir / "hub.db"),
         "--data-dir", str(hub_dir)], input=f"{CHECKER_PASSWORD}\n", capture_output=True,
        text=True, timeout=60)
    assert made.returncode == 0, made.stdout + made.stderr
    page = browser_page
    page.goto(f"{hub_url}/sign-in?next=/")
    page.get_by_label("Username").fill("oscar")
    page.get_by_label("Password", exact=True).fill(CHECKER_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    note = page.locator("#output-checker-note")
    expect(note).to_contain_text("Outputs to check")
    expect(note).not_to_contain_text("not available yet")
