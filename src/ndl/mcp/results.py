"""The MCP tools' structured results, and the plain-text rendering each one also carries.

Each tool returns one of these models as ``structuredContent`` (its JSON schema is the tool's
``outputSchema``) plus a short readable text for clients and models that only read text.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from ndl.core.tiers import TIERS, TierDef
from ndl.privacy.wording import answer_lines, expected_error


def _meaning(tier: TierDef) -> str:
    return f"{tier.title}: {tier.summary} What you get: {tier.what_you_get}."


# Worded from the one tier definition, as every face explains tiers.
TIER_MEANINGS: dict[str, str] = {name: _meaning(t) for name, t in TIERS.items()}


class Access(BaseModel):
    """HDR UK-style access fields as the publisher gave them."""

    route: str = ""
    lead_time_days: int | None = None
    cost: str = ""
    linkable_datasets: list[str] = Field(default_factory=list)


class CodeListEntry(BaseModel):
    code: str
    label: str = ""


class DatasetSummary(BaseModel):
    id: str
    title: str
    publisher: str
    tier: str
    description: str = ""
    keywords: list[str] = Field(default_factory=list)
    row_count: int | None = None
    version: int | None = None
    matched_terms: list[str] | None = Field(
        default=None, description="In any-word mode, which of the query's words this matched.")


class SearchResults(BaseModel):
    query: str
    match: Literal["all_words", "any_word"] = Field(
        description="all_words: every word matched; any_word: nothing matched every word, so "
                    "these datasets match some of them, most words first.")
    total: int
    results: list[DatasetSummary]
    facets: dict[str, dict[str, int]] = Field(default_factory=dict)
    note: str = ""


class Column(BaseModel):
    name: str
    type: str
    description: str = ""
    sensitivity: str = "none"
    join_key: str | None = None
    unit: str | None = None
    code_list: list[CodeListEntry] | None = None


class Version(BaseModel):
    version: int
    published_at: str | None = None
    metadata_hash: str | None = None


class DatasetInfo(BaseModel):
    id: str
    title: str
    publisher: str
    tier: str
    description: str = ""
    keywords: list[str] = Field(default_factory=list)
    row_count: int | None = None
    population_size: int | None = None
    version: int | None = None
    themes: list[str] = Field(default_factory=list)
    spatial: str | None = None
    temporal: dict[str, Any] | None = None
    update_frequency: str | None = None
    issued: str | None = None
    modified: str | None = None
    licence: str | None = None
    contact: dict[str, Any] | None = None
    access: Access = Field(default_factory=Access)
    policy_summary: str = ""
    known_issues: str = ""
    last_verified: str | None = None
    published_at: str | None = None
    updated_at: str | None = None
    column_names: list[str] = Field(default_factory=list)
    join_keys: list[str] = Field(default_factory=list)
    versions: list[Version] = Field(default_factory=list)
    page: str = Field(default="", description="The dataset's page on the hub, for people.")


class Schema(BaseModel):
    dataset_id: str
    title: str
    tier: str
    row_count: int | None = None
    columns: list[Column]
    join_keys: list[str] = Field(
        description="Identifier types (nhs_number, upn, postcode, ...) this dataset can be "
                    "linked on; find_linkage lists datasets sharing them.")


class Sample(BaseModel):
    dataset_id: str
    tier: str
    kind: Literal["open rows", "synthetic mock rows"]
    real_data: bool
    note: str
    columns: list[str]
    rows: list[list[Any]]
    method: str | None = None


class QueryResult(BaseModel):
    dataset_id: str
    sql: str
    columns: list[str]
    rows: list[list[Any]]
    row_count: int
    truncated: bool


class LinkedDataset(BaseModel):
    id: str
    title: str
    publisher: str
    tier: str
    columns: list[str] = Field(description="Its columns holding this join key.")


class LinkageGroup(BaseModel):
    join_key: str
    columns_here: list[str]
    datasets: list[LinkedDataset]


class LinkHop(BaseModel):
    from_id: str
    to_id: str
    join_keys: list[str] = Field(description="The join-key types the two datasets share.")


class BridgePath(BaseModel):
    """A dataset two or more hops away, and the shortest path of shared join keys to it."""

    id: str
    title: str
    publisher: str
    tier: str
    via: list[str] = Field(description="The bridge datasets in between, in order.")
    hops: list[LinkHop]


class Linkage(BaseModel):
    dataset_id: str
    join_keys: list[str]
    groups: list[LinkageGroup]
    declared_linkable: list[str] = Field(
        default_factory=list, description="Datasets the publisher lists as linkable.")
    bridges: list[BridgePath] = Field(
        default_factory=list, description="Datasets reached only through others (2-3 hops "
                                          "along shared join keys), nearest first.")
    note: str


class AccessRequirements(BaseModel):
    dataset_id: str
    title: str
    publisher: str
    tier: str
    tier_meaning: str
    tiers: dict[str, str] = Field(description="What each access tier means.")
    route: str
    route_from_publisher: bool = Field(
        description="True when the publisher described the route; false when it is the "
                    "tier's standard route.")
    lead_time_days: int | None = None
    expected_wait: str
    cost: str
    policy_summary: str
    how_to_apply: list[str]
    contact: dict[str, Any] | None = None
    page: str = ""


class Facets(BaseModel):
    facets: dict[str, dict[str, int]]
    total: int


# --- text renderings -----------------------------------------------------------------

def _rows_text(columns: list[str], rows: list[list[Any]], limit: int = 20) -> str:
    lines = [" | ".join(columns)]
    lines += [" | ".join("" if v is None else str(v) for v in row) for row in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more rows in the structured result")
    return "\n".join(lines)


def _facets_text(facets: dict[str, dict[str, int]]) -> str:
    return "\n".join(
        f"  {name}: " + ", ".join(f"{v} ({n})" for v, n in values.items())
        for name, values in facets.items() if values
    )


def search_text(r: SearchResults) -> str:
    head = (f"{r.total} dataset(s) match {r.query!r}" if r.match == "all_words"
            else f"No dataset matches every word of {r.query!r}; {r.total} match some")
    lines = [head + (f" (showing {len(r.results)}):" if r.results else ".")]
    for d in r.results:
        rows = f"; {d.row_count:,} rows" if d.row_count is not None else ""
        words = f" [matched: {', '.join(d.matched_terms)}]" if d.matched_terms else ""
        lines.append(f"- {d.id}: {d.title} ({d.publisher}; {d.tier}{rows}){words}")
        if d.description:
            lines.append(f"    {d.description[:200]}")
    if r.note:
        lines.append(r.note)
    if r.facets:
        lines.append("Facets:\n" + _facets_text(r.facets))
    return "\n".join(lines)


def dataset_text(d: DatasetInfo) -> str:
    lines = [f"{d.id}: {d.title}", f"Publisher: {d.publisher}. Tier: {d.tier}.",
             d.description]
    facts = [("Rows", f"{d.row_count:,}" if d.row_count is not None else None),
             ("Themes", ", ".join(d.themes) or None), ("Geography", d.spatial),
             ("Coverage", f"{d.temporal.get('start')} to {d.temporal.get('end') or 'now'}"
              if d.temporal else None),
             ("Updated", d.update_frequency), ("Licence", d.licence),
             ("Version", str(d.version) if d.version else None),
             ("Join keys", ", ".join(d.join_keys) or None),
             ("Columns", ", ".join(d.column_names)),
             ("Access route", d.access.route or None),
             ("Lead time", f"{d.access.lead_time_days} days"
              if d.access.lead_time_days is not None else None),
             ("Policy", d.policy_summary or None), ("Known issues", d.known_issues or None),
             ("Page", d.page or None)]
    lines += [f"{k}: {v}" for k, v in facts if v]
    return "\n".join(line for line in lines if line)


def schema_text(s: Schema) -> str:
    lines = [f"{s.dataset_id} ({s.tier}): {len(s.columns)} columns"]
    for c in s.columns:
        extra = [c.type, f"sensitivity {c.sensitivity}"]
        if c.join_key:
            extra.append(f"join key {c.join_key}")
        if c.unit:
            extra.append(f"unit {c.unit}")
        lines.append(f"- {c.name} ({'; '.join(extra)}): {c.description}")
        if c.code_list:
            codes = ", ".join(f"{e.code}={e.label}" if e.label else e.code
                              for e in c.code_list[:20])
            lines.append(f"    codes: {codes}" + (" ..." if len(c.code_list) > 20 else ""))
    lines.append(f"Join keys: {', '.join(s.join_keys) or 'none'}")
    return "\n".join(lines)


def sample_text(s: Sample) -> str:
    return f"{s.note}\n{_rows_text(s.columns, s.rows)}"


def query_text(q: QueryResult) -> str:
    tail = " (truncated at the row limit)" if q.truncated else ""
    return f"{q.row_count} row(s) from {q.dataset_id}{tail}:\n{_rows_text(q.columns, q.rows)}"


def linkage_text(k: Linkage) -> str:
    if not k.join_keys:
        return f"{k.dataset_id} has no join-key columns, so it cannot be linked. {k.note}"
    lines = [f"{k.dataset_id} can be linked on: {', '.join(k.join_keys)}"]
    for g in k.groups:
        lines.append(f"{g.join_key} (here: {', '.join(g.columns_here)}):")
        if not g.datasets:
            lines.append("  no other dataset in the catalogue has this join key")
        for d in g.datasets:
            lines.append(f"  - {d.id}: {d.title} ({d.publisher}; {d.tier}; "
                         f"column {', '.join(d.columns)})")
    if k.declared_linkable:
        lines.append(f"Publisher lists as linkable: {', '.join(k.declared_linkable)}")
    if k.bridges:
        lines.append("Through bridge datasets (no shared key with this one directly):")
    for b in k.bridges:
        route = k.dataset_id + "".join(f" --{'/'.join(h.join_keys)}--> {h.to_id}"
                                       for h in b.hops)
        lines.append(f"  - {b.id}: {b.title} ({b.publisher}; {b.tier}) via "
                     f"{', '.join(b.via)}: {route}")
    lines.append(k.note)
    return "\n".join(lines)


def access_text(a: AccessRequirements) -> str:
    lines = [f"{a.dataset_id}: {a.title} ({a.publisher})", a.tier_meaning,
             f"Route: {a.route}", f"Expected wait: {a.expected_wait}"]
    if a.cost:
        lines.append(f"Cost: {a.cost}")
    if a.policy_summary:
        lines.append(f"Policy: {a.policy_summary}")
    lines.append("How to get access:")
    lines += [f"  {i}. {step}" for i, step in enumerate(a.how_to_apply, 1)]
    if a.contact:
        lines.append(f"Contact: {a.contact.get('name')} <{a.contact.get('email')}>")
    if a.page:
        lines.append(f"Page: {a.page}")
    return "\n".join(lines)


def facets_text(f: Facets) -> str:
    return f"{f.total} dataset(s) in the catalogue. Facets:\n{_facets_text(f.facets)}"


class PrivateAnswer(BaseModel):
    """A differentially private answer, or (before confirming) its expected error."""

    dataset_id: str
    project: str
    confirmed: bool
    rho: float
    spent: float
    columns: list[str] = []
    rows: list[list[Any]] = []
    expected_error: list[dict[str, Any]] = []
    budget_remaining: dict[str, Any] = {}
    note: str


def private_text(a: PrivateAnswer) -> str:
    # Worded by the one function every face uses: each number with its error bar, in the text
    # an agent reads, not only in structuredContent.
    if not a.confirmed:
        errs = "; ".join(f"{e.get('label')}: {expected_error(e)}" for e in a.expected_error)
        return (f"Preview only, nothing spent. At rho={a.rho:g} each answer would be {errs}. "
                f"Budget left: {_budget_text(a.budget_remaining)}. {a.note}")
    lines = answer_lines({"columns": a.columns, "rows": a.rows,
                          "aggregates": a.expected_error})
    return (f"Differentially private answer from {a.dataset_id} (spent rho={a.spent:.6g}); "
            "each number is noisy, with its 95% margin:\n"
            + "\n".join(f"- {line}" for line in lines)
            + f"\nBudget left: {_budget_text(a.budget_remaining)}. {a.note}")


def _budget_text(left: dict[str, Any]) -> str:
    parts = [f"{k.replace('_', ' ')} {v:.6g}" for k, v in left.items()
             if isinstance(v, int | float) and not isinstance(v, bool)]
    return ", ".join(parts) or "not stated"
