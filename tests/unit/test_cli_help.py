"""Every command's --help renders (a stray rich-markup tag in one option's help once made
`ndl hub --help` crash instead of helping)."""

from __future__ import annotations

from typing import Any

import typer.main
from typer.testing import CliRunner

from ndl.cli import app


def _commands(group: Any, path: list[str]) -> list[list[str]]:
    out = [path]
    for name, sub in getattr(group, "commands", {}).items():  # typer vendors its own click
        out += _commands(sub, [*path, name])
    return out


def test_every_command_has_working_help() -> None:
    runner = CliRunner()
    commands = _commands(typer.main.get_command(app), [])
    assert ["hub"] in commands and ["datasite"] in commands
    for path in commands:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
        assert result.exit_code == 0, (path, result.output, result.exception)
        assert "Usage" in result.output, path
