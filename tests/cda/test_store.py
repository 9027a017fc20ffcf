"""The adapter's Bundles go through the hub's transaction processing as they are."""

from __future__ import annotations

import pytest

from fhirhub_plugins.cda import contracts
from fhirhub_plugins.cda import to_fhir
from hub.mapping import MappingContext

from .conftest import GOLDEN
from .conftest import Site

FOLLOWUP = GOLDEN / "HSDB04.01" / "face-to-face.xml"


def _needs_search(client) -> None:
    """Conditional PATCH and ifNoneExist need the search service."""
    if client.get("/fhir/Patient?_count=1").status_code == 501:
        pytest.skip("the hub's search service is not available in this build")


def _bundle(body: bytes, code_maps) -> dict:
    site = Site()
    return to_fhir.document_bundle(body, MappingContext(site, code_maps), site)


def _version_2(body: bytes) -> bytes:
    return (
        body.replace(
            b'extension="HSDB0401-370283-20240315-000871"/>\n  <code',
            b'extension="HSDB0401-370283-20240315-000871-V2"/>\n  <code',
            1,
        )
        .replace(b'<versionNumber value="1"/>', b'<versionNumber value="2"/>')
        .replace(
            b"  <component>\n    <structuredBody>",
            b'  <relatedDocument typeCode="RPLC"><parentDocument><id root="2.16.156.10011.1.1" '
            b'extension="HSDB0401-370283-20240315-000871"/></parentDocument></relatedDocument>\n'
            b"  <component>\n    <structuredBody>",
            1,
        )
    )


def test_every_sample_document_stores(client, code_maps):
    for path in sorted(GOLDEN.glob("*/*.xml")):
        resp = client.post("/fhir", json=_bundle(path.read_bytes(), code_maps))
        assert resp.status_code == 200, (path.name, resp.get_json())
    again = client.post("/fhir", json=_bundle(FOLLOWUP.read_bytes(), code_maps))
    assert again.status_code == 200  # a re-sent document updates in place


def test_replacement_supersedes_its_parent(client, code_maps):
    _needs_search(client)
    client.post("/fhir", json=_bundle(FOLLOWUP.read_bytes(), code_maps))
    first = _bundle(FOLLOWUP.read_bytes(), code_maps)
    old_doc = next(
        e["resource"]
        for e in first["entry"]
        if e["resource"]["resourceType"] == "DocumentReference"
    )
    resp = client.post("/fhir", json=_bundle(_version_2(FOLLOWUP.read_bytes()), code_maps))
    assert resp.status_code == 200, resp.get_json()
    stored = client.get(f"/fhir/DocumentReference/{old_doc['id']}").get_json()
    assert stored["status"] == "superseded"


def test_replacement_arriving_first_is_stored(client, code_maps):
    _needs_search(client)
    resp = client.post("/fhir", json=_bundle(_version_2(FOLLOWUP.read_bytes()), code_maps))
    assert resp.status_code == 200, resp.get_json()


def test_contract_export_stores_and_reuses_the_patient(client, code_maps):
    _needs_search(client)
    resp = client.post("/fhir", json=_bundle(FOLLOWUP.read_bytes(), code_maps))
    assert resp.status_code == 200
    site = Site()
    bundle = contracts.contracts_bundle(
        (GOLDEN / "contracts" / "export.csv").read_bytes(), MappingContext(site, code_maps), site
    )
    resp = client.post("/fhir", json=bundle)
    assert resp.status_code == 200, resp.get_json()
    patients = client.get(
        "/fhir/Patient?identifier=urn:oid:2.16.156.10011.1.3|370283195803121235"
    ).get_json()
    assert patients["total"] == 1 if "total" in patients else len(patients["entry"]) == 1
    (entry,) = patients["entry"]
    assert entry["resource"]["address"]  # the document's demographics were not overwritten
