"""kensa.client.state: capture and the offline queue, history filters and paging, delete and undo,
charts; against the real backend app, and a real refused connection for "server down"."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from client_testing import closed_port

from kensa.client.components.agreement import summary, version_line
from kensa.client.offline_queue import PhotoQueue
from kensa.client.state import ClientSettings, HistoryFilter, explain
from kensa.contract.client import ApiClient
from kensa.contract.schemas import FindingPublic

pytestmark = pytest.mark.anyio


async def test_send_photo_shows_the_result(backend, strips, make_state):
    state = await make_state(backend.api)
    assert await state.send_photo() is None
    assert "photo first" in state.error

    state.set_photo("strip.png", strips["scratches"])
    record = await state.send_photo()
    assert record is not None
    assert state.route == "/result" and state.current == record
    assert state.photo is None and state.busy == ""
    saved = await backend.api.get_inspection(record.id)
    assert (saved.station, saved.operator) == ("line-7", "kim")
    if record.anomaly_score is not None:
        assert "heatmap" in state.layers


async def test_refused_photo_is_reported_not_queued(backend, make_state):
    state = await make_state(backend.api)
    state.set_photo("notes.txt", b"not an image")
    assert await state.send_photo() is None
    assert state.error.startswith("The server did not accept the photo")
    assert state.queue == [] and state.photo is not None  # still there to retry or replace


async def test_offline_photo_is_queued_on_disk_then_sent(backend, strips, make_state, tmp_path):
    offline = ApiClient(f"http://127.0.0.1:{closed_port()}", timeout=5)
    state = await make_state(offline)
    state.set_photo("a.png", strips["patches"])
    assert await state.send_photo(note="night shift") is None
    await offline.aclose()
    assert not state.online
    assert len(state.queue) == 1 and "saved on this device" in state.notice
    assert state.error == ""

    # The queue is a folder: a restarted app sees the same photo, bytes intact.
    reopened = PhotoQueue(tmp_path / "queue")
    [item] = reopened.items()
    assert (item.filename, item.station, item.operator, item.note) == (
        "a.png", "line-7", "kim", "night shift")
    assert reopened.read(item) == strips["patches"]

    # Still offline: nothing is lost, nothing sent.
    offline2 = ApiClient(f"http://127.0.0.1:{closed_port()}", timeout=5)
    state.api = offline2
    assert await state.flush_queue() == 0
    await offline2.aclose()
    assert len(state.queue) == 1

    # The server is back.
    state.api = backend.api
    assert await state.flush_queue() == 1
    assert state.queue == [] and state.online
    assert "Sent 1 queued photo" in state.notice
    [record] = (await backend.api.list_inspections()).items
    assert (record.station, record.operator, record.note) == (
        "line-7", "kim", "night shift")


async def test_queue_keeps_refused_photos_until_discarded(backend, strips, make_state):
    state = await make_state(backend.api)
    state.queue_store.add(b"garbage", "broken.jpg", "s", "o")
    state.queue_store.add(strips["good"], "fine.png", "s", "o")
    assert await state.flush_queue() == 1
    [kept] = state.queue
    assert kept.filename == "broken.jpg" and kept.error
    assert "refused the queued photo broken.jpg" in state.error
    assert await state.flush_queue() == 0  # refused items wait for a person
    state.retry_queued(kept.id)
    assert state.queue[0].error == ""
    state.discard_queued(kept.id)
    assert state.queue == [] and state.queue_store.items() == []


async def test_history_filters_and_paging(backend, strips, make_state):
    api = backend.api
    records = []
    for name, station in (("good", "a"), ("scratches", "a"), ("patches", "b"), ("good2", "b")):
        records.append(await api.create_inspection(strips[name], f"{name}.png", station=station))
    state = await make_state(api)
    state.page_size = 3
    await state.load_history()
    assert state.history_total == 4 and len(state.history) == 3 and state.has_more
    await state.load_history(more=True)
    assert len(state.history) == 4 and not state.has_more
    assert len({r.id for r in state.history}) == 4

    await state.set_filters(station="b")
    assert {r.station for r in state.history} == {"b"} and state.history_total == 2

    await state.set_filters(station="", has_defect=True)
    defective = [r for r in records if r.verdict == "defect"]
    assert state.history_total == len(defective)
    assert state.defect_ratio == (1.0 if defective else 0.0)

    await state.set_filters(has_defect=None, days=None)
    assert state.history_total == 4



async def test_delete_and_undo(backend, strips, make_state):
    api = backend.api
    record = await api.create_inspection(strips["patches"], "p.png")
    await api.create_inspection(strips["good"], "g.png")
    state = await make_state(api)
    await state.load_history()
    await state.open_detail(record.id)
    assert state.route == "/detail" and state.current.id == record.id

    assert await state.delete(record.id)
    assert state.route == "/history" and state.current is None
    assert record.id not in {r.id for r in state.history}
    assert state.history_total == 1
    assert (await api.list_inspections()).total == 1
    assert state.last_deleted == record.id

    assert await state.undo_delete()
    assert state.last_deleted is None and state.notice == "Inspection restored."
    assert record.id in {r.id for r in state.history}
    assert (await api.list_inspections()).total == 2
    assert not await state.undo_delete()  # nothing left to undo



async def test_charts_and_highlight(backend, strips, make_state):
    api = backend.api
    await api.create_inspection(strips["scratches"], "s.png")
    await api.create_inspection(strips["good"], "g.png")
    state = await make_state(api)
    await state.load_stats("week")
    assert state.bucket == "week" and state.stats.totals.total == 2
    state.toggle_highlight("anomaly")
    assert state.highlight == "anomaly"
    state.toggle_highlight("anomaly")
    assert state.highlight is None
    assert state.agreement is not None and state.agreement.totals.reviewed == 0
    assert summary(state.agreement.totals) == "No reviewed inspections in this period yet."


async def test_charts_show_machine_vs_person(backend, strips, make_state):
    """The Charts screen's agreement figures: each answer contradicts the machine, so every
    machine ``defect`` is a false alarm and every machine ``ok`` a miss."""
    api = backend.api
    made = [await api.create_inspection(strips[name], f"{name}.png", station="line-9")
            for name in ("scratches", "good", "patches", "good2")]
    answer = {"defect": "ok", "ok": "defect", "review": "ok"}
    for record in made:
        decision = answer[record.verdict]
        await api.review(record.id, decision, labels=["patches"] if decision == "defect" else ())
    alarms = sum(r.verdict == "defect" for r in made)
    misses = sum(r.verdict == "ok" for r in made)
    state = await make_state(api)
    state.filters = replace(state.filters, station="line-9")
    await state.load_stats("day")
    totals = state.agreement.totals
    assert (totals.reviewed, totals.false_alarms, totals.misses, totals.agreeing) == (
        4, alarms, misses, 0)
    assert totals.false_alarm_rate == (alarms / (4 - misses) if 4 - misses else None)
    buckets = state.agreement.buckets
    assert len(buckets) == 31 and buckets[-1].reviewed == 4  # 30 days back; all today
    assert sum(b.reviewed for b in buckets) == 4 and buckets[-1].false_alarms == alarms
    (version,) = state.agreement.by_version
    assert version.detector == made[0].detectors[0].name and version.reviewed == 4
    words = summary(totals)
    assert words.startswith("4 reviewed · agreed 0%") and f"misses {misses}" in words
    assert version_line(version).startswith(f"{version.detector} {version.version}: 4 reviewed")

    # another station's period has no reviews: the figures follow the filter
    state.filters = replace(state.filters, station="line-0")
    await state.load_stats("week")
    assert state.agreement.totals.reviewed == 0 and state.agreement.bucket == "week"


async def test_demo_flow(backend, strips, make_state):
    state = await make_state(backend.api)
    record = await state.demo_send("sample.png", strips["scratches"])
    assert record and state.demo_step == 3 and state.route == "/demo"
    await state.demo_show_history()
    assert state.demo_step == 4 and state.history[0].id == record.id
    assert state.stats.totals.total == 1
    state.demo_reset()
    assert state.demo_step == 1 and state.current is None

    # The sample strips come from the server, through the API client.
    await state.load_samples()
    assert [s.name for s in state.samples] == ["good", "pitted_surface", "crazing",
                                               "scratches", "patches"]
    sample = next(s for s in state.samples if s.title == "Scratches")
    record = await state.demo_send_sample(sample)
    assert record is not None and state.demo_step == 3 and state.current == record
    assert (await backend.api.get_inspection(record.id)).note == "demo booth"


def test_filter_query_and_settings():
    today = date(2026, 3, 10)
    query = HistoryFilter(days=7, labels=("crazing",), has_defect=True, station=" s1 ").query(today)
    assert (query.start, query.end) == ("2026-03-03", "2026-03-10")
    assert (HistoryFilter(days=0).query(today).start,
            HistoryFilter(days=0).query(today).end) == ("2026-03-10", "2026-03-10")
    assert query.station == "s1" and query.labels == ("crazing",)
    assert HistoryFilter(days=None).query(today).start is None
    toggled = HistoryFilter().toggle_label("patches").toggle_label("crazing")
    assert toggled.labels == ("patches", "crazing")
    assert toggled.toggle_label("patches").labels == ("crazing",)

    # an old stored role is dropped: the role is the server's word, not a setting
    assert ClientSettings.from_dict({"role": "admin", "theme": "neon", "x": 1}) == ClientSettings(
        theme="light")
    line = explain(FindingPublic(label="pitted_surface", score=0.87, area_px=1200,
                                 detector="unet"))
    assert line == "Pitted surface, over 1,200 pixels, score 0.87 (found by unet)."
