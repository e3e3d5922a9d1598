"""The ``ndl`` command line: thin commands over the same service functions as the hub."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from ndl.cli.app import app, console_error
from ndl.core.errors import NdlError


def main(args: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> None:
    """Entry point. ``environ`` is injectable so tests need not touch os.environ."""
    env = dict(os.environ if environ is None else environ)
    try:
        app(args=list(args) if args is not None else None, prog_name="ndl",
            standalone_mode=True, obj={"environ": env})
    except NdlError as exc:  # raised outside a command's own handling
        console_error(exc)
        sys.exit(exc.exit_code)


__all__ = ["main"]
