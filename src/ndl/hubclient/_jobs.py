"""Waiting for a controlled job and downloading its outputs (the sync client's extra methods).

:class:`JobWork` is mixed into :class:`ndl.hubclient.Client`, beside
:class:`~ndl.hubclient._long.LongWork`. A job spends most of its life waiting for people (a
steward, an output checker), so :meth:`JobWork.wait_job` stops at the first state that needs a
human as well as at a final one, and says which. Outputs come as one ZIP, downloaded resumably
and checked against the SHA-256 the hub names, then unpacked by :func:`extract_outputs`, which
refuses any entry that could write outside the chosen folder.
"""

from __future__ import annotations

import stat
import time
import zipfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from ndl.core.errors import (
    Conflict,
    InvalidInput,
    PayloadTooLarge,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from ndl.hubclient import _api as api
from ndl.hubclient._call import reaching
from ndl.hubclient._ids import check_dataset_id, dataset_path
from ndl.hubclient._long import DOWNLOAD_RETRIES, _BytesBar, _error_of, _say, polled
from ndl.jobs.views import FINAL, JobView

if TYPE_CHECKING:
    from rich.progress import Progress

    from ndl.hubclient._call import Call

T = TypeVar("T")
# A job waits minutes to hours (people review it): polling every 2 s is prompt and cheap.
JOB_POLL_SECONDS = 2.0
# States where nothing happens until a person acts, or nothing will happen again.
WAITS_FOR_PEOPLE = frozenset({"awaiting_review", "awaiting_output_check"})
STOP_STATES = FINAL | WAITS_FOR_PEOPLE
# Outputs are at most the sandbox's output limit (200 MiB by default) plus the report: a ZIP
# claiming more than this unpacked is not one of the runner's.
MAX_EXTRACT_BYTES = 1 << 30
MAX_ENTRIES = 1000


def _unsafe(info: zipfile.ZipInfo) -> str | None:
    """Why an entry may not be written (None if it may): a path leaving the folder, a link,
    or a special file."""
    name = info.filename
    pure = PurePosixPath(name)
    if not name or "\\" in name or "\x00" in name or pure.is_absolute() or ".." in pure.parts \
            or (len(name) > 1 and name[1] == ":"):
        return "its path leaves the folder"
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0: no Unix type given (a plain file)
    if kind == stat.S_IFLNK:
        return "it is a symbolic link"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "it is not a plain file"
    return None


def extract_outputs(archive: Path, folder: Path) -> list[Path]:
    """Unpack a job's outputs ZIP into ``folder`` and return the files written.

    Every entry is checked before anything is written: one whose path is absolute, holds
    ``..`` or a drive letter, or that is a link or a special file, refuses the whole archive
    (:class:`InvalidInput`), as does one that unpacks past 1 GiB in all.
    """
    try:
        z = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise InvalidInput(f"{archive} is not a ZIP file ({exc}); download it again") from None
    with z:
        infos = z.infolist()
        if len(infos) > MAX_ENTRIES:
            raise PayloadTooLarge(f"{archive} holds {len(infos):,} entries; job outputs hold "
                                  f"at most {MAX_ENTRIES:,}")
        for info in infos:
            why = _unsafe(info)
            if why is not None:
                raise InvalidInput(f"{archive} holds {info.filename[:120]!r}, which is not "
                                   f"unpacked because {why}; nothing was extracted")
        if sum(i.file_size for i in infos) > MAX_EXTRACT_BYTES:
            raise PayloadTooLarge(f"{archive} unpacks to more than {MAX_EXTRACT_BYTES:,} "
                                  "bytes, more than any job's outputs; nothing was extracted")
        folder.mkdir(parents=True, exist_ok=True)
        root = folder.resolve()
        written: list[Path] = []
        for info in infos:
            target = (root / info.filename).resolve()
            if not target.is_relative_to(root):  # a link already in the folder points out
                raise InvalidInput(f"{info.filename!r} would be written outside {folder}; "
                                   "extract into an empty folder")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink():
                target.unlink()
            budget = info.file_size
            with z.open(info) as src, target.open("wb") as dst:
                # The header's size is trusted only as a cap: copy no more than it claims.
                while chunk := src.read(min(1 << 20, budget + 1)):
                    budget -= len(chunk)
                    if budget < 0:
                        raise InvalidInput(f"{info.filename!r} in {archive} is longer than its "
                                           "header says; the archive is damaged")
                    dst.write(chunk)
            written.append(target)
        return written


class _JobBar:
    """A Rich bar for one job: its state in words, fraction and the datasite's message."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> _JobBar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[message]}"),
                                 console=Console(stderr=True, soft_wrap=True))
            self._bar.__enter__()
        return self

    def update(self, view: JobView) -> None:
        if self._bar is None:
            return
        what = f"{view.name} ({view.id}): {view.state_words}"
        if self._task is None:
            self._task = self._bar.add_task(what, total=1.0, message="")
        self._bar.update(self._task, description=what, completed=view.progress,
                         message=view.progress_message)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


def _how_to_resume(job_id: str) -> str:
    return (f"stopped waiting; job {job_id} goes on at the hub. Wait for it again with "
            f"'ndl submit ... --wait' or follow it with 'ndl job status {job_id}'; stop it "
            f"with 'ndl job cancel {job_id}'")


class JobWork:
    """Wait for jobs, download their outputs, fetch mock data: sync :class:`Client` only,
    since they block and write files."""

    url: str
    token: str | None
    _http: httpx.Client

    def _send(self, call: Call[T]) -> T:
        raise NotImplementedError

    def wait_job(self, job_id: str, *, timeout: float | None = None,
                 progress: bool = True) -> JobView:
        """Poll a job until it needs a person (``awaiting_review``,
        ``awaiting_output_check``) or is final (released, returned, rejected,
        review_rejected, failed, cancelled), and return it.

        Shows a progress bar on stderr unless ``progress=False``. Raises
        :class:`~ndl.UpstreamTimeout` if neither happens within ``timeout`` seconds. A hub
        that cannot be reached is asked again for up to a minute (a restart). Ctrl-C stops
        the wait only: the job goes on.
        """
        api.check_job_id(job_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        view: JobView | None = None
        try:
            with _JobBar(progress) as bar:
                for view in polled(lambda: self._send(api.job(job_id)), JOB_POLL_SECONDS,
                                   deadline):
                    bar.update(view)
                    if view.state in STOP_STATES:
                        return view
                    if deadline is not None and time.monotonic() >= deadline:
                        break
        except KeyboardInterrupt:
            _say(_how_to_resume(job_id))
            raise
        state = view.state_words if view is not None else "waiting"
        raise UpstreamTimeout(f"job {job_id} is still {state} after {timeout or 0:g} s; "
                              f"follow it with 'ndl job status {job_id}'")

    def job_outputs(self, job_id: str, out: Path | str, *, progress: bool = True) -> Path:
        """Download a job's outputs ZIP and unpack it into the folder ``out``; return ``out``.

        The ZIP is kept there as ``outputs.zip``. A broken download resumes (also when run
        again); the file's SHA-256 is checked before it is unpacked, and entries that could
        write outside ``out`` refuse the archive (see :func:`extract_outputs`).
        """
        view = self._send(api.job(job_id))
        sha, size = view.outputs_sha256, view.outputs_size
        if not sha or size is None:
            raise Conflict(f"job {job_id} has no outputs to download: it is {view.state_words}"
                           + ("; they come once an output checker releases them"
                              if view.state not in FINAL else ""))
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "outputs.zip"
        part = folder / f".outputs.{sha[:12]}.part"
        from ndl.federation.blob_client import download

        have = part.stat().st_size if part.exists() else 0
        try:
            with _BytesBar(progress, f"{view.name} outputs", size, min(have, size)) as advance:
                download(self._http, f"/api/jobs/{api.check_job_id(job_id)}/outputs", target,
                         sha256=sha, size=size, part=part, token=self.token,
                         progress=advance, retries=DOWNLOAD_RETRIES)
        except KeyboardInterrupt:
            _say(f"stopped the download; run 'ndl job outputs {job_id} --out {folder}' to "
                 "resume it")
            raise
        extract_outputs(target, folder)
        return folder

    def fetch_mock(self, dataset_id: str, dest: Path | str, *, limit: int = 10_000) -> Path:
        """Save up to ``limit`` rows of a dataset's synthetic mock as Parquet at ``dest``
        (column types kept), for ``ndl run --mock``; return ``dest``."""
        path = dataset_path(check_dataset_id(dataset_id), "/mock")
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        with reaching(self.url, api.raw("GET", path)):
            resp = self._http.get(path, params={"format": "parquet", "limit": limit},
                                  headers=headers)
        if resp.status_code >= 400:
            raise _error_of(resp)
        if not resp.content.startswith(b"PAR1"):
            raise UpstreamUnavailable(f"the hub at {self.url} sent no Parquet for {dataset_id}'s "
                                      "mock; is it an ndl hub of this version?")
        target = Path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(resp.content)
        tmp.replace(target)
        return target
