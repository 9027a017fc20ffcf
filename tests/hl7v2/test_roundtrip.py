"""from_fhir(to_fhir(message)) keeps the fields from_fhir claims."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhirhub_plugins.hl7v2 import convert
from fhirhub_plugins.hl7v2 import map_outbound
from fhirhub_plugins.hl7v2.from_fhir import observations_to_oru_r01
from fhirhub_plugins.hl7v2.from_fhir import patient_to_adt_a31
from hub.mapping import MappingContext

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "hl7v2"
PATIENT_FIELDS = (
    "identifier",
    "name",
    "gender",
    "birthDate",
    "telecom",
    "address",
    "maritalStatus",
    "deceasedDateTime",
)
OBS_FIELDS = (
    "code",
    "valueQuantity",
    "valueString",
    "status",
    "effectiveDateTime",
    "interpretation",
)


def resources(bundle, rtype):
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


@pytest.mark.parametrize(
    ("case", "site_name"),
    [
        ("ADT_A01/county-inpatient-admit.hl7", "county-hospital-a"),
        ("ADT_A03/township-death-gb18030-no-msh18.hl7", "township-hospital-b"),
        ("ORU_R01/township-cbc-gb18030-local-codes.hl7", "township-hospital-b"),
    ],
)
def test_patient_round_trip(case, site_name, sites, code_maps):
    site = sites[site_name]
    bundle, _ = convert((GOLDEN / case).read_bytes(), site, code_maps)
    (patient,) = resources(bundle, "Patient")
    body = patient_to_adt_a31(patient, site, MappingContext(site, code_maps))
    again, _ = convert(body, site, code_maps)
    (back,) = resources(again, "Patient")
    for field in PATIENT_FIELDS:
        assert back.get(field) == patient.get(field), field
    assert back["id"] == patient["id"]


def test_observation_round_trip(sites, code_maps):
    site = sites["county-hospital-a"]
    bundle, _ = convert((GOLDEN / "ORU_R01/county-lipid-panel.hl7").read_bytes(), site, code_maps)
    (patient,) = resources(bundle, "Patient")
    observations = resources(bundle, "Observation")
    body = observations_to_oru_r01(
        observations, site, MappingContext(site, code_maps), patient=patient
    )
    again, _ = convert(body, site, code_maps)
    back = resources(again, "Observation")
    assert len(back) == len(observations)
    for before, after in zip(observations, back, strict=True):
        for field in OBS_FIELDS:
            assert after.get(field) == before.get(field), field


def test_hook_map_outbound(sites, code_maps):
    site = sites["county-hospital-a"]
    bundle, _ = convert(
        (GOLDEN / "ADT_A01/county-inpatient-admit.hl7").read_bytes(), site, code_maps
    )
    (patient,) = resources(bundle, "Patient")
    patient = dict(patient, meta={"versionId": "3"})
    context = MappingContext(site, code_maps)
    (first,) = map_outbound(resource=patient, event="update", site=site, context=context)
    (second,) = map_outbound(resource=patient, event="update", site=site, context=context)
    assert first.key == second.key  # same version, same MSH-10
    assert first.content_type == "application/hl7-v2"
    assert map_outbound(resource=patient, event="delete", site=site, context=context) == []
    cda_site = type("S", (), {"adapter": "cda"})()
    assert map_outbound(resource=patient, event="update", site=cda_site, context=context) is None
