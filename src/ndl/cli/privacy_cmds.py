"""``ndl dp-query``: differentially private answers, with the expected error shown first."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from ndl.cli.app import app, console, handle_errors
from ndl.cli.client_cmds import HubOpt, JsonOpt, TokenOpt, _client
from ndl.privacy.wording import expected_error, privacy_unit, worded_rows


@app.command("dp-query")
@handle_errors
def dp_query(
    ctx: typer.Context,
    dataset_id: Annotated[str, typer.Argument(
        help="A safeguarded dataset, e.g. nhs-trust/ae-attendances")],
    sql: Annotated[str, typer.Option(help="SELECT COUNT(*), AVG(col), HISTOGRAM(col, [0, 18, 65]) "
                                          "... FROM data [WHERE ...] [GROUP BY public_key]")],
    rho: Annotated[float, typer.Option(help="Privacy budget to spend (zCDP rho), e.g. 0.1.")],
    project: Annotated[str, typer.Option(help="Your project with a grant for this dataset.")],
    yes: Annotated[bool, typer.Option("--yes", help="Spend without asking after the preview.")
                   ] = False,
    preview_only: Annotated[bool, typer.Option("--preview", help="Only show the expected error.")
                            ] = False,
    hub: HubOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Ask a safeguarded dataset a question; get a differentially private answer in seconds."""
    with _client(ctx, hub, token) as c:
        shown = c.private_query(dataset_id, project=project, sql=sql, rho=rho, preview=True)
        _show_preview(shown)
        if preview_only:
            return
        if not yes and not typer.confirm(f"Spend rho={rho:g} of your budget on this?"):
            raise typer.Exit(1)
        answer = c.private_query(dataset_id, project=project, sql=sql, rho=rho)
    if as_json:
        typer.echo(json.dumps(answer, indent=2))
        return
    table = Table(title=f"{dataset_id}: differentially private answer (rho={rho:g})")
    for col in answer["columns"]:
        table.add_column(col)
    # Each number with its margin, worded as every face words it (ndl.privacy.wording).
    for row in worded_rows(answer):
        table.add_row(*[c.text for c in row])
    console.print(table)
    left = answer["budget_remaining"]
    console.print(f"spent rho={answer['rho_spent']:.6g}; left: yours {left['researcher']:.6g}, "
                  f"project {left['project']:.6g}")


def _show_preview(shown: dict[str, Any]) -> None:
    p = shown["preview"]
    table = Table(title=f"expected error at rho={p['rho']:g} ({int(p['confidence'] * 100)}% "
                        "interval)")
    for col in ("aggregate", "mechanism", "expected error", "note"):
        table.add_column(col)
    for a in p["aggregates"]:
        table.add_row(str(a["label"]), str(a["mechanism"]),
                      expected_error(a, confidence=float(p.get("confidence") or 0.95)),
                      str(a.get("note", "")))
    console.print(table)
    console.print(f"protects: {privacy_unit(p.get('privacy_unit'), p.get('max_rows_per_person'))}")
    left = shown["budget_remaining"]
    console.print(f"budget left: yours {left['researcher']:.6g}, project "
                  f"{left['project']:.6g}, per query {left['per_query']:.6g}")
