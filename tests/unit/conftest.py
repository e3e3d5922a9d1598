"""Fixtures for the in-process web page tests.

``app`` copies the requesting module's own ``seeded`` hub (database and key) into a fresh
folder, so each test starts from the same state without paying for password hashing again;
``login`` makes clients signed in through the real sign-in form.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from fastapi import FastAPI
from test_web_pages import sign_in

from ndl.hub.app import create_app
from ndl.hub.state import HubSettings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

BASE = "https://testserver"
Login = Callable[[str], TestClient]


@pytest.fixture
def app(seeded: Path, tmp_path: Path) -> Iterator[FastAPI]:
    data_dir = tmp_path / "hub"
    data_dir.mkdir()
    for f in seeded.iterdir():
        if f.name.startswith("hub.db") or f.name == "hub-key.pem":
            shutil.copy(f, data_dir / f.name)
    # No datasite answers here: give up on a query quickly.
    app = create_app(HubSettings(db_url=str(data_dir / "hub.db"), data_dir=data_dir,
                                 query_timeout=1.0))
    yield app
    app.state.hub.db.dispose()


@pytest.fixture
def login(app: FastAPI) -> Iterator[Login]:
    """``login("alice")``: a client signed in as alice, through the sign-in form."""
    with ExitStack() as stack:
        def make(username: str) -> TestClient:
            client = stack.enter_context(TestClient(app, base_url=BASE))
            if username:
                assert sign_in(client, username).status_code == 303
            return client
        yield make
