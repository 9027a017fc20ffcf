"""$validate and validation on write through the REST API."""

from __future__ import annotations

PROFILE = "http://fhirhub.org/fhir/StructureDefinition/cn-resident-patient"


def resident(number: str, **extra):
    return {
        "resourceType": "Patient",
        "meta": {"profile": [PROFILE]},
        "identifier": [{"system": "urn:oid:2.16.156.10011.1.3", "value": number}],
        "name": [{"text": "张伟", "family": "张", "given": ["伟"]}],
        "gender": "male",
        "birthDate": "1949-12-31",
        **extra,
    }


def errors(outcome):
    return [i for i in outcome["issue"] if i["severity"] in ("error", "fatal")]


def test_validate_operation_type_level(client):
    good = client.post("/fhir/Patient/$validate", json=resident("11010519491231002X"))
    assert good.status_code == 200
    assert errors(good.get_json()) == []
    bad = client.post("/fhir/Patient/$validate", json=resident("110105194912310021"))
    assert bad.status_code == 200  # $validate answers the verdict; it does not fail
    problems = errors(bad.get_json())
    assert problems and any("identifier" in e for i in problems for e in i.get("expression", []))


def test_validate_with_parameters_and_profile_argument(client):
    plain = {"resourceType": "Patient", "gender": "female"}
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": plain},
            {"name": "profile", "valueUri": PROFILE},
        ],
    }
    resp = client.post("/fhir/Patient/$validate", json=body)
    assert resp.status_code == 200
    assert errors(resp.get_json())  # the profile needs the resident ID number
    assert errors(client.post("/fhir/Patient/$validate", json=plain).get_json()) == []


def test_validate_instance_level(client):
    client.put("/fhir/Patient/v1", json={"resourceType": "Patient", "id": "v1"})
    resp = client.get(f"/fhir/Patient/v1/$validate?profile={PROFILE}")
    assert resp.status_code == 200
    assert errors(resp.get_json())


def test_write_claiming_a_profile_is_validated(client):
    ok = client.post("/fhir/Patient", json=resident("11010519491231002X"))
    assert ok.status_code == 201, ok.data
    bad = client.post("/fhir/Patient", json=resident("110105194912310021"))
    assert bad.status_code == 422
    assert errors(bad.get_json())[0]["expression"]
