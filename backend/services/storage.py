"""Content-addressed blob store: photos, masks, heatmaps and overlays.

A blob's key is the sha256 of its bytes plus a suffix (``<hex>.png``), so identical content is
stored once and a key never changes meaning. ``BlobStore`` is the one interface; two
implementations:

- ``LocalBlobStore`` (default): a folder, ``<root>/<hex[:2]>/<hex[2:4]>/<key>``. Writes go to a
  ``.tmp-*`` file in the same folder and are renamed into place atomically, so readers never see
  a partial file.
- ``S3BlobStore``: any S3-compatible object store (AWS S3, MinIO, Ceph RGW, ...) through boto3,
  objects at ``<prefix><key>``. A PUT is atomic on S3, so there are no temporary objects;
  interrupted multipart uploads are what ``remove_temporary`` cleans up there.

``make_store(settings)`` picks the implementation from the settings (see ``kensa.backend.config``:
``KENSA_STORAGE_URL=s3://bucket/prefix`` or ``KENSA_S3_BUCKET``, otherwise the local folder).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kensa.backend.config import Settings

_KEY = re.compile(r"^[0-9a-f]{64}\.[a-z0-9]{1,5}$")
TMP_PREFIX = ".tmp-"
CHUNK = 256 * 1024


class BlobMissing(KeyError):
    """No blob is stored under the key."""


@dataclass
class PutResult:
    key: str
    created: bool  # False when identical content was already stored


@dataclass(frozen=True)
class StoredBlob:
    key: str
    modified: datetime  # aware, UTC


def check_key(key: str) -> str:
    if not _KEY.match(key):
        raise ValueError(f"not a blob key: {key!r}")
    return key


class BlobStore(ABC):
    """Where blobs live. Every method is blocking (call it off the event loop)."""

    @staticmethod
    def key_for(data: bytes, suffix: str) -> str:
        return f"{hashlib.sha256(data).hexdigest()}.{suffix.lstrip('.').lower()}"

    @abstractmethod
    def put(self, data: bytes, suffix: str) -> PutResult:
        """Store ``data`` under its hash; a no-op (``created=False``) when already present."""

    @abstractmethod
    def read(self, key: str) -> bytes:
        """The blob's bytes; ``BlobMissing`` when there is none."""

    @abstractmethod
    def chunks(self, key: str, size: int = CHUNK) -> Iterator[bytes]:
        """The blob's bytes in pieces, for streaming; ``BlobMissing`` at the first ``next``."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the blob; deleting a missing blob is fine."""

    @abstractmethod
    def blobs(self) -> Iterator[StoredBlob]:
        """Every stored blob with its modification time (temporary files excluded)."""

    @abstractmethod
    def remove_temporary(self, older_than: datetime) -> int:
        """Remove leftovers of interrupted writes started before ``older_than``; the count."""

    def local_path(self, key: str) -> Path | None:
        """The blob's file when the store is a local folder (lets the API send it with
        ``FileResponse``); ``None`` for remote stores."""
        return None

    def opener(self, key: str) -> Iterator[bytes]:
        """``chunks`` with the first piece fetched already, so a missing blob raises
        ``BlobMissing`` here (before a response has started) rather than mid-stream."""
        pieces = self.chunks(key)
        try:
            first = next(pieces)
        except StopIteration:
            first = b""

        def stream() -> Iterator[bytes]:
            if first:
                yield first
            yield from pieces

        return stream()


# -- the local folder ----------------------------------------------------------------------------
class LocalBlobStore(BlobStore):
    def __init__(self, root: Path | str, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def path(self, key: str) -> Path:
        check_key(key)
        return self.root / key[:2] / key[2:4] / key

    def local_path(self, key: str) -> Path | None:
        return self.path(key)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def put(self, data: bytes, suffix: str) -> PutResult:
        key = self.key_for(data, suffix)
        target = self.path(key)
        if self._touch(target):
            return PutResult(key, created=False)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TMP_PREFIX)
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

    @staticmethod
    def _touch(target: Path) -> bool:
        """Renew an existing blob's mtime (a new reference is coming, so the sweep's grace
        starts again); False when there is none."""
        try:
            os.utime(target)
        except FileNotFoundError:
            return False
        return True

    def read(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise BlobMissing(key) from None

    def chunks(self, key: str, size: int = CHUNK) -> Iterator[bytes]:
        path = self.path(key)
        try:
            fh = path.open("rb")
        except FileNotFoundError:
            raise BlobMissing(key) from None
        with fh:
            while piece := fh.read(size):
                yield piece

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def files(self) -> list[Path]:
        """Every stored file (temporary files included), for audits and tests."""
        return sorted(p for p in self.root.rglob("*") if p.is_file())

    def blobs(self) -> Iterator[StoredBlob]:
        for path in self.root.glob("*/*/*"):
            if _KEY.match(path.name):
                try:
                    mtime = path.stat().st_mtime
                except FileNotFoundError:  # deleted meanwhile
                    continue
                yield StoredBlob(path.name, datetime.fromtimestamp(mtime, UTC))

    def remove_temporary(self, older_than: datetime) -> int:
        removed = 0
        for path in self.root.glob(f"*/*/{TMP_PREFIX}*"):
            try:
                if datetime.fromtimestamp(path.stat().st_mtime, UTC) < older_than:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:  # renamed into place or removed meanwhile
                continue
        return removed


# -- S3 and compatible stores ---------------------------------------------------------------------
class S3BlobStore(BlobStore):
    """Blobs as objects ``<prefix><key>`` in one bucket. ``client`` is a boto3 S3 client."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def __repr__(self) -> str:
        return f"S3BlobStore(s3://{self.bucket}/{self.prefix})"

    @classmethod
    def connect(cls, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                region: str | None = None, access_key_id: str | None = None,
                secret_access_key: str | None = None) -> S3BlobStore:
        """A store over a new boto3 client; without keys boto3's own credential chain
        (environment, config files, instance role) applies. A custom endpoint (MinIO, Ceph,
        ...) is addressed path-style (``<endpoint>/<bucket>/<key>``)."""
        import boto3
        from botocore.config import Config

        config = Config(
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            retries={"max_attempts": 5, "mode": "standard"},
            max_pool_connections=32,
        )
        client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, region_name=region,
            aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key,
            config=config)
        return cls(client, bucket, prefix)

    def object_key(self, key: str) -> str:
        return self.prefix + check_key(key)

    @staticmethod
    def _status(exc: Exception) -> int | None:
        response = getattr(exc, "response", None) or {}
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if status is not None else None

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if self._status(exc) == 404:
                return False
            raise
        return True

    def put(self, data: bytes, suffix: str) -> PutResult:
        key = self.key_for(data, suffix)
        if self.exists(key):
            self._touch(key)
            return PutResult(key, created=False)
        # the same key always holds the same bytes, so a concurrent writer's PUT is harmless
        self.client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=data,
                               ContentLength=len(data))
        return PutResult(key, created=True)

    def _touch(self, key: str) -> None:
        """Renew LastModified (copy onto itself) so the sweep's grace starts again."""
        name = self.object_key(key)
        self.client.copy_object(Bucket=self.bucket, Key=name, MetadataDirective="REPLACE",
                                CopySource={"Bucket": self.bucket, "Key": name})

    def _get(self, key: str) -> Any:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))["Body"]
        except ClientError as exc:
            if self._status(exc) == 404:
                raise BlobMissing(key) from None
            raise

    def read(self, key: str) -> bytes:
        body = self._get(key)
        try:
            return body.read()
        finally:
            body.close()

    def chunks(self, key: str, size: int = CHUNK) -> Iterator[bytes]:
        body = self._get(key)
        try:
            yield from body.iter_chunks(size)
        finally:
            body.close()

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    def blobs(self) -> Iterator[StoredBlob]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            for item in page.get("Contents", []):
                name = item["Key"][len(self.prefix):]
                if _KEY.match(name):
                    yield StoredBlob(name, item["LastModified"].astimezone(UTC))

    def remove_temporary(self, older_than: datetime) -> int:
        """Abort multipart uploads under the prefix begun before ``older_than``."""
        removed = 0
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            for upload in page.get("Uploads", []):
                if upload["Initiated"].astimezone(UTC) < older_than:
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                    removed += 1
        return removed


def make_store(settings: Settings) -> BlobStore:
    """The store the settings ask for: S3 when a bucket is configured, else the local folder."""
    location = settings.s3_location
    if location is None:
        return LocalBlobStore(settings.storage_dir)
    bucket, prefix = location
    secret = settings.s3_secret_access_key
    return S3BlobStore.connect(
        bucket, prefix, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=secret.get_secret_value() if secret else None)
