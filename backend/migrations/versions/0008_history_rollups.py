"""history rollups: per-day inspection counts, so stats and the list's total stay flat

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

``inspection_rollup`` holds, per (facet, value, UTC day, station, verdict, deleted, current
human decision, label), how many inspections fall in that group (``services/rollups.py``
keeps it in step in the same transaction as every change). Backfilled here with one
INSERT ... SELECT per facet and label (a frozen copy of ``rollups.rebuild_statements``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = ("facet", "value", "day", "station", "verdict", "deleted", "human", "label")
String = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    rollup = op.create_table(
        "inspection_rollup",
        sa.Column("facet", String(length=16), nullable=False),
        sa.Column("value", String(length=100), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("station", String(length=100), nullable=False),
        sa.Column("verdict", String(length=16), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("human", String(length=16), nullable=False),
        sa.Column("label", String(length=100), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(*KEY, name="pk_inspection_rollup"),
    )
    bind = op.get_bind()
    for statement in backfill(rollup, bind.dialect.name):
        bind.execute(statement)
    if bind.dialect.name in ("postgresql", "sqlite"):  # row estimates for the planner now
        bind.execute(sa.text("ANALYZE inspection_rollup"))


def downgrade() -> None:
    op.drop_table("inspection_rollup")


def backfill(rollup: sa.Table, dialect: str) -> list:
    empty = sa.literal_column("''")
    i = sa.table("inspection", sa.column("id"), sa.column("created_at"), sa.column("station"),
                 sa.column("operator"), sa.column("verdict"), sa.column("deleted_at"))
    review = sa.table("inspection_review", sa.column("inspection_id"), sa.column("decision"),
                      sa.column("current", sa.Boolean()))
    finding = sa.table("finding", sa.column("inspection_id"), sa.column("label"))
    run = sa.table("detector_run", sa.column("inspection_id"), sa.column("detector"))
    found = sa.select(finding.c.inspection_id, finding.c.label.label("v")).distinct()
    ran = sa.select(run.c.inspection_id, run.c.detector.label("v")).distinct()
    if dialect == "postgresql":
        day = sa.cast(sa.func.timezone(sa.literal_column("'UTC'"), i.c.created_at), sa.Date)
    else:
        day = sa.func.date(i.c.created_at)
    station = sa.func.coalesce(i.c.station, empty)
    deleted = i.c.deleted_at.is_not(None)
    out = []
    for facet in ("", "operator", "detector", "label"):
        for by_label in (False, True):
            base = i.outerjoin(review, sa.and_(review.c.inspection_id == i.c.id,
                                               review.c.current.is_(True)))
            human = sa.func.coalesce(review.c.decision, empty)
            where = []
            if facet == "":
                value = empty
            elif facet == "operator":
                value, where = i.c.operator, [i.c.operator.is_not(None)]
            else:
                sub = (ran if facet == "detector" else found).subquery(f"f_{facet}")
                base = base.join(sub, sub.c.inspection_id == i.c.id)
                value = sub.c.v
            label = empty
            if by_label:
                lab = found.subquery("lab")
                base = base.join(lab, lab.c.inspection_id == i.c.id)
                label = lab.c.v
            grouped = [day, station, i.c.verdict, deleted, human]
            grouped += [value] if facet else []  # constants are not grouped (PostgreSQL)
            grouped += [label] if by_label else []
            query = (sa.select(sa.literal_column(f"'{facet}'"), value, day, station,
                               i.c.verdict, deleted, human, label, sa.func.count())
                     .select_from(base).where(*where).group_by(*grouped))
            out.append(sa.insert(rollup).from_select([*KEY, "n"], query))
    return out
