"""history indexes: the list, its filters, counts and stats stay fast at a million records

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

Measured with bench/history_scale.py (docs/RESULTS.md, issue 12). The single-column indexes
on ``inspection.deleted_at``, ``station`` and ``verdict`` are replaced by composite ones that
start with the filter, then ``deleted_at`` (``IS NULL`` is a seek), then the list order
(``created_at, id``) and ``verdict``, so a filtered page is an index walk and ``total`` /
``defect_ratio`` / the stats buckets are index-only scans. A one-column ``deleted_at`` index
misled SQLite (NULLs count as distinct keys: it took ``IS NULL`` for a selective filter and
sorted the whole table). ``finding(label, inspection_id)`` and ``detector_run(detector,
inspection_id)`` answer the label and detector filters from the index alone.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HISTORY = ["deleted_at", "created_at", "id", "verdict"]
NEW = (
    ("ix_inspection_live", "inspection", HISTORY),
    ("ix_inspection_station_live", "inspection", ["station", *HISTORY]),
    ("ix_inspection_operator_live", "inspection", ["operator", *HISTORY]),
    ("ix_inspection_verdict_live", "inspection", ["verdict", "deleted_at", "created_at", "id"]),
    ("ix_finding_label_inspection", "finding", ["label", "inspection_id"]),
    ("ix_detector_run_detector_inspection", "detector_run", ["detector", "inspection_id"]),
)
OLD = (
    ("ix_inspection_deleted_at", "inspection", ["deleted_at"]),
    ("ix_inspection_station", "inspection", ["station"]),
    ("ix_inspection_verdict", "inspection", ["verdict"]),
    ("ix_finding_label", "finding", ["label"]),
    ("ix_detector_run_detector", "detector_run", ["detector"]),
)


def upgrade() -> None:
    for name, table, columns in NEW:
        op.create_index(name, table, columns)
    for name, table, _ in OLD:
        op.drop_index(name, table_name=table)


def downgrade() -> None:
    for name, table, columns in OLD:
        op.create_index(name, table, columns)
    for name, table, _ in NEW:
        op.drop_index(name, table_name=table)
