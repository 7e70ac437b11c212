"""The detectors the service runs, and run-time threshold changes."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, HTTPException
from sqlalchemy import Engine
from sqlmodel import Session

from kensa.backend.api.deps import CurrentUser, EngineDep, PoolDep, requires
from kensa.backend.services.accounts import audit
from kensa.backend.services.inference import DetectorPool
from kensa.contract.schemas import DetectorPublic, ThresholdUpdate

router = APIRouter(prefix="/detectors", tags=["detectors"])


@router.get("", response_model=list[DetectorPublic],
            dependencies=requires("operator", station=True))
async def list_detectors(pool: PoolDep) -> list[DetectorPublic]:
    """Each loaded detector's ``describe()`` (name, task, labels, version, weights, threshold,
    demo, metrics) plus its notes and artifact folder."""
    return [DetectorPublic(**loaded.describe()) for loaded in pool.all()]


def _audited_threshold(pool: DetectorPool, engine: Engine, name: str, body: ThresholdUpdate,
                       actor: str) -> dict:
    """Set the threshold and write the audit row in one transaction: a refused change writes
    none (the artifact's config.json is written before the row commits)."""
    before = pool.get(name).describe().get("threshold")
    with Session(engine) as session, session.begin():
        described = pool.set_threshold(name, body.threshold, body.label)
        audit(session, actor, "detector.threshold", "detector", name,
              {"threshold": before}, {"threshold": described.get("threshold"),
                                      "label": body.label})
    return described


@router.patch("/{name}", response_model=DetectorPublic, dependencies=requires("manager"))
async def update_detector(name: str, body: ThresholdUpdate, pool: PoolDep, engine: EngineDep,
                          principal: CurrentUser) -> DetectorPublic:
    """Change a decision threshold now; it is saved to the artifact's config.json (audited)."""
    if name not in pool:
        raise HTTPException(404, f"no detector {name!r}; available: {', '.join(pool.names)}")
    try:
        described = await anyio.to_thread.run_sync(_audited_threshold, pool, engine, name,
                                                   body, principal.actor)
        return DetectorPublic(**described)
    except (ValueError, NotImplementedError, KeyError) as exc:
        raise HTTPException(422, str(exc)) from None
