"""The review loop through real HTTP: the queue, human verdicts beside the machine's,
re-review with history, the history filters, agreement figures, confirmed photos flowing into
datasets, a retrain from reviews, and bad input answered 4xx with nothing written."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import numpy as np
import pytest
from backend_testing import STRIP_SIZE, Service, encode, make_settings, running_service
from PIL import Image

from kensa.backend.jobs.retrain import held_out
from kensa.models.data.synthetic import SteelStripGenerator

pytestmark = pytest.mark.anyio
GEN = SteelStripGenerator(size=STRIP_SIZE, seed=23)
API = "/api/v1"


@pytest.fixture
async def every_one_queued(tmp_path: Path, model_dir: Path, database_url: str
                           ) -> AsyncIterator[Service]:
    """The service on each database, queueing every inspection (random share 1)."""
    settings = make_settings(tmp_path, model_dir, database_url, review_uncertain_share=0.0,
                             review_random_share=1.0)
    async with running_service(settings) as svc:
        yield svc


async def inspect(svc: Service, image: np.ndarray, station: str = "s1") -> dict:
    response = await svc.upload(encode(image), station=station)
    assert response.status_code == 201, response.text
    return response.json()


def mask_png(record: dict, box: tuple[int, int, int, int] = (10, 5, 40, 20)) -> bytes:
    mask = np.zeros((record["height"], record["width"]), np.uint8)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = 255
    return encode(mask)


def machine(record: dict) -> tuple:
    """What the machine said, to check a review leaves it as it was."""
    return (record["verdict"], record["anomaly_score"], record["findings"], record["runs"])


async def test_queue_verdicts_history_filters_agreement_and_datasets(
        every_one_queued: Service) -> None:
    svc = every_one_queued
    http = svc.client
    good = [await inspect(svc, GEN.good(i).image) for i in range(2)]
    bad = [await inspect(svc, GEN.defective(i).image) for i in range(2)]
    other = await inspect(svc, GEN.good(5).image, station="s2")
    everything = [*good, *bad, other]
    assert all(r["review_status"] == "open" and r["review"] is None for r in everything)

    queue = (await http.get(f"{API}/reviews", params={"status": "open"})).json()
    assert [i["inspection"]["id"] for i in queue["items"]] == [r["id"] for r in everything]
    assert queue["total"] == queue["open"] == 5
    assert {i["reason"] for i in queue["items"]} <= {"random", "review"}
    page = (await http.get(f"{API}/reviews", params={"station": "s1", "limit": 2,
                                                     "offset": 2})).json()
    assert [i["inspection"]["id"] for i in page["items"]] == [r["id"] for r in bad]
    assert page["total"] == page["open"] == 4

    # a human verdict: kept beside the machine's, which stays as it was
    response = await http.post(f"{API}/inspections/{good[0]['id']}/review",
                               json={"decision": "ok", "comment": "fine"})
    assert response.status_code == 200, response.text
    record = response.json()
    assert machine(record) == machine(good[0])
    assert record["review"]["decision"] == "ok" and record["review"]["by"] == "admin"
    assert record["review"]["comment"] == "fine" and record["review_status"] == "done"
    response = await http.post(
        f"{API}/inspections/{bad[0]['id']}/review",
        data={"decision": "defect", "labels": "scratches,dent", "comment": "deep"},
        files={"mask": ("m.png", mask_png(bad[0]), "image/png")})
    assert response.status_code == 200, response.text
    reviewed_bad = response.json()
    assert machine(reviewed_bad) == machine(bad[0])
    assert reviewed_bad["review"]["labels"] == ["scratches", "dent"]
    mask = await http.get(reviewed_bad["review"]["mask_url"])
    assert mask.status_code == 200 and mask.headers["content-type"] == "image/png"
    stored = np.asarray(Image.open(io.BytesIO(mask.content))).astype(bool)
    assert stored.shape == (bad[0]["height"], bad[0]["width"]) and stored.sum() == 30 * 15
    response = await http.post(f"{API}/inspections/{bad[1]['id']}/review",
                               json={"decision": "ok"})
    assert response.status_code == 200

    queue = (await http.get(f"{API}/reviews")).json()
    assert [i["inspection"]["id"] for i in queue["items"]] == [good[1]["id"], other["id"]]
    done = (await http.get(f"{API}/reviews", params={"status": "done"})).json()
    assert [i["inspection"]["id"] for i in done["items"]] == [good[0]["id"], bad[0]["id"],
                                                               bad[1]["id"]]
    assert done["open"] == 2 and all(i["status"] == "done" for i in done["items"])

    # confirmed photos are in the station's datasets
    sets = {d["name"]: d["counts"] for d in (await http.get(f"{API}/datasets")).json()}
    assert sets == {"s1-good": {"good": 2}, "s1-labelled": {"dent": 1, "scratches": 1}}

    # a re-review replaces the verdict, keeps the earlier one, and moves the photo
    response = await http.post(f"{API}/inspections/{good[0]['id']}/review",
                               json={"decision": "defect", "labels": ["scratches"]})
    assert response.status_code == 200
    assert machine(response.json()) == machine(good[0])
    reviews = (await http.get(f"{API}/inspections/{good[0]['id']}/reviews")).json()
    assert [(r["decision"], r["current"]) for r in reviews] == [("ok", False),
                                                               ("defect", True)]
    audit = (await http.get(f"{API}/inspections/{good[0]['id']}/history")).json()
    reviews_audited = [e for e in audit if e["action"] == "inspection.review"]
    assert [e["after"]["decision"] for e in reviews_audited] == ["ok", "defect"]
    assert reviews_audited[1]["before"]["decision"] == "ok"
    sets = {d["name"]: d["counts"] for d in (await http.get(f"{API}/datasets")).json()}
    assert sets == {"s1-good": {"good": 1}, "s1-labelled": {"dent": 1, "scratches": 2}}

    # history filters
    async def ids(**params) -> set[str]:
        response = await http.get(f"{API}/inspections", params=params)
        assert response.status_code == 200, response.text
        return {r["id"] for r in response.json()["items"]}

    reviewed = {good[0]["id"], bad[0]["id"], bad[1]["id"]}
    assert await ids(reviewed="true") == reviewed
    assert await ids(reviewed="false") == {good[1]["id"], other["id"]}
    assert await ids(human_verdict="defect") == {good[0]["id"], bad[0]["id"]}
    assert await ids(human_verdict="ok") == {bad[1]["id"]}
    verdicts = {r["id"]: r["verdict"] for r in everything}
    human = {good[0]["id"]: "defect", bad[0]["id"]: "defect", bad[1]["id"]: "ok"}
    disagree = {i for i, h in human.items() if verdicts[i] in ("ok", "defect")
                and verdicts[i] != h}
    assert await ids(disagreement="true") == disagree
    assert await ids(disagreement="false") == reviewed - disagree

    # agreement figures: machine vs human, overall, per version, per day
    response = await http.get(f"{API}/stats/agreement", params={"station": "s1"})
    assert response.status_code == 200, response.text
    figures = response.json()
    expected = {m: {"ok": 0, "defect": 0} for m in ("ok", "defect", "review")}
    for i, h in human.items():
        expected[verdicts[i]][h] += 1
    totals = figures["totals"]
    assert totals["matrix"] == expected and totals["reviewed"] == 3
    assert totals["false_alarms"] == expected["defect"]["ok"]
    assert totals["misses"] == expected["ok"]["defect"]
    assert totals["false_alarm_rate"] == expected["defect"]["ok"] / 1
    assert totals["miss_rate"] == expected["ok"]["defect"] / 2
    assert totals["agreement_rate"] == (expected["ok"]["ok"] + expected["defect"]["defect"]) / 3
    [version] = figures["by_version"]
    assert version["detector"] == "patchcore" and version["reviewed"] == 3
    assert version["version"] == good[0]["runs"][0]["version"]
    [day] = figures["buckets"]
    assert day["start"] == good[0]["created_at"][:10] and day["matrix"] == expected
    none = (await http.get(f"{API}/stats/agreement", params={"station": "s2"})).json()
    assert none["totals"]["reviewed"] == 0 and none["totals"]["miss_rate"] is None


async def test_bad_reviews_are_refused_and_write_nothing(tmp_path: Path, model_dir: Path
                                                         ) -> None:
    settings = make_settings(tmp_path, model_dir, review_uncertain_share=0.0,
                             review_random_share=1.0)
    async with running_service(settings) as svc:
        record = await inspect(svc, GEN.defective(3).image)
        url = f"{API}/inspections/{record['id']}/review"
        before, files = svc.counts(), svc.files()
        cases = [
            (f"{API}/inspections/00000000-0000-4000-8000-000000000000/review",
             {"json": {"decision": "ok"}}, 404),
            (f"{API}/inspections/not-a-uuid/review", {"json": {"decision": "ok"}}, 422),
            (url, {"json": {"decision": "maybe"}}, 422),
            (url, {"json": {}}, 422),
            (url, {"content": b"{not json", "headers": {"content-type": "application/json"}},
             422),
            (url, {"json": {"decision": "ok", "labels": ["scratches"]}}, 422),
            (url, {"json": {"decision": "defect", "labels": ["x" * 101]}}, 422),
            (url, {"json": {"decision": "defect", "labels": ["good"]}}, 422),
            (url, {"content": b"decision=ok",
                   "headers": {"content-type": "text/plain"}}, 415),
            (url, {"data": {"decision": "defect"},
                   "files": {"mask": ("m.png", encode(np.full((8, 8), 255, np.uint8)),
                                      "image/png")}}, 422),
            (url, {"data": {"decision": "defect"},
                   "files": {"mask": ("m.jpg", encode(np.full(
                       (record["height"], record["width"]), 255, np.uint8), "JPEG"),
                       "image/jpeg")}}, 415),
            (url, {"data": {"decision": "defect"},
                   "files": {"mask": ("m.png", b"\x89PNG\r\n\x1a\n broken", "image/png")}},
             422),
            (url, {"data": {"decision": "defect"},
                   "files": {"mask": ("m.png", encode(np.zeros(
                       (record["height"], record["width"]), np.uint8)), "image/png")}}, 422),
            (url, {"data": {"decision": "ok"},
                   "files": {"mask": ("m.png", mask_png(record), "image/png")}}, 422),
        ]
        for target, kwargs, status in cases:
            response = await svc.client.post(target, **kwargs)
            assert response.status_code == status, (kwargs, response.text)
            assert response.json()["detail"]
        assert svc.counts() == before and svc.files() == files
        fetched = (await svc.client.get(f"{API}/inspections/{record['id']}")).json()
        assert fetched["review"] is None and fetched["review_status"] == "open"
        for params in ({"status": "later"}, {"limit": 0}, {"offset": -1}):
            assert (await svc.client.get(f"{API}/reviews", params=params)).status_code == 422
        for params in ({"human_verdict": "review"}, {"reviewed": "perhaps"}):
            response = await svc.client.get(f"{API}/inspections", params=params)
            assert response.status_code == 422
        assert (await svc.client.get(f"{API}/inspections/{record['id']}/review/mask")
                ).status_code == 404


async def test_uncertain_share_queues_scores_nearest_the_threshold(tmp_path: Path,
                                                                   model_dir: Path) -> None:
    """Queued as uncertain exactly when fewer than the share of the station's earlier
    inspections lay nearer the threshold; nothing random."""
    share = 0.3
    settings = make_settings(tmp_path, model_dir, review_uncertain_share=share,
                             review_random_share=0.0,
                             review_stations={"quiet": {"uncertain_share": 0.0}})
    async with running_service(settings) as svc:
        images = [GEN.good(10 + i).image for i in range(6)] + [
            GEN.defective(10 + i).image for i in range(3)]
        records = [await inspect(svc, image) for image in images]
        quiet = [await inspect(svc, image, station="quiet") for image in images[:3]]
        queue = (await svc.client.get(f"{API}/reviews", params={"limit": 100})).json()
    reasons = {i["inspection"]["id"]: i["reason"] for i in queue["items"]}
    for n, record in enumerate(records):
        u = abs(record["anomaly_score"] - 1)
        earlier = [abs(r["anomaly_score"] - 1) for r in records[:n]]
        nearer = sum(1 for e in earlier if e < u)
        if record["verdict"] == "review":
            expected = "review"
        elif nearer < share * max(1, len(earlier)):
            expected = "uncertain"
        else:
            expected = None
        assert reasons.get(record["id"]) == expected, (n, u, earlier)
        assert record["review_status"] == ("open" if expected else None)
    assert "uncertain" in reasons.values() and len(reasons) < len(records) + 3
    assert all(reasons.get(r["id"]) in (None, "review") for r in quiet)


async def wait_job(svc: Service, job_id: str, timeout: float = 300) -> dict:
    deadline = anyio.current_time() + timeout
    while True:
        job = (await svc.client.get(f"{API}/jobs/{job_id}")).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        assert anyio.current_time() < deadline, job
        await anyio.sleep(0.2)


async def retrain(svc: Service, **config) -> dict:
    response = await svc.client.post(f"{API}/jobs", json={
        "kind": "retrain_from_reviews", "name": "patchcore", "config": config,
        "created_by": "tester"})
    assert response.status_code == 202, response.text
    return await wait_job(svc, response.json()["id"])


async def test_retrain_from_reviews_learns_a_confirmed_good_photo(tmp_path: Path,
                                                                  model_dir: Path) -> None:
    share = 0.5
    settings = make_settings(tmp_path, model_dir, review_uncertain_share=0.0,
                             review_random_share=1.0)
    async with running_service(settings) as svc:
        http = svc.client
        # a strip the machine flags that a person judges acceptable, outside the held-out share
        flagged = None
        for i in range(40):
            image = GEN.defective(100 + i).image
            record = await inspect(svc, image)
            if record["anomaly_score"] > 1.2 and not held_out(uuid.UUID(record["id"]), share):
                flagged = (image, record)
                break
        assert flagged is not None
        image, record = flagged
        assert (await http.post(f"{API}/inspections/{record['id']}/review",
                                json={"decision": "ok"})).status_code == 200
        others = [await inspect(svc, GEN.good(300 + i).image) for i in range(3)] + [
            await inspect(svc, GEN.defective(300 + i).image) for i in range(3)]
        for other, decision in zip(others, ["ok"] * 3 + ["defect"] * 3, strict=True):
            response = await http.post(f"{API}/inspections/{other['id']}/review",
                                       json={"decision": decision})
            assert response.status_code == 200
        kept_out = [o for o in [record, *others] if held_out(uuid.UUID(o["id"]), share)]
        learnable = [o for o in [record, *others[:3]]
                     if not held_out(uuid.UUID(o["id"]), share)]

        job = await retrain(svc, holdout_share=share)
        assert job["status"] == "succeeded", job["message"]
        metrics = job["metrics"]
        assert metrics["n_update"] == len(learnable) and metrics["parent"] == record[
            "runs"][0]["version"]
        assert metrics["held_out_reviews"]["n"] == len(kept_out)
        assert set(metrics["held_out_reviews"]) >= {"candidate", "active"}
        listed = (await http.get(f"{API}/detectors/patchcore/versions")).json()
        [candidate] = [v for v in listed if v["version"] == job["version"]]
        assert candidate["state"] == "candidate" and candidate["parent"] == metrics["parent"]

        # nothing changed before anyone activates it; after, the photo passes
        again = await inspect(svc, image)
        assert again["anomaly_score"] == pytest.approx(record["anomaly_score"], rel=1e-4)
        response = await http.post(
            f"{API}/detectors/patchcore/versions/{job['version']}/activate")
        assert response.status_code == 200, response.text
        again = await inspect(svc, image)
        assert again["runs"][0]["version"] == job["version"]
        assert again["anomaly_score"] < 1.0 and again["verdict"] == "ok"
        first = (await http.get(f"{API}/inspections/{record['id']}")).json()
        assert machine(first) == machine(record)  # the old record keeps its machine verdict

        # learnt photos are not learnt twice; bad requests are refused
        job = await retrain(svc, holdout_share=share)
        assert job["status"] == "failed" and "no newly confirmed good" in job["message"]
        jobs_before = svc.count("job")
        for body, status in (
                ({"kind": "retrain_from_reviews", "name": "nope"}, 404),
                ({"kind": "retrain_from_reviews", "name": "patchcore",
                  "config": {"holdout_share": 1.5}}, 422),
                ({"kind": "forget", "name": "patchcore"}, 422),
                ({"kind": "train", "name": "patchcore"}, 422)):
            response = await http.post(f"{API}/jobs", json=body)
            assert response.status_code == status, response.text
        assert svc.count("job") == jobs_before
