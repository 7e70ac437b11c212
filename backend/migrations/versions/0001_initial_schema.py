"""initial schema: inspection, detector_run, finding, evidence_map

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoString = sqlmodel.sql.sqltypes.AutoString
UTCDateTime = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "inspection",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("station", AutoString(length=100), nullable=True),
        sa.Column("operator", AutoString(length=100), nullable=True),
        sa.Column("note", AutoString(length=2000), nullable=True),
        sa.Column("verdict", AutoString(length=16), nullable=False),
        sa.Column("anomaly_score", sa.Float(), nullable=True),
        sa.Column("image_key", AutoString(length=80), nullable=False),
        sa.Column("image_content_type", AutoString(length=50), nullable=False),
        sa.Column("overlay_key", AutoString(length=80), nullable=True),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_inspection_created_at_id", "inspection", ["created_at", "id"])
    op.create_index("ix_inspection_deleted_at", "inspection", ["deleted_at"])
    op.create_index("ix_inspection_station", "inspection", ["station"])
    op.create_index("ix_inspection_verdict", "inspection", ["verdict"])

    op.create_table(
        "detector_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("inspection_id", sa.Uuid(), nullable=False),
        sa.Column("detector", AutoString(length=100), nullable=False),
        sa.Column("version", AutoString(length=100), nullable=False),
        sa.Column("task", AutoString(length=16), nullable=False),
        sa.Column("verdict", AutoString(length=16), nullable=False),
        sa.Column("anomaly_score", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("timings_ms", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["inspection_id"], ["inspection.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_detector_run_detector", "detector_run", ["detector"])
    op.create_index("ix_detector_run_inspection_id", "detector_run", ["inspection_id"])

    op.create_table(
        "evidence_map",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("inspection_id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("kind", AutoString(length=16), nullable=False),
        sa.Column("label", AutoString(length=100), nullable=True),
        sa.Column("map_key", AutoString(length=80), nullable=False),
        sa.Column("low", sa.Float(), nullable=False),
        sa.Column("high", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["inspection_id"], ["inspection.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["detector_run.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_evidence_map_inspection_id", "evidence_map", ["inspection_id"])

    op.create_table(
        "finding",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("inspection_id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("detector", AutoString(length=100), nullable=False),
        sa.Column("label", AutoString(length=100), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("area_px", sa.Integer(), nullable=False),
        sa.Column("x0", sa.Integer(), nullable=True),
        sa.Column("y0", sa.Integer(), nullable=True),
        sa.Column("x1", sa.Integer(), nullable=True),
        sa.Column("y1", sa.Integer(), nullable=True),
        sa.Column("mask_key", AutoString(length=80), nullable=True),
        sa.ForeignKeyConstraint(["inspection_id"], ["inspection.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["detector_run.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_finding_inspection_id", "finding", ["inspection_id"])
    op.create_index("ix_finding_label", "finding", ["label"])


def downgrade() -> None:
    op.drop_table("finding")
    op.drop_table("evidence_map")
    op.drop_table("detector_run")
    op.drop_table("inspection")
