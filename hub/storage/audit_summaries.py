"""Completeness audit results: people's rows (``audit_person``) and summaries (``audit_summary``).

The audit (:mod:`hub.completeness.batch`) evaluates people and hands the rows
here; the overview pages read the summaries, whose time does not grow with the
number of people. Writes are short transactions of their own (one per batch
of people) so that ingestion is never blocked for the length of an audit.
A period is named by its key (``2025``, ``2025-Q1``...).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections import defaultdict
from typing import Any

from sqlalchemy import delete
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine

from hub.storage import schema as s
from hub.storage.db import reading
from hub.storage.db import writing


class AuditSummaryStore:
    def __init__(self, engine: Engine):
        self.engine = engine

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
