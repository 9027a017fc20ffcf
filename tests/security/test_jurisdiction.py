"""A user bound to a jurisdiction sees through the FHIR API what the dashboard shows them.

A Patient is inside a jurisdiction by its health-record number (county 6, township 9,
village 12 digits) or its managing organisation; resources of a Patient compartment follow
their Patient; resources in no compartment (Organization, Practitioner) stay visible.
"""

from __future__ import annotations

import types

import pytest

from hub.identity import HEALTH_RECORD_SYSTEM
from hub.security.users import create_user

TOWNSHIP = "370203001"
OTHER_TOWNSHIP = "370203002"


def _patient(record_no: str, family: str) -> dict:
    return {
        "resourceType": "Patient",
        "name": [{"family": family}],
        "identifier": [{"system": HEALTH_RECORD_SYSTEM, "value": record_no}],
    }


@pytest.fixture
def township(client):
    def post(body):
        resp = client.post(f"/fhir/{body['resourceType']}", json=body)
        assert resp.status_code == 201, resp.data
        return resp.get_json()["id"]

    org = post({"resourceType": "Organization", "name": "镇卫生院"})
    inside = post(_patient(TOWNSHIP + "00100001", "Inside"))
    outside = post(_patient(OTHER_TOWNSHIP + "00100001", "Outside"))
    unplaced = post({"resourceType": "Patient", "name": [{"family": "Nowhere"}]})
    by_org = post(
        {
            "resourceType": "Patient",
            "name": [{"family": "Clinic"}],
            "managingOrganization": {"reference": f"Organization/{org}"},
        }
    )
    obs = {}
    for pid in (inside, outside):
        obs[pid] = post(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "weight"},
                "subject": {"reference": f"Patient/{pid}"},
                "performer": [{"reference": f"Organization/{org}"}],
            }
        )
    return types.SimpleNamespace(
        org=org, inside=inside, outside=outside, unplaced=unplaced, by_org=by_org, obs=obs
    )


def _ids(resp) -> set[str]:
    assert resp.status_code == 200, resp.data
    return {e["resource"]["id"] for e in resp.get_json().get("entry", ())}


def test_search_is_limited_to_the_users_jurisdiction(anon_client, auth_headers, township):
    manager = auth_headers("user/*.rs", jurisdiction=TOWNSHIP)
    resp = anon_client.get("/fhir/Patient?_total=accurate", headers=manager)
    assert _ids(resp) == {township.inside}
    assert resp.get_json()["total"] == 1
    assert _ids(anon_client.get("/fhir/Observation", headers=manager)) == {
        township.obs[township.inside]
    }
    # Resources in no patient compartment stay visible.
    assert township.org in _ids(anon_client.get("/fhir/Organization", headers=manager))
    # Chains, _has and includes do not reach outside either.
    assert _ids(anon_client.get("/fhir/Observation?subject.name=Outside", headers=manager)) == set()
    assert _ids(
        anon_client.get("/fhir/Patient?_has:Observation:subject:code:text=weight", headers=manager)
    ) == {township.inside}
    included = _ids(
        anon_client.get(
            f"/fhir/Organization?_id={township.org}&_revinclude=Observation:performer",
            headers=manager,
        )
    )
    assert included == {township.org, township.obs[township.inside]}
    # County level sees both townships; an institution sees its own patients.
    county = auth_headers("user/*.rs", jurisdiction=TOWNSHIP[:6])
    assert _ids(anon_client.get("/fhir/Patient", headers=county)) == {
        township.inside,
        township.outside,
    }
    clinic = auth_headers("user/*.rs", jurisdiction=f"Organization/{township.org}")
    assert _ids(anon_client.get("/fhir/Patient", headers=clinic)) == {township.by_org}


def test_reads_and_everything_outside_are_404(anon_client, auth_headers, township):
    manager = auth_headers("user/*.rs", jurisdiction=TOWNSHIP)
    for url in (
        f"/fhir/Patient/{township.outside}",
        f"/fhir/Patient/{township.outside}/_history/1",
        f"/fhir/Patient/{township.outside}/_history",
        f"/fhir/Observation/{township.obs[township.outside]}",
        f"/fhir/Patient/{township.outside}/$everything",
        f"/fhir/Patient/{township.unplaced}",
    ):
        resp = anon_client.get(url, headers=manager)
        assert resp.status_code == 404, url
        assert resp.get_json()["issue"][0]["code"] == "not-found"
    assert anon_client.get(f"/fhir/Patient/{township.inside}", headers=manager).status_code == 200
    assert anon_client.get(f"/fhir/Organization/{township.org}", headers=manager).status_code == 200
    for url in ("/fhir/_history", "/fhir/Patient/_history", "/fhir/Observation/_history"):
        seen = _ids(anon_client.get(url, headers=manager))
        assert township.outside not in seen and township.obs[township.outside] not in seen
        assert seen, url
    everything = _ids(
        anon_client.get(f"/fhir/Patient/{township.inside}/$everything", headers=manager)
    )
    assert township.inside in everything and township.obs[township.inside] in everything
    assert township.outside not in everything


def test_user_token_without_claim_takes_the_accounts_jurisdiction(
    app, anon_client, auth_headers, township
):
    from hub.app import get_hub

    the_hub = get_hub(app)
    with the_hub.engine.connect().execution_options(hub_write=True) as conn, conn.begin():
        create_user(conn, "township-manager", "a long password 123", ["archive-manager"], TOWNSHIP)
    token = auth_headers("user/*.rs", subject="township-manager")
    assert _ids(anon_client.get("/fhir/Patient", headers=token)) == {township.inside}
    # Clients (no account) and users without a jurisdiction see everywhere.
    everyone = _ids(anon_client.get("/fhir/Patient", headers=auth_headers("system/*.rs")))
    assert {township.inside, township.outside, township.unplaced} <= everyone
