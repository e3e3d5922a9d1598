"""Incident notices a datasite receives from the hub, checked and kept.

The hub tells a datasite about an incident that touches it (its datasets, itself or its
organisation) with a ``notice`` message in its mailbox. The envelope is checked like every
message (the hub's pinned key, recipient, expiry, nonce); the notice inside carries its own
signature by the hub, which is checked here too and kept with it in ``notices.sqlite``, so the
datasite's record of what it was told stays verifiable after the message is gone. A notice
that fails either check is refused and not recorded. The reply acknowledges it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rfc8785

from ndl.core.keys import verify_signature
from ndl.core.private import private_file

log = logging.getLogger("ndl.datasite")
KIND = "notice"
FILE = "notices.sqlite"
EVENTS = ("raised", "contained", "closed")
SEVERITIES = ("low", "medium", "high", "critical")
_lock = threading.Lock()


@dataclass(frozen=True)
class ReceivedNotice:
    incident: int
    event: str
    severity: str
    state: str
    title: str
    touches: list[str]
    at: str
    signature: str
    message_id: str
    received: float

    def to_json(self) -> dict[str, Any]:
        return {"incident": self.incident, "event": self.event, "severity": self.severity,
                "state": self.state, "title": self.title, "touches": self.touches,
                "at": self.at, "signature": self.signature, "message_id": self.message_id,
                "received": self.received}


def _db(root: Path) -> sqlite3.Connection:
    db = sqlite3.connect(private_file(root / FILE), isolation_level=None)
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS notices (message_id TEXT PRIMARY KEY, "
               "incident INTEGER NOT NULL, event TEXT NOT NULL, notice TEXT NOT NULL, "
               "sig TEXT NOT NULL, received REAL NOT NULL)")
    return db


def _problem(notice: Any) -> str | None:
    """What is wrong with a notice's shape, or None."""
    if not isinstance(notice, dict):
        return "the notice is not an object"
    if not isinstance(notice.get("incident"), int) or isinstance(notice.get("incident"), bool):
        return "the notice names no incident number"
    if notice.get("event") not in EVENTS or notice.get("severity") not in SEVERITIES:
        return "the notice's event or severity is not one ndl knows"
    title, touches = notice.get("title"), notice.get("touches")
    if not isinstance(title, str) or len(title) > 200:
        return "the notice's title is missing or too long"
    if not isinstance(touches, list) or len(touches) > 200 or not all(
            isinstance(t, str) and len(t) <= 300 for t in touches):
        return "the notice's list of what it touches is malformed"
    return None


def receive(root: Path, hub_keys: str | list[str] | None, body: dict[str, Any]
            ) -> dict[str, Any]:
    """Check a notice's own signature and shape, keep it, and return the acknowledgement."""
    notice, sig = body.get("notice"), body.get("notice_sig")
    keys = [hub_keys] if isinstance(hub_keys, str) else list(hub_keys or [])
    problem = _problem(notice)
    if problem is None and not (isinstance(sig, str) and any(
            verify_signature(k, sig, rfc8785.dumps(notice)) for k in keys)):
        problem = "the notice is not signed by the hub's key"
    if problem is not None:
        log.warning("refused an incident notice: %s", problem)
        return {"ok": False, "error": {"code": "envelope_rejected",
                                       "message": f"notice refused: {problem}"}}
    assert isinstance(notice, dict) and isinstance(sig, str)
    message_id = str(body.get("message_id"))
    with _lock:
        db = _db(root)
        try:
            db.execute("INSERT OR IGNORE INTO notices VALUES (?, ?, ?, ?, ?, ?)",
                       (message_id, notice["incident"], notice["event"],
                        json.dumps(notice, sort_keys=True), sig, time.time()))
        finally:
            db.close()
    log.warning("incident %s %s (severity %s) touches %s: %s", notice["incident"],
                notice["event"], notice["severity"], ", ".join(notice["touches"]) or "us",
                notice["title"])
    return {"ok": True, "result": {"recorded": notice["incident"], "event": notice["event"]}}


def received(root: Path, limit: int = 500) -> list[ReceivedNotice]:
    """The notices this datasite has kept, newest first."""
    if not (root / FILE).exists():
        return []
    with _lock:
        db = _db(root)
        try:
            rows = db.execute("SELECT message_id, notice, sig, received FROM notices "
                              "ORDER BY received DESC LIMIT ?", (limit,)).fetchall()
        finally:
            db.close()
    out = []
    for message_id, raw, sig, at in rows:
        n = json.loads(raw)
        out.append(ReceivedNotice(int(n["incident"]), str(n["event"]), str(n["severity"]),
                                  str(n.get("state", "")), str(n["title"]),
                                  [str(t) for t in n["touches"]], str(n.get("at", "")),
                                  str(sig), str(message_id), float(at)))
    return out


def verify_kept(root: Path, hub_keys: str | list[str]) -> list[int]:
    """The incidents whose kept notices no longer match their signatures (edited here)."""
    keys = [hub_keys] if isinstance(hub_keys, str) else list(hub_keys)
    bad = []
    for n in received(root, limit=100_000):
        notice: dict[str, Any] = {"incident": n.incident, "event": n.event, "severity": n.severity,
                  "state": n.state, "title": n.title, "touches": n.touches, "at": n.at}
        if not any(verify_signature(k, n.signature, rfc8785.dumps(notice)) for k in keys):
            bad.append(n.incident)
    return bad
