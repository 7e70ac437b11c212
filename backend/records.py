"""Database tables (SQLModel) and the public schemas the API returns.

An ``Inspection`` is one photo and the combined verdict; each detector that looked at it
leaves a ``DetectorRun`` (raw score, threshold, timings), its ``Finding`` rows and, where it
produced them, ``EvidenceMap`` rows (one per evidence layer; what a kind means belongs to
``kensa.models.evidence``).
Masks and maps are PNG blobs in the content-addressed store, referenced by key.
Datetimes are stored in UTC. The public schemas live in ``kensa.contract.schemas``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from sqlalchemy import JSON, Column, Index, PrimaryKeyConstraint
from sqlmodel import Field, SQLModel

from kensa.contract.schemas import (
    DetectorPublic,
    DetectorRef,
    EvidencePublic,
    FindingPublic,
    InspectionList,
    InspectionPublic,
    RunPublic,
    StatsBucket,
    StatsPublic,
    StatsTotals,
    ThresholdUpdate,
)

__all__ = [  # the public schemas are re-exported for the service
    "Dataset",
    "DatasetImage",
    "DetectorPublic",
    "DetectorRef",
    "DetectorRun",
    "DetectorVersion",
    "EvidenceMap",
    "EvidencePublic",
    "Finding",
    "FindingPublic",
    "Inspection",
    "InspectionList",
    "InspectionPublic",
    "InspectionReview",
    "InspectionRollup",
    "Job",
    "ReviewQueueItem",
    "RunPublic",
    "StatsBucket",
    "StatsPublic",
    "StatsTotals",
    "ThresholdUpdate",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


HISTORY_KEY = ("deleted_at", "created_at", "id", "verdict")
"""Live records (``deleted_at IS NULL`` seeks), in list order, with the verdict for counts."""
ROLLUP_KEY = ("facet", "value", "day", "station", "verdict", "deleted", "human", "label")
"""The rollup's primary key: a facet's days are one index range."""


# -- tables -------------------------------------------------------------------------------------
class Inspection(SQLModel, table=True):
    __tablename__ = "inspection"
    __table_args__ = (  # the history indexes: bench/history_scale.py, migration 0005
        Index("ix_inspection_created_at_id", "created_at", "id"),
        Index("ix_inspection_live", *HISTORY_KEY),
        Index("ix_inspection_station_live", "station", *HISTORY_KEY),
        Index("ix_inspection_operator_live", "operator", *HISTORY_KEY),
        Index("ix_inspection_verdict_live", "verdict", "deleted_at", "created_at", "id"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)
    station: str | None = Field(default=None, max_length=100)
    operator: str | None = Field(default=None, max_length=100)
    note: str | None = Field(default=None, max_length=2000)
    verdict: str = Field(max_length=16)
    anomaly_score: float | None = None
    image_key: str = Field(max_length=80)
    image_content_type: str = Field(max_length=50)
    overlay_key: str | None = Field(default=None, max_length=80)
    width: int
    height: int
    deleted_at: datetime | None = None


class DetectorRun(SQLModel, table=True):
    __tablename__ = "detector_run"
    __table_args__ = (Index("ix_detector_run_detector_inspection", "detector", "inspection_id"),)

    id: int | None = Field(default=None, primary_key=True)
    inspection_id: uuid.UUID = Field(foreign_key="inspection.id", ondelete="CASCADE",
                                     index=True)
    detector: str = Field(max_length=100)
    version: str = Field(max_length=100)
    task: str = Field(max_length=16)
    verdict: str = Field(max_length=16)
    anomaly_score: float | None = None  # raw, in the detector's own units
    threshold: float | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict, sa_column=Column(JSON))
    threshold_method: str | None = Field(default=None, max_length=50)
    shadow: bool = False  # a candidate version run beside the active one, not in the verdict
    runtime: str | None = Field(default=None, max_length=16)  # torch|onnxruntime|openvino


class Finding(SQLModel, table=True):
    __tablename__ = "finding"
    __table_args__ = (Index("ix_finding_label_inspection", "label", "inspection_id"),)

    id: int | None = Field(default=None, primary_key=True)
    inspection_id: uuid.UUID = Field(foreign_key="inspection.id", ondelete="CASCADE",
                                     index=True)
    run_id: int = Field(foreign_key="detector_run.id", ondelete="CASCADE")
    detector: str = Field(max_length=100)
    label: str = Field(max_length=100)
    score: float
    area_px: int = 0
    x0: int | None = None
    y0: int | None = None
    x1: int | None = None
    y1: int | None = None
    mask_key: str | None = Field(default=None, max_length=80)


class EvidenceMap(SQLModel, table=True):
    """A stored evidence layer: its kind and label verbatim, an 8-bit PNG (0..255 = low..high).

    The server does not interpret ``kind``; ``kensa.models.evidence`` encodes, decodes and
    draws it."""

    __tablename__ = "evidence_map"

    id: int | None = Field(default=None, primary_key=True)
    inspection_id: uuid.UUID = Field(foreign_key="inspection.id", ondelete="CASCADE",
                                     index=True)
    run_id: int = Field(foreign_key="detector_run.id", ondelete="CASCADE")
    kind: str = Field(max_length=16)
    label: str | None = Field(default=None, max_length=100)
    map_key: str = Field(max_length=80)
    low: float = 0.0
    high: float = 1.0


class InspectionRollup(SQLModel, table=True):
    """Inspection counts per UTC day and group, kept in the same transaction as every change
    that moves an inspection between groups (insert, shadow run, soft delete / restore,
    review): the stats and the list's ``total`` read these instead of counting records.

    One inspection counts once in each of its rows: ``facet``/``value`` is ``""``/``""``
    (every inspection) or one thing it has (``label``: a finding label, ``detector``: a run,
    ``operator``), ``label`` is ``""`` (the whole group) or a finding label it has. ``station``
    and ``human`` (current review decision) are ``""`` for none. Migration 0008."""

    __tablename__ = "inspection_rollup"
    __table_args__ = (PrimaryKeyConstraint(*ROLLUP_KEY, name="pk_inspection_rollup"),)

    facet: str = Field(max_length=16)
    value: str = Field(max_length=100)
    day: date
    station: str = Field(max_length=100)
    verdict: str = Field(max_length=16)
    deleted: bool
    human: str = Field(max_length=16)
    label: str = Field(max_length=100)
    n: int = 0


# -- teach, train, deploy -----------------------------------------------------------------------
class Dataset(SQLModel, table=True):
    """A named set of labelled images to train and evaluate detectors on."""

    __tablename__ = "dataset"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    station: str | None = Field(default=None, max_length=100)
    created_at: datetime = Field(default_factory=utcnow)


class DatasetImage(SQLModel, table=True):
    """One image of a dataset: ``label`` is ``good`` or a defect label; blobs by key."""

    __tablename__ = "dataset_image"

    id: int | None = Field(default=None, primary_key=True)
    dataset_id: uuid.UUID = Field(foreign_key="dataset.id", ondelete="CASCADE", index=True)
    label: str = Field(max_length=100)
    image_key: str = Field(max_length=80)
    content_type: str = Field(max_length=50)
    mask_key: str | None = Field(default=None, max_length=80)
    width: int
    height: int
    inspection_id: uuid.UUID | None = None  # where it came from, when added from history
    created_at: datetime = Field(default_factory=utcnow)


class Job(SQLModel, table=True):
    """A background job (train); the worker writes its progress here, whatever runs it."""

    __tablename__ = "job"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    kind: str = Field(max_length=32)
    status: str = Field(max_length=16, index=True)
    progress: float = 0.0
    message: str = Field(default="", max_length=2000)
    params: dict = Field(default_factory=dict, sa_column=Column(JSON))
    version: str | None = Field(default=None, max_length=100)
    metrics: dict = Field(default_factory=dict, sa_column=Column(JSON))
    runner: str = Field(default="local", max_length=16)
    worker: str | None = Field(default=None, max_length=200)  # pid@host or a celery task id
    cancel_requested: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None  # the worker's last "still running"


class DetectorVersion(SQLModel, table=True):
    """A trained artifact of a named detector; its files are blobs (key per file name)."""

    __tablename__ = "detector_version"
    __table_args__ = (Index("ix_detector_version_name_version", "name", "version",
                            unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, index=True)
    version: str = Field(max_length=100)
    kind: str = Field(max_length=50)
    files: dict = Field(default_factory=dict, sa_column=Column(JSON))
    metrics: dict = Field(default_factory=dict, sa_column=Column(JSON))
    dataset_id: uuid.UUID | None = None
    job_id: uuid.UUID | None = None
    parent: str | None = Field(default=None, max_length=100)
    created_by: str | None = Field(default=None, max_length=100)
    created_at: datetime = Field(default_factory=utcnow)
    state: str = Field(default="candidate", max_length=16)  # candidate | active | shadow


# -- the review loop ------------------------------------------------------------------------------
class ReviewQueueItem(SQLModel, table=True):
    """An inspection queued for a person, decided when it was stored (``reason``: review,
    uncertain, random; ``manual`` when someone reviewed it unasked)."""

    __tablename__ = "review_item"
    __table_args__ = (Index("ix_review_item_status_queued", "status", "queued_at", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    inspection_id: uuid.UUID = Field(foreign_key="inspection.id", ondelete="CASCADE",
                                     unique=True)
    station: str | None = Field(default=None, max_length=100, index=True)
    reason: str = Field(max_length=16)
    uncertainty: float | None = None
    status: str = Field(default="open", max_length=8)  # open | done
    queued_at: datetime = Field(default_factory=utcnow)
    done_at: datetime | None = None


class InspectionReview(SQLModel, table=True):
    """A human verdict; the machine's rows stay untouched. A re-review clears ``current`` of
    the earlier one (kept as history)."""

    __tablename__ = "inspection_review"
    __table_args__ = (Index("ix_inspection_review_current", "inspection_id", "current"),)

    id: int | None = Field(default=None, primary_key=True)
    inspection_id: uuid.UUID = Field(foreign_key="inspection.id", ondelete="CASCADE",
                                     index=True)
    decision: str = Field(max_length=16)
    labels: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    comment: str | None = Field(default=None, max_length=2000)
    mask_key: str | None = Field(default=None, max_length=80)
    reviewer: str = Field(max_length=120)
    at: datetime = Field(default_factory=utcnow, index=True)
    current: bool = True


from kensa.backend import accounts as _accounts  # noqa: E402,F401  (registers the auth tables)
