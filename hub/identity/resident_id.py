"""The resident ID number (居民身份证号码, GB 11643-1999).

18 characters: 6-digit administrative division, 8-digit birth date, 3-digit
sequence (odd for men, even for women) and a check character computed with
ISO 7064 MOD 11-2 (``X`` stands for 10). Numbers issued before 1999 have 15
digits (2-digit year, no check character) and convert to 18 by inserting
``19`` before the year.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_SHAPE18 = re.compile(r"^\d{17}[\dX]$")
_SHAPE15 = re.compile(r"^\d{15}$")


class InvalidResidentId(ValueError):
    """The value is not a valid resident ID number; the message says why."""


@dataclasses.dataclass(frozen=True)
class ResidentId:
    value: str  # normalised 18-character form
    birth_date: dt.date
    sex: str  # "male" or "female"
    division: str  # 6-digit administrative division code
    converted_from_15: bool = False


def check_character(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits."""
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK[total % 11]


def parse(value: str, *, today: dt.date | None = None) -> ResidentId:
    """Validate and normalise a resident ID number.

    Accepts surrounding spaces, a lower-case ``x``, full-width digits and the
    legacy 15-digit form. Raises :class:`InvalidResidentId` with the reason.
    """
    if value is None:
        raise InvalidResidentId("no resident ID number")
    text = str(value).strip().translate(_FULLWIDTH).upper()
    converted = False
    if _SHAPE15.match(text):
        body = text[:6] + "19" + text[6:]
        text = body + check_character(body)
        converted = True
    elif not _SHAPE18.match(text):
        raise InvalidResidentId(
            f"resident ID number must have 18 characters (17 digits and a digit or X), or 15 digits; got {len(text)} characters"
        )
    expected = check_character(text[:17])
    if text[17] != expected:
        raise InvalidResidentId(
            f"resident ID number check character is {text[17]!r}, expected {expected!r}"
        )
    try:
        birth = dt.date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        raise InvalidResidentId(
            f"resident ID number has an impossible birth date {text[6:14]}"
        ) from None
    today = today or dt.date.today()
    if birth > today or birth.year < 1880:
        raise InvalidResidentId(
            f"resident ID number has an impossible birth date {birth.isoformat()}"
        )
    sex = "male" if int(text[16]) % 2 == 1 else "female"
    return ResidentId(text, birth, sex, text[:6], converted)


def normalise(value: str) -> str:
    """The normalised 18-character form, or :class:`InvalidResidentId`."""
    return parse(value).value


def is_valid(value: str) -> bool:
    try:
        parse(value)
    except InvalidResidentId:
        return False
    return True


def mask(value: str) -> str:
    """The number with the birth date and sequence hidden: ``110105********002X``.

    Used in logs, reports and exports for clients not entitled to see it.
    """
    text = str(value or "")
    if len(text) < 8:
        return "*" * len(text)
    return text[:6] + "*" * (len(text) - 10) + text[-4:]


def consistency_issues(rid: ResidentId, birth_date: str | None, gender: str | None) -> list[str]:
    """Disagreements between the number and a stated birth date or gender."""
    problems = []
    if birth_date and birth_date[:10] != rid.birth_date.isoformat() and len(birth_date) >= 10:
        problems.append(
            f"birth date {birth_date[:10]} disagrees with the resident ID number ({rid.birth_date.isoformat()})"
        )
    if gender in ("male", "female") and gender != rid.sex:
        problems.append(f"gender {gender} disagrees with the resident ID number ({rid.sex})")
    return problems


_FULLWIDTH = str.maketrans("０１２３４５６７８９ｘＸ", "0123456789XX")
