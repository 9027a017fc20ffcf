"""Semantic checks against the Microsoft FHIR-Converter expected outputs.

Only fields both converters map are compared (Patient name, gender,
birthDate, identifier values; Observation code, value, unit). Identifier
systems, ids and placeholders differ by design. The samples are not shipped
with the project: point ``HUB_REFERENCE_SAMPLES`` at the samples folder, else
the tests skip.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fhirhub_plugins.hl7v2 import convert
from hub.sites import Site

# The folder holding microsoft-fhir-converter/, hl7-v2-to-fhir/ and
# linuxforhealth-hl7v2-fhir-converter/ (third-party samples, see their SOURCES.md).
ROOT = Path(os.environ.get("HUB_REFERENCE_SAMPLES", "/nonexistent"))
SAMPLES = ROOT / "microsoft-fhir-converter" / "hl7v2"
PAIRS = (
    sorted(
        (p, SAMPLES / "input" / (p.name.replace("-expected.json", ".hl7")))
        for p in SAMPLES.glob("expected/*/*-expected.json")
        if p.parent.name
        in ("ADT_A01", "ADT_A04", "ADT_A08", "ADT_A28", "ADT_A31", "ORU_R01", "ADT_A03")
    )
    if SAMPLES.is_dir()
    else []
)


@pytest.fixture(scope="module")
def us_site():
    return Site(
        {
            "name": "reference",
            "adapter": "hl7v2",
            "organization": {
                "id": "reference",
                "name": "Reference",
                "identifier": {"system": "urn:x", "value": "1"},
            },
            "timezone": "UTC",
            "name_style": "split",
            "plugins": {"hl7v2": {"sex_codes": "hl7", "marital_codes": "hl7"}},
        }
    )


def of_type(bundle, rtype):
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


@pytest.mark.skipif(not PAIRS, reason="reference samples not available")
@pytest.mark.parametrize(("expected_path", "input_path"), PAIRS, ids=[p[1].stem for p in PAIRS])
def test_matches_reference(expected_path, input_path, us_site, code_maps):
    expected = json.loads(expected_path.read_text(encoding="utf-8-sig"))
    ours, _ = convert(input_path.read_bytes(), us_site, code_maps)
    theirs_patients = of_type(expected, "Patient")
    ours_patients = of_type(ours, "Patient")
    assert ours_patients and theirs_patients
    theirs, mine = theirs_patients[0], ours_patients[0]
    assert mine.get("gender") == theirs.get("gender")
    assert mine.get("birthDate") == theirs.get("birthDate")
    their_ids = {i.get("value") for i in theirs.get("identifier", [])}
    our_ids = {i.get("value") for i in mine.get("identifier", [])}
    assert our_ids and our_ids <= their_ids
    their_families = {n.get("family") for n in theirs.get("name", [])}
    assert mine["name"][0].get("family") in their_families
    if expected_path.parent.name == "ORU_R01":
        theirs_obs = {
            c["code"]: o
            for o in of_type(expected, "Observation")
            for c in o["code"].get("coding", [])
        }
        for obs in of_type(ours, "Observation"):
            code = obs["code"]["coding"][0]["code"]
            if (
                code in theirs_obs
                and "valueQuantity" in obs
                and "valueQuantity" in theirs_obs[code]
            ):
                assert obs["valueQuantity"]["value"] == theirs_obs[code]["valueQuantity"]["value"]
                assert obs["valueQuantity"].get("unit") == theirs_obs[code]["valueQuantity"].get(
                    "unit"
                )


IG = ROOT / "hl7-v2-to-fhir"


@pytest.mark.skipif(not IG.is_dir(), reason="reference samples not available")
def test_matches_v2_to_fhir_ig_adt_a01(us_site, code_maps):
    """The IG's example Bundle for its ADT_A01 benchmark message, on shared fields."""
    theirs = json.loads((IG / "samples/fhir-bundles/FHIR_bundle.hl7_ADT_A01.json").read_text())
    ours, _ = convert((IG / "test-conversions/ADT_A01.hl7").read_bytes(), us_site, code_maps)
    (their_patient,) = of_type(theirs, "Patient")
    (our_patient,) = of_type(ours, "Patient")
    assert our_patient["gender"] == their_patient["gender"]
    assert our_patient["birthDate"] == their_patient["birthDate"][:10]
    assert our_patient["name"][0]["family"] == their_patient["name"][0]["family"]
    assert our_patient["name"][0]["given"][0] == their_patient["name"][0]["given"][0]
    assert our_patient["maritalStatus"]["coding"][-1]["code"] == "M"
    assert {"1032702", "N09204074"} <= {i["value"] for i in their_patient["identifier"]}
    assert {"1032702", "N09204074"} == {i["value"] for i in our_patient["identifier"]}
    (their_enc,) = of_type(theirs, "Encounter")
    (our_enc,) = of_type(ours, "Encounter")
    assert our_enc["identifier"][0]["value"] == their_enc["identifier"][0]["value"]
    (their_allergy,) = of_type(theirs, "AllergyIntolerance")
    (our_allergy,) = of_type(ours, "AllergyIntolerance")
    assert our_allergy["code"]["text"] == their_allergy["code"]["text"]
    (their_cov,) = of_type(theirs, "Coverage")
    (our_cov,) = of_type(ours, "Coverage")
    assert our_cov["period"]["start"] == their_cov["period"]["start"]
    assert our_cov["payor"][0]["display"] == their_cov["payor"][0]["display"]


ALL_INPUTS = (
    sorted(SAMPLES.glob("input/*.hl7"))
    + sorted(IG.glob("test-conversions/*.hl7"))
    + sorted((ROOT / "linuxforhealth-hl7v2-fhir-converter").glob("*.hl7"))
)


@pytest.mark.skipif(not ALL_INPUTS, reason="reference samples not available")
def test_every_reference_message_maps_or_is_cleanly_rejected(us_site, code_maps):
    """150 third-party messages: supported ones map to valid R4 resources, the rest
    are refused with an OperationOutcome naming where; nothing raises anything else."""
    from fhir.resources.R4B import get_fhir_model_class

    from hub.outcomes import OperationOutcomeError

    mapped = 0
    for path in ALL_INPUTS:
        try:
            bundle, _ = convert(path.read_bytes(), us_site, code_maps)
        except OperationOutcomeError as exc:
            assert 400 <= exc.status < 500, path.name
            assert exc.issues[0].get("expression"), path.name
            continue
        mapped += 1
        for entry in bundle["entry"]:
            resource = entry["resource"]
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    assert mapped >= 40
