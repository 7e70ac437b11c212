"""Annotated dependencies the routers share: settings, engine, blob store, detector pool."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy import Engine

from kensa.backend.config import Settings
from kensa.backend.services.inference import DetectorPool
from kensa.backend.services.storage import BlobStore


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_engine(request: Request) -> Engine:
    """The database engine; 503 while the database has not been reached and migrated."""
    state = request.app.state
    if not getattr(state, "db_ready", False):
        raise HTTPException(status_code=503, headers={"Retry-After": "5"},
                            detail=getattr(state, "db_error", None) or "database not ready")
    return state.engine


def get_store(request: Request) -> BlobStore:
    return request.app.state.store


def get_pool(request: Request) -> DetectorPool:
    """The loaded detectors; 503 while they are still loading (or failed to load)."""
    state = request.app.state
    pool = getattr(state, "pool", None)
    if pool is None:
        error = getattr(state, "load_error", None)
        detail = f"detectors failed to load: {error}" if error else "detectors are loading"
        raise HTTPException(status_code=503, detail=detail, headers={"Retry-After": "5"})
    return pool


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
StoreDep = Annotated[BlobStore, Depends(get_store)]
PoolDep = Annotated[DetectorPool, Depends(get_pool)]
