"""Alembic: upgrade head on an empty database, models match the migration, downgrade base."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from backend_testing import TABLES
from sqlmodel import SQLModel

import kensa.backend.records  # noqa: F401  (the tables)
from kensa.backend import db


def test_upgrade_matches_models_and_downgrade_empties(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        assert set(sa.inspect(engine).get_table_names()) == set()
        db.upgrade(engine)
        assert set(sa.inspect(engine).get_table_names()) == {*TABLES, "alembic_version"}
        head = ScriptDirectory.from_config(db.alembic_config()).get_current_head()
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert context.get_current_revision() == head
            assert compare_metadata(context, SQLModel.metadata) == []
        db.upgrade(engine)  # idempotent at head
        db.downgrade(engine, "base")
        assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
        db.upgrade(engine)  # and back up again
        assert set(sa.inspect(engine).get_table_names()) >= set(TABLES)
    finally:
        engine.dispose()


def test_0002_renames_stored_anomaly_maps_to_heatmap_and_back(database_url: str) -> None:
    from sqlmodel import Session

    from kensa.backend.records import DetectorRun, EvidenceMap, Inspection

    engine = db.make_engine(database_url)
    try:
        db.upgrade(engine, "0001")
        with Session(engine) as session, session.begin():
            inspection = Inspection(verdict="ok", image_key="i", image_content_type="image/png",
                                    width=1, height=1)
            session.add(inspection)
            session.flush()
            run = DetectorRun(inspection_id=inspection.id, detector="pc", version="1",
                              task="anomaly", verdict="ok")
            session.add(run)
            session.flush()
            for kind in ("anomaly", "gradcam"):
                session.add(EvidenceMap(inspection_id=inspection.id, run_id=run.id, kind=kind,
                                        map_key=kind))

        def kinds() -> list[str]:
            with engine.connect() as conn:
                return sorted(conn.execute(sa.text("SELECT kind FROM evidence_map")).scalars())

        db.upgrade(engine)
        assert kinds() == ["gradcam", "heatmap"]
        db.downgrade(engine, "0001")
        assert kinds() == ["anomaly", "gradcam"]
    finally:
        engine.dispose()
