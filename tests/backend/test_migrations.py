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
