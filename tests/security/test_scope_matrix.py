"""Scope x interaction matrix: every interaction allowed exactly by the letters it needs."""

from __future__ import annotations

import pytest

from hub.security.scopes import ScopeSet
from hub.security.scopes import covered
from hub.security.scopes import negotiate
from hub.security.scopes import parse_scope

PATIENT = {
    "resourceType": "Patient",
    "name": [{"family": "王", "given": ["芳"]}],
    "gender": "female",
}

# interaction -> the permission letter it needs (SMART v2: vread and history are reads).
NEEDS = {
    "create": "c",
    "read": "r",
    "vread": "r",
    "history-instance": "r",
    "history-type": "r",
    "search": "s",
    "update": "u",
    "patch": "u",
    "delete": "d",
}

SCOPES = {
    "system/Patient.cruds": "cruds",
    "system/Patient.rs": "rs",
    "system/Patient.read": "rs",  # v1
    "system/Patient.write": "cud",  # v1
    "system/*.c": "c",
    "user/Patient.u": "u",
    "user/Patient.d": "d",
    "system/Observation.cruds": "",
    "system/Patient.sr": "",  # letters out of order: not a valid v2 scope, grants nothing
    "patient/Patient.rs?name=x": "",  # granular query scopes are not supported: nothing
}


def _do(client, interaction: str, pid: str, headers: dict):
    if interaction == "create":
        return client.post("/fhir/Patient", json=PATIENT, headers=headers)
    if interaction == "read":
        return client.get(f"/fhir/Patient/{pid}", headers=headers)
    if interaction == "vread":
        return client.get(f"/fhir/Patient/{pid}/_history/1", headers=headers)
    if interaction == "history-instance":
        return client.get(f"/fhir/Patient/{pid}/_history", headers=headers)
    if interaction == "history-type":
        return client.get("/fhir/Patient/_history", headers=headers)
    if interaction == "search":
        return client.get("/fhir/Patient?gender=female", headers=headers)
    if interaction == "update":
        return client.put(
            f"/fhir/Patient/{pid}", json={**PATIENT, "id": pid, "gender": "other"}, headers=headers
        )
    if interaction == "patch":
        return client.patch(
            f"/fhir/Patient/{pid}",
            json=[{"op": "replace", "path": "/gender", "value": "male"}],
            headers={**headers, "Content-Type": "application/json-patch+json"},
        )
    if interaction == "delete":
        return client.delete(f"/fhir/Patient/{pid}", headers=headers)
    raise AssertionError(interaction)


@pytest.mark.parametrize("scope", list(SCOPES))
def test_scope_matrix(client, anon_client, auth_headers, scope):
    letters = SCOPES[scope]
    pid = client.post("/fhir/Patient", json=PATIENT).get_json()["id"]
    headers = auth_headers(scope)
    results = {}
    for interaction, letter in NEEDS.items():
        resp = _do(anon_client, interaction, pid, headers)
        results[interaction] = resp.status_code
        if letter in letters:
            assert resp.status_code not in (401, 403), (interaction, resp.get_json())
        else:
            assert resp.status_code == 403, (interaction, resp.status_code)
            body = resp.get_json()
            assert body["resourceType"] == "OperationOutcome"
            assert body["issue"][0]["code"] == "forbidden"


@pytest.mark.parametrize(
    "interaction", ["create", "read", "search", "update", "delete", "history-type"]
)
def test_no_token_is_401_with_challenge(anon_client, interaction):
    resp = _do(anon_client, interaction, "x", {})
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert resp.get_json()["issue"][0]["code"] == "login"


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer not-a-jwt", "Basic dXNlcjpwYXNz", "Bearer eyJhbGciOiJub25lIn0.e30."],
)
def test_bad_tokens_are_401(anon_client, header):
    resp = anon_client.get("/fhir/Patient/x", headers={"Authorization": header})
    assert resp.status_code == 401
    assert resp.get_json()["resourceType"] == "OperationOutcome"


def test_open_endpoints_need_no_token(anon_client):
    assert anon_client.get("/fhir/metadata").status_code == 200
    assert anon_client.get("/.well-known/smart-configuration").status_code == 200
    conf = anon_client.get("/fhir/.well-known/smart-configuration").get_json()
    assert conf["token_endpoint"].endswith("/auth/token")
    assert "client_secret_basic" in conf["token_endpoint_auth_methods_supported"]


def test_batch_entries_are_checked_one_by_one(anon_client, client, auth_headers):
    pid = client.post("/fhir/Patient", json=PATIENT).get_json()["id"]
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"Patient/{pid}"}},
            {"resource": PATIENT, "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "DELETE", "url": f"Patient/{pid}"}},
        ],
    }
    resp = anon_client.post("/fhir", json=bundle, headers=auth_headers("system/Patient.rs"))
    assert resp.status_code == 200
    statuses = [e["response"]["status"] for e in resp.get_json()["entry"]]
    assert statuses[0].startswith("200")
    assert statuses[1] == "403" and statuses[2] == "403"


def test_transaction_with_one_forbidden_entry_writes_nothing(anon_client, client, auth_headers):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": PATIENT, "request": {"method": "POST", "url": "Patient"}},
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "x"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    resp = anon_client.post("/fhir", json=bundle, headers=auth_headers("system/Patient.c"))
    assert resp.status_code == 403
    assert "Bundle.entry[1]" in resp.get_json()["issue"][0]["diagnostics"]
    history = client.get("/fhir/Patient/_history").get_json()
    assert history.get("entry", []) == []


def test_operations_need_read_on_their_type(anon_client, client, auth_headers):
    pid = client.post("/fhir/Patient", json=PATIENT).get_json()["id"]
    denied = anon_client.get(
        f"/fhir/Patient/{pid}/$meta", headers=auth_headers("system/Observation.rs")
    )
    assert denied.status_code == 403
    allowed = anon_client.get(
        f"/fhir/Patient/{pid}/$meta", headers=auth_headers("system/Patient.r")
    )
    assert allowed.status_code == 200


def test_scope_parsing():
    assert parse_scope("system/Patient.rs") == ("system", "Patient", frozenset("rs"))
    assert parse_scope("user/*.read") == ("user", "*", frozenset("rs"))
    assert parse_scope("patient/Observation.*") == ("patient", "Observation", frozenset("cruds"))
    assert parse_scope("system/Patient.rc") is None  # v2 letters must be in c r u d s order
    assert parse_scope("openid") is None
    s = ScopeSet("system/Patient.rs system/*.c launch")
    assert s.allows("Patient", "r") and s.allows("Observation", "c")
    assert not s.allows("Observation", "r")
    assert covered("system/Patient.rs", "system/*.cruds")
    assert covered("system/Patient.read", "system/Patient.r system/*.s")  # letters add up
    assert not covered("system/*.rs", "system/Patient.rs")
    assert not covered("system/Patient.rds", "system/Patient.rs")
    assert not covered("user/Patient.rs", "system/*.rs")
    assert not covered("system/Observation.rs", "patient/*.rs system/Patient.c")  # per context
    assert not covered("system/AuditEvent.rs", "system/*.cruds")  # wildcards skip the trail
    assert covered("system/AuditEvent.rs", "system/AuditEvent.rs system/*.c")
    assert not covered("openid", "system/*.rs") and covered("openid", "openid system/*.rs")
    assert negotiate("launch/patient system/Patient.rs openid", "system/*.rs") == (
        "system/Patient.rs",
        ["launch/patient", "openid"],
    )
    assert negotiate("openid launch/patient", "system/*.rs") == ("", ["openid", "launch/patient"])
