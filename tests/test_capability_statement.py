"""The CapabilityStatement claims only what the hub serves, and names definitions it serves.

tests/test_conformance_endpoint.py walks the whole statement over HTTP with
``hub conformance check-endpoint``; these tests pin the claims the walk cannot
see (what is left out) and the parts it only samples.
"""

from __future__ import annotations

import pytest

from hub.security import audit_search
from tests.fixtures import authed_client

AUDITOR = "system/*.cruds user/AuditEvent.rs"


@pytest.fixture
def backend():
    # The statement does not depend on the database; the walk and the API tests cover both.
    return "sqlite"


@pytest.fixture
def statement(client) -> dict:
    resp = client.get("/fhir/metadata")
    assert resp.status_code == 200
    return resp.get_json()


def claimed(statement: dict) -> dict[str, dict]:
    return {r["type"]: r for r in statement["rest"][0]["resource"]}


def test_the_statement_is_a_valid_capability_statement(client, statement):
    outcome = client.post("/fhir/CapabilityStatement/$validate", json=statement).get_json()
    problems = [i for i in outcome["issue"] if i["severity"] in ("error", "fatal", "warning")]
    assert problems == []
    # SMART discovery is the well-known document, which names the token endpoint.
    assert "/.well-known/smart-configuration" in statement["rest"][0]["security"]["description"]


def test_every_listed_type_is_served(client, statement):
    types = claimed(statement)
    answers = {t: client.get(f"/fhir/{t}?_count=1").status_code for t in types if t != "AuditEvent"}
    assert {t: status for t, status in answers.items() if status != 200} == {}
    # The R4 types the stored models do not define are not claimed.
    for gone in ("EffectEvidenceSynthesis", "MedicinalProduct", "SubstancePolymer"):
        assert gone not in types
        assert client.get(f"/fhir/{gone}").status_code == 404
    assert {"Patient", "Observation", "Basic", "AuditEvent"} <= set(types)


def test_unsupported_search_parameters_are_not_listed(client, statement):
    listed = {p["name"] for r in claimed(statement).values() for p in r.get("searchParam", ())}
    assert not listed & {"_content", "_text", "_query", "_filter", "near"}
    assert {"_id", "_lastUpdated", "_tag", "_profile", "_security", "_source"} <= listed
    # ...because the search engine refuses them.
    for query in ("Patient?_content=x", "Patient?_text=x", "Patient?_query=x"):
        resp = client.get(f"/fhir/{query}", headers={"Prefer": "handling=strict"})
        assert resp.status_code == 400, query


def test_audit_event_lists_what_the_audit_search_answers(app, statement):
    audit = claimed(statement)["AuditEvent"]
    assert {i["code"] for i in audit["interaction"]} == {"read", "search-type"}
    assert "operation" not in audit
    names = {p["name"] for p in audit["searchParam"]}
    assert names == set(audit_search.DOCUMENTATION)
    types = {p["name"]: p["type"] for p in audit["searchParam"]}
    assert types["date"] == "date" and types["entity"] == "reference"
    # Each listed parameter finds the event of a read.
    client = authed_client(app, AUDITOR)
    created = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "male"})
    pid = created.get_json()["id"]
    assert client.get(f"/fhir/Patient/{pid}").status_code == 200
    events = client.get(f"/fhir/AuditEvent?entity=Patient/{pid}&subtype=read").get_json()
    event = events["entry"][0]["resource"]
    values = {
        "date": "ge" + event["recorded"],
        "agent": event["agent"][0]["who"]["display"],
        "entity": f"Patient/{pid}",
        "outcome": event["outcome"],
        "subtype": "read",
    }
    for name, value in values.items():
        found = client.get("/fhir/AuditEvent", query_string={name: value, "_count": "1000"})
        assert found.status_code == 200, (name, found.data)
        ids = {e["resource"]["id"] for e in found.get_json()["entry"]}
        assert event["id"] in ids, name
    assert client.get("/fhir/AuditEvent?site=nowhere").get_json()["entry"] == []


def test_every_named_operation_definition_is_served(client, statement):
    rest = statement["rest"][0]
    named = [("system", o) for o in rest.get("operation", ())] + [
        (r["type"], o) for r in rest["resource"] for o in r.get("operation", ())
    ]
    assert {o["name"] for _, o in named} >= {"validate", "meta", "everything", "ingest", "merge"}
    base = "http://localhost/fhir"
    seen = {}
    for where, op in named:
        url = op["definition"]
        assert url.startswith(base + "/OperationDefinition/"), url
        if url not in seen:
            resp = client.get(url.removeprefix("http://localhost"))
            assert resp.status_code == 200, url
            seen[url] = resp.get_json()
        definition = seen[url]
        assert definition["resourceType"] == "OperationDefinition"
        assert (definition["url"], definition["code"]) == (url, op["name"])
        if where == "system":
            assert definition["system"] is True
        else:
            assert definition["type"] or definition["instance"]
            assert {where, "Resource"} & set(definition["resource"])
    # The standard ones are the R4 definitions, with this hub's levels and types.
    validate = seen[f"{base}/OperationDefinition/Resource-validate"]
    assert validate["base"] == "http://hl7.org/fhir/OperationDefinition/Resource-validate"
    assert {p["name"] for p in validate["parameter"]} >= {"resource", "mode", "profile"}
    everything = seen[f"{base}/OperationDefinition/Patient-everything"]
    assert (everything["instance"], everything["type"], everything["resource"]) == (
        True,
        False,
        ["Patient"],
    )
    # The hub's own are built from the registry, parameters included.
    ingest = seen[f"{base}/OperationDefinition/ingest"]
    assert ingest["affectsState"] is True and ingest["system"] is True
    assert any(p["name"] == "site" and p["min"] == 1 for p in ingest["parameter"])
    # Every definition is a valid OperationDefinition.
    for url, definition in seen.items():
        outcome = client.post("/fhir/OperationDefinition/$validate", json=definition).get_json()
        errors = [i for i in outcome["issue"] if i["severity"] in ("error", "fatal", "warning")]
        assert errors == [], url


def test_an_unknown_operation_definition_is_404_and_stored_ones_are_read(client):
    assert client.get("/fhir/OperationDefinition/no-such-op").status_code == 404
    stored = {
        "resourceType": "OperationDefinition",
        "id": "site-op",
        "name": "SiteOp",
        "status": "draft",
        "kind": "operation",
        "code": "site-op",
        "system": True,
        "type": False,
        "instance": False,
    }
    assert client.put("/fhir/OperationDefinition/site-op", json=stored).status_code == 201
    assert client.get("/fhir/OperationDefinition/site-op").get_json()["code"] == "site-op"


def test_patch_formats_include_fhirpath_patch(client, statement):
    assert set(statement["patchFormat"]) >= {
        "application/json-patch+json",
        "application/fhir+json",
    }
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient"}).get_json()["id"]
    patch = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "add"},
                    {"name": "path", "valueString": "Patient"},
                    {"name": "name", "valueString": "gender"},
                    {"name": "value", "valueCode": "female"},
                ],
            }
        ],
    }
    resp = client.patch(
        f"/fhir/Patient/{pid}", json=patch, headers={"Content-Type": "application/fhir+json"}
    )
    assert resp.status_code == 200, resp.data
    assert resp.get_json()["gender"] == "female"


def test_operations_without_side_effects_accept_post(client):
    # FHIR: every operation may be invoked with POST (GET only when it changes nothing).
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient"}).get_json()["id"]
    resp = client.post(f"/fhir/Patient/{pid}/$colours", json={"resourceType": "Parameters"})
    assert resp.status_code == 200, resp.data
    assert resp.get_json()["resourceType"] == "Parameters"
