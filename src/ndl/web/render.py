"""Rendering pages: the Jinja2 environment, the built assets and the security headers."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, PrefixLoader

log = logging.getLogger("ndl.web")

SERVICE_NAME = "National Data Library (ndl)"

# The files scripts/build_assets.sh writes. Without them pages are plain HTML.
ASSET_FILES = ("ndl.css", "ndl.js", "govuk-frontend.min.js", "favicon.svg")

# Pages load only their own CSS and JS; no inline script, no framing, no other origins.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}

TIER_TAG_CLASSES = {
    "open": "govuk-tag--green",
    "safeguarded": "govuk-tag--yellow",
    "controlled": "govuk-tag--red",
}

SENSITIVITY_LABELS = {
    "direct_identifier": "Direct identifier",
    "quasi_identifier": "Quasi-identifier",
    "sensitive": "Sensitive",
    "none": "None",
}


def long_date(value: datetime | None) -> str:
    """GOV.UK style dates: 5 January 2026."""
    return "" if value is None else f"{value.day} {value:%B %Y}"


def number(value: int | None) -> str:
    return "not stated" if value is None else f"{value:,}"


def tier_tag_class(tier: str) -> str:
    return TIER_TAG_CLASSES.get(tier, "govuk-tag--grey")


def make_environment(templates_dir: Path) -> Environment:
    """Our templates first, then GOV.UK Frontend's macros under ``govuk_frontend_jinja/``."""
    env = Environment(
        loader=ChoiceLoader([
            FileSystemLoader(templates_dir),
            PrefixLoader({"govuk_frontend_jinja": PackageLoader("govuk_frontend_jinja")}),
        ]),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["long_date"] = long_date
    env.filters["number"] = number
    env.filters["tier_tag_class"] = tier_tag_class
    env.globals["service_name"] = SERVICE_NAME
    env.globals["sensitivity_labels"] = SENSITIVITY_LABELS
    return env


def assets_built(static_dir: Path, *, warn: bool = True) -> bool:
    """True if the built CSS/JS are present; logs a warning (if ``warn``) when they are not."""
    missing = [name for name in ASSET_FILES if not (static_dir / name).is_file()]
    if missing:
        if warn:
            log.warning(
                "web assets %s are missing from %s, so pages are shown without styles; "
                "build them with: bash scripts/build_assets.sh", ", ".join(missing), static_dir,
            )
        return False
    return True


class Pages:
    """Renders templates into HTML responses that carry the security headers."""

    def __init__(self, env: Environment, *, styled: bool) -> None:
        self.env = env
        self.styled = styled

    def render(
        self, request: Request, template: str, context: dict[str, Any], *, status: int = 200
    ) -> HTMLResponse:
        html = self.env.get_template(template).render(
            request=request, styled=self.styled, current_path=request.url.path, **context
        )
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def error(self, request: Request, status: int, title: str, message: str) -> HTMLResponse:
        return self.render(request, "error.html", {"status": status, "title": title,
                                                   "message": message}, status=status)


def pages_of(request: Request) -> Pages:
    pages: Pages = request.app.state.ndl_pages
    return pages
