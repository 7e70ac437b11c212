"""The content-addressed blob store."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kensa.backend.services.storage import LocalBlobStore


def test_put_is_content_addressed_sharded_and_deduplicated(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    data = b"steel" * 1000
    first = store.put(data, ".PNG")
    digest = hashlib.sha256(data).hexdigest()
    assert first.key == f"{digest}.png" and first.created
    assert store.path(first.key) == tmp_path / "blobs" / digest[:2] / digest[2:4] / first.key
    assert store.read(first.key) == data
    second = store.put(data, "png")
    assert second.key == first.key and not second.created
    assert store.files() == [store.path(first.key)]
    store.delete(first.key)
    assert not store.exists(first.key)
    store.delete(first.key)  # deleting twice is fine


def test_concurrent_writers_of_the_same_bytes_leave_one_file(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    data = bytes(range(256)) * 4096
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: store.put(data, "bin"), range(32)))
    assert {r.key for r in results} == {results[0].key}
    assert store.files() == [store.path(results[0].key)]  # no temporary files left
    assert store.read(results[0].key) == data


@pytest.mark.parametrize("key", ["../etc/passwd", "abc.png", "0" * 64, "0" * 64 + ".p/ng"])
def test_keys_are_validated(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError):
        LocalBlobStore(tmp_path).path(key)
