"""Attacks on the hub <-> datasite protocol, against a real hub process.

Forged, altered, expired and replayed envelopes; registering without the right role or for
another organisation; answering someone else's mail.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ndl.core.envelope import seal
from ndl.core.keys import SigningKey
from ndl.testing import HubProcess

SITE_KEY = SigningKey.generate()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    h = HubProcess(tmp_path_factory.mktemp("hub"))
    h.create_org("nhs-trust", "NHS trust", "nhs")
    h.create_org("dfe", "DfE", "education")
    tokens = {
        "steward": h.create_user("sam", ["steward"], org="nhs-trust"),
        "dfe_steward": h.create_user("dee", ["steward"], org="dfe"),
        "researcher": h.create_user("alice", ["researcher"]),
    }
    with h:
        env = seal(SITE_KEY, sender="nhs-trust", recipient="hub", kind="register",
                   body={"datasite_id": "nhs-trust", "org": "nhs-trust", "name": "NHS",
                         "public_key": SITE_KEY.public_b64})
        r = httpx.post(f"{h.url}/api/federation/register", json=env,
                       headers={"Authorization": f"Bearer {tokens['steward']}"})
        assert r.status_code == 201, r.text
        yield {"hub": h, "url": h.url, "tokens": tokens}


def _post(url: str, path: str, env: Any, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{url}{path}", json=env, headers=headers, timeout=10)


def _poll(**kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"sender": "nhs-trust", "recipient": "hub", "kind": "poll",
                            "body": {"wait": 0}, **kw}
    key = args.pop("key", SITE_KEY)
    return seal(key, **args)


def _refused(r: httpx.Response, words: str) -> None:
    assert r.status_code == 401, r.text
    body = r.json()
    assert body["error"]["code"] == "envelope_rejected"
    assert words in body["error"]["message"]


def test_a_genuine_poll_is_accepted(hub: dict[str, Any]) -> None:
    r = _post(hub["url"], "/api/federation/poll", _poll())
    assert r.status_code == 200 and r.json()["messages"] == []


def test_forged_poll_signed_by_another_key(hub: dict[str, Any]) -> None:
    _refused(_post(hub["url"], "/api/federation/poll", _poll(key=SigningKey.generate())),
             "bad signature")


def test_altered_publish_is_refused(hub: dict[str, Any]) -> None:
    env = seal(SITE_KEY, sender="nhs-trust", recipient="hub", kind="publish",
               body={"datasets": []})
    env["body"] = {"datasets": [{"name": "evil", "title": "x", "publisher": "x",
                                 "tier": "open", "columns": [{"name": "a", "type": "string"}]}]}
    _refused(_post(hub["url"], "/api/federation/publish", env), "bad signature")
    found = httpx.get(f"{hub['url']}/api/datasets", params={"q": "evil"}).json()
    assert found["total"] == 0


def test_expired_envelope_is_refused(hub: dict[str, Any]) -> None:
    _refused(_post(hub["url"], "/api/federation/poll", _poll(ttl=5, now=time.time() - 60)),
             "expired")


def test_replayed_envelope_is_refused(hub: dict[str, Any]) -> None:
    env = _poll()
    assert _post(hub["url"], "/api/federation/poll", env).status_code == 200
    _refused(_post(hub["url"], "/api/federation/poll", copy.deepcopy(env)), "replayed")


def test_envelope_for_another_recipient_is_refused(hub: dict[str, Any]) -> None:
    _refused(_post(hub["url"], "/api/federation/poll", _poll(recipient="dfe")), "addressed")


def test_impersonating_an_unregistered_datasite(hub: dict[str, Any]) -> None:
    _refused(_post(hub["url"], "/api/federation/poll", _poll(sender="dfe")), "unknown sender")


def test_not_an_envelope(hub: dict[str, Any]) -> None:
    r = httpx.post(f"{hub['url']}/api/federation/poll", content=b"[1,2",
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input"


def _register_env(site: str, org: str, key: SigningKey | None = None,
                  claimed: SigningKey | None = None) -> dict[str, Any]:
    key = key or SigningKey.generate()
    return seal(key, sender=site, recipient="hub", kind="register",
                body={"datasite_id": site, "org": org, "name": site,
                      "public_key": (claimed or key).public_b64})


def test_registration_needs_a_token(hub: dict[str, Any]) -> None:
    r = _post(hub["url"], "/api/federation/register", _register_env("dfe", "dfe"))
    assert r.status_code == 401


def test_researcher_cannot_register_a_datasite(hub: dict[str, Any]) -> None:
    r = _post(hub["url"], "/api/federation/register", _register_env("dfe", "dfe"),
              hub["tokens"]["researcher"])
    assert r.status_code == 403 and "steward" in r.json()["error"]["message"]


def test_steward_cannot_register_for_another_org(hub: dict[str, Any]) -> None:
    r = _post(hub["url"], "/api/federation/register", _register_env("evil-site", "nhs-trust"),
              hub["tokens"]["dfe_steward"])
    assert r.status_code == 403


def test_registration_must_prove_possession_of_the_key(hub: dict[str, Any]) -> None:
    """Claiming someone else's public key without its private half fails."""
    env = _register_env("dfe", "dfe", claimed=SigningKey.generate())
    r = _post(hub["url"], "/api/federation/register", env, hub["tokens"]["dfe_steward"])
    _refused(r, "bad signature")


def test_a_registered_datasite_cannot_be_taken_over(hub: dict[str, Any]) -> None:
    env = _register_env("nhs-trust", "nhs-trust")
    r = _post(hub["url"], "/api/federation/register", env, hub["tokens"]["steward"])
    assert r.status_code == 409 and "already registered" in r.json()["error"]["message"]


def test_replying_to_mail_that_was_not_ours(hub: dict[str, Any]) -> None:
    env = seal(SITE_KEY, sender="nhs-trust", recipient="hub", kind="reply",
               body={"message_id": "00000000-0000-0000-0000-000000000000", "ok": True,
                     "result": {"columns": ["n"], "rows": [[1]]}})
    r = _post(hub["url"], "/api/federation/reply", env)
    assert r.status_code == 404


def test_wrong_kind_on_an_endpoint(hub: dict[str, Any]) -> None:
    env = seal(SITE_KEY, sender="nhs-trust", recipient="hub", kind="publish",
               body={"wait": 0})
    r = _post(hub["url"], "/api/federation/poll", env)
    assert r.status_code == 422 and "poll" in r.json()["error"]["message"]


def test_datasite_refuses_a_hub_whose_key_is_not_the_pinned_one(tmp_path: Path) -> None:
    """A datasite refuses a hub whose key differs from the one it was told to pin."""
    from ndl.core.errors import EnvelopeRejected
    from ndl.datasite.agent import Agent
    from ndl.datasite.store import DatasiteStore

    with HubProcess(tmp_path / "hub2") as h:
        h.create_org("la", "LA", "local_authority")
        token = h.create_user("st", ["steward"], org="la")
        agent = Agent(DatasiteStore(tmp_path / "site"), h.url, datasite_id="la", org="la",
                      token=token, hub_key=SigningKey.generate().public_b64)
        try:
            with pytest.raises(EnvelopeRejected, match=r"--hub-key"):
                agent.register()
            assert not agent.store.config().get("registered")
        finally:
            agent.close()


@pytest.mark.parametrize("value", ["NaN", "Infinity", "9007199254740993"])
def test_an_unsignable_number_is_refused_not_a_crash(hub: dict[str, Any], value: str) -> None:
    env = _poll()
    raw = httpx.Request("POST", "/", json=env).content.decode().replace(
        '"wait":0', f'"wait":{value}')
    r = httpx.post(f"{hub['url']}/api/federation/poll", content=raw.encode(),
                   headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 401, r.text
    assert "not a signable envelope" in r.json()["error"]["message"]
