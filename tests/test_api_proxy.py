"""``X-Forwarded-*``: used from trusted proxies only, hostile values ignored."""

from __future__ import annotations

import pytest
import requests

FORWARDED = {
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "fhir.example.org",
    "X-Forwarded-Prefix": "/hub",
    "X-Forwarded-For": "203.0.113.7",
}
PUBLIC = "https://fhir.example.org/hub/fhir"


@pytest.fixture
def app_config(app_config):
    app_config["TRUSTED_PROXY_HOPS"] = 1
    return app_config


def _urls(client, headers) -> dict[str, str]:
    """Every URL kind the hub writes, from one create, search, history and /metadata."""
    created = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=headers)
    pid = created.get_json()["id"]
    search = client.get(f"/fhir/Patient?_id={pid}", headers=headers).get_json()
    history = client.get(f"/fhir/Patient/{pid}/_history", headers=headers).get_json()
    meta = client.get("/fhir/metadata", headers=headers).get_json()
    return {
        "location": created.headers["Location"],
        "self": search["link"][0]["url"],
        "fullUrl": search["entry"][0]["fullUrl"],
        "history": history["link"][0]["url"],
        "history fullUrl": history["entry"][0]["fullUrl"],
        "implementation": meta["implementation"]["url"],
    }


def test_trusted_proxy_headers_make_every_url(client):
    for kind, url in _urls(client, FORWARDED).items():
        assert url.startswith(PUBLIC), (kind, url)


def test_smart_discovery_behind_the_proxy(client):
    """The endpoints an app is sent to carry the proxy's scheme, host and path prefix."""
    smart = client.get("/.well-known/smart-configuration", headers=FORWARDED).get_json()
    root = PUBLIC.removesuffix("/fhir")
    assert smart["token_endpoint"] == f"{root}/auth/token"
    assert smart["authorization_endpoint"] == f"{root}/auth/authorize"


def test_forwarded_port_and_address(client, hub):
    headers = {**FORWARDED, "X-Forwarded-Port": "8443"}
    created = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=headers)
    assert created.headers["Location"].startswith("https://fhir.example.org:8443/hub/fhir/")


@pytest.mark.parametrize(
    "hostile",
    [
        {"X-Forwarded-Proto": "javascript"},
        {"X-Forwarded-Proto": "ftp"},
        {"X-Forwarded-Host": "evil.example.net/phish?x="},
        {"X-Forwarded-Host": "a b"},
        {"X-Forwarded-Host": "<script>"},
        {"X-Forwarded-Host": "x" * 300},
        {"X-Forwarded-Prefix": "/../../etc"},
        {"X-Forwarded-Prefix": "//evil.example.net"},
        {"X-Forwarded-Prefix": "/a?b=c"},
        {"X-Forwarded-Port": "80abc"},
        {"X-Forwarded-For": "not-an-address"},
    ],
)
def test_hostile_forwarded_values_are_ignored(client, hostile):
    for kind, url in _urls(client, hostile).items():
        assert url.startswith("http://localhost/fhir"), (kind, url)


def test_hostile_values_over_http_never_500(live_server):
    for hostile in ({"X-Forwarded-Host": "\x7f\x00"}, {"X-Forwarded-Prefix": "/%00"}):
        resp = requests.get(
            f"{live_server.fhir}/metadata",
            headers=hostile | {"Accept": "application/fhir+json"},
            timeout=30,
        )
        assert resp.status_code < 500
        assert resp.json()["implementation"]["url"] == live_server.fhir


def test_behind_a_proxy_over_http(live_server):
    headers = {**live_server.headers, **FORWARDED, "Content-Type": "application/fhir+json"}
    created = requests.post(
        f"{live_server.fhir}/Patient", json={"resourceType": "Patient"}, headers=headers, timeout=30
    )
    assert created.headers["Location"].startswith(f"{PUBLIC}/Patient/")
    doc = requests.get(f"{live_server.fhir}/openapi.json", headers=FORWARDED, timeout=30).json()
    assert doc["servers"] == [{"url": PUBLIC}]


@pytest.mark.parametrize("hops", [0])
def test_untrusted_forwarded_headers_are_ignored(app_config, hops):
    from hub.app import create_app
    from hub.app import get_hub
    from tests.fixtures import authed_client

    plain = create_app({**app_config, "TRUSTED_PROXY_HOPS": hops})
    try:
        for kind, url in _urls(authed_client(plain), FORWARDED).items():
            assert url.startswith("http://localhost/fhir"), (kind, url)
    finally:
        get_hub(plain).close()


def test_only_the_trusted_hops_count(client):
    # One trusted proxy: the value it appended (the last) counts, not the client's own.
    headers = {**FORWARDED, "X-Forwarded-Host": "spoofed.example.net, fhir.example.org"}
    assert _urls(client, headers)["location"].startswith(PUBLIC)
