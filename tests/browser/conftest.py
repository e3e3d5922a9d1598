"""Browser tests: a real ``ndl hub`` process driven by Playwright through Debian's Chromium.

Playwright never downloads a browser here: it drives /usr/bin/chromium. Without it the tests
skip, unless NDL_REQUIRE_BROWSER=1 (CI sets it) turns that into a failure.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from ndl.access import accounts
from ndl.catalogue import mocks
from ndl.catalogue import service as catalogue
from ndl.catalogue.metadata import DatasetMeta
from ndl.catalogue.models import Dataset
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


USERNAME = "rita"
PASSWORD = "correct horse battery"
AGE_BANDS = [{"code": "0-15", "label": "Children"}, {"code": "16-64", "label": "Adults"},
             {"code": "65+", "label": "Older people"}]


def _mock_parquet(rows: int = 40) -> bytes:
    """Synthetic rows in A&E attendances' schema, as its datasite would send them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "nhs_number": [f"999{i:07d}" for i in range(rows)],
        "arrival_date": [date(2023, 1, 1) + timedelta(days=i) for i in range(rows)],
        "age_band": [AGE_BANDS[i % 3]["code"] for i in range(rows)],
        "wait_minutes": pa.array([35 + (i * 37) % 300 for i in range(rows)], pa.int64()),
    })
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def seed_catalogue(db_path: Path, data_dir: Path) -> None:
    """An NHS trust with three datasets, published the way a datasite would publish them, a
    mock for A&E attendances and a researcher who can sign in."""
    db = Database(str(db_path))
    db.migrate()
    key = SigningKey.load_or_create(data_dir / "hub-key.pem")  # the file the hub will use
    trust = "Northshire NHS Foundation Trust"
    try:
        with db.write() as s:
            accounts.create_org(s, "nhs-trust", trust, "nhs")
            accounts.create_user(s, USERNAME, roles=["researcher"], password=PASSWORD,
                                 display_name="Rita Researcher")
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
                    contact={"name": "Data Access Team", "email": "data@northshire.nhs.example"},
                    licence="OGL-UK-3.0", themes=["health"], spatial="Northshire",
                    temporal={"start": "2019-04-01", "end": "2024-03-31"},
                    update_frequency="monthly", issued="2019-05-01", modified="2024-04-15",
                    population_size=250_000, last_verified="2024-05-01",
                    known_issues="Arrival times before 2020 are rounded to the hour.",
                    access={"route": "Ask through the library with a project.",
                            "lead_time_days": 0, "cost": "Free for research",
                            "linkable_datasets": ["nhs-trust/outpatient-appointments"]},
                    columns=[
                        {"name": "nhs_number", "type": "string", "join_key": "nhs_number",
                         "sensitivity": "direct_identifier",
                         "description": "NHS number of the patient"},
                        {"name": "arrival_date", "type": "date", "description": "Day of arrival"},
                        {"name": "age_band", "type": "string", "sensitivity": "quasi_identifier",
                         "description": "Age group", "code_list": AGE_BANDS},
                        {"name": "wait_minutes", "type": "integer", "unit": "minutes",
                         "description": "Minutes from arrival to leaving the department"},
                    ],
                ),
                _meta(
                    name="ambulance-handovers", title="Ambulance handovers", publisher=trust,
                    tier="open", row_count=250, keywords=["ambulance"], themes=["health"],
                    spatial="Northshire", temporal={"start": "2022-01-01"},
                    description="Time from ambulance arrival to handover at A&E.",
                    columns=[{"name": "handover_minutes", "type": "integer"}],
                ),
                _meta(
                    name="outpatient-appointments", title="Outpatient appointments",
                    publisher=trust, tier="controlled", row_count=5000,
                    themes=["health"], access={"lead_time_days": 30},
                    description="Outpatient appointments with diagnosis codes.",
                    columns=[{"name": "diagnosis_code", "type": "string",
                              "sensitivity": "sensitive"}],
                ),
            ])
            ae = s.get(Dataset, "nhs-trust/ae-attendances")
            assert ae is not None
            mocks.store_mock(s, key, ae, _mock_parquet(), method="seeded for the browser test")
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
def credentials() -> tuple[str, str]:
    """The username and password of the researcher the hub is seeded with."""
    return USERNAME, PASSWORD


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where screenshots go: NDL_SCREENSHOT_DIR if set (to look at them), else tmp_path."""
    folder = Path(os.environ.get("NDL_SCREENSHOT_DIR") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


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
