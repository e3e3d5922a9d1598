"""A job's approval: a document the hub signs and the datasite checks for itself.

``{v, job_id, code_sha256, project, member, datasets, approved_by, issued_at}`` signed with
the hub's Ed25519 key. The datasite runs a job only when the approval is signed by the hub key
it pinned, names this code (the hash of the very files it received), these datasets and the
member whose signed grants come with it. The hub's word alone is not enough, as for grants.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import rfc8785

from ndl.core.errors import PermissionDenied
from ndl.core.keys import KeyValidity, SigningKey, keys_valid_at, verify_any

_FIELDS = ("v", "job_id", "code_sha256", "project", "member", "datasets", "approved_by",
           "issued_at")


def sign_approval(key: SigningKey, *, job_id: str, code_sha256: str, project: str,
                  member: str, datasets: list[str], approved_by: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"v": 1, "job_id": job_id, "code_sha256": code_sha256,
                           "project": project, "member": member, "datasets": sorted(datasets),
                           "approved_by": approved_by, "issued_at": int(time.time())}
    doc["sig"] = key.sign(rfc8785.dumps(doc))
    return doc


def check_approval(doc: Any, hub_key: str | Sequence[KeyValidity], *, job_id: str, code_sha256: str,
                   datasets: list[str]) -> dict[str, Any]:
    """The approval if it is the hub's, for this job, this code and these datasets."""
    if not isinstance(doc, dict) or not all(k in doc for k in (*_FIELDS, "sig")):
        raise PermissionDenied("no valid approval came with this job: a data steward must "
                               "approve its code first")
    body = {k: doc[k] for k in _FIELDS}
    if not verify_any(_keys_at(hub_key, doc["issued_at"]), str(doc["sig"]),
                      rfc8785.dumps(body)):
        raise PermissionDenied("the job's approval is not signed by the hub (by a hub key valid "
                               "when it was issued): forged, altered, or signed by a key since "
                               "revoked")
    if doc["job_id"] != job_id:
        raise PermissionDenied(f"the approval is for job {doc['job_id']}, not {job_id}")
    if doc["code_sha256"] != code_sha256:
        raise PermissionDenied("the code received is not the code approved (its hash differs)")
    if sorted(datasets) != doc["datasets"]:
        raise PermissionDenied("the job names datasets its approval does not cover")
    return doc


def _keys_at(hub_key: str | Sequence[KeyValidity], issued_at: Any) -> list[str]:
    if isinstance(issued_at, bool) or not isinstance(issued_at, int | float):
        return []
    return keys_valid_at(hub_key, float(issued_at))
