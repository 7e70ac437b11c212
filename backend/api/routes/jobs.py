"""Background jobs: submit a training job, follow it (poll or server-sent events), cancel."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import anyio
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlmodel import Session

from kensa.backend.api.deps import CurrentUser, EngineDep, requires
from kensa.backend.jobs import retrain, state
from kensa.backend.jobs.worker import MIN_DEFECT, MIN_GOOD
from kensa.backend.records import Job
from kensa.backend.services import datasets
from kensa.contract.schemas import JOB_FINAL, ErrorBody, JobCreate, JobPublic

router = APIRouter(prefix="/jobs", tags=["jobs"],
                   dependencies=requires("manager"))
NOT_FOUND = {404: {"model": ErrorBody, "description": "no such job or dataset"}}


def _retrain(engine, body: JobCreate, runner: str, pool, actor: str) -> Job:
    """A ``retrain_from_reviews`` job for the served detector ``body.name``: a good-only one
    learns confirmed good photos, a classifier or segmenter fine-tunes on reviewed labels."""
    if pool is None or body.name not in pool:
        raise HTTPException(404, f"no detector {body.name!r} is served")
    detector = pool.get(body.name).detector
    learns = detector.spec.learns_from.value
    if not (learns == "labelled" and hasattr(detector, "fit")) and not (
            learns == "good-only" and hasattr(detector, "update")):
        raise HTTPException(422, f"{body.name} ({detector.kind}) cannot learn from reviews; "
                                 "retrain_from_reviews supports good-only detectors, "
                                 "classifiers and segmenters")
    share = body.config.get("holdout_share")
    if share is not None and not (isinstance(share, int | float) and 0 <= share < 1):
        raise HTTPException(422, "config.holdout_share must be a number in [0, 1)")
    epochs = body.config.get("epochs")
    if epochs is not None and not (isinstance(epochs, int) and not isinstance(epochs, bool)
                                   and 1 <= epochs <= 50):
        raise HTTPException(422, "config.epochs must be an integer in [1, 50]")
    with Session(engine) as session, session.begin():
        job = Job(kind=retrain.KIND, status="queued", runner=runner, message="queued", params={
            "name": body.name, "detector": detector.kind, "created_by": actor,
            **({"holdout_share": float(share)} if share is not None else {}),
            **({"epochs": epochs} if epochs is not None else {})})
        session.add(job)
        session.flush()
        session.expunge(job)
    return job


def _create(engine, body: JobCreate, runner: str, actor: str) -> Job:
    from kensa.models.registry import get_spec

    if body.kind != "train":
        raise HTTPException(422, f"unknown job kind {body.kind!r}; known: train, "
                                 f"{retrain.KIND}")
    if not body.dataset or not body.detector:
        raise HTTPException(422, "a train job needs 'dataset' and 'detector'")
    try:
        spec = get_spec(body.detector)
    except KeyError as exc:
        raise HTTPException(422, str(exc.args[0])) from None
    try:
        spec.config(**body.config)
    except Exception as exc:
        raise HTTPException(422, f"bad config for {body.detector}: {exc}") from None
    with Session(engine) as session, session.begin():
        dataset = datasets.find(session, body.dataset)
        if dataset is None:
            raise HTTPException(404, f"no dataset {body.dataset!r}")
        counts = datasets.counts(session, dataset.id)
        good = counts.get(datasets.GOOD, 0)
        if spec.learns_from.value == "good-only" and good < MIN_GOOD:
            raise HTTPException(422, f"dataset {dataset.name!r} has {good} good images; "
                                     f"training needs at least {MIN_GOOD}")
        if spec.learns_from.value != "good-only":
            _check_labelled(session, dataset, counts, spec.task.value)
        job = Job(kind="train", status="queued", runner=runner, message="queued", params={
            "dataset_id": str(dataset.id), "dataset": dataset.name,
            "detector": body.detector, "name": body.name, "config": body.config,
            "quick": body.quick, "created_by": actor})
        session.add(job)
        session.flush()
        session.expunge(job)
    return job


def _check_labelled(session: Session, dataset, counts: dict[str, int], task: str) -> None:
    """A classifier needs labelled defects, a segmenter defects with masks (both: at least
    ``MIN_DEFECT``, so part of them can be held out)."""
    defects = sum(n for label, n in counts.items() if label != datasets.GOOD)
    if defects < MIN_DEFECT:
        raise HTTPException(422, f"dataset {dataset.name!r} has {defects} labelled defect "
                                 f"images; a {task} detector needs at least {MIN_DEFECT}")
    if task == "segment":
        masked = datasets.masked_count(session, dataset.id)
        if masked < MIN_DEFECT:
            raise HTTPException(422, f"dataset {dataset.name!r} has {masked} defect images "
                                     f"with a mask; a segment detector needs at least "
                                     f"{MIN_DEFECT}")


@router.post("", status_code=202, response_model=JobPublic, responses=NOT_FOUND)
async def submit_job(body: JobCreate, engine: EngineDep, request: Request,
                     principal: CurrentUser) -> JobPublic:
    """Queue a job; its versions record the signed-in caller as ``created_by`` (the body's
    ``created_by`` is not trusted: the audit trail must name who really asked)."""
    runner = request.app.state.jobs
    if body.kind == retrain.KIND:
        job = await anyio.to_thread.run_sync(_retrain, engine, body, runner.name,
                                             getattr(request.app.state, "pool", None),
                                             principal.actor)
    else:
        job = await anyio.to_thread.run_sync(_create, engine, body, runner.name,
                                             principal.actor)
    await anyio.to_thread.run_sync(runner.submit, job.id)
    return state.public(state.read(engine, job.id))


@router.get("", response_model=list[JobPublic])
async def list_jobs(engine: EngineDep) -> list[JobPublic]:
    def rows() -> list[JobPublic]:
        with Session(engine) as session:
            return [state.public(j) for j in session.execute(
                select(Job).order_by(Job.created_at.desc()).limit(200)).scalars()]

    return await anyio.to_thread.run_sync(rows)


async def _job(engine, job_id: uuid.UUID) -> Job:
    job = await anyio.to_thread.run_sync(state.read, engine, job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id}")
    return job


@router.get("/{job_id}", response_model=JobPublic, responses=NOT_FOUND)
async def get_job(job_id: uuid.UUID, engine: EngineDep) -> JobPublic:
    return state.public(await _job(engine, job_id))


@router.get("/{job_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}, **NOT_FOUND})
async def job_events(job_id: uuid.UUID, engine: EngineDep) -> StreamingResponse:
    """Server-sent events: one ``progress`` event per change, then the final status."""
    await _job(engine, job_id)

    async def events() -> AsyncIterator[str]:
        last = None
        while True:
            job = await anyio.to_thread.run_sync(state.read, engine, job_id)
            body = state.public(job).model_dump_json()
            if body != last:
                last = body
                yield f"event: progress\ndata: {body}\n\n"
            if job.status in JOB_FINAL:
                yield f"event: end\ndata: {json.dumps({'status': job.status})}\n\n"
                return
            await anyio.sleep(0.25)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


@router.post("/{job_id}/cancel", response_model=JobPublic,
             responses={**NOT_FOUND, 409: {"model": ErrorBody, "description": "already over"}})
async def cancel_job(job_id: uuid.UUID, engine: EngineDep, request: Request) -> JobPublic:
    job = await _job(engine, job_id)
    if job.status in JOB_FINAL:
        raise HTTPException(409, f"job {job_id} already {job.status}")
    await anyio.to_thread.run_sync(lambda: state.write(engine, job_id, cancel_requested=True))
    await anyio.to_thread.run_sync(request.app.state.jobs.cancel, job_id)
    return state.public(await _job(engine, job_id))
