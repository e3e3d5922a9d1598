"""Browser tests: a real ``ndl hub`` process driven by Playwright through Debian's Chromium.

Playwright never downloads a browser here: it drives /usr/bin/chromium. Without it the tests
skip, unless NDL_REQUIRE_BROWSER=1 (CI sets it) turns that into a failure.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from ndl.access import accounts
from ndl.catalogue import service as catalogue
from ndl.catalogue.metadata import DatasetMeta
from ndl.core.db import Database
from ndl.core.keys import SigningKey
from ndl.federation.models import Datasite

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
]
HUB_START_TIMEOUT = 60.0


def _meta(**fields: Any) -> DatasetMeta:
    """Metadata validated exactly as the hub validates what a datasite publishes."""
    return DatasetMeta.model_validate(fields)


def seed_catalogue(db_path: Path, data_dir: Path) -> None:
    """An NHS trust with three datasets, published the way a datasite would publish them."""
    db = Database(str(db_path))
    db.migrate()
    key = SigningKey.load_or_create(data_dir / "hub-key.pem")  # the file the hub will use
    trust = "Northshire NHS Foundation Trust"
    try:
        with db.write() as s:
            accounts.create_org(s, "nhs-trust", trust, "nhs")
            site = Datasite(id="nhs-trust", org_id="nhs-trust", name="NHS trust datasite",
                            public_key=SigningKey.generate().public_b64)
            s.add(site)
            s.flush()
            catalogue.publish(s, key, site, [
                _meta(
                    name="ae-attendances", title="A&E attendances", publisher=trust,
                    tier="safeguarded", keywords=["A&E", "emergency care"], row_count=1000,
                    description="Every attendance at the trust's emergency departments, "
                                "with arrival time, age band and time spent in the department.",
                    columns=[
                        {"name": "nhs_number", "type": "string", "join_key": "nhs_number",
                         "sensitivity": "direct_identifier",
                         "description": "NHS number of the patient"},
                        {"name": "arrival_date", "type": "date", "description": "Day of arrival"},
                        {"name": "age_band", "type": "string", "sensitivity": "quasi_identifier",
                         "description": "Age in five-year bands"},
                        {"name": "wait_minutes", "type": "integer",
                         "description": "Minutes from arrival to leaving the department"},
                    ],
                ),
                _meta(
                    name="ambulance-handovers", title="Ambulance handovers", publisher=trust,
                    tier="open", row_count=250, keywords=["ambulance"],
                    description="Time from ambulance arrival to handover at A&E.",
                    columns=[{"name": "handover_minutes", "type": "integer"}],
                ),
                _meta(
                    name="outpatient-appointments", title="Outpatient appointments",
                    publisher=trust, tier="controlled", row_count=5000,
                    description="Outpatient appointments with diagnosis codes.",
                    columns=[{"name": "diagnosis_code", "type": "string",
                              "sensitivity": "sensitive"}],
                ),
            ])
    finally:
        db.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + HUB_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the hub exited with code {proc.returncode} before it was healthy:\n"
                        + log_path.read_text("utf-8", "replace")[-4000:])
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"the hub did not answer {url}/healthz within {HUB_START_TIMEOUT:g} s:\n"
                + log_path.read_text("utf-8", "replace")[-4000:])


@pytest.fixture
def chromium() -> str:
    """Path of the system Chromium, or skip (fail when NDL_REQUIRE_BROWSER=1)."""
    if not CHROMIUM.is_file():
        message = f"{CHROMIUM} is missing; install it with: apt-get install -y chromium"
        if os.environ.get("NDL_REQUIRE_BROWSER", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"NDL_REQUIRE_BROWSER is set but {message}")
        pytest.skip(message)
    return str(CHROMIUM)


@pytest.fixture
def hub_url(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A seeded catalogue served by a real ``python -m ndl hub`` process on loopback."""
    data_dir = tmp_path / "hub"
    data_dir.mkdir()
    db_path = data_dir / "hub.db"
    seed_catalogue(db_path, data_dir)
    port = _free_port()
    log_path = tmp_path / "hub.log"
    log = log_path.open("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NDL_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ndl", "hub", "--db", str(db_path), "--data-dir", str(data_dir),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
    )

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        log.close()

    request.addfinalizer(stop)
    url = f"http://127.0.0.1:{port}"
    _wait_healthy(url, proc, log_path)
    return url


@pytest.fixture
def browser_page(chromium: str) -> Iterator[Page]:
    """A Playwright page in a fresh headless Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()
