"""What an inspection's way through the service needs of the review loop: whether it joins
the queue (decided once, when it is stored: every ``review`` verdict; a share of the rest whose
score lies nearest the threshold among the station's recent inspections; a small random share),
the filters on human verdicts, and the current review shown on the record."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, exists, select
from sqlalchemy.orm import aliased
from sqlmodel import Session

from kensa.backend.records import Inspection, InspectionReview, ReviewQueueItem
from kensa.contract.constants import API_PREFIX
from kensa.contract.schemas import REVIEW_DECISIONS, ReviewPublic
from kensa.models.types import Verdict


# -- the queue: decided when an inspection is stored --------------------------------------------
@dataclass(frozen=True)
class Sampling:
    """How a station's inspections reach the queue besides every ``review`` verdict."""

    uncertain_share: float = 0.1  # of the rest: those nearest the threshold
    random_share: float = 0.02
    window: int = 200  # recent inspections the uncertainty rank is taken over


def sampling_for(settings, station: str | None) -> Sampling:
    """The station's sampling: ``review_stations[station]`` over the global settings."""
    override = settings.review_stations.get(station or "", {})
    return Sampling(
        uncertain_share=float(override.get("uncertain_share", settings.review_uncertain_share)),
        random_share=float(override.get("random_share", settings.review_random_share)),
        window=int(override.get("window", settings.review_window)))


def uncertainty(anomaly_score: float | None) -> float | None:
    """Distance of the combined score (score / threshold) from the threshold."""
    return None if anomaly_score is None else abs(float(anomaly_score) - 1.0)


def decide(session: Session, sampling: Sampling, inspection: Inspection,
           rng: random.Random | None = None) -> ReviewQueueItem | None:
    """The queue row for a new inspection, or None. Uncertain: fewer than ``uncertain_share``
    of the station's last ``window`` scored inspections lay nearer the threshold."""
    rng = rng or random
    u = uncertainty(inspection.anomaly_score)
    reason = None
    if inspection.verdict == Verdict.REVIEW.value:
        reason = "review"
    elif u is not None and sampling.uncertain_share > 0:
        recent = session.execute(
            select(Inspection.anomaly_score).where(
                Inspection.station == inspection.station if inspection.station is not None
                else Inspection.station.is_(None),
                Inspection.anomaly_score.is_not(None), Inspection.id != inspection.id)
            .order_by(Inspection.created_at.desc()).limit(sampling.window)).scalars().all()
        nearer = sum(1 for s in recent if abs(s - 1.0) < u)
        if nearer < sampling.uncertain_share * max(1, len(recent)):
            reason = "uncertain"
    if reason is None and sampling.random_share > 0 and rng.random() < sampling.random_share:
        reason = "random"
    if reason is None:
        return None
    return ReviewQueueItem(inspection_id=inspection.id, station=inspection.station,
                           reason=reason, uncertainty=u, queued_at=inspection.created_at)



def mask_url(inspection_id: uuid.UUID, review_id: int | None = None) -> str:
    base = f"{API_PREFIX}/inspections/{inspection_id}/review"
    return f"{base}/mask" if review_id is None else f"{base}s/{review_id}/mask"


def to_public(row: InspectionReview) -> ReviewPublic:
    return ReviewPublic(
        decision=row.decision, labels=list(row.labels or []), by=row.reviewer, at=row.at,
        comment=row.comment, current=row.current,
        mask_url=(mask_url(row.inspection_id, None if row.current else row.id)
                  if row.mask_key else None))



# -- filters on history ------------------------------------------------------------------------
def review_conditions(reviewed: bool | None, human_verdict: str | None,
                      disagreement: bool | None) -> list:
    """Conditions on Inspection for ``reviewed``, ``human_verdict`` and ``disagreement``
    (human decision differs from a machine ``ok``/``defect``)."""
    out = []
    current = aliased(InspectionReview)

    def has(*where) -> object:
        return exists().where(current.inspection_id == Inspection.id,
                              current.current.is_(True), *where).correlate(Inspection)

    if reviewed is not None:
        out.append(has() if reviewed else ~has())
    if human_verdict is not None:
        out.append(has(current.decision == human_verdict))
    if disagreement is not None:
        differs = and_(Inspection.verdict.in_(REVIEW_DECISIONS),
                       current.decision != Inspection.verdict)
        out.append(has(differs) if disagreement else has(~differs))
    return out


# -- what the record shows -------------------------------------------------------------------------
def record_extras(session: Session, ids: Sequence[uuid.UUID]
                  ) -> tuple[dict[uuid.UUID, ReviewPublic], dict[uuid.UUID, str]]:
    """Current reviews and queue statuses for a page of inspections (two queries)."""
    if not ids:
        return {}, {}
    current = {r.inspection_id: to_public(r) for r in session.execute(
        select(InspectionReview).where(InspectionReview.inspection_id.in_(list(ids)),
                                       InspectionReview.current.is_(True))).scalars()}
    status = dict(session.execute(select(ReviewQueueItem.inspection_id, ReviewQueueItem.status)
                                  .where(ReviewQueueItem.inspection_id.in_(list(ids)))).all())
    return current, status
