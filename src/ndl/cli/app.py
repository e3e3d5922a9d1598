"""The Typer application and the helpers every command shares."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperOption

from ndl.core.errors import NdlError

app = typer.Typer(
    name="ndl", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="ndl: a federated National Data Library. Run a hub, a datasite or the demo; "
         "search the catalogue; query data where it lives.",
)


def _flag_type(self: TyperOption, ctx: Any) -> str | None:
    # Typer labels every option with its type, so flags read "--json <bool>" as if they took
    # a value ("--json true"); a flag takes none, so show no type for it.
    return None if self.is_flag else _option_type(self, ctx)


_option_type = TyperOption.display_type_rich
TyperOption.display_type_rich = _flag_type  # type: ignore[method-assign]

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])


def console_error(exc: NdlError) -> None:
    # Messages quote user data ("[x]"), which Rich would otherwise read as markup.
    err_console.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False)


def environ(ctx: typer.Context | None = None) -> dict[str, str]:
    if ctx is not None and isinstance(ctx.find_root().obj, dict):
        env = ctx.find_root().obj.get("environ")
        if isinstance(env, dict):
            return env
    return dict(os.environ)


def handle_errors(fn: F) -> F:
    """Turn ndl's errors into a red message and the error's documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NdlError as exc:
            console_error(exc)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


from ndl.cli import (  # noqa: E402,F401  (importing registers the commands)
    access_cmds,
    account_cmds,
    admin_cmds,
    backup_cmds,
    client_cmds,
    demo_cmd,
    evidence_cmds,
    job_cmds,
    key_cmds,
    lifecycle_cmds,
    mcp_cmd,
    ops_cmds,
    privacy_cmds,
    publish_cmd,
    servers,
    work_cmds,
)
