"""``$everything`` stays inside one person: multi-person files, hidden Patients."""

from __future__ import annotations

from typing import Any

from hub.codesystems import VETERAN_SENSITIVITY
from hub.identity.ids import patient_id_for_resident_id
from hub.identity.resident_id import normalise
from tests.fixtures import authed_client
from tests.va_registry.samples import PEOPLE
from tests.va_registry.samples import csv_bytes


def _patient_refs(value: Any) -> set[str]:
    """Every ``Patient/<id>`` a resource refers to, anywhere in it."""
    if isinstance(value, dict):
        out = set().union(*(_patient_refs(v) for v in value.values())) if value else set()
        ref = value.get("reference")
        if isinstance(ref, str) and ref.startswith("Patient/"):
            out.add(ref.split("/")[1])
        return out
    if isinstance(value, list):
        return set().union(*(_patient_refs(v) for v in value)) if value else set()
    return set()


def _ingest_registry(hub) -> list[str]:
    result = hub.pipeline.ingest(
        "veterans-registry", csv_bytes([list(p) for p in PEOPLE]), content_type="text/csv"
    )
    assert result.status == "done", result.outcome
    return [patient_id_for_resident_id(normalise(p[2])) for p in PEOPLE]


def test_registry_file_of_several_people_leaks_nobody_into_everything(hub, fhir):
    people = _ingest_registry(hub)
    assert len(set(people)) == len(PEOPLE) == 4
    for pid in people:
        bundle = fhir.get(f"Patient/{pid}/$everything")
        resources = [e["resource"] for e in bundle["entry"]]
        kinds = {r["resourceType"] for r in resources}
        assert {"Patient", "Observation", "EpisodeOfCare", "Provenance"} <= kinds
        for resource in resources:
            where = f"{resource['resourceType']}/{resource['id']} in {pid}'s $everything"
            if resource["resourceType"] == "Patient":
                assert resource["id"] == pid, where
            assert _patient_refs(resource) <= {pid}, where
        document = fhir.get(f"Patient/{pid}/$lifetime-file")
        for entry in document["entry"]:
            assert _patient_refs(entry["resource"]) <= {pid}


def test_ingestion_writes_one_provenance_per_person(hub, fhir):
    people = _ingest_registry(hub)
    bundle = fhir.get("Provenance?_count=100")
    ingested = [
        e["resource"]
        for e in bundle.get("entry") or ()
        if e["resource"].get("activity", {}).get("text", "").startswith("ingested")
    ]
    by_person = {}
    for prov in ingested:
        targets = {t["reference"] for t in prov["target"]}
        person = [t.split("/")[1] for t in targets if t.startswith("Patient/")]
        assert len(person) == 1, targets
        assert len(targets) == 3  # the Patient, its registry Observation and EpisodeOfCare
        by_person[person[0]] = prov
    assert sorted(by_person) == sorted(people)
    # Re-delivery updates the same Provenances instead of adding more.
    hub.pipeline.ingest(
        "veterans-registry", csv_bytes([list(p) for p in PEOPLE]), content_type="text/csv"
    )
    again = fhir.get("Provenance?_count=100&_summary=count")
    assert again["total"] == bundle["total"]


def test_everything_of_a_hidden_patient_answers_like_a_missing_one(app, fhir):
    secret = {
        "resourceType": "Patient",
        "id": "kept-secret",
        "meta": {"security": [VETERAN_SENSITIVITY]},
    }
    fhir.put(secret)
    fhir.put({"resourceType": "Patient", "id": "plain"})
    bare = authed_client(app, "system/*.rs", labels=())
    hidden = bare.get("/fhir/Patient/kept-secret/$everything")
    missing = bare.get("/fhir/Patient/nobody-here/$everything")
    assert (hidden.status_code, missing.status_code) == (404, 404)
    text = hidden.get_json()["issue"][0]["diagnostics"].replace("kept-secret", "ID")
    assert text == missing.get_json()["issue"][0]["diagnostics"].replace("nobody-here", "ID")
    assert hidden.get_json()["issue"][0]["code"] == missing.get_json()["issue"][0]["code"]
    for op in ("$lifetime-file", "$everything?_type=Patient"):
        assert bare.get(f"/fhir/Patient/kept-secret/{op}").status_code == 404, op
    assert bare.get("/fhir/Patient/plain/$everything").status_code == 200
    assert authed_client(app).get("/fhir/Patient/kept-secret/$everything").status_code == 200
