"""Patient/$cda-document: documents from the lifetime file, downloaded or uploaded to the platform."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest
from lxml import etree

from hub import outbound
from hub.app import create_app
from hub.app import get_hub
from hub.identity.ids import patient_id_for_resident_id
from tests.fixtures import authed_client

ROOT = Path(__file__).resolve().parents[2]
FOLLOW_UP = (
    ROOT
    / "conformance"
    / "sites"
    / "county-platform"
    / "cases"
    / "hypertension-follow-up"
    / "input.xml"
)
NS = {"v3": "urn:hl7-org:v3"}


class Receiver(http.server.BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self):  # noqa: N802 - the http.server API
        Receiver.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def platform(app_config, tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    manifest = (ROOT / "conformance" / "sites" / "county-platform" / "site.yaml").read_text(
        encoding="utf-8"
    )
    manifest = manifest.replace(
        "http://county-platform.invalid/document/upload",
        f"http://127.0.0.1:{server.server_port}/upload",
    )
    folder = tmp_path / "sites" / "county-platform"
    folder.mkdir(parents=True)
    (folder / "site.yaml").write_text(manifest, encoding="utf-8")
    app_config.update(
        SITES_DIR=str(tmp_path / "sites"), LOAD_EXAMPLE_SITES=False, PLUGINS=["fhirhub_plugins.cda"]
    )
    app = create_app(app_config)
    Receiver.received = []
    yield app
    get_hub(app).close()
    server.shutdown()
    server.server_close()


def test_document_from_the_file_is_generated_and_uploaded(platform):
    client = authed_client(platform)
    hub = get_hub(platform)
    stored = client.post(
        "/fhir/$ingest?site=county-platform",
        data=FOLLOW_UP.read_bytes(),
        content_type="application/xml",
    )
    assert stored.status_code == 200, stored.data
    resident = (
        etree.fromstring(FOLLOW_UP.read_bytes())
        .find(".//v3:patientRole//v3:id[@root='2.16.156.10011.1.3']", NS)
        .get("extension")
    )
    pid = patient_id_for_resident_id(resident)
    encounter = next(
        e["resource"]["id"]
        for e in client.get(f"/fhir/Encounter?subject=Patient/{pid}").get_json()["entry"]
    )
    doc = client.get(
        f"/fhir/Patient/{pid}/$cda-document?type=HSDB04.01&encounter={encounter}&site=county-platform"
    )
    assert doc.status_code == 200, doc.data
    assert doc.content_type.startswith("application/xml")
    root = etree.fromstring(doc.data)
    assert (
        root.find(".//v3:patientRole//v3:id[@root='2.16.156.10011.1.3']", NS).get("extension")
        == resident
    )
    # What the platform would get back maps to the same person.
    again = client.post(
        "/fhir/$ingest?site=county-platform", data=doc.data, content_type="application/xml"
    )
    assert again.status_code == 200, again.data
    queued = client.post(
        f"/fhir/Patient/{pid}/$cda-document?type=HSDB04.01&encounter={encounter}&site=county-platform&send=true"
    )
    assert queued.status_code == 202, queued.data
    assert outbound.deliver(hub)["sent"] == 1
    assert len(Receiver.received) == 1 and b"ClinicalDocument" in Receiver.received[0]


def test_document_operation_errors(platform):
    client = authed_client(platform)
    assert client.get("/fhir/Patient/nobody/$cda-document?type=HSDA00.01").status_code == 404
    client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    assert client.get("/fhir/Patient/p1/$cda-document?type=NOPE").status_code == 400
    assert (
        client.get("/fhir/Patient/p1/$cda-document?type=HSDB04.01&encounter=missing").status_code
        == 404
    )
    assert client.get("/fhir/Patient/p1/$cda-document?type=HSDA00.01&send=true").status_code == 405
