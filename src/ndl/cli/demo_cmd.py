"""``ndl demo``: a whole local library on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ndl.cli.app import app, console, handle_errors


@app.command()
@handle_errors
def demo(
    dir: Annotated[Path, typer.Option("--dir", help="Where the demo keeps its data.")
                   ] = Path(".ndl") / "demo",
    port: Annotated[int, typer.Option(help="The hub's port.")] = 8700,
    people: Annotated[int, typer.Option(help="How many synthetic people to generate.")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed for the synthetic data.")] = 7,
    fresh: Annotated[bool, typer.Option(help="Delete earlier demo data first.")] = False,
    db: Annotated[str | None, typer.Option(help="Hub database URL (default SQLite in --dir).")
                  ] = None,
) -> None:
    """Start a hub and three datasites with synthetic UK data, and print a tour. Ctrl-C stops."""
    from ndl.demo.network import DemoStopped, run_demo

    try:
        run_demo(dir, port=port, people=people, seed=seed, fresh=fresh, db=db)
    except (KeyboardInterrupt, DemoStopped):
        # Stopped while starting: run_demo has already stopped every child it started.
        console.print("demo stopped")
