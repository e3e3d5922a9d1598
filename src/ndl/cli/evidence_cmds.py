"""Evidence on people and references on projects: ``ndl admin evidence``, ``ndl evidence``
and ``ndl project add-reference`` / ``references``."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from ndl.access import evidence as evidence_service
from ndl.access.policy import EVIDENCE_KINDS, REFERENCE_KINDS
from ndl.access.service import Operator
from ndl.cli.access_cmds import project_app
from ndl.cli.app import app, console, environ, handle_errors
from ndl.cli.client_cmds import HubOpt, JsonOpt, TokenOpt, _client
from ndl.cli.servers import DEFAULT_HUB_DIR, _hub_db, admin
from ndl.core.db import Database
from ndl.core.errors import InvalidInput
from ndl.core.keys import SigningKey

admin_evidence = typer.Typer(
    help="Record and revoke evidence about people on the hub's database (run on the hub's "
         "machine): accreditation, safe-researcher and information-governance training.",
    no_args_is_help=True)
admin.add_typer(admin_evidence, name="evidence")
evidence_app = typer.Typer(help="Your evidence (accreditation, training) and when it lapses.",
                           no_args_is_help=True)
app.add_typer(evidence_app, name="evidence")

Db = Annotated[str | None, typer.Option(help="Hub database URL or path.")]
DataDir = Annotated[Path, typer.Option(help="The hub's data folder.")]


def _day(text: str, option: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise InvalidInput(f"{option}: {text!r} is not a date; dates look like 2027-03-31"
                           ) from None


@admin_evidence.command("add")
@handle_errors
def admin_add(
    ctx: typer.Context, username: str,
    kind: Annotated[str, typer.Option(help=", ".join(EVIDENCE_KINDS) + ".")],
    issuer: Annotated[str, typer.Option(help="Who issued it, e.g. 'UK Statistics Authority'.")],
    reference: Annotated[str, typer.Option(help="The issuer's reference or certificate id.")],
    expires: Annotated[str, typer.Option(help="The day it lapses, YYYY-MM-DD (in the future).")],
    issued: Annotated[str | None, typer.Option(help="The day it was issued (default today).")
                      ] = None,
    db: Db = None, data_dir: DataDir = DEFAULT_HUB_DIR,
) -> None:
    """Record evidence about USERNAME (the register records its kind and expiry)."""
    try:
        body = evidence_service.NewEvidence.model_validate({
            "kind": kind, "issuer": issuer, "reference": reference,
            "expires_on": _day(expires, "--expires"),
            **({"issued_on": _day(issued, "--issued")} if issued else {})})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "kind"
        option = {"expires_on": "--expires", "issued_on": "--issued"}.get(field, f"--{field}")
        raise InvalidInput(f"{option}: {first['msg']}") from None
    database = Database(_hub_db(environ(ctx), db, data_dir))
    database.migrate()
    key = SigningKey.load_or_create(data_dir / "hub-key.pem")
    with database.write() as s:
        made = evidence_service.add_evidence(s, key, Operator("admin-cli"), username, body)
    console.print(f"recorded {made.kind} evidence #{made.id} for {username}, valid until "
                  f"{made.expires_on}", highlight=False)


@admin_evidence.command("revoke")
@handle_errors
def admin_revoke(
    ctx: typer.Context, evidence_id: int,
    reason: Annotated[str, typer.Option(help="Why it no longer holds.")],
    db: Db = None, data_dir: DataDir = DEFAULT_HUB_DIR,
) -> None:
    """Revoke evidence #EVIDENCE_ID (it stays on record, marked revoked)."""
    database = Database(_hub_db(environ(ctx), db, data_dir))
    database.migrate()
    key = SigningKey.load_or_create(data_dir / "hub-key.pem")
    with database.write() as s:
        gone = evidence_service.revoke_evidence(s, key, Operator("admin-cli"), evidence_id,
                                                reason)
    console.print(f"revoked {gone.kind} evidence #{gone.id} of {gone.username}",
                  highlight=False)


@admin_evidence.command("baseline")
@handle_errors
def admin_baseline(
    ctx: typer.Context,
    tier: Annotated[str, typer.Option(help="safeguarded or controlled.")],
    evidence: Annotated[list[str] | None, typer.Option(
        help="Evidence every member must hold (repeat): " + ", ".join(EVIDENCE_KINDS) + ".")
    ] = None,
    reference: Annotated[list[str] | None, typer.Option(
        help="A reference every project must hold (repeat): " + ", ".join(REFERENCE_KINDS)
             + ".")] = None,
    db: Db = None, data_dir: DataDir = DEFAULT_HUB_DIR,
) -> None:
    """Set the federation's baseline for a tier (replacing it; none of either clears it)."""
    try:
        body = evidence_service.NewBaseline.model_validate(
            {"tier": tier, "evidence": evidence or [], "references": reference or []})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(f"--{first['loc'][0]}: {first['msg']}") from None
    database = Database(_hub_db(environ(ctx), db, data_dir))
    database.migrate()
    key = SigningKey.load_or_create(data_dir / "hub-key.pem")
    with database.write() as s:
        made = evidence_service.set_baseline(s, key, Operator("admin-cli"), body)
    console.print(f"{made.tier}: every member must hold "
                  f"{', '.join(made.evidence) or 'no evidence'}; every project "
                  f"{', '.join(made.references) or 'no reference'}", highlight=False)


@evidence_app.command("baseline")
@handle_errors
def evidence_baseline(ctx: typer.Context, hub: HubOpt = None, token: TokenOpt = None,
                      as_json: JsonOpt = False) -> None:
    """What the federation agreed every user of each tier's data must hold."""
    with _client(ctx, hub, token) as c:
        got = c.evidence_baseline()["baseline"]
    if as_json:
        typer.echo(json.dumps(got, indent=2))
        return
    for b in got:
        console.print(f"{b['tier']}: every member holds "
                      f"{', '.join(b['evidence']) or 'no evidence required'}; every project "
                      f"holds {', '.join(b['references']) or 'no reference required'}",
                      highlight=False)


def _when(e: dict[str, Any]) -> str:
    if e["state"] != "valid":
        return str(e["state"])
    if e["days_left"] is None:
        return "valid (no expiry recorded: replace it with dated evidence)"
    if e["renew"]:
        return f"RENEW: lapses in {e['days_left']} days"
    return f"valid for {e['days_left']} more days"


@evidence_app.command("list")
@handle_errors
def evidence_list(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option(
        help="Another user's (admins and data stewards).")] = None,
    hub: HubOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """List evidence and when it lapses; evidence due for renewal is marked RENEW."""
    with _client(ctx, hub, token) as c:
        got = c.evidence(user)
    rows = got["evidence"]
    if as_json:
        typer.echo(json.dumps(got, indent=2))
        return
    if not rows:
        console.print("No evidence recorded. An admin records accreditation and training: "
                      "'ndl admin evidence add USER --kind ...'.")
        return
    table = Table(title=f"Evidence (renewal is due within {got['renew_within_days']} days)")
    for col in ("id", "user", "kind", "issuer", "reference", "expires", "state"):
        table.add_column(col)
    for e in rows:
        table.add_row(str(e["id"]), e["username"], e["kind"], e["issuer"], e["reference"],
                      e["expires_on"] or "-", _when(e))
    console.print(table)
    due = [e for e in rows if e["renew"]]
    for e in due:
        console.print(f"Reminder: {e['username']}'s {e['kind']} evidence lapses on "
                      f"{e['expires_on']}; ask its issuer to renew it, then an admin records "
                      "the new one.", highlight=False)


@project_app.command("add-reference")
@handle_errors
def project_add_reference(
    ctx: typer.Context, project_id: str,
    kind: Annotated[str, typer.Option(help=", ".join(REFERENCE_KINDS) + ".")],
    reference: Annotated[str, typer.Option(help="The document's reference number.")],
    expires: Annotated[str, typer.Option(help="The day it lapses, YYYY-MM-DD.")],
    issuer: Annotated[str, typer.Option(
        help="Who issued or approved it (e.g. an ethics committee).")],
    hub: HubOpt = None, token: TokenOpt = None,
) -> None:
    """Record a project's ethics approval, DPIA or data-sharing agreement (its lead)."""
    with _client(ctx, hub, token) as c:
        made = c.add_project_reference(project_id, kind=kind, issuer=issuer,
                                       reference=reference,
                                       expires_on=_day(expires, "--expires"))
    console.print(f"recorded {made['kind']} {made['reference']} for project {project_id}, "
                  f"valid until {made['expires_on']}", highlight=False)


@project_app.command("references")
@handle_errors
def project_references(
    ctx: typer.Context, project_id: str,
    hub: HubOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """A project's references and when each lapses."""
    with _client(ctx, hub, token) as c:
        rows = c.project_references(project_id)["references"]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print(f"Project {project_id} has no references recorded.")
        return
    table = Table(title=f"References of {project_id}")
    for col in ("id", "kind", "issuer", "reference", "expires", "state"):
        table.add_column(col)
    for r in rows:
        state = f"RENEW: lapses in {r['days_left']} days" if r["renew"] else r["state"]
        table.add_row(str(r["id"]), r["kind"], r["issuer"], r["reference"], r["expires_on"],
                      state)
    console.print(table)
