"""``$ingest`` for the caller's own site only; the operator APIs need full access."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ADMIT = (
    ROOT / "conformance" / "sites" / "county-hospital-a" / "cases" / "admit-inpatient" / "input.hl7"
).read_bytes()


@pytest.fixture
def app_config(app_config):
    app_config["PLUGINS"] = ["fhirhub_plugins.hl7v2"]
    return app_config


def _ingest(client, site: str, headers: dict):
    return client.post(
        f"/fhir/$ingest?site={site}", data=ADMIT, content_type="application/hl7-v2", headers=headers
    )


def test_site_client_ingests_for_its_own_site(anon_client, auth_headers, hub):
    own = auth_headers("system/*.cu", site="county-hospital-a")
    resp = _ingest(anon_client, "county-hospital-a", own)
    assert resp.status_code == 200, resp.get_json()
    assert resp.headers["X-Inbox-Status"] == "done"


def test_site_client_cannot_ingest_for_another_site(anon_client, auth_headers):
    other = auth_headers("system/*.cruds", site="county-platform")
    resp = _ingest(anon_client, "county-hospital-a", other)
    assert resp.status_code == 403
    assert "county-platform" in resp.get_json()["issue"][0]["diagnostics"]


def test_ingest_needs_a_create_scope(anon_client, auth_headers):
    reader = auth_headers("system/*.rs", site="county-hospital-a")
    assert _ingest(anon_client, "county-hospital-a", reader).status_code == 403
    unbound_reader = auth_headers("system/*.rs")
    assert _ingest(anon_client, "county-hospital-a", unbound_reader).status_code == 403


def test_operator_apis_need_full_access(anon_client, auth_headers, client):
    assert client.get("/api/inbox").status_code == 200  # */*.cruds with every grant
    reader = auth_headers("system/*.rs")
    assert anon_client.get("/api/inbox", headers=reader).status_code == 200
    assert anon_client.post("/api/inbox/replay", headers=reader).status_code == 403
    no_grants = auth_headers("system/*.cruds", labels=())
    assert anon_client.get("/api/inbox", headers=no_grants).status_code == 403
    patients = auth_headers("system/Patient.cruds")
    assert anon_client.get("/api/deliveries", headers=patients).status_code == 403
    assert anon_client.get("/api/inbox").status_code == 401
