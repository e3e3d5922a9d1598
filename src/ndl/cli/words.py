"""Numbers, durations and times as a person reads them in the terminal.

The hub speaks ISO 8601 and hours as floats; people read "1 dataset", "3 minutes" and
"5 Dec 2026 14:03 (3 minutes ago)". Kept here so every command says them the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime


def plural(n: int, one: str, many: str | None = None) -> str:
    """``1 dataset``, ``2 datasets`` (``many`` for irregular words: entry/entries)."""
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def duration(hours: float | int | None) -> str:
    """A wait in the unit that reads best: seconds, minutes, hours or days."""
    if hours is None:
        return "-"
    seconds = float(hours) * 3600
    if seconds < 90:
        return plural(round(seconds), "second")
    if seconds < 90 * 60:
        return plural(round(seconds / 60), "minute")
    if hours < 48:
        return f"{hours:.1f} hours"
    return f"{hours / 24:.1f} days"


def _parse(value: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def ago(when: datetime, now: datetime | None = None) -> str:
    """``3 minutes ago`` or ``in 2 days``, to the nearest sensible unit."""
    delta = ((now or datetime.now(UTC)) - when).total_seconds()
    span = abs(delta)
    if span < 45:
        return "just now"
    for size, unit in ((86400 * 365, "year"), (86400 * 30, "month"), (86400, "day"),
                       (3600, "hour"), (60, "minute")):
        if span >= size:
            text = plural(round(span / size), unit)
            return f"{text} ago" if delta > 0 else f"in {text}"
    return plural(round(span), "second") + (" ago" if delta > 0 else "")


def moment(value: str | None, now: datetime | None = None, *, never: str = "never") -> str:
    """An ISO timestamp as ``5 Dec 2026 14:03 UTC (3 minutes ago)``; a bare date as
    ``5 Dec 2026``; text that is not a time is shown as it came."""
    if not value:
        return never
    when = _parse(value)
    if when is None:
        return value
    if len(value) == 10:  # a date, not a moment: no clock, no "ago"
        return f"{when.day} {when:%b %Y}"
    utc = when.astimezone(UTC)
    return f"{utc.day} {utc:%b %Y %H:%M} UTC ({ago(utc, now)})"
