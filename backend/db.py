"""Engine, sessions and schema migrations (Alembic, shipped in ``backend/migrations``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlmodel import Session, create_engine

log = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
CONNECT_TIMEOUT_S = 5
"""A database server that does not answer costs a request at most this long, never a hang."""
SQLITE_OUTAGES = ("database is locked", "unable to open database", "disk I/O error")


def make_engine(url: str) -> Engine:
    """An engine for SQLite (WAL, busy timeout, foreign keys) or PostgreSQL (psycopg 3)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - trivial
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_S} if url.startswith("postgresql") else {}
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10,
                         connect_args=connect_args)


def reachable(engine: Engine) -> bool:
    """True when a ``SELECT 1`` succeeds (within the connect timeout)."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except (DBAPIError, OSError):
        return False


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` means "the database cannot be reached" (answer 503, retry later) rather
    than a bug or bad data (500). SQLite reports a missing table as an OperationalError too:
    only its locking and file errors count there."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, InterfaceError):
        return True
    if isinstance(exc, OperationalError):
        if type(exc.orig).__module__.startswith("sqlite3"):
            return any(s in str(exc.orig) for s in SQLITE_OUTAGES)
        return True
    return False


def alembic_config(engine: Engine | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations; with ``engine`` it migrates that
    database (otherwise env.py reads the URL from the settings)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


MIGRATION_LOCK = 0x6B656E7361  # "kensa": one advisory lock id for every replica


@contextmanager
def migration_lock(engine: Engine) -> Iterator[None]:
    """Replicas starting together migrate one after the other (a server-side lock on
    PostgreSQL and MariaDB; SQLite serialises writers itself)."""
    dialect = engine.dialect.name
    if dialect not in ("postgresql", "mysql", "mariadb"):
        yield
        return
    with engine.connect() as conn:
        if dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
        else:
            conn.execute(text("SELECT GET_LOCK('kensa-migrations', 600)"))
        conn.commit()
        try:
            yield
        finally:
            if dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
            else:
                conn.execute(text("SELECT RELEASE_LOCK('kensa-migrations')"))
            conn.commit()


def upgrade(engine: Engine, revision: str = "head") -> None:
    log.info("migrating %s to %s", engine.url.render_as_string(hide_password=True), revision)
    with migration_lock(engine):
        command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    command.downgrade(alembic_config(engine), revision)


def session_scope(engine: Engine) -> Iterator[Session]:
    with Session(engine) as session:
        yield session
