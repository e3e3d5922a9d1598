"""``ndl dp-query`` words each answer's uncertainty as every face does (ndl.privacy.wording)."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

import ndl.cli  # noqa: F401  (registers every command on the app)
from ndl.cli import privacy_cmds
from ndl.cli.app import app

PREVIEW = {"preview": {"rho": 0.1, "confidence": 0.95, "privacy_unit": "person",
                       "aggregates": [{"label": "n", "op": "count", "mechanism": "gaussian",
                                       "half_width_95": 40.3, "note": ""}]},
           "budget_remaining": {"researcher": 1.0, "project": 2.0, "per_query": 0.5}}
ANSWER = {"columns": ["region", "n"], "rows": [["North", 1234], ["South", None]],
          "aggregates": [{"label": "n", "op": "count", "half_width_95": 40.3,
                          "cells": ["n"]}],
          "rho_spent": 0.09999999999999999,
          "budget_remaining": {"researcher": 0.9, "project": 1.9}}


class FakeClient:
    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def private_query(self, *_: Any, preview: bool = False, **__: Any) -> dict[str, Any]:
        return PREVIEW if preview else ANSWER


def test_dp_query_states_each_numbers_margin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(privacy_cmds, "_client", lambda *_: FakeClient())
    out = CliRunner().invoke(app, ["dp-query", "nhs-trust/ae-attendances", "--sql",
                                   "SELECT region, COUNT(*) AS n FROM data GROUP BY region",
                                   "--rho", "0.1", "--project", "p-1", "--yes"],
                             env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "give or take 40 (95%)" in out.output  # the preview's expected error
    assert "about 1,234, give or take 40 (95%)" in out.output
    assert "withheld (too few to show)" in out.output
    assert "spent rho=0.1;" in out.output and "0.0999" not in out.output


def test_cli_and_web_say_the_same_privacy_unit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same query once read "a row" on the web and "person" in the CLI."""
    from ndl.privacy.wording import privacy_unit
    from ndl.web.privacy_pages import unit_text

    unit = "person (identified by nhs_number; at most 5 rows each)"
    monkeypatch.setitem(PREVIEW["preview"], "privacy_unit", unit)
    monkeypatch.setitem(PREVIEW["preview"], "max_rows_per_person", 5)
    monkeypatch.setattr(privacy_cmds, "_client", lambda *_: FakeClient())
    out = CliRunner().invoke(app, ["dp-query", "nhs-trust/ae-attendances", "--sql",
                                   "SELECT COUNT(*) AS n FROM data", "--rho", "0.1",
                                   "--project", "p-1", "--preview"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    words = privacy_unit(unit, 5)
    assert words.startswith("A person: at most 5 rows per person")
    assert unit_text(unit, 5) == words
    assert " ".join(words.split()) in " ".join(out.output.split())
    assert "-level" not in out.output
