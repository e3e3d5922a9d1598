"""Rendering pages: the Jinja2 environment, the built assets and the security headers."""

from __future__ import annotations

import json
import logging
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, PrefixLoader
from markupsafe import Markup, escape

from ndl.core.tiers import TIERS

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


THEME_LABELS = {
    "health": "Health", "education": "Education", "social-care": "Social care",
    "population": "Population", "economy": "Economy", "crime-justice": "Crime and justice",
    "housing": "Housing", "environment": "Environment", "transport": "Transport",
    "government": "Government",
}

JOIN_KEY_LABELS = {
    "nhs_number": "NHS number", "upn": "Unique pupil number (UPN)", "postcode": "Postcode",
    "date_of_birth": "Date of birth", "name": "Name", "local_id": "Local identifier",
}

FREQUENCY_LABELS = {
    "daily": "Daily", "weekly": "Weekly", "monthly": "Monthly", "quarterly": "Quarterly",
    "annual": "Every year", "irregular": "Irregularly", "never": "Not updated",
}

LICENCE_LABELS = {
    "OGL-UK-3.0": "Open Government Licence v3.0",
    "CC-BY-4.0": "Creative Commons Attribution 4.0",
    "CC0-1.0": "Creative Commons CC0 1.0 (public domain)",
    "ODbL-1.0": "Open Data Commons Open Database Licence 1.0",
    "restricted": "Restricted access",
}


def long_date(value: datetime | date | str | None) -> str:
    """GOV.UK style dates: 5 January 2026. Takes ISO strings too, as the metadata holds them."""
    if isinstance(value, str):
        try:
            parsed: datetime | date = (datetime.fromisoformat(value) if "T" in value
                                       else date.fromisoformat(value))
        except ValueError:
            return value
        return f"{parsed.day} {parsed:%B %Y}"
    return "" if value is None else f"{value.day} {value:%B %Y}"


def json_ld(doc: dict[str, Any]) -> Markup:
    """JSON for a ``<script type="application/ld+json">`` block that no text can break out of.

    ``<``, ``>`` and ``&`` become JSON escapes, so a ``</script>`` or ``<!--`` inside a
    description stays data; the JSON still parses to the same values.
    """
    text = json.dumps(doc, ensure_ascii=False, indent=1)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return Markup(text)  # noqa: S704 - escaped above for this one context


def identifier(value: str) -> Markup:
    """An identifier that may wrap after its underscores and dots, never mid-word."""
    return Markup("").join(
        Markup("{}<wbr>").format(part) if part in ("_", ".") else escape(part)
        for part in re.split(r"([_.])", value))


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
    env.filters["json_ld"] = json_ld
    env.filters["identifier"] = identifier
    env.globals["service_name"] = SERVICE_NAME
    env.globals["sensitivity_labels"] = SENSITIVITY_LABELS
    env.globals["theme_labels"] = THEME_LABELS
    env.globals["join_key_labels"] = JOIN_KEY_LABELS
    env.globals["frequency_labels"] = FREQUENCY_LABELS
    env.globals["licence_labels"] = LICENCE_LABELS
    # Every page that explains a tier words it from the one definition.
    env.globals["TIERS"] = TIERS
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
        # Set by ndl.web.session's middleware: who is signed in, and the token forms carry.
        web = getattr(request.state, "web", None)
        user = getattr(web, "user", None)
        values = {"request": request, "styled": self.styled, "current_path": request.url.path,
                  "signed_in_as": user.username if user is not None else None,
                  "csrf_token": getattr(web, "csrf_token", None), **context}
        html = self.env.get_template(template).render(**values)
        headers = dict(SECURITY_HEADERS)
        headers["Vary"] = "Cookie"
        if user is not None:
            # A signed-in page names the user and may show mock rows: never keep it in a cache.
            headers["Cache-Control"] = "private, no-store"
        return HTMLResponse(html, status_code=status, headers=headers)

    def error(self, request: Request, status: int, title: str, message: str) -> HTMLResponse:
        return self.render(request, "error.html", {"status": status, "title": title,
                                                   "message": message}, status=status)


def pages_of(request: Request) -> Pages:
    pages: Pages = request.app.state.ndl_pages
    return pages
