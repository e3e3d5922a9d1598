"""The aggregate query a researcher may ask of a dataset.

For now one shape: a count of rows, optionally grouped by up to three columns. Later tiers
(differential privacy, disclosure control) extend this spec rather than replace it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ndl.core.errors import InvalidInput

# Below this many rows a group is withheld for non-open data: the ONS/ACRO default threshold
# for frequency tables, until the dataset's own policy (a later issue) says otherwise.
DEFAULT_THRESHOLD = 10


class CountQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    op: Literal["count"] = "count"
    by: list[str] = Field(default_factory=list, max_length=3)
    # The project whose grant covers this query; not needed for open data.
    project: str | None = Field(default=None, max_length=64)

    def check_against(self, columns: list[dict[str, Any]]) -> None:
        """Refuse columns the dataset does not have, naming the ones it does."""
        names = [c["name"] for c in columns]
        for col in self.by:
            if col not in names:
                raise InvalidInput(
                    f"column {col!r} is not in this dataset; its columns are: "
                    + ", ".join(names)
                )
        if len(set(self.by)) != len(self.by):
            raise InvalidInput("each column may appear in 'by' only once")


class QueryResult(BaseModel):
    columns: list[str]
    rows: list[list[Any]]
    suppressed: int = 0
    threshold: int | None = None
    tier: str
