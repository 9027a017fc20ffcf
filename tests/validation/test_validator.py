"""Base-definition checks of the validator, each with the issue's FHIRPath expression."""

from __future__ import annotations

import pytest

from hub.validation.definitions import Definitions
from hub.validation.validator import Validator


@pytest.fixture(scope="module")
def validator():
    return Validator(Definitions())


def errs(validator, resource, profiles=None):
    return [
        (i["code"], i["expression"][0])
        for i in validator.validate(resource, profiles)
        if i["severity"] == "error"
    ]


def test_string_for_boolean_is_an_error(validator):
    assert errs(validator, {"resourceType": "Patient", "active": "true"}) == [
        ("structure", "Patient.active")
    ]


def test_string_for_number_is_an_error(validator):
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"},
        "valueQuantity": {"value": "185"},
    }
    assert errs(validator, obs) == [("structure", "Observation.valueQuantity.value")]


def test_unknown_element_and_bad_date(validator):
    res = {
        "resourceType": "Patient",
        "name": [{"given": ["A"], "foo": 1}],
        "birthDate": "1974-02-30",
    }
    assert sorted(errs(validator, res)) == [
        ("structure", "Patient.name[0].foo"),
        ("value", "Patient.birthDate"),
    ]


def test_array_shapes(validator):
    res = {"resourceType": "Patient", "gender": ["male"], "name": {"text": "x"}}
    assert sorted(errs(validator, res)) == [
        ("structure", "Patient.gender"),
        ("structure", "Patient.name"),
    ]


def test_missing_mandatory_and_two_choice_values(validator):
    res = {
        "resourceType": "Observation",
        "code": {"text": "x"},
        "valueString": "a",
        "valueBoolean": True,
    }
    assert sorted(errs(validator, res)) == [
        ("required", "Observation"),
        ("structure", "Observation.valueBoolean"),
    ]


def test_required_binding(validator):
    assert errs(validator, {"resourceType": "Patient", "gender": "boy"}) == [
        ("code-invalid", "Patient.gender")
    ]


def test_invariant_empty_element(validator):
    assert errs(validator, {"resourceType": "Patient", "name": [{}]}) == [
        ("invariant", "Patient.name[0]")
    ]


def test_period_invariant(validator):
    res = {
        "resourceType": "Patient",
        "name": [{"text": "a", "period": {"start": "2020", "end": "2019"}}],
    }
    assert errs(validator, res) == [("invariant", "Patient.name[0].period")]


def test_reference_target_type(validator):
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Medication/1"},
    }
    assert errs(validator, obs) == [("structure", "Observation.subject")]


def test_contained_resource_of_unknown_type(validator):
    res = {"resourceType": "Patient", "contained": [{"resourceType": "Foo", "id": "x"}]}
    assert ("not-supported", "Patient.contained[0]") in errs(validator, res)


def test_contained_resource_is_validated(validator):
    res = {
        "resourceType": "Patient",
        "contained": [{"resourceType": "Organization", "id": "o", "name": 5}],
        "managingOrganization": {"reference": "#o"},
    }
    assert errs(validator, res) == [("structure", "Patient.contained[0].name")]


def test_extension_context(validator):
    res = {
        "resourceType": "Patient",
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/observation-bodyPosition",
                "valueCodeableConcept": {"text": "sitting"},
            }
        ],
    }
    assert errs(validator, res) == [("business-rule", "Patient.extension[0]")]


def test_unknown_resource_type(validator):
    assert errs(validator, {"resourceType": "Foo"}) == [("not-supported", "Foo")]


def test_official_examples_are_valid(validator):
    import json
    from pathlib import Path

    folder = Path(__file__).parent / "suites" / "fhirpath-r4" / "input-json"
    for name in ("patient-example.json", "questionnaire-example.json"):
        assert errs(validator, json.loads((folder / name).read_text())) == [], name
    # the observation example uses an example.com extension the hub does not hold
    obs = json.loads((folder / "observation-example.json").read_text())
    assert errs(validator, obs) == [("structure", "Observation.extension[0]")]
    lenient = Validator(validator.defs, unknown_extensions="warning")
    assert errs(lenient, obs) == []


def _paths(x, path=()):
    yield path
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _paths(v, (*path, k))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _paths(v, (*path, i))


def test_never_raises_on_wrongly_typed_content(validator):
    """Every element of the official Patient example replaced by values of the wrong shape."""
    import copy
    import json
    from pathlib import Path

    from hub.outcomes import OperationOutcomeError
    from hub.validation.structure import check_structure

    folder = Path(__file__).parent / "suites" / "fhirpath-r4" / "input-json"
    patient = json.loads((folder / "patient-example.json").read_text())
    for path in list(_paths(patient))[1:]:
        for wrong in ({}, [None], 1.5, {"resourceType": "Foo"}):
            mutated = copy.deepcopy(patient)
            holder = mutated
            for key in path[:-1]:
                holder = holder[key]
            holder[path[-1]] = wrong
            issues = validator.validate(mutated)
            if isinstance(path[-1], str) and path[-1].startswith("_"):
                continue  # "_birthDate": {} says nothing, and is no error
            assert any(i["severity"] == "error" for i in issues), (path, wrong)
            with pytest.raises(OperationOutcomeError):
                check_structure(mutated)


def test_reference_type_of_the_wrong_shape_is_reported_where_it_is(validator):
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {
            "reference": "urn:uuid:9a3c1f0e-5d2b-4c47-8a55-0d6e8b1f2a77",
            "type": ["Patient"],
        },
    }
    issues = validator.validate(obs)
    assert [(i["code"], i["expression"][0]) for i in issues if i["severity"] == "error"] == [
        ("structure", "Observation.subject.type")
    ]
    assert not any("could not be validated" in i["diagnostics"] for i in issues)
