import pytest

from hub.identity.ids import content_hash
from hub.identity.ids import patient_id_for_resident_id
from hub.identity.ids import stable_id
from hub.identity.ids import stored_content_hash
from hub.identity.ids import with_content_hash
from hub.identity.resident_id import InvalidResidentId


@pytest.fixture(autouse=True)
def development_key(monkeypatch):
    monkeypatch.delenv("HUB_IDENTITY_KEY", raising=False)


def test_patient_id_is_deterministic_and_fhir_shaped():
    pid = patient_id_for_resident_id("11010519491231002X")
    assert pid == patient_id_for_resident_id("11010519491231002X")
    assert pid.startswith("rid-") and len(pid) == 36
    assert "19491231" not in pid


@pytest.mark.parametrize(
    "variant", ["110105491231002", "11010519491231002x", "１１０１０５１９４９１２３１００２Ｘ"]
)
def test_patient_id_same_for_every_spelling(variant):
    assert patient_id_for_resident_id(variant) == patient_id_for_resident_id("11010519491231002X")


def test_patient_id_depends_on_the_deployment_key(monkeypatch):
    default = patient_id_for_resident_id("11010519491231002X")
    monkeypatch.setenv("HUB_IDENTITY_KEY", "county-secret")
    assert patient_id_for_resident_id("11010519491231002X") != default
    assert patient_id_for_resident_id("11010519491231002X", key=b"county-secret") == (
        patient_id_for_resident_id("11010519491231002X")
    )


def test_patient_id_refuses_invalid_numbers():
    with pytest.raises(InvalidResidentId):
        patient_id_for_resident_id("110105194912310021")


def test_stable_id_separates_parts():
    assert stable_id("a", "bc") != stable_id("ab", "c")
    assert len(stable_id("x")) == 40


def test_content_hash_ignores_meta_and_id():
    a = {"resourceType": "Patient", "id": "1", "gender": "male", "meta": {"versionId": "3"}}
    b = {"gender": "male", "resourceType": "Patient", "id": "2"}
    assert content_hash(a) == content_hash(b)
    assert content_hash(a) != content_hash(dict(b, gender="female"))


def test_with_content_hash_replaces_an_old_tag():
    res = with_content_hash({"resourceType": "Patient", "gender": "male"})
    res["gender"] = "female"
    with_content_hash(res)
    assert len(res["meta"]["tag"]) == 1
    assert stored_content_hash(res) == content_hash(res)
    assert stored_content_hash({"resourceType": "Patient"}) is None
