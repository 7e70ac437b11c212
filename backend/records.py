"""Database tables (SQLModel) and the public schemas the API returns.

An ``Inspection`` is one photo and the combined verdict; each detector that looked at it
leaves a ``DetectorRun`` (raw score, threshold, timings), its ``Finding`` rows and, where it
produced them, ``EvidenceMap`` rows (anomaly heatmap on its fixed scale, Grad-CAM per label).
Masks and maps are PNG blobs in the content-addressed store, referenced by key.
Datetimes are stored in UTC.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, field_serializer
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel


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


# -- public schemas -----------------------------------------------------------------------------
def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class FindingPublic(SQLModel):
    label: str
    score: float
    detector: str
    area_px: int
    bbox: list[int] | None = Field(None, description="[x0, y0, x1, y1], x1/y1 exclusive")
    mask_url: str | None = None


class RunPublic(SQLModel):
    detector: str
    version: str
    verdict: str
    anomaly_score: float | None = Field(None, description="raw score, detector units")
    threshold: float | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict)


class DetectorRef(SQLModel):
    name: str
    version: str


class InspectionPublic(SQLModel):
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
    image_url: str
    overlay_url: str
    width: int
    height: int
    station: str | None = None
    operator: str | None = None
    note: str | None = None
    deleted_at: datetime | None = None
    notice: str | None = Field(None, description="e.g. that a demo detector was used")

    @field_serializer("created_at", "deleted_at")
    def _utc(self, value: datetime | None) -> str | None:
        return _iso(value)


class InspectionList(SQLModel):
    items: list[InspectionPublic]
    total: int
    defect_ratio: float | None = Field(None, description="defect verdicts / total (filtered)")


class StatsBucket(SQLModel):
    start: str = Field(description="first day of the bucket (UTC), YYYY-MM-DD")
    total: int
    defective: int
    by_label: dict[str, int] = Field(default_factory=dict)


class StatsTotals(SQLModel):
    total: int
    defective: int
    defect_ratio: float | None
    by_label: dict[str, int] = Field(default_factory=dict)


class StatsPublic(SQLModel):
    bucket: str
    buckets: list[StatsBucket]
    totals: StatsTotals


class ThresholdUpdate(BaseModel):
    threshold: float = PydanticField(allow_inf_nan=False, description="new decision threshold")
    label: str | None = PydanticField(None, description="which label's threshold, if several")


DetectorPublic = dict[str, Any]
