"""Transaction rules: PATCH keeps ids and is authorised first, placeholders must be defined,
conditional references see the Bundle's own creates (both backends)."""

from __future__ import annotations

import pytest

from tests.fixtures import authed_client

PID = "urn:uuid:22222222-2222-2222-2222-222222222222"


def tx(*entries):
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def post(resource, full_url=None):
    entry = {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def json_patch(url, ops):
    import base64

    import orjson

    data = base64.b64encode(orjson.dumps(ops)).decode()
    return {
        "resource": {
            "resourceType": "Binary",
            "contentType": "application/json-patch+json",
            "data": data,
        },
        "request": {"method": "PATCH", "url": url},
    }


def _patient(client, **extra) -> str:
    resp = client.post("/fhir/Patient", json={"resourceType": "Patient", **extra})
    assert resp.status_code == 201, resp.data
    return resp.get_json()["id"]


def test_transaction_patch_may_not_change_the_id(client):
    pid = _patient(client, name=[{"family": "王"}])
    resp = client.post(
        "/fhir",
        json=tx(json_patch(f"Patient/{pid}", [{"op": "replace", "path": "/id", "value": "other"}])),
    )
    assert resp.status_code == 422, resp.data
    assert "id" in resp.get_json()["issue"][0]["diagnostics"]
    assert client.get(f"/fhir/Patient/{pid}").get_json()["meta"]["versionId"] == "1"
    assert client.get("/fhir/Patient/other").status_code == 404


def test_rest_patch_may_not_change_the_id(client):
    pid = _patient(client)
    resp = client.patch(
        f"/fhir/Patient/{pid}",
        json=[{"op": "replace", "path": "/id", "value": "other"}],
        content_type="application/json-patch+json",
    )
    assert resp.status_code == 422
    assert client.get(f"/fhir/Patient/{pid}").get_json()["meta"]["versionId"] == "1"


def test_transaction_patch_is_authorised_before_it_is_applied(app, client):
    pid = _patient(client, gender="male")
    reader = authed_client(app, "system/Patient.rs system/Observation.cruds")
    # A failing "test" op must answer 403, not reveal the content through 422.
    patch = json_patch(f"Patient/{pid}", [{"op": "test", "path": "/gender", "value": "female"}])
    resp = reader.post("/fhir", json=tx(patch))
    assert resp.status_code == 403, resp.data
    rest = reader.patch(
        f"/fhir/Patient/{pid}",
        json=[{"op": "test", "path": "/gender", "value": "female"}],
        content_type="application/json-patch+json",
    )
    assert rest.status_code == resp.status_code


def test_undefined_placeholder_is_refused_with_its_location(client):
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "体重"},
        "subject": {"reference": "urn:uuid:33333333-3333-3333-3333-333333333333"},
    }
    resp = client.post("/fhir", json=tx(post({"resourceType": "Patient"}, PID), post(obs)))
    assert resp.status_code == 400, resp.data
    issue = resp.get_json()["issue"][0]
    assert issue["expression"] == ["Bundle.entry[1].resource.subject.reference"]
    assert "urn:uuid:33333333" in issue["diagnostics"]
    assert client.get("/fhir/_history").get_json()["entry"] == []


def test_conditional_reference_finds_a_patient_created_in_the_same_bundle(client):
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:2.16.156.10011.1.2", "value": "HR-7"}],
    }
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "体重"},
        "subject": {"reference": "Patient?identifier=urn:oid:2.16.156.10011.1.2|HR-7"},
    }
    resp = client.post("/fhir", json=tx(post(obs), post(patient, PID)))
    assert resp.status_code == 200, resp.data
    obs_loc, pat_loc = (e["response"]["location"] for e in resp.get_json()["entry"])
    pid = pat_loc.split("/fhir/")[1].split("/")[1]
    obs_id = obs_loc.split("/fhir/")[1].split("/")[1]
    assert client.get(f"/fhir/Observation/{obs_id}").get_json()["subject"] == {
        "reference": f"Patient/{pid}"
    }


def test_conditional_reference_matching_bundle_and_store_is_ambiguous(client):
    ident = [{"system": "urn:oid:2.16.156.10011.1.2", "value": "HR-8"}]
    _patient(client, identifier=ident)
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "体重"},
        "subject": {"reference": "Patient?identifier=urn:oid:2.16.156.10011.1.2|HR-8"},
    }
    resp = client.post(
        "/fhir", json=tx(post({"resourceType": "Patient", "identifier": ident}), post(obs))
    )
    assert resp.status_code == 412, resp.data
    assert "matches 2" in resp.get_json()["issue"][0]["diagnostics"]


def test_bundle_entries_are_matched_as_the_index_would_match_them(hub):
    from hub.fhir.matching import Unsupported
    from hub.fhir.matching import matches

    registry = hub.search_registry
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:2.16.156.10011.1.2", "value": "HR-9"}],
        "name": [{"family": "Wáng", "given": ["Xiǎo"]}],
        "managingOrganization": {"reference": "Organization/o1"},
    }

    def hit(query):
        return matches(registry, patient, "p1", [tuple(p.split("=", 1)) for p in query.split("&")])

    assert hit("identifier=urn:oid:2.16.156.10011.1.2|HR-9")
    assert hit("identifier=HR-9") and hit("identifier=urn:oid:2.16.156.10011.1.2|")
    assert not hit("identifier=|HR-9") and not hit("identifier=other|HR-9")
    assert hit("family=wang") and hit("name=xiao") and not hit("family:exact=wang")
    assert hit("organization=Organization/o1") and hit("organization=o1")
    assert hit("_id=p0,p1&identifier=x,HR-9") and not hit("_id=p1&family=li")
    with pytest.raises(Unsupported):
        hit("birthdate=1970")
