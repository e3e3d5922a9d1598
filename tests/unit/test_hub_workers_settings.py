"""``ndl hub --workers N``: which databases may run several processes, and the settings each
worker process gets from its parent."""

from __future__ import annotations

from pathlib import Path

import pytest

from ndl.core.errors import InvalidInput
from ndl.hub.state import HubSettings
from ndl.hub.workers import check_workers, settings_from_env, settings_to_env


def test_sqlite_runs_one_process_and_says_what_to_do(tmp_path: Path) -> None:
    check_workers(str(tmp_path / "hub.db"), 1)
    with pytest.raises(InvalidInput, match="--workers 2 needs PostgreSQL") as err:
        check_workers(str(tmp_path / "hub.db"), 2)
    assert "Leave out --workers" in err.value.message
    assert "postgresql+psycopg://" in err.value.message
    with pytest.raises(InvalidInput, match="needs PostgreSQL"):
        check_workers(f"sqlite:///{tmp_path}/hub.db", 4)


def test_postgresql_takes_several_within_bounds() -> None:
    check_workers("postgresql+psycopg://u@h/db", 8)
    check_workers("postgres://u@h/db", 2)
    with pytest.raises(InvalidInput, match="from 1 to 64"):
        check_workers("postgresql+psycopg://u@h/db", 0)


def test_every_setting_reaches_the_workers(tmp_path: Path) -> None:
    settings = HubSettings(db_url="postgresql+psycopg://u@h/db", data_dir=tmp_path / "d",
                           query_timeout=12.5, trusted_proxies=["10.0.0.0/8"],
                           mcp_allowed_hosts=["hub.example"], secure_cookies=False,
                           wake_recheck=3.0, blob_store="s3://b?endpoint=http://x")
    assert settings_from_env(settings_to_env(settings)) == settings


def test_a_worker_without_its_parent_is_told_how_to_start(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.delenv("NDL_HUB_WORKER_SETTINGS", raising=False)
    with pytest.raises(InvalidInput, match="ndl hub --workers N"):
        settings_from_env()
