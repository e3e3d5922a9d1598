"""Open-data SQL runs in a child process whose memory is capped, so no query takes the datasite's.

DuckDB's ``memory_limit`` bounds its buffer pool, not the strings a query builds: ``SELECT
repeat('x', 800000000)`` took a datasite to 1.85 GB. So the SQL runs in a worker process
(this module's ``_serve``, started without the ``ndl`` package's client imports) that, once
warmed up, caps its own address space (``RLIMIT_AS``) at what it uses idle plus
:data:`QUERY_MEMORY_BYTES`. A query that needs more gets DuckDB's out-of-memory error (or a
MemoryError) inside the worker, never a bigger datasite.

The worker also starts in a private folder with its own ``HOME`` (DuckDB looks for
``~/.duckdb``), and opens the next query's DuckDB while idle so a query does not wait the
30-50 ms that opening costs. A worker that overruns the deadline by :data:`GRACE_SECONDS`,
or dies, is killed and replaced for the next query.

Protocol: one JSON object per line each way; requests ``{path, sql, limit, timeout}``,
replies ``{ok: true, columns, rows, truncated}`` or ``{ok: false, code, message}``.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import select
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from ndl.core.errors import ERRORS_BY_CODE, InternalError, NdlError, UpstreamTimeout

QUERY_MEMORY_BYTES = 1 << 30  # what one query may add to the worker's idle address space
GRACE_SECONDS = 5.0  # past its own deadline, the worker itself is killed
START_SECONDS = 60.0


class SqlSandbox:
    """One memory-capped worker process that runs open-data SQL, one query at a time."""

    def __init__(self, memory_bytes: int = QUERY_MEMORY_BYTES) -> None:
        self.memory_bytes = memory_bytes
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def run(self, path: Path, sql: str, *, limit: int, timeout: float
            ) -> tuple[list[str], list[list[Any]], bool]:
        """Run one query in the worker; see :func:`ndl.datasite.engine.run_sql`."""
        request = json.dumps({"path": str(path), "sql": sql, "limit": int(limit),
                              "timeout": float(timeout)}) + "\n"
        with self._lock:
            proc = self._worker()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(request.encode())
                proc.stdin.flush()
            except OSError as exc:
                self._kill()
                raise InternalError("the SQL worker could not take the query; it is restarted "
                                    "for the next one") from exc
            line = _read_line(proc.stdout, timeout + GRACE_SECONDS)
            if line is None:
                self._kill()
                raise UpstreamTimeout(f"the query ran longer than {timeout:g} s and was "
                                      "stopped; add filters or aggregate")
            if not line:
                status = self._kill()
                raise InternalError(
                    f"the SQL worker stopped while running this query (exit status {status}), "
                    "most likely for want of memory; filter or aggregate. It is restarted for "
                    "the next query")
        reply = json.loads(line)
        if not reply.get("ok"):
            cls = ERRORS_BY_CODE.get(str(reply.get("code")), InternalError)
            raise cls(str(reply.get("message", "")))
        return list(reply["columns"]), list(reply["rows"]), bool(reply["truncated"])

    def start(self) -> None:
        """Start the worker now rather than on the first query (a no-op if it runs)."""
        try:
            with self._lock:
                self._worker()
        except InternalError:
            pass  # reported again, with the query, when one comes

    def close(self) -> None:
        """Stop the worker (it also stops by itself when this process goes away)."""
        with self._lock:
            if self._proc is not None and self._proc.stdin is not None:
                try:
                    self._proc.stdin.close()  # end of input: the worker exits cleanly
                    self._proc.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            self._kill()

    def _worker(self) -> subprocess.Popen[bytes]:
        if self._proc is not None:
            if _alive(self._proc):
                return self._proc
            self._kill()  # died while idle: reap it and close its pipes
        from ndl.datasite.engine import private_folder

        home = private_folder() / "home"
        home.mkdir(mode=0o700, exist_ok=True)
        # TMPDIR: the worker's own temporary folders live inside ours, so they go when we exit
        # even if the worker was killed before it could clean up.
        env = {**os.environ, "HOME": str(home), "TMPDIR": str(private_folder()),
               "MALLOC_ARENA_MAX": "2"}
        # Launched by argv list, not a shell; the command is this Python and this module.
        proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, _NDL_DIR, str(self.memory_bytes)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=home, env=env)
        self._proc = proc
        assert proc.stdout is not None
        ready = _read_line(proc.stdout, START_SECONDS)
        if not ready:
            self._kill()
            raise InternalError("the SQL worker did not start; see the datasite's log")
        return proc

    def _kill(self) -> int | None:
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.kill()  # our own child, by its handle
        status = proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
        return status


# The worker needs only the engine, the guard and the error tree: registering the bare ``ndl``
# package skips its __init__ (the HTTP client, pydantic: a second of a 1.5-5 s start).
_BOOT = ("import sys, types; ndl = types.ModuleType('ndl'); ndl.__path__ = [sys.argv[1]]; "
         "sys.modules['ndl'] = ndl; from ndl.datasite.sql_sandbox import _serve; "
         "_serve(int(sys.argv[2]), sys.stdin, sys.stdout)")
_NDL_DIR = str(Path(__file__).resolve().parent.parent)


def _alive(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the worker can still take a query. A killed multi-threaded process shows as a
    zombie ('Z') while its other threads (DuckDB's) finish dying, and only then can it be
    reaped, so ``poll()`` alone still says "running" for a moment: look at its state too."""
    if proc.poll() is not None:
        return False
    try:
        with open(f"/proc/{proc.pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (not Linux): poll() is all there is
    return state not in (b"Z", b"X")


def _read_line(stream: IO[bytes], seconds: float) -> bytes | None:
    """One line from the worker; None if none came in ``seconds``, b"" if it died."""
    ready, _, _ = select.select([stream], [], [], seconds)
    if not ready:
        return None
    return stream.readline()


class SqlPool:
    """Up to ``size`` sandboxes, so queries run side by side; one waits for a free worker.

    Each worker is capped at :data:`QUERY_MEMORY_BYTES` over its idle size, so the pool's
    memory is bounded by ``size`` times that. The most recently used worker is reused first:
    the second starts only when two queries overlap.
    """

    def __init__(self, size: int = 2, memory_bytes: int = QUERY_MEMORY_BYTES) -> None:
        self._boxes = [SqlSandbox(memory_bytes) for _ in range(size)]
        self._free: queue.LifoQueue[SqlSandbox] = queue.LifoQueue()
        for box in reversed(self._boxes):
            self._free.put(box)

    def run(self, path: Path, sql: str, *, limit: int, timeout: float
            ) -> tuple[list[str], list[list[Any]], bool]:
        """Run one query on a free worker; see :func:`ndl.datasite.engine.run_sql`."""
        try:
            box = self._free.get(timeout=timeout)
        except queue.Empty:
            raise UpstreamTimeout(f"the datasite's SQL workers stayed busy for {timeout:g} s; "
                                  "try again shortly") from None
        try:
            return box.run(path, sql, limit=limit, timeout=timeout)
        finally:
            self._free.put(box)

    def prestart(self, *, wait: bool = False) -> None:
        """Start the first worker now (in the background unless ``wait``): no query waits."""
        if wait:
            self._boxes[0].start()
        else:
            threading.Thread(target=self._boxes[0].start, name="ndl-sql-prestart",
                             daemon=True).start()

    def close(self) -> None:
        for box in self._boxes:
            box.close()


_pool: SqlPool | None = None
_pool_lock = threading.Lock()


def sandbox() -> SqlPool:
    """This process's pool of SQL sandboxes (a worker starts on first use or prestart)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = SqlPool()
            atexit.register(_pool.close)
        return _pool


# -- the worker side ---------------------------------------------------------------------------

def _address_space() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _serve(memory_bytes: int, stdin: IO[str], stdout: IO[str]) -> None:
    import resource
    import shutil
    import tempfile

    from ndl.datasite import engine
    from ndl.datasite.sql_guard import check_select

    def spare() -> tuple[Any, Path]:
        temp_dir = Path(tempfile.mkdtemp(dir=engine.private_folder()))
        return engine.open_unlocked(temp_dir), temp_dir

    # Replies go on a private copy of fd 1; fd 1 itself now points at stderr, so nothing a
    # library prints (DuckDB's progress bar on a long query) can corrupt a reply line.
    stdout.flush()
    stdout = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    check_select("SELECT 1 FROM data")  # warm the parser before measuring
    warm = spare()
    cap = _address_space() + memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    stdout.write('{"ready": true}\n')
    stdout.flush()
    for line in stdin:
        con, temp_dir = warm
        try:
            req = json.loads(line)
            columns, rows, truncated = engine.run_sql_here(
                Path(req["path"]), str(req["sql"]), limit=int(req["limit"]),
                timeout=float(req["timeout"]), con=con, temp_dir=temp_dir)
            reply: dict[str, Any] = {"ok": True, "columns": columns, "rows": rows,
                                     "truncated": truncated}
        except NdlError as exc:
            reply = {"ok": False, "code": exc.code, "message": exc.message}
        except MemoryError:
            reply = {"ok": False, "code": "invalid_input", "message": "the query needed more "
                     "memory than a query may use here; filter or aggregate"}
        except Exception as exc:  # reported, scrubbed, and the worker carries on
            reply = {"ok": False, "code": "internal_error",
                     "message": f"the query failed: {engine.scrub(str(exc))}"}
        finally:
            con.close()
            shutil.rmtree(temp_dir, ignore_errors=True)
        try:
            text = json.dumps(reply)
        except MemoryError:
            text = json.dumps({"ok": False, "code": "invalid_input",
                               "message": "the answer is too large to send"})
        reply = {}
        stdout.write(text + "\n")
        stdout.flush()
        warm = spare()


if __name__ == "__main__":
    _serve(int(sys.argv[1]) if len(sys.argv) > 1 else QUERY_MEMORY_BYTES, sys.stdin, sys.stdout)
