"""Safeguarded-tier private queries end to end: preview, spend, answer, budget exhaustion,
racing for the last of a budget, and every refusal spending nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ndl.client import Client
from ndl.core.errors import BudgetExhausted, InvalidInput, NotFound, PermissionDenied
from ndl.demo.synth import generate_demo_data
from ndl.testing import DatasiteProcess, HubProcess, granted_project

SQL = "SELECT COUNT(*) AS n, AVG(age_at_arrival) AS mean_age FROM data GROUP BY region"


@dataclass
class Net:
    hub: HubProcess
    token: str
    project: str
    site: Path


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    root = tmp_path_factory.mktemp("dp")
    generate_demo_data(root / "sites", people=1500, seed=5)
    site = root / "sites" / "nhs-trust"
    # A tight budget so exhaustion is reachable: 4 queries of 0.25 per project.
    (site / "datasets" / "ae-attendances" / "policy.yaml").write_text(
        "auto_approve: {}\nbudget:\n  per_query: 0.5\n  per_researcher: 1.0\n"
        "  per_project: 1.0\n  total: 3.0\n  suppress_below: 5\n  round_to: 5\n")
    hub = HubProcess(root / "hub")
    hub.create_org("nhs-trust", "NHS", "nhs")
    steward = hub.create_user("sam", ["steward"], org="nhs-trust")
    token = hub.create_user("alice", ["researcher"], accredited=True)
    with hub, DatasiteProcess(site, hub.url, org="nhs-trust", token=steward, poll_wait=2):
        project = granted_project(hub.url, token, ["nhs-trust/ae-attendances"])
        yield Net(hub, token, project, site)


def _ask(net: Net, **kw: object) -> dict:
    with Client(net.hub.url, net.token) as c:
        return c.private_query("nhs-trust/ae-attendances", project=net.project,
                               **kw)  # type: ignore[arg-type]


def test_preview_shows_the_error_and_spends_nothing(net: Net) -> None:
    first = _ask(net, sql=SQL, rho=0.25, preview=True)
    second = _ask(net, sql=SQL, rho=0.25, preview=True)
    assert first["spent"] == 0 and first["preview"]["rho"] == 0.25
    assert {a["label"] for a in first["preview"]["aggregates"]} == {"n", "mean_age"}
    assert first["budget_remaining"] == second["budget_remaining"]


def test_a_private_answer_is_close_to_the_truth_and_recorded(net: Net) -> None:
    real = pq.read_table(net.site / "datasets/ae-attendances/data.parquet").to_pandas()
    truth = real.groupby("region").size().to_dict()
    answer = _ask(net, sql=SQL, rho=0.25)
    assert answer["rho_spent"] == pytest.approx(0.25)
    rows = {r[0]: r for r in answer["rows"]}
    assert set(rows) == {"North East", "North West", "Yorkshire and The Humber",
                         "East Midlands", "West Midlands", "East of England", "London",
                         "South East", "South West"}  # every public group, even empty ones
    for region, n in truth.items():
        if n >= 50:
            assert rows[region][1] is not None and abs(rows[region][1] - n) < 0.3 * n + 30
    assert all(r[1] is None or r[1] % 5 == 0 for r in answer["rows"])  # rounded after DP
    with Client(net.hub.url) as anon:
        entries = anon.register_entries(limit=1000)["entries"]
    sub = [e for e in entries if e["kind"] == "private_query.submitted"]
    assert sub and sub[-1]["payload"]["rho"] == 0.25 and "answer" not in sub[-1]["payload"]
    ans = [e for e in entries if e["kind"] == "query.answered" and "rho_spent" in e["payload"]]
    assert ans and "answer" not in ans[-1]["payload"]  # the policy does not publish answers


@pytest.mark.parametrize("kw,error,words", [
    ({"sql": "SELECT COUNT(*) FROM data GROUP BY age_at_arrival", "rho": 0.1}, InvalidInput,
     "published"),
    ({"sql": "SELECT SUM(nhs_number) FROM data", "rho": 0.1}, InvalidInput, "identifies people"),
    ({"sql": "SELECT * FROM data", "rho": 0.1}, InvalidInput, "Allowed"),
    ({"sql": "SELECT COUNT(*) FROM data; DROP TABLE x", "rho": 0.1}, InvalidInput, "Allowed"),
    ({"sql": "SELECT COUNT(*) FROM data", "rho": 0.9}, InvalidInput, "per-query limit"),
    ({"sql": "SELECT COUNT(*) FROM data"}, InvalidInput, "rho"),
])
def test_bad_queries_spend_nothing(net: Net, kw: dict, error: type, words: str) -> None:
    with Client(net.hub.url, net.token) as c:
        before = c.budget("nhs-trust/ae-attendances", net.project)["budget_remaining"]
        with pytest.raises(error, match=words):
            c.private_query("nhs-trust/ae-attendances", project=net.project, **kw)
        after = c.budget("nhs-trust/ae-attendances", net.project)["budget_remaining"]
    assert before == after


def test_other_tiers_and_other_projects_are_refused(net: Net) -> None:
    with Client(net.hub.url, net.token) as c:
        with pytest.raises(PermissionDenied, match="safeguarded"):
            c.private_query("nhs-trust/patients", project=net.project,
                            sql="SELECT COUNT(*) FROM data", rho=0.1)
        with pytest.raises(NotFound, match=r"does not exist"):
            c.private_query("nhs-trust/ae-attendances", project="p-deadbeef",
                            sql="SELECT COUNT(*) FROM data", rho=0.1)


def test_racing_for_the_last_of_the_budget_never_overspends(net: Net) -> None:
    with Client(net.hub.url, net.token) as c:
        left = c.budget("nhs-trust/ae-attendances", net.project)["budget_remaining"]
    pot = min(left["researcher"], left["project"], left["dataset"])
    can_afford = int(pot / 0.1 + 1e-9)
    outcomes: list[str] = []

    def one() -> None:
        try:
            _ask(net, sql="SELECT COUNT(*) FROM data", rho=0.1)
            outcomes.append("ok")
        except BudgetExhausted:
            outcomes.append("refused")

    threads = [threading.Thread(target=one) for _ in range(can_afford + 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == can_afford and outcomes.count("refused") == 4
    with Client(net.hub.url, net.token) as c:
        final = c.budget("nhs-trust/ae-attendances", net.project)["budget_remaining"]
    assert final["project"] == pytest.approx(0.0, abs=1e-9) or final["researcher"] >= -1e-9
    assert min(final["project"], final["researcher"]) >= -1e-9
