"""Ids are checked, then percent-quoted, before they become part of a URL path.

A hub id is never trusted to be URL-safe: ``x/../../auth/login`` as a dataset id would walk
to another endpoint, and a ``?`` or ``#`` would cut the path short. Each kind of id has its
shape checked here (a bad one raises :class:`InvalidInput` naming it, and no request is
sent), and every path segment is quoted with ``safe=''`` on top, so a shape rule that is one
day loosened still cannot open a slash.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from ndl.core.errors import InvalidInput

# The same slug rule as organisation and datasite ids (ndl.access.accounts.check_slug).
_SLUG = r"[a-z0-9][a-z0-9-]{1,62}"
_DATASET_ID = re.compile(rf"^{_SLUG}/{_SLUG}$")
_ORG_ID = re.compile(rf"^{_SLUG}$")
# Projects are "p-" and 8 hex digits when the hub makes them; any slug tail is accepted so an
# unknown project still reaches the hub and gets its "no such project" answer.
_PROJECT_ID = re.compile(r"^p-[a-z0-9][a-z0-9-]{0,61}$")
_GRANT_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Work items are UUIDs (version 4, lower case) as the hub makes them.
_WORK_ID = _GRANT_ID
# One or two lower-case words: '/api/federation/poll', '/api/federation/work/finish'.
_FEDERATION_PATH = re.compile(r"^/api/federation/[a-z][a-z-]{0,39}(/[a-z][a-z-]{0,39})?$")


def segment(value: str) -> str:
    """One path segment, percent-quoted so nothing in it can act as a separator."""
    return quote(value, safe="")


def check_dataset_id(dataset_id: str) -> str:
    """Return ``dataset_id`` if it looks like ``site/name``; raise :class:`InvalidInput` if not."""
    if not isinstance(dataset_id, str) or not _DATASET_ID.match(dataset_id):
        raise InvalidInput(
            f"dataset id {dataset_id!r} is not valid: ids look like 'dfe/attainment' "
            "(datasite id, a slash, dataset name); find them with search_datasets or "
            "'ndl search'"
        )
    return dataset_id


def dataset_path(dataset_id: str, suffix: str = "") -> str:
    site, name = check_dataset_id(dataset_id).split("/")
    return f"/api/datasets/{segment(site)}/{segment(name)}{suffix}"


def check_org_id(org_id: str) -> str:
    if not isinstance(org_id, str) or not _ORG_ID.match(org_id):
        raise InvalidInput(
            f"organisation id {org_id!r} is not valid: organisation ids are 2-63 lowercase "
            "letters, digits and hyphens, e.g. 'nhs-trust'"
        )
    return org_id


def check_project_id(project_id: str) -> str:
    if not isinstance(project_id, str) or not _PROJECT_ID.match(project_id):
        raise InvalidInput(
            f"project id {project_id!r} is not valid: project ids look like 'p-1a2b3c4d', as "
            "'ndl project create' printed it"
        )
    return project_id


def check_grant_id(grant_id: str) -> str:
    if not isinstance(grant_id, str) or not _GRANT_ID.match(grant_id):
        raise InvalidInput(
            f"grant id {grant_id!r} is not valid: grant ids are UUIDs such as "
            "'0b5e6c1e-3f1a-4c8e-9d2b-7a4f5e6d7c8b'; 'ndl project show' lists them"
        )
    return grant_id


def check_work_id(work_id: str) -> str:
    if not isinstance(work_id, str) or not _WORK_ID.match(work_id):
        raise InvalidInput(
            f"work id {work_id!r} is not valid: work ids are UUIDs such as "
            "'0b5e6c1e-3f1a-4c8e-9d2b-7a4f5e6d7c8b', as 'ndl download' or 'ndl work list' "
            "printed them"
        )
    return work_id


def check_number_id(value: int, what: str) -> str:
    """A database row id (request item, wish, API token): a non-negative int, as text."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{what} {value!r} is not valid: it is a whole number such as 12")
    return str(value)


def check_federation_path(path: str) -> str:
    """Signed envelopes go only to the hub's federation endpoints."""
    if not isinstance(path, str) or not _FEDERATION_PATH.match(path):
        raise InvalidInput(
            f"envelope path {path!r} is not valid: datasites post envelopes to "
            "'/api/federation/<endpoint>', e.g. '/api/federation/poll'"
        )
    return path
