"""Identity: the MFA policy, the OIDC configuration's checks, the standing checks, and
accounts linked to identities by (issuer, subject) only. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from ndl.access import accounts, suspension
from ndl.access.identities import account_for
from ndl.access.models import User, UserIdentity
from ndl.access.oidc import (
    MfaPolicy,
    OidcSettings,
    Provider,
    VerifiedIdentity,
    check_mfa_everywhere,
    check_url,
    parse_config,
)
from ndl.access.requests import active_grant
from ndl.access.service import Operator
from ndl.core.db import Database
from ndl.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied, Suspended
from ndl.core.keys import SigningKey
from ndl.federation import standing
from ndl.federation.models import Datasite

KEY = SigningKey.generate()
ADMIN = Operator("admin")
ISSUER = "https://idp.example.ac.uk"


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    database.migrate()
    with database.write() as s:
        accounts.create_org(s, "uni", "University", "academic")
        accounts.create_user(s, "alice", roles=["researcher"], org_id="uni")
        s.add(Datasite(id="site-a", org_id="uni", name="A", public_key="k" * 43))
    yield database
    database.dispose()


def test_mfa_policy_needs_one_of_the_methods_and_levels() -> None:
    amr = MfaPolicy(amr=("mfa", "otp", "hwk"))
    assert amr.unmet({"amr": ["pwd", "otp"]}) is None
    assert "amr ['pwd']" in (amr.unmet({"amr": ["pwd"]}) or "")
    assert "missing" in (amr.unmet({}) or "")
    assert amr.unmet({"amr": "mfa"}) is not None  # a string is not the list RFC 8176 says
    acr = MfaPolicy(acr=("urn:loa:2",))
    assert acr.unmet({"acr": "urn:loa:2"}) is None
    assert acr.unmet({"acr": "urn:loa:1"}) is not None
    both = MfaPolicy(amr=("mfa",), acr=("urn:loa:2",))
    assert both.unmet({"amr": ["mfa"], "acr": "urn:loa:1"}) is not None
    assert MfaPolicy().unmet({}) is None


def _toml(**over: str) -> str:
    fields = {"issuer": f'"{ISSUER}"', "client_id": '"ndl"', "org": '"uni"',
              "client_secret_env": '"SECRET"', **over}
    return "[providers.uni]\n" + "".join(f"{k} = {v}\n" for k, v in fields.items() if v)


def test_config_reads_a_provider_and_its_secret_from_the_environment() -> None:
    cfg = parse_config(_toml(require_amr='["mfa"]'), {"SECRET": "s3"})
    p = cfg.get("uni")
    assert (p.issuer, p.client_secret, p.mfa.amr, p.roles) == (ISSUER, "s3", ("mfa",),
                                                               ("researcher",))
    assert "s3" not in repr(p)  # the secret is never in logs or tracebacks
    assert p.redirect_uri == ""  # built from the request unless configured
    behind = parse_config(_toml(redirect_uri='"https://lib.example/sign-in/oidc/uni/callback"'),
                          {"SECRET": "s3"})
    assert behind.get("uni").redirect_uri.startswith("https://lib.example/")
    with pytest.raises(InvalidInput, match="redirect_uri"):
        parse_config(_toml(redirect_uri='"http://lib.example/cb"'), {"SECRET": "s3"})


@pytest.mark.parametrize("text,env,words", [
    (_toml(), {}, "SECRET"),
    (_toml(client_secret_env="", client_secret='"inline"'), {}, "do not write the client"),
    (_toml(issuer='"http://idp.example.ac.uk"'), {"SECRET": "s"}, "must be an https://"),
    (_toml(org=""), {"SECRET": "s"}, "org is required"),
    (_toml(require_amr='"mfa"'), {"SECRET": "s"}, "must be a list"),
    ("[providers.Bad_Name]\nissuer='x'", {}, "lowercase"),
    ("not toml [", {}, "not valid TOML"),
    ("", {}, "no [providers"),
])
def test_config_mistakes_are_named(text: str, env: dict[str, str], words: str) -> None:
    with pytest.raises(InvalidInput, match=words.replace("[", r"\[")):
        parse_config(text, env)


def test_config_secret_file(tmp_path: Path) -> None:
    (tmp_path / "s").write_text("from-file\n")
    cfg = parse_config(_toml(client_secret_env="", client_secret_file=f'"{tmp_path / "s"}"'),
                       {})
    assert cfg.get("uni").client_secret == "from-file"
    with pytest.raises(NotFound, match="no identity provider 'other'"):
        cfg.get("other")


def test_only_https_or_loopback_http() -> None:
    assert check_url("http://127.0.0.1:9400", "x") and check_url("http://localhost:1", "x")
    for bad in ("http://10.0.0.1", "ftp://idp", "https://", "http://127.0.0.1.evil.example"):
        with pytest.raises(InvalidInput):
            check_url(bad, "issuer")


def _identity(sub: str, **claims: object) -> VerifiedIdentity:
    return VerifiedIdentity("uni", ISSUER, sub, {"sub": sub, **claims})


PROVIDER = Provider(name="uni", label="Uni", issuer=ISSUER, client_id="ndl",
                    client_secret="s", org="uni")


def test_identities_link_by_issuer_and_subject_never_by_email(db: Database) -> None:
    with db.write() as s:
        first = account_for(s, KEY, PROVIDER, _identity("s-1", email="alice@uni.example"),
                            signed_in=None)
        # Not the existing "alice": an e-mail address proves nothing about an account.
        assert first.username == "alice-2" and first.org_id == "uni"
    with db.write() as s:
        again = account_for(s, KEY, PROVIDER, _identity("s-1", email="changed@x.example"),
                            signed_in=None)
        assert again.username == "alice-2"
        other = account_for(s, KEY, PROVIDER, _identity("s-2", email="alice@uni.example"),
                            signed_in=None)
        assert other.username == "alice-3"
        assert len(s.scalars(select(UserIdentity)).all()) == 2


def _user(s: Session, name: str) -> User:
    user = s.scalar(select(User).where(User.username == name))
    assert user is not None
    return user


def test_a_signed_in_user_links_their_identity(db: Database) -> None:
    with db.write() as s:
        alice = accounts.principal_of(_user(s, "alice"))
        linked = account_for(s, KEY, PROVIDER, _identity("s-9"), signed_in=alice)
        assert linked.username == "alice"
    with db.write() as s, pytest.raises(Conflict, match="already linked"):
        bob = accounts.create_user(s, "bob", roles=["researcher"])
        account_for(s, KEY, PROVIDER, _identity("s-9"), signed_in=accounts.principal_of(bob))


def test_suspension_stops_tokens_sign_in_and_grants(db: Database) -> None:
    with db.write() as s:
        user = _user(s, "alice")
        token = accounts.issue_token(s, user)
        linked = account_for(s, KEY, PROVIDER, _identity("s-5"),
                             signed_in=accounts.principal_of(user))
        assert linked.id == user.id
    with db.write() as s:
        suspension.suspend_user(s, KEY, ADMIN, "alice", reason="incident 1")
    with db.read() as s:
        with pytest.raises(Suspended, match="'alice' is suspended"):
            accounts.authenticate(s, token)
        who = accounts.Principal(user.id, "alice", frozenset({"researcher"}), "uni")
        # The grant check sees it before it looks for the project.
        with pytest.raises(Suspended):
            active_grant(s, who, "no-such-project", "uni/x")
    with db.write() as s, pytest.raises(Suspended):
        account_for(s, KEY, PROVIDER, _identity("s-5"), signed_in=None)
    with db.write() as s:
        suspension.reinstate_user(s, KEY, ADMIN, "alice")
    with db.read() as s:
        assert accounts.authenticate(s, token)[0].username == "alice"


def test_datasite_standing_is_one_function(db: Database) -> None:
    with db.read() as s:
        site = s.get(Datasite, "site-a")
        assert site is not None and standing.refusal(site) is None
        assert standing.error_of_principal(s, "datasite:site-a") is None
        assert standing.error_of_principal(s, "party:enclave-1") is None
    with db.write() as s:
        made = suspension.suspend_datasite(s, KEY, ADMIN, "site-a", reason="r")
        assert made.suspended and made.reason == "r"
    with db.read() as s:
        err = standing.error_of_principal(s, "datasite:site-a")
        assert isinstance(err, Suspended) and "answer no queries" in err.message
        with pytest.raises(Suspended):
            standing.require_site(s, "site-a")
        standing.require_site(s, "unknown-site")  # the caller's own look-up refuses it


def test_only_admins_suspend_and_names_must_exist(db: Database) -> None:
    researcher = accounts.Principal(1, "alice", frozenset({"researcher"}), "uni")
    with db.write() as s:
        with pytest.raises(PermissionDenied, match="admin"):
            suspension.suspend_user(s, KEY, researcher, "alice", reason="x")
        with pytest.raises(PermissionDenied, match="admin"):
            suspension.suspend_datasite(s, KEY, researcher, "site-a", reason="x")
        with pytest.raises(NotFound, match="no user 'ghost'"):
            suspension.suspend_user(s, KEY, ADMIN, "ghost", reason="x")
        with pytest.raises(NotFound, match="no datasite 'ghost'"):
            suspension.reinstate_datasite(s, KEY, ADMIN, "ghost")
        with pytest.raises(InvalidInput, match="say why"):
            suspension.suspend_user(s, KEY, ADMIN, "alice", reason=" ")


def test_without_passwords_every_provider_must_require_mfa() -> None:
    with pytest.raises(InvalidInput, match="nobody could sign in"):
        check_mfa_everywhere(OidcSettings())
    with pytest.raises(InvalidInput, match="uni sets neither"):
        check_mfa_everywhere(OidcSettings((PROVIDER,)))
    strict = Provider(name="uni", label="Uni", issuer=ISSUER, client_id="ndl",
                      client_secret="s", org="uni", mfa=MfaPolicy(acr=("urn:loa:2",)))
    check_mfa_everywhere(OidcSettings((strict,)))


def test_passwords_off_refuses_before_looking_at_the_account(db: Database) -> None:
    with db.write() as s:
        accounts.create_user(s, "pat", roles=["researcher"], password="a long password")
    with db.write() as s, pytest.raises(PermissionDenied, match="does not take passwords"):
        accounts.login(s, "pat", "a long password", passwords=False)
    with db.write() as s:
        assert accounts.login(s, "pat", "a long password")[0].username == "pat"
