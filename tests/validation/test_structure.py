"""The structural check run on every write."""

from __future__ import annotations

import pytest

from hub.outcomes import OperationOutcomeError
from hub.validation.structure import check_structure
from hub.validation.structure import expression_from_loc


def raised(resource):
    with pytest.raises(OperationOutcomeError) as info:
        check_structure(resource)
    assert info.value.status == 400
    return [(i["code"], i["expression"][0]) for i in info.value.issues]


def test_valid_resource_passes():
    check_structure(
        {"resourceType": "Patient", "name": [{"given": ["A"]}], "birthDate": "1974-12-25"}
    )


def test_all_issues_are_collected_with_locations():
    got = raised(
        {
            "resourceType": "Observation",
            "code": {"text": "x"},
            "component": [{"code": {"text": "a"}, "valueInteger": "z"}],
            "valueQuantity": {"value": "x"},
        }
    )
    assert ("structure", "Observation.component[0].valueInteger") in got
    assert ("structure", "Observation.valueQuantity.value") in got


def test_missing_mandatory_element():
    assert raised({"resourceType": "Observation", "code": {"text": "x"}}) == [
        ("required", "Observation.status")
    ]


def test_unknown_resource_type_is_not_supported():
    assert raised({"resourceType": "Foo"}) == [("not-supported", "Foo")]


def test_unknown_contained_type_is_an_issue_not_a_key_error():
    assert raised({"resourceType": "Patient", "contained": [{"resourceType": "Foo"}]}) == [
        ("not-supported", "Patient.contained[0]")
    ]


def test_not_an_object():
    assert raised(["x"])[0][0] == "structure"


def test_expression_from_loc():
    assert expression_from_loc("Patient", ("name", 0, "given")) == "Patient.name[0].given"
