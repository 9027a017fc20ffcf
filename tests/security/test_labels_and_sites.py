"""Security labels hide resources from principals without the grant; sites write only their own."""

from __future__ import annotations

import types

import orjson
import pytest

from hub import outcomes
from hub.codesystems import RESTRICTED
from hub.codesystems import VETERAN_SENSITIVITY
from hub.search.engine import SearchEntry
from hub.security import guard
from hub.security.principal import Principal
from hub.security.principal import acting_as
from hub.security.scopes import compile_scopes

READER = "system/*.rs"


def _veteran_obs(pid: str) -> dict:
    return {
        "resourceType": "Observation",
        "meta": {"security": [VETERAN_SENSITIVITY, RESTRICTED]},
        "status": "final",
        "code": {"text": "veteran status"},
        "subject": {"reference": f"Patient/{pid}"},
    }


@pytest.fixture
def records(client):
    pid = client.post(
        "/fhir/Patient", json={"resourceType": "Patient", "gender": "male"}
    ).get_json()["id"]
    plain = client.post(
        "/fhir/Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "weight"},
            "subject": {"reference": f"Patient/{pid}"},
        },
    ).get_json()["id"]
    secret = client.post("/fhir/Observation", json=_veteran_obs(pid)).get_json()["id"]
    restricted = client.post(
        "/fhir/Observation",
        json={
            "resourceType": "Observation",
            "meta": {"security": [RESTRICTED]},
            "status": "final",
            "code": {"text": "restricted only"},
        },
    ).get_json()["id"]
    return types.SimpleNamespace(pid=pid, plain=plain, secret=secret, restricted=restricted)


def test_labelled_read_is_404_without_grant(anon_client, auth_headers, records):
    bare = auth_headers(READER, labels=())
    for url in (
        f"/fhir/Observation/{records.secret}",
        f"/fhir/Observation/{records.secret}/_history/1",
        f"/fhir/Observation/{records.secret}/_history",
        f"/fhir/Observation/{records.secret}/$meta",
    ):
        resp = anon_client.get(url, headers=bare)
        assert resp.status_code == 404, url
        assert resp.get_json()["issue"][0]["code"] == "not-found"
    assert anon_client.get(f"/fhir/Observation/{records.plain}", headers=bare).status_code == 200


def test_category_grant_opens_its_resources(anon_client, auth_headers, records):
    veteran = auth_headers(READER, labels=("veteran-status",))
    assert (
        anon_client.get(f"/fhir/Observation/{records.secret}", headers=veteran).status_code == 200
    )
    # R without a category needs the R grant itself.
    assert (
        anon_client.get(f"/fhir/Observation/{records.restricted}", headers=veteran).status_code
        == 404
    )
    r_only = auth_headers(READER, labels=("R",))
    assert (
        anon_client.get(f"/fhir/Observation/{records.restricted}", headers=r_only).status_code
        == 200
    )
    assert anon_client.get(f"/fhir/Observation/{records.secret}", headers=r_only).status_code == 404


def test_history_leaves_out_hidden_resources(anon_client, auth_headers, records):
    bare = auth_headers(READER, labels=())
    for url in ("/fhir/Observation/_history", "/fhir/_history"):
        ids = {e["resource"]["id"] for e in anon_client.get(url, headers=bare).get_json()["entry"]}
        assert records.plain in ids
        assert records.secret not in ids and records.restricted not in ids
    everything = auth_headers(READER)
    ids = {
        e["resource"]["id"]
        for e in anon_client.get("/fhir/_history", headers=everything).get_json()["entry"]
    }
    assert {records.secret, records.restricted} <= ids


def test_history_hides_types_outside_the_scopes(anon_client, auth_headers, records):
    patients_only = auth_headers("system/Patient.rs")
    entries = anon_client.get("/fhir/_history", headers=patients_only).get_json()["entry"]
    assert {e["resource"]["resourceType"] for e in entries} == {"Patient"}


def test_labelled_later_hides_earlier_versions(client, anon_client, auth_headers, records):
    obs = client.get(f"/fhir/Observation/{records.plain}").get_json()
    obs["meta"] = {"security": [VETERAN_SENSITIVITY]}
    assert client.put(f"/fhir/Observation/{records.plain}", json=obs).status_code == 200
    bare = auth_headers(READER, labels=())
    url = f"/fhir/Observation/{records.plain}/_history/1"
    assert anon_client.get(url, headers=bare).status_code == 404
    ids = [
        e["resource"]["id"]
        for e in anon_client.get("/fhir/Observation/_history", headers=bare).get_json()["entry"]
    ]
    assert records.plain not in ids


def test_hidden_resources_cannot_be_changed(anon_client, auth_headers, records):
    writer = auth_headers("system/*.cruds", labels=())
    url = f"/fhir/Observation/{records.secret}"
    put = anon_client.put(
        url, json={**_veteran_obs(records.pid), "id": records.secret}, headers=writer
    )
    assert put.status_code == 404
    patch = anon_client.patch(
        url,
        json=[{"op": "test", "path": "/status", "value": "final"}],
        headers={**writer, "Content-Type": "application/json-patch+json"},
    )
    assert patch.status_code == 404  # not 200/422: the content is not probed
    assert anon_client.delete(url, headers=writer).status_code == 404


def test_search_and_includes_filter_labelled_resources(hub, anon_client, auth_headers, records):
    if hub.service.search_engine is None:
        pytest.skip("search engine not installed in this build")
    bare = auth_headers(READER, labels=())
    body = anon_client.get("/fhir/Observation", headers=bare).get_json()
    ids = {e["resource"]["id"] for e in body.get("entry", [])}
    assert records.plain in ids and records.secret not in ids
    rev = anon_client.get(
        f"/fhir/Patient?_id={records.pid}&_revinclude=Observation:subject", headers=bare
    ).get_json()
    included = {e["resource"]["id"] for e in rev.get("entry", [])}
    assert records.pid in included and records.plain in included
    assert records.secret not in included
    # _include of a resource the principal may not see: the Patient is labelled now.
    patient = anon_client.get(f"/fhir/Patient/{records.pid}", headers=auth_headers()).get_json()
    patient["meta"] = {"security": [VETERAN_SENSITIVITY]}
    assert (
        anon_client.put(
            f"/fhir/Patient/{records.pid}", json=patient, headers=auth_headers()
        ).status_code
        == 200
    )
    inc = anon_client.get(
        f"/fhir/Observation?_id={records.plain}&_include=Observation:subject", headers=bare
    ).get_json()
    types_ = [e["resource"]["resourceType"] for e in inc.get("entry", [])]
    assert "Patient" not in types_
    # and an Observation-only token sees no Patient through _include either.
    obs_only = auth_headers("system/Observation.rs")
    inc = anon_client.get(
        f"/fhir/Observation?_id={records.plain}&_include=Observation:subject", headers=obs_only
    ).get_json()
    assert "Patient" not in [e["resource"]["resourceType"] for e in inc.get("entry", [])]


def test_filter_visible_on_every_item_kind():
    plain = {"resourceType": "Observation", "id": "a"}
    secret = {"resourceType": "Observation", "id": "b", "meta": {"security": [VETERAN_SENSITIVITY]}}
    patient = {"resourceType": "Patient", "id": "p"}
    stored = types.SimpleNamespace(res_type="Observation", content=orjson.dumps(secret).decode())
    p = Principal("t", "user", compile_scopes("system/Observation.rs"))
    items = [plain, secret, patient, orjson.dumps(plain).decode(), stored]
    assert guard.filter_visible(items, p) == [plain, items[3]]
    granted = Principal("t", "user", compile_scopes("system/*.rs"), frozenset(["veteran-status"]))
    assert guard.filter_visible(items, granted) == items
    entries = [
        SearchEntry("Observation", "a", orjson.dumps(plain).decode(), "match"),
        SearchEntry("Observation", "b", orjson.dumps(secret).decode(), "match"),
        SearchEntry("Patient", "p", orjson.dumps(patient).decode(), "include"),
    ]
    assert [e.res_id for e in guard.visible_entries(entries, p)] == ["a"]
    with acting_as(granted):
        assert guard.filter_visible(items) == items  # the request's principal by default
    assert guard.filter_visible(items) == items  # no principal: the hub's own work


def test_patient_scopes_see_only_their_compartment():
    p = Principal("t", "user", compile_scopes("patient/*.rs"), patient="p1")
    own = {"resourceType": "Observation", "subject": {"reference": "Patient/p1"}}
    other = {"resourceType": "Observation", "subject": {"reference": "Patient/p2"}}
    assert guard.filter_visible([own, other], p) == [own]
    no_context = Principal("t", "user", compile_scopes("patient/*.rs"))
    assert guard.filter_visible([own], no_context) == []


# -- site isolation ---------------------------------------------------------------------


def test_site_client_writes_are_stamped_with_its_site(anon_client, auth_headers):
    his1 = auth_headers("system/*.cruds", site="his1")
    created = anon_client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=his1)
    assert created.status_code == 201
    assert created.get_json()["meta"]["source"] == "urn:fhirhub:site:his1"
    own = anon_client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "meta": {"source": "urn:fhirhub:site:his1#msg-42"}},
        headers=his1,
    )
    assert own.status_code == 201


def test_site_client_cannot_write_as_another_site(anon_client, auth_headers):
    his1 = auth_headers("system/*.cruds", site="his1")
    resp = anon_client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "meta": {"source": "urn:fhirhub:site:his2"}},
        headers=his1,
    )
    assert resp.status_code == 403
    assert resp.get_json()["issue"][0]["expression"] == ["Patient.meta.source"]


def test_site_client_changes_only_its_own_resources(client, anon_client, auth_headers):
    his1 = auth_headers("system/*.cruds", site="his1")
    his2 = auth_headers("system/*.cruds", site="his2")
    theirs = anon_client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=his2)
    pid = theirs.get_json()["id"]
    hub_owned = client.post("/fhir/Patient", json={"resourceType": "Patient"}).get_json()["id"]
    for target in (pid, hub_owned):
        put = anon_client.put(
            f"/fhir/Patient/{target}",
            json={"resourceType": "Patient", "id": target, "gender": "male"},
            headers=his1,
        )
        assert put.status_code == 403
        assert anon_client.delete(f"/fhir/Patient/{target}", headers=his1).status_code == 403
    ok = anon_client.put(
        f"/fhir/Patient/{pid}",
        json={"resourceType": "Patient", "id": pid, "gender": "male"},
        headers=his2,
    )
    assert ok.status_code == 200


def test_site_rule_applies_to_transaction_entries(anon_client, auth_headers):
    his1 = auth_headers("system/*.cruds", site="his1")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Patient",
                    "meta": {"source": "urn:fhirhub:site:his9"},
                },
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    assert anon_client.post("/fhir", json=bundle, headers=his1).status_code == 403
    bundle["entry"].pop()
    resp = anon_client.post("/fhir", json=bundle, headers=his1)
    assert resp.status_code == 200
    entry = resp.get_json()["entry"][0]
    assert entry["resource"]["meta"]["source"] == "urn:fhirhub:site:his1"


def test_check_site_for_ingestion():
    site_bound = Principal("c", "client", compile_scopes("system/*.cruds"), site="his1")
    with acting_as(site_bound):
        guard.check_site("his1")
        with pytest.raises(outcomes.OperationOutcomeError) as err:
            guard.check_site("his2")
        assert err.value.status == 403
    with acting_as(Principal("c", "client", compile_scopes("system/*.cruds"))):
        guard.check_site("his2")  # not site-bound: any site


def test_conditional_create_behaves_as_if_a_hidden_match_were_not_there(
    client, anon_client, auth_headers
):
    labelled = {
        "resourceType": "Patient",
        "meta": {"security": [VETERAN_SENSITIVITY]},
        "identifier": [{"system": "urn:test", "value": "v-1"}],
    }
    hidden = client.post("/fhir/Patient", json=labelled).get_json()["id"]
    # The criteria are a search: without the search scope, no answer about matches.
    only_create = auth_headers("system/Patient.c", labels=())
    headers = {"If-None-Exist": "identifier=urn:test|v-1"}
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": "v-1"}]}
    resp = anon_client.post("/fhir/Patient", json=body, headers={**only_create, **headers})
    assert resp.status_code == 403 and "Location" not in resp.headers
    creator = auth_headers("system/Patient.cs", labels=())
    resp = anon_client.post("/fhir/Patient", json=body, headers={**creator, **headers})
    assert resp.status_code == 201
    assert hidden not in resp.headers["Location"]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient"},
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": "identifier=urn:test|v-2",
                },
            }
        ],
    }
    client.post(
        "/fhir/Patient", json=dict(labelled, identifier=[{"system": "urn:test", "value": "v-2"}])
    )
    entry = anon_client.post("/fhir", json=bundle, headers=creator).get_json()["entry"][0]
    assert entry["response"]["status"].startswith("201")
    assert hidden not in entry["response"]["location"]


def test_everything_and_lifetime_file_leave_out_labelled_resources(
    anon_client, auth_headers, records
):
    """$everything and the lifetime-file document honour the caller's label grants."""
    bare = auth_headers("system/*.rs", labels=())
    everything = anon_client.get(
        f"/fhir/Patient/{records.pid}/$everything", headers=bare
    ).get_json()
    ids = {e["resource"]["id"] for e in everything.get("entry", [])}
    assert records.plain in ids and records.secret not in ids
    granted = auth_headers("system/*.rs", labels=("veteran-status",))
    ids = {
        e["resource"]["id"]
        for e in anon_client.get(
            f"/fhir/Patient/{records.pid}/$everything", headers=granted
        ).get_json()["entry"]
    }
    assert records.secret in ids
    document = anon_client.get(
        f"/fhir/Patient/{records.pid}/$lifetime-file", headers=bare
    ).get_json()
    assert records.secret not in orjson.dumps(document).decode()


def test_search_totals_do_not_count_hidden_resources(anon_client, auth_headers, records):
    bare = auth_headers(READER, labels=())
    found = anon_client.get(
        f"/fhir/Observation?subject=Patient/{records.pid}&_total=accurate", headers=bare
    ).get_json()
    assert found["total"] == len(found.get("entry", [])) == 1
    granted = auth_headers(READER, labels=("veteran-status",))
    found = anon_client.get(
        f"/fhir/Observation?subject=Patient/{records.pid}&_total=accurate", headers=granted
    ).get_json()
    assert found["total"] == 2


def test_search_totals_follow_confidentiality_levels(anon_client, auth_headers, records):
    """``R`` alone needs the ``R`` grant; ``R`` beside a category is covered by the category."""
    url = "/fhir/Observation?_total=accurate&_count=1"
    expected = {
        (): set(),
        ("R",): {records.restricted},
        ("veteran-status",): {records.secret},
        ("R", "veteran-status"): {records.restricted, records.secret},
    }
    for grants, extra in expected.items():
        found = anon_client.get(url, headers=auth_headers(READER, labels=grants)).get_json()
        assert found["total"] == 1 + len(extra), grants
        every = anon_client.get(
            "/fhir/Observation?_count=50", headers=auth_headers(READER, labels=grants)
        ).get_json()
        assert {e["resource"]["id"] for e in every.get("entry", [])} == {records.plain, *extra}
