"""The Network a test gets from the ``network`` fixture (importable for type hints)."""

from __future__ import annotations

from dataclasses import dataclass

from ndl.client import Client
from ndl.testing import DatasiteProcess, HubProcess


@dataclass
class Network:
    hub: HubProcess
    site: DatasiteProcess
    researcher: str
    steward: str
    project: str

    def client(self, token: str | None = None) -> Client:
        return Client(self.hub.url, token if token is not None else self.researcher)
