"""Conditional create, update and delete, and their safety under concurrency."""

from __future__ import annotations

import threading

import requests

IDENT = "urn:oid:2.16.156.10011.1.3|11010519491231002X"


def patient(value="11010519491231002X", **extra):
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:2.16.156.10011.1.3", "value": value}],
        **extra,
    }


def test_conditional_create(client):
    first = client.post(
        "/fhir/Patient", json=patient(), headers={"If-None-Exist": f"identifier={IDENT}"}
    )
    assert first.status_code == 201
    again = client.post(
        "/fhir/Patient", json=patient(), headers={"If-None-Exist": f"identifier={IDENT}"}
    )
    assert again.status_code == 200
    assert again.get_json()["id"] == first.get_json()["id"]
    client.post("/fhir/Patient", json=patient(gender="male"))  # a second match, created plainly
    both = client.post(
        "/fhir/Patient", json=patient(), headers={"If-None-Exist": f"identifier={IDENT}"}
    )
    assert both.status_code == 412


def test_conditional_update(client):
    created = client.put(f"/fhir/Patient?identifier={IDENT}", json=patient(gender="female"))
    assert created.status_code == 201
    pid = created.get_json()["id"]
    updated = client.put(f"/fhir/Patient?identifier={IDENT}", json=patient(gender="male"))
    assert updated.status_code == 200
    assert updated.get_json()["id"] == pid and updated.headers["ETag"] == 'W/"2"'
    wrong = client.put(f"/fhir/Patient?identifier={IDENT}", json=patient(id="other"))
    assert wrong.status_code == 400


def test_conditional_delete(client):
    for _ in range(3):
        client.post("/fhir/Patient", json=patient(value="440524188001010014"))
    keep = client.post("/fhir/Patient", json=patient()).get_json()["id"]
    resp = client.delete("/fhir/Patient?identifier=urn:oid:2.16.156.10011.1.3|440524188001010014")
    assert resp.status_code == 200
    assert "3 Patient" in resp.get_json()["issue"][0]["diagnostics"]
    assert (
        client.get("/fhir/Patient?identifier=urn:oid:2.16.156.10011.1.3|440524188001010014")
        .get_json()
        .get("total", 0)
        == 0
    )
    assert client.get(f"/fhir/Patient/{keep}").status_code == 200


def test_transaction_conditional_create_and_reference(client):
    existing = client.post("/fhir/Patient", json=patient()).get_json()["id"]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:aaaaaaaa-0000-0000-0000-000000000001",
                "resource": patient(),
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": f"identifier={IDENT}",
                },
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "身高"},
                    "subject": {"reference": "urn:uuid:aaaaaaaa-0000-0000-0000-000000000001"},
                    "performer": [{"reference": f"Patient?identifier={IDENT}"}],
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    resp = client.post("/fhir", json=bundle)
    assert resp.status_code == 200, resp.data
    out = resp.get_json()["entry"]
    assert out[0]["response"]["status"] == "200 OK"  # matched, not created
    obs_id = out[1]["response"]["location"].split("/Observation/")[1].split("/")[0]
    obs = client.get(f"/fhir/Observation/{obs_id}").get_json()
    assert obs["subject"]["reference"] == f"Patient/{existing}"
    assert obs["performer"][0]["reference"] == f"Patient/{existing}"
    bad = dict(
        bundle,
        entry=[
            dict(
                bundle["entry"][1],
                resource=dict(
                    bundle["entry"][1]["resource"],
                    subject={"reference": "Patient?identifier=none|none"},
                ),
            )
        ],
    )
    assert client.post("/fhir", json=bad).status_code == 412


def test_twenty_concurrent_conditional_creates_leave_one(live_server, client):
    """Twenty clients race to create the same person over real HTTP: exactly one wins."""
    statuses: list[int] = []
    barrier = threading.Barrier(20)

    def one():
        with requests.Session() as session:
            barrier.wait()
            resp = session.post(
                f"{live_server.fhir}/Patient",
                json=patient(value="370203195003121016"),
                headers={
                    **live_server.headers,
                    "If-None-Exist": "identifier=urn:oid:2.16.156.10011.1.3|370203195003121016",
                    "Content-Type": "application/fhir+json",
                },
                timeout=60,
            )
            statuses.append(resp.status_code)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] * 19 + [201]
    found = client.get(
        "/fhir/Patient?identifier=urn:oid:2.16.156.10011.1.3|370203195003121016"
    ).get_json()
    assert found["total"] == 1


def test_concurrent_conditional_creates_with_overlapping_criteria_leave_one(live_server, client):
    """Half the creators ask ``identifier=S|V``, half ``identifier=S|V&gender=female``: both
    criteria match the same Patient, so exactly one Patient may come of it (5 rounds)."""
    system = "urn:oid:2.16.156.10011.1.3"
    for round_ in range(5):
        value = f"37020319500312{round_:03d}X"
        statuses: list[int] = []
        barrier = threading.Barrier(20)

        def one(i, value=value, statuses=statuses, barrier=barrier):
            criteria = f"identifier={system}|{value}" + ("&gender=female" if i % 2 else "")
            with requests.Session() as session:
                barrier.wait()
                resp = session.post(
                    f"{live_server.fhir}/Patient",
                    json=patient(value=value, gender="female"),
                    headers={
                        **live_server.headers,
                        "If-None-Exist": criteria,
                        "Content-Type": "application/fhir+json",
                    },
                    timeout=60,
                )
                statuses.append(resp.status_code)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(statuses) == [200] * 19 + [201], (round_, statuses)
        found = client.get(f"/fhir/Patient?identifier={system}|{value}").get_json()
        assert found["total"] == 1, round_
