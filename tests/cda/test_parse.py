"""Hostile and malformed documents are refused with an outcome before anything is mapped."""

from __future__ import annotations

import pytest

from fhirhub_plugins.cda import parse
from hub.outcomes import OperationOutcomeError

from .conftest import GOLDEN

MINIMAL = b'<ClinicalDocument xmlns="urn:hl7-org:v3"><id/></ClinicalDocument>'


def refused(body: bytes, **limits) -> dict:
    with pytest.raises(OperationOutcomeError) as err:
        parse.parse(body, **limits)
    assert 400 <= err.value.status < 500
    return err.value.issues[0]


def test_parse_minimal_document():
    root = parse.parse(MINIMAL)
    assert root.tag == "{urn:hl7-org:v3}ClinicalDocument"


def test_xxe_external_entity_refused():
    body = (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&x;</title></ClinicalDocument>'
    )
    found = refused(body)
    assert found["code"] == "security"


def test_billion_laughs_refused():
    lol = b"".join(
        b'<!ENTITY l%d "&l%d;&l%d;&l%d;&l%d;">' % (i, i - 1, i - 1, i - 1, i - 1)
        for i in range(1, 10)
    )
    body = (
        b'<!DOCTYPE d [<!ENTITY l0 "lol">'
        + lol
        + b']><ClinicalDocument xmlns="urn:hl7-org:v3">&l9;</ClinicalDocument>'
    )
    assert refused(body)["code"] == "security"


def test_external_dtd_refused_even_in_lower_case():
    body = b'<!doctype ClinicalDocument SYSTEM "http://example.org/cda.dtd"><ClinicalDocument xmlns="urn:hl7-org:v3"/>'
    assert refused(body)["code"] == "security"


def test_gb18030_bytes_labelled_utf8_refused():
    body = '<?xml version="1.0" encoding="UTF-8"?><ClinicalDocument xmlns="urn:hl7-org:v3"><title>高血压</title></ClinicalDocument>'
    found = refused(body.encode("gb18030"))
    assert found["code"] == "invalid"
    assert found["expression"] == ["xml-prolog"]


def test_gb18030_declared_is_decoded():
    path = GOLDEN / "HSDC00.03" / "discharge-gb18030.xml"
    root = parse.parse(path.read_bytes())
    assert root.find("v3:title", parse.NS).text == "住院摘要"


def test_gbk_label_is_read_as_gb18030():
    body = '<?xml version="1.0" encoding="GBK"?><ClinicalDocument xmlns="urn:hl7-org:v3"><title>随访</title></ClinicalDocument>'
    root = parse.parse(body.encode("gbk"))
    assert root.find("v3:title", parse.NS).text == "随访"


def test_unsupported_encoding_refused():
    body = b'<?xml version="1.0" encoding="ISO-8859-1"?><ClinicalDocument xmlns="urn:hl7-org:v3"/>'
    assert refused(body)["code"] == "not-supported"


def test_utf16_refused():
    body = '<ClinicalDocument xmlns="urn:hl7-org:v3"/>'.encode("utf-16")
    assert refused(body)["code"] == "not-supported"


def test_size_limit():
    assert refused(MINIMAL, max_bytes=20)["code"] == "too-costly"


def test_depth_limit():
    body = (
        b'<ClinicalDocument xmlns="urn:hl7-org:v3">'
        + b"<a>" * 50
        + b"</a>" * 50
        + b"</ClinicalDocument>"
    )
    assert refused(body, max_depth=40)["code"] == "too-costly"


def test_wrong_root_refused():
    assert refused(b'<Bundle xmlns="http://hl7.org/fhir"/>')["code"] == "structure"


def test_not_well_formed_refused():
    found = refused(b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>x</ClinicalDocument>')
    assert found["code"] == "structure"


def test_empty_refused():
    assert refused(b"  ")["code"] == "required"


def test_looks_like_cda():
    assert parse.looks_like_cda(MINIMAL)
    assert not parse.looks_like_cda(b"MSH|^~\\&|HIS")
