"""ndl: a federated National Data Library.

The public Python API is what this module exports; everything else is internal and may
change. ``tests/unit/test_public_api.py`` fails when this surface changes by accident.
"""

from ndl.client import Client, JobView, QueryAnswer, Work, WorkResult
from ndl.core.errors import (
    AuthenticationRequired,
    BudgetExhausted,
    Cancelled,
    Conflict,
    EnvelopeRejected,
    InternalError,
    InvalidInput,
    JobFailed,
    NdlError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    SandboxUnavailable,
    UpstreamTimeout,
    UpstreamUnavailable,
    UserError,
)

__version__ = "0.1.0"

__all__ = [
    "AuthenticationRequired",
    "BudgetExhausted",
    "Cancelled",
    "Client",
    "Conflict",
    "EnvelopeRejected",
    "InternalError",
    "InvalidInput",
    "JobFailed",
    "JobView",
    "NdlError",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "QueryAnswer",
    "RateLimited",
    "SandboxUnavailable",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "UserError",
    "Work",
    "WorkResult",
    "__version__",
]
