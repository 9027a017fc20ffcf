"""Hidden resources never influence a search: chains, ``_has``, conditional operations.

A caller without a label grant (or without the scope on a type a search touches) must
not be able to tell a hidden resource from a missing one, on any route.
"""

from __future__ import annotations

import types

import pytest

from hub.codesystems import HIV_SENSITIVITY
from hub.codesystems import MENTAL_HEALTH_SENSITIVITY
from hub.codesystems import SENSITIVITY
from hub.codesystems import VETERAN_SENSITIVITY

READER = "system/*.rs"
MH_CODE = "F20.0"


@pytest.fixture
def people(client):
    """A veteran with a hidden veteran-status Observation, an HIV Observation and a
    mental-health Condition; a hidden Patient with a plain Observation about them."""

    def post(body):
        resp = client.post(f"/fhir/{body['resourceType']}", json=body)
        assert resp.status_code == 201, resp.data
        return resp.get_json()["id"]

    plain = post({"resourceType": "Patient", "name": [{"family": "Plain"}]})
    veteran = post(
        {
            "resourceType": "Patient",
            "name": [{"family": "Vet"}],
            "identifier": [{"system": "urn:test:mrn", "value": "V-1"}],
        }
    )
    hidden = post(
        {
            "resourceType": "Patient",
            "meta": {"security": [VETERAN_SENSITIVITY]},
            "name": [{"family": "Hiddenname"}],
            "identifier": [{"system": "urn:test:mrn", "value": "H-1"}],
        }
    )
    for pid in (plain, veteran):
        post(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "weight"},
                "subject": {"reference": f"Patient/{pid}"},
            }
        )
    post(
        {
            "resourceType": "Observation",
            "meta": {"security": [VETERAN_SENSITIVITY]},
            "status": "final",
            "code": {"coding": [{"system": SENSITIVITY, "code": "veteran-status"}]},
            "subject": {"reference": f"Patient/{veteran}"},
        }
    )
    post(
        {
            "resourceType": "Observation",
            "meta": {"security": [HIV_SENSITIVITY]},
            "status": "final",
            "code": {"text": "hiv test"},
            "subject": {"reference": f"Patient/{veteran}"},
        }
    )
    post(
        {
            "resourceType": "Condition",
            "meta": {"security": [MENTAL_HEALTH_SENSITIVITY]},
            "code": {"coding": [{"system": "urn:test:icd", "code": MH_CODE}]},
            "subject": {"reference": f"Patient/{veteran}"},
        }
    )
    about_hidden = post(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "weight"},
            "subject": {"reference": f"Patient/{hidden}"},
        }
    )
    return types.SimpleNamespace(
        plain=plain, veteran=veteran, hidden=hidden, about_hidden=about_hidden
    )


def _ids(resp) -> set[str]:
    assert resp.status_code == 200, resp.data
    body = resp.get_json()
    return {e["resource"]["id"] for e in body.get("entry", ())}


def _total(resp) -> int:
    assert resp.status_code == 200, resp.data
    return resp.get_json()["total"]


HAS_PROBES = [
    f"_has:Observation:subject:_security={SENSITIVITY}|hiv",
    f"_has:Observation:subject:_security={SENSITIVITY}|veteran-status",
    f"_has:Observation:subject:code={SENSITIVITY}|veteran-status",
    f"_has:Condition:subject:code=urn:test:icd|{MH_CODE}",
]


@pytest.mark.parametrize("probe", HAS_PROBES)
def test_has_does_not_match_through_hidden_resources(anon_client, auth_headers, people, probe):
    bare = auth_headers(READER, labels=())
    resp = anon_client.get(f"/fhir/Patient?{probe}&_total=accurate", headers=bare)
    assert _ids(resp) == set()
    assert _total(resp) == 0
    # With every grant the same search finds the veteran: the probe is meaningful.
    assert _ids(anon_client.get(f"/fhir/Patient?{probe}", headers=auth_headers(READER))) == {
        people.veteran
    }


@pytest.mark.parametrize(
    "probe",
    [
        f"subject:Patient._security={SENSITIVITY}|veteran-status",
        "subject:Patient.name=Hiddenname",
        "subject:Patient.identifier=urn:test:mrn|H-1",
        "subject.name=Hiddenname",
    ],
)
def test_chains_do_not_match_through_hidden_resources(anon_client, auth_headers, people, probe):
    bare = auth_headers(READER, labels=())
    resp = anon_client.get(f"/fhir/Observation?{probe}&_total=accurate", headers=bare)
    assert _ids(resp) == set() and _total(resp) == 0
    assert people.about_hidden in _ids(
        anon_client.get(f"/fhir/Observation?{probe}", headers=auth_headers(READER))
    )


def test_conditional_create_does_not_reveal_a_hidden_match(anon_client, auth_headers, people):
    bare = auth_headers("system/*.cruds", labels=())
    resp = anon_client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "name": [{"family": "Other"}]},
        headers={**bare, "If-None-Exist": "identifier=urn:test:mrn|H-1"},
    )
    # As if the hidden Patient were not there: a new Patient, nothing about the hidden one.
    assert resp.status_code == 201, resp.data
    assert people.hidden not in resp.headers["Location"]
    assert resp.get_json()["id"] != people.hidden
    # The same through a chain of a conditional create.
    obs = anon_client.post(
        "/fhir/Observation",
        json={"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
        headers={**bare, "If-None-Exist": "subject:Patient.name=Hiddenname"},
    )
    assert obs.status_code == 201, obs.data
    assert people.about_hidden not in obs.headers["Location"]
    # Criteria matching a hidden Observation itself (its code).
    again = anon_client.post(
        "/fhir/Observation",
        json={"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
        headers={**bare, "If-None-Exist": f"code={SENSITIVITY}|veteran-status"},
    )
    assert again.status_code == 201, again.data


def test_conditional_create_twice_with_a_hidden_match(anon_client, auth_headers, client, people):
    """The caller's own new resource is found the second time; the hidden one stays apart."""
    bare = auth_headers("system/*.cruds", labels=())
    headers = {**bare, "If-None-Exist": "identifier=urn:test:mrn|H-1"}
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:test:mrn", "value": "H-1"}]}
    first = anon_client.post("/fhir/Patient", json=body, headers=headers)
    assert first.status_code == 201, first.data
    again = anon_client.post("/fhir/Patient", json=body, headers=headers)
    assert again.status_code == 200, again.data
    assert again.get_json()["id"] == first.get_json()["id"]
    # With every grant both match: 412, as for any ambiguous criteria.
    both = client.post(
        "/fhir/Patient", json=body, headers={"If-None-Exist": headers["If-None-Exist"]}
    )
    assert both.status_code == 412


def test_conditional_update_and_delete_ignore_hidden_matches(
    anon_client, auth_headers, client, people
):
    bare = auth_headers("system/*.cruds", labels=())
    deleted = anon_client.delete("/fhir/Patient?identifier=urn:test:mrn|H-1", headers=bare)
    assert deleted.status_code == 200
    assert "0 Patient" in deleted.get_json()["issue"][0]["diagnostics"]
    assert client.get(f"/fhir/Patient/{people.hidden}").status_code == 200
    put = anon_client.put(
        "/fhir/Patient?identifier=urn:test:mrn|H-1",
        json={
            "resourceType": "Patient",
            "identifier": [{"system": "urn:test:mrn", "value": "H-1"}],
        },
        headers=bare,
    )
    assert put.status_code == 201, put.data
    assert put.get_json()["id"] != people.hidden
    assert client.get(f"/fhir/Patient/{people.hidden}").get_json()["meta"]["versionId"] == "1"


@pytest.mark.parametrize(
    "url, scopes, lacking",
    [
        (
            "/fhir/Patient?_has:Observation:subject:code=weight",
            "system/Patient.rs",
            "Observation",
        ),
        (
            "/fhir/Observation?subject:Patient.identifier=urn:test:mrn|V-1",
            "system/Observation.rs",
            "Patient",
        ),
        ("/fhir/Observation?subject.name=Vet", "system/Observation.rs", "Patient"),
        (
            "/fhir/Observation?_include=Observation:subject",
            "system/Observation.rs",
            None,
        ),
    ],
)
def test_chains_and_has_need_the_scope_of_every_type(
    anon_client, auth_headers, people, url, scopes, lacking
):
    resp = anon_client.get(url, headers=auth_headers(scopes))
    if lacking is None:
        # Includes of a type outside the scopes are left out, the search itself is fine.
        assert resp.status_code == 200
        types_ = {e["resource"]["resourceType"] for e in resp.get_json().get("entry", ())}
        assert types_ == {"Observation"}
        return
    assert resp.status_code == 403, resp.data
    outcome = resp.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert lacking in outcome["issue"][0]["diagnostics"]


def test_patient_scope_cannot_probe_through_chains(anon_client, auth_headers, people):
    """``patient/Observation.rs`` alone may not chain into Patient (name probing)."""
    token = auth_headers("patient/Observation.rs", patient=people.veteran)
    resp = anon_client.get("/fhir/Observation?subject:Patient.name=Vet", headers=token)
    assert resp.status_code == 403
    assert "Patient" in resp.get_json()["issue"][0]["diagnostics"]


def test_conditional_create_needs_the_search_scope(anon_client, auth_headers, people):
    token = auth_headers("system/Patient.c")
    resp = anon_client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient"},
        headers={**token, "If-None-Exist": "identifier=urn:test:mrn|V-1"},
    )
    assert resp.status_code == 403
    assert "Location" not in resp.headers
