"""Long work as the client sees it: a typed view of a work item, and server-sent events.

The hub answers ``POST /api/work`` at once (202) and the item is then followed by id, by
polling ``GET /api/work/{id}`` or by reading ``GET /api/work/{id}/events``. Both carry the
same JSON, which :func:`work_view` turns into a :class:`Work`; :func:`parse_sse` reads the
event stream (the WHATWG rules the browser's ``EventSource`` follows, so the SDK and the web
page read the same stream the same way).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ndl.work.views import FINAL_STATES, Work, WorkResult

__all__ = ["FINAL_STATES", "MAX_SSE_LINE", "SseEvent", "Work", "WorkResult", "parse_sse",
           "state_events", "work_list", "work_view"]

# An event stream line longer than this is not one of the hub's (a view is well under 4 kB).
MAX_SSE_LINE = 1 << 20


def _text(d: dict[str, Any], key: str) -> str:
    value = d[key]
    if not isinstance(value, str):
        raise TypeError(f"{key!r} is not text")
    return value


def _optional_text(d: dict[str, Any], key: str) -> str | None:
    value = d.get(key)
    return value if isinstance(value, str) else None


def _result(raw: Any) -> WorkResult | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise TypeError("'result' is not a JSON object")
    size, rows = raw["size"], raw.get("rows")
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError("'result.size' is not a whole number")
    return WorkResult(sha256=_text(raw, "sha256"), size=size,
                      media_type=str(raw.get("media_type", "application/octet-stream")),
                      filename=str(raw.get("filename", "")),
                      rows=rows if isinstance(rows, int) and not isinstance(rows, bool)
                      else None)


def work_view(data: Any) -> Work:
    """A :class:`Work` from the hub's JSON view of an item."""
    if not isinstance(data, dict):
        raise TypeError(f"expected a JSON object, got {type(data).__name__}")
    progress = data.get("progress", 0.0)
    if isinstance(progress, bool) or not isinstance(progress, int | float):
        raise TypeError("'progress' is not a number")
    error = data.get("error")
    if error is not None and not isinstance(error, dict):
        raise TypeError("'error' is not a JSON object")
    attempts = data.get("attempts", 0)
    return Work(
        id=_text(data, "id"), kind=_text(data, "kind"), dataset=_text(data, "dataset"),
        state=_text(data, "state"), progress=float(progress),
        message=str(data.get("message", "")), created_at=str(data.get("created_at", "")),
        started_at=_optional_text(data, "started_at"),
        finished_at=_optional_text(data, "finished_at"),
        deadline=_optional_text(data, "deadline"),
        attempts=attempts if isinstance(attempts, int) else 0,
        error={str(k): str(v) for k, v in error.items()} if error else None,
        result=_result(data.get("result")),
        coordination_id=_optional_text(data, "coordination_id"),
        params_sha256=str(data.get("params_sha256", "")), raw=data,
    )


def work_list(data: Any) -> list[Work]:
    """The items of ``{"work": [...]}``, newest first as the hub sends them."""
    if not isinstance(data, dict) or not isinstance(data.get("work"), list):
        raise TypeError("expected {'work': [...]}")
    return [work_view(item) for item in data["work"]]


# -- server-sent events ----------------------------------------------------------------------

@dataclass(frozen=True)
class SseEvent:
    """One dispatched event: its type (``message`` if unnamed), data lines joined, last id."""

    event: str
    data: str
    id: str = ""


def parse_sse(lines: Iterable[str]) -> Iterator[SseEvent]:
    """Events from the lines of a ``text/event-stream`` (line endings already removed).

    As the HTML standard says: ``:`` starts a comment; ``field: value`` loses one space after
    the colon; ``data`` lines accumulate, joined by newlines; a blank line dispatches the
    event (none if it had no data); an unknown field is ignored; an event cut off by the end
    of the stream is never dispatched, so a half-sent view is not mistaken for a whole one.
    """
    event, last_id = "", ""
    data: list[str] = []
    for line in lines:
        if len(line) > MAX_SSE_LINE:
            raise ValueError(f"an event-stream line of {len(line):,} characters is not the "
                             "hub's")
        if line == "":
            if data:
                yield SseEvent(event or "message", "\n".join(data), last_id)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            last_id = value
        # "retry" and unknown fields: nothing to do (the SDK polls on a break, see follow)


def state_events(lines: Iterable[str]) -> Iterator[Work]:
    """The :class:`Work` views carried by the hub's ``state`` events."""
    import json

    for ev in parse_sse(lines):
        if ev.event == "state":
            yield work_view(json.loads(ev.data))
