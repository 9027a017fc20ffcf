"""Malformed Parameters bodies (operations, FHIRPath Patch) are 400s with a location, not 500s.

Found by the fuzz run (tests/security/test_fuzz.py).
"""

from __future__ import annotations

import pytest

FHIR_JSON = {"Content-Type": "application/fhir+json"}
BAD_PARAMETERS = [
    ({"resourceType": "Parameters", "parameter": [True]}, "Parameters.parameter[0]"),
    ({"resourceType": "Parameters", "parameter": {"name": "x"}}, "Parameters.parameter"),
    (
        {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": ["x"]}]},
        "Parameters.parameter[0].part[0]",
    ),
    ({"resourceType": "Parameters", "parameter": [{"name": 3}]}, "Parameters.parameter[0].name"),
]


@pytest.fixture
def pid(client) -> str:
    return client.post("/fhir/Patient", json={"resourceType": "Patient"}).get_json()["id"]


def assert_bad(resp, expression: str) -> None:
    assert resp.status_code == 400, resp.data
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["expression"] == [expression]


@pytest.mark.parametrize(("body", "expression"), BAD_PARAMETERS)
def test_a_malformed_fhirpath_patch_is_400(client, pid, body, expression):
    assert_bad(client.patch(f"/fhir/Patient/{pid}", json=body, headers=FHIR_JSON), expression)
    assert client.get(f"/fhir/Patient/{pid}").get_json()["meta"]["versionId"] == "1"


@pytest.mark.parametrize(("body", "expression"), BAD_PARAMETERS)
def test_a_malformed_operation_body_is_400(client, pid, body, expression):
    assert_bad(client.post(f"/fhir/Patient/{pid}/$everything", json=body), expression)
    assert_bad(client.post("/fhir/Patient/$match", json=body), expression)


def test_match_needs_a_well_formed_patient(client, pid):
    patient = {"resourceType": "Patient", "identifier": [True], "birthDate": "1970-01-01"}
    resp = client.post(
        "/fhir/Patient/$match",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "resource", "resource": patient}],
        },
    )
    assert resp.status_code == 400, resp.data
    assert resp.get_json()["issue"][0]["expression"][0].startswith("Patient.identifier")
