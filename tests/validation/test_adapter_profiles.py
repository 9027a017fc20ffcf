"""The profiles are the contract between the adapters and the audits.

Every resource the adapters map from the conformance kits' raw inputs (their ``expected.json``
goldens, which ``pytest conformance`` holds equal to what the adapters produce) and from the CDA
goldens is validated against the profile it claims or should claim: a follow-up Encounter
against ``key-population-followup``, a health check against ``health-check``, a contract against
``family-doctor-contract``. A drift in an adapter breaks this test, not an audit report.
"""

from __future__ import annotations

import json

import pytest

from hub import codesystems as cs
from hub.paths import PROJECT_DIR
from hub.paths import SITES_DIR
from hub.validation.definitions import Definitions
from hub.validation.validator import Validator

SD = "http://fhirhub.org/fhir/StructureDefinition/"
DOC_TYPE = "urn:oid:2.16.156.10011.2.4"
FOLLOWUP_DOCUMENTS = {"HSDB04.01", "HSDB04.02", "HSDB04.04"}
HEALTH_CHECK_DOCUMENTS = {"HSDC00.01"}
GOLDENS = sorted(SITES_DIR.glob("*/cases/*/expected.json")) + sorted(
    (PROJECT_DIR / "tests" / "golden" / "cda").glob("*/*.expected.json")
)


@pytest.fixture(scope="module")
def validator():
    return Validator(Definitions.default())


def _codings(concepts) -> set[tuple[str, str]]:
    return {(c.get("system"), c.get("code")) for cc in concepts or () for c in cc.get("coding", ())}


def profiles_for(res: dict) -> set[str]:
    """The hub profiles ``res`` claims (meta.profile) or, by what it is, should claim."""
    out = {p for p in (res.get("meta") or {}).get("profile", ()) if p.startswith(SD)}
    tags = {
        t.get("code") for t in (res.get("meta") or {}).get("tag", ()) if t["system"] == DOC_TYPE
    }
    kind = res["resourceType"]
    types = _codings(res.get("type")) if kind in ("Encounter", "EpisodeOfCare") else set()
    if kind == "Encounter":
        if any(system == cs.CARE_PROGRAMME for system, _ in types) or tags & FOLLOWUP_DOCUMENTS:
            out.add(SD + "key-population-followup")
        if (cs.ENCOUNTER_TYPE, cs.HEALTH_CHECK) in types or tags & HEALTH_CHECK_DOCUMENTS:
            out.add(SD + "health-check")
        if any((cs.ENCOUNTER_TYPE, kind) in types for kind in cs.ROUND_KINDS):
            out.add(SD + "veteran-round")
    if kind == "EpisodeOfCare" and (cs.CARE_PROGRAMME, cs.FAMILY_DOCTOR_CONTRACT) in types:
        out.add(SD + "family-doctor-contract")
    return out


def test_adapter_output_meets_the_profiles_it_should(validator):
    checked: dict[str, int] = {}
    problems = []
    for path in GOLDENS:
        for entry in json.loads(path.read_text(encoding="utf-8")).get("entry", ()):
            res = entry.get("resource") or {}
            for profile in sorted(profiles_for(res)):
                checked[profile] = checked.get(profile, 0) + 1
                for found in validator.validate(res, [profile]):
                    if found["severity"] in ("error", "fatal"):
                        where = path.relative_to(PROJECT_DIR)
                        problems.append(f"{where} {res.get('id')} {profile}: {found}")
    assert not problems, "\n".join(problems)
    # Each contract is exercised by the kits: CDA and HL7 follow-ups, a health check, contracts.
    assert checked.get(SD + "key-population-followup", 0) >= 6
    assert checked.get(SD + "health-check", 0) >= 2
    assert checked.get(SD + "family-doctor-contract", 0) >= 3
    assert checked.get(SD + "veteran-round", 0) >= 1  # the partner hospital's remote round


def test_a_follow_up_without_its_programme_fails_the_profile(validator):
    # What the county adapter wrote before: the visit mode only, the programme in meta.tag.
    path = SITES_DIR / "county-platform" / "cases" / "hypertension-follow-up" / "expected.json"
    bundle = json.loads(path.read_text(encoding="utf-8"))
    (enc,) = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Encounter"
    ]
    enc["type"] = enc["type"][1:]
    assert profiles_for(enc) == {SD + "key-population-followup"}
    found = validator.validate(enc, [SD + "key-population-followup"])
    assert any("kpf-1" in i.get("diagnostics", "") for i in found if i["severity"] == "error")


def test_a_health_check_without_its_type_fails_the_profile(validator):
    path = SITES_DIR / "county-platform" / "cases" / "adult-health-examination" / "expected.json"
    bundle = json.loads(path.read_text(encoding="utf-8"))
    (enc,) = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Encounter"
    ]
    enc["type"] = [{"text": "健康体检"}]
    assert profiles_for(enc) == {SD + "health-check"}
    found = validator.validate(enc, [SD + "health-check"])
    assert any("hc-1" in i.get("diagnostics", "") for i in found if i["severity"] == "error")
