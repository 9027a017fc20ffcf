"""County-platform documents through the hub's ingest pipeline (``$ingest``), end to end."""

from __future__ import annotations

import pytest

from hub.identity.ids import patient_id_for_resident_id

from .conftest import GOLDEN

FOLLOWUP = GOLDEN / "HSDB04.01" / "face-to-face.xml"


@pytest.fixture
def app_config(app_config):
    app_config["PLUGINS"] = ["fhirhub_plugins.cda"]
    return app_config


def ingest(client, body: bytes, content_type: str = "application/xml"):
    return client.post("/fhir/$ingest?site=county-platform", data=body, content_type=content_type)


def test_document_ingested_once_and_kept(client):
    resp = ingest(client, FOLLOWUP.read_bytes())
    assert resp.status_code == 200, resp.data
    again = ingest(client, FOLLOWUP.read_bytes())
    assert again.headers["X-Duplicate"] == "true"
    pid = patient_id_for_resident_id("370283195803121235")
    assert client.get(f"/fhir/Patient/{pid}").get_json()["name"][0]["text"] == "王建国"
    docs = client.get(f"/fhir/DocumentReference?subject=Patient/{pid}").get_json()
    (doc,) = [e["resource"] for e in docs["entry"]]
    assert doc["masterIdentifier"]["value"] == "HSDB0401-370283-20240315-000871"


def test_hostile_document_refused_and_nothing_stored(client):
    body = (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&x;</title></ClinicalDocument>'
    )
    resp = ingest(client, body)
    assert resp.status_code == 400
    assert resp.get_json()["issue"][0]["code"] == "security"
    assert client.get("/fhir/Patient").get_json().get("total", 0) == 0


def test_contract_export_through_the_same_site(client):
    ingest(client, FOLLOWUP.read_bytes())
    resp = ingest(client, (GOLDEN / "contracts" / "export.csv").read_bytes(), "text/csv")
    assert resp.status_code == 200, resp.data
    episodes = client.get("/fhir/EpisodeOfCare").get_json()
    assert len(episodes["entry"]) == 3
