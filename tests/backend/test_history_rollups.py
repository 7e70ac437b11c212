"""History rollups (issue 12): the stats and the list's ``total`` read per-day rollup rows; after
a random mix of bulk inserts, uploads through the API, soft deletes, restores, reviews and
shadow runs they equal the exact aggregates over the records, and the incrementally kept rows
equal a rebuild from scratch. On SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import random
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from backend_testing import Service, encode
from sqlmodel import Session

from kensa.backend import db
from kensa.backend.api.routes.inspections import parse_when
from kensa.backend.records import InspectionRollup
from kensa.backend.services import inspections as history
from kensa.backend.services import rollups, versions
from kensa.models.types import Detection, Task, Verdict

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import seed_history

pytestmark = pytest.mark.anyio
API = "/api/v1"
SINGLE = [  # one filter each; the random combinations merge one to three of them
    {"station": "line-1"}, {"station": "line-2"}, {"station": "kiosk"}, {"verdict": "defect"},
    {"verdict": "ok"}, {"has_defect": "false"}, {"has_defect": "true"},
    {"include_deleted": "true"}, {"reviewed": "true"}, {"reviewed": "false"},
    {"human_verdict": "ok"}, {"human_verdict": "defect"}, {"disagreement": "true"},
    {"disagreement": "false"}, {"label": "scratch"}, {"label": ["scratch", "inclusion"]},
    {"detector": "classifier"}, {"detector": "patchcore"}, {"detector": "shadow-padim"},
    {"operator": "op03"}, {"operator": "alice"},
    {"start": "2026-03-01", "end": "2026-05-31"},  # whole days: rollups only
    {"start": "2026-03-01T07:30:00", "end": "2026-05-31T13:00:00"},  # partial ends
    {"start": "2026-04-10T01:00:00", "end": "2026-04-10T23:00:00"},  # within one day
    {"start": "2026-11-20T12:00:00"}, {"end": "2026-02-01T06:00:00"},
]


def _filters(params: dict[str, Any]) -> history.Filters:
    """The filters the API parses from ``params`` (the exact reference path takes these)."""
    def flag(name: str) -> bool | None:
        return None if name not in params else params[name] == "true"

    labels = params.get("label", [])
    return history.Filters(
        start=parse_when(params.get("start"), "start"),
        end=parse_when(params.get("end"), "end", end=True),
        labels=[labels] if isinstance(labels, str) else list(labels),
        verdict=params.get("verdict"), has_defect=flag("has_defect"),
        station=params.get("station"), operator=params.get("operator"),
        detector=params.get("detector"), include_deleted=bool(flag("include_deleted")),
        reviewed=flag("reviewed"), human_verdict=params.get("human_verdict"),
        disagreement=flag("disagreement"))


def _kept(conn: sa.Connection) -> dict[tuple, int]:
    rows = conn.execute(sa.select(InspectionRollup.__table__)).all()
    return {tuple(r[:-1]): r[-1] for r in rows if r[-1]}


def _kept_equals_rebuilt(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        kept = _kept(conn)
        conn.rollback()
        with conn.begin() as transaction:  # rebuilt inside a transaction rolled back
            rollups.rebuild(conn)
            rebuilt = _kept(conn)
            transaction.rollback()
    assert kept == rebuilt
    assert all(n > 0 for n in kept.values())  # never counted out more than counted in


async def _check(service: Service, params: dict[str, Any], bucket: str) -> None:
    """Stats and the list's total/defect_ratio through the API == the exact aggregates."""
    filters = _filters(params)
    response = await service.client.get(f"{API}/stats", params={**params, "bucket": bucket})
    assert response.status_code == 200, (params, response.text)
    exact = history.stats(service.engine, filters, bucket, exact=True)
    assert response.json() == exact.model_dump(mode="json"), (params, bucket)
    page = (await service.client.get(f"{API}/inspections", params={**params, "limit": 5}))
    assert page.status_code == 200, (params, page.text)
    with Session(service.engine) as session:
        total, defective = history._count_rows(session, filters)
    body = page.json()
    assert body["total"] == total, params
    assert body["defect_ratio"] == (defective / total if total else None), params
    assert len(body["items"]) == min(5, total)


async def _upload(service: Service, image: bytes, rng: random.Random) -> str:
    form = {k: v for k, v in (("station", rng.choice(["line-1", "kiosk", ""])),
                              ("operator", rng.choice(["alice", "op03", ""]))) if v}
    response = await service.upload(image, **form)
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def _operate(service: Service, rng: random.Random, ids: list[str], images: list[bytes]
                   ) -> None:
    """One random change of the kinds that move inspections between rollup rows."""
    op = rng.choice(["upload", "delete", "delete", "restore", "review", "review", "shadow"])
    record_id = rng.choice(ids)
    if op == "upload":
        ids.append(await _upload(service, rng.choice(images), rng))
    elif op == "delete":
        response = await service.client.delete(f"{API}/inspections/{record_id}")
        assert response.status_code == 204
    elif op == "restore":
        response = await service.client.post(f"{API}/inspections/{record_id}/restore")
        assert response.status_code == 200
    elif op == "review":
        decision = rng.choice(["ok", "defect"])
        body = {"decision": decision, "labels": ["scratch"] if decision == "defect" else []}
        response = await service.client.post(f"{API}/inspections/{record_id}/review",
                                             json=body)
        assert response.status_code in (200, 404), response.text  # 404: deleted
    else:  # a shadow version's run: the inspection gains a detector
        detection = Detection(detector=rng.choice(["shadow-padim", "patchcore"]), version="2",
                              task=Task.ANOMALY, verdict=Verdict.OK, anomaly_score=0.3,
                              threshold=1.0)
        versions.record_shadow_runs(service.engine, uuid.UUID(record_id), [detection])


@pytest.mark.parametrize("seed", [1, 2])
async def test_rollups_equal_exact_aggregates_after_random_changes(
        service: Service, strips, seed: int) -> None:
    rng = random.Random(seed)
    seed_history.seed(service.engine, 150, seed=seed)  # bulk rows (rollups rebuilt)
    with service.engine.connect() as conn:
        ids = [str(uuid.UUID(str(i)))
               for i in conn.execute(sa.text("SELECT id FROM inspection")).scalars()]
    images = [encode(s.image) for s in strips.samples(2, 2)]
    for image in images:
        ids.append(await _upload(service, image, rng))
    _kept_equals_rebuilt(service.engine)
    for step in range(36):
        await _operate(service, rng, ids, images)
        if step % 12 == 11:
            _kept_equals_rebuilt(service.engine)
            await _check(service, {}, "day")
    for params in [{}, *SINGLE]:
        await _check(service, params, rng.choice(["day", "week", "month"]))
    for _ in range(30):  # random combinations of filters
        merged: dict[str, Any] = {}
        for single in rng.sample(SINGLE, rng.randint(2, 3)):
            merged.update(single)
        if "start" in merged and "end" in merged and \
                _filters(merged).end <= _filters(merged).start:
            continue
        await _check(service, merged, rng.choice(["day", "week", "month"]))
    # migration 0008's backfill (its own frozen SQL) rebuilds the same rows
    with service.engine.connect() as conn:
        kept = _kept(conn)
    db.downgrade(service.engine, "0007")
    db.upgrade(service.engine)
    with service.engine.connect() as conn:
        assert _kept(conn) == kept


@pytest.mark.parametrize("walk_from", [0, 10**9])
async def test_label_and_detector_pages_are_the_same_walked_or_driven(
        service: Service, monkeypatch: pytest.MonkeyPatch, walk_from: int) -> None:
    """The page of a label/detector filter is the same whether it is walked in list order
    (EXISTS probes) or driven by the matching findings/runs (IN)."""
    seed_history.seed(service.engine, 200, seed=5)
    monkeypatch.setattr(history, "WALK_FROM", walk_from)
    with service.engine.connect() as conn:
        expected = conn.execute(sa.text(
            "SELECT count(DISTINCT f.inspection_id) FROM finding f JOIN inspection i ON "
            "i.id = f.inspection_id WHERE i.deleted_at IS NULL AND f.label = 'scratch'"
        )).scalar_one()
    for params in ({"label": "scratch"}, {"detector": "classifier"},
                   {"label": ["scratch", "pitted"], "station": "line-1"}):
        everything = (await service.client.get(f"{API}/inspections",
                                               params={**params, "limit": 500})).json()
        walked, page = [], (await service.client.get(
            f"{API}/inspections", params={**params, "limit": 7})).json()
        while True:
            walked += [i["id"] for i in page["items"]]
            if page["next_cursor"] is None:
                break
            page = (await service.client.get(f"{API}/inspections", params={
                **params, "limit": 7, "cursor": page["next_cursor"]})).json()
        assert walked == [i["id"] for i in everything["items"]]
        assert len(walked) == everything["total"]
        if params == {"label": "scratch"}:
            assert everything["total"] == expected > 0
            assert all("scratch" in i["labels"] for i in everything["items"])
