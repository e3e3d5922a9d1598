"""The dataset metadata a datasite publishes, validated the same way at both ends."""

from __future__ import annotations

import hashlib
from typing import Literal

import rfc8785
from pydantic import BaseModel, ConfigDict, Field

Tier = Literal["open", "safeguarded", "controlled"]
TIERS: tuple[str, ...] = ("open", "safeguarded", "controlled")
ColumnType = Literal["string", "integer", "float", "boolean", "date"]
Sensitivity = Literal["direct_identifier", "quasi_identifier", "sensitive", "none"]
JoinKey = Literal["nhs_number", "upn", "postcode", "date_of_birth", "name", "local_id"]


class ColumnMeta(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=100)
    type: ColumnType
    description: str = ""
    sensitivity: Sensitivity = "none"
    join_key: JoinKey | None = None


class DatasetMeta(BaseModel):
    """Metadata for one dataset. Unknown keys are kept, so newer datasites can say more."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=20_000)
    publisher: str = Field(min_length=1, max_length=200)
    tier: Tier
    keywords: list[str] = Field(default_factory=list, max_length=50)
    row_count: int | None = Field(default=None, ge=0)
    columns: list[ColumnMeta] = Field(min_length=1, max_length=2000)

    def content_hash(self) -> str:
        return hashlib.sha256(rfc8785.dumps(self.model_dump(mode="json"))).hexdigest()

    def column(self, name: str) -> ColumnMeta | None:
        return next((c for c in self.columns if c.name == name), None)
