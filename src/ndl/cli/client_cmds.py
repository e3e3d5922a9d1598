"""Commands for people using a hub: login, search, show, query, verify."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any

import typer
from rich.table import Table

from ndl.cli import config
from ndl.cli.app import app, console, environ, handle_errors
from ndl.cli.words import moment, plural
from ndl.client import Client
from ndl.core.errors import InvalidInput, NdlError
from ndl.core.tiers import TIERS
from ndl.core.transport import loopback_allowed

HubOpt = Annotated[str | None, typer.Option("--hub", help="Hub URL. [env NDL_HUB; saved by login]")]
TokenOpt = Annotated[str | None, typer.Option("--token", help="API token. [env NDL_TOKEN]")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _client(ctx: typer.Context, hub: str | None, token: str | None) -> Client:
    env = environ(ctx)
    return Client(config.hub_url(env, hub), config.token(env, token),
                  allow_http_loopback=loopback_allowed(env))


@app.command()
@handle_errors
def login(
    ctx: typer.Context, hub: HubOpt = None,
    username: Annotated[str, typer.Option(help="Your username (prompted if not given).")] = "",
    password: Annotated[str, typer.Option(hide_input=True,
                                          help="Your password (prompted if not given).")] = "",
    with_token: Annotated[bool, typer.Option(
        "--with-token", help="Read a token from standard input instead (from the hub's "
                             "/account/cli-token page, for people who sign in through their "
                             "organisation's identity provider).")] = False,
) -> None:
    """Log in to a hub and save the token for later commands."""
    env = environ(ctx)
    url = config.hub_url(env, hub)
    if with_token:
        # Standard input, not an argument: a token in argv ends up in shell history and ps.
        given = typer.prompt("Token", hide_input=True) if sys.stdin.isatty() \
            else sys.stdin.readline().strip()
        with Client(url, given.strip(), allow_http_loopback=loopback_allowed(env)) as client:
            me = client.me()  # refuses a token that does not work, before saving it
        path = config.save(env, hub=url, token=given.strip())
        console.print(f"logged in to {url} as {me['username']} ({', '.join(me['roles'])}); "
                      f"token saved in {path}")
        return
    username = username or typer.prompt("Username")
    password = password or typer.prompt("Password", hide_input=True)
    with Client(url, allow_http_loopback=loopback_allowed(env)) as client:
        token = client.login(username, password)
        me = client.me()
    path = config.save(env, hub=url, token=token)
    console.print(f"logged in to {url} as {me['username']} ({', '.join(me['roles'])}); "
                  f"token saved in {path}")


@app.command()
@handle_errors
def search(
    ctx: typer.Context, query: Annotated[str, typer.Argument(help="Words to look for.")] = "",
    publisher: Annotated[str | None, typer.Option(help="Only this publisher.")] = None,
    tier: Annotated[str | None, typer.Option(help="open, safeguarded or controlled.")] = None,
    limit: Annotated[int, typer.Option(help="How many results.")] = 20,
    hub: HubOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Search the catalogue (datasets and their columns)."""
    with _client(ctx, hub, token) as client:
        res = client.search(query or None, publisher=publisher, tier=tier, limit=limit)
    if as_json:
        typer.echo(json.dumps(res, indent=2))
        return
    table = Table(title=f"{plural(res['total'], 'dataset')} found")
    # Ids are what people copy into the next command: never truncate them.
    longest = max((len(d["id"]) for d in res["results"]), default=2)
    table.add_column("id", no_wrap=True, min_width=longest)
    for col in ("title", "publisher", "tier"):
        table.add_column(col)
    for d in res["results"]:
        table.add_row(d["id"], d["title"], d["publisher"], d["tier"])
    console.print(table)
    for facet, counts in res["facets"].items():
        console.print(f"{facet}: " + ", ".join(f"{k} ({n})" for k, n in counts.items()))


@app.command()
@handle_errors
def show(
    ctx: typer.Context, dataset_id: Annotated[str, typer.Argument(help="e.g. nhs-trust/patients")],
    hub: HubOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Show one dataset's metadata and schema."""
    with _client(ctx, hub, token) as client:
        d = client.dataset(dataset_id)
    if as_json:
        typer.echo(json.dumps(d, indent=2))
        return
    console.print(f"[bold]{d['title']}[/]  ({d['id']}, {d['tier']}, v{d['version']})")
    rows = "row count not stated" if d.get("row_count") is None else \
        plural(int(d["row_count"]), "row")
    console.print(f"{d['publisher']} · {rows}\n{d['description']}")
    tier = TIERS.get(d["tier"])
    if tier is not None:  # the route the README promises, in the tier table's own words
        console.print(f"\n[bold]How to get it[/] ({tier.title}): {tier.how_to_reach}.\n"
                      f"You get: {tier.what_you_get}. Wait: {tier.wait}.\n")
    table = Table()
    for col in ("column", "type", "sensitivity", "join key", "description"):
        table.add_column(col)
    for c in d["columns"]:
        table.add_row(c["name"], c["type"], c.get("sensitivity", ""), c.get("join_key") or "",
                      c.get("description", ""))
    console.print(table)


@app.command()
@handle_errors
def query(
    ctx: typer.Context,
    dataset_id: Annotated[str, typer.Argument(
        help="An open dataset, e.g. local-authority/ward-population")],
    count_by: Annotated[list[str] | None, typer.Option(
        "--count-by", help="Group the count by this column (repeat for up to three).")] = None,
    project: Annotated[str | None, typer.Option(
        help="Not needed: exact counts are for open data, which needs no grant.")
    ] = None,
    hub: HubOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Exact row counts of an open dataset, optionally grouped by columns.

    Safeguarded data is answered only with private (differentially private) answers: use
    'ndl dp-query'. Controlled data offers metadata and mock rows.
    """
    with _client(ctx, hub, token) as client:
        ans = client.query(dataset_id, count_by=count_by or [], project=project)
    if as_json:
        typer.echo(json.dumps(ans.raw, indent=2))
        return
    title = f"{dataset_id}: count" + (f" by {', '.join(count_by)}" if count_by else "")
    table = Table(title=title)
    for col in ans.columns:
        table.add_column(col)
    for row in ans.rows:
        table.add_row(*["<suppressed>" if v is None and i == len(row) - 1 else str(v)
                        for i, v in enumerate(row)])
    console.print(table)
    if ans.suppressed:
        console.print(f"{plural(ans.suppressed, 'group')} had fewer than {ans.threshold} "
                      f"rows and {'is' if ans.suppressed == 1 else 'are'} suppressed")


@app.command()
@handle_errors
def datasites(ctx: typer.Context, hub: HubOpt = None, token: TokenOpt = None) -> None:
    """List the datasites registered with the hub and whether they are online."""
    with _client(ctx, hub, token) as client:
        sites = client.datasites()
    table = Table()
    table.add_column("id", no_wrap=True, min_width=max((len(s["id"]) for s in sites), default=2))
    for col in ("org", "name", "online", "last seen"):
        table.add_column(col)
    for s in sites:
        table.add_row(s["id"], s["org"], s["name"], "yes" if s["online"] else "no",
                      moment(s["last_seen_at"]))
    console.print(table)


@app.command()
@handle_errors
def verify(
    ctx: typer.Context,
    db: Annotated[str | None, typer.Option(
        help="Verify this hub database directly (operator mode).")] = None,
    data_dir: Annotated[Path, typer.Option(help="The hub's data folder (holds its key).")
                        ] = Path(".ndl") / "hub",
    expect_head: Annotated[str | None, typer.Option(
        help="SEQ:HASH of a head you saved earlier; it must still be in the register.")] = None,
    hub: HubOpt = None,
) -> None:
    """Check the register's hash chain and signatures; exit 1 if anything was tampered with.

    Without --db it downloads the public register from the hub and checks it here, so you
    need not trust the hub's own answer.
    """
    from ndl.core.db import Database
    from ndl.core.keys import SigningKey
    from ndl.federation import key_service
    from ndl.ledger import register

    expected = None
    if expect_head:
        seq, _, digest = expect_head.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise InvalidInput("--expect-head must look like 42:<64 hex characters>")
        expected = (int(seq), digest)
    if db:
        key = SigningKey.load_or_create(data_dir / "hub-key.pem")
        database = Database(db)
        with database.read() as s:
            # Every hub key with when it signed: entries from before a rotation verify too.
            ring = key_service.register_keys(key_service.hub_validities(s, key))
            report = register.verify(s, ring, expect_head=expected)
    else:
        report = _verify_remote(ctx, hub, expected)
    if report.ok:
        console.print(f"[green]register OK[/]: {report.entries} entries, head "
                      f"{report.head_seq}:{report.head_hash}")
        return
    for p in report.problems:
        console.print(f"[red]✗[/] {p}")
    raise typer.Exit(1)


def _verify_remote(ctx: typer.Context, hub: str | None,
                   expected: tuple[int, str] | None) -> Any:
    from ndl.core.keys import KeyValidity
    from ndl.federation.key_service import register_keys
    from ndl.ledger import register

    entries: list[Any] = []
    head: tuple[int, str] | None = None
    key: Any = ""
    with _client(ctx, hub, None) as client:
        after = 0
        while True:
            page = client.register_entries(after=after, limit=1000)
            if head is None:
                head, key = (page["head"]["seq"], page["head"]["hash"]), page["hub_public_key"]
                if page.get("hub_keys"):  # a hub that rotated its key: each with its window
                    key = register_keys([KeyValidity.from_json(k) for k in page["hub_keys"]])
            batch = [e for e in page["entries"] if e["seq"] <= head[0]]
            entries += [SimpleNamespace(**e) for e in batch]
            if len(batch) < len(page["entries"]) or not page["entries"]:
                break
            after = page["entries"][-1]["seq"]
    if head is None:
        raise NdlError("the hub returned no register")
    return register.verify_entries(entries, key, head=head, expect_head=expected)
