"""The OpenAPI document is true: schemathesis, every check, against a real hub and datasite.

Bounded so it fits in CI: a few examples per operation, no stateful phase, a time limit. The
run is schemathesis' own engine (what ``st run --checks all`` runs), driven from Python.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

# A pinned dev dependency: a missing schemathesis is an install error, never a skip.
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema

from ndl.testing import DatasiteProcess, HubProcess

# Every check; two examples per operation in each mode, positive and negative; a time bound.
# positive_data_acceptance also accepts 422: a string the schema allows (any SQL text, say)
# may still be a query the hub refuses, and it says why with 422.
CONFIG = """
max-time = 40
seed = 20261205
[generation]
mode = "all"
max-examples = 2
[phases]
stateful.enabled = false
coverage.enabled = false
[checks]
enabled = true
positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422",
                                              "429", "503", "504"]
"""


@pytest.fixture
def hub_with_site(tmp_path: Path, small_site: Path) -> Iterator[HubProcess]:
    hub = HubProcess(tmp_path / "hub", str(tmp_path / "hub.db"))
    hub.create_org("nhs-trust", "Northshire NHS Foundation Trust", "nhs")
    steward = hub.create_user("sam", ["steward"], org="nhs-trust")
    with hub, DatasiteProcess(small_site, hub.url, org="nhs-trust", token=steward, poll_wait=2):
        yield hub


def _failures(stream: Any) -> list[str]:
    found: list[str] = []
    for event in stream:
        if isinstance(event, events.FatalError | events.NonFatalError):
            found.append(f"error: {event.info.format() if hasattr(event, 'info') else event}")
        if isinstance(event, events.ScenarioFinished) and event.status == Status.FAILURE:
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        found.append(f"{event.recorder.label}: {check.name}: "
                                     f"{failure.title}: {failure.message}\n"
                                     f"{check.failure_info.code_sample}")
    return found


@pytest.mark.timeout(240)
def test_schemathesis_finds_nothing(hub_with_site: HubProcess) -> None:
    # One hub for both parts: starting a hub and a datasite is most of this test's time.
    # A 405 says which methods the path takes (schemathesis' allow_header_conformance too).
    r = httpx.put(f"{hub_with_site.url}/api/datasets")
    assert (r.status_code, r.headers.get("allow")) == (405, "GET")
    assert r.json()["error"]["code"] == "http_405"

    config = SchemathesisConfig.from_str(CONFIG)
    schema = schemathesis.openapi.from_url(f"{hub_with_site.url}/api/openapi.json",
                                           config=config)
    found = _failures(from_schema(schema).execute())
    assert not found, "\n\n".join(sorted(set(found))[:30])
