"""Commands for the access process: projects, requests, decisions, grants, time-to-access."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from ndl.cli.app import app, console, handle_errors
from ndl.cli.client_cmds import HubOpt, JsonOpt, TokenOpt, _client
from ndl.cli.words import duration, moment, plural

project_app = typer.Typer(help="Create and inspect projects.", no_args_is_help=True)
app.add_typer(project_app, name="project")


@project_app.command("create")
@handle_errors
def project_create(
    ctx: typer.Context,
    title: Annotated[str, typer.Option(help="Project title.")],
    purpose: Annotated[str, typer.Option(help="What question, and why the public benefits.")],
    lay_summary: Annotated[str, typer.Option(help="Plain-English summary for the register.")],
    legal_basis: Annotated[str, typer.Option(
        help="public-task, legitimate-interests, consent, research-exemption, section-251 "
             "or statutory-gateway.")],
    end_date: Annotated[str, typer.Option(help="Last day of the project, YYYY-MM-DD.")],
    purpose_category: Annotated[str, typer.Option(
        help="research, statistics, service-improvement, policy-development or "
             "commercial-research.")] = "research",
    member: Annotated[list[str] | None, typer.Option(help="Another researcher (repeat).")
                      ] = None,
    hub: HubOpt = None, token: TokenOpt = None,
) -> None:
    """Create a project (you lead it)."""
    with _client(ctx, hub, token) as c:
        p = c.create_project(title=title, purpose=purpose, lay_summary=lay_summary,
                             legal_basis=legal_basis, end_date=end_date,
                             purpose_category=purpose_category, members=member or [])
    console.print(f"created project [bold]{p['id']}[/]: {p['title']}")


@project_app.command("list")
@handle_errors
def project_list(ctx: typer.Context, hub: HubOpt = None, token: TokenOpt = None,
                 as_json: JsonOpt = False) -> None:
    """List the projects you are a member of."""
    with _client(ctx, hub, token) as c:
        projects = c.my_projects()["projects"]
    if as_json:
        typer.echo(json.dumps(projects, indent=2))
        return
    if not projects:
        console.print("You are not a member of any project yet: 'ndl project create' makes one.")
        return
    table = Table(title=f"{plural(len(projects), 'project')}")
    table.add_column("id", no_wrap=True, min_width=max(len(p["id"]) for p in projects))
    for col in ("title", "purpose", "ends"):
        table.add_column(col)
    for p in projects:
        table.add_row(p["id"], p["title"], p["purpose_category"], moment(p["end_date"]))
    console.print(table)


@project_app.command("show")
@handle_errors
def project_show(ctx: typer.Context, project_id: str, hub: HubOpt = None,
                 token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Show a project, its requests and (to members) its grants."""
    with _client(ctx, hub, token) as c:
        p = c.project(project_id)
    if as_json:
        typer.echo(json.dumps(p, indent=2))
        return
    console.print(f"[bold]{p['title']}[/] ({p['id']}) · {p['purpose_category']} · "
                  f"{p['legal_basis']} · ends {moment(p['end_date'])}")
    table = Table(title="requests")
    for col in ("item", "dataset", "tier", "state", "reason"):
        table.add_column(col, no_wrap=col in ("item", "dataset"))
    for r in p.get("requests", []):
        for i in r["items"]:
            table.add_row(str(i["id"]), i["dataset"], i["tier"], i["state"], i["reason"])
    console.print(table)
    for g in p.get("grants", []):
        console.print(f"grant {g['id']} on {g['dataset']}: {g['state']} until "
                      f"{moment(g['expires_at'])}")


@app.command("request")
@handle_errors
def request_access(
    ctx: typer.Context, project_id: str,
    datasets: Annotated[list[str], typer.Argument(help="Dataset ids, at any organisations.")],
    hub: HubOpt = None, token: TokenOpt = None,
) -> None:
    """Ask for access to several datasets in one request; each dataset's policy decides."""
    with _client(ctx, hub, token) as c:
        r = c.request_access(project_id, datasets)
    for i in r["items"]:
        colour = {"granted": "green", "rejected": "red"}.get(i["state"], "yellow")
        console.print(f"{i['dataset']}: [{colour}]{i['state']}[/] — {i['reason']}")


@app.command("queue")
@handle_errors
def queue(ctx: typer.Context, hub: HubOpt = None, token: TokenOpt = None) -> None:
    """(Stewards) requests waiting for your organisation's decision."""
    with _client(ctx, hub, token) as c:
        items = c.steward_queue()
    if not items:
        console.print("nothing waiting")
    for i in items:
        console.print(f"item {i['id']}: {i['dataset']} for project {i['project']['id']} "
                      f"({i['project']['title']}) — {i['reason']}")


@app.command("decide")
@handle_errors
def decide(
    ctx: typer.Context, item_id: int,
    decision: Annotated[str, typer.Argument(help="approve or reject")],
    reason: Annotated[str, typer.Option(help="Why (required to reject).")] = "",
    hub: HubOpt = None, token: TokenOpt = None,
) -> None:
    """(Stewards) approve or reject one dataset of a request."""
    with _client(ctx, hub, token) as c:
        i = c.decide(item_id, decision, reason)
    console.print(f"{i['dataset']}: {i['state']} ({i['reason']})")


@app.command("revoke")
@handle_errors
def revoke(ctx: typer.Context, grant_id: str,
           reason: Annotated[str, typer.Option(help="Why the grant is revoked.")],
           hub: HubOpt = None, token: TokenOpt = None) -> None:
    """(Stewards) revoke a grant; its datasite refuses new work under it at once."""
    with _client(ctx, hub, token) as c:
        g = c.revoke_grant(grant_id, reason)
    console.print(f"grant {g['id']} on {g['dataset']}: {g['state']}")


@app.command("access-times")
@handle_errors
def access_times(ctx: typer.Context, hub: HubOpt = None, as_json: JsonOpt = False) -> None:
    """Time from request to access: median and p90, by tier and organisation."""
    with _client(ctx, hub, None) as c:
        m = c.time_to_access()
    if as_json:
        typer.echo(json.dumps(m, indent=2))
        return
    table = Table(title="time to access (median and 90th percentile wait)")
    for col in ("group", "decided", "median", "p90"):
        table.add_column(col)

    def row(name: str, st: dict[str, float | int | None]) -> None:
        table.add_row(name, str(st["decided"]), _h(st["median_hours"]), _h(st["p90_hours"]))

    row("all", m["overall"])
    for k, v in m["by_tier"].items():
        row(f"tier: {k}", v)
    for k, v in m["by_org"].items():
        row(f"org: {k}", v)
    console.print(table)
    console.print(f"{m['pending']} pending, {m['rejected']} rejected")


def _h(v: float | int | None) -> str:
    # Each value carries its own unit: a title saying "(hours)" over values in seconds lied.
    return duration(v)
