"""One photo's way through the service, and reading inspections back.

``create_inspection``: decode and verify once -> run detectors (off the event loop) -> encode
masks and maps once (fast PNG) -> write blobs (temp + atomic rename) -> ONE transaction for the
inspection, its runs, findings and maps. If the transaction fails, blobs this request created
(and nothing else references) are removed again, so a failed upload leaves nothing behind.

The default overlay is not drawn on the request path: the first ``GET .../overlay`` renders it
from the stored masks and maps (the same pixels the upload would have drawn) and caches it as
a blob (``overlay_key``), so every later GET is a file read.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import anyio
from sqlalchemy import (
    Engine,
    case,
    exists,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.orm import aliased
from sqlmodel import Session

from kensa.backend.records import (
    DetectorRef,
    DetectorRun,
    EvidenceMap,
    EvidencePublic,
    Finding,
    FindingPublic,
    Inspection,
    InspectionPublic,
    RunPublic,
    StatsBucket,
    StatsPublic,
    StatsTotals,
)
from kensa.backend.services import rollups
from kensa.backend.services.accounts import audit
from kensa.backend.services.images import DecodedImage, decode_image
from kensa.backend.services.inference import DEMO_NOTICE, DetectorPool, LoadedDetector
from kensa.backend.services.review_queue import (
    Sampling,
    decide,
    record_extras,
    review_conditions,
)
from kensa.backend.services.storage import BlobStore
from kensa.contract.constants import API_PREFIX
from kensa.contract.schemas import ReviewPublic, iso_utc
from kensa.models.evidence import (
    EncodedDetection,
    StoredLayer,
    decode_layer,
    decode_mask,
    encode_detection,
    png_bytes,
    render_overlay,
)
from kensa.models.imaging import decode_image as decode_photo
from kensa.models.types import Detection, Task, Verdict
from kensa.models.types import Finding as DetectedFinding

log = logging.getLogger(__name__)


# -- evidence: the models codec owns what a layer means; we store kind and label verbatim ---------
@dataclass
class _Rendered:
    runs: list[EncodedDetection]
    overlay: bytes | None = None  # None: drawn on first GET (``cached_overlay``)


def render_evidence(decoded: DecodedImage, detections: Sequence[Detection]) -> _Rendered:
    """The blobs that let any layer be rendered later (the overlay itself is drawn lazily)."""
    return _Rendered(runs=[encode_detection(det) for det in detections])


# -- creating -------------------------------------------------------------------------------------
@dataclass
class UploadMeta:
    station: str | None = None
    operator: str | None = None
    note: str | None = None
    sampling: Sampling | None = None  # how the review queue samples (None: no queue row)


def combined_anomaly_score(detections: Sequence[Detection]) -> float | None:
    scores = [d.normalized_score for d in detections
              if d.task == Task.ANOMALY and d.normalized_score is not None]
    return max(scores) if scores else None


_WRITERS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="kensa-blob-write")


def _persist(engine: Engine, store: BlobStore, image_bytes: bytes, decoded: DecodedImage,
             rendered: _Rendered, meta: UploadMeta) -> uuid.UUID:
    """Write every blob first (outside the transaction, so database locks stay short), then
    the rows in one transaction; on any failure remove the blobs this call created."""
    created: list[str] = []

    def put(item: tuple[bytes | None, str]) -> str | None:
        data, suffix = item
        if data is None:
            return None
        result = store.put(data, suffix)
        if result.created:
            created.append(result.key)  # list.append is atomic: safe from the writer threads
        return result.key

    try:
        blobs = [(image_bytes, decoded.suffix or "bin"), (rendered.overlay, "png")]
        blobs += [(mask, "png") for ev in rendered.runs for mask in ev.finding_masks]
        blobs += [(layer.png, "png") for ev in rendered.runs for layer in ev.layers]
        # written side by side: each local write waits for its own fsync, each S3 PUT for its
        # round trip, so one upload's blobs cost about one write, not one per blob
        writes = [_WRITERS.submit(put, blob) for blob in blobs]
        wait(writes)  # all of them, so a failure below cleans up every blob written
        keys = iter([w.result() for w in writes])
        image_key, overlay_key = next(keys), next(keys)
        mask_keys = [[next(keys) for _ in ev.finding_masks] for ev in rendered.runs]
        map_keys = [[next(keys) for _ in ev.layers] for ev in rendered.runs]
        detections = [r.detection for r in rendered.runs]
        inspection = Inspection(
            station=meta.station, operator=meta.operator, note=meta.note,
            verdict=Verdict.combine([d.verdict for d in detections]).value,
            anomaly_score=combined_anomaly_score(detections),
            image_key=image_key, image_content_type=decoded.content_type,
            overlay_key=overlay_key, width=decoded.width, height=decoded.height,
        )
        with Session(engine) as session, session.begin():
            session.add(inspection)
            session.flush()
            for evidence, masks, maps in zip(rendered.runs, mask_keys, map_keys, strict=True):
                det = evidence.detection
                run = DetectorRun(
                    inspection_id=inspection.id, detector=det.detector, version=det.version,
                    task=det.task.value, verdict=det.verdict.value,
                    anomaly_score=det.anomaly_score, threshold=det.threshold,
                    threshold_method=det.threshold_method, runtime=det.runtime,
                    timings_ms={k: round(float(v), 3) for k, v in det.timings_ms.items()},
                )
                session.add(run)
                session.flush()
                for finding, mask_key in zip(det.findings, masks, strict=True):
                    x0, y0, x1, y1 = finding.bbox or (None, None, None, None)
                    session.add(Finding(
                        inspection_id=inspection.id, run_id=run.id, detector=finding.detector,
                        label=finding.label, score=float(finding.score),
                        area_px=int(finding.area_px), x0=x0, y0=y0, x1=x1, y1=y1,
                        mask_key=mask_key,
                    ))
                for layer, map_key in zip(evidence.layers, maps, strict=True):
                    session.add(EvidenceMap(inspection_id=inspection.id, run_id=run.id,
                                            kind=layer.kind, label=layer.label,
                                            map_key=map_key, low=layer.low, high=layer.high))
            rollups.record_new(session, inspection.id)
            if meta.sampling is not None:
                queued = decide(session, meta.sampling, inspection)
                if queued is not None:
                    session.add(queued)
            inspection_id = inspection.id
        return inspection_id
    except BaseException:
        _remove_unreferenced(engine, store, created)
        raise


def _remove_unreferenced(engine: Engine, store: BlobStore, keys: Sequence[str]) -> None:
    """Delete blobs a failed request created, unless a committed row points at them."""
    if not keys:
        return
    try:
        with Session(engine) as session:
            referenced = set()
            for column in (Inspection.image_key, Inspection.overlay_key, Finding.mask_key,
                           EvidenceMap.map_key):
                referenced |= set(session.execute(select(column).where(column.in_(keys))).scalars())
    except Exception:  # the database is gone: removing is still right for our own blobs
        log.exception("could not check blob references; removing this request's blobs")
        referenced = set()
    for key in keys:
        if key not in referenced:
            store.delete(key)


async def create_inspection(*, image_bytes: bytes, pool: DetectorPool,
                            detectors: Sequence[LoadedDetector], engine: Engine,
                            store: BlobStore, meta: UploadMeta, max_pixels: int,
                            decoded: DecodedImage | None = None) -> InspectionPublic:
    """``decoded``: the upload already decoded and verified (else it is decoded here)."""
    limiter = pool.limiter  # decoding and rendering count against it like inference
    if decoded is None:
        decoded = await anyio.to_thread.run_sync(decode_image, image_bytes, max_pixels,
                                                 limiter=limiter)
    detections = await pool.run(decoded.rgb, detectors)
    rendered = await anyio.to_thread.run_sync(render_evidence, decoded, detections,
                                              limiter=limiter)
    inspection_id = await anyio.to_thread.run_sync(
        _persist, engine, store, image_bytes, decoded, rendered, meta)
    record = await anyio.to_thread.run_sync(get_public, engine, inspection_id)
    assert record is not None
    if any(d.demo for d in detectors):
        record.notice = DEMO_NOTICE
    return record


# -- reading --------------------------------------------------------------------------------------
def urls(inspection_id: uuid.UUID) -> tuple[str, str]:
    base = f"{API_PREFIX}/inspections/{inspection_id}"
    return f"{base}/image", f"{base}/overlay"


def to_public(inspection: Inspection, runs: Sequence[DetectorRun],
              findings: Sequence[Finding], maps: Sequence[EvidenceMap] = (),
              review: ReviewPublic | None = None, review_status: str | None = None
              ) -> InspectionPublic:
    image_url, overlay_url = urls(inspection.id)
    detector_of = {run.id: run.detector for run in runs}
    order = {run.id: i for i, run in enumerate(runs)}
    ordered = sorted(findings, key=lambda f: (order.get(f.run_id, 0), -f.score))
    return InspectionPublic(
        id=inspection.id, created_at=inspection.created_at, verdict=inspection.verdict,
        anomaly_score=inspection.anomaly_score,
        findings=[FindingPublic(
            label=f.label, score=f.score, detector=f.detector, area_px=f.area_px,
            bbox=None if f.x0 is None else [f.x0, f.y0, f.x1, f.y1],
            mask_url=(f"{API_PREFIX}/inspections/{inspection.id}/findings/{f.id}/mask"
                      if f.mask_key else None),
        ) for f in ordered],
        detectors=[DetectorRef(name=r.detector, version=r.version) for r in runs],
        runs=[RunPublic(detector=r.detector, version=r.version, verdict=r.verdict,
                        anomaly_score=r.anomaly_score, threshold=r.threshold,
                        threshold_method=r.threshold_method, runtime=r.runtime,
                        timings_ms=r.timings_ms or {}) for r in runs],
        labels=sorted({f.label for f in findings}),
        evidence=[EvidencePublic(kind=m.kind, label=m.label, detector=detector_of.get(m.run_id, ""),
                                 url=f"{API_PREFIX}/inspections/{inspection.id}/evidence/{n}")
                  for n, m in enumerate(maps)],
        image_url=image_url, overlay_url=overlay_url,
        width=inspection.width, height=inspection.height, station=inspection.station,
        operator=inspection.operator, note=inspection.note, deleted_at=inspection.deleted_at,
        review=review, review_status=review_status,
    )


def publics(session: Session, inspections: Sequence[Inspection]) -> list[InspectionPublic]:
    """Public records for a page of inspections, loading children in two queries."""
    ids = [i.id for i in inspections]
    if not ids:
        return []
    runs: dict[uuid.UUID, list[DetectorRun]] = {i: [] for i in ids}
    findings: dict[uuid.UUID, list[Finding]] = {i: [] for i in ids}
    maps: dict[uuid.UUID, list[EvidenceMap]] = {i: [] for i in ids}
    for run in session.execute(select(DetectorRun).where(DetectorRun.inspection_id.in_(ids),
                                                         DetectorRun.shadow.is_(False))
                            .order_by(DetectorRun.id)).scalars():
        runs[run.inspection_id].append(run)
    for finding in session.execute(select(Finding).where(Finding.inspection_id.in_(ids))
                                .order_by(Finding.id)).scalars():
        findings[finding.inspection_id].append(finding)
    for m in session.execute(select(EvidenceMap).where(EvidenceMap.inspection_id.in_(ids))
                          .order_by(EvidenceMap.id)).scalars():
        maps[m.inspection_id].append(m)
    reviews, statuses = record_extras(session, ids)
    return [to_public(i, runs[i.id], findings[i.id], maps[i.id], reviews.get(i.id),
                      statuses.get(i.id)) for i in inspections]


def get_public(engine: Engine, inspection_id: uuid.UUID) -> InspectionPublic | None:
    with Session(engine) as session:
        inspection = session.get(Inspection, inspection_id)
        return None if inspection is None else publics(session, [inspection])[0]


@dataclass
class Filters:
    """Filters shared by the list and the stats endpoints."""

    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive
    labels: list[str] = field(default_factory=list)
    verdict: str | None = None
    has_defect: bool | None = None
    station: str | None = None
    operator: str | None = None
    detector: str | None = None
    include_deleted: bool = False
    reviewed: bool | None = None
    human_verdict: str | None = None
    disagreement: bool | None = None

    def conditions(self, probe: str = "in") -> list:
        """SQL conditions on Inspection. ``probe`` says how label/detector are matched:
        ``in`` (an uncertain IN over the child index: starts from the few matching children)
        or ``exists`` (a probe per inspection: for a page walked in list order, where many
        inspections match and the walk stops after ``limit`` rows)."""
        out = review_conditions(self.reviewed, self.human_verdict, self.disagreement)
        if not self.include_deleted:
            out.append(Inspection.deleted_at.is_(None))
        if self.start is not None:
            out.append(Inspection.created_at >= self.start)
        if self.end is not None:
            out.append(Inspection.created_at < self.end)
        if self.verdict is not None:
            out.append(Inspection.verdict == self.verdict)
        if self.has_defect is True:
            out.append(Inspection.verdict == Verdict.DEFECT.value)
        elif self.has_defect is False:
            out.append(Inspection.verdict != Verdict.DEFECT.value)
        if self.station is not None:
            out.append(Inspection.station == self.station)
        if self.operator is not None:
            out.append(Inspection.operator == self.operator)
        # Uncorrelated IN over the (label, inspection_id) / (detector, inspection_id) indexes:
        # the database may start from the few matching children instead of probing every
        # inspection. Aliased, since the stats queries join Finding themselves.
        if self.labels:
            labelled = aliased(Finding)
            where = [labelled.label.in_(self.labels)]
            out.append(exists().where(labelled.inspection_id == Inspection.id, *where)
                       .correlate(Inspection) if probe == "exists" else
                       Inspection.id.in_(select(labelled.inspection_id).where(*where)))
        if self.detector is not None:
            run = aliased(DetectorRun)
            where = [run.detector == self.detector]
            out.append(exists().where(run.inspection_id == Inspection.id, *where)
                       .correlate(Inspection) if probe == "exists" else
                       Inspection.id.in_(select(run.inspection_id).where(*where)))
        return out

    def within(self, start: datetime | None, end: datetime | None) -> Filters:
        """The same filters over ``[start, end)`` instead."""
        return dataclasses.replace(self, start=start, end=end)


def _defective_sum():
    return func.coalesce(func.sum(case((Inspection.verdict == Verdict.DEFECT.value, 1),
                                       else_=0)), 0)


class BadCursor(ValueError):
    pass


def encode_cursor(inspection: Inspection) -> str:
    """An opaque cursor: the list position just after ``inspection`` (newest first)."""
    raw = json.dumps([utc(inspection.created_at).isoformat(), str(inspection.id)])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        moment, key = json.loads(raw)
        return utc(datetime.fromisoformat(moment)), uuid.UUID(key)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise BadCursor("not a cursor this API returned (take next_cursor of a page)") from exc


def after_cursor(cursor: str) -> list:
    """Rows after the cursor in list order (created_at, id descending). The first condition is
    a range on the list index; the second only separates equal timestamps."""
    moment, key = decode_cursor(cursor)
    return [Inspection.created_at <= moment,
            or_(Inspection.created_at < moment, Inspection.id < key)]


@dataclass
class Page:
    items: list[InspectionPublic]
    total: int
    defect_ratio: float | None
    next_cursor: str | None


WALK_FROM = 2000
"""With at least this many matches a label/detector page is walked in list order with a
probe per inspection (about limit x live / matches rows); with fewer, the matching children
drive (at most this many)."""


def count(session: Session, filters: Filters) -> tuple[int, int]:
    """(inspections, defective) in the filtered set, exactly: whole UTC days from the rollups
    when the filters allow (``rollups.facet_of``), the partial days at the ends of the range
    and every other filter combination by counting the records."""
    facet = rollups.facet_of(filters)
    either = facet is None and rollups.either_of_two(filters)
    if facet is None and not either:
        return _count_rows(session, filters)
    days, edges = rollups.split_days(filters.start, filters.end)
    if not days:
        total, defective = 0, 0
    elif either:
        total, defective = rollups.either_total(session, filters, *days)
    else:
        total, defective = rollups.total(session, filters, facet, *days)
    for start, end in edges:
        n, k = _count_rows(session, filters.within(start, end))
        total, defective = total + n, defective + k
    return total, defective


def _count_rows(session: Session, filters: Filters) -> tuple[int, int]:
    total, defective = session.execute(
        select(func.count(), _defective_sum()).select_from(Inspection)
        .where(*filters.conditions())).one()
    return int(total), int(defective)


def list_inspections(engine: Engine, filters: Filters, limit: int, offset: int = 0,
                     cursor: str | None = None) -> Page:
    """A page newest first; ``total`` and ``defect_ratio`` cover the whole filtered set (not
    only what follows the cursor), exactly (``count``). ``next_cursor`` is set when more rows
    follow the page."""
    position = after_cursor(cursor) if cursor else []
    with Session(engine) as session:
        total, defective = count(session, filters)
        probe = "exists" if total >= WALK_FROM else "in"
        conditions = filters.conditions(probe)
        rows = session.execute(
            select(Inspection).where(*conditions, *position)
            .order_by(Inspection.created_at.desc(), Inspection.id.desc())
            .limit(limit + 1).offset(offset)
        ).scalars().all()
        page = rows[:limit]
        items = publics(session, page)
        following = encode_cursor(page[-1]) if len(rows) > limit else None
    return Page(items, total, defective / total if total else None, following)


def set_deleted(engine: Engine, inspection_id: uuid.UUID, deleted: bool,
                actor: str | None = None) -> InspectionPublic | None:
    """Soft delete or restore; with ``actor`` the change is audited in the same transaction."""
    with Session(engine) as session, session.begin():
        inspection = session.get(Inspection, inspection_id, with_for_update=True)
        if inspection is None:
            return None
        before = iso_utc(inspection.deleted_at)
        with rollups.track(session, inspection_id):
            if deleted and inspection.deleted_at is None:
                inspection.deleted_at = datetime.now(UTC)
            elif not deleted:
                inspection.deleted_at = None
            session.add(inspection)
        if actor is not None:
            audit(session, actor, "inspection.delete" if deleted else "inspection.restore",
                  "inspection", str(inspection_id), {"deleted_at": before},
                  {"deleted_at": iso_utc(inspection.deleted_at)})
    return get_public(engine, inspection_id)


# -- overlays on demand ---------------------------------------------------------------------------
def stored_detections(session: Session, store: BlobStore, inspection: Inspection
                      ) -> list[Detection]:
    """Rebuild the detections of an inspection from its stored rows and blobs (models codec)."""
    runs = session.execute(select(DetectorRun).where(DetectorRun.inspection_id == inspection.id)
                        .order_by(DetectorRun.id)).scalars().all()
    findings = session.execute(select(Finding).where(Finding.inspection_id == inspection.id)
                            .order_by(Finding.id)).scalars().all()
    maps = session.execute(select(EvidenceMap).where(EvidenceMap.inspection_id == inspection.id)
                        .order_by(EvidenceMap.id)).scalars().all()
    out = []
    for run in runs:
        det = Detection(detector=run.detector, version=run.version, task=Task(run.task),
                        verdict=Verdict(run.verdict), anomaly_score=run.anomaly_score,
                        threshold=run.threshold)
        for f in (f for f in findings if f.run_id == run.id):
            det.findings.append(DetectedFinding(
                label=f.label, score=f.score, detector=f.detector, area_px=f.area_px,
                bbox=None if f.x0 is None else (f.x0, f.y0, f.x1, f.y1),
                mask=decode_mask(store.read(f.mask_key)) if f.mask_key else None))
        det.evidence = [decode_layer(StoredLayer(m.kind, m.label, store.read(m.map_key),
                                                 m.low, m.high))
                        for m in maps if m.run_id == run.id]
        out.append(det)
    return out


def render_stored_overlay(engine: Engine, store: BlobStore, inspection_id: uuid.UUID,
                          layers: Sequence[str] | None = None) -> bytes | None:
    with Session(engine) as session:
        inspection = session.get(Inspection, inspection_id)
        if inspection is None:
            return None
        detections = stored_detections(session, store, inspection)
        image_key = inspection.image_key
    image = decode_photo(store.read(image_key), max_pixels=None, min_side=1).rgb
    return png_bytes(render_overlay(image, detections, layers=layers))


def cached_overlay(engine: Engine, store: BlobStore, inspection_id: uuid.UUID) -> str | None:
    """The default overlay's blob key, rendering and storing it on first use (None: no such
    inspection). Concurrent first GETs render the same bytes, hence the same key."""
    with Session(engine) as session:
        inspection = session.get(Inspection, inspection_id)
        if inspection is None:
            return None
        if inspection.overlay_key:
            return inspection.overlay_key
    png = render_stored_overlay(engine, store, inspection_id)
    if png is None:
        return None
    key = store.put(png, "png").key
    with Session(engine) as session, session.begin():
        session.execute(update(Inspection).where(Inspection.id == inspection_id,
                                                 Inspection.overlay_key.is_(None))
                        .values(overlay_key=key))
    return key


def evidence_blob(engine: Engine, inspection_id: uuid.UUID, n: int) -> str | None:
    """The blob key of the ``n``-th evidence layer (record order) of an inspection, or None."""
    if n < 0:
        return None
    with Session(engine) as session:
        return session.execute(
            select(EvidenceMap.map_key).where(EvidenceMap.inspection_id == inspection_id)
            .order_by(EvidenceMap.id).offset(n).limit(1)
        ).scalar_one_or_none()


# -- stats ----------------------------------------------------------------------------------------
BUCKETS = ("day", "week", "month")
MAX_BUCKETS = 1000


def bucket_expr(dialect: str, bucket: str):
    """SQL for the first day (YYYY-MM-DD, UTC) of the bucket an inspection falls in."""
    column = Inspection.created_at
    if dialect == "postgresql":
        utc = func.timezone(literal_column("'UTC'"), column)
        return func.to_char(func.date_trunc(literal_column(f"'{bucket}'"), utc),
                            literal_column("'YYYY-MM-DD'"))
    if dialect == "sqlite":
        if bucket == "day":
            return func.date(column)
        if bucket == "week":  # Monday of the ISO week
            return func.date(column, literal_column("'weekday 0'"), literal_column("'-6 days'"))
        return func.strftime(literal_column("'%Y-%m-01'"), column)
    if dialect in ("mysql", "mariadb"):  # DATETIME columns hold UTC already
        day = func.date(column)
        if bucket == "week":  # Monday of the ISO week (WEEKDAY: Monday = 0)
            day = func.subdate(day, func.weekday(day))
        elif bucket == "month":
            return func.date_format(column, literal_column("'%Y-%m-01'"))
        return func.date_format(day, literal_column("'%Y-%m-%d'"))
    raise NotImplementedError(f"stats are not implemented for {dialect}")


def bucket_start(day: date, bucket: str) -> date:
    if bucket == "week":
        return day - timedelta(days=day.weekday())
    if bucket == "month":
        return day.replace(day=1)
    return day


def next_bucket(day: date, bucket: str) -> date:
    if bucket == "day":
        return day + timedelta(days=1)
    if bucket == "week":
        return day + timedelta(days=7)
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


class TooManyBuckets(ValueError):
    pass


Counts = dict[str, tuple[int, int]]
ByLabel = dict[str, dict[str, int]]


def _exact_buckets(session: Session, filters: Filters, bucket: str, narrow: bool = False
                   ) -> tuple[Counts, ByLabel]:
    """Per bucket (total, defective) and inspections per label, counted from the records.
    ``narrow``: a range of at most two days (the inspections in it drive the label join)."""
    conditions = filters.conditions()
    key = bucket_expr(session.get_bind().dialect.name, bucket).label("bucket")
    rows = session.execute(
        select(key, func.count(), _defective_sum()).where(*conditions)
        .group_by(key).order_by(key)
    ).all()
    if narrow:  # the few inspections of the range, then their findings
        label_rows = session.execute(
            select(key, Finding.label, func.count(Finding.inspection_id.distinct()))
            .select_from(Inspection).join(Finding, Finding.inspection_id == Inspection.id)
            .where(*conditions).group_by(key, Finding.label)
        ).all()
    else:
        # Each (inspection, label) once, from the label index; the findings (far fewer than
        # the inspections) drive the join instead of a probe per inspection.
        labelled = (select(Finding.inspection_id, Finding.label).distinct()
                    .subquery("labelled"))
        label_rows = session.execute(
            select(key, labelled.c.label, func.count())
            .select_from(labelled).join(Inspection, Inspection.id == labelled.c.inspection_id)
            .where(*conditions).group_by(key, labelled.c.label)
        ).all()
    counts = {str(b): (int(t), int(d)) for b, t, d in rows}
    by_label: ByLabel = {}
    for b, label, n in label_rows:
        by_label.setdefault(str(b), {})[label] = int(n)
    return counts, by_label


def _buckets(session: Session, filters: Filters, bucket: str) -> tuple[Counts, ByLabel]:
    """``_exact_buckets``' figures, from the rollups for the whole days where the filters
    allow (the partial days at the ends of the range counted from the records)."""
    facet = rollups.facet_of(filters)
    if facet is None:
        return _exact_buckets(session, filters, bucket)
    days, edges = rollups.split_days(filters.start, filters.end)
    counts: Counts = {}
    by_label: ByLabel = {}
    for day, label, n, k in rollups.day_counts(session, filters, facet, *days) if days else ():
        b = bucket_start(day, bucket).isoformat()
        if label:
            labels = by_label.setdefault(b, {})
            labels[label] = labels.get(label, 0) + n
        else:
            t, d = counts.get(b, (0, 0))
            counts[b] = (t + n, d + k)
    for start, end in edges:
        edge_counts, edge_labels = _exact_buckets(session, filters.within(start, end), bucket,
                                                  narrow=True)
        for b, (n, k) in edge_counts.items():
            t, d = counts.get(b, (0, 0))
            counts[b] = (t + n, d + k)
        for b, labels in edge_labels.items():
            mine = by_label.setdefault(b, {})
            for label, n in labels.items():
                mine[label] = mine.get(label, 0) + n
    return counts, by_label


def stats(engine: Engine, filters: Filters, bucket: str, exact: bool = False) -> StatsPublic:
    """Inspections per bucket; ``exact`` counts the records even where rollups would do
    (the reference the tests compare the rollups to)."""
    with Session(engine) as session:
        counts, by_label = (_exact_buckets if exact else _buckets)(session, filters, bucket)
    label_totals: dict[str, int] = {}  # an inspection falls in one bucket: the sums are exact
    for labels in by_label.values():
        for label, n in labels.items():
            label_totals[label] = label_totals.get(label, 0) + n

    first = [date.fromisoformat(b) for b in counts]
    lo = bucket_start(filters.start.date(), bucket) if filters.start else min(first, default=None)
    last_day = (filters.end - timedelta(microseconds=1)).date() if filters.end else None
    hi = bucket_start(last_day, bucket) if last_day else max(first, default=None)
    buckets = []
    if lo is not None and hi is not None:
        day = lo
        while day <= hi:
            if len(buckets) >= MAX_BUCKETS:
                raise TooManyBuckets(f"more than {MAX_BUCKETS} {bucket} buckets; narrow the "
                                     "range or choose a coarser bucket")
            b = day.isoformat()
            total, defective = counts.get(b, (0, 0))
            buckets.append(StatsBucket(start=b, total=total, defective=defective,
                                       by_label=dict(sorted(by_label.get(b, {}).items()))))
            try:
                day = next_bucket(day, bucket)
            except OverflowError:  # the last bucket of year 9999
                break
    total = sum(t for t, _ in counts.values())
    defective = sum(d for _, d in counts.values())
    return StatsPublic(bucket=bucket, buckets=buckets, totals=StatsTotals(
        total=total, defective=defective, defect_ratio=defective / total if total else None,
        by_label=dict(sorted(label_totals.items())),
    ))


def get_inspection(engine: Engine, inspection_id: uuid.UUID) -> Inspection | None:
    with Session(engine) as session:
        return session.get(Inspection, inspection_id)


def finding_mask_blob(engine: Engine, inspection_id: uuid.UUID, finding_id: int) -> str | None:
    with Session(engine) as session:
        finding = session.get(Finding, finding_id)
        if finding is None or finding.inspection_id != inspection_id:
            return None
        return finding.mask_key


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

