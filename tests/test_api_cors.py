"""CORS: browser apps of the allowed origins, and nobody else (docs/security.md#cors)."""

from __future__ import annotations

import pytest
import requests

APP = "https://app.example.org"
PREFLIGHT = {
    "Origin": APP,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, prefer",
}


@pytest.fixture
def app_config(app_config):
    app_config["CORS_ORIGINS"] = f"{APP}, https://other.example.org/"
    app_config["CORS_MAX_AGE"] = 300
    return app_config


@pytest.mark.parametrize(
    "path",
    [
        "/fhir/Patient",
        "/fhir/Patient/x/_history/1",
        "/fhir/metadata",
        "/.well-known/smart-configuration",
        "/fhir/.well-known/smart-configuration",
        "/auth/token",
        "/fhir/Binary/x",
    ],
)
def test_preflight_of_an_allowed_origin_needs_no_token(anon_client, path):
    resp = anon_client.options(path, headers=PREFLIGHT)
    assert resp.status_code == 204, resp.data
    h = resp.headers
    assert h["Access-Control-Allow-Origin"] == APP
    assert {"POST", "PUT", "PATCH", "DELETE", "GET"} <= {
        m.strip() for m in h["Access-Control-Allow-Methods"].split(",")
    }
    allowed = {x.strip().lower() for x in h["Access-Control-Allow-Headers"].split(",")}
    assert {
        "authorization",
        "content-type",
        "prefer",
        "if-match",
        "if-none-exist",
        "if-none-match",
        "if-modified-since",
        "x-request-id",
    } <= allowed
    assert h["Access-Control-Max-Age"] == "300"
    assert "Origin" in h["Vary"]
    assert "Access-Control-Allow-Credentials" not in h


def test_preflight_of_another_origin_gets_no_cors_headers(anon_client):
    resp = anon_client.options(
        "/fhir/Patient", headers={**PREFLIGHT, "Origin": "https://evil.example.net"}
    )
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert resp.status_code == 401  # the normal answer to a request without a token


def test_responses_to_an_allowed_origin_name_it_and_expose_headers(client):
    created = client.post(
        "/fhir/Patient", json={"resourceType": "Patient"}, headers={"Origin": APP}
    )
    assert created.status_code == 201
    assert created.headers["Access-Control-Allow-Origin"] == APP
    exposed = {x.strip() for x in created.headers["Access-Control-Expose-Headers"].split(",")}
    assert {
        "Location",
        "ETag",
        "Content-Location",
        "Last-Modified",
        "X-Progress",
        "Retry-After",
    } <= exposed
    assert "Origin" in created.headers["Vary"]
    # Errors too, or the browser app could not read the OperationOutcome.
    missing = client.get("/fhir/Patient/nope", headers={"Origin": "https://other.example.org"})
    assert missing.status_code == 404
    assert missing.headers["Access-Control-Allow-Origin"] == "https://other.example.org"
    other = client.get("/fhir/metadata", headers={"Origin": "https://evil.example.net"})
    assert "Access-Control-Allow-Origin" not in other.headers
    assert "Origin" in other.headers["Vary"]


def test_ui_and_operator_paths_stay_same_origin(client):
    resp = client.get("/api/inbox", headers={"Origin": APP})
    assert "Access-Control-Allow-Origin" not in resp.headers


def test_browser_flow_over_http(live_server):
    """A public app: discovery, metadata and a read from another origin, as a browser would."""
    smart = requests.get(
        f"{live_server.url}/.well-known/smart-configuration", headers={"Origin": APP}, timeout=30
    )
    assert smart.headers["Access-Control-Allow-Origin"] == APP
    meta = requests.get(f"{live_server.fhir}/metadata", headers={"Origin": APP}, timeout=30)
    assert meta.headers["Access-Control-Allow-Origin"] == APP
    assert meta.json()["rest"][0]["security"]["cors"] is True
    pre = requests.options(f"{live_server.fhir}/Patient", headers=PREFLIGHT, timeout=30)
    assert pre.status_code == 204
    token = requests.post(
        f"{live_server.url}/auth/token",
        data={"grant_type": "client_credentials"},
        headers={"Origin": APP},
        timeout=30,
    )
    assert token.status_code in (400, 401)  # no client: refused, but readable by the app
    assert token.headers["Access-Control-Allow-Origin"] == APP


def test_no_origins_by_default(app_config, anon_client):
    # This module's app allows two origins; a hub without the setting allows none.
    from hub.app import create_app

    config = {**app_config, "CORS_ORIGINS": ""}
    plain = create_app(config)
    try:
        resp = plain.test_client().options("/fhir/Patient", headers=PREFLIGHT)
        assert "Access-Control-Allow-Origin" not in resp.headers
        assert resp.status_code == 401
        meta = plain.test_client().get("/fhir/metadata").get_json()
        assert meta["rest"][0]["security"]["cors"] is False
    finally:
        from hub.app import get_hub

        get_hub(plain).close()
