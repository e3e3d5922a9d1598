"""ndl: a federated National Data Library.

The public Python API is what this module exports; everything else is internal and may
change. ``tests/unit/test_public_api.py`` fails when this surface changes by accident.
"""

from typing import TYPE_CHECKING, Any

from ndl.core.errors import (
    AuthenticationRequired,
    BudgetExhausted,
    Cancelled,
    Conflict,
    EnvelopeRejected,
    InsecureTransport,
    InternalError,
    InvalidInput,
    JobFailed,
    KeyLocked,
    NdlError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    SandboxUnavailable,
    Suspended,
    UpstreamTimeout,
    UpstreamUnavailable,
    UserError,
)

if TYPE_CHECKING:
    from ndl.client import Client, JobView, QueryAnswer, Work, WorkResult

__version__ = "0.1.0"

# The client (and httpx behind it) is imported on first use, not by ``import ndl``: code run in
# the controlled-tier sandbox imports ndl.job and never needs it, and it costs ~150 ms there.
_CLIENT_NAMES = frozenset({"Client", "JobView", "QueryAnswer", "Work", "WorkResult"})


def __getattr__(name: str) -> Any:
    if name in _CLIENT_NAMES:
        from ndl import client

        value = getattr(client, name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'ndl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _CLIENT_NAMES)


__all__ = [
    "AuthenticationRequired",
    "BudgetExhausted",
    "Cancelled",
    "Client",
    "Conflict",
    "EnvelopeRejected",
    "InsecureTransport",
    "InternalError",
    "InvalidInput",
    "JobFailed",
    "JobView",
    "KeyLocked",
    "NdlError",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "QueryAnswer",
    "RateLimited",
    "SandboxUnavailable",
    "Suspended",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "UserError",
    "Work",
    "WorkResult",
    "__version__",
]
