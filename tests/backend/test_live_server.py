"""Against a live uvicorn on loopback: concurrent uploads, and the kensa CLI commands."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from backend_testing import LiveServer, encode

from kensa.backend.services import rollups
from kensa.backend.services.storage import LocalBlobStore
from kensa.cli import main as kensa

N_UPLOADS = 16


def test_concurrent_uploads_are_all_recorded(live_server: LiveServer, strips) -> None:
    photos = [encode(strips.defective(i).image if i % 2 else strips.good(i).image)
              for i in range(N_UPLOADS)]

    def upload(i: int) -> httpx.Response:
        return httpx.post(f"{live_server.url}/api/v1/inspections", timeout=120,
                          data={"station": f"s{i % 3}", "note": f"upload {i}"},
                          files={"image": (f"{i}.png", photos[i], "image/png")},
                          headers=live_server.headers)

    with ThreadPoolExecutor(max_workers=N_UPLOADS) as pool:
        responses = list(pool.map(upload, range(N_UPLOADS)))
    assert [r.status_code for r in responses] == [201] * N_UPLOADS
    records = [r.json() for r in responses]
    assert len({r["id"] for r in records}) == N_UPLOADS
    assert sorted(r["note"] for r in records) == sorted(f"upload {i}" for i in range(N_UPLOADS))

    listing = httpx.get(f"{live_server.url}/api/v1/inspections", params={"limit": 500},
                        headers=live_server.headers).json()
    assert listing["total"] == N_UPLOADS
    defects = sum(r["verdict"] == "defect" for r in records)
    assert listing["defect_ratio"] == pytest.approx(defects / N_UPLOADS)
    stats = httpx.get(f"{live_server.url}/api/v1/stats", headers=live_server.headers).json()
    assert stats["totals"]["total"] == N_UPLOADS and stats["totals"]["defective"] == defects
    # every record's photo is intact on disk and in the database exactly once
    for i, record in enumerate(records):
        image = httpx.get(live_server.url + record["image_url"], headers=live_server.headers)
        assert image.content == photos[i]
    engine = sa.create_engine(live_server.settings.database_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from inspection")).scalar_one() == N_UPLOADS
        runs = conn.execute(sa.text("select count(*) from detector_run")).scalar_one()
        assert runs == N_UPLOADS

    # concurrent soft deletes: the rollups behind stats and total stay right
    def delete(record: dict) -> int:
        return httpx.delete(f"{live_server.url}/api/v1/inspections/{record['id']}",
                            timeout=120, headers=live_server.headers).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(delete, records[::2])) == [204] * len(records[::2])
    kept = records[1::2]
    stats = httpx.get(f"{live_server.url}/api/v1/stats", headers=live_server.headers).json()
    assert stats["totals"]["total"] == len(kept)
    assert stats["totals"]["defective"] == sum(r["verdict"] == "defect" for r in kept)
    with engine.connect() as conn:
        rows = "SELECT facet, value, day, station, verdict, deleted, human, label, n FROM " \
               "inspection_rollup WHERE n <> 0 ORDER BY 1, 2, 3, 4, 5, 6, 7, 8"
        before = conn.execute(sa.text(rows)).all()
        rollups.rebuild(conn)  # from scratch, rolled back: the same rows
        assert conn.execute(sa.text(rows)).all() == before
        conn.rollback()
    engine.dispose()
    store = LocalBlobStore(live_server.settings.storage_dir)
    assert not [p for p in store.files() if p.name.startswith(".tmp-")]


def test_cli_inspect_detectors_threshold(live_server: LiveServer, strips, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KENSA_TOKEN", live_server.headers["Authorization"].split()[1])
    photo = tmp_path / "strip.png"
    photo.write_bytes(encode(strips.defective(30, labels=["patches"]).image))
    server = ["--server", live_server.url]

    assert kensa(["inspect", str(photo), *server, "--station", "cli", "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["station"] == "cli" and record["file"] == str(photo)

    assert kensa(["inspect", str(photo), *server]) == 0
    table = capsys.readouterr().out
    assert "strip.png" in table and record["verdict"] in table

    assert kensa(["detectors", *server, "--json"]) == 0
    (item,) = json.loads(capsys.readouterr().out)
    assert item["name"] == "patchcore"
    assert kensa(["detectors", *server]) == 0
    assert "patchcore" in capsys.readouterr().out

    low = float(f"{item['threshold'] / 500:.2g}")  # inside its range, below every score
    assert kensa(["threshold", "patchcore", str(low), *server]) == 0
    assert f"threshold now {low}" in capsys.readouterr().out
    assert kensa(["inspect", str(photo), *server, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["verdict"] == "defect"
    # offline listing reads the artifact folder, including the persisted threshold
    assert kensa(["detectors", "--model-dir", str(live_server.settings.model_dir),
                  "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["threshold"] == pytest.approx(low)

    # errors are reported, not raised
    assert kensa(["threshold", "nonesuch", "1.0", *server]) == 1
    assert "404" in capsys.readouterr().err
    assert kensa(["inspect", str(tmp_path / "missing.png"), *server]) == 1
    assert kensa(["detectors", "--server", "http://127.0.0.1:9"]) == 1
    assert "cannot reach" in capsys.readouterr().err
