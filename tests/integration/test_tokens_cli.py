"""``ndl login``, ``ndl whoami``, ``ndl tokens`` and ``ndl logout`` as a user runs them:
real ``ndl`` processes against a real hub, the token kept in the CLI's config file."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ndl.core.errors import UpstreamUnavailable
from ndl.testing import HubProcess, wait_http

PASSWORD = "correct horse battery staple"


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    proc = HubProcess(tmp_path / "hub")
    proc.create_user("alice", ["researcher"], password=PASSWORD)
    try:
        proc.start()
    except UpstreamUnavailable:  # a busy shared machine: give the hub longer to come up
        wait_http(f"{proc.url}/healthz", 120, proc.proc)
    try:
        yield proc
    finally:
        proc.stop()
        proc.db.dispose()


def ndl(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ndl", *args], capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "NDL_CONFIG_DIR": str(config),
             "NDL_ALLOW_HTTP_LOOPBACK": "1"})  # the test hub is plain http:// on loopback


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_list_create_revoke_and_logout(hub: HubProcess, tmp_path: Path) -> None:
    cfg = tmp_path / "config"
    ok(ndl(cfg, "login", "--hub", hub.url, "--username", "alice", "--password", PASSWORD))
    saved = json.loads((cfg / "config.json").read_text())["token"]
    assert "alice" in ok(ndl(cfg, "whoami")) and "scope: full" in ok(ndl(cfg, "whoami"))

    listed = json.loads(ok(ndl(cfg, "tokens", "--json")))
    (login,) = [t for t in listed if t["current"]]
    assert saved not in json.dumps(listed) and login["prefix"] == saved[:12] + "…"
    assert login["expires_at"] is not None

    made = json.loads(ok(ndl(cfg, "tokens", "create", "--read-only", "--name", "my agent",
                             "--days", "2", "--json")))
    agent = made["token"]
    assert made["scope"] == "read-only"
    me = httpx.get(f"{hub.url}/api/me", headers={"Authorization": f"Bearer {agent}"}).json()
    assert me["scope"] == "read-only"
    table = ok(ndl(cfg, "tokens"))
    assert "my agent" in table and "read-only" in table and agent not in table

    bad = ndl(cfg, "tokens", "create", "--read-only", "--project", "p-12345678")
    assert bad.returncode == 2 and "choose one of" in bad.stderr

    assert f"revoked token {made['id']}" in ok(ndl(cfg, "tokens", "revoke", str(made["id"])))
    assert httpx.get(f"{hub.url}/api/me",
                     headers={"Authorization": f"Bearer {agent}"}).status_code == 401
    again = ndl(cfg, "tokens", "revoke", str(made["id"]))
    assert again.returncode != 0 and "no active token" in again.stderr

    assert "logged out" in ok(ndl(cfg, "logout"))
    assert httpx.get(f"{hub.url}/api/me",
                     headers={"Authorization": f"Bearer {saved}"}).status_code == 401
    assert json.loads((cfg / "config.json").read_text()).get("token") is None
    gone = ndl(cfg, "whoami")
    assert gone.returncode != 0 and "ndl login" in gone.stderr
