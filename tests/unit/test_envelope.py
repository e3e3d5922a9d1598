"""Signed envelopes: every way a message can be wrong is refused, with the reason."""

from __future__ import annotations

import copy
import time

import pytest

from ndl.core.envelope import MAX_TTL, MemoryReplayGuard, open_envelope, seal
from ndl.core.errors import EnvelopeRejected
from ndl.core.keys import SigningKey

HUB, SITE = SigningKey.generate(), SigningKey.generate()
KEYS = {"hub": HUB.public_b64, "nhs-trust": SITE.public_b64}


def _open(env: object, guard: MemoryReplayGuard | None = None, **kw: object) -> dict:
    return open_envelope(env, public_key_for=KEYS.get, recipient="hub",
                         guard=guard or MemoryReplayGuard(), **kw)  # type: ignore[arg-type]


def _env(**kw: object) -> dict:
    args: dict = {"sender": "nhs-trust", "recipient": "hub", "kind": "poll",
                  "body": {"wait": 1}, **kw}
    return seal(SITE, **args)


def test_a_good_envelope_opens() -> None:
    env = _env()
    assert _open(env)["body"] == {"wait": 1}


def test_forged_signature_is_refused() -> None:
    forged = seal(SigningKey.generate(), sender="nhs-trust", recipient="hub", kind="poll",
                  body={"wait": 1})
    with pytest.raises(EnvelopeRejected, match="bad signature"):
        _open(forged)


@pytest.mark.parametrize("field,value", [
    ("body", {"wait": 2}), ("kind", "publish"), ("exp", None), ("nonce", "other"),
    ("sender", "dfe"),
])
def test_any_altered_field_is_refused(field: str, value: object) -> None:
    env = _env()
    env[field] = env["exp"] + 1 if value is None else value
    with pytest.raises(EnvelopeRejected):
        _open(env)


def test_expired_envelope_is_refused() -> None:
    env = _env(ttl=5, now=time.time() - 100)
    with pytest.raises(EnvelopeRejected, match="expired"):
        _open(env)


def test_replayed_envelope_is_refused() -> None:
    guard, env = MemoryReplayGuard(), _env()
    _open(env, guard)
    with pytest.raises(EnvelopeRejected, match="replayed"):
        _open(copy.deepcopy(env), guard)


def test_envelope_from_the_future_is_refused() -> None:
    with pytest.raises(EnvelopeRejected, match="future"):
        _open(_env(now=time.time() + 3600))


def test_lifetime_is_capped() -> None:
    env = _env()
    assert env["exp"] - env["iat"] <= MAX_TTL
    long = _env(ttl=10 * MAX_TTL)
    assert long["exp"] - long["iat"] == MAX_TTL


def test_misaddressed_envelope_is_refused() -> None:
    with pytest.raises(EnvelopeRejected, match="addressed"):
        _open(_env(recipient="dfe"))


def test_unknown_sender_is_refused() -> None:
    env = seal(SITE, sender="stranger", recipient="hub", kind="poll", body={})
    with pytest.raises(EnvelopeRejected, match="unknown sender"):
        _open(env)


@pytest.mark.parametrize("bad", [None, [], "x", {"v": 1}, {}])
def test_garbage_is_refused(bad: object) -> None:
    with pytest.raises(EnvelopeRejected, match="not a signed envelope"):
        _open(bad)


def test_kind_filter() -> None:
    with pytest.raises(EnvelopeRejected, match="not accepted"):
        _open(_env(), kinds=("reply",))
