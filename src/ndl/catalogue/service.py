"""Publishing metadata into the hub catalogue and reading it back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from ndl.catalogue.metadata import DatasetMeta
from ndl.catalogue.models import (
    CatalogueState,
    Dataset,
    DatasetFacet,
    DatasetMock,
    DatasetVersion,
)
from ndl.catalogue.search import reindex
from ndl.core.db import utcnow
from ndl.core.errors import InvalidInput, NotFound
from ndl.core.keys import SigningKey
from ndl.federation.models import Datasite
from ndl.ledger import register

if TYPE_CHECKING:
    from ndl.access.accounts import Principal


def publish(
    session: Session, key: SigningKey, datasite: Datasite, metas: list[DatasetMeta]
) -> list[dict[str, Any]]:
    """Upsert a datasite's datasets. A changed dataset gets a new version and a register entry.

    The publisher is the datasite's registered organisation, whatever the metadata says: the
    datasite's key speaks for that organisation and no other, so a DfE datasite cannot list
    (or be found under) an NHS trust's name.
    """
    from ndl.access.models import Org

    org = session.get(Org, datasite.org_id)
    publisher = org.name if org is not None else datasite.org_id
    # One publication at a time: a new dataset's number is the largest so far plus one, which
    # two concurrent transactions on PostgreSQL would both take (20 datasites publishing at
    # once hit uq_datasets_num). The catalogue's one state row is the lock; SQLite's write
    # transactions are serial already.
    session.execute(select(CatalogueState.id).where(CatalogueState.id == 1).with_for_update())
    out = []
    for meta in metas:
        if meta.publisher != publisher:
            meta = meta.model_copy(update={"publisher": publisher})
        ds_id = f"{datasite.id}/{meta.name}"
        digest = meta.content_hash()
        ds = session.get(Dataset, ds_id)
        if ds is not None and ds.withdrawn_at is not None:
            # Withdrawn stays withdrawn (ndl.catalogue.lifecycle): republishing from the
            # datasite's folder does not bring it back into the catalogue.
            out.append({"id": ds_id, "version": ds.version, "changed": False,
                        "withdrawn": True})
            continue
        if ds is not None and ds.metadata_hash == digest:
            out.append({"id": ds_id, "version": ds.version, "changed": False})
            continue
        if ds is None:
            num = (session.scalar(select(func.max(Dataset.num))) or 0) + 1
            ds = Dataset(id=ds_id, num=num, datasite_id=datasite.id, org_id=datasite.org_id,
                         version=1)
            session.add(ds)
        else:
            ds.version += 1
            ds.updated_at = utcnow()
        ds.name, ds.title, ds.description = meta.name, meta.title, meta.description
        ds.publisher, ds.tier, ds.keywords = meta.publisher, meta.tier, list(meta.keywords)
        ds.columns = [c.model_dump(mode="json") for c in meta.columns]
        ds.row_count, ds.metadata_hash = meta.row_count, digest
        ds.meta = meta.model_dump(mode="json")
        ds.policy = _policy(meta)
        session.flush()
        session.add(DatasetVersion(dataset_id=ds_id, version=ds.version, meta=ds.meta,
                                   metadata_hash=digest))
        set_facets(session, ds_id, facet_values(meta))
        reindex(session, ds)
        session.execute(update(CatalogueState).where(CatalogueState.id == 1)
                        .values(generation=CatalogueState.generation + 1))
        if ds.version == 1:
            from ndl.wishlist.service import link_published

            link_published(session, key, ds)
        register.append(
            session, key, kind="dataset.published", actor=f"datasite:{datasite.id}",
            subject=ds_id, payload={"version": ds.version, "tier": ds.tier,
                                    "metadata_hash": digest},
        )
        out.append({"id": ds_id, "version": ds.version, "changed": True})
    return out


def _policy(meta: DatasetMeta) -> dict[str, Any]:
    from ndl.access.policy import Policy, default_policy

    raw = getattr(meta, "policy", None)
    try:
        policy = Policy.model_validate(raw) if raw else default_policy(meta.tier)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"{meta.name}: policy.{where}: {first['msg']}") from exc
    return policy.model_dump(mode="json")


def facet_values(meta: DatasetMeta) -> dict[str, set[str]]:
    """The facet values a dataset is found under."""
    years: set[str] = set()
    if meta.temporal is not None:
        end = (meta.temporal.end or date.today()).year
        years = {str(y) for y in range(max(meta.temporal.start.year, end - 99), end + 1)}
    return {
        "publisher": {meta.publisher}, "tier": {meta.tier}, "theme": set(meta.themes),
        "geography": {meta.spatial} if meta.spatial else set(), "year": years,
        "join_key": set(meta.join_keys),
    }


def set_facets(session: Session, dataset_id: str, values: dict[str, set[str]]) -> None:
    session.execute(delete(DatasetFacet).where(DatasetFacet.dataset_id == dataset_id))
    session.add_all(DatasetFacet(dataset_id=dataset_id, facet=f, value=v)
                    for f, vs in values.items() for v in sorted(vs))


def versions(session: Session, dataset_id: str) -> list[DatasetVersion]:
    return list(session.scalars(
        select(DatasetVersion).where(DatasetVersion.dataset_id == dataset_id)
        .order_by(DatasetVersion.version.desc())))


def get_dataset(session: Session, dataset_id: str) -> Dataset:
    ds = session.get(Dataset, dataset_id)
    if ds is None:
        raise NotFound(
            f"dataset {dataset_id!r} is not in the catalogue; find ids with 'ndl search' "
            "or GET /api/datasets?q=..."
        )
    return ds


def list_datasets(session: Session, datasite_id: str) -> list[Dataset]:
    return list(session.scalars(select(Dataset).where(Dataset.datasite_id == datasite_id)))


_SUMMARY_KEYS = {"name", "title", "publisher", "tier", "description", "keywords", "row_count",
                 "columns"}


def summary_json(ds: Dataset) -> dict[str, Any]:
    return {
        "id": ds.id, "name": ds.name, "title": ds.title, "publisher": ds.publisher,
        "org": ds.org_id, "datasite": ds.datasite_id, "tier": ds.tier,
        "description": ds.description, "keywords": ds.keywords, "row_count": ds.row_count,
        "version": ds.version,
    }


def detail_json(ds: Dataset) -> dict[str, Any]:
    from ndl.access.policy import Policy, default_policy

    extra = {k: v for k, v in (ds.meta or {}).items() if k not in _SUMMARY_KEYS}
    policy = Policy.model_validate(ds.policy) if ds.policy else default_policy(ds.tier)
    return {
        **extra, **summary_json(ds), "columns": ds.columns,
        "policy": policy.model_dump(mode="json"),
        "policy_summary": extra.get("policy_summary") or policy.summary(ds.tier),
        "published_at": ds.published_at.isoformat(), "updated_at": ds.updated_at.isoformat(),
        # A withdrawn entry is still found by its id, saying so (ndl.catalogue.lifecycle).
        **({"withdrawn": {"at": ds.withdrawn_at.isoformat(), "reason": ds.withdrawn_reason or "",
                          "deleted_at": ds.deleted_at.isoformat() if ds.deleted_at else None}}
           if ds.withdrawn_at is not None else {}),
    }


# --- reads for the faces (the web pages call these, never the ORM) ------------------------


@dataclass(frozen=True)
class CatalogueCounts:
    datasets: int
    datasites: int
    organisations: int


def counts(session: Session) -> CatalogueCounts:
    from ndl.access.models import Org

    def n(model: type[Any], *where: Any) -> int:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    return CatalogueCounts(n(Dataset, Dataset.withdrawn_at.is_(None)),
                           n(Datasite, Datasite.state == "approved"), n(Org))


def find_dataset(session: Session, dataset_id: str) -> Dataset | None:
    """The catalogue entry, or None when the id is not (or no longer) in the catalogue."""
    return session.get(Dataset, dataset_id)


def titles(session: Session, ids: list[str] | set[str]) -> dict[str, str]:
    """Dataset id to title, for the ids in the catalogue."""
    if not ids:
        return {}
    return {d.id: d.title for d in session.scalars(select(Dataset).where(Dataset.id.in_(ids)))}


def has_mock(session: Session, dataset_id: str) -> bool:
    # Only the key: the mock row also holds the Parquet bytes.
    return session.scalar(select(DatasetMock.dataset_id)
                          .where(DatasetMock.dataset_id == dataset_id)) is not None


@dataclass(frozen=True)
class MockPreview:
    """What a dataset page's mock panel shows: ``not_served`` (the tier has no mock: its real
    rows are open), ``anonymous`` (sign in first), ``none`` (no mock yet) or ``rows``."""

    state: str
    mock: DatasetMock | None = None
    table: dict[str, Any] | None = None  # mocks.to_json of the first rows


def mock_preview(session: Session, who: Principal | None, ds: Dataset, rows: int) -> MockPreview:
    """The first ``rows`` mock rows, if the tier serves mocks and ``who`` may see them."""
    from ndl.access import rules
    from ndl.catalogue import mocks
    from ndl.core.errors import AuthenticationRequired
    from ndl.core.tiers import Operation, tier_def

    if not tier_def(ds.tier).allows(Operation.MOCK):
        return MockPreview("not_served")
    try:
        rules.require_data_operation(who, ds.tier, Operation.MOCK, dataset=ds.id)
    except AuthenticationRequired:
        return MockPreview("anonymous")
    try:
        mock = mocks.get_mock(session, ds.id)
    except NotFound:
        return MockPreview("none")
    return MockPreview("rows", mock, mocks.to_json(mocks.read_rows(mock, rows)))


def datasets_of_org(session: Session, org_id: str | None, limit: int) -> list[Dataset]:
    """Datasets by title: one organisation's, or every organisation's for ``None``."""
    stmt = (select(Dataset).where(Dataset.withdrawn_at.is_(None)).order_by(Dataset.title)
            .limit(limit))
    if org_id is not None:
        stmt = stmt.where(Dataset.org_id == org_id)
    return list(session.scalars(stmt))
