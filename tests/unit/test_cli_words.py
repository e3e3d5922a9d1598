"""The CLI says numbers, waits and times as a person reads them, and its help is honest."""

from __future__ import annotations

from datetime import UTC, datetime

from typer.testing import CliRunner

from ndl.cli.app import app
from ndl.cli.words import ago, duration, moment, plural

NOW = datetime(2026, 12, 5, 14, 6, tzinfo=UTC)


def test_plurals() -> None:
    assert plural(1, "dataset") == "1 dataset"
    assert plural(0, "dataset") == "0 datasets"
    assert plural(1200, "entry", "entries") == "1,200 entries"


def test_durations_carry_their_own_unit() -> None:
    assert duration(None) == "-"
    assert duration(12 / 3600) == "12 seconds"
    assert duration(1 / 3600) == "1 second"
    assert duration(0.5) == "30 minutes"
    assert duration(3.25) == "3.2 hours"
    assert duration(72) == "3.0 days"


def test_moments_read_as_dates_and_how_long_ago() -> None:
    assert moment("2026-12-05T14:03:00+00:00", NOW) == "5 Dec 2026 14:03 UTC (3 minutes ago)"
    assert moment("2026-12-05T14:03:00.123456", NOW).endswith("(3 minutes ago)")
    assert moment("2027-12-05T14:06:00+00:00", NOW) == "5 Dec 2027 14:06 UTC (in 1 year)"
    assert moment("2027-03-31", NOW) == "31 Mar 2027"
    assert moment(None) == "never" and moment("") == "never"
    assert moment("not a time") == "not a time"
    assert ago(NOW, NOW) == "just now"


def test_flags_do_not_look_as_if_they_take_values() -> None:
    runner = CliRunner()
    for command in (["search", "--help"], ["project", "list", "--help"], ["demo", "--help"]):
        shown = runner.invoke(app, command, env={"COLUMNS": "120"}).output
        assert "<bool>" not in shown and "BOOLEAN" not in shown, shown
        assert "--help" in shown
    assert "<str>" in runner.invoke(app, ["search", "--help"], env={"COLUMNS": "120"}).output
