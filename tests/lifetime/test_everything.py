"""``Patient/{id}/$everything``: linked records, each parameter, paging, visibility."""

from __future__ import annotations

import pytest

from hub.lifetime.visibility import Visibility
from tests.lifetime.conftest import condition
from tests.lifetime.conftest import observation
from tests.lifetime.conftest import patient

SECRET = ("urn:fhirhub:codesystem:sensitivity", "mental-health")


@pytest.fixture
def person(fhir):
    """Patient a (hospital record) linked by b (township record, seealso) and c (retired)."""
    fhir.put(patient("a", birthDate="1980-01-01"))
    fhir.put(patient("b", link=[{"other": {"reference": "Patient/a"}, "type": "seealso"}]))
    fhir.put(
        patient(
            "c", active=False, link=[{"other": {"reference": "Patient/b"}, "type": "replaced-by"}]
        )
    )
    fhir.put(patient("stranger"))
    fhir.put({"resourceType": "Practitioner", "id": "doc"})
    fhir.put(condition("cond-b", "b", "I10", onset="2019-06-01"))
    fhir.put(observation("obs-a", "a", "2021-05-01", performer=[{"reference": "Practitioner/doc"}]))
    fhir.put(observation("obs-c", "c", "2023-03-01"))
    fhir.put(observation("obs-stranger", "stranger", "2021-05-01"))
    return fhir


def test_everything_follows_links_both_ways_and_includes_references(person):
    bundle = person.get("Patient/a/$everything")
    assert bundle["type"] == "searchset"
    assert sorted(person.ids(bundle, "match")) == [
        "Condition/cond-b",
        "Observation/obs-a",
        "Observation/obs-c",
        "Patient/a",
        "Patient/b",
        "Patient/c",
    ]
    assert person.ids(bundle, "include") == ["Practitioner/doc"]
    assert bundle["total"] == 6
    # from any of the records, the same person
    assert sorted(person.ids(person.get("Patient/c/$everything"), "match")) == sorted(
        person.ids(bundle, "match")
    )


def test_type_filter(person):
    bundle = person.get("Patient/a/$everything?_type=Observation,Condition")
    assert sorted(person.ids(bundle)) == [
        "Condition/cond-b",
        "Observation/obs-a",
        "Observation/obs-c",
    ]
    only = person.get("Patient/a/$everything?_type=Practitioner")
    assert person.ids(only) == []  # references follow _type too; none in the compartment


def test_since_filter(person, hub):
    cut = person.get("Observation/obs-c")["meta"]["lastUpdated"]
    bundle = person.get(f"Patient/a/$everything?_since={cut}")
    assert person.ids(bundle, "match") == ["Observation/obs-c"]


def test_start_and_end_are_clinical_dates(person):
    bundle = person.get("Patient/a/$everything?start=2021-01-01&end=2021-12-31")
    # the Patients have no clinical date and stay; 2019 and 2023 records go
    assert sorted(person.ids(bundle, "match")) == [
        "Observation/obs-a",
        "Patient/a",
        "Patient/b",
        "Patient/c",
    ]
    before = person.get("Patient/a/$everything?end=2020-01-01&_type=Observation,Condition")
    assert person.ids(before) == ["Condition/cond-b"]
    after = person.get("Patient/a/$everything?start=2022-01-01&_type=Observation,Condition")
    assert person.ids(after) == ["Observation/obs-c"]


def test_paging_with_next_links(person, client):
    seen, url, pages = [], "/fhir/Patient/a/$everything?_count=2", 0
    first = None
    while url:
        page = client.get(url).get_json()
        first = first or page
        seen += [e for e in person.ids(page, "match")]
        nxt = [lk["url"] for lk in page["link"] if lk["relation"] == "next"]
        url = nxt[0].replace("http://localhost", "") if nxt else None
        pages += 1
    assert pages == 3
    assert first["total"] == 6
    assert len(seen) == len(set(seen)) == 6


def test_post_with_parameters(person):
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "_type", "valueString": "Condition"}],
    }
    assert person.ids(person.post("Patient/a/$everything", body)) == ["Condition/cond-b"]


def test_errors(person):
    assert (
        person.get("Patient/nobody/$everything", status=404)["resourceType"] == "OperationOutcome"
    )
    oo = person.get("Patient/a/$everything?colour=red", status=400)
    assert oo["issue"][0]["expression"] == ["colour"]
    person.get("Patient/a/$everything?_type=Nonsense", status=400)
    person.get("Patient/a/$everything?start=yesterday", status=400)
    person.get("Patient/a/$everything?_count=many", status=400)


def test_visibility_labels_and_filter(person, hub):
    label = {"system": SECRET[0], "code": SECRET[1]}
    person.put(observation("obs-secret", "a", "2021-06-01", meta={"security": [label]}))
    hub.visibility_for = lambda call: Visibility(hidden_labels=(SECRET,))
    ids = person.ids(person.get("Patient/a/$everything"))
    assert "Observation/obs-secret" not in ids and "Observation/obs-a" in ids

    def no_conditions(resources):
        return [r for r in resources if r["resourceType"] != "Condition"]

    hub.visibility_for = lambda call: Visibility(visible=no_conditions)
    ids = person.ids(person.get("Patient/a/$everything"))
    assert "Condition/cond-b" not in ids and "Observation/obs-secret" in ids


def test_references_to_other_people_are_not_followed(person):
    person.put(
        observation("obs-family", "a", "2021-07-01", performer=[{"reference": "Patient/stranger"}])
    )
    ids = person.ids(person.get("Patient/a/$everything"))
    assert "Observation/obs-family" in ids
    assert "Patient/stranger" not in ids and "Observation/obs-stranger" not in ids


def test_a_provenance_over_two_people_opens_neither_file_to_the_other(person):
    person.put(
        {
            "resourceType": "Encounter",
            "id": "enc-stranger",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": "Patient/stranger"},
        }
    )
    person.put(
        {
            "resourceType": "Provenance",
            "id": "both",
            "target": [
                {"reference": "Patient/a"},
                {"reference": "Observation/obs-a"},
                {"reference": "Patient/stranger"},
                {"reference": "Observation/obs-stranger"},
                {"reference": "Encounter/enc-stranger"},
            ],
            "recorded": "2021-05-01T10:00:00Z",
            "agent": [{"who": {"reference": "Practitioner/doc"}}],
        }
    )
    mine = person.ids(person.get("Patient/a/$everything"))
    assert "Provenance/both" in mine and "Practitioner/doc" in mine
    assert "Observation/obs-stranger" not in mine and "Encounter/enc-stranger" not in mine
    theirs = person.ids(person.get("Patient/stranger/$everything"))
    assert "Encounter/enc-stranger" in theirs and "Observation/obs-a" not in theirs
    document = person.get("Patient/a/$lifetime-file")
    in_file = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in document["entry"]}
    assert "Observation/obs-a" in in_file
    assert not in_file & {"Observation/obs-stranger", "Encounter/enc-stranger", "Patient/stranger"}
