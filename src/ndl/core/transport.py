"""Which hub URLs a client may talk to: https://, or plain http:// to this machine when a
loopback demo says so explicitly.

Tokens, passwords and signed envelopes cross the connection; over plain HTTP anyone on the
path reads the first two and sees the rest. So the SDK, the CLI, the datasite agent and the
party client refuse ``http://`` unless ``NDL_ALLOW_HTTP_LOOPBACK=1`` (or the
``allow_http_loopback`` option) is set, and even then only to loopback hosts (127.0.0.0/8,
::1, localhost), where no network is crossed. ``ndl demo`` and ``ndl.testing`` set it.

``NDL_ALLOW_HTTP_HOSTS`` (hosts by name, comma-separated) allows plain http:// to exactly
those hosts: for isolated test networks (the network-namespace tests' veth addresses), never
for a deployment.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from ndl.core.errors import InsecureTransport

LOOPBACK_ENV = "NDL_ALLOW_HTTP_LOOPBACK"
HOSTS_ENV = "NDL_ALLOW_HTTP_HOSTS"
_YES = frozenset({"1", "true", "yes", "on"})


def loopback_allowed(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment says plain http:// to loopback is a demo's choice."""
    env = os.environ if environ is None else environ
    return env.get(LOOPBACK_ENV, "").strip().lower() in _YES


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_hub_url(url: str, *, allow_http_loopback: bool | None = None) -> str:
    """Return ``url`` if a client may use it; raise InsecureTransport (saying the fix) if not.

    ``allow_http_loopback`` None reads ``NDL_ALLOW_HTTP_LOOPBACK`` from the environment.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "http":
        return url
    named = {h.strip().lower() for h in os.environ.get(HOSTS_ENV, "").split(",") if h.strip()}
    if parts.hostname and parts.hostname.lower() in named:
        return url
    allowed = loopback_allowed() if allow_http_loopback is None else allow_http_loopback
    host = parts.hostname
    if not allowed:
        raise InsecureTransport(
            f"refusing the hub URL {url[:200]}: plain http:// would send tokens and passwords "
            "unencrypted. Use the hub's https:// URL; for a demo on this machine only, set "
            f"{LOOPBACK_ENV}=1 (it allows http:// to 127.0.0.1, ::1 or localhost)")
    if not is_loopback(host):
        raise InsecureTransport(
            f"refusing the hub URL {url[:200]}: {LOOPBACK_ENV} allows plain http:// only to "
            f"this machine (127.0.0.0/8, ::1, localhost), not to {host!r}. Use the hub's "
            "https:// URL")
    return url


__all__ = ["HOSTS_ENV", "LOOPBACK_ENV", "check_hub_url", "is_loopback", "loopback_allowed"]
