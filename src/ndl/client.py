"""The Python SDK: ``ndl.Client(url, token)``.

Results come back as plain dicts for metadata and as :class:`QueryAnswer` for queries, which
converts to a pyarrow Table or a pandas DataFrame on demand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from ndl.core.errors import UpstreamTimeout, UpstreamUnavailable, error_from_json

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

DEFAULT_HUB = "http://127.0.0.1:8700"


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
        return self.to_arrow().to_pandas()


class Client:
    """A connection to one library hub.

    >>> client = Client("http://127.0.0.1:8700", token="ndl_...")   # doctest: +SKIP
    >>> client.search("A&E")["results"][0]["id"]                     # doctest: +SKIP
    'nhs-trust/ae-attendances'
    """

    def __init__(self, url: str = DEFAULT_HUB, token: str | None = None, *,
                 timeout: float = 60.0, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout,
                                  transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"the hub at {self.url} did not answer in time") from exc
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(
                f"cannot reach the hub at {self.url} ({exc}); is 'ndl hub' running?"
            ) from exc
        try:
            data = resp.json()
        except ValueError:
            data = resp.text
        if resp.status_code >= 400:
            raise error_from_json(resp.status_code, data)
        return data

    # -- catalogue ------------------------------------------------------------------------
    def search(self, q: str | None = None, *, publisher: str | None = None,
               tier: str | None = None, limit: int = 20, offset: int = 0) -> dict[str, Any]:
        params = {k: v for k, v in {"q": q, "publisher": publisher, "tier": tier,
                                    "limit": limit, "offset": offset}.items() if v is not None}
        result: dict[str, Any] = self._request("GET", "/api/datasets", params=params)
        return result

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/api/datasets/{dataset_id}")
        return result

    def datasites(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", "/api/datasites")["datasites"]
        return result

    # -- queries --------------------------------------------------------------------------
    def query(self, dataset_id: str, *, count_by: list[str] | str | None = None) -> QueryAnswer:
        """Count rows of a dataset, grouped by zero to three columns, computed at its datasite."""
        by = [count_by] if isinstance(count_by, str) else list(count_by or [])
        data = self._request("POST", f"/api/datasets/{dataset_id}/query",
                             json={"op": "count", "by": by})
        return QueryAnswer(
            dataset=data["dataset"], columns=data["columns"], rows=data["rows"],
            suppressed=data.get("suppressed", 0), threshold=data.get("threshold"),
            tier=data.get("tier", ""), message_id=data.get("message_id", ""), raw=data,
        )

    # -- accounts and the register --------------------------------------------------------
    def login(self, username: str, password: str) -> str:
        data = self._request("POST", "/api/auth/login",
                             json={"username": username, "password": password})
        token: str = data["token"]
        self._http.headers["Authorization"] = f"Bearer {token}"
        return token

    def me(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/api/me")
        return result

    def register_entries(self, *, after: int = 0, limit: int = 1000) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "GET", "/api/register", params={"after": after, "limit": limit})
        return result
