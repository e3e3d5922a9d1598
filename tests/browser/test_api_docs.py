"""/api/docs works without internet: Swagger UI's script, style and icon come from the hub."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route


class _Assets(HTMLParser):
    """Every URL the page loads by itself: scripts, stylesheets, icons, images."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        url = a.get("src") if tag in ("script", "img") else a.get("href") if tag == "link" else None
        if url:
            self.urls.append(url)


def test_docs_assets_are_served_by_the_hub(hub_url: str) -> None:
    page = httpx.get(f"{hub_url}/api/docs")
    assert page.status_code == 200
    parser = _Assets()
    parser.feed(page.text)
    # The script, the stylesheet and the favicon, at least.
    assert len(parser.urls) >= 3, parser.urls
    hub = urlsplit(hub_url)
    for url in parser.urls:
        full = urlsplit(urljoin(f"{hub_url}/api/docs", url))
        assert (full.scheme, full.netloc) == (hub.scheme, hub.netloc), f"{url} is off-site"
        assert httpx.get(full.geturl()).status_code == 200, url


@pytest.mark.browser
def test_swagger_ui_renders_with_other_hosts_blocked(hub_url: str, browser_page: Page) -> None:
    from playwright.sync_api import expect

    hub = urlsplit(hub_url).netloc
    blocked: list[str] = []

    def only_the_hub(route: Route) -> None:
        if urlsplit(route.request.url).netloc == hub:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    browser_page.route("**/*", only_the_hub)
    browser_page.goto(f"{hub_url}/api/docs")
    # Swagger UI draws one block per operation once it has loaded the OpenAPI document.
    operations = browser_page.locator(".opblock")
    expect(operations.first).to_be_visible(timeout=30_000)
    assert operations.count() > 40
    expect(browser_page.locator(".opblock-summary-path", has_text="/api/datasets").first
           ).to_be_visible()
    assert blocked == [], f"the docs page tried to reach other hosts: {blocked}"
