"""The hub keys a datasite believes: the one it pinned at registration, then each key a
believed key endorsed in a rotation, each with when it may sign, and revocations a believed
key signed (:func:`ndl.federation.key_service.follow_hub_keys`). Kept in ``datasite.json``
(``hub_keys``; ``hub_key`` stays the current one for code that wants a single key)."""

from __future__ import annotations

import logging
import time

import httpx

from ndl.core.keys import KeyValidity, fingerprint
from ndl.datasite.store import DatasiteStore
from ndl.federation.key_service import follow_hub_keys
from ndl.hubclient import Client

log = logging.getLogger("ndl.datasite")
# An envelope no believed key opens makes the datasite read the hub's keys, at most this often
# (a forger sending junk must not make it hammer the hub).
LOOK_EVERY = 5.0


class HubKeyRing:
    def __init__(self, store: DatasiteStore, http: httpx.Client) -> None:
        self.store, self.http = store, http
        self._looked = 0.0
        self._stamp: object = None

    def keys(self) -> list[KeyValidity]:
        cfg = self.store.config()
        ring = cfg.get("hub_keys")
        if isinstance(ring, list) and ring:
            return [KeyValidity.from_json(k) for k in ring]
        # A datasite registered before keys rotated: its one pinned key, valid from the start.
        return [KeyValidity(str(cfg["hub_key"]), 0)] if cfg.get("hub_key") else []

    def pin(self, public_key: str) -> list[dict[str, object]]:
        """The ring to save at registration: the hub key just pinned."""
        return [KeyValidity(public_key, 0).to_json()]

    def seen(self, stamp: object) -> None:
        """A poll answer's mark of the hub's keys: read them again when it changes."""
        if stamp is not None and stamp != self._stamp:
            self.refresh()
            self._stamp = stamp

    def refresh(self, *, force: bool = True) -> bool:
        """Read the hub's key document and believe what a believed key signed; True if
        anything changed."""
        now = time.monotonic()
        if not force and now - self._looked < LOOK_EVERY:
            return False
        self._looked = now
        known = self.keys()
        if not known:
            return False
        ring = follow_hub_keys(known, Client.over(self.http)._request(
            "GET", "/api/federation/hub-key"))
        if ring == known:
            return False
        current = [k for k in ring if k.retire_at is None and k.revoked_at is None]
        self.store.save_config(hub_keys=[k.to_json() for k in ring],
                               hub_key=(current[-1] if current else ring[-1]).public_key)
        log.info("hub keys now: %s", ", ".join(
            f"{fingerprint(k.public_key)}"
            f"{' (revoked)' if k.revoked_at else ' (retiring)' if k.retire_at else ''}"
            for k in ring))
        return True
