"""Alembic migrations, applied at startup by ``backend.db.upgrade``."""
