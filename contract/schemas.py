"""The public wire schemas: what the API returns and accepts, imported by the server (as
``response_model``), the tablet client and the CLI (to parse answers into typed records).

Plain pydantic: no database, no torch. Extend, don't rename: paths and fields are relied on by
checks outside the repository.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer


def iso_utc(value: datetime | None) -> str | None:
    """An aware UTC ISO 8601 string ending in ``Z`` (naive values are taken as UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Schema(BaseModel):
    """Base of every wire schema: unknown fields are kept, so an older client reads a newer
    server's records."""

    model_config = ConfigDict(extra="allow", from_attributes=True)


class ErrorBody(Schema):
    """Every error answer: ``{"detail": ...}`` (a sentence, or FastAPI's validation list)."""

    detail: str | list[dict[str, Any]]


class FindingPublic(Schema):
    label: str
    score: float
    detector: str
    area_px: int
    bbox: list[int] | None = Field(None, description="[x0, y0, x1, y1], x1/y1 exclusive")
    mask_url: str | None = None


class RunPublic(Schema):
    detector: str
    version: str
    verdict: str
    anomaly_score: float | None = Field(None, description="raw score, detector units")
    threshold: float | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict)
    threshold_method: str | None = Field(None, description="how the threshold was set")
    runtime: str | None = Field(
        None, description="what ran the model for this run: torch, onnxruntime or openvino "
                          "(null on records made before it was recorded)")


class EvidencePublic(Schema):
    """One stored evidence layer of an inspection (kinds: ``heatmap``, ``gradcam`` or any a
    detector registers); ``url`` serves it as an 8-bit grayscale PNG (0..255 = its scale)."""

    kind: str
    label: str | None = None
    detector: str
    url: str


class DetectorRef(Schema):
    name: str
    version: str


REVIEW_DECISIONS = ("ok", "defect")
REVIEW_STATUSES = ("open", "done")
REVIEW_REASONS = ("review", "uncertain", "random", "manual")
"""Why an inspection is in the review queue: the machine said ``review``; its score was among
the nearest to the threshold at its station; a random share; or a person reviewed it unasked."""


class ReviewPublic(Schema):
    """A person's verdict on an inspection, kept beside the machine's (never replacing it)."""

    decision: str = Field(description="ok|defect")
    labels: list[str] = Field(default_factory=list, description="defect labels (empty if ok)")
    by: str = Field(description="who reviewed (the signed-in manager)")
    at: datetime
    comment: str | None = None
    mask_url: str | None = Field(None, description="the reviewer's defect mask (1-bit PNG at "
                                                   "the photo's size), if one was sent")
    current: bool = Field(True, description="false for earlier reviews a re-review replaced")

    @field_serializer("at")
    def _utc(self, value: datetime | None) -> str | None:
        return iso_utc(value)


class ReviewCreate(BaseModel):
    """``POST /inspections/{id}/review`` as JSON; as multipart/form-data the same fields are
    form fields (``labels`` repeatable or comma-separated) plus an optional ``mask`` PNG."""

    decision: Literal["ok", "defect"]
    labels: list[str] = Field(default_factory=list, max_length=50)
    comment: str | None = Field(None, max_length=2000)


class InspectionPublic(Schema):
    id: uuid.UUID
    created_at: datetime
    verdict: str
    anomaly_score: float | None = Field(
        None, description="max over anomaly detectors of raw score / threshold (1.0 = at it)"
    )
    findings: list[FindingPublic] = Field(default_factory=list)
    detectors: list[DetectorRef] = Field(default_factory=list)
    runs: list[RunPublic] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    evidence: list[EvidencePublic] = Field(
        default_factory=list, description="evidence layers; each kind is also an overlay layer")
    image_url: str
    overlay_url: str
    width: int
    height: int
    station: str | None = None
    operator: str | None = None
    note: str | None = None
    deleted_at: datetime | None = None
    notice: str | None = Field(None, description="e.g. that a demo detector was used")
    review: ReviewPublic | None = Field(None, description="the current human verdict, if any")
    review_status: str | None = Field(
        None, description="open|done when the inspection is in the review queue, else null")

    @field_serializer("created_at", "deleted_at")
    def _utc(self, value: datetime | None) -> str | None:
        return iso_utc(value)


class InspectionList(Schema):
    items: list[InspectionPublic]
    total: int = Field(description=(
        "inspections in the whole filtered set (not only this page; the same on every cursor "
        "page), always exact. Served from per-day rollups when the filters are whole or partial "
        "days, station, verdict/has_defect, include_deleted, the review filters and at most one "
        "of: a label (or two labels), a detector, an operator; other combinations (three or "
        "more labels, two of label/detector/operator) count the matching records"))
    defect_ratio: float | None = Field(None, description="defect verdicts / total (filtered)")
    next_cursor: str | None = Field(
        None, description="pass as ?cursor= for the page after this one; null on the last page")


class ReviewItem(Schema):
    """One entry of the review queue: the inspection (with evidence) and why it is queued."""

    inspection: InspectionPublic
    reason: str = Field(description="review|uncertain|random|manual")
    status: str = Field(description="open|done")
    uncertainty: float | None = Field(
        None, description="|score / threshold - 1| of the machine's verdict (0 = at it)")
    queued_at: datetime
    done_at: datetime | None = None

    @field_serializer("queued_at", "done_at")
    def _utc(self, value: datetime | None) -> str | None:
        return iso_utc(value)


class ReviewList(Schema):
    items: list[ReviewItem]
    total: int = Field(description="entries matching status/station")
    open: int = Field(0, description="open entries (at the station, if given): the badge count")


class PseudoLabel(Schema):
    """A label proposed for an unreviewed inspection because its classifier and segmenter
    agree with high confidence (the Severstal recipe): the same set of defect labels, every
    finding of both scoring at least ``min_confidence``; or both say OK."""

    inspection: InspectionPublic
    decision: str = Field(description="ok|defect: what a confirm records")
    labels: list[str] = Field(default_factory=list, description="the agreed defect labels")
    confidence: float | None = Field(
        None, description="the lowest score of the findings both models agree on (null: both "
                          "said OK)")
    classifier: DetectorRef
    segmenter: DetectorRef


class PseudoLabelList(Schema):
    items: list[PseudoLabel]
    total: int = Field(description="proposals among the scanned unreviewed inspections")
    scanned: int = Field(description="unreviewed inspections with both a classifier and a "
                                     "segmenter run looked at (newest first, bounded)")
    min_confidence: float


class PseudoLabelConfirm(BaseModel):
    """``POST /reviews/pseudo-labels/confirm``: the proposals to record as human reviews."""

    inspection_ids: list[uuid.UUID] = Field(min_length=1, max_length=500)
    min_confidence: float = Field(0.9, ge=0.0, le=1.0,
                                  description="as listed: each must still be a proposal")


class PseudoLabelConfirmed(Schema):
    confirmed: int
    inspection_ids: list[uuid.UUID]


class AgreementCounts(Schema):
    """Machine verdict against the human decision over reviewed inspections.

    ``matrix[machine][human]`` counts (machine: ok|defect|review, human: ok|defect). A false
    alarm is machine ``defect`` / human ``ok``; a miss is machine ``ok`` / human ``defect``.
    ``false_alarm_rate`` = false alarms / human ok; ``miss_rate`` = misses / human defect;
    ``agreement_rate`` = machine == human over all reviewed (a machine ``review`` never agrees).
    """

    reviewed: int = 0
    matrix: dict[str, dict[str, int]] = Field(default_factory=dict)
    agreeing: int = 0
    false_alarms: int = 0
    misses: int = 0
    agreement_rate: float | None = None
    false_alarm_rate: float | None = None
    miss_rate: float | None = None


class AgreementVersion(AgreementCounts):
    detector: str
    version: str
    shadow: bool = Field(False, description="runs of a candidate beside the active version")


class AgreementBucket(AgreementCounts):
    start: str = Field(description="first day of the bucket (UTC), YYYY-MM-DD")


class AgreementPublic(Schema):
    bucket: str
    totals: AgreementCounts
    by_version: list[AgreementVersion] = Field(default_factory=list)
    buckets: list[AgreementBucket] = Field(default_factory=list)


class StatsBucket(Schema):
    start: str = Field(description="first day of the bucket (UTC), YYYY-MM-DD")
    total: int
    defective: int
    by_label: dict[str, int] = Field(default_factory=dict)


class StatsTotals(Schema):
    total: int
    defective: int
    defect_ratio: float | None
    by_label: dict[str, int] = Field(default_factory=dict)


class StatsPublic(Schema):
    bucket: str
    buckets: list[StatsBucket]
    totals: StatsTotals


class DetectorPublic(Schema):
    """One loaded detector as ``GET /api/v1/detectors`` lists it."""

    name: str
    kind: str
    task: str
    learns_from: str
    labels: list[str] = Field(default_factory=list)
    version: str
    weights: dict[str, Any] = Field(default_factory=dict)
    threshold: float | dict[str, float] | None = None
    threshold_range: list[float] | None = Field(
        None, description="(low, high): a new threshold must lie strictly between them")
    input_size: list[int] = Field(default_factory=list)
    demo: bool = False
    metrics: dict[str, Any] = Field(default_factory=dict)
    notes: str = ""
    artifact: str | None = None
    runtime: str = "torch"


class ThresholdUpdate(BaseModel):
    threshold: float = Field(allow_inf_nan=False, description="new decision threshold")
    label: str | None = Field(None, description="which label's threshold, if several")


class SamplePublic(Schema):
    """A sample strip the demo booth offers, as ``GET /api/v1/samples`` lists it."""

    name: str = Field(description="stable key: 'good' or a defect family")
    title: str = Field(description="what a person reads, e.g. 'Scratches'")
    image_url: str = Field(description="the full PNG")
    thumbnail_url: str = Field(description="a small JPEG preview")


# -- teach, train, deploy -----------------------------------------------------------------------
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
JOB_FINAL = ("succeeded", "failed", "cancelled")


class DatasetCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    station: str | None = Field(None, max_length=100)


class DatasetPublic(Schema):
    id: uuid.UUID
    name: str
    station: str | None = None
    counts: dict[str, int] = Field(default_factory=dict, description="images per label")
    created_at: datetime | None = None

    @field_serializer("created_at")
    def _utc(self, value: datetime | None) -> str | None:
        return iso_utc(value)


class DatasetFromHistory(BaseModel):
    inspection_ids: list[uuid.UUID] = Field(min_length=1)
    label: str = Field("good", min_length=1, max_length=100)


class DatasetImagesAdded(Schema):
    added: int
    counts: dict[str, int] = Field(default_factory=dict)


class JobCreate(BaseModel):
    kind: str = Field("train", description="train | retrain_from_reviews")
    dataset: str | None = Field(None, description="dataset id or name (train: required)")
    detector: str | None = Field(
        None, description="a registered detector kind, e.g. patchcore (train: required)")
    name: str = Field(min_length=1, max_length=100, description="the instance stations use "
                      "(retrain_from_reviews: the detector whose active version learns)")
    config: dict[str, Any] = Field(default_factory=dict, description="config overrides")
    quick: bool = Field(False, description="the kind's quick config (seconds)")
    created_by: str | None = Field(
        None, max_length=100, description="ignored, kept for older clients: the server "
        "records the signed-in caller as the version's created_by")


class JobPublic(Schema):
    id: uuid.UUID
    kind: str
    status: str = Field(description="queued|running|succeeded|failed|cancelled")
    progress: float = 0.0
    message: str = ""
    version: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    runner: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @field_serializer("created_at", "started_at", "finished_at")
    def _utc(self, value: datetime | None) -> str | None:
        return iso_utc(value)


class ShadowAgreement(Schema):
    inspections: int = 0
    agreeing: int = 0
    rate: float | None = None


class DetectorKindPublic(Schema):
    """A registered detector kind, as ``GET /api/v1/detectors/kinds`` lists it."""

    kind: str
    task: str
    learns_from: str = Field(description="good-only | labelled")
    description: str = ""
    trainable: bool = Field(description="a train job can fit it from a dataset")


class DetectorVersionPublic(Schema):
    name: str
    version: str
    kind: str
    state: str = Field(description="candidate|active|shadow")
    metrics: dict[str, Any] = Field(default_factory=dict)
    dataset: str | None = None
    job: str | None = None
    parent: str | None = None
    created_by: str | None = None
    created_at: datetime | None = None
    shadow_agreement: ShadowAgreement | None = None

    @field_serializer("created_at")
    def _utc(self, value: datetime | None) -> str | None:
        return iso_utc(value)


# -- accounts, station keys, audit ----------------------------------------------------------------
class TokenPublic(Schema):
    access_token: str
    token_type: str = "bearer"
    expires_at: datetime
    role: str


class UserPublic(Schema):
    username: str
    role: str
    disabled: bool = False
    created_at: datetime | None = None


class UserCreate(BaseModel):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=8, max_length=1024)
    role: str


class UserUpdate(BaseModel):
    role: str | None = None
    password: str | None = Field(None, min_length=8, max_length=1024)
    disabled: bool | None = None


class StationKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    station: str = Field(min_length=1, max_length=100)


class StationKeyPublic(Schema):
    id: int
    name: str
    station: str
    created_at: datetime | None = None
    created_by: str | None = None
    key: str | None = None  # only in the answer that created it


class AuditEventPublic(Schema):
    id: int
    at: datetime
    actor: str
    action: str
    target_type: str
    target: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


class AuditList(Schema):
    items: list[AuditEventPublic]
    total: int
