"""The faces are thin: rules live in the services, data access in the domain packages.

Read from the source (AST), so a face that tests a role, compares a tier by name, queries the
database or calls another face's route functions fails here, whatever its tests cover:

* no module under ``ndl/web``, ``ndl/hub`` (but ``deps.py``, which turns tokens into
  principals) or ``ndl/mcp`` calls ``.has(...)``, the role test: they call a service, which
  asks :mod:`ndl.access.rules`;
* none of them compares a ``.tier`` with a tier's name: what a tier serves is
  :mod:`ndl.core.tiers`' to say;
* no ``ndl/web`` module imports ``sqlalchemy.select`` (or other query builders) or a hub
  route module: pages call services, not the ORM and not the JSON API's functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ndl.core.tiers import TIER_NAMES

SRC = Path(__file__).resolve().parents[2] / "src" / "ndl"
FACES = ("web", "hub", "mcp")
ROLE_CHECK_ALLOWED = {SRC / "hub" / "deps.py"}
# Hub modules a page may import: the request's state, the principal it carries, and (for
# the sign-in form) where a request comes from. None of them is a route module.
WEB_MAY_IMPORT_FROM_HUB = {"ndl.hub.deps", "ndl.hub.state", "ndl.hub.login_limits"}
QUERY_BUILDERS = {"select", "insert", "update", "delete", "func", "text"}


def _modules(package: str) -> list[Path]:
    return sorted((SRC / package).rglob("*.py"))


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(SRC.parent)}:{getattr(node, 'lineno', '?')}"


def role_checks(path: Path) -> list[str]:
    """Every ``<anything>.has(...)`` call: a principal's role test."""
    return [_where(path, n) for n in ast.walk(_tree(path))
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr == "has"]


def _is_tier(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "tier"


def _names_a_tier(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return node.value in TIER_NAMES
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_names_a_tier(e) for e in node.elts)
    return False


def tier_comparisons(path: Path) -> list[str]:
    """``x.tier == "open"``, ``"controlled" != x.tier``, ``x.tier in ("open", ...)`` …"""
    found = []
    for n in ast.walk(_tree(path)):
        if isinstance(n, ast.Compare):
            sides = [n.left, *n.comparators]
            if any(_is_tier(s) for s in sides) and any(_names_a_tier(s) for s in sides):
                found.append(_where(path, n))
    return found


def forbidden_web_imports(path: Path) -> list[str]:
    found = []
    for n in ast.walk(_tree(path)):
        if isinstance(n, ast.ImportFrom) and n.module:
            names = {a.name for a in n.names}
            if n.module == "sqlalchemy" and names & QUERY_BUILDERS:
                found.append(f"{_where(path, n)} from sqlalchemy import "
                             f"{', '.join(sorted(names & QUERY_BUILDERS))}")
            if n.module == "ndl.hub" or (n.module.startswith("ndl.hub.")
                                         and n.module not in WEB_MAY_IMPORT_FROM_HUB):
                found.append(f"{_where(path, n)} from {n.module} import ...")
        elif isinstance(n, ast.Import):
            for a in n.names:
                if a.name.startswith("ndl.hub.") and a.name not in WEB_MAY_IMPORT_FROM_HUB:
                    found.append(f"{_where(path, n)} import {a.name}")
    return found


@pytest.mark.parametrize("face", FACES)
def test_faces_never_test_a_role(face: str) -> None:
    found = [w for p in _modules(face) if p not in ROLE_CHECK_ALLOWED for w in role_checks(p)]
    assert not found, ("a face tests a role itself; call a service that asks "
                       f"ndl.access.rules: {found}")


@pytest.mark.parametrize("face", FACES)
def test_faces_never_compare_a_tier_by_name(face: str) -> None:
    found = [w for p in _modules(face) for w in tier_comparisons(p)]
    assert not found, f"ask ndl.core.tiers what a tier serves instead: {found}"


def test_pages_neither_query_nor_call_routes() -> None:
    found = [w for p in _modules("web") for w in forbidden_web_imports(p)]
    assert not found, f"pages call services only: {found}"


# --- the scanners themselves ---------------------------------------------------------------

def test_the_scanners_see_what_they_forbid(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from sqlalchemy import select\n"
        "from ndl.hub import api\n"
        "from ndl.hub.privacy_api import private_query\n"
        "import ndl.hub.access_api\n"
        "from ndl.hub.deps import hub\n"
        "def f(who, ds):\n"
        "    if who.has('admin'):\n"
        "        return ds.tier == 'open' or 'controlled' != ds.tier\n"
        "    return ds.tier in ('safeguarded', 'controlled') or ds.tier == other\n",
        encoding="utf-8")
    global SRC
    saved, SRC = SRC, tmp_path
    try:
        assert len(role_checks(bad)) == 1
        assert len(tier_comparisons(bad)) == 3  # not the last: it names no tier
        imports = forbidden_web_imports(bad)
        assert len(imports) == 4 and not any("deps" in i for i in imports)
    finally:
        SRC = saved
