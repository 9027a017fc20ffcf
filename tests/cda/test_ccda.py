"""C-CDA R2.1 (US) CCD inbound, checked against Microsoft FHIR-Converter's CCD samples and goldens.

The two converters model some things differently (Microsoft puts an allergy's
substance in ``reaction.substance``, ours in ``code``; Microsoft leaves vital
signs of one sample unmapped), so the comparison is on the clinical codes both
extract: problems, allergy substances, vaccines, medications and results.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hub.mapping import MappingContext
from hub.validation.structure import check_structure

from .conftest import Site
from .conftest import resources


def _samples() -> Path | None:
    here = Path(__file__).resolve()
    for candidate in (
        os.environ.get("HUB_SAMPLES_DIR"),
        here.parents[3] / "shared" / "samples",
        here.parents[4] / "shared" / "samples",
    ):
        if candidate and (Path(candidate) / "microsoft-fhir-converter").is_dir():
            return Path(candidate)
    return None


SAMPLES = _samples()
pytestmark = pytest.mark.skipif(
    SAMPLES is None, reason="shared samples not available (HUB_SAMPLES_DIR)"
)
PAIRS = ["CCD", "170.314B2_Amb_CCD", "C-CDA_R2-1_CCD.xml"]


def _codes(concepts) -> set[tuple[str | None, str | None]]:
    return {
        (c.get("system"), c.get("code"))
        for concept in concepts
        if concept
        for c in concept.get("coding", [])
    }


def _map(name: str, code_maps):
    body = (SAMPLES / "microsoft-fhir-converter" / "ccda" / "input" / f"{name}.ccda").read_bytes()
    site = Site(name="us-partner", timezone="America/New_York", config={})
    context = MappingContext(site, code_maps)
    from fhirhub_plugins.cda import to_fhir

    return to_fhir.document_bundle(body, context, site), context.issues


def _expected(name: str) -> list[dict]:
    path = (
        SAMPLES / "microsoft-fhir-converter" / "ccda" / "expected" / "CCD" / f"{name}-expected.json"
    )
    return [e["resource"] for e in json.loads(path.read_text(encoding="utf-8"))["entry"]]


@pytest.mark.parametrize("name", PAIRS)
def test_ccd_maps_to_valid_resources(name, code_maps):
    bundle, issues = _map(name, code_maps)
    for entry in bundle["entry"]:
        check_structure(entry["resource"])
    (doc,) = resources(bundle, "DocumentReference")
    assert doc["type"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "34133-9",
        "display": doc["type"]["coding"][0].get("display"),
    }
    assert all(i["severity"] == "information" for i in issues)


@pytest.mark.parametrize("name", PAIRS)
def test_ccd_clinical_codes_match_microsoft(name, code_maps):
    bundle, _ = _map(name, code_maps)
    ours, theirs = resources(bundle), _expected(name)

    def of(rs, kind, key):
        return _codes(r.get(key) for r in rs if r["resourceType"] == kind)

    assert of(ours, "Condition", "code") == of(theirs, "Condition", "code")
    theirs_substances = _codes(
        x.get("substance")
        for r in theirs
        if r["resourceType"] == "AllergyIntolerance"
        for x in r.get("reaction", [])
    )
    assert of(ours, "AllergyIntolerance", "code") >= theirs_substances
    assert {c for _s, c in of(ours, "Immunization", "vaccineCode")} == {
        c for _s, c in of(theirs, "Immunization", "vaccineCode")
    }
    assert of(ours, "MedicationStatement", "medicationCodeableConcept") == of(
        theirs, "Medication", "code"
    )
    theirs_loinc = {c for c in of(theirs, "Observation", "code") if c[0] == "http://loinc.org"}
    assert theirs_loinc <= of(ours, "Observation", "code")


def test_ccd_patient_header(code_maps):
    bundle, _ = _map("C-CDA_R2-1_CCD.xml", code_maps)
    (patient,) = resources(bundle, "Patient")
    (theirs,) = [r for r in _expected("C-CDA_R2-1_CCD.xml") if r["resourceType"] == "Patient"]
    assert patient["gender"] == theirs["gender"]
    assert patient["birthDate"] == theirs["birthDate"]
    assert {n.get("family") for n in patient["name"]} == {n.get("family") for n in theirs["name"]}


def test_hl7_example_ccds_map(code_maps):
    from fhirhub_plugins.cda import to_fhir

    folder = SAMPLES / "hl7-ccda-examples" / "Documents" / "CCD"
    paths = sorted(folder.rglob("*.xml"))
    assert paths
    site = Site(name="us-partner", timezone="America/New_York", config={})
    for path in paths:
        bundle = to_fhir.document_bundle(path.read_bytes(), MappingContext(site, code_maps), site)
        assert resources(bundle, "Patient"), path.name
        for entry in bundle["entry"]:
            check_structure(entry["resource"])
