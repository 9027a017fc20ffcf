"""``Patient/$match``: candidates scored by hub.identity.matching."""

from __future__ import annotations

from tests.lifetime.conftest import parameters
from tests.lifetime.conftest import patient

RID = "urn:oid:2.16.156.10011.1.3"


def _people(fhir):
    fhir.put(
        patient(
            "zhang",
            name=[{"text": "张伟", "family": "张", "given": ["伟"]}],
            gender="male",
            birthDate="1980-01-01",
            telecom=[{"system": "phone", "value": "13800000001"}],
        )
    )
    fhir.put(
        patient(
            "zhang-other",
            name=[{"text": "张卫", "family": "张", "given": ["卫"]}],
            gender="male",
            birthDate="1980-01-01",
        )
    )
    fhir.put(patient("li", name=[{"text": "李娜"}], gender="female", birthDate="1990-05-05"))
    fhir.put(
        patient(
            "retired",
            name=[{"text": "张伟"}],
            gender="male",
            birthDate="1980-01-01",
            active=False,
            link=[{"other": {"reference": "Patient/zhang"}, "type": "replaced-by"}],
        )
    )


def _scores(bundle):
    return [
        (e["resource"]["id"], e["search"]["extension"][0]["valueCode"], e["search"]["score"])
        for e in bundle["entry"]
    ]


def test_candidates_are_scored_best_first(fhir):
    _people(fhir)
    probe = patient(
        "x",
        name=[{"text": "张伟"}],
        gender="male",
        birthDate="1980-01-01",
        telecom=[{"system": "phone", "value": "138-0000-0001"}],
    )
    bundle = fhir.post("Patient/$match", parameters(resource=probe))
    scores = _scores(bundle)
    assert bundle["type"] == "searchset"
    assert scores[0][0] == "zhang" and scores[0][1] == "certain"
    assert [s[0] for s in scores] == ["zhang", "zhang-other"]  # the retired record is left out
    assert scores[1][2] < scores[0][2]
    assert "li" not in [s[0] for s in scores]


def test_only_certain_matches_and_count(fhir):
    _people(fhir)
    probe = patient("x", name=[{"text": "张伟"}], gender="male", birthDate="1980-01-01")
    certain = fhir.post("Patient/$match", parameters(resource=probe, onlyCertainMatches=True))
    assert all(grade == "certain" for _, grade, _ in _scores(certain))
    one = fhir.post("Patient/$match", parameters(resource=probe, count=1))
    assert len(one["entry"]) == 1


def test_resident_id_decides(fhir, client):
    number = "410102198001010018"
    resp = client.post(
        "/fhir/$ingest?site=county-hospital-a",
        data=(
            "MSH|^~\\&|WINNING_HIS|XRMYY|FHIRHUB|HUB|20240315083000||ADT^A04^ADT_A01|M-1|P|2.5\r"
            f"PID|1||0012345^^^XRMYY^MR~{number}^^^CHN^NNCHN||张^伟||19800101|M\r"
            "PV1|1|O\r"
        ).encode(),
        content_type="application/hl7-v2",
    )
    assert resp.status_code == 200
    probe = patient("x", identifier=[{"system": RID, "value": number}])
    scores = _scores(fhir.post("Patient/$match", parameters(resource=probe)))
    assert scores[0][1:] == ("certain", 1.0)


def test_bad_input(fhir):
    fhir.post("Patient/$match", parameters(count=3), status=400)
    fhir.post("Patient/$match", parameters(resource={"resourceType": "Patient"}), status=422)
    probe = patient("x", birthDate="1980-01-01")
    fhir.post("Patient/$match", parameters(resource=probe, count="many"), status=400)


def test_hidden_candidates_are_not_offered(fhir, hub):
    from hub.lifetime.visibility import Visibility

    _people(fhir)
    secret = {"system": "urn:fhirhub:codesystem:sensitivity", "code": "veteran"}
    hidden = fhir.get("Patient/zhang")
    hidden["meta"] = {"security": [secret]}
    fhir.put(hidden)
    hub.visibility_for = lambda call: Visibility(
        hidden_labels=((secret["system"], secret["code"]),)
    )
    probe = patient("x", name=[{"text": "张伟"}], gender="male", birthDate="1980-01-01")
    ids = [s[0] for s in _scores(fhir.post("Patient/$match", parameters(resource=probe)))]
    assert ids == ["zhang-other"]
