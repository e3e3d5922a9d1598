"""Download a whole open dataset in Chromium, against a real hub and a real datasite.

A visitor who has not signed in presses "Download the whole dataset (Parquet)" on an open
dataset's page, confirms once, lands on the work page (which tells them to keep its link),
watches it finish, and downloads the file through the link: it is the datasite's data, and
its SHA-256 is the one the page shows. A second export (CSV of a bigger dataset) is followed
live (the progress bar moves without the page reloading) and cancelled from the page.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ndl.testing import DatasiteProcess, HubProcess, write_dataset

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

ROWS, BIG_ROWS = 300_000, 2_000_000
WAIT_MS = 180_000  # real processes on a loaded machine: generous, never a speed assertion
NO_SANDBOX = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


def _table(n: int) -> pa.Table:
    return pa.table({"area": [f"E{i:08d}" for i in range(n)],
                     "people": pa.array(range(n), pa.int64())})


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("work-page")
    site_dir = root / "site"
    write_dataset(site_dir, "areas", _table(ROWS), tier="open", title="Areas")
    write_dataset(site_dir, "big", _table(BIG_ROWS), tier="open", title="Big areas")
    hub = HubProcess(root / "hub", extra_args=["--lease-seconds", "2"])
    hub.create_org("ons", "Office for National Statistics", "government")
    steward = hub.create_user("sam", ["steward"], org="ons")
    with hub, DatasiteProcess(site_dir, hub.url, org="ons", token=steward, poll_wait=2):
        yield hub.url, site_dir


def _start_export(page: Page, url: str, button: str) -> str:
    """Press a download button as a first-time visitor; return the work page's address."""
    page.goto(url)
    page.click(button)
    # No session and no pre-session token yet: one confirmation sets it.
    page.wait_for_selector("#export-start")
    page.click("#export-start")
    page.wait_for_url("**/work/*")
    return page.url


def test_export_button_to_work_page_to_the_file(lib: tuple[str, Path], browser_page: Page,
                                               tmp_path: Path) -> None:
    url, site_dir = lib
    page = browser_page
    page.goto(f"{url}/datasets/ons/areas")
    assert page.is_visible("text=Download the whole dataset (CSV)")
    work_url = _start_export(page, f"{url}/datasets/ons/areas", "#export-parquet")
    work_id = work_url.rsplit("/", 1)[1]
    assert page.inner_text("#work-id") == work_id
    assert "Keep this link: it is the only way back to this download" in \
        page.inner_text("#keep-link")
    page.wait_for_selector("#work-download", timeout=WAIT_MS)
    assert page.get_attribute("#work-state", "data-state") == "succeeded"
    assert page.get_attribute("#work-progress", "value") == "100"
    assert not page.is_visible("#work-cancel")
    with page.expect_download(timeout=WAIT_MS) as info:
        page.click("#work-download")
    saved = tmp_path / "areas.parquet"
    info.value.save_as(saved)
    assert info.value.suggested_filename == "areas.parquet"
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == page.inner_text("#work-sha256")
    assert pq.read_table(saved).equals(pq.read_table(site_dir / "datasets" / "areas" /
                                                     "data.parquet"))
    # The address alone brings a stranger back to the same item.
    page.context.clear_cookies()
    page.goto(work_url)
    assert page.inner_text("#work-sha256") == hashlib.sha256(saved.read_bytes()).hexdigest()


def test_the_page_follows_the_work_live_and_cancels_it(lib: tuple[str, Path],
                                                       browser_page: Page) -> None:
    url = lib[0]
    page = browser_page
    work_url = _start_export(page, f"{url}/datasets/ons/big", "#export-csv")
    loads: list[str] = []
    page.on("load", lambda: loads.append(page.url))
    # work.js moves the bar from the event stream, without reloading the page.
    page.wait_for_function(
        "() => { const p = document.getElementById('work-progress');"
        " return p && p.value > 0 && p.value < 100; }", timeout=WAIT_MS)
    assert page.get_attribute("#work-state", "data-state") == "running"
    assert "of 2,000,000 rows" in page.inner_text("#work-message")
    assert loads == [], "the page reloaded instead of updating itself"
    page.click("#work-cancel")
    page.wait_for_selector("#work-cancelled", timeout=WAIT_MS)
    assert page.url == work_url
    assert page.inner_text("#work-state") == "Cancelled"
    assert not page.is_visible("#work-download") and not page.is_visible("#work-cancel")



def test_without_javascript_the_page_refreshes_itself(lib: tuple[str, Path], chromium: str
                                                      ) -> None:
    """No script: the button, the confirmation and the work page are plain forms and links,
    and the page reloads itself (meta refresh) until the file's link is there."""
    from playwright.sync_api import sync_playwright

    url = lib[0]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=NO_SANDBOX)
        context = browser.new_context(java_script_enabled=False)
        try:
            page = context.new_page()
            _start_export(page, f"{url}/datasets/ons/big", "#export-csv")
            # A 2,000,000-row CSV takes seconds: the first view is not the last.
            assert page.get_attribute("#work-state", "data-state") != "succeeded"
            assert not page.is_visible("#work-download")
            loads: list[str] = []
            page.on("load", lambda: loads.append(page.url))
            page.wait_for_selector("#work-download", timeout=WAIT_MS)
            assert loads, "the page never reloaded itself"
            assert page.get_attribute("#work-state", "data-state") == "succeeded"
            assert "big.csv" in page.inner_text("#work-download")
        finally:
            context.close()
            browser.close()
