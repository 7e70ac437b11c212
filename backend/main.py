"""The app factory: ``create_app(settings)``; the lifespan migrates the database and loads the
detectors once (in the background, so /healthz answers at once and /readyz says when the
service can inspect)."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio
import fastapi.routing
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from kensa.backend import db
from kensa.backend.api.deps import Require
from kensa.backend.api.main import api_router
from kensa.backend.api.routes import health
from kensa.backend.config import Settings
from kensa.backend.core.security import FailureLimiter
from kensa.backend.services import accounts
from kensa.backend.services.inference import DetectorPool
from kensa.backend.services.storage import BlobStore
from kensa.backend.web_security import OriginGuard, SecurityHeaders

log = logging.getLogger(__name__)
API_V1 = "/api/v1"
MULTIPART_OVERHEAD = 1024 * 1024  # form fields and boundaries on top of the photo


async def _load_detectors(app: FastAPI) -> None:
    settings: Settings = app.state.settings
    try:
        app.state.pool = await anyio.to_thread.run_sync(
            lambda: DetectorPool.load(
                settings.model_dir, settings.extra_models,
                concurrency=settings.inference_concurrency,
                demo_good_images=settings.demo_good_images, device=settings.device,
            ),
            abandon_on_cancel=True,
        )
        log.info("ready: %s", ", ".join(app.state.pool.names))
    except Exception as exc:
        log.exception("loading detectors failed")
        app.state.load_error = f"{type(exc).__name__}: {exc}"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    settings.ensure_dirs()
    engine = db.make_engine(settings.database_url)
    await anyio.to_thread.run_sync(db.upgrade, engine)
    await anyio.to_thread.run_sync(_bootstrap_accounts, engine, settings)
    app.state.engine = engine
    app.state.store = BlobStore(settings.storage_dir)
    app.state.pool = None
    app.state.load_error = None
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_load_detectors, app)
            yield
            tasks.cancel_scope.cancel()
    finally:
        engine.dispose()


def _bootstrap_accounts(engine, settings: Settings) -> None:
    """The first admin on an empty user table; the kiosk token of the web client."""
    password = accounts.ensure_admin(engine, settings.data_dir, settings.admin_password)
    if password:
        path = settings.data_dir / accounts.INITIAL_PASSWORD_FILE
        print(f"kensa: created user 'admin' with password {password} (also in {path}; "
              "change it with `kensa users passwd admin`)", flush=True)
    if settings.client_token:
        admin = next(u for u in accounts.list_users(engine) if u.role == "admin")
        accounts.issue_token(engine, admin, timedelta(days=3650), settings.client_token)


@dataclass(frozen=True)
class RouteRule:
    """One API route (path and methods, as the app serves it) and the access rule it declares."""

    path: str
    methods: frozenset[str]
    requirement: Require | None


def route_rules(app: FastAPI) -> list[RouteRule]:
    """Every route with a dependant (the API and the probes; not the docs or mounted apps)."""
    contexts: Iterable[Any] = (
        fastapi.routing.iter_route_contexts(app.routes)
        if hasattr(fastapi.routing, "iter_route_contexts")  # FastAPI >= 0.13x: nested routers
        else (r for r in app.routes if isinstance(r, APIRoute)))
    rules = []
    for route in contexts:
        dependant = getattr(route, "dependant", None)
        if dependant is None:
            continue
        requirement = next((d.call for d in dependant.dependencies
                            if isinstance(d.call, Require)), None)
        rules.append(RouteRule(route.path, frozenset(route.methods or ()), requirement))
    return rules


def _check_every_route_declares_a_role(app: FastAPI) -> None:
    missing = [rule.path for rule in route_rules(app) if rule.requirement is None]
    if missing:
        raise RuntimeError(f"routes without a declared role (use deps.requires): {missing}")


class DeclaredSizeGuard:
    """Answer 413 with a JSON body at once when a request to the API announces a body larger
    than the limit (FastAPI's own limit also counts streamed bytes, but answers in plain text
    when Content-Length alone gives it away)."""

    def __init__(self, app: ASGIApp, max_body_size: int, prefix: str = API_V1) -> None:
        self.app = app
        self.max_body_size = max_body_size
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefix):
            length = Headers(scope=scope).get("content-length", "")
            if length.isdigit() and int(length) > self.max_body_size:
                response = JSONResponse(status_code=413, content={
                    "detail": f"request body of {int(length)} bytes is over the limit of "
                              f"{self.max_body_size} bytes"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422, made safe for inputs JSON cannot carry (NaN, infinity)."""
    return JSONResponse(status_code=422,
                        content={"detail": _json_safe(jsonable_encoder(exc.errors()))})


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(status_code=500, content={"detail": "internal server error"})


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="kensa",
        summary="Visual inspection of steel surfaces: detectors, inspections, statistics.",
        version="0.1.0",
        lifespan=lifespan,
        openapi_url=f"{API_V1}/openapi.json",
        docs_url=f"{API_V1}/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.pool = None
    app.state.load_error = None
    app.add_exception_handler(Exception, _unhandled)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.include_router(health.router)
    max_body = settings.max_upload_bytes + MULTIPART_OVERHEAD
    app.include_router(api_router, prefix=API_V1, max_body_size=max_body)
    app.add_middleware(DeclaredSizeGuard, max_body_size=max_body)
    app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                       allow_methods=["*"], allow_headers=["*"], allow_credentials=False)
    app.add_middleware(OriginGuard, allowed=settings.cors_origins)
    app.add_middleware(SecurityHeaders, api_prefix=API_V1, csp_exempt=(f"{API_V1}/docs",))
    app.state.login_limiter = FailureLimiter(settings.login_failures_per_minute)
    _check_every_route_declares_a_role(app)
    return app
