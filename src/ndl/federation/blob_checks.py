"""Checks on what callers say about a blob (who, what kind, what media type, how big), and
the words for sizes: kept apart from the blob service so it stays one screenful of rules."""

from __future__ import annotations

import re

from ndl.core.db import MAX_DB_INT
from ndl.core.errors import InvalidInput

KINDS = ("result", "bundle", "records", "sealed")
GIB = 1024**3
MIB = 1024**2
_PRINCIPAL = re.compile(r"(user|datasite|party):[A-Za-z0-9][A-Za-z0-9._@-]{0,150}|hub")
# type/subtype, and at most one parameter such as a CSV's "; charset=utf-8".
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,40}/[a-z0-9][a-z0-9!#$&^_.+-]{0,50}"
                         r"(; ?[a-z0-9-]{1,20}=[a-z0-9._-]{1,40})?")


def human(n: int) -> str:
    for unit, size in (("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def check_principal(value: object, what: str = "reader") -> str:
    if not isinstance(value, str) or not _PRINCIPAL.fullmatch(value):
        raise InvalidInput(f"{what} must be a principal such as 'user:alice', "
                           f"'datasite:nhs-trust' or 'party:enclave', got {str(value)[:80]!r}")
    return value


def whole_number(value: object, what: str, *, minimum: int = 0) -> int:
    """A JSON whole number in [minimum, 2**63-1]; bools, floats, NaN and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{what} must be a whole number of bytes, got {str(value)[:40]!r}")
    if not minimum <= value <= MAX_DB_INT:
        raise InvalidInput(f"{what} must be between {minimum} and {MAX_DB_INT}, got {value}")
    return value


def check_kind(kind: object) -> str:
    if kind not in KINDS:
        raise InvalidInput(f"blob kind must be one of {', '.join(KINDS)}, got "
                           f"{str(kind)[:40]!r}")
    return str(kind)


def check_media_type(media_type: object) -> str:
    if not isinstance(media_type, str) or not _MEDIA_TYPE.fullmatch(media_type):
        raise InvalidInput("media_type must look like 'application/vnd.apache.parquet' or "
                           f"'text/csv' (lowercase type/subtype), got {str(media_type)[:60]!r}")
    return media_type
