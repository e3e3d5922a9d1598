"""Open data over SQL at the datasite, and the catalogue's version history, end to end."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from netfixture import Network

from ndl.core.errors import InvalidInput, PermissionDenied


def _sql(network: Network, dataset: str, sql: str, limit: int = 1000) -> httpx.Response:
    return httpx.post(f"{network.hub.url}/api/datasets/{dataset}/sql",
                      json={"sql": sql, "limit": limit}, timeout=30)


def test_anyone_can_run_sql_on_open_data(network: Network) -> None:
    r = _sql(network, "nhs-trust/ward-population",
             "SELECT ward, population FROM data WHERE population > 6 ORDER BY ward")
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == [["A", 100], ["C", 7]] and r.json()["truncated"] is False


def test_row_limit_is_applied_and_reported(network: Network) -> None:
    body = _sql(network, "nhs-trust/ward-population", "SELECT * FROM data", limit=2).json()
    assert len(body["rows"]) == 2 and body["truncated"] is True


def test_sql_on_non_open_data_is_refused_at_the_hub(network: Network) -> None:
    r = _sql(network, "nhs-trust/ae-attendances", "SELECT * FROM data")
    assert r.status_code == 403 and "only for open data" in r.json()["error"]["message"]


@pytest.mark.parametrize("sql", [
    "DROP VIEW data",
    "SELECT 1; SELECT 2",
    "COPY data TO '/tmp/stolen.csv'",
    "ATTACH '/tmp/x.db'",
    "INSTALL httpfs",
])
def test_only_one_select_may_run(network: Network, sql: str) -> None:
    r = _sql(network, "nhs-trust/ward-population", sql)
    assert r.status_code == 422 and "only one SELECT" in r.json()["error"]["message"]


@pytest.mark.parametrize("target", ["ae-attendances/data.parquet", "/etc/passwd"])
def test_open_sql_cannot_read_other_files(network: Network, target: str) -> None:
    path = target if target.startswith("/") else str(network.site.root / "datasets" / target)
    r = _sql(network, "nhs-trust/ward-population", f"SELECT * FROM read_csv('{path}')")
    assert r.status_code == 422 and "'read_csv'" in r.json()["error"]["message"]
    r = _sql(network, "nhs-trust/ward-population", f"SELECT * FROM read_parquet('{path}')")
    assert r.status_code == 422


def test_runaway_queries_are_stopped(network: Network) -> None:
    r = _sql(network, "nhs-trust/ward-population",
             "SELECT count(*) FROM range(1000000000) a, range(1000000000) b")
    assert r.status_code == 504 and "stopped" in r.json()["error"]["message"]


def test_open_sql_is_on_the_register(network: Network) -> None:
    _sql(network, "nhs-trust/ward-population", "SELECT count(*) FROM data")
    with network.client() as c:
        entries = c.register_entries()["entries"]
    assert any(e["kind"] == "open.sql" and e["actor"] == "anonymous" for e in entries)


def test_republished_metadata_makes_a_new_version(network: Network) -> None:
    meta_path = network.site.root / "datasets" / "ward-population" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["description"] = "Now with a better description."
    meta_path.write_text(json.dumps(meta))  # the running datasite notices and republishes
    with network.client() as c:
        for _ in range(100):
            versions = c._request("GET", "/api/datasets/nhs-trust/ward-population/versions")
            if len(versions["versions"]) == 2:
                break
            time.sleep(0.2)
        detail = c.dataset("nhs-trust/ward-population")
    assert [v["version"] for v in versions["versions"]] == [2, 1]
    assert detail["version"] == 2 and detail["description"] == "Now with a better description."


def test_mock_is_404_until_one_exists_and_needs_login(network: Network) -> None:
    r = httpx.get(f"{network.hub.url}/api/datasets/nhs-trust/ward-population/mock")
    assert r.status_code == 401
    with network.client() as c, pytest.raises(Exception, match="no mock data yet"):
        c._request("GET", "/api/datasets/nhs-trust/ward-population/mock")


def test_bad_sql_bodies(network: Network) -> None:
    with network.client() as c:
        with pytest.raises(InvalidInput):
            c._request("POST", "/api/datasets/nhs-trust/ward-population/sql", json={"sql": ""})
        with pytest.raises(PermissionDenied):
            c._request("POST", "/api/datasets/nhs-trust/ae-attendances/sql",
                       json={"sql": "SELECT 1"})
