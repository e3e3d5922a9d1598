"""Attacks on parties, the sealed relay and coordination, against a real hub process.

Unknown senders, forged and replayed envelopes, a party reading or acknowledging another's
inbox, a forged sender signature, oversized and malformed payloads and keys, a hub that
substitutes a key, approving twice, approving or inspecting without being a party.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ndl.core.envelope import seal
from ndl.core.errors import EnvelopeRejected
from ndl.core.keys import SigningKey, b64e
from ndl.core.sealed import Context, EncryptionKey, statement
from ndl.core.sealed import seal as seal_payload
from ndl.federation.parties import INLINE_MAX
from ndl.federation.party_client import PartyClient
from ndl.testing import HubProcess

PARAMS = hashlib.sha256(b"the exact linkage code").hexdigest()


@dataclass
class Lib:
    url: str
    hub: HubProcess
    tokens: dict[str, str]
    site_key: SigningKey
    site: PartyClient
    enclave: PartyClient
    enclave2: PartyClient


def _party(url: str, name: str) -> PartyClient:
    return PartyClient(url, principal=f"party:{name}", signing_key=SigningKey.generate(),
                       encryption_key=EncryptionKey.generate())


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lib]:
    h = HubProcess(tmp_path_factory.mktemp("hub"))
    h.create_org("nhs-trust", "NHS trust", "nhs")
    h.create_org("dfe", "DfE", "education")
    tokens = {
        "steward": h.create_user("sam", ["steward"], org="nhs-trust"),
        "dfe_steward": h.create_user("dee", ["steward"], org="dfe"),
        "researcher": h.create_user("alice", ["researcher"]),
        "stranger": h.create_user("mallory", ["researcher"]),
    }
    with h:
        site_key = SigningKey.generate()
        env = seal(site_key, sender="nhs-trust", recipient="hub", kind="register",
                   body={"datasite_id": "nhs-trust", "org": "nhs-trust", "name": "NHS",
                         "public_key": site_key.public_b64})
        r = httpx.post(f"{h.url}/api/federation/register", json=env, timeout=30,
                       headers={"Authorization": f"Bearer {tokens['steward']}"})
        assert r.status_code == 201, r.text
        site = PartyClient(h.url, principal="datasite:nhs-trust", signing_key=site_key,
                           encryption_key=EncryptionKey.generate())
        site.publish_key()
        enclave, enclave2 = _party(h.url, "enclave-1"), _party(h.url, "enclave-2")
        enclave.register(tokens["steward"], kind="enclave", org="nhs-trust")
        enclave2.register(tokens["dfe_steward"], kind="enclave", org="dfe")
        yield Lib(h.url, h, tokens, site_key, site, enclave, enclave2)
        for c in (site, enclave, enclave2):
            c.close()


def _post(lib: Lib, path: str, env: Any, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{lib.url}{path}", json=env, headers=headers, timeout=30)


def _refused(r: httpx.Response, status: int, words: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err: dict[str, Any] = r.json()["error"]
    assert words in err["message"], err
    return err


def _send_body(sender: PartyClient, to: str, plaintext: bytes, *, purpose: str = "test",
               key: SigningKey | None = None) -> dict[str, Any]:
    peer = sender.keys_of(to)
    ctx = Context(sender.principal, to, purpose)
    sealed = seal_payload(plaintext, peer.encryption_key, ctx)
    return {"to": to, "purpose": purpose, "sha256": sealed.sha256, "size": sealed.size,
            "sender_sig": (key or sender.key).sign(statement(ctx, sealed.sha256, sealed.size)),
            "ciphertext_b64": base64.b64encode(sealed.ciphertext).decode()}


def _drain(c: PartyClient) -> None:
    msgs = c.receive()
    if msgs:
        c.ack([m.message_id for m in msgs])


# -- who is speaking ---------------------------------------------------------------------------

def test_unknown_sender_is_refused(lib: Lib) -> None:
    ghost = SigningKey.generate()
    env = seal(ghost, sender="party:ghost", recipient="hub", kind="party.poll", body={})
    _refused(_post(lib, "/api/federation/party-inbox", env), 401, "unknown sender")
    env = seal(ghost, sender="no-such-site", recipient="hub", kind="party.poll", body={})
    _refused(_post(lib, "/api/federation/party-inbox", env), 401, "unknown sender")


def test_envelope_signed_by_the_wrong_key_is_refused(lib: Lib) -> None:
    env = seal(SigningKey.generate(), sender="party:enclave-1", recipient="hub",
               kind="party.poll", body={})
    _refused(_post(lib, "/api/federation/party-inbox", env), 401, "bad signature")
    # A datasite's key does not speak for the enclave either.
    env = seal(lib.site_key, sender="party:enclave-1", recipient="hub", kind="party.poll",
               body={})
    _refused(_post(lib, "/api/federation/party-inbox", env), 401, "bad signature")


def test_replayed_send_is_refused_and_queues_nothing_more(lib: Lib) -> None:
    _drain(lib.enclave)
    env = lib.site.envelope("party.send", _send_body(lib.site, "party:enclave-1", b"once"))
    assert _post(lib, "/api/federation/party-send", env).status_code == 201
    _refused(_post(lib, "/api/federation/party-send", env), 401, "replayed")
    got = lib.enclave.receive()
    assert [m.plaintext for m in got] == [b"once"]
    lib.enclave.ack([m.message_id for m in got])
    # The same ciphertext in a fresh envelope while it still waits is refused as well.
    body = _send_body(lib.site, "party:enclave-1", b"twice")
    assert lib.site.post("/api/federation/party-send", "party.send", body)
    r = _post(lib, "/api/federation/party-send", lib.site.envelope("party.send", body))
    _refused(r, 409, "already waiting")
    _drain(lib.enclave)


def test_replayed_poll_and_ack_are_refused(lib: Lib) -> None:
    env = lib.enclave.envelope("party.poll", {"wait": 0})
    assert _post(lib, "/api/federation/party-inbox", env).status_code == 200
    _refused(_post(lib, "/api/federation/party-inbox", env), 401, "replayed")
    ack = lib.enclave.envelope("party.ack", {"message_ids": []})
    assert _post(lib, "/api/federation/party-ack", ack).status_code == 200
    _refused(_post(lib, "/api/federation/party-ack", ack), 401, "replayed")


@pytest.mark.parametrize("number", ["NaN", "Infinity", "1" + "0" * 30])
def test_numbers_no_signer_can_sign_are_refused_not_crashed_on(lib: Lib, number: str) -> None:
    env = lib.enclave.envelope("party.poll", {"wait": 0})
    raw = json.dumps(env).replace('"wait": 0', f'"wait": {number}')
    r = httpx.post(f"{lib.url}/api/federation/party-inbox", content=raw, timeout=30,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "envelope_rejected"


# -- whose inbox ------------------------------------------------------------------------------

def test_a_party_cannot_read_or_acknowledge_anothers_inbox(lib: Lib) -> None:
    _drain(lib.enclave)
    sent = lib.site.send("party:enclave-1", "test", b"for enclave-1 only")
    # enclave-2 polls: its inbox is its own, whatever it asks for.
    assert lib.enclave2.receive() == []
    env = lib.enclave2.envelope("party.poll", {"wait": 0, "recipient": "party:enclave-1"})
    assert _post(lib, "/api/federation/party-inbox", env).json() == {"messages": []}
    # Acknowledging someone else's message deletes nothing.
    assert lib.enclave2.ack([sent["message_id"]]) == []
    got = lib.enclave.receive()
    assert [m.message_id for m in got] == [sent["message_id"]]
    assert lib.enclave.ack([sent["message_id"]]) == [sent["message_id"]]


def test_an_inbox_envelope_is_for_its_recipient_only(lib: Lib) -> None:
    """The hub addresses each delivered message; another party's client refuses it."""
    _drain(lib.enclave)
    lib.site.send("party:enclave-1", "test", b"addressed")
    data = lib.enclave.post("/api/federation/party-inbox", "party.poll", {"wait": 0})
    env = data["messages"][0]
    with pytest.raises(EnvelopeRejected, match="addressed to"):
        lib.enclave2._open(env)
    lib.enclave.ack([env["body"]["message_id"]])


def test_sealed_payload_does_not_open_for_another_recipient(lib: Lib) -> None:
    """Even a relay that re-addressed the ciphertext could not get it opened elsewhere."""
    body = _send_body(lib.site, "party:enclave-1", b"not for you")
    from ndl.core.sealed import open_sealed

    assert lib.enclave2.encryption_key is not None
    with pytest.raises(EnvelopeRejected):
        open_sealed(base64.b64decode(body["ciphertext_b64"]), lib.enclave2.encryption_key,
                    Context("datasite:nhs-trust", "party:enclave-2", "test"))


# -- what is sent -----------------------------------------------------------------------------

def test_forged_sender_signature_is_refused(lib: Lib) -> None:
    body = _send_body(lib.site, "party:enclave-1", b"x", key=SigningKey.generate())
    r = _post(lib, "/api/federation/party-send", lib.site.envelope("party.send", body))
    _refused(r, 401, "sender_sig is not the sender's signature")
    # A statement naming another purpose than the one sent is refused the same way.
    body = _send_body(lib.site, "party:enclave-1", b"x")
    body["purpose"] = "other"
    r = _post(lib, "/api/federation/party-send", lib.site.envelope("party.send", body))
    _refused(r, 401, "sender_sig")


def test_ciphertext_not_matching_its_hash_is_refused(lib: Lib) -> None:
    body = _send_body(lib.site, "party:enclave-1", b"x")
    raw = bytearray(base64.b64decode(body["ciphertext_b64"]))
    raw[-1] ^= 1
    body["ciphertext_b64"] = base64.b64encode(bytes(raw)).decode()
    r = _post(lib, "/api/federation/party-send", lib.site.envelope("party.send", body))
    _refused(r, 422, "sha256 and size must be those")


def test_oversized_inline_ciphertext_is_refused_with_the_limit(lib: Lib) -> None:
    _drain(lib.enclave)
    big = b"\x00" * (INLINE_MAX + 1)
    body = {"to": "party:enclave-1", "purpose": "test",
            "sha256": hashlib.sha256(big).hexdigest(), "size": len(big),
            "sender_sig": "A" * 86, "ciphertext_b64": base64.b64encode(big).decode()}
    r = _post(lib, "/api/federation/party-send", lib.site.envelope("party.send", body))
    err = _refused(r, 413, f"{INLINE_MAX:,} byte limit")
    assert "blob" in err["message"]
    assert lib.enclave.receive() == []


@pytest.mark.parametrize("change,status,words", [
    ({"to": "party:ghost"}, 404, "not registered"),
    ({"to": "user:alice"}, 422, "not valid"),
    ({"to": "datasite:nhs-trust"}, 422, "to itself"),
    ({"purpose": "Has Spaces"}, 422, "purpose"),
    ({"ttl": 10**12}, 422, "ttl"),
    ({"size": "12"}, 422, "whole number"),
    ({"sha256": "zz"}, 422, "sha256"),
    ({"blob_sha256": "a" * 64}, 422, "exactly one"),
    ({"ciphertext_b64": "***"}, 422, "base64"),
])
def test_malformed_sends_are_refused(lib: Lib, change: dict[str, Any], status: int,
                                     words: str) -> None:
    body = {**_send_body(lib.site, "party:enclave-1", b"x"), **change}
    r = _post(lib, "/api/federation/party-send", lib.site.envelope("party.send", body))
    _refused(r, status, words)


def test_a_blob_not_owned_by_the_sender_cannot_be_sent(lib: Lib) -> None:
    digest = hashlib.sha256(b"someone else's").hexdigest()
    ctx = Context("datasite:nhs-trust", "party:enclave-1", "test")
    body = {"to": "party:enclave-1", "purpose": "test", "sha256": digest, "size": 15,
            "blob_sha256": digest, "sender_sig": lib.site_key.sign(statement(ctx, digest, 15))}
    r = _post(lib, "/api/federation/party-send", lib.site.envelope("party.send", body))
    _refused(r, 404, "finish uploading")


# -- keys -------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["AAAA", b64e(b"\x00" * 32), 42, None, "x" * 42 + "!",
                                 b64e(b"\x07" * 32) + "=", "<script>" + "A" * 35])
def test_malformed_encryption_keys_are_refused(lib: Lib, bad: Any) -> None:
    before = httpx.get(f"{lib.url}/api/parties/datasite:nhs-trust/keys").json()
    r = _post(lib, "/api/federation/party-keys",
              lib.site.envelope("party.keys", {"encryption_key": bad}))
    _refused(r, 422, "X25519 public key")
    assert httpx.get(f"{lib.url}/api/parties/datasite:nhs-trust/keys").json() == before
    key = SigningKey.generate()
    env = seal(key, sender="party:badkey", recipient="hub", kind="party.register",
               body={"party_id": "badkey", "kind": "enclave", "org": "nhs-trust",
                     "public_key": key.public_b64, "encryption_key": bad})
    _refused(_post(lib, "/api/federation/party-register", env, lib.tokens["steward"]), 422,
             "X25519 public key")
    assert httpx.get(f"{lib.url}/api/parties/party:badkey/keys").status_code == 404


def test_registration_needs_the_organisations_steward_and_the_key(lib: Lib) -> None:
    def attempt(token: str, *, org: str = "nhs-trust", sender: str = "party:new-enc",
                signer: SigningKey | None = None) -> httpx.Response:
        key = SigningKey.generate()
        env = seal(signer or key, sender=sender, recipient="hub", kind="party.register",
                   body={"party_id": "new-enc", "kind": "enclave", "org": org,
                         "public_key": key.public_b64,
                         "encryption_key": EncryptionKey.generate().public_b64})
        return _post(lib, "/api/federation/party-register", env, token)

    _refused(attempt(lib.tokens["researcher"]), 403, "steward or admin")
    _refused(attempt(lib.tokens["dfe_steward"]), 403, "only a data steward of 'nhs-trust'")
    _refused(attempt(lib.tokens["steward"], signer=SigningKey.generate()), 401,
             "bad signature")
    _refused(attempt(lib.tokens["steward"], sender="party:other"), 422, "envelope sender")
    assert httpx.get(f"{lib.url}/api/parties/party:new-enc/keys").status_code == 404
    # Taking over an existing party's name with another key is refused.
    key = SigningKey.generate()
    env = seal(key, sender="party:enclave-1", recipient="hub", kind="party.register",
               body={"party_id": "enclave-1", "kind": "enclave", "org": "nhs-trust",
                     "public_key": key.public_b64,
                     "encryption_key": EncryptionKey.generate().public_b64})
    _refused(_post(lib, "/api/federation/party-register", env, lib.tokens["steward"]), 409,
             "already registered")


def test_a_key_the_holder_did_not_sign_is_not_sealed_to(lib: Lib) -> None:
    """A hub (or anyone between) that substitutes an encryption key is caught by the sender."""
    real = httpx.get(f"{lib.url}/api/parties/party:enclave-1/keys").json()
    forged = copy.deepcopy(real)
    forged["encryption_key"] = EncryptionKey.generate().public_b64

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=forged)

    with httpx.Client(base_url="http://hub", transport=httpx.MockTransport(handler)) as http:
        c = PartyClient("http://hub", principal="datasite:nhs-trust",
                        signing_key=lib.site_key, http=http)
        with pytest.raises(EnvelopeRejected, match="not signed by that party"):
            c.keys_of("party:enclave-1")
    # Substituting the proof too does not help: it must verify under the holder's key.
    forged["proof"] = seal(SigningKey.generate(), sender="party:enclave-1", recipient="hub",
                           kind="party.keys", body={"encryption_key": forged["encryption_key"]})
    with httpx.Client(base_url="http://hub", transport=httpx.MockTransport(handler)) as http:
        c = PartyClient("http://hub", principal="datasite:nhs-trust",
                        signing_key=lib.site_key, http=http)
        with pytest.raises(EnvelopeRejected, match="not signed by that party"):
            c.keys_of("party:enclave-1")


def test_key_lookups_with_bad_names(lib: Lib) -> None:
    assert httpx.get(f"{lib.url}/api/parties/party:ghost/keys").status_code == 404
    r = httpx.get(f"{lib.url}/api/parties/{'x' * 300}/keys")
    _refused(r, 422, "not valid")


# -- coordination -----------------------------------------------------------------------------

def _coordination(lib: Lib, k: int = 2) -> str:
    r = httpx.post(f"{lib.url}/api/coordinations", timeout=30,
                   headers={"Authorization": f"Bearer {lib.tokens['researcher']}"},
                   json={"purpose": "Link A&E and school records",
                         "parties": ["datasite:nhs-trust", "party:enclave-1",
                                     "party:enclave-2"],
                         "approvals_needed": k, "params_sha256": PARAMS})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_approving_twice_counts_once(lib: Lib) -> None:
    cid = _coordination(lib)
    first = lib.enclave.coordination("approve", cid, params_sha256=PARAMS)
    second = lib.enclave.coordination("approve", cid, params_sha256=PARAMS)
    assert first["counted"] and not second["counted"]
    assert second["coordination"]["approvals"] == 1
    assert second["coordination"]["state"] == "waiting_for_approvals"
    # The replayed envelope of an approval is refused outright.
    env = lib.enclave2.envelope("coordination.approve",
                                {"coordination_id": cid, "params_sha256": PARAMS})
    assert _post(lib, "/api/federation/coordination-approve", env).json()["counted"]
    _refused(_post(lib, "/api/federation/coordination-approve", env), 401, "replayed")


def test_a_non_party_cannot_approve_or_inspect(lib: Lib) -> None:
    r = httpx.post(f"{lib.url}/api/coordinations", timeout=30,
                   headers={"Authorization": f"Bearer {lib.tokens['researcher']}"},
                   json={"purpose": "Enclave one only", "parties": ["party:enclave-1"],
                         "approvals_needed": 1, "params_sha256": PARAMS})
    cid = r.json()["id"]
    for action, fields in (("approve", {"params_sha256": PARAMS}), ("inspect", {}),
                           ("withdraw", {}), ("contribute", {"sha256": PARAMS})):
        env = lib.enclave2.envelope(f"coordination.{action}", {"coordination_id": cid,
                                                               **fields})
        _refused(_post(lib, f"/api/federation/coordination-{action}", env), 403,
                 "not a party")
    state = lib.enclave.coordination("inspect", cid)
    assert state["approvals"] == 0 and state["state"] == "waiting_for_approvals"


def test_inspection_is_refused_to_an_unrelated_user(lib: Lib) -> None:
    cid = _coordination(lib)
    url = f"{lib.url}/api/coordinations/{cid}"
    mine = httpx.get(url, headers={"Authorization": f"Bearer {lib.tokens['researcher']}"})
    assert mine.status_code == 200 and len(mine.json()["waiting_on"]) == 3
    _refused(httpx.get(url, headers={"Authorization": f"Bearer {lib.tokens['stranger']}"}),
             403, "only the requester and the parties")
    _refused(httpx.get(url), 401, "API token")
    _refused(httpx.post(f"{url}/cancel", json={"reason": "mine now"},
                        headers={"Authorization": f"Bearer {lib.tokens['stranger']}"}),
             403, "only the requester")
    assert lib.enclave2.coordination("inspect", cid)["state"] == "waiting_for_approvals"


def test_a_withdrawal_stops_the_work(lib: Lib) -> None:
    cid = _coordination(lib)
    lib.site.coordination("approve", cid, params_sha256=PARAMS)
    out = lib.enclave2.coordination("withdraw", cid, reason="our board said no")
    assert out["state"] == "withdrawn" and "party:enclave-2 withdrew" in out["reason"]
    env = lib.enclave.envelope("coordination.approve",
                               {"coordination_id": cid, "params_sha256": PARAMS})
    _refused(_post(lib, "/api/federation/coordination-approve", env), 409, "withdrawn")


def test_approving_other_work_than_asked_is_refused(lib: Lib) -> None:
    cid = _coordination(lib)
    env = lib.enclave.envelope("coordination.approve", {
        "coordination_id": cid, "params_sha256": hashlib.sha256(b"other code").hexdigest()})
    _refused(_post(lib, "/api/federation/coordination-approve", env), 409,
             "check what you were asked to approve")
    env = lib.enclave.envelope("coordination.approve", {"coordination_id": ["x"],
                                                        "params_sha256": PARAMS})
    _refused(_post(lib, "/api/federation/coordination-approve", env), 422, "coordination_id")


def test_hub_database_keeps_no_party_plaintext(lib: Lib, tmp_path: Path) -> None:
    """A marker sent through the relay is nowhere in the hub's database or its WAL."""
    marker = b"SECURITY-MARKER-" + hashlib.sha256(tmp_path.name.encode()).hexdigest().encode()
    _drain(lib.enclave)
    lib.site.send("party:enclave-1", "test", marker * 3)
    for p in lib.hub.data_dir.rglob("*"):
        if p.is_file():
            assert marker not in p.read_bytes(), p
    got = lib.enclave.receive()
    assert got[0].plaintext == marker * 3
    lib.enclave.ack([got[0].message_id])
    assert json.dumps(httpx.get(f"{lib.url}/api/parties").json()).count("enclave-1") >= 1
