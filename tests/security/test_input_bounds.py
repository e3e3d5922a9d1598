"""Bad numbers are the caller's mistake, never a crash: every integer or float a hub route
takes, sent too big for the database, negative, NaN or not a number, gets a 4xx that names
the parameter. In-process app, walking the app's own routes, so a new route is covered the
day it is added.
"""

from __future__ import annotations

import math
import types
import typing
import warnings
from collections.abc import Iterator
from typing import Any

import annotated_types as at
import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import select
from test_api_safety import api_routes

from ndl.access import accounts
from ndl.catalogue.metadata import DatasetMeta
from ndl.core.db import MAX_DB_INT
from ndl.core.errors import InvalidInput
from ndl.hub.app import create_app
from ndl.hub.state import HubSettings
from ndl.ledger.models import LedgerEntry
from ndl.privacy.spec import PrivateQuery, parse_query

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

TOO_BIG = str(MAX_DB_INT + 1)
BAD_NUMBERS = [TOO_BIG, str(-MAX_DB_INT - 2), "-1", "nan", "inf", "abc", "1" * 5000]
NUMBERS = (int, float)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    folder = tmp_path_factory.mktemp("bounds")
    app = create_app(HubSettings(db_url=str(folder / "hub.db"), data_dir=folder))
    yield app
    app.state.hub.db.dispose()


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    """Signed in with every role, so each route gets past its access check to the numbers."""
    with app.state.hub.db.write() as s:
        accounts.create_org(s, "org-a", "Org A", "nhs")
        user = accounts.create_user(s, "prober", roles=list(accounts.ROLES), org_id="org-a")
        user.accredited = True
        token = accounts.issue_token(s, user, name="test")
    with TestClient(app, raise_server_exceptions=False,
                    headers={"Authorization": f"Bearer {token}"}) as c:
        yield c


def _leaves(tp: Any) -> Iterator[Any]:
    """The plain types inside an annotation: int | None -> int; list[Model] -> Model."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return
    if origin is typing.Annotated:
        yield from _leaves(typing.get_args(tp)[0])
    elif origin in (typing.Union, types.UnionType, list, tuple, set, frozenset, dict):
        for arg in typing.get_args(tp):
            if arg is not Ellipsis:
                yield from _leaves(arg)
    else:
        yield tp


def _params(dependant: Any) -> Iterator[tuple[str, Any]]:
    for where, params in (("path", dependant.path_params), ("query", dependant.query_params)):
        for p in params:
            yield where, p
    for sub in dependant.dependencies:
        yield from _params(sub)


def numeric_params(app: FastAPI) -> list[tuple[str, str, str, str]]:
    """(method, path, "path"/"query", name) of every int or float parameter of every route."""
    found = []
    for path, route in api_routes(app.routes):
        for where, p in _params(route.dependant):
            if any(leaf in NUMBERS for leaf in _leaves(p.field_info.annotation)):
                found += [(m, path, where, p.alias) for m in sorted(route.methods - {"HEAD"})]
    return found


def _url(path: str, where: str, name: str, value: str) -> tuple[str, dict[str, str]]:
    filled = path
    for part in path.split("{")[1:]:
        key = part.split("}")[0]
        filled = filled.replace("{" + key + "}", value if (where, key) == ("path", name)
                                else "1" if key.endswith("_id") else "x")
    return filled, ({name: value} if where == "query" else {})


def test_the_walk_finds_the_numbers_we_know_of(app: FastAPI) -> None:
    found = {(p, n) for _, p, _, n in numeric_params(app)}
    for known in (("/api/register", "after"), ("/api/datasets", "offset"),
                  ("/api/wishes/{wish_id}", "wish_id"), ("/api/wishes/{wish_id}/vote", "wish_id"),
                  ("/api/wishes/{wish_id}/comments", "wish_id"),
                  ("/api/requests/{request_id}", "request_id")):
        assert known in found, known


def test_every_numeric_parameter_refuses_bad_numbers_by_name(app: FastAPI, client: TestClient
                                                            ) -> None:
    problems = []
    for method, path, where, name in numeric_params(app):
        for bad in BAD_NUMBERS:
            url, query = _url(path, where, name, bad)
            r = client.request(method, url, params=query, json={}, follow_redirects=False)
            shown = f"{method} {url[:80]} {where}.{name}={bad[:30]}: {r.status_code}"
            if r.status_code >= 500:
                problems.append(f"{shown} (a crash) {r.text[:200]}")
            elif r.status_code != 404 and name not in r.text:
                # 404 is right for a well-formed id nobody has (-1 on an id route may be one)
                problems.append(f"{shown} does not name {name!r}: {r.text[:200]}")
    assert not problems, "\n".join(problems)


# Web pages that read a number out of a text parameter themselves (a bad page number shows
# page 1; a bad id is a 404).
HAND_PARSED = ["/search?page={}", "/register?page={}", "/wishlist/{}", "/projects/p?requested={}"]


@pytest.mark.parametrize("template", HAND_PARSED)
def test_web_pages_that_parse_numbers_themselves_do_not_crash(client: TestClient,
                                                              template: str) -> None:
    for bad in [*BAD_NUMBERS, "\u00b2", "\u0663", "1" * 20]:
        r = client.get(template.format(bad), follow_redirects=False)
        assert r.status_code < 500, f"{template.format(bad[:30])}: {r.status_code}"


@pytest.mark.parametrize("url,name", [
    (f"/api/register?after={TOO_BIG}", "after"),
    (f"/api/datasets?q=a&offset={TOO_BIG}", "offset"),
    (f"/api/wishes/{TOO_BIG}", "wish_id"),
    (f"/api/requests/{TOO_BIG}", "request_id"),
])
def test_the_reported_overflows_are_422s(client: TestClient, url: str, name: str) -> None:
    r = client.get(url)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_input" and name in err["message"]


@pytest.mark.parametrize("action", ["vote", "comments"])
def test_wish_votes_and_comments_refuse_huge_ids(client: TestClient, action: str) -> None:
    body = {"vote": True} if action == "vote" else {"text": "hello"}
    r = client.post(f"/api/wishes/{TOO_BIG}/{action}", json=body)
    assert r.status_code == 422 and "wish_id" in r.json()["error"]["message"], r.text


def test_a_route_that_forgets_its_bound_still_answers_422_naming_it(
        app: FastAPI, client: TestClient) -> None:
    """The safety net: a driver's OverflowError becomes a 422 naming the parameter."""
    def unbounded(n: int) -> dict[str, int]:
        with app.state.hub.db.read() as s:
            s.scalars(select(LedgerEntry).where(LedgerEntry.seq == n)).first()
        return {"n": n}

    app.add_api_route("/api/test-unbounded/{n}", unbounded, methods=["GET"])
    try:
        r = client.get(f"/api/test-unbounded/{TOO_BIG}")
        assert r.status_code == 422, r.text
        assert "path.n is out of range" in r.json()["error"]["message"]
        assert r.headers["x-content-type-options"] == "nosniff"
        r = client.get("/api/test-unbounded/5")
        assert r.status_code == 200
    finally:
        app.router.routes[:] = [rt for rt in app.router.routes
                                if getattr(rt, "path", "") != "/api/test-unbounded/{n}"]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_private_query_refuses_non_finite_bounds_by_name(bad: float) -> None:
    spec = {"dataset": "d", "rho": 0.1, "aggregates": [
        {"op": "mean", "column": "age", "bounds": [0, bad]}]}
    with pytest.raises(InvalidInput, match=r"aggregates\.0\.bounds"):
        parse_query(spec)


def test_private_query_refuses_non_finite_filter_values() -> None:
    spec = {"dataset": "d", "rho": 0.1, "aggregates": [{"op": "count"}],
            "where": [{"column": "age", "op": ">", "value": math.nan}]}
    with pytest.raises(InvalidInput, match=r"where\.0\.value"):
        parse_query(spec)


def test_metadata_counts_fit_the_database() -> None:
    meta = {"name": "big", "title": "Big", "publisher": "P", "tier": "open",
            "columns": [{"name": "a", "type": "integer"}], "row_count": MAX_DB_INT + 1}
    with pytest.raises(ValueError, match="row_count"):
        DatasetMeta.model_validate(meta)


# --- request bodies: a static check, so a new field cannot arrive unbounded -----------------

# Fields whose size is checked later, on purpose, with the reason.
UNBOUNDED_OK = {
    "Aggregate.bins": "checked against MAX_CELLS by check_query, with a message",
    "Filter.value": "a value to compare with, checked against the column at the datasite",
    "PrivateQueryBody.n_estimate": "only divides and scales a preview; a number past a float "
                                   "is the OverflowError handler's 422",
}


def _bound_problems(model: type[BaseModel], seen: set[type[BaseModel]]) -> Iterator[str]:
    if model in seen:
        return
    seen.add(model)
    nan_allowed = model.model_config.get("allow_inf_nan", True)
    for name, field in model.model_fields.items():
        where = f"{model.__name__}.{name}"
        upper = any(isinstance(m, at.Le | at.Lt) for m in field.metadata)
        lower = any(isinstance(m, at.Ge | at.Gt) for m in field.metadata)
        for leaf in _leaves(field.annotation):
            if isinstance(leaf, type) and issubclass(leaf, BaseModel):
                yield from _bound_problems(leaf, seen)
            elif where in UNBOUNDED_OK:
                continue
            elif leaf is int and not upper:
                yield f"{where}: an int with no upper bound (le=...) can overflow the database"
            elif leaf is float and nan_allowed and not (upper and lower):
                # A comparison bound on both sides refuses NaN and infinities; else say so.
                yield f"{where}: a float that accepts NaN/inf (allow_inf_nan=False)"


def test_every_request_body_number_is_bounded(app: FastAPI) -> None:
    seen: set[type[BaseModel]] = set()
    problems: list[str] = []
    for _, route in api_routes(app.routes):
        for body in route.dependant.body_params:
            for leaf in _leaves(body.field_info.annotation):
                if isinstance(leaf, type) and issubclass(leaf, BaseModel):
                    problems += _bound_problems(leaf, seen)
    # Bodies taken as a dict and validated inside the route.
    for model in (PrivateQuery, DatasetMeta):
        problems += _bound_problems(model, seen)
    assert not problems, "\n".join(problems)
