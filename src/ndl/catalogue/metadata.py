"""The dataset metadata a datasite publishes, validated the same way at both ends.

Three layers, each optional beyond the core:

* DCAT-3 core: title, description, publisher, contact, licence, keywords, themes, spatial
  and temporal coverage, update frequency, issued / modified;
* HDR UK-style access fields (:class:`AccessInfo`): access route, delivery lead time, cost,
  linkable datasets;
* ndl fields: tier, policy summary, per-column schema (units, code lists, sensitivity, join
  keys), population size, known issues, last verified.

Validation errors name the field, so a steward can fix the one value that is wrong.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date
from typing import Literal

import rfc8785
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Tier = Literal["open", "safeguarded", "controlled"]
TIERS: tuple[str, ...] = ("open", "safeguarded", "controlled")
ColumnType = Literal["string", "integer", "float", "boolean", "date"]
Sensitivity = Literal["direct_identifier", "quasi_identifier", "sensitive", "none"]
JoinKey = Literal["nhs_number", "upn", "postcode", "date_of_birth", "name", "local_id"]
JOIN_KEYS: tuple[str, ...] = ("nhs_number", "upn", "postcode", "date_of_birth", "name",
                              "local_id")
Frequency = Literal["daily", "weekly", "monthly", "quarterly", "annual", "irregular", "never"]
THEMES: tuple[str, ...] = (
    "health", "education", "social-care", "population", "economy", "crime-justice",
    "housing", "environment", "transport", "government",
)
# Licences we can describe in DCAT with a stable URI; others must be given as a URI.
LICENCES: dict[str, str] = {
    "OGL-UK-3.0": "http://www.nationalarchives.gov.uk/doc/open-government-licence/version/3/",
    "CC-BY-4.0": "https://creativecommons.org/licenses/by/4.0/",
    "CC0-1.0": "https://creativecommons.org/publicdomain/zero/1.0/",
    "ODbL-1.0": "https://opendatacommons.org/licenses/odbl/1-0/",
    "restricted": "https://ndl.example/licences/restricted-access",
}
_URI = re.compile(r"^https?://[^\s]+$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class CodeListEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=100)
    label: str = Field(default="", max_length=500)


class ColumnMeta(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=100)
    type: ColumnType
    description: str = ""
    sensitivity: Sensitivity = "none"
    join_key: JoinKey | None = None
    unit: str | None = Field(default=None, max_length=50)
    code_list: list[CodeListEntry] | None = Field(default=None, max_length=5000)


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    email: str

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        if not _EMAIL.match(v):
            raise ValueError("must be an email address like data@example.org")
        return v


class Temporal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: date
    end: date | None = None

    @model_validator(mode="after")
    def _order(self) -> Temporal:
        if self.end is not None and self.end < self.start:
            raise ValueError("end must not be before start")
        return self


class AccessInfo(BaseModel):
    """HDR UK-style access fields: how to get the data and how long it takes."""

    model_config = ConfigDict(extra="forbid")

    route: str = Field(default="", max_length=2000)
    lead_time_days: int | None = Field(default=None, ge=0, le=3650)
    cost: str = Field(default="", max_length=500)
    linkable_datasets: list[str] = Field(default_factory=list, max_length=200)


class DatasetMeta(BaseModel):
    """Metadata for one dataset. Unknown keys are kept, so newer datasites can say more."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=20_000)
    publisher: str = Field(min_length=1, max_length=200)
    tier: Tier
    keywords: list[str] = Field(default_factory=list, max_length=50)
    row_count: int | None = Field(default=None, ge=0, le=2**63 - 1)  # the hub's BIGINT
    columns: list[ColumnMeta] = Field(min_length=1, max_length=2000)
    # DCAT-3 core
    contact: Contact | None = None
    licence: str | None = None
    themes: list[str] = Field(default_factory=list, max_length=10)
    spatial: str | None = Field(default=None, max_length=200)
    temporal: Temporal | None = None
    update_frequency: Frequency | None = None
    issued: date | None = None
    modified: date | None = None
    # HDR UK access fields and ndl fields
    access: AccessInfo = Field(default_factory=AccessInfo)
    policy_summary: str = Field(default="", max_length=2000)
    population_size: int | None = Field(default=None, ge=0, le=2**63 - 1)
    known_issues: str = Field(default="", max_length=5000)
    last_verified: date | None = None

    @field_validator("licence")
    @classmethod
    def _licence(cls, v: str | None) -> str | None:
        if v is None or v in LICENCES or _URI.match(v):
            return v
        raise ValueError(
            f"must be one of {', '.join(LICENCES)} or a licence URI starting http(s)://"
        )

    @field_validator("themes")
    @classmethod
    def _themes(cls, v: list[str]) -> list[str]:
        bad = [t for t in v if t not in THEMES]
        if bad:
            raise ValueError(f"unknown theme {bad[0]!r}; themes are {', '.join(THEMES)}")
        return v

    @model_validator(mode="after")
    def _dates_and_columns(self) -> DatasetMeta:
        if self.issued and self.modified and self.modified < self.issued:
            raise ValueError("modified must not be before issued")
        names = [c.name for c in self.columns]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ValueError(f"column {dup!r} appears more than once")
        return self

    def content_hash(self) -> str:
        return hashlib.sha256(rfc8785.dumps(self.model_dump(mode="json"))).hexdigest()

    def column(self, name: str) -> ColumnMeta | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def join_keys(self) -> list[str]:
        return sorted({c.join_key for c in self.columns if c.join_key})

    @property
    def licence_uri(self) -> str | None:
        if self.licence is None:
            return None
        return LICENCES.get(self.licence, self.licence)
