"""Every route declares who may call it; errors share one shape; logins are rate limited;
oversized bodies are refused. In-process app (the rules are the same in a real process)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute

from ndl.hub.app import create_app
from ndl.hub.state import HubSettings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture
def app(tmp_path: Path) -> Any:
    return create_app(HubSettings(db_url=str(tmp_path / "hub.db"), data_dir=tmp_path,
                                  login_failures_allowed=3, max_body_bytes=10_000))


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c
    app.state.hub.db.dispose()


def api_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """Every APIRoute, including those inside included routers (FastAPI >= 0.16x wraps them)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        context = getattr(route, "include_context", None)
        if context is not None:
            yield from api_routes(context.included_router.routes, prefix + context.prefix)
        elif getattr(route, "routes", None) and not isinstance(route, APIRoute):
            yield from api_routes(route.routes, prefix + getattr(route, "path", ""))


# POST routes anyone may call, and why each is safe.
PUBLIC_POSTS = {
    "/api/auth/login": "signing in (rate limited)",
    "/api/datasets/{site}/{name}/sql": "read-only SQL over open data",
    "/api/datasets/{site}/{name}/query": "aggregates: open data for anyone; other tiers check "
                                         "the researcher role and a grant inside",
    "/api/3/action/{action}": "CKAN Action API: read-only actions only",
    "/api/action/{action}": "CKAN Action API (ckanapi's default path): read-only",
    "/api/work": "long work: anyone may export open data (the tier is checked inside; "
                 "anonymous callers share the open-data rate limit)",
    "/api/work/{work_id}/cancel": "cancels only an item the caller may see: their own, or an "
                                  "anonymous one reached by its unguessable id",
    "/datasets/{site}/{name}/export": "web form (session or pre-session CSRF token): exports "
                                      "open data only, as the signed-in user or nobody",
    "/work/{work_id}/cancel": "web form (session or pre-session CSRF token): cancels only an "
                              "item the caller may see",
    "/sign-in": "the sign-in form (CSRF-protected, rate limited)",
    "/sign-out": "ends the caller's own session only (CSRF-protected)",
    **{path: "web form: CSRF-protected; checks the signed-in session user and role inside"
       for path in ("/projects/new", "/projects/{project_id}/requests",
                    "/stewards/items/{item_id}/decision",
                    "/stewards/grants/{grant_id}/revoke", "/wishlist/new",
                    "/wishlist/{wish_id}/vote", "/wishlist/{wish_id}/comments",
                    "/wishlist/{wish_id}/state", "/datasets/{site}/{name}/private-query",
                    "/jobs/{job_id}/cancel", "/jobs/{job_id}/review", "/jobs/{job_id}/check",
                    "/account/cli-token", "/datasites/{datasite_id}/approve")},
}


def test_the_route_walk_sees_every_router(app: Any) -> None:
    paths = {p for p, _ in api_routes(app.routes)}
    assert {"/api/datasets", "/api/federation/poll", "/api/register"} <= paths
    assert len(paths) > 20


def _access_rules(route: APIRoute) -> list[str]:
    rules: list[str] = []

    def walk(dependant: Any) -> None:
        for dep in dependant.dependencies:
            rule = getattr(dep.call, "__ndl_access__", None)
            if rule:
                rules.append(rule)
            walk(dep)

    walk(route.dependant)
    return rules


def test_every_route_declares_exactly_one_access_rule(app: Any) -> None:
    missing = []
    for path, route in api_routes(app.routes):
        if path == "/healthz":
            continue
        rules = _access_rules(route)
        if len(rules) != 1:
            missing.append(f"{sorted(route.methods)} {path}: {rules}")
    assert not missing, "routes without exactly one access rule:\n" + "\n".join(missing)


def test_write_routes_are_never_public(app: Any) -> None:
    for path, route in api_routes(app.routes):
        if route.methods & {"POST", "PUT", "PATCH", "DELETE"} and path not in PUBLIC_POSTS:
            rules = _access_rules(route)
            assert rules and rules[0] != "public", f"{path} is writable by anyone"


@pytest.mark.parametrize("method,path,body,status", [
    ("GET", "/api/nope", None, 404),
    ("GET", "/api/me", None, 401),
    ("GET", "/api/datasets/x/y", None, 404),
    ("POST", "/api/orgs", {"id": "x", "name": "y"}, 401),
    ("POST", "/api/auth/login", {"username": ""}, 422),
    ("GET", "/api/datasets?limit=100000", None, 422),
    ("POST", "/api/federation/poll", {"v": 1}, 401),
    ("DELETE", "/api/datasets", None, 405),
])
def test_errors_share_one_json_shape(client: TestClient, method: str, path: str,
                                     body: Any, status: int) -> None:
    r = client.request(method, path, json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) <= {"code", "message", "detail"} and err["code"] and err["message"]


def test_logins_are_rate_limited(client: TestClient) -> None:
    for _ in range(3):
        r = client.post("/api/auth/login", json={"username": "alice", "password": "nope"})
        assert r.status_code == 401
    r = client.post("/api/auth/login", json={"username": "alice", "password": "nope"})
    assert r.status_code == 429 and "too many failed sign-ins" in r.json()["error"]["message"]
    # Per (account, address): another account from here is not paused by Alice's failures
    # (one address trying many accounts meets its own, higher limit: test_accounts.py).
    r = client.post("/api/auth/login", json={"username": "bob", "password": "nope"})
    assert r.status_code == 401


def test_oversized_bodies_are_refused(client: TestClient) -> None:
    r = client.post("/api/auth/login", content=b"x" * 20_000,
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


def test_oversized_chunked_bodies_are_refused(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(30):
            yield b"x" * 1000

    r = client.post("/api/auth/login", content=chunks(),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_wrong_role_is_refused_with_the_needed_role(client: TestClient, app: Any) -> None:
    from ndl.access import accounts

    with app.state.hub.db.write() as s:
        user = accounts.create_user(s, "rita", roles=["researcher"])
        token = accounts.issue_token(s, user)
    r = client.post("/api/orgs", json={"id": "new-org", "name": "New"},
                    headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403 and "admin" in r.json()["error"]["message"]
