"""The audit job: people read from the database in batches, evaluated, stored, summarised.

Reading is by patient compartment: Patients are scanned in primary-key order
(keyset pages), filtered by jurisdiction, and every other resource of a batch
of people is fetched with one ``patient_id IN (...)`` query per batch, never
one query per person. Evaluation is pure Python (:mod:`.evaluate`); results
stream out of :func:`evaluate_people` one person at a time.

:func:`run_audit` stores each person's result in ``audit_person`` and then
refreshes ``audit_summary`` (counts per period, jurisdiction and metric) from
the stored rows, so the dashboard overview reads a few hundred rows whatever
the population.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections import Counter
from collections import defaultdict
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import orjson
from sqlalchemy import delete
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine

from hub import colours
from hub.completeness import facts as facts_mod
from hub.completeness import jurisdiction as juris
from hub.completeness.evaluate import PersonResult
from hub.completeness.evaluate import evaluate
from hub.completeness.periods import Period
from hub.completeness.rulebook import RuleBook
from hub.completeness.rulebook import load
from hub.storage import schema as s

PATIENT_PAGE = 2000  # Patients read per keyset page
BATCH = 500  # people whose resources are fetched in one query
WRITE_BATCH = 1000


def scan_patients(conn: Connection, jurisdiction: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """``(patient id, Patient)`` for every current Patient in ``jurisdiction``."""
    r = s.resource
    last = 0
    while True:
        rows = conn.execute(
            select(r.c.pk, r.c.res_id, r.c.content)
            .where(r.c.res_type == "Patient", r.c.deleted.is_(False), r.c.pk > last)
            .order_by(r.c.pk)
            .limit(PATIENT_PAGE)
        ).all()
        if not rows:
            return
        last = rows[-1].pk
        for row in rows:
            patient = orjson.loads(row.content)
            if juris.place_of(patient).within(jurisdiction):
                yield row.res_id, patient


def compartments(
    conn: Connection, patients: list[tuple[str, dict[str, Any]]]
) -> dict[str, list[dict[str, Any]]]:
    """Every current resource of these people, by patient id (one query)."""
    out: dict[str, list[dict[str, Any]]] = {pid: [patient] for pid, patient in patients}
    r = s.resource
    rows = conn.execute(
        select(r.c.patient_id, r.c.content).where(
            r.c.patient_id.in_(list(out)), r.c.deleted.is_(False), r.c.res_type != "Patient"
        )
    )
    for pid, content in rows:
        out[pid].append(orjson.loads(content))
    return out


def count_patients(conn: Connection, jurisdiction: str = "") -> int:
    return sum(1 for _ in scan_patients(conn, jurisdiction))


def evaluate_people(
    conn: Connection,
    period: Period,
    jurisdiction: str = "",
    as_of: dt.date | None = None,
    book: RuleBook | None = None,
    patient_ids: list[str] | None = None,
) -> Iterator[tuple[PersonResult, str | None]]:
    """Stream ``(result, displayed five-colour)`` for everyone in ``jurisdiction``."""
    book = book or load()
    batch: list[tuple[str, dict[str, Any]]] = []
    source = scan_patients(conn, jurisdiction)
    if patient_ids is not None:
        wanted = set(patient_ids)
        source = ((pid, p) for pid, p in source if pid in wanted)
    for item in source:
        batch.append(item)
        if len(batch) >= BATCH:
            yield from _evaluate_batch(conn, batch, period, as_of, book)
            batch = []
    if batch:
        yield from _evaluate_batch(conn, batch, period, as_of, book)


def _evaluate_batch(conn, batch, period, as_of, book):
    by_patient = compartments(conn, batch)
    for pid, _patient in batch:
        resources = by_patient[pid]
        person = facts_mod.collect(pid, resources, book)
        result = evaluate(person, period, book, as_of)
        colour = colours.classify(pid, resources, as_of=period.end).displayed
        yield result, colour


def metrics_of(result: PersonResult, colour: str | None) -> list[str]:
    """The counters this person adds 1 to (documented in docs/completeness.md)."""
    out = ["people"]
    facts = result.facts
    if facts.place.record_no:
        out.append("record")
        if result.in_use:
            out.append("record-in-use")
    if result.in_use:
        out.append("in-use")
    if result.has_contract:
        out.append("contract")
    out.append(f"colour:{colour or 'none'}")
    out.extend(f"cohort:{c}" for c in sorted(result.cohorts))
    if result.gaps:
        out.append("with-gaps")
    if any(g.overdue for g in result.gaps):
        out.append("with-overdue")
    for rule_id, outcome in result.outcomes.items():
        if not outcome.applies:
            continue
        out.append(f"rule:{rule_id}:applies")
        out.append(f"rule:{rule_id}:{'met' if outcome.met else 'unmet'}")
        if (
            any(done for done, _due in outcome.counts.values())
            and rule_id != "personal-information"
        ):
            out.append(f"rule:{rule_id}:served")
        if outcome.controlled:
            out.append(f"rule:{rule_id}:controlled")
        if any(g.overdue for g in outcome.gaps):
            out.append(f"rule:{rule_id}:overdue")
        items = {g.item for g in outcome.gaps}
        overdue_items = {g.item for g in outcome.gaps if g.overdue}
        out.extend(f"item:{rule_id}/{i}:missing" for i in sorted(items))
        out.extend(f"item:{rule_id}/{i}:overdue" for i in sorted(overdue_items))
    return out


def person_row(result: PersonResult, colour: str | None, now: dt.datetime) -> dict[str, Any]:
    place = result.facts.place
    gaps = result.gaps
    dues = [g.due for g in gaps if g.due]
    return {
        "period": result.period.key,
        "patient_id": result.patient_id,
        "record_no": place.record_no or None,
        "county": place.county or None,
        "township": place.township or None,
        "village": place.village or None,
        "organization": place.organization or None,
        "name": result.facts.name[:128] or None,
        "gender": result.facts.gender or None,
        "age": result.age,
        "colour": colour,
        "gaps": len(gaps),
        "overdue": sum(1 for g in gaps if g.overdue),
        "next_due": min(dues).isoformat() if dues else None,
        "gap_codes": " " + " ".join(sorted({g.code for g in gaps})) + " ",
        "metrics": " " + " ".join(metrics_of(result, colour)) + " ",
        "detail": orjson.dumps(result.as_dict()).decode(),
        "computed_at": now,
    }


@dataclasses.dataclass
class AuditRun:
    period: Period
    jurisdiction: str
    people: int
    summary: dict[str, float]  # metrics of ``jurisdiction``


def run_audit(
    engine: Engine,
    period: Period,
    jurisdiction: str = "",
    as_of: dt.date | None = None,
    progress: Callable[[int], None] | None = None,
    book: RuleBook | None = None,
) -> AuditRun:
    """Evaluate everyone in ``jurisdiction`` for ``period``, store and summarise.

    Earlier results of the same people and period are replaced; ``progress`` is
    called with the number of people done after each written batch.
    """
    jurisdiction = juris.check(jurisdiction)
    now = dt.datetime.now(dt.UTC)
    people = 0
    # Short write transactions (one per batch) so that ingestion is never blocked
    # for the length of an audit (SQLite has a single writer).
    with engine.connect() as reader:
        rows: list[dict[str, Any]] = []
        for result, colour in evaluate_people(reader, period, jurisdiction, as_of, book):
            rows.append(person_row(result, colour, now))
            if len(rows) >= WRITE_BATCH:
                _write_rows(engine, period, rows)
                people += len(rows)
                rows = []
                if progress:
                    progress(people)
        if rows:
            _write_rows(engine, period, rows)
            people += len(rows)
            if progress:
                progress(people)
    with _writing(engine) as conn:
        # People who left the jurisdiction (or were deleted) since the last run.
        conn.execute(
            scope(delete(s.audit_person), period, jurisdiction).where(
                s.audit_person.c.computed_at < now
            )
        )
    with engine.connect() as conn:
        values = count_summary(conn, period)
    with _writing(engine) as conn:
        store_summary(conn, period, values, now)
    with engine.connect() as conn:
        summary = read_summary(conn, period.key, jurisdiction)
    return AuditRun(period, jurisdiction, people, summary)


@contextlib.contextmanager
def _writing(engine: Engine):
    with engine.connect().execution_options(hub_write=True) as conn:
        with conn.begin():
            yield conn


def _write_rows(engine: Engine, period: Period, rows: list[dict[str, Any]]) -> None:
    """Replace these people's rows for the period (one transaction)."""
    t = s.audit_person
    with _writing(engine) as conn:
        conn.execute(
            delete(t).where(
                t.c.period == period.key, t.c.patient_id.in_([r["patient_id"] for r in rows])
            )
        )
        conn.execute(insert(t), rows)


def scope(stmt, period: Period, jurisdiction: str):
    """``stmt`` on ``audit_person`` limited to one period and jurisdiction."""
    t = s.audit_person
    stmt = stmt.where(t.c.period == period.key)
    if not jurisdiction:
        return stmt
    if jurisdiction.startswith("Organization/"):
        return stmt.where(t.c.organization == jurisdiction)
    column = {6: t.c.county, 9: t.c.township, 12: t.c.village}[len(jurisdiction)]
    return stmt.where(column == jurisdiction)


def refresh_summary(conn: Connection, period: Period, now: dt.datetime | None = None) -> None:
    """Recount ``audit_summary`` for ``period`` from every stored person (on ``conn``)."""
    store_summary(conn, period, count_summary(conn, period), now)


def count_summary(conn: Connection, period: Period) -> dict[str, Counter]:
    """Counters per jurisdiction for ``period``, from ``audit_person`` in one pass."""
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
        ).where(t.c.period == period.key)
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
    conn: Connection, period: Period, counts: dict[str, Counter], now: dt.datetime | None = None
) -> None:
    """Replace the period's ``audit_summary`` rows with ``counts``."""
    now = now or dt.datetime.now(dt.UTC)
    conn.execute(delete(s.audit_summary).where(s.audit_summary.c.period == period.key))
    values = [
        {
            "period": period.key,
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
