"""Waiting for long work and downloading what it made (the sync client's extra methods).

:class:`LongWork` is mixed into :class:`ndl.hubclient.Client`. Following an item reads the
hub's server-sent events; if the stream breaks (a proxy cuts it, the hub restarts) it polls
``GET /api/work/{id}`` once a second instead, so a wait never depends on one connection.
A result is downloaded into ``<name>.<sha256 prefix>.part`` beside the destination, resumed
with ``Range`` after a broken connection (or by running the same command again), checked
against the SHA-256 the hub named for it, and only then renamed into place: a file at the
destination is always whole.

Ctrl-C while waiting or downloading stops only this program: the work goes on at the hub, and
the message printed says how to wait for it again or cancel it.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from ndl.core.errors import (
    ERRORS_BY_CODE,
    Cancelled,
    InvalidInput,
    NdlError,
    UpstreamTimeout,
    UpstreamUnavailable,
    error_from_json,
)
from ndl.hubclient import _api as api
from ndl.hubclient._ids import check_work_id
from ndl.hubclient._work import Work, state_events

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from ndl.hubclient._call import Call

T = TypeVar("T")
POLL_SECONDS = 1.0
# A quiet event stream (an item waiting in the queue sends nothing) is re-checked this often.
STREAM_READ_SECONDS = 30.0
# Tries after a broken download connection, backing off 1, 2, 4, then 8 s: about 45 s in
# all, long enough for a hub to restart (the same as blob downloads).
DOWNLOAD_RETRIES = 8
# How long a wait keeps polling a hub it cannot reach (a restart) before it gives up.
HUB_OUTAGE_SECONDS = 60.0
CHUNK = 1 << 20
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def outcome_error(view: Work) -> NdlError | None:
    """The error a final item that did not succeed stands for (None if it succeeded or is not
    final). Its message names the item and what to do next."""
    wid = view.id
    if view.state == "failed":
        err = view.error or {}
        cls = ERRORS_BY_CODE.get(err.get("code", ""), UpstreamUnavailable)
        why = err.get("message") or "no reason was given"
        return cls(f"work item {wid} ({view.kind} of {view.dataset}) failed: {why}")
    if view.state == "cancelled":
        return Cancelled(f"work item {wid} ({view.kind} of {view.dataset}) was cancelled, so "
                         "it has no result; submit it again if you still need it")
    if view.state == "expired":
        return UpstreamTimeout(f"work item {wid} ({view.kind} of {view.dataset}) expired "
                               "before it finished; submit it again")
    return None


def safe_filename(name: str, fallback: str) -> str:
    """A file name from the hub that cannot leave the folder it is written to."""
    base = _SAFE_NAME.sub("_", Path(name.replace("\\", "/")).name).lstrip(".")
    return base[:200] if base else fallback


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def _say(text: str) -> None:
    _stderr().print(text, highlight=False, markup=False)


def _how_to_resume(work_id: str) -> str:
    return (f"stopped waiting; work item {work_id} goes on at the hub. Wait for it again with "
            f"'ndl work wait {work_id}', fetch its result with 'ndl work fetch {work_id}', or "
            f"stop it with 'ndl work cancel {work_id}'")


def _error_of(resp: httpx.Response) -> NdlError:
    resp.read()
    try:
        data: Any = resp.json()
    except ValueError:
        data = resp.text
    return error_from_json(resp.status_code, data)



def polled(fetch: Callable[[], T], pause: float, deadline: float | None) -> Iterator[T]:
    """``fetch()`` every ``pause`` seconds, for ever (the caller stops when it has what it
    wants). The hub restarting must not end a wait of many minutes: a hub that cannot be
    reached is asked again for up to HUB_OUTAGE_SECONDS (the work goes on meanwhile), then
    the error is raised for the caller to say how to resume."""
    down_since: float | None = None
    while True:
        try:
            got = fetch()
        except (UpstreamUnavailable, UpstreamTimeout):
            now = time.monotonic()
            down_since = now if down_since is None else down_since
            if now - down_since > HUB_OUTAGE_SECONDS or (
                    deadline is not None and now >= deadline):
                raise
            time.sleep(pause)
            continue
        down_since = None
        yield got
        time.sleep(pause)

class _WorkBar:
    """A Rich bar for one work item: its fraction, state and the datasite's message."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> _WorkBar:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TaskProgressColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.fields[message]}"), console=_stderr())
            self._bar.__enter__()
        return self

    def update(self, view: Work) -> None:
        if self._bar is None:
            return
        what = f"{view.kind} {view.dataset}: {view.state}"
        if self._task is None:
            self._task = self._bar.add_task(what, total=1.0, message=view.message)
        self._bar.update(self._task, description=what, completed=view.progress,
                         message=view.message)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


class LongWork:
    """Follow, wait for, fetch and export: methods of the sync :class:`Client` only, since
    they block on a stream and write files."""

    url: str
    token: str | None
    _http: httpx.Client

    def _send(self, call: Call[T]) -> T:
        raise NotImplementedError

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    # -- following ---------------------------------------------------------------------------

    def _events(self, work_id: str, deadline: float | None) -> Iterator[Work]:
        read = STREAM_READ_SECONDS if deadline is None else min(
            STREAM_READ_SECONDS, max(1.0, deadline - time.monotonic()))
        with self._http.stream(
                "GET", f"/api/work/{check_work_id(work_id)}/events",
                headers={**self._auth(), "Accept": "text/event-stream"},
                timeout=httpx.Timeout(read, connect=15.0)) as resp:
            if resp.status_code >= 400:
                raise _error_of(resp)
            if not resp.headers.get("content-type", "").startswith("text/event-stream"):
                raise ValueError("the answer is not an event stream")
            yield from state_events(resp.iter_lines())

    def follow_work(self, work_id: str, *, timeout: float | None = None) -> Iterator[Work]:
        """Each change of a work item (state, progress, message) until it is final.

        Reads the hub's event stream; if that breaks, polls once a second, riding out a hub
        that cannot be reached for up to a minute (a restart). Stops early (with the item not
        final) once ``timeout`` seconds have passed.
        """
        check_work_id(work_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        last: Work | None = None

        def changed(view: Work) -> bool:
            return last is None or (view.state, view.progress, view.message) != (
                last.state, last.progress, last.message)

        try:
            for view in self._events(work_id, deadline):
                if changed(view):
                    last = view
                    yield view
                if view.final or (deadline is not None and time.monotonic() > deadline):
                    return
        except (httpx.TransportError, ValueError, TypeError, KeyError):
            pass  # the stream broke or was not one: poll instead
        for view in polled(lambda: self._send(api.work(work_id)), POLL_SECONDS, deadline):
            if changed(view):
                last = view
                yield view
            if view.final or (deadline is not None and time.monotonic() >= deadline):
                return

    def wait_work(self, work_id: str, *, timeout: float | None = None,
                  progress: bool = True) -> Work:
        """Wait until a work item is final and return it (it may have failed: see ``state``).

        Shows a progress bar on stderr unless ``progress=False``. Raises
        :class:`~ndl.UpstreamTimeout` if it is not final within ``timeout`` seconds. Ctrl-C
        stops the wait only (the work goes on) and says how to resume or cancel.
        """
        last: Work | None = None
        try:
            with _WorkBar(progress) as bar:
                for view in self.follow_work(work_id, timeout=timeout):
                    bar.update(view)
                    last = view
        except KeyboardInterrupt:
            _say(_how_to_resume(work_id))
            raise
        except (UpstreamUnavailable, UpstreamTimeout) as exc:
            # The hub went away; the work did not: say how to pick it up again.
            raise type(exc)(f"{exc.message}; work item {work_id} goes on at the datasite: "
                            f"wait for it again with 'ndl work wait {work_id}'") from exc
        if last is None or not last.final:
            state = "waiting" if last is None else last.state
            raise UpstreamTimeout(
                f"work item {work_id} is still {state} after {timeout or 0:g} s; wait for it "
                f"again with 'ndl work wait {work_id}' or stop it with "
                f"'ndl work cancel {work_id}'")
        return last

    # -- fetching the result -----------------------------------------------------------------

    def fetch_work(self, work_id: str, dest: str | Path | None = None, *,
                   progress: bool = True, view: Work | None = None) -> Path:
        """Download a succeeded item's result to ``dest`` and return its path.

        ``dest`` may be a file or an existing folder (the result's own name is used there);
        by default the current folder. Resumes an earlier partial download, and checks the
        file's SHA-256 before it is put in place.
        """
        view = view if view is not None else self._send(api.work(work_id))
        err = outcome_error(view)
        if err is not None:
            raise err
        if view.state != "succeeded" or view.result is None:
            raise InvalidInput(f"work item {work_id} has no result yet: it is {view.state}; "
                               f"wait for it with 'ndl work wait {work_id}'")
        res = view.result
        if not re.fullmatch(r"[0-9a-f]{64}", res.sha256):
            raise UpstreamUnavailable(f"work item {work_id} names no valid SHA-256 for its "
                                      "result; is the URL an ndl hub of this version?")
        name = safe_filename(res.filename, f"{view.id}.bin")
        target = Path(dest) if dest is not None else Path.cwd()
        if target.is_dir() or (dest is not None and str(dest).endswith(("/", os.sep))):
            target = target / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            return self._download(view.result_url, target, sha256=res.sha256, size=res.size,
                                  progress=progress)
        except KeyboardInterrupt:
            _say(f"stopped the download; run 'ndl work fetch {work_id}"
                 f"{' --out ' + str(dest) if dest is not None else ''}' to resume it")
            raise

    def _download(self, path: str, target: Path, *, sha256: str, size: int,
                  progress: bool) -> Path:
        # The one resumable, hash-checked downloader (shared with blobs); the part file's
        # name carries the hash so a part of another result is never resumed.
        from ndl.federation.blob_client import download

        part = target.with_name(f"{target.name}.{sha256[:12]}.part")
        have = part.stat().st_size if part.exists() else 0
        with _BytesBar(progress, target.name, size, min(have, size)) as advance:
            return download(self._http, path, target, sha256=sha256, size=size, part=part,
                            token=self.token, progress=advance, retries=DOWNLOAD_RETRIES)

    # -- all of it ---------------------------------------------------------------------------

    def export(self, dataset: str, dest: str | Path | None = None, *, format: str = "parquet",
               limit: int | None = None, progress: bool = True,
               timeout: float | None = None) -> Path:
        """Download an open dataset whole (or its first ``limit`` rows) as one Parquet or CSV
        file, whatever its size; return the file's path.

        The hub queues an export at the datasite; this waits for it with a progress bar (its
        fraction and message, then the download's bytes), downloads the file (resuming after
        a broken connection) and checks its SHA-256. Failed, cancelled or expired work raises
        the matching error. Ctrl-C stops waiting and prints the work id to come back to.
        """
        params: dict[str, Any] = {"format": format}
        if limit is not None:
            params["limit"] = limit
        view = self._send(api.submit_work("export", dataset, params))
        if progress:
            _say(f"export of {dataset} queued as work item {view.id}")
        final = self.wait_work(view.id, timeout=timeout, progress=progress)
        err = outcome_error(final)
        if err is not None:
            raise err
        return self.fetch_work(view.id, dest, progress=progress, view=final)


class _BytesBar:
    """A Rich bar of bytes received; ``advance(done, total)`` sets where it stands."""

    def __init__(self, enabled: bool, name: str, size: int, have: int) -> None:
        self.enabled, self.name, self.size, self.have = enabled, name, size, have
        self._bar: Progress | None = None

    def __enter__(self) -> Callable[[int, int], None]:
        if not self.enabled:
            return lambda done, total: None
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                       TransferSpeedColumn(), TimeRemainingColumn(), console=_stderr())
        self._bar = bar
        bar.__enter__()
        task = bar.add_task(f"download {self.name}", total=self.size, completed=self.have)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return advance

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
