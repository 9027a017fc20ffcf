"""Outbound documents: header, sections and codes, the structural check, and the round trip."""

from __future__ import annotations

import pytest
from lxml import etree

from fhirhub_plugins.cda import check
from fhirhub_plugins.cda import from_fhir
from fhirhub_plugins.cda import parse
from hub.mapping import MappingContext
from hub.outcomes import OperationOutcomeError

from .conftest import DOCUMENTS
from .conftest import GOLDEN
from .conftest import custodian_site
from .conftest import resources

SKIP = ("DocumentReference", "Provenance", "Parameters")


def _clinical(bundle: dict) -> dict:
    out = {}
    for r in resources(bundle):
        if r["resourceType"] in SKIP:
            continue
        r = dict(r)
        r.pop("meta", None)
        out[f"{r['resourceType']}/{r['id']}"] = r
    return out


def _regenerate(path, inbound, **kw):
    body = path.read_bytes()
    site = custodian_site(body)
    bundle, _ = inbound(body, site)
    doc = resources(bundle, "DocumentReference")[0]
    xml = from_fhir.build_document(
        doc["type"]["coding"][0]["code"],
        [r for r in resources(bundle) if r["resourceType"] not in SKIP],
        site,
        document_id=doc["masterIdentifier"]["value"],
        effective_time=doc["date"],
        **kw,
    )
    return bundle, xml, site


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_round_trip_keeps_what_the_adapter_maps(path, inbound):
    first, xml, site = _regenerate(path, inbound)
    second, issues = inbound(xml, site)
    assert _clinical(second) == _clinical(first)
    assert not [i for i in issues if "was not mapped" in (i.get("diagnostics") or "")]


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_generated_documents_pass_the_checker(path, inbound):
    _, xml, _ = _regenerate(path, inbound)
    assert check.check_document(parse.parse(xml)) == []


def test_header_oids_and_codes(inbound):
    _, xml, _ = _regenerate(GOLDEN / "HSDB04.01" / "face-to-face.xml", inbound)
    root = parse.parse(xml)
    ns = parse.NS
    assert root.find("v3:templateId", ns).get("root") == "2.16.156.10011.2.1.1.12"
    assert root.find("v3:code", ns).attrib["codeSystem"] == "2.16.156.10011.2.4"
    assert root.find("v3:id", ns).get("root") == "2.16.156.10011.1.1"
    rid = root.find("v3:recordTarget/v3:patientRole/v3:patient/v3:id", ns)
    assert (rid.get("root"), rid.get("extension")) == ("2.16.156.10011.1.3", "370283195803121235")
    assert root.find("v3:recordTarget/v3:patientRole/v3:id", ns).get("root") == "2.16.156.10011.1.2"
    codes = [c.get("code") for c in root.iterfind(".//v3:section/v3:code", ns)]
    assert codes == [None, "11450-4", "8716-3", "29762-2", "10160-0", "51848-0"]
    des = {c.get("code") for c in root.iterfind(".//v3:observation/v3:code", ns)}
    assert {"DE06.00.108.00", "DE04.10.174.00", "DE04.10.176.00", "DE05.10.075.00"} <= des


def test_restricted_resources_make_a_restricted_document(inbound):
    _, xml, _ = _regenerate(GOLDEN / "HSDC00.03" / "discharge-gb18030.xml", inbound)
    root = parse.parse(xml)
    assert root.find("v3:confidentialityCode", parse.NS).get("code") == "R"


def test_gb18030_output(inbound):
    _, xml, _ = _regenerate(GOLDEN / "HSDC00.02" / "outpatient.xml", inbound, encoding="GB18030")
    assert xml.startswith(b"<?xml version='1.0' encoding='GB18030'?>")
    assert "刘芳".encode("gb18030") in xml
    assert parse.parse(xml).find("v3:title", parse.NS).text == "门诊摘要"


def test_missing_patient_refused(site):
    with pytest.raises(OperationOutcomeError) as err:
        from_fhir.build_document("HSDB04.01", [], site)
    assert err.value.status == 422


def test_unknown_type_refused(site):
    with pytest.raises(OperationOutcomeError) as err:
        from_fhir.build_document("C0001", [{"resourceType": "Patient", "id": "p"}], site)
    assert "not supported" in err.value.issues[0]["diagnostics"]


def test_follow_up_without_vitals_fails_the_template_check(inbound):
    body = (GOLDEN / "HSDB04.01" / "face-to-face.xml").read_bytes()
    site = custodian_site(body)
    bundle, _ = inbound(body, site)
    kept = [
        r
        for r in resources(bundle)
        if r["resourceType"] not in SKIP
        and not (
            r["resourceType"] == "Observation"
            and r["category"][0]["coding"][0]["code"] == "vital-signs"
        )
    ]
    with pytest.raises(OperationOutcomeError) as err:
        from_fhir.build_document(
            "HSDB04.01", kept, site, document_id="x", effective_time="2024-03-18T16:15:02+08:00"
        )
    texts = [i["diagnostics"] for i in err.value.issues]
    assert any("8716-3 VITAL SIGNS" in t for t in texts)
    assert any("DE04.10.174.00" in t for t in texts)


def test_resources_without_a_place_are_reported(inbound):
    body = (GOLDEN / "HSDC00.02" / "outpatient.xml").read_bytes()
    site = custodian_site(body)
    bundle, _ = inbound(body, site)
    extra = {"resourceType": "Immunization", "id": "imm-1"}
    issues: list = []
    from_fhir.build_document(
        "HSDC00.02",
        [r for r in resources(bundle) if r["resourceType"] not in SKIP] + [extra],
        site,
        document_id="x",
        effective_time="2024-03-01",
        issues=issues,
    )
    assert [i["expression"] for i in issues] == [["Immunization/imm-1"]]


def test_map_outbound_builds_from_a_tagged_collection(inbound, code_maps):
    body = (GOLDEN / "HSDB04.02" / "telephone.xml").read_bytes()
    site = custodian_site(body)
    bundle, _ = inbound(body, site)
    collection = {
        "resourceType": "Bundle",
        "id": "HSDB0402-out-1",
        "type": "collection",
        "timestamp": "2024-06-05T08:30:00+08:00",
        "meta": {"tag": [{"system": "urn:oid:2.16.156.10011.2.4", "code": "HSDB04.02"}]},
        "entry": [{"resource": r} for r in resources(bundle) if r["resourceType"] not in SKIP],
    }
    messages = from_fhir.outbound_messages(
        collection, "create", site, MappingContext(site, code_maps)
    )
    assert len(messages) == 1 and messages[0].key == "HSDB0402-out-1"
    assert (
        parse.parse(messages[0].body).find("v3:id", parse.NS).get("extension") == "HSDB0402-out-1"
    )
    assert from_fhir.outbound_messages(resources(bundle, "Patient")[0], "update", site, None) == []


# -- the structural checker on its own ------------------------------------------


def _document(path="HSDB04.02/telephone.xml"):
    return parse.parse((GOLDEN / path).read_bytes())


def test_checker_passes_the_samples():
    for path in (
        "HSDB04.02/telephone.xml",
        "HSDC00.01/elderly-annual.xml",
        "HSDC00.02/outpatient.xml",
    ):
        assert check.check_document(_document(path)) == []


def test_checker_finds_header_order_and_missing_elements():
    root = _document()
    title = root.find("v3:title", parse.NS)
    root.remove(title)
    root.append(title)  # after component: out of order
    root.remove(root.find("v3:custodian", parse.NS))
    problems = {(i["code"], i["expression"][0]) for i in check.check_document(root)}
    assert ("structure", "ClinicalDocument/title") in problems
    assert ("required", "ClinicalDocument/custodian") in problems


def test_checker_finds_bad_values():
    root = _document()
    ns = parse.NS
    root.find("v3:recordTarget/v3:patientRole/v3:patient/v3:administrativeGenderCode", ns).set(
        "code", "F"
    )
    root.find("v3:recordTarget/v3:patientRole/v3:patient/v3:id", ns).set(
        "extension", "370283196207252445"
    )
    pq = next(v for v in root.iterfind(".//v3:value", ns) if v.get("unit") == "kg")
    pq.set("value", "六十三")
    codes = {i["code"] for i in check.check_document(root)}
    assert {"code-invalid", "value"} <= codes
    texts = " ".join(i["diagnostics"] for i in check.check_document(root))
    assert "check character" in texts and "六十三" in texts


def test_checker_requires_encompassing_encounter_for_summaries():
    root = _document("HSDC00.02/outpatient.xml")
    root.remove(root.find("v3:componentOf", parse.NS))
    assert any(
        i["expression"] == ["ClinicalDocument/componentOf"] for i in check.check_document(root)
    )


def test_checker_rejects_foreign_root():
    root = etree.fromstring(b'<ClinicalDocument xmlns="urn:example"/>')
    assert check.check_document(root)[0]["code"] == "structure"


def test_output_is_deterministic(inbound):
    _, a, _ = _regenerate(GOLDEN / "HSDC00.01" / "elderly-annual.xml", inbound)
    _, b, _ = _regenerate(GOLDEN / "HSDC00.01" / "elderly-annual.xml", inbound)
    assert a == b


def test_readme_documents_every_data_element():
    from pathlib import Path

    from fhirhub_plugins.cda import vocab

    readme = (Path(__file__).resolve().parents[2] / "plugins" / "cda" / "README.md").read_text(
        encoding="utf-8"
    )
    missing = [de for de in vocab.ELEMENTS if f"`{de}`" not in readme]
    assert missing == []


def test_address_without_township_round_trips(inbound):
    body = (
        (GOLDEN / "HSDB04.02" / "telephone.xml")
        .read_bytes()
        .replace("<township>南村镇</township>".encode(), b"")
    )
    site = custodian_site(body)
    first, _ = inbound(body, site)
    doc = resources(first, "DocumentReference")[0]
    xml = from_fhir.build_document(
        "HSDB04.02",
        [r for r in resources(first) if r["resourceType"] not in SKIP],
        site,
        document_id="x",
        effective_time=doc["date"],
    )
    second, _ = inbound(xml, site)
    assert resources(second, "Patient")[0]["address"] == resources(first, "Patient")[0]["address"]
