"""Pseudo-labels from the review loop: unreviewed inspections whose classifier and segmenter
agree with high confidence are proposed as labels (the agreement rule is
``kensa.models.severstal.agreed_labels``), and a manager confirms them in bulk as human reviews
(the segmenter's masks become the review mask, so the photo joins the labelled set with it).

Works on what the inspection recorded (each run's verdict and findings), not by running the
models again: a proposal is what the machine said when it inspected the photo.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Engine, and_, exists, select
from sqlmodel import Session

from kensa.backend.records import DetectorRun, Finding, Inspection, InspectionReview
from kensa.backend.services.inspections import publics
from kensa.backend.services.reviews import DataFlow, ReviewError, ReviewInput, record
from kensa.backend.services.storage import BlobStore
from kensa.contract.schemas import (
    DetectorRef,
    PseudoLabel,
    PseudoLabelConfirmed,
    PseudoLabelList,
)
from kensa.models.evidence import decode_mask, encode_mask
from kensa.models.severstal import agreed_labels

MAX_SCAN = 2000  # unreviewed inspections looked at per listing, newest first
COMMENT = "pseudo-label confirmed: classifier and segmenter agreed"


@dataclass(frozen=True)
class Proposal:
    inspection_id: uuid.UUID
    labels: tuple[str, ...]
    confidence: float | None
    classifier: DetectorRun
    segmenter: DetectorRun
    mask_keys: tuple[str, ...]  # the segmenter's finding masks


def _candidates(station: str | None, ids: Sequence[uuid.UUID] | None = None):
    """Live, unreviewed inspections with a classifier and a segmenter run (not shadow)."""
    def has(task: str):
        return exists().where(DetectorRun.inspection_id == Inspection.id,
                              DetectorRun.task == task, DetectorRun.shadow.is_(False))
    reviewed = exists().where(InspectionReview.inspection_id == Inspection.id,
                              InspectionReview.current.is_(True))
    query = select(Inspection).where(Inspection.deleted_at.is_(None), ~reviewed,
                                     has("classify"), has("segment"))
    if station is not None:
        query = query.where(Inspection.station == station)
    if ids is not None:
        query = query.where(Inspection.id.in_(list(ids)))
    return query.order_by(Inspection.created_at.desc(), Inspection.id)


def _propose(runs: Sequence[DetectorRun], findings: Sequence[Finding],
             min_confidence: float) -> Proposal | None:
    """The proposal for one inspection's runs and findings, or None (no agreement, or a
    finding below ``min_confidence``)."""
    pairs = [r for r in runs if not r.shadow]
    classify = next((r for r in pairs if r.task == "classify"), None)
    segment = next((r for r in pairs if r.task == "segment"), None)
    if classify is None or segment is None or "review" in (classify.verdict, segment.verdict):
        return None
    said = [f for f in findings if f.run_id == classify.id]
    drawn = [f for f in findings if f.run_id == segment.id and f.mask_key]
    if any(f.score < min_confidence for f in (*said, *drawn)):
        return None  # not confident enough
    labels = agreed_labels({f.label for f in said}, {f.label for f in drawn})
    if labels is None:
        return None
    verdict = "defect" if labels else "ok"
    if classify.verdict != verdict or segment.verdict != verdict:
        return None  # a verdict that does not follow from the findings (e.g. under review)
    return Proposal(inspection_id=classify.inspection_id, labels=labels,
                    confidence=min((f.score for f in (*said, *drawn)), default=None),
                    classifier=classify, segmenter=segment,
                    mask_keys=tuple(f.mask_key for f in drawn))


def _proposals(session: Session, inspections: Sequence[Inspection], min_confidence: float
               ) -> list[Proposal]:
    ids = [i.id for i in inspections]
    if not ids:
        return []
    runs: dict[uuid.UUID, list[DetectorRun]] = {i: [] for i in ids}
    for run in session.execute(select(DetectorRun).where(
            DetectorRun.inspection_id.in_(ids), DetectorRun.task.in_(("classify", "segment")))
            .order_by(DetectorRun.id)).scalars():
        runs[run.inspection_id].append(run)
    found: dict[uuid.UUID, list[Finding]] = {i: [] for i in ids}
    for finding in session.execute(select(Finding).join(
            DetectorRun, and_(DetectorRun.id == Finding.run_id)).where(
            Finding.inspection_id.in_(ids),
            DetectorRun.task.in_(("classify", "segment")))).scalars():
        found[finding.inspection_id].append(finding)
    out = []
    for inspection_id in ids:
        proposal = _propose(runs[inspection_id], found[inspection_id], min_confidence)
        if proposal is not None:
            out.append(proposal)
    return out


def listing(engine: Engine, station: str | None, min_confidence: float, limit: int,
            offset: int) -> PseudoLabelList:
    """The proposals among the newest ``MAX_SCAN`` candidates, newest first, paged."""
    with Session(engine) as session:
        scanned = session.execute(_candidates(station).limit(MAX_SCAN)).scalars().all()
        proposals = _proposals(session, scanned, min_confidence)
        page = proposals[offset:offset + limit]
        by_id = {i.id: i for i in scanned}
        records = publics(session, [by_id[p.inspection_id] for p in page])
    return PseudoLabelList(
        total=len(proposals), scanned=len(scanned), min_confidence=min_confidence,
        items=[PseudoLabel(
            inspection=public, decision="defect" if p.labels else "ok", labels=list(p.labels),
            confidence=p.confidence,
            classifier=DetectorRef(name=p.classifier.detector, version=p.classifier.version),
            segmenter=DetectorRef(name=p.segmenter.detector, version=p.segmenter.version))
            for p, public in zip(page, records, strict=True)])


def _union_mask(store: BlobStore, keys: Sequence[str], width: int, height: int
                ) -> bytes | None:
    union = np.zeros((height, width), bool)
    for key in keys:
        mask = decode_mask(store.read(key))
        if mask.shape == union.shape:
            union |= mask
    return encode_mask(union)


def confirm(engine: Engine, store: BlobStore, ids: Sequence[uuid.UUID], min_confidence: float,
            actor: str, flow: DataFlow) -> PseudoLabelConfirmed:
    """Record every listed proposal as a review by ``actor``, all or nothing: an id that is
    not a current proposal (unknown, deleted, already reviewed, no agreement) is refused with
    nothing written."""
    wanted = list(dict.fromkeys(ids))
    if len(wanted) != len(ids):
        raise ReviewError(422, "an inspection id is listed twice")
    with Session(engine) as session:
        inspections = session.execute(_candidates(None, wanted)).scalars().all()
        proposals = {p.inspection_id: p for p in _proposals(session, inspections,
                                                             min_confidence)}
        sizes = {i.id: (i.width, i.height) for i in inspections}
    missing = [str(i) for i in wanted if i not in proposals]
    if missing:
        raise ReviewError(409, "not a pseudo-label proposal (unknown, deleted, reviewed "
                               f"already, or the models disagree): {', '.join(missing[:10])}")
    created: list[str] = []
    try:
        masks: dict[uuid.UUID, str | None] = {}
        for inspection_id in wanted:
            png = _union_mask(store, proposals[inspection_id].mask_keys,
                              *sizes[inspection_id])
            masks[inspection_id] = None
            if png is not None:
                put = store.put(png, "png")
                masks[inspection_id] = put.key
                if put.created:
                    created.append(put.key)
        with Session(engine) as session, session.begin():
            for inspection_id in wanted:
                inspection = session.get(Inspection, inspection_id, with_for_update=True)
                if inspection is None or inspection.deleted_at is not None or session.execute(
                        select(InspectionReview.id).where(
                            InspectionReview.inspection_id == inspection_id,
                            InspectionReview.current.is_(True))).first() is not None:
                    raise ReviewError(409, f"inspection {inspection_id} was deleted or "
                                           "reviewed meanwhile")
                labels = proposals[inspection_id].labels
                record(session, inspection,
                       ReviewInput("defect" if labels else "ok", list(labels), COMMENT),
                       masks[inspection_id], actor, flow, action="inspection.review.pseudo")
    except BaseException:
        for key in created:
            store.delete(key)
        raise
    return PseudoLabelConfirmed(confirmed=len(wanted), inspection_ids=wanted)
