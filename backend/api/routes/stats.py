"""Counts over time for the charts: totals, defects and labels per day, week or month."""

from __future__ import annotations

from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, HTTPException, Query

from kensa.backend.api.deps import EngineDep, requires
from kensa.backend.api.routes.inspections import FiltersDep
from kensa.backend.records import StatsPublic
from kensa.backend.services import inspections as service
from kensa.backend.services import reviews
from kensa.contract.schemas import AgreementPublic

router = APIRouter(tags=["stats"])


@router.get("/stats", response_model=StatsPublic, dependencies=requires("manager"))
async def get_stats(
    engine: EngineDep, filters: FiltersDep,
    bucket: Annotated[Literal["day", "week", "month"], Query()] = "day",
) -> StatsPublic:
    """Inspections per UTC bucket (weeks start on Monday) over the filtered set; buckets
    without inspections between the first and last are included with zero counts. Exact
    counts, read from per-day rollups (the partial days at the ends of a datetime range and
    filter combinations the rollups do not hold, as for ``total`` of the list, are counted
    from the records)."""
    try:
        return await anyio.to_thread.run_sync(service.stats, engine, filters, bucket)
    except service.TooManyBuckets as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("/stats/agreement", response_model=AgreementPublic,
            dependencies=requires("manager"))
async def get_agreement(
    engine: EngineDep, filters: FiltersDep,
    bucket: Annotated[Literal["day", "week", "month"], Query()] = "day",
) -> AgreementPublic:
    """Machine vs human verdicts over reviewed inspections: the confusion matrix, false-alarm
    and miss rates, overall, per detector version (``detector`` narrows) and per bucket."""
    try:
        return await anyio.to_thread.run_sync(reviews.agreement, engine, filters, bucket)
    except service.TooManyBuckets as exc:
        raise HTTPException(422, str(exc)) from None
