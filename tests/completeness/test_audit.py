"""The audit job on both backends: stored results, summary and indicators by hand."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest
from sqlalchemy import func
from sqlalchemy import select

from hub.completeness import batch
from hub.completeness import denominators
from hub.completeness import indicators
from hub.completeness.periods import Period
from hub.outcomes import OperationOutcomeError
from hub.storage import schema as s
from hub.storage.db import writing
from tests.completeness import population

Y2025 = Period.year(2025)


@pytest.fixture
def audited(hub):
    population.load(hub)
    run = batch.run_audit(hub.engine, Y2025, "370203", as_of=dt.date(2025, 12, 1))
    return hub, run


def rates(hub, jurisdiction):
    with hub.engine.connect() as conn:
        summary = batch.read_summary(conn, "2025", jurisdiction)
        return {f.indicator.id: f for f in indicators.figures(conn, summary, jurisdiction, Y2025)}


def test_audit_stores_one_row_per_person_and_summarises_every_level(audited):
    hub, run = audited
    assert run.people == 5
    assert run.summary["people"] == 5
    assert run.summary["rule:hypertension:applies"] == 2
    assert run.summary["rule:hypertension:met"] == 1
    assert run.summary["item:hypertension/follow-up:missing"] == 1
    with hub.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(s.audit_person)).scalar() == 5
        row = conn.execute(select(s.audit_person).where(s.audit_person.c.patient_id == "pb")).one()
        township = batch.read_summary(conn, "2025", "370203001")
        clinic = batch.read_summary(conn, "2025", "Organization/clinic-1")
        children = batch.child_jurisdictions(conn, "2025", "370203")
    assert (row.county, row.township, row.village) == ("370203", "370203001", "370203001001")
    # B: 2 follow-ups, the hypertension and the 65+ health checks, the contract, the phone.
    assert row.gaps == 6
    assert row.overdue == 1  # follow-up 3 was due on 30 September
    assert row.next_due == "2025-09-30"
    assert " hypertension/follow-up " in row.gap_codes
    detail = orjson.loads(row.detail)
    assert detail["outcomes"]["hypertension"]["counts"]["follow-up"] == [2, 4]
    assert township["people"] == 2 and clinic["people"] == 5
    assert children == ["370203001", "370203002"]


def test_indicators_match_hand_computed_values(audited):
    hub, _run = audited
    with writing(hub.engine) as conn:
        denominators.set_value(conn, "370203", 2025, "resident-population", 10, "yearbook 2025")
        denominators.set_value(conn, "370203", 2025, "residents-65-plus", 4)
    got = rates(hub, "370203")
    expected = {
        "record-creation-rate": (5, 10, 50.0),  # everyone has a health-record number
        "electronic-record-rate": (4, 10, 40.0),  # B lacks a phone
        "record-use-rate": (3, 5, 60.0),  # A, B, D have 2025 entries; C, E none
        "elderly-management-rate": (2, 4, 50.0),  # A and D checked, B not
        "hypertension-standard-management-rate": (1, 2, 50.0),  # A of A, B
        "diabetes-standard-management-rate": (1, 1, 100.0),  # D; E was never served
        "severe-mental-disorder-standard-management-rate": (0, 0, None),  # nobody on the register
        "contract-rate": (3, 10, 30.0),  # A, C, D
    }
    assert {k: (f.numerator, f.denominator, f.rate) for k, f in got.items()} == expected
    assert got["record-creation-rate"].source == "statistics: yearbook 2025"


def test_indicator_own_denominator_wins_and_fallback_is_labelled(audited):
    hub, _run = audited
    with writing(hub.engine) as conn:
        denominators.set_value(conn, "370203", 2025, "resident-population", 10)
        denominators.set_value(conn, "370203", 2025, "contract-rate", 6)
    got = rates(hub, "370203")
    assert got["contract-rate"].rate == 50.0
    township = rates(hub, "370203001")  # no statistics configured for the township
    assert township["record-creation-rate"].denominator == 2
    assert "not configured" in township["record-creation-rate"].source
    report = indicators.measure_report(got["contract-rate"], "370203", Y2025)
    assert report["measure"] == "http://fhirhub.org/fhir/Measure/contract-rate"
    assert report["group"][0]["measureScore"]["value"] == 50.0
    counts = {p["code"]["coding"][0]["code"]: p["count"] for p in report["group"][0]["population"]}
    assert counts == {"numerator": 3, "denominator": 6}


def test_rerun_for_a_township_replaces_only_its_people(audited):
    hub, _run = audited
    run = batch.run_audit(hub.engine, Y2025, "370203001", as_of=dt.date(2025, 12, 1))
    assert run.people == 2
    with hub.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(s.audit_person)).scalar() == 5
        assert batch.read_summary(conn, "2025", "370203")["people"] == 5


def test_reads_by_patient_batches_not_per_person(hub, monkeypatch):
    population.load(hub)
    calls = []
    original = batch.compartments

    def counting(conn, patients):
        calls.append(len(patients))
        return original(conn, patients)

    monkeypatch.setattr(batch, "compartments", counting)
    monkeypatch.setattr(batch, "BATCH", 2)
    with hub.engine.connect() as conn:
        results = list(batch.evaluate_people(conn, Y2025))
    assert len(results) == 5
    assert calls == [2, 2, 1]


def test_bad_denominators_and_jurisdictions_are_400(hub):
    with writing(hub.engine) as conn:
        with pytest.raises(OperationOutcomeError) as err:
            denominators.set_value(conn, "37x", 2025, "resident-population", 10)
        assert err.value.status == 400
        with pytest.raises(OperationOutcomeError):
            denominators.set_value(conn, "370203", 2025, "resident-population", -1)


def test_rerun_drops_people_no_longer_in_the_jurisdiction(audited):
    hub, _run = audited
    hub.repo.write(lambda w: w.delete("Patient", "pc"))
    run = batch.run_audit(hub.engine, Y2025, "370203", as_of=dt.date(2025, 12, 1))
    assert run.people == 4 and run.summary["people"] == 4
    with hub.engine.connect() as conn:
        ids = conn.execute(select(s.audit_person.c.patient_id)).scalars().all()
        assert sorted(ids) == ["pa", "pb", "pd", "pe"]
        assert batch.read_summary(conn, "2025", "370203002")["people"] == 2
