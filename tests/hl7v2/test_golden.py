"""Golden files: ``tests/golden/hl7v2/<TRIGGER>/<case>.hl7`` -> ``<case>.expected.json``.

The expected file holds the Bundle and the issues the mapping reported, or,
for a rejected message, the OperationOutcome and status. Cases named
``township-*`` use the GB 18030 township site, the rest the county site.
Regenerate deliberately with ``HUB_REGEN_GOLDEN=1``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fhir.resources.R4B import get_fhir_model_class

from fhirhub_plugins.hl7v2 import convert
from hub.outcomes import OperationOutcomeError

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden" / "hl7v2"
CASES = sorted(GOLDEN_DIR.glob("*/*.hl7"))


def run_case(path, sites, code_maps) -> dict:
    site = sites[
        "township-hospital-b" if path.name.startswith("township-") else "county-hospital-a"
    ]
    try:
        bundle, issues = convert(path.read_bytes(), site, code_maps)
    except OperationOutcomeError as exc:
        return {"status": exc.status, "outcome": exc.outcome}
    return {"bundle": bundle, "issues": issues}


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_golden(path, sites, code_maps):
    result = run_case(path, sites, code_maps)
    expected_path = path.with_suffix(".expected.json")
    if os.environ.get("HUB_REGEN_GOLDEN") == "1" or not expected_path.exists():
        expected_path.write_text(
            json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    assert result == expected
    if path.parent.name == "malformed":
        assert "outcome" in result, "a malformed message must be rejected"
        assert 400 <= result["status"] < 500
        assert all(i.get("expression") for i in result["outcome"]["issue"])
    else:
        assert "bundle" in result, result.get("outcome")


@pytest.mark.parametrize(
    "path", [p for p in CASES if p.parent.name != "malformed"], ids=lambda p: p.stem
)
def test_golden_resources_are_valid_r4(path, sites, code_maps):
    """Every resource the adapter produces passes the R4B structural models."""
    bundle = run_case(path, sites, code_maps)["bundle"]
    get_fhir_model_class("Bundle").model_validate(bundle)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        assert entry["request"] == {
            "method": "PUT",
            "url": f"{resource['resourceType']}/{resource['id']}",
        }


def test_redelivery_gives_same_ids(sites, code_maps):
    path = GOLDEN_DIR / "ADT_A01" / "county-inpatient-admit.hl7"
    first = run_case(path, sites, code_maps)["bundle"]
    second = run_case(path, sites, code_maps)["bundle"]
    assert [e["fullUrl"] for e in first["entry"]] == [e["fullUrl"] for e in second["entry"]]


def test_a03_after_a01_updates_the_same_encounter(sites, code_maps):
    a01 = run_case(GOLDEN_DIR / "ADT_A01" / "county-inpatient-admit.hl7", sites, code_maps)[
        "bundle"
    ]
    a03 = run_case(GOLDEN_DIR / "ADT_A03" / "county-death-on-discharge.hl7", sites, code_maps)[
        "bundle"
    ]

    def ids(bundle, rtype):
        return {
            e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype
        }

    assert ids(a01, "Encounter") == ids(a03, "Encounter")
    assert ids(a01, "Patient") == ids(a03, "Patient")


def test_oru_reference_mode_leaves_adt_owned_resources_alone(county, code_maps):
    from hub.sites import Site

    data = {
        "name": county.name,
        "adapter": "hl7v2",
        "organization": county.organization,
        "identifier_systems": county.identifier_systems,
        "plugins": {"hl7v2": {"oru_context": "reference"}},
    }
    site = Site(data)
    body = (GOLDEN_DIR / "ORU_R01" / "county-lipid-panel.hl7").read_bytes()
    bundle, _ = convert(body, site, code_maps)
    full, _ = convert(body, county, code_maps)
    types = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert "Patient" not in types and "Encounter" not in types
    patient_id = next(
        e["resource"]["id"] for e in full["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    observation = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
    )
    assert observation["subject"] == {"reference": f"Patient/{patient_id}"}
