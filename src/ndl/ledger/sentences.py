"""Each register entry as one sentence a member of the public understands.

The register's JSON is exact but unreadable to most people; the public page shows these
sentences and keeps the JSON one click away. There is one function per kind of entry
(``SENTENCES``); a unit test finds every ``kind=`` the code appends and fails if one has no
sentence here, so a new kind cannot reach the page as a bare code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Payload = Mapping[str, Any]
Sentence = Callable[[str, str, Payload], str]


def who(actor: str) -> str:
    """How the register's actor reads in a sentence (it names roles, never people)."""
    kind, sep, rest = actor.partition(":")
    if sep and kind == "project":
        return f"project {rest}"
    if sep and kind == "datasite":
        return f"the datasite {rest}"
    if sep and kind == "party":
        return f"the party {rest}"
    if actor.startswith("steward@"):
        return f"a data steward of {actor.removeprefix('steward@')}"
    if actor.startswith("output_checker#"):
        return "an output checker"
    if actor.startswith("user#"):
        return f"registered user {actor.removeprefix('user#')}"
    return {"admin": "a library administrator", "hub": "the library",
            "policy": "the dataset's access policy", "anonymous": "a visitor",
            "steward": "a data steward"}.get(actor, actor)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _bare(subject: str, prefix: str) -> str:
    return subject.removeprefix(prefix)


def _plural(n: object, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _reason(payload: Payload) -> str:
    reason = str(payload.get("reason") or "").strip().rstrip(".")
    return f" (reason: {reason})" if reason else ""


def _datasets(payload: Payload) -> str:
    names = [str(d) for d in payload.get("datasets") or []]
    if not names:
        return "data"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


SENTENCES: dict[str, Sentence] = {
    "org.created": lambda a, s, p: f"The organisation {p.get('name') or s} joined the library.",
    "user.created": lambda a, s, p: (
        f"{_cap(who(a))} created the account of {who(s)}"
        + (f" in {p['org']}" if p.get("org") else "") + "."),
    "user.accreditation": lambda a, s, p: (
        f"{_cap(who(a))} recorded that {who(s)} is "
        + ("now an accredited researcher." if p.get("accredited")
           else "no longer an accredited researcher.")),
    "evidence.recorded": lambda a, s, p: (
        f"{_cap(who(a))} recorded {p.get('kind', 'evidence')} evidence for {who(s)}, valid "
        f"until {p.get('expires_on', 'an unstated day')}."),
    "evidence.revoked": lambda a, s, p: (
        f"{_cap(who(a))} revoked {who(s)}'s {p.get('kind', 'evidence')} evidence."),
    "evidence.baseline": lambda a, s, p: (
        f"{_cap(who(a))} set what every user of {s.removeprefix('tier:')} data must hold: "
        f"{', '.join(p.get('evidence') or []) or 'no evidence'}, and every project: "
        f"{', '.join(p.get('references') or []) or 'no reference'}."),
    "evidence.reminder": lambda a, s, p: (
        f"The library reminded {who(s)} that their {p.get('kind', 'evidence')} evidence "
        f"lapses on {p.get('expires_on', 'a day soon')}."),
    "project.reference": lambda a, s, p: (
        f"{_cap(who(a))} recorded a {p.get('kind', 'reference')} reference for {who(s)}, "
        f"valid until {p.get('expires_on', 'an unstated day')}."),
    "project.reference-reminder": lambda a, s, p: (
        f"The library reminded {who(s)} that its {p.get('kind', 'reference')} lapses on "
        f"{p.get('expires_on', 'a day soon')}."),
    "project.reference-revoked": lambda a, s, p: (
        f"{_cap(who(a))} revoked {who(s)}'s {p.get('kind', 'reference')} reference."),
    "datasite.registered": lambda a, s, p: (
        f"{_cap(who(a))} connected the datasite {s}"
        + (f" of {p['org']}" if p.get("org") else "") + " to the library."),
    "dataset.published": lambda a, s, p: (
        f"{_cap(who(a))} published the description of {s}"
        + (f" (version {p['version']}, {p['tier']} tier)" if p.get("tier") else "") + "."),
    "mock.published": lambda a, s, p: (
        f"{_cap(who(a))} published synthetic practice data for {s}"
        + (f" ({_plural(p['rows'], 'made-up row', 'made-up rows')})" if "rows" in p else "")
        + "."),
    "metadata.edit.submitted": lambda a, s, p: (
        f"{_cap(who(a))} asked to change the description of {s}"
        + (f" ({', '.join(str(f) for f in p['fields'])})" if p.get("fields") else "") + "."),
    "project.created": lambda a, s, p: (
        f"Project {_bare(s, 'project:')}"
        + (f", \u201c{p['title']}\u201d," if p.get("title") else "") + " was registered."),
    "request.submitted": lambda a, s, p: (
        f"{_cap(who(a))} asked for access to {_datasets(p)}."),
    "request.routed": lambda a, s, p: (
        f"The request for {p.get('dataset') or 'data'} was sent to "
        f"{p.get('org') or 'its organisation'}'s data stewards to decide."),
    "request.approval": lambda a, s, p: (
        f"{_cap(who(a))} approved access to {p.get('dataset') or 'data'}{_reason(p)}."),
    "request.rejection": lambda a, s, p: (
        f"{_cap(who(a))} refused access to {p.get('dataset') or 'data'}{_reason(p)}."),
    "request.granted": lambda a, s, p: (
        f"Access to {p.get('dataset') or 'data'} was granted by {who(a)}{_reason(p)}."),
    "request.rejected": lambda a, s, p: (
        f"Access to {p.get('dataset') or 'data'} was refused by {who(a)}{_reason(p)}."),
    "grant.issued": lambda a, s, p: (
        f"Project {p.get('project', '?')} was given access to {p.get('dataset') or 'data'}"
        + (f" until {str(p['expires_at'])[:10]}" if p.get("expires_at") else "") + "."),
    # Incidents: that one happened and how it moved, never what it was or whom it touched.
    "incident.raised": lambda a, s, p: (
        f"{'A library administrator' if a == 'admin' else 'A member of the library'} "
        f"reported incident {_bare(s, 'incident:')} (severity {p.get('severity', '?')}); "
        "its details are confidential."),
    "incident.action": lambda a, s, p: (
        f"A library administrator recorded a response to incident {_bare(s, 'incident:')}: "
        f"{str(p.get('action', 'an action')).replace('_', ' ')}"
        + (f" (register entry {p['entry']})" if p.get("entry") else "") + "."),
    "incident.contained": lambda a, s, p: (
        f"Incident {_bare(s, 'incident:')} was contained."),
    "incident.closed": lambda a, s, p: f"Incident {_bare(s, 'incident:')} was closed.",
    # Joining and leaving, suspension, keys (issue 13): who acted on which party, never why
    # a person was suspended (that stays in the security log).
    "datasite.approved": lambda a, s, p: (
        f"{_cap(who(a))} approved the datasite {s} of {p.get('org', '?')} to join."),
    "datasite.retired": lambda a, s, p: (
        f"{_cap(who(a))} retired the datasite {s}{_reason(p)}: "
        f"{_plural(p.get('datasets_withdrawn', 0), 'dataset', 'datasets')} withdrawn, "
        f"{_plural(p.get('grants_ended', 0), 'grant', 'grants')} ended."),
    "datasite.status": lambda a, s, p: (
        f"The datasite {s} reported its self-check "
        f"{'passing' if p.get('self_check_ok') else 'FAILING'} "
        f"(ndl {p.get('software_version', '?')}, sandbox {p.get('sandbox_mode', '?')})."),
    "datasite.suspended": lambda a, s, p: f"{_cap(who(a))} suspended the datasite {s}.",
    "datasite.reinstated": lambda a, s, p: f"{_cap(who(a))} reinstated the datasite {s}.",
    "user.suspended": lambda a, s, p: f"{_cap(who(a))} suspended {who(s)}.",
    "user.reinstated": lambda a, s, p: f"{_cap(who(a))} reinstated {who(s)}.",
    "key.rotated": lambda a, s, p: (
        f"{_cap(who(s))} replaced its signing key {str(p.get('old', '?'))[:16]} with "
        f"{str(p.get('new', '?'))[:16]}"
        + (f"; the old key is accepted until {str(p['retire_at'])[:16]}"
           if p.get("retire_at") else "") + "."),
    "key.revoked": lambda a, s, p: (
        f"{_cap(who(a))} revoked the signing key {str(p.get('fingerprint', '?'))[:16]} of "
        f"{who(s)}{_reason(p)}; its signatures are refused from now on."),
    "dataset.withdrawn": lambda a, s, p: (
        f"{_cap(who(a))} withdrew the dataset {s}{_reason(p)}; "
        f"{_plural(p.get('grants_ended', 0), 'grant', 'grants')} ended."),
    "dataset.deletion_requested": lambda a, s, p: (
        f"{_cap(who(a))} asked the datasite to delete the dataset {s}."),
    "dataset.deleted": lambda a, s, p: (
        f"{_cap(who(a))} deleted the dataset {s} ("
        f"{_plural(p.get('files', 0), 'file', 'files')}) and signed a deletion record."),
    "project.closed": lambda a, s, p: (
        f"{_cap(who(a))} closed project {s}{_reason(p)}; "
        f"{_plural(p.get('grants_revoked', 0), 'grant', 'grants')} revoked"
        + (f", outputs kept until {p['outputs_until']}" if p.get("outputs_until") else "")
        + "."),
    "project.outputs_expired": lambda a, s, p: (
        f"The outputs of closed project {s} reached the end of their retention."),
    "grant.revoked": lambda a, s, p: (
        f"{_cap(who(a))} withdrew project {p.get('project', '?')}'s access to "
        f"{p.get('dataset') or 'data'}{_reason(p)}."),
    "query.submitted": lambda a, s, p: f"{_cap(who(a))} asked a question of {s}.",
    "open.sql": lambda a, s, p: f"{_cap(who(a))} ran an SQL query on the open data {s}.",
    "open.download": lambda a, s, p: f"{_cap(who(a))} downloaded the open data {s}.",
    "private_query.submitted": lambda a, s, p: (
        f"{_cap(who(a))} asked a private question of {s} (the answer has noise added "
        "to protect each person)."),
    "budget.checked": lambda a, s, p: (
        f"{_cap(who(a))} checked how much of its privacy budget for {s} is left."),
    "query.answered": lambda a, s, p: (
        f"{_cap(who(a))} answered a question"
        + (f" with {_plural(p['groups'], 'group', 'groups')}" if "groups" in p else "")
        + (f", {p['suppressed']} withheld as too small" if p.get("suppressed") else "")
        + ("" if p.get("ok", True) else " with an error") + "."),
    "work.submitted": lambda a, s, p: (
        f"{_cap(who(a))} asked for {_work(p)} {p.get('dataset') or 'several datasets'} "
        f"(work item {s[:8]})."),
    "work.approved": lambda a, s, p: f"{_cap(who(a))} approved work item {s[:8]}.",
    "work.started": lambda a, s, p: f"{_cap(who(a))} started work item {s[:8]}.",
    "work.finished": lambda a, s, p: (
        f"{_cap(who(a))} finished work item {s[:8]}"
        + (" with a result" if p.get("state") == "succeeded" else ", which failed") + "."),
    "work.cancelled": lambda a, s, p: (
        f"Work item {s[:8]} was stopped"
        + (" when its time ran out" if p.get("state") == "expired" else f" by {who(a)}")
        + "."),
    "work.released": lambda a, s, p: (
        f"The result of work item {s[:8]} was delivered to {who(a)}."),
    "party.registered": lambda a, s, p: (
        f"{_cap(who(a))} connected the {p.get('kind') or 'party'} {_bare(s, 'party:')}"
        + (f" of {p['org']}" if p.get("org") else "") + " to the library."),
    "party.key_changed": lambda a, s, p: (
        f"{_cap(who(s))} published a new encryption key"
        + (f" (fingerprint {p['fingerprint']})" if p.get("fingerprint") else "")
        + (f" in place of {p['previous_fingerprint']}" if p.get("previous_fingerprint")
           else "") + "."),
    "job.submitted": lambda a, s, p: (
        f"{_cap(who(a))} submitted job {s} on {_datasets(p)} for review{_code(p)}."),
    "job.reviewed": lambda a, s, p: (
        f"{_cap(who(a))} "
        + {"approve": "approved", "reject": "rejected"}.get(str(p.get("decision")),
                                                             "reviewed")
        + f" the code of job {s}{_code(p)}{_reason({'reason': p.get('reasons')})}."),
    "job.approved": lambda a, s, p: (
        f"Job {s}{_code(p)} was approved to run"
        + (" by the datasets' policy, as code already approved for its project"
           if p.get("automatic") else f" by {who(a)}") + "."),
    "job.ran": lambda a, s, p: (
        f"{_cap(who(a))} ran job {s}{_code(p)}: "
        + {"awaiting_output_check": "its outputs wait for an output checker",
           "failed": "it failed", "cancelled": "it was cancelled"}.get(
               str(p.get("outcome")), str(p.get("outcome") or "finished"))
        + (" (WITHOUT the bubblewrap sandbox)" if p.get("sandbox") == "weaker" else "")
        + "."),
    "job.output_checked": lambda a, s, p: (
        f"{_cap(who(a))} "
        + {"approve": "approved", "return": "returned", "reject": "rejected"}.get(
            str(p.get("decision")), "decided on")
        + f" the outputs of job {s}{_code(p)}."),
    "job.released": lambda a, s, p: (
        f"The outputs of job {s}{_code(p)} were released to project "
        f"{p.get('project', '?')}."),
    "job.cancelled": lambda a, s, p: f"{_cap(who(a))} cancelled job {s}{_code(p)}.",
    "wish.created": lambda a, s, p: (
        f"{_cap(who(a))} added wish {_bare(s, 'wish:')} to the wishlist of data people want."),
    "wish.open": lambda a, s, p: f"{_cap(who(a))} reopened wish {_bare(s, 'wish:')}.",
    "wish.planned": lambda a, s, p: (
        f"{_cap(who(a))} plans to publish the data asked for in wish {_bare(s, 'wish:')}."),
    "wish.published": lambda a, s, p: (
        f"Wish {_bare(s, 'wish:')} came true: {p.get('dataset') or 'the data'} is published."),
}


def _code(p: Payload) -> str:
    sha = str(p.get("code_sha256") or "")
    return f" (code {sha[:12]})" if sha else ""


def _work(p: Payload) -> str:
    return {"export": "an export of", "job": "a reviewed job on"}.get(
        str(p.get("work_kind")), "work on")


# Work that needs several parties (ndl.federation.coordination) uses the work.* kinds with a
# ``coordination:<id>`` subject; these say it in its own words.
COORDINATION_SENTENCES: dict[str, Sentence] = {
    "work.submitted": lambda a, s, p: (
        f"{_cap(who(a))} asked {_plural(len(p.get('parties') or []), 'party', 'parties')} "
        f"to take part in coordinated work {_bare(s, 'coordination:')[:8]}, needing "
        f"{p.get('approvals_needed')} approval{'s' if p.get('approvals_needed') != 1 else ''}."),
    "work.approved": lambda a, s, p: (
        f"{_cap(who(a))} approved coordinated work {_bare(s, 'coordination:')[:8]} "
        f"({p.get('approvals')} of {p.get('approvals_needed')} approvals needed)."),
    "work.cancelled": lambda a, s, p: (
        f"Coordinated work {_bare(s, 'coordination:')[:8]} was stopped"
        + (" when its time ran out" if p.get("state") == "expired" else f" by {who(a)}")
        + "."),
    "work.finished": lambda a, s, p: (
        f"{_cap(who(a))} finished coordinated work {_bare(s, 'coordination:')[:8]}."),
}


def sentence(kind: str, actor: str, subject: str, payload: Payload) -> str:
    """The entry in words; a kind without a sentence (an old hub's) still says who and what."""
    say = SENTENCES.get(kind)
    if subject.startswith("coordination:"):
        say = COORDINATION_SENTENCES.get(kind, say)
    if say is None:
        return f"{_cap(who(actor))} recorded \u201c{kind}\u201d about {subject}."
    try:
        return say(actor, subject, payload)
    except (KeyError, TypeError, ValueError):  # an odd payload must not break the page
        return f"{_cap(who(actor))} recorded \u201c{kind}\u201d about {subject}."
