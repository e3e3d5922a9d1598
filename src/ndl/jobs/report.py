"""What a job's run found, in words both the researcher and the output checker may read.

:class:`JobReport` travels in the outputs' ZIP as ``report.json`` and is shown in the output
checker's queue. It never holds a true value of a suppressed cell: findings carry the
researcher-safe wording of :mod:`ndl.privacy.sdc`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Finding(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cell: list[str] | None = None
    rule: str
    action: Literal["suppressed", "review"]
    detail: str


class OutputReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    kind: str
    file: str | None
    made_by: Literal["helper", "job"]
    # checked: passed the automatic checks (maybe with cells suppressed); review: a human must
    # judge something the checks could not; withheld: nothing of it can be released.
    status: Literal["checked", "review", "withheld"]
    description: str = ""
    findings: list[Finding] = Field(default_factory=list)
    suppressed: int = 0
    cells: int = 0
    problem: str | None = None

    @property
    def summary(self) -> str:
        if self.status == "withheld":
            return f"withheld: {self.problem}"
        parts = []
        if self.cells:
            parts.append(f"{self.cells} cells, {self.suppressed} suppressed")
        rules = sorted({f.rule for f in self.findings})
        if rules:
            parts.append("findings: " + ", ".join(rules))
        parts.append("needs an output checker's judgement" if self.status == "review"
                     else "passed the automatic checks")
        return "; ".join(parts)


class JobReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    job_id: str
    code_sha256: str
    environment: str
    sandbox: str
    policy: dict[str, int | float | bool]
    datasets: list[str]
    outputs: list[OutputReport]
    problems: list[str] = Field(default_factory=list)
    undeclared: int = 0
    context: str = ""
    mock: bool = False
    safe_log: list[str] = Field(default_factory=list)

    @property
    def needs_review(self) -> bool:
        return any(o.status == "review" for o in self.outputs)
