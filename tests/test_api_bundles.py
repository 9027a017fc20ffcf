"""batch and transaction Bundles, on both backends."""

from __future__ import annotations

import orjson

from hub.paths import DATA_DIR

SYNTHEA_DEMO = sorted((DATA_DIR / "demo" / "synthea").glob("*.json"))


def tx(*entries, kind="transaction"):
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(resource, full_url=None, **request):
    entry = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], **request},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def test_transaction_resolves_placeholders_and_answers_in_request_order(client):
    patient = {"resourceType": "Patient", "name": [{"family": "王"}]}
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "体重"},
        "subject": {"reference": "urn:uuid:11111111-1111-1111-1111-111111111111"},
    }
    resp = client.post(
        "/fhir",
        json=tx(post(obs), post(patient, "urn:uuid:11111111-1111-1111-1111-111111111111")),
    )
    assert resp.status_code == 200, resp.data
    out = resp.get_json()
    assert out["type"] == "transaction-response"
    obs_loc, pat_loc = (e["response"]["location"] for e in out["entry"])
    assert obs_loc.split("/fhir/")[1].startswith("Observation/")
    assert pat_loc.split("/fhir/")[1].startswith("Patient/")
    assert all(e["response"]["status"] == "201 Created" for e in out["entry"])
    pid = pat_loc.split("/fhir/")[1].split("/")[1]
    obs_id = obs_loc.split("/fhir/")[1].split("/")[1]
    stored = client.get(f"/fhir/Observation/{obs_id}").get_json()
    assert stored["subject"]["reference"] == f"Patient/{pid}"


def test_transaction_is_all_or_nothing(client):
    good = {"resourceType": "Patient", "name": [{"family": "李"}]}
    bad = {"resourceType": "Patient", "birthDate": "not-a-date"}
    resp = client.post("/fhir", json=tx(post(good), post(bad)))
    assert resp.status_code == 400
    issue = resp.get_json()["issue"][0]
    assert issue["expression"] == ["Bundle.entry[1].resource.birthDate"]
    assert client.get("/fhir/_history").get_json()["entry"] == []


def test_transaction_failure_late_in_processing_rolls_back_earlier_writes(client):
    client.put("/fhir/Patient/keep", json={"resourceType": "Patient", "id": "keep"})
    entries = [
        {
            "resource": {"resourceType": "Patient", "id": "keep", "active": True},
            "request": {"method": "PUT", "url": "Patient/keep"},
        },
        {
            "resource": {"resourceType": "Patient", "id": "other"},
            "request": {"method": "PUT", "url": "Patient/other", "ifMatch": 'W/"4"'},
        },
    ]
    resp = client.post("/fhir", json=tx(*entries))
    assert resp.status_code == 412
    assert "Bundle.entry[1]" in resp.get_json()["issue"][0]["diagnostics"]
    assert "active" not in client.get("/fhir/Patient/keep").get_json()
    assert client.get("/fhir/Patient/other").status_code == 404


def test_transaction_processing_order_delete_before_put(client):
    client.put("/fhir/Patient/a", json={"resourceType": "Patient", "id": "a"})
    entries = [
        {"request": {"method": "GET", "url": "Patient/a"}},
        {
            "resource": {"resourceType": "Patient", "id": "b"},
            "request": {"method": "PUT", "url": "Patient/b"},
        },
        {"request": {"method": "DELETE", "url": "Patient/a"}},
    ]
    resp = client.post("/fhir", json=tx(*entries))
    # GET runs last, after the DELETE of the same transaction.
    assert resp.status_code == 400 or resp.status_code == 410, resp.data
    assert client.get("/fhir/Patient/a").status_code == 200  # rolled back


def test_transaction_search_entry_answers_a_searchset_after_the_writes(client):
    entries = [
        {"request": {"method": "GET", "url": "Patient?family=Searched"}},
        {
            "resource": {"resourceType": "Patient", "name": [{"family": "Searched"}]},
            "request": {"method": "POST", "url": "Patient"},
        },
        {"request": {"method": "GET", "url": "Patient?family=Nobody"}},
    ]
    resp = client.post("/fhir", json=tx(*entries))
    assert resp.status_code == 200, resp.data
    found, _, nothing = resp.get_json()["entry"]
    assert found["resource"]["type"] == "searchset"
    assert found["resource"]["total"] == 1  # the POST of the same Bundle is seen
    assert nothing["resource"]["total"] == 0  # no match is an empty page, not a 404


def test_same_resource_twice_in_a_transaction_is_rejected(client):
    entries = [
        {
            "resource": {"resourceType": "Patient", "id": "x"},
            "request": {"method": "PUT", "url": "Patient/x"},
        },
        {
            "resource": {"resourceType": "Patient", "id": "x", "active": True},
            "request": {"method": "PUT", "url": "Patient/x"},
        },
    ]
    resp = client.post("/fhir", json=tx(*entries))
    assert resp.status_code == 400
    assert client.get("/fhir/Patient/x").status_code == 404


def test_batch_entries_succeed_or_fail_independently(client):
    entries = [
        post({"resourceType": "Patient", "name": [{"family": "赵"}]}),
        post({"resourceType": "Patient", "gender": 42}),
        {"request": {"method": "GET", "url": "Patient/missing"}},
        {"request": {"method": "DELETE", "url": "Patient/missing"}},
    ]
    resp = client.post("/fhir", json=tx(*entries, kind="batch"))
    assert resp.status_code == 200
    out = resp.get_json()
    assert out["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in out["entry"]]
    assert statuses[0] == "201 Created"
    assert statuses[1] == "400" and out["entry"][1]["response"]["outcome"]["issue"][0][
        "expression"
    ] == ["Patient.gender"]
    assert statuses[2] == "404"
    assert statuses[3] == "200 OK"


def test_bundle_of_wrong_type_or_malformed_entries(client):
    assert (
        client.post("/fhir", json={"resourceType": "Bundle", "type": "collection"}).status_code
        == 400
    )
    resp = client.post("/fhir", json=tx({"resource": {"resourceType": "Patient"}}))
    assert resp.status_code == 400
    assert resp.get_json()["issue"][0]["expression"] == ["Bundle.entry[0].request"]
    resp = client.post(
        "/fhir",
        json=tx(
            {
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Observation"},
            }
        ),
    )
    assert resp.status_code == 400
    assert client.post("/fhir", json={"resourceType": "Patient"}).status_code == 400


def test_synthea_patient_bundle_loads_as_one_transaction(client):
    bundle = orjson.loads(SYNTHEA_DEMO[0].read_bytes())
    resp = client.post("/fhir", json=bundle, headers={"Prefer": "return=minimal"})
    assert resp.status_code == 200, resp.data[:500]
    out = resp.get_json()
    assert len(out["entry"]) == len(bundle["entry"])
    assert all(e["response"]["status"] == "201 Created" for e in out["entry"])
    locations = {
        e["response"]["location"].split("/fhir/")[1].rsplit("/_history", 1)[0] for e in out["entry"]
    }
    patient_ref = next(loc for loc in locations if loc.startswith("Patient/"))
    # Every urn:uuid reference now points at a stored resource.
    for entry in out["entry"][:40]:
        ref = entry["response"]["location"].split("/fhir/")[1].rsplit("/_history", 1)[0]
        stored = client.get(f"/fhir/{ref}").get_json()
        assert "urn:uuid:" not in orjson.dumps(stored).decode()
        subject = (stored.get("subject") or stored.get("patient") or {}).get("reference")
        if subject:
            assert subject == patient_ref


def _lose_first_flush(monkeypatch, before_retry=None):
    """The first flush of a write fails as a lost race (a unique key a concurrent writer
    took), so ``Repository.write`` runs the transaction again; ``before_retry`` runs in
    between, as the concurrent writer's commit."""
    from sqlalchemy import exc as sa_exc

    from hub.storage import repository

    flush = repository.Writer.flush
    lost = []

    def flush_once_lost(writer):
        if not lost and writer._pending:
            lost.append(True)
            raise sa_exc.IntegrityError("INSERT", None, Exception("UNIQUE constraint failed"))
        flush(writer)

    monkeypatch.setattr(repository.Writer, "flush", flush_once_lost)
    if before_retry is not None:
        sleep = repository.time.sleep

        def between(seconds):
            if lost and lost[0] is True:
                lost[0] = "done"
                before_retry()
            sleep(seconds)

        monkeypatch.setattr(repository.time, "sleep", between)
    return lost


def test_retried_transaction_writes_what_one_attempt_writes(client, monkeypatch):
    placeholder = "urn:uuid:22222222-2222-2222-2222-222222222222"
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"},
        "subject": {"reference": placeholder},
    }
    lost = _lose_first_flush(monkeypatch)
    resp = client.post("/fhir", json=tx(post(obs), post({"resourceType": "Patient"}, placeholder)))
    assert resp.status_code == 200, resp.data
    assert lost
    obs_loc, pat_loc = (e["response"]["location"] for e in resp.get_json()["entry"])
    pid = pat_loc.split("/fhir/")[1].split("/")[1]
    stored = client.get("/fhir/" + obs_loc.split("/fhir/")[1].split("/_history")[0]).get_json()
    assert stored["subject"]["reference"] == f"Patient/{pid}"
    assert client.get(f"/fhir/Patient/{pid}").status_code == 200


def test_retry_after_a_lost_conditional_create_starts_from_the_request(hub, client, monkeypatch):
    """The race a retry exists for: a concurrent writer created the conditional create's
    match. The retry finds it, and the references to the entry name it (not the id the
    first attempt planned), with the conditional reference resolved afresh."""
    placeholder = "urn:uuid:33333333-3333-3333-3333-333333333333"
    identifier = {"system": "urn:test:mrn", "value": "race-1"}

    def concurrent_create():
        hub.repo.write(
            lambda w: w.create({"resourceType": "Patient", "identifier": [identifier]}, "winner")
        )

    client.put(
        "/fhir/Practitioner/doc",
        json={"resourceType": "Practitioner", "id": "doc", "identifier": [identifier]},
    )
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"},
        "subject": {"reference": placeholder},
        "performer": [{"reference": "Practitioner?identifier=urn:test:mrn|race-1"}],
    }
    patient = {"resourceType": "Patient", "identifier": [identifier]}
    lost = _lose_first_flush(monkeypatch, concurrent_create)
    resp = client.post(
        "/fhir",
        json=tx(
            post(obs),
            post(patient, placeholder, ifNoneExist="identifier=urn:test:mrn|race-1"),
        ),
    )
    assert resp.status_code == 200, resp.data
    assert lost == ["done"]
    obs_entry, pat_entry = resp.get_json()["entry"]
    assert pat_entry["response"]["status"] == "200 OK"
    assert "/Patient/winner/" in pat_entry["response"]["location"]
    obs_path = obs_entry["response"]["location"].split("/fhir/")[1].split("/_history")[0]
    stored = client.get(f"/fhir/{obs_path}").get_json()
    assert stored["subject"]["reference"] == "Patient/winner"
    assert stored["performer"][0]["reference"] == "Practitioner/doc"
