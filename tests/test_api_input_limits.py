"""Bad input answered 4xx on both backends: numbers past the columns, NUL and control
characters, nesting depth, oversized strings and bodies."""

from __future__ import annotations

import orjson
import pytest


def _patient(client) -> str:
    resp = client.post("/fhir/Patient", json={"resourceType": "Patient"})
    assert resp.status_code == 201, resp.data
    return resp.get_json()["id"]


def _audit(app, client, interaction: str) -> list[dict]:
    from tests.fixtures import authed_client

    auditor = authed_client(app, "system/AuditEvent.rs")
    body = auditor.get(f"/fhir/AuditEvent?subtype={interaction}&_count=100").get_json()
    return [e["resource"] for e in body.get("entry", [])]


@pytest.mark.parametrize("version", ["2147483648", "9223372036854775808", "99999999999999999999"])
def test_vread_of_a_version_past_the_column_is_not_found(client, version):
    pid = _patient(client)
    resp = client.get(f"/fhir/Patient/{pid}/_history/{version}")
    assert resp.status_code == 404, resp.data


@pytest.mark.parametrize(
    "query",
    [
        "_count=99999999999999999999",
        "_count=" + "9" * 5000,
        "_count=9223372036854775808",
        "_since=2026-01-01&_count=2147483648",
    ],
)
def test_history_with_huge_numbers_is_not_a_server_error(client, query):
    _patient(client)
    resp = client.get(f"/fhir/Patient/_history?{query}")
    assert resp.status_code < 500, resp.data


def test_history_cursor_with_a_huge_version_is_refused(client):
    import base64

    raw = orjson.dumps(["2026-01-01T00:00:00+00:00", "Patient", "x", 2**40])
    token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    resp = client.get(f"/fhir/_history?_cursor={token}")
    assert resp.status_code == 400, resp.data
    assert resp.get_json()["issue"][0]["expression"] == ["_cursor"]


@pytest.mark.parametrize(
    "query", ["_count=99999999999999999999", "_offset=99999999999999999999", "_count=" + "9" * 5000]
)
def test_search_with_huge_numbers_is_not_a_server_error(client, query):
    _patient(client)
    resp = client.get(f"/fhir/Patient?{query}")
    assert resp.status_code < 500, resp.data


def test_nul_in_a_body_string_is_refused_with_its_location(app, client):
    resp = client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "name": [{"family": "王", "given": ["a", "b\u0000c"]}]},
    )
    assert resp.status_code == 400, resp.data
    issue = resp.get_json()["issue"][0]
    assert issue["expression"] == ["Patient.name[0].given[1]"]
    assert client.get("/fhir/Patient").get_json().get("total", 0) == 0
    assert [e["outcome"] for e in _audit(app, client, "create")] == ["4"]


def test_other_control_characters_are_refused_but_tab_and_newlines_kept(client):
    bad = client.post(
        "/fhir/Patient", json={"resourceType": "Patient", "name": [{"text": "a\u0007b"}]}
    )
    assert bad.status_code == 400
    assert bad.get_json()["issue"][0]["expression"] == ["Patient.name[0].text"]
    good = client.post(
        "/fhir/Patient", json={"resourceType": "Patient", "name": [{"text": "a\tb\r\nc"}]}
    )
    assert good.status_code == 201, good.data


def test_nul_in_a_property_name_is_refused(client):
    resp = client.post("/fhir/Patient", json={"resourceType": "Patient", "gen\u0000der": "male"})
    assert resp.status_code == 400


def test_nul_in_an_id_is_refused_and_audited(app, client):
    resp = client.get("/fhir/Patient/a%00b")
    assert resp.status_code == 400, resp.data
    put = client.put("/fhir/Patient/a%00b", json={"resourceType": "Patient", "id": "a\u0000b"})
    assert put.status_code == 400, put.data
    assert [e["outcome"] for e in _audit(app, client, "read")][-1:] == ["4"]


@pytest.mark.parametrize("query", ["name=a%00b", "name%00x=a", "family=%07"])
def test_nul_in_a_search_value_is_refused(app, client, query):
    resp = client.get(f"/fhir/Patient?{query}")
    assert resp.status_code == 400, resp.data
    assert [e["outcome"] for e in _audit(app, client, "search")][-1:] == ["4"]


def _nested_extension(depth: int) -> bytes:
    """A Patient whose extension nests ``depth`` deep, as JSON text (too deep for encoders)."""
    ext = '{"url": "http://example.org/leaf", "valueString": "x"}'
    for _ in range(depth):
        ext = '{"url": "http://example.org/level", "extension": [' + ext + "]}"
    return ('{"resourceType": "Patient", "extension": [' + ext + "]}").encode()


def _post(client, body: bytes):
    return client.post("/fhir/Patient", data=body, content_type="application/fhir+json")


@pytest.mark.parametrize("depth", [150, 500, 900])
def test_deep_nesting_is_a_clean_400(client, depth):
    resp = _post(client, _nested_extension(depth))
    assert resp.status_code == 400, resp.data[:300]
    assert "depth" in resp.get_json()["issue"][0]["diagnostics"]


def test_deep_nesting_in_xml_is_a_clean_400(client):
    inner = '<extension url="http://example.org/leaf"><valueString value="x"/></extension>'
    for _ in range(200):
        inner = f'<extension url="http://example.org/level">{inner}</extension>'
    body = f'<Patient xmlns="http://hl7.org/fhir">{inner}</Patient>'
    resp = client.post("/fhir/Patient", data=body, content_type="application/fhir+xml")
    assert resp.status_code == 400, resp.data[:300]


def test_nesting_limit_is_a_setting(app_config, request):
    app_config["MAX_NESTING_DEPTH"] = 8
    client = request.getfixturevalue("client")
    # Patient, then one object per extension level, then the leaf extension: 8 deep
    assert _post(client, _nested_extension(6)).status_code == 201
    assert _post(client, _nested_extension(7)).status_code == 400


def test_a_huge_string_is_refused_naming_the_element(client):
    resp = client.post(
        "/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "x" * (20 << 20)}]}
    )
    assert resp.status_code == 400, resp.data[:300]
    issue = resp.get_json()["issue"][0]
    assert issue["code"] == "too-long"
    assert issue["expression"] == ["Patient.name[0].family"]


def test_string_and_body_limits_are_settings(app_config, request):
    app_config["MAX_STRING_LENGTH"] = 10
    app_config["MAX_CONTENT_LENGTH"] = 2000
    client = request.getfixturevalue("client")
    ok = {"resourceType": "Patient", "name": [{"family": "x" * 10}]}
    assert client.post("/fhir/Patient", json=ok).status_code == 201
    long = {"resourceType": "Patient", "name": [{"family": "x" * 11}]}
    assert client.post("/fhir/Patient", json=long).status_code == 400
    # base64Binary data is not a string: only the body limit bounds it
    photo = {"resourceType": "Patient", "photo": [{"data": "QUJD" * 100}]}
    assert client.post("/fhir/Patient", json=photo).status_code == 201
    big = {"resourceType": "Patient", "photo": [{"data": "QUJD" * 1000}]}
    resp = client.post("/fhir/Patient", json=big)
    assert resp.status_code == 413
    assert resp.get_json()["resourceType"] == "OperationOutcome"


def test_nul_in_conditional_criteria_is_refused(client):
    pid = _patient(client)
    create = client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient"},
        headers={"If-None-Exist": "identifier=a%00b"},
    )
    assert create.status_code == 400, create.data
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "GET", "url": "Patient?name=a%00b"}},
        ],
    }
    assert client.post("/fhir", json=bundle).status_code == 400
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Patient?identifier=a%00b"},
    }
    bundle["entry"] = [{"resource": obs, "request": {"method": "POST", "url": "Observation"}}]
    assert client.post("/fhir", json=bundle).status_code == 400
    put = client.put(
        "/fhir/Patient?identifier=a%2500b", json={"resourceType": "Patient", "id": pid}
    )
    assert put.status_code < 500


@pytest.mark.parametrize("pk", [2**63 + 5, 2**64 - 1, -1])
def test_search_cursor_past_the_row_keys_is_refused(client, pk):
    import base64
    import json

    _patient(client)
    raw = json.dumps({"d": "a", "p": pk, "v": []}).encode()
    token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    resp = client.get(f"/fhir/Patient?_cursor={token}")
    assert resp.status_code == 400, resp.data
    assert resp.get_json()["issue"][0]["expression"] == ["http._cursor"]


@pytest.mark.parametrize(
    "url",
    [
        "Patient/{pid}/$everything?_count=" + "9" * 5000,
        "Patient/{pid}/$everything?_cursor=9223372036854775808",
        "AuditEvent?_count=" + "9" * 5000,
        "AuditEvent?_before=9223372036854775808",
    ],
)
def test_page_sizes_and_cursors_of_operations_and_audit(app, client, url):
    from tests.fixtures import authed_client

    pid = _patient(client)
    auditor = authed_client(app, "system/AuditEvent.rs system/Patient.rs")
    resp = auditor.get("/fhir/" + url.format(pid=pid))
    assert resp.status_code in (200, 400), resp.data[:300]


def test_arrays_nested_in_arrays_count_towards_the_depth(client):
    body = b'{"resourceType": "Patient", "extension": ' + b"[" * 300 + b"]" * 300 + b"}"
    resp = _post(client, body)
    assert resp.status_code == 400
    assert "depth" in resp.get_json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("body", [b"24930", b'"text"', b"true", b"null"])
def test_operation_body_that_is_no_object_is_400(client, body):
    resp = client.post("/fhir/Patient/$validate", data=body, content_type="application/fhir+json")
    assert resp.status_code == 400, resp.data
    assert resp.get_json()["resourceType"] == "OperationOutcome"
