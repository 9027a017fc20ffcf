"""The base64Binary check gives the FHIR regex's answer for every kind of value."""

from __future__ import annotations

import re

import pytest

from hub.validation.structure import check_structure
from hub.validation.validator import _Base64Binary

FHIR_REGEX = re.compile(r"(\s*([0-9a-zA-Z\+/=]){4}\s*)+")


@pytest.mark.parametrize(
    "value",
    [
        "aGVsbG8=",
        "aGVs bG8=",
        " aGVsbG8= ",
        "aGVs\nbG8=\n",
        "aGV sbG8=",
        "",
        "   ",
        "abc",
        "ab!d",
        "ab=c",
        "a\u00a0bcd",
        "abcd\u2028efgh",
        "abcd\x1cefgh",
        "abcd\x00",
        "ＡＢＣＤ",
    ],
)
def test_same_answer_as_the_regex(value):
    expected = FHIR_REGEX.fullmatch(value) is not None
    assert (_Base64Binary(FHIR_REGEX).fullmatch(value) is not None) is expected


def test_structure_check_reports_bad_base64():
    bad = {"resourceType": "Binary", "contentType": "text/plain", "data": "abc"}
    good = {"resourceType": "Binary", "contentType": "text/plain", "data": "aGVsbG8="}
    assert check_structure(good) == []
    with pytest.raises(Exception, match="not a valid base64Binary"):
        check_structure(bad)
