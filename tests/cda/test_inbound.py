"""Inbound documents -> transaction Bundles: golden files plus the feed rules of DOMAIN §10.2."""

from __future__ import annotations

import base64
import copy
import json

import pytest

from fhirhub_plugins.cda import ids
from fhirhub_plugins.cda import ordering
from fhirhub_plugins.cda import vocab
from hub.identity.ids import patient_id_for_resident_id
from hub.outcomes import OperationOutcomeError
from hub.validation.structure import check_structure
from tests.golden import assert_golden

from .conftest import DOCUMENTS
from .conftest import GOLDEN
from .conftest import Site
from .conftest import resources

FOLLOWUP = GOLDEN / "HSDB04.01" / "face-to-face.xml"


def _golden_view(bundle: dict) -> dict:
    """The bundle with the attachment's base64 shortened (its hash and size stay)."""
    view = copy.deepcopy(bundle)
    for r in resources(view, "DocumentReference"):
        attachment = r["content"][0]["attachment"]
        attachment["data"] = f"<{attachment['size']} bytes>"
    return view


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_document_matches_golden(path, inbound):
    bundle, issues = inbound(path.read_bytes())
    assert_golden(_golden_view(bundle), path.with_suffix(".expected.json"))
    assert_golden(issues, path.with_suffix(".issues.json"))


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_resource_is_valid_r4(path, inbound):
    bundle, _ = inbound(path.read_bytes())
    for entry in bundle["entry"]:
        check_structure(entry["resource"])
        assert entry["request"]["method"] in ("PUT", "PATCH")


def test_original_xml_is_kept_as_attachment(inbound):
    body = (GOLDEN / "HSDC00.03" / "discharge-gb18030.xml").read_bytes()
    bundle, _ = inbound(body)
    (doc,) = resources(bundle, "DocumentReference")
    attachment = doc["content"][0]["attachment"]
    assert base64.b64decode(attachment["data"]) == body  # the legal record, byte for byte
    assert attachment["contentType"] == "application/xml; charset=GB18030"
    assert doc["masterIdentifier"] == {
        "system": "urn:oid:2.16.156.10011.1.1",
        "value": "HSDC0003-437028300001-ZY2024000317",
    }


def test_provenance_links_document_to_extracted_resources(inbound):
    bundle, _ = inbound(FOLLOWUP.read_bytes())
    (doc,) = resources(bundle, "DocumentReference")
    (prov,) = resources(bundle, "Provenance")
    assert prov["entity"] == [
        {"role": "source", "what": {"reference": f"DocumentReference/{doc['id']}"}}
    ]
    targets = {t["reference"] for t in prov["target"]}
    for r in resources(bundle, "Observation", "MedicationStatement", "Encounter", "Patient"):
        assert f"{r['resourceType']}/{r['id']}" in targets


def test_patient_id_is_the_hub_resident_id_id(inbound):
    bundle, _ = inbound(FOLLOWUP.read_bytes())
    (patient,) = resources(bundle, "Patient")
    assert patient["id"] == patient_id_for_resident_id("370283195803121235")
    assert patient["identifier"][0] == {
        "system": "urn:oid:2.16.156.10011.1.3",
        "value": "370283195803121235",
    }


def test_bad_resident_id_checksum_is_an_error_at_record_target(inbound):
    body = FOLLOWUP.read_bytes().replace(b"370283195803121235", b"370283195803121236")
    with pytest.raises(OperationOutcomeError) as err:
        inbound(body)
    assert err.value.status == 422
    (problem,) = err.value.issues
    assert problem["expression"] == [
        "ClinicalDocument/recordTarget/patientRole/patient/id[@root='2.16.156.10011.1.3']"
    ]
    assert "370283195803121236" not in problem["diagnostics"]  # never echo the full number


def test_id_number_disagreeing_with_sex_is_a_warning(inbound):
    body = FOLLOWUP.read_bytes().replace(
        b'administrativeGenderCode code="1"', b'administrativeGenderCode code="2"'
    )
    _, issues = inbound(body)
    assert any(
        "gender female disagrees" in i["diagnostics"] for i in issues if i["severity"] == "warning"
    )


def test_unknown_document_type_refused(inbound):
    body = (
        FOLLOWUP.read_bytes()
        .replace(b'code="HSDB04.01"', b'code="HSDB03.01"')
        .replace(b"2.16.156.10011.2.1.1.12", b"2.16.156.10011.2.1.1.9")
    )
    with pytest.raises(OperationOutcomeError) as err:
        inbound(body)
    assert err.value.issues[0]["code"] == "not-supported"
    assert err.value.issues[0]["expression"] == ["ClinicalDocument/code"]


def test_unknown_document_type_kept_when_the_site_says_so(inbound):
    body = (
        FOLLOWUP.read_bytes()
        .replace(b'code="HSDB04.01"', b'code="HSDB03.01"')
        .replace(b"2.16.156.10011.2.1.1.12", b"2.16.156.10011.2.1.1.9")
    )
    site = Site(config={"unknown_documents": "keep"})
    bundle, issues = inbound(body, site)
    kinds = {r["resourceType"] for r in resources(bundle)}
    assert kinds == {"Organization", "Practitioner", "Patient", "DocumentReference", "Provenance"}
    assert any("unknown document type" in i["diagnostics"] for i in issues)


def test_template_id_identifies_a_document_without_type_code(inbound):
    body = FOLLOWUP.read_bytes().replace(b'code="HSDB04.01"', b'code="X"')
    bundle, _ = inbound(body)
    assert any(r["resourceType"] == "Encounter" for r in resources(bundle))


def test_same_document_twice_gives_the_same_bundle(inbound):
    first, _ = inbound(FOLLOWUP.read_bytes())
    second, _ = inbound(FOLLOWUP.read_bytes())
    assert first == second


def test_replacement_supersedes_and_updates_the_same_resources(inbound):
    original, _ = inbound(FOLLOWUP.read_bytes())
    body = (
        FOLLOWUP.read_bytes()
        .replace(
            b'<id root="2.16.156.10011.1.1" extension="HSDB0401-370283-20240315-000871"/>',
            b'<id root="2.16.156.10011.1.1" extension="HSDB0401-370283-20240315-000871-V2"/>',
        )
        .replace(b'<versionNumber value="1"/>', b'<versionNumber value="2"/>')
        .replace(
            b'<effectiveTime value="20240318161502"/>', b'<effectiveTime value="20240320090000"/>'
        )
        .replace(b'value="152" unit="mmHg"', b'value="148" unit="mmHg"')
        .replace(
            b"  <component>\n    <structuredBody>",
            b'  <relatedDocument typeCode="RPLC"><parentDocument><id root="2.16.156.10011.1.1" extension="HSDB0401-370283-20240315-000871"/></parentDocument></relatedDocument>\n  <component>\n    <structuredBody>',
            1,
        )
    )
    replacement, _ = inbound(body)
    old_doc = resources(original, "DocumentReference")[0]
    (new_doc,) = resources(replacement, "DocumentReference")
    assert new_doc["id"] != old_doc["id"]
    assert new_doc["relatesTo"] == [
        {"code": "replaces", "target": {"reference": f"DocumentReference/{old_doc['id']}"}}
    ]
    (patch,) = [e for e in replacement["entry"] if e["request"]["method"] == "PATCH"]
    assert patch["request"]["url"] == (
        "DocumentReference?identifier=urn:oid:2.16.156.10011.1.1|HSDB0401-370283-20240315-000871"
    )
    operations = json.loads(base64.b64decode(patch["resource"]["data"]))
    assert operations == [{"op": "replace", "path": "/status", "value": "superseded"}]
    # Same setId: the extracted resources keep their ids, so the new version updates them.
    old_ids = {
        r["id"] for r in resources(original, "Observation", "Encounter", "MedicationStatement")
    }
    new_ids = {
        r["id"] for r in resources(replacement, "Observation", "Encounter", "MedicationStatement")
    }
    assert old_ids == new_ids
    # ... and an older version arriving late must not overwrite them.
    old_bp = next(
        r for r in resources(original, "Observation") if r["code"]["coding"][0]["code"] == "85354-9"
    )
    new_bp = next(r for r in resources(replacement, "Observation") if r["id"] == old_bp["id"])
    assert ordering.is_stale(old_bp, new_bp)
    assert not ordering.is_stale(new_bp, old_bp)
    assert not ordering.is_stale(new_bp, new_bp)


def test_stale_by_document_time_across_documents():
    older = {
        "meta": {
            "extension": [
                {"url": vocab.EXT_SOURCE_TIME, "valueDateTime": "2024-03-18T16:15:02+08:00"},
                {"url": vocab.EXT_SOURCE_VERSION, "valueString": "A#0"},
            ]
        }
    }
    newer = {
        "meta": {
            "extension": [
                {"url": vocab.EXT_SOURCE_TIME, "valueDateTime": "2024-03-18T09:00:00Z"},
                {"url": vocab.EXT_SOURCE_VERSION, "valueString": "B#0"},
            ]
        }
    }
    assert ordering.is_stale(older, newer)  # 16:15 +08:00 is 08:15 UTC, before 09:00 UTC
    assert not ordering.is_stale(older, {"meta": {}})  # other sources never block


def test_upload_time_is_not_clinical_time(inbound):
    bundle, _ = inbound(FOLLOWUP.read_bytes())
    (doc,) = resources(bundle, "DocumentReference")
    (encounter,) = resources(bundle, "Encounter")
    assert doc["date"] == "2024-03-18T16:15:02+08:00"  # header effectiveTime: upload
    assert encounter["period"] == {"start": "2024-03-15"}  # the follow-up date
    assert all(o["effectiveDateTime"] == "2024-03-15" for o in resources(bundle, "Observation"))
    assert doc["context"]["period"] == {"start": "2024-03-15"}
    for r in resources(bundle, "Observation"):
        assert {"url": vocab.EXT_SOURCE_TIME, "valueDateTime": "2024-03-18T16:15:02+08:00"} in r[
            "meta"
        ]["extension"]


def test_restricted_document_labels_every_resource(inbound):
    bundle, _ = inbound((GOLDEN / "HSDC00.03" / "discharge-gb18030.xml").read_bytes())
    label = {"system": vocab.CONFIDENTIALITY, "code": "R", "display": "restricted"}
    for r in resources(bundle):
        assert label in r["meta"]["security"], r["resourceType"]
    (doc,) = resources(bundle, "DocumentReference")
    assert doc["securityLabel"] == [{"coding": [label]}]


def test_face_to_face_and_telephone_follow_ups(inbound):
    face, _ = inbound(FOLLOWUP.read_bytes())
    phone, _ = inbound((GOLDEN / "HSDB04.02" / "telephone.xml").read_bytes())
    assert resources(face, "Encounter")[0]["class"]["code"] == "AMB"
    assert resources(phone, "Encounter")[0]["class"]["code"] == "VR"


def test_malformed_element_code_without_site_alias_is_reported(inbound):
    bundle, issues = inbound(FOLLOWUP.read_bytes(), Site(config={}))
    assert not any(
        c["code"] == "DE05.10.075.00"
        for r in resources(bundle, "Observation")
        for c in r["code"]["coding"]
    )
    malformed = [i for i in issues if i["code"] == "code-invalid"]
    assert malformed and "DE075.00" in malformed[0]["diagnostics"]
    assert malformed[0]["expression"] == [
        "ClinicalDocument/component/structuredBody/component[3]/section/entry[4]/observation/code"
    ]


def test_unmapped_elements_are_reported_not_dropped(inbound):
    bundle, issues = inbound(FOLLOWUP.read_bytes())
    # 转诊标志 (DE06.00.174.00) is not in the catalogue: kept as is, with a warning.
    kept = [i for i in issues if i["diagnostics"].endswith("catalogue: kept as is")]
    assert [(i["severity"], i["expression"]) for i in kept] == [
        (
            "warning",
            ["ClinicalDocument/component/structuredBody/component[6]/section/entry[2]/observation"],
        )
    ]
    assert not [i for i in issues if "was not mapped" in i.get("diagnostics", "")]
    referral = [
        r
        for r in resources(bundle, "Observation")
        if r["code"]["coding"][0]["code"] == "DE06.00.174.00"
    ]
    assert len(referral) == 1 and referral[0]["valueBoolean"] is False


def test_diagnosis_code_shape_is_checked(inbound):
    body = (
        (GOLDEN / "HSDC00.02" / "outpatient.xml")
        .read_bytes()
        .replace(b'code="E78.500"', 'code="高脂"'.encode())
    )
    bundle, issues = inbound(body)
    assert any(i["code"] == "code-invalid" and "ICD-10" in i["diagnostics"] for i in issues)
    assert len(resources(bundle, "Condition")) == 3  # kept as sent, flagged


def test_value_domain_oid_mismatch_is_read_as_the_element_domain(inbound):
    body = FOLLOWUP.read_bytes().replace(
        b'codeSystem="2.16.156.10011.2.3.1.183"', b'codeSystem="2.16.156.10011.2.3.1.85"'
    )
    bundle, issues = inbound(body)
    (encounter,) = resources(bundle, "Encounter")
    assert encounter["type"][1]["coding"][0]["system"] == "urn:oid:2.16.156.10011.2.3.1.183"
    assert any("is not the value domain" in i["diagnostics"] for i in issues)


def test_placeholders_are_null_flavours(inbound):
    bundle, issues = inbound((GOLDEN / "HSDA00.01" / "registration.xml").read_bytes())
    assert not [
        r for r in resources(bundle, "Procedure") if "输血" in json.dumps(r, ensure_ascii=False)
    ]
    assert any("输血原因 has no value" in i["diagnostics"] for i in issues)


def test_hospital_numbers_are_scoped_by_their_hospital(inbound):
    bundle, _ = inbound((GOLDEN / "HSDC00.02" / "outpatient.xml").read_bytes())
    (patient,) = resources(bundle, "Patient")
    outpatient_no = next(
        i for i in patient["identifier"] if i["system"] == "urn:oid:2.16.156.10011.1.11"
    )
    org = next(r for r in resources(bundle, "Organization") if r["name"] == "平度市人民医院")
    assert outpatient_no["assigner"] == {"reference": f"Organization/{org['id']}"}


def test_extracted_ids_are_site_scoped(inbound):
    here, _ = inbound(FOLLOWUP.read_bytes())
    there, _ = inbound(FOLLOWUP.read_bytes(), Site(name="other-platform"))
    assert resources(here, "Patient")[0]["id"] == resources(there, "Patient")[0]["id"]
    assert resources(here, "Encounter")[0]["id"] != resources(there, "Encounter")[0]["id"]
    assert resources(here, "Encounter")[0]["id"] == ids.extracted_id(
        "county-platform", "Encounter", "HSDB0401-370283-20240315-000871", "encounter"
    )


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        (
            b'<id root="2.16.156.10011.1.1" extension="HSDB0401-370283-20240315-000871"/>',
            b"",
            "ClinicalDocument/id",
        ),
        (
            b'<effectiveTime value="20240318161502"/>',
            b'<effectiveTime value="2024-03-18"/>',
            "ClinicalDocument/effectiveTime",
        ),
    ],
)
def test_required_header_elements(old, new, where, inbound):
    with pytest.raises(OperationOutcomeError) as err:
        inbound(FOLLOWUP.read_bytes().replace(old, new, 1))
    assert err.value.issues[0]["expression"] == [where]


def test_document_without_any_patient_identifier_refused(inbound):
    body = (
        FOLLOWUP.read_bytes()
        .replace(b'<id root="2.16.156.10011.1.3" extension="370283195803121235"/>', b"")
        .replace(b'<id root="2.16.156.10011.1.2" extension="37028310201300123"/>', b"")
    )
    with pytest.raises(OperationOutcomeError) as err:
        inbound(body)
    assert err.value.issues[0]["code"] == "required"


def test_damaged_documents_never_crash(inbound):
    """Every one-line deletion or truncation of a sample maps or is refused with an outcome."""
    body = FOLLOWUP.read_bytes()
    lines = body.split(b"\n")
    variants = [b"\n".join(lines[:i] + lines[i + 1 :]) for i in range(len(lines))]
    variants += [body[:cut] for cut in range(100, len(body), 250)]
    outcomes = 0
    for variant in variants:
        try:
            inbound(variant)
        except OperationOutcomeError as err:
            assert 400 <= err.status < 500
            outcomes += 1
    assert outcomes > 0


def test_icd10_sub_arcs_read_as_icd10(inbound):
    outpatient = (GOLDEN / "HSDC00.02" / "outpatient.xml").read_bytes()
    body = outpatient.replace(
        b'codeSystem="2.16.156.10011.2.3.3.11"', b'codeSystem="2.16.156.10011.2.3.3.11.5"'
    )
    bundle, _ = inbound(body)
    systems = {c["code"]["coding"][0]["system"] for c in resources(bundle, "Condition")}
    assert systems == {"urn:oid:2.16.156.10011.2.3.3.11"}


def test_follow_up_without_mode_is_not_face_to_face(inbound):
    body = FOLLOWUP.read_bytes().replace(b'code="DE06.00.108.00"', b'code="DE06.00.999.00"')
    bundle, issues = inbound(body)
    (encounter,) = resources(bundle, "Encounter")
    assert encounter["class"] == {"system": vocab.NULL_FLAVOR, "code": "UNK"}
    assert any("not counted as face to face" in i["diagnostics"] for i in issues)


def test_registration_names_the_registering_institution(inbound):
    """HSDA00.01: the author's organisation (建档机构) keeps the record: managingOrganization."""
    body = (GOLDEN / "HSDA00.01" / "registration.xml").read_bytes()
    # another custodian than the author's organisation: the author's one registers
    body = body.replace(
        b'extension="437028300015"/>\n        <name>\xe5\xb9\xb3\xe5\xba\xa6\xe5\xb8\x82\xe5\x8d\x97\xe6\x9d\x91\xe9\x95\x87\xe5\x8d\xab\xe7\x94\x9f\xe9\x99\xa2</name>\n      </representedCustodianOrganization>',
        b'extension="437028300099"/>\n        <name>county platform</name>\n      </representedCustodianOrganization>',
    )
    bundle, _ = inbound(body)
    (patient,) = resources(bundle, "Patient")
    org = next(r for r in resources(bundle, "Organization") if r["name"] == "平度市南村镇卫生院")
    assert patient["managingOrganization"] == {"reference": f"Organization/{org['id']}"}
    assert any(r["name"] == "county platform" for r in resources(bundle, "Organization"))


def test_other_documents_do_not_name_the_registering_institution(inbound):
    bundle, _ = inbound(FOLLOWUP.read_bytes())
    (patient,) = resources(bundle, "Patient")
    assert "managingOrganization" not in patient
