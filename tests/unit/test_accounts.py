"""Accounts and tokens: tokens are stored hashed, expire, and can be revoked."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from ndl.access import accounts
from ndl.access.models import ApiToken
from ndl.core.db import Database
from ndl.core.errors import AuthenticationRequired, Conflict, InvalidInput, NotFound


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    database.migrate()
    with database.write() as s:
        accounts.create_org(s, "nhs-trust", "Northshire NHS Foundation Trust", "nhs")
    yield database
    database.dispose()


def test_login_issues_a_token_stored_only_as_a_hash(db: Database) -> None:
    with db.write() as s:
        accounts.create_user(s, "alice", roles=["researcher"], password="correct horse")
    with db.write() as s:
        _, token = accounts.login(s, "alice", "correct horse")
    assert token.startswith("ndl_") and len(token) > 40
    with db.read() as s:
        stored = list(s.scalars(select(ApiToken.token_hash)))
        dump = " ".join(str(r) for r in s.execute(text("SELECT * FROM api_tokens")))
        who = accounts.authenticate_token(s, token)
    assert token not in dump and token not in stored
    assert who.username == "alice" and who.roles == {"researcher"}


@pytest.mark.parametrize("username,password", [("alice", "wrong pass!"), ("nobody", "x" * 12)])
def test_wrong_credentials_give_one_message(db: Database, username: str, password: str) -> None:
    with db.write() as s:
        accounts.create_user(s, "alice", roles=["researcher"], password="correct horse")
    with db.write() as s, pytest.raises(AuthenticationRequired, match="wrong username or password"):
        accounts.login(s, username, password)


def test_expired_and_revoked_tokens_are_refused(db: Database) -> None:
    with db.write() as s:
        user = accounts.create_user(s, "bob", roles=["steward"], org_id="nhs-trust")
        expired = accounts.issue_token(s, user, ttl=timedelta(seconds=-1))
        revoked = accounts.issue_token(s, user)
    with db.write() as s:
        accounts.revoke_token(s, revoked)
    with db.read() as s:
        with pytest.raises(AuthenticationRequired, match="expired"):
            accounts.authenticate_token(s, expired)
        with pytest.raises(AuthenticationRequired, match="not valid"):
            accounts.authenticate_token(s, revoked)
        with pytest.raises(AuthenticationRequired):
            accounts.authenticate_token(s, "ndl_made_up")


@pytest.mark.parametrize("kwargs,error", [
    ({"username": "Bad Name", "roles": ["researcher"]}, InvalidInput),
    ({"username": "carol", "roles": ["wizard"]}, InvalidInput),
    ({"username": "carol", "roles": []}, InvalidInput),
    ({"username": "carol", "roles": ["steward"], "org_id": "nowhere"}, NotFound),
    ({"username": "carol", "roles": ["researcher"], "password": "short"}, InvalidInput),
])
def test_bad_users_are_refused(db: Database, kwargs: dict, error: type) -> None:
    with db.write() as s, pytest.raises(error):
        accounts.create_user(s, **kwargs)


def test_duplicates_are_conflicts(db: Database) -> None:
    with db.write() as s:
        accounts.create_user(s, "dave", roles=["admin"])
    with db.write() as s, pytest.raises(Conflict):
        accounts.create_user(s, "dave", roles=["admin"])
    with db.write() as s, pytest.raises(Conflict):
        accounts.create_org(s, "nhs-trust", "again")
