"""Inspections: upload a photo, list/filter, fetch, image and overlays, soft delete/restore."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

import anyio
from fastapi import (
    APIRouter,
    Depends,
    File,
    Form,
    Header,
    HTTPException,
    Query,
    Request,
    UploadFile,
)
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute

from kensa.backend.api.deps import (
    CurrentUser,
    EngineDep,
    LimiterDep,
    PoolDep,
    SettingsDep,
    StoreDep,
    requires,
)
from kensa.backend.core.security import Principal
from kensa.backend.records import InspectionList, InspectionPublic
from kensa.backend.services import accounts, idempotency, versions
from kensa.backend.services import inspections as service
from kensa.backend.services.images import ImageRejected, check_declared_type, decode_image
from kensa.backend.services.review_queue import sampling_for
from kensa.backend.services.storage import BlobMissing, BlobStore
from kensa.contract.constants import FINDING_LAYERS
from kensa.contract.schemas import AuditEventPublic, ErrorBody
from kensa.models.evidence import overlay_layers
from kensa.models.types import Verdict

CACHE = {"Cache-Control": "private, max-age=86400"}
NOT_FOUND = {404: {"model": ErrorBody, "description": "no such inspection (or finding)"}}
MAX_OFFSET = 1_000_000_000
MAX_DB_INT = 2**31 - 1  # the id columns are 32-bit on PostgreSQL
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
"""No control characters (PostgreSQL refuses NUL in text)."""
PRINTABLE_TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
"""As PRINTABLE, but a note may hold tabs and line breaks."""


class MultipartOnlyRoute(APIRoute):
    """Answers 415 (not 422) when the request body is not multipart/form-data."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            content_type = request.headers.get("content-type", "").lower()
            if not content_type.startswith("multipart/form-data"):
                return JSONResponse(
                    {"detail": "send the photo as multipart/form-data with an 'image' file "
                               f"field (got content type {content_type or 'none'!r})"},
                    status_code=415)
            return await handler(request)

        return route


upload_router = APIRouter(prefix="/inspections", tags=["inspections"],
                          route_class=MultipartOnlyRoute)
router = APIRouter(prefix="/inspections", tags=["inspections"])


def _id_route(method: str, path: str, **kwargs: Any):
    """A route under ``/inspections/{id}``: documents its 404."""
    return router.api_route(path, methods=[method],
                            responses={**NOT_FOUND, **kwargs.pop("responses", {})}, **kwargs)


# -- query parsing --------------------------------------------------------------------------------
def _bad_query(name: str, value: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": ("query", name),
                                    "msg": message, "input": value}])


def parse_when(value: str | None, name: str, *, end: bool = False) -> datetime | None:
    """An ISO date or datetime as an aware UTC bound. Dates start at 00:00 UTC; as ``end`` the
    bound is exclusive, so a date ``end`` covers that whole day and a datetime ``end`` is
    inclusive (one microsecond is added)."""
    if value is None or value == "":
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime.combine(day, time.min, tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        if "T" in text and text.count(" ") == 1:  # an unescaped '+' in the query string
            text = text.replace(" ", "+")
        moment = service.utc(datetime.fromisoformat(text))
        return moment + timedelta(microseconds=1) if end else moment
    except ValueError:
        raise _bad_query(name, value, "not an ISO 8601 date or datetime") from None
    except OverflowError:  # 9999-12-31 as an end, year 1 east of UTC ...
        raise _bad_query(name, value, "date out of range (years 1 to 9999 in UTC)") from None


def get_filters(
    start: Annotated[str | None, Query(description="ISO date or datetime (UTC if naive)")] = None,
    end: Annotated[str | None, Query(description="ISO date (whole day) or datetime")] = None,
    label: Annotated[list[str] | None, Query(description="repeatable; any of")] = None,
    verdict: Annotated[Verdict | None, Query()] = None,
    has_defect: Annotated[bool | None, Query(description="verdict == defect")] = None,
    station: Annotated[str | None, Query()] = None,
    operator: Annotated[str | None, Query(description="recorded by this operator")] = None,
    detector: Annotated[str | None, Query(description="inspected by this detector")] = None,
    include_deleted: Annotated[bool, Query()] = False,
    reviewed: Annotated[bool | None, Query(description="has a human verdict")] = None,
    human_verdict: Annotated[Literal["ok", "defect"] | None, Query(
        description="the current human verdict")] = None,
    disagreement: Annotated[bool | None, Query(
        description="human verdict differs from the machine's ok/defect")] = None,
) -> service.Filters:
    filters = service.Filters(
        start=parse_when(start, "start"), end=parse_when(end, "end", end=True),
        labels=[v for v in (label or []) if v], verdict=verdict.value if verdict else None,
        has_defect=has_defect, station=station, operator=operator, detector=detector,
        include_deleted=include_deleted, reviewed=reviewed, human_verdict=human_verdict,
        disagreement=disagreement,
    )
    if filters.start and filters.end and filters.end <= filters.start:
        raise _bad_query("end", end or "", "end is before start")
    return filters


async def run_shadows(pool, selected, rgb, inspection_id: uuid.UUID, engine) -> None:
    """Run the shadow versions of the detectors used on the already decoded photo and store
    their runs (flagged)."""
    shadows = [pool.shadows[d.name] for d in selected if d.name in pool.shadows]
    if not shadows:
        return
    detections = await pool.run(rgb, shadows)
    await anyio.to_thread.run_sync(versions.record_shadow_runs, engine, inspection_id,
                                   detections)


FiltersDep = Annotated[service.Filters, Depends(get_filters)]


# -- endpoints ------------------------------------------------------------------------------------
@upload_router.post("", status_code=201, response_model=InspectionPublic,
                    dependencies=requires("operator", station=True),
                    responses={409: {"model": ErrorBody,
                                     "description": "same Idempotency-Key still in progress"},
                               413: {"model": ErrorBody,
                                     "description": "file or image too large"},
                               415: {"model": ErrorBody, "description": "not a supported image"},
                               429: {"model": ErrorBody, "description": "over the upload rate "
                                     "(inspections_per_minute); see Retry-After"},
                               422: {"model": ErrorBody,
                                     "description": "empty, truncated or invalid input"},
                               503: {"description": "detectors still loading"}})
async def create_inspection(
    request: Request,
    image: Annotated[UploadFile, File(description="the photo (JPEG, PNG, BMP, TIFF, WebP)")],
    settings: SettingsDep, engine: EngineDep, store: StoreDep, pool: PoolDep,
    station: Annotated[str | None, Form(max_length=100, pattern=PRINTABLE)] = None,
    operator: Annotated[str | None, Form(max_length=100, pattern=PRINTABLE)] = None,
    note: Annotated[str | None, Form(max_length=2000, pattern=PRINTABLE_TEXT)] = None,
    detectors: Annotated[str | None, Form(description="comma-separated names; default all")]
    = None,
    *, principal: CurrentUser, response: Response,
    idempotency_key: Annotated[str | None, Header(
        max_length=200,
        description="retry-safe upload: the same key and body answer the first record (201 "
                    "again, with 'Idempotent-Replayed: true'); another body: 422")] = None,
) -> InspectionPublic:
    """Inspect one photo with the chosen detectors and store the record. A station key's
    uploads always carry its own station."""
    client = request.client.host if request.client else "-"
    wait = request.app.state.upload_limiter.take(f"{principal.actor}@{client}")
    if wait:
        raise HTTPException(429, f"more than {settings.inspections_per_minute} uploads a minute "
                                 f"from {principal.name}; try again in {wait} s",
                            headers={"Retry-After": str(wait)})
    if principal.kind == "station":
        station = principal.station
    if len((await request.form()).getlist("image")) != 1:
        raise HTTPException(422, "send exactly one 'image' part (one photo per inspection)")
    names = [n.strip() for n in (detectors or "").split(",") if n.strip()]
    try:
        selected = pool.select(names)
    except KeyError as exc:
        raise HTTPException(422, f"unknown detector(s): {exc.args[0]}; "
                                 f"available: {', '.join(pool.names)}") from None
    if image.size is not None and image.size > settings.max_upload_bytes:
        raise HTTPException(413, f"the file is larger than {settings.max_upload_mb:g} MB")
    try:
        check_declared_type(image.content_type)
        data = await image.read()
        if len(data) > settings.max_upload_bytes:
            raise ImageRejected(413, f"the file is larger than {settings.max_upload_mb:g} MB")
        reservation = idempotency.Reservation()
        if idempotency_key is not None:
            hashed = idempotency.body_hash([data, station, operator, note, ",".join(names)])
            reservation = await anyio.to_thread.run_sync(
                idempotency.reserve, engine, principal.actor, idempotency_key, hashed)
            if reservation.replay is not None:
                response.headers["Idempotent-Replayed"] = "true"
                replayed = await anyio.to_thread.run_sync(service.get_public, engine,
                                                          reservation.replay)
                if replayed is None:
                    raise _not_found(reservation.replay)
                return replayed
        try:
            decoded = await anyio.to_thread.run_sync(decode_image, data, settings.max_pixels,
                                                     limiter=pool.limiter)
            record = await service.create_inspection(
                image_bytes=data, pool=pool, detectors=selected, engine=engine, store=store,
                meta=service.UploadMeta(station=station or None, operator=operator or None,
                                        note=note or None,
                                        sampling=sampling_for(settings, station or None)),
                max_pixels=settings.max_pixels, decoded=decoded,
            )
        except BaseException:
            if reservation.record_id is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(idempotency.release, engine,
                                                   reservation.record_id)
            raise
        if reservation.record_id is not None:
            await anyio.to_thread.run_sync(idempotency.complete, engine, reservation.record_id,
                                           record.id)
        await run_shadows(pool, selected, decoded.rgb, record.id, engine)
        return record
    except ImageRejected as exc:
        raise HTTPException(exc.status_code, exc.detail) from None
    except idempotency.KeyConflict as exc:
        raise HTTPException(exc.status, exc.detail) from None


OPERATOR_PAGE = 50  # the largest page an operator may ask for
READ = requires("operator", station=True)


@router.get("", response_model=InspectionList, dependencies=requires("operator"))
async def list_inspections(
    engine: EngineDep, filters: FiltersDep, principal: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    cursor: Annotated[str | None, Query(
        max_length=200, description="next_cursor of the previous page: the page after it "
                                    "(keyset paging; stays fast however deep; not with "
                                    "offset)")] = None,
) -> InspectionList:
    """Inspections newest first; ``total`` and ``defect_ratio`` cover the whole filtered set
    (exact counts, also on cursor pages; from per-day rollups for whole days and at most one
    of label / detector / operator, so they cost the same at 10k and at 1M records; see
    ``total``). Page with ``offset`` or, deep into the history,
    with ``cursor``: each page's ``next_cursor`` (null on the last page).
    Operators see recent history: no filter but ``station``, pages of at most 50."""
    if not principal.at_least("manager"):
        used = [name for name, value in (
            ("start", filters.start), ("end", filters.end), ("label", filters.labels),
            ("verdict", filters.verdict), ("has_defect", filters.has_defect),
            ("operator", filters.operator), ("detector", filters.detector),
            ("include_deleted", filters.include_deleted),
            ("reviewed", filters.reviewed is not None), ("human_verdict", filters.human_verdict),
            ("disagreement", filters.disagreement is not None))
            if value]
        if used:
            raise HTTPException(403, f"filtering by {', '.join(used)} needs the role "
                                     "'manager'; operators may filter by station only")
        if limit > OPERATOR_PAGE or offset > 0 or cursor:
            raise HTTPException(403, f"operators see the latest {OPERATOR_PAGE} records only "
                                     "(limit <= 50, no offset or cursor); older history "
                                     "needs 'manager'")
    if cursor is not None and offset:
        raise _bad_query("offset", str(offset), "page with either offset or cursor")
    if cursor is not None:
        try:
            service.decode_cursor(cursor)
        except service.BadCursor as exc:
            raise _bad_query("cursor", cursor, str(exc)) from None
    page = await anyio.to_thread.run_sync(
        service.list_inspections, engine, filters, limit, offset, cursor)
    return InspectionList(items=page.items, total=page.total, defect_ratio=page.defect_ratio,
                          next_cursor=page.next_cursor)


def _not_found(inspection_id: uuid.UUID) -> HTTPException:
    return HTTPException(404, f"no inspection {inspection_id}")


def _visible(inspection: Any, principal: Principal) -> bool:
    """A station key reads only its own station's records."""
    return inspection is not None and (principal.kind != "station"
                                       or inspection.station == principal.station)


async def _readable(engine: Any, inspection_id: uuid.UUID, principal: Principal) -> Any:
    inspection = await anyio.to_thread.run_sync(service.get_inspection, engine, inspection_id)
    if not _visible(inspection, principal):
        raise _not_found(inspection_id)
    return inspection


async def blob_response(store: BlobStore, key: str, media_type: str) -> Response:
    """A stored blob: the file itself from a local store, streamed bytes from a remote one."""
    path = store.local_path(key)
    if path is not None:
        if not await anyio.to_thread.run_sync(path.is_file):
            raise BlobMissing(key)
        return FileResponse(path, media_type=media_type, headers=CACHE)
    stream = await anyio.to_thread.run_sync(store.opener, key)
    return StreamingResponse(stream, media_type=media_type, headers=CACHE)


@_id_route("GET", "/{inspection_id}", response_model=InspectionPublic, dependencies=READ)
async def get_inspection(inspection_id: uuid.UUID, engine: EngineDep, principal: CurrentUser
                         ) -> InspectionPublic:
    record = await anyio.to_thread.run_sync(service.get_public, engine, inspection_id)
    if record is None or (principal.kind == "station" and record.station != principal.station):
        raise _not_found(inspection_id)
    return record


@_id_route("GET", "/{inspection_id}/history", response_model=list[AuditEventPublic],
           dependencies=requires("manager"))
async def get_history(inspection_id: uuid.UUID, engine: EngineDep
                      ) -> list[AuditEventPublic]:
    """Every audited change of this record, oldest first."""
    rows, _ = await anyio.to_thread.run_sync(lambda: accounts.list_audit(
        engine, target=str(inspection_id), limit=500))
    return [AuditEventPublic.model_validate(r) for r in reversed(rows)
            if r.target_type == "inspection"]


@_id_route("GET", "/{inspection_id}/image", response_class=FileResponse, dependencies=READ)
async def get_image(inspection_id: uuid.UUID, engine: EngineDep, store: StoreDep,
                    principal: CurrentUser) -> Response:
    """The original photo, byte for byte."""
    inspection = await _readable(engine, inspection_id, principal)
    return await blob_response(store, inspection.image_key, inspection.image_content_type)


@_id_route("GET", "/{inspection_id}/overlay", response_class=Response,
           responses={200: {"content": {"image/png": {}}}}, dependencies=READ)
async def get_overlay(
    inspection_id: uuid.UUID, engine: EngineDep, store: StoreDep, principal: CurrentUser,
    limiter: LimiterDep,
    layers: Annotated[str | None, Query(
        description=f"comma-separated, any of {', '.join(FINDING_LAYERS)} and every "
                    "registered evidence kind (heatmap, gradcam, ...); default: all; "
                    "empty: the photo alone")] = None,
) -> Response:
    """The photo with evidence drawn over it (PNG); ``layers`` re-renders from stored maps."""
    inspection = await _readable(engine, inspection_id, principal)
    if layers is None:  # the default overlay: drawn once, on first GET, then a stored blob
        key = inspection.overlay_key or await anyio.to_thread.run_sync(
            service.cached_overlay, engine, store, inspection_id)
        if key is None:
            raise _not_found(inspection_id)
        return await blob_response(store, key, "image/png")
    known = overlay_layers()
    requested = ",".join(known) if layers is None else layers  # "" = the bare photo
    chosen = [v.strip() for v in requested.split(",") if v.strip()]
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise _bad_query("layers", layers or "", f"unknown layers {unknown}; known: "
                                                 f"{', '.join(known)}")
    png = await anyio.to_thread.run_sync(service.render_stored_overlay, engine, store,
                                         inspection_id, chosen, limiter=limiter)
    return Response(png, media_type="image/png", headers=CACHE)


@_id_route("GET", "/{inspection_id}/findings/{finding_id}/mask", response_class=FileResponse,
           dependencies=READ)
async def get_finding_mask(inspection_id: uuid.UUID,
                           finding_id: Annotated[int, PathParam(ge=1, le=MAX_DB_INT)],
                           engine: EngineDep, store: StoreDep, principal: CurrentUser
                           ) -> Response:
    """A finding's mask as a 1-bit PNG at the photo's size."""
    await _readable(engine, inspection_id, principal)
    key = await anyio.to_thread.run_sync(service.finding_mask_blob, engine, inspection_id,
                                         finding_id)
    if key is None:
        raise HTTPException(404, f"no mask for finding {finding_id} of {inspection_id}")
    return await blob_response(store, key, "image/png")


@_id_route("GET", "/{inspection_id}/evidence/{n}", response_class=FileResponse,
           responses={200: {"content": {"image/png": {}}}}, dependencies=READ)
async def get_evidence(inspection_id: uuid.UUID,
                       n: Annotated[int, PathParam(ge=0, le=MAX_DB_INT)],
                       engine: EngineDep, store: StoreDep, principal: CurrentUser) -> Response:
    """The ``n``-th layer of the record's ``evidence`` as an 8-bit grayscale PNG at the
    size it was stored (0..255 = the layer's fixed scale)."""
    await _readable(engine, inspection_id, principal)
    key = await anyio.to_thread.run_sync(service.evidence_blob, engine, inspection_id, n)
    if key is None:
        raise HTTPException(404, f"no evidence layer {n} for {inspection_id}")
    return await blob_response(store, key, "image/png")


@_id_route("DELETE", "/{inspection_id}", status_code=204, dependencies=requires("manager"))
async def delete_inspection(inspection_id: uuid.UUID, engine: EngineDep,
                            principal: CurrentUser) -> Response:
    """Soft delete: hidden from lists and stats until restored (audited)."""
    record = await anyio.to_thread.run_sync(service.set_deleted, engine, inspection_id, True,
                                            principal.actor)
    if record is None:
        raise _not_found(inspection_id)
    return Response(status_code=204)


@_id_route("POST", "/{inspection_id}/restore", response_model=InspectionPublic,
           dependencies=requires("manager"))
async def restore_inspection(inspection_id: uuid.UUID, engine: EngineDep,
                             principal: CurrentUser) -> InspectionPublic:
    """Undo a soft delete (audited)."""
    record = await anyio.to_thread.run_sync(service.set_deleted, engine, inspection_id, False,
                                            principal.actor)
    if record is None:
        raise _not_found(inspection_id)
    return record
