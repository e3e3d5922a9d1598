"""A datasite offers nothing to connect to: with no firewall at all in its network namespace,
the hub's side finds every TCP port closed and the namespace holds no listening socket, while
the datasite is online and answering queries.

So a site's firewall may refuse every inbound connection (tests/integration/
test_network_boundaries.py shows the federation working behind one), and a compromised hub,
or anyone on the hub's network, has no service at the datasite to attack: the datasite only
ever dials out. Needs root (see tests/netboundary.py); skips elsewhere unless
NDL_REQUIRE_NETNS=1.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ndl.client import Client
from ndl.testing import DatasiteProcess, HubProcess, free_port, stop_all
from netboundary import Namespace, listener_inside, namespaces, require_netns, scan_tcp


@dataclass
class Exposed:
    hub: HubProcess
    site: DatasiteProcess
    ns: Namespace


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory, small_site: Path) -> Iterator[Exposed]:
    require_netns()
    root = tmp_path_factory.mktemp("outbound")
    # No firewall: whatever refuses a connection here is the datasite having nothing to offer.
    with namespaces(1, firewall=False) as (ns,):
        hub = HubProcess(root / "hub", host=ns.host_ip)
        site = None
        try:
            hub.create_org("nhs-trust", "NHS", "nhs")
            steward = hub.create_user("sam", ["steward"], org="nhs-trust")
            hub.start()
            site = DatasiteProcess(small_site, hub.url, org="nhs-trust", token=steward,
                                   poll_wait=2, netns=ns.name).start()
            yield Exposed(hub, site, ns)
        except BaseException:
            stop_all(site, hub, show_logs=True)
            raise
        finally:
            stop_all(site, hub)


@pytest.fixture(scope="module")
def small_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Module scope (tests/conftest.py's is per test); the same small open dataset.
    import pyarrow as pa

    from ndl.testing import write_dataset

    root = tmp_path_factory.mktemp("site")
    write_dataset(root, "ward-population", pa.table({
        "ward": ["A", "B", "C"], "population": [100, 5, 7]}), tier="open")
    return root


def test_every_port_of_a_working_datasite_is_closed_from_the_hubs_side(
        exposed: Exposed) -> None:
    with Client(exposed.hub.url) as anon:  # the datasite is live: it answers through the hub
        assert sorted(anon.query("nhs-trust/ward-population", count_by="ward").rows) == [
            ["A", 1], ["B", 1], ["C", 1]]
    control = free_port()
    with listener_inside(exposed.ns, control):
        found = scan_tcp(exposed.ns.inside_ip, range(1, 65536), timeout=2.0)
    # The scan reaches the namespace (every port answers, the control listener is found) and
    # finds nothing else open: no port of the datasite's.
    assert found.silent == 0
    assert found.open == {control}
    assert found.refused == 65535 - 1


def test_the_datasite_holds_no_listening_socket(exposed: Exposed) -> None:
    with Client(exposed.hub.url) as anon:
        anon.sql("nhs-trust/ward-population", "SELECT * FROM data")  # its SQL engine in use
    assert exposed.site.proc is not None and exposed.site.proc.poll() is None
    assert exposed.ns.listeners() == []  # no TCP listener and no bound UDP socket, any process
