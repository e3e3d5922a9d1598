"""Access policy: data kept with each dataset at its datasite, shown in the catalogue.

A policy says who may be granted access without a human (auto-approval), how many stewards
must approve otherwise, for how long a grant lasts, and for which purposes and legal bases.
It is YAML or JSON (``policy.yaml`` / ``policy.json`` beside the dataset); every error names
the field. A dataset without a policy gets the default for its tier.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ndl.core.errors import InvalidInput

PurposeCategory = Literal["research", "statistics", "service-improvement",
                          "policy-development", "commercial-research"]
PURPOSES: tuple[PurposeCategory, ...] = ("research", "statistics", "service-improvement",
                                         "policy-development", "commercial-research")
LegalBasis = Literal["public-task", "legitimate-interests", "consent", "research-exemption",
                     "section-251", "statutory-gateway"]
LEGAL_BASES: tuple[str, ...] = ("public-task", "legitimate-interests", "consent",
                                "research-exemption", "section-251", "statutory-gateway")


# Evidence a person may hold (ndl.access.evidence) and a policy may require of every member.
EvidenceKind = Literal["accredited-researcher", "safe-researcher-training",
                       "information-governance-training"]
EVIDENCE_KINDS: tuple[str, ...] = ("accredited-researcher", "safe-researcher-training",
                                   "information-governance-training")
# References a project may hold (ndl.access.references) and a policy may require of it.
ReferenceKind = Literal["ethics-approval", "dpia", "data-sharing-agreement"]
REFERENCE_KINDS: tuple[str, ...] = ("ethics-approval", "dpia", "data-sharing-agreement")


class Requirements(BaseModel):
    """What must be valid when access is requested and again each time the data are used:
    evidence every project member holds, and references the project holds."""

    model_config = ConfigDict(extra="forbid")

    evidence: list[EvidenceKind] = Field(default_factory=list, max_length=3)
    references: list[ReferenceKind] = Field(default_factory=list, max_length=3)


class AutoApproval(BaseModel):
    """Conditions under which a request is granted at once, with no human in the loop."""

    model_config = ConfigDict(extra="forbid")

    require_accredited: bool = True
    require_purpose: bool = True
    purposes: list[PurposeCategory] | None = None


class PrivacyBudget(BaseModel):
    """Limits on zCDP spending (rho) for one dataset; the datasite keeps the ledger."""

    model_config = ConfigDict(extra="forbid")

    per_query: float = Field(default=0.5, gt=0, le=10)
    per_researcher: float = Field(default=2.0, gt=0, le=100)
    per_project: float = Field(default=5.0, gt=0, le=1000)
    total: float | None = Field(default=50.0, gt=0)
    max_rows_per_person: int = Field(default=5, ge=1, le=1000)
    # Disclosure control applied to noisy counts after DP (post-processing: no privacy cost).
    round_to: int | None = Field(default=None, ge=1, le=1000)
    suppress_below: int | None = Field(default=None, ge=1, le=1000)


class JobPolicy(BaseModel):
    """Controlled-tier jobs on this dataset: who reviews code, how outputs are checked."""

    model_config = ConfigDict(extra="forbid")

    # Code whose exact hash a steward already approved for the same project runs at once.
    run_approved_code: bool = True
    # Independent output checkers who must each approve a release (2: blind double review).
    output_reviews: int = Field(default=1, ge=1, le=2)


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    auto_approve: AutoApproval | None = None
    approvals_required: int = Field(default=1, ge=1, le=3)
    grant_days: int = Field(default=365, ge=1, le=3650)
    allowed_purposes: list[PurposeCategory] = Field(default_factory=lambda: list(PURPOSES))
    allowed_legal_bases: list[LegalBasis] | None = None
    # Statistical disclosure control at the datasite: groups smaller than this are withheld.
    min_cell_count: int = Field(default=10, ge=1, le=1000)
    # Differential privacy (zCDP rho) for safeguarded queries, spent at the datasite.
    budget: PrivacyBudget = Field(default_factory=lambda: PrivacyBudget())
    # Whether the public register may show the (noisy) answers of private queries.
    register_dp_answers: bool = False
    # Code-to-data jobs (controlled tier).
    jobs: JobPolicy = Field(default_factory=lambda: JobPolicy())
    # Evidence on people and references on projects, checked at request and at use.
    requires: Requirements = Field(default_factory=lambda: Requirements())

    def summary(self, tier: str) -> str:
        if tier == "open":
            return "Open: no request needed."
        if self.auto_approve is not None:
            who = "accredited researchers" if self.auto_approve.require_accredited \
                else "registered researchers"
            return (f"Granted at once to {who} on a project with a stated purpose; "
                    f"grants last {self.grant_days} days.")
        n = self.approvals_required
        return (f"Needs approval by {n} data steward{'s' if n > 1 else ''} of the owning "
                f"organisation; grants last {self.grant_days} days.")


def default_policy(tier: str) -> Policy:
    if tier == "safeguarded":
        return Policy(auto_approve=AutoApproval())
    return Policy()


def parse_policy(text: str, *, where: str, yaml_ok: bool = True) -> Policy:
    """Parse and validate policy text; errors name the field and the file."""
    try:
        data = yaml.safe_load(text) if yaml_ok else json.loads(text)
    except (yaml.YAMLError, ValueError) as exc:
        raise InvalidInput(f"{where} is not valid {'YAML' if yaml_ok else 'JSON'}: {exc}"
                           ) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidInput(f"{where} must be a mapping of policy fields")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = [{"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]}
                    for e in exc.errors()]
        first = problems[0]
        raise InvalidInput(f"{where}: {first['field']}: {first['problem']}",
                           detail=problems) from exc


def load_policy(folder: Path, tier: str) -> Policy:
    """The policy beside a dataset (policy.yaml or policy.json), or the tier's default."""
    for name in ("policy.yaml", "policy.yml", "policy.json"):
        path = folder / name
        if path.exists():
            return parse_policy(path.read_text("utf-8"), where=str(path),
                                yaml_ok=not name.endswith(".json"))
    return default_policy(tier)


@dataclass
class ProjectFacts:
    """What a policy decision looks at."""

    purpose: str
    purpose_category: str
    legal_basis: str
    members_accredited: list[bool] = field(default_factory=list)


@dataclass
class Decision:
    grant_now: bool
    reasons: list[str]
    refuse: bool = False


def decide(policy: Policy, project: ProjectFacts) -> Decision:
    """Grant at once, route to stewards, or refuse outright (the policy forbids it)."""
    if project.purpose_category not in policy.allowed_purposes:
        return Decision(False, [f"purpose {project.purpose_category!r} is not allowed for this "
                                f"dataset (allowed: {', '.join(policy.allowed_purposes)})"],
                        refuse=True)
    if policy.allowed_legal_bases and project.legal_basis not in policy.allowed_legal_bases:
        return Decision(False, [f"legal basis {project.legal_basis!r} is not accepted (accepted:"
                                f" {', '.join(policy.allowed_legal_bases)})"], refuse=True)
    auto = policy.auto_approve
    if auto is None:
        return Decision(False, ["this dataset's policy needs a data steward's approval"])
    reasons = []
    if auto.require_purpose and len(project.purpose.strip()) < 20:
        reasons.append("auto-approval needs a stated purpose of at least 20 characters")
    if auto.require_accredited and not all(project.members_accredited or [False]):
        reasons.append("auto-approval needs every project member to be an accredited "
                       "researcher")
    if auto.purposes is not None and project.purpose_category not in auto.purposes:
        reasons.append(f"purpose {project.purpose_category!r} is not auto-approved")
    if reasons:
        return Decision(False, [*reasons, "routed to the data steward instead"])
    return Decision(True, ["meets the dataset's auto-approval rules"])


def policy_json(policy: Policy) -> dict[str, Any]:
    return policy.model_dump(mode="json")


def one_line(value: str) -> str:
    """Issuers and reference numbers: printable text on one line (the register and pages show
    them), surrounding spaces dropped."""
    value = value.strip()
    if not value or any(ord(c) < 32 for c in value):
        raise ValueError("give printable text on one line")
    return value
