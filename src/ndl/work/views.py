"""A work item as its requester sees it: one typed view for the hub that writes it and the
SDK that reads it (``ndl.Work``), so the two cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "expired"})


@dataclass(frozen=True)
class WorkResult:
    """What a finished work item produced: one file, named by its SHA-256."""

    sha256: str
    size: int
    media_type: str
    filename: str
    rows: int | None = None


@dataclass(frozen=True)
class Work:
    """One work item: its state, progress and (once it succeeded) its result.

    ``state`` is one of queued, leased, running, succeeded, failed, cancelled, expired;
    ``progress`` is a fraction from 0 to 1 and ``message`` says what the datasite is doing.
    ``error`` (``{"code", "message"}``) says why a failed item failed. No parameters: they
    may hold a query; ``params_sha256`` names them.
    """

    id: str
    kind: str
    dataset: str
    state: str
    progress: float
    message: str
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    deadline: str | None = None
    attempts: int = 0
    error: dict[str, str] | None = None
    result: WorkResult | None = None
    coordination_id: str | None = None
    params_sha256: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def final(self) -> bool:
        """True once the item will never change again."""
        return self.state in FINAL_STATES

    @property
    def result_url(self) -> str:
        """The hub path its result file is fetched from (once it succeeded)."""
        return f"/api/work/{self.id}/result"

    def to_json(self) -> dict[str, Any]:
        """The hub's JSON view of the item (what ``GET /api/work/{id}`` answers)."""
        out = {k: v for k, v in self.__dict__.items() if k not in ("result", "raw")}
        out["final"] = self.final
        out["result"] = None if self.result is None else dict(self.result.__dict__)
        return out
