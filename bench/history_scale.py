"""History at scale: p50/p95 of the list, filtered lists, count and stats through the API.

    PYTHONPATH=. .venv/bin/python bench/history_scale.py \
        --db sqlite-100k=sqlite:////tmp/hist/s100k.db \
        --db pg-100k=postgresql+psycopg://postgres@127.0.0.1:5432/kensa_history_bench_100k \
        [--repeat 20] [--tag after] [--out bench/results/history_scale-after.json]

Each ``--db NAME=URL`` is a database seeded by ``bench/seed_history.py``. For each, the real
app (lifespan: migrations to head, accounts) runs behind ``httpx.ASGITransport``, signed in
as the admin; after two warm-up calls every query is timed ``--repeat`` times over HTTP
(request -> JSON response parsed). Then each query runs once more with the SQL it sends
captured, and the plan of every statement that took more than 5 ms is stored (``EXPLAIN
QUERY PLAN`` on SQLite, ``EXPLAIN`` on PostgreSQL), so a slow figure comes with its cause.

Queries: the first page, a deep page by ``offset`` (the middle of the history) and, where
the API offers it, by ``cursor`` at the same place; each filter on its own, a combination;
``count`` (``limit=1``: the cost of ``total`` and ``defect_ratio``); stats by day/week/month,
by label and by station.

    python bench/history_scale.py table bench/results/history_scale-before.json ...

prints the p50 / p95 table of one or more result files (markdown).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
from sqlalchemy import Engine, event

from kensa.backend.config import Settings
from kensa.backend.main import create_app

ADMIN_PASSWORD = "history-bench-admin"
SLOW_MS = 5.0


def queries(total: int) -> dict[str, tuple[str, dict[str, Any]]]:
    middle = max(total // 2, 0)
    month = {"start": "2026-06-01", "end": "2026-06-30"}
    return {
        "list_first": ("/api/v1/inspections", {}),
        "list_deep_offset": ("/api/v1/inspections", {"offset": middle}),
        "list_deep_cursor": ("/api/v1/inspections", {"cursor": None}),  # filled in below
        "count": ("/api/v1/inspections", {"limit": 1}),
        "filter_station": ("/api/v1/inspections", {"station": "line-3"}),
        "filter_operator": ("/api/v1/inspections", {"operator": "op07"}),
        "filter_label": ("/api/v1/inspections", {"label": "crazing"}),
        "filter_verdict": ("/api/v1/inspections", {"verdict": "defect"}),
        "filter_has_defect_false": ("/api/v1/inspections", {"has_defect": "false"}),
        "filter_month": ("/api/v1/inspections", month),
        "filter_detector": ("/api/v1/inspections", {"detector": "classifier"}),
        "filter_include_deleted": ("/api/v1/inspections", {"include_deleted": "true"}),
        "filter_combined": ("/api/v1/inspections",
                            {"station": "line-2", "verdict": "defect", **month}),
        "stats_day": ("/api/v1/stats", {"bucket": "day"}),
        "stats_week": ("/api/v1/stats", {"bucket": "week"}),
        "stats_month": ("/api/v1/stats", {"bucket": "month"}),
        "stats_label": ("/api/v1/stats", {"bucket": "week", "label": "scratch"}),
        "stats_station_month": ("/api/v1/stats", {"bucket": "day", "station": "line-4",
                                                  **month}),
        # since the rollups: a datetime range (partial days at both ends counted from the
        # records) and two labels (not a rollup facet: counted from the findings)
        "stats_partial_days": ("/api/v1/stats", {"bucket": "day",
                                                 "start": "2026-06-01T06:00:00",
                                                 "end": "2026-06-30T18:00:00"}),
        "filter_label_any": ("/api/v1/inspections", {"label": ["crazing", "pitted"]}),
    }


class Capture:
    """Statements the engine runs while ``on``, with their parameters and duration."""

    def __init__(self, engine: Engine) -> None:
        self.on = False
        self.statements: list[tuple[str, Any, float]] = []
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        conn.info["history_bench_t0"] = time.perf_counter()

    def _after(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if self.on:
            took = (time.perf_counter() - conn.info.pop("history_bench_t0")) * 1000
            self.statements.append((statement, parameters, took))


def explain(engine: Engine, statement: str, parameters: Any) -> list[str]:
    prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(prefix + statement, parameters).all()
    return [" | ".join(str(v) for v in row) if len(row) > 1 else str(row[0]) for row in rows]


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered), 2), "p95_ms": round(p95, 2),
            "n": len(ordered)}


async def timed(call: Callable, repeat: int) -> tuple[list[float], Any]:
    body = None
    values = []
    for i in range(repeat + 2):
        t0 = time.perf_counter()
        response = await call()
        body = response.json()
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {body}")
        if i >= 2:
            values.append((time.perf_counter() - t0) * 1000)
    return values, body


async def measure(name: str, url: str, work: Path, repeat: int) -> dict[str, Any]:
    settings = Settings(data_dir=work / name, model_dir=work / "models", database_url=url,
                        serve_client=False, admin_password=ADMIN_PASSWORD, demo_good_images=2)
    app = create_app(settings)
    started = time.perf_counter()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost",
                                     timeout=600) as client:
            while (await client.get("/readyz")).status_code != 200 or (
                    app.state.sweep_report is None):
                await anyio.sleep(0.2)
            startup_s = time.perf_counter() - started
            token = (await client.post("/api/v1/auth/token", data={
                "username": "admin", "password": ADMIN_PASSWORD})).json()["access_token"]
            client.headers["Authorization"] = f"Bearer {token}"
            engine: Engine = app.state.engine
            capture = Capture(engine)
            total = (await client.get("/api/v1/inspections",
                                      params={"limit": 1})).json()["total"]
            plan = queries(total)
            middle = plan["list_deep_offset"][1]["offset"]
            probe = (await client.get("/api/v1/inspections",
                                      params={"limit": 1, "offset": max(middle - 1, 0)})).json()
            if probe.get("next_cursor"):
                plan["list_deep_cursor"][1]["cursor"] = probe["next_cursor"]
            else:  # the API has no cursor (before this change)
                del plan["list_deep_cursor"]
            results: dict[str, Any] = {}
            for query, (path, params) in plan.items():
                values, body = await timed(lambda p=path, q=params: client.get(p, params=q),
                                           repeat)
                capture.statements.clear()
                capture.on = True
                await client.get(path, params=params)
                capture.on = False
                slow = [{"ms": round(ms, 2), "sql": " ".join(sql.split())[:400],
                         "plan": explain(engine, sql, params_)}
                        for sql, params_, ms in capture.statements if ms > SLOW_MS]
                shape = ({"total": body["total"], "items": len(body["items"])}
                         if "items" in body else
                         {"total": body["totals"]["total"], "buckets": len(body["buckets"])})
                results[query] = {**percentiles(values), "params": params, **shape,
                                  "statements": len(capture.statements), "slow": slow}
                print(f"{name:>12} {query:<26} p50 {results[query]['p50_ms']:>9.2f} ms  "
                      f"p95 {results[query]['p95_ms']:>9.2f} ms  {shape}", flush=True)
            revision = engine.dialect.name
            with engine.connect() as conn:
                revision = conn.exec_driver_sql(
                    "SELECT version_num FROM alembic_version").scalar_one()
    return {"url": engine.url.render_as_string(hide_password=True),
            "dialect": engine.dialect.name, "revision": revision, "inspections": total,
            "startup_s": round(startup_s, 1), "queries": results}


def table(paths: list[Path]) -> str:
    """A markdown table of p50 / p95 per query: one column per (file tag, database)."""
    columns = []
    for path in paths:
        report = json.loads(path.read_text())
        for name, result in report["databases"].items():
            columns.append((f"{report['tag']} {name}", result["queries"]))
    names = list(dict.fromkeys(q for _, queries in columns for q in queries))
    lines = ["| query | " + " | ".join(c for c, _ in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for q in names:
        cells = [f"{r[q]['p50_ms']:.0f} / {r[q]['p95_ms']:.0f}" if q in r else "-"
                 for _, r in columns]
        lines.append(f"| {q} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "table":  # history_scale.py table A.json B.json
        print(table([Path(p) for p in sys.argv[2:]]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", action="append", required=True, metavar="NAME=URL",
                        help="a seeded database (repeatable)")
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per query")
    parser.add_argument("--tag", default="after", help="what this run measures")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir())
                        / "kensa-history-bench", help="data dir (demo model cached here)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(__file__).parent / "results" / f"history_scale-{args.tag}.json"
    report: dict[str, Any] = {
        "tag": args.tag, "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "repeat": args.repeat,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg": os.getloadavg(), "note": "machine shared with other jobs"},
        "databases": {},
    }
    if out.exists():  # runs of one tag add up (one database per call is fine)
        report["databases"] = json.loads(out.read_text()).get("databases", {})
    for spec in args.db:
        name, url = spec.split("=", 1)
        report["databases"][name] = anyio.run(measure, name, url, args.work, args.repeat)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
