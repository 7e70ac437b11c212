"""The detectors the service runs, and run-time threshold changes."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, HTTPException
from sqlalchemy import Engine
from sqlmodel import Session

from kensa.backend.api.deps import CurrentUser, EngineDep, PoolDep, SettingsDep, StoreDep, requires
from kensa.backend.jobs.worker import trainable
from kensa.backend.services import versions
from kensa.backend.services.accounts import audit
from kensa.backend.services.inference import DetectorPool
from kensa.contract.schemas import (
    DetectorKindPublic,
    DetectorPublic,
    DetectorVersionPublic,
    ErrorBody,
    ThresholdUpdate,
)

router = APIRouter(prefix="/detectors", tags=["detectors"])
NO_DETECTOR = {404: {"model": ErrorBody, "description": "no such detector or version"}}


@router.get("", response_model=list[DetectorPublic],
            dependencies=requires("operator", station=True))
async def list_detectors(pool: PoolDep) -> list[DetectorPublic]:
    """Each loaded detector's ``describe()`` (name, task, labels, version, weights, threshold,
    demo, metrics) plus its notes and artifact folder."""
    return [DetectorPublic(**loaded.describe()) for loaded in pool.all()]


@router.get("/kinds", response_model=list[DetectorKindPublic],
            dependencies=requires("manager"))
async def list_kinds() -> list[DetectorKindPublic]:
    """Every registered detector kind; ``trainable`` ones a train job fits from a dataset
    (good-only), the choice the tablet's teach screen offers."""
    from kensa.models.registry import list_detectors

    return [DetectorKindPublic(kind=spec.kind, task=spec.task.value,
                               learns_from=spec.learns_from.value,
                               description=spec.description,
                               trainable=trainable(spec))
            for spec in list_detectors()]


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


@router.patch("/{name}", response_model=DetectorPublic, dependencies=requires("manager"),
              responses={404: {"model": ErrorBody, "description": "no such detector"}})
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


def _version(engine, name: str, version: str):
    row = versions.get(engine, name, version)
    if row is None:
        raise HTTPException(404, f"no version {version!r} of detector {name!r}")
    return row


@router.get("/{name}/versions", response_model=list[DetectorVersionPublic],
            dependencies=requires("manager"), responses=NO_DETECTOR)
async def list_versions(name: str, engine: EngineDep) -> list[DetectorVersionPublic]:
    """Every trained version of ``name``, oldest first, with its state and metrics; a
    shadow version reports how often it agreed with the verdict shown."""
    return await anyio.to_thread.run_sync(versions.list_versions, engine, name)


@router.post("/{name}/versions/{version}/activate", response_model=DetectorVersionPublic,
             dependencies=requires("manager"), responses=NO_DETECTOR)
async def activate_version(name: str, version: str, engine: EngineDep, store: StoreDep,
                           settings: SettingsDep, pool: PoolDep) -> DetectorVersionPublic:
    """Serve this version for new inspections now (rollback = activate an older one)."""
    row = _version(engine, name, version)
    await anyio.to_thread.run_sync(versions.deploy, engine, store, pool,
                                   settings.data_dir / "versions", row, "active")
    return _one(engine, name, version)


@router.post("/{name}/versions/{version}/shadow", response_model=DetectorVersionPublic,
             dependencies=requires("manager"), responses=NO_DETECTOR)
async def shadow_version(name: str, version: str, engine: EngineDep, store: StoreDep,
                         settings: SettingsDep, pool: PoolDep) -> DetectorVersionPublic:
    """Run this version beside the active one: its runs are stored flagged ``shadow``,
    never in the verdict or findings."""
    row = _version(engine, name, version)
    if name not in pool:
        raise HTTPException(409, f"no active {name!r} to shadow; activate a version first")
    if row.state == "active":
        raise HTTPException(409, f"{version} is the active version of {name!r}")
    await anyio.to_thread.run_sync(versions.deploy, engine, store, pool,
                                   settings.data_dir / "versions", row, "shadow")
    return _one(engine, name, version)


def _one(engine, name: str, version: str) -> DetectorVersionPublic:
    return next(v for v in versions.list_versions(engine, name) if v.version == version)
