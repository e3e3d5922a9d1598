"""DCAT-3 for harvesters, in the RDF syntax each asks for.

European and national portals harvest DCAT in Turtle or RDF/XML as often as JSON-LD, and follow
a dataset's IRI expecting RDF. One graph is built per answer (from the exporter's JSON-LD, with
rdflib) and written in the syntax chosen by the extension (``.ttl``, ``.rdf``, ``.jsonld``) or,
without one, by the ``Accept`` header. A dataset's IRI (``/id/datasets/{site}/{name}``)
answers RDF to an RDF ``Accept`` and sends a browser to the dataset's page (303 See Other).
Every route is public, like the catalogue.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import rdflib
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from ndl.access.accounts import Principal
from ndl.catalogue import service as catalogue
from ndl.catalogue.exporters import dcat
from ndl.catalogue.exporters._links import Links
from ndl.catalogue.models import Dataset, DatasetMock
from ndl.core.errors import NotFound
from ndl.hub.deps import hub, public
from ndl.hub.state import HubState

router = APIRouter()
Public = Annotated[Principal | None, Depends(public)]
HubDep = Annotated[HubState, Depends(hub)]
Extension = Literal["ttl", "rdf", "jsonld"]


@dataclass(frozen=True)
class Syntax:
    media_type: str
    rdflib_format: str  # "" for JSON-LD: the exporter's document is sent as it is


JSON_LD = Syntax("application/ld+json", "")
TURTLE = Syntax("text/turtle", "turtle")
RDF_XML = Syntax("application/rdf+xml", "xml")
BY_EXTENSION: dict[str, Syntax] = {"jsonld": JSON_LD, "ttl": TURTLE, "rdf": RDF_XML}
# Media types a harvester may ask for, and the syntax each gets.
BY_MEDIA_TYPE: dict[str, Syntax] = {
    "application/ld+json": JSON_LD, "application/json": JSON_LD,
    "text/turtle": TURTLE, "application/x-turtle": TURTLE, "text/n3": TURTLE,
    "application/rdf+xml": RDF_XML, "application/xml": RDF_XML, "text/xml": RDF_XML,
}
RDF_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {s: {} for s in ("application/ld+json", "text/turtle",
                                      "application/rdf+xml")},
          "description": "DCAT-3 (DCAT-AP 3.0.0) in the syntax asked for"}}


def _accepted(accept: str) -> list[tuple[float, int, str]]:
    """``Accept`` entries as (quality, position, media type), best first."""
    out = []
    for pos, part in enumerate(accept.split(",")):
        fields = [f.strip() for f in part.split(";")]
        if not fields[0]:
            continue
        q = 1.0
        for f in fields[1:]:
            if f.startswith("q="):
                try:
                    q = float(f[2:])
                except ValueError:
                    q = 0.0
        out.append((-q, pos, fields[0].lower()))
    return sorted(out)


def negotiate(accept: str | None, default: Syntax | None = JSON_LD) -> Syntax | None:
    """The RDF syntax the ``Accept`` header prefers; ``default`` when it names none of ours
    before HTML or a wildcard (a browser, or a client that takes anything)."""
    for neg_q, _, media in _accepted(accept or ""):
        if neg_q == 0:
            continue
        if media in BY_MEDIA_TYPE:
            return BY_MEDIA_TYPE[media]
        if media in ("text/html", "application/xhtml+xml", "*/*", "application/*", "text/*"):
            return default
    return default


def serialise(doc: dict[str, Any], syntax: Syntax) -> bytes:
    """One JSON-LD document in the asked syntax, through one rdflib graph."""
    if not syntax.rdflib_format:
        return json.dumps(doc, ensure_ascii=False).encode("utf-8")
    with warnings.catch_warnings():
        # rdflib's JSON-LD parser still builds a ConjunctiveGraph it deprecates.
        warnings.filterwarnings("ignore", "ConjunctiveGraph is deprecated", DeprecationWarning)
        graph = rdflib.Graph().parse(data=json.dumps(doc), format="json-ld")
    for prefix, ns in dcat.CONTEXT.items():
        graph.bind(prefix, rdflib.Namespace(ns))
    out = graph.serialize(format=syntax.rdflib_format, encoding="utf-8")
    return bytes(out)


async def _rdf(doc: dict[str, Any], syntax: Syntax, negotiated: bool) -> Response:
    body = await run_in_threadpool(serialise, doc, syntax)
    headers = {"Vary": "Accept"} if negotiated else {}
    charset = "; charset=utf-8" if syntax is not JSON_LD else ""
    return Response(body, media_type=f"{syntax.media_type}{charset}", headers=headers)


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _dataset_doc(session: Session, site: str, name: str, base: str) -> dict[str, Any]:
    detail = catalogue.detail_json(catalogue.get_dataset(session, f"{site}/{name}"))
    has_mock = session.scalar(select(DatasetMock.dataset_id)
                              .where(DatasetMock.dataset_id == detail["id"])) is not None
    return dcat.dataset_dcat(detail, base, has_mock=has_mock)


def _catalogue_doc(session: Session, page: int, base: str) -> dict[str, Any]:
    size = dcat.CATALOGUE_PAGE_SIZE
    total = int(session.scalar(select(func.count()).select_from(Dataset).where(
        Dataset.withdrawn_at.is_(None))) or 0)  # withdrawn entries are not listed
    rows = session.scalars(select(Dataset).where(Dataset.withdrawn_at.is_(None))
                           .order_by(Dataset.id).limit(size).offset((page - 1) * size))
    details = [catalogue.detail_json(d) for d in rows]
    if page > 1 and not details:
        raise NotFound(f"the catalogue has {total} datasets, so page {page} is empty; "
                       f"pages run from 1 to {max(1, -(-total // size))}")
    with_mock = set(session.scalars(select(DatasetMock.dataset_id)))
    return dcat.catalogue_dcat(details, base, with_mock=with_mock, page=page, total=total)


@router.get("/api/datasets/{site}/{name}/dcat", response_class=Response,
            responses=RDF_RESPONSES)
async def dataset_dcat(site: str, name: str, request: Request, state: HubDep, _: Public
                       ) -> Response:
    """The dataset as DCAT-3 (DCAT-AP 3.0.0): JSON-LD, or Turtle or RDF/XML by ``Accept``."""
    syntax = negotiate(request.headers.get("accept")) or JSON_LD
    with state.db.read() as s:
        doc = _dataset_doc(s, site, name, base_url(request))
    return await _rdf(doc, syntax, negotiated=True)


@router.get("/api/datasets/{site}/{name}/dcat.{ext}", response_class=Response,
            responses=RDF_RESPONSES)
async def dataset_dcat_file(site: str, name: str, ext: Extension, request: Request,
                            state: HubDep, _: Public) -> Response:
    """The dataset as DCAT-3 in the syntax its extension names: .ttl, .rdf or .jsonld."""
    with state.db.read() as s:
        doc = _dataset_doc(s, site, name, base_url(request))
    return await _rdf(doc, BY_EXTENSION[ext], negotiated=False)


@router.get("/api/catalogue/dcat", response_class=Response, responses=RDF_RESPONSES)
async def catalogue_dcat(request: Request, state: HubDep, _: Public,
                         page: int = Query(default=1, ge=1, le=100_000)) -> Response:
    """The whole catalogue as a ``dcat:Catalog``, 1,000 datasets a page (Hydra links):
    JSON-LD, or Turtle or RDF/XML by ``Accept``."""
    syntax = negotiate(request.headers.get("accept")) or JSON_LD
    with state.db.read() as s:
        doc = _catalogue_doc(s, page, base_url(request))
    return await _rdf(doc, syntax, negotiated=True)


@router.get("/api/catalogue/dcat.{ext}", response_class=Response, responses=RDF_RESPONSES)
async def catalogue_dcat_file(ext: Extension, request: Request, state: HubDep, _: Public,
                              page: int = Query(default=1, ge=1, le=100_000)) -> Response:
    """The catalogue as DCAT-3 in the syntax its extension names: .ttl, .rdf or .jsonld."""
    with state.db.read() as s:
        doc = _catalogue_doc(s, page, base_url(request))
    return await _rdf(doc, BY_EXTENSION[ext], negotiated=False)


@router.get("/id/datasets/{site}/{name}", response_class=Response,
            responses={**RDF_RESPONSES, 303: {"description": "A browser goes to the page"}})
async def dataset_iri(site: str, name: str, request: Request, state: HubDep, _: Public
                      ) -> Response:
    """The dataset's IRI in DCAT: RDF when asked for RDF, otherwise the dataset's page."""
    syntax = negotiate(request.headers.get("accept"), default=None)
    with state.db.read() as s:
        doc = _dataset_doc(s, site, name, base_url(request))
    if syntax is None:
        page = Links.of(base_url(request), {"id": f"{site}/{name}"}).page
        return RedirectResponse(page, status_code=303, headers={"Vary": "Accept"})
    return await _rdf(doc, syntax, negotiated=True)
