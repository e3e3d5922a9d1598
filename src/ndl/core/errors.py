"""The ndl error tree.

Every error ndl raises on purpose is an :class:`NdlError`. They split in two:

* :class:`UserError` — the caller can fix it (bad input, missing token, unknown dataset…).
  Each subclass maps to exactly one HTTP status and one CLI exit code, and its message says
  what went wrong, where, and how to fix it.
* :class:`InternalError` — something in ndl or its environment broke (a datasite vanished,
  the database is unreachable). The message says what to check.

Tree::

    NdlError
    ├── UserError                    HTTP 400, exit 2
    │   ├── InvalidInput             HTTP 422, exit 2
    │   ├── AuthenticationRequired   HTTP 401, exit 3
    │   ├── PermissionDenied         HTTP 403, exit 4
    │   │   └── Suspended            HTTP 403, exit 4  (an admin suspended the user or datasite)
    │   ├── NotFound                 HTTP 404, exit 5
    │   ├── Conflict                 HTTP 409, exit 6
    │   │   └── Cancelled            HTTP 409, exit 6  (the work was cancelled)
    │   ├── PayloadTooLarge          HTTP 413, exit 2
    │   ├── RateLimited              HTTP 429, exit 7
    │   ├── BudgetExhausted          HTTP 403, exit 8  (a privacy budget would be overspent)
    │   ├── EnvelopeRejected         HTTP 401, exit 3  (forged, altered, expired, replayed)
    │   ├── KeyLocked                HTTP 400, exit 3  (a key at rest: no or wrong passphrase)
    │   ├── InsecureTransport        HTTP 400, exit 2  (plain http:// hub URL, not a loopback demo)
    │   └── JobFailed                HTTP 422, exit 9  (a controlled job's code failed)
    └── InternalError                HTTP 500, exit 10
        ├── UpstreamUnavailable      HTTP 503, exit 11 (a datasite or hub did not answer)
        │   └── SandboxUnavailable   HTTP 503, exit 11 (no bubblewrap, no weaker mode chosen)
        └── UpstreamTimeout          HTTP 504, exit 11
"""

from __future__ import annotations

from typing import Any, ClassVar


class NdlError(Exception):
    """Base of every error ndl raises on purpose."""

    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 10
    code: ClassVar[str] = "error"

    def __init__(self, message: str, *, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def to_json(self) -> dict[str, Any]:
        """The one error envelope every ndl service returns."""
        body: dict[str, Any] = {"error": {"code": self.code, "message": self.message}}
        if self.detail is not None:
            body["error"]["detail"] = self.detail
        return body


class UserError(NdlError):
    http_status = 400
    exit_code = 2
    code = "bad_request"


class InvalidInput(UserError):
    http_status = 422
    code = "invalid_input"


class AuthenticationRequired(UserError):
    http_status = 401
    exit_code = 3
    code = "authentication_required"


class PermissionDenied(UserError):
    http_status = 403
    exit_code = 4
    code = "permission_denied"


class Suspended(PermissionDenied):
    """The user or datasite making the request is suspended by an admin; nothing it asks is
    done until an admin reinstates it."""

    code = "suspended"


class NotFound(UserError):
    http_status = 404
    exit_code = 5
    code = "not_found"


class Conflict(UserError):
    http_status = 409
    exit_code = 6
    code = "conflict"


class Cancelled(Conflict):
    """Work stopped because its requester (or a party to it) cancelled it."""

    code = "cancelled"


class PayloadTooLarge(UserError):
    http_status = 413
    code = "payload_too_large"


class RateLimited(UserError):
    http_status = 429
    exit_code = 7
    code = "rate_limited"


class BudgetExhausted(UserError):
    http_status = 403
    exit_code = 8
    code = "budget_exhausted"


class EnvelopeRejected(UserError):
    http_status = 401
    exit_code = 3
    code = "envelope_rejected"


class KeyLocked(UserError):
    """A key or secret at rest is encrypted and the passphrase is missing or wrong."""

    exit_code = 3
    code = "key_locked"


class InsecureTransport(UserError):
    """A hub URL over plain http:// that is not an allowed loopback demo."""

    code = "insecure_transport"


class JobFailed(UserError):
    """A controlled job's code failed or was stopped; the message is researcher-safe (it never
    repeats the job's own error text, which could hold a value read from the data)."""

    http_status = 422
    exit_code = 9
    code = "job_failed"


class InternalError(NdlError):
    code = "internal_error"


class UpstreamUnavailable(InternalError):
    http_status = 503
    exit_code = 11
    code = "upstream_unavailable"


class SandboxUnavailable(UpstreamUnavailable):
    """The strict sandbox cannot run here; the message names what is missing and the fix."""

    code = "sandbox_unavailable"


class UpstreamTimeout(InternalError):
    http_status = 504
    exit_code = 11
    code = "upstream_timeout"


ERRORS_BY_CODE: dict[str, type[NdlError]] = {
    cls.code: cls
    for cls in (
        NdlError, UserError, InvalidInput, AuthenticationRequired, PermissionDenied, Suspended,
        NotFound,
        Conflict, Cancelled, PayloadTooLarge, RateLimited, BudgetExhausted, EnvelopeRejected,
        JobFailed, KeyLocked, InsecureTransport, InternalError, UpstreamUnavailable,
        SandboxUnavailable, UpstreamTimeout,
    )
}


def error_from_json(status: int, body: Any) -> NdlError:
    """Rebuild the typed error from a service's JSON envelope (used by the SDK and datasite)."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        cls = ERRORS_BY_CODE.get(str(err.get("code")), NdlError)
        return cls(str(err.get("message", "")), detail=err.get("detail"))
    if status >= 500:
        return UpstreamUnavailable(f"the service answered HTTP {status} with no ndl error body")
    return UserError(f"the service answered HTTP {status}: {str(body)[:200]}")
