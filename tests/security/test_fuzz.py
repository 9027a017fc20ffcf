"""Fuzzing the API from its OpenAPI description (schemathesis): no 5xx answers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_openapi_document_is_served_without_a_token(anon_client):
    doc = anon_client.get("/fhir/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "/{type}/{id}" in doc["paths"]
    assert doc["paths"]["/metadata"]["get"]["security"] == []


@pytest.mark.parametrize("value", ["²", "٣", "-1", "1e3"])
def test_non_ascii_digits_are_400_not_500(client, value):
    assert client.get(f"/fhir/_history?_count={value}").status_code == 400
    assert client.get(f"/fhir/Patient/x/_history/{value}").status_code in (400, 404)


@pytest.mark.slow
def test_fuzz_finds_no_server_errors(request):
    if "slow" not in (request.config.getoption("-m") or ""):
        pytest.skip("slow: run with -m slow")
    sys.path.insert(0, str(ROOT / "bench"))
    import fuzz

    assert fuzz.run(examples=5, max_time=60) == 0
