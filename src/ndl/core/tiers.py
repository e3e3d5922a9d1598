"""The three access tiers, defined once: which operations each tier serves, for whom, in what
form, and which columns may take part.

Every face (JSON API, web pages, CLI, MCP, exporters) explains a tier from :data:`TIERS`, and
every check — at the hub *and* again at the datasite — asks :func:`require_operation` and
:func:`check_column_use`. An operation that is not listed for a tier does not exist on that
tier: adding one is a change to this table, reviewed as such, with its attack test beside it.

The table (DESIGN §3):

=============  =====================================  ========================================
tier           operations                             what comes back
=============  =====================================  ========================================
open           metadata, download, open_sql,          rows and exact aggregates
               exact_aggregate
safeguarded    metadata, mock, request_access,        differentially private aggregates only;
               private_query, budget_status           never an exact count, grant or not
controlled     metadata, mock, request_access,        outputs of reviewed code run at the data,
               code_job                               after disclosure checks and an output
                                                      checker's release
=============  =====================================  ========================================

Columns outside open data: a direct identifier (or a column whose join key names a person)
is never a group key, filter, measure or output. A quasi-identifier may only be a group key
or filter whose values are published in a code list (so which groups exist reveals nothing),
or a bounded measure inside a differentially private aggregate; it is never released as a
value. This module imports no domain: columns are anything with the attributes of
:class:`ColumnLike`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol

from ndl.core.errors import InvalidInput, PermissionDenied

Tier = Literal["open", "safeguarded", "controlled"]
TIER_NAMES: tuple[Tier, ...] = ("open", "safeguarded", "controlled")


class Operation(StrEnum):
    """Everything one can do with a dataset's data (not its administration)."""

    METADATA = "metadata"                  # the catalogue entry: schema, coverage, policy
    MOCK = "mock"                          # synthetic rows of the same schema, no real row
    DOWNLOAD = "download"                  # the rows themselves
    OPEN_SQL = "open_sql"                  # read-only SQL over the rows
    EXACT_AGGREGATE = "exact_aggregate"    # exact counts grouped by columns
    PRIVATE_QUERY = "private_query"        # differentially private aggregates, budgeted
    BUDGET_STATUS = "budget_status"        # what is left of a privacy budget
    REQUEST_ACCESS = "request_access"      # ask, through a project, for a grant
    CODE_JOB = "code_job"                  # reviewed code run at the data; outputs checked


class Audience(StrEnum):
    """Who an operation serves on a tier."""

    ANYONE = "anyone"                      # no account needed
    SIGNED_IN = "signed_in"                # any registered user
    GRANTED_RESEARCHER = "granted_researcher"  # a researcher on a project with an active grant
    RESEARCHER = "researcher"              # a researcher (e.g. to ask for access)


class ColumnUse(StrEnum):
    GROUP_KEY = "group key"
    FILTER = "filter"
    MEASURE = "measure"                    # aggregated (sum, mean, quantile …)
    OUTPUT = "output"                      # released as a value


@dataclass(frozen=True)
class Allowance:
    """One operation on one tier: who may, and what they get."""

    audience: Audience
    form: str  # what comes back, in words a researcher understands


@dataclass(frozen=True)
class TierDef:
    name: Tier
    title: str
    summary: str        # one sentence: what the tier is
    what_you_get: str   # what comes back, in plain words
    how_to_reach: str   # the route to the data
    wait: str           # how long access takes
    operations: dict[Operation, Allowance]

    def allows(self, op: Operation) -> bool:
        return op in self.operations


_META = Allowance(Audience.ANYONE, "catalogue metadata: schema, coverage, policy")
_MOCK = Allowance(Audience.SIGNED_IN, "synthetic mock rows with the same schema (no real row)")
_ASK = Allowance(Audience.RESEARCHER, "a request through a project, decided by the policy")

TIERS: dict[Tier, TierDef] = {
    "open": TierDef(
        name="open", title="Open",
        summary="Open data: anyone may use it, no account or request needed.",
        what_you_get="rows, read-only SQL and exact aggregates",
        how_to_reach="download it, query it with SQL, or use the SDK or MCP tools",
        wait="none",
        operations={
            Operation.METADATA: _META,
            Operation.DOWNLOAD: Allowance(Audience.ANYONE, "rows (CSV or JSON)"),
            Operation.OPEN_SQL: Allowance(Audience.ANYONE, "rows from a read-only SELECT"),
            Operation.EXACT_AGGREGATE: Allowance(Audience.ANYONE, "exact counts by group"),
        },
    ),
    "safeguarded": TierDef(
        name="safeguarded", title="Safeguarded",
        summary=("Safeguarded data: answered at once with differentially private aggregates "
                 "for researchers on a project with a grant; never rows, never exact counts."),
        what_you_get=("differentially private aggregates (counts, sums, means, quantiles, "
                      "histograms) with a stated error, spent from a privacy budget"),
        how_to_reach=("ask for access through a project (often granted at once by policy), "
                      "then ask private questions: 'ndl dp-query', the SDK's private_query, "
                      "the dataset page or the MCP tool run_private_query"),
        wait="seconds when the policy grants at once; otherwise a data steward's review",
        operations={
            Operation.METADATA: _META,
            Operation.MOCK: _MOCK,
            Operation.REQUEST_ACCESS: _ASK,
            Operation.PRIVATE_QUERY: Allowance(
                Audience.GRANTED_RESEARCHER, "differentially private aggregates"),
            Operation.BUDGET_STATUS: Allowance(
                Audience.GRANTED_RESEARCHER, "the privacy budget left to you and your project"),
        },
    ),
    "controlled": TierDef(
        name="controlled", title="Controlled",
        summary=("Controlled data: the most sensitive tier. Its rows are reached only by "
                 "reviewed code run at the data, in a sandbox; outputs are disclosure-checked "
                 "and released by an output checker. Nobody sees a row."),
        what_you_get=("outputs of your code (tables, model summaries, figures, text) after "
                      "automatic disclosure checks and an output checker's release; synthetic "
                      "mock rows to develop against"),
        how_to_reach=("ask for access through a project; develop against the mock with 'ndl "
                      "run BUNDLE --mock'; send the code with 'ndl submit BUNDLE --project P'; "
                      "a data steward reviews the code, an output checker the outputs"),
        wait="a data steward's review of the code, then an output checker's of the outputs",
        operations={
            Operation.METADATA: _META,
            Operation.MOCK: _MOCK,
            Operation.REQUEST_ACCESS: _ASK,
            Operation.CODE_JOB: Allowance(
                Audience.GRANTED_RESEARCHER,
                "outputs of reviewed code, disclosure-checked and released by an output "
                "checker"),
        },
    ),
}

# What to use instead, when an operation is not served on a tier: the refusal says it.
_INSTEAD: dict[Tier, str] = {
    "open": "open data needs no grant: download it, or query it with SQL or exact counts",
    "safeguarded": ("safeguarded data is answered only with differentially private "
                    "aggregates: use 'ndl dp-query', the SDK's private_query or the MCP tool "
                    "run_private_query, under a project's grant"),
    "controlled": ("controlled data is reached only by reviewed code run at the data: "
                   "develop against the mock with 'ndl run BUNDLE --mock', then 'ndl submit "
                   "BUNDLE --project P' under a project's grant"),
}


# Long work (work items) by kind, and the tier operation each one is: the hub checks it before
# queueing and the datasite again before it reads a row. A new kind names its operation here.
WORK_OPERATIONS: dict[str, Operation] = {
    "export": Operation.DOWNLOAD,  # a whole open dataset as one file, any size
    "job": Operation.CODE_JOB,     # a reviewed job bundle run in the datasite's sandbox
}
# Kinds only a service may queue (after its own checks: a job after a steward's approval);
# POST /api/work refuses them.
INTERNAL_WORK_KINDS = frozenset({"job"})


def tier_def(tier: str) -> TierDef:
    try:
        return TIERS[tier]  # type: ignore[index]
    except KeyError:
        raise InvalidInput(f"tier {tier!r} is not one of {', '.join(TIER_NAMES)}") from None


def allowance(tier: str, op: Operation) -> Allowance | None:
    return tier_def(tier).operations.get(op)


def tiers_serving(op: Operation) -> list[Tier]:
    return [t for t in TIER_NAMES if op in TIERS[t].operations]


# How a refusal names each operation, in words a researcher uses.
LABELS: dict[Operation, str] = {
    Operation.METADATA: "the catalogue entry is",
    Operation.MOCK: "synthetic mock rows are",
    Operation.DOWNLOAD: "downloading rows is",
    Operation.OPEN_SQL: "SQL over rows is",
    Operation.EXACT_AGGREGATE: "exact counts are",
    Operation.PRIVATE_QUERY: "private (differentially private) questions are",
    Operation.BUDGET_STATUS: "a privacy budget is",
    Operation.REQUEST_ACCESS: "asking for access is",
    Operation.CODE_JOB: "running reviewed code at the data is",
}


def require_operation(tier: str, op: Operation, *, dataset: str = "this dataset") -> Allowance:
    """The allowance for ``op`` on ``tier``, or PermissionDenied saying what the tier offers."""
    found = allowance(tier, op)
    if found is None:
        served = " or ".join(tiers_serving(op)) or "no"
        raise PermissionDenied(
            f"{dataset} is {tier} data: {LABELS[op]} only for {served} data. "
            f"{_INSTEAD[tier]}")  # type: ignore[index]
    return found


# --- columns ------------------------------------------------------------------------------

# Join keys that name a person: a column carrying one is an identifier whatever its tag says.
PERSON_JOIN_KEYS = frozenset({"nhs_number", "upn", "local_id", "name"})


class ColumnLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def sensitivity(self) -> str: ...
    @property
    def join_key(self) -> str | None: ...


def is_identifier(col: ColumnLike) -> bool:
    return col.sensitivity == "direct_identifier" or col.join_key in PERSON_JOIN_KEYS


def is_quasi_identifier(col: ColumnLike) -> bool:
    return not is_identifier(col) and (
        col.sensitivity == "quasi_identifier" or col.join_key is not None)


def column_use_problem(tier: str, col: ColumnLike, use: ColumnUse, *,
                       published: bool = False) -> str | None:
    """Why ``col`` may not be used as ``use`` on ``tier`` (None when it may).

    ``published``: the column's set of values is public (a code list, a boolean, or declared
    categories), so grouping or filtering on it reveals nothing about which values occur.
    """
    tier_def(tier)
    if tier == "open":
        return None
    if is_identifier(col):
        return (f"column {col.name!r} identifies people: outside open data it is never a "
                f"{use.value}")
    if is_quasi_identifier(col):
        if use is ColumnUse.OUTPUT:
            return (f"column {col.name!r} is a quasi-identifier: outside open data its values "
                    "are never released")
        if use in (ColumnUse.GROUP_KEY, ColumnUse.FILTER) and not published:
            return (f"column {col.name!r} is a quasi-identifier with no published code list: "
                    f"outside open data it can be a {use.value} only when its values are "
                    "published")
    return None


def check_column_use(tier: str, columns: Sequence[ColumnLike], names: Sequence[str],
                     use: ColumnUse) -> None:
    """Raise PermissionDenied naming every column in ``names`` not usable as ``use`` (values
    taken as unpublished: the strict reading, for faces that do not know code lists)."""
    by_name = {c.name: c for c in columns}
    found = [p for p in (column_use_problem(tier, by_name[n], use)
                         for n in names if n in by_name) if p]
    if found:
        raise PermissionDenied("; ".join(found), detail=found)
