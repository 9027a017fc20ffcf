"""Completeness audit results: people's rows (``audit_person``) and summaries (``audit_summary``).

The audit (:mod:`hub.completeness.batch`) evaluates people and hands the rows
here; the overview pages read the summaries, whose time does not grow with the
number of people. Writes are short transactions of their own (one per batch
of people) so that ingestion is never blocked for the length of an audit.
A period is named by its key (``2025``, ``2025-Q1``...).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections import defaultdict
from typing import Any

from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine

from hub.storage import schema as s
from hub.storage.db import reading
from hub.storage.db import writing

P = s.audit_person
# Orders of the list of people with gaps (ties broken by patient id).
GAP_SORTS = {
    "next_due": (P.c.next_due.asc(),),
    "gaps": (P.c.gaps.desc(),),
    "overdue": (P.c.overdue.desc(), P.c.next_due.asc()),
    "name": (P.c.name.asc(),),
    "age": (P.c.age.desc(),),
}


@dataclasses.dataclass(frozen=True)
class GapFilter:
    """Which people with gaps to list (empty fields do not filter)."""

    rule: str = ""
    item: str = ""  # an item of ``rule``
    overdue: bool = False
    colour: str = ""  # a five-colour key, or "none" for people without one
    village: str = ""


@dataclasses.dataclass(frozen=True)
class PersonAudit:
    period: str
    detail: str | None  # JSON: the rules' outcomes and gaps


class AuditSummaryStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    @staticmethod
    def _gaps(period_key: str, jurisdiction: str, where: GapFilter, *columns):
        stmt = scope(select(*(columns or (P,))), period_key, jurisdiction).where(P.c.gaps > 0)
        if where.rule:
            pattern = f"% {where.rule}/{where.item} %" if where.item else f"% {where.rule}/%"
            stmt = stmt.where(P.c.gap_codes.like(pattern))
        if where.overdue:
            stmt = stmt.where(P.c.overdue > 0)
        if where.colour == "none":
            stmt = stmt.where(P.c.colour.is_(None))
        elif where.colour:
            stmt = stmt.where(P.c.colour == where.colour)
        if where.village:
            stmt = stmt.where(P.c.village == where.village)
        return stmt

    def people_with_gaps(
        self, period_key: str, jurisdiction: str, where: GapFilter, sort: str
    ) -> list[Any]:
        """Every matching person's row, in ``sort`` order (exports)."""
        stmt = self._gaps(period_key, jurisdiction, where).order_by(
            *GAP_SORTS[sort], P.c.patient_id
        )
        with reading(self.engine) as conn:
            return conn.execute(stmt).all()

    def gaps_page(
        self, period_key: str, jurisdiction: str, where: GapFilter, sort: str, page: int, size: int
    ) -> tuple[int, list[Any]]:
        """(how many match, the rows of page ``page`` from 1) in ``sort`` order."""
        with reading(self.engine) as conn:
            total = conn.execute(
                self._gaps(period_key, jurisdiction, where, func.count())
            ).scalar_one()
            # Sort and page on the narrow columns, then fetch the page's full rows: sorting
            # whole rows (with their JSON detail) is what makes a big list slow.
            ids = (
                conn.execute(
                    self._gaps(period_key, jurisdiction, where, P.c.patient_id)
                    .order_by(*GAP_SORTS[sort], P.c.patient_id)
                    .limit(size)
                    .offset((page - 1) * size)
                )
                .scalars()
                .all()
            )
            found = {
                r.patient_id: r
                for r in conn.execute(
                    select(P).where(P.c.period == period_key, P.c.patient_id.in_(ids))
                )
            }
        return total, [found[i] for i in ids if i in found]

    @staticmethod
    def latest_of(conn: Connection, patient_id: str) -> PersonAudit | None:
        """The person's latest audited row (period and detail), or None."""
        row = conn.execute(
            select(P.c.period, P.c.detail)
            .where(P.c.patient_id == patient_id)
            .order_by(P.c.computed_at.desc())
            .limit(1)
        ).first()
        return PersonAudit(row.period, row.detail) if row else None

    @staticmethod
    def metrics(
        conn: Connection, period_key: str, jurisdictions: list[str], metrics: list[str]
    ) -> dict[str, dict[str, float]]:
        """``metrics`` of each of ``jurisdictions`` (those stored), by jurisdiction."""
        t = s.audit_summary
        rows = conn.execute(
            select(t.c.jurisdiction, t.c.metric, t.c.value).where(
                t.c.period == period_key,
                t.c.jurisdiction.in_(jurisdictions),
                t.c.metric.in_(metrics),
            )
        )
        found: dict[str, dict[str, float]] = {c: {} for c in jurisdictions}
        for code, metric, value in rows:
            found[code][metric] = value
        return found

    def replace_people(self, period_key: str, rows: list[dict[str, Any]]) -> None:
        """Replace these people's rows for the period (one transaction)."""
        t = s.audit_person
        with writing(self.engine) as conn:
            conn.execute(
                delete(t).where(
                    t.c.period == period_key, t.c.patient_id.in_([r["patient_id"] for r in rows])
                )
            )
            conn.execute(insert(t), rows)

    def drop_people(self, period_key: str, jurisdiction: str, computed_before: dt.datetime) -> None:
        """Drop the period's rows in ``jurisdiction`` not written since ``computed_before``."""
        t = s.audit_person
        with writing(self.engine) as conn:
            conn.execute(
                scope(delete(t), period_key, jurisdiction).where(t.c.computed_at < computed_before)
            )

    def recount(self, period_key: str, now: dt.datetime) -> None:
        """Recount the period's summaries from its people's rows."""
        with reading(self.engine) as conn:
            counts = count_summary(conn, period_key)
        with writing(self.engine) as conn:
            store_summary(conn, period_key, counts, now)

    def summary(self, period_key: str, jurisdiction: str) -> dict[str, float]:
        with reading(self.engine) as conn:
            return read_summary(conn, period_key, jurisdiction)


def scope(stmt, period_key: str, jurisdiction: str):
    """``stmt`` on ``audit_person`` limited to one period and jurisdiction."""
    t = s.audit_person
    stmt = stmt.where(t.c.period == period_key)
    if not jurisdiction:
        return stmt
    if jurisdiction.startswith("Organization/"):
        return stmt.where(t.c.organization == jurisdiction)
    column = {6: t.c.county, 9: t.c.township, 12: t.c.village}[len(jurisdiction)]
    return stmt.where(column == jurisdiction)


def count_summary(conn: Connection, period_key: str) -> dict[str, Counter]:
    """Counters per jurisdiction for period ``period_key``, from ``audit_person`` in one pass."""
    t = s.audit_person
    counts: dict[str, Counter] = defaultdict(Counter)
    rows = conn.execute(
        select(
            t.c.county,
            t.c.township,
            t.c.village,
            t.c.organization,
            t.c.metrics,
            t.c.gaps,
            t.c.overdue,
        ).where(t.c.period == period_key)
    )
    for county, township, village, org, metrics, gaps, overdue in rows:
        names = metrics.split()
        for code in ("", county, township, village, org):
            if code is None:
                continue
            counter = counts[code]
            counter.update(names)
            counter["gap-items"] += gaps
            counter["overdue-items"] += overdue
    return counts


def store_summary(
    conn: Connection, period_key: str, counts: dict[str, Counter], now: dt.datetime | None = None
) -> None:
    """Replace the period's ``audit_summary`` rows with ``counts``."""
    now = now or dt.datetime.now(dt.UTC)
    conn.execute(delete(s.audit_summary).where(s.audit_summary.c.period == period_key))
    values = [
        {
            "period": period_key,
            "jurisdiction": code,
            "metric": m,
            "value": float(v),
            "computed_at": now,
        }
        for code, counter in counts.items()
        for m, v in counter.items()
    ]
    for start in range(0, len(values), 5000):
        conn.execute(insert(s.audit_summary), values[start : start + 5000])


def read_summary(conn: Connection, period_key: str, jurisdiction: str) -> dict[str, float]:
    t = s.audit_summary
    rows = conn.execute(
        select(t.c.metric, t.c.value).where(
            t.c.period == period_key, t.c.jurisdiction == jurisdiction
        )
    )
    return {m: v for m, v in rows}


def summary_periods(conn: Connection, jurisdiction: str) -> list[str]:
    """Periods with a stored summary for ``jurisdiction``, oldest first."""
    t = s.audit_summary
    rows = conn.execute(
        select(t.c.period)
        .where(t.c.jurisdiction == jurisdiction, t.c.metric == "people")
        .distinct()
    )
    return sorted(r[0] for r in rows)


def computed_at(conn: Connection, period_key: str) -> dt.datetime | None:
    t = s.audit_summary
    return conn.execute(
        select(t.c.computed_at).where(t.c.period == period_key).limit(1)
    ).scalar_one_or_none()


def child_jurisdictions(conn: Connection, period_key: str, jurisdiction: str) -> list[str]:
    """The jurisdictions one level below ``jurisdiction`` with stored results."""
    t = s.audit_summary
    rows = conn.execute(
        select(t.c.jurisdiction).where(t.c.period == period_key, t.c.metric == "people")
    )
    codes = [r[0] for r in rows if r[0]]
    if jurisdiction.startswith("Organization/"):
        return []
    size = {"": 6, 6: 9, 9: 12}.get(len(jurisdiction) if jurisdiction else "", None)
    if size is None:  # village: its institutions are not nested under it
        return []
    return sorted(c for c in codes if c.isdigit() and len(c) == size and c.startswith(jurisdiction))
