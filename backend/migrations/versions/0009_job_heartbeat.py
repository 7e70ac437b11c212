"""job.heartbeat_at: a running job's worker says it is alive, so a lost one can be failed

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ADD/DROP COLUMN, never a batch "move and copy" (see 0003).
def upgrade() -> None:
    op.add_column("job", sa.Column("heartbeat_at", sqlmodel.sql.sqltypes.UTCDateTime(),
                                   nullable=True))


def downgrade() -> None:
    op.drop_column("job", "heartbeat_at")
