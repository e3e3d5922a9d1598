"""The Python SDK: ``ndl.Client(url, token)``.

Results come back as plain dicts for metadata and as :class:`QueryAnswer` for queries, which
converts to a pyarrow Table or a pandas DataFrame on demand. Long work (an export of a whole
open dataset, whatever its size) is a :class:`Work` item: ``client.export(dataset)`` queues
it, waits with a progress bar and downloads the file; ``work``, ``work_list``,
``wait_work``, ``cancel_work`` and ``fetch_work`` handle items one step at a time.
Controlled jobs are :class:`JobView` items: ``submit_job(folder, project=...)``, ``job``,
``wait_job`` (until a person must act or it is final), ``job_outputs`` (download and unpack).

The client itself lives in :mod:`ndl.hubclient`, the one HTTP client for the hub's API that
the CLI, MCP and datasites use too; this module is its public name. To add an operation,
write it once in ``ndl/hubclient/_api.py`` and list it in ``HubApi`` (``_drivers.py``): it
then exists here and on ``ndl.hubclient.AsyncClient`` alike.
"""

from __future__ import annotations

from ndl.hubclient import (
    DEFAULT_HUB,
    AsyncClient,
    Client,
    JobDiff,
    JobView,
    QueryAnswer,
    Work,
    WorkResult,
)

__all__ = ["DEFAULT_HUB", "AsyncClient", "Client", "JobDiff", "JobView", "QueryAnswer", "Work",
           "WorkResult"]
