"""The one HTTP client for the hub's JSON API: the SDK, the CLI, MCP and datasites use it.

:class:`Client` (sync) and :class:`AsyncClient` (async) have the same methods, each defined
once in ``_api.py``. Ids are checked and quoted before they enter a URL; a malformed one
raises :class:`~ndl.core.errors.InvalidInput` and sends nothing. Every refusal from the hub
comes back as the matching error from :mod:`ndl.core.errors`.
"""

from ndl.hubclient._api import JobDiff, check_code_sha256, check_job_id
from ndl.hubclient._call import Call, QueryAnswer
from ndl.hubclient._drivers import DEFAULT_HUB, AsyncClient, Client, HubApi, Operation
from ndl.hubclient._ids import (
    check_dataset_id,
    check_federation_path,
    check_grant_id,
    check_number_id,
    check_org_id,
    check_project_id,
    check_work_id,
)
from ndl.hubclient._jobs import extract_outputs
from ndl.hubclient._long import outcome_error, safe_filename
from ndl.hubclient._work import SseEvent, Work, WorkResult, parse_sse, state_events
from ndl.jobs.views import JobView

__all__ = [
    "DEFAULT_HUB",
    "AsyncClient",
    "Call",
    "Client",
    "HubApi",
    "JobDiff",
    "JobView",
    "Operation",
    "QueryAnswer",
    "SseEvent",
    "Work",
    "WorkResult",
    "check_code_sha256",
    "check_dataset_id",
    "check_federation_path",
    "check_grant_id",
    "check_job_id",
    "check_number_id",
    "check_org_id",
    "check_project_id",
    "check_work_id",
    "extract_outputs",
    "outcome_error",
    "parse_sse",
    "safe_filename",
    "state_events",
]
