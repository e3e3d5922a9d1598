"""Signing in through a real OpenID Connect provider process (oidc-provider-mock on loopback).

The browser's part is played by an httpx client with a cookie jar that follows each redirect
by hand: hub -> provider's authorize form -> (the person picks an account) -> hub callback.
The provider is a real authorization server (authlib's, with PKCE, nonces and RS256 ID
tokens published as JWKS); each account's claims (``amr``, ``acr``) are set through its
``PUT /users/<sub>`` endpoint, as an IdP would report how the person authenticated.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select

from ndl.access.models import User
from ndl.access.oidc import Flow, ProviderClient
from ndl.access.oidc import Provider as OidcProvider
from ndl.core.errors import AuthenticationRequired
from ndl.ledger.security_models import SecurityEvent
from ndl.testing import HubProcess, free_port, wait_http

ORG = "uni-example"


@dataclass
class Provider:
    url: str
    proc: subprocess.Popen[bytes]

    def set_user(self, sub: str, **claims: object) -> None:
        httpx.put(f"{self.url}/users/{sub}", json=claims, timeout=10).raise_for_status()


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    port = free_port()
    log = (tmp_path_factory.mktemp("oidc") / "provider.log").open("ab")
    # --require-nonce: the provider itself refuses a flow without one, as strict IdPs do.
    proc = subprocess.Popen([sys.executable, "-m", "oidc_provider_mock", "--port", str(port),
                             "--require-nonce"], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/.well-known/openid-configuration", 60, proc)
        p = Provider(url, proc)
        p.set_user("alice-sub", email="alice@uni.example", preferred_username="alice",
                   name="Alice Example", amr=["pwd", "otp"], acr="urn:ndl:loa:2")
        p.set_user("bob-sub", email="bob@uni.example", preferred_username="bob",
                   amr=["pwd"])
        yield p
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@dataclass
class Hub:
    proc: HubProcess
    admin_token: str


@pytest.fixture(scope="module")
def hub(provider: Provider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    base = tmp_path_factory.mktemp("oidc-hub")
    secret = base / "client-secret"
    secret.write_text("a-client-secret\n")
    config = base / "oidc.toml"
    config.write_text(f"""
[providers.uni]
label = "University of Example"
issuer = "{provider.url}"
client_id = "ndl-hub"
client_secret_file = "{secret}"
org = "{ORG}"
roles = ["researcher"]
require_amr = ["mfa", "otp", "hwk"]
""")
    proc = HubProcess(base / "hub", extra_args=["--oidc-config", str(config),
                                                "--insecure-cookies"])
    proc.create_org(ORG, "University of Example", "academic")
    admin = proc.create_user("root", ["admin"])
    with proc:
        yield Hub(proc, admin)


class _Forms(HTMLParser):
    """The provider's authorize page: the names of its form fields."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("input", "button") and a.get("name"):
            self.fields.add(str(a["name"]))


def _start(browser: httpx.Client, hub: Hub) -> httpx.Response:
    """Hub -> provider: the provider's authorize page (a GET after the hub's redirect)."""
    r = browser.get(f"{hub.proc.url}/sign-in/oidc/uni", params={"next": "/search"})
    assert r.status_code == 303, r.text
    location = r.headers["location"]
    query = parse_qs(urlsplit(location).query)
    # PKCE S256 and a nonce in the request; the state is there to come back.
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    assert query["nonce"][0] and query["state"][0]
    page = browser.get(location)
    assert page.status_code == 200
    return page


def _pick(browser: httpx.Client, page: httpx.Response, sub: str) -> str:
    """The person picks their account at the provider; the callback URL it sends them to."""
    forms = _Forms()
    forms.feed(page.text)
    assert "sub" in forms.fields, page.text  # the person says who they are
    r = browser.post(str(page.url), data={"sub": sub})
    assert r.status_code in (302, 303), r.text
    return r.headers["location"]


def sign_in(browser: httpx.Client, hub: Hub, sub: str) -> httpx.Response:
    return browser.get(_pick(browser, _start(browser, hub), sub))


def test_sign_in_page_offers_the_provider(hub: Hub) -> None:
    page = httpx.get(f"{hub.proc.url}/sign-in")
    assert "Sign in with University of Example" in page.text
    assert 'href="/sign-in/oidc/uni?next=' in page.text


def test_sign_in_through_the_provider_makes_a_session(hub: Hub) -> None:
    with httpx.Client() as browser:
        done = sign_in(browser, hub, "alice-sub")
        assert done.status_code == 303, done.text
        assert done.headers["location"] == "/search"
        assert browser.cookies.get("ndl_session")
        me = browser.get(f"{hub.proc.url}/api/me").json()
        # A new account in the provider's organisation, with its default role.
        assert me["username"] == "alice" and me["org"] == ORG
        assert me["roles"] == ["researcher"]
    with hub.proc.db.read() as s:
        signed = s.scalars(select(SecurityEvent).where(
            SecurityEvent.kind == "auth.sign_in", SecurityEvent.actor == "user:alice")).all()
        assert [e.details.get("via") for e in signed] == ["oidc:uni"]
    # Signing in again finds the same account by (issuer, subject), not a second one.
    with httpx.Client() as again:
        assert sign_in(again, hub, "alice-sub").status_code == 303
        assert again.get(f"{hub.proc.url}/api/me").json()["username"] == "alice"


def test_a_sign_in_without_mfa_is_refused_by_policy(hub: Hub) -> None:
    with httpx.Client() as browser:
        refused = sign_in(browser, hub, "bob-sub")
        assert refused.status_code == 403
        assert "Multi-factor authentication is required" in refused.text
        assert "mfa, otp, hwk" in refused.text
        assert not browser.cookies.get("ndl_session")
    with hub.proc.db.read() as s:
        # No account was made for someone the policy refused; the security log has the try.
        assert s.scalar(select(User).where(User.username == "bob")) is None
        refusals = s.scalars(select(SecurityEvent).where(
            SecurityEvent.kind == "auth.sign_in_failed")).all()
        assert any(e.actor == "oidc:uni:bob-sub" and e.outcome == "refused" for e in refusals)


def test_the_same_person_with_a_second_factor_gets_in(hub: Hub, provider: Provider) -> None:
    provider.set_user("carol-sub", email="carol@uni.example", amr=["pwd"])
    with httpx.Client() as browser:
        assert sign_in(browser, hub, "carol-sub").status_code == 403
    provider.set_user("carol-sub", email="carol@uni.example", amr=["pwd", "hwk"])
    with httpx.Client() as browser:
        assert sign_in(browser, hub, "carol-sub").status_code == 303
        assert browser.get(f"{hub.proc.url}/api/me").json()["username"] == "carol"


def test_a_wrong_state_is_refused(hub: Hub) -> None:
    with httpx.Client() as browser:
        callback = _pick(browser, _start(browser, hub), "alice-sub")
        forged = callback.replace("state=", "state=x")
        refused = browser.get(forged)
        assert refused.status_code == 400
        assert "does not match the sign-in this browser started" in refused.text
        assert not browser.cookies.get("ndl_session")
        # The flow is spent: the genuine callback no longer works either.
        assert browser.get(callback).status_code == 400


def test_a_callback_from_another_browser_is_refused(hub: Hub) -> None:
    """Login CSRF: an attacker's code and state, delivered to a victim without the flow."""
    with httpx.Client() as attacker:
        callback = _pick(attacker, _start(attacker, hub), "alice-sub")
    with httpx.Client() as victim:
        refused = victim.get(callback)
        assert refused.status_code == 400
        assert "not started here" in refused.text
        assert not victim.cookies.get("ndl_session")


def test_a_wrong_nonce_is_refused(hub: Hub) -> None:
    """Two flows in one browser: the second's cookie (its state copied; its nonce B) meets
    the first's code, whose ID token carries nonce A. (This provider does not enforce PKCE,
    so the exchange succeeds and the hub's nonce check is what refuses.)"""
    with httpx.Client() as browser:
        first = _pick(browser, _start(browser, hub), "alice-sub")
        _start(browser, hub)  # a new flow: new state, nonce and verifier in the cookie
        cookie = browser.cookies.get("ndl_oidc")
        assert cookie
        payload = json.loads(_b64(cookie.split(".")[0]))
        code = parse_qs(urlsplit(first).query)["code"][0]
        replayed = browser.get(f"{hub.proc.url}/sign-in/oidc/uni/callback",
                               params={"code": code, "state": payload["state"]})
        assert replayed.status_code == 401
        assert "did not verify" in replayed.text and "nonce" in replayed.text
        assert not browser.cookies.get("ndl_session")


def test_an_id_token_with_another_nonce_is_refused(provider: Provider) -> None:
    """The client itself, against the real provider: the code is exchanged (the verifier is
    right) but the ID token carries the nonce of the flow that asked for it, not ours."""
    client = ProviderClient(OidcProvider(name="uni", label="Uni", issuer=provider.url,
                                         client_id="ndl-hub", client_secret="s", org=ORG))
    redirect = "http://127.0.0.1:9/callback"
    flow, url = client.begin(redirect)
    with httpx.Client() as browser:
        r = browser.post(url, data={"sub": "alice-sub"})
        assert r.status_code in (302, 303), r.text
    code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
    other = Flow(flow.provider, flow.state, "not-the-nonce-we-sent", flow.code_verifier)
    with pytest.raises(AuthenticationRequired, match=r"did not verify.*nonce"):
        client.finish(other, code=code, redirect_uri=redirect)


def _b64(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_suspension_mid_session_stops_session_and_tokens_at_once(hub: Hub,
                                                                 provider: Provider) -> None:
    provider.set_user("dave-sub", email="dave@uni.example", amr=["mfa"])
    admin = {"Authorization": f"Bearer {hub.admin_token}"}
    with httpx.Client() as browser:
        assert sign_in(browser, hub, "dave-sub").status_code == 303
        assert browser.get(f"{hub.proc.url}/api/me").json()["username"] == "dave"
        minted = browser.post(f"{hub.proc.url}/api/auth/tokens",
                              headers={"X-CSRF-Token": _csrf(browser, hub)},
                              json={"scope": "read-only", "name": "agent", "days": 1})
        assert minted.status_code == 201, minted.text
        agent = {"Authorization": f"Bearer {minted.json()['token']}"}
        assert httpx.get(f"{hub.proc.url}/api/me", headers=agent).status_code == 200

        r = httpx.post(f"{hub.proc.url}/api/admin/users/dave/suspend", headers=admin,
                       json={"reason": "incident 7: account shared"})
        assert r.status_code == 200 and r.json()["suspended"] is True

        # The very next request with the session is refused, naming the suspension.
        page = browser.get(f"{hub.proc.url}/search")
        assert page.status_code == 403 and "suspended" in page.text
        assert not browser.cookies.get("ndl_session")  # the session is over
        api = httpx.get(f"{hub.proc.url}/api/me", headers=agent)
        assert api.status_code == 403 and api.json()["error"]["code"] == "suspended"
        # Signing in again through the provider is refused too.
        again = sign_in(browser, hub, "dave-sub")
        assert again.status_code == 403 and "suspended" in again.text

        r = httpx.post(f"{hub.proc.url}/api/admin/users/dave/reinstate", headers=admin)
        assert r.status_code == 200 and r.json()["suspended"] is False
        assert httpx.get(f"{hub.proc.url}/api/me", headers=agent).status_code == 200
        assert sign_in(browser, hub, "dave-sub").status_code == 303
        assert browser.get(f"{hub.proc.url}/api/me").json()["username"] == "dave"
    # The register says who was suspended and by whom, never why.
    entries = httpx.get(f"{hub.proc.url}/api/register", params={"limit": 500}).text
    assert "user.suspended" in entries and "user.reinstated" in entries
    assert "account shared" not in entries


def _csrf(browser: httpx.Client, hub: Hub) -> str:
    page = browser.get(f"{hub.proc.url}/sign-in").text
    marker = 'name="csrf_token" value="'
    if marker in page:
        return page.split(marker, 1)[1].split('"', 1)[0]
    # Signed in: the sign-in page shows no form; any page with a form carries the token.
    page = browser.get(f"{hub.proc.url}/").text
    return page.split(marker, 1)[1].split('"', 1)[0]


def test_a_missing_client_secret_stops_the_hub_at_start(tmp_path: Path, provider: Provider
                                                        ) -> None:
    config = tmp_path / "oidc.toml"
    config.write_text(f"""
[providers.uni]
issuer = "{provider.url}"
client_id = "ndl-hub"
client_secret_env = "NDL_TEST_UNSET_SECRET"
org = "{ORG}"
""")
    done = subprocess.run([sys.executable, "-m", "ndl", "hub", "--data-dir",
                           str(tmp_path / "hub"), "--port", str(free_port()),
                           "--oidc-config", str(config)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "NDL_TEST_UNSET_SECRET" in done.stdout + done.stderr


def test_a_provider_only_user_gets_a_cli_token(hub: Hub, provider: Provider,
                                               tmp_path: Path) -> None:
    """No password: the web session mints a token and ``ndl login --with-token`` saves it."""
    import os

    provider.set_user("erin-sub", email="erin@uni.example", amr=["otp"])
    with httpx.Client() as browser:
        anonymous = browser.get(f"{hub.proc.url}/account/cli-token")
        assert anonymous.status_code == 303 and anonymous.headers["location"].startswith(
            "/sign-in")
        assert sign_in(browser, hub, "erin-sub").status_code == 303
        page = browser.get(f"{hub.proc.url}/account/cli-token").text
        csrf = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        # A post without the session's CSRF token mints nothing.
        assert browser.post(f"{hub.proc.url}/account/cli-token", data={}).status_code == 403
        made = browser.post(f"{hub.proc.url}/account/cli-token", data={"csrf_token": csrf})
        assert made.status_code == 200
        token = made.text.split('id="cli-token">', 1)[1].split("<", 1)[0].strip()
        assert token.startswith("ndl_")
    env = {**os.environ, "NDL_CONFIG_DIR": str(tmp_path / "cfg")}
    done = subprocess.run([sys.executable, "-m", "ndl", "login", "--hub", hub.proc.url,
                           "--with-token"], input=token + "\n", capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "as erin" in done.stdout
    who = subprocess.run([sys.executable, "-m", "ndl", "whoami"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert who.returncode == 0 and "erin" in who.stdout
    bad = subprocess.run([sys.executable, "-m", "ndl", "login", "--hub", hub.proc.url,
                          "--with-token"], input="ndl_not-a-token\n", capture_output=True,
                         text=True, env={**env, "NDL_CONFIG_DIR": str(tmp_path / "other")},
                         timeout=120)
    assert bad.returncode != 0 and not (tmp_path / "other" / "config.json").exists()


def _config(base: Path, provider: Provider, mfa: str) -> Path:
    secret = base / "client-secret"
    secret.write_text("a-client-secret\n")
    config = base / "oidc.toml"
    config.write_text(f"""
[providers.uni]
label = "University of Example"
issuer = "{provider.url}"
client_id = "ndl-hub"
client_secret_file = "{secret}"
org = "{ORG}"
{mfa}
""")
    return config


def test_a_hub_without_passwords_signs_in_only_with_mfa(provider: Provider,
                                                        tmp_path: Path) -> None:
    """SATRE 3.2.04 by configuration: passwords refused, every provider requires MFA."""
    lax = _config(tmp_path, provider, "")
    refused = subprocess.run([sys.executable, "-m", "ndl", "hub", "--data-dir",
                              str(tmp_path / "lax"), "--port", str(free_port()),
                              "--oidc-config", str(lax), "--no-password-sign-in"],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    assert "every provider must require MFA" in refused.stdout + refused.stderr
    strict = _config(tmp_path, provider, 'require_acr = ["urn:ndl:loa:2"]')
    proc = HubProcess(tmp_path / "hub", extra_args=["--oidc-config", str(strict),
                                                    "--insecure-cookies",
                                                    "--no-password-sign-in"])
    proc.create_org(ORG, "University of Example", "academic")
    proc.create_user("pat", ["researcher"], password="a long enough password")
    with proc:
        page = httpx.get(f"{proc.url}/sign-in").text
        assert 'id="sign-in-form"' not in page and "Sign in with University" in page
        r = httpx.post(f"{proc.url}/api/auth/login",
                       json={"username": "pat", "password": "a long enough password"})
        assert r.status_code == 403 and "does not take passwords" in r.text
        with httpx.Client() as browser:
            # alice's provider reports acr urn:ndl:loa:2; bob's reports none.
            assert sign_in(browser, Hub(proc, ""), "alice-sub").status_code == 303
            assert browser.get(f"{proc.url}/api/me").json()["username"] == "alice"
        with httpx.Client() as browser:
            assert sign_in(browser, Hub(proc, ""), "bob-sub").status_code == 403
