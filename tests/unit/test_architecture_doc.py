"""docs/architecture.md names every top-level CLI command, so the code layout stays true."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main

from ndl.cli.app import app

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def _cli_paragraph() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("  cli/           Typer commands")
    end = text.index("\n  demo/", start)
    return text[start:end]


def test_every_top_level_command_is_named_in_the_code_layout() -> None:
    named = set(re.findall(r"[a-z][a-z-]*", _cli_paragraph().split(":", 1)[1]))
    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    assert commands - named == set(), "add these commands to docs/architecture.md's cli/ line"
    assert {"backup", "restore", "incident"} <= commands
