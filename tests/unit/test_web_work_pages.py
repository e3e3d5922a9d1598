"""The export button and the work page in-process (no datasite: items stay queued unless a
test finishes one in the database, as the datasite would).

The browser journey (tests/browser/test_work_page.py) runs a real datasite and sees the
page update live; these check the forms, the tokens, who may see and cancel what, and what
the page says in each state.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from test_web_pages import seed_catalogue

from ndl.core.db import utcnow
from ndl.federation.work_models import WorkItem
from ndl.hub.app import create_app
from ndl.hub.state import HubSettings
from ndl.ledger.models import LedgerEntry
from ndl.web import work_pages
from ndl.work.views import WorkResult

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

OPEN = "/datasets/dfe/pupil-absence"
SAFEGUARDED = "/datasets/nhs-trust/ae-attendances"
Login = Callable[[str], TestClient]
WORK_URL = re.compile(r"^/work/([0-9a-f-]{36})$")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("work-pages-hub")
    template = create_app(HubSettings(db_url=str(folder / "hub.db"), data_dir=folder))
    seed_catalogue(template.state.hub.db, template.state.hub.key)
    template.state.hub.db.dispose()
    return folder


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="https://testserver") as c:
        yield c


def _token(html: str, action: str) -> str:
    start = html.index(f'action="{action}"')
    form = html[start:html.index("</form>", start)]
    m = re.search(r'name="csrf_token" value="([^"]*)"', form)
    assert m is not None
    return m.group(1)


def _items(app: FastAPI) -> list[WorkItem]:
    with app.state.hub.db.read() as s:
        items = list(s.query(WorkItem).order_by(WorkItem.created_at))
        for i in items:
            s.expunge(i)
        return items


def _export_anonymously(client: TestClient, fmt: str = "parquet") -> str:
    """Press the button as a first-time visitor: confirm once, land on the work page."""
    page = client.get(OPEN).text
    assert _token(page, f"{OPEN}/export") == ""  # no session and no pre-session cookie yet
    confirm = client.post(f"{OPEN}/export", data={"csrf_token": "", "format": fmt},
                          follow_redirects=False)
    assert confirm.status_code == 200 and "Start the download" in confirm.text
    assert "ndl_csrf" in confirm.cookies or client.cookies.get("ndl_csrf")
    started = client.post(f"{OPEN}/export", follow_redirects=False, data={
        "csrf_token": _token(confirm.text, f"{OPEN}/export"), "format": fmt})
    assert started.status_code == 303, started.text
    m = WORK_URL.match(started.headers["location"])
    assert m is not None
    return m.group(1)


def test_only_open_data_offers_the_whole_dataset(client: TestClient) -> None:
    opened = client.get(OPEN).text
    assert 'id="export-parquet"' in opened and 'id="export-csv"' in opened
    assert "Download the whole dataset (Parquet)" in opened
    assert "ndl download dfe/pupil-absence" in opened
    for page in (SAFEGUARDED, "/datasets/nhs-trust/outpatient-appointments"):
        assert 'id="export-form"' not in client.get(page).text


def test_an_anonymous_export_is_reached_by_its_link_alone(app: FastAPI, client: TestClient
                                                         ) -> None:
    work_id = _export_anonymously(client, "csv")
    (item,) = _items(app)
    assert (item.id, item.requester, item.kind, item.params) == (
        work_id, "anonymous", "export", {"format": "csv", "limit": None})
    page = client.get(f"/work/{work_id}")
    assert page.status_code == 200
    assert "Keep this link: it is the only way back to this download" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "Waiting for the datasite" in page.text and 'value="0"' in page.text
    assert f'action="/work/{work_id}/cancel"' in page.text
    assert 'id="work-download"' not in page.text
    # A stranger with the link sees the same page; a malformed or unknown id is a 404.
    with TestClient(app, base_url="https://testserver") as stranger:
        assert stranger.get(f"/work/{work_id}").status_code == 200
        # The near miss differs in its last character whatever that character is.
        near_miss = work_id[:-1] + ("1" if work_id.endswith("0") else "0")
        for bad in ("nope", near_miss, "x" * 200, "%2e%2e"):
            assert stranger.get(f"/work/{bad}").status_code == 404


def test_a_signed_in_export_is_the_users_and_not_anyone_elses(app: FastAPI, login: Login
                                                            ) -> None:
    rita = login("rita")
    page = rita.get(OPEN).text
    token = _token(page, f"{OPEN}/export")
    assert token
    started = rita.post(f"{OPEN}/export", data={"csrf_token": token, "format": "parquet"},
                        follow_redirects=False)
    assert started.status_code == 303
    work_id = WORK_URL.match(started.headers["location"]).group(1)  # type: ignore[union-attr]
    (item,) = _items(app)
    assert item.requester == "user:rita"
    mine = rita.get(f"/work/{work_id}")
    assert mine.status_code == 200 and "Keep this link" not in mine.text
    assert [w["id"] for w in rita.get("/api/work").json()["work"]] == [work_id]
    with TestClient(app, base_url="https://testserver") as anonymous:
        assert anonymous.get(f"/work/{work_id}").status_code == 404
        assert anonymous.post(f"/work/{work_id}/cancel", data={"csrf_token": ""},
                              follow_redirects=False).status_code == 403
    assert _items(app)[0].state == "queued"


def test_a_signed_in_user_cancels_their_own_from_the_page(app: FastAPI, login: Login) -> None:
    rita = login("rita")
    token = _token(rita.get(OPEN).text, f"{OPEN}/export")
    started = rita.post(f"{OPEN}/export", data={"csrf_token": token, "format": "csv"},
                        follow_redirects=False)
    work_id = WORK_URL.match(started.headers["location"]).group(1)  # type: ignore[union-attr]
    page = rita.get(f"/work/{work_id}").text
    forged = rita.post(f"/work/{work_id}/cancel", data={"csrf_token": "forged"},
                       follow_redirects=False)
    assert forged.status_code == 403 and _items(app)[0].state == "queued"
    done = rita.post(f"/work/{work_id}/cancel",
                     data={"csrf_token": _token(page, f"/work/{work_id}/cancel")},
                     follow_redirects=False)
    assert done.status_code == 303
    (item,) = _items(app)
    assert item.state == "cancelled"
    with app.state.hub.db.read() as s:
        entry = s.query(LedgerEntry).filter_by(kind="work.cancelled", subject=work_id).one()
    assert entry.actor.startswith("user#")  # the register names her by number, not name


def test_a_post_from_another_site_starts_nothing_as_the_user(app: FastAPI, login: Login
                                                            ) -> None:
    rita = login("rita")
    for token in ("", "forged", "x" * 500):
        r = rita.post(f"{OPEN}/export", data={"csrf_token": token, "format": "csv"},
                      follow_redirects=False)
        assert r.status_code == 403 and "This form has expired" in r.text
    assert _items(app) == []


def test_non_open_data_is_refused_with_the_tiers_words(app: FastAPI, login: Login) -> None:
    rita = login("rita")
    token = _token(rita.get(OPEN).text, f"{OPEN}/export")
    r = rita.post(f"{SAFEGUARDED}/export", data={"csrf_token": token, "format": "csv"},
                  follow_redirects=False)
    assert r.status_code == 403
    assert "safeguarded data: downloading rows is only for open data" in r.text
    missing = rita.post("/datasets/dfe/no-such-thing/export",
                        data={"csrf_token": token, "format": "csv"}, follow_redirects=False)
    assert missing.status_code == 404
    bad = rita.post(f"{OPEN}/export", data={"csrf_token": token, "format": "xlsx"},
                    follow_redirects=False)
    assert bad.status_code == 422 and "not valid" in bad.text
    assert _items(app) == []


def test_cancel_from_the_page_and_again_changes_nothing(app: FastAPI, client: TestClient
                                                       ) -> None:
    work_id = _export_anonymously(client)
    page = client.get(f"/work/{work_id}").text
    token = _token(page, f"/work/{work_id}/cancel")
    assert token  # the work page gave this browser a pre-session token
    r = client.post(f"/work/{work_id}/cancel", data={"csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/work/{work_id}"
    after = client.get(f"/work/{work_id}").text
    assert "This download was cancelled" in after and "work-cancel-form" not in after
    assert 'http-equiv="refresh"' not in after
    (item,) = _items(app)
    finished = item.finished_at
    again = client.post(f"/work/{work_id}/cancel", data={"csrf_token": token},
                        follow_redirects=False)
    assert again.status_code == 303
    (item,) = _items(app)
    assert item.state == "cancelled" and item.finished_at == finished


def test_a_succeeded_item_offers_its_file(app: FastAPI, client: TestClient) -> None:
    work_id = _export_anonymously(client)
    with app.state.hub.db.write() as s:
        item = s.get(WorkItem, work_id)
        assert item is not None
        item.state, item.progress, item.finished_at = "succeeded", 1.0, utcnow()
        item.progress_message = "finished"
        item.result = dict(WorkResult(sha256="ab" * 32, size=4_200_000,
                                      media_type="text/csv", filename="pupil-absence.csv",
                                      rows=20_000).__dict__)
    page = client.get(f"/work/{work_id}").text
    assert f'href="/api/work/{work_id}/result"' in page
    assert "Download pupil-absence.csv" in page and "4.2 MB" in page and "20,000 rows" in page
    assert "ab" * 32 in page and 'value="100"' in page
    assert "work-cancel-form" not in page and 'http-equiv="refresh"' not in page
    assert "/static/work.js" not in page  # nothing left to follow


def test_the_page_follows_live_or_refreshes(app: FastAPI, client: TestClient,
                                            tmp_path: Path) -> None:
    work_id = _export_anonymously(client)
    app.state.ndl_static_dir = tmp_path  # no built script: the page refreshes itself
    plain = client.get(f"/work/{work_id}").text
    assert '<meta http-equiv="refresh" content="2">' in plain
    assert "/static/work.js" not in plain
    (tmp_path / "work.js").write_text("// built")
    live = client.get(f"/work/{work_id}").text
    assert '<script type="module" src="/static/work.js"></script>' in live
    assert '<noscript><meta http-equiv="refresh" content="2"></noscript>' in live
    assert f'data-events="/api/work/{work_id}/events"' in live


def test_the_script_reads_the_event_stream_only() -> None:
    script = (Path(work_pages.__file__).parent / "assets" / "work.js").read_text()
    assert "new EventSource(root.dataset.events)" in script
    assert not re.search(r"https?://", script), "the page's script loads nothing off-site"
