"""Small value checks the validator uses: patterns, dates, ValueSet membership, references."""

from __future__ import annotations

import calendar
import re
from decimal import Decimal
from typing import Any

_DATE_PARTS = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
_INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt"})


def matches_pattern(value: Any, pattern: Any) -> bool:
    """Whether ``value`` contains ``pattern`` (FHIR pattern[x] semantics; lists: every pattern
    item matched by some value item)."""
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return False
        return all(k in value and matches_pattern(value[k], v) for k, v in pattern.items())
    if isinstance(pattern, list):
        if not isinstance(value, list):
            value = [value]
        return all(any(matches_pattern(v, p) for v in value) for p in pattern)
    if isinstance(value, list):
        return any(matches_pattern(v, pattern) for v in value)
    return value == pattern


def real_date(text: str) -> bool:
    """Whether the date part of a date/dateTime/instant names a day that exists."""
    m = _DATE_PARTS.match(text)
    if not m or not m.group(3):
        return True
    year, month, day = m.groups()
    month, day = int(month), int(day)
    if not 1 <= month <= 12:
        return False
    # the days of the month as calendar.monthrange gives them, without its weekday work
    return 1 <= day <= calendar.mdays[month] + (month == 2 and calendar.isleap(int(year)))


def less_than(a, b) -> bool:
    """``a < b``, false when the two cannot be compared."""
    try:
        return a < b
    except TypeError:
        return False


def json_kind(type_code: str) -> str:
    """The JSON kind a primitive type needs, for messages."""
    if type_code == "boolean":
        return "boolean (true/false)"
    if type_code in _INTEGER_TYPES or type_code == "decimal":
        return "number"
    return "string"


def json_name(value: Any) -> str:
    """The JSON kind of ``value``, for messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float, Decimal)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null"


def short(value: Any) -> str:
    """A value shown in a message, clipped."""
    text = repr(value)
    return text if len(text) < 120 else text[:117] + "..."


def clip(text: str) -> str:
    """A string shown in a message, clipped."""
    return text if len(text) < 60 else text[:57] + "..."


def in_expansion(exp: dict, system: str | None, code: str) -> bool | None:
    """True/False, or None when the answer is unknown (system not held)."""
    if system is None:
        unknown = False
        for codes in exp.values():
            if codes is None:
                unknown = True
            elif code in codes:
                return True
        return None if unknown else False
    if system not in exp:
        return False
    codes = exp[system]
    if codes is None:
        return None
    return code in codes


def literal_type(ref: str) -> str | None:
    """The resource type a literal reference names (``Patient/1`` -> ``Patient``)."""
    parts = ref.split("?")[0].split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and re.fullmatch(r"[A-Z][A-Za-z]+", parts[-2]):
        return parts[-2]
    return None


def resolve_in_bundle(ref: str, root: Any) -> dict | None:
    """The entry resource of the enclosing Bundle that ``ref`` points to, if any.

    By fullUrl, then by type and id; last, an entry with the same id but another type (the
    reference then names the wrong type, which the caller reports).
    """
    if not isinstance(root, dict) or root.get("resourceType") != "Bundle":
        return None
    entries = [e for e in root.get("entry", ()) if isinstance(e, dict)]
    resources = [e.get("resource") for e in entries if isinstance(e.get("resource"), dict)]
    for e in entries:
        full = str(e.get("fullUrl", ""))
        if isinstance(e.get("resource"), dict) and (full == ref or full.endswith("/" + ref)):
            return e["resource"]
    for res in resources:
        if f"{res.get('resourceType')}/{res.get('id')}" == ref:
            return res
    if literal_type(ref):
        rid = ref.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        for res in resources:
            if res.get("id") == rid:
                return res
        for e in entries:
            if e.get("fullUrl") == "urn:uuid:" + rid and isinstance(e.get("resource"), dict):
                return e["resource"]
    return None
