"""Tables for accounts, sign-in tokens, station keys, the audit trail and idempotent uploads.

Tokens and station keys are opaque random strings; only their SHA-256 is stored, so a leaked
database does not hand out sessions. Datetimes are UTC.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class User(SQLModel, table=True):
    __tablename__ = "app_user"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=100, unique=True)
    password_hash: str = Field(max_length=255)
    role: str = Field(max_length=16)
    disabled: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class ApiToken(SQLModel, table=True):
    """A signed-in session: revoked by deleting the row."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    user_id: int = Field(foreign_key="app_user.id", ondelete="CASCADE", index=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime


class StationKey(SQLModel, table=True):
    """A camera's or kiosk's key: inspects for one station only."""

    __tablename__ = "station_key"

    id: int | None = Field(default=None, primary_key=True)
    key_hash: str = Field(max_length=64, unique=True)
    station: str = Field(max_length=100)
    name: str = Field(max_length=100)
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str = Field(max_length=100)


class AuditEvent(SQLModel, table=True):
    """Who did what to which target, when, with the state before and after."""

    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(max_length=120, index=True)
    action: str = Field(max_length=50, index=True)
    target_type: str = Field(max_length=30)
    target: str = Field(max_length=120, index=True)
    before: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    after: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))


class IdempotencyRecord(SQLModel, table=True):
    """One ``Idempotency-Key`` of one caller: reserved before the work, then pointing at the
    inspection it made. The unique constraint makes a concurrent duplicate lose."""

    __tablename__ = "idempotency_key"
    __table_args__ = (UniqueConstraint("owner", "key", name="uq_idempotency_owner_key"),)

    id: int | None = Field(default=None, primary_key=True)
    owner: str = Field(max_length=120)
    key: str = Field(max_length=255)
    body_hash: str = Field(max_length=64)
    inspection_id: uuid.UUID | None = Field(default=None, foreign_key="inspection.id",
                                            ondelete="CASCADE")
    created_at: datetime = Field(default_factory=utcnow)
