"""Datasets to teach detectors from: create, list, add images (upload or from history)."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, HTTPException, Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from kensa.backend.api.deps import EngineDep, LimiterDep, SettingsDep, StoreDep, requires
from kensa.backend.services import datasets as service
from kensa.contract.schemas import (
    DatasetCreate,
    DatasetFromHistory,
    DatasetImagesAdded,
    DatasetPublic,
    ErrorBody,
)

router = APIRouter(prefix="/datasets", tags=["datasets"],
                   dependencies=requires("manager"))
NOT_FOUND = {404: {"model": ErrorBody, "description": "no such dataset or inspection"}}


def _raise(exc: service.DatasetError) -> HTTPException:
    return HTTPException(exc.status_code, exc.detail)


@router.post("", status_code=201, response_model=DatasetPublic,
             responses={409: {"model": ErrorBody, "description": "the name exists"}})
async def create_dataset(body: DatasetCreate, engine: EngineDep) -> DatasetPublic:
    try:
        return await anyio.to_thread.run_sync(service.create, engine, body.name.strip(),
                                              body.station)
    except service.DatasetError as exc:
        raise _raise(exc) from None


@router.get("", response_model=list[DatasetPublic])
async def list_datasets(engine: EngineDep) -> list[DatasetPublic]:
    return await anyio.to_thread.run_sync(service.list_all, engine)


@router.get("/{dataset}", response_model=DatasetPublic, responses=NOT_FOUND)
async def get_dataset(dataset: str, engine: EngineDep) -> DatasetPublic:
    found = await anyio.to_thread.run_sync(service.get, engine, dataset)
    if found is None:
        raise HTTPException(404, f"no dataset {dataset!r}")
    return found


@router.post("/{dataset}/images", status_code=201, response_model=DatasetImagesAdded,
             responses={**NOT_FOUND, 413: {"model": ErrorBody, "description": "too large"},
                        415: {"model": ErrorBody, "description": "not a supported image"}},
             openapi_extra={"requestBody": {"content": {
                 "multipart/form-data": {"schema": {"type": "object", "properties": {
                     "image": {"type": "array", "items": {"type": "string",
                                                          "format": "binary"}},
                     "label": {"type": "string", "default": "good"},
                     "mask": {"type": "array", "items": {"type": "string", "format": "binary"},
                              "description": "optional: one PNG per image, same size, "
                                             "non-zero = the label's defect"}}}},
                 "application/json": {"schema": DatasetFromHistory.model_json_schema()}}}})
async def add_images(dataset: str, request: Request, engine: EngineDep, store: StoreDep,
                     settings: SettingsDep, limiter: LimiterDep) -> DatasetImagesAdded:
    """Multipart ``image`` (repeatable) + ``label`` (default ``good``) + optional ``mask``
    (one PNG per image, same size, non-zero pixels = the defect), or JSON
    ``{inspection_ids, label}`` to add stored photos from the inspection history."""
    content_type = request.headers.get("content-type", "").lower()
    try:
        if content_type.startswith("application/json"):
            try:
                body = DatasetFromHistory.model_validate_json(await request.body())
            except ValidationError as exc:
                raise HTTPException(422, exc.errors(  # no input echoed: it may be bytes
                    include_url=False, include_context=False, include_input=False)) from None
            added, counts = await anyio.to_thread.run_sync(
                service.add_from_history, engine, store, dataset, body.inspection_ids,
                body.label, limiter=limiter)
        elif content_type.startswith("multipart/form-data"):
            form = await request.form()
            files = [f for f in form.getlist("image") if isinstance(f, UploadFile)]
            label = form.get("label") or service.GOOD
            if not isinstance(label, str):
                raise HTTPException(422, "label must be a text field")
            mask_files = [f for f in form.getlist("mask") if isinstance(f, UploadFile)]
            if len(mask_files) != len(form.getlist("mask")):
                raise HTTPException(422, "mask must be a file part (PNG)")
            images, masks = [], []
            for upload in files + mask_files:
                data = await upload.read()
                if len(data) > settings.max_upload_bytes:
                    raise HTTPException(413, f"{upload.filename}: larger than "
                                             f"{settings.max_upload_mb:g} MB")
                (images if len(images) < len(files) else masks).append(data)
            added, counts = await anyio.to_thread.run_sync(
                service.add_images, engine, store, dataset, images, label,
                settings.max_pixels, masks, limiter=limiter)
        else:
            raise HTTPException(415, "send multipart/form-data with 'image' files, or JSON "
                                     "{inspection_ids, label}")
    except service.DatasetError as exc:
        raise _raise(exc) from None
    return DatasetImagesAdded(added=added, counts=counts)
