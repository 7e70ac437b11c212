"""detector_run.runtime: which runtime (torch, onnxruntime, openvino) served each run

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ADD/DROP COLUMN, never a batch "move and copy" (see 0003: on SQLite that recreates
# detector_run and the drop cascades to every finding and evidence row).
def upgrade() -> None:
    op.add_column("detector_run", sa.Column("runtime", sqlmodel.sql.sqltypes.AutoString(
        length=16), nullable=True))


def downgrade() -> None:
    op.drop_column("detector_run", "runtime")
