"""Who may do what to which resource: every permission rule of the library, written once.

Services call these before they act; faces (API routes, web pages, MCP, CLI) never test a
role themselves. Each rule raises the error a person can act on (sign in, which role, whose
organisation) and returns nothing, so a call reads as the sentence it enforces::

    rules.require_org_official(who, ds.org_id, doing=f"edit {ds.id}")

The tier rules (which operations a tier serves, which columns may take part) live in
:mod:`ndl.core.tiers`; :func:`require_data_operation` joins the two for data operations.
``tests/security/test_authz_matrix.py`` checks them as a table of routes x roles, and
``tests/security/test_tier_matrix.py`` as tiers x operations x roles.
"""

from __future__ import annotations

from ndl.access.accounts import Principal
from ndl.core import tiers
from ndl.core.errors import AuthenticationRequired, PermissionDenied
from ndl.core.tiers import Audience, Operation


def _roles(who: Principal) -> str:
    return ", ".join(sorted(who.roles)) or "none"


def require_signed_in(who: Principal | None, *, doing: str) -> Principal:
    if who is None or who.user_id == 0:
        raise AuthenticationRequired(
            f"to {doing}, sign in: run 'ndl login', or send 'Authorization: Bearer <token>'")
    return who


def require_role(who: Principal | None, *roles: str, doing: str) -> Principal:
    """A signed-in user holding at least one of ``roles``."""
    who = require_signed_in(who, doing=doing)
    if not who.has(*roles):
        raise PermissionDenied(f"to {doing} you need the role {' or '.join(roles)}; your roles "
                               f"are {_roles(who)}")
    return who


def is_org_official(who: Principal | None, org_id: str | None) -> bool:
    """An admin, or a data steward of ``org_id``."""
    return who is not None and (who.has("admin") or (
        who.has("steward") and org_id is not None and who.org_id == org_id))


def require_org_official(who: Principal | None, org_id: str, *, doing: str) -> Principal:
    """An admin, or a data steward of ``org_id``: who may administer what that org holds."""
    who = require_signed_in(who, doing=doing)
    if not is_org_official(who, org_id):
        raise PermissionDenied(f"only a data steward of {org_id!r} or an admin can {doing}")
    return who


def require_steward_of(who: Principal | None, org_id: str, *, doing: str) -> Principal:
    """A data steward of ``org_id`` itself (admins decide nothing for an organisation)."""
    who = require_signed_in(who, doing=doing)
    if not (who.has("steward") and who.org_id == org_id):
        raise PermissionDenied(f"only a data steward of {org_id!r} can {doing}")
    return who


def require_admin(who: Principal | None, *, doing: str) -> Principal:
    return require_role(who, "admin", doing=doing)


def require_data_operation(who: Principal | None, tier: str, op: Operation, *,
                           dataset: str, project: str | None = None) -> tiers.Allowance:
    """The tier serves ``op`` and ``who`` is in its audience.

    For an audience of granted researchers this checks the role and that a project is named;
    the caller then attaches the project's active grant (``access.requests.active_grant``),
    which the datasite verifies again for itself.
    """
    allowed = tiers.require_operation(tier, op, dataset=dataset)
    doing = f"{op.value.replace('_', ' ')} on {dataset}"
    match allowed.audience:
        case Audience.ANYONE:
            pass
        case Audience.SIGNED_IN:
            require_signed_in(who, doing=doing)
        case Audience.RESEARCHER:
            require_role(who, "researcher", doing=doing)
        case Audience.GRANTED_RESEARCHER:
            require_role(who, "researcher", doing=doing)
            if not project:
                raise PermissionDenied(
                    f"{dataset} is {tier} data: name the project whose grant covers it "
                    "(--project, or project=... in the SDK)")
    return allowed


def may_data_operation(who: Principal | None, tier: str, op: Operation) -> bool:
    """Whether :func:`require_data_operation` would let ``who`` ask ``op`` of ``tier`` data
    (a project still to be named counts as allowed), for faces that offer the action."""
    try:
        require_data_operation(who, tier, op, dataset="it", project="any")
    except (AuthenticationRequired, PermissionDenied):
        return False
    return True


def is_output_checker(who: Principal | None) -> bool:
    return who is not None and who.has("output_checker")


def principal_string(who: Principal | None) -> str:
    """How work, blobs and the register name a caller: ``user:<name>`` or ``anonymous``."""
    return "anonymous" if who is None or who.user_id == 0 else f"user:{who.username}"


def may_see_work(who: Principal | None, requester: str) -> bool:
    """A work item is its requester's (and an admin's). An anonymous caller's item is reached
    by its unguessable id alone, as a capability, and never listed."""
    return requester == "anonymous" or (who is not None and (
        principal_string(who) == requester or who.has("admin")))


# -- controlled-tier jobs ------------------------------------------------------------------

def require_code_reviewer(who: Principal | None, org_id: str, author: str) -> Principal:
    """A data steward of the organisation holding the data, who did not write the code."""
    who = require_steward_of(who, org_id, doing="review a job's code")
    if who.username == author:
        raise PermissionDenied("you wrote this job: another data steward of "
                               f"{org_id!r} must review its code")
    return who


def require_output_checker(who: Principal | None, author: str) -> Principal:
    """An output checker who is not the job's author (nobody checks their own outputs)."""
    who = require_role(who, "output_checker", doing="check a job's outputs")
    if who.username == author:
        raise PermissionDenied("you wrote this job: another output checker must check its "
                               "outputs")
    return who


def is_code_reviewer(who: Principal | None) -> bool:
    """A data steward: someone who may be asked to review jobs' code (for navigation)."""
    return who is not None and who.has("steward")


def may_cancel_job(who: Principal | None, author: str) -> bool:
    """A job is cancelled by its author or an admin."""
    return who is not None and (who.username == author or who.has("admin"))


def may_see_job(who: Principal | None, *, members: set[str], org_id: str, author: str,
                checking: bool) -> bool:
    """A job is seen by its project's members, the data's stewards and admins, and by output
    checkers (not its author's own, for checking) once it has outputs to check."""
    if who is None or who.user_id == 0:
        return False
    return (who.username in members or is_org_official(who, org_id)
            or (checking and is_output_checker(who) and who.username != author))


def may_read_job_outputs(who: Principal | None, *, member: bool, author: str,
                         released: bool) -> bool:
    """A job's outputs are read by its project (and admins) once released, and by output
    checkers other than its author, to judge them, before and after."""
    if who is None:
        return False
    if released and (member or who.has("admin")):
        return True
    return is_output_checker(who) and who.username != author


# -- evidence on people and references on projects (ndl.access.evidence, .references) -------

def require_evidence_recorder(who: Principal | None, username: str) -> Principal:
    """An admin, about someone else: nobody vouches for their own accreditation."""
    who = require_admin(who, doing=f"record or revoke evidence about {username!r}")
    if who.username == username:
        raise PermissionDenied("nobody records evidence about themselves: another admin "
                               "must record or revoke yours")
    return who


def may_see_evidence_of(who: Principal | None, username: str) -> bool:
    """People see their own evidence; admins and data stewards see anyone's (a steward
    judging a request needs to know the team is accredited: SATRE 5.2.01 asks that training
    status be readable by every member TRE)."""
    return who is not None and who.user_id != 0 and (
        who.username == username or who.has("admin", "steward"))


def require_reference_recorder(who: Principal | None, *, lead: bool, project: str) -> Principal:
    """A project's lead, or an admin, records and revokes its references."""
    who = require_signed_in(who, doing=f"record references for project {project}")
    if not (lead or who.has("admin")):
        raise PermissionDenied(f"only the lead of project {project} or an admin can record "
                               "or revoke its references")
    return who


def may_see_references(who: Principal | None, *, member: bool) -> bool:
    """A project's references are seen by its members, by data stewards and by admins."""
    return who is not None and (member or who.has("admin", "steward"))


def require_requirements_met(shortfalls: list[str], *, doing: str) -> None:
    """The policy's required evidence and references are all valid today: the one check made
    when access is requested and again every time granted data are used."""
    if shortfalls:
        raise PermissionDenied(f"cannot {doing}: " + "; ".join(shortfalls))


# -- incidents and the security log ---------------------------------------------------------

def require_incident_responder(who: Principal | None, *, doing: str) -> Principal:
    """Acting on an incident (recording a response, containing, closing) is an admin's."""
    return require_admin(who, doing=doing)


def may_see_incident(who: Principal | None, *, raised_by: str, affected: set[str]) -> bool:
    """An incident is seen by admins, by whoever raised it, and by the people it touches
    (``affected``: usernames told about it)."""
    if who is None or who.user_id == 0:
        return False
    return who.has("admin") or who.username == raised_by or who.username in affected


def may_see_every_incident(who: Principal | None) -> bool:
    """Admins see every incident (others only theirs and those that touch them)."""
    return who is not None and who.user_id != 0 and who.has("admin")


def may_read_incident_detail(who: Principal | None, *, raised_by: str) -> bool:
    """Its confidential description: admins and the person who raised it only. The people
    it touches see its title, severity, state and what it touches."""
    return who is not None and who.user_id != 0 and (
        who.has("admin") or who.username == raised_by)


def require_security_log_share(who: Principal | None, policy: str) -> Principal:
    """A data steward fetches their own organisation's security events, and only from a hub
    that shares them (``--share-security-log org``); admins export the whole log instead."""
    who = require_role(who, "steward", doing="fetch your organisation's security log")
    if not who.org_id:
        raise PermissionDenied("your account belongs to no organisation, so no security "
                               "events are yours to fetch")
    if policy != "org":
        raise PermissionDenied("this hub does not share its security log with the "
                               "federation; its admin can start with --share-security-log org")
    return who


# -- joining, leaving and the data lifecycle (ndl.federation.membership, catalogue.lifecycle,
# access.closure) -----------------------------------------------------------------------------

def require_membership_official(who: Principal | None, org_id: str, *, doing: str
                                ) -> Principal:
    """A datasite joins, and leaves, at the word of a data steward of its organisation or
    an admin: the same people who answer for what it publishes."""
    return require_org_official(who, org_id, doing=doing)


def require_data_owner(who: Principal | None, org_id: str, *, doing: str) -> Principal:
    """Withdrawing or deleting a dataset is its organisation's decision (its data steward),
    or an admin's; nobody in another organisation, whatever their role."""
    return require_org_official(who, org_id, doing=doing)


def require_project_lead(who: Principal | None, owner_id: int, *, doing: str) -> Principal:
    """A project is closed by its lead (the user who created it) or an admin."""
    who = require_signed_in(who, doing=doing)
    if not (who.has("admin") or who.user_id == owner_id):
        raise PermissionDenied(f"only the project's lead or an admin can {doing}")
    return who
