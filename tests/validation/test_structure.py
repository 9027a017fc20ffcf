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
        ("required", "Observation")
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


def _resources(x):
    if isinstance(x, dict):
        if "resourceType" in x:
            yield x
        else:
            for value in x.values():
                yield from _resources(value)
    elif isinstance(x, list):
        for value in x:
            yield from _resources(value)


def test_agrees_with_the_models_on_the_projects_data():
    """Every resource in the test and conformance data: accepted or rejected by both checks."""
    import json
    from pathlib import Path

    from hub.validation.structure import model_issues
    from hub.validation.structure import structure_issues

    root = Path(__file__).resolve().parent.parent.parent
    files = [
        p
        for folder in (root / "tests", root / "conformance")
        for p in folder.rglob("*.json")
        if "validator-r4" not in p.parts
    ]
    seen = 0
    for path in files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue
        for res in _resources(data):
            seen += 1
            assert bool(model_issues(res)) == bool(structure_issues(res)), (path, res.get("id"))
    assert seen >= 50


def test_stricter_than_the_models_on_json_types():
    from hub.validation.structure import model_issues

    res = {"resourceType": "Patient", "active": "true", "multipleBirthInteger": "2"}
    assert model_issues(res) == []  # the models coerce both
    assert raised(res) == [
        ("structure", "Patient.active"),
        ("structure", "Patient.multipleBirthInteger"),
    ]
