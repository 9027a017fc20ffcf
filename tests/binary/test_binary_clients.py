"""Binary against a live server: fhirpy and fhirclient (the FHIR resource) and plain HTTP
(raw content), on both backends."""

from __future__ import annotations

import base64

import requests
from fhirclient import client as fc_client
from fhirclient.models.binary import Binary as FcBinary
from fhirpy import SyncFHIRClient

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 64 + b"%%EOF\n"


def test_fhirpy_saves_and_reads_a_binary_resource(live_server):
    fhir = SyncFHIRClient(live_server.fhir, authorization=f"Bearer {live_server.token}")
    b = fhir.resource("Binary", contentType="application/pdf", data=base64.b64encode(PDF).decode())
    b.save()  # fhirpy sends application/json: a Binary resource, not content
    assert b.id and b["meta"]["versionId"] == "1"
    got = fhir.reference("Binary", b.id).to_resource()
    assert got["contentType"] == "application/pdf"
    assert base64.b64decode(got["data"]) == PDF
    raw = requests.get(f"{live_server.fhir}/Binary/{b.id}", headers=live_server.headers, timeout=30)
    assert raw.content == PDF and raw.headers["Content-Type"] == "application/pdf"


def test_fhirclient_reads_a_raw_upload(live_server):
    up = requests.post(
        f"{live_server.fhir}/Binary",
        data=PDF,
        headers={**live_server.headers, "Content-Type": "application/pdf"},
        timeout=30,
    )
    assert up.status_code == 201, up.text
    bid = up.headers["Location"].split("/Binary/")[1].split("/")[0]
    smart = fc_client.FHIRClient(settings={"app_id": "test", "api_base": live_server.fhir + "/"})
    smart.server.session.headers.update(live_server.headers)
    binary = FcBinary.read(bid, smart.server)
    assert binary.contentType == "application/pdf"
    assert base64.b64decode(binary.data) == PDF


def test_plain_http_put_and_download_with_accept(live_server):
    cda = b'<?xml version="1.0"?><ClinicalDocument xmlns="urn:hl7-org:v3"/>'
    url = f"{live_server.fhir}/Binary/partner-cda-1"
    put = requests.put(
        url,
        data=cda,
        headers={**live_server.headers, "Content-Type": "application/xml"},
        timeout=30,
    )
    assert put.status_code == 201, put.text
    raw = requests.get(
        url, headers={**live_server.headers, "Accept": "application/xml"}, timeout=30
    )
    assert raw.content == cda
    wrapped = requests.get(
        url, headers={**live_server.headers, "Accept": "application/fhir+json"}, timeout=30
    ).json()
    assert wrapped["resourceType"] == "Binary" and base64.b64decode(wrapped["data"]) == cda
