"""ndl: a federated National Data Library.

The public Python API is what this module exports; everything else is internal and may
change. ``tests/unit/test_public_api.py`` fails when this surface changes by accident.
"""

from ndl.client import Client, QueryAnswer
from ndl.core.errors import (
    AuthenticationRequired,
    BudgetExhausted,
    Conflict,
    EnvelopeRejected,
    InternalError,
    InvalidInput,
    NdlError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
    UserError,
)

__version__ = "0.1.0"

__all__ = [
    "AuthenticationRequired",
    "BudgetExhausted",
    "Client",
    "Conflict",
    "EnvelopeRejected",
    "InternalError",
    "InvalidInput",
    "NdlError",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "QueryAnswer",
    "RateLimited",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "UserError",
    "__version__",
]
