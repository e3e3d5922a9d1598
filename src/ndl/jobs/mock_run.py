"""``ndl run BUNDLE --mock``: the datasite's runner, on the researcher's machine, on mock data.

The same :func:`ndl.jobs.runner.run_job` runs here as at the datasite, with the same sandbox
(bubblewrap when it works), the same two steps and the same disclosure checks under the
default policy, so a bundle that works here works there. The differences are only what the
data is and what is kept: each dataset is either a local file (``--data ID=PATH``: Parquet or
CSV) or the hub's synthetic mock of it, downloaded and cached; nothing goes into a release
ledger, and the full log may be shown (no real row is in it).

Without bubblewrap the job runs in the weaker mode and a notice says so: that is acceptable
only because the data is mock data, and it is never silent.
"""

from __future__ import annotations

import dataclasses
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ndl.catalogue.metadata import ColumnMeta
from ndl.core.errors import InvalidInput, NdlError, SandboxUnavailable
from ndl.jobs.bundle import read_folder
from ndl.jobs.runner import JobInput, JobOutcome, Report, run_job
from ndl.jobs.sandbox import Sandbox, open_sandbox
from ndl.privacy.sdc import SdcPolicy

if TYPE_CHECKING:
    from ndl.hubclient import Client

MOCK_ROWS = 10_000
# A mock changes only when its dataset is republished; a day-old copy is fetched again.
MOCK_CACHE_SECONDS = 24 * 3600
WEAKER_NOTICE = ("bubblewrap not found: running WITHOUT the sandbox; mock data only "
                 "(install bubblewrap to run as the datasite does)")


def _say_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def mock_sandbox(say: Callable[[str], None] = _say_stderr) -> Sandbox:
    """The strict sandbox when bubblewrap works here; else the weaker one, with a notice."""
    try:
        return open_sandbox("strict")
    except SandboxUnavailable as exc:
        say(f"{WEAKER_NOTICE}; why: {exc.message}")
        return open_sandbox("weaker")


def parse_data_args(values: list[str]) -> dict[str, Path]:
    """``ID=PATH`` pairs (from ``--data``) as dataset id → path; a bad one says the fix."""
    out: dict[str, Path] = {}
    for v in values:
        ds, eq, path = v.partition("=")
        if not eq or not ds.strip() or not path.strip():
            raise InvalidInput(f"--data {v!r} is not ID=PATH: write e.g. "
                               "--data dfe/pupils=pupils.parquet")
        if ds.strip() in out:
            raise InvalidInput(f"--data names {ds.strip()!r} twice")
        out[ds.strip()] = Path(path.strip()).expanduser()
    return out


def _local_parquet(ds: str, path: Path, workdir: Path) -> Path:
    """A local file as Parquet: Parquet as it is, CSV converted (types inferred)."""
    if not path.is_file():
        raise InvalidInput(f"--data {ds}={path}: no such file")
    with path.open("rb") as f:
        head = f.read(4)
    if head == b"PAR1":
        return path.resolve()
    if path.suffix.lower() not in (".csv", ".txt"):
        raise InvalidInput(f"--data {ds}={path}: not a Parquet file, nor a .csv; give the "
                           "dataset as Parquet or CSV")
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    try:
        table = pcsv.read_csv(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid and friends
        raise InvalidInput(f"--data {ds}={path}: the CSV could not be read ({exc})") from None
    out = workdir / "data" / (ds.replace("/", "--") + ".parquet")
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    return out


def _hub_mock(ds: str, client: Client, workdir: Path, say: Callable[[str], None]) -> Path:
    cached = workdir / "mocks" / (ds.replace("/", "--") + ".parquet")
    if cached.is_file() and time.time() - cached.stat().st_mtime < MOCK_CACHE_SECONDS:
        say(f"{ds}: the hub's mock data (cached in {cached})")
        return cached
    say(f"{ds}: fetching the hub's mock data (synthetic rows, same columns)")
    return client.fetch_mock(ds, cached, limit=MOCK_ROWS)


def mock_datasets(datasets: list[str], *, data: dict[str, Path] | None, client: Client | None,
                  workdir: Path, say: Callable[[str], None] = _say_stderr) -> dict[str, Path]:
    """Each dataset the bundle names → a Parquet file of mock data (local or the hub's)."""
    data = dict(data or {})
    extra = sorted(set(data) - set(datasets))
    if extra:
        raise InvalidInput(f"--data names {extra[0]!r}, which the bundle does not read; its "
                           f"datasets are {', '.join(datasets)}")
    found: dict[str, Path] = {}
    for ds in datasets:
        if ds in data:
            found[ds] = _local_parquet(ds, data[ds], workdir).resolve()
        elif client is not None:
            found[ds] = _hub_mock(ds, client, workdir, say).resolve()
        else:
            raise InvalidInput(f"no mock data for {ds}: give a file with --data {ds}=PATH "
                               "(Parquet or CSV), or sign in to a hub ('ndl login') to use "
                               "its mock")
    return found


def _catalogue_columns(datasets: list[str], client: Client | None) -> tuple[ColumnMeta, ...]:
    """The datasets' columns as the catalogue tags them, so the mock run applies the same
    group-key rules as the datasite (none without a hub: said in the report's findings)."""
    if client is None:
        return ()
    found: list[ColumnMeta] = []
    for ds in datasets:
        try:
            meta = client.dataset(ds)
        except NdlError:
            continue  # a dataset the hub does not know: its mock came from --data
        found.extend(ColumnMeta.model_validate(c) for c in meta.get("columns", []))
    return tuple(found)


def run_mock(bundle_dir: Path, *, data: dict[str, Path] | None, client: Client | None,
             workdir: Path, sandbox: Sandbox | None = None,
             say: Callable[[str], None] = _say_stderr,
             report: Report = lambda f, m: None) -> JobOutcome:
    """Run a bundle on mock data with the datasite's own runner and return its outcome.

    The bundle is checked first (its errors name the file and line). Each dataset comes from
    ``data`` (id → a local Parquet or CSV file) or else the hub's mock through ``client``.
    The sandbox is the strict one when bubblewrap works, otherwise the weaker one, announced
    through ``say``. Nothing is recorded in a release ledger; the policy is the default one.
    """
    bundle = read_folder(Path(bundle_dir))
    workdir = Path(workdir).resolve()  # bubblewrap mounts need absolute paths
    workdir.mkdir(parents=True, exist_ok=True)
    datasets = mock_datasets(bundle.manifest.datasets, data=data, client=client,
                             workdir=workdir, say=say)
    box = sandbox if sandbox is not None else mock_sandbox(say)
    job = JobInput(job_id=f"mock-{secrets.token_hex(4)}", bundle=bundle, datasets=datasets,
                   project="mock", policy=SdcPolicy(), mock=True,
                   columns=_catalogue_columns(bundle.manifest.datasets, client))
    runs = workdir / "runs"
    try:
        outcome = run_job(job, sandbox=box, ledger=None, workdir=runs, report=report)
        if outcome.archive is None:
            return outcome
        # Keep only the outputs' ZIP (the caller unpacks it); the run's folders go.
        kept = workdir / "archives" / f"{job.job_id}.zip"
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(outcome.archive, kept)
        return dataclasses.replace(outcome, archive=kept)
    finally:
        shutil.rmtree(runs / job.job_id, ignore_errors=True)
