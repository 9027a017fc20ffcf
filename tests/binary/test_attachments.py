"""Large DocumentReference attachments become Binaries in the write path, for every feed.

REST writes, transactions and the CDA adapter's ingested documents alike: above
``ATTACHMENT_INLINE_MAX`` the attachment points at a Binary (``securityContext`` the
DocumentReference, its labels copied), re-sending writes nothing new, and ``$everything``
(hence the lifetime file) still reaches the Binary.
"""

from __future__ import annotations

import base64
import hashlib

import pytest

from hub.codesystems import RESTRICTED
from hub.identity.ids import patient_id_for_resident_id
from tests.cda.conftest import GOLDEN

LIMIT = 2048
BIG = bytes(range(256)) * 12  # 3072 bytes
SMALL = b"short note"


@pytest.fixture
def app_config(app_config):
    app_config["ATTACHMENT_INLINE_MAX"] = LIMIT
    app_config["PLUGINS"] = ["fhirhub_plugins.cda"]
    return app_config


def _document(pid: str, *contents: bytes, **extra) -> dict:
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient/{pid}"},
        "content": [
            {"attachment": {"contentType": "application/pdf", "data": base64.b64encode(c).decode()}}
            for c in contents
        ],
        **extra,
    }


@pytest.fixture
def pid(client) -> str:
    return client.post("/fhir/Patient", json={"resourceType": "Patient"}).get_json()["id"]


def test_large_attachment_moves_small_one_stays(client, hub, pid):
    made = client.post("/fhir/DocumentReference", json=_document(pid, BIG, SMALL))
    assert made.status_code == 201, made.data
    doc = made.get_json()
    big, small = (c["attachment"] for c in doc["content"])
    assert "data" not in big and big["url"].startswith("Binary/")
    assert big["size"] == len(BIG)
    assert big["hash"] == base64.b64encode(hashlib.sha1(BIG).digest()).decode()
    assert base64.b64decode(small["data"]) == SMALL
    bid = big["url"].split("/")[1]
    assert client.get(f"/fhir/{big['url']}").data == BIG
    binary = client.get(
        f"/fhir/Binary/{bid}", headers={"Accept": "application/fhir+json"}
    ).get_json()
    assert binary["securityContext"] == {"reference": f"DocumentReference/{doc['id']}"}
    assert binary["contentType"] == "application/pdf"
    # Written again as it was sent: the same Binary, no new version of either.
    again = client.put(
        f"/fhir/DocumentReference/{doc['id']}", json={**_document(pid, BIG, SMALL), "id": doc["id"]}
    )
    assert again.status_code == 200 and again.headers["ETag"] == 'W/"1"'
    assert hub.repo.read("Binary", bid).version == 1


def test_labels_follow_the_document_and_hide_the_binary(client, anon_client, auth_headers, pid):
    doc = client.post(
        "/fhir/DocumentReference",
        json=_document(pid, BIG, meta={"security": [RESTRICTED]}),
    ).get_json()
    url = doc["content"][0]["attachment"]["url"]
    stored = client.get(f"/fhir/{url}", headers={"Accept": "application/fhir+json"}).get_json()
    assert RESTRICTED in stored["meta"]["security"]
    bare = auth_headers("system/*.rs", labels=())
    assert anon_client.get(f"/fhir/{url}", headers=bare).status_code == 404
    assert (
        anon_client.get(f"/fhir/Binary?_id={url.split('/')[1]}", headers=bare)
        .get_json()
        .get("total")
        == 0
    )
    granted = auth_headers("system/*.rs", labels=("R",))
    assert anon_client.get(f"/fhir/{url}", headers=granted).data == BIG


def test_everything_reaches_the_binary(client, pid):
    doc = client.post("/fhir/DocumentReference", json=_document(pid, BIG)).get_json()
    bid = doc["content"][0]["attachment"]["url"].split("/")[1]
    page = client.get(f"/fhir/Patient/{pid}/$everything").get_json()
    keys = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in page["entry"]}
    assert ("Binary", bid) in keys and ("DocumentReference", doc["id"]) in keys
    only = client.get(f"/fhir/Patient/{pid}/$everything?_type=DocumentReference").get_json()
    assert {e["resource"]["resourceType"] for e in only["entry"]} == {"DocumentReference"}
    lifetime = client.get(f"/fhir/Patient/{pid}/$lifetime-file")
    assert lifetime.status_code == 200, lifetime.data
    assert f"Binary/{bid}" in lifetime.get_data(as_text=True)


def test_ingested_cda_document_is_kept_as_a_binary(client):
    body = (GOLDEN / "HSDA00.01" / "registration.xml").read_bytes()
    assert len(body) > LIMIT
    resp = client.post(
        "/fhir/$ingest?site=county-platform", data=body, content_type="application/xml"
    )
    assert resp.status_code == 200, resp.data
    pid = patient_id_for_resident_id(_resident_id(client))
    docs = client.get(f"/fhir/DocumentReference?subject=Patient/{pid}").get_json()["entry"]
    attachment = docs[0]["resource"]["content"][0]["attachment"]
    assert "data" not in attachment and attachment["size"] == len(body)
    original = client.get(f"/fhir/{attachment['url']}", headers={"Accept": "application/xml"})
    assert original.data == body  # the legal record, byte for byte
    assert original.mimetype == "application/xml"


def _resident_id(client) -> str:
    patients = client.get("/fhir/Patient").get_json()["entry"]
    for ident in patients[0]["resource"]["identifier"]:
        if len(ident.get("value", "")) == 18:
            return ident["value"]
    raise AssertionError("no resident id")
