"""Annotated dependencies the routers share: settings, engine, blob store, detector pool."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
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


def get_limiter(request: Request) -> anyio.CapacityLimiter:
    """The one limiter of image work: decoding, inference and rendering share it, so no
    request (a huge photo, an overlay re-render) works beside ``inference_concurrency``
    others."""
    return request.app.state.limiter


SettingsDep = Annotated[Settings, Depends(get_settings)]
LimiterDep = Annotated[anyio.CapacityLimiter, Depends(get_limiter)]
EngineDep = Annotated[Engine, Depends(get_engine)]
StoreDep = Annotated[BlobStore, Depends(get_store)]
PoolDep = Annotated[DetectorPool, Depends(get_pool)]


# -- who is calling, and what each route requires ----------------------------------------------
from fastapi.security import OAuth2PasswordBearer  # noqa: E402

from kensa.backend.core.security import RANK, Principal  # noqa: E402
from kensa.backend.services import accounts  # noqa: E402

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)
UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


async def get_principal(request: Request,
                        token: Annotated[str | None, Depends(oauth2_scheme)]) -> Principal:
    """The caller behind ``Authorization: Bearer``; 401 without a valid one (503 while the
    service is still starting and has no database to check it against)."""
    state = request.app.state
    engine = getattr(state, "engine", None)
    if engine is None:
        raise HTTPException(503, "the service is starting", headers={"Retry-After": "5"})
    if not getattr(state, "db_ready", False):  # no database to check any credentials against
        raise HTTPException(503, getattr(state, "db_error", None) or "database not ready",
                            headers={"Retry-After": "5"})
    if not token:
        raise HTTPException(401, "sign in first: send 'Authorization: Bearer <token>'",
                            headers=UNAUTHORIZED)
    principal = await anyio.to_thread.run_sync(accounts.resolve, engine, token)
    if principal is None:
        raise HTTPException(401, "the token is unknown, expired or revoked; sign in again",
                            headers=UNAUTHORIZED)
    request.state.principal = principal
    return principal


CurrentUser = Annotated[Principal, Depends(get_principal)]


class Require:
    """A route's access rule, as a dependency the route-table test can read: ``role`` is the
    lowest user role let in; ``station`` also lets station keys in (scoped by the route);
    ``Require.public()`` marks a route open to anyone."""

    def __init__(self, role: str | None, *, station: bool = False) -> None:
        if role is not None and role not in RANK:
            raise ValueError(f"unknown role {role!r}")
        self.role = role
        self.station = station

    @classmethod
    def public(cls) -> Require:
        return cls(None)

    async def __call__(self, request: Request,
                       token: Annotated[str | None, Depends(oauth2_scheme)]) -> Principal | None:
        if self.role is None:
            return None
        principal = await get_principal(request, token)
        if principal.kind == "station":
            if not self.station:
                raise HTTPException(403, "a station key may only inspect and read what it "
                                         "inspected")
            return principal
        if not principal.at_least(self.role):
            raise HTTPException(403, f"this needs the role {self.role!r} or higher; you are "
                                     f"{principal.name!r} ({principal.role})")
        return principal


def requires(role: str | None, *, station: bool = False) -> list[Any]:
    """``dependencies=requires("manager")`` for a route or router."""
    return [Depends(Require(role, station=station))]
