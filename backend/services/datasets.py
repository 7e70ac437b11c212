"""Datasets: named sets of labelled images (blobs in the store, rows in the database)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Engine, func, select
from sqlmodel import Session

from kensa.backend.records import Dataset, DatasetImage, Inspection
from kensa.backend.services.images import ImageRejected, decode_image
from kensa.backend.services.storage import BlobStore
from kensa.contract.schemas import DatasetPublic

GOOD = "good"


class DatasetError(Exception):
    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


def counts(session: Session, dataset_id: uuid.UUID) -> dict[str, int]:
    rows = session.execute(select(DatasetImage.label, func.count())
                           .where(DatasetImage.dataset_id == dataset_id)
                           .group_by(DatasetImage.label)).all()
    return {label: int(n) for label, n in sorted(rows)}


def _public(session: Session, dataset: Dataset) -> DatasetPublic:
    return DatasetPublic(id=dataset.id, name=dataset.name, station=dataset.station,
                         counts=counts(session, dataset.id), created_at=dataset.created_at)


def find(session: Session, ref: str) -> Dataset | None:
    """A dataset by id or by name."""
    try:
        found = session.get(Dataset, uuid.UUID(ref))
        if found is not None:
            return found
    except ValueError:
        pass
    return session.execute(select(Dataset).where(Dataset.name == ref)).scalars().first()


def create(engine: Engine, name: str, station: str | None) -> DatasetPublic:
    with Session(engine) as session, session.begin():
        if session.execute(select(Dataset).where(Dataset.name == name)).first():
            raise DatasetError(409, f"a dataset named {name!r} exists")
        dataset = Dataset(name=name, station=station)
        session.add(dataset)
        session.flush()
        return _public(session, dataset)


def list_all(engine: Engine) -> list[DatasetPublic]:
    with Session(engine) as session:
        rows = session.execute(select(Dataset).order_by(Dataset.created_at)).scalars().all()
        return [_public(session, d) for d in rows]


def get(engine: Engine, ref: str) -> DatasetPublic | None:
    with Session(engine) as session:
        dataset = find(session, ref)
        return None if dataset is None else _public(session, dataset)


def _check_label(label: str) -> str:
    label = label.strip()
    if not label or len(label) > 100:
        raise DatasetError(422, "label must be 'good' or a defect label of 1-100 characters")
    return label


def add_images(engine: Engine, store: BlobStore, ref: str, images: Sequence[bytes],
               label: str, max_pixels: int) -> tuple[int, dict[str, int]]:
    """Verify every image first, then write blobs and rows; a failure writes nothing."""
    label = _check_label(label)
    if not images:
        raise DatasetError(422, "no images sent (field 'image', repeatable)")
    with Session(engine) as session:
        dataset = find(session, ref)
        if dataset is None:
            raise DatasetError(404, f"no dataset {ref!r}")
        dataset_id = dataset.id
    decoded = []
    for index, data in enumerate(images):
        try:
            decoded.append(decode_image(data, max_pixels))
        except ImageRejected as exc:
            raise DatasetError(exc.status_code, f"image {index + 1}: {exc.detail}") from None
    return _write(engine, store, dataset_id, [
        (data, d.suffix, d.content_type, d.width, d.height, None)
        for data, d in zip(images, decoded, strict=True)], label)


def add_from_history(engine: Engine, store: BlobStore, ref: str,
                     inspection_ids: Sequence[uuid.UUID], label: str
                     ) -> tuple[int, dict[str, int]]:
    """Add inspections' stored photos (no new blobs: the keys are shared)."""
    label = _check_label(label)
    with Session(engine) as session:
        dataset = find(session, ref)
        if dataset is None:
            raise DatasetError(404, f"no dataset {ref!r}")
        dataset_id = dataset.id
        found = {i.id: i for i in session.execute(
            select(Inspection).where(Inspection.id.in_(list(inspection_ids)))).scalars()}
    missing = [str(i) for i in inspection_ids if i not in found]
    if missing:
        raise DatasetError(404, f"no inspection(s) {', '.join(missing)}")
    with Session(engine) as session, session.begin():
        for inspection_id in dict.fromkeys(inspection_ids):
            i = found[inspection_id]
            session.add(DatasetImage(dataset_id=dataset_id, label=label,
                                     image_key=i.image_key,
                                     content_type=i.image_content_type, width=i.width,
                                     height=i.height, inspection_id=i.id))
    with Session(engine) as session:
        return len(dict.fromkeys(inspection_ids)), counts(session, dataset_id)


def _write(engine: Engine, store: BlobStore, dataset_id: uuid.UUID,
           items: Sequence[tuple[bytes, str, str, int, int, uuid.UUID | None]], label: str
           ) -> tuple[int, dict[str, int]]:
    created: list[str] = []
    try:
        keys = []
        for data, suffix, *_ in items:
            result = store.put(data, suffix)
            if result.created:
                created.append(result.key)
            keys.append(result.key)
        with Session(engine) as session, session.begin():
            for key, (_, _, content_type, width, height, source) in zip(keys, items,
                                                                        strict=True):
                session.add(DatasetImage(dataset_id=dataset_id, label=label, image_key=key,
                                         content_type=content_type, width=width,
                                         height=height, inspection_id=source))
    except BaseException:
        for key in created:
            store.delete(key)
        raise
    with Session(engine) as session:
        return len(items), counts(session, dataset_id)


def images(session: Session, dataset_id: uuid.UUID) -> list[DatasetImage]:
    return list(session.execute(select(DatasetImage)
                                .where(DatasetImage.dataset_id == dataset_id)
                                .order_by(DatasetImage.id)).scalars())
