"""Crafted people with known gaps: FHIR resources built the way evidence.yaml expects."""

from __future__ import annotations

import itertools
from typing import Any

from hub import codesystems as cs
from hub.identity import HEALTH_RECORD_SYSTEM
from hub.identity import RESIDENT_ID_SYSTEM

ICD10 = "http://hl7.org/fhir/sid/icd-10"
# Programme of a follow-up: hypertension, diabetes or severe-mental-disorder-register.
FOLLOWUP = cs.CARE_PROGRAMME
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_ids = itertools.count(1)


def patient(pid: str, birth: str, record_no: str = "37020300100100001", **extra) -> dict[str, Any]:
    res = {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [
            {"system": RESIDENT_ID_SYSTEM, "value": "370203195003121012"},
            {"system": HEALTH_RECORD_SYSTEM, "value": record_no},
        ],
        "name": [{"text": "测试" + pid}],
        "gender": "male",
        "birthDate": birth,
        "telecom": [{"system": "phone", "value": "13800000000"}],
        "address": [{"text": "示范县示范镇"}],
        "managingOrganization": {"reference": "Organization/clinic-1"},
    }
    res.update(extra)
    return res


def condition(pid: str, code: str, onset: str | None = None) -> dict[str, Any]:
    res = {
        "resourceType": "Condition",
        "id": f"c{next(_ids)}",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {"coding": [{"system": ICD10, "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
    }
    if onset:
        res["onsetDateTime"] = onset
    return res


def follow_up(pid: str, programme: str, day: str, cls: str = "AMB", eid: str | None = None):
    return {
        "resourceType": "Encounter",
        "id": eid or f"e{next(_ids)}",
        "status": "finished",
        "class": {"system": ACT, "code": cls},
        "type": [{"coding": [{"system": FOLLOWUP, "code": programme}]}],
        "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": day},
    }


def health_check(pid: str, day: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": f"e{next(_ids)}",
        "status": "finished",
        "class": {"system": ACT, "code": "AMB"},
        "type": [{"coding": [{"system": cs.ENCOUNTER_TYPE, "code": cs.HEALTH_CHECK}]}],
        "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": day},
    }


def blood_pressure(pid: str, day: str, systolic: int, diastolic: int, encounter: str | None = None):
    def comp(code, value):
        return {
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "valueQuantity": {"value": value, "unit": "mmHg"},
        }

    res = {
        "resourceType": "Observation",
        "id": f"o{next(_ids)}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": day,
        "component": [comp("8480-6", systolic), comp("8462-4", diastolic)],
    }
    if encounter:
        res["encounter"] = {"reference": f"Encounter/{encounter}"}
    return res


def observation(pid: str, system: str, code: str, day: str, value: float | None = None):
    res = {
        "resourceType": "Observation",
        "id": f"o{next(_ids)}",
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": day,
    }
    if value is not None:
        res["valueQuantity"] = {"value": value, "unit": "mmol/L"}
    return res


def contract(pid: str, start: str, end: str, *packages: str) -> dict[str, Any]:
    return {
        "resourceType": "EpisodeOfCare",
        "id": f"fdc{next(_ids)}",
        "status": "active",
        "extension": [
            {
                "url": cs.SERVICE_PACKAGE_EXTENSION,
                "valueCoding": {
                    "system": cs.SERVICE_PACKAGE,
                    "code": p,
                },
            }
            for p in packages
        ],
        "identifier": [{"system": "urn:example:contract", "value": f"FDC-{pid}"}],
        "type": [
            {
                "coding": [
                    {
                        "system": cs.CARE_PROGRAMME,
                        "code": cs.FAMILY_DOCTOR_CONTRACT,
                    }
                ]
            }
        ],
        "patient": {"reference": f"Patient/{pid}"},
        "managingOrganization": {"reference": "Organization/clinic-1"},
        "period": {"start": start, "end": end},
    }
