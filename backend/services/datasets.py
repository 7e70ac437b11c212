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
               label: str, max_pixels: int, masks: Sequence[bytes] = ()
               ) -> tuple[int, dict[str, int]]:
    """Verify every image (and mask) first, then write blobs and rows; a failure writes
    nothing."""
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
    check_masks(masks, [(d.width, d.height) for d in decoded], label, max_pixels)
    return _write(engine, store, dataset_id, [
        (data, d.suffix, d.content_type, d.width, d.height, None)
        for data, d in zip(images, decoded, strict=True)], label, list(masks))


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
           items: Sequence[tuple[bytes, str, str, int, int, uuid.UUID | None]], label: str,
           masks: Sequence[bytes] = ()) -> tuple[int, dict[str, int]]:
    created: list[str] = []

    def put(data: bytes, suffix: str) -> str:
        result = store.put(data, suffix)
        if result.created:
            created.append(result.key)
        return result.key

    try:
        keys = [put(data, suffix) for data, suffix, *_ in items]
        mask_keys: list[str | None] = [put(m, "png") for m in masks] or [None] * len(items)
        with Session(engine) as session, session.begin():
            for key, mask_key, (_, _, content_type, width, height, source) in zip(
                    keys, mask_keys, items, strict=True):
                session.add(DatasetImage(dataset_id=dataset_id, label=label, image_key=key,
                                         mask_key=mask_key, content_type=content_type,
                                         width=width, height=height, inspection_id=source))
    except BaseException:
        for key in created:
            store.delete(key)
        raise
    with Session(engine) as session:
        return len(items), counts(session, dataset_id)


def masked_count(session: Session, dataset_id: uuid.UUID) -> int:
    return int(session.execute(select(func.count()).select_from(DatasetImage).where(
        DatasetImage.dataset_id == dataset_id, DatasetImage.mask_key.is_not(None),
        DatasetImage.label != GOOD)).scalar_one())


def check_masks(masks: Sequence[bytes], images: Sequence[tuple[int, int]], label: str,
                max_pixels: int) -> None:
    """One PNG mask per image, of the image's size, for a defect label (non-zero = defect)."""
    if not masks:
        return
    if label == GOOD:
        raise DatasetError(422, "masks are for defect labels, not 'good'")
    if len(masks) != len(images):
        raise DatasetError(422, f"{len(masks)} masks for {len(images)} images; send one "
                                "'mask' per 'image', in the same order")
    for index, (data, size) in enumerate(zip(masks, images, strict=True)):
        try:
            decoded = decode_image(data, max_pixels)
        except ImageRejected as exc:
            raise DatasetError(exc.status_code, f"mask {index + 1}: {exc.detail}") from None
        if decoded.content_type != "image/png":
            raise DatasetError(415, f"mask {index + 1}: a mask must be a PNG "
                                    f"(got {decoded.content_type})")
        if (decoded.width, decoded.height) != size:
            raise DatasetError(422, f"mask {index + 1} is {decoded.width}x{decoded.height}, "
                                    f"its image {size[0]}x{size[1]}")


def images(session: Session, dataset_id: uuid.UUID) -> list[DatasetImage]:
    return list(session.execute(select(DatasetImage)
                                .where(DatasetImage.dataset_id == dataset_id)
                                .order_by(DatasetImage.id)).scalars())
