"""Raw feeds through ``$ingest`` and then the completeness audit: what the adapters write is
what the audit reads (docs/completeness.md, "which feed produces which fact").

Each test sends a site's raw payload (the conformance kits' inputs, byte for byte or with one
date moved) and asserts that the audit counts the person's service.
"""

from __future__ import annotations

import datetime as dt

import orjson
import pytest
from sqlalchemy import select

from hub.completeness import batch
from hub.completeness.periods import Period
from hub.identity.ids import patient_id_for_resident_id
from hub.paths import SITES_DIR as SITES
from hub.storage import schema as s

PLATFORM = SITES / "county-platform" / "cases"
HOSPITAL = SITES / "county-hospital-a"
Y2024 = Period.year(2024)


@pytest.fixture(autouse=True)
def development_identity_key(monkeypatch):
    monkeypatch.delenv("HUB_IDENTITY_KEY", raising=False)


@pytest.fixture
def app_config(app_config):
    app_config["PLUGINS"] = ["fhirhub_plugins.cda", "fhirhub_plugins.hl7v2"]
    return app_config


def ingest(client, site: str, body: bytes, content_type: str) -> None:
    resp = client.post(f"/fhir/$ingest?site={site}", data=body, content_type=content_type)
    assert resp.status_code == 200, resp.data


def audited(hub, resident_id: str) -> tuple[set[str], dict]:
    """The person's audit metrics and detail for 2024."""
    batch.run_audit(hub.engine, Y2024, "", as_of=dt.date(2024, 12, 31))
    pid = patient_id_for_resident_id(resident_id)
    with hub.engine.connect() as conn:
        row = conn.execute(
            select(s.audit_person).where(
                s.audit_person.c.patient_id == pid, s.audit_person.c.period == "2024"
            )
        ).one()
    detail = row.detail if isinstance(row.detail, dict) else orjson.loads(row.detail)
    return set(row.metrics.split()), detail


def diagnose(client, resident_id: str, icd10: str) -> None:
    # The diagnosis comes from another feed (a hospital's DG1, the registration document).
    pid = patient_id_for_resident_id(resident_id)
    condition = {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": icd10}]},
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": "2020-01-01",
    }
    assert client.post("/fhir/Condition", json=condition).status_code == 201


def test_cda_hypertension_follow_up_is_a_face_to_face_follow_up(client, hub):
    rid = "370283195803121235"
    body = (PLATFORM / "hypertension-follow-up" / "input.xml").read_bytes()
    ingest(client, "county-platform", body, "application/xml")
    diagnose(client, rid, "I10")
    metrics, detail = audited(hub, rid)
    assert "rule:hypertension:applies" in metrics
    assert "rule:hypertension:served" in metrics
    assert detail["outcomes"]["hypertension"]["counts"]["follow-up"][0] == 1


def test_cda_telephone_follow_up_is_typed_but_not_face_to_face(client, hub):
    rid = "370283196207252444"
    body = (PLATFORM / "diabetes-telephone-follow-up" / "input.xml").read_bytes()
    ingest(client, "county-platform", body, "application/xml")
    diagnose(client, rid, "E11")
    pid = patient_id_for_resident_id(rid)
    (enc,) = [
        e["resource"]
        for e in client.get(f"/fhir/Encounter?subject=Patient/{pid}").get_json()["entry"]
    ]
    codings = {(c["system"], c["code"]) for t in enc["type"] for c in t.get("coding", ())}
    assert ("urn:fhirhub:codesystem:care-programme", "diabetes") in codings
    assert ("urn:oid:2.16.156.10011.2.3.1.183", "3") in codings  # the WS 364 visit mode kept
    metrics, detail = audited(hub, rid)
    assert "rule:diabetes:applies" in metrics
    assert detail["outcomes"]["diabetes"]["counts"]["follow-up"][0] == 0  # telephone: VR


def test_cda_health_check_counts_for_the_elderly(client, hub):
    rid = "370212194509090319"
    body = (PLATFORM / "adult-health-examination" / "input.xml").read_bytes()
    ingest(client, "county-platform", body, "application/xml")
    metrics, _detail = audited(hub, rid)
    assert "rule:elderly-health-check:applies" in metrics
    assert "rule:elderly-health-check:met" in metrics


def test_contract_csv_counts_as_a_contract_with_its_packages(client, hub):
    rid = "370283195803121235"
    body = (PLATFORM / "family-doctor-contracts" / "input.csv").read_bytes()
    ingest(client, "county-platform", body, "text/csv")
    metrics, _detail = audited(hub, rid)
    assert "contract" in metrics
    pid = patient_id_for_resident_id(rid)
    found = client.get(f"/fhir/EpisodeOfCare?patient=Patient/{pid}").get_json()["entry"]
    packages = [
        ext["valueCoding"]["code"]
        for e in found
        if e["resource"]["status"] == "active"
        for ext in e["resource"]["extension"]
        if ext["url"] == "urn:fhirhub:extension:service-package"
    ]
    assert packages == ["basic", "personalised"]


def test_hl7_visit_at_a_follow_up_clinic_is_a_programme_follow_up(client, hub):
    rid = "410102198001010018"
    body = (HOSPITAL / "cases" / "follow-up-visit" / "input.hl7").read_bytes()
    ingest(client, "county-hospital-a", body, "application/hl7-v2")
    metrics, detail = audited(hub, rid)
    assert "rule:hypertension:applies" in metrics  # DG1 I10 in the same message
    assert "rule:hypertension:served" in metrics
    assert detail["outcomes"]["hypertension"]["counts"]["follow-up"][0] == 1


def test_cda_severe_mental_disorder_follow_up_counts_and_stays_restricted(app, client, hub):
    from tests.fixtures import authed_client

    rid = "370283196207252444"
    body = (PLATFORM / "severe-mental-disorder-follow-up" / "input.xml").read_bytes()
    ingest(client, "county-platform", body, "application/xml")
    diagnose(client, rid, "F20")
    metrics, detail = audited(hub, rid)
    assert "rule:severe-mental-disorder:served" in metrics
    assert detail["outcomes"]["severe-mental-disorder"]["counts"]["follow-up"][0] == 1
    # counted by the audit, read only with the mental-health grant
    pid = patient_id_for_resident_id(rid)
    query = f"/fhir/Encounter?subject=Patient/{pid}"
    assert len(client.get(query).get_json()["entry"]) == 1
    ungranted = authed_client(app, labels=())
    assert ungranted.get(query).get_json().get("entry", []) == []
    assert ungranted.get(f"/fhir/Patient/{pid}").status_code == 200  # the person is not hidden
    granted = authed_client(app, labels=("mental-health",))
    assert len(granted.get(query).get_json()["entry"]) == 1
