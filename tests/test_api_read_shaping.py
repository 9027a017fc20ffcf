"""_summary and _elements on read."""

from __future__ import annotations


def test_elements_and_summary_on_read(client):
    client.put(
        "/fhir/Patient/s1",
        json={
            "resourceType": "Patient",
            "id": "s1",
            "text": {
                "status": "generated",
                "div": '<div xmlns="http://www.w3.org/1999/xhtml">张三</div>',
            },
            "name": [{"family": "张"}],
            "gender": "male",
            "birthDate": "1950-01-01",
            "contact": [{"name": {"family": "李"}}],
        },
    )
    only = client.get("/fhir/Patient/s1?_elements=gender").get_json()
    assert only["gender"] == "male" and "birthDate" not in only and "name" not in only
    assert any(t.get("code") == "SUBSETTED" for t in only["meta"].get("tag", []))
    summary = client.get("/fhir/Patient/s1?_summary=true").get_json()
    assert (
        summary["name"][0]["family"] == "张" and "contact" not in summary and "text" not in summary
    )
    text = client.get("/fhir/Patient/s1?_summary=text").get_json()
    assert "text" in text and "birthDate" not in text
    data = client.get("/fhir/Patient/s1?_summary=data").get_json()
    assert "text" not in data and data["contact"]
