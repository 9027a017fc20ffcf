"""The default validate_resource hookimpl and the $validate body."""

from __future__ import annotations

from hub import default_validation
from hub.plugins import get_plugin_manager

SD = "http://fhirhub.org/fhir/StructureDefinition/"


def test_hook_validate_resource():
    pm = get_plugin_manager(load_entry_points=False, extra=["hub.default_validation"])
    claimed = {"resourceType": "Patient", "meta": {"profile": [SD + "cn-resident-patient"]}}
    results = pm.hook.validate_resource(resource=claimed, site=None)
    issues = [i for r in results for i in r if i["severity"] == "error"]
    assert ("Patient.name: minimum required = 1, but only found 0", ["Patient"]) in [
        (i["diagnostics"], i["expression"]) for i in issues
    ]
    # no profile claimed: nothing to add
    assert pm.hook.validate_resource(resource={"resourceType": "Patient"}, site=None) == []


def test_validate_operation():
    ok = default_validation.validate_operation(
        {
            "resourceType": "Patient",
            "text": {
                "status": "generated",
                "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>',
            },
        }
    )
    assert [i["severity"] for i in ok["issue"]] == ["information"]
    bad = default_validation.validate_operation({"resourceType": "Patient", "active": "yes"})
    assert [i["expression"] for i in bad["issue"] if i["severity"] == "error"] == [
        ["Patient.active"]
    ]
    prof = default_validation.validate_operation(
        {"resourceType": "Patient"}, "profile", SD + "cn-resident-patient"
    )
    assert any(i["severity"] == "error" for i in prof["issue"])
    assert default_validation.validate_operation(None)["issue"][0]["code"] == "required"
    assert (
        default_validation.validate_operation({"resourceType": "Patient"}, "bogus")["issue"][0][
            "code"
        ]
        == "invalid"
    )
