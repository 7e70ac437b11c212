"""History at scale, through HTTP: cursor pages, the operator filter and the stats aggregates
on a seeded history (bench/seed_history.py's bulk writer), on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from backend_testing import Service

from kensa.backend.records import Inspection
from kensa.backend.services import rollups

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import seed_history

pytestmark = pytest.mark.anyio
N = 240
TIE = datetime(2026, 6, 15, 12, 0, 0, tzinfo=UTC)


async def _seeded(service: Service) -> list[tuple]:
    """N seeded records; twelve of them share one timestamp (ties cross page boundaries).
    Returns the inspection rows as stored (the generator's, with the tie applied)."""
    rows = [r for batch in seed_history.generate(N, seed=3) for r in batch.inspections]
    seed_history.seed(service.engine, N, seed=3)
    tied = [service.db_id(str(r[0])) for r in rows[100:112]]
    with service.engine.begin() as conn:
        conn.execute(sa.text("UPDATE inspection SET created_at = :t WHERE id IN :ids")
                     .bindparams(sa.bindparam("t", type_=Inspection.__table__.c.created_at.type),
                                 sa.bindparam("ids", expanding=True)), {"t": TIE, "ids": tied})
        rollups.rebuild(conn)  # the days moved behind the service's back
    return rows


async def _get(service: Service, **params) -> dict:
    response = await service.client.get("/api/v1/inspections", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def _walk(service: Service, limit: int, **params) -> tuple[list[str], set[int]]:
    ids: list[str] = []
    totals: set[int] = set()
    page = await _get(service, limit=limit, **params)
    while True:
        ids += [i["id"] for i in page["items"]]
        totals.add(page["total"])
        if page["next_cursor"] is None:
            return ids, totals
        assert len(page["items"]) == limit
        page = await _get(service, limit=limit, cursor=page["next_cursor"], **params)


@pytest.mark.parametrize("params", [{}, {"station": "line-1"}, {"verdict": "ok"},
                                    {"include_deleted": "true"}])
async def test_cursor_pages_walk_the_same_list_as_offset(service: Service, params: dict
                                                         ) -> None:
    await _seeded(service)
    everything = await _get(service, limit=500, **params)
    expected = [i["id"] for i in everything["items"]]
    assert everything["next_cursor"] is None and len(expected) == everything["total"] > 10
    for limit in (7, 50):
        ids, totals = await _walk(service, limit, **params)
        assert ids == expected  # same order, nothing twice, nothing skipped (ties included)
        assert totals == {everything["total"]}  # total is the whole filtered set on every page
    by_offset = await _get(service, limit=7, offset=14, **params)
    assert [i["id"] for i in by_offset["items"]] == expected[14:21]
    assert by_offset["next_cursor"] is not None  # offset pages hand over to cursors
    after = await _get(service, limit=7, cursor=by_offset["next_cursor"], **params)
    assert [i["id"] for i in after["items"]] == expected[21:28]


async def test_bad_cursors_are_422_and_nothing_is_read(service: Service) -> None:
    await _seeded(service)
    cursor = (await _get(service, limit=3))["next_cursor"]
    for params in ({"cursor": "not-a-cursor"}, {"cursor": "bm90IGpzb24"},  # "not json"
                   {"cursor": "WzEsMl0"},  # [1, 2]
                   {"cursor": cursor, "offset": 3}, {"cursor": "x" * 201}):
        response = await service.client.get("/api/v1/inspections", params=params)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["detail"]


async def test_operator_label_detector_filters_and_stats_match_the_rows(service: Service
                                                                        ) -> None:
    rows = await _seeded(service)
    live = [r for r in rows if r[12] is None]  # deleted_at
    by_operator = Counter(r[3] for r in live)
    operator, expected = by_operator.most_common(1)[0]
    page = await _get(service, operator=operator, limit=500)
    assert page["total"] == expected and {i["operator"] for i in page["items"]} == {operator}
    with service.engine.connect() as conn:
        labelled = dict(conn.execute(sa.text(
            "SELECT f.label, count(DISTINCT f.inspection_id) FROM finding f JOIN inspection i "
            "ON i.id = f.inspection_id WHERE i.deleted_at IS NULL GROUP BY f.label")).all())
        classified = conn.execute(sa.text(
            "SELECT count(DISTINCT r.inspection_id) FROM detector_run r JOIN inspection i "
            "ON i.id = r.inspection_id WHERE i.deleted_at IS NULL AND r.detector = 'classifier'"
        )).scalar_one()
    assert labelled and classified
    for label, n in labelled.items():
        assert (await _get(service, label=label, limit=1))["total"] == n
    assert (await _get(service, detector="classifier", limit=1))["total"] == classified
    stats = (await service.client.get("/api/v1/stats", params={"bucket": "month"})).json()
    assert stats["totals"]["total"] == len(live)
    assert stats["totals"]["defective"] == sum(r[5] == "defect" for r in live)
    assert stats["totals"]["by_label"] == dict(sorted(labelled.items()))
    assert sum(b["total"] for b in stats["buckets"]) == len(live)
    summed: Counter = Counter()
    for b in stats["buckets"]:
        summed.update(b["by_label"])
    assert dict(summed) == labelled
