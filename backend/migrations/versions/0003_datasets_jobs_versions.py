"""datasets, jobs, detector versions; runs say how their threshold was set and if shadow

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoString = sqlmodel.sql.sqltypes.AutoString
UTCDateTime = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "dataset",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", AutoString(length=100), nullable=False),
        sa.Column("station", AutoString(length=100), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "dataset_image",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Uuid(), nullable=False),
        sa.Column("label", AutoString(length=100), nullable=False),
        sa.Column("image_key", AutoString(length=80), nullable=False),
        sa.Column("content_type", AutoString(length=50), nullable=False),
        sa.Column("mask_key", AutoString(length=80), nullable=True),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("inspection_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["dataset.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_dataset_image_dataset_id", "dataset_image", ["dataset_id"])
    op.create_table(
        "job",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", AutoString(length=16), nullable=False),
        sa.Column("status", AutoString(length=16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("message", AutoString(length=2000), nullable=False),
        sa.Column("params", sa.JSON(), nullable=True),
        sa.Column("version", AutoString(length=100), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("runner", AutoString(length=16), nullable=False),
        sa.Column("worker", AutoString(length=200), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_job_status", "job", ["status"])
    op.create_table(
        "detector_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", AutoString(length=100), nullable=False),
        sa.Column("version", AutoString(length=100), nullable=False),
        sa.Column("kind", AutoString(length=50), nullable=False),
        sa.Column("files", sa.JSON(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("dataset_id", sa.Uuid(), nullable=True),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("parent", AutoString(length=100), nullable=True),
        sa.Column("created_by", AutoString(length=100), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("state", AutoString(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_detector_version_name", "detector_version", ["name"])
    op.create_index("ix_detector_version_name_version", "detector_version",
                    ["name", "version"], unique=True)
    # Plain ADD/DROP COLUMN, never a batch "move and copy": on SQLite that drops and recreates
    # detector_run, and with foreign keys on the drop cascades to every finding and evidence
    # row (tested in tests/backend/test_migrations.py).
    op.add_column("detector_run",
                  sa.Column("threshold_method", AutoString(length=50), nullable=True))
    op.add_column("detector_run", sa.Column("shadow", sa.Boolean(), nullable=False,
                                            server_default=sa.false()))


def downgrade() -> None:
    op.drop_column("detector_run", "shadow")
    op.drop_column("detector_run", "threshold_method")
    op.drop_table("detector_version")
    op.drop_table("job")
    op.drop_table("dataset_image")
    op.drop_table("dataset")
