"""The severe-mental-disorder follow-up (WS/T 483.15, HSDB04.04): programme, risk grade, labels."""

from __future__ import annotations

import pytest

from fhirhub_plugins.cda import parse
from fhirhub_plugins.cda import vocab
from hub import codesystems as cs
from hub.security.labels import required_grants

from .conftest import GOLDEN
from .conftest import resources
from .test_outbound import _regenerate

SMD = GOLDEN / "HSDB04.04" / "home-visit.xml"
GRADE = b'<value xsi:type="INT" value="1"/>'


def test_follow_up_is_a_programme_encounter_with_the_visit_mode(inbound):
    bundle, _ = inbound(SMD.read_bytes())
    (encounter,) = resources(bundle, "Encounter")
    assert encounter["type"][0]["coding"] == [
        {"system": cs.CARE_PROGRAMME, "code": cs.PROGRAMME_SEVERE_MENTAL_DISORDER}
    ]
    assert encounter["type"][1]["coding"][0]["code"] == "2"  # 家庭
    assert encounter["class"]["code"] == "HH"
    assert encounter["period"]["start"].startswith("2024-06-12")


def test_risk_grade_is_an_observation_of_the_encounter(inbound):
    bundle, _ = inbound(SMD.read_bytes())
    (grade,) = [
        r
        for r in resources(bundle, "Observation")
        if r["code"]["coding"][0]["code"] == vocab.DE_SMD_RISK_GRADE
    ]
    assert grade["valueInteger"] == 1
    assert grade["encounter"]["reference"].startswith("Encounter/")


@pytest.mark.parametrize(
    "value",
    [
        b'<value xsi:type="CD" code="3" codeSystem="2.16.156.10011.2.3.1.999"/>',
        b'<value value="3"/>',
    ],
)
def test_risk_grade_as_a_code_is_read_too(value, inbound):
    bundle, _ = inbound(SMD.read_bytes().replace(GRADE, value))
    assert [r.get("valueInteger") for r in resources(bundle, "Observation")].count(3) == 1


@pytest.mark.parametrize("raw", [b"7", b"-1", b"2.5", b"high"])
def test_risk_grade_out_of_range_is_refused_and_reported(raw, inbound):
    bundle, issues = inbound(
        SMD.read_bytes().replace(GRADE, b'<value xsi:type="INT" value="' + raw + b'"/>')
    )
    assert not [r for r in resources(bundle, "Observation") if "valueInteger" in r]
    assert any("危险性分级" in i["diagnostics"] and "0 to 5" in i["diagnostics"] for i in issues)
    assert any("1 refused" in i["diagnostics"] for i in issues)


def test_identified_by_its_template_without_the_type_code(inbound):
    bundle, _ = inbound(SMD.read_bytes().replace(b'code="HSDB04.04"', b'code="X"'))
    (encounter,) = resources(bundle, "Encounter")
    assert encounter["type"][0]["coding"][0]["code"] == cs.PROGRAMME_SEVERE_MENTAL_DISORDER


def test_sent_as_normal_yet_labelled_mental_health(inbound):
    body = SMD.read_bytes()
    assert b'<confidentialityCode code="N"' in body
    bundle, _ = inbound(body)
    restricted = {"system": vocab.CONFIDENTIALITY, "code": "R", "display": "restricted"}
    for r in resources(bundle):
        labels = (r.get("meta") or {}).get("security", [])
        if r["resourceType"] in ("Patient", "Practitioner", "Organization"):
            # shared with the person's other documents: labelling them would hide the record
            assert labels == [], r["resourceType"]
            assert required_grants(r) == frozenset()
        else:
            assert restricted in labels and cs.MENTAL_HEALTH_SENSITIVITY in labels, r[
                "resourceType"
            ]
            assert required_grants(r) == {"mental-health"}, r["resourceType"]
    (doc,) = resources(bundle, "DocumentReference")
    assert cs.MENTAL_HEALTH_SENSITIVITY in doc["securityLabel"][0]["coding"]


def test_very_restricted_stays_very_restricted(inbound):
    bundle, _ = inbound(
        SMD.read_bytes().replace(b'confidentialityCode code="N"', b'confidentialityCode code="V"')
    )
    (encounter,) = resources(bundle, "Encounter")
    assert [s["code"] for s in encounter["meta"]["security"]] == ["V", "mental-health"]


def test_outbound_document_is_restricted_and_carries_the_grade(inbound):
    _, xml, _ = _regenerate(SMD, inbound)
    root = parse.parse(xml)
    assert root.find("v3:code", parse.NS).get("code") == "HSDB04.04"
    assert root.find("v3:templateId", parse.NS).get("root") == "2.16.156.10011.2.1.1.15"
    assert root.find("v3:confidentialityCode", parse.NS).get("code") == "R"
    grades = [
        obs.find("v3:value", parse.NS).get("value")
        for obs in root.iterfind(".//v3:observation", parse.NS)
        if obs.find("v3:code", parse.NS).get("code") == vocab.DE_SMD_RISK_GRADE
    ]
    assert grades == ["1"]
