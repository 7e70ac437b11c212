"""The startup sweep: blobs written for an upload whose database commit never came.

An upload writes its blobs first and its rows in one transaction after; a failed request removes
its own blobs, but a killed process (kill -9, power loss) leaves temporary files and blobs no row
points at. At startup every store is swept of those, once they are older than a grace period:
another replica sharing the store may be between writing its blobs and committing right now,
and its blobs are younger than the grace.

A blob reference is any table column whose name ends in ``_key`` (``image_key``, ``mask_key``,
...), so new blob columns are covered without touching this module, plus the file maps of
detector versions (``detector_version.files``: file name -> key, JSON).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice

from sqlalchemy import Column, Engine, select
from sqlmodel import SQLModel

from kensa.backend.records import DetectorVersion  # (and every table, on SQLModel.metadata)
from kensa.backend.services.storage import BlobStore

log = logging.getLogger(__name__)
BATCH = 500


@dataclass(frozen=True)
class SweepReport:
    temporary: int  # leftovers of interrupted writes
    orphans: int  # blobs no row referenced
    kept: int  # blobs still referenced, or too young to judge


def blob_columns() -> list[Column]:
    return [column for table in SQLModel.metadata.sorted_tables for column in table.columns
            if column.name.endswith("_key")]


def referenced(engine: Engine, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` some row points at."""
    found: set[str] = set()
    wanted = set(keys)
    with engine.connect() as conn:
        for column in blob_columns():
            found |= set(conn.execute(select(column).where(column.in_(keys))).scalars())
        for files in conn.execute(select(DetectorVersion.files)).scalars():
            found |= wanted & set((files or {}).values())
    return found


def _batches(items: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def sweep(engine: Engine, store: BlobStore, grace: timedelta,
          now: datetime | None = None) -> SweepReport:
    """Remove temporary leftovers and unreferenced blobs older than ``grace`` (blocking)."""
    cutoff = (now or datetime.now(UTC)) - grace
    temporary = store.remove_temporary(cutoff)
    orphans = kept = 0
    old = (blob.key for blob in store.blobs() if blob.modified < cutoff)
    for batch in _batches(old, BATCH):
        in_use = referenced(engine, batch)
        for key in batch:
            if key in in_use:
                kept += 1
            else:
                store.delete(key)
                orphans += 1
    report = SweepReport(temporary=temporary, orphans=orphans, kept=kept)
    log.info("blob sweep of %r: %d temporary, %d unreferenced removed", store, temporary,
             orphans)
    return report
