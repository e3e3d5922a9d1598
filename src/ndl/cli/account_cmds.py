"""``ndl whoami``, ``ndl tokens`` and ``ndl logout``: your account and your API tokens."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ndl.cli import config
from ndl.cli.app import app, console, environ, handle_errors
from ndl.client import Client
from ndl.core.errors import AuthenticationRequired, InvalidInput
from ndl.core.transport import loopback_allowed

HubOpt = Annotated[str | None, typer.Option("--hub", help="Hub URL. [env NDL_HUB; saved by login]")]
TokenOpt = Annotated[str | None, typer.Option("--token", help="API token. [env NDL_TOKEN]")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

tokens_app = typer.Typer(
    name="tokens", no_args_is_help=False, invoke_without_command=True,
    help="List your API tokens; create scoped ones for agents; revoke them.")
app.add_typer(tokens_app)


def _client(ctx: typer.Context, hub: str | None, token: str | None) -> Client:
    env = environ(ctx)
    given = config.token(env, token)
    if given is None:
        raise AuthenticationRequired("you are not logged in: run 'ndl login' first")
    return Client(config.hub_url(env, hub), given,
                  allow_http_loopback=loopback_allowed(env))


@app.command()
@handle_errors
def whoami(ctx: typer.Context, hub: HubOpt = None, token: TokenOpt = None,
           as_json: JsonOpt = False) -> None:
    """Who the hub thinks you are, and what your token may do."""
    with _client(ctx, hub, token) as client:
        me = client.me()
    if as_json:
        console.print_json(json.dumps(me))
        return
    org = f" of {me['org']}" if me.get("org") else ""
    console.print(f"{escape(me['username'])}{escape(org)} ({', '.join(me['roles'])}); "
                  f"token scope: {escape(str(me.get('scope', 'full')))}", highlight=False)


def _table(rows: list[dict[str, Any]]) -> Table:
    table = Table("id", "name", "scope", "prefix", "created", "expires", "last used")
    for t in rows:
        def day(key: str, t: dict[str, Any] = t) -> str:
            return str(t.get(key) or "-")[:16].replace("T", " ")

        mark = " (this one)" if t.get("current") else ""
        table.add_row(str(t["id"]), escape(t["name"]) + mark, escape(t["scope"]),
                      escape(t["prefix"]), day("created_at"), day("expires_at"),
                      day("last_used_at"))
    return table


@tokens_app.callback()
@handle_errors
def tokens(ctx: typer.Context, hub: HubOpt = None, token: TokenOpt = None,
           as_json: JsonOpt = False) -> None:
    """List your tokens that still work (never the tokens themselves)."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = {**(ctx.obj if isinstance(ctx.obj, dict) else {}),
                   "hub": hub, "token": token}
        return
    with _client(ctx, hub, token) as client:
        rows = client.tokens()
    if as_json:
        console.print_json(json.dumps(rows))
    else:
        console.print(_table(rows))


def _parent(ctx: typer.Context, hub: str | None, token: str | None) -> Client:
    """Options may come before the subcommand (``ndl tokens --hub X revoke 3``) or after."""
    up = ctx.parent.obj if ctx.parent is not None and isinstance(ctx.parent.obj, dict) else {}
    return _client(ctx, hub or up.get("hub"), token or up.get("token"))


@tokens_app.command("revoke")
@handle_errors
def revoke(ctx: typer.Context,
           token_id: Annotated[int, typer.Argument(help="The token's id, from 'ndl tokens'.")],
           hub: HubOpt = None, token: TokenOpt = None) -> None:
    """Revoke one of your tokens; it stops working at once."""
    with _parent(ctx, hub, token) as client:
        gone = client.revoke_token(token_id)
    note = " (the one this command used: log in again)" if gone.get("current") else ""
    console.print(f"revoked token {gone['id']} ({escape(gone['name'])}){note}")


@tokens_app.command("create")
@handle_errors
def create(
    ctx: typer.Context,
    read_only: Annotated[bool, typer.Option("--read-only",
                                            help="May search, read and query only.")] = False,
    project: Annotated[str | None, typer.Option(
        help="May act only within this project (e.g. p-1234abcd).")] = None,
    name: Annotated[str, typer.Option(help="A label to tell it apart later.")] = "agent",
    days: Annotated[int, typer.Option(help="How long it lasts (1 to 90 days).")] = 30,
    hub: HubOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Create a token for an agent or a script, limited to reading or to one project."""
    if read_only == (project is not None):
        raise InvalidInput("choose one of --read-only or --project P")
    scope = "read-only" if read_only else f"project:{project}"
    with _parent(ctx, hub, token) as client:
        made = client.create_token(scope=scope, name=name, days=days)
    if as_json:
        console.print_json(json.dumps(made))
        return
    console.print(f"token {made['id']} ({escape(made['scope'])}, expires "
                  f"{str(made['expires_at'])[:10]}). Copy it now; it is not shown again:")
    console.print(made["token"], highlight=False, markup=False)


@app.command()
@handle_errors
def logout(ctx: typer.Context, hub: HubOpt = None, token: TokenOpt = None) -> None:
    """Revoke the token 'ndl login' saved, and forget it."""
    env = environ(ctx)
    with _client(ctx, hub, token) as client:
        client.logout()
    saved = config.load(env).get("token")
    if saved and saved == config.token(env, token):
        config.save(env, token=None)
    console.print("logged out: the token is revoked")
