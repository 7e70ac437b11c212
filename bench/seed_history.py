"""Seed a kensa database with N realistic inspection records, in bulk (not through the API).

    PYTHONPATH=. .venv/bin/python bench/seed_history.py --url sqlite:///tmp/h.db --n 100000
    PYTHONPATH=. .venv/bin/python bench/seed_history.py \
        --url postgresql+psycopg://postgres@127.0.0.1:5432/kensa_history_bench_100k --n 100000

The schema comes from the normal migrations (``db.upgrade``); the rollups
(``inspection_rollup``) are rebuilt from the rows afterwards (``rollups.rebuild``). Rows are
written in creation order (as a plant writes them) with ``COPY ... FROM STDIN`` on
PostgreSQL, SQLAlchemy core ``executemany`` of pre-converted values on SQLite, and core
inserts with SQLAlchemy's type processing elsewhere (MariaDB; slower, for tests).
What a record looks like (seeded RNG, reproducible):

* ``created_at`` spread over the year before ``--until`` (2026-12-01), busier on day shifts;
* 6 stations (skewed: line-1 takes a third), 24 operators;
* verdict ok 88 %, defect 9 %, review 3 %; 0.5 % soft-deleted;
* a ``patchcore`` anomaly run on every photo, a ``classifier`` run on 40 %, each anomaly run
  with one heatmap layer; defects carry 1-3 findings with one of six steel defect labels (skewed),
  reviews one ``anomaly`` finding.

Blob keys look like the store's (``sha256.png``) but no blobs are written: the list and stats
endpoints never read them. The records are benchmark data only.
"""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

from kensa.backend import db
from kensa.backend.records import DetectorRun, EvidenceMap, Finding, Inspection
from kensa.backend.services import rollups

STATIONS = ("line-1", "line-2", "line-3", "line-4", "line-5", "line-6")
STATION_WEIGHTS = (34, 20, 16, 12, 10, 8)
OPERATORS = tuple(f"op{i:02d}" for i in range(24))
LABELS = ("scratch", "inclusion", "patches", "pitted", "rolled-in", "crazing")
LABEL_WEIGHTS = (30, 22, 18, 12, 10, 8)
DETECTORS = ("patchcore", "classifier")
UNTIL = datetime(2026, 12, 1, tzinfo=UTC)
BATCH = 20_000

INSPECTION_COLS = ("id", "created_at", "station", "operator", "note", "verdict",
                   "anomaly_score", "image_key", "image_content_type", "overlay_key", "width",
                   "height", "deleted_at")
RUN_COLS = ("id", "inspection_id", "detector", "version", "task", "verdict", "anomaly_score",
            "threshold", "timings_ms", "threshold_method", "shadow")
FINDING_COLS = ("id", "inspection_id", "run_id", "detector", "label", "score", "area_px", "x0",
                "y0", "x1", "y1", "mask_key")
MAP_COLS = ("id", "inspection_id", "run_id", "kind", "label", "map_key", "low", "high")


@dataclass
class Rows:
    inspections: list[tuple]
    runs: list[tuple]
    findings: list[tuple]
    maps: list[tuple]


def _key(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}.png"


def _moments(rng: random.Random, n: int, until: datetime) -> list[datetime]:
    """N creation times over the year before ``until``, sorted; day shifts twice as busy."""
    out = []
    for _ in range(n):
        day = rng.randrange(365)
        hour = rng.choice((6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17) * 2 + tuple(range(24)))
        out.append(until - timedelta(days=day + 1) + timedelta(
            hours=hour, seconds=rng.randrange(3600), microseconds=rng.randrange(1, 10**6)))
    out.sort()
    return out


def generate(n: int, seed: int = 0, until: datetime = UNTIL, batch: int = BATCH
             ) -> Iterator[Rows]:
    """The records in batches of ``batch`` inspections, with explicit integer ids."""
    rng = random.Random(seed)
    moments = _moments(rng, n, until)
    run_id = finding_id = map_id = 0
    for lo in range(0, n, batch):
        rows = Rows([], [], [], [])
        for created in moments[lo:lo + batch]:
            iid = uuid.UUID(int=rng.getrandbits(128), version=4)
            r = rng.random()
            verdict = "ok" if r < 0.88 else "defect" if r < 0.97 else "review"
            score = (rng.uniform(0.05, 0.45) if verdict == "ok"
                     else rng.uniform(0.55, 1.0) if verdict == "defect" else rng.uniform(0.45, 0.6))
            deleted = created + timedelta(hours=rng.randrange(1, 72)) if rng.random() < 0.005 \
                else None
            station = rng.choices(STATIONS, STATION_WEIGHTS)[0]
            rows.inspections.append((
                iid, created, station, rng.choice(OPERATORS),
                "re-check edge" if rng.random() < 0.02 else None, verdict, score, _key(rng),
                "image/png", _key(rng), 1600, 256, deleted))
            run_id += 1
            anomaly_run = run_id
            timings = json.dumps({"preprocess": round(rng.uniform(2, 6), 3),
                                  "model": round(rng.uniform(40, 70), 3)})
            rows.runs.append((anomaly_run, iid, "patchcore", "1", "anomaly",
                              "defect" if verdict == "defect" else verdict,
                              score * 12.0, 6.0, timings, "f1", False))
            map_id += 1
            rows.maps.append((map_id, iid, anomaly_run, "heatmap", None, _key(rng), 0.0, 12.0))
            classified = rng.random() < 0.4
            if classified:
                run_id += 1
                rows.runs.append((run_id, iid, "classifier", "3", "classify",
                                  "defect" if verdict == "defect" else "ok", None, 0.5,
                                  timings, None, False))
            if verdict == "defect":
                for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
                    finding_id += 1
                    x0, y0 = rng.randrange(1500), rng.randrange(200)
                    w, h = rng.randrange(8, 100), rng.randrange(8, 56)
                    rows.findings.append((
                        finding_id, iid, run_id if classified else anomaly_run,
                        "classifier" if classified else "patchcore",
                        rng.choices(LABELS, LABEL_WEIGHTS)[0], rng.uniform(0.5, 1.0), w * h // 2,
                        x0, y0, x0 + w, y0 + h, _key(rng)))
            elif verdict == "review":
                finding_id += 1
                rows.findings.append((finding_id, iid, anomaly_run, "patchcore", "anomaly",
                                      score, 120, 10, 10, 30, 30, _key(rng)))
        yield rows


# -- writers ------------------------------------------------------------------------------------
def _sqlite_row(row: Sequence) -> tuple:
    """Values as SQLAlchemy's SQLite types store them (uuid hex, naive UTC text)."""
    out = []
    for value in row:
        if isinstance(value, uuid.UUID):
            value = value.hex
        elif isinstance(value, datetime):
            value = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        elif isinstance(value, bool):
            value = int(value)
        out.append(value)
    return tuple(out)


def _write_sqlite(engine: Engine, batches: Iterator[Rows]) -> None:
    tables = ((Inspection, INSPECTION_COLS, "inspections"), (DetectorRun, RUN_COLS, "runs"),
              (Finding, FINDING_COLS, "findings"), (EvidenceMap, MAP_COLS, "maps"))
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA cache_size=-262144")  # 256 MB for the index builds
        for rows in batches:
            for table, cols, attr in tables:
                values = [_sqlite_row(r) for r in getattr(rows, attr)]
                if values:
                    conn.exec_driver_sql(
                        f"INSERT INTO {table.__tablename__} ({', '.join(cols)}) VALUES "
                        f"({', '.join('?' * len(cols))})", values)


def _write_postgres(engine: Engine, batches: Iterator[Rows]) -> None:
    tables = ((Inspection, INSPECTION_COLS, "inspections"), (DetectorRun, RUN_COLS, "runs"),
              (Finding, FINDING_COLS, "findings"), (EvidenceMap, MAP_COLS, "maps"))
    with engine.begin() as conn:
        raw = conn.connection.dbapi_connection
        with raw.cursor() as cursor:
            for rows in batches:
                for table, cols, attr in tables:
                    with cursor.copy(f"COPY {table.__tablename__} ({', '.join(cols)}) "
                                     "FROM STDIN") as copy:
                        for row in getattr(rows, attr):
                            copy.write_row(row)
        for table in ("detector_run", "finding", "evidence_map"):
            conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                              f"coalesce((SELECT max(id) FROM {table}), 1))"))


def _write_core(engine: Engine, batches: Iterator[Rows]) -> None:
    """Any other dialect (MariaDB): SQLAlchemy core executemany with its type processing."""
    tables = ((Inspection, INSPECTION_COLS, "inspections"), (DetectorRun, RUN_COLS, "runs"),
              (Finding, FINDING_COLS, "findings"), (EvidenceMap, MAP_COLS, "maps"))
    with engine.begin() as conn:
        for rows in batches:
            for table, cols, attr in tables:
                values = [dict(zip(cols, r, strict=True)) for r in getattr(rows, attr)]
                for value in values:
                    if isinstance(value.get("timings_ms"), str):
                        value["timings_ms"] = json.loads(value["timings_ms"])
                if values:
                    conn.execute(table.__table__.insert(), values)


def seed(engine: Engine, n: int, seed: int = 0, until: datetime = UNTIL) -> dict[str, float]:
    """Migrate to head, then write N records into an empty history; returns counts and times."""
    db.upgrade(engine)
    with engine.connect() as conn:
        if conn.execute(text("SELECT count(*) FROM inspection")).scalar_one():
            raise SystemExit("the database already holds inspections; seed an empty one")
    started = time.perf_counter()
    batches = generate(n, seed, until)
    dialect = engine.dialect.name
    if dialect == "sqlite":
        _write_sqlite(engine, batches)
    elif dialect == "postgresql":
        _write_postgres(engine, batches)
    else:
        _write_core(engine, batches)
    seeded = time.perf_counter() - started
    with engine.begin() as conn:  # the bulk writers bypass the service: count them here
        rollups.rebuild(conn)
    rolled = time.perf_counter() - started - seeded
    if dialect == "postgresql":  # what autovacuum does in time: statistics, visibility map
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    with engine.begin() as conn:
        if dialect == "sqlite":
            conn.execute(text("ANALYZE"))
        counts = {t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one())
                  for t in ("inspection", "detector_run", "finding", "evidence_map")}
    return {**counts, "seed_s": round(seeded, 1), "rollup_s": round(rolled, 1),
            "analyze_s": round(time.perf_counter() - started - seeded - rolled, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="SQLAlchemy URL of an empty database")
    parser.add_argument("--n", type=int, default=10_000, help="inspections to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    engine = db.make_engine(args.url)
    try:
        print(json.dumps(seed(engine, args.n, args.seed)))
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
