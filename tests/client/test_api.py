"""kensa.contract.client against the real backend app (ASGI transport) and a refused
connection: typed records, plain-words errors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from client_testing import closed_port

from kensa.contract.client import ApiClient, ApiError, Query
from kensa.contract.schemas import (
    DetectorPublic,
    InspectionList,
    InspectionPublic,
    SamplePublic,
    StatsPublic,
)

pytestmark = pytest.mark.anyio


async def test_create_get_list_and_filter(backend, strips):
    api = backend.api
    good = await api.create_inspection(strips["good"], "good.png", station="a", operator="kim")
    bad = await api.create_inspection(strips["scratches"], "bad.png", station="b",
                                      operator="lee", note="edge")
    assert good.station == "a" and good.operator == "kim"
    assert bad.note == "edge"
    assert {good.verdict, bad.verdict} <= {"ok", "defect", "review"}
    assert bad.detectors and bad.detectors[0].name == "patchcore"

    assert isinstance(good, InspectionPublic) and isinstance(bad.id, uuid.UUID)
    fetched = await api.get_inspection(bad.id)
    assert fetched == bad  # the same record, typed, whichever way it was read
    assert (await api.get_inspection(str(bad.id))).id == bad.id

    everything = await api.list_inspections()
    assert isinstance(everything, InspectionList) and everything.total == 2
    assert {r.id for r in everything.items} == {good.id, bad.id}

    by_station = await api.list_inspections(Query(station="b"))
    assert [r.id for r in by_station.items] == [bad.id]

    defects = await api.list_inspections(Query(has_defect=True))
    expected = [r for r in (good, bad) if r.verdict == "defect"]
    assert defects.total == len(expected)
    assert everything.defect_ratio == pytest.approx(len(expected) / 2)

    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert (await api.list_inspections(Query(start=tomorrow))).total == 0

    page = await api.list_inspections(limit=1, offset=1)
    assert page.total == 2 and len(page.items) == 1


async def test_delete_restore_and_stats(backend, strips):
    api = backend.api
    record = await api.create_inspection(strips["patches"], "p.png")
    await api.create_inspection(strips["good2"], "g.png")
    stats = await api.stats(bucket="day")
    assert isinstance(stats, StatsPublic) and stats.totals.total == 2
    assert sum(b.total for b in stats.buckets) == 2

    await api.delete_inspection(record.id)
    assert (await api.list_inspections()).total == 1
    assert (await api.stats()).totals.total == 1
    restored = await api.restore_inspection(record.id)
    assert restored is None or (restored.id == record.id and restored.deleted_at is None)
    assert (await api.list_inspections()).total == 2


async def test_images_and_overlays(backend, strips):
    api = backend.api
    record = await api.create_inspection(strips["scratches"], "s.png")
    original = await api.image_bytes(record.id)
    overlay = await api.image_bytes(record.id, ("masks", "heatmap"))
    assert original[:4] == b"\x89PNG" or original[:2] == b"\xff\xd8"
    assert overlay[:4] == b"\x89PNG" or overlay[:2] == b"\xff\xd8"
    assert api.image_src(record.id, ("masks",)).startswith(
        f"/api/v1/inspections/{record.id}/overlay?layers=masks")


async def test_errors_are_plain_words(backend):
    api = backend.api
    with pytest.raises(ApiError) as missing:
        await api.get_inspection("00000000-0000-0000-0000-000000000000")
    assert missing.value.status == 404
    assert "does not exist" in missing.value.message

    with pytest.raises(ApiError) as refused:
        await api.create_inspection(b"this is not a picture", "notes.txt")
    assert refused.value.status is not None and 400 <= refused.value.status < 500
    assert not refused.value.unreachable
    assert refused.value.message  # the server's detail, not a stack trace


async def test_unreachable_server():
    api = ApiClient(f"http://127.0.0.1:{closed_port()}", timeout=5)
    try:
        with pytest.raises(ApiError) as err:
            await api.list_inspections()
        assert err.value.unreachable
        assert "Cannot reach the server" in err.value.message
        assert not await api.ready()
    finally:
        await api.aclose()


async def test_detectors_threshold_and_samples(backend):
    api = backend.api
    [detector] = await api.detectors()
    assert isinstance(detector, DetectorPublic) and detector.name == "patchcore"
    changed = await api.set_threshold("patchcore", 0.5)
    assert changed.threshold == pytest.approx(0.5)
    assert (await api.detectors())[0].threshold == pytest.approx(0.5)
    with pytest.raises(ApiError) as missing:
        await api.set_threshold("nonesuch", 1.0)
    assert missing.value.status == 404 and "nonesuch" in missing.value.message

    samples = await api.samples()
    assert samples and all(isinstance(s, SamplePublic) for s in samples)
    picture = await api.fetch_bytes(samples[0].image_url)
    assert picture[:4] == b"\x89PNG"
    assert api.src(samples[0].thumbnail_url) == samples[0].thumbnail_url  # same origin


def test_query_params():
    query = Query(start="2026-01-01", labels=("crazing", "patches"), has_defect=False,
                  verdict="review", station="s1")
    params = query.params()
    assert ("label", "crazing") in params and ("label", "patches") in params
    assert ("has_defect", "false") in params
    assert ("verdict", "review") in params and ("station", "s1") in params
    assert Query().params() == []
    assert httpx.QueryParams(params)["start"] == "2026-01-01"
