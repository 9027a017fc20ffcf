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


def test_every_issue_with_its_wording_and_location_in_order():
    """Nested arrays, primitive extensions, choices, contained resources and extensions: the
    exact issues, in the order they are reported."""
    from hub.validation.validator import default_validator

    res = {
        "resourceType": "Patient",
        "id": "a b",
        "active": "yes",
        "name": [
            {
                "given": ["A", None, 3],
                "_given": [None, {"extension": [{"url": "u", "valueBoolean": 1}]}],
            },
            {"family": ["F"], "period": {"start": "2020-02-30", "end": 5}},
        ],
        "_birthDate": {"id": 7},
        "gender": ["male"],
        "deceasedBoolean": True,
        "deceasedDateTime": "2020",
        "_multipleBirthInteger": {"id": "m"},
        "multipleBirthBoolean": True,
        "contact": [{"telecom": [{"system": "phone", "value": "1", "rank": 0}], "bogus": 1}],
        "contained": [
            {"resourceType": "Observation", "_status": {"id": "s"}, "code": {"coding": []}},
            {"resourceType": "Observation", "code": {"text": "x"}, "valueInteger": 1.5},
        ],
        "extension": [
            {"url": "http://e", "valueQuantity": {"value": "1"}},
            {"url": "http://f", "extension": [{"url": "a", "valueString": 4}]},
        ],
        "communication": [],
        "link": [{"other": {"identifier": {"period": {"start": "x"}}}, "type": "seealso"}, None],
        "photo": [{"data": "###", "size": -1}],
        "maritalStatus": {},
        "managingOrganization": {"id": "x"},
        "text": {"status": "generated", "div": "<p>x</p>"},
    }
    issues = default_validator().structure(res)
    assert all(i["severity"] == "error" and len(i["expression"]) == 1 for i in issues)
    got = [(i["code"], i["expression"][0], i["diagnostics"]) for i in issues]
    assert got == [
        ("structure", "Patient.birthDate.id", "id value must be a JSON string, not a number"),
        (
            "structure",
            "Patient.gender",
            "Patient.gender is not a repeating element: expected a single value, found an array",
        ),
        (
            "structure",
            "Patient.deceasedDateTime",
            "only one of deceased[x] may be present (found deceasedBoolean and deceasedDateTime)",
        ),
        ("structure", "Patient.communication", "arrays must not be empty"),
        ("structure", "Patient.link[1]", "null is not a value"),
        (
            "structure",
            "Patient.multipleBirth[x]",
            "Patient.multipleBirth[x]: max allowed = 1, but found 2",
        ),
        ("value", "Patient.id", "'a b' is not a valid id"),
        (
            "structure",
            "Patient.active",
            "boolean value must be a JSON boolean (true/false), not a string",
        ),
        (
            "structure",
            "Patient.name[0].given[1].extension[0].valueBoolean",
            "boolean value must be a JSON boolean (true/false), not a number",
        ),
        (
            "structure",
            "Patient.name[0].given[2]",
            "string value must be a JSON string, not a number",
        ),
        (
            "structure",
            "Patient.name[1].family",
            "HumanName.family is not a repeating element: expected a single value, found an array",
        ),
        ("value", "Patient.name[1].period.start", "'2020-02-30' is not a valid dateTime"),
        (
            "structure",
            "Patient.name[1].period.end",
            "dateTime value must be a JSON string, not a number",
        ),
        ("structure", "Patient.contact[0].bogus", "Unrecognized property 'bogus'"),
        ("value", "Patient.contact[0].telecom[0].rank", "0 is out of range for positiveInt"),
        (
            "code-invalid",
            "Patient.contained[0].status",
            "no code provided, and a code is required from the value set http://hl7.org/fhir/ValueSet/observation-status|4.0.1",
        ),
        ("structure", "Patient.contained[0].code.coding", "arrays must not be empty"),
        (
            "required",
            "Patient.contained[1]",
            "Observation.status: minimum required = 1, but only found 0",
        ),
        (
            "structure",
            "Patient.contained[1].valueInteger",
            "integer value must be a JSON number, not a number",
        ),
        (
            "structure",
            "Patient.extension[0].valueQuantity.value",
            "decimal value must be a JSON number, not a string",
        ),
        (
            "structure",
            "Patient.extension[1].extension[0].valueString",
            "string value must be a JSON string, not a number",
        ),
        ("value", "Patient.link[0].other.identifier.period.start", "'x' is not a valid dateTime"),
        ("value", "Patient.photo[0].data", "'###' is not a valid base64Binary"),
        ("value", "Patient.photo[0].size", "-1 is out of range for unsignedInt"),
        (
            "invariant",
            "Patient.maritalStatus",
            "ele-1: All FHIR elements must have a @value or children",
        ),
        (
            "invariant",
            "Patient.managingOrganization",
            "ele-1: All FHIR elements must have a @value or children",
        ),
        ("value", "Patient.text.div", "narrative XHTML is not safe or not a div"),
    ]


def _full_walk(resource) -> list[dict]:
    """The structure check's full walk alone (what the clean path stands in for)."""
    from hub.validation.validator import _root_expression
    from hub.validation.validator import _Run
    from hub.validation.validator import default_validator

    run = _Run(resource, structural=True)
    default_validator()._validate_resource(resource, _root_expression(resource), run)
    return run.issues


def _demo_and_sample_resources() -> list[dict]:
    import json
    from pathlib import Path

    import hub

    out = []
    for path in sorted((Path(hub.__file__).parent / "data" / "demo" / "synthea").glob("*.json")):
        out += [e["resource"] for e in json.loads(path.read_bytes())["entry"]]
    return out


def test_the_clean_path_passes_only_what_the_full_walk_finds_clean():
    """The clean path answers "nothing to report" for the common resource; it must never say
    so of one the full walk faults (and, on these well-formed resources, it says so)."""
    import copy

    from hub.validation.validator import default_validator

    validator = default_validator()
    resources = _demo_and_sample_resources()
    assert len(resources) > 200
    for res in resources:
        assert validator._clean_resource(res) == (not _full_walk(res)), res["resourceType"]
        # the same resource spoiled in the ways the walk checks: never passed by the clean path
        for spoil in (
            lambda r: r.update(unknownElement=1),
            lambda r: r.update(id=["x"]),
            lambda r: r.update(meta={"lastUpdated": "2020-02-30T00:00:00Z"}),
            lambda r: r.update(text={"status": "generated", "div": "<p>not a div</p>"}),
            lambda r: r.update(contained=[{"resourceType": "Patient", "active": "yes"}]),
            lambda r: r.update(extension=[{"url": "http://x", "valueString": ""}]),
        ):
            bad = copy.deepcopy(res)
            spoil(bad)
            assert _full_walk(bad)
            assert not validator._clean_resource(bad)
