"""The default validate_resource hookimpl and the $validate body."""

from __future__ import annotations

from hub import default_validation
from hub.hookspecs import hookimpl
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


class _ProfilePlugin:
    """A plugin that brings its own profile (a Patient that must have a birth date)."""

    PROFILE = {
        "resourceType": "StructureDefinition",
        "url": "http://example.org/fhir/StructureDefinition/dated-patient",
        "name": "DatedPatient",
        "status": "active",
        "kind": "resource",
        "abstract": False,
        "type": "Patient",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
        "derivation": "constraint",
        "differential": {
            "element": [{"id": "Patient.birthDate", "path": "Patient.birthDate", "min": 1}]
        },
    }

    @staticmethod
    @hookimpl
    def register_profiles():
        return [_ProfilePlugin.PROFILE]


def test_hook_register_profiles():
    from hub.validation.definitions import Definitions
    from hub.validation.definitions import register_plugin_definitions
    from hub.validation.validator import Validator

    defs = Definitions()
    validator = Validator(defs)
    url = _ProfilePlugin.PROFILE["url"]
    patient = {"resourceType": "Patient", "meta": {"profile": [url]}}
    unknown = [i for i in validator.validate(patient) if i["code"] == "not-supported"]
    assert [i["severity"] for i in unknown] == ["warning"]  # claimed, not yet known
    pm = get_plugin_manager(load_entry_points=False, extra=[_ProfilePlugin()])
    assert register_plugin_definitions(pm, defs) == 1
    errors = [i for i in validator.validate(patient) if i["severity"] == "error"]
    assert [(i["diagnostics"], i["expression"]) for i in errors] == [
        ("Patient.birthDate: minimum required = 1, but only found 0", ["Patient"])
    ]


def test_site_demands_a_profile():
    import types

    manifest = {"validation": {"profiles": {"Patient": [SD + "cn-resident-patient"]}}}
    site = types.SimpleNamespace(plugin_config=lambda name: manifest.get(name, {}))
    issues = default_validation.validate_resource(resource={"resourceType": "Patient"}, site=site)
    assert ("Patient.name: minimum required = 1, but only found 0", ["Patient"]) in [
        (i["diagnostics"], i["expression"]) for i in issues if i["severity"] == "error"
    ]
    # other types, and sites that demand nothing, are not profiled
    assert (
        default_validation.validate_resource(resource={"resourceType": "Flag"}, site=site) is None
    )
    plain = types.SimpleNamespace(plugin_config=lambda name: {})
    assert (
        default_validation.validate_resource(resource={"resourceType": "Patient"}, site=plain)
        is None
    )


def test_validate_request_with_parameters():
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": {"resourceType": "Patient"}},
            {"name": "mode", "valueCode": "profile"},
            {"name": "profile", "valueUri": SD + "cn-resident-patient"},
        ],
    }
    out = default_validation.validate_request(params)
    assert any(i["severity"] == "error" for i in out["issue"])
    plain = default_validation.validate_request({"resourceType": "Patient", "active": True})
    assert [i["severity"] for i in plain["issue"] if i["severity"] == "error"] == []


def test_a_hubs_plugin_profiles_stay_with_that_hub(app_config, tmp_path):
    # Definitions a plugin registers belong to its hub: a hub built afterwards in the same
    # process, without the plugin, does not validate against them.
    from hub.app import create_app
    from hub.app import get_hub
    from tests.fixtures import authed_client

    url = _ProfilePlugin.PROFILE["url"]
    patient = {"resourceType": "Patient", "meta": {"profile": [url]}}
    with_plugin = create_app({**app_config, "PLUGINS": [_ProfilePlugin()]})
    without = create_app({**app_config, "DATABASE_URL": f"sqlite:///{tmp_path / 'other.db'}"})
    try:
        refused = authed_client(with_plugin).post("/fhir/Patient", json=patient)
        assert refused.status_code in (400, 422)
        assert "Patient.birthDate: minimum required = 1" in refused.get_data(as_text=True)
        stored = authed_client(without).post("/fhir/Patient", json=patient)
        assert stored.status_code == 201, stored.get_data(as_text=True)
    finally:
        get_hub(with_plugin).close()
        get_hub(without).close()
