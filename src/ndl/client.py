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
    def query(self, dataset_id: str, *, count_by: list[str] | str | None = None,
              project: str | None = None) -> QueryAnswer:
        """Count rows of a dataset, grouped by zero to three columns, computed at its datasite.

        Non-open data needs ``project``: a project of yours with an active grant for it.
        """
        by = [count_by] if isinstance(count_by, str) else list(count_by or [])
        body: dict[str, Any] = {"op": "count", "by": by}
        if project:
            body["project"] = project
        data = self._request("POST", f"/api/datasets/{dataset_id}/query", json=body)
        return QueryAnswer(
            dataset=data["dataset"], columns=data["columns"], rows=data["rows"],
            suppressed=data.get("suppressed", 0), threshold=data.get("threshold"),
            tier=data.get("tier", ""), message_id=data.get("message_id", ""), raw=data,
        )

    def sql(self, dataset_id: str, sql: str, *, limit: int = 1000) -> QueryAnswer:
        """Run one read-only SELECT over an open dataset (the table is called ``data``)."""
        data = self._request("POST", f"/api/datasets/{dataset_id}/sql",
                             json={"sql": sql, "limit": limit})
        return QueryAnswer(dataset=data["dataset"], columns=data["columns"], rows=data["rows"],
                           tier="open", message_id=data.get("message_id", ""), raw=data)

    def private_query(self, dataset_id: str, *, project: str, sql: str | None = None,
                      query: dict[str, Any] | None = None, rho: float | None = None,
                      preview: bool = False) -> dict[str, Any]:
        """A differentially private answer from safeguarded data (spends privacy budget).

        ``preview=True`` returns the expected error and the budget left, and spends nothing.
        """
        body: dict[str, Any] = {"project": project, "preview": preview}
        for k, v in (("sql", sql), ("query", query), ("rho", rho)):
            if v is not None:
                body[k] = v
        result: dict[str, Any] = self._request(
            "POST", f"/api/datasets/{dataset_id}/private-query", json=body)
        return result

    def budget(self, dataset_id: str, project: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "GET", f"/api/datasets/{dataset_id}/budget", params={"project": project})
        return result

    # -- access -------------------------------------------------------------------------
    def create_project(self, *, title: str, purpose: str, lay_summary: str,
                       legal_basis: str, end_date: str, purpose_category: str = "research",
                       members: list[str] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", "/api/projects", json={
            "title": title, "purpose": purpose, "purpose_category": purpose_category,
            "lay_summary": lay_summary, "legal_basis": legal_basis, "end_date": end_date,
            "members": members or []})
        return result

    def project(self, project_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/api/projects/{project_id}")
        return result

    def request_access(self, project_id: str, datasets: list[str]) -> dict[str, Any]:
        """Ask for several datasets (at several organisations) in one request."""
        result: dict[str, Any] = self._request(
            "POST", f"/api/projects/{project_id}/requests", json={"datasets": datasets})
        return result

    def steward_queue(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", "/api/stewards/queue")["pending"]
        return result

    def decide(self, item_id: int, decision: str, reason: str = "") -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "POST", f"/api/requests/items/{item_id}/decision",
            json={"decision": decision, "reason": reason})
        return result

    def revoke_grant(self, grant_id: str, reason: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", f"/api/grants/{grant_id}/revoke",
                                               json={"reason": reason})
        return result

    def time_to_access(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/api/metrics/time-to-access")
        return result

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
