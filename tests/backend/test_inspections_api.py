"""The inspection endpoints end to end, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from backend_testing import Service, encode
from PIL import Image

from kensa.backend.services import rollups

pytestmark = pytest.mark.anyio


def parse_time(text: str) -> datetime:
    assert text.endswith("Z") or text.endswith("+00:00"), text
    return datetime.fromisoformat(text)


async def test_upload_returns_the_full_record(service: Service, strips) -> None:
    strip = strips.defective(1, labels=["scratches"])
    before = datetime.now(UTC)
    response = await service.upload(encode(strip.image), station="line-1", operator="aki",
                                    note="first coil")
    assert response.status_code == 201, response.text
    record = response.json()
    uuid.UUID(record["id"])
    assert before - timedelta(seconds=1) <= parse_time(record["created_at"]) <= \
        datetime.now(UTC) + timedelta(seconds=1)
    assert record["verdict"] in {"ok", "review", "defect"}
    assert (record["width"], record["height"]) == (256, 128)
    assert (record["station"], record["operator"], record["note"]) == ("line-1", "aki",
                                                                        "first coil")
    assert record["deleted_at"] is None and record["notice"] is None
    assert record["detectors"] == [{"name": "patchcore", "version": record["runs"][0]["version"]}]
    run = record["runs"][0]
    assert run["detector"] == "patchcore" and run["threshold"] > 0
    assert record["anomaly_score"] == pytest.approx(run["anomaly_score"] / run["threshold"])
    assert set(run["timings_ms"]) >= {"model"}
    for finding in record["findings"]:
        assert finding["label"] == "anomaly" and finding["detector"] == "patchcore"
        if finding["bbox"] is not None:
            x0, y0, x1, y1 = finding["bbox"]
            assert 0 <= x0 < x1 <= 256 and 0 <= y0 < y1 <= 128
    assert record["image_url"] == f"/api/v1/inspections/{record['id']}/image"
    assert record["overlay_url"] == f"/api/v1/inspections/{record['id']}/overlay"
    # the stored record reads back identically
    again = await service.client.get(f"/api/v1/inspections/{record['id']}")
    assert again.status_code == 200
    assert again.json() == {**record, "notice": None}
    assert service.counts()["inspection"] == 1


async def test_defect_strip_is_flagged_and_good_strip_is_not_worse(service: Service,
                                                                   strips) -> None:
    bad = (await service.upload(encode(strips.defective(3, labels=["patches"]).image))).json()
    good = (await service.upload(encode(strips.good(3).image))).json()
    assert bad["verdict"] == "defect"
    assert bad["findings"] and bad["labels"] == ["anomaly"]
    assert good["anomaly_score"] < bad["anomaly_score"]


async def test_image_is_returned_byte_for_byte(service: Service, strips) -> None:
    jpeg = encode(strips.good(4).image, "JPEG", quality=90)
    record = (await service.upload(jpeg, name="x.jpg", content_type="image/jpeg")).json()
    response = await service.client.get(record["image_url"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content == jpeg


async def test_overlay_and_layers(service: Service, strips) -> None:
    strip = strips.defective(5, labels=["crazing"])
    record = (await service.upload(encode(strip.image))).json()
    default = await service.client.get(record["overlay_url"])
    assert default.status_code == 200 and default.headers["content-type"] == "image/png"
    overlay = np.asarray(Image.open(io.BytesIO(default.content)).convert("RGB"))
    assert overlay.shape == (128, 256, 3)
    assert not np.array_equal(overlay, strip.image)  # evidence was drawn
    rendered = {}
    for layers in ("heatmap", "masks", "masks,heatmap,gradcam,boxes"):
        response = await service.client.get(record["overlay_url"], params={"layers": layers})
        assert response.status_code == 200, response.text
        rendered[layers] = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
        assert rendered[layers].shape == (128, 256, 3)
    assert not np.array_equal(rendered["heatmap"], rendered["masks"])
    # re-rendering every layer from the stored masks/maps reproduces the stored overlay
    diff = np.abs(rendered["masks,heatmap,gradcam,boxes"].astype(int) - overlay.astype(int))
    assert np.mean(diff) < 1.0
    bad = await service.client.get(record["overlay_url"], params={"layers": "masks,xray"})
    assert bad.status_code == 422 and "xray" in json.dumps(bad.json()["detail"])


async def test_finding_masks_are_stored_at_image_size(service: Service, strips) -> None:
    record = (await service.upload(encode(strips.defective(6, labels=["patches"]).image))
              ).json()
    with_masks = [f for f in record["findings"] if f["mask_url"]]
    assert with_masks, record["findings"]
    response = await service.client.get(with_masks[0]["mask_url"])
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    mask = np.asarray(Image.open(io.BytesIO(response.content))).astype(bool)
    assert mask.shape == (128, 256)
    assert int(mask.sum()) == with_masks[0]["area_px"]
    x0, y0, x1, y1 = with_masks[0]["bbox"]
    ys, xs = np.nonzero(mask)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x0, y0, x1, y1)
    missing = await service.client.get(
        f"/api/v1/inspections/{record['id']}/findings/999999/mask")
    assert missing.status_code == 404


async def test_identical_photos_are_stored_once(service: Service, strips) -> None:
    data = encode(strips.good(8).image)
    first = (await service.upload(data)).json()
    files_after_first = service.files()
    second = (await service.upload(data)).json()
    assert first["id"] != second["id"]
    assert service.files() == files_after_first  # same photo, same overlay, same maps
    assert service.count("inspection") == 2


async def test_unknown_ids_are_404(service: Service) -> None:
    missing = uuid.uuid4()
    for method, path in [("GET", f"/api/v1/inspections/{missing}"),
                         ("GET", f"/api/v1/inspections/{missing}/image"),
                         ("GET", f"/api/v1/inspections/{missing}/overlay"),
                         ("DELETE", f"/api/v1/inspections/{missing}"),
                         ("POST", f"/api/v1/inspections/{missing}/restore")]:
        response = await service.client.request(method, path)
        assert response.status_code == 404, (method, path)
        assert str(missing) in response.json()["detail"]
    assert (await service.client.get("/api/v1/inspections/not-a-uuid")).status_code == 422


async def test_soft_delete_and_restore(service: Service, strips) -> None:
    keep = (await service.upload(encode(strips.good(9).image))).json()
    gone = (await service.upload(encode(strips.defective(9, labels=["scratches"]).image))
            ).json()
    files = service.files()
    response = await service.client.delete(f"/api/v1/inspections/{gone['id']}")
    assert response.status_code == 204 and response.content == b""
    listed = (await service.client.get("/api/v1/inspections")).json()
    assert [i["id"] for i in listed["items"]] == [keep["id"]] and listed["total"] == 1
    everything = (await service.client.get("/api/v1/inspections",
                                           params={"include_deleted": "true"})).json()
    assert {i["id"] for i in everything["items"]} == {keep["id"], gone["id"]}
    deleted = (await service.client.get(f"/api/v1/inspections/{gone['id']}")).json()
    assert deleted["deleted_at"] is not None
    parse_time(deleted["deleted_at"])
    assert service.files() == files  # soft: nothing removed
    # deleting twice is harmless; restore brings it back
    assert (await service.client.delete(f"/api/v1/inspections/{gone['id']}")).status_code == 204
    restored = await service.client.post(f"/api/v1/inspections/{gone['id']}/restore")
    assert restored.status_code == 200 and restored.json()["deleted_at"] is None
    assert restored.json()["id"] == gone["id"]
    assert (await service.client.get("/api/v1/inspections")).json()["total"] == 2


async def _seed(service: Service, strips) -> dict[str, dict]:
    """Four inspections with known stations, verdicts and (rewritten) times."""
    made = {
        "good_a": await service.upload(encode(strips.good(20).image), station="A"),
        "bad_a": await service.upload(encode(strips.defective(21, labels=["patches"]).image),
                                      station="A"),
        "bad_b": await service.upload(encode(strips.defective(22, labels=["crazing"]).image),
                                      station="B"),
        "good_b": await service.upload(encode(strips.good(23).image), station="B"),
    }
    records = {k: r.json() for k, r in made.items()}
    times = {"good_a": datetime(2026, 3, 1, 8, 0, tzinfo=UTC),
             "bad_a": datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC),
             "bad_b": datetime(2026, 3, 2, 0, 0, 1, tzinfo=UTC),
             "good_b": datetime(2026, 3, 9, 12, 0, tzinfo=UTC)}
    with service.engine.begin() as conn:  # place them in time (the API stamps "now")
        for key, when in times.items():
            conn.execute(sa.text("UPDATE inspection SET created_at = :t WHERE id = :i"),
                         {"t": when, "i": service.db_id(records[key]["id"])})
        rollups.rebuild(conn)  # the days moved behind the service's back
    assert records["bad_a"]["verdict"] == records["bad_b"]["verdict"] == "defect"
    return records


async def _ids(service: Service, **params) -> list[str]:
    response = await service.client.get("/api/v1/inspections", params=params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def test_list_filters(service: Service, strips) -> None:
    r = await _seed(service, strips)
    ids = {k: v["id"] for k, v in r.items()}

    def having(verdicts: set[str]) -> set[str]:
        return {ids[k] for k in ids if r[k]["verdict"] in verdicts}

    # newest first
    assert await _ids(service) == [ids["good_b"], ids["bad_b"], ids["bad_a"], ids["good_a"]]
    # a date `end` includes that whole day; datetimes are exact
    assert set(await _ids(service, start="2026-03-01", end="2026-03-01")) == {
        ids["good_a"], ids["bad_a"]}
    assert set(await _ids(service, start="2026-03-01T12:00:00Z", end="2026-03-02")) == {
        ids["bad_a"], ids["bad_b"]}
    assert set(await _ids(service, end="2026-03-01T08:00:00+00:00")) == {ids["good_a"]}
    assert set(await _ids(service, start="2026-03-02T02:00:00+02:00",
                          end="2026-03-02T00:00:01")) == {ids["bad_b"]}
    assert set(await _ids(service, station="A")) == {ids["good_a"], ids["bad_a"]}
    assert set(await _ids(service, has_defect="true")) == having({"defect"})
    assert set(await _ids(service, has_defect="false")) == having({"ok", "review"})
    for verdict in ("ok", "review", "defect"):
        assert set(await _ids(service, verdict=verdict)) == having({verdict})
    with_findings = {ids[k] for k in ids if r[k]["findings"]}
    assert set(await _ids(service, label="anomaly")) == with_findings
    assert set(await _ids(service, label=["no-such", "anomaly"])) == with_findings
    assert await _ids(service, label="no-such") == []
    assert len(await _ids(service, detector="patchcore")) == 4
    assert await _ids(service, detector="other") == []
    # paging keeps order; total and defect_ratio cover the whole filtered set
    page = (await service.client.get("/api/v1/inspections",
                                     params={"limit": 2, "offset": 1})).json()
    assert [i["id"] for i in page["items"]] == [ids["bad_b"], ids["bad_a"]]
    assert page["total"] == 4
    assert page["defect_ratio"] == pytest.approx(len(having({"defect"})) / 4)
    station_b = (await service.client.get("/api/v1/inspections", params={"station": "B"})
                 ).json()
    expected_b = len(having({"defect"}) & {ids["bad_b"], ids["good_b"]}) / 2
    assert station_b["total"] == 2 and station_b["defect_ratio"] == pytest.approx(expected_b)
    empty = (await service.client.get("/api/v1/inspections", params={"station": "Z"})).json()
    assert empty == {"items": [], "total": 0, "defect_ratio": None, "next_cursor": None}


@pytest.mark.parametrize("params", [
    {"start": "yesterday"}, {"end": "2026-13-01"}, {"verdict": "bad"}, {"has_defect": "maybe"},
    {"limit": 0}, {"limit": 501}, {"offset": -1}, {"start": "2026-03-02", "end": "2026-03-01"},
])
async def test_bad_filters_are_422(service: Service, params: dict) -> None:
    response = await service.client.get("/api/v1/inspections", params=params)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


async def test_stats_buckets(service: Service, strips) -> None:
    r = await _seed(service, strips)
    bad = {k: int(v["verdict"] == "defect") for k, v in r.items()}
    day = (await service.client.get("/api/v1/stats", params={"bucket": "day"})).json()
    assert [b["start"] for b in day["buckets"]] == [f"2026-03-0{d}" for d in range(1, 10)]
    by_day = {b["start"]: b for b in day["buckets"]}
    assert (by_day["2026-03-01"]["total"], by_day["2026-03-01"]["defective"]) == (
        2, bad["good_a"] + bad["bad_a"])
    assert (by_day["2026-03-02"]["total"], by_day["2026-03-02"]["defective"]) == (1, 1)
    assert by_day["2026-03-05"] == {"start": "2026-03-05", "total": 0, "defective": 0,
                                    "by_label": {}}
    assert by_day["2026-03-02"]["by_label"] == {"anomaly": 1}
    n_bad = sum(bad.values())
    with_findings = sum(1 for v in r.values() if v["findings"])
    assert day["totals"] == {"total": 4, "defective": n_bad, "defect_ratio": n_bad / 4,
                             "by_label": {"anomaly": with_findings}}
    week = (await service.client.get("/api/v1/stats", params={"bucket": "week"})).json()
    # 2026-03-01 is a Sunday: it closes the week that starts on Monday 2026-02-23
    assert [(b["start"], b["total"], b["defective"]) for b in week["buckets"]] == [
        ("2026-02-23", 2, bad["good_a"] + 1), ("2026-03-02", 1, 1),
        ("2026-03-09", 1, bad["good_b"])]
    month = (await service.client.get("/api/v1/stats", params={"bucket": "month"})).json()
    assert [(b["start"], b["total"]) for b in month["buckets"]] == [("2026-03-01", 4)]
    # filters and range bounds
    ranged = (await service.client.get("/api/v1/stats", params={
        "bucket": "day", "start": "2026-02-27", "end": "2026-03-02", "station": "A"})).json()
    assert [(b["start"], b["total"]) for b in ranged["buckets"]] == [
        ("2026-02-27", 0), ("2026-02-28", 0), ("2026-03-01", 2), ("2026-03-02", 0)]
    assert ranged["totals"]["total"] == 2
    by_detector = (await service.client.get("/api/v1/stats",
                                            params={"detector": "nothing"})).json()
    assert by_detector["buckets"] == []
    assert by_detector["totals"] == {"total": 0, "defective": 0, "defect_ratio": None,
                                     "by_label": {}}
    # deleted inspections drop out of the statistics
    await service.client.delete(f"/api/v1/inspections/{r['bad_b']['id']}")
    after = (await service.client.get("/api/v1/stats", params={"bucket": "month"})).json()
    assert after["totals"]["total"] == 3 and after["totals"]["defective"] == n_bad - 1
    for bad_params in ({"bucket": "year"}, {"start": "soon"},
                       {"bucket": "day", "start": "2000-01-01", "end": "2026-01-01"}):
        response = await service.client.get("/api/v1/stats", params=bad_params)
        assert response.status_code == 422, (bad_params, response.text)


async def test_stats_with_label_and_detector_filters(service: Service, strips) -> None:
    """The Charts screen sends the label filter; it once answered 500 (SQLAlchemy correlated
    the label subquery away because the stats queries join findings themselves)."""
    r = await _seed(service, strips)
    labelled = [v for v in r.values() if "anomaly" in v["labels"]]
    response = await service.client.get("/api/v1/stats", params=[
        ("bucket", "day"), ("label", "anomaly"), ("label", "no-such-label")])
    assert response.status_code == 200, response.text
    totals = response.json()["totals"]
    assert totals["total"] == len(labelled)
    assert totals["by_label"] == ({"anomaly": len(labelled)} if labelled else {})
    name = r["good_a"]["detectors"][0]["name"]
    both = await service.client.get("/api/v1/stats", params={"label": "anomaly",
                                                             "detector": name})
    assert both.status_code == 200 and both.json()["totals"]["total"] == len(labelled)
    none = await service.client.get("/api/v1/stats", params={"label": "no-such-label"})
    assert none.status_code == 200 and none.json()["totals"] == {
        "total": 0, "defective": 0, "defect_ratio": None, "by_label": {}}
