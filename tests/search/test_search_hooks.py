"""Search through the app: plugin search parameters, CapabilityStatement, REST search."""

from __future__ import annotations

import pytest

from hub import hookimpl
from hub.app import create_app
from tests.fixtures import authed_client

NICKNAME = {
    "resourceType": "SearchParameter",
    "url": "http://example.org/SearchParameter/patient-nickname",
    "name": "nickname",
    "code": "nickname",
    "base": ["Patient"],
    "type": "string",
    "status": "active",
    "description": "A nickname of the patient",
    "expression": "Patient.name.where(use='nickname').given",
}


class NicknamePlugin:
    @hookimpl
    def register_search_parameters(self):
        return [NICKNAME]


@pytest.fixture
def client(tmp_path):
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path}/hub.db",
            "TESTING": True,
            "LOAD_ENTRY_POINTS": False,
            "PLUGINS": [NicknamePlugin()],
        }
    )
    return authed_client(app)


def test_hook_register_search_parameters(client):
    created = client.post(
        "/fhir/Patient",
        json={
            "resourceType": "Patient",
            "name": [{"family": "欧阳", "given": ["娜娜"]}, {"use": "nickname", "given": ["娜宝"]}],
        },
        headers={"Content-Type": "application/fhir+json"},
    )
    assert created.status_code == 201
    found = client.get("/fhir/Patient?nickname=娜").get_json()
    assert found["total"] == 1
    assert found["entry"][0]["resource"]["id"] == created.get_json()["id"]
    assert client.get("/fhir/Patient?nickname=欧阳").get_json()["total"] == 0

    caps = client.get("/fhir/metadata").get_json()
    patient = next(r for r in caps["rest"][0]["resource"] if r["type"] == "Patient")
    nickname = next(p for p in patient["searchParam"] if p["name"] == "nickname")
    assert nickname["definition"] == NICKNAME["url"]


def test_rest_search_errors_and_warnings(client):
    bad = client.get("/fhir/Patient?birthdate=someday")
    assert bad.status_code == 400
    assert bad.get_json()["issue"][0]["expression"] == ["http.birthdate"]
    lenient = client.get("/fhir/Patient?shoe-size=42").get_json()
    assert lenient["entry"][-1]["search"]["mode"] == "outcome"
    strict = client.get("/fhir/Patient?shoe-size=42", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
