"""One hub API call, described as data: what to send, and how to read the answer.

A :class:`Call` knows nothing about sync or async. The two drivers (``ndl.hubclient.Client``
and ``ndl.hubclient.AsyncClient``) each send it their own way and hand the response back to
:meth:`Call.finish`, so turning an answer into a typed result or into an error from the error
tree is written once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx

from ndl.core.errors import NdlError, UpstreamTimeout, UpstreamUnavailable, error_from_json

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

T = TypeVar("T")
Params = Mapping[str, str | int | float | bool]


@dataclass(frozen=True)
class Call(Generic[T]):
    """A request to the hub plus the parser that makes its successful answer a ``T``."""

    method: str
    path: str
    parse: Callable[[Any], T]
    params: Params | None = None
    json: Any = None
    content: bytes | None = None    # a body already encoded, sent as it is
    headers: Mapping[str, str] | None = None

    def finish(self, resp: httpx.Response) -> T:
        """The typed result of a 2xx answer; the error from the error tree otherwise."""
        try:
            data: Any = resp.json()
        except ValueError:
            data = resp.text
        if resp.status_code >= 400:
            raise error_from_json(resp.status_code, data)
        try:
            return self.parse(data)
        except NdlError:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            # A proxy's HTML page or another service at this URL: say so, not a KeyError.
            raise UpstreamUnavailable(
                f"the answer to {self.method} {self.path} is not what an ndl hub sends "
                f"({type(exc).__name__}: {exc}); is the URL an ndl hub of this version?"
            ) from exc


@contextmanager
def reaching(base_url: str, call: Call[Any]) -> Iterator[None]:
    """Turn httpx's network failures into the error tree (used around both drivers' send)."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout(
            f"the hub at {base_url} did not answer {call.method} {call.path} in time; "
            "try again, or a smaller request"
        ) from exc
    except httpx.TransportError as exc:
        raise UpstreamUnavailable(
            f"cannot reach the hub at {base_url} ({exc}); is 'ndl hub' running and is the "
            "URL right?"
        ) from exc


# -- results --------------------------------------------------------------------------------

@dataclass
class QueryAnswer:
    """The answer to an aggregate query. ``None`` in ``n`` marks a suppressed small count."""

    dataset: str
    columns: list[str]
    rows: list[list[Any]]
    suppressed: int = 0
    threshold: int | None = None
    tier: str = ""
    message_id: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_arrow(self) -> pa.Table:
        import pyarrow as pa

        return pa.table({c: [r[i] for r in self.rows] for i, c in enumerate(self.columns)})

    def to_pandas(self) -> pd.DataFrame:
        frame: pd.DataFrame = self.to_arrow().to_pandas()
        return frame


def json_object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TypeError(f"expected a JSON object, got {type(data).__name__}")
    return data


def object_list(key: str) -> Callable[[Any], list[dict[str, Any]]]:
    """The list of objects under ``key`` of the answer (``{"datasites": [...]}``)."""

    def parse(data: Any) -> list[dict[str, Any]]:
        items = json_object(data)[key]
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise TypeError(f"{key!r} is not a list of JSON objects")
        return items

    return parse


def count_answer(data: Any) -> QueryAnswer:
    d = json_object(data)
    return QueryAnswer(
        dataset=d["dataset"], columns=d["columns"], rows=d["rows"],
        suppressed=d.get("suppressed", 0), threshold=d.get("threshold"),
        tier=d.get("tier", ""), message_id=d.get("message_id", ""), raw=d,
    )


def sql_answer(data: Any) -> QueryAnswer:
    d = json_object(data)
    return QueryAnswer(dataset=d["dataset"], columns=d["columns"], rows=d["rows"],
                       tier="open", message_id=d.get("message_id", ""), raw=d)


def token(data: Any) -> str:
    value = json_object(data)["token"]
    if not isinstance(value, str):
        raise TypeError("'token' is not a string")
    return value
