"""Key rotation and revocation: ``ndl datasite rotate-key``, ``ndl admin rotate-hub-key``,
``ndl admin revoke-key`` and ``ndl admin keys``. The rules are in
:mod:`ndl.federation.key_service`; these commands only gather what it needs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from ndl.cli.app import console, environ, handle_errors
from ndl.cli.servers import DEFAULT_HUB_DIR, _hub_db, admin, datasite_app
from ndl.core.errors import Conflict, InvalidInput, NotFound

OverlapOpt = Annotated[str, typer.Option(
    help="How long the old key stays valid beside the new one, so messages already signed "
         "or in flight are still accepted: seconds, or 30m, 12h, 1d (at most 30d).")]


@datasite_app.command("rotate-key")
@handle_errors
def datasite_rotate_key(
    ctx: typer.Context,
    dir: Annotated[Path, typer.Argument(help="The datasite's folder.")],
    overlap: OverlapOpt = "1d",
) -> None:
    """Give a registered datasite a new signing key.

    The hub is asked in an envelope signed by the old key, with the new key's proof; once it
    agrees, the new key replaces key.pem and a running datasite signs with it at once. The
    old key is accepted until the overlap ends, then refused.
    """
    from ndl.client import Client
    from ndl.core.envelope import seal
    from ndl.core.keys import FileSigningKey, SigningKey, write_pem
    from ndl.core.transport import loopback_allowed
    from ndl.federation import key_service

    seconds = key_service.parse_overlap(overlap)
    cfg_path, key_path = dir / "datasite.json", dir / "key.pem"
    if not cfg_path.exists() or not key_path.exists():
        raise NotFound(f"{dir} holds no registered datasite (no datasite.json and key.pem): "
                       "give the --dir the datasite runs with")
    cfg = json.loads(cfg_path.read_text("utf-8"))
    if not cfg.get("registered") or not cfg.get("hub_url") or not cfg.get("id"):
        raise InvalidInput(f"the datasite in {dir} is not registered with a hub yet: start it "
                           "once ('ndl datasite --dir ...') before rotating its key")
    old = FileSigningKey(key_path)
    # The new key is kept beside the old one until the hub has it: if the answer is lost,
    # running this again finishes the same rotation instead of starting another.
    pending = key_path.with_name(key_path.name + ".next")
    new = FileSigningKey(pending) if pending.exists() else None
    if new is None:
        fresh = SigningKey.generate()
        write_pem(pending, fresh.private)
        new = FileSigningKey(pending)
    principal = f"datasite:{cfg['id']}"
    env = seal(old, sender=str(cfg["id"]), recipient=key_service.HUB,
               kind=key_service.ROTATE_KIND,
               body=key_service.rotation_body(old, new, principal, seconds))
    with Client(str(cfg["hub_url"]),
                allow_http_loopback=loopback_allowed(environ(ctx))) as client:
        try:
            out = client.post_envelope("/api/federation/rotate-key", env)
        except Conflict:
            keys = client._request("GET", "/api/keys", params={"owner": principal})
            current = [k for k in keys.get("keys", []) if k.get("public_key") ==
                       new.public_b64 and k.get("state") == "active"]
            if not current:
                raise
            out = {"new_fingerprint": new.fingerprint, "retire_at": "(already rotated)",
                   "old_fingerprint": old.fingerprint}
    os.replace(pending, key_path)  # the running datasite re-reads key.pem and signs with it
    console.print(f"datasite {cfg['id']}: key {out['old_fingerprint']} -> "
                  f"{out['new_fingerprint']}; the old key is refused after {out['retire_at']}",
                  highlight=False)


@admin.command("rotate-hub-key")
@handle_errors
def rotate_hub_key(
    ctx: typer.Context,
    overlap: OverlapOpt = "1d",
    db: Annotated[str | None, typer.Option(help="Hub database URL or path.")] = None,
    data_dir: Annotated[Path, typer.Option(help="The hub's data folder.")] = DEFAULT_HUB_DIR,
) -> None:
    """Give the hub a new signing key; the old key signs a statement naming it.

    Running hub processes sign with the new key at once; datasites and parties follow the
    statement without a restart. Grants signed by the old key stay good until they expire.
    """
    from ndl.core.db import Database
    from ndl.core.keys import FileSigningKey
    from ndl.federation import key_service

    seconds = key_service.parse_overlap(overlap)
    key_path = data_dir / "hub-key.pem"
    if not key_path.exists():
        raise NotFound(f"{key_path} does not exist: give the hub's --data-dir")
    database = Database(_hub_db(environ(ctx), db, data_dir))
    database.migrate()
    old = FileSigningKey(key_path)
    with database.write() as s:
        out, _new = key_service.rotate_hub(s, key_path, old, seconds, "admin-cli")
    os.replace(key_path.with_name(key_path.name + ".next"), key_path)
    console.print(f"hub key {out.old_fingerprint} -> {out.new_fingerprint}; the old key is "
                  f"refused after {out.retire_at}", highlight=False)


@admin.command("revoke-key")
@handle_errors
def revoke_key(
    ctx: typer.Context,
    fingerprint: Annotated[str, typer.Argument(help="The key's fingerprint (16 hex digits; "
                                                    "'ndl admin keys' lists them).")],
    reason: Annotated[str, typer.Option(help="Why: recorded with the key and in the register.")
                      ] = "",
    db: Annotated[str | None, typer.Option(help="Hub database URL or path.")] = None,
    data_dir: Annotated[Path, typer.Option(help="The hub's data folder.")] = DEFAULT_HUB_DIR,
) -> None:
    """Revoke a hub, datasite or party key at once: its signatures are refused everywhere."""
    from ndl.core.db import Database
    from ndl.core.keys import FileSigningKey
    from ndl.federation import key_service

    database = Database(_hub_db(environ(ctx), db, data_dir))
    database.migrate()
    hub_key = FileSigningKey(data_dir / "hub-key.pem")
    with database.write() as s:
        info = key_service.revoke(s, hub_key, "admin-cli", fingerprint, reason)
    console.print(f"revoked {info.owner}'s key {info.fingerprint} at {info.revoked_at}",
                  highlight=False)


@admin.command("keys")
@handle_errors
def list_keys(
    ctx: typer.Context,
    owner: Annotated[str | None, typer.Option(
        help="Only this owner's keys: hub, datasite:<id> or party:<id>.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    db: Annotated[str | None, typer.Option(help="Hub database URL or path.")] = None,
    data_dir: Annotated[Path, typer.Option(help="The hub's data folder.")] = DEFAULT_HUB_DIR,
) -> None:
    """List signing keys with their state (active, retiring, retired, revoked)."""
    from ndl.core.db import Database
    from ndl.federation import key_service

    database = Database(_hub_db(environ(ctx), db, data_dir))
    database.migrate()
    with database.read() as s:
        keys = key_service.list_keys(s, owner)
    if as_json:
        typer.echo(json.dumps([k.to_json() for k in keys], indent=2))
        return
    for k in keys:
        until = (f" revoked {k.revoked_at} ({k.reason})" if k.revoked_at
                 else f" until {k.retire_at}" if k.retire_at else "")
        console.print(f"{k.fingerprint}  {k.owner:<28} {k.state:<9} since {k.not_before}"
                      f"{until}", markup=False, highlight=False)
