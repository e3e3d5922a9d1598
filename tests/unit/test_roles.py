"""Role names: every role has a display name and a SATRE mapping, docs/roles.md holds the
generated table, the rules it names exist in ndl.access.rules, the rules use only known role
ids, and the CLI's help and the account page show the display names."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from ndl.access import accounts, roles, rules
from ndl.cli import app

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "roles.md"
RULES = ROOT / "src" / "ndl" / "access" / "rules.py"
TEMPLATES = ROOT / "src" / "ndl" / "web" / "templates"


def test_every_role_has_a_display_name_and_a_satre_role() -> None:
    assert [r.id for r in roles.ROLES] == list(accounts.ROLES)
    for r in roles.ROLES:
        assert r.label and r.satre and r.may, r.id
    assert roles.label("steward") == "Data steward (access approver)"
    assert roles.label("no-such-role") == "no-such-role"


def test_the_doc_holds_the_generated_table() -> None:
    text = DOC.read_text("utf-8")
    table = text.split("<!-- roles-table:start -->\n")[1].split("\n<!-- roles-table:end -->")[0]
    assert table == roles.markdown_table()


def test_the_rules_named_exist_and_the_rules_name_only_known_roles() -> None:
    for r in roles.ROLES:
        for line in r.may:
            named = re.findall(r"\(([a-z_, ]+)\)$", line)
            assert named, (r.id, line)
            for rule in named[0].split(", "):
                assert callable(getattr(rules, rule, None)), f"{rule} is not in rules.py"
    source = RULES.read_text("utf-8")
    used = {role for args in re.findall(r"(?:\.has|require_role)\(([^)]*)\)", source)
            for role in re.findall(r'"([a-z_]+)"', args)}
    assert {"researcher", "steward", "admin"} <= used <= set(roles.BY_ID), used


def test_cli_help_and_pages_use_the_display_names() -> None:
    out = CliRunner().invoke(app, ["admin", "create-user", "--help"],
                             env={"COLUMNS": "300"}).output
    flat = " ".join(out.split())
    for r in roles.ROLES:
        assert f"{r.id} ({r.label})" in flat, r.label
    account = (TEMPLATES / "account.html").read_text("utf-8")
    assert "r.label" in account and "r.satre" in account
    # No page calls the role by a bare SATRE name it does not fully match.
    for page in TEMPLATES.rglob("*.html"):
        assert "Data Steward" not in page.read_text("utf-8"), page.name
