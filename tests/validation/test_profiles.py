"""The hub's profiles (profiles/fhirhub) accept good examples and reject bad ones."""

from __future__ import annotations

import copy

import pytest

from hub.validation.definitions import Definitions
from hub.validation.validator import Validator

SD = "http://fhirhub.org/fhir/StructureDefinition/"


@pytest.fixture(scope="module")
def validator():
    return Validator(Definitions.default())


def errors(issues):
    return [
        (i["diagnostics"], i.get("expression", [""])[0]) for i in issues if i["severity"] == "error"
    ]


def error_expressions(issues):
    return sorted({e for _, e in errors(issues)})


PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "meta": {"profile": [SD + "cn-resident-patient"]},
    "extension": [
        {
            "url": "urn:fhirhub:extension:gbt-2261-1-sex",
            "valueCoding": {"system": "urn:oid:2.16.156.10011.2.3.3.4", "code": "2"},
        },
        {
            "url": "urn:fhirhub:extension:ethnicity",
            "valueCoding": {"system": "urn:oid:2.16.156.10011.2.3.3.3", "code": "01"},
        },
    ],
    "identifier": [
        {"system": "urn:oid:2.16.156.10011.1.3", "value": "11010519491231002X"},
        {"system": "urn:oid:2.16.156.10011.1.2", "value": "37028300100100001"},
    ],
    "name": [{"text": "王秀英", "family": "王"}],
    "gender": "female",
    "birthDate": "1949-12-31",
}

URN = "urn:fhirhub:codesystem:"
SECURITY = [
    {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"},
    {"system": URN + "sensitivity", "code": "veteran-status"},
]


def _component(code, **value):
    return {"code": {"coding": [{"system": URN + "veteran-status", "code": code}]}, **value}


VETERAN = {
    "resourceType": "Observation",
    "id": "v1",
    "meta": {"profile": [SD + "veteran-entitlement"], "security": SECURITY},
    "status": "final",
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "social-history",
                }
            ]
        }
    ],
    "code": {"coding": [{"system": URN + "veteran-status", "code": "veteran-entitlement"}]},
    "subject": {"reference": "Patient/p1"},
    "valueCodeableConcept": {
        "coding": [{"system": URN + "veteran-category", "code": "disabled-serviceman"}]
    },
    "component": [
        _component(
            "benefit-status",
            valueCodeableConcept={
                "coding": [{"system": URN + "veteran-benefit-status", "code": "active"}]
            },
        ),
        _component("disability-grade", valueInteger=6),
        _component(
            "disability-nature",
            valueCodeableConcept={
                "coding": [{"system": URN + "veteran-disability-nature", "code": "duty"}]
            },
        ),
        _component("pension-standard", valueQuantity={"value": 2150, "unit": "元/月"}),
    ],
}

FLAG = {
    "resourceType": "Flag",
    "meta": {"profile": [SD + "health-colour-flag"]},
    "extension": [{"url": "urn:fhirhub:extension:five-colour-displayed", "valueBoolean": True}],
    "status": "active",
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/flag-category",
                    "code": "clinical",
                }
            ]
        }
    ],
    "code": {"coding": [{"system": URN + "five-colour", "code": "orange"}]},
    "subject": {"reference": "Patient/p1"},
    "period": {"start": "2026-01-05"},
}

FOLLOWUP = {
    "resourceType": "Encounter",
    "meta": {"profile": [SD + "key-population-followup"]},
    "status": "finished",
    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH"},
    "type": [{"coding": [{"system": URN + "care-programme", "code": "hypertension"}]}],
    "subject": {"reference": "Patient/p1"},
    "period": {"start": "2026-03-02T09:30:00+08:00"},
}

CONTRACT = {
    "resourceType": "EpisodeOfCare",
    "meta": {"profile": [SD + "family-doctor-contract"]},
    "extension": [
        {
            "url": "urn:fhirhub:extension:service-package",
            "valueCoding": {"system": URN + "service-package", "code": "basic"},
        }
    ],
    "identifier": [{"system": "urn:example:contract", "value": "QY2026-0001"}],
    "status": "active",
    "type": [{"coding": [{"system": URN + "care-programme", "code": "family-doctor-contract"}]}],
    "patient": {"reference": "Patient/p1"},
    "managingOrganization": {"reference": "Organization/clinic"},
    "period": {"start": "2026-01-01", "end": "2026-12-31"},
    "careManager": {"reference": "Practitioner/dr1"},
}


@pytest.mark.parametrize(
    "example", [PATIENT, VETERAN, FLAG, FOLLOWUP, CONTRACT], ids=lambda r: r["resourceType"]
)
def test_good_examples_pass(validator, example):
    assert errors(validator.validate(example)) == []


def test_every_profile_gets_a_snapshot():
    defs = Definitions.default()
    ours = [
        sd
        for sd in defs.structures()
        if sd["url"].startswith(SD) or sd["url"].startswith("urn:fhirhub:")
    ]
    assert len(ours) == 17  # 8 profiles, 9 extensions
    for sd in ours:
        snap = defs.structure(sd["url"])["snapshot"]["element"]
        assert snap[0]["path"] == sd["type"]


def test_resident_id_checksum(validator):
    bad = copy.deepcopy(PATIENT)
    bad["identifier"][0]["value"] = "110105194912310021"
    assert error_expressions(validator.validate(bad)) == ["Patient.identifier[0]"]
    assert "cn-id-1" in errors(validator.validate(bad))[0][0]


def test_health_record_number_has_17_digits(validator):
    bad = copy.deepcopy(PATIENT)
    bad["identifier"][1]["value"] = "3702830010010001"
    assert error_expressions(validator.validate(bad)) == ["Patient.identifier[1]"]


def test_sex_code_must_agree_with_gender(validator):
    bad = copy.deepcopy(PATIENT)
    bad["gender"] = "male"
    assert [e for e in errors(validator.validate(bad)) if "cn-pat-1" in e[0]][0][1] == "Patient"


def test_unknown_ethnicity_code(validator):
    bad = copy.deepcopy(PATIENT)
    bad["extension"][1]["valueCoding"]["code"] = "60"
    assert error_expressions(validator.validate(bad)) == ["Patient.extension[1].valueCoding"]


def test_birth_date_mismatch_is_a_warning(validator):
    bad = copy.deepcopy(PATIENT)
    bad["birthDate"] = "1950-01-01"
    issues = validator.validate(bad)
    assert errors(issues) == []
    assert any("cn-pat-2" in i["diagnostics"] for i in issues if i["severity"] == "warning")


def test_patient_needs_name(validator):
    bad = copy.deepcopy(PATIENT)
    del bad["name"]
    assert errors(validator.validate(bad)) == [
        ("Patient.name: minimum required = 1, but only found 0", "Patient")
    ]


def test_veteran_needs_security_labels(validator):
    bad = copy.deepcopy(VETERAN)
    bad["meta"]["security"] = bad["meta"]["security"][:1]
    found = errors(validator.validate(bad))
    assert (
        "Observation.meta.security: minimum required = 2, but only found 1",
        "Observation.meta",
    ) in found
    assert any("vet-1" in d for d, _ in found)


def test_veteran_disability_grade_range(validator):
    bad = copy.deepcopy(VETERAN)
    bad["component"][1]["valueInteger"] = 11
    assert error_expressions(validator.validate(bad)) == ["Observation.component[1].valueInteger"]


def test_veteran_grade_without_nature_is_a_warning(validator):
    bad = copy.deepcopy(VETERAN)
    del bad["component"][2]
    issues = validator.validate(bad)
    assert errors(issues) == []
    assert any("vet-2" in i["diagnostics"] for i in issues if i["severity"] == "warning")


def test_veteran_needs_benefit_status(validator):
    bad = copy.deepcopy(VETERAN)
    del bad["component"][0]
    assert any("slice 'benefitStatus'" in d for d, _ in errors(validator.validate(bad)))


def test_veteran_unknown_component_and_category(validator):
    bad = copy.deepcopy(VETERAN)
    bad["component"].append(_component("rank", valueString="colonel"))
    bad["valueCodeableConcept"]["coding"][0]["code"] = "general"
    assert error_expressions(validator.validate(bad)) == [
        "Observation.component[4]",
        "Observation.valueCodeableConcept",
    ]


def test_flag_colour_must_be_one_of_five(validator):
    bad = copy.deepcopy(FLAG)
    bad["code"]["coding"][0]["code"] = "purple"
    assert error_expressions(validator.validate(bad)) == ["Flag.code"]


def test_followup_mode_and_programme(validator):
    bad = copy.deepcopy(FOLLOWUP)
    bad["class"]["code"] = "IMP"
    bad["type"][0]["coding"][0]["code"] = "tb-register"
    found = errors(validator.validate(bad))
    assert sorted({e for _, e in found}) == ["Encounter", "Encounter.class"]
    assert any("kpf-1" in d for d, _ in found)


def test_followup_ws364_mode_must_agree_with_class(validator):
    phone = copy.deepcopy(FOLLOWUP)
    phone["type"].append(
        {"coding": [{"system": "urn:oid:2.16.156.10011.2.3.1.183", "code": "3", "display": "电话"}]}
    )
    assert any("kpf-2" in d for d, _ in errors(validator.validate(phone)))  # class is HH
    phone["class"]["code"] = "VR"
    assert errors(validator.validate(phone)) == []


def test_followup_programme_must_be_coded_in_type(validator):
    # The document type in meta.tag is not what the completeness audit reads: not enough.
    cda = copy.deepcopy(FOLLOWUP)
    cda["type"] = [{"text": "高血压患者随访"}]
    cda["meta"]["tag"] = [{"system": "urn:oid:2.16.156.10011.2.4", "code": "HSDB04.01"}]
    assert any("kpf-1" in d for d, _ in errors(validator.validate(cda)))


def test_followup_subject_must_be_patient(validator):
    bad = copy.deepcopy(FOLLOWUP)
    bad["subject"] = {"reference": "Group/g1"}
    assert error_expressions(validator.validate(bad)) == ["Encounter.subject"]


def test_contract_needs_term_and_package(validator):
    bad = copy.deepcopy(CONTRACT)
    del bad["period"]["end"]
    del bad["extension"]
    found = errors(validator.validate(bad))
    assert (
        "EpisodeOfCare.period.end: minimum required = 1, but only found 0",
        "EpisodeOfCare.period",
    ) in found
    assert any("slice 'servicePackage'" in d for d, _ in found)


def test_contract_type_slice(validator):
    bad = copy.deepcopy(CONTRACT)
    bad["type"][0]["coding"][0]["code"] = "other"
    assert any("slice 'contract'" in d for d, _ in errors(validator.validate(bad)))


def test_profile_argument_and_unknown_profile(validator):
    plain = {k: v for k, v in PATIENT.items() if k != "meta"}
    assert errors(validator.validate(plain)) == []
    del plain["name"]
    assert errors(validator.validate(plain, [SD + "cn-resident-patient"]))
    unknown = validator.validate(plain, [SD + "no-such-profile"])
    assert [(i["code"], i["expression"]) for i in unknown if i["severity"] == "error"] == [
        ("not-supported", ["Patient"])
    ]


def test_the_hubs_own_output_conforms(validator):
    """What the adapters and the five-colour classification write meets the profiles."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent.parent
    profile_of = {
        "Patient": "cn-resident-patient",
        "EpisodeOfCare": "family-doctor-contract",
        "Encounter": "key-population-followup",
    }
    checked = 0
    for name, wanted in (
        (
            "tests/va_registry/golden/disabled-serviceman.bundle.json",
            {"Observation": "veteran-entitlement"},
        ),
        ("tests/golden/cda/HSDB04.01/face-to-face.expected.json", profile_of),
        ("tests/golden/cda/HSDB04.02/telephone.expected.json", profile_of),
        (
            "conformance/sites/county-platform/cases/family-doctor-contracts/expected.json",
            profile_of,
        ),
    ):
        bundle = json.loads((root / name).read_text())
        for entry in bundle["entry"]:
            res = entry["resource"]
            profile = wanted.get(res["resourceType"])
            if profile:
                assert errors(validator.validate(res, [SD + profile])) == [], (name, res["id"])
                checked += 1
    colours = json.loads((root / "tests/colours/golden/veteran-with-cancer.json").read_text())
    for flag in colours["flags"]:
        assert errors(validator.validate(flag, [SD + "health-colour-flag"])) == []
        checked += 1
    assert checked >= 12


ROUND = {
    "resourceType": "Encounter",
    "meta": {"profile": [SD + "veteran-round"]},
    "status": "finished",
    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR"},
    "type": [{"coding": [{"system": URN + "encounter-type", "code": "remote-round"}]}],
    "subject": {"reference": "Patient/p1"},
    "participant": [{"individual": {"reference": "Practitioner/dr1"}}],
    "period": {"start": "2026-03-02T09:30:00+08:00"},
    "serviceProvider": {"reference": "Organization/partner"},
}

ROUND_PLAN = {
    "resourceType": "CarePlan",
    "meta": {"profile": [SD + "veteran-round-plan"]},
    "status": "active",
    "intent": "plan",
    "subject": {"reference": "Patient/p1"},
    "encounter": {"reference": "Encounter/r1"},
    "activity": [{"detail": {"status": "scheduled", "description": "邮寄降压药一个月"}}],
}


@pytest.mark.parametrize("example", [ROUND, ROUND_PLAN], ids=lambda r: r["resourceType"])
def test_round_examples_pass(validator, example):
    assert errors(validator.validate(example)) == []


@pytest.mark.parametrize(
    ("kind", "klass", "rule"),
    [
        ("remote-round", "HH", "vr-2"),  # a remote round at home
        ("home-round", "VR", "vr-2"),
        ("expert-consultation", "AMB", "vr-3"),  # neither at a distance nor at home
        ("health-check", "VR", "vr-1"),  # not a round
    ],
)
def test_round_kind_and_class(validator, kind, klass, rule):
    bad = copy.deepcopy(ROUND)
    bad["type"][0]["coding"][0]["code"] = kind
    bad["class"]["code"] = klass
    assert any(rule in d for d, _ in errors(validator.validate(bad)))


def test_consultation_may_be_remote_or_at_home(validator):
    for klass in ("VR", "HH"):
        good = copy.deepcopy(ROUND)
        good["type"][0]["coding"][0]["code"] = "expert-consultation"
        good["class"]["code"] = klass
        assert errors(validator.validate(good)) == []


def test_round_needs_doctor_and_hospital(validator):
    bad = copy.deepcopy(ROUND)
    del bad["participant"], bad["serviceProvider"]
    found = [d for d, _ in errors(validator.validate(bad))]
    assert any(d.startswith("Encounter.participant: minimum required = 1") for d in found)
    assert any(d.startswith("Encounter.serviceProvider: minimum required = 1") for d in found)


def test_round_plan_needs_its_round_and_actions(validator):
    bad = copy.deepcopy(ROUND_PLAN)
    del bad["encounter"]
    bad["activity"] = [{"detail": {"status": "scheduled"}}]
    found = errors(validator.validate(bad))
    assert any(d.startswith("CarePlan.encounter: minimum required = 1") for d, _ in found)
    assert any("vrp-1" in d for d, _ in found)
