"""The /api/v1 router."""

from __future__ import annotations

from fastapi import APIRouter

from kensa.backend.api.routes import auth, detectors, inspections, stats

api_router = APIRouter()
api_router.include_router(inspections.upload_router)
api_router.include_router(inspections.router)
api_router.include_router(stats.router)
api_router.include_router(detectors.router)
api_router.include_router(auth.router)
api_router.include_router(auth.users)
api_router.include_router(auth.keys)
