"""One person from two hospitals, the county platform and the registry: one lifetime file."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from hub.identity.ids import patient_id_for_resident_id
from hub.lifetime import consumer
from hub.storage import schema as s
from tests.va_registry.samples import csv_bytes

ROOT = Path(__file__).resolve().parents[2]
KITS = ROOT / "conformance" / "sites"
NUMBER = "410102198001010018"  # 张伟, synthetic
PID = patient_id_for_resident_id(NUMBER)
PROGRAMME = "urn:fhirhub:codesystem:care-programme"

# County hospital A (HL7 v2.5, UTF-8): inpatient admission for hypertension, penicillin allergy.
ADMIT = (KITS / "county-hospital-a" / "cases" / "admit-inpatient" / "input.hl7").read_bytes()
# Township hospital B (HL7 v2.4, GB 18030, whole names, GB/T 2261 sex codes): a blood count.
LAB = (
    "MSH|^~\\&|HIS|ZWSY|FHIRHUB|HUB|20240702090000||ORU^R01|ZW-ORU-0777|P|2.4|||||CHN|GB 18030-2000\r"
    f"PID|1||B000999^^^ZWSY^MR~{NUMBER}^^^CHN^NNCHN||张伟||19800101|1\r"
    "OBR|1||LAB779|CBC^血常规^L|||20240702080000||||||||||||||||||F\r"
    "OBX|1|NM|WBC^白细胞计数^L||6.5|10\\S\\9/L|3.5-9.5||||F\r"
    "OBX|2|NM|HGB^血红蛋白^L||138|g/L|130-175||||F\r"
).encode("gb18030")
# The veterans registry: the same man is a disabled serviceman (grade 6): green.
REGISTRY_ROW = [
    "张伟", "男", NUMBER, "1980-01-01", "残疾军人", "六级", "因公", "河南省郑州市建设路12号",
    "13800000001", "市南区", "1998-12", "2002-12", "1200", "正常",
]  # fmt: skip


def county_platform_bundle() -> dict:
    """What the county platform's documents carry (health check, hypertension follow-up)."""

    def enc(eid, type_text, start):
        return {
            "resourceType": "Encounter",
            "id": eid,
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "type": [{"text": type_text}],
            "subject": {"reference": f"Patient/{PID}"},
            "period": {"start": start},
        }

    def obs(oid, text, value, unit, encounter, when):
        return {
            "resourceType": "Observation",
            "id": oid,
            "status": "final",
            "code": {"text": text},
            "subject": {"reference": f"Patient/{PID}"},
            "encounter": {"reference": f"Encounter/{encounter}"},
            "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": unit},
        }

    resources = [
        enc("county-check-2024", "健康体检", "2024-04-10"),
        obs("county-weight", "体重", 72, "kg", "county-check-2024", "2024-04-10"),
        {
            "resourceType": "EpisodeOfCare",
            "id": "county-htn",
            "status": "active",
            "type": [{"coding": [{"system": PROGRAMME, "code": "hypertension"}]}],
            "patient": {"reference": f"Patient/{PID}"},
            "period": {"start": "2024-03-20"},
        },
        enc("county-fu-2024q2", "高血压患者随访", "2024-05-20"),
        obs("county-sbp", "收缩压", 142, "mmHg", "county-fu-2024q2", "2024-05-20"),
    ]
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources
        ],
    }


def test_one_lifetime_file_with_the_right_colours(client, hub, fhir):
    for site, body, ctype in (
        ("county-hospital-a", ADMIT, "application/hl7-v2"),
        ("township-hospital-b", LAB, "application/hl7-v2"),
        ("veterans-registry", csv_bytes([REGISTRY_ROW]), "text/csv"),
    ):
        resp = client.post(f"/fhir/$ingest?site={site}", data=body, content_type=ctype)
        assert resp.status_code == 200, (site, resp.get_json())
        assert resp.headers["X-Inbox-Status"] == "done", (site, resp.get_json())
    resp = client.post("/fhir", json=county_platform_bundle())
    assert resp.status_code == 200, resp.get_json()
    consumer.drain(hub)

    with hub.engine.connect() as conn:
        patients = conn.execute(
            sa.select(s.resource.c.res_id).where(s.resource.c.res_type == "Patient")
        ).all()
    assert [p[0] for p in patients] == [PID]  # one person, whichever site

    everything = fhir.get(f"Patient/{PID}/$everything")
    kinds = {}
    for ref in fhir.ids(everything, "match"):
        kinds.setdefault(ref.split("/")[0], []).append(ref)
    assert {
        "Encounter",
        "Condition",
        "AllergyIntolerance",
        "DiagnosticReport",
        "EpisodeOfCare",
    } <= set(kinds)
    organisations = {
        r.split("/")[1] for r in fhir.ids(everything, "include") if r.startswith("Organization/")
    }
    assert {"county-hospital-a", "township-hospital-b"} <= organisations

    params = fhir.get(f"Patient/{PID}/$colours")["parameter"]
    assert [p["valueCoding"]["code"] for p in params if p["name"] == "displayed"] == ["orange"]
    colours = [p["part"][0]["valueCoding"]["code"] for p in params if p["name"] == "colour"]
    assert colours == ["orange", "green"]
    stored = fhir.get(f"Flag?subject=Patient/{PID}")["entry"]
    assert sorted(
        e["resource"]["code"]["coding"][0]["code"]
        for e in stored
        if e["resource"]["status"] == "active"
    ) == ["green", "orange"]

    bundle = fhir.get(f"Patient/{PID}/$lifetime-file")
    comp = bundle["entry"][0]["resource"]
    got = {
        sec["code"]["coding"][0]["code"]: [e["reference"] for e in sec.get("entry", [])]
        for sec in comp["section"]
    }
    assert f"Patient/{PID}" in got["basic"]
    assert any(r.startswith("Condition/") for r in got["basic"])
    assert any(r.startswith("AllergyIntolerance/") for r in got["basic"])
    assert sorted(got["examinations"]) == [
        "Encounter/county-check-2024",
        "Observation/county-weight",
    ]
    key = got["key-populations"]
    assert {
        "EpisodeOfCare/county-htn",
        "Encounter/county-fu-2024q2",
        "Observation/county-sbp",
    } <= set(key)
    assert len([r for r in key if r.startswith("Flag/")]) == 2
    assert any(
        r.startswith("Observation/") and r != "Observation/county-sbp" for r in key
    )  # registry
    services = got["services"]
    assert any(r.startswith("DiagnosticReport/") for r in services)
    assert any(r.startswith("Encounter/") for r in services)
