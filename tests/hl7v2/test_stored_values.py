"""What HL7 v2 messages store does not drift: raw messages through the whole pipeline.

- CE/CWE codings in a local coding system (``L``, ``99zzz``) carry the site's local
  code system, never no system;
- practitioners' whole names (XCN.2 with XCN.3 empty) are split like patients' names;
- ``Patient.managingOrganization`` stays with the institution that registered the
  person, whichever site sends last;
- a changed phone number replaces the old one, which is kept with ``period.end``.
"""

from __future__ import annotations

import pytest

from hub.identity.ids import patient_id_for_resident_id

RID = "410102198001010026"  # 赵敏, born 1980-01-01, female
COUNTY_CODES = "urn:fhirhub:site:county-hospital-a:codesystem"


@pytest.fixture
def app_config(app_config):
    app_config["PLUGINS"] = ["fhirhub_plugins.hl7v2", "fhirhub_plugins.cda"]
    return app_config


def county_admit(control_id: str = "DRIFT-1", phone: str = "13800000001") -> bytes:
    return (
        "MSH|^~\\&|WINNING_HIS|XRMYY|FHIRHUB|HUB|20240401090000||ADT^A04^ADT_A01|"
        f"{control_id}|P|2.5|||AL|NE|CHN|UNICODE UTF-8\r"
        "EVN|A04|20240401090000\r"
        f"PID|1||0099001^^^XRMYY^MR~{RID}^^^CHN^NNCHN||赵^敏||19800101|F|||||"
        f"^PRN^CP^^^^^^^^^{phone}\r"
        "PV1|1|O|内科||||D007^欧阳建国||||||||||||V-DRIFT-1\r"
        "PV2|||R01^胸痛^99ZHIS\r"
        "AL1|1|DA|PCN001^青霉素^L|SV|皮疹\r"
    ).encode()


def township_update(phone: str = "13900000002") -> bytes:
    return (
        "MSH|^~\\&|HIS|ZWSY|FHIRHUB|HUB|20240402100000||ADT^A08^ADT_A01|ZW-DRIFT-2|P|2.4\r"
        "EVN|A08|20240402100000\r"
        f"PID|1||B009001^^^ZWSY^MR~{RID}^^^CHN^NNCHN||赵敏||19800101|2|||||"
        f"^PRN^CP^^^^^^^^^{phone}\r"
        "PV1|1|O|门诊||||Z01^李四||||||||||||ZW-V-2\r"
    ).encode("gb18030")


def ingest(client, site: str, body: bytes):
    resp = client.post(f"/fhir/$ingest?site={site}", data=body, content_type="application/hl7-v2")
    assert resp.status_code == 200, resp.get_json()
    assert resp.headers["X-Inbox-Status"] == "done", resp.get_json()
    return resp


def search(client, query: str) -> list[dict]:
    bundle = client.get(f"/fhir/{query}").get_json()
    return [e["resource"] for e in bundle.get("entry", [])]


def test_local_codings_carry_the_sites_code_system(client):
    ingest(client, "county-hospital-a", county_admit())
    allergy = search(client, "AllergyIntolerance")[0]
    assert allergy["code"]["coding"] == [
        {"system": COUNTY_CODES, "code": "PCN001", "display": "青霉素"}
    ]
    encounter = search(client, "Encounter")[0]
    assert encounter["reasonCode"][0]["coding"] == [
        {"system": COUNTY_CODES, "code": "R01", "display": "胸痛"}
    ]
    # ... so they can be searched by system and code.
    assert len(search(client, f"AllergyIntolerance?code={COUNTY_CODES}|PCN001")) == 1
    for resource in search(client, "AllergyIntolerance") + search(client, "Encounter"):
        for concept in [resource.get("code")] + resource.get("reasonCode", []):
            for coding in (concept or {}).get("coding", []):
                assert coding.get("system"), coding


def test_practitioner_whole_names_are_split(client):
    ingest(client, "county-hospital-a", county_admit())
    doctor = search(client, "Practitioner")[0]
    assert doctor["name"] == [{"text": "欧阳建国", "family": "欧阳", "given": ["建国"]}]
    assert len(search(client, "Practitioner?family=欧阳")) == 1


def test_managing_organization_stays_with_the_registering_institution(client):
    ingest(client, "county-hospital-a", county_admit())
    ingest(client, "township-hospital-b", township_update())
    patient = client.get(f"/fhir/Patient/{patient_id_for_resident_id(RID)}").get_json()
    assert patient["managingOrganization"] == {"reference": "Organization/county-hospital-a"}
    # The township's own records still name it as their provider.
    providers = {e["serviceProvider"]["reference"] for e in search(client, "Encounter")}
    assert providers == {"Organization/county-hospital-a", "Organization/township-hospital-b"}


def test_changed_phone_replaces_the_old_one(client):
    ingest(client, "county-hospital-a", county_admit())
    ingest(client, "township-hospital-b", township_update(phone="13900000002"))
    patient = client.get(f"/fhir/Patient/{patient_id_for_resident_id(RID)}").get_json()
    phones = {t["value"]: t for t in patient["telecom"]}
    assert set(phones) == {"13800000001", "13900000002"}
    assert "period" not in phones["13900000002"]
    assert phones["13800000001"]["period"]["end"]
    current = [t["value"] for t in patient["telecom"] if "end" not in t.get("period", {})]
    assert current == ["13900000002"]
    # The old number comes back: it is current again and the other one ends.
    ingest(client, "county-hospital-a", county_admit("DRIFT-3", phone="13800000001"))
    patient = client.get(f"/fhir/Patient/{patient_id_for_resident_id(RID)}").get_json()
    current = [t["value"] for t in patient["telecom"] if "end" not in t.get("period", {})]
    assert current == ["13800000001"]
    assert len(patient["telecom"]) == 2
    # Searching by the current number finds the person; the ended one is history.
    assert len(search(client, "Patient?phone=13800000001")) == 1


def test_an_active_family_doctor_contract_moves_the_managing_organization(client):
    """The contract's institution manages the person's file; an ended contract changes nothing."""
    ingest(client, "county-hospital-a", county_admit())
    header = (
        "签约编号,姓名,身份证号,健康档案编号,签约机构代码,签约机构,家庭医生团队,签约医生,"
        "服务包,签约日期,生效日期,到期日期,签约状态\n"
    )

    def contract(number: str, org: str, status: str) -> None:
        row = f"{number},赵敏,{RID},,{org},机构{org},,孙医生,基础包,2024-01-08,2024-01-10,2025-01-09,{status}\n"
        resp = client.post(
            "/fhir/$ingest?site=county-platform",
            data=(header + row).encode("utf-8"),
            content_type="text/csv",
        )
        assert resp.headers["X-Inbox-Status"] == "done", resp.get_json()

    def managing() -> str:
        patient = client.get(f"/fhir/Patient/{patient_id_for_resident_id(RID)}").get_json()
        return patient["managingOrganization"]["reference"]

    contract("QY-1", "437028300099", "已到期")
    assert managing() == "Organization/county-hospital-a"
    contract("QY-2", "437028300002", "有效")
    signed = search(client, "Organization?identifier=437028300002")[0]["id"]
    assert managing() == f"Organization/{signed}"
    # A later hospital visit does not take it back.
    ingest(client, "county-hospital-a", county_admit("DRIFT-4"))
    assert managing() == f"Organization/{signed}"


def test_the_sites_own_codes_go_back_to_it_as_local_codes(county, code_maps):
    from fhirhub_plugins.hl7v2.from_fhir import observations_to_oru_r01
    from hub.mapping import MappingContext

    observation = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "5794-3"}]},
        "valueCodeableConcept": {
            "coding": [{"system": COUNTY_CODES, "code": "2", "display": "阳性"}]
        },
    }
    message = observations_to_oru_r01([observation], county, MappingContext(county, code_maps))
    obx = next(s for s in message.decode().split("\r") if s.startswith("OBX|"))
    assert obx.split("|")[5] == "2^阳性^L"
