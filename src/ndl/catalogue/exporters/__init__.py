"""The catalogue in other people's formats: DCAT-3 (DCAT-AP 3.0), Croissant, CKAN, Markdown
and ``llms.txt``.

Every exporter is a pure function of the hub's dataset detail dicts
(:func:`ndl.catalogue.service.detail_json`) and the hub's base URL, so the API, the web pages,
the MCP server and tests all produce the same documents.
"""

from __future__ import annotations

from ndl.catalogue.exporters._links import LIBRARY_NAME, TIER_SUMMARY, HubLinks, Links
from ndl.catalogue.exporters.ckan import organization, package
from ndl.catalogue.exporters.croissant import dataset_croissant
from ndl.catalogue.exporters.dcat import catalogue_dcat, dataset_dcat
from ndl.catalogue.exporters.llms import llms_txt
from ndl.catalogue.exporters.markdown import catalogue_markdown, dataset_markdown

__all__ = [
    "LIBRARY_NAME",
    "TIER_SUMMARY",
    "HubLinks",
    "Links",
    "catalogue_dcat",
    "catalogue_markdown",
    "dataset_croissant",
    "dataset_dcat",
    "dataset_markdown",
    "llms_txt",
    "organization",
    "package",
]
