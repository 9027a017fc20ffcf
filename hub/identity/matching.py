"""Candidate scoring for linking records of one person when the ID number is missing.

Pure functions over Patient dicts. :func:`score` compares name (Chinese
characters, pinyin spellings and homophones), birth date, sex, phone and
address and returns a score in 0..1 with the reasons; :func:`decide` applies
the thresholds (settings ``MATCH_AUTO_LINK`` and ``MATCH_REVIEW``);
:func:`match_bundle` renders candidates as the ``Patient/$match`` answer.

A resident ID number on both sides settles the question (same: 1.0,
different: 0.0): the ID number is authoritative (DESIGN decision 6).
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from hub.identity import RESIDENT_ID_SYSTEM
from hub.identity import resident_id
from hub.identity.names import is_chinese
from hub.identity.names import pinyin_keys
from hub.identity.names import pinyin_syllables

MATCH_GRADE_URL = "http://hl7.org/fhir/StructureDefinition/match-grade"

# Weights sum to 1: name and birth date carry most of the evidence, as in
# every EMPI; phone is strong but shared within households; address is weak.
WEIGHTS = {"name": 0.35, "birthDate": 0.25, "gender": 0.10, "phone": 0.20, "address": 0.10}
MIN_COMPARED = 0.7


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Auto-link at or above ``auto_link``; queue for review at or above ``review``."""

    auto_link: float = 0.90
    review: float = 0.70

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Thresholds:
        return cls(
            float(settings.get("MATCH_AUTO_LINK", cls.auto_link)),
            float(settings.get("MATCH_REVIEW", cls.review)),
        )


def decide(value: float, thresholds: Thresholds = Thresholds()) -> str:
    """``"auto-link"``, ``"review"`` or ``"no-match"``."""
    if value >= thresholds.auto_link:
        return "auto-link"
    if value >= thresholds.review:
        return "review"
    return "no-match"


def score(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, list[str]]:
    """How likely two Patient resources are the same person: ``(0..1, reasons)``."""
    id_a, id_b = _resident_id(a), _resident_id(b)
    if id_a and id_b:
        if id_a == id_b:
            return 1.0, ["same resident ID number"]
        return 0.0, ["different resident ID numbers"]

    reasons: list[str] = []
    total = 0.0
    compared = 0.0  # weight of the fields both records have
    names_a, names_b = _names(a), _names(b)
    part, why = _name_score(names_a, names_b)
    compared += WEIGHTS["name"] if names_a and names_b else 0
    total += WEIGHTS["name"] * part
    reasons.append(why)

    part, why = _birth_score(a.get("birthDate"), b.get("birthDate"))
    compared += WEIGHTS["birthDate"] if a.get("birthDate") and b.get("birthDate") else 0
    total += WEIGHTS["birthDate"] * part
    reasons.append(why)

    ga, gb = a.get("gender"), b.get("gender")
    sex_conflict = ga in ("male", "female") and gb in ("male", "female") and ga != gb
    compared += WEIGHTS["gender"] if ga and gb else 0
    if ga and gb and ga == gb:
        total += WEIGHTS["gender"]
        reasons.append("same sex")
    elif sex_conflict:
        reasons.append("different sex")

    phones_a, phones_b = _phones(a), _phones(b)
    compared += WEIGHTS["phone"] if phones_a and phones_b else 0
    if phones_a & phones_b:
        total += WEIGHTS["phone"]
        reasons.append("same phone number")
    elif phones_a and phones_b:
        reasons.append("different phone numbers")

    addresses_a, addresses_b = _addresses(a), _addresses(b)
    compared += WEIGHTS["address"] if addresses_a and addresses_b else 0
    part, why = _address_score(addresses_a, addresses_b)
    total += WEIGHTS["address"] * part
    if why:
        reasons.append(why)

    if compared == 0:
        return 0.0, reasons
    # A field only one side has is neutral: score over the fields compared, but
    # shrink it when they carry less than MIN_COMPARED of the weight.
    value = total / compared * min(1.0, compared / MIN_COMPARED)
    if sex_conflict:
        value *= 0.5  # a recorded sex that differs is strong counter-evidence
    return round(min(value, 1.0), 4), [r for r in reasons if r]


def match_grade(value: float, thresholds: Thresholds = Thresholds()) -> str:
    """The FHIR ``match-grade`` code for a score."""
    if value >= thresholds.auto_link:
        return "certain"
    if value >= thresholds.review:
        return "probable"
    if value >= thresholds.review / 2:
        return "possible"
    return "certainly-not"


def match_bundle(
    candidates: Iterable[tuple[dict[str, Any], float]],
    *,
    thresholds: Thresholds = Thresholds(),
    base_url: str = "",
    count: int | None = None,
) -> dict[str, Any]:
    """A ``Patient/$match`` result: searchset Bundle, best first, ``search.score`` and match grade."""
    ranked = sorted(candidates, key=lambda c: (-c[1], c[0].get("id", "")))
    if count is not None:
        ranked = ranked[:count]
    entries = []
    for patient, value in ranked:
        entries.append(
            {
                "fullUrl": f"{base_url.rstrip('/')}/Patient/{patient.get('id')}".lstrip("/"),
                "resource": patient,
                "search": {
                    "extension": [
                        {"url": MATCH_GRADE_URL, "valueCode": match_grade(value, thresholds)}
                    ],
                    "mode": "match",
                    "score": value,
                },
            }
        )
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}


# ---------------------------------------------------------------------------
# Fields
# ---------------------------------------------------------------------------


def _resident_id(p: dict[str, Any]) -> str | None:
    for ident in p.get("identifier", []):
        if ident.get("system") == RESIDENT_ID_SYSTEM and ident.get("value"):
            try:
                return resident_id.normalise(ident["value"])
            except resident_id.InvalidResidentId:
                return None  # a number failing its checksum is never linked on
    return None


def _names(p: dict[str, Any]) -> list[str]:
    out = []
    for name in p.get("name", []):
        if name.get("text"):
            out.append(name["text"])
        parts = [name.get("family") or ""] + list(name.get("given") or [])
        joined = ("" if is_chinese("".join(parts)) else " ").join(x for x in parts if x)
        if joined.strip():
            out.append(joined)
    return out


def _compact(text: str) -> str:
    return re.sub(r"[\s·•・]", "", unicodedata.normalize("NFKC", text)).lower()


def _name_score(names_a: list[str], names_b: list[str]) -> tuple[float, str]:
    if not names_a or not names_b:
        return 0.0, "name missing"
    best, why = 0.0, "different names"
    for x in names_a:
        for y in names_b:
            if _compact(x) == _compact(y):
                return 1.0, "same name"
            if pinyin_keys(x) & pinyin_keys(y):
                if is_chinese(x) and is_chinese(y):
                    # Same sounds, different characters: 张伟 / 章伟 (typed by sound).
                    best, why = max((best, why), (0.8, "homophone names"))
                else:
                    best, why = max((best, why), (0.9, "same name in pinyin"))
            elif _near_pinyin(x, y):
                best, why = max((best, why), (0.6, "similar name in pinyin"))
    return best, why


def _near_pinyin(x: str, y: str) -> bool:
    # One syllable differing (a mistyped given name) with the surname kept.
    a, b = pinyin_syllables(x), pinyin_syllables(y)
    if len(a) != len(b) or len(a) < 2 or a[0] != b[0]:
        return False
    return sum(s != t for s, t in zip(a, b, strict=True)) == 1


def _birth_score(a: str | None, b: str | None) -> tuple[float, str]:
    if not a or not b:
        return 0.0, "birth date missing"
    a, b = a[:10], b[:10]
    if a == b:
        return 1.0, "same birth date"
    if len(a) == len(b) == 10:
        ya, ma, da = a.split("-")
        yb, mb, db = b.split("-")
        if ya == yb and (ma, da) == (db, mb):
            return 0.6, "birth date with day and month swapped"
        if ya == yb and ma == mb:
            return 0.5, "same birth year and month"
        if (ma, da) == (mb, db) and abs(int(ya) - int(yb)) == 1:
            return 0.4, "birth date one year apart"
    return 0.0, "different birth dates"


def _phones(p: dict[str, Any]) -> set[str]:
    out = set()
    for t in p.get("telecom", []):
        if t.get("system") in (None, "phone", "sms") and t.get("value"):
            digits = re.sub(r"\D", "", t["value"])
            if digits.startswith("86") and len(digits) == 13:
                digits = digits[2:]
            if len(digits) >= 7:
                out.add(digits)
    return out


def _addresses(p: dict[str, Any]) -> list[str]:
    out = []
    for addr in p.get("address", []):
        text = addr.get("text") or "".join(
            [addr.get("state") or "", addr.get("city") or "", addr.get("district") or ""]
            + list(addr.get("line") or [])
        )
        if text:
            out.append(_compact(text))
    return out


def _bigrams(text: str) -> set[str]:
    return {text[i : i + 2] for i in range(len(text) - 1)} or {text}


def _address_score(a: list[str], b: list[str]) -> tuple[float, str | None]:
    if not a or not b:
        return 0.0, None
    best = 0.0
    for x in a:
        for y in b:
            if x == y:
                return 1.0, "same address"
            bx, by = _bigrams(x), _bigrams(y)
            best = max(best, len(bx & by) / len(bx | by))
    if best >= 0.5:
        return best, f"similar address ({best:.2f})"
    return 0.0, "different addresses"
