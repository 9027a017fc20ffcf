"""The terminology operations over HTTP, with a real FHIR client, on both backends."""

from __future__ import annotations

import pytest
from fhirpy import SyncFHIRClient

from hub.app import create_app
from hub.app import get_hub

GENDER = "http://hl7.org/fhir/administrative-gender"
SEX = "urn:oid:2.16.156.10011.2.3.3.4"
ETHNICITY = "urn:oid:2.16.156.10011.2.3.3.3"
LOCAL = "http://example.org/fhir/CodeSystem/ward-lab"
LOCAL_VS = "http://example.org/fhir/ValueSet/ward-lab-blood"


@pytest.fixture
def fhir(live_server):
    return SyncFHIRClient(
        live_server.fhir,
        authorization=f"Bearer {live_server.token}",
        extra_headers={"Accept": "application/fhir+json"},
    )


@pytest.fixture
def http(live_server):
    return live_server.session()


def _value(parameters: dict, name: str):
    for p in parameters["parameter"]:
        if p["name"] == name:
            return next((v for k, v in p.items() if k.startswith("value")), p.get("part"))
    return None


def _local_code_system(fhir):
    cs = fhir.resource(
        "CodeSystem",
        id="ward-lab",
        url=LOCAL,
        status="active",
        content="complete",
        concept=[
            {
                "code": "BLOOD",
                "display": "血液检查",
                "designation": [{"language": "en", "value": "blood tests"}],
                "concept": [
                    {"code": "HGB", "display": "血红蛋白"},
                    {"code": "WBC", "display": "白细胞计数"},
                ],
            },
            {"code": "URINE", "display": "尿液检查"},
        ],
    )
    cs.save()
    return cs


def _blood_value_set(fhir, parent: str = "BLOOD"):
    vs = fhir.resource(
        "ValueSet",
        id="ward-lab-blood",
        url=LOCAL_VS,
        status="active",
        compose={
            "include": [
                {
                    "system": LOCAL,
                    "filter": [{"property": "concept", "op": "is-a", "value": parent}],
                }
            ]
        },
    )
    vs.save()
    return vs


def test_lookup_get_on_r4_and_national_tables(fhir):
    got = fhir.execute(
        "CodeSystem/$lookup", method="get", params={"system": GENDER, "code": "male"}
    )
    assert _value(got, "display") == "Male"
    got = fhir.execute("CodeSystem/$lookup", method="get", params={"system": SEX, "code": "2"})
    assert _value(got, "display") == "女性 (female)"


def test_validate_code_post_parameters_with_a_coding(fhir):
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "url", "valueUri": "http://hl7.org/fhir/ValueSet/administrative-gender"},
            {"name": "coding", "valueCoding": {"system": GENDER, "code": "female"}},
        ],
    }
    assert _value(fhir.execute("ValueSet/$validate-code", data=body), "result") is True
    body["parameter"][1]["valueCoding"]["code"] = "F"
    got = fhir.execute("ValueSet/$validate-code", data=body)
    assert _value(got, "result") is False and "F" in _value(got, "message")
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "url", "valueUri": ETHNICITY},
            {"name": "code", "valueCode": "01"},
            {"name": "display", "valueString": "Han"},
        ],
    }
    got = fhir.execute("CodeSystem/$validate-code", data=body)
    assert _value(got, "result") is True and _value(got, "display") == "汉族"


def test_expand_get_with_chinese_filter_and_paging(fhir):
    params = {"url": f"{ETHNICITY}?fhir_vs", "filter": "族", "count": "5", "offset": "5"}
    got = fhir.execute("ValueSet/$expand", method="get", params=params)
    assert got["resourceType"] == "ValueSet"
    assert got["expansion"]["total"] == 56
    assert [c["code"] for c in got["expansion"]["contains"]] == ["06", "07", "08", "09", "10"]


def test_translate_and_reverse(fhir):
    got = fhir.execute(
        "ConceptMap/$translate",
        method="get",
        params={"url": "urn:fhirhub:conceptmap:cda-sex", "system": SEX, "code": "2"},
    )
    assert _value(got, "result") is True
    match = _value(got, "match")
    assert {
        "name": "concept",
        "valueCoding": {"system": GENDER, "code": "female", "display": "Female"},
    } in match
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "url", "valueUri": "urn:fhirhub:conceptmap:cda-sex"},
            {"name": "coding", "valueCoding": {"system": GENDER, "code": "unknown"}},
            {"name": "reverse", "valueBoolean": True},
        ],
    }
    got = fhir.execute("ConceptMap/$translate", data=body)
    codes = sorted(
        part["valueCoding"]["code"]
        for p in got["parameter"]
        if p["name"] == "match"
        for part in p["part"]
        if part["name"] == "concept"
    )
    assert codes == ["0", "9"]


def test_subsumes_get(fhir):
    got = fhir.execute(
        "CodeSystem/$subsumes",
        method="get",
        params={"system": "urn:oid:2.16.156.10011.2.3.3.8", "codeA": "1", "codeB": "12"},
    )
    assert _value(got, "outcome") == "subsumes"


def test_stored_resources_are_served_at_instance_level(fhir):
    _local_code_system(fhir)
    _blood_value_set(fhir)
    fhir.resource(
        "ConceptMap",
        id="ward-lab-loinc",
        url="http://example.org/fhir/ConceptMap/ward-lab-loinc",
        status="active",
        group=[
            {
                "source": LOCAL,
                "target": "http://loinc.org",
                "element": [
                    {"code": "HGB", "target": [{"code": "718-7", "equivalence": "equivalent"}]}
                ],
            }
        ],
    ).save()
    got = fhir.execute("CodeSystem/ward-lab/$lookup", method="get", params={"code": "HGB"})
    assert _value(got, "display") == "血红蛋白"
    got = fhir.execute(
        "CodeSystem/ward-lab/$subsumes", method="get", params={"codeA": "BLOOD", "codeB": "WBC"}
    )
    assert _value(got, "outcome") == "subsumes"
    got = fhir.execute("ValueSet/ward-lab-blood/$expand", method="get", params={"filter": "blood"})
    assert [c["code"] for c in got["expansion"]["contains"]] == ["BLOOD"]
    got = fhir.execute(
        "ValueSet/ward-lab-blood/$validate-code",
        method="get",
        params={"system": LOCAL, "code": "URINE"},
    )
    assert _value(got, "result") is False
    got = fhir.execute(
        "ConceptMap/ward-lab-loinc/$translate",
        method="get",
        params={"system": LOCAL, "code": "HGB"},
    )
    assert _value(got, "match")[1]["valueCoding"]["code"] == "718-7"


def test_a_changed_value_set_is_expanded_anew_in_this_and_another_process(fhir, app_config):
    _local_code_system(fhir)
    vs = _blood_value_set(fhir)
    other = get_hub(create_app(dict(app_config)))  # another process's hub on the same database
    try:
        other.terminology.refresh()
        before = {m.code for m in other.terminology.members(LOCAL_VS)}
        got = fhir.execute("ValueSet/$expand", method="get", params={"url": LOCAL_VS})
        assert (
            {c["code"] for c in got["expansion"]["contains"]} == before == {"BLOOD", "HGB", "WBC"}
        )
        vs["compose"]["include"][0]["filter"][0]["value"] = "URINE"
        vs.save()
        got = fhir.execute("ValueSet/$expand", method="get", params={"url": LOCAL_VS})
        assert [c["code"] for c in got["expansion"]["contains"]] == ["URINE"]
        other.terminology.refresh()
        assert [m.code for m in other.terminology.members(LOCAL_VS)] == ["URINE"]
        vs.delete()
        other.terminology.refresh()
        assert other.terminology.value_set(LOCAL_VS) is None
    finally:
        other.close()


def test_search_modifiers_use_the_expansions(fhir):
    _local_code_system(fhir)
    _blood_value_set(fhir)
    ids = {}
    for code in ("HGB", "URINE"):
        obs = fhir.resource(
            "Observation",
            status="final",
            category=[
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "laboratory",
                        }
                    ]
                }
            ],
            code={"coding": [{"system": LOCAL, "code": code}]},
        )
        obs.save()
        ids[code] = obs.id

    def found(**params):
        return {r.id for r in fhir.resources("Observation").search(**params).fetch_all()}

    assert found(**{"code:in": LOCAL_VS}) == {ids["HGB"]}
    assert found(**{"code:not-in": LOCAL_VS}) == {ids["URINE"]}
    assert found(**{"code:below": f"{LOCAL}|BLOOD"}) == {ids["HGB"]}
    assert found(**{"code:above": f"{LOCAL}|HGB"}) == {ids["HGB"]}
    core = "http://hl7.org/fhir/ValueSet/observation-category"
    assert found(**{"category:in": core}) == set(ids.values())
    # The value set changes: the next search follows it.
    _blood_value_set(fhir, parent="URINE")
    assert found(**{"code:in": LOCAL_VS}) == {ids["URINE"]}


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("CodeSystem/$lookup", {"code": "male"}, 400),
        ("CodeSystem/$lookup", {"system": "http://example.org/none", "code": "x"}, 404),
        ("CodeSystem/$lookup", {"system": GENDER, "code": "mail"}, 404),
        ("ValueSet/$expand", {}, 400),
        ("ValueSet/$expand", {"url": "http://example.org/none"}, 404),
        ("ValueSet/$expand", {"url": f"{ETHNICITY}?fhir_vs", "count": "many"}, 400),
        ("ValueSet/$expand", {"url": f"{ETHNICITY}?fhir_vs", "offset": "-1"}, 400),
        ("ValueSet/$expand", {"url": f"{ETHNICITY}?fhir_vs", "includeDesignations": "yes"}, 400),
        (
            "ValueSet/$validate-code",
            {"url": "http://hl7.org/fhir/ValueSet/administrative-gender"},
            400,
        ),
        ("ConceptMap/$translate", {"code": "1"}, 400),
        ("ConceptMap/$translate", {"url": "urn:fhirhub:conceptmap:none", "code": "1"}, 404),
        ("CodeSystem/$subsumes", {"system": SEX, "codeA": "1"}, 400),
        ("CodeSystem/$subsumes", {"system": SEX, "codeA": "1", "codeB": "7"}, 404),
        ("CodeSystem/no-such-system/$lookup", {"code": "1"}, 404),
    ],
)
def test_errors_are_operation_outcomes_with_4xx(http, live_server, path, params, status):
    r = http.get(f"{live_server.fhir}/{path}", params=params)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["severity"] == "error"


def test_post_with_hostile_parameters_is_4xx(http, live_server):
    bodies = [
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "code", "valueCoding": {"code": "x"}}],
        },
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "valueSet", "resource": {"resourceType": "Patient"}}],
        },
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "coding", "valueString": "nosystem"}],
        },
        {
            "resourceType": "Parameters",
            "parameter": [
                {
                    "name": "valueSet",
                    "resource": {
                        "resourceType": "ValueSet",
                        "status": "active",
                        "compose": {"include": "all"},
                    },
                }
            ],
        },
    ]
    for path, body in zip(
        ("CodeSystem/$lookup", "ValueSet/$expand", "ValueSet/$validate-code", "ValueSet/$expand"),
        bodies,
        strict=True,
    ):
        r = http.post(
            f"{live_server.fhir}/{path}",
            json=body,
            headers={"Content-Type": "application/fhir+json"},
        )
        assert 400 <= r.status_code < 500, (path, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"


def test_terminology_capabilities_and_capability_statement(fhir, http, live_server):
    r = http.get(f"{live_server.fhir}/metadata", params={"mode": "terminology"})
    tc = r.json()
    assert tc["resourceType"] == "TerminologyCapabilities"
    systems = {c["uri"]: c for c in tc["codeSystem"]}
    assert SEX in systems and GENDER in systems
    assert systems["urn:oid:2.16.156.10011.2.3.3.8"]["subsumption"] is True
    cap = http.get(f"{live_server.fhir}/metadata").json()
    ops = {
        (r["type"], o["name"]): o["definition"]
        for r in cap["rest"][0]["resource"]
        for o in r.get("operation", ())
    }
    for key in [
        ("CodeSystem", "lookup"),
        ("CodeSystem", "validate-code"),
        ("CodeSystem", "subsumes"),
        ("ValueSet", "expand"),
        ("ValueSet", "validate-code"),
        ("ConceptMap", "translate"),
    ]:
        assert key in ops, key
        definition = http.get(ops[key]).json()
        assert definition["resourceType"] == "OperationDefinition"
        assert key[0] in definition["resource"]
