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


def test_a_move_to_another_county_supersedes_the_record_number(client):
    """The new county's registration supersedes the number; a late document does not revive it."""
    from hub.completeness.jurisdiction import place_of

    old_no, new_no = b"37028310201300123", b"37020310100200007"
    assert ingest(client, FOLLOWUP.read_bytes()).status_code == 200
    moved = (
        (GOLDEN / "HSDA00.01" / "registration.xml")
        .read_bytes()
        .replace(b"370283196207252444", b"370283195803121235")
        .replace(b"37028310201300388", new_no)
        .replace(
            b'<effectiveTime value="20230906143011"/>', b'<effectiveTime value="20240601090000"/>'
        )
    )
    assert ingest(client, moved).status_code == 200, "the new county's registration"
    late = (
        FOLLOWUP.read_bytes()
        .replace(b"HSDB0401-370283-20240315-000871", b"HSDB0401-370283-20240530-000871")
        .replace(
            b'<effectiveTime value="20240318161502"/>', b'<effectiveTime value="20240620090000"/>'
        )
    )
    assert ingest(client, late).status_code == 200, "a document made before the move, sent late"
    pid = patient_id_for_resident_id("370283195803121235")
    patient = client.get(f"/fhir/Patient/{pid}").get_json()
    numbers = {
        i["value"]: i for i in patient["identifier"] if i["system"] == "urn:oid:2.16.156.10011.1.2"
    }
    assert numbers[old_no.decode()]["use"] == "old" and numbers[old_no.decode()]["period"]["end"]
    assert "use" not in numbers[new_no.decode()]
    assert place_of(patient).county == "370203"
