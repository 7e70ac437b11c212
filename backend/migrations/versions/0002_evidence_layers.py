"""evidence layers: evidence_map.kind is an evidence kind, stored verbatim ('anomaly' -> 'heatmap')

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_evidence = sa.table("evidence_map", sa.column("kind", sa.String(16)))


def _rename(old: str, new: str) -> None:
    op.execute(_evidence.update().where(_evidence.c.kind == old).values(kind=new))


def upgrade() -> None:
    _rename("anomaly", "heatmap")


def downgrade() -> None:
    _rename("heatmap", "anomaly")
