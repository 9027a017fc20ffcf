"""JSON and XML on the wire, format negotiation and hardened XML parsing."""

from __future__ import annotations

import pytest

XML = "application/fhir+xml"

PATIENT_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<Patient xmlns="http://hl7.org/fhir">
  <name><family value="\xe5\xbc\xa0"/><given value="\xe4\xb8\x89"/></name>
  <gender value="male"/>
  <birthDate value="1950-03-12"/>
</Patient>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE Patient [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Patient xmlns="http://hl7.org/fhir"><name><family value="&xxe;"/></name></Patient>"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<Patient xmlns="http://hl7.org/fhir"><name><family value="&lol3;"/></name></Patient>"""


def test_xml_create_and_json_read_agree(client):
    resp = client.post("/fhir/Patient", data=PATIENT_XML, content_type=XML)
    assert resp.status_code == 201, resp.data
    pid = resp.headers["Location"].split("/Patient/")[1].split("/")[0]
    body = client.get(f"/fhir/Patient/{pid}").get_json()
    assert body["name"][0]["family"] == "张" and body["gender"] == "male"


def test_xml_response_by_accept_and_format(client):
    pid = client.post(
        "/fhir/Patient", json={"resourceType": "Patient", "gender": "female"}
    ).get_json()["id"]
    by_accept = client.get(f"/fhir/Patient/{pid}", headers={"Accept": XML})
    assert by_accept.content_type.startswith(XML)
    assert b'<gender value="female"/>' in by_accept.data
    by_format = client.get(f"/fhir/Patient/{pid}?_format=xml")
    assert by_format.content_type.startswith(XML) and by_format.data == by_accept.data


def test_pretty_json(client):
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient"}).get_json()["id"]
    assert b"\n  " in client.get(f"/fhir/Patient/{pid}?_pretty=true").data
    assert b"\n" not in client.get(f"/fhir/Patient/{pid}").data


def test_unknown_format_is_406(client):
    resp = client.get("/fhir/metadata?_format=yaml")
    assert resp.status_code == 406
    assert resp.get_json()["issue"][0]["code"] == "not-supported"


@pytest.mark.parametrize("payload", [XXE, BILLION_LAUGHS], ids=["xxe", "entity-bomb"])
def test_hostile_xml_is_refused(client, payload):
    resp = client.post("/fhir/Patient", data=payload, content_type=XML)
    assert resp.status_code == 400
    assert resp.get_json()["issue"][0]["code"] == "security"
    assert client.get("/fhir/_history").get_json()["entry"] == []


def test_malformed_and_foreign_xml(client):
    resp = client.post(
        "/fhir/Patient", data=b"<Patient xmlns='http://hl7.org/fhir'><name>", content_type=XML
    )
    assert resp.status_code == 400 and resp.get_json()["issue"][0]["code"] == "structure"
    resp = client.post(
        "/fhir/Patient", data=b"<Patient><gender value='male'/></Patient>", content_type=XML
    )
    assert resp.status_code == 400
    deep = (
        b"<Patient xmlns='http://hl7.org/fhir'>"
        + b"<extension>" * 100
        + b"</extension>" * 100
        + b"</Patient>"
    )
    resp = client.post("/fhir/Patient", data=deep, content_type=XML)
    assert resp.status_code == 400 and resp.get_json()["issue"][0]["code"] == "too-costly"


def test_errors_follow_the_requested_format(client):
    resp = client.get("/fhir/Patient/missing", headers={"Accept": XML})
    assert resp.status_code == 404
    assert resp.content_type.startswith(XML) and b"<OperationOutcome" in resp.data


def test_xml_unknown_element_is_reported_with_its_location(client):
    body = b'<Patient xmlns="http://hl7.org/fhir"><gender value="male"/><colour value="red"/></Patient>'
    resp = client.post("/fhir/Patient", data=body, content_type=XML)
    assert resp.status_code == 400
    assert any("colour" in e for i in resp.get_json()["issue"] for e in i.get("expression", []))


def test_xml_transaction_bundle(client):
    body = b"""<Bundle xmlns="http://hl7.org/fhir"><type value="transaction"/>
      <entry><fullUrl value="urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"/>
        <resource><Patient><name><family value="\xe6\x9d\x8e"/></name></Patient></resource>
        <request><method value="POST"/><url value="Patient"/></request></entry>
      <entry><resource><Observation><status value="final"/><code><text value="weight"/></code>
        <subject><reference value="urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"/></subject>
        <valueQuantity><value value="61.50"/><unit value="kg"/></valueQuantity></Observation></resource>
        <request><method value="POST"/><url value="Observation"/></request></entry>
    </Bundle>"""
    resp = client.post(
        "/fhir", data=body, content_type=XML, headers={"Accept": "application/fhir+json"}
    )
    assert resp.status_code == 200, resp.data
    locations = [e["response"]["location"] for e in resp.get_json()["entry"]]
    obs = client.get("/fhir/" + locations[1].split("/fhir/")[1].split("/_history")[0]).get_json()
    assert obs["valueQuantity"]["value"] == 61.5
    assert obs["subject"]["reference"].startswith("Patient/")
