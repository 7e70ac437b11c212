"""Users, tokens, station keys and the audit trail, on the database directly (the API and the
``kensa users`` command both call these). Every change writes its ``audit_event`` row in the
same transaction as the change itself."""

from __future__ import annotations

import logging
import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from kensa.backend.accounts import ApiToken, AuditEvent, StationKey, User
from kensa.backend.core import security
from kensa.backend.core.security import Principal

log = logging.getLogger(__name__)
INITIAL_PASSWORD_FILE = "initial-admin-password"


class AccountError(ValueError):
    """A refused account change; ``status`` is the HTTP answer."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def audit(session: Session, actor: str, action: str, target_type: str, target: str,
          before: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> None:
    session.add(AuditEvent(actor=actor, action=action, target_type=target_type, target=target,
                           before=before, after=after))


def user_view(user: User) -> dict[str, Any]:
    return {"username": user.username, "role": user.role, "disabled": user.disabled}


def _check_role(role: str) -> None:
    if role not in security.ROLES:
        raise AccountError(422, f"unknown role {role!r}; roles: {', '.join(security.ROLES)}")


def _check_password(password: str) -> None:
    if len(password) < 8:
        raise AccountError(422, "the password must have at least 8 characters")


# -- users ----------------------------------------------------------------------------------------
def create_user(engine: Engine, username: str, password: str, role: str, actor: str) -> User:
    _check_role(role)
    _check_password(password)
    if not username or len(username) > 100:
        raise AccountError(422, "the username must have 1 to 100 characters")
    with Session(engine, expire_on_commit=False) as session, session.begin():
        if session.execute(select(User).where(User.username == username)).first():
            raise AccountError(409, f"user {username!r} exists already")
        user = User(username=username, password_hash=security.hash_password(password),
                    role=role)
        session.add(user)
        audit(session, actor, "user.create", "user", username, None, user_view(user))
    return user


def list_users(engine: Engine) -> list[User]:
    with Session(engine) as session:
        return list(session.execute(select(User).order_by(User.username)).scalars())


def get_user(session: Session, username: str) -> User:
    user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
    if user is None:
        raise AccountError(404, f"no user {username!r}")
    return user


def _active_admins(session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(User).where(
        User.role == "admin", User.disabled.is_(False))).scalar_one())


def update_user(engine: Engine, username: str, actor: str, *, role: str | None = None,
                password: str | None = None, disabled: bool | None = None) -> User:
    """Change role, password or disabled; a password change, disabling or a role change ends
    every session of the user. The last active admin cannot be demoted or disabled."""
    if role is not None:
        _check_role(role)
    if password is not None:
        _check_password(password)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        user = get_user(session, username)
        before = user_view(user)
        if user.role == "admin" and not user.disabled and (
                (role is not None and role != "admin") or disabled) and \
                _active_admins(session) <= 1:
            raise AccountError(409, "the last active admin cannot be demoted or disabled")
        if role is not None:
            user.role = role
        if disabled is not None:
            user.disabled = disabled
        if password is not None:
            user.password_hash = security.hash_password(password)
        after = user_view(user) | ({"password": "changed"} if password is not None else {})
        session.add(user)
        if password is not None or disabled or role not in (None, before["role"]):
            session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
        audit(session, actor, "user.update", "user", username, before, after)
    return user


def remove_user(engine: Engine, username: str, actor: str) -> None:
    with Session(engine) as session, session.begin():
        user = get_user(session, username)
        if user.role == "admin" and not user.disabled and _active_admins(session) <= 1:
            raise AccountError(409, "the last active admin cannot be removed")
        before = user_view(user)
        session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
        session.delete(user)
        audit(session, actor, "user.delete", "user", username, before, None)


def ensure_admin(engine: Engine, data_dir: Path, password: str | None) -> str | None:
    """With no user at all, create ``admin``; its password is ``password`` or a random one,
    which is returned (and written to ``<data_dir>/initial-admin-password``, mode 0600)."""
    with Session(engine) as session:
        if session.execute(select(func.count()).select_from(User)).scalar_one():
            return None
    generated = password is None
    password = password or secrets.token_urlsafe(12)
    try:
        create_user(engine, "admin", password, "admin", actor="system")
    except (IntegrityError, AccountError):  # another replica starting at the same time won
        return None
    if not generated:
        return None
    path = Path(data_dir) / INITIAL_PASSWORD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    os.chmod(path, 0o600)
    return password


# -- tokens ---------------------------------------------------------------------------------------
def authenticate(engine: Engine, username: str, password: str) -> User | None:
    with Session(engine) as session:
        user = session.execute(select(User).where(User.username == username)
                               ).scalar_one_or_none()
    if user is None:
        security.verify_password(password, security.DUMMY_HASH)
        return None
    if not security.verify_password(password, user.password_hash) or user.disabled:
        return None
    return user


def issue_token(engine: Engine, user: User, ttl: timedelta, secret: str | None = None
                ) -> tuple[str, datetime]:
    secret = secret or security.new_secret(security.USER_TOKEN_PREFIX)
    expires = datetime.now(UTC) + ttl
    with Session(engine) as session, session.begin():
        session.execute(delete(ApiToken).where(ApiToken.token_hash == security.digest(secret)))
        session.add(ApiToken(token_hash=security.digest(secret), user_id=user.id,
                             expires_at=expires))
    return secret, expires


def revoke_token(engine: Engine, secret: str) -> None:
    with Session(engine) as session, session.begin():
        session.execute(delete(ApiToken).where(ApiToken.token_hash == security.digest(secret)))


def resolve(engine: Engine, secret: str) -> Principal | None:
    """The caller a bearer secret stands for, or None (unknown, expired, disabled)."""
    hashed = security.digest(secret)
    with Session(engine) as session:
        if secret.startswith(security.STATION_KEY_PREFIX):
            key = session.execute(select(StationKey).where(StationKey.key_hash == hashed)
                                  ).scalar_one_or_none()
            if key is None:
                return None
            return Principal(kind="station", name=key.name, role=security.STATION,
                             station=key.station, key_id=key.id)
        row = session.execute(select(ApiToken, User).join(User, User.id == ApiToken.user_id)
                              .where(ApiToken.token_hash == hashed)).first()
        if row is None:
            return None
        token, user = row
        if _aware(token.expires_at) <= datetime.now(UTC) or user.disabled:
            return None
        return Principal(kind="user", name=user.username, role=user.role, user_id=user.id)


# -- station keys ---------------------------------------------------------------------------------
def key_view(key: StationKey) -> dict[str, Any]:
    return {"id": key.id, "name": key.name, "station": key.station}


def create_station_key(engine: Engine, name: str, station: str, actor: str
                       ) -> tuple[StationKey, str]:
    secret = security.new_secret(security.STATION_KEY_PREFIX)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        key = StationKey(key_hash=security.digest(secret), name=name, station=station,
                         created_by=actor)
        session.add(key)
        session.flush()
        audit(session, actor, "station_key.create", "station_key", str(key.id), None,
              key_view(key))
    return key, secret


def list_station_keys(engine: Engine) -> list[StationKey]:
    with Session(engine) as session:
        return list(session.execute(select(StationKey).order_by(StationKey.id)).scalars())


def remove_station_key(engine: Engine, key_id: int, actor: str) -> None:
    with Session(engine) as session, session.begin():
        key = session.get(StationKey, key_id)
        if key is None:
            raise AccountError(404, f"no station key {key_id}")
        audit(session, actor, "station_key.delete", "station_key", str(key_id), key_view(key))
        session.delete(key)


# -- reading the trail ----------------------------------------------------------------------------
def list_audit(engine: Engine, *, actor: str | None = None, action: str | None = None,
               target: str | None = None, limit: int = 50, offset: int = 0
               ) -> tuple[list[AuditEvent], int]:
    conditions = [c for c in (
        AuditEvent.actor == actor if actor else None,
        AuditEvent.action == action if action else None,
        AuditEvent.target == target if target else None) if c is not None]
    with Session(engine) as session:
        total = session.execute(select(func.count()).select_from(AuditEvent)
                                .where(*conditions)).scalar_one()
        rows = session.execute(select(AuditEvent).where(*conditions)
                               .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
                               .limit(limit).offset(offset)).scalars().all()
    return list(rows), int(total)
