"""The datasite's privacy budget ledger: racing spenders never overspend, refusals spend
nothing, redeliveries pay once."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ndl.access.policy import PrivacyBudget
from ndl.core.errors import BudgetExhausted, InvalidInput
from ndl.privacy.budget import BudgetLedger

LIMITS = PrivacyBudget(per_query=0.5, per_researcher=1.0, per_project=1.5, total=2.0)


def _spend(ledger: BudgetLedger, mid: str, *, who: str = "alice", project: str = "p1",
           rho: float = 0.25) -> bool:
    try:
        ledger.spend(LIMITS, dataset="d", project=project, researcher=who, rho=rho,
                     message_id=mid)
    except BudgetExhausted:
        return False
    return True


def test_limits_apply_per_researcher_project_and_dataset(tmp_path: Path) -> None:
    ledger = BudgetLedger(tmp_path / "b.sqlite")
    assert all(_spend(ledger, f"a{i}") for i in range(4))  # alice: 1.0 of 1.0
    with pytest.raises(BudgetExhausted, match="your budget"):
        ledger.spend(LIMITS, dataset="d", project="p1", researcher="alice", rho=0.01,
                     message_id="a-extra")
    assert _spend(ledger, "b1", who="bob") and _spend(ledger, "b2", who="bob")
    with pytest.raises(BudgetExhausted, match="project's budget"):  # p1: 1.5 of 1.5
        ledger.spend(LIMITS, dataset="d", project="p1", researcher="bob", rho=0.25,
                     message_id="b3")
    assert _spend(ledger, "c1", who="carol", project="p2", rho=0.5)  # dataset: 2.0 of 2.0
    with pytest.raises(BudgetExhausted, match="dataset's total"):
        ledger.spend(LIMITS, dataset="d", project="p3", researcher="dan", rho=0.01,
                     message_id="d1")
    left = ledger.remaining(LIMITS, dataset="d", project="p9", researcher="eve")
    assert left.dataset == pytest.approx(0.0) and left.allows() == 0.0


def test_per_query_limit_and_bad_rho(tmp_path: Path) -> None:
    ledger = BudgetLedger(tmp_path / "b.sqlite")
    with pytest.raises(BudgetExhausted, match="per-query"):
        ledger.spend(LIMITS, dataset="d", project="p", researcher="a", rho=0.6,
                     message_id="m")
    with pytest.raises(InvalidInput):
        ledger.spend(LIMITS, dataset="d", project="p", researcher="a", rho=0.0,
                     message_id="m")
    assert ledger.remaining(LIMITS, dataset="d", project="p", researcher="a").researcher == 1.0


def test_a_redelivered_message_pays_once(tmp_path: Path) -> None:
    ledger = BudgetLedger(tmp_path / "b.sqlite")
    for _ in range(3):
        _spend(ledger, "same-message")
    left = ledger.remaining(LIMITS, dataset="d", project="p1", researcher="alice")
    assert left.researcher == pytest.approx(0.75)


def test_racing_threads_never_overspend(tmp_path: Path) -> None:
    ledger = BudgetLedger(tmp_path / "b.sqlite")
    wins: list[bool] = []
    barrier = threading.Barrier(16)

    def race(i: int) -> None:
        barrier.wait()
        wins.append(_spend(ledger, f"t{i}", who=f"r{i}", project=f"p{i}", rho=0.3))

    threads = [threading.Thread(target=race, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(wins) == 6  # floor(2.0 / 0.3): the dataset total is the binding limit
    left = ledger.remaining(LIMITS, dataset="d", project="x", researcher="y")
    assert left.dataset is not None and left.dataset >= -1e-9


def _proc(path: str, i: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    out.put(_spend(BudgetLedger(Path(path)), f"proc{i}", who=f"r{i}", project=f"p{i}",
                   rho=0.4))


def test_racing_processes_never_overspend(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    q: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    path = tmp_path / "b.sqlite"
    BudgetLedger(path)
    procs = [ctx.Process(target=_proc, args=(str(path), i, q)) for i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    wins = [q.get(timeout=5) for _ in procs]
    q.close()
    q.join_thread()
    assert sum(wins) == 5  # 2.0 / 0.4


@settings(max_examples=30, deadline=None)
@given(spends=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]),
                                 st.sampled_from(["p", "q"]),
                                 st.floats(0.01, 0.5)), max_size=40))
def test_budgets_never_go_negative(tmp_path_factory: pytest.TempPathFactory,
                                   spends: list[tuple[str, str, float]]) -> None:
    ledger = BudgetLedger(tmp_path_factory.mktemp("b") / "b.sqlite")
    for i, (who, project, rho) in enumerate(spends):
        try:
            ledger.spend(LIMITS, dataset="d", project=project, researcher=who, rho=rho,
                         message_id=str(i))
        except BudgetExhausted:
            pass
        for w in "abc":
            for p in "pq":
                left = ledger.remaining(LIMITS, dataset="d", project=p, researcher=w)
                assert min(left.researcher, left.project, left.dataset or 0.0) >= -1e-9
