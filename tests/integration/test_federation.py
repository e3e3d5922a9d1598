"""The wire, end to end: hub and datasite as real processes, on SQLite and PostgreSQL."""

from __future__ import annotations

import time

import httpx
import pyarrow.parquet as pq
import pytest
from netfixture import Network

from ndl.core.errors import (
    AuthenticationRequired,
    InvalidInput,
    NotFound,
    PermissionDenied,
    UpstreamTimeout,
)


def test_datasite_registers_and_publishes(network: Network) -> None:
    with network.client() as c:
        sites = c.datasites()
        found = c.search("A&E")
        detail = c.dataset("nhs-trust/ae-attendances")
    assert [s["id"] for s in sites] == ["nhs-trust"] and sites[0]["online"]
    assert found["results"][0]["id"] == "nhs-trust/ae-attendances"
    assert [col["name"] for col in detail["columns"]] == ["region", "acuity"]
    assert detail["row_count"] == 40


def test_exact_counts_of_safeguarded_data_are_refused_whoever_asks(network: Network) -> None:
    """The breach this guards: exact counts answered safeguarded data under a grant. The
    granted researcher is refused too, and told the one way the tier answers."""
    with network.client() as c, pytest.raises(PermissionDenied, match="private_query"):
        c.query("nhs-trust/ae-attendances", count_by="region", project=network.project)
    with network.client() as c:
        kinds = [e["kind"] for e in c.register_entries()["entries"]]
    assert "query.submitted" not in kinds  # refused before anything was queued


def test_count_query_round_trip_matches_the_data(network: Network) -> None:
    table = pq.read_table(network.site.root / "datasets/ward-population/data.parquet")
    expected = dict(zip(table.column("ward").to_pylist(), [1] * table.num_rows, strict=True))
    with network.client("") as c:
        ans = c.query("nhs-trust/ward-population", count_by="ward")
    got = dict(zip(ans.to_pandas()["ward"], ans.to_pandas()["n"], strict=True))
    assert got == expected and ans.tier == "open"


def test_open_data_is_not_suppressed(network: Network) -> None:
    with network.client("") as c:  # open data: no token, no project, no grant
        ans = c.query("nhs-trust/ward-population", count_by=["ward"])
    assert ans.rows == [["A", 1], ["B", 1], ["C", 1]] and ans.suppressed == 0


def test_queries_are_on_the_register(network: Network) -> None:
    with network.client() as c:
        ans = c.query("nhs-trust/ward-population")
        entries = c.register_entries()["entries"]
    kinds = [e["kind"] for e in entries]
    assert {"org.created", "datasite.registered", "dataset.published", "query.submitted",
            "query.answered"} <= set(kinds)
    submitted = next(e for e in entries if e["kind"] == "query.submitted")
    assert submitted["payload"]["message_id"] == ans.message_id
    assert "alice" not in submitted["actor"]  # never the researcher's name


@pytest.mark.parametrize("dataset,body,error,words", [
    ("nhs-trust/nope", {"by": ["region"]}, NotFound, "not in the catalogue"),
    ("nhs-trust/ward-population", {"by": ["postcode"]}, InvalidInput, "its columns are"),
    ("nhs-trust/ward-population", {"by": "ward"}, InvalidInput, "by"),
    ("nhs-trust/ward-population", {"by": ["ward"], "sql": "DROP"}, InvalidInput, "sql"),
    ("nhs-trust/ae-attendances", {"by": ["region"]}, PermissionDenied, "only for open"),
])
def test_bad_queries_get_clear_errors(network: Network, dataset: str, body: dict,
                                      error: type, words: str) -> None:
    with network.client() as c, pytest.raises(error, match=words):
        c._request("POST", f"/api/datasets/{dataset}/query",
                   json={**body, "project": network.project})


def test_tokens_and_roles_are_checked(network: Network) -> None:
    with network.client("") as anon, pytest.raises(AuthenticationRequired, match="ndl login"):
        anon.budget("nhs-trust/ae-attendances", network.project)
    with network.client("ndl_forged") as c, pytest.raises(AuthenticationRequired):
        c.query("nhs-trust/ward-population")
    with network.client(network.steward) as c, pytest.raises(PermissionDenied, match="researcher"):
        c.budget("nhs-trust/ae-attendances", network.project)


def test_malformed_json_body_is_a_422_envelope(network: Network) -> None:
    r = httpx.post(f"{network.hub.url}/api/datasets/nhs-trust/ae-attendances/query",
                   content=b"{not json", headers={"Authorization": f"Bearer {network.researcher}",
                                                  "Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input"


def test_a_vanished_datasite_gives_a_timeout_not_a_hang(network: Network) -> None:
    network.site.kill()
    started = time.monotonic()
    with network.client() as c, pytest.raises(UpstreamTimeout, match="did not answer"):
        c.query("nhs-trust/ward-population")
    assert time.monotonic() - started < 15
    with network.client() as c:
        msgs = c.register_entries()["entries"]
    assert not any(e["kind"] == "query.answered" for e in msgs)


def test_datasite_survives_a_hub_restart(network: Network) -> None:
    network.hub.stop()
    time.sleep(1.5)  # the datasite is now failing to poll and backing off
    network.hub.start()
    deadline = time.monotonic() + 40
    while True:
        try:
            with network.client() as c:
                ans = c.query("nhs-trust/ward-population", count_by="ward")
            break
        except UpstreamTimeout:
            if time.monotonic() > deadline:
                raise
    assert ans.rows[0] == ["A", 1]
    assert network.site.proc is not None and network.site.proc.poll() is None
