"""Mock data end to end: the datasite synthesises and sends it; signed-in users download it."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from ndl.client import Client
from ndl.demo.synth import generate_demo_data
from ndl.linkage.nhs_number import is_valid
from ndl.testing import DatasiteProcess, HubProcess


@pytest.fixture(scope="module")
def nhs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HubProcess, str, Path]]:
    root = tmp_path_factory.mktemp("mocks")
    generate_demo_data(root / "sites", people=300, seed=11)
    hub = HubProcess(root / "hub")
    hub.create_org("nhs-trust", "Northshire NHS Foundation Trust", "nhs")
    steward = hub.create_user("sam", ["steward"], org="nhs-trust")
    researcher = hub.create_user("alice", ["researcher"])
    with hub, DatasiteProcess(root / "sites" / "nhs-trust", hub.url, org="nhs-trust",
                              token=steward, poll_wait=2):
        for _ in range(100):  # mocks follow the metadata by a moment
            r = httpx.get(f"{hub.url}/api/datasets/nhs-trust/patients/mock",
                          headers={"Authorization": f"Bearer {researcher}"})
            if r.status_code == 200:
                break
            time.sleep(0.2)
        yield hub, researcher, root / "sites" / "nhs-trust"


def test_signed_in_users_get_synthetic_rows_with_the_real_schema(
    nhs: tuple[HubProcess, str, Path]
) -> None:
    hub, token, site = nhs
    with Client(hub.url, token) as c:
        body = c._request("GET", "/api/datasets/nhs-trust/patients/mock", params={"limit": 50})
    real = pq.read_table(site / "datasets" / "patients" / "data.parquet")
    assert body["synthetic"] is True and "differential privacy" in body["method"]
    assert body["columns"] == real.column_names and len(body["rows"]) == 50
    nhs_col = body["columns"].index("nhs_number")
    # Missing values are part of the learned shape, so some mock NHS numbers may be null.
    mock_numbers = {r[nhs_col] for r in body["rows"]} - {None}
    assert mock_numbers and all(is_valid(n) for n in mock_numbers)
    assert not mock_numbers & set(real.column("nhs_number").to_pylist())
    real_rows = {tuple(str(v) for v in r.values()) for r in real.to_pylist()}
    assert not any(tuple(str(v) for v in row) in real_rows for row in body["rows"])


def test_mock_csv_download(nhs: tuple[HubProcess, str, Path]) -> None:
    hub, token, _ = nhs
    r = httpx.get(f"{hub.url}/api/datasets/nhs-trust/ae-attendances/mock",
                  params={"format": "csv", "limit": 20},
                  headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0][0].strip('"') == "attendance_id" and len(rows) == 21


def test_anonymous_users_cannot_download_mocks(nhs: tuple[HubProcess, str, Path]) -> None:
    hub, _, _ = nhs
    r = httpx.get(f"{hub.url}/api/datasets/nhs-trust/patients/mock")
    assert r.status_code == 401


def test_mock_publication_is_on_the_register(nhs: tuple[HubProcess, str, Path]) -> None:
    hub, _, _ = nhs
    entries = httpx.get(f"{hub.url}/api/register", params={"kind": "mock.published"}).json()
    assert {e["subject"] for e in entries["entries"]} == {"nhs-trust/patients",
                                                         "nhs-trust/ae-attendances"}
