"""``Idempotency-Key`` for uploads (IETF draft-ietf-httpapi-idempotency-key-header).

The key is reserved (a row, unique per caller and key) before any work; the reservation then
points at the inspection that was made. A retry with the same body gets that record back; a
different body with the same key is refused (422); a duplicate arriving while the first is still
being worked on is refused (409) and never makes a second record. A failed first attempt frees
the key again.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from kensa.backend.accounts import IdempotencyRecord

MAX_KEY_LENGTH = 255


class KeyConflict(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Reservation:
    record_id: int | None = None  # set: a new reservation, do the work
    replay: uuid.UUID | None = None  # set: the inspection the first request made


def body_hash(parts: Iterable[bytes | str | None]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = b"\x00none" if part is None else part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


def reserve(engine: Engine, owner: str, key: str, hashed: str) -> Reservation:
    if not key or len(key) > MAX_KEY_LENGTH:
        raise KeyConflict(400, f"the Idempotency-Key must have 1 to {MAX_KEY_LENGTH} characters")
    try:
        with Session(engine) as session, session.begin():
            record = IdempotencyRecord(owner=owner, key=key, body_hash=hashed)
            session.add(record)
            session.flush()
            return Reservation(record_id=record.id)
    except IntegrityError:
        pass
    with Session(engine) as session:
        record = session.execute(select(IdempotencyRecord).where(
            IdempotencyRecord.owner == owner, IdempotencyRecord.key == key)).scalar_one_or_none()
    if record is None:  # freed in between by a failed first attempt
        return reserve(engine, owner, key, hashed)
    if record.body_hash != hashed:
        raise KeyConflict(422, "this Idempotency-Key was already used with a different request "
                               "body; use a new key for a new photo")
    if record.inspection_id is None:
        raise KeyConflict(409, "a request with this Idempotency-Key is still being processed; "
                               "retry shortly")
    return Reservation(replay=record.inspection_id)


def complete(engine: Engine, record_id: int, inspection_id: uuid.UUID) -> None:
    with Session(engine) as session, session.begin():
        record = session.get(IdempotencyRecord, record_id)
        if record is not None:
            record.inspection_id = inspection_id
            session.add(record)


def release(engine: Engine, record_id: int) -> None:
    with Session(engine) as session, session.begin():
        session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id))
