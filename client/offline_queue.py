"""Photos waiting on this device until the server can take them (never lost silently).

Each queued photo is two files in the queue folder: ``<id>.<ext>`` (the bytes as picked) and
``<id>.json`` (file name, station, operator, note, when it was queued, the last error).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class QueuedPhoto:
    id: str
    filename: str
    station: str
    operator: str
    note: str
    queued_at: str
    error: str | None = None  # set when the server refused it (it stays until discarded)


class PhotoQueue:
    """A folder of photos to send later, oldest first."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def add(self, data: bytes, filename: str, station: str = "", operator: str = "",
            note: str = "") -> QueuedPhoto:
        item = QueuedPhoto(
            id=uuid.uuid4().hex, filename=filename or "photo.jpg", station=station,
            operator=operator, note=note, queued_at=datetime.now(UTC).isoformat(),
        )
        self._data_path(item).write_bytes(data)
        self._write_meta(item)  # written last: an item without metadata is not listed
        return item

    def items(self) -> list[QueuedPhoto]:
        found = []
        for meta in self.folder.glob("*.json"):
            try:
                item = QueuedPhoto(**json.loads(meta.read_text()))
            except (ValueError, TypeError):
                continue
            if self._data_path(item).exists():
                found.append(item)
        return sorted(found, key=lambda item: item.queued_at)

    def read(self, item: QueuedPhoto) -> bytes:
        return self._data_path(item).read_bytes()

    def mark_error(self, item: QueuedPhoto, error: str) -> QueuedPhoto:
        updated = replace(item, error=error)
        self._write_meta(updated)
        return updated

    def remove(self, item: QueuedPhoto) -> None:
        (self.folder / f"{item.id}.json").unlink(missing_ok=True)
        self._data_path(item).unlink(missing_ok=True)

    def _data_path(self, item: QueuedPhoto) -> Path:
        suffix = Path(item.filename).suffix.lower() or ".jpg"
        return self.folder / f"{item.id}{suffix}"

    def _write_meta(self, item: QueuedPhoto) -> None:
        tmp = self.folder / f"{item.id}.json.tmp"
        tmp.write_text(json.dumps(asdict(item)))
        tmp.replace(self.folder / f"{item.id}.json")
