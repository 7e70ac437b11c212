"""Database tables (SQLModel) and the public schemas the API returns.

An ``Inspection`` is one photo and the combined verdict; each detector that looked at it
leaves a ``DetectorRun`` (raw score, threshold, timings), its ``Finding`` rows and, where it
produced them, ``EvidenceMap`` rows (anomaly heatmap on its fixed scale, Grad-CAM per label).
Masks and maps are PNG blobs in the content-addressed store, referenced by key.
Datetimes are stored in UTC. The public schemas live in ``kensa.contract.schemas``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from kensa.contract.schemas import (
    DetectorPublic,
    DetectorRef,
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
    "DetectorPublic", "DetectorRef", "DetectorRun", "EvidenceMap", "Finding", "FindingPublic",
    "Inspection", "InspectionList", "InspectionPublic", "RunPublic", "StatsBucket",
    "StatsPublic", "StatsTotals", "ThresholdUpdate",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


# -- tables -------------------------------------------------------------------------------------
class Inspection(SQLModel, table=True):
    __tablename__ = "inspection"
    __table_args__ = (Index("ix_inspection_created_at_id", "created_at", "id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)
    station: str | None = Field(default=None, max_length=100, index=True)
    operator: str | None = Field(default=None, max_length=100)
    note: str | None = Field(default=None, max_length=2000)
    verdict: str = Field(max_length=16, index=True)
    anomaly_score: float | None = None
    image_key: str = Field(max_length=80)
    image_content_type: str = Field(max_length=50)
    overlay_key: str | None = Field(default=None, max_length=80)
    width: int
    height: int
    deleted_at: datetime | None = Field(default=None, index=True)


class DetectorRun(SQLModel, table=True):
    __tablename__ = "detector_run"

    id: int | None = Field(default=None, primary_key=True)
    inspection_id: uuid.UUID = Field(foreign_key="inspection.id", ondelete="CASCADE",
                                     index=True)
    detector: str = Field(max_length=100, index=True)
    version: str = Field(max_length=100)
    task: str = Field(max_length=16)
    verdict: str = Field(max_length=16)
    anomaly_score: float | None = None  # raw, in the detector's own units
    threshold: float | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict, sa_column=Column(JSON))


class Finding(SQLModel, table=True):
    __tablename__ = "finding"

    id: int | None = Field(default=None, primary_key=True)
    inspection_id: uuid.UUID = Field(foreign_key="inspection.id", ondelete="CASCADE",
                                     index=True)
    run_id: int = Field(foreign_key="detector_run.id", ondelete="CASCADE")
    detector: str = Field(max_length=100)
    label: str = Field(max_length=100, index=True)
    score: float
    area_px: int = 0
    x0: int | None = None
    y0: int | None = None
    x1: int | None = None
    y1: int | None = None
    mask_key: str | None = Field(default=None, max_length=80)


class EvidenceMap(SQLModel, table=True):
    """A stored 8-bit map: ``kind`` "anomaly" (0..255 = map_range low..high) or "gradcam"."""

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


from kensa.backend import accounts as _accounts  # noqa: E402,F401  (registers the auth tables)
