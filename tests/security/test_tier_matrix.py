"""Every data operation x every tier x every role, against a real library, with the expected
outcome read from the one tier definition (``ndl.core.tiers``).

A route x role matrix could not see the breach this guards against: the exact-count
endpoint, built for open data, answered safeguarded and controlled data too (with NHS numbers
as group keys). Here an operation that the tier table does not list for a tier must be
refused on that tier, for every role, grant or not; one that it lists must answer exactly
the audience it names. Also: the datasite refuses the same work when the hub is bypassed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from authz_fixture import CTRL, JOB_FILES, OPEN, ROLES, SAFE, Library, running_library

from ndl.core import tiers
from ndl.core.tiers import Audience, Operation
from ndl.datasite.agent import DATA_OPERATIONS, Agent
from ndl.datasite.store import DatasiteStore
from ndl.testing import write_dataset

DATASET_OF_TIER = {"open": OPEN, "safeguarded": SAFE, "controlled": CTRL}
# Who holds an active grant on project P for SAFE and CTRL (see authz_fixture).
GRANTED = {"researcher"}


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # {ds} is the dataset id
    json: dict[str, Any] | None = None
    params: dict[str, Any] | None = None


# How each operation is asked over the JSON API. REQUEST_ACCESS is left to the route x role
# matrix (it changes state per call); every other operation is here.
CALLS: dict[Operation, Call] = {
    Operation.METADATA: Call("GET", "/api/datasets/{ds}"),
    Operation.MOCK: Call("GET", "/api/datasets/{ds}/mock", params={"limit": 3}),
    Operation.DOWNLOAD: Call("GET", "/api/datasets/{ds}/rows", params={"limit": 3}),
    Operation.OPEN_SQL: Call("POST", "/api/datasets/{ds}/sql",
                             json={"sql": "SELECT region, age FROM data", "limit": 3}),
    Operation.EXACT_AGGREGATE: Call("POST", "/api/datasets/{ds}/query",
                                    json={"by": ["region"], "project": "$P"}),
    Operation.PRIVATE_QUERY: Call("POST", "/api/datasets/{ds}/private-query",
                                  json={"project": "$P", "rho": 0.01,
                                        "sql": "SELECT COUNT(*) AS n FROM data"}),
    Operation.BUDGET_STATUS: Call("GET", "/api/datasets/{ds}/budget",
                                  params={"project": "$P"}),
    # A job bundle naming the dataset ("{ds}" in its files is the dataset id).
    Operation.CODE_JOB: Call("POST", "/api/jobs", json={"project": "$P", "files": {
        k: v.replace(CTRL, "{ds}") for k, v in JOB_FILES.items()}}),
}


def test_every_operation_but_requesting_access_is_in_the_matrix() -> None:
    assert set(CALLS) == set(Operation) - {Operation.REQUEST_ACCESS}


def expected(op: Operation, tier: str, role: str) -> set[int]:
    """The statuses the tier table allows for ``role`` doing ``op`` on ``tier``."""
    allowed = tiers.allowance(tier, op)
    if allowed is None:
        # Not an operation of this tier: refused whoever asks. An anonymous caller may be
        # stopped earlier, at a route that needs a signed-in user (401); open data has no mock
        # (its rows are open), which the hub reports as not found. Never a 200.
        refused = {401, 403} if role == "anonymous" else {403}
        return refused | {404} if op is Operation.MOCK else refused
    ok = {202} if op is Operation.CODE_JOB else {200}  # a job is accepted, to run later
    if allowed.audience is Audience.ANYONE:
        return ok
    if role == "anonymous":
        return {401}
    if allowed.audience is Audience.SIGNED_IN:
        return ok
    if allowed.audience is Audience.GRANTED_RESEARCHER:
        return ok if role in GRANTED else {403}
    raise AssertionError(f"no expectation for {allowed.audience}")


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    with running_library(tmp_path_factory.mktemp("tiers")) as library:
        yield library


def _fill(value: Any, lib: Library, ds: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, lib, ds) for k, v in value.items()}
    if isinstance(value, str) and value.startswith("$"):
        return lib.ids[value[1:]]
    if isinstance(value, str):
        return value.replace("{ds}", ds)
    return value


def _ask(lib: Library, op: Operation, tier: str, role: str) -> httpx.Response:
    call = CALLS[op]
    token = lib.token(role)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ds = DATASET_OF_TIER[tier]
    return httpx.request(call.method, lib.hub.url + call.path.format(ds=ds),
                         json=_fill(call.json, lib, ds), params=_fill(call.params, lib, ds),
                         headers=headers, timeout=30)


CASES = [pytest.param(op, tier, role, id=f"{op.value}-{tier}-{role}")
         for op in CALLS for tier in tiers.TIER_NAMES for role in ROLES]


@pytest.mark.parametrize(("op", "tier", "role"), CASES)
def test_tier_matrix(lib: Library, op: Operation, tier: str, role: str) -> None:
    r = _ask(lib, op, tier, role)
    want = expected(op, tier, role)
    assert r.status_code in want, (op, tier, role, r.status_code, r.text[:300])
    if r.status_code not in (200, 202):
        assert r.json()["error"]["message"], "a refusal says why"
        # A refusal carries no data: no rows, no counts.
        assert "rows" not in r.json()


# --- the reproductions from the attack report ----------------------------------------------

def _site_with_identifiers(root: Path) -> DatasiteStore:
    """A datasite holding the same people at every tier, with identifier columns tagged."""
    import json

    people = pa.table({
        "nhs_number": [f"99900000{i:02d}" for i in range(40)],
        "given_name": [f"Name{i}" for i in range(40)],
        "region": ["North East", "London"] * 20,
    })
    for tier in tiers.TIER_NAMES:
        d = write_dataset(root, f"people-{tier}", people, tier=tier)
        meta = json.loads((d / "metadata.json").read_text("utf-8"))
        meta["columns"][0].update(sensitivity="direct_identifier", join_key="nhs_number")
        meta["columns"][1].update(sensitivity="direct_identifier", join_key="name")
        (d / "metadata.json").write_text(json.dumps(meta), "utf-8")
    return DatasiteStore(root)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    a = Agent(_site_with_identifiers(tmp_path / "site"), "http://127.0.0.1:9",
              datasite_id="site", org="org")
    try:
        yield a
    finally:
        a.close()


ATTACKS: list[tuple[str, dict[str, Any]]] = [
    ("query", {"spec": {"op": "count", "by": ["nhs_number"]}, "project": "p"}),
    ("query", {"spec": {"op": "count", "by": ["given_name", "region"]}, "project": "p"}),
    ("query", {"spec": {"op": "count", "by": []}, "project": "p"}),
    ("open_sql", {"sql": "SELECT * FROM data", "limit": 10}),
]


@pytest.mark.parametrize("tier", ["safeguarded", "controlled"])
@pytest.mark.parametrize(("kind", "body"), ATTACKS)
def test_datasite_refuses_exact_answers_outside_open_data_even_without_the_hub(
        agent: Agent, tier: str, kind: str, body: dict[str, Any]) -> None:
    """A message that slipped past the hub (or a compromised hub) still gets nothing: the
    datasite checks the tier table before the grant, the data or the budget."""
    reply = agent.answer(kind, {**body, "dataset": f"people-{tier}", "message_id": "m1",
                                "requested_by": "alice"})
    assert reply["ok"] is False
    assert reply["error"]["code"] == "permission_denied", reply
    assert "9990000" not in str(reply) and "Name1" not in str(reply)


def test_datasite_answers_exact_counts_on_open_data(agent: Agent) -> None:
    reply = agent.answer("query", {"spec": {"op": "count", "by": ["region"]},
                                   "dataset": "people-open", "message_id": "m2"})
    assert reply["ok"] is True, reply
    assert sorted(r[0] for r in reply["result"]["rows"]) == ["London", "North East"]


def test_every_kind_of_data_work_names_its_tier_operation() -> None:
    """A new kind of datasite work must say which tier operation it is (or be administrative)."""
    from ndl.datasite.agent import HANDLERS

    administrative = {"metadata.update", "grant.revoked", "dataset.delete"}
    assert set(HANDLERS) - administrative <= set(DATA_OPERATIONS), \
        set(HANDLERS) - administrative - set(DATA_OPERATIONS)



@pytest.mark.parametrize("tier", ["safeguarded", "controlled"])
def test_identifiers_are_never_group_keys_outside_open_data(tier: str) -> None:
    from ndl.catalogue.metadata import ColumnMeta

    nhs = ColumnMeta(name="nhs_number", type="string", sensitivity="direct_identifier",
                     join_key="nhs_number")
    tagged_by_key_only = ColumnMeta(name="upn", type="string", join_key="upn")
    postcode = ColumnMeta(name="postcode", type="string", sensitivity="quasi_identifier",
                          join_key="postcode")
    for col in (nhs, tagged_by_key_only):
        for use in tiers.ColumnUse:
            assert tiers.column_use_problem(tier, col, use, published=True)
    for use in (tiers.ColumnUse.GROUP_KEY, tiers.ColumnUse.FILTER, tiers.ColumnUse.OUTPUT):
        assert tiers.column_use_problem(tier, postcode, use)
    assert tiers.column_use_problem("open", nhs, tiers.ColumnUse.OUTPUT) is None
