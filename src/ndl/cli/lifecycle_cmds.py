"""Joining, leaving and deleting: ``ndl steward approve-datasite``, ``ndl admin
retire-datasite``, ``ndl compliance``, ``ndl dataset withdraw|delete|deletions`` and ``ndl
project close``. Each is one call to the hub's API with your token; the hub checks who may.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ndl.cli.access_cmds import project_app
from ndl.cli.app import app, console, handle_errors
from ndl.cli.client_cmds import HubOpt, JsonOpt, TokenOpt, _client
from ndl.cli.servers import admin

steward_app = typer.Typer(help="What a data steward does for their organisation's datasites.",
                          no_args_is_help=True)
app.add_typer(steward_app, name="steward")
dataset_app = typer.Typer(help="Withdraw a dataset from the catalogue, or have its datasite "
                               "delete it.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")

ReasonOpt = Annotated[str, typer.Option(help="Why (at least 5 characters; in the public "
                                             "register).")]


def _print(data: dict[str, Any], as_json: bool, line: str) -> None:
    if as_json:
        console.print_json(json.dumps(data))
    else:
        console.print(line, markup=False, highlight=False)


@steward_app.command("approve-datasite")
@handle_errors
def approve_datasite(ctx: typer.Context, datasite_id: str, hub: HubOpt = None,
                     token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Approve a datasite that joined your organisation and waits: from then on it may
    publish, poll and report. Data stewards of its organisation or admins."""
    with _client(ctx, hub, token) as c:
        data = c.approve_datasite(datasite_id)
    _print(data, as_json, f"datasite {datasite_id} approved")


@admin.command("retire-datasite")
@handle_errors
def retire_datasite(ctx: typer.Context, datasite_id: str, reason: ReasonOpt,
                    hub: HubOpt = None, token: TokenOpt = None,
                    as_json: JsonOpt = False) -> None:
    """Retire a datasite (an admin, or a data steward of its organisation, over the API):
    its datasets leave the catalogue, its grants end, its queued work is cancelled and its
    key is refused. Nothing is deleted at the datasite: its data stay at home."""
    with _client(ctx, hub, token) as c:
        data = c.retire_datasite(datasite_id, reason)
    _print(data, as_json, f"datasite {datasite_id} retired: {len(data['withdrawn'])} datasets "
                          f"withdrawn, {data['grants_ended']} grants ended, "
                          f"{data['messages_cancelled'] + data['work_cancelled']} queued "
                          "messages cancelled")


@app.command("compliance")
@handle_errors
def compliance(ctx: typer.Context, hub: HubOpt = None, token: TokenOpt = None,
              as_json: JsonOpt = False) -> None:
    """Every datasite: membership (pending, approved, retired) and its last signed status
    report (software, self-check; 'stale' when the next report is late)."""
    with _client(ctx, hub, token) as c:
        sites = c.datasites()
    if as_json:
        console.print_json(json.dumps(sites))
        return
    table = Table("id", "org", "state", "reported", "self-check", "software", "sandbox")
    for s in sites:
        rep = s.get("report") or {}
        check = rep.get("self_check") or {}
        outcome = "-" if not check else ("ok" if check.get("ok") else "FAILED")
        when = (s.get("reported_at") or "never")[:19].replace("T", " ")
        table.add_row(escape(s["id"]), escape(s["org"]), s.get("state", "?"),
                      when + (" (stale)" if s.get("stale") and s.get("state") == "approved"
                              else ""),
                      outcome, escape(str(rep.get("software_version", "-"))),
                      escape(str(rep.get("sandbox_mode", "-"))))
    console.print(table)


@dataset_app.command("withdraw")
@handle_errors
def withdraw(ctx: typer.Context, dataset_id: str, reason: ReasonOpt, hub: HubOpt = None,
             token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Withdraw a dataset: out of search and listings, its metadata kept with a notice, new
    queries refused, its grants ended. Its organisation's data stewards or admins."""
    with _client(ctx, hub, token) as c:
        data = c.withdraw_dataset(dataset_id, reason)
    _print(data, as_json, f"{dataset_id} withdrawn")


@dataset_app.command("delete")
@handle_errors
def delete(ctx: typer.Context, dataset_id: str, hub: HubOpt = None, token: TokenOpt = None,
           as_json: JsonOpt = False) -> None:
    """Ask the datasite to delete a withdrawn dataset (data, mock, caches). It answers with
    a signed deletion record: see it with 'ndl dataset deletions ID'."""
    with _client(ctx, hub, token) as c:
        data = c.delete_dataset(dataset_id)
    _print(data, as_json, f"deletion {data['id']} of {dataset_id} requested; the datasite "
                          "does it on its next poll")


@dataset_app.command("deletions")
@handle_errors
def deletions(ctx: typer.Context, dataset_id: str, hub: HubOpt = None,
              token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """A dataset's deletion requests and the datasite's signed deletion records."""
    with _client(ctx, hub, token) as c:
        data = c.dataset_deletions(dataset_id)
    lines = [f"{d['id']}: {d['state']} (asked {d['requested_at'][:19]}"
             + (f", deleted {d['deleted_at'][:19]}" if d.get("deleted_at") else "") + ")"
             for d in data["deletions"]] or ["no deletion was asked"]
    _print(data, as_json, "\n".join(lines))


@project_app.command("close")
@handle_errors
def close(ctx: typer.Context, project_id: str, reason: ReasonOpt, hub: HubOpt = None,
          token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Close a project (its lead or an admin): its grants are revoked, new requests and
    jobs refused, its outputs kept read-only for its retention period, then expired."""
    with _client(ctx, hub, token) as c:
        data = c.close_project(project_id, reason)
    _print(data, as_json, f"project {project_id} closed: {data['grants_revoked']} grants "
                          f"revoked; outputs kept until {data['outputs_until'][:10]}")
