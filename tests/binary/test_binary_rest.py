"""Binary over REST: raw upload and download, the FHIR wrapper, securityContext, limits.

Both backends; the bytes must come back exactly, live in the blob store once per content,
and never in the resource JSON that searches and history read.
"""

from __future__ import annotations

import base64

import pytest
import sqlalchemy as sa

from hub.codesystems import RESTRICTED
from hub.storage import schema as s

# A small PDF-looking payload holding every byte value (NUL included).
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"
CDA = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<ClinicalDocument xmlns="urn:hl7-org:v3">'
    "<title>出院小结</title></ClinicalDocument>\n"
).encode()


def _id(resp) -> str:
    return resp.headers["Location"].split("/Binary/")[1].split("/")[0]


def _blob_rows(hub) -> int:
    with hub.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(s.binary_blob)).scalar()


def test_raw_pdf_round_trip_in_every_form(client, hub):
    created = client.post("/fhir/Binary", data=PDF, content_type="application/pdf")
    assert created.status_code == 201, created.data
    bid = _id(created)
    shown = created.get_json()
    assert shown["contentType"] == "application/pdf"
    assert base64.b64decode(shown["data"]) == PDF and "_data" not in shown

    for accept in (None, "*/*", "application/pdf", "application/*"):
        got = client.get(f"/fhir/Binary/{bid}", headers={"Accept": accept} if accept else {})
        assert got.status_code == 200, accept
        assert got.data == PDF and got.mimetype == "application/pdf"
        assert got.headers["ETag"] == 'W/"1"'
        assert "sandbox" in got.headers["Content-Security-Policy"]

    wrapped = client.get(f"/fhir/Binary/{bid}", headers={"Accept": "application/fhir+json"})
    assert wrapped.mimetype == "application/fhir+json"
    body = wrapped.get_json()
    assert body["contentType"] == "application/pdf" and base64.b64decode(body["data"]) == PDF
    xml = client.get(f"/fhir/Binary/{bid}?_format=xml")
    assert xml.mimetype == "application/fhir+xml" and b"<contentType value=" in xml.data
    assert client.get(f"/fhir/Binary/{bid}?_format=application/pdf").data == PDF
    assert client.get(f"/fhir/Binary/{bid}?_format=json").get_json()["id"] == bid
    refused = client.get(f"/fhir/Binary/{bid}", headers={"Accept": "image/png"})
    assert refused.status_code == 406
    assert refused.get_json()["resourceType"] == "OperationOutcome"
    unchanged = client.get(f"/fhir/Binary/{bid}", headers={"If-None-Match": 'W/"1"'})
    assert unchanged.status_code == 304


def test_bytes_are_kept_apart_from_the_json_once_per_content(client, hub):
    first = _id(client.post("/fhir/Binary", data=PDF, content_type="application/pdf"))
    second = _id(client.post("/fhir/Binary", data=PDF, content_type="application/pdf"))
    assert first != second
    assert _blob_rows(hub) == 1  # the same content is stored once
    stored = hub.repo.read("Binary", first)
    assert len(stored.content) < 600 and '"data"' not in stored.content
    found = client.get(f"/fhir/Binary?_id={first}").get_json()["entry"][0]["resource"]
    assert "data" not in found  # searches never carry the bytes
    assert found["_data"]["extension"][0]["url"] == "urn:fhirhub:extension:binary-content"
    history = client.get(f"/fhir/Binary/{first}/_history").get_json()
    assert "data" not in history["entry"][0]["resource"]


def test_put_raw_cda_keeps_each_versions_bytes(client):
    put = client.put("/fhir/Binary/cda-1", data=CDA, content_type="application/xml")
    assert put.status_code == 201, put.data
    newer = CDA.replace("出院小结".encode(), "入院记录".encode())
    assert (
        client.put("/fhir/Binary/cda-1", data=newer, content_type="application/xml").status_code
        == 200
    )
    got = client.get("/fhir/Binary/cda-1", headers={"Accept": "application/xml"})
    assert got.data == newer and got.mimetype == "application/xml"
    old = client.get("/fhir/Binary/cda-1/_history/1", headers={"Accept": "*/*"})
    assert old.data == CDA
    again = client.put("/fhir/Binary/cda-1", data=newer, content_type="application/xml")
    assert again.headers["ETag"] == 'W/"2"'  # the same bytes again: no new version


def test_fhir_wrapper_upload_and_transaction_entries(client, hub):
    wrapper = {
        "resourceType": "Binary",
        "contentType": "image/png",
        "data": base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode(),
    }
    created = client.post("/fhir/Binary", json=wrapper, content_type="application/fhir+json")
    assert created.status_code == 201, created.data
    png = client.get(f"/fhir/Binary/{_id(created)}", headers={"Accept": "image/png"})
    assert png.data.startswith(b"\x89PNG") and png.mimetype == "image/png"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {
                    **wrapper,
                    "contentType": "text/plain",
                    "data": base64.b64encode(b"hello").decode(),
                },
                "request": {"method": "POST", "url": "Binary"},
            }
        ],
    }
    out = client.post("/fhir", json=bundle, content_type="application/fhir+json")
    assert out.status_code == 200, out.data
    location = out.get_json()["entry"][0]["response"]["location"]
    bid = location.split("Binary/")[1].split("/")[0]
    assert client.get(f"/fhir/Binary/{bid}").data == b"hello"
    assert '"data"' not in hub.repo.read("Binary", bid).content


@pytest.fixture
def small_limit(app_config):
    app_config["BINARY_MAX_SIZE"] = 1000
    return app_config


def test_size_limit_is_a_413_outcome(small_limit, client):
    big = b"x" * 1001
    raw = client.post("/fhir/Binary", data=big, content_type="application/pdf")
    assert raw.status_code == 413
    assert raw.get_json()["issue"][0]["code"] == "too-costly"
    wrapper = {
        "resourceType": "Binary",
        "contentType": "text/plain",
        "data": base64.b64encode(big).decode(),
    }
    wrapped = client.post("/fhir/Binary", json=wrapper, content_type="application/fhir+json")
    assert wrapped.status_code == 413
    assert (
        client.post("/fhir/Binary", data=b"x" * 1000, content_type="text/plain").status_code == 201
    )


@pytest.mark.parametrize(
    "content_type",
    ["bad type", "text", "/pdf", "application/pdf; =x", "a/b" + "c" * 300, "ü/x", "text/plain;;"],
)
def test_hostile_content_types_are_400(client, content_type):
    resp = client.post("/fhir/Binary", data=b"abc", headers={"Content-Type": content_type})
    assert resp.status_code == 400, (content_type, resp.data)
    assert resp.get_json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    "resource",
    [
        {"resourceType": "Binary", "contentType": "text/plain", "data": "not base64!"},
        {"resourceType": "Binary", "contentType": "text/plain", "data": 12},
        {"resourceType": "Binary", "contentType": "no media type", "data": "aGVsbG8="},
        {
            "resourceType": "Binary",
            "contentType": "text/plain",
            "_data": {
                "extension": [
                    {"url": "urn:fhirhub:extension:binary-content", "valueString": "0" * 64}
                ]
            },
        },
    ],
)
def test_hostile_wrappers_are_4xx(client, resource):
    resp = client.post("/fhir/Binary", json=resource, content_type="application/fhir+json")
    assert 400 <= resp.status_code < 500, resp.data
    assert resp.get_json()["resourceType"] == "OperationOutcome"


def test_hostile_bytes_and_headers_are_stored_or_refused_never_500(client):
    for body in (b"\x00" * 10, b"\xff\xfe<script>alert(1)</script>", "ü".encode("utf-16")):
        created = client.post("/fhir/Binary", data=body, content_type="text/html")
        assert created.status_code == 201
        got = client.get(f"/fhir/Binary/{_id(created)}")
        assert got.data == body and "sandbox" in got.headers["Content-Security-Policy"]
    odd = client.post(
        "/fhir/Binary",
        data=b"x",
        content_type="text/plain",
        headers={"X-Security-Context": "../../x"},
    )
    assert odd.status_code < 500
    assert client.post("/fhir/Binary", data=b"", content_type="text/plain").status_code == 400


def test_security_context_hides_the_binary_like_its_context(client, anon_client, auth_headers):
    patient = client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "meta": {"security": [RESTRICTED]}, "gender": "female"},
    ).get_json()["id"]
    created = client.post(
        "/fhir/Binary",
        data=PDF,
        content_type="application/pdf",
        headers={"X-Security-Context": f"Patient/{patient}"},
    )
    bid = _id(created)
    assert created.get_json()["securityContext"] == {"reference": f"Patient/{patient}"}
    granted = auth_headers("system/*.rs", labels=("R",))
    assert anon_client.get(f"/fhir/Binary/{bid}", headers=granted).data == PDF
    bare = auth_headers("system/*.rs", labels=())
    hidden = anon_client.get(f"/fhir/Binary/{bid}", headers=bare)
    assert hidden.status_code == 404 and hidden.get_json()["issue"][0]["code"] == "not-found"
    assert anon_client.get(f"/fhir/Binary/{bid}/_history/1", headers=bare).status_code == 404
    binary_only = auth_headers("system/Binary.rs", labels=("R",))
    assert anon_client.get(f"/fhir/Binary/{bid}", headers=binary_only).status_code == 403
    # A context that is gone leaves the Binary as hidden as a missing resource.
    client.delete(f"/fhir/Patient/{patient}")
    assert anon_client.get(f"/fhir/Binary/{bid}", headers=granted).status_code == 404


def test_security_context_guards_update_patch_and_delete(client, anon_client, auth_headers):
    patient = client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "meta": {"security": [RESTRICTED]}, "gender": "male"},
    ).get_json()["id"]
    bid = _id(
        client.post(
            "/fhir/Binary",
            data=PDF,
            content_type="application/pdf",
            headers={"X-Security-Context": f"Patient/{patient}"},
        )
    )
    # Every scope but not the restricted label: the Binary is as absent as on read.
    bare = auth_headers("system/*.cruds", labels=())
    put = anon_client.put(
        f"/fhir/Binary/{bid}", data=b"overwritten", content_type="text/plain", headers=bare
    )
    assert put.status_code == 404 and put.get_json()["issue"][0]["code"] == "not-found"
    patch = anon_client.patch(
        f"/fhir/Binary/{bid}",
        json=[{"op": "replace", "path": "/contentType", "value": "text/plain"}],
        headers={**bare, "Content-Type": "application/json-patch+json"},
    )
    assert patch.status_code == 404
    assert anon_client.delete(f"/fhir/Binary/{bid}", headers=bare).status_code == 404
    assert anon_client.delete("/fhir/Binary?_id=" + bid, headers=bare).status_code == 404
    in_bundle = anon_client.post(
        "/fhir",
        json={
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"request": {"method": "DELETE", "url": f"Binary/{bid}"}}],
        },
        headers=bare,
    )
    assert in_bundle.status_code == 404
    # Nothing changed: the content and the version are the first upload's.
    kept = client.get(f"/fhir/Binary/{bid}")
    assert kept.data == PDF and kept.headers["ETag"] == 'W/"1"'
    # A caller who may read the context may change and delete the Binary.
    granted = auth_headers("system/*.cruds", labels=("R",))
    changed = anon_client.put(
        f"/fhir/Binary/{bid}",
        data=CDA,
        content_type="application/xml",
        headers={**granted, "X-Security-Context": f"Patient/{patient}"},
    )
    assert changed.status_code == 200
    assert anon_client.delete(f"/fhir/Binary/{bid}", headers=granted).status_code == 200
    assert client.get(f"/fhir/Binary/{bid}").status_code == 410
