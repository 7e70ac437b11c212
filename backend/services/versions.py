"""Detector versions: trained artifacts stored as blobs (one per file), so every replica that
shares the database and the blob store can load any version; activation swaps the pool's
instance atomically, shadow runs a candidate beside the active one.

Loading a version writes its files once to ``<data_dir>/versions/<name>/<version>/`` (a local
cache, filled atomically) because the artifact loader reads a directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, case, func, select
from sqlalchemy.orm import aliased
from sqlmodel import Session

from kensa.backend.records import DetectorRun, DetectorVersion, Inspection
from kensa.backend.services import rollups
from kensa.backend.services.storage import BlobStore
from kensa.contract.schemas import DetectorVersionPublic, ShadowAgreement

ARTIFACT_SUFFIX = {"config.json": "json", "metrics.json": "json",
                   "weights.safetensors": "bin"}


def publish(engine: Engine, store: BlobStore, directory: Path, *, name: str, version: str,
            kind: str, metrics: dict[str, Any], dataset_id: uuid.UUID | None,
            job_id: uuid.UUID | None, created_by: str | None,
            parent: str | None = None) -> DetectorVersion:
    """Store an artifact directory's files as blobs and record the version (``parent``:
    default, the active version)."""
    files = {}
    for file_name, suffix in ARTIFACT_SUFFIX.items():
        path = directory / file_name
        if path.is_file():
            files[file_name] = store.put(path.read_bytes(), suffix).key
    with Session(engine) as session, session.begin():
        current = active(session, name)
        row = DetectorVersion(name=name, version=version, kind=kind, files=files,
                              metrics=metrics, dataset_id=dataset_id, job_id=job_id,
                              parent=parent or (current.version if current else None),
                              created_by=created_by)
        session.add(row)
        session.flush()
        session.expunge(row)
    return row


def active(session: Session, name: str) -> DetectorVersion | None:
    return session.execute(select(DetectorVersion).where(
        DetectorVersion.name == name, DetectorVersion.state == "active")).scalars().first()


def get(engine: Engine, name: str, version: str) -> DetectorVersion | None:
    with Session(engine) as session:
        return session.execute(select(DetectorVersion).where(
            DetectorVersion.name == name, DetectorVersion.version == version)).scalars().first()


def materialize(store: BlobStore, row: DetectorVersion, cache_root: Path) -> Path:
    """The version's artifact directory in the local cache (written once, atomically)."""
    target = cache_root / row.name / row.version
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        for file_name, key in row.files.items():
            (tmp / file_name).write_bytes(store.read(key))
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").is_file():
            raise
    return target


def set_state(engine: Engine, name: str, version: str, state: str) -> None:
    """Make ``version`` the active (or shadow) one; the previous holder becomes a candidate."""
    with Session(engine) as session, session.begin():
        for row in session.execute(select(DetectorVersion).where(
                DetectorVersion.name == name, DetectorVersion.state == state)).scalars():
            row.state = "candidate"
        row = session.execute(select(DetectorVersion).where(
            DetectorVersion.name == name, DetectorVersion.version == version)).scalars().one()
        row.state = state


def by_state(engine: Engine, state: str) -> list[DetectorVersion]:
    with Session(engine) as session:
        return list(session.execute(select(DetectorVersion)
                                    .where(DetectorVersion.state == state)).scalars())


def agreement(session: Session, name: str, version: str) -> ShadowAgreement:
    """How often the shadow runs of ``version`` gave the same verdict as the shown run."""
    shown = aliased(DetectorRun)
    rows = session.execute(
        select(func.count(), func.sum(case((shown.verdict == DetectorRun.verdict, 1),
                                           else_=0)))
        .select_from(DetectorRun)
        .join(shown, (shown.inspection_id == DetectorRun.inspection_id)
              & (shown.detector == DetectorRun.detector) & shown.shadow.is_(False))
        .where(DetectorRun.detector == name, DetectorRun.version == version,
               DetectorRun.shadow.is_(True))).one()
    total, same = int(rows[0] or 0), int(rows[1] or 0)
    return ShadowAgreement(inspections=total, agreeing=same,
                           rate=same / total if total else None)


def list_versions(engine: Engine, name: str) -> list[DetectorVersionPublic]:
    with Session(engine) as session:
        rows = session.execute(select(DetectorVersion).where(DetectorVersion.name == name)
                               .order_by(DetectorVersion.created_at,
                                         DetectorVersion.id)).scalars().all()
        return [DetectorVersionPublic(
            name=r.name, version=r.version, kind=r.kind, state=r.state, metrics=r.metrics,
            dataset=str(r.dataset_id) if r.dataset_id else None,
            job=str(r.job_id) if r.job_id else None, parent=r.parent,
            created_by=r.created_by, created_at=r.created_at,
            shadow_agreement=agreement(session, r.name, r.version)
            if r.state == "shadow" else None) for r in rows]


def load(store: BlobStore, row: DetectorVersion, cache_root: Path):
    """The version as a ``LoadedDetector`` (files from the store, cached locally)."""
    from kensa.backend.services.inference import LoadedDetector
    from kensa.models.artifacts import load_detector

    directory = materialize(store, row, cache_root)
    return LoadedDetector(load_detector(directory), directory)


def apply_deployed(engine: Engine, store: BlobStore, pool, cache_root: Path) -> list[str]:
    """Make the pool serve what the database says: every active version, every shadow one
    (none where there is none). Called at startup and then every few seconds, so an
    activation through one replica reaches the others; one small query when nothing changed.
    Returns what changed (``name@version``)."""
    with pool.deploy_lock:
        return _apply(engine, store, pool, cache_root)


def _apply(engine: Engine, store: BlobStore, pool, cache_root: Path) -> list[str]:
    with Session(engine) as session:
        rows = list(session.execute(select(DetectorVersion).where(
            DetectorVersion.state.in_(("active", "shadow")))).scalars())
    changed = []
    for row in (r for r in rows if r.state == "active"):
        if row.name not in pool or pool.get(row.name).detector.version != row.version:
            pool.swap(load(store, row, cache_root))
            changed.append(f"{row.name}@{row.version}")
    shadow = {r.name: r for r in rows if r.state == "shadow"}
    for name, row in shadow.items():
        current = pool.shadows.get(name)
        if current is None or current.detector.version != row.version:
            pool.set_shadow(load(store, row, cache_root), name)
            changed.append(f"{name}@{row.version} (shadow)")
    for name in [n for n in pool.shadows if n not in shadow]:
        pool.set_shadow(None, name)
        changed.append(f"{name} (shadow stopped)")
    return changed


def deploy(engine: Engine, store: BlobStore, pool, cache_root: Path, row: DetectorVersion,
           state: str) -> None:
    """Activate (``active``) or shadow (``shadow``) ``row`` in the database and in this
    replica's pool, under the pool's deploy lock (so a concurrent ``apply_deployed`` never
    puts the previous version back)."""
    loaded = load(store, row, cache_root)
    with pool.deploy_lock:
        set_state(engine, row.name, row.version, state)
        if state == "active":
            pool.swap(loaded)
            if row.name in pool.shadows and pool.shadows[row.name].detector.version == \
                    row.version:
                pool.set_shadow(None, row.name)
        else:
            pool.set_shadow(loaded, row.name)


def _locked(session: Session, inspection_id: uuid.UUID) -> uuid.UUID:
    """Lock the inspection row (rollup changes of one inspection happen one at a time)."""
    session.get(Inspection, inspection_id, with_for_update=True)
    return inspection_id


def record_shadow_runs(engine: Engine, inspection_id: uuid.UUID, detections) -> None:
    """Store shadow detections as runs flagged ``shadow`` (never in the verdict)."""
    with Session(engine) as session, session.begin(), \
            rollups.track(session, _locked(session, inspection_id)):
        for det in detections:
            session.add(DetectorRun(
                inspection_id=inspection_id, detector=det.detector, version=det.version,
                task=det.task.value, verdict=det.verdict.value,
                anomaly_score=det.anomaly_score, threshold=det.threshold,
                threshold_method=det.threshold_method, shadow=True, runtime=det.runtime,
                timings_ms={k: round(float(v), 3) for k, v in det.timings_ms.items()}))
