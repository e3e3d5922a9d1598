"""The client's side of long work against a mock hub: the event stream, the fall-back to
polling, the resumable checked download, and what a final state means to the caller."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ndl.core.errors import (
    Cancelled,
    InvalidInput,
    NotFound,
    PermissionDenied,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from ndl.hubclient import Client, Work, _long, outcome_error, parse_sse, safe_filename, state_events

WID = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"
BLOB = bytes(range(256)) * 5000  # 1.28 MB, several download chunks
SHA = hashlib.sha256(BLOB).hexdigest()


def view(state: str = "queued", progress: float = 0.0, message: str = "", **extra: Any
         ) -> dict[str, Any]:
    final = state in ("succeeded", "failed", "cancelled", "expired")
    return {"id": WID, "kind": "export", "dataset": "la/wards", "state": state,
            "progress": progress, "message": message,
            "created_at": "2026-12-05T16:00:00+00:00", "started_at": None,
            "finished_at": None, "deadline": "2026-12-05T22:00:00+00:00", "attempts": 1,
            "error": None, "result": None, "final": final, **extra}


DONE = view("succeeded", 1.0, "finished", result={
    "sha256": SHA, "size": len(BLOB), "media_type": "application/vnd.apache.parquet",
    "filename": "wards.parquet", "rows": 300_000})


def sse(*views: dict[str, Any]) -> bytes:
    return b"".join(f"event: state\nid: {i}\ndata: {json.dumps(v)}\n\n".encode()
                    for i, v in enumerate(views))


class Broken(httpx.SyncByteStream):
    """A body that sends ``head`` and then the connection drops."""

    def __init__(self, head: bytes) -> None:
        self.head = head

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        raise httpx.ReadError("connection reset by peer")


class MockHub:
    """Answers the work routes; ``events``/``polls``/``blob`` say what each route sends."""

    def __init__(self, events: bytes | httpx.SyncByteStream | int = b"",
                 polls: list[dict[str, Any]] | None = None, blob: bytes = BLOB,
                 cut_at: int | None = None, etag: str | None = None) -> None:
        self.events, self.polls, self.blob = events, list(polls or [DONE]), blob
        self.cut_at, self.etag = cut_at, etag
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        path = request.url.path
        if request.method == "POST" and path == "/api/work":
            return httpx.Response(202, json=view(), headers={"Location": f"/api/work/{WID}"})
        if path.endswith("/events"):
            if isinstance(self.events, int):
                return httpx.Response(self.events, json={"error": {
                    "code": "not_found", "message": f"no work item {WID!r}"}})
            stream = self.events if isinstance(self.events, httpx.SyncByteStream) else None
            return httpx.Response(200, headers={"content-type": "text/event-stream"},
                                  content=None if stream else self.events, stream=stream)
        if path.endswith("/result"):
            return self.result(request)
        if path == f"/api/work/{WID}":
            return httpx.Response(200, json=self.polls.pop(0) if len(self.polls) > 1
                                  else self.polls[0])
        return httpx.Response(404, json={"error": {"code": "not_found", "message": path}})

    def result(self, request: httpx.Request) -> httpx.Response:
        start = 0
        rng = request.headers.get("range")
        if rng:
            start = int(rng.removeprefix("bytes=").rstrip("-"))
        body = self.blob[start:]
        headers = {"etag": f'"{self.etag or SHA}"', "accept-ranges": "bytes"}
        status = 200
        if rng:
            status = 206
            headers["content-range"] = f"bytes {start}-{len(self.blob) - 1}/{len(self.blob)}"
        if self.cut_at is not None and start < self.cut_at:
            cut, self.cut_at = self.cut_at - start, None  # only the first attempt breaks
            return httpx.Response(status, headers=headers, stream=Broken(body[:cut]))
        return httpx.Response(status, headers=headers, content=body)

    def client(self) -> Client:
        return Client("http://hub.test", "ndl_t", transport=httpx.MockTransport(self))


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_long, "POLL_SECONDS", 0.0)
    monkeypatch.setattr(_long.time, "sleep", lambda s: None)


# -- the event stream ------------------------------------------------------------------------

def test_events_follow_the_stream_rules() -> None:
    lines = [": a comment the hub may send to keep the line open", "event: state",
             "data: {\"a\":", "data:1}", "id: 7", "retry: 1000", "unknown: x", "",
             "", "data: plain", "", "event: state", "data: cut off here"]
    events = list(parse_sse(lines))
    assert [(e.event, e.data, e.id) for e in events] == [
        ("state", '{"a":\n1}', "7"), ("message", "plain", "7")]


def test_an_oversized_line_is_refused() -> None:
    with pytest.raises(ValueError, match="not the hub's"):
        list(parse_sse(["data: " + "x" * (_long.CHUNK + 10)]))


def test_state_events_are_typed_views() -> None:
    got = list(state_events(sse(view(), view("running", 0.5, "half"), DONE).decode()
                            .split("\n")))
    assert [type(w) for w in got] == [Work, Work, Work]
    assert [(w.state, w.progress, w.final) for w in got] == [
        ("queued", 0.0, False), ("running", 0.5, False), ("succeeded", 1.0, True)]
    assert got[2].result is not None and got[2].result.rows == 300_000
    assert got[2].result_url == f"/api/work/{WID}/result"


def test_follow_reads_the_stream_until_final() -> None:
    hub = MockHub(events=sse(view(), view("running", 0.4, "40%"), view("running", 0.4, "40%"),
                             DONE))
    with hub.client() as c:
        states = [(w.state, w.progress) for w in c.follow_work(WID)]
    assert states == [("queued", 0.0), ("running", 0.4), ("succeeded", 1.0)]  # no repeats
    assert [r.url.path for r in hub.seen] == [f"/api/work/{WID}/events"]
    assert hub.seen[0].headers["authorization"] == "Bearer ndl_t"


def test_a_broken_stream_falls_back_to_polling() -> None:
    head = sse(view("running", 0.2, "20%")) + b"event: state\ndata: {\"id\": \"6f1c"
    hub = MockHub(events=Broken(head), polls=[view("running", 0.2, "20%"),
                                              view("running", 0.7, "70%"), DONE])
    with hub.client() as c:
        states = [(w.state, w.progress) for w in c.follow_work(WID)]
    assert states == [("running", 0.2), ("running", 0.7), ("succeeded", 1.0)]
    assert [r.url.path for r in hub.seen].count(f"/api/work/{WID}") == 3


def test_a_stream_that_ends_early_falls_back_to_polling() -> None:
    hub = MockHub(events=sse(view("running", 0.3)), polls=[DONE])
    with hub.client() as c:
        assert [w.state for w in c.follow_work(WID)] == ["running", "succeeded"]


class Restarting(MockHub):
    """The hub cannot be reached for ``down`` polls (a restart), then answers."""

    def __init__(self, down: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.down = down

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == f"/api/work/{WID}" and self.down > 0:
            self.down -= 1
            raise httpx.ConnectError("connection refused")
        return super().__call__(request)


def test_polling_rides_out_a_hub_restart() -> None:
    hub = Restarting(3, events=Broken(b""), polls=[DONE])
    with hub.client() as c:
        assert [w.state for w in c.follow_work(WID)] == ["succeeded"]
    assert hub.down == 0


def test_a_hub_that_stays_away_ends_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_long, "HUB_OUTAGE_SECONDS", 0.0)
    hub = Restarting(10**6, events=Broken(b""))
    with hub.client() as c, pytest.raises(UpstreamUnavailable, match="cannot reach the hub") \
            as err:
        c.wait_work(WID, progress=False)
    assert f"wait for it again with 'ndl work wait {WID}'" in err.value.message


def test_a_refusal_on_the_stream_is_an_error_not_a_poll() -> None:
    hub = MockHub(events=404)
    with hub.client() as c, pytest.raises(NotFound, match="no work item"):
        list(c.follow_work(WID))
    assert len(hub.seen) == 1


def test_a_malformed_id_sends_nothing() -> None:
    hub = MockHub()
    with hub.client() as c:
        for bad in ("../me", WID + "/../x", "", WID.upper()):
            with pytest.raises(InvalidInput, match="work id"):
                list(c.follow_work(bad))
            with pytest.raises(InvalidInput, match="work id"):
                c.fetch_work(bad)
    assert hub.seen == []


def test_wait_gives_up_at_its_timeout_and_says_how_to_resume() -> None:
    hub = MockHub(events=b"", polls=[view("running", 0.1)])
    with hub.client() as c, pytest.raises(UpstreamTimeout, match=f"ndl work wait {WID}"):
        c.wait_work(WID, timeout=0.0, progress=False)


def test_ctrl_c_while_waiting_stops_only_the_wait(capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(request: httpx.Request) -> httpx.Response:
        raise KeyboardInterrupt

    with Client("http://hub.test", transport=httpx.MockTransport(interrupted)) as c, \
            pytest.raises(KeyboardInterrupt):
        c.wait_work(WID, progress=False)
    err = capsys.readouterr().err
    assert f"ndl work wait {WID}" in err and f"ndl work cancel {WID}" in err


# -- final states ----------------------------------------------------------------------------

def test_final_states_say_what_happened() -> None:
    def of(state: str, **extra: Any) -> Work:
        from ndl.hubclient._work import work_view

        return work_view(view(state, **extra))

    failed = outcome_error(of("failed", error={"code": "permission_denied",
                                              "message": "only open data is exported"}))
    assert isinstance(failed, PermissionDenied) and "only open data" in failed.message
    assert isinstance(outcome_error(of("cancelled")), Cancelled)
    assert isinstance(outcome_error(of("expired")), UpstreamTimeout)
    odd = outcome_error(of("failed", error={"code": "no_such_code", "message": "x"}))
    assert isinstance(odd, UpstreamUnavailable)
    assert outcome_error(of("running")) is None and outcome_error(of("succeeded")) is None


def test_fetching_unfinished_or_cancelled_work_is_refused(tmp_path: Path) -> None:
    with MockHub(polls=[view("running", 0.5)]).client() as c, \
            pytest.raises(InvalidInput, match="no result yet"):
        c.fetch_work(WID, tmp_path)
    with MockHub(polls=[view("cancelled")]).client() as c, \
            pytest.raises(Cancelled, match="was cancelled"):
        c.fetch_work(WID, tmp_path)
    assert list(tmp_path.iterdir()) == []


# -- the download ----------------------------------------------------------------------------

def test_export_submits_waits_and_downloads(tmp_path: Path) -> None:
    hub = MockHub(events=sse(view(), view("running", 0.5), DONE))
    with hub.client() as c:
        path = c.export("la/wards", tmp_path, format="csv", limit=10, progress=False)
    assert path == tmp_path / "wards.parquet" and path.read_bytes() == BLOB
    submit = json.loads(hub.seen[0].content)
    assert submit == {"kind": "export", "dataset": "la/wards",
                      "params": {"format": "csv", "limit": 10}}
    assert not list(tmp_path.glob("*.part"))


def test_a_cut_download_resumes_with_range(tmp_path: Path) -> None:
    hub = MockHub(cut_at=300_001)
    with hub.client() as c:
        path = c.fetch_work(WID, tmp_path / "out.parquet", progress=False)
    assert path.read_bytes() == BLOB
    ranges = [r.headers.get("range") for r in hub.seen if r.url.path.endswith("/result")]
    assert ranges == [None, "bytes=300001-"]


def test_a_partial_file_from_an_earlier_run_is_resumed(tmp_path: Path) -> None:
    dest = tmp_path / "w.parquet"
    (tmp_path / f"w.parquet.{SHA[:12]}.part").write_bytes(BLOB[:1000])
    hub = MockHub()
    with hub.client() as c:
        c.fetch_work(WID, dest, progress=False)
    assert dest.read_bytes() == BLOB
    assert [r.headers.get("range") for r in hub.seen if r.url.path.endswith("/result")] == \
        ["bytes=1000-"]


def test_a_corrupted_download_is_deleted_not_kept(tmp_path: Path) -> None:
    bad = bytearray(BLOB)
    bad[12345] ^= 1
    hub = MockHub(blob=bytes(bad))
    with hub.client() as c, pytest.raises(UpstreamUnavailable, match="SHA-256"):
        c.fetch_work(WID, tmp_path / "w.parquet", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_file_with_another_etag_is_refused(tmp_path: Path) -> None:
    hub = MockHub(etag="0" * 64)
    with hub.client() as c, pytest.raises(UpstreamUnavailable, match="SHA-256"):
        c.fetch_work(WID, tmp_path / "w.parquet", progress=False)
    assert not (tmp_path / "w.parquet").exists()


def test_more_bytes_than_announced_are_refused(tmp_path: Path) -> None:
    hub = MockHub(blob=BLOB + b"extra")
    with hub.client() as c, pytest.raises(UpstreamUnavailable, match="more than"):
        c.fetch_work(WID, tmp_path / "w.parquet", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_download_that_keeps_breaking_keeps_its_part(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    hub = MockHub()
    monkeypatch.setattr(hub, "result", lambda request: httpx.Response(
        200, headers={"etag": SHA}, stream=Broken(BLOB[:10])))
    with hub.client() as c, pytest.raises(UpstreamUnavailable, match="run the same command"):
        c.fetch_work(WID, tmp_path / "w.parquet", progress=False)
    assert not (tmp_path / "w.parquet").exists()


@pytest.mark.parametrize(("name", "safe"), [
    ("../../etc/passwd", "passwd"), ("..\\..\\win.ini", "win.ini"), (".bashrc", "bashrc"),
    ("", f"{WID}.bin"), ("..", f"{WID}.bin"), ("wards 2024.csv", "wards_2024.csv"),
    ("/abs/olute.parquet", "olute.parquet"),
])
def test_the_hubs_file_name_cannot_leave_the_folder(name: str, safe: str) -> None:
    assert safe_filename(name, f"{WID}.bin") == safe
