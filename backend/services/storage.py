"""Content-addressed blob store: photos, masks, heatmaps and overlays on disk.

A blob's key is the sha256 of its bytes plus a suffix (``<hex>.png``); it lives at
``<root>/<hex[:2]>/<hex[2:4]>/<key>``. Writes go to a temporary file in the same folder and
are renamed into place atomically, so readers never see a partial file and identical content
is stored once.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

_KEY = re.compile(r"^[0-9a-f]{64}\.[a-z0-9]{1,5}$")


@dataclass
class PutResult:
    key: str
    created: bool  # False when identical content was already stored


@dataclass
class BlobStore:
    root: Path
    fsync: bool = True
    _tmp_prefix: str = field(default=".tmp-", repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key_for(data: bytes, suffix: str) -> str:
        return f"{hashlib.sha256(data).hexdigest()}.{suffix.lstrip('.').lower()}"

    def path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError(f"not a blob key: {key!r}")
        return self.root / key[:2] / key[2:4] / key

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def put(self, data: bytes, suffix: str) -> PutResult:
        """Store ``data`` under its hash; a no-op (``created=False``) when already present."""
        key = self.key_for(data, suffix)
        target = self.path(key)
        if target.is_file():
            return PutResult(key, created=False)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=self._tmp_prefix)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            if target.is_file():  # another writer won the race with the same bytes
                os.unlink(tmp)
                return PutResult(key, created=False)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return PutResult(key, created=True)

    def read(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def files(self) -> list[Path]:
        """Every stored file (temporary files included), for audits and tests."""
        return sorted(p for p in self.root.rglob("*") if p.is_file())
