"""The ``job`` work kind at the datasite: check the approval and grants, run, check outputs.

Nothing is taken on the hub's word. Before a row is read the datasite checks, with the hub key
it pinned: the approval is the hub's and names the SHA-256 of the very files received, this
job and these datasets; each dataset is controlled data and has a grant, signed by the hub and
not revoked, for the job's project and author. Then :func:`ndl.jobs.runner.run_job` runs the
bundle in the sandbox (strict, or the operator's logged weaker mode), recomputes its outputs,
applies this datasite's disclosure policy and release ledger, and the ZIP becomes the work
item's result blob.

A restart mid-job re-runs it from the start (the run folder is cleared first); the release
ledger records each table once per job, so a re-run never counts twice, and the work item's
exactly-once delivery means its outputs reach the hub once.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ndl.access.grants import check_grant
from ndl.core import tiers
from ndl.core.errors import Cancelled, InvalidInput, JobFailed, PermissionDenied
from ndl.jobs import bundle as bundles
from ndl.jobs.approval import check_approval
from ndl.jobs.runner import SANDBOX_TMP, JobInput, run_job, step_env
from ndl.jobs.sandbox import BubblewrapSandbox, Limits, Sandbox, open_sandbox
from ndl.jobs.warm import WarmPool
from ndl.privacy.sdc import SdcPolicy
from ndl.privacy.sdc_ledger import ReleaseLedger

if TYPE_CHECKING:
    from collections.abc import Callable

    from ndl.datasite.agent import Agent
    from ndl.datasite.jobs import Produced, Report
    from ndl.datasite.store import LocalDataset

log = logging.getLogger("ndl.datasite")


class Controlled:
    """The sandbox, release ledger and disclosure policy of one datasite."""

    def __init__(self, root: Path, *, mode: str = "strict") -> None:
        if mode not in ("strict", "weaker"):
            raise ValueError("sandbox mode is 'strict' or 'weaker'")
        self.mode = mode
        self.workdir = root / "jobs"
        self.ledger = ReleaseLedger(root / "releases.sqlite")
        self._sandbox: Sandbox | None = None
        self._warm: WarmPool | None = None
        self._closed = False
        self._lock = threading.Lock()

    def sandbox(self) -> Sandbox:
        """Opened on first use: a datasite without controlled data never needs bubblewrap."""
        with self._lock:
            if self._sandbox is None:
                self._sandbox = open_sandbox(self.mode)  # type: ignore[arg-type]
                if self._sandbox.mode != "bubblewrap":
                    log.warning("controlled jobs run in the WEAKER sandbox (no bubblewrap): "
                                "every job, its page and the register say so")
            return self._sandbox

    def warm(self, limits: Limits) -> WarmPool | None:
        """The datasite's warm sandboxes (bubblewrap only), made on the first job and readied
        for ``limits``; None in the weaker mode or once closed."""
        sandbox = self.sandbox()
        with self._lock:
            if self._closed or not isinstance(sandbox, BubblewrapSandbox):
                return None
            if self._warm is None:
                self._warm = WarmPool(sandbox, self.workdir / ".warm",
                                      env=step_env(SANDBOX_TMP))
            pool = self._warm
        pool.prepare(limits)
        return pool

    def close(self) -> None:
        """Stop the warm sandboxes; a job after this runs cold."""
        with self._lock:
            pool, self._warm, self._closed = self._warm, None, True
        if pool is not None:
            pool.close()


def policy_for(agent: Agent, datasets: list[Any]) -> SdcPolicy:
    """This datasite's disclosure policy (config ``sdc``), never below a dataset's own
    minimum cell count."""
    raw = agent.store.config().get("sdc")
    base = SdcPolicy.from_json(raw) if raw else SdcPolicy()
    floor = max([base.threshold, *(d.policy.min_cell_count for d in datasets)])
    if floor == base.threshold:
        return base
    return SdcPolicy.from_json({**base.to_json(), "threshold": floor})


def limits_for(agent: Agent) -> Limits:
    """This datasite's limits for each job step (config ``job_limits``; defaults otherwise)."""
    raw = agent.store.config().get("job_limits") or {}
    if not isinstance(raw, dict):
        raise InvalidInput("config job_limits must be a mapping such as {\"wall_seconds\": 600}")
    known = {f.name: f.type for f in fields(Limits)}
    for key, value in raw.items():
        if key not in known:
            raise InvalidInput(f"config job_limits: unknown limit {key!r}; the limits are "
                               f"{', '.join(sorted(known))}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 \
                or value != value or value == float("inf"):
            raise InvalidInput(f"config job_limits.{key} must be a positive number")
    chosen: dict[str, Any] = {k: (float(v) if k == "wall_seconds" else int(v))
                              for k, v in raw.items()}
    return replace(Limits(), **chosen)


def spark_rows(agent: Agent, datasets: dict[str, LocalDataset]
               ) -> dict[str, Callable[[Path], None]]:
    """For each granted dataset Spark reads where it lives: how the datasite's own Spark (its
    engine, holding the cluster's address) writes the granted rows into the job's run folder.
    The job gets those rows and nothing of the cluster's."""
    from ndl.jobs.spark_jobs import write_rows

    def writer(ds: LocalDataset) -> Callable[[Path], None]:
        def write(folder: Path) -> None:
            try:
                write_rows(agent.engine, ds, folder)
            except Exception as exc:
                scrub = getattr(agent.engine, "scrub", None)
                why = scrub(str(exc), ds) if callable(scrub) else type(exc).__name__
                log.warning("Spark could not write %s for a job: %s", ds.meta.name, exc)
                raise JobFailed(f"the datasite could not read {ds.meta.name} through Spark "
                                f"({why})") from exc
        return write

    return {i: writer(ds) for i, ds in datasets.items() if ds.source is not None}


def run(agent: Agent, body: dict[str, Any], report: Report, cancelled: threading.Event,
        out: Path) -> Produced:
    from ndl.datasite.jobs import Produced

    params = body.get("params")
    if not isinstance(params, dict):
        raise PermissionDenied("a job arrived without its parameters")
    hub_key = agent.hub_keys()  # every hub key believed, with when each could sign
    if not hub_key:
        raise PermissionDenied("this datasite has no pinned hub key; re-register it")
    b = bundles.from_files(params.get("files"))
    names = params.get("datasets")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise PermissionDenied("a job names its datasets")
    ids = [f"{agent.id}/{n}" for n in names]
    check_approval(params.get("approval"), hub_key, job_id=str(params.get("job_id")),
                   code_sha256=b.code_sha256, datasets=ids)
    datasets = [agent.store.dataset(n) for n in names]
    grants = params.get("grants")
    if not isinstance(grants, list) or len(grants) != len(datasets):
        raise PermissionDenied("a job carries one signed grant per dataset")
    for ds, ds_id, grant in zip(datasets, ids, grants, strict=True):
        tiers.require_operation(ds.meta.tier, tiers.WORK_OPERATIONS["job"],
                                dataset=ds.meta.name)
        check_grant(grant, hub_key, dataset=ds_id, project=str(params.get("project")),
                    member=str(params.get("member")), revoked=agent.store.revoked_grants())
    sandbox = agent.controlled.sandbox()  # SandboxUnavailable: refused, with the fix
    job_id = str(params["job_id"])
    limits = limits_for(agent)
    outcome = run_job(
        JobInput(job_id=job_id, bundle=b,
                 datasets={i: ds.path for i, ds in zip(ids, datasets, strict=True)},
                 project=str(params.get("project")), policy=policy_for(agent, datasets),
                 limits=limits,
                 columns=tuple(c for ds in datasets for c in ds.meta.columns),
                 spark_rows=spark_rows(agent, dict(zip(ids, datasets, strict=True)))),
        sandbox=sandbox, ledger=agent.controlled.ledger, workdir=agent.controlled.workdir,
        cancel=cancelled, report=report, warm=agent.controlled.warm(limits))
    if cancelled.is_set():
        raise Cancelled("the job was cancelled by its author")
    if not outcome.ok or outcome.archive is None:
        log.info("job %s failed: %s", job_id, outcome.error)
        raise JobFailed(outcome.error or "the job failed")
    final = out.with_name(out.name + ".zip")
    outcome.archive.replace(final)
    return Produced(final, "application/zip", f"{b.manifest.name}-outputs.zip",
                    len(b.manifest.outputs))
