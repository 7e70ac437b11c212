"""Sign in (OAuth2 password flow), who am I, sign out; users; station keys; the audit trail."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.security import OAuth2PasswordRequestForm

from kensa.backend.api.deps import CurrentUser, EngineDep, SettingsDep, oauth2_scheme, requires
from kensa.backend.services import accounts
from kensa.contract.schemas import (
    AuditEventPublic,
    AuditList,
    ErrorBody,
    StationKeyCreate,
    StationKeyPublic,
    TokenPublic,
    UserCreate,
    UserPublic,
    UserUpdate,
)

router = APIRouter(tags=["auth"])
NOT_FOUND = {404: {"model": ErrorBody, "description": "no such user or key"}}
CONFLICT = {409: {"model": ErrorBody, "description": "the name exists, or the last admin"}}
MAX_ID = 2**31 - 1  # integer ids fit every database's INTEGER


def _refused(exc: accounts.AccountError) -> HTTPException:
    return HTTPException(exc.status, exc.detail)


@router.post("/auth/token", response_model=TokenPublic, dependencies=requires(None),
             responses={401: {"description": "wrong username or password"},
                        429: {"description": "too many failed sign-ins"}})
async def sign_in(request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()],
                  engine: EngineDep, settings: SettingsDep) -> TokenPublic:
    """Trade a username and password for a bearer token (expires after ``token_ttl_hours``)."""
    limiter = request.app.state.login_limiter
    keys = (f"user:{form.username}", f"addr:{request.client.host if request.client else '-'}")
    wait = limiter.retry_after(*keys)
    if wait:
        raise HTTPException(429, f"too many failed sign-ins; try again in {wait} s",
                            headers={"Retry-After": str(wait)})
    user = await anyio.to_thread.run_sync(accounts.authenticate, engine, form.username,
                                          form.password)
    if user is None:
        limiter.fail(*keys)
        raise HTTPException(401, "wrong username or password", headers={
            "WWW-Authenticate": "Bearer"})
    secret, expires = await anyio.to_thread.run_sync(
        accounts.issue_token, engine, user, timedelta(hours=settings.token_ttl_hours))
    return TokenPublic(access_token=secret, expires_at=expires, role=user.role)


@router.get("/auth/me", response_model=UserPublic, dependencies=requires("operator",
                                                                         station=True))
async def me(principal: CurrentUser) -> UserPublic:
    """The signed-in user (or station key: role "station")."""
    return UserPublic(username=principal.name, role=principal.role,
                      station=principal.station)


@router.post("/auth/logout", status_code=204, dependencies=requires("operator"))
async def sign_out(engine: EngineDep, token: Annotated[str, Depends(oauth2_scheme)]
                   ) -> Response:
    """Revoke the token this request carries."""
    await anyio.to_thread.run_sync(accounts.revoke_token, engine, token)
    return Response(status_code=204)


# -- users (admin) --------------------------------------------------------------------------------
users = APIRouter(prefix="/users", tags=["users"], dependencies=requires("admin"))


@users.post("", status_code=201, response_model=UserPublic, responses=CONFLICT)
async def create_user(body: UserCreate, engine: EngineDep, principal: CurrentUser
                      ) -> UserPublic:
    try:
        user = await anyio.to_thread.run_sync(lambda: accounts.create_user(
            engine, body.username, body.password, body.role, principal.actor))
    except accounts.AccountError as exc:
        raise _refused(exc) from None
    return UserPublic.model_validate(user)


@users.get("", response_model=list[UserPublic])
async def list_users(engine: EngineDep) -> list[UserPublic]:
    return [UserPublic.model_validate(u)
            for u in await anyio.to_thread.run_sync(accounts.list_users, engine)]


@users.patch("/{username}", response_model=UserPublic, responses={**NOT_FOUND, **CONFLICT})
async def update_user(username: str, body: UserUpdate, engine: EngineDep,
                      principal: CurrentUser) -> UserPublic:
    """Change role, password or disabled; all the user's tokens are revoked on a password or
    role change and on disabling."""
    try:
        user = await anyio.to_thread.run_sync(lambda: accounts.update_user(
            engine, username, principal.actor, role=body.role, password=body.password,
            disabled=body.disabled))
    except accounts.AccountError as exc:
        raise _refused(exc) from None
    return UserPublic.model_validate(user)


@users.delete("/{username}", status_code=204, responses={**NOT_FOUND, **CONFLICT})
async def remove_user(username: str, engine: EngineDep, principal: CurrentUser) -> Response:
    try:
        await anyio.to_thread.run_sync(accounts.remove_user, engine, username, principal.actor)
    except accounts.AccountError as exc:
        raise _refused(exc) from None
    return Response(status_code=204)


# -- station keys (admin) -------------------------------------------------------------------------
keys = APIRouter(prefix="/station-keys", tags=["station keys"], dependencies=requires("admin"))


@keys.post("", status_code=201, response_model=StationKeyPublic)
async def create_station_key(body: StationKeyCreate, engine: EngineDep,
                             principal: CurrentUser) -> StationKeyPublic:
    """A key for one station's camera or kiosk; ``key`` is in this answer only."""
    key, secret = await anyio.to_thread.run_sync(
        accounts.create_station_key, engine, body.name, body.station, principal.actor)
    return StationKeyPublic.model_validate(key).model_copy(update={"key": secret})


@keys.get("", response_model=list[StationKeyPublic])
async def list_station_keys(engine: EngineDep) -> list[StationKeyPublic]:
    return [StationKeyPublic.model_validate(k)
            for k in await anyio.to_thread.run_sync(accounts.list_station_keys, engine)]


@keys.delete("/{key_id}", status_code=204, responses=NOT_FOUND)
async def remove_station_key(key_id: Annotated[int, Path(ge=1, le=MAX_ID)], engine: EngineDep,
                             principal: CurrentUser) -> Response:
    try:
        await anyio.to_thread.run_sync(accounts.remove_station_key, engine, key_id,
                                       principal.actor)
    except accounts.AccountError as exc:
        raise _refused(exc) from None
    return Response(status_code=204)


# -- the trail (admin) ----------------------------------------------------------------------------
@router.get("/audit", response_model=AuditList, dependencies=requires("admin"))
async def list_audit(
    engine: EngineDep, actor: str | None = None, action: str | None = None,
    target: str | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> AuditList:
    """Audit events newest first, filtered by actor, action or target."""
    rows, total = await anyio.to_thread.run_sync(lambda: accounts.list_audit(
        engine, actor=actor, action=action, target=target, limit=limit, offset=offset))
    return AuditList(items=[AuditEventPublic.model_validate(r) for r in rows], total=total)
