"""the review loop: review queue, human verdicts; longer job kinds

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoString = sqlmodel.sql.sqltypes.AutoString
UTCDateTime = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "review_item",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("inspection_id", sa.Uuid(), nullable=False),
        sa.Column("station", AutoString(length=100), nullable=True),
        sa.Column("reason", AutoString(length=16), nullable=False),
        sa.Column("uncertainty", sa.Float(), nullable=True),
        sa.Column("status", AutoString(length=8), nullable=False),
        sa.Column("queued_at", UTCDateTime(), nullable=False),
        sa.Column("done_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["inspection_id"], ["inspection.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("inspection_id"),
    )
    op.create_index("ix_review_item_station", "review_item", ["station"])
    op.create_index("ix_review_item_status_queued", "review_item",
                    ["status", "queued_at", "id"])
    op.create_table(
        "inspection_review",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("inspection_id", sa.Uuid(), nullable=False),
        sa.Column("decision", AutoString(length=16), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=True),
        sa.Column("comment", AutoString(length=2000), nullable=True),
        sa.Column("mask_key", AutoString(length=80), nullable=True),
        sa.Column("reviewer", AutoString(length=120), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("current", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["inspection_id"], ["inspection.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_inspection_review_inspection_id", "inspection_review",
                    ["inspection_id"])
    op.create_index("ix_inspection_review_at", "inspection_review", ["at"])
    op.create_index("ix_inspection_review_current", "inspection_review",
                    ["inspection_id", "current"])
    with op.batch_alter_table("job") as batch:
        batch.alter_column("kind", existing_type=AutoString(length=16),
                           type_=AutoString(length=32), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("job") as batch:
        batch.alter_column("kind", existing_type=AutoString(length=32),
                           type_=AutoString(length=16), existing_nullable=False)
    op.drop_table("inspection_review")
    op.drop_table("review_item")
