"""Fault injection: 500 work items while the hub and the datasite are killed (SIGKILL) at
random moments, over and over. Every item must end in exactly one final state, no result may
be delivered twice, and none may be lost.

Items are submitted in waves, each followed by kills while that wave is being worked on, so
kills land mid-lease, mid-export, mid-upload and mid-finish. A kill never lands during a
submission (the test could not then tell whether an item it was not told about exists).
"""

from __future__ import annotations

import hashlib
import io
import random
import time
from collections import Counter
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from sqlalchemy import func, select

from ndl.federation.work import FINAL
from ndl.federation.work_models import WorkItem
from ndl.ledger import register
from ndl.ledger.models import LedgerEntry
from ndl.testing import DatasiteProcess, HubProcess, stop_all, write_dataset

ITEMS = 500
WAVES = 10
MIN_KILLS = 20
ROWS = 400


def _wait_all_final(hub: HubProcess, ids: list[str], timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        with hub.db.read() as s:
            states = {r[0]: r[1] for r in s.execute(
                select(WorkItem.id, WorkItem.state).where(WorkItem.id.in_(ids)))}
        if all(st in FINAL for st in states.values()) and len(states) == len(ids):
            return states
        assert time.monotonic() < deadline, Counter(states.values())
        time.sleep(0.5)


@pytest.mark.timeout(1500)
def test_500_items_survive_random_sigkills_of_hub_and_datasite(tmp_path: Path) -> None:
    rng = random.Random(20261205)
    hub = HubProcess(tmp_path / "hub", extra_args=["--lease-seconds", "2"])
    hub.create_org("ons", "Office for National Statistics", "government")
    steward = hub.create_user("sam", ["steward"], org="ons")
    token = hub.create_user("alice", ["researcher"])
    root = tmp_path / "site"
    table = pa.table({"area": [f"E{i:08d}" for i in range(ROWS)],
                      "people": list(range(ROWS))})
    write_dataset(root, "areas", table, tier="open")
    site = DatasiteProcess(root, hub.url, org="ons", token=steward, poll_wait=2)
    auth = {"Authorization": f"Bearer {token}"}
    ids: list[str] = []
    kills = Counter[str]()
    ok = False
    try:
        hub.start()
        site.start()
        per_wave = ITEMS // WAVES
        for wave in range(WAVES):
            with httpx.Client(base_url=hub.url, headers=auth, timeout=60) as http:
                for i in range(per_wave):
                    n = wave * per_wave + i
                    r = http.post("/api/work", json={
                        "kind": "export", "dataset": "ons/areas",
                        # Different lengths: results differ, and some share a blob.
                        "params": {"format": "csv", "limit": 1 + n % 50}})
                    assert r.status_code == 202, r.text
                    assert r.headers["location"] == f"/api/work/{r.json()['id']}"
                    ids.append(r.json()["id"])
            # Kill while this wave is being worked on: at random moments, either process.
            for _ in range(2 if wave < WAVES - 1 else MIN_KILLS - 2 * (WAVES - 1)):
                time.sleep(rng.uniform(0.05, 1.5))
                victim = rng.choice(["hub", "datasite"])
                if victim == "hub":
                    hub.kill()
                    time.sleep(rng.uniform(0, 0.5))
                    hub.start()
                else:
                    site.kill()
                    time.sleep(rng.uniform(0, 0.5))
                    site.start(wait_online=False)
                kills[victim] += 1
        assert sum(kills.values()) >= MIN_KILLS
        states = _wait_all_final(hub, ids, timeout=900)

        # None lost: every item reached the one final state it should (nothing expired,
        # failed or was cancelled by the kills).
        assert len(ids) == ITEMS == len(set(ids))
        assert Counter(states.values()) == {"succeeded": ITEMS}, Counter(states.values())
        with hub.db.read() as s:
            # Exactly one final state each: one "finished" step per item in the register,
            # and no item finished more than once.
            finished = {r[0]: r[1] for r in s.execute(
                select(LedgerEntry.subject, func.count()).where(
                    LedgerEntry.kind == "work.finished", LedgerEntry.subject.in_(ids))
                .group_by(LedgerEntry.subject))}
            report = register.verify(s, hub.key.public_b64)
        assert set(finished) == set(ids)
        assert set(finished.values()) == {1}, "a result was delivered twice"
        assert report.ok, report

        # Each result arrives whole and is the export it claims to be.
        expected = {n: pacsv.read_csv(io.BytesIO(_csv(table, n))).num_rows for n in (1, 50)}
        with httpx.Client(base_url=hub.url, headers=auth, timeout=60) as http:
            for n, wid in enumerate(ids):
                view = http.get(f"/api/work/{wid}").json()
                body = http.get(f"/api/work/{wid}/result")
                assert body.status_code == 200, body.text
                assert hashlib.sha256(body.content).hexdigest() == view["result"]["sha256"]
                got = pacsv.read_csv(io.BytesIO(body.content))
                assert got.num_rows == 1 + n % 50
                if 1 + n % 50 in expected:
                    assert got.num_rows == expected[1 + n % 50]
        ok = True
    finally:
        stop_all(site, hub, show_logs=not ok)


def _csv(table: pa.Table, n: int) -> bytes:
    out = io.BytesIO()
    pacsv.write_csv(table.slice(0, n), out)
    return out.getvalue()
