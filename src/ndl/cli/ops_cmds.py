"""Incidents, notices and the security log: ``ndl incident``, ``ndl notices``,
``ndl admin incident``, ``ndl admin security-log`` and ``ndl datasite notices``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ndl.cli.account_cmds import HubOpt, JsonOpt, TokenOpt, _client
from ndl.cli.app import app, console, environ, handle_errors
from ndl.cli.servers import DEFAULT_HUB_DIR, _hub_db, admin, datasite_app
from ndl.core.db import Database
from ndl.core.errors import InvalidInput
from ndl.core.keys import SigningKey

incident_app = typer.Typer(name="incident", no_args_is_help=True,
                           help="Raise incidents, and see those you raised or that touch you.")
app.add_typer(incident_app)
admin_incident = typer.Typer(name="incident", no_args_is_help=True,
                             help="Record the response to an incident; contain or close it "
                                  "(on the hub's machine).")
admin.add_typer(admin_incident)

DbOpt = Annotated[str | None, typer.Option(help="Hub database URL or path.")]
DirOpt = Annotated[Path, typer.Option(help="The hub's data folder.")]
# The register and security log name an operator at the hub's machine this way.
OPERATOR = "admin-cli"


def _names(values: list[str] | None) -> list[str]:
    return [v for v in (values or []) if v.strip()]


@incident_app.command("raise")
@handle_errors
def raise_incident(
    ctx: typer.Context,
    title: Annotated[str, typer.Option(help="One line the affected parties are told.")],
    severity: Annotated[str, typer.Option(help="low, medium, high or critical.")],
    description: Annotated[str | None, typer.Option(
        help="What happened (confidential: admins and you). '-' reads standard input.")
    ] = None,
    dataset: Annotated[list[str] | None, typer.Option(
        help="A dataset it touches, as datasite/name; repeat for several.")] = None,
    project: Annotated[list[str] | None, typer.Option(help="A project it touches.")] = None,
    datasite: Annotated[list[str] | None, typer.Option(help="A datasite it touches.")] = None,
    org: Annotated[list[str] | None, typer.Option(help="An organisation it touches.")] = None,
    user: Annotated[list[str] | None, typer.Option(help="A user (username) it touches.")
                    ] = None,
    hub: HubOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Raise an incident; the hub tells the people and datasites it touches."""
    text = sys.stdin.read() if description == "-" else description
    if not text or not text.strip():
        raise InvalidInput("say what happened with --description TEXT (or '-' to read it "
                           "from standard input)")
    with _client(ctx, hub, token) as client:
        made = client.raise_incident(
            title=title, description=text, severity=severity, datasets=_names(dataset),
            projects=_names(project), datasites=_names(datasite), orgs=_names(org),
            users=_names(user))
    if as_json:
        console.print_json(json.dumps(made))
        return
    told = ", ".join(made.get("datasites_told") or []) or "no datasite"
    console.print(f"raised incident {made['id']} ({made['severity']}); told {escape(told)}",
                  highlight=False)


def _incident_table(rows: list[dict[str, Any]]) -> Table:
    table = Table("id", "severity", "state", "title", "raised", "updated")
    for i in rows:
        table.add_row(str(i["id"]), i["severity"], i["state"], escape(i["title"]),
                      i["created_at"][:16].replace("T", " "),
                      i["updated_at"][:16].replace("T", " "))
    return table


@incident_app.command("list")
@handle_errors
def list_incidents(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(help="open, contained or closed.")] = None,
    hub: HubOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Incidents you may see: every one (admins), or those you raised or were told about."""
    with _client(ctx, hub, token) as client:
        rows = client.incidents(state=state)
    if as_json:
        console.print_json(json.dumps(rows))
    else:
        console.print(_incident_table(rows))


@incident_app.command("show")
@handle_errors
def show_incident(ctx: typer.Context, incident_id: int, hub: HubOpt = None,
                  token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """One incident: what it touches, responses taken, and what happened (if yours)."""
    with _client(ctx, hub, token) as client:
        inc = client.incident(incident_id)
    if as_json:
        console.print_json(json.dumps(inc))
        return
    _print_incident(inc)


def _print_incident(inc: dict[str, Any]) -> None:
    console.print(f"incident {inc['id']}: {escape(inc['title'])}", highlight=False)
    console.print(f"severity {inc['severity']}, {inc['state']}; raised "
                  f"{inc['created_at'][:16].replace('T', ' ')} UTC", highlight=False)
    for kind, refs in (inc.get("touches") or {}).items():
        if refs:
            console.print(f"touches {kind}: {escape(', '.join(refs))}", highlight=False)
    if inc.get("description"):
        console.print("what happened:", escape(inc["description"]), highlight=False)
    for a in inc.get("actions") or []:
        seq = f" (register entry {a['register_seq']})" if a.get("register_seq") else ""
        console.print(f"response: {a['action']} on {escape(a['subject'])}{seq}",
                      highlight=False)


@app.command("notices")
@handle_errors
def notices(ctx: typer.Context, hub: HubOpt = None, token: TokenOpt = None,
            as_json: JsonOpt = False) -> None:
    """Incident notices addressed to you (as a project member, data steward, or by name)."""
    with _client(ctx, hub, token) as client:
        rows = client.notices()
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table("incident", "event", "severity", "state", "title", "why you", "when")
    for n in rows:
        table.add_row(str(n["incident"]), n["event"], n["severity"], n["state"],
                      escape(n["title"]), escape(n["why"]), n["at"][:16].replace("T", " "))
    console.print(table)


# -- on the hub's machine ---------------------------------------------------------------------

def _hub(ctx: typer.Context, db: str | None, data_dir: Path) -> tuple[Database, SigningKey]:
    database = Database(_hub_db(environ(ctx), db, data_dir))
    database.migrate()
    return database, SigningKey.load_or_create(data_dir / "hub-key.pem")


@admin_incident.command("act")
@handle_errors
def act(
    ctx: typer.Context, incident_id: int,
    action: Annotated[str, typer.Option(help="suspension, reinstatement, key_revocation, "
                                             "key_rotation, grant_revocation, "
                                             "token_revocation, dataset_withdrawal, "
                                             "notification or other.")],
    subject: Annotated[str, typer.Option(help="What was acted on, e.g. user:alice, "
                                              "datasite:nhs-trust, grant:g-12.")],
    note: Annotated[str, typer.Option(help="A note for the incident's record.")] = "",
    register_seq: Annotated[int | None, typer.Option(
        help="The register entry the action wrote (default: the newest about SUBJECT).")
    ] = None,
    db: DbOpt = None, data_dir: DirOpt = DEFAULT_HUB_DIR,
) -> None:
    """Record a response taken against an incident (linked to its register entry)."""
    from ndl.federation import incidents

    database, key = _hub(ctx, db, data_dir)
    with database.write() as s:
        done = incidents.record_action(s, key, OPERATOR, incident_id, action=action,
                                       subject=subject, note=note, register_seq=register_seq)
    seq = f" (register entry {done.register_seq})" if done.register_seq else ""
    console.print(f"incident {incident_id}: recorded {done.action} on "
                  f"{escape(done.subject)}{seq}", highlight=False)


def _move(ctx: typer.Context, incident_id: int, state: str, db: str | None,
          data_dir: Path) -> None:
    from ndl.federation import incidents

    database, key = _hub(ctx, db, data_dir)
    with database.write() as s:
        moved = incidents.set_state(s, key, OPERATOR, incident_id, state)
    console.print(f"incident {incident_id} is {state}; told "
                  f"{escape(', '.join(moved.datasites) or 'no datasite')} and the people "
                  "it touches", highlight=False)


@admin_incident.command("contain")
@handle_errors
def contain(ctx: typer.Context, incident_id: int, db: DbOpt = None,
            data_dir: DirOpt = DEFAULT_HUB_DIR) -> None:
    """Mark an incident contained (the harm has stopped; the response goes on)."""
    _move(ctx, incident_id, "contained", db, data_dir)


@admin_incident.command("close")
@handle_errors
def close(ctx: typer.Context, incident_id: int, db: DbOpt = None,
          data_dir: DirOpt = DEFAULT_HUB_DIR) -> None:
    """Close an incident (final)."""
    _move(ctx, incident_id, "closed", db, data_dir)


@admin.command("security-log")
@handle_errors
def security_log_export(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(help="From this ISO-8601 time (UTC if no zone).")
                     ] = None,
    until: Annotated[str | None, typer.Option(help="Before this ISO-8601 time.")] = None,
    kind: Annotated[str | None, typer.Option(
        help="One kind (e.g. auth.sign_in_failed) or a family: auth, admin, transfer.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write to FILE (default: standard output).")
                   ] = None,
    verify: Annotated[Path | None, typer.Option(
        help="Instead of exporting: check the log's hash chain, and that every event in "
             "this earlier export is still there unchanged.")] = None,
    db: DbOpt = None, data_dir: DirOpt = DEFAULT_HUB_DIR,
) -> None:
    """Export the security log as JSON lines for a SIEM (one event per line), or --verify."""
    from ndl.ledger import security_export, security_log

    flt = security_export.make_filter(since=since, until=until, kind=kind)
    database, _key = _hub(ctx, db, data_dir)
    if verify is not None:
        _verify(database, verify)
        return
    security_log.record_apart(database, "admin.security_log_export",
                              actor=f"operator:{OPERATOR}", subject="security-log",
                              details={"since": since, "until": until, "kind": kind})
    n = 0
    with database.read() as s:
        sink = out.open("w", encoding="utf-8") if out else sys.stdout
        try:
            for line in security_export.jsonl(s, flt):
                sink.write(line)
                n += 1
        finally:
            if out:
                sink.close()
    if out:
        console.print(f"wrote {n} events to {escape(str(out))}", highlight=False)


def _verify(database: Database, saved: Path) -> None:
    from ndl.ledger import security_export

    try:
        lines = [json.loads(x) for x in saved.read_text("utf-8").splitlines() if x.strip()]
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{saved} is not a security-log export (JSON lines): {exc}"
                           ) from None
    with database.read() as s:
        report = security_export.verify(s, lines)
    if report.ok:
        console.print(f"security log OK: {report.events} events chained; the "
                      f"{len(lines)} saved events are unchanged", highlight=False)
        return
    for problem in report.problems:
        console.print(f"[bold red]problem:[/] {escape(problem)}", highlight=False)
    raise typer.Exit(1)


@datasite_app.command("notices")
@handle_errors
def datasite_notices(
    dir: Annotated[Path, typer.Option("--dir", help="The datasite's folder.")],
    as_json: JsonOpt = False,
) -> None:
    """The incident notices this datasite received from the hub (each signed by it)."""
    from ndl.datasite import notices as kept

    rows = kept.received(dir)
    if as_json:
        console.print_json(json.dumps([n.to_json() for n in rows]))
        return
    table = Table("incident", "event", "severity", "title", "touches", "at")
    for n in rows:
        table.add_row(str(n.incident), n.event, n.severity, escape(n.title),
                      escape(", ".join(n.touches)), n.at)
    console.print(table)
