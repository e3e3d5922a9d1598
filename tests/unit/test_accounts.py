"""Accounts and tokens: tokens are stored hashed, expire, can be revoked by their owner and
carry a scope; the login limiter slows guessing per (account, address)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from ndl.access import accounts
from ndl.access.models import ApiToken
from ndl.core.db import Database
from ndl.core.errors import (
    AuthenticationRequired,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    RateLimited,
)
from ndl.hub.login_limits import LoginLimiter, client_address, parse_proxies


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


# --- token scopes, listing and revoking one's own tokens -----------------------------------

def _alice(db: Database) -> accounts.Principal:
    with db.write() as s:
        user = accounts.create_user(s, "alice", roles=["researcher"], password="correct horse")
        return accounts.principal_of(user)


def test_a_login_token_lasts_a_week_and_is_listed_without_its_secret(db: Database) -> None:
    _alice(db)
    with db.write() as s:
        _, token = accounts.login(s, "alice", "correct horse")
    with db.read() as s:
        who = accounts.authenticate_token(s, token)
        (info,) = accounts.list_tokens(s, who)
        stored = s.scalar(select(ApiToken.token_hash))
    assert info.current and info.scope == "full" and who.scope == "full"
    assert info.expires_at is not None
    assert timedelta(days=6) < info.expires_at - info.created_at <= timedelta(days=7)
    shown = str(info.to_json())
    assert token not in shown and str(stored) not in shown
    assert info.to_json()["prefix"] == token[:12] + "…"


@pytest.mark.parametrize("scope,write,project,allowed", [
    ("full", True, None, True),
    ("read-only", False, None, True),
    ("read-only", False, "p-1", True),
    ("read-only", True, None, False),
    ("read-only", True, "p-1", False),
    ("project:p-1", False, None, True),       # public reads: the catalogue, the register
    ("project:p-1", False, "p-1", True),
    ("project:p-1", True, "p-1", True),
    ("project:p-1", False, "p-2", False),     # another project, even to read
    ("project:p-1", True, "p-2", False),
    ("project:p-1", True, None, False),       # a change that names no project
])
def test_check_scope(scope: str, write: bool, project: str | None, allowed: bool) -> None:
    who = accounts.Principal(1, "alice", frozenset({"researcher"}), None, scope=scope)
    if allowed:
        accounts.check_scope(who, write=write, project=project)
    else:
        with pytest.raises(PermissionDenied, match="this token"):
            accounts.check_scope(who, write=write, project=project)


@pytest.mark.parametrize("scope", ["", "admin", "read_only", "project:", "project:UPPER x"])
def test_bad_scopes_are_refused(scope: str) -> None:
    with pytest.raises(InvalidInput, match="token scope"):
        accounts.parse_scope(scope)


def test_owners_list_mint_and_revoke_only_their_own_tokens(db: Database) -> None:
    alice = _alice(db)
    with db.write() as s:
        bob_user = accounts.create_user(s, "bob", roles=["researcher"])
        bob_token = accounts.issue_token(s, bob_user)
    with db.read() as s:
        bob = accounts.authenticate_token(s, bob_token)
    with db.write() as s:
        info, token = accounts.create_own_token(s, alice, scope="read-only", name="agent",
                                                days=3)
    with db.read() as s:
        assert accounts.authenticate_token(s, token).scope == "read-only"
        assert [t.id for t in accounts.list_tokens(s, alice)] == [info.id]
        assert info.id not in [t.id for t in accounts.list_tokens(s, bob)]
    with db.write() as s, pytest.raises(NotFound, match="no active token"):
        accounts.revoke_own_token(s, bob, info.id)   # Bob cannot revoke Alice's token
    with db.read() as s:
        accounts.authenticate_token(s, token)        # ... so it still works
    with db.write() as s:
        accounts.revoke_own_token(s, alice, info.id)
    with db.read() as s, pytest.raises(AuthenticationRequired):
        accounts.authenticate_token(s, token)
    with db.write() as s, pytest.raises(NotFound):
        accounts.revoke_own_token(s, alice, info.id)  # already revoked


def test_a_scoped_token_cannot_mint_a_broader_one(db: Database) -> None:
    alice = _alice(db)
    with db.write() as s:
        _, token = accounts.create_own_token(s, alice, scope="read-only", name="a", days=1)
    with db.read() as s:
        limited = accounts.authenticate_token(s, token)
    with db.write() as s, pytest.raises(PermissionDenied, match="only a full token"):
        accounts.create_own_token(s, limited, scope="full", name="b", days=1)


@pytest.mark.parametrize("scope,days,error", [
    ("project:p-nowhere", 1, NotFound), ("read-only", 0, InvalidInput),
    ("read-only", 91, InvalidInput), ("everything", 1, InvalidInput)])
def test_bad_token_requests_are_refused(db: Database, scope: str, days: int,
                                        error: type[Exception]) -> None:
    alice = _alice(db)
    with db.write() as s, pytest.raises(error):
        accounts.create_own_token(s, alice, scope=scope, name="a", days=days)
    with db.read() as s:
        assert accounts.list_tokens(s, alice) == []


def test_public_names_never_show_a_username() -> None:
    assert accounts.public_name({"researcher"}, "nhs-trust") == "a researcher"
    assert accounts.public_name({"steward"}, "nhs-trust") == "steward@nhs-trust"
    assert accounts.public_name({"admin", "steward"}, "nhs-trust") == "admin"
    assert accounts.public_name({"output_checker"}, None) == "output_checker"


# --- the login limiter ---------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_back_off_exponentially_per_account_and_address() -> None:
    clock = Clock()
    lim = LoginLimiter(3, 300, clock=clock)
    for _ in range(3):
        lim.check("alice", "198.51.100.1")
        lim.failed("alice", "198.51.100.1")
    pauses = []
    for _ in range(12):
        with pytest.raises(RateLimited) as err:
            lim.check("alice", "198.51.100.1")
        pauses.append(err.value.detail["retry_after"])
        clock.now += err.value.detail["retry_after"]
        lim.check("alice", "198.51.100.1")
        lim.failed("alice", "198.51.100.1")
    assert pauses[:4] == [6, 11, 21, 41]             # 5, 10, 20, 40 s (rounded up)
    assert max(pauses) == 301                        # capped at the window
    lim.check("alice", "203.0.113.9")                # Alice, elsewhere: never affected
    lim.check("bob", "198.51.100.1")                 # another account from there: fine


def test_one_address_cannot_spray_many_accounts() -> None:
    lim = LoginLimiter(3, 300, per_source=5, clock=Clock())
    for i in range(5):
        lim.failed(f"user{i}", "198.51.100.1")
    with pytest.raises(RateLimited, match="from your address"):
        lim.check("user99", "198.51.100.1")
    lim.check("user99", "203.0.113.9")


def test_a_success_clears_the_pair() -> None:
    lim = LoginLimiter(2, 300, clock=Clock())
    lim.failed("alice", "a")
    lim.succeeded("alice", "a")
    lim.failed("alice", "a")
    lim.check("alice", "a")


@pytest.mark.parametrize("peer,xff,trusted,want", [
    ("127.0.0.1", "203.0.113.9", [], "127.0.0.1"),                   # nobody trusted
    ("198.51.100.1", "203.0.113.9", ["127.0.0.1"], "198.51.100.1"),  # not from the proxy
    ("127.0.0.1", "203.0.113.9", ["127.0.0.1"], "203.0.113.9"),
    # The client wrote the left entry itself: the proxy's own entry (right-most) counts.
    ("127.0.0.1", "1.2.3.4, 203.0.113.9", ["127.0.0.1"], "203.0.113.9"),
    ("10.0.0.2", "203.0.113.9, 10.0.0.7", ["10.0.0.0/8"], "203.0.113.9"),
    ("127.0.0.1", None, ["127.0.0.1"], "127.0.0.1"),
])
def test_forwarded_for_is_believed_only_from_trusted_proxies(
        peer: str, xff: str | None, trusted: list[str], want: str) -> None:
    assert client_address(peer, xff, parse_proxies(trusted)) == want


def test_a_bad_trusted_proxy_is_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match="not an IP address or network"):
        parse_proxies(["proxy.example"])
