"""Build the hub's FastAPI application."""

from __future__ import annotations

import importlib.util
import logging
import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ndl import __version__
from ndl.access.accounts import Principal
from ndl.core.db import MAX_DB_INT, Database
from ndl.core.errors import InternalError, InvalidInput, NdlError, NotFound, PayloadTooLarge
from ndl.core.keys import FileSigningKey
from ndl.core.private import private_dir
from ndl.federation import key_service
from ndl.hub import (
    access_api,
    admin_api,
    api,
    auth_api,
    blob_api,
    coordination_api,
    evidence_api,
    federation_api,
    incident_api,
    jobs_api,
    key_api,
    membership_api,
    open_api,
    openapi,
    party_api,
    privacy_api,
    wishlist_api,
    work_api,
)
from ndl.hub.deps import public
from ndl.hub.housekeeping import run_housekeeping
from ndl.hub.state import HubSettings, HubState
from ndl.hub.wakeups import run_wakeups
from ndl.mcp.server import mount_mcp

log = logging.getLogger("ndl.hub")
_INTEGER = re.compile(r"[+-]?\d+")


class BodyLimit:
    """Refuse request bodies over a size, whether or not they declare a Content-Length.

    ``raw`` gives other caps to (method, path prefix) pairs whose bodies are streamed, not
    parsed: a blob chunk may be larger than any JSON body, but no larger than a chunk.
    """

    def __init__(self, app: ASGIApp, limit: int,
                 raw: tuple[tuple[str, str, int], ...] = ()) -> None:
        self.app, self.default, self.raw = app, limit, raw

    def _limit_for(self, scope: Scope) -> int:
        for method, prefix, cap in self.raw:
            if scope.get("method") == method and str(scope.get("path", "")).startswith(prefix):
                return cap
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_error(send, PayloadTooLarge(self._msg(limit)))
            return
        seen, too_big, started = 0, False, False

        async def limited() -> Message:
            nonlocal seen, too_big
            if too_big:
                return {"type": "http.disconnect"}
            msg = await receive()
            seen += len(msg.get("body", b""))
            if seen > limit:
                # Tell the app the client went away; we answer 413 ourselves below.
                too_big = True
                return {"type": "http.disconnect"}
            return msg

        async def guarded_send(msg: Message) -> None:
            nonlocal started
            if too_big:
                return
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, limited, guarded_send)
        except Exception:
            if not too_big:
                raise
        if too_big and not started:
            await _send_error(send, PayloadTooLarge(self._msg(limit)))

    def _msg(self, limit: int) -> str:
        return f"the request body is larger than the {limit:,} byte limit"


class NoSniff:
    """``X-Content-Type-Options: nosniff`` on every response, error pages and mounts included.

    Without it a browser may sniff a CSV, Markdown or JSON download that holds metadata text
    as HTML and run script from it under the hub's origin.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_header(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                headers = [(k, v) for k, v in msg.get("headers", [])
                           if k.lower() != b"x-content-type-options"]
                msg = {**msg, "headers": [*headers, (b"x-content-type-options", b"nosniff")]}
            await send(msg)

        await self.app(scope, receive, with_header)


async def _send_error(send: Send, err: NdlError) -> None:
    resp = JSONResponse(err.to_json(), status_code=err.http_status)
    await send({"type": "http.response.start", "status": resp.status_code,
                "headers": resp.raw_headers})
    await send({"type": "http.response.body", "body": resp.body})


def out_of_range(request: Request) -> InvalidInput:
    """The error for a number too big for the database, naming the parameter that held it."""
    limits = f"whole numbers here must be between {-MAX_DB_INT - 1} and {MAX_DB_INT}"
    params = [*(("path", k, v) for k, v in request.path_params.items()),
              *(("query", k, v) for k, v in request.query_params.multi_items())]
    for where, name, value in params:
        if _out_of_range(str(value)):
            return InvalidInput(f"{where}.{name} is out of range: {limits}",
                                detail=[{"where": f"{where}.{name}", "problem": limits}])
    return InvalidInput(f"body: a number in the request is out of range: {limits}",
                        detail=[{"where": "body", "problem": limits}])


def _out_of_range(text: str) -> bool:
    if not _INTEGER.fullmatch(text):
        return False
    # Count digits first: int() refuses strings of over 4,300 digits.
    return len(text.lstrip("+-").lstrip("0")) > 19 or not -MAX_DB_INT - 1 <= int(text) <= MAX_DB_INT


def error_response(err: NdlError) -> JSONResponse:
    return JSONResponse(err.to_json(), status_code=err.http_status)


def create_app(settings: HubSettings, *, migrate: bool = True) -> FastAPI:
    private_dir(settings.data_dir)  # the key and (by default) the database live here
    db = Database(settings.db_url)
    if migrate:
        db.migrate()
    # Re-read when 'ndl admin rotate-hub-key' replaces the file: no restart needed.
    key = FileSigningKey(settings.data_dir / "hub-key.pem")
    key_service.start_hub_key(db, key)  # a revoked key refuses to start
    app = FastAPI(title="ndl library hub", version=__version__, docs_url=None,
                  openapi_url="/api/openapi.json", redoc_url=None)
    app.state.hub = HubState(settings=settings, db=db, key=key)

    @app.exception_handler(NdlError)
    async def _ndl_error(_: Request, exc: NdlError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg")}
            for e in exc.errors()
        ]
        first = problems[0] if problems else {"where": "body", "problem": "invalid"}
        return error_response(InvalidInput(
            f"{first['where']}: {first['problem']}", detail=problems))

    @app.exception_handler(OverflowError)
    async def _overflow(request: Request, exc: OverflowError) -> JSONResponse:
        # Routes bound their integers (RowId, le=MAX_DB_INT); this catches any one missed,
        # so a huge number is still the caller's mistake, not a crash.
        return error_response(out_of_range(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Any:
        if exc.status_code == 404:
            return error_response(NotFound(f"no such page or endpoint: {request.url.path}"))
        err = NdlError(str(exc.detail))
        # Keep the exception's headers: a 405 must say which methods the path takes (Allow).
        return JSONResponse({"error": {"code": f"http_{exc.status_code}",
                                       "message": err.message}}, status_code=exc.status_code,
                            headers=exc.headers)

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        resp = error_response(InternalError(
            "the hub hit an internal error; nothing was changed. The hub log has details."))
        # Starlette answers crashes outside every middleware, NoSniff included.
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, Any]:
        return {"ok": True, "version": __version__}

    app.include_router(auth_api.router)
    app.include_router(api.router)
    app.include_router(federation_api.router)
    app.include_router(key_api.router)
    app.include_router(access_api.router)
    app.include_router(admin_api.router)
    app.include_router(evidence_api.router)
    app.include_router(wishlist_api.router)
    app.include_router(privacy_api.router)
    app.include_router(work_api.router)
    app.include_router(jobs_api.router)
    app.include_router(blob_api.router)
    app.include_router(party_api.router)
    app.include_router(coordination_api.router)
    app.include_router(open_api.router)
    app.include_router(membership_api.router)
    app.include_router(incident_api.router)
    openapi.document_errors(app)
    _mount_docs(app)
    _mount_web(app)
    # MCP for AI agents at /mcp, with the caller's own token; only at the hub's own names.
    mount_mcp(app, allowed_hosts=settings.mcp_allowed_hosts)
    run_housekeeping(app)
    run_wakeups(app)  # outermost: the bus is up before housekeeping or requests start
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, raw=(
        ("PUT", blob_api.UPLOADS_PREFIX, settings.blob_chunk_bytes),))
    app.add_middleware(NoSniff)  # outermost, so even a refused body's 413 carries it
    return app


def _mount_docs(app: FastAPI) -> None:
    """Swagger UI at /api/docs with its script, style and icon served by the hub itself (the
    dist files the swagger-ui-py package ships), so the docs work without internet and send no
    visitor's address to a third-party server. Swagger UI 5 is needed: 4 cannot read the
    OpenAPI 3.1 document FastAPI writes."""
    assets = "/api/docs/assets"
    # Found, not imported: importing swagger_ui probes for web frameworks (most of a second).
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover - a dependency
        raise RuntimeError("the swagger-ui-py package is missing: reinstall ndl")
    static = Path(next(iter(spec.submodule_search_locations))) / "static"
    app.mount(assets, StaticFiles(directory=str(static)), name="api-docs-assets")

    # A plain route, as FastAPI's own docs route is: a page about the API, not an API route.
    async def api_docs(request: Request,
                       _: Annotated[Principal | None, Depends(public)]) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}/api/openapi.json", title=f"{app.title} - API docs",
            swagger_js_url=f"{root}{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{assets}/swagger-ui.css",
            swagger_favicon_url=f"{root}{assets}/favicon-32x32.png")

    app.add_api_route("/api/docs", api_docs, methods=["GET"], include_in_schema=False,
                      response_class=HTMLResponse)


def _mount_web(app: FastAPI) -> None:
    """The server-rendered pages share the same service functions as the API."""
    try:
        from ndl.web import mount
    except ImportError:  # pragma: no cover - web pages are part of every install
        return
    mount(app, Path(__file__).parent.parent / "web")
