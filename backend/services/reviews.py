"""The review loop: the queue as a person works it, what they said (human verdicts beside the
machine's), how often the machine was right (agreement), and the answers flowing back into the
station's datasets. Queue membership itself is decided in ``review_queue``."""

from __future__ import annotations

import io
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
from PIL import Image, UnidentifiedImageError
from sqlalchemy import Engine, and_, exists, func, select
from sqlalchemy.orm import aliased
from sqlmodel import Session

from kensa.backend.records import (
    Dataset,
    DatasetImage,
    DetectorRun,
    Inspection,
    InspectionReview,
    ReviewQueueItem,
)
from kensa.backend.services import datasets, rollups
from kensa.backend.services.accounts import audit
from kensa.backend.services.inspections import (
    MAX_BUCKETS,
    Filters,
    TooManyBuckets,
    bucket_expr,
    bucket_start,
    next_bucket,
    publics,
)
from kensa.backend.services.review_queue import to_public, uncertainty
from kensa.backend.services.storage import BlobStore
from kensa.contract.schemas import (
    REVIEW_DECISIONS,
    AgreementBucket,
    AgreementCounts,
    AgreementPublic,
    AgreementVersion,
    ReviewItem,
    ReviewList,
    ReviewPublic,
)
from kensa.models.evidence import encode_mask

MACHINE_VERDICTS = ("ok", "defect", "review")


class ReviewError(Exception):
    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


def list_queue(engine: Engine, status: str, station: str | None, limit: int, offset: int
               ) -> ReviewList:
    """Queue entries, oldest first (deleted inspections left out)."""
    live = [Inspection.deleted_at.is_(None)]
    if station is not None:
        live.append(ReviewQueueItem.station == station)
    with Session(engine) as session:
        base = select(ReviewQueueItem, Inspection).join(
            Inspection, Inspection.id == ReviewQueueItem.inspection_id).where(*live)
        total = session.execute(select(func.count()).select_from(
            base.where(ReviewQueueItem.status == status).subquery())).scalar_one()
        open_count = session.execute(select(func.count()).select_from(
            base.where(ReviewQueueItem.status == "open").subquery())).scalar_one()
        order = ((ReviewQueueItem.queued_at, ReviewQueueItem.id) if status == "open"
                 else (ReviewQueueItem.done_at, ReviewQueueItem.id))
        rows = session.execute(base.where(ReviewQueueItem.status == status)
                               .order_by(*order).limit(limit).offset(offset)).all()
        records = publics(session, [inspection for _, inspection in rows])
    return ReviewList(total=int(total), open=int(open_count), items=[
        ReviewItem(inspection=record, reason=item.reason, status=item.status,
                   uncertainty=item.uncertainty, queued_at=item.queued_at,
                   done_at=item.done_at)
        for (item, _), record in zip(rows, records, strict=True)])


# -- human verdicts ------------------------------------------------------------------------------
def view(row: InspectionReview | None) -> dict | None:
    """What the audit trail keeps of a review."""
    if row is None:
        return None
    return {"decision": row.decision, "labels": list(row.labels or []), "by": row.reviewer,
            "comment": row.comment, "mask_key": row.mask_key,
            "at": row.at.isoformat() if row.at else None}


def clean_labels(decision: str, labels: Sequence[str]) -> list[str]:
    if decision not in REVIEW_DECISIONS:
        raise ReviewError(422, f"decision must be one of {', '.join(REVIEW_DECISIONS)}")
    out = list(dict.fromkeys(label.strip() for label in labels if label.strip()))
    if any(len(label) > 100 or not label.isprintable() for label in out):
        raise ReviewError(422, "a label is 1-100 printable characters")
    if decision == "ok" and out:
        raise ReviewError(422, "an 'ok' decision carries no defect labels")
    if datasets.GOOD in out:
        raise ReviewError(422, "'good' is not a defect label; decide 'ok' instead")
    return out


def read_mask(data: bytes, width: int, height: int) -> bytes:
    """The reviewer's mask as a 1-bit PNG: a PNG of exactly the photo's size, non-zero =
    defect."""
    try:
        image = Image.open(io.BytesIO(data))
        if image.format != "PNG":
            raise ReviewError(415, f"the mask must be a PNG (got {image.format})")
        if image.size != (width, height):
            raise ReviewError(422, f"the mask is {image.size[0]}x{image.size[1]}; the photo "
                                   f"is {width}x{height}")
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ReviewError(422, f"the mask is not a readable PNG: {exc}") from None
    array = np.asarray(image)
    if array.ndim == 3:
        array = array[..., :3].max(axis=-1) if array.shape[-1] != 2 else array[..., 0]
    encoded = encode_mask(array > 0)
    if encoded is None:
        raise ReviewError(422, "the mask is empty; send none instead")
    return encoded


@dataclass(frozen=True)
class ReviewInput:
    decision: str
    labels: list[str]
    comment: str | None
    mask: bytes | None = None  # the uploaded PNG, unchecked


@dataclass(frozen=True)
class DataFlow:
    """Where confirmed photos go (None: nowhere); names may hold ``{station}``."""

    good: str | None = "{station}-good"
    labelled: str | None = "{station}-labelled"


def _dataset(session: Session, template: str, station: str | None) -> Dataset:
    name = template.format(station=station or "default")[:100]
    found = session.execute(select(Dataset).where(Dataset.name == name)).scalars().first()
    if found is None:
        found = Dataset(name=name, station=station)
        session.add(found)
        session.flush()
    return found


def _flow(session: Session, flow: DataFlow, inspection: Inspection, review: InspectionReview
          ) -> None:
    """Put the photo in the good or labelled set (replacing what an earlier review put)."""
    names = [t.format(station=inspection.station or "default")[:100]
             for t in (flow.good, flow.labelled) if t]
    if not names:
        return
    ids = select(Dataset.id).where(Dataset.name.in_(names))
    for old in session.execute(select(DatasetImage).where(
            DatasetImage.inspection_id == inspection.id,
            DatasetImage.dataset_id.in_(ids))).scalars():
        session.delete(old)
    template = flow.good if review.decision == "ok" else flow.labelled
    if template is None:
        return
    dataset = _dataset(session, template, inspection.station)
    for label in ([datasets.GOOD] if review.decision == "ok" else review.labels or ["defect"]):
        session.add(DatasetImage(dataset_id=dataset.id, label=label,
                                 image_key=inspection.image_key,
                                 content_type=inspection.image_content_type,
                                 mask_key=review.mask_key, width=inspection.width,
                                 height=inspection.height, inspection_id=inspection.id))


def record(session: Session, inspection: Inspection, given: ReviewInput, mask_key: str | None,
           actor: str, flow: DataFlow, action: str = "inspection.review") -> InspectionReview:
    """Write a checked human verdict in the caller's transaction: the current review is kept
    as history, the queue entry is closed (made if need be), the photo joins its dataset, and
    the change is audited."""
    inspection_id = inspection.id
    with rollups.track(session, inspection_id):  # the current human decision moves
        previous = session.execute(select(InspectionReview).where(
            InspectionReview.inspection_id == inspection_id,
            InspectionReview.current.is_(True))).scalars().first()
        if previous is not None:
            previous.current = False
            session.add(previous)
            session.flush()
        review = InspectionReview(inspection_id=inspection_id, decision=given.decision,
                                  labels=list(given.labels), comment=given.comment or None,
                                  mask_key=mask_key, reviewer=actor, at=datetime.now(UTC))
        session.add(review)
    item = session.execute(select(ReviewQueueItem).where(
        ReviewQueueItem.inspection_id == inspection_id)).scalars().first()
    if item is None:
        item = ReviewQueueItem(inspection_id=inspection_id, station=inspection.station,
                               reason="manual",
                               uncertainty=uncertainty(inspection.anomaly_score),
                               queued_at=review.at)
    item.status, item.done_at = "done", review.at
    session.add(item)
    _flow(session, flow, inspection, review)
    audit(session, actor, action, "inspection", str(inspection_id), view(previous),
          view(review))
    return review


def submit(engine: Engine, store: BlobStore, inspection_id: uuid.UUID, given: ReviewInput,
           actor: str, flow: DataFlow) -> None:
    """Record a human verdict (checked in full before anything is written); a re-review
    replaces the current one, which stays as history. Audited in the same transaction."""
    labels = clean_labels(given.decision, given.labels)
    with Session(engine) as session:
        inspection = session.get(Inspection, inspection_id)
        if inspection is None or inspection.deleted_at is not None:
            raise ReviewError(404, f"no inspection {inspection_id}")
        width, height = inspection.width, inspection.height
    mask_png = None
    if given.mask is not None:
        if given.decision != "defect":
            raise ReviewError(422, "a mask marks a defect; an 'ok' decision sends none")
        mask_png = read_mask(given.mask, width, height)
    created = None
    try:
        mask_key = None
        if mask_png is not None:
            put = store.put(mask_png, "png")
            mask_key, created = put.key, (put.key if put.created else None)
        with Session(engine) as session, session.begin():
            inspection = session.get(Inspection, inspection_id, with_for_update=True)
            if inspection is None:
                raise ReviewError(404, f"no inspection {inspection_id}")
            record(session, inspection, ReviewInput(given.decision, labels, given.comment),
                   mask_key, actor, flow)
    except BaseException:
        if created is not None:
            store.delete(created)
        raise


def history(engine: Engine, inspection_id: uuid.UUID) -> list[ReviewPublic] | None:
    with Session(engine) as session:
        if session.get(Inspection, inspection_id) is None:
            return None
        rows = session.execute(select(InspectionReview).where(
            InspectionReview.inspection_id == inspection_id)
            .order_by(InspectionReview.at, InspectionReview.id)).scalars().all()
        return [to_public(r) for r in rows]


def mask_blob(engine: Engine, inspection_id: uuid.UUID, review_id: int | None) -> str | None:
    """The mask key of the current review (or of review ``review_id``) of an inspection."""
    with Session(engine) as session:
        query = select(InspectionReview.mask_key).where(
            InspectionReview.inspection_id == inspection_id)
        query = query.where(InspectionReview.current.is_(True) if review_id is None
                            else InspectionReview.id == review_id)
        return session.execute(query.limit(1)).scalar_one_or_none()


# -- agreement figures -----------------------------------------------------------------------------
def _counts(cls, pairs: dict[tuple[str, str], int], **fields) -> AgreementCounts:
    matrix = {m: {h: 0 for h in REVIEW_DECISIONS} for m in MACHINE_VERDICTS}
    for (machine, human), n in pairs.items():
        matrix.setdefault(machine, {h: 0 for h in REVIEW_DECISIONS})[human] = n
    reviewed = sum(pairs.values())
    agreeing = matrix["ok"]["ok"] + matrix["defect"]["defect"]
    human_ok = sum(row["ok"] for row in matrix.values())
    human_defect = sum(row["defect"] for row in matrix.values())
    alarms, misses = matrix["defect"]["ok"], matrix["ok"]["defect"]
    return cls(reviewed=reviewed, matrix=matrix, agreeing=agreeing, false_alarms=alarms,
               misses=misses, agreement_rate=agreeing / reviewed if reviewed else None,
               false_alarm_rate=alarms / human_ok if human_ok else None,
               miss_rate=misses / human_defect if human_defect else None, **fields)


def agreement(engine: Engine, filters: Filters, bucket: str) -> AgreementPublic:
    """Machine vs current human verdict by SQL aggregates: overall, per detector version
    (each run's own verdict, shadow runs apart) and per time bucket."""
    conditions = filters.conditions()
    review = aliased(InspectionReview)
    joined = and_(review.inspection_id == Inspection.id, review.current.is_(True))
    key = bucket_expr(engine.dialect.name, bucket).label("bucket")
    with Session(engine) as session:
        totals = session.execute(
            select(Inspection.verdict, review.decision, func.count())
            .join(review, joined).where(*conditions)
            .group_by(Inspection.verdict, review.decision)).all()
        run_where = [] if filters.detector is None else [DetectorRun.detector == filters.detector]
        by_run = session.execute(
            select(DetectorRun.detector, DetectorRun.version, DetectorRun.shadow,
                   DetectorRun.verdict, review.decision, func.count())
            .join(Inspection, Inspection.id == DetectorRun.inspection_id)
            .join(review, joined).where(*conditions, *run_where)
            .group_by(DetectorRun.detector, DetectorRun.version, DetectorRun.shadow,
                      DetectorRun.verdict, review.decision)).all()
        by_bucket = session.execute(
            select(key, Inspection.verdict, review.decision, func.count())
            .join(review, joined).where(*conditions)
            .group_by(key, Inspection.verdict, review.decision).order_by(key)).all()
    versions: dict[tuple[str, str, bool], dict[tuple[str, str], int]] = {}
    for detector, version, shadow, machine, human, n in by_run:
        versions.setdefault((detector, version, bool(shadow)), {})[(machine, human)] = int(n)
    buckets: dict[str, dict[tuple[str, str], int]] = {}
    for b, machine, human, n in by_bucket:
        buckets.setdefault(str(b), {})[(machine, human)] = int(n)
    return AgreementPublic(
        bucket=bucket,
        totals=_counts(AgreementCounts, {(m, h): int(n) for m, h, n in totals}),
        by_version=[_counts(AgreementVersion, pairs, detector=d, version=v, shadow=s)
                    for (d, v, s), pairs in sorted(versions.items())],
        buckets=[_counts(AgreementBucket, buckets.get(day, {}), start=day)
                 for day in _bucket_days(filters, bucket, buckets)])


def _bucket_days(filters: Filters, bucket: str, seen: dict) -> list[str]:
    """Every bucket from the first to the last (empty ones included), as ``stats`` does."""
    first = [date.fromisoformat(b) for b in seen]
    lo = bucket_start(filters.start.date(), bucket) if filters.start else min(first, default=None)
    last_day = (filters.end - timedelta(microseconds=1)).date() if filters.end else None
    hi = bucket_start(last_day, bucket) if last_day else max(first, default=None)
    out: list[str] = []
    day = lo
    while day is not None and hi is not None and day <= hi:
        if len(out) >= MAX_BUCKETS:
            raise TooManyBuckets(f"more than {MAX_BUCKETS} {bucket} buckets; narrow the range "
                                 "or choose a coarser bucket")
        out.append(day.isoformat())
        try:
            day = next_bucket(day, bucket)
        except OverflowError:
            break
    return out


def reviewed_inspections(session: Session, name: str | None = None
                         ) -> list[tuple[Inspection, InspectionReview]]:
    """Inspections with a current human verdict (optionally: inspected by detector ``name``),
    oldest review first."""
    query = (select(Inspection, InspectionReview)
             .join(InspectionReview, and_(InspectionReview.inspection_id == Inspection.id,
                                          InspectionReview.current.is_(True)))
             .where(Inspection.deleted_at.is_(None)))
    if name is not None:
        query = query.where(exists().where(DetectorRun.inspection_id == Inspection.id,
                                           DetectorRun.detector == name))
    return [(i, r) for i, r in session.execute(
        query.order_by(InspectionReview.at, InspectionReview.id)).all()]

