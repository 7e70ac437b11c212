"""Per-day rollups of the history: what the stats and the list's ``total`` read at any size.

Every change that moves an inspection between rollup groups goes through ``track`` (or
``record_new``) inside the transaction that makes it: the inspection's *profile* (day,
station, verdict, deleted, current human decision, operator, labels, detectors) before and
after gives +1/-1 per row (``profile_rows``); one multi-row upsert applies the net change,
in key order (concurrent writers lock rows in the same order: no deadlock).

Reading: ``facet_of`` says whether filters can be answered from rollups (at most one of a
single ``label``, ``detector`` or ``operator``; any station / verdict / deleted / review
filter; ``either_of_two``: two labels, for totals by inclusion-exclusion); ``split_days``
cuts a time range into whole UTC days (rollups) and the partial days at its ends (counted
exactly from the records: at most two days of them).
``rebuild`` recomputes the table from the records with INSERT ... SELECT (bulk seeding).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Date, and_, case, cast, delete, func, insert, literal_column, not_, select
from sqlalchemy.engine import Connection
from sqlmodel import Session

from kensa.backend.records import (
    ROLLUP_KEY,
    DetectorRun,
    Finding,
    Inspection,
    InspectionReview,
    InspectionRollup,
)
from kensa.contract.schemas import REVIEW_DECISIONS
from kensa.models.types import Verdict

R = InspectionRollup.__table__
Key = tuple[str, str, date, str, str, bool, str, str]  # ROLLUP_KEY order


@dataclass(frozen=True)
class Profile:
    """What puts an inspection in its rollup rows."""

    day: date
    station: str
    verdict: str
    deleted: bool
    human: str
    operator: str | None
    labels: frozenset[str]
    detectors: frozenset[str]


def utc_day(moment: datetime) -> date:
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None
            else moment.astimezone(UTC)).date()


def profile(session: Session, inspection_id: uuid.UUID) -> Profile | None:
    inspection = session.get(Inspection, inspection_id)
    if inspection is None:
        return None
    labels = session.execute(select(Finding.label).distinct()
                             .where(Finding.inspection_id == inspection_id)).scalars()
    detectors = session.execute(select(DetectorRun.detector).distinct()
                                .where(DetectorRun.inspection_id == inspection_id)).scalars()
    human = session.execute(select(InspectionReview.decision).where(
        InspectionReview.inspection_id == inspection_id,
        InspectionReview.current.is_(True)).limit(1)).scalar_one_or_none()
    return Profile(day=utc_day(inspection.created_at), station=inspection.station or "",
                   verdict=inspection.verdict, deleted=inspection.deleted_at is not None,
                   human=human or "", operator=inspection.operator,
                   labels=frozenset(labels), detectors=frozenset(detectors))


def profile_rows(p: Profile) -> list[Key]:
    """The rollup rows one inspection counts in (each once)."""
    facets = [("", ""), *(("label", v) for v in p.labels),
              *(("detector", v) for v in p.detectors)]
    if p.operator is not None:
        facets.append(("operator", p.operator))
    labels = ["", *p.labels]
    return [(facet, value, p.day, p.station, p.verdict, p.deleted, p.human, label)
            for facet, value in facets for label in labels]


def apply(session: Session, before: Profile | None, after: Profile | None) -> None:
    """Move one inspection from ``before``'s rows to ``after``'s (None: not counted)."""
    delta: Counter = Counter()
    for key in profile_rows(before) if before else ():
        delta[key] -= 1
    for key in profile_rows(after) if after else ():
        delta[key] += 1
    rows = [{**dict(zip(ROLLUP_KEY, key, strict=True)), "n": n}
            for key, n in sorted(delta.items()) if n]
    if rows:
        session.execute(_upsert(session.get_bind().dialect.name, rows))


def _upsert(dialect: str, rows: list[dict]):
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    elif dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert as mysql_insert
        stmt = mysql_insert(R).values(rows)
        return stmt.on_duplicate_key_update(n=R.c.n + stmt.inserted.n)
    else:
        raise NotImplementedError(f"rollups are not implemented for {dialect}")
    stmt = dialect_insert(R).values(rows)
    return stmt.on_conflict_do_update(index_elements=list(ROLLUP_KEY),
                                      set_={"n": R.c.n + stmt.excluded.n})


def record_new(session: Session, inspection_id: uuid.UUID) -> None:
    """Count a new inspection (its runs and findings flushed) in this transaction."""
    session.flush()
    apply(session, None, profile(session, inspection_id))


@contextmanager
def track(session: Session, inspection_id: uuid.UUID) -> Iterator[None]:
    """Keep the rollups right across the changes made to one inspection inside the block
    (lock the inspection row first: ``session.get(..., with_for_update=True)``)."""
    before = profile(session, inspection_id)
    yield
    session.flush()
    apply(session, before, profile(session, inspection_id))


# -- reading ------------------------------------------------------------------------------------
def facet_of(filters) -> tuple[str, str] | None:
    """The rollup facet that answers ``filters`` (``("", "")``: none), or None when the
    rollups cannot (two of label/detector/operator, several labels, ``station=""``)."""
    facets = []
    if filters.labels:
        if len(set(filters.labels)) > 1:
            return None
        facets.append(("label", filters.labels[0]))
    if filters.detector is not None:
        facets.append(("detector", filters.detector))
    if filters.operator is not None:
        facets.append(("operator", filters.operator))
    if len(facets) > 1 or filters.station == "":
        return None
    return facets[0] if facets else ("", "")


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def split_days(start: datetime | None, end: datetime | None
               ) -> tuple[tuple[date | None, date | None] | None, list[tuple[datetime, datetime]]]:
    """``[start, end)`` as whole UTC days ``[first, stop)`` (None: open; None overall: no
    whole day) plus the partial-day ranges at its ends."""
    first = stop = None
    edges: list[tuple[datetime, datetime]] = []
    if start is not None:
        first = start.astimezone(UTC).date()
        if _midnight(first) < start:
            first += timedelta(days=1)
    if end is not None:
        stop = end.astimezone(UTC).date()
    if first is not None and stop is not None and first >= stop:
        return None, [(start, end)]  # within at most two days: all of it exactly
    if start is not None and first is not None and start < _midnight(first):
        edges.append((start, _midnight(first)))
    if end is not None and stop is not None and _midnight(stop) < end:
        edges.append((_midnight(stop), end))
    return (first, stop), edges


def conditions(filters, facet: tuple[str, str], first: date | None, stop: date | None) -> list:
    out = [R.c.facet == facet[0], R.c.value == facet[1]]
    if first is not None:
        out.append(R.c.day >= first)
    if stop is not None:
        out.append(R.c.day < stop)
    if not filters.include_deleted:
        out.append(R.c.deleted.is_(False))
    if filters.verdict is not None:
        out.append(R.c.verdict == filters.verdict)
    if filters.has_defect is True:
        out.append(R.c.verdict == Verdict.DEFECT.value)
    elif filters.has_defect is False:
        out.append(R.c.verdict != Verdict.DEFECT.value)
    if filters.station is not None:
        out.append(R.c.station == filters.station)
    if filters.reviewed is True:
        out.append(R.c.human != "")
    elif filters.reviewed is False:
        out.append(R.c.human == "")
    if filters.human_verdict is not None:
        out.append(R.c.human == filters.human_verdict)
    if filters.disagreement is not None:
        differs = and_(R.c.verdict.in_(REVIEW_DECISIONS), R.c.human != R.c.verdict)
        out += [R.c.human != "", differs if filters.disagreement else not_(differs)]
    return out


def _defective():
    return func.coalesce(func.sum(case((R.c.verdict == Verdict.DEFECT.value, R.c.n),
                                       else_=0)), 0)


def day_counts(session: Session, filters, facet: tuple[str, str], first: date | None,
               stop: date | None) -> list[tuple[date, str, int, int]]:
    """(day, label, inspections, defective) per day and label (``""``: all) with n > 0."""
    rows = session.execute(
        select(R.c.day, R.c.label, func.sum(R.c.n), _defective())
        .where(*conditions(filters, facet, first, stop))
        .group_by(R.c.day, R.c.label)).all()
    return [(_as_date(d), label, int(n), int(k)) for d, label, n, k in rows if n]


def total(session: Session, filters, facet: tuple[str, str], first: date | None,
          stop: date | None, label: str = "") -> tuple[int, int]:
    """(inspections, defective) of the facet (that also have ``label``, if given)."""
    n, k = session.execute(select(func.coalesce(func.sum(R.c.n), 0), _defective())
                           .where(*conditions(filters, facet, first, stop),
                                  R.c.label == label)).one()
    return int(n), int(k)


def either_total(session: Session, filters, first: date | None, stop: date | None
                 ) -> tuple[int, int]:
    """``total`` for ``label=a&label=b`` (either): |A| + |B| - |A and B| per group."""
    a, b = sorted(set(filters.labels))
    na, ka = total(session, filters, ("label", a), first, stop)
    nb, kb = total(session, filters, ("label", b), first, stop)
    both, kboth = total(session, filters, ("label", a), first, stop, label=b)
    return na + nb - both, ka + kb - kboth


def either_of_two(filters) -> bool:
    """Two labels and nothing else the rollups hold as a facet (``either_total`` applies)."""
    return (len(set(filters.labels)) == 2 and filters.detector is None
            and filters.operator is None and filters.station != "")


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


# -- rebuilding from the records (bulk seeding; migration 0008 holds a frozen copy) -------------
def day_expr(dialect: str, column):
    if dialect == "postgresql":
        return cast(func.timezone(literal_column("'UTC'"), column), Date)
    return func.date(column)


def rebuild(conn: Connection) -> None:
    """Recompute every rollup row from the records (INSERT ... SELECT per facet and label)."""
    conn.execute(delete(R))
    for statement in rebuild_statements(conn.dialect.name):
        conn.execute(statement)


def rebuild_statements(dialect: str) -> list:
    i = Inspection.__table__
    review = InspectionReview.__table__
    found = (select(Finding.inspection_id.label("inspection_id"), Finding.label.label("v"))
             .distinct())
    ran = (select(DetectorRun.inspection_id.label("inspection_id"),
                  DetectorRun.detector.label("v")).distinct())
    out = []
    for facet in ("", "operator", "detector", "label"):
        for by_label in (False, True):
            base = (i.outerjoin(review, and_(review.c.inspection_id == i.c.id,
                                             review.c.current.is_(True))))
            where = []
            if facet == "":
                value = literal_column("''")
            elif facet == "operator":
                value, where = i.c.operator, [i.c.operator.is_not(None)]
            else:
                sub = (ran if facet == "detector" else found).subquery(f"f_{facet}")
                base = base.join(sub, sub.c.inspection_id == i.c.id)
                value = sub.c.v
            if by_label:
                lab = found.subquery("lab")
                base = base.join(lab, lab.c.inspection_id == i.c.id)
                label = lab.c.v
            else:
                label = literal_column("''")
            day = day_expr(dialect, i.c.created_at)
            station = func.coalesce(i.c.station, literal_column("''"))
            deleted = i.c.deleted_at.is_not(None)
            human = func.coalesce(review.c.decision, literal_column("''"))
            cols = [literal_column(f"'{facet}'"), value, day, station, i.c.verdict, deleted,
                    human, label]
            grouped = [day, station, i.c.verdict, deleted, human]
            grouped += [value] if facet else []  # constants are not grouped (PostgreSQL)
            grouped += [label] if by_label else []
            query = (select(*cols, func.count()).select_from(base).where(*where)
                     .group_by(*grouped))
            out.append(insert(R).from_select([*ROLLUP_KEY, "n"], query))
    return out
