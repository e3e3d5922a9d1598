"""Integration fixtures: a real hub process and real datasite processes on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from netfixture import Network

from ndl.testing import DatasiteProcess, HubProcess, granted_project


@pytest.fixture
def network(db_url: str, tmp_path: Path, small_site: Path) -> Iterator[Network]:
    """One hub (on SQLite or PostgreSQL) and one datasite holding ``small_site``."""
    hub = HubProcess(tmp_path / "hub", db_url, extra_args=["--query-timeout", "5",
                                                           "--lease-seconds", "2"])
    hub.create_org("nhs-trust", "Northshire NHS Foundation Trust", "nhs")
    researcher = hub.create_user("alice", ["researcher"], accredited=True)
    steward = hub.create_user("sam", ["steward"], org="nhs-trust")
    with hub:
        site = DatasiteProcess(small_site, hub.url, org="nhs-trust", token=steward,
                               poll_wait=2)
        with site:
            project = granted_project(hub.url, researcher, ["nhs-trust/ae-attendances"])
            yield Network(hub, site, researcher, steward, project)
