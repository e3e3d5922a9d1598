"""``ndl hub --workers N``: the hub as N processes over one PostgreSQL database.

uvicorn's own multi-process supervisor runs them: it binds the socket once and hands it to
each worker (the kernel spreads connections), restarts a worker that dies, and stops them
all on SIGTERM/SIGINT (SIGHUP restarts them one by one). That supervisor needs the app as an
import string, so each worker builds it with :func:`worker_app` from settings the parent
passes in an environment variable. Migrations run once, in the parent, before any worker
starts; the hub's key is created there too, so workers never race to create it.

Everything the processes must agree on lives in the database: messages, work, the register,
sign-in backoff and the anonymous SQL budget (``rate_limits``), the catalogue's generation
(the facet bitmaps rebuild when it moves); wake-ups cross processes by LISTEN/NOTIFY
(ndl.hub.wakeups). SQLite takes one writer at a time and has no NOTIFY, so it runs one
process, as before.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy.engine import make_url

from ndl.core.db import Database, normalise_url
from ndl.core.errors import InvalidInput
from ndl.core.keys import SigningKey
from ndl.core.private import private_dir
from ndl.hub.state import HubSettings

SETTINGS_ENV = "NDL_HUB_WORKER_SETTINGS"
MAX_WORKERS = 64


def check_workers(db_url: str, workers: int) -> None:
    """Refuse a process count this database cannot serve, saying why and what to do."""
    if not 1 <= workers <= MAX_WORKERS:
        raise InvalidInput(f"--workers must be from 1 to {MAX_WORKERS}, got {workers}")
    if workers > 1 and make_url(normalise_url(db_url)).get_backend_name() == "sqlite":
        raise InvalidInput(
            f"--workers {workers} needs PostgreSQL: a SQLite database takes one writer at a "
            "time and cannot wake requests waiting in other processes. Leave out --workers "
            "(one process serves SQLite), or give --db postgresql+psycopg://user@host/dbname")


def settings_to_env(settings: HubSettings) -> str:
    raw = dataclasses.asdict(settings)
    raw["data_dir"] = str(settings.data_dir)
    return json.dumps(raw)


def settings_from_env(value: str | None = None) -> HubSettings:
    text = value if value is not None else os.environ.get(SETTINGS_ENV)
    if not text:
        raise InvalidInput(f"{SETTINGS_ENV} is not set: hub workers are started by "
                           "'ndl hub --workers N', not on their own")
    raw: dict[str, Any] = json.loads(text)
    known = {f.name for f in dataclasses.fields(HubSettings)}
    args = {k: v for k, v in raw.items() if k in known}
    args["data_dir"] = Path(args["data_dir"])
    return HubSettings(**args)


def worker_app() -> FastAPI:
    """uvicorn's factory in each worker process (the parent has migrated already)."""
    from ndl.hub.app import create_app

    return create_app(settings_from_env(), migrate=False)


def serve(settings: HubSettings, *, host: str, port: int, workers: int, log_level: str,
          announce: Any = None) -> None:
    """Run the hub: in this process (one worker), or under uvicorn's supervisor (several)."""
    import uvicorn

    from ndl.hub.app import create_app

    check_workers(settings.db_url, workers)
    # proxy_headers=False: uvicorn would otherwise believe X-Forwarded-For from loopback;
    # the hub reads it itself, only from --trusted-proxy (ndl.hub.login_limits).
    common: dict[str, Any] = {"host": host, "port": port, "log_level": log_level,
                              "access_log": False, "proxy_headers": False}
    if workers == 1:
        application = create_app(settings)
        if announce is not None:
            announce(application.state.hub.db.safe_url, 1)
        uvicorn.run(application, **common)
        return
    private_dir(settings.data_dir)
    db = Database(settings.db_url)
    try:
        db.migrate()
        safe_url = db.safe_url
    finally:
        db.dispose()
    SigningKey.load_or_create(settings.data_dir / "hub-key.pem")
    if announce is not None:
        announce(safe_url, workers)
    os.environ[SETTINGS_ENV] = settings_to_env(settings)
    uvicorn.run("ndl.hub.workers:worker_app", factory=True, workers=workers, **common)
