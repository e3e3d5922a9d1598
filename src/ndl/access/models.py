"""Tables for people and organisations."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ndl.core.db import Base, UTCDateTime, utcnow


class Org(Base):
    __tablename__ = "orgs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40), default="other")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    org_id: Mapped[str | None] = mapped_column(ForeignKey("orgs.id"), nullable=True)
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled: Mapped[bool] = mapped_column(default=False)
    # Suspended by an admin (ndl.access.suspension): every token and session stops at once.
    # The reason is for the hub's own records only; the public register never shows it.
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    suspended_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    roles: Mapped[list[UserRole]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )
    # Accreditation, training and the like, as evidence an admin recorded (ndl.access.evidence).
    evidence: Mapped[list[Evidence]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="Evidence.id")

    @property
    def role_names(self) -> set[str]:
        return {r.role for r in self.roles}

    @property
    def accredited(self) -> bool:
        """An accredited researcher today: valid evidence of accreditation (the old boolean
        column became evidence of kind ``legacy-flag``; migration 0016)."""
        today = date.today()
        return any(e.kind in ACCREDITATION_KINDS and e.valid_on(today) for e in self.evidence)

    @accredited.setter
    def accredited(self, value: bool) -> None:
        # Kept for seeding (the demo, ndl.testing) and the old admin switch: True records a
        # ``legacy-flag``; False revokes every accreditation the user holds.
        if value and not self.accredited:
            self.evidence.append(Evidence(
                kind="legacy-flag", issuer="ndl (accredited flag)", reference="legacy-flag",
                issued_on=date.today(), expires_on=None, recorded_by="legacy-flag"))
        elif not value:
            for e in self.evidence:
                if e.kind in ACCREDITATION_KINDS and e.revoked_at is None:
                    e.revoked_at, e.revoked_reason = utcnow(), "accreditation withdrawn"


# Evidence kinds that make someone an accredited researcher (``legacy-flag``: the boolean
# accredited flag before evidence existed; it stands for accreditation with no known expiry).
ACCREDITATION_KINDS = frozenset({"accredited-researcher", "legacy-flag"})


class Evidence(Base):
    """One piece of evidence about a person (an accreditation, a training certificate), with
    who issued it, its reference, and when it lapses. Rows are revoked, never deleted."""

    __tablename__ = "evidence"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    issuer: Mapped[str] = mapped_column(String(200))
    reference: Mapped[str] = mapped_column(String(200))
    issued_on: Mapped[date] = mapped_column(Date)
    # None only for ``legacy-flag`` rows: the flag never said when it lapses.
    expires_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    recorded_by: Mapped[str] = mapped_column(String(100))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_reason: Mapped[str] = mapped_column(Text, default="")
    # When the hub's housekeeping last reminded the holder that this is about to lapse.
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    def valid_on(self, day: date) -> bool:
        return (self.revoked_at is None and self.issued_on <= day
                and (self.expires_on is None or self.expires_on >= day))


class Baseline(Base):
    """The federation's baseline: a kind of evidence every member (``person``) or of
    reference every project (``project``) must hold to use a tier's data, on top of what each
    dataset's own policy requires (SATRE 5.2.01, 5.3.02)."""

    __tablename__ = "requirement_baseline"
    __table_args__ = (UniqueConstraint("tier", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tier: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(40))
    applies_to: Mapped[str] = mapped_column(String(10))
    set_by: Mapped[str] = mapped_column(String(100))
    set_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UserRole(Base):
    __tablename__ = "user_roles"
    __table_args__ = (UniqueConstraint("user_id", "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(32))


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # SHA-256 of the token: tokens are 256-bit random, so a fast hash is the right tool here;
    # a slow password hash would only add latency to every request.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100), default="cli")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # What the token may do: "full", "read-only" or "project:<id>" (see accounts.check_scope).
    scope: Mapped[str] = mapped_column(String(80), default="full", server_default="full")
    # The token's first characters, so its owner can tell tokens apart in a list; 8 of 43
    # random characters leave far more than enough secret.
    prefix: Mapped[str] = mapped_column(String(16), default="", server_default="")
    # Updated at most every few minutes (accounts.TOUCH_EVERY), not on every request.
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class UserIdentity(Base):
    """A person's account at an organisation's identity provider (OpenID Connect), linked to
    a user of this hub. Matched by (issuer, subject) only: an e-mail address can be reused or
    changed at the provider, so it never links an identity to an account."""

    __tablename__ = "user_identities"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(64))
    issuer: Mapped[str] = mapped_column(String(500))
    subject: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
