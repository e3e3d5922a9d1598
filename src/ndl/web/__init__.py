"""The hub's web pages: server-rendered HTML in the GOV.UK Design System look.

``mount`` adds the page routes, sign-in and sign-out, the session middleware (see
:mod:`ndl.web.session`) and serves the built assets (``scripts/build_assets.sh``) at
``/static``. Without the built assets the pages still work, unstyled.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

from ndl.web import (
    access_pages,
    evidence_pages,
    forms,
    incident_pages,
    job_check_pages,
    job_pages,
    membership_pages,
    oidc_pages,
    privacy_pages,
    register_pages,
    session,
    steward_pages,
    wishlist_pages,
    work_pages,
)
from ndl.web.pages import router
from ndl.web.render import Pages, assets_built, make_environment

__all__ = ["mount"]

_warned_missing = False


class _StaticFiles(StaticFiles):
    """Static files that are never sniffed, and a plain 404 if the assets were never built."""

    async def check_config(self) -> None:
        if self.directory is not None and Path(self.directory).is_dir():
            await super().check_config()

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def mount(app: FastAPI, web_dir: Path) -> None:
    """Add the catalogue pages to ``app`` and serve ``web_dir/static`` at ``/static``."""
    global _warned_missing
    static_dir = web_dir / "static"
    styled = assets_built(static_dir, warn=not _warned_missing)
    _warned_missing = _warned_missing or not styled
    app.state.ndl_pages = Pages(make_environment(web_dir / "templates"), styled=styled)
    state = app.state.hub
    secret = session.WebSecret(state.settings.data_dir / session.SECRET_FILE)
    app.state.ndl_web_secret = secret
    app.include_router(session.router)
    oidc_pages.install(app.state, state)
    app.include_router(oidc_pages.router)
    app.include_router(router)
    app.state.ndl_static_dir = static_dir  # work_pages looks for its script there
    for pages in (access_pages, steward_pages, register_pages, wishlist_pages, privacy_pages,
                  work_pages, job_pages, job_check_pages, evidence_pages,
                  incident_pages, membership_pages):
        app.include_router(pages.router)
    forms.install(app.state.ndl_pages.env)
    job_pages.install(app.state.ndl_pages.env)
    evidence_pages.install(app.state.ndl_pages.env)
    app.add_middleware(session.SessionMiddleware, state=state, secret=secret)
    app.mount("/static", _StaticFiles(directory=static_dir, check_dir=False), name="static")
