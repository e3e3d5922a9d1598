"""What the hub says about a job, typed: shared by the JSON API, web pages, MCP and the SDK."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ndl.jobs.report import JobReport

# States in the words a researcher reads.
STATE_WORDS: dict[str, str] = {
    "awaiting_review": "waiting for a data steward to review the code",
    "approved": "approved; waiting to run at the datasite",
    "queued": "approved; waiting to run at the datasite",
    "running": "running at the datasite",
    "awaiting_output_check": "finished; waiting for an output checker",
    "released": "outputs released",
    "returned": "returned to the researcher with comments",
    "rejected": "outputs rejected by an output checker",
    "review_rejected": "code rejected by a data steward",
    "failed": "failed",
    "cancelled": "cancelled",
}
FINAL = frozenset({"released", "returned", "rejected", "review_rejected", "failed",
                   "cancelled"})


class CodeReview(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reviewer: str
    decision: str
    reasons: str
    at: str


class OutputDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    checker: str
    decision: str
    comments: str
    at: str


class JobView(BaseModel):
    """One job as its viewer may see it (blind reviews hidden from other checkers)."""

    model_config = ConfigDict(extra="forbid")
    id: str
    name: str
    project: str
    requester: str
    language: str
    environment: str
    datasets: list[str]
    org: str
    code_sha256: str
    state: str
    state_words: str
    progress: float = 0.0
    progress_message: str = ""
    auto_approved: bool = False
    output_reviews_required: int = 1
    created_at: str
    updated_at: str
    error: str = ""
    sandbox: str | None = None
    code_reviews: list[CodeReview] = Field(default_factory=list)
    output_decisions: list[OutputDecision] = Field(default_factory=list)
    report: JobReport | None = None
    outputs_sha256: str | None = None
    outputs_size: int | None = None
    context: str = ""
    outputs_declared: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.state in FINAL

    @property
    def released(self) -> bool:
        """An output checker released the outputs to the project (agents read only these)."""
        return self.state == "released"


class CodeView(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sha256: str
    files: dict[str, str]
    published: bool


class OutputFile(BaseModel):
    """One file in a job's outputs, for the checker's page (text shown, images inline)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    size: int
    media_type: str
    text: str | None = None          # CSV and text files, capped
    rows: list[list[str]] | None = None  # CSV files, parsed (first 200 rows)
