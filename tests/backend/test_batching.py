"""Dynamic batching: concurrent requests for one detector run as one batch, with the results
one request at a time gives; a lone request never waits for company."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from backend_testing import encode, make_settings, running_service

from kensa.backend.services.inference import DetectorPool
from kensa.models.types import Detection

pytestmark = pytest.mark.anyio
N = 8


def _same(batched: Detection, alone: Detection) -> None:
    """Identical decisions, findings and masks; float scores as batched convolutions round
    them (float32: a relative 1e-5)."""
    assert batched.verdict == alone.verdict and batched.labels == alone.labels
    assert batched.anomaly_score == pytest.approx(alone.anomaly_score, rel=1e-5)
    assert batched.threshold == alone.threshold and batched.runtime == alone.runtime
    assert [f.bbox for f in batched.findings] == [f.bbox for f in alone.findings]
    assert [f.area_px for f in batched.findings] == [f.area_px for f in alone.findings]
    for a, b in zip(batched.findings, alone.findings, strict=True):
        assert a.score == pytest.approx(b.score, rel=1e-5)
        assert (a.mask is None) == (b.mask is None)
        if a.mask is not None:
            assert np.array_equal(a.mask, b.mask)
    for a, b in zip(batched.evidence, alone.evidence, strict=True):
        assert (a.kind, a.label, a.scale) == (b.kind, b.label, b.scale)
        np.testing.assert_allclose(a.values, b.values, rtol=0, atol=1e-4 * (a.scale[1]
                                                                            - a.scale[0]))


def _photos(strips) -> list[np.ndarray]:
    return [strips.defective(i).image if i % 2 else strips.good(i).image for i in range(N)]


async def test_concurrent_requests_are_batched_with_unbatched_results(model_dir: Path,
                                                                      strips) -> None:
    batched = DetectorPool.load(model_dir, concurrency=1, batch_max=N, batch_wait_ms=500)
    plain = DetectorPool.load(model_dir, concurrency=1)
    photos = _photos(strips)
    loaded = batched.get("patchcore")
    results = await asyncio.gather(*(batched.run(p, [loaded]) for p in photos))
    sizes = batched.batcher(loaded).sizes
    assert sum(n * count for n, count in sizes.items()) == N
    assert max(sizes) > 1, sizes  # they really ran together
    for photo, (detection,) in zip(photos, results, strict=True):
        (alone,) = await plain.run(photo, [plain.get("patchcore")])
        _same(detection, alone)


async def test_a_lone_request_runs_at_once(model_dir: Path, strips) -> None:
    pool = DetectorPool.load(model_dir, concurrency=2, batch_max=N, batch_wait_ms=60_000)
    loaded = pool.get("patchcore")
    photo = _photos(strips)[1]
    # with a minute's wait, this returns only because nobody else is in flight
    (detection,) = await asyncio.wait_for(pool.run(photo, [loaded]), timeout=50)
    _same(detection, loaded.detector(photo))
    assert pool.batcher(loaded).sizes == {1: 1}


async def test_a_failing_batch_fails_each_of_its_requests(model_dir: Path, strips) -> None:
    pool = DetectorPool.load(model_dir, concurrency=1, batch_max=N, batch_wait_ms=500)
    loaded = pool.get("patchcore")
    bad = np.zeros((4, 4), np.uint8)  # not an RGB photo: the detector raises
    results = await asyncio.gather(*(pool.run(bad, [loaded]) for _ in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(r, Exception) for r in results), results
    (detection,) = await pool.run(_photos(strips)[0], [loaded])  # the pool still serves
    assert detection.detector == "patchcore"


async def test_batched_uploads_store_the_records_unbatched_uploads_do(
        tmp_path: Path, model_dir: Path, strips) -> None:
    photos = [encode(p) for p in _photos(strips)]

    async def records(name: str, **settings) -> list[dict]:
        (tmp_path / name).mkdir()
        config = make_settings(tmp_path / name, model_dir, **settings)
        async with running_service(config) as svc:
            responses = await asyncio.gather(*(svc.upload(p) for p in photos))
            assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
            return [r.json() for r in responses]

    batched = await records("batched", batch_max=N, batch_wait_ms=200, inference_concurrency=1)
    plain = await records("plain", batch_max=1)
    for a, b in zip(batched, plain, strict=True):
        assert (a["verdict"], a["labels"]) == (b["verdict"], b["labels"])
        assert a["anomaly_score"] == pytest.approx(b["anomaly_score"], rel=1e-5)
        assert [f["bbox"] for f in a["findings"]] == [f["bbox"] for f in b["findings"]]
        assert [r["runtime"] for r in a["runs"]] == ["torch"]


def test_batching_is_on_by_default_only_on_a_gpu(tmp_path: Path) -> None:
    """Measured (docs/RESULTS.md, issue 12): on two CPU cores one batch of 8 loses to two single
    runs side by side, so the default batches on a GPU only; a setting always wins."""
    from kensa.backend.config import Settings, effective_batch_max

    def make(**kw):
        return Settings(data_dir=tmp_path, model_dir=tmp_path / "m", **kw)

    assert effective_batch_max(make(device="cpu")) == 1
    assert effective_batch_max(make(device="cuda:0")) == 8
    assert effective_batch_max(make(device="cpu", batch_max=4)) == 4
