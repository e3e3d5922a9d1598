"""Markdown versions of the catalogue and of dataset pages, for people and language models.

The same facts as the HTML dataset page, in plain Markdown: what the data is, who holds it,
which tier it is in and how to get access, its coverage and its columns, and where the
machine-readable versions are.
"""

from __future__ import annotations

import re
from typing import Any

from ndl.catalogue.exporters._links import LIBRARY_NAME, TIER_SUMMARY, HubLinks, Links
from ndl.catalogue.metadata import LICENCES
from ndl.core.tiers import TIERS

# Example request body shown to readers (a constant, so no SQL is ever built from input).
_SQL_EXAMPLE = '{"sql": "SELECT * FROM data LIMIT 10"}'
TIER_TITLES: dict[str, str] = {str(name): t.title for name, t in TIERS.items()}


# Metadata text is the publisher's, and a Markdown page is rendered (to HTML) by whoever reads
# it: every piece of it is escaped so it stays text. A backslash before these makes each one
# literal in CommonMark/GFM, which stops raw HTML and autolinks (< >), links, images and link
# definitions ([ ]), code spans and fences (`) and table cells (|).
_SPECIAL = re.compile(r"([\\`\[\]<>|])")
# What starts a block at the beginning of a line: headings, quotes, lists, setext underlines,
# thematic breaks and ~~~ fences. Only a multi-line block (the description) can start lines.
_BLOCK_START = re.compile(r"^(\s*)([#>+\-*=~]|\d{1,9}[.)])")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_URL_UNSAFE = re.compile(r"[^A-Za-z0-9\-._~:/?#@!$&'*+,;=%]")


def _inline(value: Any) -> str:
    """Metadata text as one line of literal Markdown: whitespace collapsed, specials escaped."""
    text = "" if value is None else str(value)
    return _SPECIAL.sub(r"\\\1", " ".join(text.split()))


def _block(value: Any) -> str:
    """Multi-line metadata text as literal Markdown paragraphs: no line can start a heading,
    list, quote or fence, so it cannot pass for a section of the page."""
    lines = []
    for line in str(value or "").strip().splitlines():
        text = _SPECIAL.sub(r"\\\1", line.strip())
        lines.append(_BLOCK_START.sub(
            lambda m: m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], text))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    """Text safe inside one Markdown table cell: no pipes or line breaks to break the row."""
    return _inline(value)


def _code(value: Any) -> str:
    """Text as an inline code span that its own backticks cannot close early."""
    text = " ".join(str(value or "").split()).replace("|", "\\|")
    runs = re.findall(r"`+", text)
    fence = "`" * (max((len(r) for r in runs), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _url(value: Any) -> str:
    """An http(s) address safe as a link target: anything that could end it is %-encoded."""
    text = str(value or "")
    if not text.lower().startswith(("http://", "https://")):
        return ""
    return _URL_UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), text)


def first_sentence(text: str, limit: int = 200) -> str:
    """The first sentence of ``text`` (cut at ``limit``), escaped as inline Markdown."""
    text = " ".join(str(text or "").split())
    cut = text.find(". ")
    if 0 < cut < limit:
        return _inline(text[:cut + 1])
    return _inline(text if len(text) <= limit else text[:limit - 1].rstrip() + "…")


def how_to_get_access(detail: dict[str, Any], base_url: str) -> list[str]:
    """Steps to reach the data in this dataset's tier, as Markdown lines."""
    links, hub = Links.of(base_url, detail), HubLinks.of(base_url)
    tier = detail["tier"]
    how = TIERS[tier]
    if tier == "open":
        lines = [
            f"{how.summary} Exact counts: `POST {links.query}`.",
            "",
            f"- Download the rows as CSV: <{links.rows_csv}>",
            f"- Run SQL over the table `data`: `POST {links.sql}` with `{_SQL_EXAMPLE}`",
            f"- Or use the Python SDK, the CLI (`ndl search`) or the MCP server at <{hub.mcp}>.",
        ]
    elif tier == "safeguarded":
        lines = [
            how.summary,
            "",
            f"- How: {how.how_to_reach}.",
            f"- Ask a private question: `POST {links.private_query}` (a researcher on a "
            "project with a grant)",
            f"- Write code first against synthetic mock rows: <{links.mock_csv}> (any "
            "signed-in user)",
        ]
    else:
        lines = [
            how.summary,
            "",
            f"- How: {how.how_to_reach}.",
            f"- Develop against synthetic mock rows: <{links.mock_csv}> (any signed-in user)",
        ]
    access = detail.get("access") or {}
    extra = []
    if access.get("route"):
        extra.append(f"- Access route: {_inline(access['route'])}")
    if access.get("lead_time_days") is not None:
        extra.append(f"- Expected wait: {int(access['lead_time_days'])} days")
    if access.get("cost"):
        extra.append(f"- Cost: {_inline(access['cost'])}")
    if detail.get("policy_summary"):
        extra.append(f"- Policy: {_inline(detail['policy_summary'])}")
    return lines + extra


def _facts(detail: dict[str, Any]) -> list[str]:
    tier = detail["tier"]
    facts = [
        f"- **Publisher:** {_inline(detail['publisher'])}",
        f"- **Identifier:** {_code(detail['id'])}",
        f"- **Access tier:** {TIER_SUMMARY[tier]}",
    ]
    if detail.get("row_count") is not None:
        facts.append(f"- **Rows:** {int(detail['row_count']):,}")
    if detail.get("version") is not None:
        updated = str(detail.get("updated_at") or "")[:10]
        facts.append(f"- **Version:** {detail['version']}"
                     + (f" (catalogue entry updated {updated})" if updated else ""))
    licence = detail.get("licence")
    if licence:
        uri = LICENCES.get(licence, licence)
        target = _url(uri)
        facts.append(f"- **Licence:** [{_inline(licence)}]({target})" if target
                     else f"- **Licence:** {_inline(licence)}")
    contact = detail.get("contact")
    if contact:
        email = str(contact["email"])
        shown = f"<{email}>" if _EMAIL.fullmatch(email) else _inline(email)
        facts.append(f"- **Contact:** {_inline(contact['name'])} {shown}")
    if detail.get("keywords"):
        facts.append(f"- **Keywords:** {', '.join(_inline(k) for k in detail['keywords'])}")
    if detail.get("themes"):
        facts.append(f"- **Themes:** {', '.join(_inline(t) for t in detail['themes'])}")
    if detail.get("update_frequency"):
        facts.append(f"- **Updated:** {_inline(detail['update_frequency'])}")
    return facts


def _coverage(detail: dict[str, Any]) -> list[str]:
    lines = []
    if detail.get("spatial"):
        lines.append(f"- **Geography:** {_inline(detail['spatial'])}")
    temporal = detail.get("temporal")
    if temporal:
        lines.append(f"- **Time:** {_inline(temporal['start'])} to "
                     f"{_inline(temporal.get('end') or 'now')}")
    if detail.get("population_size") is not None:
        lines.append(f"- **Population:** {int(detail['population_size']):,}")
    for field, label in (("issued", "First issued"), ("modified", "Last modified"),
                         ("last_verified", "Last verified")):
        if detail.get(field):
            lines.append(f"- **{label}:** {_inline(detail[field])}")
    return lines


def _schema(columns: list[dict[str, Any]]) -> list[str]:
    rows = ["| Column | Type | Description | Sensitivity | Join key | Unit |",
            "|---|---|---|---|---|---|"]
    for c in columns:
        sensitivity = str(c.get("sensitivity") or "none").replace("_", " ")
        rows.append(
            f"| {_code(c.get('name'))} | {_cell(c.get('type'))} | "
            f"{_cell(c.get('description'))} | {_cell(sensitivity)} | "
            f"{_cell(c.get('join_key') or '')} | {_cell(c.get('unit') or '')} |"
        )
    return rows


def dataset_markdown(detail: dict[str, Any], base_url: str) -> str:
    """The dataset page as Markdown."""
    links = Links.of(base_url, detail)
    description = str(detail.get("description") or "").strip()
    out = [f"# {_inline(detail['title'])}", ""]
    if description:
        out += [f"> {first_sentence(description)}", ""]
    out += [*_facts(detail), "", "## How to get access", ""]
    out += [*how_to_get_access(detail, base_url), ""]
    out += ["## Description", "", _block(description) or "The publisher has not written a "
            "description yet.", ""]
    coverage = _coverage(detail)
    if coverage:
        out += ["## Coverage", "", *coverage, ""]
    columns = detail.get("columns") or []
    out += ["## Schema", "", f"{len(columns)} columns.", "", *_schema(columns), ""]
    if detail.get("known_issues"):
        out += ["## Known issues", "", _block(detail["known_issues"]), ""]
    out += [
        "## Machine-readable versions", "",
        f"- [Web page]({links.page})",
        f"- [JSON metadata]({links.api})",
        f"- [DCAT-3 JSON-LD (DCAT-AP 3.0)]({links.dcat})",
        f"- [Croissant JSON-LD]({links.croissant})",
        f"- [Metadata versions]({links.api}/versions)",
    ]
    if detail["tier"] != "open":
        out.append(f"- [Synthetic mock rows, CSV (sign-in needed)]({links.mock_csv})")
    return "\n".join(out) + "\n"


def catalogue_markdown(details: list[dict[str, Any]], base_url: str, *,
                       total: int | None = None) -> str:
    """Every dataset, grouped by publisher, each linking to its Markdown page."""
    hub = HubLinks.of(base_url)
    shown = len(details)
    out = [f"# {LIBRARY_NAME} catalogue", "",
           f"> {total if total is not None else shown} datasets held by organisations across "
           "the library. Each links to a Markdown page with its access tier, coverage and "
           "columns.", ""]
    if total is not None and total > shown:
        out += [f"The first {shown} are listed here; search them all with "
                f"`GET {hub.api}/datasets?q=...`.", ""]
    by_publisher: dict[str, list[dict[str, Any]]] = {}
    for d in details:
        by_publisher.setdefault(str(d["publisher"]), []).append(d)
    for publisher in sorted(by_publisher):
        out += [f"## {_inline(publisher)}", ""]
        for d in sorted(by_publisher[publisher], key=lambda d: str(d["title"]).lower()):
            out.append(dataset_line(d, base_url))
        out.append("")
    return "\n".join(out)


def dataset_line(detail: dict[str, Any], base_url: str) -> str:
    """One list item: title linking to the Markdown page, tier, and the first sentence."""
    links = Links.of(base_url, detail)
    tier = TIER_TITLES.get(detail["tier"], detail["tier"])
    summary = first_sentence(str(detail.get("description") or ""), 160)
    line = (f"- [{_inline(detail['title'])}]({links.markdown}): {tier} tier, "
            f"{_inline(detail['publisher'])}.")
    return f"{line} {summary}" if summary else line
