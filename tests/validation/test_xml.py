"""FHIR XML to JSON, typed by the definitions."""

from __future__ import annotations

from decimal import Decimal

from lxml import etree

from hub.validation.validator import default_validator
from hub.validation.xml import parse_xml

XML = b"""<Patient xmlns="http://hl7.org/fhir">
  <id value="p1"/>
  <text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml">x</div></text>
  <contained><Organization><id value="o1"/><name value="Clinic"/></Organization></contained>
  <active value="true"/>
  <name><given value="A"/><given value="B"/></name>
  <birthDate value="1974-12-25">
    <extension url="http://hl7.org/fhir/StructureDefinition/patient-birthTime">
      <valueDateTime value="1974-12-25T14:35:45-05:00"/>
    </extension>
  </birthDate>
  <multipleBirthInteger value="2"/>
  <managingOrganization><reference value="#o1"/></managingOrganization>
</Patient>"""


def test_types_and_shapes_follow_the_definitions():
    got = parse_xml(XML, default_validator())
    assert got == {
        "resourceType": "Patient",
        "id": "p1",
        "text": {
            "status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>',
        },
        "contained": [{"resourceType": "Organization", "id": "o1", "name": "Clinic"}],
        "active": True,
        "name": [{"given": ["A", "B"]}],
        "birthDate": "1974-12-25",
        "_birthDate": {
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                    "valueDateTime": "1974-12-25T14:35:45-05:00",
                }
            ]
        },
        "multipleBirthInteger": 2,
        "managingOrganization": {"reference": "#o1"},
    }
    assert default_validator().validate(got)[0]["severity"] != "error"


def test_decimals_keep_their_digits():
    xml = b"""<Observation xmlns="http://hl7.org/fhir"><status value="final"/>
      <code><text value="w"/></code><valueQuantity><value value="185.50"/></valueQuantity>
    </Observation>"""
    got = parse_xml(xml, default_validator())
    assert got["valueQuantity"]["value"] == Decimal("185.50")
    assert str(got["valueQuantity"]["value"]) == "185.50"


def test_entities_are_not_expanded():
    xml = b"""<!DOCTYPE Patient [<!ENTITY x SYSTEM "file:///etc/passwd">]>
      <Patient xmlns="http://hl7.org/fhir"><id value="&x;"/></Patient>"""
    try:
        got = parse_xml(xml, default_validator())
    except etree.XMLSyntaxError:
        return
    assert "root:" not in str(got)


def test_unknown_elements_are_kept_for_validation():
    got = parse_xml(
        b'<Patient xmlns="http://hl7.org/fhir"><foo value="1"/></Patient>', default_validator()
    )
    issues = default_validator().validate(got)
    assert ("structure", ["Patient.foo"]) in [(i["code"], i["expression"]) for i in issues]
