"""The detectors the service runs, and run-time threshold changes."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, HTTPException

from kensa.backend.api.deps import PoolDep
from kensa.contract.schemas import DetectorPublic, ErrorBody, ThresholdUpdate

router = APIRouter(prefix="/detectors", tags=["detectors"])


@router.get("", response_model=list[DetectorPublic])
async def list_detectors(pool: PoolDep) -> list[DetectorPublic]:
    """Each loaded detector's ``describe()`` (name, task, labels, version, weights, threshold,
    demo, metrics) plus its notes and artifact folder."""
    return [DetectorPublic(**loaded.describe()) for loaded in pool.all()]


@router.patch("/{name}", response_model=DetectorPublic,
              responses={404: {"model": ErrorBody, "description": "no such detector"}})
async def update_detector(name: str, body: ThresholdUpdate, pool: PoolDep) -> DetectorPublic:
    """Change a decision threshold now; it is saved to the artifact's config.json."""
    if name not in pool:
        raise HTTPException(404, f"no detector {name!r}; available: {', '.join(pool.names)}")
    try:
        described = await anyio.to_thread.run_sync(pool.set_threshold, name, body.threshold,
                                                   body.label)
        return DetectorPublic(**described)
    except (ValueError, NotImplementedError, KeyError) as exc:
        raise HTTPException(422, str(exc)) from None
