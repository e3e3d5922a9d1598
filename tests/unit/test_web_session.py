"""Signing in and out of the web pages, the session cookie and CSRF, in-process."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from datetime import timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from test_web_pages import PASSWORD, form_token, hub_app, seeded, sign_in

from ndl.access.models import ApiToken, User
from ndl.core.db import utcnow
from ndl.core.errors import InternalError
from ndl.hub.app import create_app
from ndl.hub.state import HubSettings
from ndl.web import session

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

__all__ = ["seeded"]  # the module-scoped seeded hub fixture, shared with test_web_pages

BASE = "https://testserver"


@pytest.fixture
def app(seeded: Path, tmp_path: Path) -> Iterator[FastAPI]:
    app = hub_app(seeded, tmp_path / "hub", login_failures_allowed=3)
    yield app
    app.state.hub.db.dispose()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url=BASE) as c:
        yield c


def _set_cookies(response: Any) -> dict[str, Any]:
    """Each Set-Cookie header of a response, parsed, by cookie name."""
    out: dict[str, Any] = {}
    for header in response.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        for name, morsel in jar.items():
            out[name] = (morsel, header)
    return out


def _tokens(app: FastAPI, username: str) -> list[ApiToken]:
    with app.state.hub.db.read() as s:
        user = s.scalar(select(User).where(User.username == username))
        assert user is not None
        rows = list(s.scalars(select(ApiToken).where(ApiToken.user_id == user.id)))
        for r in rows:
            s.expunge(r)
        return rows


# --- signing in ---------------------------------------------------------------------------

def test_sign_in_form_carries_a_csrf_token_bound_to_a_pre_session_cookie(
        client: TestClient) -> None:
    r = client.get("/sign-in")
    assert r.status_code == 200
    assert '<form action="/sign-in" method="post"' in r.text
    assert 'name="username"' in r.text and 'type="password"' in r.text
    morsel, header = _set_cookies(r)[session.PRE_COOKIE]
    assert "HttpOnly" in header and "Secure" in header and "SameSite=lax" in header
    key = client.app.state.ndl_web_secret.key()  # type: ignore[attr-defined]
    assert form_token(r.text) == session.csrf_token(key, "pre", morsel.value)
    # The same browser keeps its pre-session cookie, and so its token.
    again = client.get("/sign-in")
    assert session.PRE_COOKIE not in _set_cookies(again)
    assert form_token(again.text) == form_token(r.text)


def test_signing_in_sets_a_12_hour_httponly_lax_secure_cookie(
        app: FastAPI, client: TestClient) -> None:
    r = sign_in(client, next_url="/datasets/nhs-trust/ae-attendances")
    assert r.status_code == 303
    assert r.headers["location"] == "/datasets/nhs-trust/ae-attendances"
    cookies = _set_cookies(r)
    morsel, header = cookies[session.COOKIE]
    assert morsel.value.startswith("ndl_")
    assert "HttpOnly" in header and "Secure" in header
    assert "SameSite=lax" in header and "Path=/" in header
    assert morsel["max-age"] == str(12 * 3600)
    assert cookies[session.PRE_COOKIE][0]["max-age"] == "0"  # the pre-session cookie goes

    # The session token is a 12-hour "web" token; the login's long-lived token is revoked.
    tokens = _tokens(app, "rita")
    live = [t for t in tokens if t.revoked_at is None]
    assert [t.name for t in live] == ["web"]
    assert live[0].expires_at is not None
    assert abs(live[0].expires_at - (utcnow() + timedelta(hours=12))) < timedelta(minutes=1)
    assert all(t.revoked_at is not None for t in tokens if t.name != "web")

    page = client.get("/")
    assert re.search(r"Signed in as <strong>rita</strong>", page.text)
    assert 'action="/sign-out" method="post"' in page.text
    assert page.headers["cache-control"] == "private, no-store"
    # The API sees the session on GET, as the mock download link needs.
    me = client.get("/api/me")
    assert me.status_code == 200 and me.json()["username"] == "rita"


def test_username_is_case_insensitive(client: TestClient) -> None:
    assert sign_in(client, username=" Rita ").status_code == 303


def test_cookie_is_not_secure_when_the_operator_turns_that_off(
        seeded: Path, tmp_path: Path) -> None:
    app = hub_app(seeded, tmp_path / "plain", secure_cookies=False)
    with TestClient(app) as c:  # plain http://testserver
        r = sign_in(c)
        header = _set_cookies(r)[session.COOKIE][1]
        assert "Secure" not in header and "HttpOnly" in header
        assert c.get("/api/me").status_code == 200
    app.state.hub.db.dispose()


def test_wrong_password_shows_an_error_summary(app: FastAPI, client: TestClient) -> None:
    r = sign_in(client, password="not the password")
    assert r.status_code == 401
    assert "govuk-error-summary" in r.text and "There is a problem" in r.text
    assert "Enter a correct username and password" in r.text
    assert 'href="#username"' in r.text
    assert "<title>Error: Sign in" in r.text
    assert 'value="rita"' in r.text  # the username is kept, the password is not
    assert "not the password" not in r.text
    assert session.COOKIE not in _set_cookies(r)
    assert client.get("/api/me").status_code == 401
    unknown = sign_in(client, username="nobody")
    assert unknown.status_code == 401 and "Enter a correct username and password" in unknown.text


def test_empty_fields_are_named(client: TestClient) -> None:
    page = client.get("/sign-in")
    r = client.post("/sign-in", data={"username": "", "password": "",
                                      "csrf_token": form_token(page.text)})
    assert r.status_code == 400
    assert "Enter your username" in r.text and "Enter your password" in r.text
    assert 'href="#password"' in r.text


def test_sign_in_is_rate_limited(client: TestClient) -> None:
    for _ in range(3):
        assert sign_in(client, password="wrong password").status_code == 401
    r = sign_in(client)  # even the right password waits now
    assert r.status_code == 429
    assert r.headers["content-type"].startswith("text/html")
    assert "Too many sign-in attempts" in r.text
    assert int(r.headers["retry-after"]) > 0
    assert session.COOKIE not in _set_cookies(r)
    # The web and the API share one limiter.
    api = client.post("/api/auth/login", json={"username": "rita", "password": PASSWORD})
    assert api.status_code == 429


@pytest.mark.parametrize("target,expected", [
    ("/datasets/a/b?x=1", "/datasets/a/b?x=1"),
    ("//evil.example/", "/"),
    ("https://evil.example/", "/"),
    ("/\\evil.example", "/"),
    ("javascript:alert(1)", "/"),
    ("", "/"),
])
def test_after_sign_in_only_this_site_is_a_destination(
        client: TestClient, target: str, expected: str) -> None:
    assert session.safe_next(target) == expected
    r = sign_in(client, next_url=target)
    assert r.headers["location"] == expected


# --- signing out, and CSRF ------------------------------------------------------------------

def test_sign_out_revokes_the_token_and_clears_the_cookie(
        app: FastAPI, client: TestClient) -> None:
    sign_in(client)
    token = client.cookies[session.COOKIE]
    page = client.get("/")
    r = client.post("/sign-out", data={"csrf_token": form_token(page.text)},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/sign-in?signed_out=1"
    assert _set_cookies(r)[session.COOKIE][0]["max-age"] == "0"
    assert session.COOKIE not in client.cookies
    assert "You have signed out" in client.get(r.headers["location"]).text
    # The token no longer works anywhere, even as a bearer token.
    me = client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 401
    assert all(t.revoked_at is not None for t in _tokens(app, "rita"))


@pytest.mark.parametrize("token", [None, "", "forged-token", "fälschung-ü"])
def test_sign_out_without_a_valid_token_is_refused(
        client: TestClient, token: str | None) -> None:
    sign_in(client)
    data = {} if token is None else {"csrf_token": token}
    r = client.post("/sign-out", data=data, follow_redirects=False)
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("text/html")
    assert "This form has expired" in r.text
    assert client.get("/api/me").status_code == 200  # still signed in


def test_sign_in_without_a_valid_token_is_refused(client: TestClient) -> None:
    client.get("/sign-in")
    r = client.post("/sign-in", data={"username": "rita", "password": PASSWORD},
                    follow_redirects=False)
    assert r.status_code == 403
    # A token made for another browser's pre-session cookie does not fit this one.
    other = TestClient(client.app, base_url=BASE)
    stolen = form_token(other.get("/sign-in").text)
    other.close()
    r = client.post("/sign-in", data={"username": "rita", "password": PASSWORD,
                                      "csrf_token": stolen}, follow_redirects=False)
    assert r.status_code == 403
    assert session.COOKIE not in _set_cookies(r)


def test_a_cross_site_post_cannot_ride_the_cookie(client: TestClient) -> None:
    sign_in(client, username="ada")  # an admin: POST /api/orgs would succeed for her
    body = {"id": "evil-org", "name": "Made by another site"}
    r = client.post("/api/orgs", json=body)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "authentication_required"
    r = client.post("/api/orgs", json=body, headers={"X-CSRF-Token": "made-up"})
    assert r.status_code == 401
    # The same request from our own pages, carrying the CSRF token, is hers.
    token = form_token(client.get("/").text)
    r = client.post("/api/orgs", json=body, headers={"X-CSRF-Token": token})
    assert r.status_code == 201, r.text
    assert "evil-org" in [o["id"] for o in client.get("/api/orgs").json()["orgs"]]


def test_an_expired_or_revoked_cookie_is_ignored_and_cleared(
        app: FastAPI, client: TestClient) -> None:
    sign_in(client)
    revoked = client.cookies[session.COOKIE]
    client.post("/sign-out", data={"csrf_token": form_token(client.get("/").text)})
    stale = {"Cookie": f"{session.COOKIE}={revoked}"}
    for path in ("/", "/search", "/datasets/nhs-trust/ae-attendances", "/api/datasets",
                 "/sign-in"):
        r = client.get(path, headers=stale)
        assert r.status_code == 200, path
        assert _set_cookies(r)[session.COOKIE][0]["max-age"] == "0", path
        assert "Signed in as" not in r.text
    assert client.get("/api/me", headers=stale).status_code == 401


def test_the_web_secret_is_made_once_private_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "web-secret"
    key = session.load_or_create_secret(path)
    assert len(key) == 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert session.load_or_create_secret(path) == key
    assert [p.name for p in tmp_path.iterdir()] == ["web-secret"]  # no temporary left
    path.write_text("too short")
    with pytest.raises(InternalError, match="delete it and restart"):
        session.load_or_create_secret(path)


def test_sessions_survive_a_hub_restart(seeded: Path, tmp_path: Path) -> None:
    """The secret is kept on disk, so a restarted hub accepts the forms it rendered before."""
    first = hub_app(seeded, tmp_path / "hub")
    with TestClient(first, base_url=BASE) as c:
        sign_in(c)
        token = form_token(c.get("/").text)
        cookie = c.cookies[session.COOKIE]
    first.state.hub.db.dispose()
    settings = first.state.hub.settings
    second = create_app(HubSettings(db_url=settings.db_url, data_dir=settings.data_dir))
    with TestClient(second, base_url=BASE) as c:
        jar = {"Cookie": f"{session.COOKIE}={cookie}"}
        assert "Signed in as <strong>rita</strong>" in c.get("/", headers=jar).text
        r = c.post("/sign-out", data={"csrf_token": token}, headers=jar,
                   follow_redirects=False)
        assert r.status_code == 303
    second.state.hub.db.dispose()


# --- the middleware on its own ----------------------------------------------------------------

def test_middleware_reads_a_form_token_and_replays_the_body(
        app: FastAPI, client: TestClient) -> None:
    """A form post with the right token reaches its route signed in, with its body intact."""
    sign_in(client)
    cookie = client.cookies[session.COOKIE]

    async def echo(request: Request) -> JSONResponse:
        form = await request.form()
        return JSONResponse({"session": getattr(request.state, "session_token", None),
                             "user": session.web_of(request).user is not None,
                             "form": dict(form)})

    toy = Starlette(routes=[Route("/echo", echo, methods=["POST"])])
    wrapped = session.SessionMiddleware(toy, state=app.state.hub,
                                        secret=app.state.ndl_web_secret)
    key = app.state.ndl_web_secret.key()
    good = session.csrf_token(key, "session", cookie)
    with TestClient(wrapped, base_url=BASE) as c:  # type: ignore[arg-type]
        jar = {"Cookie": f"{session.COOKIE}={cookie}"}
        ok = c.post("/echo", data={"csrf_token": good, "x": "1"}, headers=jar).json()
        assert ok == {"session": cookie, "user": True, "form": {"csrf_token": good, "x": "1"}}
        bad = c.post("/echo", data={"csrf_token": "nope", "x": "2"}, headers=jar).json()
        assert bad == {"session": None, "user": True, "form": {"csrf_token": "nope", "x": "2"}}
        # A pre-session token is not a session token.
        pre = session.csrf_token(key, "pre", cookie)
        assert c.post("/echo", data={"csrf_token": pre}, headers=jar).json()["session"] is None
        # A body with more fields than any form of ours is not searched for a token.
        many = "&".join(f"f{i}=1" for i in range(150)) + f"&csrf_token={good}"
        crowded = c.post("/echo", content=many, headers={
            **jar, "Content-Type": "application/x-www-form-urlencoded"})
        assert crowded.json()["session"] is None
        # A header token works for any body, and GET needs none.
        assert c.post("/echo", headers={**jar, "X-CSRF-Token": good}).json()["session"] == cookie
