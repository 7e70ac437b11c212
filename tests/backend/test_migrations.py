"""Alembic: upgrade head on an empty database, models match the migration, downgrade base."""

from __future__ import annotations

from datetime import UTC, datetime

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
    import uuid

    engine = db.make_engine(database_url)
    try:
        db.upgrade(engine, "0001")
        tables = sa.MetaData()
        tables.reflect(engine)  # the schema as 0001 left it (the models have moved on)
        key = uuid.uuid4()
        inspection_id = key.hex if engine.dialect.name != "postgresql" else str(key)
        with engine.begin() as conn:
            conn.execute(tables.tables["inspection"].insert().values(
                id=inspection_id, created_at=datetime.now(UTC), verdict="ok", image_key="i",
                image_content_type="image/png", width=1, height=1))
            run_id = conn.execute(tables.tables["detector_run"].insert().values(
                inspection_id=inspection_id, detector="pc", version="1", task="anomaly",
                verdict="ok")).inserted_primary_key[0]
            for kind in ("anomaly", "gradcam"):
                conn.execute(tables.tables["evidence_map"].insert().values(
                    inspection_id=inspection_id, run_id=run_id, kind=kind, map_key=kind,
                    low=0.0, high=1.0))

        def kinds() -> list[str]:
            with engine.connect() as conn:
                return sorted(conn.execute(sa.text("SELECT kind FROM evidence_map")).scalars())

        db.upgrade(engine)  # every later migration keeps the rows (0003 once lost them)
        assert kinds() == ["gradcam", "heatmap"]
        db.downgrade(engine, "0001")
        assert kinds() == ["anomaly", "gradcam"]
    finally:
        engine.dispose()


HISTORY_INDEXES = {
    "inspection": {"ix_inspection_live": ["deleted_at", "created_at", "id", "verdict"],
                   "ix_inspection_station_live": ["station", "deleted_at", "created_at", "id",
                                                  "verdict"],
                   "ix_inspection_operator_live": ["operator", "deleted_at", "created_at", "id",
                                                   "verdict"],
                   "ix_inspection_verdict_live": ["verdict", "deleted_at", "created_at", "id"]},
    "finding": {"ix_finding_label_inspection": ["label", "inspection_id"]},
    "detector_run": {"ix_detector_run_detector_inspection": ["detector", "inspection_id"]},
}
REPLACED = {"inspection": {"ix_inspection_deleted_at", "ix_inspection_station",
                           "ix_inspection_verdict"},
            "finding": {"ix_finding_label"}, "detector_run": {"ix_detector_run_detector"}}


def _indexes(engine: sa.Engine, table: str) -> dict[str, list[str]]:
    return {i["name"]: i["column_names"] for i in sa.inspect(engine).get_indexes(table)}


def test_0007_creates_the_history_indexes_and_downgrade_restores_the_old(database_url: str
                                                                         ) -> None:
    engine = db.make_engine(database_url)
    try:
        db.upgrade(engine, "0006")
        for table, old in REPLACED.items():
            assert old <= set(_indexes(engine, table))
        db.upgrade(engine, "0007")
        for table, wanted in HISTORY_INDEXES.items():
            found = _indexes(engine, table)
            assert {name: found.get(name) for name in wanted} == wanted
            assert not REPLACED[table] & set(found)
        assert "ix_inspection_created_at_id" in _indexes(engine, "inspection")
        db.downgrade(engine, "0006")
        for table, wanted in HISTORY_INDEXES.items():
            found = _indexes(engine, table)
            assert not set(wanted) & set(found) and REPLACED[table] <= set(found)
    finally:
        engine.dispose()
