"""The app factory: ``create_app(settings)``; the lifespan migrates the database, opens the blob
store and, in the background (so /healthz answers at once and /readyz says when the service can
inspect), loads the detectors once and sweeps the store of blobs an interrupted upload left."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio
import fastapi.routing
import swagger_ui_bundle
import torch
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DBAPIError
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kensa.backend import db
from kensa.backend.api.deps import Require, requires
from kensa.backend.api.main import api_router, fallback_router
from kensa.backend.api.routes import health
from kensa.backend.config import Settings, effective_batch_max
from kensa.backend.core.security import FailureLimiter
from kensa.backend.jobs import state as job_state
from kensa.backend.jobs.runner import make_runner
from kensa.backend.services import accounts, versions
from kensa.backend.services.demo import RECIPES
from kensa.backend.services.inference import DetectorPool, LoadedDetector
from kensa.backend.services.storage import make_store
from kensa.backend.services.sweep import sweep
from kensa.backend.web_security import HostGuard, OriginGuard, SecurityHeaders
from kensa.contract.constants import API_PREFIX
from kensa.models.artifacts import load_detector

log = logging.getLogger(__name__)
MULTIPART_OVERHEAD = 1024 * 1024  # form fields and boundaries on top of the photo
DB_RETRY_S = 5
MAX_ECHO = 200  # characters of a rejected input a 422 body repeats


async def _load_detectors(app: FastAPI) -> None:
    """Load the detectors and the versions deployed in the database (once it answers)."""
    settings: Settings = app.state.settings
    while not app.state.db_ready:
        await anyio.sleep(0.2)
    try:
        def load() -> DetectorPool:
            if settings.torch_threads:  # before loading: the engines take the same count
                torch.set_num_threads(settings.torch_threads)
            pool = DetectorPool.load(
                settings.model_dir, settings.extra_models,
                concurrency=settings.inference_concurrency,
                demo_good_images=settings.demo_good_images, device=settings.device,
                limiter=app.state.limiter,
                batch_max=effective_batch_max(settings), batch_wait_ms=settings.batch_wait_ms,
                demo_tasks=settings.demo_tasks,
            )
            versions.apply_deployed(app.state.engine, app.state.store, pool,
                                    settings.data_dir / "versions")
            return pool

        app.state.pool = await anyio.to_thread.run_sync(load, abandon_on_cancel=True)
        log.info("ready: %s", ", ".join(app.state.pool.names))
    except Exception as exc:
        log.exception("loading detectors failed")
        app.state.load_error = f"{type(exc).__name__}: {exc}"
        return
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_follow_deployments, app)
        await _fit_pending_demos(app)


async def _follow_deployments(app: FastAPI) -> None:
    """Every ``version_poll_s`` seconds, serve the versions the database says are active or
    shadow: activations and rollbacks through another replica take effect here too."""
    settings: Settings = app.state.settings
    if settings.version_poll_s <= 0:
        return
    while True:
        await anyio.sleep(settings.version_poll_s)
        try:
            changed = await anyio.to_thread.run_sync(
                versions.apply_deployed, app.state.engine, app.state.store, app.state.pool,
                settings.data_dir / "versions", abandon_on_cancel=True)
        except Exception as exc:  # an outage: try again at the next tick
            log.warning("checking the deployed versions failed: %s: %s",
                        type(exc).__name__, exc)
            continue
        if changed:
            log.info("deployed from the database: %s", ", ".join(changed))


async def _fit_pending_demos(app: FastAPI) -> None:
    """Fit the missing supervised demo detectors side by side, each in its own niced
    single-threaded subprocess (two cores: one fit each, the service answers meanwhile; output
    in ``MODEL_DIR/.<name>.log``), and serve each as soon as it is saved."""
    pool: DetectorPool = app.state.pool
    async with anyio.create_task_group() as fits:
        for task in list(pool.pending):
            fits.start_soon(_fit_demo, app, task)


async def _fit_demo(app: FastAPI, task: str) -> None:
    settings: Settings = app.state.settings
    pool: DetectorPool = app.state.pool
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    directory = settings.model_dir / RECIPES[task].name
    log_path = settings.model_dir / f".{RECIPES[task].name}.log"
    command = [sys.executable, "-m", "kensa.backend.services.demo",
               str(settings.model_dir), task, "--good", str(settings.demo_good_images)]
    try:
        with log_path.open("wb") as out:
            proc = await anyio.open_process(command, env=env, stdout=out, stderr=out,
                                            stdin=subprocess.DEVNULL)
        try:
            code = await proc.wait()
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                with anyio.CancelScope(shield=True):
                    await proc.wait()
        if code != 0 or not (directory / "config.json").is_file():
            log.error("fitting the demo %s detector failed (exit code %s); see %s", task,
                      code, log_path)
            return
        loaded = await anyio.to_thread.run_sync(
            lambda d=directory: LoadedDetector(load_detector(d, device=settings.device), d))
        pool.swap(loaded)
        log.info("demo detector %s fitted and served", loaded.name)
    finally:  # served (or failed) before it leaves /readyz's pending list
        pool.pending = [t for t in pool.pending if t != task]


async def _database_ready(app: FastAPI, tasks: anyio.abc.TaskGroup) -> None:
    """The database answers and is migrated: mark it, resume the job runner (which fails jobs a
    restart interrupted) and sweep the blob store in the background."""
    await anyio.to_thread.run_sync(_bootstrap_accounts, app.state.engine, app.state.settings)
    app.state.db_ready, app.state.db_error = True, None
    await anyio.to_thread.run_sync(app.state.jobs.start)
    app.state.jobs_started = True
    tasks.start_soon(_sweep_blobs, app)
    tasks.start_soon(_fail_lost_jobs, app)


async def _migrate_or_retry(app: FastAPI, tasks: anyio.abc.TaskGroup) -> None:
    """Migrate before serving when the database answers (the usual case); otherwise serve at
    once (503 until it answers) and keep migrating in the background."""
    try:
        await anyio.to_thread.run_sync(db.upgrade, app.state.engine)
    except Exception as exc:
        if not db.is_outage(exc):
            raise
        tasks.start_soon(_migrate, app)
        return
    await _database_ready(app, tasks)


async def _migrate(app: FastAPI) -> None:
    """Migrate the database; while it cannot be reached, keep trying (requests get 503 and
    /readyz says why) instead of exiting."""
    while True:
        try:
            await anyio.to_thread.run_sync(db.upgrade, app.state.engine, abandon_on_cancel=True)
        except Exception as exc:
            if not db.is_outage(exc):
                raise
            app.state.db_error = f"database unreachable: {type(exc).__name__}"
            log.warning("database unreachable at start (%s); retrying in %s s", exc.__class__
                        .__name__, DB_RETRY_S)
            await anyio.sleep(DB_RETRY_S)
            continue
        async with anyio.create_task_group() as tasks:
            await _database_ready(app, tasks)
        return


async def _fail_lost_jobs(app: FastAPI) -> None:
    """Every heartbeat interval, fail the running jobs (of any runner, on any host) whose
    worker has been silent for ``job_lost_after_s``."""
    settings: Settings = app.state.settings
    if settings.job_lost_after_s <= 0:
        return
    lost_after = timedelta(seconds=settings.job_lost_after_s)
    while True:
        try:
            failed = await anyio.to_thread.run_sync(
                job_state.fail_lost, app.state.engine, lost_after, abandon_on_cancel=True)
        except Exception as exc:  # an outage: try again at the next tick
            log.warning("checking for lost jobs failed: %s: %s", type(exc).__name__, exc)
        else:
            if failed:
                log.warning("failed %d job(s) whose worker went silent", failed)
        await anyio.sleep(settings.job_heartbeat_s)


async def _sweep_blobs(app: FastAPI) -> None:
    settings: Settings = app.state.settings
    try:
        app.state.sweep_report = await anyio.to_thread.run_sync(
            sweep, app.state.engine, app.state.store,
            timedelta(seconds=settings.storage_sweep_grace_s), abandon_on_cancel=True)
    except Exception:
        log.exception("sweeping the blob store failed (it is retried at the next start)")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    settings.ensure_dirs()
    engine = db.make_engine(settings.database_url)
    app.state.engine = engine
    app.state.db_ready = False
    app.state.db_error = "the database is being migrated"
    app.state.store = await anyio.to_thread.run_sync(make_store, settings)
    app.state.pool = None
    app.state.limiter = anyio.CapacityLimiter(settings.inference_concurrency)
    app.state.load_error = None
    app.state.sweep_report = None
    app.state.jobs = make_runner(settings, engine)
    app.state.jobs_started = False
    try:
        async with anyio.create_task_group() as tasks:
            await _migrate_or_retry(app, tasks)
            tasks.start_soon(_load_detectors, app)
            yield
            tasks.cancel_scope.cancel()
    finally:
        if app.state.jobs_started:
            await anyio.to_thread.run_sync(app.state.jobs.stop)
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

    def __init__(self, app: ASGIApp, max_body_size: int, prefix: str = API_PREFIX) -> None:
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
    if isinstance(value, str | bytes) and len(value) > MAX_ECHO:
        return f"{value[:MAX_ECHO]!s}... ({len(value)} characters)"
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422, made safe for inputs JSON cannot carry (NaN, infinity)."""
    return JSONResponse(status_code=422,
                        content={"detail": _json_safe(jsonable_encoder(exc.errors()))})


async def _database_error(request: Request, exc: DBAPIError) -> JSONResponse:
    """An unreachable database is an outage (503, retry), not a bug (500)."""
    if db.is_outage(exc):
        log.warning("database unreachable on %s %s: %s", request.method, request.url.path,
                    exc.__class__.__name__)
        return JSONResponse(status_code=503, headers={"Retry-After": str(DB_RETRY_S)},
                            content={"detail": "the database cannot be reached; "
                                               "try again in a few seconds"})
    return await _unhandled(request, exc)


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(status_code=500, content={"detail": "internal server error"})


class UnhandledErrors:
    """Answer an unhandled error with a JSON 500 and keep the connection open: Starlette's
    outermost handler re-raises after answering, and the server then drops a keep-alive
    connection that a tablet would reuse."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            response = JSONResponse(status_code=500, content={"detail": "internal server error"})
            await response(scope, receive, send)


def _swagger_ui(app: FastAPI) -> None:
    """The API docs page with Swagger UI's files served from here: it works on a plant
    network with no internet (FastAPI's default loads them from a CDN)."""
    assets = f"{API_PREFIX}/docs/assets"
    app.mount(assets, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path),
              name="swagger-ui")

    @app.get(f"{API_PREFIX}/docs", include_in_schema=False, dependencies=requires(None))
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "", title=f"{app.title} API",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon-32x32.png")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="kensa",
        summary="Visual inspection of steel surfaces: detectors, inspections, statistics.",
        version="0.1.0",
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # served by _swagger_ui, without a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.pool = None
    app.state.load_error = None
    app.add_exception_handler(Exception, _unhandled)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(DBAPIError, _database_error)
    app.include_router(health.router)
    max_body = settings.max_upload_bytes + MULTIPART_OVERHEAD
    app.include_router(api_router, prefix=API_PREFIX, max_body_size=max_body)
    _swagger_ui(app)
    app.include_router(fallback_router, prefix=API_PREFIX)
    app.add_middleware(DeclaredSizeGuard, max_body_size=max_body)
    app.add_middleware(UnhandledErrors)
    app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                       allow_methods=["*"], allow_headers=["*"], allow_credentials=False)
    app.add_middleware(OriginGuard, allowed=settings.cors_origins)
    app.add_middleware(SecurityHeaders, api_prefix=API_PREFIX, csp_exempt=(f"{API_PREFIX}/docs",))
    app.add_middleware(HostGuard, allowed=settings.allowed_hosts)
    app.state.login_limiter = FailureLimiter(settings.login_failures_per_minute)
    app.state.upload_limiter = FailureLimiter(settings.inspections_per_minute)
    _check_every_route_declares_a_role(app)
    return app
