"""docs/satre.md stays true: every SATRE v2.0 statement once, counts that add up, and every
piece of evidence it cites still in the tree.

The page claims statements as met or partly met on the strength of the files, tests and
commands it names; when one of those disappears (a command renamed, a test deleted), the
claim has lost its evidence, and this test says which row to fix. Commands are looked up in
the Typer app itself, not run, so the whole page is checked in about a second.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from ndl.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "satre.md"
SPEC = ROOT.parent / "shared" / "standards" / "satre-2.0-specification.yaml"

STATEMENT_COLUMNS = ("ID", "Statement (short)", "Importance", "Software", "Before", "After",
                     "Evidence", "How, and what is left")
SUMMARY_COLUMNS = ("Pillar", "Statements", "Organisational", "Software", "Before met",
                   "Before partly", "Before not met", "After met", "After partly",
                   "After not met")
GRADES = ("met", "partly", "not met")
ORGANISATIONAL = "n/a (organisational)"
# Items in backticks separated by "; " and nothing else, so the column parses one way only.
EVIDENCE = re.compile(r"^`[^`]+`(; `[^`]+`)*$")


@dataclass(frozen=True)
class Row:
    line: int
    cells: dict[str, str]

    @property
    def id(self) -> str:
        return self.cells["ID"]

    def evidence(self) -> list[str]:
        text = self.cells["Evidence"]
        return [item.strip("`") for item in text.split("; ")] if text else []


def _table(lines: list[str], heading: str) -> tuple[int, list[list[str]]]:
    """The first markdown table after ``heading``: its header and rows, as cells."""
    try:
        at = lines.index(heading)
    except ValueError:
        raise AssertionError(f"docs/satre.md has no '{heading}' section") from None
    start = next(i for i in range(at + 1, len(lines)) if lines[i].startswith("|"))
    table = []
    for i in range(start, len(lines)):
        if not lines[i].startswith("|"):
            break
        table.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
    return start + 1, table  # 1-based line of the header


def parse(text: str) -> tuple[list[Row], list[Row]]:
    """The summary rows and the statement rows of the page."""
    lines = text.splitlines()
    out: list[list[Row]] = []
    for heading, columns in (("## Summary", SUMMARY_COLUMNS),
                             ("## Statements", STATEMENT_COLUMNS)):
        first, table = _table(lines, heading)
        assert tuple(table[0]) == columns, f"line {first}: the columns must be {columns}"
        rows = []
        for n, cells in enumerate(table[2:], start=first + 2):
            assert len(cells) == len(columns), (
                f"line {n}: {len(cells)} cells, not {len(columns)} (a '|' inside a cell?)")
            rows.append(Row(n, dict(zip(columns, cells, strict=True))))
        out.append(rows)
    return out[0], out[1]


def _spec() -> dict[str, dict[str, Any]]:
    if not SPEC.is_file():
        pytest.fail(f"the SATRE specification is missing at {SPEC}")
    return {s["requirement_index"]: s
            for s in yaml.safe_load(SPEC.read_text("utf-8"))["specification"]}


# --- the checks ---------------------------------------------------------------------------

def statement_problems(rows: list[Row], spec: dict[str, dict[str, Any]]) -> list[str]:
    """(a) every statement exactly once, none invented; each row well formed."""
    problems = []
    seen = Counter(r.id for r in rows)
    problems += [f"{i}: listed {n} times" for i, n in seen.items() if n > 1]
    problems += [f"{i}: a statement of SATRE v2.0 with no row" for i in spec if i not in seen]
    for r in rows:
        where = f"line {r.line} ({r.id})"
        if r.id not in spec:
            problems.append(f"{where}: no such statement in SATRE v2.0")
            continue
        c = r.cells
        if c["Importance"] != spec[r.id]["importance"]:
            problems.append(f"{where}: importance is {spec[r.id]['importance']!r}, "
                            f"not {c['Importance']!r}")
        if c["Software"] == ORGANISATIONAL:
            if (c["Before"], c["After"]) != ("n/a", "n/a"):
                problems.append(f"{where}: an organisational statement is graded 'n/a'")
            if not c["How, and what is left"]:
                problems.append(f"{where}: say why it is organisational")
        elif c["Software"] == "yes":
            problems += [f"{where}: {col} must be one of {', '.join(GRADES)}, not {c[col]!r}"
                         for col in ("Before", "After") if c[col] not in GRADES]
        else:
            problems.append(f"{where}: Software is 'yes' or {ORGANISATIONAL!r}, "
                            f"not {c['Software']!r}")
    return problems


def summary_problems(summary: list[Row], rows: list[Row]) -> list[str]:
    """(b) each pillar's line, and "All", count the rows below."""
    def counts(subset: list[Row]) -> dict[str, int]:
        software = [r for r in subset if r.cells["Software"] == "yes"]
        out = {"Statements": len(subset), "Organisational": len(subset) - len(software),
               "Software": len(software)}
        for when in ("Before", "After"):
            for grade in GRADES:
                out[f"{when} {grade}"] = sum(1 for r in software if r.cells[when] == grade)
        return out

    problems = []
    pillars = sorted({r.id.split(".")[0] for r in rows})
    names = [s.cells["Pillar"] for s in summary]
    expected = [*(f"{p} …" for p in pillars), "All"]
    if len(names) != len(expected) or names[-1] != "All" or any(
            not n.startswith(f"{p} ") for n, p in zip(names, pillars, strict=False)):
        return [f"the summary's lines must be one per pillar, in order, then 'All' "
                f"({expected}); they are {names}"]
    for s, pillar in zip(summary, [*pillars, None], strict=True):
        subset = rows if pillar is None else [r for r in rows if r.id.split(".")[0] == pillar]
        for col, n in counts(subset).items():
            if s.cells[col] != str(n):
                problems.append(f"line {s.line} ({s.cells['Pillar']}): {col} is {n} in the "
                                f"table, not {s.cells[col]}")
    return problems


def _command_tree() -> Any:
    return typer.main.get_command(app)


def command_problem(item: str, root: Any) -> str | None:
    """(e) ``ndl group command --option``: each word a command or group of the one before,
    each ``--option`` one the last command takes."""
    words = item.split()[1:]
    cmd, path = root, ["ndl"]
    options = [w for w in words if w.startswith("-")]
    for word in (w for w in words if not w.startswith("-")):
        sub = getattr(cmd, "commands", {}).get(word)
        if sub is None:
            return f"'{' '.join(path)}' has no command {word!r}"
        cmd, path = sub, [*path, word]
    if not words or words[0].startswith("-"):
        return "name a command after 'ndl'"
    known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
    bad = [o for o in options if o not in known]
    return f"'{' '.join(path)}' has no option {bad[0]}" if bad else None


def path_problem(item: str) -> str | None:
    """(d, f) a file or folder of the repository; ``file::name`` a test or class in it."""
    name, _, symbol = item.partition("::")
    path = (ROOT / name).resolve()
    if Path(name).is_absolute() or not path.is_relative_to(ROOT):
        return "must be a path inside the repository"
    if not path.exists():
        return "no such file or folder in the repository"
    if symbol and not re.search(rf"^\s*(async\s+)?(def|class)\s+{re.escape(symbol)}\b",
                                path.read_text("utf-8"), re.MULTILINE):
        return f"{name} has no function or class {symbol!r}"
    return None


def evidence_problems(rows: list[Row], root: Any) -> list[str]:
    """(c) met or partly rows cite evidence; every item cited exists."""
    problems = []
    for r in rows:
        where = f"line {r.line} ({r.id})"
        text = r.cells["Evidence"]
        graded = {r.cells["Before"], r.cells["After"]} & {"met", "partly"}
        if not text:
            if graded:
                problems.append(f"{where}: '{'/'.join(sorted(graded))}' with no evidence")
            continue
        if not EVIDENCE.match(text):
            problems.append(f"{where}: evidence must be `items` in backticks separated "
                            f"by '; ', not {text!r}")
            continue
        for item in r.evidence():
            problem = (command_problem(item, root) if item.split()[0] == "ndl"
                       else path_problem(item))
            if problem:
                problems.append(f"{where}: `{item}`: {problem}")
    return problems


def all_problems(text: str, spec: dict[str, dict[str, Any]], root: Any) -> list[str]:
    summary, rows = parse(text)
    return (statement_problems(rows, spec) + summary_problems(summary, rows)
            + evidence_problems(rows, root))


# --- the page as it is --------------------------------------------------------------------

@pytest.fixture(scope="module")
def spec() -> dict[str, dict[str, Any]]:
    return _spec()


@pytest.fixture(scope="module")
def root() -> Any:
    return _command_tree()


def test_the_page_has_every_statement_true_counts_and_live_evidence(
        spec: dict[str, dict[str, Any]], root: Any) -> None:
    problems = all_problems(DOC.read_text("utf-8"), spec, root)
    assert not problems, "docs/satre.md:\n" + "\n".join(problems)


def test_the_specification_has_185_statements(spec: dict[str, dict[str, Any]]) -> None:
    assert len(spec) == 185


def test_the_readme_links_the_page() -> None:
    assert "docs/satre.md" in (ROOT / "README.md").read_text("utf-8")


# --- the checks catch what they are for ---------------------------------------------------

def _row(text: str, rid: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"| {rid} |"))


def _met_row(text: str) -> str:
    _, rows = parse(text)
    return _row(text, next(r.id for r in rows if r.cells["After"] == "met"))


def _edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


@pytest.fixture(scope="module")
def page() -> str:
    return DOC.read_text("utf-8")


def test_a_missing_or_invented_statement_is_caught(
        page: str, spec: dict[str, dict[str, Any]], root: Any) -> None:
    row = _row(page, "5.3.01")
    dropped = all_problems(_edit(page, row + "\n", ""), spec, root)
    assert any("5.3.01: a statement of SATRE v2.0 with no row" in p for p in dropped)
    invented = all_problems(_edit(page, row, row.replace("| 5.3.01 |", "| 5.3.99 |")),
                            spec, root)
    assert any("5.3.99" in p and "no such statement" in p for p in invented)
    doubled = all_problems(_edit(page, row, row + "\n" + row), spec, root)
    assert any("5.3.01: listed 2 times" in p for p in doubled)


def test_a_count_that_does_not_add_up_is_caught(
        page: str, spec: dict[str, dict[str, Any]], root: Any) -> None:
    # Regrade one row's After from met to not met, leaving the summary as it was.
    row = _met_row(page)
    cells = row.split(" | ")
    assert cells[5] == "met"
    cells[5] = "not met"
    problems = all_problems(_edit(page, row, " | ".join(cells)), spec, root)
    assert any("After met is" in p for p in problems), problems
    assert any("(All): After not met is" in p for p in problems), problems


def test_met_without_evidence_is_caught(
        page: str, spec: dict[str, dict[str, Any]], root: Any) -> None:
    row = _met_row(page)
    cells = row.split(" | ")
    cells[6] = ""
    problems = all_problems(_edit(page, row, " | ".join(cells)), spec, root)
    assert any("with no evidence" in p for p in problems), problems


@pytest.mark.parametrize(("item", "expected"), [
    ("src/ndl/access/no_such_module.py", "no such file"),
    ("tests/unit/test_no_such_file.py", "no such file"),
    ("tests/unit/test_register.py::test_no_such_test", "has no function or class"),
    ("../outside.md", "inside the repository"),
    ("ndl no-such-command", "has no command 'no-such-command'"),
    ("ndl job no-such-subcommand", "'ndl job' has no command"),
    ("ndl verify no-such-word", "'ndl verify' has no command"),
    ("ndl tokens create --no-such-option", "has no option --no-such-option"),
])
def test_evidence_that_does_not_exist_is_caught(
        page: str, spec: dict[str, dict[str, Any]], root: Any, item: str, expected: str
) -> None:
    row = _met_row(page)
    cells = row.split(" | ")
    cells[6] = f"`{item}`"
    problems = all_problems(_edit(page, row, " | ".join(cells)), spec, root)
    assert any(expected in p for p in problems), problems


def test_existing_evidence_of_each_kind_passes(root: Any) -> None:
    for item in ("ndl verify", "ndl datasite status", "ndl tokens create --read-only",
                 "ndl job check"):
        assert command_problem(item, root) is None, item
    for item in ("docs/jobs.md", "src/ndl/core", "tests/unit/test_register.py",
                 "tests/unit/test_register.py::test_edited_entry_is_detected"):
        assert path_problem(item) is None, item


def test_evidence_that_is_not_backticked_items_is_caught(
        page: str, spec: dict[str, dict[str, Any]], root: Any) -> None:
    row = _met_row(page)
    cells = row.split(" | ")
    cells[6] = "see src/ndl/access/rules.py"
    problems = all_problems(_edit(page, row, " | ".join(cells)), spec, root)
    assert any("in backticks" in p for p in problems), problems
