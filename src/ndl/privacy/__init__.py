"""Privacy: differentially private queries for the safeguarded tier.

A :class:`PrivateQuery` (or restricted SQL through :func:`from_sql`) is checked against a
dataset's metadata (:func:`check_query`), previewed for its expected error (:func:`preview`)
and run at the datasite with OpenDP under zCDP (:func:`run`), with optional disclosure
control after the noise (:class:`SdcRules`).

Names are loaded on first use, so importing a sibling module (the budget ledger) does not
pay for OpenDP and sqlglot.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ndl.privacy.dp import preview, run
    from ndl.privacy.spec import (
        Aggregate,
        AggregateReport,
        DpResult,
        Filter,
        Plan,
        PrivateQuery,
        SdcRules,
        check_query,
        parse_query,
        problems,
    )
    from ndl.privacy.sql import ALLOWED_SQL, from_sql

_WHERE = {
    "preview": "dp", "run": "dp",
    "Aggregate": "spec", "AggregateReport": "spec", "DpResult": "spec", "Filter": "spec",
    "Plan": "spec", "PrivateQuery": "spec", "SdcRules": "spec", "check_query": "spec",
    "parse_query": "spec", "problems": "spec",
    "ALLOWED_SQL": "sql", "from_sql": "sql",
}

__all__ = [
    "ALLOWED_SQL",
    "Aggregate",
    "AggregateReport",
    "DpResult",
    "Filter",
    "Plan",
    "PrivateQuery",
    "SdcRules",
    "check_query",
    "from_sql",
    "parse_query",
    "preview",
    "problems",
    "run",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'ndl.privacy' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ndl.privacy.{module}"), name)
