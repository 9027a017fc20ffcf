"""Hand-written resources for the search tests (all fictional)."""

from __future__ import annotations

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RESIDENT_ID = "urn:oid:2.16.156.10011.1.3"


def _qty(value, code, unit=None):
    return {"value": value, "unit": unit or code, "system": UCUM, "code": code}


def _obs(oid, code, subject, **extra):
    res = {
        "resourceType": "Observation",
        "id": oid,
        "status": extra.pop("status", "final"),
        "code": {
            "coding": [{"system": LOINC, "code": code[0], "display": code[1]}],
            "text": code[1],
        },
    }
    if subject:
        res["subject"] = {"reference": subject}
    res.update(extra)
    return res


VITALS = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs",
        }
    ]
}

SAMPLES: list[dict] = [
    {
        "resourceType": "Organization",
        "id": "org-cn",
        "name": "北京协和医院",
        "alias": ["Peking Union Medical College Hospital"],
        "identifier": [{"system": "urn:oid:2.16.156.10011.1.5", "value": "PUMCH"}],
    },
    {
        "resourceType": "Patient",
        "id": "zs",
        "meta": {
            "tag": [{"system": "http://example.org/tags", "code": "vip"}],
            "profile": ["http://example.org/StructureDefinition/cn-patient"],
            "security": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                    "code": "R",
                }
            ],
        },
        "identifier": [
            {
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NI"}
                    ],
                    "text": "居民身份证",
                },
                "system": RESIDENT_ID,
                "value": "11010519491231002X",
            }
        ],
        "name": [{"family": "张", "given": ["三"]}],
        "gender": "male",
        "birthDate": "1980-05-04",
        "telecom": [{"system": "phone", "value": "13800000001"}],
        "managingOrganization": {"reference": "Organization/org-cn"},
    },
    {
        "resourceType": "Patient",
        "id": "oy",
        "name": [{"text": "欧阳娜娜", "family": "欧阳", "given": ["娜娜"]}],
        "gender": "female",
        "birthDate": "2001-06-05",
        "managingOrganization": {"reference": "Organization/org-cn"},
    },
    {
        "resourceType": "Patient",
        "id": "wxm",
        "name": [{"family": "王", "given": ["小明"]}],
        "gender": "male",
        "birthDate": "1990",
        "deceasedDateTime": "2023-12-01T10:00:00+08:00",
    },
    {
        "resourceType": "Patient",
        "id": "mu",
        "name": [{"family": "Müller", "given": ["Jürgen"]}],
        "gender": "male",
        "birthDate": "1975-02-28",
        "address": [{"city": "São Paulo", "country": "BR"}],
    },
    {
        "resourceType": "Encounter",
        "id": "enc-1",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/zs"},
        "period": {"start": "2024-03-01T08:00:00+08:00", "end": "2024-03-01T10:00:00+08:00"},
    },
    _obs(
        "obs-bp",
        ("85354-9", "Blood pressure panel"),
        "Patient/zs",
        category=[VITALS],
        encounter={"reference": "Encounter/enc-1"},
        effectiveDateTime="2024-03-01T08:30:00+08:00",
        component=[
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                "valueQuantity": _qty(140, "mm[Hg]"),
            },
            {
                "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                "valueQuantity": _qty(90, "mm[Hg]"),
            },
        ],
    ),
    _obs(
        "obs-wt",
        ("29463-7", "Body weight"),
        "Patient/zs",
        category=[VITALS],
        effectivePeriod={"start": "2024-03-01", "end": "2024-03-02"},
        valueQuantity=_qty(72.5, "kg"),
    ),
    _obs(
        "obs-wt-g",
        ("29463-7", "Body weight"),
        "Patient/oy",
        effectiveDateTime="2024-02-10",
        valueQuantity=_qty(72500, "g"),
    ),
    _obs(
        "obs-temp",
        ("8310-5", "Body temperature"),
        "Patient/zs",
        effectiveDateTime="2024-03-05",
        valueQuantity=_qty(37.5, "Cel"),
    ),
    _obs(
        "obs-smoke",
        ("72166-2", "Tobacco smoking status"),
        "Patient/oy",
        performer=[
            {
                "identifier": {"system": "urn:oid:2.16.156.10011.1.4", "value": "D042"},
                "display": "李医生",
            }
        ],
        valueCodeableConcept={
            "coding": [
                {
                    "system": "http://snomed.info/sct",
                    "code": "449868002",
                    "display": "Current every day smoker",
                }
            ]
        },
    ),
    _obs(
        "obs-str",
        ("5778-6", "Color of Urine"),
        "Patient/wxm",
        valueString="淡黄色",
        status="preliminary",
    ),
    _obs("obs-nosubj", ("1234-5", "Orphan"), None, status="preliminary"),
    {
        "resourceType": "Provenance",
        "id": "prov-1",
        "target": [{"reference": "Observation/obs-bp"}],
        "recorded": "2024-03-01T09:00:00+08:00",
        "agent": [{"who": {"reference": "Organization/org-cn"}}],
    },
    {
        "resourceType": "ValueSet",
        "id": "vs-vitals",
        "url": "http://example.org/fhir/ValueSet/vitals",
        "status": "active",
        "compose": {
            "include": [
                {
                    "system": LOINC,
                    "concept": [{"code": "85354-9"}, {"code": "29463-7"}],
                }
            ]
        },
    },
    {
        "resourceType": "CodeSystem",
        "id": "cs-diag",
        "url": "http://example.org/fhir/CodeSystem/diagnoses",
        "status": "active",
        "content": "complete",
        "concept": [
            {
                "code": "CIRC",
                "display": "循环系统疾病",
                "concept": [
                    {"code": "HTN", "concept": [{"code": "HTN-1"}, {"code": "HTN-2"}]},
                    {"code": "IHD"},
                ],
            },
            {"code": "RESP"},
        ],
    },
    {
        "resourceType": "Condition",
        "id": "cond-htn1",
        "subject": {"reference": "Patient/zs"},
        "code": {
            "coding": [{"system": "http://example.org/fhir/CodeSystem/diagnoses", "code": "HTN-1"}]
        },
    },
    {
        "resourceType": "Condition",
        "id": "cond-circ",
        "subject": {"reference": "Patient/oy"},
        "code": {
            "coding": [{"system": "http://example.org/fhir/CodeSystem/diagnoses", "code": "CIRC"}]
        },
    },
    {
        "resourceType": "List",
        "id": "list-1",
        "status": "current",
        "mode": "working",
        "entry": [{"item": {"reference": "Patient/zs"}}, {"item": {"reference": "Patient/oy"}}],
    },
    {
        "resourceType": "RiskAssessment",
        "id": "risk-1",
        "status": "final",
        "subject": {"reference": "Patient/zs"},
        "prediction": [{"probabilityDecimal": 0.25}],
    },
    {
        "resourceType": "Condition",
        "id": "cond-1",
        "subject": {"reference": "Patient/wxm"},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10"}]},
        "onsetDateTime": "2015",
    },
]
