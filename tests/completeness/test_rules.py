"""Completeness rules on crafted people whose gaps are known."""

from __future__ import annotations

import datetime as dt

import pytest

from hub import codesystems as cs
from hub.completeness import facts
from hub.completeness import periods
from hub.completeness import rulebook
from hub.completeness.evaluate import evaluate
from hub.completeness.periods import Period
from hub.outcomes import OperationOutcomeError
from tests.completeness import people as p

Y2025 = Period.year(2025)
AS_OF = dt.date(2025, 8, 1)


def run(pid, resources, period=Y2025, as_of=AS_OF):
    book = rulebook.load()
    return evaluate(facts.collect(pid, resources, book), period, book, as_of)


def gaps(result, rule):
    return [
        (g.item, g.slot, g.due.isoformat() if g.due else None, g.overdue)
        for g in result.outcomes[rule].gaps
    ]


def test_complete_hypertension_patient_meets_the_rule_and_is_controlled():
    pid = "h1"
    res = [
        p.patient(pid, "1965-05-01"),
        p.condition(pid, "I10", "2019-01-01"),
        p.health_check(pid, "2025-04-02"),
    ]
    for n, day in enumerate(["2025-02-10", "2025-05-10", "2025-08-10", "2025-11-10"]):
        res.append(p.follow_up(pid, "hypertension", day, eid=f"fu{n}"))
    res.append(p.blood_pressure(pid, "2025-11-10", 132, 84, encounter="fu3"))
    result = run(pid, res, as_of=dt.date(2026, 1, 5))
    outcome = result.outcomes["hypertension"]
    assert outcome.applies and outcome.met and outcome.gaps == []
    assert outcome.counts == {"follow-up": [4, 4], "health-check": [1, 1]}
    assert outcome.controlled is True
    assert "hypertension" in result.cohorts and "elderly" not in result.cohorts


def test_telephone_follow_ups_do_not_count_and_missing_ones_have_due_dates():
    pid = "h2"
    res = [
        p.patient(pid, "1970-01-01"),
        p.condition(pid, "I11.9", "2018-06-01"),
        p.follow_up(pid, "hypertension", "2025-02-01"),
        p.follow_up(pid, "hypertension", "2025-05-01", cls="HH"),  # home visit: face-to-face
        p.follow_up(pid, "hypertension", "2025-07-01", cls="VR"),  # telephone: not counted
    ]
    result = run(pid, res)
    assert result.outcomes["hypertension"].counts["follow-up"] == [2, 4]
    assert gaps(result, "hypertension") == [
        ("follow-up", 3, "2025-09-30", False),
        ("follow-up", 4, "2025-12-31", False),
        ("health-check", 1, "2025-12-31", False),
    ]


def test_control_is_judged_on_the_latest_visit_and_is_age_dependent():
    def person(pid, birth, systolic):
        return [
            p.patient(pid, birth),
            p.condition(pid, "I10"),
            p.follow_up(pid, "hypertension", "2025-03-01", eid=f"{pid}-a"),
            p.blood_pressure(pid, "2025-03-01", 120, 70, encounter=f"{pid}-a"),
            p.follow_up(pid, "hypertension", "2025-06-01", eid=f"{pid}-b"),
            p.blood_pressure(pid, "2025-06-01", systolic, 85),  # same day, no encounter link
        ]

    assert (
        run("young", person("young", "1970-01-01", 145)).outcomes["hypertension"].controlled
        is False
    )
    # From 65 the target is < 150/90.
    assert run("old", person("old", "1950-01-01", 145)).outcomes["hypertension"].controlled is True


def test_diabetes_prorated_from_diagnosis_and_glucose_control():
    pid = "d1"
    res = [
        p.patient(pid, "1975-01-01"),
        p.condition(pid, "E11.9", "2025-07-01"),  # diagnosed mid-year: 2 of 4 follow-ups due
        p.follow_up(pid, "diabetes", "2025-08-01", eid="dfu"),
        p.observation(pid, "http://loinc.org", "14771-0", "2025-08-01", 6.4),
    ]
    result = run(pid, res, as_of=dt.date(2026, 1, 2))
    outcome = result.outcomes["diabetes"]
    assert outcome.counts["follow-up"] == [1, 2]
    assert outcome.controlled is True
    assert gaps(result, "diabetes") == [
        ("follow-up", 2, "2025-12-31", True),
        ("health-check", 1, "2025-12-31", True),
    ]


def test_services_are_owed_only_until_death():
    """A record ends with the person's death (档案终止): nothing is due after it."""
    pid = "dead1"
    res = [
        p.patient(pid, "1950-01-01", deceasedDateTime="2025-06-05"),
        p.condition(pid, "I10", "2019-07-05"),
        p.follow_up(pid, "hypertension", "2025-03-24", "HH"),
        p.follow_up(pid, "hypertension", "2025-04-27"),
        p.health_check(pid, "2025-04-04"),
        p.follow_up(pid, "hypertension", "2025-09-01"),  # after death: entered by mistake
    ]
    result = run(pid, res, as_of=dt.date(2026, 1, 31))
    outcome = result.outcomes["hypertension"]
    # 1 January to 5 June: 5.2 months of 12, 4 a year -> 2 follow-ups due, both done
    assert outcome.counts["follow-up"] == [2, 2]
    assert outcome.met and not gaps(result, "hypertension")
    assert outcome.controlled is False  # judged on 27 April (no reading): not on target


def test_type_1_diabetes_is_not_in_the_programme():
    result = run("t1", [p.patient("t1", "1990-01-01"), p.condition("t1", "E10.9")])
    assert not result.outcomes["diabetes"].applies


def test_severe_mental_disorder_four_follow_ups():
    pid = "m1"
    res = [p.patient(pid, "1980-01-01"), p.condition(pid, "F20.0", "2010-01-01")]
    res += [
        p.follow_up(pid, cs.PROGRAMME_SEVERE_MENTAL_DISORDER, d)
        for d in ("2025-01-05", "2025-04-05", "2025-07-05")
    ]
    result = run(pid, res)
    assert gaps(result, "severe-mental-disorder") == [("follow-up", 4, "2025-12-31", False)]


def test_elderly_annual_check_by_age_on_the_last_day_of_the_year():
    turning_65 = run("e1", [p.patient("e1", "1960-12-31")])
    assert gaps(turning_65, "elderly-health-check") == [("health-check", 1, "2025-12-31", False)]
    assert not run("e2", [p.patient("e2", "1961-01-01")]).outcomes["elderly-health-check"].applies
    checked = run("e3", [p.patient("e3", "1950-01-01"), p.health_check("e3", "2025-03-01")])
    assert checked.outcomes["elderly-health-check"].met
    last_year = run("e4", [p.patient("e4", "1950-01-01"), p.health_check("e4", "2024-12-30")])
    assert not last_year.outcomes["elderly-health-check"].met


def test_personal_information_missing_fields():
    pat = p.patient("pi", "1990-01-01")
    del pat["telecom"]
    pat["identifier"] = pat["identifier"][1:]  # no resident ID number
    result = run("pi", [pat])
    assert [g[0] for g in gaps(result, "personal-information")] == ["resident-id", "phone"]
    assert result.outcomes["personal-information"].counts["fields"] == [6, 8]


def test_key_population_needs_a_contract_and_packages_have_due_services():
    no_contract = run("k1", [p.patient("k1", "1950-01-01")])
    assert gaps(no_contract, "family-doctor") == [("contract", 1, "2025-12-31", False)]
    healthy = run("k2", [p.patient("k2", "1990-01-01")])
    assert healthy.outcomes["family-doctor"].met  # not key population: no contract needed

    pid = "k3"
    res = [
        p.patient(pid, "1950-01-01"),  # 75: home visits due under the advanced package
        p.condition(pid, "E11"),
        p.contract(pid, "2025-07-01", "2026-06-30", "advanced"),
        p.observation(pid, "http://loinc.org", "4548-4", "2025-09-01", 6.8),
    ]
    res += [p.follow_up(pid, "diabetes", f"2025-{m:02d}-03", cls="HH") for m in (7, 8, 9)]
    result = run(pid, res, as_of=dt.date(2025, 10, 15))
    outcome = result.outcomes["family-doctor"]
    # Contract covers July-December: 6 home visits and 1 HbA1c due; no carotid ultrasound
    # (not hypertensive).
    assert outcome.counts == {"home-visit": [3, 6], "hba1c": [1, 1]}
    assert gaps(result, "family-doctor") == [
        ("home-visit", 4, "2025-10-31", False),
        ("home-visit", 5, "2025-11-30", False),
        ("home-visit", 6, "2025-12-31", False),
    ]
    assert result.has_contract


def test_newborn_screening_due_after_birth():
    pid = "n1"
    ns = cs.NEWBORN_SCREENING
    res = [p.patient(pid, "2025-06-18"), p.observation(pid, ns, "pku", "2025-06-21")]
    result = run(pid, res)
    assert gaps(result, "newborn-screening") == [
        ("congenital-hypothyroidism", 1, "2025-06-25", True),
        ("hearing", 1, "2025-07-30", True),
    ]
    assert not run("n2", [p.patient("n2", "2024-06-18")]).outcomes["newborn-screening"].applies


def test_cancelled_encounters_and_other_peoples_resources_are_ignored():
    pid = "x1"
    cancelled = p.health_check(pid, "2025-03-01")
    cancelled["status"] = "cancelled"
    other = p.health_check("someone-else", "2025-03-01")
    result = run(pid, [p.patient(pid, "1950-01-01"), cancelled, other])
    assert not result.outcomes["elderly-health-check"].met


@pytest.mark.parametrize(
    ("per_year", "start", "end", "expected"),
    [
        (4, "2025-01-01", "2025-12-31", 4),
        (4, "2024-01-01", "2024-12-31", 4),  # leap year
        (4, "2025-07-01", "2025-12-31", 2),
        (12, "2025-07-01", "2025-12-31", 6),
        (1, "2025-11-01", "2025-12-31", 1),
    ],
)
def test_required_counts(per_year, start, end, expected):
    window = Period(dt.date.fromisoformat(start), dt.date.fromisoformat(end))
    assert periods.required_count(per_year, window, Period.year(window.start.year)) == expected


def test_period_parsing():
    assert Period.parse("2025").key == "2025"
    assert Period.parse(None, "2025-01-01", "2025-06-30").key == "2025-01-01..2025-06-30"
    with pytest.raises(OperationOutcomeError) as err:
        Period.parse("20x5")
    assert err.value.status == 400
    with pytest.raises(OperationOutcomeError):
        Period.parse(None, "2025-06-30", "2025-01-01")


def test_rule_files_with_unknown_references_are_rejected(tmp_path):
    import shutil

    for f in rulebook.RULES_DIR.glob("*.yaml"):
        shutil.copy(f, tmp_path / f.name)
    text = (tmp_path / "hypertension.yaml").read_text(encoding="utf-8")
    (tmp_path / "hypertension.yaml").write_text(
        text.replace("evidence: health-check", "evidence: no-such-evidence"), encoding="utf-8"
    )
    with pytest.raises(ValueError, match="no-such-evidence"):
        rulebook.load(tmp_path)
