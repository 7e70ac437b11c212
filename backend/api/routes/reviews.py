"""The review loop: the queue, a person's verdict on an inspection (JSON, or multipart with a
mask PNG), its review history and masks. Reviewing needs the role ``manager``."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from kensa.backend.api.deps import CurrentUser, EngineDep, SettingsDep, StoreDep, requires
from kensa.backend.api.routes.inspections import MAX_DB_INT, MAX_OFFSET, blob_response
from kensa.backend.services import inspections as inspection_service
from kensa.backend.services import pseudo_labels
from kensa.backend.services import reviews as service
from kensa.contract.schemas import (
    ErrorBody,
    InspectionPublic,
    PseudoLabelConfirm,
    PseudoLabelConfirmed,
    PseudoLabelList,
    ReviewCreate,
    ReviewList,
    ReviewPublic,
)

REVIEWER = requires("manager")
NOT_FOUND = {404: {"model": ErrorBody, "description": "no such inspection (or mask)"}}
router = APIRouter(prefix="/reviews", tags=["reviews"])
inspection_router = APIRouter(prefix="/inspections", tags=["reviews"], responses=NOT_FOUND)

REVIEW_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": ReviewCreate.model_json_schema()},
    "multipart/form-data": {"schema": {"type": "object", "required": ["decision"], "properties": {
        "decision": {"type": "string", "enum": ["ok", "defect"]},
        "labels": {"type": "array", "items": {"type": "string"},
                   "description": "repeatable, or comma-separated"},
        "comment": {"type": "string", "maxLength": 2000},
        "mask": {"type": "string", "format": "binary",
                 "description": "PNG at the photo's size; non-zero pixels = defect"}}}}}}}


@router.get("", response_model=ReviewList, dependencies=REVIEWER)
async def list_reviews(
    engine: EngineDep,
    status: Annotated[Literal["open", "done"], Query()] = "open",
    station: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> ReviewList:
    """The review queue, oldest first (``done``: by when it was reviewed); ``open`` counts the
    open entries for a badge."""
    return await anyio.to_thread.run_sync(service.list_queue, engine, status, station, limit,
                                          offset)


@router.get("/pseudo-labels", response_model=PseudoLabelList, dependencies=REVIEWER)
async def list_pseudo_labels(
    engine: EngineDep,
    station: Annotated[str | None, Query(max_length=100)] = None,
    min_confidence: Annotated[float, Query(ge=0.0, le=1.0)] = 0.9,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> PseudoLabelList:
    """Unreviewed inspections whose classifier and segmenter agree (same defect labels, or
    both OK) with every finding scoring at least ``min_confidence``: proposed labels for a
    bulk confirm. Newest first, among the newest 2,000 such inspections."""
    return await anyio.to_thread.run_sync(pseudo_labels.listing, engine, station,
                                          min_confidence, limit, offset)


@router.post("/pseudo-labels/confirm", response_model=PseudoLabelConfirmed,
             dependencies=REVIEWER,
             responses={409: {"model": ErrorBody,
                              "description": "an id that is not a current proposal"},
                        422: {"model": ErrorBody, "description": "bad or repeated ids"}})
async def confirm_pseudo_labels(body: PseudoLabelConfirm, engine: EngineDep, store: StoreDep,
                                settings: SettingsDep, principal: CurrentUser
                                ) -> PseudoLabelConfirmed:
    """Record the proposals as human reviews by the confirming manager (all or nothing); the
    segmenter's masks become the review masks and the photos join the station's datasets as
    any review's do."""
    flow = (service.DataFlow(settings.review_good_dataset, settings.review_labelled_dataset)
            if settings.review_to_datasets else service.DataFlow(None, None))
    try:
        return await anyio.to_thread.run_sync(
            pseudo_labels.confirm, engine, store, body.inspection_ids, body.min_confidence,
            principal.actor, flow)
    except service.ReviewError as exc:
        raise HTTPException(exc.status_code, exc.detail) from None


def _invalid(exc: ValidationError, where: str) -> RequestValidationError:
    return RequestValidationError([{**e, "loc": (where, *e["loc"])} for e in exc.errors(
        include_url=False, include_context=False)])


async def _read_body(request: Request, max_bytes: int) -> service.ReviewInput:
    """The review from a JSON body or a multipart form (checked; nothing written yet)."""
    content_type = request.headers.get("content-type", "").lower()
    mask = None
    if content_type.startswith("application/json"):
        try:
            body = ReviewCreate.model_validate_json(await request.body())
        except ValidationError as exc:
            raise _invalid(exc, "body") from None
    elif content_type.startswith("multipart/form-data"):
        form = await request.form()
        labels = [part.strip() for value in form.getlist("labels") if isinstance(value, str)
                  for part in value.split(",")]
        fields = {"decision": form.get("decision"), "labels": [v for v in labels if v]}
        if form.get("comment"):
            fields["comment"] = form.get("comment")
        try:
            body = ReviewCreate.model_validate(fields)
        except ValidationError as exc:
            raise _invalid(exc, "body") from None
        upload = form.get("mask")
        if isinstance(upload, UploadFile):
            mask = await upload.read(max_bytes + 1)
            if len(mask) > max_bytes:
                raise HTTPException(413, "the mask file is too large")
        elif upload not in (None, ""):
            raise HTTPException(422, "'mask' must be a file (a PNG at the photo's size)")
    else:
        raise HTTPException(415, "send the review as application/json, or as "
                                 "multipart/form-data with an optional 'mask' PNG (got "
                                 f"{content_type or 'no content type'!r})")
    return service.ReviewInput(decision=body.decision, labels=body.labels,
                               comment=body.comment, mask=mask)


@inspection_router.post("/{inspection_id}/review", response_model=InspectionPublic,
                        dependencies=REVIEWER, openapi_extra=REVIEW_BODY,
                        responses={413: {"description": "mask too large"},
                                   415: {"description": "neither JSON nor multipart, or a "
                                                        "mask that is not a PNG"},
                                   422: {"model": ErrorBody,
                                         "description": "bad decision, labels or mask size"}})
async def review_inspection(inspection_id: uuid.UUID, request: Request, engine: EngineDep,
                            store: StoreDep, settings: SettingsDep, principal: CurrentUser
                            ) -> InspectionPublic:
    """A person's verdict beside the machine's (whose verdict and scores stay as they were);
    a re-review replaces it and keeps the earlier one (``/reviews``, ``/history``). Confirmed
    photos join the station's good or labelled dataset (``review_to_datasets``)."""
    given = await _read_body(request, settings.max_upload_bytes)
    flow = (service.DataFlow(settings.review_good_dataset, settings.review_labelled_dataset)
            if settings.review_to_datasets else service.DataFlow(None, None))
    try:
        await anyio.to_thread.run_sync(service.submit, engine, store, inspection_id, given,
                                       principal.actor, flow)
    except service.ReviewError as exc:
        raise HTTPException(exc.status_code, exc.detail) from None
    record = await anyio.to_thread.run_sync(inspection_service.get_public, engine,
                                            inspection_id)
    if record is None:
        raise HTTPException(404, f"no inspection {inspection_id}")
    return record


@inspection_router.get("/{inspection_id}/reviews", response_model=list[ReviewPublic],
                       dependencies=REVIEWER)
async def review_history(inspection_id: uuid.UUID, engine: EngineDep) -> list[ReviewPublic]:
    """Every human verdict on the inspection, oldest first; ``current`` marks the one shown."""
    rows = await anyio.to_thread.run_sync(service.history, engine, inspection_id)
    if rows is None:
        raise HTTPException(404, f"no inspection {inspection_id}")
    return rows


async def _mask(engine, store, inspection_id: uuid.UUID, review_id: int | None) -> Response:
    key = await anyio.to_thread.run_sync(service.mask_blob, engine, inspection_id, review_id)
    if key is None:
        raise HTTPException(404, f"no review mask for {inspection_id}")
    return await blob_response(store, key, "image/png")


@inspection_router.get("/{inspection_id}/review/mask", response_class=FileResponse,
                       dependencies=REVIEWER)
async def current_review_mask(inspection_id: uuid.UUID, engine: EngineDep, store: StoreDep
                              ) -> Response:
    """The current review's mask, a 1-bit PNG at the photo's size."""
    return await _mask(engine, store, inspection_id, None)


@inspection_router.get("/{inspection_id}/reviews/{review_id}/mask",
                       response_class=FileResponse, dependencies=REVIEWER)
async def review_mask(inspection_id: uuid.UUID,
                      review_id: Annotated[int, PathParam(ge=1, le=MAX_DB_INT)],
                      engine: EngineDep, store: StoreDep) -> Response:
    """The mask of an earlier review of the inspection."""
    return await _mask(engine, store, inspection_id, review_id)
