"""Fabricated identifiers for mock data: plausible in form, never taken from the real data.

Nothing here looks at a real value except to refuse it: every fabricated value (for names,
the combination of a row's name columns) is checked against the set of real values and
redrawn on a match, and identifiers that must be unique are unique within the mock too.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

import numpy as np
from faker import Faker
from faker.providers.address.en_GB import Provider as _EnGbAddress

from ndl.core.errors import InvalidInput
from ndl.linkage.nhs_number import generate as generate_nhs_number

Kind = Literal[
    "nhs_number", "upn", "local_id", "name", "postcode", "email", "phone", "address", "other",
]
_UPN_LETTERS = "ABCDEFGHJKLMNPQRTUVWXYZ"  # DfE check letters: 0->A ... 22->Z, no I, O, S
# 999 is not an allocated local authority number, so a mock UPN cannot be a real pupil's.
_UPN_MOCK_LA = "999"
_MAX_TRIES = 1000
_UNIQUE_KINDS = frozenset({"nhs_number", "upn", "local_id", "email", "other"})
# Postcode areas (the letters that start a real postcode) and the letters an inward code uses.
_POSTCODE_AREAS: tuple[str, ...] = tuple(_EnGbAddress.POSTAL_ZONES)
_INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"
_SYLLABLES = ("ba", "ke", "lo", "mi", "nu", "ra", "se", "ti", "vo", "ya", "zen", "dor")


def upn_check_letter(digits12: str) -> str:
    """DfE UPN check letter: sum of digit x position (positions 2-13) modulo 23."""
    return _UPN_LETTERS[sum(int(d) * p for p, d in enumerate(digits12, start=2)) % 23]


def kind_of(name: str, join_key: str | None, direct: bool, coded: bool) -> Kind | None:
    """The fabricator for a column, or None if the column is learned with DP instead.

    Join-key identifiers and direct identifiers are fabricated; so are columns named like
    record identifiers (``*_id``, ``*_ref``) or e-mail addresses, unless the steward gave them
    a code list, which marks them as categories.
    """
    if join_key in ("nhs_number", "upn", "local_id", "name", "postcode"):
        return join_key  # type: ignore[return-value]
    if coded and not direct:
        return None
    lowered = name.lower()
    if "email" in lowered:
        return "email"
    if re.search(r"(^|_)(id|uuid|guid|identifier|ref|reference)$", lowered):
        return "local_id"
    if not direct:
        return None
    if re.search(r"phone|mobile|tel", lowered):
        return "phone"
    if "address" in lowered:
        return "address"
    if "name" in lowered:
        return "name"
    return "other"


@dataclass(frozen=True)
class FakeSpec:
    """One fabricated group: one column, or every name column of the table together."""

    kind: Kind
    columns: tuple[str, ...]
    types: tuple[str, ...]  # DatasetMeta column types
    null_rates: tuple[float, ...]


class Fabricator:
    """Draws a group's values for n rows, refusing real values and repeats where required."""

    def __init__(self, spec: FakeSpec, real: set[tuple[Any, ...]], seed: int) -> None:
        self.spec = spec
        self._real = real
        self._used: set[tuple[Any, ...]] = set()
        self._py = random.Random(seed)
        self._faker = Faker("en_GB")
        self._faker.seed_instance(seed)
        self._serial = 0

    def draw(self, rng: np.random.Generator, n: int) -> dict[str, list[Any]]:
        spec = self.spec
        nulls = [rng.random(n) < p for p in spec.null_rates]
        out: dict[str, list[Any]] = {c: [None] * n for c in spec.columns}
        for i in range(n):
            mask = tuple(bool(m[i]) for m in nulls)
            if all(mask):
                continue
            value = self._one(mask)
            for c, v in zip(spec.columns, value, strict=True):
                out[c][i] = v
        return out

    def _one(self, mask: tuple[bool, ...]) -> tuple[Any, ...]:
        unique = self.spec.kind in _UNIQUE_KINDS
        for tries in range(_MAX_TRIES):
            value = tuple(
                None if null else self._value(col, typ, coined=tries >= 50)
                for col, typ, null in zip(self.spec.columns, self.spec.types, mask, strict=True)
            )
            if value in self._real or (unique and value in self._used):
                continue
            self._used.add(value)
            return value
        raise InvalidInput(
            f"could not fabricate a new value for column(s) {', '.join(self.spec.columns)} "
            f"after {_MAX_TRIES} tries: the mock would reuse real or repeated values",
            detail={"columns": list(self.spec.columns)},
        )

    def _value(self, column: str, typ: str, *, coined: bool) -> Any:
        kind = self.spec.kind
        if kind == "nhs_number" and typ == "integer":
            return int(generate_nhs_number(self._py))
        if typ == "integer":
            return self._py.randrange(10**8, 10**9)
        if typ == "float":
            return round(self._py.uniform(0, 10**6), 2)
        if typ == "boolean":
            return self._py.random() < 0.5
        if typ == "date":
            return date(1920, 1, 1) + timedelta(days=self._py.randrange(36_890))
        makers: dict[str, Callable[[], str]] = {
            "nhs_number": lambda: generate_nhs_number(self._py),
            "upn": self._upn,
            "local_id": self._local_id,
            "postcode": self._postcode,
            "email": self._email,
            "phone": lambda: f"07700 900{self._py.randrange(1000):03d}",  # Ofcom drama range
            "address": lambda: self._faker.street_address().replace("\n", ", "),
            "other": self._local_id,
        }
        if kind == "name":
            return self._name(column, coined=coined)
        return makers[kind]()

    def _upn(self) -> str:
        digits = _UPN_MOCK_LA + "".join(str(self._py.randrange(10)) for _ in range(9))
        return upn_check_letter(digits) + digits

    def _postcode(self) -> str:
        # Faker's own postcode() mixes formats no real postcode has ("NR0R 6EQ"); this keeps
        # a real area, a district number and a well-formed inward code.
        py = self._py
        letters = "".join(py.choice(_INWARD_LETTERS) for _ in range(2))
        return f"{py.choice(_POSTCODE_AREAS)}{py.randrange(1, 30)} {py.randrange(10)}{letters}"

    def _local_id(self) -> str:
        self._serial += 1
        return f"MOCK-{self._serial:06d}"

    def _email(self) -> str:
        first, last = self._faker.first_name(), self._faker.last_name()
        return f"{first}.{last}{self._py.randrange(100)}@example.com".lower()  # RFC 2606

    def _name(self, column: str, *, coined: bool) -> str:
        lowered = column.lower()
        if coined:  # Faker's lists are exhausted by the real data: coin a name instead
            return "".join(self._py.choice(_SYLLABLES) for _ in range(3)).capitalize()
        if re.search(r"given|first|fore|middle", lowered):
            return self._faker.first_name()
        if re.search(r"family|sur|last", lowered):
            return self._faker.last_name()
        return self._faker.name()

