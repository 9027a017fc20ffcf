"""The in-process terminology service against the R4 core content and the Chinese tables."""

from __future__ import annotations

import pytest

from hub.mapping import load_code_maps
from hub.outcomes import OperationOutcomeError
from hub.paths import MAPPINGS_DIR
from hub.sites import load_sites
from hub.terminology.service import TerminologyService
from hub.validation.definitions import default_definitions
from hub.validation.terminology import Terminology

GENDER = "http://hl7.org/fhir/administrative-gender"
GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
SEX = "urn:oid:2.16.156.10011.2.3.3.4"
ETHNICITY = "urn:oid:2.16.156.10011.2.3.3.3"
RELATIONSHIP = "urn:oid:2.16.156.10011.2.3.3.8"


@pytest.fixture(scope="module")
def term() -> TerminologyService:
    code_maps = load_code_maps([MAPPINGS_DIR])
    return TerminologyService(None, code_maps, load_sites(None, code_maps))


def _params(parameters: dict) -> dict:
    out: dict = {}
    for p in parameters["parameter"]:
        value = next((v for k, v in p.items() if k.startswith("value")), p.get("part"))
        out.setdefault(p["name"], []).append(value)
    return out


def test_lookup_r4_code_gives_display_and_system_name(term):
    got = _params(term.lookup(GENDER, "female"))
    assert got["display"] == ["Female"]
    assert got["name"] == ["AdministrativeGender"]


def test_lookup_national_table_gives_chinese_display_and_english_designation(term):
    got = _params(term.lookup(ETHNICITY, "04"))
    assert got["display"] == ["藏族"]
    english = [
        {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in parts}
        for parts in got["designation"]
    ]
    assert {"language": "en", "value": "Zang"} in english


def test_lookup_names_parent_and_children_of_hierarchical_codes(term):
    got = term.lookup(RELATIONSHIP, "7")
    children = [
        p["part"][1]["valueCode"]
        for p in got["parameter"]
        if p["name"] == "property" and p["part"][0]["valueCode"] == "child"
    ]
    assert children == ["70", "71", "73", "75", "77"]
    parent = term.lookup(RELATIONSHIP, "71", ["parent"])
    props = [p for p in parent["parameter"] if p["name"] == "property"]
    assert [p["part"][1]["valueCode"] for p in props] == ["7"]


def test_lookup_unknown_code_or_system_is_404(term):
    with pytest.raises(OperationOutcomeError) as err:
        term.lookup(GENDER, "mail")
    assert err.value.status == 404
    with pytest.raises(OperationOutcomeError) as err:
        term.lookup("http://example.org/nothing", "x")
    assert err.value.status == 404


def test_validate_code_in_system_and_value_set(term):
    assert term.validate_in_system(SEX, "1")["result"] is True
    assert term.validate_in_system(SEX, "3")["result"] is False
    assert term.validate_in_value_set(GENDER_VS, GENDER, "male")["result"] is True
    assert term.validate_in_value_set(GENDER_VS, GENDER, "M")["result"] is False
    assert term.validate_in_value_set(GENDER_VS, None, "other")["result"] is True


def test_validate_code_checks_the_display_against_display_and_designations(term):
    assert term.validate_in_system(ETHNICITY, "01", "汉族")["result"] is True
    assert term.validate_in_system(ETHNICITY, "01", "Han")["result"] is True
    wrong = term.validate_in_system(ETHNICITY, "01", "回族")
    assert wrong["result"] is False and "汉族" in wrong["message"]


def test_subsumes_on_r4_and_national_hierarchies(term):
    assert term.subsumes(ACT_CODE, "_ActEncounterCode", "AMB") == "subsumes"
    assert term.subsumes(ACT_CODE, "AMB", "_ActEncounterCode") == "subsumed-by"
    assert term.subsumes(ACT_CODE, "AMB", "AMB") == "equivalent"
    assert term.subsumes(RELATIONSHIP, "2", "21") == "subsumes"
    assert term.subsumes(RELATIONSHIP, "2", "31") == "not-subsumed"


def test_expand_filter_matches_chinese_and_english(term):
    vs = f"{ETHNICITY}?fhir_vs"
    zh = term.expand(vs, text="维吾尔")["expansion"]
    assert [c["code"] for c in zh["contains"]] == ["05"]
    en = term.expand(vs, text="uyg")["expansion"]
    assert [c["code"] for c in en["contains"]] == ["05"]


def test_expand_pages_with_count_and_offset_and_totals_all(term):
    vs = f"{ETHNICITY}?fhir_vs"
    first = term.expand(vs, count=10)["expansion"]
    second = term.expand(vs, count=10, offset=10)["expansion"]
    assert first["total"] == second["total"] == 58
    assert [c["code"] for c in first["contains"]] == [f"{i:02d}" for i in range(1, 11)]
    assert [c["code"] for c in second["contains"]][0] == "11"


def test_expand_include_designations(term):
    got = term.expand(f"{SEX}?fhir_vs", include_designations=True)["expansion"]["contains"]
    male = next(c for c in got if c["code"] == "1")
    assert {"language": "en", "value": "male"} in male["designation"]
    plain = term.expand(f"{SEX}?fhir_vs")["expansion"]["contains"]
    assert all("designation" not in c for c in plain)


def test_expand_r4_value_set_with_is_a_filter(term):
    # v3-ActEncounterCode: include ActCode is-a _ActEncounterCode (minus the abstract root).
    got = term.expand("http://terminology.hl7.org/ValueSet/v3-ActEncounterCode")["expansion"]
    codes = {c["code"] for c in got["contains"]}
    assert {"AMB", "EMER", "IMP", "HH", "VR"} <= codes
    assert "_ActEncounterCode" in codes or len(codes) == got["total"]


def test_expand_inline_value_set_with_is_a_equals_and_nested_value_sets(term):
    vs = {
        "resourceType": "ValueSet",
        "compose": {
            "include": [
                {
                    "system": RELATIONSHIP,
                    "filter": [{"property": "concept", "op": "is-a", "value": "7"}],
                },
                {"system": RELATIONSHIP, "filter": [{"property": "code", "op": "=", "value": "4"}]},
                {"valueSet": [GENDER_VS]},
            ],
            "exclude": [{"system": RELATIONSHIP, "concept": [{"code": "70"}]}],
        },
    }
    got = term.expand(value_set=vs)["expansion"]["contains"]
    assert [(c["system"], c["code"]) for c in got] == [
        (RELATIONSHIP, "7"),
        (RELATIONSHIP, "71"),
        (RELATIONSHIP, "73"),
        (RELATIONSHIP, "75"),
        (RELATIONSHIP, "77"),
        (RELATIONSHIP, "4"),
        (GENDER, "male"),
        (GENDER, "female"),
        (GENDER, "other"),
        (GENDER, "unknown"),
    ]


def test_expand_of_what_cannot_be_expanded_is_4xx(term):
    loinc_all = {
        "resourceType": "ValueSet",
        "compose": {"include": [{"system": "http://loinc.org"}]},
    }
    with pytest.raises(OperationOutcomeError) as err:
        term.expand(value_set=loinc_all)
    assert 400 <= err.value.status < 500
    bad_filter = {
        "resourceType": "ValueSet",
        "compose": {
            "include": [
                {"system": SEX, "filter": [{"property": "x", "op": "child-of", "value": "1"}]}
            ]
        },
    }
    with pytest.raises(OperationOutcomeError) as err:
        term.expand(value_set=bad_filter)
    assert 400 <= err.value.status < 500


def test_translate_code_maps_forwards_and_in_reverse(term):
    forward = term.translate("1", SEX, "urn:fhirhub:conceptmap:cda-sex")
    assert [m["concept"] for m in forward] == [
        {"system": GENDER, "code": "male", "display": "Male"}
    ]
    back = term.translate("male", GENDER, "urn:fhirhub:conceptmap:cda-sex", reverse=True)
    assert ("1", "男性 (male)") in [(m["concept"]["code"], m["concept"]["display"]) for m in back]
    assert {m["concept"]["system"] for m in back} == {SEX}


def test_translate_without_a_map_uses_every_map_from_the_system(term):
    got = term.translate("20", "urn:oid:2.16.156.10011.2.3.3.5")
    assert {m["concept"]["code"] for m in got} >= {"M"}


def test_translate_reads_a_sites_override(term):
    url = "urn:fhirhub:conceptmap:hl7v2-local-lab:township-hospital-b"
    got = term.translate("HGB", None, url)
    assert [m["concept"]["code"] for m in got] == ["718-7"]
    assert term.translate("HGB", None, "urn:fhirhub:conceptmap:hl7v2-local-lab") == []


def test_adapters_code_maps_come_from_the_service(term):
    site = term.sites["township-hospital-b"]
    assert term.code_map("hl7v2-local-lab", site).lookup("GLU").code == "2345-7"
    assert term.code_map("hl7v2-local-lab").lookup("GLU") is None


def test_validator_expands_with_the_services_algorithm(term):
    # The same compose read by the validator's Terminology and by the service.
    vs = {
        "resourceType": "ValueSet",
        "url": "http://example.org/ValueSet/siblings",
        "compose": {
            "include": [
                {
                    "system": RELATIONSHIP,
                    "filter": [{"property": "concept", "op": "is-a", "value": "7"}],
                }
            ]
        },
    }
    cs = term.code_system(RELATIONSHIP).resource
    validator_view = Terminology({vs["url"]: vs}, {RELATIONSHIP: {**cs, "content": "complete"}})
    served = {c["code"] for c in term.expand(value_set=vs)["expansion"]["contains"]}
    assert set(validator_view.expand(vs["url"])[RELATIONSHIP]) == served


def test_validator_binding_still_checks_core_value_sets():
    assert default_definitions().expansion(GENDER_VS) == {
        GENDER: ["female", "male", "other", "unknown"]
    }


def test_validator_reads_the_services_code_systems_for_added_value_sets():
    # A profile's value set over a core hierarchy the validation extract holds no list of:
    # the validator expands it from the terminology service's content.
    from hub.validation.definitions import Definitions

    defs = Definitions()
    defs.add(
        {
            "resourceType": "ValueSet",
            "url": "http://example.org/ValueSet/encounter-codes",
            "compose": {
                "include": [
                    {
                        "system": ACT_CODE,
                        "filter": [
                            {"property": "concept", "op": "is-a", "value": "_ActEncounterCode"}
                        ],
                    }
                ]
            },
        }
    )
    codes = set(defs.expansion("http://example.org/ValueSet/encounter-codes")[ACT_CODE])
    assert {"AMB", "EMER", "IMP"} <= codes
    assert "_ActAccountCode" not in codes


def test_expand_display_language_shows_english_designations(term):
    got = term.expand(f"{SEX}?fhir_vs", display_language="en")["expansion"]["contains"]
    assert {c["code"]: c["display"] for c in got}["2"] == "female"
    zh = term.expand(f"{RELATIONSHIP}?fhir_vs", count=1)["expansion"]["contains"]
    assert zh[0]["display"] == "配偶"
