"""The R4 example terminology resources, stored through REST, served by the operations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fhirpy import SyncFHIRClient

EXAMPLES = Path(__file__).parent / "r4-examples"
LOINC = "http://loinc.org"


@pytest.fixture
def fhir(live_server):
    client = SyncFHIRClient(
        live_server.fhir,
        authorization=f"Bearer {live_server.token}",
        extra_headers={"Accept": "application/fhir+json"},
    )
    for path in sorted(EXAMPLES.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        client.resource(data["resourceType"], **data).save()
    return client


def _value(parameters: dict, name: str):
    for p in parameters["parameter"]:
        if p["name"] == name:
            return next((v for k, v in p.items() if k.startswith("value")), p.get("part"))
    return None


def test_lookup_on_the_example_code_system(fhir):
    got = fhir.execute("CodeSystem/example/$lookup", method="get", params={"code": "chol-mmol"})
    assert _value(got, "display") == "SChol (mmol/L)"
    designation = _value(got, "designation")
    assert {"name": "value", "valueString": "From ACME POC Testing"} in designation
    assert {
        "name": "use",
        "valueCoding": {
            "system": "http://acme.com/config/fhir/codesystems/internal",
            "code": "internal-label",
        },
    } in designation


def test_validate_code_on_the_extensional_value_set(fhir):
    ok = fhir.execute(
        "ValueSet/example-extensional/$validate-code",
        method="get",
        params={"system": LOINC, "code": "14647-2"},
    )
    assert _value(ok, "result") is True
    no = fhir.execute(
        "ValueSet/example-extensional/$validate-code",
        method="get",
        params={"system": LOINC, "code": "2345-7"},
    )
    assert _value(no, "result") is False


def test_expand_the_extensional_value_set_with_a_filter(fhir):
    got = fhir.execute(
        "ValueSet/example-extensional/$expand", method="get", params={"filter": "percentile"}
    )
    assert got["expansion"]["contains"] == [
        {
            "system": LOINC,
            "version": "2.36",
            "code": "9342-7",
            "display": "Cholesterol [Percentile]",
        }
    ]


def test_expand_of_a_filter_on_a_system_not_held_is_a_422(fhir, live_server):
    r = live_server.session().get(f"{live_server.fhir}/ValueSet/example-intensional/$expand")
    assert r.status_code == 422, r.text
    assert "http://loinc.org" in r.json()["issue"][0]["diagnostics"]


def test_translate_with_the_address_use_map_both_ways(fhir):
    got = fhir.execute(
        "ConceptMap/101/$translate",
        method="get",
        params={"system": "http://hl7.org/fhir/address-use", "code": "work"},
    )
    assert _value(got, "match")[1]["valueCoding"]["code"] == "WP"
    back = fhir.execute(
        "ConceptMap/101/$translate",
        method="get",
        params={
            "system": "http://terminology.hl7.org/CodeSystem/v3-AddressUse",
            "code": "H",
            "reverse": "true",
        },
    )
    assert _value(back, "match")[1]["valueCoding"]["code"] == "home"
