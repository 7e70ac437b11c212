"""The detectors the service runs, and run-time threshold changes."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, HTTPException

from kensa.backend.api.deps import PoolDep
from kensa.backend.records import ThresholdUpdate

router = APIRouter(prefix="/detectors", tags=["detectors"])


@router.get("")
async def list_detectors(pool: PoolDep) -> list[dict[str, Any]]:
    """Each loaded detector's ``describe()`` (name, task, labels, version, weights, threshold,
    demo, metrics) plus its notes and artifact folder."""
    return [loaded.describe() for loaded in pool.all()]


@router.patch("/{name}")
async def update_detector(name: str, body: ThresholdUpdate, pool: PoolDep) -> dict[str, Any]:
    """Change a decision threshold now; it is saved to the artifact's config.json."""
    if name not in pool:
        raise HTTPException(404, f"no detector {name!r}; available: {', '.join(pool.names)}")
    try:
        return await anyio.to_thread.run_sync(pool.set_threshold, name, body.threshold,
                                              body.label)
    except (ValueError, NotImplementedError, KeyError) as exc:
        raise HTTPException(422, str(exc)) from None
