import datetime as dt
from pathlib import Path

import pytest

from hub import codesystems as cs
from hub.colours import classify
from hub.colours import flag_id_for
from hub.colours import icd10_parts
from hub.colours import load_rules
from hub.colours import provenance
from tests.golden import assert_golden

ICD = "http://hl7.org/fhir/sid/icd-10"
TODAY = dt.date(2026, 6, 1)
GOLDEN = Path(__file__).parent / "golden"
PID = "p1"


def patient(birth="1950-01-01"):
    return {"resourceType": "Patient", "id": PID, "birthDate": birth}


def condition(cid, code, onset=None, clinical="active", verification=None, subject=PID):
    res = {
        "resourceType": "Condition",
        "id": cid,
        "subject": {"reference": f"Patient/{subject}"},
        "code": {"coding": [{"system": ICD, "code": code}]},
        "clinicalStatus": {"coding": [{"code": clinical}]},
    }
    if onset:
        res["onsetDateTime"] = onset
    if verification:
        res["verificationStatus"] = {"coding": [{"code": verification}]}
    return res


def episode(eid, programme, status="active"):
    return {
        "resourceType": "EpisodeOfCare",
        "id": eid,
        "status": status,
        "patient": {"reference": f"Patient/{PID}"},
        "type": [{"coding": [{"system": cs.CARE_PROGRAMME, "code": programme}]}],
    }


def colours_of(*resources, birth="1950-01-01"):
    return classify(PID, [patient(birth), *resources], as_of=TODAY).colours


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("I10.x00x032", ("I10", None)),
        ("E11.900", ("E11", "9")),
        ("N18.5", ("N18", "5")),
        ("c34.1", ("C34", "1")),
        ("F209", ("F20", "9")),
        ("not icd", None),
    ],
)
def test_icd10_parts(code, expected):
    assert icd10_parts(code) == expected


@pytest.mark.parametrize(
    ("code", "colour"),
    [
        ("C34.100", "red"),
        ("D61.900", "red"),
        ("N18.500", "red"),
        ("Z99.2", "red"),
        ("F20.000", "yellow"),
        ("F31.9", "yellow"),
        ("F70.1", "yellow"),
        ("J61.x00", "blue"),
        ("A15.000", "blue"),
        ("B18.1", "blue"),
        ("E01.0", "blue"),
        ("I10.x00x032", "orange"),
        ("E11.900", "orange"),
        ("J44.900", "orange"),
        ("N18.3", "orange"),
        ("Z85.3", "orange"),
        ("H54.0", "green"),
        ("F70.0", "green"),
        ("Q65.0", "green"),
    ],
)
def test_icd10_ranges(code, colour):
    assert colours_of(condition("c", code)) == [colour]


@pytest.mark.parametrize("code", ["J06.9", "K35.8", "R51", "B18.9"])
def test_no_colour_for_unlisted_codes(code):
    assert colours_of(condition("c", code)) == []


def test_nothing_applies_no_colour_no_flags():
    result = classify(PID, [patient()], as_of=TODAY)
    assert (result.colours, result.displayed, result.flags, result.evidence) == ([], None, [], [])


def test_all_colours_kept_and_displayed_by_precedence():
    result = classify(
        PID,
        [
            patient(),
            condition("a", "I10"),
            condition("b", "H54.0"),
            condition("c", "A15.0"),
            condition("d", "F20.0"),
            condition("e", "C16.9"),
        ],
        as_of=TODAY,
    )
    assert result.colours == ["red", "yellow", "blue", "orange", "green"]
    assert result.displayed == "red"
    shown = [f for f in result.flags if f.get("extension")]
    assert [f["code"]["coding"][0]["code"] for f in shown] == ["red"]


def test_precedence_yellow_over_blue_over_orange():
    assert (
        classify(
            PID, [patient(), condition("a", "I10"), condition("b", "B16.9")], as_of=TODAY
        ).displayed
        == "blue"
    )
    assert (
        classify(
            PID, [patient(), condition("a", "B16.9"), condition("b", "F25.0")], as_of=TODAY
        ).displayed
        == "yellow"
    )


def test_acute_mi_is_red_for_12_months_then_orange():
    assert colours_of(condition("c", "I21.9", onset="2025-12-01")) == ["red"]
    assert colours_of(condition("c", "I21.9", onset="2024-01-01")) == ["orange"]


def test_cancer_is_red_for_5_years_then_orange():
    assert colours_of(condition("c", "C50.9", onset="2022-01-01")) == ["red"]
    assert colours_of(condition("c", "C50.9", onset="2019-01-01")) == ["orange"]


def test_congenital_heart_disease_red_only_for_children():
    assert colours_of(condition("c", "Q21.0"), birth="2015-01-01") == ["red"]
    assert colours_of(condition("c", "Q21.0"), birth="1990-01-01") == ["green"]


def test_co_coded_rules():
    assert colours_of(condition("a", "F06.8")) == []
    assert colours_of(condition("a", "F06.8"), condition("b", "G40.9")) == ["yellow", "orange"]
    assert colours_of(condition("a", "T56.0")) == []
    assert colours_of(condition("a", "T56.0"), condition("b", "Y96")) == ["blue"]
    assert colours_of(condition("a", "A15.0"), condition("b", "U84.3")) == ["red", "blue"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"clinical": "resolved"},
        {"clinical": "inactive"},
        {"verification": "refuted"},
        {"verification": "entered-in-error"},
    ],
)
def test_inactive_or_refuted_conditions_do_not_count(kwargs):
    assert colours_of(condition("c", "C34.1", **kwargs)) == []


def test_other_peoples_resources_are_ignored():
    assert colours_of(condition("c", "C34.1", subject="someone-else")) == []


@pytest.mark.parametrize(
    ("programme", "colour"),
    [
        ("hypertension", "orange"),
        ("diabetes", "orange"),
        ("severe-mental-disorder-register", "yellow"),
        ("tb-register", "blue"),
        ("major-disease-register", "red"),
        ("disability-certificate", "green"),
    ],
)
def test_programmes_and_registers(programme, colour):
    assert colours_of(episode("e", programme)) == [colour]


def test_finished_enrolment_does_not_count():
    assert colours_of(episode("e", "hypertension", status="finished")) == []


def veteran_status(grade=None, benefit="active"):
    comps = [
        {
            "code": {"coding": [{"system": cs.VETERAN_STATUS, "code": "benefit-status"}]},
            "valueCodeableConcept": {
                "coding": [{"system": cs.VETERAN_BENEFIT_STATUS, "code": benefit}]
            },
        }
    ]
    if grade:
        comps.append(
            {
                "code": {"coding": [{"system": cs.VETERAN_STATUS, "code": "disability-grade"}]},
                "valueInteger": grade,
            }
        )
    return {
        "resourceType": "Observation",
        "id": "vs",
        "status": "final",
        "subject": {"reference": f"Patient/{PID}"},
        "code": {"coding": [{"system": cs.VETERAN_STATUS, "code": "veteran-entitlement"}]},
        "component": comps,
    }


def test_disabled_serviceman_grade_is_green():
    assert colours_of(veteran_status(grade=6)) == ["green"]
    assert colours_of(veteran_status()) == []
    assert colours_of(veteran_status(grade=6, benefit="ended")) == []


def form_item(code, value):
    return {
        "resourceType": "Observation",
        "id": f"item-{code}-{value}",
        "status": "final",
        "subject": {"reference": f"Patient/{PID}"},
        "code": {"coding": [{"system": cs.HEALTH_RECORD_ITEM, "code": code}]},
        "valueCodeableConcept": {"coding": [{"code": value}]},
    }


def test_registration_form_items():
    assert colours_of(form_item("disability", "5")) == ["green"]
    assert colours_of(form_item("disability", "1")) == []
    assert colours_of(form_item("past-history", "8")) == ["yellow"]
    assert colours_of(form_item("past-history", "12")) == ["blue"]
    assert colours_of(form_item("past-history", "2")) == []


def test_sensitive_colours_carry_security_labels():
    result = classify(PID, [patient(), condition("a", "F20.0"), condition("b", "I10")], as_of=TODAY)
    flags = {f["code"]["coding"][0]["code"]: f for f in result.flags}
    codes = {s["code"] for s in flags["yellow"]["meta"]["security"]}
    assert codes == {"R", "mental-health"}
    assert "security" not in flags["orange"].get("meta", {})
    hiv = classify(PID, [patient(), condition("a", "Z21")], as_of=TODAY).flags[0]
    assert {s["code"] for s in hiv["meta"]["security"]} == {"R", "hiv"}


def test_flag_ids_are_deterministic_and_evidence_goes_away():
    first = classify(
        PID,
        [patient(), condition("a", "I10", onset="2020-03-01"), condition("b", "H54.0")],
        as_of=TODAY,
    )
    assert {f["id"] for f in first.flags} == {flag_id_for(PID, "orange"), flag_id_for(PID, "green")}
    later = dt.date(2026, 7, 1)
    second = classify(
        PID, [patient(), condition("a", "I10", onset="2020-03-01"), *first.flags], as_of=later
    )
    by_colour = {f["code"]["coding"][0]["code"]: f for f in second.flags}
    assert by_colour["orange"]["status"] == "active"
    assert by_colour["orange"]["period"] == {"start": "2020-03-01"}
    assert by_colour["green"]["status"] == "inactive"
    assert by_colour["green"]["period"] == {"start": TODAY.isoformat(), "end": later.isoformat()}
    # A third run keeps the inactive flag unchanged (same content, same end date).
    third = classify(
        PID,
        [patient(), condition("a", "I10", onset="2020-03-01"), *second.flags],
        as_of=dt.date(2026, 8, 1),
    )
    assert [f for f in third.flags if f["status"] == "inactive"] == [by_colour["green"]]


def test_golden_classification_and_provenance():
    resources = [
        patient(),
        condition("c1", "C16.900", onset="2025-10-01"),
        condition("c2", "I10.x00x032", onset="2015-05-01"),
        episode("e1", "hypertension"),
        veteran_status(grade=4),
    ]
    result = classify(PID, resources, as_of=TODAY)
    assert_golden(
        {
            "colours": result.colours,
            "displayed": result.displayed,
            "flags": result.flags,
            "evidence": [e.__dict__ for e in result.evidence],
            "provenance": provenance(result, PID, "2026-06-01T00:00:00+08:00"),
        },
        GOLDEN / "veteran-with-cancer.json",
    )


def test_rules_file_is_well_formed():
    rules = load_rules()
    assert rules.precedence == ("red", "yellow", "blue", "orange", "green")
    colours = {r.colour for r in rules.icd10} | {r.then for r in rules.icd10 if r.then}
    assert colours <= set(rules.precedence)
    assert {p["colour"] for p in rules.programmes.values()} <= set(rules.precedence)


def test_concept_map_is_valid_fhir_and_covers_the_rules():
    from fhir.resources.R4B.conceptmap import ConceptMap

    from hub.colours import concept_map

    cmap = concept_map()
    ConceptMap.model_validate(cmap)
    elements = {}
    for element in cmap["group"][0]["element"]:
        elements.setdefault(element["code"], []).append(element["target"][0])
    assert [t["code"] for t in elements["C34"]] == ["red"]
    assert elements["C34"][0]["comment"] == "within 60 months of onset, then orange"
    assert [t["code"] for t in elements["N18.5"]] == ["red"]
    assert [t["code"] for t in elements["N18.3"]] == ["orange"]
    assert {t["code"] for t in elements["F70.1"]} == {"yellow"}
    assert elements["Q99"][0]["comment"] == "only when no other rule matches"
