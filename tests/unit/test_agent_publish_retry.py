"""A publication the hub refused is tried again: the datasite once remembered what it meant to
publish before publishing, so a hub error (20 datasites starting at once) left its datasets
out of the catalogue until something changed in its folder."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pyarrow as pa

from ndl.core.errors import InternalError
from ndl.datasite.agent import Agent
from ndl.datasite.store import DatasiteStore
from ndl.testing import write_dataset


def test_a_failed_publication_is_tried_again(tmp_path: Path) -> None:
    write_dataset(tmp_path, "wards", pa.table({"ward": ["A"], "n": [1]}), tier="open")
    agent = Agent(DatasiteStore(tmp_path), "http://127.0.0.1:9", datasite_id="site", org="org")
    agent.backoff = 0.01
    published = threading.Event()
    calls: list[str] = []

    def publish() -> list[dict[str, Any]]:
        calls.append("publish")
        if len(calls) == 1:
            raise InternalError("the hub hit an internal error; nothing was changed")
        published.set()
        agent.stop()
        return []

    # Only the hub is replaced (there is none here); the loop under test is the real one.
    agent.register = lambda: None  # type: ignore[method-assign]
    agent.publish_encryption_key = lambda: True  # type: ignore[method-assign]
    agent.publish = publish  # type: ignore[method-assign]
    agent.poll_once = lambda wait=None: 0  # type: ignore[method-assign]
    agent._start_mocks = lambda: None  # type: ignore[method-assign]
    loop = threading.Thread(target=agent.run, daemon=True)
    loop.start()
    try:
        assert published.wait(20), f"published {len(calls)} time(s), never again"
    finally:
        agent.stop()
        loop.join(10)
        agent.close(grace=0)
    assert calls == ["publish", "publish"]
