"""Suspension end to end: a real datasite process is suspended while it runs, its data stop
answering and its polls are refused, and once reinstated it carries on by itself (it keeps
polling, backing off, rather than stopping). A suspended researcher's grant goes unused.
On SQLite and PostgreSQL."""

from __future__ import annotations

import time

import httpx
import pytest
from netfixture import Network

from ndl.core.errors import Suspended

OPEN = "nhs-trust/ward-population"


def _admin(network: Network, token: str, path: str, **body: str) -> httpx.Response:
    return httpx.post(f"{network.hub.url}/api/admin/{path}", json=body or None, timeout=10,
                      headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def admin(network: Network) -> str:
    return network.hub.create_user("root", ["admin"])


def test_a_running_datasite_suspended_and_reinstated(network: Network, admin: str) -> None:
    with network.client("") as c:
        assert c.query(OPEN, count_by="ward").rows  # answering
    r = _admin(network, admin, "datasites/nhs-trust/suspend", reason="incident 5: in review")
    assert r.status_code == 200, r.text
    with network.client("") as c, pytest.raises(Suspended, match="answer no queries"):
        c.query(OPEN, count_by="ward")
    # The datasite's own polls are refused (it logs why and keeps trying).
    deadline = time.monotonic() + 30
    while "is suspended" not in network.site.log() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert "is suspended" in network.site.log()
    assert network.site.proc is not None and network.site.proc.poll() is None  # still running
    assert _admin(network, admin, "datasites/nhs-trust/reinstate").status_code == 200
    deadline = time.monotonic() + 30
    while True:  # it comes back by itself within its short back-off
        try:
            with network.client("") as c:
                assert c.query(OPEN, count_by="ward").rows
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_a_suspended_researchers_grant_is_not_used(network: Network, admin: str) -> None:
    assert _admin(network, admin, "users/alice/suspend", reason="incident 6").status_code == 200
    with network.client() as c, pytest.raises(Suspended, match="'alice' is suspended"):
        c.query("nhs-trust/ae-attendances", count_by="region", project=network.project)
    with network.client() as c, pytest.raises(Suspended):
        c.budget("nhs-trust/ae-attendances", network.project)
    assert _admin(network, admin, "users/alice/reinstate").status_code == 200
    with network.client() as c:
        assert c.budget("nhs-trust/ae-attendances", network.project) is not None
