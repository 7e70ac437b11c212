"""Liveness and readiness probes."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from kensa.backend import db
from kensa.backend.api.deps import requires
from kensa.backend.services.demo import RECIPES

router = APIRouter(tags=["health"])


@router.get("/healthz", dependencies=requires(None))
async def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz", dependencies=requires(None))
async def readyz(request: Request) -> JSONResponse:
    """200 once the database is migrated and reachable and the detectors are loaded; 503
    (saying which) otherwise."""
    state = request.app.state
    engine = getattr(state, "engine", None)
    if engine is None:
        return JSONResponse(status_code=503, content={"status": "loading",
                                                      "detail": "the service is starting"})
    if not getattr(state, "db_ready", False):
        return JSONResponse(status_code=503, headers={"Retry-After": "5"}, content={
            "status": "database", "detail": getattr(state, "db_error", None) or "not ready"})
    if not await anyio.to_thread.run_sync(db.reachable, engine):
        return JSONResponse(status_code=503, headers={"Retry-After": "5"}, content={
            "status": "database", "detail": "the database cannot be reached"})
    pool = getattr(state, "pool", None)
    if pool is None:
        error = getattr(state, "load_error", None)
        return JSONResponse(status_code=503, content={
            "status": "failed" if error else "loading",
            "detail": f"detectors failed to load: {error}" if error else "detectors are loading",
        })
    body = {"status": "ready", "detectors": pool.names, "demo": any(d.demo for d in pool.all())}
    if pool.pending:  # demo detectors still being fitted in the background
        body["pending"] = [RECIPES[task].name for task in pool.pending]
    return JSONResponse(body)
