"""Grants: signed documents a datasite can check for itself.

The hub signs ``{grant_id, project, dataset, tier, members, issued_at, expires_at}`` with its
Ed25519 key. A datasite refuses work unless the grant that comes with it is signed by the hub
key it pinned, names this dataset and the requesting project and member, has not expired, and
has not been revoked (the hub tells the datasite of revocations through its mailbox).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import rfc8785

from ndl.core.errors import PermissionDenied
from ndl.core.keys import KeyValidity, SigningKey, keys_valid_at, verify_any

_FIELDS = ("v", "grant_id", "project", "dataset", "tier", "members", "issued_at", "expires_at")


def sign_grant(key: SigningKey, *, grant_id: str, project: str, dataset: str, tier: str,
               members: list[str], issued_at: int, expires_at: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"v": 1, "grant_id": grant_id, "project": project, "dataset": dataset,
                           "tier": tier, "members": sorted(members), "issued_at": issued_at,
                           "expires_at": expires_at}
    doc["sig"] = key.sign(rfc8785.dumps(doc))
    return doc


def check_grant(doc: Any, hub_key: str | Sequence[KeyValidity], *, dataset: str, project: str,
                member: str, revoked: set[str] | frozenset[str] = frozenset(),
                now: float | None = None) -> dict[str, Any]:
    """Return the grant if it allows ``member`` of ``project`` to use ``dataset``; else raise."""
    if not isinstance(doc, dict) or not all(k in doc for k in (*_FIELDS, "sig")):
        raise PermissionDenied("no valid grant came with this request: ask for access first")
    body = {k: doc[k] for k in _FIELDS}
    # Checked against the hub keys valid when it was issued: a grant signed by a key retired
    # since stays good until it expires; one signed by a revoked key never is.
    if not verify_any(_keys_at(hub_key, doc["issued_at"]), str(doc["sig"]),
                      rfc8785.dumps(body)):
        raise PermissionDenied("the grant is not signed by the hub (by a hub key valid when it "
                               "was issued): forged, altered, or signed by a key since "
                               "revoked; ask for access again")
    if doc["dataset"] != dataset:
        raise PermissionDenied(f"the grant is for {doc['dataset']}, not {dataset}")
    if doc["project"] != project:
        raise PermissionDenied(f"the grant belongs to project {doc['project']}, not {project}")
    if member not in doc["members"]:
        raise PermissionDenied(f"{member} is not on the grant for project {project}")
    if doc["grant_id"] in revoked:
        raise PermissionDenied(f"grant {doc['grant_id']} was revoked")
    if int(doc["expires_at"]) < (now if now is not None else time.time()):
        raise PermissionDenied(f"grant {doc['grant_id']} has expired: ask for access again")
    return doc


def _keys_at(hub_key: str | Sequence[KeyValidity], issued_at: Any) -> list[str]:
    if isinstance(issued_at, bool) or not isinstance(issued_at, int | float):
        return []
    return keys_valid_at(hub_key, float(issued_at))
