"""The FHIR RESTful interactions over HTTP (Flask test client), on both backends."""

from __future__ import annotations

import datetime as dt
from email.utils import format_datetime

import pytest

FHIR_JSON = "application/fhir+json"


def new_patient(**extra):
    return {"resourceType": "Patient", "name": [{"family": "张", "given": ["三"]}], **extra}


def assert_outcome(resp, status: int, code: str, expression: str | None = None):
    assert resp.status_code == status, resp.data
    assert resp.content_type.startswith(FHIR_JSON)
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == code, body
    if expression is not None:
        assert any(expression in e for i in body["issue"] for e in i.get("expression", [])), body
    return body


def create(client, resource, **kw):
    resp = client.post(f"/fhir/{resource['resourceType']}", json=resource, **kw)
    assert resp.status_code == 201, resp.data
    return resp


def test_create_assigns_id_version_and_location(client):
    resp = create(client, new_patient(id="client-chosen"))
    body = resp.get_json()
    assert body["id"] != "client-chosen"  # create ignores the client's id
    assert body["meta"]["versionId"] == "1"
    assert resp.headers["ETag"] == 'W/"1"'
    assert resp.headers["Location"].endswith(f"/fhir/Patient/{body['id']}/_history/1")
    assert "Last-Modified" in resp.headers
    assert resp.content_type == "application/fhir+json; charset=utf-8"


def test_read_returns_what_was_stored(client):
    pid = create(client, new_patient(birthDate="1950-03-12")).get_json()["id"]
    resp = client.get(f"/fhir/Patient/{pid}")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["name"][0]["family"] == "张"
    assert body["birthDate"] == "1950-03-12"
    assert body["resourceType"] == "Patient" and body["id"] == pid


def test_read_unknown_is_404_and_unknown_type_is_404(client):
    assert_outcome(client.get("/fhir/Patient/nope"), 404, "not-found")
    assert_outcome(client.get("/fhir/NotAType/1"), 404, "not-supported")


def test_update_creates_new_version_and_vread_keeps_old(client):
    pid = create(client, new_patient()).get_json()["id"]
    resp = client.put(f"/fhir/Patient/{pid}", json=new_patient(id=pid, active=True))
    assert resp.status_code == 200
    assert resp.headers["ETag"] == 'W/"2"'
    old = client.get(f"/fhir/Patient/{pid}/_history/1").get_json()
    assert "active" not in old and old["meta"]["versionId"] == "1"
    assert client.get(f"/fhir/Patient/{pid}/_history/2").get_json()["active"] is True
    assert_outcome(client.get(f"/fhir/Patient/{pid}/_history/9"), 404, "not-found")


def test_update_as_create_with_client_id(client):
    resp = client.put("/fhir/Patient/p-100", json=new_patient(id="p-100"))
    assert resp.status_code == 201
    assert resp.get_json()["id"] == "p-100"


def test_identical_update_makes_no_new_version(client):
    client.put("/fhir/Patient/same", json=new_patient(id="same"))
    resp = client.put("/fhir/Patient/same", json=new_patient(id="same"))
    assert resp.status_code == 200
    assert resp.headers["ETag"] == 'W/"1"'


def test_update_id_mismatch_and_missing_id_are_400(client):
    assert_outcome(
        client.put("/fhir/Patient/a", json=new_patient(id="b")), 400, "invalid", "Patient.id"
    )
    assert_outcome(client.put("/fhir/Patient/a", json=new_patient()), 400, "invalid", "Patient.id")


def test_if_match_mismatch_is_412(client):
    pid = create(client, new_patient()).get_json()["id"]
    ok = client.put(
        f"/fhir/Patient/{pid}", json=new_patient(id=pid, active=True), headers={"If-Match": 'W/"1"'}
    )
    assert ok.status_code == 200
    stale = client.put(
        f"/fhir/Patient/{pid}",
        json=new_patient(id=pid, active=False),
        headers={"If-Match": 'W/"1"'},
    )
    assert_outcome(stale, 412, "conflict")


def test_delete_then_read_is_410_and_history_keeps_it(client):
    pid = create(client, new_patient()).get_json()["id"]
    resp = client.delete(f"/fhir/Patient/{pid}")
    assert resp.status_code == 200
    assert_outcome(client.get(f"/fhir/Patient/{pid}"), 410, "deleted")
    hist = client.get(f"/fhir/Patient/{pid}/_history").get_json()
    assert hist["type"] == "history" and hist["total"] == 2
    assert hist["entry"][0]["request"]["method"] == "DELETE"
    assert "resource" not in hist["entry"][0]
    # Deleting again is harmless; re-creating with PUT revives it at version 3.
    assert client.delete(f"/fhir/Patient/{pid}").status_code == 200
    revived = client.put(f"/fhir/Patient/{pid}", json=new_patient(id=pid))
    assert revived.status_code == 201 and revived.headers["ETag"] == 'W/"3"'


def test_conditional_read_headers(client):
    resp = create(client, new_patient())
    pid = resp.get_json()["id"]
    assert client.get(f"/fhir/Patient/{pid}", headers={"If-None-Match": 'W/"1"'}).status_code == 304
    assert client.get(f"/fhir/Patient/{pid}", headers={"If-None-Match": 'W/"7"'}).status_code == 200
    future = format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1), usegmt=True)
    past = format_datetime(dt.datetime.now(dt.UTC) - dt.timedelta(days=1), usegmt=True)
    assert (
        client.get(f"/fhir/Patient/{pid}", headers={"If-Modified-Since": future}).status_code == 304
    )
    assert (
        client.get(f"/fhir/Patient/{pid}", headers={"If-Modified-Since": past}).status_code == 200
    )


@pytest.mark.parametrize(
    ("prefer", "expect"),
    [
        ("return=minimal", None),
        ("return=representation", "Patient"),
        ("return=OperationOutcome", "OperationOutcome"),
    ],
)
def test_prefer_return(client, prefer, expect):
    resp = client.post("/fhir/Patient", json=new_patient(), headers={"Prefer": prefer})
    assert resp.status_code == 201
    assert "Location" in resp.headers
    if expect is None:
        assert resp.data == b""
    else:
        assert resp.get_json()["resourceType"] == expect


def test_json_patch(client):
    pid = create(client, new_patient()).get_json()["id"]
    ops = [{"op": "add", "path": "/birthDate", "value": "1960-02-29"}]
    resp = client.patch(
        f"/fhir/Patient/{pid}", json=ops, content_type="application/json-patch+json"
    )
    assert resp.status_code == 200, resp.data
    assert resp.get_json()["birthDate"] == "1960-02-29"
    assert resp.headers["ETag"] == 'W/"2"'
    bad = [{"op": "replace", "path": "/birthDate", "value": "not-a-date"}]
    resp = client.patch(
        f"/fhir/Patient/{pid}", json=bad, content_type="application/json-patch+json"
    )
    assert_outcome(resp, 400, "structure", "Patient.birthDate")
    missing = [{"op": "remove", "path": "/nothing"}]
    resp = client.patch(
        f"/fhir/Patient/{pid}", json=missing, content_type="application/json-patch+json"
    )
    assert_outcome(resp, 422, "processing")
    resp = client.patch(f"/fhir/Patient/{pid}", json=ops, content_type="text/plain")
    assert_outcome(resp, 415, "not-supported")


def test_structural_errors_carry_fhirpath_locations(client):
    bad = {
        "resourceType": "Patient",
        "birthDate": "1990-13-45",
        "name": [{"given": "not-a-list"}],
        "foo": 1,
    }
    body = assert_outcome(client.post("/fhir/Patient", json=bad), 400, "structure")
    expressions = {e for i in body["issue"] for e in i["expression"]}
    assert {"Patient.birthDate", "Patient.name[0].given", "Patient.foo"} <= expressions


def test_type_mismatch_and_bad_bodies(client):
    assert_outcome(
        client.post("/fhir/Patient", json={"resourceType": "Observation"}),
        400,
        "invalid",
        "resourceType",
    )
    assert_outcome(
        client.post("/fhir/Patient", data=b"{oops", content_type=FHIR_JSON), 400, "structure"
    )
    assert_outcome(
        client.post("/fhir/Patient", data=b"[1, 2]", content_type=FHIR_JSON), 400, "structure"
    )
    assert_outcome(client.post("/fhir/Patient", data=b"", content_type=FHIR_JSON), 400, "invalid")
    assert_outcome(
        client.post("/fhir/Patient", data=b"a=b", content_type="text/csv"), 415, "not-supported"
    )


def test_wrong_method_is_405_with_outcome(client):
    assert_outcome(client.patch("/fhir/Patient", json=[]), 405, "not-supported")


def test_oversized_body_is_413(app, client):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    resp = client.post("/fhir/Patient", data=b"{" + b" " * 2000 + b"}", content_type=FHIR_JSON)
    assert_outcome(resp, 413, "too-costly")


def test_invalid_id_is_400(client):
    assert_outcome(
        client.put("/fhir/Patient/bad_id!", json=new_patient(id="bad_id!")), 400, "invalid"
    )


def test_unexpected_error_is_500_outcome_without_traceback(app, client, monkeypatch):
    from hub.app import get_hub

    def boom(*a, **k):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(get_hub(app).service, "read", boom)
    resp = client.get("/fhir/Patient/x")
    assert resp.status_code == 500
    assert b"secret internals" not in resp.data and b"Traceback" not in resp.data
    assert resp.get_json()["issue"][0]["code"] == "exception"


def test_type_and_system_history_with_since_count_and_paging(client):
    ids = [create(client, new_patient()).get_json()["id"] for _ in range(5)]
    client.put(f"/fhir/Patient/{ids[0]}", json=new_patient(id=ids[0], active=True))
    page1 = client.get("/fhir/Patient/_history?_count=4").get_json()
    assert len(page1["entry"]) == 4
    assert page1["entry"][0]["resource"]["id"] == ids[0]  # newest first
    nxt = next(link["url"] for link in page1["link"] if link["relation"] == "next")
    page2 = client.get(nxt.replace("http://localhost", "")).get_json()
    assert len(page2["entry"]) == 2
    assert not any(link["relation"] == "next" for link in page2["link"])
    seen = [
        (e["resource"]["id"], e["resource"]["meta"]["versionId"])
        for e in page1["entry"] + page2["entry"]
    ]
    assert len(set(seen)) == 6
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert client.get(f"/fhir/_history?_since={future}").get_json().get("entry") == []
    assert len(client.get("/fhir/_history").get_json()["entry"]) == 6
    assert_outcome(client.get("/fhir/_history?_since=yesterday"), 400, "invalid", "_since")
    assert_outcome(client.get("/fhir/_history?_count=-1"), 400, "invalid", "_count")


def test_history_of_unknown_resource_is_404(client):
    assert_outcome(client.get("/fhir/Patient/none/_history"), 404, "not-found")


def test_metadata_is_a_capability_statement(client):
    resp = client.get("/fhir/metadata")
    assert resp.status_code == 200
    cs = resp.get_json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    assert {i["code"] for i in cs["rest"][0]["interaction"]} >= {
        "transaction",
        "batch",
        "history-system",
    }
    patient = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Patient")
    assert {"read", "vread", "update", "patch", "delete", "create"} <= {
        i["code"] for i in patient["interaction"]
    }


def test_instance_operation_meta_and_unknown_operation(client):
    pid = create(client, new_patient(meta={"tag": [{"system": "urn:t", "code": "x"}]})).get_json()[
        "id"
    ]
    resp = client.get(f"/fhir/Patient/{pid}/$meta")
    assert resp.status_code == 200
    meta = resp.get_json()["parameter"][0]["valueMeta"]
    assert meta["tag"][0]["code"] == "x" and meta["versionId"] == "1"
    assert_outcome(client.get(f"/fhir/Patient/{pid}/$nothing"), 404, "not-supported")


def test_fhirpath_patch(client):
    client.put(
        "/fhir/Observation/o1",
        json={
            "resourceType": "Observation",
            "id": "o1",
            "status": "preliminary",
            "code": {"text": "status"},
            "component": [
                {"code": {"coding": [{"code": "a"}]}, "valueString": "keep"},
                {"code": {"coding": [{"code": "b"}]}, "valueString": "old"},
            ],
        },
    )

    def op(kind, path, *rest):
        return {
            "name": "operation",
            "part": [
                {"name": "type", "valueCode": kind},
                {"name": "path", "valueString": path},
                *rest,
            ],
        }

    params = {
        "resourceType": "Parameters",
        "parameter": [
            op("replace", "Observation.status", {"name": "value", "valueCode": "final"}),
            op(
                "replace",
                "Observation.component.where(code.coding.code = 'b').value",
                {"name": "value", "valueCodeableConcept": {"text": "new"}},
            ),
            op(
                "add",
                "Observation",
                {"name": "name", "valueString": "component"},
                {
                    "name": "value",
                    "part": [
                        {"name": "code", "valueCodeableConcept": {"text": "c"}},
                        {"name": "value", "valueDateTime": "2026-01-01"},
                    ],
                },
            ),
            op("delete", "Observation.component.where(code.coding.code = 'a')"),
        ],
    }
    resp = client.patch("/fhir/Observation/o1", json=params, content_type="application/fhir+json")
    assert resp.status_code == 200, resp.data
    body = resp.get_json()
    assert body["status"] == "final"
    assert body["component"] == [
        {"code": {"coding": [{"code": "b"}]}, "valueCodeableConcept": {"text": "new"}},
        {"code": {"text": "c"}, "valueDateTime": "2026-01-01"},
    ]
    bad = {
        "resourceType": "Parameters",
        "parameter": [
            op("replace", "Observation.nothing.here", {"name": "value", "valueString": "x"})
        ],
    }
    resp = client.patch("/fhir/Observation/o1", json=bad, content_type="application/fhir+json")
    assert resp.status_code == 422


def test_non_ascii_digits_are_a_clean_400(client):
    for url in (
        "/fhir/Patient?_count=²",
        "/fhir/_history?_count=²",
        "/fhir/Patient/x/_history/²",
        "/api/inbox?limit=²",
    ):
        resp = client.get(url)
        assert 400 <= resp.status_code < 500, (url, resp.status_code)
