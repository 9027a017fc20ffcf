import datetime as dt

import pytest

from hub.identity import resident_id
from hub.identity.resident_id import InvalidResidentId
from hub.identity.resident_id import check_character

TODAY = dt.date(2026, 6, 1)


@pytest.mark.parametrize(
    ("first17", "expected"), [("11010519491231002", "X"), ("44052418800101001", "4")]
)
def test_check_character_standard_examples(first17, expected):
    assert check_character(first17) == expected


def test_parse_18_digits():
    rid = resident_id.parse("440524188001010014", today=TODAY)
    assert rid.value == "440524188001010014"
    assert rid.birth_date == dt.date(1880, 1, 1)
    assert rid.sex == "male"
    assert rid.division == "440524"
    assert rid.converted_from_15 is False


def test_parse_15_digits_converts_to_18():
    rid = resident_id.parse("110105491231002", today=TODAY)
    assert rid.value == "11010519491231002X"
    assert rid.converted_from_15 is True
    assert rid.sex == "female"  # 17th digit 2 is even


@pytest.mark.parametrize(
    "text",
    [
        "11010519491231002x",
        " 11010519491231002X ",
        "１１０１０５１９４９１２３１００２Ｘ",
        "１１０１０５１９４９１２３１００２ｘ",
    ],
)
def test_parse_normalises_lower_x_spaces_and_full_width(text):
    assert resident_id.normalise(text) == "11010519491231002X"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("110105194912310021", "check character"),
        ("11010519491231002", "18 characters"),
        ("1101051949123100XX", "18 characters"),
        ("", "18 characters"),
        (None, "no resident ID"),
    ],
)
def test_parse_rejects_malformed(text, reason):
    with pytest.raises(InvalidResidentId, match=reason):
        resident_id.parse(text, today=TODAY)


def _with_check(body: str) -> str:
    return body + check_character(body)


@pytest.mark.parametrize(
    "body", ["11010519490230002", "11010519491301002", "11010520300101002", "11010518790101002"]
)
def test_parse_rejects_impossible_birth_dates(body):
    with pytest.raises(InvalidResidentId, match="impossible birth date"):
        resident_id.parse(_with_check(body), today=TODAY)


def test_is_valid():
    assert resident_id.is_valid("11010519491231002X")
    assert not resident_id.is_valid("110105194912310021")


def test_mask_keeps_division_and_last_four():
    assert resident_id.mask("37028319800101123X") == "370283********123X"
    assert resident_id.mask("1234") == "****"
    assert resident_id.mask(None) == ""


def test_consistency_issues_birth_date_and_sex():
    rid = resident_id.parse("11010519491231002X", today=TODAY)
    assert resident_id.consistency_issues(rid, "1949-12-31", "female") == []
    problems = resident_id.consistency_issues(rid, "1949-12-30", "male")
    assert len(problems) == 2
    assert "birth date 1949-12-30" in problems[0]
    assert "gender male" in problems[1]


def test_consistency_issues_ignore_partial_and_unknown():
    rid = resident_id.parse("11010519491231002X", today=TODAY)
    assert resident_id.consistency_issues(rid, "1949", "unknown") == []
