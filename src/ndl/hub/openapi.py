"""What the hub's OpenAPI document says each route can answer besides success.

The error responses are derived, not hand-listed: every route depends on exactly one access
rule from :mod:`ndl.hub.deps`, and the rule decides who is refused and how (401, 403). The
request's shape decides the rest (422 for bad input, 404 for a named thing that is missing,
409 for a write that clashes, 413 for a body over the limit). Routes add what only they can
answer (429, 503, 504, the CKAN envelope) with ``responses=`` in their decorators, using the
constants here, so a client generated from ``/api/openapi.json`` knows every status it may see.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, Field, RootModel

_REF = "#/components/schemas/{model}"


class ErrorBody(BaseModel):
    code: str = Field(description="A stable machine-readable code, e.g. not_found")
    message: str = Field(description="What went wrong, where, and how to fix it")
    detail: Any = Field(default=None, description="Structured detail, e.g. each bad field")


class ErrorEnvelope(BaseModel):
    """The one error envelope every ndl service answers with (``NdlError.to_json``)."""

    error: ErrorBody


class CkanErrorBody(BaseModel):
    type_: str = Field(alias="__type")
    message: str


class CkanError(BaseModel):
    """CKAN's own failure envelope, which CKAN clients (ckanapi, harvesters) parse."""

    help: str
    success: Literal[False]
    error: CkanErrorBody


class CkanFailure(RootModel[CkanError | ErrorEnvelope]):
    """A failed action answers in CKAN's envelope; a refused token or an over-long body is
    turned away before the action runs, in the hub's own envelope."""


class SignedEnvelope(BaseModel):
    """A message signed with the sender's Ed25519 key (``ndl.core.envelope.seal``)."""

    v: int = Field(description="Envelope format version")
    kind: str = Field(description="What the message is: publish, mock, poll, heartbeat, ...")
    sender: str = Field(description="The datasite id whose registered key signed this")
    recipient: str = Field(description="Who the message is for: the hub's id")
    nonce: str = Field(description="Single-use: a replayed envelope is refused")
    iat: int = Field(description="Issued at, seconds since the epoch")
    exp: int = Field(description="Expires at, seconds since the epoch")
    body: dict[str, Any] = Field(description="The message itself; its shape depends on kind")
    sig: str = Field(description="Ed25519 signature over the canonical JSON of the rest")


def _error(description: str, model: type[BaseModel] = ErrorEnvelope) -> dict[str, Any]:
    return {"description": description, "model": model}


# For routes' ``responses=``: what only some routes can answer.
RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: _error("Too many attempts from you: wait the time the message says, or sign in"),
}
ASKS_DATASITE: dict[int | str, dict[str, Any]] = {
    503: _error("The datasite holding the data is not connected; try again later"),
    504: _error("The datasite did not answer in time; try again later"),
}
CKAN_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("Unknown action, or a q, fq or sort CKAN cannot run", CkanFailure),
    403: _error("Not allowed (CKAN's Authorization Error), or a token that may not", CkanFailure),
    404: _error("No such dataset, resource, organisation or group", CkanFailure),
    409: _error("A parameter is not valid (CKAN's Validation Error)", CkanFailure),
}
# For the federation routes' ``openapi_extra=``: their body is read by the access rule (the
# signature must be checked over the raw JSON), so FastAPI cannot see it to document it.
ENVELOPE_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": _REF.format(model="SignedEnvelope")}}}}}

_UNAUTHORIZED = {
    "public": "A token was sent and is not valid (this route needs none: send no token)",
    "authenticated": "No API token, or one that is not valid: run 'ndl login'",
    "role": "No API token, or one that is not valid: run 'ndl login'",
    "datasite-envelope": "The envelope is not signed by a registered datasite's key, is "
                         "addressed to someone else, has expired or was replayed",
    "user-or-party-envelope": "Neither a valid API token nor an X-Ndl-Envelope header signed "
                              "by a registered party for this method and path (or it expired "
                              "or was replayed)",
    "party-envelope": "The envelope is not signed by a registered datasite's or party's key, "
                      "is addressed to someone else, has expired or was replayed",
}
_FORBIDDEN = {
    "public": "The token sent may not do this (a read-only or another project's token)",
    "authenticated": "The token may not do this (read-only, or another project's), or the "
                     "rules refuse it",
    "role": "You do not hold the role this needs ({roles}), or the token may not do this",
    "user-or-party-envelope": "You are not the blob's owner, or the token may not do this",
    "party-envelope": "The caller is not a party to this (another's inbox, blob or "
                      "coordination)",
}


def access_rule(route: APIRoute) -> str | None:
    """The access rule a route depends on (``public``, ``role:steward,admin``, ...)."""
    todo = list(route.dependant.dependencies)
    while todo:
        dep = todo.pop()
        rule = getattr(dep.call, "__ndl_access__", None)
        if isinstance(rule, str):
            return rule
        todo.extend(dep.dependencies)
    return None


def _has_inputs(route: APIRoute) -> bool:
    d = route.dependant
    return bool(d.path_params or d.query_params or d.body_params or d.header_params
                or "requestBody" in (route.openapi_extra or {}))


def error_responses(route: APIRoute, method: str) -> dict[int, str]:
    """The error statuses ``route`` can answer to ``method``, each with what it means."""
    rule = access_rule(route) or "public"
    kind, _, roles = rule.partition(":")
    out = {401: _UNAUTHORIZED[kind]}
    if kind in _FORBIDDEN:
        out[403] = _FORBIDDEN[kind].format(roles=" or ".join(roles.split(",")))
    if _has_inputs(route):
        out[422] = "A parameter or the body is not valid; the message names it and the fix"
        out[404] = "The dataset, project, request or other thing named does not exist"
    if route.dependant.body_params or "requestBody" in (route.openapi_extra or {}):
        out[400] = "The body cannot be read: it is not UTF-8 encoded JSON"
    if method not in ("GET", "HEAD"):
        out[409] = "This clashes with the current state (already exists, already decided)"
    out[413] = "The request body is larger than the hub's limit"
    return out


def document_errors(app: FastAPI) -> None:
    """Make ``app.openapi()`` declare every route's error responses with the error envelope."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, routes=app.routes,
                          description=app.description)
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for model in (ErrorEnvelope, SignedEnvelope):
            found = model.model_json_schema(ref_template=_REF)
            schemas.update(found.pop("$defs", {}))
            schemas.setdefault(model.__name__, found)
        # Included routers are resolved lazily; walk them the way get_openapi does.
        for ctx in iter_route_contexts(app.routes):
            route = ctx.original_route
            if not isinstance(route, APIRoute) or not route.include_in_schema:
                continue
            for method in ctx.methods or ():
                op = doc["paths"].get(ctx.path_format, {}).get(method.lower())
                if op is None:
                    continue
                responses = op.setdefault("responses", {})
                # FastAPI's own 422 shape (HTTPValidationError) is not what the hub answers.
                if responses.get("422", {}).get("description") == "Validation Error":
                    del responses["422"]
                for status, text in error_responses(route, method).items():
                    responses.setdefault(str(status), {"description": text, "content": {
                        "application/json": {"schema": {"$ref": _REF.format(
                            model="ErrorEnvelope")}}}})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
