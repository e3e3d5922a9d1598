"""The public surface is deliberate: a change here must be a decision, not an accident."""

from __future__ import annotations

import ndl
from ndl.core import errors

# Work and WorkResult (issue 10): long work's typed view, returned by Client.work and friends;
# Cancelled: the error a cancelled work item stands for.
# JobView (controlled jobs): what Client.submit_job, job and wait_job return; JobFailed and
# SandboxUnavailable: the errors of a failed job and of a missing sandbox.
# Suspended (issue 13): the error a suspended user's or datasite's requests get; KeyLocked: a
# key at rest whose passphrase is missing or wrong; InsecureTransport: a plain-http hub URL.
EXPECTED = [
    "AuthenticationRequired", "BudgetExhausted", "Cancelled", "Client", "Conflict",
    "EnvelopeRejected", "InsecureTransport", "InternalError", "InvalidInput", "JobFailed",
    "JobView", "KeyLocked", "NdlError",
    "NotFound", "PayloadTooLarge", "PermissionDenied", "QueryAnswer", "RateLimited",
    "SandboxUnavailable", "Suspended", "UpstreamTimeout", "UpstreamUnavailable", "UserError",
    "Work", "WorkResult", "__version__",
]


def test_public_names_are_exactly_these() -> None:
    assert ndl.__all__ == sorted(ndl.__all__), "keep __all__ sorted"
    assert ndl.__all__ == EXPECTED


def test_every_public_name_exists() -> None:
    for name in ndl.__all__:
        assert getattr(ndl, name) is not None


def test_every_error_is_exported_and_documented() -> None:
    classes = [c for c in vars(errors).values()
               if isinstance(c, type) and issubclass(c, errors.NdlError)]
    doc = errors.__doc__ or ""
    for cls in classes:
        assert cls.__name__ in ndl.__all__, f"{cls.__name__} is not exported"
        assert cls.__name__ in doc, f"{cls.__name__} is missing from the error tree docstring"
        if cls not in (errors.NdlError,):
            assert errors.ERRORS_BY_CODE[cls.code] is cls


def test_error_codes_map_to_distinct_http_statuses_per_family() -> None:
    assert errors.UserError.http_status < 500 <= errors.InternalError.http_status
    for cls in errors.ERRORS_BY_CODE.values():
        if issubclass(cls, errors.UserError):
            assert 400 <= cls.http_status < 500 and cls.exit_code < 10
        elif issubclass(cls, errors.InternalError):
            assert cls.http_status >= 500 and cls.exit_code >= 10
