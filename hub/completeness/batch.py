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

import dataclasses
import datetime as dt
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import orjson
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
from hub.storage import audit_summaries as summaries
from hub.storage import schema as s
from hub.storage.audit_summaries import AuditSummaryStore
from hub.storage.db import reading

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
    store = AuditSummaryStore(engine)
    with reading(engine) as reader:
        rows: list[dict[str, Any]] = []
        for result, colour in evaluate_people(reader, period, jurisdiction, as_of, book):
            rows.append(person_row(result, colour, now))
            if len(rows) >= WRITE_BATCH:
                store.replace_people(period.key, rows)
                people += len(rows)
                rows = []
                if progress:
                    progress(people)
        if rows:
            store.replace_people(period.key, rows)
            people += len(rows)
            if progress:
                progress(people)
    # People who left the jurisdiction (or were deleted) since the last run.
    store.drop_people(period.key, jurisdiction, computed_before=now)
    store.recount(period.key, now)
    summary = store.summary(period.key, jurisdiction)
    return AuditRun(period, jurisdiction, people, summary)


def scope(stmt, period: Period, jurisdiction: str):
    """``stmt`` on ``audit_person`` limited to one period and jurisdiction."""
    return summaries.scope(stmt, period.key, jurisdiction)


def refresh_summary(conn: Connection, period: Period, now: dt.datetime | None = None) -> None:
    """Recount ``audit_summary`` for ``period`` from every stored person (on ``conn``)."""
    summaries.store_summary(conn, period.key, summaries.count_summary(conn, period.key), now)


# The summaries' reads, under the names the pages and indicators use.
read_summary = summaries.read_summary
summary_periods = summaries.summary_periods
computed_at = summaries.computed_at
child_jurisdictions = summaries.child_jurisdictions
