import pytest

from hub.identity import RESIDENT_ID_SYSTEM
from hub.identity.matching import MATCH_GRADE_URL
from hub.identity.matching import Thresholds
from hub.identity.matching import decide
from hub.identity.matching import match_bundle
from hub.identity.matching import score
from hub.identity.names import pinyin_keys
from hub.identity.names import split_chinese_name


def patient(name=None, birth=None, gender=None, phone=None, address=None, rid=None, **name_parts):
    p = {"resourceType": "Patient"}
    if name or name_parts:
        p["name"] = [dict({"text": name} if name else {}, **name_parts)]
    if birth:
        p["birthDate"] = birth
    if gender:
        p["gender"] = gender
    if phone:
        p["telecom"] = [{"system": "phone", "value": phone}]
    if address:
        p["address"] = [{"text": address}]
    if rid:
        p["identifier"] = [{"system": RESIDENT_ID_SYSTEM, "value": rid}]
    return p


BASE = patient("张伟", "1960-01-02", "male", "13800000001", "山东省青岛市市南区香港中路1号")


@pytest.mark.parametrize("spelling", ["Zhang Wei", "ZHANG WEI", "zhangwei", "Wei Zhang"])
def test_pinyin_spellings_are_one_name(spelling):
    assert pinyin_keys("张伟") & pinyin_keys(spelling)


def test_pinyin_keys_differ_for_different_names():
    assert not pinyin_keys("张伟") & pinyin_keys("王伟")


def test_surname_readings_and_compound_surnames():
    assert pinyin_keys("曾伟") & pinyin_keys("Zeng Wei")
    assert pinyin_keys("单田芳") & pinyin_keys("Shan Tianfang")
    assert split_chinese_name("欧阳修") == ("欧阳", "修")
    assert split_chinese_name("阿依古丽·买买提") == (None, None)


def test_score_pinyin_name_with_same_birth_phone_auto_links():
    other = patient(None, "1960-01-02", "male", "+86 138-0000-0001", family="ZHANG", given=["WEI"])
    value, reasons = score(BASE, other)
    assert decide(value) == "auto-link"
    assert "same name in pinyin" in reasons and "same phone number" in reasons


def test_score_homophone_with_swapped_birth_date_goes_to_review():
    other = patient("章伟", "1960-02-01", "male", None, "山东省青岛市市南区香港中路1号")
    value, reasons = score(BASE, other)
    assert decide(value) == "review"
    assert "homophone names" in reasons


def test_score_name_and_birth_date_alone_is_review_not_auto():
    value, _ = score(BASE, patient("张伟", "1960-01-02"))
    assert decide(value) == "review"


def test_score_different_sex_is_no_match():
    value, reasons = score(BASE, patient("张伟", "1960-01-02", "female"))
    assert decide(value) == "no-match"
    assert "different sex" in reasons


def test_score_different_person():
    value, _ = score(BASE, patient("李娜", "1971-05-06", "female", "13900000000", "北京市"))
    assert value == 0.0


def test_resident_id_decides_when_both_have_one():
    a = dict(BASE, identifier=[{"system": RESIDENT_ID_SYSTEM, "value": "11010519491231002X"}])
    same = patient("Someone Else", rid="11010519491231002x")
    other = patient("张伟", "1960-01-02", "male", rid="440524188001010014")
    assert score(a, same) == (1.0, ["same resident ID number"])
    assert score(a, other)[0] == 0.0


def test_invalid_resident_id_is_ignored_for_linking():
    a = dict(BASE, identifier=[{"system": RESIDENT_ID_SYSTEM, "value": "110105194912310021"}])
    value, _ = score(a, BASE)
    assert value == 1.0 and decide(value) == "auto-link"


def test_thresholds_from_settings():
    t = Thresholds.from_settings({"MATCH_AUTO_LINK": "0.95", "MATCH_REVIEW": 0.8})
    assert (t.auto_link, t.review) == (0.95, 0.8)
    assert decide(0.9, t) == "review"


def test_match_bundle_orders_and_grades():
    bundle = match_bundle(
        [(dict(BASE, id="b"), 0.75), (dict(BASE, id="a"), 0.97), (dict(BASE, id="c"), 0.1)]
    )
    assert bundle["type"] == "searchset"
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["a", "b", "c"]
    grades = [e["search"]["extension"][0] for e in bundle["entry"]]
    assert all(g["url"] == MATCH_GRADE_URL for g in grades)
    assert [g["valueCode"] for g in grades] == ["certain", "probable", "certainly-not"]
    assert bundle["entry"][0]["search"] | {"extension": None} == {
        "mode": "match",
        "score": 0.97,
        "extension": None,
    }
    assert bundle["entry"][0]["fullUrl"] == "Patient/a"
    assert len(match_bundle([(BASE, 0.5)] * 3, count=2)["entry"]) == 2
