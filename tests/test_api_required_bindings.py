"""Required bindings are checked on every write (REST, transactions, ingestion), both backends."""

from __future__ import annotations

import types

import pytest

from hub import outcomes
from hub.fhir import bundles
from hub.fhir.service import Quarantined
from hub.fhir.service import WriteOptions
from hub.hookspecs import hookimpl
from hub.validation.structure import structure_issues

OBS = {"resourceType": "Observation", "status": "final", "code": {"text": "体重"}}


def test_structure_check_reports_a_code_outside_its_required_value_set():
    issues = structure_issues({"resourceType": "Patient", "gender": "maybe"})
    assert [(i["code"], i["expression"]) for i in issues] == [("code-invalid", ["Patient.gender"])]
    assert structure_issues({"resourceType": "Patient", "gender": "female"}) == []


def test_coded_types_and_unheld_systems():
    coding = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        # Observation.category is extensible: never an error here
        "category": [{"coding": [{"system": "http://example.org/cs", "code": "zz"}]}],
        # a required CodeableConcept: Observation.component... no; Encounter.class is Coding
    }
    assert structure_issues(coding) == []
    enc = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
    }
    assert structure_issues(enc) == []
    # Encounter.class is extensible too; AllergyIntolerance.clinicalStatus is required
    allergy = {
        "resourceType": "AllergyIntolerance",
        "patient": {"reference": "Patient/1"},
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": "gone",
                }
            ]
        },
    }
    issues = structure_issues(allergy)
    assert [i["expression"] for i in issues] == [["AllergyIntolerance.clinicalStatus"]]
    allergy["clinicalStatus"]["coding"][0]["code"] = "active"
    assert structure_issues(allergy) == []
    # a code of a system the hub does not hold is not checked (UCUM: Quantity has no binding)
    assert structure_issues({**OBS, "valueQuantity": {"value": 1, "code": "kg"}}) == []


def test_rest_create_refuses_a_code_outside_a_required_binding(client):
    resp = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "maybe"})
    assert resp.status_code == 422, resp.data
    issue = resp.get_json()["issue"][0]
    assert issue["code"] == "code-invalid"
    assert issue["expression"] == ["Patient.gender"]
    resp = client.post("/fhir/Observation", json={**OBS, "status": "x"})
    assert resp.status_code == 422
    assert resp.get_json()["issue"][0]["expression"] == ["Observation.status"]
    assert client.get("/fhir/Patient").get_json().get("total", 0) == 0


def test_with_a_structural_error_the_answer_is_400_listing_both(client):
    resp = client.post(
        "/fhir/Patient", json={"resourceType": "Patient", "gender": "maybe", "birthDate": "x"}
    )
    assert resp.status_code == 400
    assert {i["expression"][0] for i in resp.get_json()["issue"]} == {
        "Patient.gender",
        "Patient.birthDate",
    }


def test_update_patch_and_transaction_check_bindings(client):
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient"}).get_json()["id"]
    put = client.put(
        f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid, "gender": "maybe"}
    )
    assert put.status_code == 422
    patch = client.patch(
        f"/fhir/Patient/{pid}",
        json=[{"op": "add", "path": "/gender", "value": "maybe"}],
        content_type="application/json-patch+json",
    )
    assert patch.status_code == 422
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {**OBS, "status": "x"},
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    resp = client.post("/fhir", json=bundle)
    assert resp.status_code == 422, resp.data
    assert resp.get_json()["issue"][0]["expression"] == ["Bundle.entry[1].resource.status"]
    assert client.get(f"/fhir/Patient/{pid}").get_json()["meta"]["versionId"] == "1"
    batch = client.post("/fhir", json={**bundle, "type": "batch"}).get_json()
    assert [e["response"]["status"] for e in batch["entry"]] == ["201 Created", "422"]


def _ingest_like(hub, policy: str):
    """A message's transaction stored as the ingestion pipeline stores it, for a site."""
    site = types.SimpleNamespace(name="binding-test", validation=policy)
    entries = bundles.prepare_transaction(
        [{"resource": {**OBS, "status": "x"}, "request": {"method": "POST", "url": "Observation"}}]
    )
    opts = WriteOptions(prefer_return="minimal", site=site)
    return hub.repo.write(
        lambda w: bundles.run_transaction(hub.service, w, entries, "", opts, copy=False)
    )


def test_ingested_messages_follow_the_site_policy(hub):
    with pytest.raises(outcomes.OperationOutcomeError) as rejected:
        _ingest_like(hub, "reject")
    assert rejected.value.status == 422
    with pytest.raises(Quarantined):
        _ingest_like(hub, "quarantine")
    (entry,) = _ingest_like(hub, "accept-with-warnings")
    assert entry["response"]["status"] == "201 Created"


class GenderAdapter:
    """Maps a payload to a Patient whose gender is the payload: a code the adapter passes on."""

    @hookimpl
    def map_inbound(self, message, context):
        if message.format != "gender":
            return None
        pid = "g-" + message.body.decode()
        return {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": {
                        "resourceType": "Patient",
                        "id": pid,
                        "gender": message.body.decode(),
                    },
                    "request": {"method": "PUT", "url": f"Patient/{pid}"},
                }
            ],
        }

    @hookimpl
    def source_key(self, fmt, body, site):
        return body.decode() if fmt == "gender" else None


@pytest.mark.parametrize(
    ("policy", "status"),
    [("reject", "failed"), ("quarantine", "quarantined"), ("accept-with-warnings", "done")],
)
def test_ingestion_pipeline_applies_the_site_policy(app_config, tmp_path, request, policy, status):
    folder = tmp_path / "sites" / "gender-site"
    folder.mkdir(parents=True)
    (folder / "site.yaml").write_text(
        f"name: gender-site\nadapter: gender\nformat: gender\nvalidation: {policy}\n"
        "organization: {id: g, name: G, identifier: {system: urn:x, value: g}}\n",
        encoding="utf-8",
    )
    app_config["SITES_DIR"] = str(tmp_path / "sites")
    app_config["PLUGINS"] = [GenderAdapter()]
    hub = request.getfixturevalue("hub")
    assert hub.pipeline.ingest("gender-site", b"female").status == "done"
    result = hub.pipeline.ingest("gender-site", b"maybe")
    assert result.status == status
    issues = [i for i in result.item.outcome["issue"] if i["code"] == "code-invalid"]
    assert [i["expression"] for i in issues] == [["Bundle.entry[0].resource.gender"]]
    if policy == "accept-with-warnings":  # stored, so what was flagged is a warning
        assert [i["severity"] for i in issues] == ["warning"]
    stored = hub.repo.read("Patient", "g-maybe")
    assert (stored is not None) == (policy == "accept-with-warnings")
