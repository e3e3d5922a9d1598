"""Datasites behind real network boundaries: each in its own network namespace whose firewall
drops every inbound connection, the hub in the root namespace on the host side of a veth.

This tests the claim that a datasite needs only outbound connections to its hub (it
long-polls; nothing connects in) rather than asserting it: the federation still answers
count, open-SQL and private queries through the boundary, the boundary really refuses inbound
connections, the datasite listens on no port, and it reconnects by itself when the hub
restarts. Needs root (see tests/netboundary.py); skips elsewhere unless NDL_REQUIRE_NETNS=1.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest

from ndl.client import Client
from ndl.testing import (
    DatasiteProcess,
    HubProcess,
    free_port,
    granted_project,
    stop_all,
    write_dataset,
)
from netboundary import (
    Namespace,
    connect,
    connect_from_inside,
    listener_inside,
    namespaces,
    require_netns,
)

REGIONS = ["North East"] * 120 + ["London"] * 60 + ["Wales"] * 20


@dataclass
class Fed:
    hub: HubProcess
    nhs: DatasiteProcess
    council: DatasiteProcess
    ns_nhs: Namespace
    ns_council: Namespace
    researcher: str
    project: str


def _sites(root: Path) -> tuple[Path, Path]:
    nhs, council = root / "nhs", root / "council"
    write_dataset(nhs, "ae-attendances", pa.table({
        "region": REGIONS, "acuity": [i % 3 + 1 for i in range(len(REGIONS))]}),
        title="A&E attendances")
    (nhs / "datasets" / "ae-attendances" / "policy.yaml").write_text(
        "auto_approve: {}\nbudget:\n  per_query: 0.5\n  per_researcher: 2.0\n"
        "  per_project: 2.0\n  total: 5.0\n  suppress_below: 5\n  round_to: 5\n")
    write_dataset(nhs, "ward-population", pa.table({
        "ward": ["A", "B", "C"], "population": [100, 5, 7]}), tier="open")
    write_dataset(council, "library-visits", pa.table({
        "branch": ["Central"] * 4 + ["Harbour"] * 2}), tier="open")
    return nhs, council


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    require_netns()
    root = tmp_path_factory.mktemp("netb")
    nhs_dir, council_dir = _sites(root)
    with namespaces(2) as (ns_nhs, ns_council):
        # The hub listens only on the root end of the first veth; the second namespace reaches
        # it through its default route, as a site behind another gateway would.
        hub = HubProcess(root / "hub", host=ns_nhs.host_ip)
        nhs = council = None
        try:
            hub.create_org("nhs-trust", "NHS", "nhs")
            hub.create_org("county-council", "Council", "local_authority")
            nhs_steward = hub.create_user("sam", ["steward"], org="nhs-trust")
            council_steward = hub.create_user("cat", ["steward"], org="county-council")
            researcher = hub.create_user("alice", ["researcher"], accredited=True)
            hub.start()
            nhs = DatasiteProcess(nhs_dir, hub.url, org="nhs-trust", token=nhs_steward,
                                  poll_wait=2, netns=ns_nhs.name).start(wait_online=False)
            council = DatasiteProcess(council_dir, hub.url, org="county-council",
                                      token=council_steward, poll_wait=2,
                                      netns=ns_council.name).start(wait_online=False)
            nhs.wait_online()
            council.wait_online()
            project = granted_project(hub.url, researcher, ["nhs-trust/ae-attendances"])
            yield Fed(hub, nhs, council, ns_nhs, ns_council, researcher, project)
        except BaseException:
            stop_all(nhs, council, hub, show_logs=True)
            raise
        finally:
            stop_all(nhs, council, hub)  # before the namespaces go: a process would keep one


def _peers_of_hub(hub: HubProcess) -> set[str]:
    """The remote addresses of the connections established to the hub's port right now."""
    out = subprocess.run(["ss", "-H", "-t", "-n", "state", "established",
                          f"( sport = :{hub.port} )"], capture_output=True, text=True,
                         check=True).stdout
    return {line.split()[-1].rsplit(":", 1)[0] for line in out.splitlines() if line.strip()}


def test_both_datasites_register_and_publish_through_the_boundary(fed: Fed) -> None:
    with Client(fed.hub.url, fed.researcher) as c:
        sites = {s["id"]: s["online"] for s in c.datasites()}
        ids = {d["id"] for d in c.search("")["results"]}
    assert sites == {"nhs-trust": True, "county-council": True}
    assert {"nhs-trust/ae-attendances", "nhs-trust/ward-population",
            "county-council/library-visits"} <= ids
    # The long-polls really cross the veths: they come from the namespaces' own addresses.
    assert {fed.ns_nhs.inside_ip, fed.ns_council.inside_ip} <= _peers_of_hub(fed.hub)


def test_count_and_open_sql_are_answered_through_the_boundary(fed: Fed) -> None:
    with Client(fed.hub.url) as anon:
        counts = anon.query("county-council/library-visits", count_by="branch")
        rows = anon.sql("nhs-trust/ward-population",
                        "SELECT ward, population FROM data WHERE population > 6 ORDER BY ward")
    assert sorted(counts.rows) == [["Central", 4], ["Harbour", 2]]
    assert rows.rows == [["A", 100], ["C", 7]]


def test_a_private_query_is_answered_through_the_boundary(fed: Fed) -> None:
    with Client(fed.hub.url, fed.researcher) as c:
        answer = c.private_query("nhs-trust/ae-attendances", project=fed.project,
                                 sql="SELECT COUNT(*) AS n FROM data", rho=0.5)
    assert answer["rho_spent"] == pytest.approx(0.5)
    n = answer["rows"][0][0]
    assert n is not None and abs(n - len(REGIONS)) < 60 and n % 5 == 0


def test_nothing_connects_into_a_datasite_namespace(fed: Fed) -> None:
    port = free_port()
    with listener_inside(fed.ns_nhs, port) as listener:
        # The same listener answers inside, but from the hub's side the SYN is dropped (a
        # timeout, not a refusal: the firewall, not a missing listener, stops it).
        assert connect_from_inside(fed.ns_nhs, fed.ns_nhs.inside_ip, port) == "ok"
        assert connect(fed.ns_nhs.inside_ip, port, timeout=1.5) == "timeout"
        assert connect_from_inside(fed.ns_council, fed.ns_nhs.inside_ip, port,
                                   timeout=1.5) != "ok"
        # And the datasite itself listens on nothing: the only socket is the test's own.
        listening = fed.ns_nhs.listeners()
        assert [lst.pids for lst in listening] == [frozenset({listener.pid})]
    assert fed.nhs.proc is not None and fed.nhs.proc.poll() is None  # it was there all along
    assert fed.ns_council.listeners() == []


def test_datasites_reconnect_by_themselves_when_the_hub_restarts(fed: Fed) -> None:
    """Last in this module: it takes the hub away. Nothing can tell a datasite behind the
    firewall that the hub is back; it has to keep trying outbound on its own."""
    fed.hub.stop()
    deadline = time.monotonic() + 20
    while not all("hub unreachable" in site.log() for site in (fed.nhs, fed.council)):
        assert time.monotonic() < deadline, "a datasite did not notice the hub had gone"
        time.sleep(0.1)
    for site in (fed.nhs, fed.council):
        assert site.proc is not None and site.proc.poll() is None  # retrying, not exited
    fed.hub.start()
    with Client(fed.hub.url) as anon:  # each waits at the hub until its datasite is back
        counts = anon.query("county-council/library-visits", count_by="branch")
        wards = anon.query("nhs-trust/ward-population", count_by="ward")
    assert sorted(counts.rows) == [["Central", 4], ["Harbour", 2]]
    assert sorted(wards.rows) == [["A", 1], ["B", 1], ["C", 1]]
