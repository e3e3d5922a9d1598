"""``ndl admin suspend`` and ``ndl admin reinstate``: a user's or a datasite's standing.

Run on the hub's machine, with its database and key, like the other ``ndl admin`` commands
(over the API an admin uses ``POST /api/admin/users/NAME/suspend`` and the like). The change
holds from the hub's very next request; the public register records it without the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ndl.access import suspension
from ndl.access.service import Operator
from ndl.cli.app import console, environ, handle_errors
from ndl.cli.servers import DEFAULT_HUB_DIR, _hub_db, admin
from ndl.core.db import Database
from ndl.core.keys import SigningKey

suspend_app = typer.Typer(help="Suspend a user or a datasite until an admin reinstates it.",
                          no_args_is_help=True)
reinstate_app = typer.Typer(help="Reinstate a suspended user or datasite.",
                            no_args_is_help=True)
admin.add_typer(suspend_app, name="suspend")
admin.add_typer(reinstate_app, name="reinstate")

Db = Annotated[str | None, typer.Option(help="Hub database URL or path.")]
DataDir = Annotated[Path, typer.Option(help="The hub's data folder.")]
Reason = Annotated[str, typer.Option(
    help="Why (kept for admins in the hub's database; the public register never shows it).")]
OPERATOR = Operator("admin")


def _open(ctx: typer.Context, db: str | None, data_dir: Path) -> tuple[Database, SigningKey]:
    database = Database(_hub_db(environ(ctx), db, data_dir))
    database.migrate()
    return database, SigningKey.load_or_create(data_dir / "hub-key.pem")


def _say(standing: suspension.Standing) -> None:
    state = "suspended" if standing.suspended else "reinstated"
    console.print(f"{standing.kind} {standing.name} {state}", markup=False, highlight=False)


@suspend_app.command("user")
@handle_errors
def suspend_user(ctx: typer.Context, username: str, reason: Reason, db: Db = None,
                 data_dir: DataDir = DEFAULT_HUB_DIR) -> None:
    """Suspend a user: their API tokens, web sessions and grants stop working at once."""
    database, key = _open(ctx, db, data_dir)
    with database.write() as s:
        _say(suspension.suspend_user(s, key, OPERATOR, username, reason=reason))


@reinstate_app.command("user")
@handle_errors
def reinstate_user(ctx: typer.Context, username: str, db: Db = None,
                   data_dir: DataDir = DEFAULT_HUB_DIR) -> None:
    """Reinstate a suspended user: their tokens and grants work again."""
    database, key = _open(ctx, db, data_dir)
    with database.write() as s:
        _say(suspension.reinstate_user(s, key, OPERATOR, username))


@suspend_app.command("datasite")
@handle_errors
def suspend_datasite(ctx: typer.Context, datasite_id: str, reason: Reason, db: Db = None,
                     data_dir: DataDir = DEFAULT_HUB_DIR) -> None:
    """Suspend a datasite: its signed requests are refused and its datasets answer nothing."""
    database, key = _open(ctx, db, data_dir)
    with database.write() as s:
        _say(suspension.suspend_datasite(s, key, OPERATOR, datasite_id, reason=reason))


@reinstate_app.command("datasite")
@handle_errors
def reinstate_datasite(ctx: typer.Context, datasite_id: str, db: Db = None,
                       data_dir: DataDir = DEFAULT_HUB_DIR) -> None:
    """Reinstate a suspended datasite."""
    database, key = _open(ctx, db, data_dir)
    with database.write() as s:
        _say(suspension.reinstate_datasite(s, key, OPERATOR, datasite_id))
