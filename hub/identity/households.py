"""The 17-digit health-record number and household and village Groups.

``CCCCCC TTT VVV NNNNN`` (DOMAIN 2.1): county (GB/T 2260), township or street,
residents' or village committee, personal sequence. The first 12 digits are
the village's statistical division code, the natural key of "一村一卷" (one
volume per village). The number has no household part, so "一户一档" (one
file per household) is keyed by a household number the creating system
assigns, carried as a Patient identifier of system
``urn:fhirhub:identifier:household-number``.

Pure: Patient dicts in, Group dicts out (``type`` person, ``actual`` true,
members sorted, deterministic ids).
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from hub import codesystems as cs
from hub.identity import HEALTH_RECORD_SYSTEM
from hub.identity import is_current
from hub.identity.ids import stable_id

_SHAPE = re.compile(r"^\d{17}$")


class InvalidHealthRecordNumber(ValueError):
    """Not a 17-digit health-record number."""


@dataclasses.dataclass(frozen=True)
class HealthRecordNumber:
    value: str
    county: str  # 6 digits
    township: str  # 3 digits
    village: str  # 3 digits: 001-099 residents' committee, 101-199 village, 901-999 other
    sequence: str  # 5 digits

    @property
    def village_code(self) -> str:
        """The 12-digit statistical division code of the village (一村一卷 key)."""
        return self.value[:12]

    @property
    def township_code(self) -> str:
        return self.value[:9]

    @property
    def committee_kind(self) -> str:
        """``residents`` (001-099), ``village`` (101-199) or ``other``."""
        n = int(self.village)
        if 1 <= n <= 99:
            return "residents"
        if 101 <= n <= 199:
            return "village"
        return "other"


def parse_record_number(value: str) -> HealthRecordNumber:
    """Split a health-record number; full-width digits and spaces are tolerated."""
    text = re.sub(r"\s", "", str(value or "")).translate(_FULLWIDTH)
    if not _SHAPE.match(text):
        raise InvalidHealthRecordNumber(
            f"a health-record number has 17 digits (county 6, township 3, village 3, sequence 5); "
            f"got {len(text)} characters"
        )
    if text[9:12] == "000":
        raise InvalidHealthRecordNumber("the village part of a health-record number is 000")
    return HealthRecordNumber(text, text[:6], text[6:9], text[9:12], text[12:])


def record_number_of(patient: dict[str, Any]) -> HealthRecordNumber | None:
    """The Patient's current health-record number, or ``None`` (absent or malformed)."""
    for ident in patient.get("identifier", []):
        if ident.get("system") == HEALTH_RECORD_SYSTEM and ident.get("value") and is_current(ident):
            try:
                return parse_record_number(ident["value"])
            except InvalidHealthRecordNumber:
                return None
    return None


def household_number_of(patient: dict[str, Any]) -> str | None:
    for ident in patient.get("identifier", []):
        if ident.get("system") == cs.HOUSEHOLD_NUMBER and ident.get("value"):
            return str(ident["value"]).strip()
    return None


def village_groups(
    resources: Iterable[dict[str, Any]], names: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """One Group per village (12-digit code) of the Patients' health-record numbers.

    :param names: optional village names by 12-digit code (from the division table).
    """
    members: dict[str, set[str]] = defaultdict(set)
    for res in resources:
        if res.get("resourceType") == "Patient" and res.get("active", True):
            number = record_number_of(res)
            if number:
                members[number.village_code].add(res["id"])
    return [
        _group("village", code, members[code], (names or {}).get(code), cs.VILLAGE_DIVISION)
        for code in sorted(members)
    ]


def household_groups(resources: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One Group per household number carried by the Patients."""
    members: dict[str, set[str]] = defaultdict(set)
    for res in resources:
        if res.get("resourceType") == "Patient" and res.get("active", True):
            number = household_number_of(res)
            if number:
                members[number].add(res["id"])
    return [
        _group("household", key, members[key], None, cs.HOUSEHOLD_NUMBER) for key in sorted(members)
    ]


def _group(kind: str, key: str, ids: set[str], name: str | None, system: str) -> dict[str, Any]:
    group: dict[str, Any] = {
        "resourceType": "Group",
        "id": stable_id(kind, key),
        "identifier": [{"system": system, "value": key}],
        "type": "person",
        "actual": True,
        "code": {"coding": [{"system": cs.GROUP_KIND, "code": kind}]},
    }
    if name:
        group["name"] = name
    group["quantity"] = len(ids)
    group["member"] = [{"entity": {"reference": f"Patient/{pid}"}} for pid in sorted(ids)]
    return group


_FULLWIDTH = str.maketrans("０１２３４５６７８９", "0123456789")
