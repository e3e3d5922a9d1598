"""``ndl verify`` as a user runs it: exit 0 on an intact register, 1 with reasons otherwise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from ndl.testing import HubProcess


def _verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ndl", "verify", *args], capture_output=True,
                          text=True, timeout=60)


def test_verify_detects_tampering_offline_and_online(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "hub")
    for org in ("nhs-trust", "dfe", "local-authority"):
        hub.create_org(org)
    hub.create_user("alice", ["researcher"])
    offline = ["--db", hub.db_url, "--data-dir", str(hub.data_dir)]

    ok = _verify(*offline)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "register OK: 4 entries" in ok.stdout
    head = ok.stdout.split("head", 1)[1].split()[0].strip()

    with hub:
        online = _verify("--hub", hub.url, "--expect-head", head)
        assert online.returncode == 0, online.stdout + online.stderr

    with hub.db.write() as s:
        s.execute(text("UPDATE ledger_entries SET subject = 'someone-else' WHERE seq = 2"))
    bad = _verify(*offline)
    assert bad.returncode == 1
    assert "entry 2 was edited" in bad.stdout

    with hub, hub.db.write() as s:
        s.execute(text("DELETE FROM ledger_entries WHERE seq = 3"))
    with hub:
        bad_online = _verify("--hub", hub.url)
    assert bad_online.returncode == 1
    assert "missing" in bad_online.stdout and "entry 2 was edited" in bad_online.stdout
    hub.db.dispose()


def test_verify_refuses_a_malformed_saved_head(tmp_path: Path) -> None:
    r = _verify("--db", str(tmp_path / "x.db"), "--data-dir", str(tmp_path),
                "--expect-head", "nope")
    assert r.returncode == 2 and "--expect-head must look like" in r.stderr
