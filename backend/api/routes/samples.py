"""Sample strips for the demo booth: the list, each PNG and its JPEG thumbnail."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from kensa.backend.api.deps import requires
from kensa.backend.services.samples import Sample, demo_samples
from kensa.contract.constants import API_PREFIX
from kensa.contract.schemas import ErrorBody, SamplePublic

router = APIRouter(prefix="/samples", tags=["samples"],
                   dependencies=requires("operator", station=True))
CACHE = {"Cache-Control": "public, max-age=86400"}
NO_SAMPLE = {404: {"model": ErrorBody, "description": "no sample of that name"}}


async def _samples() -> dict[str, Sample]:
    return await anyio.to_thread.run_sync(demo_samples)  # generated on the first call only


async def _sample(name: str) -> Sample:
    samples = await _samples()
    if name not in samples:
        raise HTTPException(404, f"no sample {name!r}; available: {', '.join(samples)}")
    return samples[name]


@router.get("", response_model=list[SamplePublic])
async def list_samples() -> list[SamplePublic]:
    """A good synthetic strip and one per defect family (seed 7), with their image paths."""
    return [
        SamplePublic(name=s.name, title=s.title, image_url=f"{API_PREFIX}/samples/{s.name}",
                     thumbnail_url=f"{API_PREFIX}/samples/{s.name}/thumbnail")
        for s in (await _samples()).values()
    ]


@router.get("/{name}", response_class=Response, responses=NO_SAMPLE)
async def sample_image(name: str) -> Response:
    """The sample strip as PNG."""
    return Response((await _sample(name)).png, media_type="image/png", headers=CACHE)


@router.get("/{name}/thumbnail", response_class=Response, responses=NO_SAMPLE)
async def sample_thumbnail(name: str) -> Response:
    """A third-size JPEG preview of the sample strip."""
    return Response((await _sample(name)).thumbnail, media_type="image/jpeg", headers=CACHE)
