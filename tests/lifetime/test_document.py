"""``Patient/{id}/$lifetime-file``: the resident health record as a document and a page."""

from __future__ import annotations

import pytest
from lxml import etree

from hub.identity.ids import stable_id
from hub.lifetime import consumer
from hub.lifetime.document import section_of
from tests.lifetime.conftest import condition
from tests.lifetime.conftest import observation
from tests.lifetime.conftest import patient

RID = "urn:oid:2.16.156.10011.1.3"
PROGRAMME = "urn:fhirhub:codesystem:care-programme"


def encounter(eid, pid, cls, type_text, start):
    return {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": cls},
        "type": [{"text": type_text}],
        "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": start},
    }


@pytest.fixture
def record(fhir, hub):
    fhir.put(
        patient(
            "p",
            name=[{"text": "张伟"}],
            gender="male",
            birthDate="1980-01-01",
            identifier=[
                {"system": RID, "value": "410102198001010018"},
                {"system": "urn:oid:2.16.156.10011.1.2", "value": "41010200100100001"},
            ],
        )
    )
    fhir.put(condition("hyp", "p", "I10"))
    fhir.put(
        {
            "resourceType": "AllergyIntolerance",
            "id": "pen",
            "patient": {"reference": "Patient/p"},
            "code": {"text": "青霉素"},
        }
    )
    fhir.put(encounter("check", "p", "AMB", "健康体检", "2024-04-01"))
    fhir.put(
        observation("height", "p", "2024-04-01", "身高", encounter={"reference": "Encounter/check"})
    )
    fhir.put(
        {
            "resourceType": "EpisodeOfCare",
            "id": "htn",
            "status": "active",
            "type": [{"coding": [{"system": PROGRAMME, "code": "hypertension"}]}],
            "patient": {"reference": "Patient/p"},
        }
    )
    fhir.put(encounter("fu", "p", "AMB", "高血压患者随访", "2024-05-01"))
    fhir.put(observation("bp", "p", "2024-05-01", "血压", encounter={"reference": "Encounter/fu"}))
    fhir.put(encounter("stay", "p", "IMP", "住院", "2024-06-01"))
    fhir.put(
        {
            "resourceType": "DiagnosticReport",
            "id": "cbc",
            "status": "final",
            "code": {"text": "血常规"},
            "subject": {"reference": "Patient/p"},
            "encounter": {"reference": "Encounter/stay"},
            "effectiveDateTime": "2024-06-02",
        }
    )
    consumer.drain(hub)  # the five-colour Flag
    return fhir


def sections(bundle):
    comp = bundle["entry"][0]["resource"]
    return {
        s["code"]["coding"][0]["code"]: sorted(e["reference"] for e in s.get("entry", []))
        for s in comp["section"]
    }


def test_document_sections_follow_the_four_parts(record):
    bundle = record.get("Patient/p/$lifetime-file")
    assert bundle["type"] == "document"
    comp = bundle["entry"][0]["resource"]
    assert comp["resourceType"] == "Composition"
    assert comp["subject"] == {"reference": "Patient/p"}
    assert [s["title"] for s in comp["section"]] == [
        "个人基本信息 Personal basic information",
        "健康体检 Health examinations",
        "重点人群健康管理记录 Key-population health management records",
        "其他医疗卫生服务记录 Other medical and health services",
    ]
    got = sections(bundle)
    village = stable_id("village", "410102001001")  # 一村一卷, from the record number
    assert got["basic"] == [
        "AllergyIntolerance/pen",
        "Condition/hyp",
        f"Group/{village}",
        "Patient/p",
    ]
    assert got["examinations"] == ["Encounter/check", "Observation/height"]
    flag = [r for r in got["key-populations"] if r.startswith("Flag/")]
    assert len(flag) == 1
    assert sorted(set(got["key-populations"]) - set(flag)) == [
        "Encounter/fu",
        "EpisodeOfCare/htn",
        "Observation/bp",
    ]
    assert got["services"] == ["DiagnosticReport/cbc", "Encounter/stay"]
    # every section entry is in the Bundle
    present = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]}
    assert all(ref in present for refs in got.values() for ref in refs)
    assert all(s["text"]["div"].startswith("<div") for s in comp["section"])


def test_empty_sections_say_so(fhir):
    fhir.put(patient("alone"))
    comp = fhir.get("Patient/alone/$lifetime-file")["entry"][0]["resource"]
    empty = [s for s in comp["section"] if "entry" not in s]
    assert len(empty) == 3 and all(
        s["emptyReason"]["coding"][0]["code"] == "nilknown" for s in empty
    )


def test_document_as_xml(record, client):
    resp = client.get("/fhir/Patient/p/$lifetime-file?_format=xml")
    assert resp.status_code == 200
    root = etree.fromstring(resp.data)
    ns = {"f": "http://hl7.org/fhir"}
    assert root.find("f:type", ns).get("value") == "document"
    assert root.find("f:entry/f:resource/f:Composition", ns) is not None


@pytest.mark.parametrize(
    "url", ["/fhir/Patient/p/$lifetime-file?_format=html", "/ui/patients/p/lifetime-file"]
)
def test_printable_page(record, client, url):
    resp = client.get(url)
    assert resp.status_code == 200
    assert resp.content_type.startswith("text/html")
    page = resp.get_data(as_text=True)
    for text in (
        "居民健康档案",
        "Resident health record",
        "个人基本信息",
        "健康体检",
        "血常规",
        "@media print",
    ):
        assert text in page
    assert "410102********0018" in page and "410102198001010018" not in page  # masked
    assert "<script" not in page and "http" not in page.split("<body>")[1].split("生成时间")[0]
    assert "橙色" in page  # the five-colour badge


def test_page_for_an_unknown_patient_is_404(client):
    assert client.get("/ui/patients/nobody/lifetime-file").status_code == 404


def test_section_of_is_pure():
    kinds = {"Encounter/e": "examinations"}
    assert (
        section_of(
            {"resourceType": "Observation", "encounter": {"reference": "Encounter/e"}}, kinds
        )
        == "examinations"
    )
    assert section_of({"resourceType": "Provenance"}, {}) is None
    assert section_of({"resourceType": "Practitioner"}, {}) is None
    assert section_of({"resourceType": "Immunization"}, {}) == "services"
    item = {
        "resourceType": "Observation",
        "code": {
            "coding": [
                {"system": "urn:fhirhub:codesystem:health-record-item", "code": "disability"}
            ]
        },
    }
    assert section_of(item, {}) == "basic"


def test_encounters_are_placed_by_the_hubs_codes_before_their_words():
    from hub import codesystems as cs
    from hub.lifetime.document import encounter_kind

    check = {"type": [{"coding": [{"system": cs.ENCOUNTER_TYPE, "code": cs.HEALTH_CHECK}]}]}
    followup = {
        "type": [
            {"coding": [{"system": cs.CARE_PROGRAMME, "code": "hypertension"}]},
            {"coding": [{"system": "urn:oid:2.16.156.10011.2.3.1.183", "code": "1"}]},
        ]
    }
    # A programme follow-up whose type text says nothing the word list knows.
    assert encounter_kind(followup) == "key-populations"
    assert encounter_kind(check) == "examinations"
    assert encounter_kind({"type": [{"text": "健康体检"}]}) == "examinations"
    assert encounter_kind({"type": [{"text": "门诊"}]}) is None
