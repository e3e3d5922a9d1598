"""``ndl mcp``: serve the library to an AI agent over MCP on stdin/stdout."""

from __future__ import annotations

import logging
import sys

import typer

from ndl.cli import config
from ndl.cli.app import app, environ, handle_errors
from ndl.cli.client_cmds import HubOpt, TokenOpt


@app.command("mcp")
@handle_errors
def mcp(ctx: typer.Context, hub: HubOpt = None, token: TokenOpt = None) -> None:
    """Serve the catalogue to an AI agent as MCP tools on stdin/stdout.

    Tools act as --token (or the token 'ndl login' saved); without one, as anyone.
    """
    import anyio

    from ndl.mcp.library import HubLibrary
    from ndl.mcp.server import serve_stdio

    # stdout carries the protocol; anything said to a person goes to stderr.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(message)s")
    env = environ(ctx)
    library = HubLibrary(config.hub_url(env, hub), config.token(env, token))
    anyio.run(serve_stdio, library)
