"""Fixtures for the lifetime-file tests: the HL7 v2 and registry adapters loaded, helpers."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def app_config(app_config):
    app_config["PLUGINS"] = ["fhirhub_plugins.hl7v2", "fhirhub_plugins.va_registry"]
    return app_config


class Fhir:
    """Small REST helpers over the Flask test client (each asserts success)."""

    def __init__(self, client):
        self.client = client

    def put(self, resource: dict[str, Any]) -> dict[str, Any]:
        resp = self.client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource)
        assert resp.status_code in (200, 201), resp.get_json()
        return resp.get_json()

    def get(self, path: str, status: int = 200) -> dict[str, Any]:
        resp = self.client.get(f"/fhir/{path}")
        assert resp.status_code == status, resp.get_json()
        return resp.get_json()

    def post(self, path: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
        resp = self.client.post(f"/fhir/{path}", json=body)
        assert resp.status_code == status, resp.get_json()
        return resp.get_json()

    def ids(self, bundle: dict[str, Any], mode: str | None = None) -> list[str]:
        return [
            f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in bundle.get("entry") or ()
            if "resource" in e
            and e["resource"]["resourceType"] != "OperationOutcome"
            and (mode is None or e["search"]["mode"] == mode)
        ]


@pytest.fixture
def fhir(client) -> Fhir:
    return Fhir(client)


def patient(pid: str, **extra) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, **extra}


def condition(cid: str, pid: str, code: str, onset: str = "2020-01-01") -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "subject": {"reference": f"Patient/{pid}"},
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": code}]},
        "onsetDateTime": onset,
    }


def observation(oid: str, pid: str, when: str, text: str = "体重 weight", **extra):
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"text": text},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        **extra,
    }


def parameters(**values) -> dict[str, Any]:
    params = []
    for name, value in values.items():
        name = name.replace("_", "-")
        if isinstance(value, dict) and "resourceType" in value:
            params.append({"name": name, "resource": value})
        elif isinstance(value, str) and value.startswith("Patient/"):
            params.append({"name": name, "valueReference": {"reference": value}})
        elif isinstance(value, bool):
            params.append({"name": name, "valueBoolean": value})
        elif isinstance(value, int):
            params.append({"name": name, "valueInteger": value})
        else:
            params.append({"name": name, "valueString": value})
    return {"resourceType": "Parameters", "parameter": params}
