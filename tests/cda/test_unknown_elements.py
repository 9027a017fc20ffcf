"""Entries whose data element the adapter does not know are kept, never dropped.

A county health-check document may carry lab entries whose WS 363 codes are
not in ``vocab.ELEMENTS``. Each one with a value becomes an Observation with
its own code, its typed value and its section's category, with a warning; the
outcome counts mapped, kept-as-is and refused entries.
"""

from __future__ import annotations

import pytest

from fhirhub_plugins.cda import vocab

from .conftest import GOLDEN
from .conftest import resources

ANNUAL = GOLDEN / "HSDC00.01" / "elderly-annual.xml"
LAB_SECTION = '<code code="30954-2" codeSystem="2.16.840.1.113883.6.1"'
DE = 'codeSystem="2.16.156.10011.2.2.1" codeSystemName="卫生信息数据元目录"'

# Lab values the adapter's dictionary does not name (尿蛋白, 血尿素, 血钾) and one without a value.
UNKNOWN_ENTRIES = f"""
          <entry>
            <observation classCode="OBS" moodCode="EVN">
              <code code="DE04.50.128.00" {DE} displayName="尿蛋白定量检测值"/>
              <value xsi:type="PQ" value="0.15" unit="g/24h"/>
            </observation>
          </entry>
          <entry>
            <observation classCode="OBS" moodCode="EVN">
              <code code="DE04.50.131.00" {DE} displayName="血尿素检测值"/>
              <effectiveTime value="20240312"/>
              <value xsi:type="PQ" value="5.4" unit="mmol/L"/>
            </observation>
          </entry>
          <entry>
            <observation classCode="OBS" moodCode="EVN">
              <code code="DE04.50.057.00" {DE} displayName="尿常规检查结果"/>
              <value xsi:type="ST">尿蛋白(+)</value>
            </observation>
          </entry>
          <entry>
            <observation classCode="OBS" moodCode="EVN">
              <code code="DE04.50.061.00" {DE} displayName="尿潜血"/>
              <value xsi:type="CD" code="2" codeSystem="2.16.156.10011.2.3.2.99" displayName="阳性"/>
            </observation>
          </entry>
          <entry>
            <observation classCode="OBS" moodCode="EVN">
              <code code="DE04.50.090.00" {DE} displayName="血钾浓度"/>
              <value xsi:type="PQ" nullFlavor="NI"/>
            </observation>
          </entry>
          <entry>
            <observation classCode="OBS" moodCode="EVN">
              <code code="NOT-A-DE" {DE} displayName="?"/>
              <value xsi:type="ST">x</value>
            </observation>
          </entry>"""


def _document() -> bytes:
    text = ANNUAL.read_text(encoding="utf-8")
    at = text.index(LAB_SECTION)
    at = text.index("<text/>", at) + len("<text/>")
    return (text[:at] + UNKNOWN_ENTRIES + text[at:]).encode("utf-8")


def _by_code(bundle: dict) -> dict[str, dict]:
    return {
        c["code"]: r
        for r in resources(bundle, "Observation")
        for c in r["code"].get("coding", [])
        if c.get("system") == vocab.DE_SYSTEM
    }


def test_unknown_lab_elements_are_kept_as_observations(inbound):
    bundle, issues = inbound(_document())
    found = _by_code(bundle)
    protein = found["DE04.50.128.00"]
    assert protein["code"] == {
        "coding": [
            {"system": vocab.DE_SYSTEM, "code": "DE04.50.128.00", "display": "尿蛋白定量检测值"}
        ],
        "text": "尿蛋白定量检测值",
    }
    assert protein["valueQuantity"] == {"value": 0.15, "unit": "g/24h"}
    assert protein["status"] == "final"
    assert protein["category"][0]["coding"][0]["code"] == "laboratory"
    assert protein["subject"]["reference"].startswith("Patient/")
    assert found["DE04.50.131.00"]["effectiveDateTime"].startswith("2024-03-12")
    assert found["DE04.50.131.00"]["valueQuantity"]["value"] == 5.4
    assert found["DE04.50.057.00"]["valueString"] == "尿蛋白(+)"
    assert found["DE04.50.061.00"]["valueCodeableConcept"]["coding"] == [
        {"system": "urn:oid:2.16.156.10011.2.3.2.99", "code": "2", "display": "阳性"}
    ]
    assert "DE04.50.090.00" not in found  # no value: nothing to keep
    warned = [
        i["expression"][0]
        for i in issues
        if i["severity"] == "warning" and "kept as is" in i["diagnostics"]
    ]
    # The four above and the document's own 心电图检查结果 (DE04.30.009.00).
    assert len(warned) == 5 and "DE04.30.009.00" in found
    assert all(w.endswith("/observation") and "/section/entry[" in w for w in warned)


def test_outcome_counts_mapped_kept_and_refused_entries(inbound):
    _, before = inbound(ANNUAL.read_bytes())
    _, issues = inbound(_document())
    counts = [i["diagnostics"] for i in issues if i["diagnostics"].startswith("entries:")]
    assert len(counts) == 1
    baseline = next(i["diagnostics"] for i in before if i["diagnostics"].startswith("entries:"))
    assert baseline == "entries: 27 mapped, 1 kept as is, 0 refused"
    # The entry without a value is read (and reported) but kept nowhere; NOT-A-DE is refused.
    assert counts[0] == "entries: 28 mapped, 5 kept as is, 1 refused"


@pytest.fixture
def app_config(app_config):
    app_config["PLUGINS"] = ["fhirhub_plugins.cda"]
    return app_config


def test_kept_entries_are_stored_and_counted_in_the_ingest_outcome(client):
    resp = client.post(
        "/fhir/$ingest?site=county-platform", data=_document(), content_type="application/xml"
    )
    assert resp.status_code == 200, resp.data
    texts = [i["diagnostics"] for i in resp.get_json()["issue"]]
    assert "entries: 28 mapped, 5 kept as is, 1 refused" in texts
    found = client.get(
        "/fhir/Observation?code=urn:oid:2.16.156.10011.2.2.1|DE04.50.128.00"
    ).get_json()
    assert found["total"] == 1
    assert found["entry"][0]["resource"]["valueQuantity"]["value"] == 0.15


def test_a_site_code_map_maps_a_kept_element_properly(inbound, code_maps):
    from .conftest import Site

    loinc = code_maps["cda-data-element-loinc"].with_override(
        {
            "map": {
                "DE04.50.128.00": {
                    "code": "2889-4",
                    "display": "Protein [Mass/time] in 24 hour Urine",
                }
            }
        },
        "mappings/cda-data-element-loinc.yaml",
    )
    site = Site(code_map_overrides={"cda-data-element-loinc": loinc})
    bundle, issues = inbound(_document(), site)
    protein = _by_code(bundle)["DE04.50.128.00"]
    assert protein["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "2889-4",
        "display": "Protein [Mass/time] in 24 hour Urine",
    }
    assert not [i for i in issues if "DE04.50.128.00" in i["diagnostics"]]
    counts = next(i["diagnostics"] for i in issues if i["diagnostics"].startswith("entries:"))
    assert counts == "entries: 29 mapped, 4 kept as is, 1 refused"
