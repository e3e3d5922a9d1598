"""Which ``Host`` and ``Origin`` the hub's ``/mcp`` answers to: the guard against DNS rebinding.

A web page on ``evil.example`` whose name is re-pointed at the hub's address can make a
visitor's browser POST to ``/mcp``; the browser then sends ``Host: evil.example`` and an
``Origin`` of that page. Answering only our own names stops the page from reaching tools from
inside the visitor's network. Loopback names are always allowed; a hub reached by any other
name lists it in ``HubSettings.mcp_allowed_hosts`` (``ndl hub --mcp-allowed-host``), a bare
name allowing every port. ``*`` turns the check off, for a proxy that checks it already.
"""

from __future__ import annotations

from collections.abc import Iterable

from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request

from ndl.core.errors import PermissionDenied

LOOPBACK_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost", "[::1]")
ANY_HOST = "*"


def transport_security(hosts: Iterable[str] = ()) -> TransportSecuritySettings:
    """The SDK's settings for loopback plus ``hosts`` (each ``name`` or ``name:port``)."""
    names = list(dict.fromkeys([*LOOPBACK_HOSTS, *(_normal(h) for h in hosts)]))
    if ANY_HOST in names:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    # A name with a port allows that port only; a bare name any port (the SDK's "name:*").
    allowed = [h for n in names for h in ((n,) if _has_port(n) else (n, f"{n}:*"))]
    origins = [f"{scheme}://{h}" for h in allowed for scheme in ("http", "https")]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True,
                                     allowed_hosts=allowed, allowed_origins=origins)


def _normal(host: str) -> str:
    host = host.strip().lower()
    # A bare IPv6 address (the --host given) arrives in Host headers in brackets.
    return f"[{host}]" if host.count(":") > 1 and not host.startswith("[") else host


def _has_port(host: str) -> bool:
    return host.rpartition("]")[2].count(":") == 1 if host.startswith("[") else ":" in host


def _matches(value: str, allowed: list[str]) -> bool:
    return value in allowed or any(
        a.endswith(":*") and value.startswith(a[:-1]) for a in allowed)


def check_host_and_origin(request: Request, settings: TransportSecuritySettings) -> None:
    """Raise PermissionDenied unless the request's Host (and Origin, if any) are allowed.

    The SDK makes the same check inside; doing it first gives the caller the hub's error
    shape and the fix, not a bare "Invalid Host header".
    """
    if not settings.enable_dns_rebinding_protection:
        return
    host = request.headers.get("host", "").lower()
    if not _matches(host, settings.allowed_hosts):
        raise PermissionDenied(
            f"/mcp does not answer to the host name {host!r} (a guard against DNS "
            "rebinding); the hub's operator can allow it with ndl hub --mcp-allowed-host "
            "NAME")
    origin = request.headers.get("origin")
    if origin is not None and not _matches(origin.lower(), settings.allowed_origins):
        raise PermissionDenied(
            f"/mcp refuses requests from web pages at {origin!r}; call it from an MCP client, "
            "or have the hub's operator allow that name with ndl hub --mcp-allowed-host NAME")


__all__ = ["ANY_HOST", "LOOPBACK_HOSTS", "check_host_and_origin", "transport_security"]
