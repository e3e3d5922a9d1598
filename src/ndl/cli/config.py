"""Where the CLI keeps the hub URL and the token ``ndl login`` obtained."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ndl.client import DEFAULT_HUB


def config_path(environ: Mapping[str, str]) -> Path:
    base = environ.get("NDL_CONFIG_DIR") or str(Path.home() / ".config" / "ndl")
    return Path(base) / "config.json"


def load(environ: Mapping[str, str]) -> dict[str, Any]:
    path = config_path(environ)
    if not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return data


def save(environ: Mapping[str, str], **values: Any) -> Path:
    path = config_path(environ)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {**load(environ), **values}
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds a token
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, path)
    return path


def hub_url(environ: Mapping[str, str], given: str | None) -> str:
    return given or environ.get("NDL_HUB") or load(environ).get("hub") or DEFAULT_HUB


def token(environ: Mapping[str, str], given: str | None) -> str | None:
    value = given or environ.get("NDL_TOKEN") or load(environ).get("token")
    return str(value) if value else None
