"""The /api/v1 router: every resource, then a catch-all so that no request under the prefix
falls through to the web client mounted at "/" (unknown paths 404, wrong methods 405 with the
right ``Allow``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.routing import Match, Mount

from kensa.backend.api.deps import requires
from kensa.backend.api.routes import (
    auth,
    datasets,
    detectors,
    inspections,
    jobs,
    reviews,
    samples,
    stats,
)
from kensa.contract.schemas import ErrorBody

ERRORS = {
    422: {"model": ErrorBody, "description": "invalid input (a sentence, or the list of "
                                             "validation errors)"},
    503: {"model": ErrorBody, "description": "not ready, or the database cannot be reached "
                                             "(see Retry-After)"},
}
"""Answers every route may give, documented once."""

api_router = APIRouter(responses=ERRORS)
api_router.include_router(inspections.upload_router)
api_router.include_router(inspections.router)
api_router.include_router(stats.router)
api_router.include_router(detectors.router)
api_router.include_router(auth.router)
api_router.include_router(auth.users)
api_router.include_router(auth.keys)
api_router.include_router(samples.router)
api_router.include_router(datasets.router)
api_router.include_router(jobs.router)
api_router.include_router(reviews.router)
api_router.include_router(reviews.inspection_router)

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def allowed_methods(request: Request) -> set[str]:
    """The methods the API's routes accept at this request's path (mounts, such as the web
    client at "/", and this fallback itself do not count)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Mount) or getattr(route, "endpoint", None) is not_routed or \
                getattr(route, "original_router", None) is fallback_router:
            continue
        for method in ALL_METHODS:
            if route.matches({**request.scope, "method": method})[0] == Match.FULL:
                methods.add(method)
    return methods


fallback_router = APIRouter()
"""Included after every other router (``create_app``), so it only sees what nothing else
matched."""


@fallback_router.api_route("/{path:path}", methods=ALL_METHODS, include_in_schema=False,
                           dependencies=requires(None))
async def not_routed(request: Request, path: str) -> Response:
    allowed = allowed_methods(request)
    if not allowed:
        return JSONResponse({"detail": f"no API resource at {request.url.path}"},
                            status_code=404)
    allow = ", ".join(sorted(allowed | {"OPTIONS"}))
    if request.method == "OPTIONS":
        return Response(status_code=204, headers={"Allow": allow})
    return JSONResponse({"detail": f"{request.method} is not allowed here; allowed: {allow}"},
                        status_code=405, headers={"Allow": allow})
