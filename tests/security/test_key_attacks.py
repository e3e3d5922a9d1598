"""Attacks on key rotation and revocation, plain-HTTP hub URLs and keys at rest.

Against a real hub process: rotations signed by a revoked, a foreign or a retiring key, with
no or a forged proof, replayed, or to a key someone else holds; revocation by every role that
is not admin (and by nobody), malformed fingerprints. In process: http:// hub URLs without the
loopback flag, http:// to other hosts with it, and keys and secrets at rest read with a
missing or wrong passphrase.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from ndl.access.accounts import ROLES
from ndl.client import AsyncClient, Client
from ndl.core.envelope import seal
from ndl.core.errors import InsecureTransport, KeyLocked
from ndl.core.keys import SigningKey, open_secret, seal_secret
from ndl.core.sealed import EncryptionKey
from ndl.core.transport import check_hub_url
from ndl.datasite.agent import Agent
from ndl.datasite.store import DatasiteStore
from ndl.federation import key_service
from ndl.federation.party_client import PartyClient
from ndl.testing import HubProcess


def _register(url: str, token: str, site: str, org: str, key: SigningKey) -> None:
    env = seal(key, sender=site, recipient="hub", kind="register",
               body={"datasite_id": site, "org": org, "name": site,
                     "public_key": key.public_b64})
    r = httpx.post(f"{url}/api/federation/register", json=env, timeout=30,
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    h = HubProcess(tmp_path_factory.mktemp("hub"))
    h.create_org("nhs-trust", "NHS trust", "nhs")
    h.create_org("dfe", "DfE", "education")
    tokens = {role: h.create_user(f"u-{role}", [role], org="nhs-trust") for role in ROLES}
    tokens["dfe_steward"] = h.create_user("dee", ["steward"], org="dfe")
    with h:
        yield {"hub": h, "url": h.url, "tokens": tokens}


def _site(hub: dict[str, Any], name: str, org: str = "nhs-trust") -> SigningKey:
    key = SigningKey.generate()
    token = hub["tokens"]["steward"] if org == "nhs-trust" else hub["tokens"]["dfe_steward"]
    _register(hub["url"], token, name, org, key)
    return key


def _rotate_env(key: SigningKey, sender: str, new: SigningKey, *, overlap: int = 60,
                principal: str | None = None, signer: SigningKey | None = None
                ) -> dict[str, Any]:
    body = key_service.rotation_body(key, new, principal or f"datasite:{sender}", overlap)
    return seal(signer or key, sender=sender, recipient="hub", kind="key.rotate", body=body)


def _post(hub: dict[str, Any], path: str, env: Any, token: str | None = None
          ) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{hub['url']}{path}", json=env, headers=headers, timeout=30)


def _heartbeat(hub: dict[str, Any], key: SigningKey, sender: str) -> int:
    env = seal(key, sender=sender, recipient="hub", kind="heartbeat", body={"message_ids": []})
    return _post(hub, "/api/federation/heartbeat", env).status_code


def _revoke(hub: dict[str, Any], fp: str, token: str | None, reason: str = "compromised"
            ) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{hub['url']}/api/admin/keys/{fp}/revoke", json={"reason": reason},
                      headers=headers, timeout=30)


# -- rotation --------------------------------------------------------------------------------

def test_a_rotation_signed_by_a_revoked_key_is_refused(hub: dict[str, Any]) -> None:
    key = _site(hub, "rot-revoked")
    assert _revoke(hub, key.fingerprint, hub["tokens"]["admin"]).status_code == 200
    r = _post(hub, "/api/federation/rotate-key",
              _rotate_env(key, "rot-revoked", SigningKey.generate()))
    assert r.status_code == 401 and r.json()["error"]["code"] == "envelope_rejected", r.text
    assert _heartbeat(hub, key, "rot-revoked") == 401


def test_a_rotation_signed_by_a_foreign_key_is_refused(hub: dict[str, Any]) -> None:
    victim = _site(hub, "rot-victim")
    attacker = _site(hub, "rot-attacker", "dfe")
    mine = SigningKey.generate()
    # The attacker signs as the victim with its own key: the victim's keys do not verify it.
    r = _post(hub, "/api/federation/rotate-key", _rotate_env(attacker, "rot-victim", mine))
    assert r.status_code == 401 and "bad signature" in r.json()["error"]["message"]
    # A proof by a key other than the one named, or none, is refused too.
    forged = _rotate_env(victim, "rot-victim", mine)
    env = seal(victim, sender="rot-victim", recipient="hub", kind="key.rotate",
               body={**forged["body"], "proof": SigningKey.generate().sign(b"x" * 10)})
    r = _post(hub, "/api/federation/rotate-key", env)
    assert r.status_code == 401 and "proof" in r.json()["error"]["message"]
    env = seal(victim, sender="rot-victim", recipient="hub", kind="key.rotate",
               body={k: v for k, v in forged["body"].items() if k != "proof"})
    assert _post(hub, "/api/federation/rotate-key", env).status_code == 401
    # Taking over a key another datasite holds: refused.
    r = _post(hub, "/api/federation/rotate-key", _rotate_env(victim, "rot-victim", attacker))
    assert r.status_code == 409, r.text
    assert _heartbeat(hub, victim, "rot-victim") == 200  # nothing changed
    keys = httpx.get(f"{hub['url']}/api/keys", params={"owner": "datasite:rot-victim"}).json()
    assert [k["state"] for k in keys["keys"]] in ([], ["active"])


def test_a_replayed_rotation_is_refused_and_a_retiring_key_cannot_rotate(
        hub: dict[str, Any]) -> None:
    old = _site(hub, "rot-replay")
    new = SigningKey.generate()
    env = _rotate_env(old, "rot-replay", new, overlap=600)
    first = _post(hub, "/api/federation/rotate-key", env)
    assert first.status_code == 200, first.text
    again = _post(hub, "/api/federation/rotate-key", copy.deepcopy(env))
    assert again.status_code == 401 and "replayed" in again.json()["error"]["message"]
    # The old key is in its overlap: it may still sign work, but not another rotation.
    r = _post(hub, "/api/federation/rotate-key",
              _rotate_env(old, "rot-replay", SigningKey.generate()))
    assert r.status_code == 401 and "current key" in r.json()["error"]["message"], r.text
    assert _heartbeat(hub, old, "rot-replay") == 200
    assert _heartbeat(hub, new, "rot-replay") == 200


@pytest.mark.parametrize("overlap", [-1, 30 * 24 * 3600 + 1, "1d", 1.5, True, None, 2**70])
def test_a_bad_overlap_is_refused(hub: dict[str, Any], overlap: Any) -> None:
    key = _site(hub, f"rot-ov-{abs(hash(repr(overlap))) % 10**8}")
    sender = f"rot-ov-{abs(hash(repr(overlap))) % 10**8}"
    new = SigningKey.generate()
    body = {**key_service.rotation_body(key, new, f"datasite:{sender}", 0), "overlap": overlap}
    try:
        env = seal(key, sender=sender, recipient="hub", kind="key.rotate", body=body)
    except ValueError:
        return  # not even signable
    r = _post(hub, "/api/federation/rotate-key", env)
    assert r.status_code in (401, 422), r.text
    assert _heartbeat(hub, new, sender) == 401  # the new key was not taken


# -- revocation ------------------------------------------------------------------------------

@pytest.mark.parametrize("role", [r for r in ROLES if r != "admin"] + ["nobody"])
def test_only_an_admin_may_revoke(hub: dict[str, Any], role: str) -> None:
    key = _site(hub, f"rev-{role.replace('_', '-')}")
    r = _revoke(hub, key.fingerprint, hub["tokens"].get(role))
    assert r.status_code == (401 if role == "nobody" else 403), r.text
    assert _heartbeat(hub, key, f"rev-{role.replace('_', '-')}") == 200  # still valid


@pytest.mark.parametrize("fp", ["", "xyz", "A" * 16, "0" * 15, "0" * 17, "g" * 16,
                                "..%2F..%2Fetc", "0" * 10_000, "%00" * 8, "1234567890abcde "])
def test_malformed_fingerprints_are_refused(hub: dict[str, Any], fp: str) -> None:
    r = _revoke(hub, fp, hub["tokens"]["admin"])
    assert r.status_code in (404, 405, 414, 422), r.text
    assert r.status_code < 500


def test_an_unknown_fingerprint_and_a_missing_reason(hub: dict[str, Any]) -> None:
    r = _revoke(hub, "0123456789abcdef", hub["tokens"]["admin"])
    assert r.status_code == 404 and "ndl admin keys" in r.json()["error"]["message"]
    key = _site(hub, "rev-reason")
    for reason in ("", "   ", "x" * 501):
        assert _revoke(hub, key.fingerprint, hub["tokens"]["admin"], reason).status_code == 422
    assert _heartbeat(hub, key, "rev-reason") == 200


def test_the_hub_current_key_cannot_be_revoked(hub: dict[str, Any]) -> None:
    r = _revoke(hub, hub["hub"].key.fingerprint, hub["tokens"]["admin"])
    assert r.status_code == 409 and "rotate" in r.json()["error"]["message"]


def test_a_revoked_party_key_is_refused_on_every_path(hub: dict[str, Any]) -> None:
    key = _site(hub, "rev-paths")
    assert _revoke(hub, key.fingerprint, hub["tokens"]["admin"]).status_code == 200
    for path, kind, body in (("/api/federation/poll", "poll", {"wait": 0}),
                             ("/api/federation/reply", "reply", {"message_id": "m"}),
                             ("/api/federation/party-inbox", "party.poll", {"wait": 0})):
        env = seal(key, sender="rev-paths", recipient="hub", kind=kind, body=body)
        assert _post(hub, path, env).status_code == 401, path


# -- plain HTTP ------------------------------------------------------------------------------

def test_http_hub_urls_are_refused_without_the_flag(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    monkeypatch.delenv("NDL_ALLOW_HTTP_LOOPBACK", raising=False)
    monkeypatch.delenv("NDL_ALLOW_HTTP_HOSTS", raising=False)
    url = "http://127.0.0.1:9"
    for make in (lambda: Client(url), lambda: AsyncClient(url),
                 lambda: PartyClient(url, principal="party:p", signing_key=SigningKey.generate()),
                 lambda: Agent(DatasiteStore(tmp_path / "site"), url, datasite_id="s", org="o")):
        with pytest.raises(InsecureTransport, match="NDL_ALLOW_HTTP_LOOPBACK=1"):
            make()
    from ndl.cli import app

    res = CliRunner().invoke(app, ["search", "x", "--hub", url],
                             env={"NDL_CONFIG_DIR": str(tmp_path / "cfg")})
    assert res.exit_code != 0 and "https://" in res.output
    assert check_hub_url("https://hub.example") == "https://hub.example"
    assert Client(url, allow_http_loopback=True).url == url  # the option says it explicitly


@pytest.mark.parametrize("url", ["http://10.0.0.1:8700", "http://hub.example",
                                 "http://127.0.0.1.nip.io", "http://[::2]:8700",
                                 "http://0.0.0.0:8700", "http://localhost.evil.example",
                                 "http://user@hub.example@127.0.0.1.evil"])
def test_http_to_other_hosts_is_refused_even_with_the_flag(
        monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("NDL_ALLOW_HTTP_LOOPBACK", "1")
    monkeypatch.delenv("NDL_ALLOW_HTTP_HOSTS", raising=False)
    with pytest.raises(InsecureTransport, match="only to"):
        Client(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8700", "http://localhost:1",
                                 "http://[::1]:8700", "http://127.9.9.9"])
def test_loopback_is_allowed_with_the_flag(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("NDL_ALLOW_HTTP_LOOPBACK", "1")
    assert check_hub_url(url) == url


# -- keys at rest ----------------------------------------------------------------------------

def test_a_wrong_or_missing_passphrase_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    monkeypatch.setenv("NDL_KEY_PASSPHRASE", "correct horse")
    key = SigningKey.load_or_create(tmp_path / "key.pem")
    enc = EncryptionKey.load_or_create(tmp_path / "enc.pem")
    secret = seal_secret(b"s" * 32)
    assert b"ENCRYPTED" in (tmp_path / "key.pem").read_bytes()
    assert SigningKey.load_or_create(tmp_path / "key.pem").public_b64 == key.public_b64
    monkeypatch.setenv("NDL_KEY_PASSPHRASE", "wrong horse")
    for read in (lambda: SigningKey.load_or_create(tmp_path / "key.pem"),
                 lambda: EncryptionKey.load_or_create(tmp_path / "enc.pem"),
                 lambda: open_secret(secret, tmp_path / "web-secret")):
        with pytest.raises(KeyLocked, match="passphrase is wrong"):
            read()
    monkeypatch.delenv("NDL_KEY_PASSPHRASE")
    with pytest.raises(KeyLocked, match="NDL_KEY_PASSPHRASE"):
        SigningKey.load_or_create(tmp_path / "key.pem")
    with pytest.raises(KeyLocked, match="no passphrase"):
        open_secret(secret, tmp_path / "web-secret")
    monkeypatch.setenv("NDL_KEY_PASSPHRASE_FILE", str(tmp_path / "missing"))
    with pytest.raises(KeyLocked, match="cannot be read"):
        SigningKey.load_or_create(tmp_path / "key.pem")
    (tmp_path / "pass").write_text("correct horse\n")
    monkeypatch.setenv("NDL_KEY_PASSPHRASE_FILE", str(tmp_path / "pass"))
    assert SigningKey.load_or_create(tmp_path / "key.pem").public_b64 == key.public_b64
    assert EncryptionKey.load_or_create(tmp_path / "enc.pem").public_b64 == enc.public_b64
    assert open_secret(secret, tmp_path / "web-secret") == b"s" * 32


def test_a_hub_will_not_start_with_a_wrong_passphrase(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    from ndl.hub.app import create_app
    from ndl.hub.state import HubSettings

    monkeypatch.setenv("NDL_KEY_PASSPHRASE", "one")
    settings = HubSettings(db_url=str(tmp_path / "hub.db"), data_dir=tmp_path)
    create_app(settings)
    assert b"ENCRYPTED" in (tmp_path / "hub-key.pem").read_bytes()
    monkeypatch.setenv("NDL_KEY_PASSPHRASE", "two")
    with pytest.raises(KeyLocked):
        create_app(settings)


# -- a party (an enclave) rotates too ----------------------------------------------------------

def test_a_party_rotates_with_an_overlap_and_its_old_key_cannot_rotate_again(
        hub: dict[str, Any]) -> None:
    old = SigningKey.generate()
    with PartyClient(hub["url"], principal="party:enclave-rot", signing_key=old,
                     encryption_key=EncryptionKey.generate()) as party:
        party.register(hub["tokens"]["steward"], kind="enclave", org="nhs-trust")
        new = SigningKey.generate()
        out = party.rotate_key(new, overlap=120)
        assert out["old_fingerprint"] == old.fingerprint
        assert out["new_fingerprint"] == new.fingerprint
        assert party.receive() == []  # signed with the new key: accepted
    # During the overlap the old key still signs the party's requests...
    env = seal(old, sender="party:enclave-rot", recipient="hub", kind="party.poll",
               body={"wait": 0})
    assert _post(hub, "/api/federation/party-inbox", env).status_code == 200
    # ... but cannot rotate again, and once revoked it is refused at once.
    r = _post(hub, "/api/federation/rotate-key",
              _rotate_env(old, "party:enclave-rot", SigningKey.generate(),
                          principal="party:enclave-rot"))
    assert r.status_code == 401, r.text
    assert _revoke(hub, old.fingerprint, hub["tokens"]["admin"]).status_code == 200
    env = seal(old, sender="party:enclave-rot", recipient="hub", kind="party.poll",
               body={"wait": 0})
    assert _post(hub, "/api/federation/party-inbox", env).status_code == 401
    keys = httpx.get(f"{hub['url']}/api/keys", params={"owner": "party:enclave-rot"}).json()
    assert {k["fingerprint"]: k["state"] for k in keys["keys"]} == {
        old.fingerprint: "revoked", new.fingerprint: "active"}
