"""Key rotation and revocation rules without processes: what a datasite believes about the
hub's keys, grants across a rotation, the register across a rotation, and the key table on
SQLite and PostgreSQL (including the 0013 backfill of keys registered before it)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from sqlalchemy import column, insert, select, table

from ndl.access import service as access_service
from ndl.access.grants import check_grant, sign_grant
from ndl.core.db import Database, utcnow
from ndl.core.errors import Conflict, InvalidInput, PermissionDenied
from ndl.core.keys import FileSigningKey, KeyValidity, SigningKey, keys_valid_at
from ndl.federation import key_service
from ndl.federation.key_models import SigningKeyRecord
from ndl.federation.models import Datasite
from ndl.ledger import register


def _grant(key: SigningKey, issued: int, expires: int) -> dict[str, Any]:
    return sign_grant(key, grant_id="g1", project="p1", dataset="s/d", tier="safeguarded",
                      members=["alice"], issued_at=issued, expires_at=expires)


def test_a_grant_signed_by_a_retired_hub_key_holds_until_it_expires() -> None:
    old, new = SigningKey.generate(), SigningKey.generate()
    now = int(time.time())
    ring = [KeyValidity(old.public_b64, 0, retire_at=now - 10), KeyValidity(new.public_b64,
                                                                            now - 10)]
    grant = _grant(old, now - 100, now + 1000)
    check_grant(grant, ring, dataset="s/d", project="p1", member="alice")
    with pytest.raises(PermissionDenied, match="expired"):
        check_grant(grant, ring, dataset="s/d", project="p1", member="alice", now=now + 2000)
    # Signed by the old key after it retired: refused (a stolen retired key is no use).
    late = _grant(old, now, now + 1000)
    with pytest.raises(PermissionDenied, match="hub key valid when"):
        check_grant(late, ring, dataset="s/d", project="p1", member="alice")
    revoked = [KeyValidity(old.public_b64, 0, now - 10, revoked_at=now - 5), ring[1]]
    with pytest.raises(PermissionDenied, match="hub key valid when"):
        check_grant(grant, revoked, dataset="s/d", project="p1", member="alice")
    bogus = {**grant, "issued_at": "yesterday"}
    with pytest.raises(PermissionDenied):
        check_grant(bogus, ring, dataset="s/d", project="p1", member="alice")


def _endorse(old: SigningKey, new: SigningKey, nb: int, retire: int) -> dict[str, Any]:
    st = key_service.hub_statement(old.public_b64, new.public_b64, nb, retire)
    return {**st, "sig": old.sign(rfc8785.dumps(st)), "next_sig": new.sign(rfc8785.dumps(st))}


def _revocation(by: SigningKey, target: SigningKey, at: int) -> dict[str, Any]:
    st = {"v": 1, "kind": "key.revoked", "owner": "hub", "public_key": target.public_b64,
          "revoked_at": at, "reason": "x"}
    return {**st, "by": by.public_b64, "sig": by.sign(rfc8785.dumps(st))}


def test_a_datasite_follows_only_what_a_believed_key_signed() -> None:
    k1, k2, k3, evil = (SigningKey.generate() for _ in range(4))
    pinned = [KeyValidity(k1.public_b64, 0)]
    doc = {"endorsements": [_endorse(k2, k3, 200, 300), _endorse(k1, k2, 100, 200),
                            _endorse(evil, SigningKey.generate(), 1, 2)],
           "revocations": [_revocation(evil, k2, 150)]}
    ring = follow = key_service.follow_hub_keys(pinned, doc)
    assert [k.public_key for k in follow] == [k1.public_b64, k2.public_b64, k3.public_b64]
    assert ring[0].retire_at == 200 and ring[1].retire_at == 300 and ring[2].retire_at is None
    assert all(k.revoked_at is None for k in ring)  # evil's revocation is ignored
    # A statement the new key did not countersign, or a forged one, is ignored.
    half = {**_endorse(k1, evil, 100, 200), "next_sig": k1.sign(b"nope")}
    forged = {**_endorse(k1, evil, 100, 200), "previous_retire_at": 10**9}
    assert key_service.follow_hub_keys(pinned, {"endorsements": [half, forged]}) == pinned
    # A revocation by a believed key is taken; nothing it signed is valid afterwards.
    ring = key_service.follow_hub_keys(ring, {"revocations": [_revocation(k3, k1, 250)]})
    assert ring[0].revoked_at == 250 and keys_valid_at(ring[:1], 50) == []
    for junk in (None, [], "x", {"endorsements": "x", "revocations": [1, None]}):
        assert key_service.follow_hub_keys(pinned, junk) == pinned


def test_overlaps_and_fingerprints_are_checked() -> None:
    assert key_service.parse_overlap("1d") == 86400
    assert key_service.parse_overlap("30m") == 1800 and key_service.parse_overlap(0) == 0
    for bad in ("-1", "31d", "soon", "", "nan", "1e400", "1w"):
        with pytest.raises(InvalidInput):
            key_service.parse_overlap(bad)
    with pytest.raises(InvalidInput):
        KeyValidity.from_json({"public_key": "nope", "not_before": 0})


@pytest.fixture
def db(db_url: str, tmp_path: Path) -> Iterator[Database]:
    database = Database(db_url)
    database.migrate()
    with database.write() as s:  # signed by the hub key the test then rotates
        access_service.create_org(s, FileSigningKey(tmp_path / "hub-key.pem"),
                                  access_service.Operator("t"),
                                  access_service.NewOrg(id="nhs-trust", name="N", kind="nhs"))
    yield database
    database.dispose()


def test_rotation_revocation_and_the_register_across_hub_keys(db: Database,
                                                              tmp_path: Path) -> None:
    path = tmp_path / "hub-key.pem"
    hub = FileSigningKey(path)
    first = hub.public_b64
    site_old, site_new = SigningKey.generate(), SigningKey.generate()
    with db.write() as s:
        key_service.ensure_hub_key(s, hub)
        s.add(Datasite(id="site", org_id="nhs-trust", name="s", public_key=site_old.public_b64))
        register.append(s, hub, kind="test", actor="t", subject="before")
    with db.write() as s:
        # Keys registered without a row are believed as the active key.
        assert key_service.accepted_keys(s, "datasite:site", site_old.public_b64) == [
            site_old.public_b64]
        from ndl.core.envelope import seal

        env = seal(site_old, sender="site", recipient="hub", kind="key.rotate",
                   body=key_service.rotation_body(site_old, site_new, "datasite:site", 60))
        key_service.rotate(s, hub, "datasite:site", site_old.public_b64, env)
    with db.write() as s:
        assert sorted(key_service.accepted_keys(s, "datasite:site", site_new.public_b64)) == \
            sorted([site_old.public_b64, site_new.public_b64])
        out, _ = key_service.rotate_hub(s, path, hub, 0, "test")
    (path.with_name(path.name + ".next")).replace(path)
    assert hub.public_b64 != first  # the file key follows the rotation
    with db.write() as s:
        register.append(s, hub, kind="test", actor="t", subject="after")
        with pytest.raises(Conflict, match="rotate first"):
            key_service.revoke(s, hub, "t", hub.fingerprint, "no")
        key_service.revoke(s, hub, "t", out.old_fingerprint, "lost")
        key_service.revoke(s, hub, "t", site_old.fingerprint, "lost")
    with db.read() as s:
        assert key_service.accepted_keys(s, "datasite:site", site_new.public_b64) == [
            site_new.public_b64]
        ring = key_service.hub_validities(s, hub)
        # Entries signed by the old key before it was revoked still verify: later entries,
        # signed by the new key, chain over them.
        report = register.verify(s, key_service.register_keys(ring))
        assert report.ok, report.problems
        assert not register.verify(s, hub.public_b64).ok  # one key alone cannot
        kinds = [e.kind for e in register.list_entries(s, limit=100)]
        assert kinds.count("key.rotated") == 2 and kinds.count("key.revoked") == 2
        doc = key_service.hub_key_document(s, hub)
    ring = key_service.follow_hub_keys([KeyValidity(first, 0)], doc)
    assert [k.public_key for k in ring] == [first, hub.public_b64]
    assert ring[0].revoked_at is not None and ring[1].valid_at(time.time())


def test_the_backfill_gives_every_registered_key_a_row(db_url: str) -> None:
    from ndl.core.db import UTCDateTime
    from ndl.core.migrate import upgrade

    database = Database(db_url)
    upgrade(database, "0012_identity")
    key = SigningKey.generate()
    orgs = table("orgs", column("id"), column("name"), column("kind"),
                 column("created_at", UTCDateTime()))
    sites = table("datasites", column("id"), column("org_id"), column("name"),
                  column("public_key"), column("registered_at", UTCDateTime()))
    with database.write() as s:
        s.execute(insert(orgs).values(id="o", name="O", kind="nhs", created_at=utcnow()))
        s.execute(insert(sites).values(id="old-site", org_id="o", name="x",
                                       public_key=key.public_b64,
                                       registered_at=utcnow() - timedelta(days=3)))
    upgrade(database, "0013_keys")
    with database.read() as s:
        rows = s.scalars(select(SigningKeyRecord)).all()
        assert [(r.owner, r.fingerprint) for r in rows] == [("datasite:old-site",
                                                              key.fingerprint)]
        assert key_service.state_of(rows[0]) == "active"
        assert rows[0].not_before < utcnow() - timedelta(days=2)
    database.dispose()
