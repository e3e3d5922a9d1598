"""``ndl hub``, ``ndl datasite`` and ``ndl admin``: run and administer the services."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from ndl.access import accounts, roles
from ndl.access import service as access_service
from ndl.cli.app import app, console, environ, handle_errors
from ndl.core.db import Database
from ndl.core.keys import SigningKey

DEFAULT_HUB_DIR = Path(".ndl") / "hub"


def _hub_db(env: dict[str, str], db: str | None, data_dir: Path) -> str:
    return db or env.get("NDL_HUB_DB") or str(data_dir / "hub.db")


@app.command()
@handle_errors
def hub(
    ctx: typer.Context,
    db: Annotated[str | None, typer.Option(
        help="Database URL or SQLite path; PostgreSQL as postgresql+psycopg://user@host/db. "
             "[env NDL_HUB_DB; default DATA_DIR/hub.db]")] = None,
    data_dir: Annotated[Path, typer.Option(help="Where the hub keeps its key and files.")
                        ] = DEFAULT_HUB_DIR,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8700,
    query_timeout: Annotated[float, typer.Option(
        help="Seconds a query waits for its datasite before giving up.")] = 30.0,
    lease_seconds: Annotated[float, typer.Option(
        help="Seconds a datasite holds a message without renewing it (it renews while it "
             "works) before it is offered again; at most half the query timeout.")] = 8.0,
    work_ttl: Annotated[float, typer.Option(
        help="Seconds a work item (an export, a job) may wait and run before it expires.")
                        ] = 6 * 3600.0,
    export_wait: Annotated[float, typer.Option(
        help="Seconds a plain GET of an open dataset's CSV waits for its export before "
             "answering with the work item's id to follow.")] = 300.0,
    insecure_cookies: Annotated[bool, typer.Option(
        help="Send session cookies over plain HTTP (local development only).")] = False,
    mcp_allowed_host: Annotated[list[str] | None, typer.Option(
        help="A host name (or name:port) agents use to reach /mcp, besides loopback and "
             "--host; repeat for several, '*' for any (DNS-rebinding guard).")] = None,
    trusted_proxy: Annotated[list[str] | None, typer.Option(
        help="A reverse proxy (address or network) whose X-Forwarded-For names the client; "
             "repeat for several. Without one, X-Forwarded-For is ignored.")] = None,
    blob_store: Annotated[str, typer.Option(
        help="Where finished blobs are kept: empty for DATA_DIR/blobs, a folder, or "
             "s3://bucket/prefix?endpoint=URL&region=R (the prefix is optional; credentials "
             "from the AWS_* environment variables). Uploads in progress are staged under "
             "DATA_DIR/blobs either way.")] = "",
    blob_quota_bytes: Annotated[int, typer.Option(
        min=1, help="Bytes of blobs (finished plus uploads under way) one owner may hold.")
    ] = 64 * 1024**3,
    blob_ttl_seconds: Annotated[float, typer.Option(
        min=60, help="Seconds a blob is kept if nobody takes delivery of it.")
    ] = 7 * 24 * 3600.0,
    blob_chunk_bytes: Annotated[int, typer.Option(
        min=64 * 1024, max=64 * 1024**2,
        help="The most bytes one upload request may carry (clients send chunks this big).")
    ] = 8 * 1024**2,
    blob_max_result_bytes: Annotated[int, typer.Option(
        min=1, help="Largest result blob (work results, e.g. exports).")] = 16 * 1024**3,
    blob_max_bundle_bytes: Annotated[int, typer.Option(
        min=1, help="Largest job bundle blob (code sent to a datasite).")] = 256 * 1024**2,
    blob_max_records_bytes: Annotated[int, typer.Option(
        min=1, help="Largest record-set blob.")] = 16 * 1024**3,
    blob_max_sealed_bytes: Annotated[int, typer.Option(
        min=1, help="Largest end-to-end encrypted blob relayed between parties.")
    ] = 16 * 1024**3,
    workers: Annotated[int, typer.Option(
        min=1, max=64,
        help="Hub processes to run, sharing one port (PostgreSQL only: SQLite runs one).")
    ] = 1,
    wake_recheck: Annotated[float | None, typer.Option(
        min=0.05, help="Seconds between a waiting request's database re-checks behind the "
                       "wake-ups (default 0.25 on SQLite; 2 on PostgreSQL, where LISTEN/NOTIFY "
                       "wakes requests in every process).")] = None,
    security_log_days: Annotated[float, typer.Option(
        help="Days the security log keeps events (0: for ever).")] = 400.0,
    share_security_log: Annotated[str, typer.Option(
        help="'none': only admins read the security log; 'org': a datasite's stewards may "
             "fetch their own organisation's events (GET /api/security-log).")] = "none",
    oidc_config: Annotated[Path | None, typer.Option(
        help="A TOML file naming OpenID Connect identity providers to sign in with, and the "
             "MFA each must report (see docs/security-model.md). [env NDL_OIDC_CONFIG]")
    ] = None,
    password_sign_in: Annotated[bool, typer.Option(
        help="Take passwords (the demo's local accounts). --no-password-sign-in refuses "
             "them: people sign in only through --oidc-config's providers, each of which "
             "must then require MFA.")] = True,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the library hub: catalogue, accounts, mailbox, register and web pages."""
    from ndl.hub.login_limits import parse_proxies
    from ndl.hub.state import HubSettings
    from ndl.hub.workers import check_workers, serve

    parse_proxies(trusted_proxy or [])  # a typo fails here, not at the first sign-in
    oidc_path = str(oidc_config or environ(ctx).get("NDL_OIDC_CONFIG", ""))
    from ndl.access.oidc import OidcSettings, check_mfa_everywhere, load_config

    # A mistake fails here, not at the first sign-in.
    providers = load_config(oidc_path, environ(ctx)) if oidc_path else OidcSettings()
    if not password_sign_in:
        check_mfa_everywhere(providers)
    settings = HubSettings(
        db_url=_hub_db(environ(ctx), db, data_dir), data_dir=data_dir,
        query_timeout=query_timeout, lease_seconds=lease_seconds, work_ttl=work_ttl,
        export_wait=export_wait,
        secure_cookies=not insecure_cookies, trusted_proxies=list(trusted_proxy or []),
        blob_store=blob_store, blob_quota_bytes=blob_quota_bytes,
        blob_ttl_seconds=blob_ttl_seconds, blob_chunk_bytes=blob_chunk_bytes,
        blob_max_result_bytes=blob_max_result_bytes, blob_max_bundle_bytes=blob_max_bundle_bytes,
        blob_max_records_bytes=blob_max_records_bytes,
        blob_max_sealed_bytes=blob_max_sealed_bytes, wake_recheck=wake_recheck,
        security_log_days=security_log_days, share_security_log=share_security_log,
        oidc_config=oidc_path, password_sign_in=password_sign_in,
    )
    if share_security_log not in ("none", "org"):
        raise typer.BadParameter("--share-security-log is 'none' or 'org'")
    check_workers(settings.db_url, workers)  # before anything is created
    # The bind address is a name clients use, unless it is the any-interface address.
    bound = [] if host in ("0.0.0.0", "::", "") else [host]  # noqa: S104 - a comparison
    settings.mcp_allowed_hosts = [*bound, *(mcp_allowed_host or [])]

    def announce(safe_url: str, n: int) -> None:
        procs = f", {n} processes" if n > 1 else ""
        console.print(f"ndl hub on http://{host}:{port}  (database {safe_url}{procs})")

    serve(settings, host=host, port=port, workers=workers, log_level=log_level,
          announce=announce)


datasite_app = typer.Typer(help="Run a datasite (ndl datasite --dir ...), or look at one.")
app.add_typer(datasite_app, name="datasite")


@datasite_app.callback(invoke_without_command=True)
@handle_errors
def datasite(
    ctx: typer.Context,
    dir: Annotated[Path | None, typer.Option(
        "--dir", help="The datasite's folder (datasets/ inside).")] = None,
    hub_url: Annotated[str | None, typer.Option("--hub", help="The hub's URL. [env NDL_HUB]")
                       ] = None,
    id: Annotated[str | None, typer.Option("--id", help="Datasite id (default: the org id).")
                  ] = None,
    org: Annotated[str | None, typer.Option(help="Organisation id this datasite belongs to.")
                   ] = None,
    name: Annotated[str | None, typer.Option(help="A human name for the datasite.")] = None,
    token: Annotated[str | None, typer.Option(
        help="A data steward's API token, needed for the first registration. [env NDL_TOKEN]")
    ] = None,
    hub_key: Annotated[str | None, typer.Option(
        help="The hub's public key, if you want to pin it rather than trust on first use.")
    ] = None,
    poll_wait: Annotated[float, typer.Option(help="Seconds each long-poll waits.")] = 20.0,
    workers: Annotated[int, typer.Option(
        min=1, max=64, help="Messages worked on at once (open-data SQL takes at most 2).")
    ] = 4,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    sandbox: Annotated[str, typer.Option(
        help="Sandbox for controlled jobs: 'strict' (bubblewrap + seccomp + limits; jobs are "
             "refused without it) or 'weaker' (no filesystem or network isolation: logged, "
             "shown on every job page and written to the register).")] = "strict",
    spark_master: Annotated[str | None, typer.Option(
        envvar="NDL_SPARK_MASTER",
        help="Compute on Spark: spark://HOST:PORT or local[*] (default: DuckDB in this "
             "process). Executor settings come from $SPARK_CONF_DIR/spark-defaults.conf.")
    ] = None,
) -> None:
    """Run a datasite: register, publish the catalogue, then answer work from the hub.

    'ndl datasite status --dir DIR' shows what it has answered and anything it gave up on.
    """
    from ndl.cli.config import hub_url as resolve_hub
    from ndl.core.errors import InvalidInput
    from ndl.datasite.agent import Agent
    from ndl.datasite.engines import make_engine
    from ndl.datasite.store import DatasiteStore

    if ctx.invoked_subcommand is not None:
        return
    if sandbox not in ("strict", "weaker"):
        raise InvalidInput("--sandbox is 'strict' or 'weaker'")
    if dir is None:
        raise InvalidInput("give the datasite's folder with --dir (datasets/ inside), e.g. "
                           "ndl datasite --dir ./site --org nhs-trust")

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per long-poll is noise
    env = environ(ctx)
    store = DatasiteStore(dir)
    cfg = store.config()
    org_id = org or cfg.get("org")
    if not org_id:
        raise InvalidInput("give --org the first time a datasite starts (e.g. --org nhs-trust)")
    agent = Agent(
        store, resolve_hub(env, hub_url or cfg.get("hub_url")), datasite_id=id or cfg.get("id")
        or org_id, org=org_id, name=name or cfg.get("name"), token=token or env.get("NDL_TOKEN"),
        hub_key=hub_key, poll_wait=poll_wait, workers=workers, sandbox=sandbox,
        engine=make_engine(dir, spark_master),
    )

    def _stop(signum: int, _frame: FrameType | None) -> None:
        agent.stop()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    console.print(f"datasite {agent.id} ({len(store.datasets())} datasets) -> {agent.hub_url}")
    agent.prepare()  # e.g. the open-SQL worker, so the first query does not wait
    try:
        agent.run()
    except KeyboardInterrupt:
        pass
    finally:
        agent.close()


@datasite_app.command("status")
@handle_errors
def datasite_status(
    dir: Annotated[Path, typer.Option("--dir", help="The datasite's folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a datasite's messages by state and each parked message with its reason."""
    import json
    from datetime import UTC, datetime

    from ndl.core.errors import NotFound
    from ndl.datasite.store import DatasiteStore

    if not (dir / "state.sqlite").exists():
        raise NotFound(f"{dir} holds no datasite state: give the --dir the datasite runs with")
    store = DatasiteStore(dir)
    try:
        cfg, counts, parked = store.config(), store.message_counts(), store.parked()
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps({
            "id": cfg.get("id"), "org": cfg.get("org"), "hub_url": cfg.get("hub_url"),
            "registered": bool(cfg.get("registered")), "messages": counts,
            "parked": [{"message_id": p.message_id, "reason": p.reason,
                        "at": datetime.fromtimestamp(p.at, UTC).isoformat()} for p in parked],
        }, indent=2))
        return
    console.print(f"datasite {cfg.get('id', '?')} (organisation {cfg.get('org', '?')}) -> "
                  f"{cfg.get('hub_url', 'no hub yet')}"
                  f"{'' if cfg.get('registered') else ' (not registered)'}", highlight=False)
    console.print("messages: " + ", ".join(
        f"{counts.get(k, 0)} {k}" for k in ("done", "working", "parked"))
        + f"; {counts.get('unsent', 0)} replies not yet sent", highlight=False)
    for p in parked:
        when = datetime.fromtimestamp(p.at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        console.print(f"parked {p.message_id} at {when} UTC: {p.reason}", markup=False,
                      highlight=False)


admin = typer.Typer(help="Administer a hub's database directly (run on the hub's machine).",
                    no_args_is_help=True)
app.add_typer(admin, name="admin")


@admin.command("create-org")
@handle_errors
def create_org(
    ctx: typer.Context, org_id: str, name: str,
    kind: Annotated[str, typer.Option(help=", ".join(accounts.ORG_KINDS))] = "other",
    db: Annotated[str | None, typer.Option(help="Hub database URL or path.")] = None,
    data_dir: Annotated[Path, typer.Option(help="The hub's data folder.")] = DEFAULT_HUB_DIR,
) -> None:
    """Create an organisation."""
    database = Database(_hub_db(environ(ctx), db, data_dir))
    database.migrate()
    key = SigningKey.load_or_create(data_dir / "hub-key.pem")
    with database.write() as s:
        access_service.create_org(s, key, access_service.Operator("admin-cli"),
                                  access_service.NewOrg(id=org_id, name=name, kind=kind))
    console.print(f"created organisation {org_id}")


@admin.command("create-user")
@handle_errors
def create_user(
    ctx: typer.Context, username: str,
    role: Annotated[list[str], typer.Option(help=roles.cli_help())],
    org: Annotated[str | None, typer.Option(help="Organisation id.")] = None,
    password_stdin: Annotated[bool, typer.Option(help="Read a password from standard input.")
                              ] = False,
    token: Annotated[bool, typer.Option(help="Also issue and print an API token.")] = False,
    db: Annotated[str | None, typer.Option(help="Hub database URL or path.")] = None,
    data_dir: Annotated[Path, typer.Option(help="The hub's data folder.")] = DEFAULT_HUB_DIR,
) -> None:
    """Create a user (and optionally print an API token for it)."""
    database = Database(_hub_db(environ(ctx), db, data_dir))
    database.migrate()
    key = SigningKey.load_or_create(data_dir / "hub-key.pem")
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    operator = access_service.Operator("admin-cli")
    with database.write() as s:
        made = access_service.create_user(
            s, key, operator,
            access_service.NewUser(username=username, roles=role, org=org, password=password))
        issued = access_service.operator_token(s, operator, made.user_id) if token else None
    console.print(f"created user {username}")
    if issued:
        typer.echo(issued)
