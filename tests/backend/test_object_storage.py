"""Both blob stores behind one interface (a folder, and S3 over HTTP against moto on loopback),
the API serving blobs from S3, and the startup sweep of what interrupted uploads left."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from backend_testing import Service, encode, make_settings, running_service

from kensa.backend.config import Settings
from kensa.backend.services.storage import (
    BlobMissing,
    BlobStore,
    LocalBlobStore,
    S3BlobStore,
    make_store,
)

GRACE_S = {"local": 600.0, "s3": 15.0}  # S3 times cannot be set back: the test waits there
# (8 s was too short: a loaded machine took longer to start the second service, so the young
# orphan had aged past the grace by the time of the sweep)


@pytest.fixture(params=["local", "s3"])
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> dict:
    if request.param == "local":
        return {}
    return request.getfixturevalue("s3_settings")


def open_store(tmp_path: Path, store_settings: dict) -> BlobStore:
    return make_store(Settings(data_dir=tmp_path / "data", **store_settings))


def test_the_settings_choose_the_store(tmp_path: Path, s3_settings: dict) -> None:
    local = make_store(Settings(data_dir=tmp_path / "data"))
    assert isinstance(local, LocalBlobStore) and local.root == tmp_path / "data" / "blobs"
    remote = make_store(Settings(data_dir=tmp_path, **s3_settings))
    assert isinstance(remote, S3BlobStore)
    bucket = s3_settings["storage_url"].removeprefix("s3://").split("/")[0]
    assert (remote.bucket, remote.prefix) == (bucket, "plant-1/blobs/")
    fields = {k: v for k, v in s3_settings.items() if k != "storage_url"}
    explicit = make_store(Settings(data_dir=tmp_path, s3_bucket=bucket, s3_prefix="p/", **fields))
    assert isinstance(explicit, S3BlobStore) and explicit.prefix == "p/"
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        Settings(storage_url="/var/blobs")
    with pytest.raises(ValueError, match="different places"):
        Settings(storage_url="s3://one/x", s3_bucket="two")


def test_put_read_stream_list_delete(tmp_path: Path, store_settings: dict) -> None:
    store = open_store(tmp_path, store_settings)
    data = os.urandom(700_000)  # several stream chunks
    first = store.put(data, ".PNG")
    assert first.created and first.key == BlobStore.key_for(data, "png")
    assert store.put(data, "png").created is False  # content-addressed: stored once
    assert store.exists(first.key) and store.read(first.key) == data
    pieces = list(store.opener(first.key))
    assert len(pieces) > 1 and b"".join(pieces) == data
    small = store.put(b"mask", "png")
    assert {b.key for b in store.blobs()} == {first.key, small.key}
    assert all(b.modified.tzinfo is not None for b in store.blobs())
    store.delete(first.key)
    store.delete(first.key)  # deleting twice is fine
    assert not store.exists(first.key)
    with pytest.raises(BlobMissing):
        store.read(first.key)
    with pytest.raises(BlobMissing):
        store.opener(first.key)
    assert [b.key for b in store.blobs()] == [small.key]
    with pytest.raises(ValueError):
        store.read("../" + small.key)


def test_s3_objects_live_under_the_prefix(tmp_path: Path, s3_settings: dict) -> None:
    store = open_store(tmp_path, s3_settings)
    assert isinstance(store, S3BlobStore)
    key = store.put(b"steel", "jpg").key
    listed = store.client.list_objects_v2(Bucket=store.bucket)["Contents"]
    assert [item["Key"] for item in listed] == [f"plant-1/blobs/{key}"]
    assert not (tmp_path / "data" / "blobs").exists() or not any(
        (tmp_path / "data" / "blobs").rglob("*.jpg"))


@pytest.mark.anyio
async def test_the_api_serves_blobs_from_s3(tmp_path: Path, model_dir: Path, strips,
                                           s3_settings: dict) -> None:
    settings = make_settings(tmp_path, model_dir, **s3_settings)
    async with running_service(settings) as svc:
        photo = encode(strips.defective(5, labels=["scratches"]).image)
        response = await svc.upload(photo, station="s3")
        assert response.status_code == 201, response.text
        record = response.json()
        image = await svc.client.get(record["image_url"])
        assert image.status_code == 200 and image.content == photo
        assert image.headers["content-type"] == "image/png"
        assert image.headers["cache-control"] == "private, max-age=86400"
        overlay = await svc.client.get(record["overlay_url"])
        assert overlay.status_code == 200 and overlay.content.startswith(b"\x89PNG")
        assert overlay.headers["cache-control"] == "private, max-age=86400"
        bare = await svc.client.get(record["overlay_url"], params={"layers": ""})
        assert bare.status_code == 200 and bare.content.startswith(b"\x89PNG")
        for finding in record["findings"]:
            if finding["mask_url"]:
                mask = await svc.client.get(finding["mask_url"])
                assert mask.status_code == 200 and mask.content.startswith(b"\x89PNG")
        store = svc.app.state.store
        assert isinstance(store, S3BlobStore)
        assert store.read(BlobStore.key_for(photo, "png")) == photo
        assert svc.files() == set()  # nothing in the local folder


def _age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


async def _swept(svc: Service) -> None:
    with anyio.fail_after(60):
        while svc.app.state.sweep_report is None:
            await anyio.sleep(0.05)


@pytest.mark.anyio
async def test_startup_sweeps_leftovers_but_keeps_referenced_and_young_blobs(
        tmp_path: Path, model_dir: Path, strips, database_url: str, store_settings: dict
) -> None:
    kind = "s3" if store_settings else "local"
    settings = make_settings(tmp_path, model_dir, database_url,
                             storage_sweep_grace_s=GRACE_S[kind], **store_settings)
    photo = encode(strips.good(2).image)
    async with running_service(settings, ready=True) as svc:
        record = (await svc.upload(photo)).json()
        # the overlay is drawn on its first GET and kept as a blob the record references
        assert (await svc.client.get(record["overlay_url"])).status_code == 200
        await _swept(svc)
        referenced = {b.key for b in svc.app.state.store.blobs()}
    store = make_store(settings)
    assert BlobStore.key_for(photo, "png") in referenced
    # what a process killed between writing blobs and committing leaves behind
    old_orphan = store.put(b"old orphan", "png").key
    old_tmp = young_tmp = None
    if isinstance(store, LocalBlobStore):
        shard = store.path(old_orphan).parent
        old_tmp, young_tmp = shard / ".tmp-old", shard / ".tmp-young"
        old_tmp.write_bytes(b"partial")
    else:
        assert isinstance(store, S3BlobStore)
        old_upload = store.client.create_multipart_upload(
            Bucket=store.bucket, Key=store.object_key(old_orphan))["UploadId"]
    if isinstance(store, LocalBlobStore):  # everything so far is now older than the grace
        for path in store.files():
            _age(path, 3600)
    else:
        time.sleep(GRACE_S[kind] + 1.0)
    young_orphan = store.put(b"another replica's upload, not committed yet", "png").key
    if young_tmp is not None:
        young_tmp.write_bytes(b"in flight")

    async with running_service(settings, ready=False) as svc:
        await _swept(svc)
        report = svc.app.state.sweep_report
        image = await svc.client.get(record["image_url"])
        assert image.status_code == 200 and image.content == photo
        overlay = await svc.client.get(record["overlay_url"])
        assert overlay.status_code == 200
    left = {b.key for b in store.blobs()}
    assert left == referenced | {young_orphan}
    assert report.orphans == 1 and report.temporary == 1 and report.kept == len(referenced)
    if isinstance(store, LocalBlobStore):
        assert not old_tmp.exists() and young_tmp.exists()
    else:
        # (moto reports a multipart upload's start time too coarsely to test a young one)
        uploads = store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
        assert old_upload not in [u["UploadId"] for u in uploads]


def test_rewriting_an_existing_blob_renews_its_age(tmp_path: Path,
                                                  store_settings: dict) -> None:
    """A new upload of content already stored restarts the grace, so the sweep cannot remove a
    blob a commit is about to reference."""
    store = open_store(tmp_path, store_settings)
    key = store.put(b"same bytes", "png").key
    if isinstance(store, LocalBlobStore):
        _age(store.path(key), 3600)
    else:
        time.sleep(1.1)
    (before,) = [b.modified for b in store.blobs()]
    assert store.put(b"same bytes", "png").created is False
    (after,) = [b.modified for b in store.blobs()]
    assert after > before and after > datetime.now(UTC) - timedelta(seconds=30)


def test_the_sweep_keeps_the_files_of_detector_versions(tmp_path: Path) -> None:
    """A version's artifact files are blobs referenced only from ``detector_version.files``
    (JSON): an old one must survive every restart's sweep."""
    from datetime import timedelta

    from sqlmodel import Session

    from kensa.backend import db
    from kensa.backend.records import DetectorVersion
    from kensa.backend.services.sweep import sweep

    engine = db.make_engine(f"sqlite:///{tmp_path / 'kensa.db'}")
    db.upgrade(engine)
    store = LocalBlobStore(tmp_path / "blobs")
    kept = store.put(b'{"config": 1}', "json").key
    orphan = store.put(b"nobody's", "bin").key
    with Session(engine) as session, session.begin():
        session.add(DetectorVersion(name="line-1", version="v1", kind="patchcore",
                                    files={"config.json": kept}))
    for path in store.files():
        _age(path, 3600)
    report = sweep(engine, store, timedelta(seconds=60))
    assert store.exists(kept) and not store.exists(orphan)
    assert (report.orphans, report.kept) == (1, 1)
    engine.dispose()
