"""ndl's roles, what people see them called, and the SATRE roles each one plays.

Role ids (``researcher``, ``steward``, ``output_checker``, ``admin``) are stored on users,
named in tokens and tests, and stay as they are. Pages, CLI help and ``docs/roles.md`` show
:func:`label` and the SATRE mapping from :data:`ROLES`; ``tests/unit/test_roles.py`` checks
that the doc's table is :func:`markdown_table` and that every rule named here exists in
:mod:`ndl.access.rules`.

Why ``steward`` keeps its name: SATRE's Data Steward prepares and maintains data for
researchers, and ndl's steward does that (publishes and describes its organisation's data at
its datasite, with mocks). It also decides access, which SATRE leaves to the Data Controller
or its delegate (1.5.04), and reviews jobs' code. The name is kept for the part that matches
the SATRE definition, and every place that shows the role says the rest.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RoleInfo:
    id: str
    label: str                  # what pages and CLI help call it
    satre: tuple[str, ...]      # the SATRE roles it plays
    summary: str                # one line: who holds it
    may: tuple[str, ...]        # what it may do, each ending in the rule that checks it


ROLES: tuple[RoleInfo, ...] = (
    RoleInfo(
        "researcher", "Researcher",
        ("Researcher", "Data Analyst", "Project Manager (a project's lead)"),
        "A person doing research on a project (its lead is SATRE's project manager).",
        ("create projects and ask for access to data (require_role)",
         "ask private questions and submit jobs on a granted project while the evidence the "
         "policy requires is valid (require_data_operation, require_requirements_met)",
         "record a project's references as its lead (require_reference_recorder)",
         "see their own evidence (may_see_evidence_of)")),
    RoleInfo(
        "steward", "Data steward (access approver)",
        ("Data Steward", "Information Asset Owner / Data Custodian's delegate "
         "(the Data Controller's delegate for access, SATRE 1.5.04)"),
        "Acts for the organisation that holds the data: prepares and publishes it, and "
        "decides who may use it.",
        ("approve or reject requests for their organisation's data, never their own "
         "project's (require_steward_of)",
         "administer their organisation's datasets and revoke its grants "
         "(require_org_official)",
         "review jobs' code, never their own (require_code_reviewer)",
         "see anyone's evidence and any project's references when deciding "
         "(may_see_evidence_of, may_see_references)")),
    RoleInfo(
        "output_checker", "Output checker",
        ("Output Checker",),
        "Checks a job's outputs for disclosure risk before they leave the datasite.",
        ("approve or return a job's outputs, never their own job's (require_output_checker)",)),
    RoleInfo(
        "admin", "Administrator",
        ("TRE Operator",),
        "Runs the hub: creates organisations and users, records evidence about people.",
        ("create organisations and users (require_admin)",
         "record and revoke evidence about other people, never themselves "
         "(require_evidence_recorder)",
         "set the federation's baseline of evidence and references per tier (require_admin)",
         "record a project's references (require_reference_recorder)")),
)

BY_ID = {r.id: r for r in ROLES}


def label(role: str) -> str:
    """The display name of a role id (an unknown id is shown as it is)."""
    info = BY_ID.get(role)
    return info.label if info else role


def labels(roles: set[str] | frozenset[str] | list[str]) -> list[str]:
    return [label(r) for r in sorted(roles)]


def cli_help() -> str:
    """The ``--role`` help: each id with its display name."""
    return "Repeat for several: " + ", ".join(f"{r.id} ({r.label})" for r in ROLES)


def markdown_table() -> str:
    """The table in docs/roles.md (a test keeps the doc equal to this)."""
    rows = ["| ndl role id | Shown as | SATRE role(s) | May |", "|---|---|---|---|"]
    for r in ROLES:
        rows.append(f"| `{r.id}` | {r.label} | {'; '.join(r.satre)} | "
                    f"{'; '.join(r.may)} |")
    return "\n".join(rows)
