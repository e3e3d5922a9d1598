"""Where things live on a hub, so every exporter links to the same addresses.

Each exporter takes the hub's base URL (``https://library.example``, no trailing slash) and the
dataset detail dict from :func:`ndl.catalogue.service.detail_json`; nothing here touches the
database or the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ndl.core.tiers import TIERS

LIBRARY_NAME = "National Data Library"

# One sentence per tier, from the one tier definition (ndl.core.tiers), for every exporter.
TIER_SUMMARY: dict[str, str] = {str(name): t.summary for name, t in TIERS.items()}


def dataset_id(detail: dict[str, Any]) -> str:
    return str(detail.get("id") or f"{detail['datasite']}/{detail['name']}")


@dataclass(frozen=True)
class Links:
    """The addresses of one dataset's representations on one hub."""

    base: str
    site: str
    name: str

    @classmethod
    def of(cls, base_url: str, detail: dict[str, Any]) -> Links:
        site, _, name = dataset_id(detail).partition("/")
        return cls(base_url.rstrip("/"), site, name)

    @property
    def _path(self) -> str:
        return f"{quote(self.site, safe='')}/{quote(self.name, safe='')}"

    @property
    def page(self) -> str:
        return f"{self.base}/datasets/{self._path}"

    @property
    def markdown(self) -> str:
        return f"{self.page}.md"

    @property
    def api(self) -> str:
        return f"{self.base}/api/datasets/{self._path}"

    @property
    def iri(self) -> str:
        """The dataset's IRI in DCAT: RDF to an RDF ``Accept``, the page to a browser."""
        return f"{self.base}/id/datasets/{self._path}"

    @property
    def dcat(self) -> str:
        return f"{self.api}/dcat"

    def dcat_as(self, ext: str) -> str:
        """The DCAT in one syntax by extension: ``ttl``, ``rdf`` or ``jsonld``."""
        return f"{self.dcat}.{ext}"

    @property
    def croissant(self) -> str:
        return f"{self.api}/croissant"

    @property
    def mock_csv(self) -> str:
        return f"{self.api}/mock?format=csv"

    @property
    def rows_csv(self) -> str:
        return f"{self.api}/rows?format=csv"

    @property
    def sql(self) -> str:
        return f"{self.api}/sql"

    @property
    def query(self) -> str:
        return f"{self.api}/query"

    @property
    def private_query(self) -> str:
        return f"{self.api}/private-query"


@dataclass(frozen=True)
class HubLinks:
    """The hub-wide addresses an agent or a harvester starts from."""

    base: str

    @classmethod
    def of(cls, base_url: str) -> HubLinks:
        return cls(base_url.rstrip("/"))

    @property
    def home(self) -> str:
        return f"{self.base}/"

    @property
    def api(self) -> str:
        return f"{self.base}/api"

    @property
    def openapi(self) -> str:
        return f"{self.base}/api/openapi.json"

    @property
    def catalogue_dcat(self) -> str:
        return f"{self.base}/api/catalogue/dcat"

    def catalogue_dcat_as(self, ext: str) -> str:
        return f"{self.catalogue_dcat}.{ext}"

    @property
    def ckan(self) -> str:
        return f"{self.base}/api/3/action"

    @property
    def mcp(self) -> str:
        return f"{self.base}/mcp"

    @property
    def llms(self) -> str:
        return f"{self.base}/llms.txt"

    @property
    def orgs(self) -> str:
        return f"{self.base}/api/orgs"

    def org(self, org_id: str) -> str:
        # /api/orgs lists every organisation; the fragment names one entry in that list.
        return f"{self.orgs}#{quote(org_id, safe='')}"
