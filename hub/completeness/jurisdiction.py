"""Jurisdictions of a health record (DOMAIN 2.1).

The 17-digit health-record number (identifier system ``urn:oid:2.16.156.10011.1.2``)
is county (6) + township (3) + village (3) + sequence (5); its first 6, 9 and
12 digits name the county, township and village. The primary-care institution
is ``Patient.managingOrganization``. A jurisdiction is given as a 6-, 9- or
12-digit code, or as ``Organization/ID`` for an institution.
"""

from __future__ import annotations

import dataclasses
import re

from hub import outcomes
from hub.identity import HEALTH_RECORD_SYSTEM
from hub.identity import is_current

_RECORD_NO = re.compile(r"^\d{17}$")
_DIVISION = re.compile(r"^(\d{6}|\d{9}|\d{12})$")
LEVELS = {6: "county", 9: "township", 12: "village"}


@dataclasses.dataclass(frozen=True)
class Place:
    """Where a person's record belongs; empty strings when unknown."""

    record_no: str = ""
    county: str = ""
    township: str = ""
    village: str = ""
    organization: str = ""  # "Organization/ID"

    def codes(self) -> list[str]:
        """Every jurisdiction this record counts in, from county down to institution."""
        return [c for c in (self.county, self.township, self.village, self.organization) if c]

    def within(self, jurisdiction: str) -> bool:
        if not jurisdiction:
            return True
        if jurisdiction.startswith("Organization/"):
            return self.organization == jurisdiction
        return bool(self.record_no) and self.record_no.startswith(jurisdiction)


def place_of(patient: dict) -> Place:
    record_no = ""
    for ident in patient.get("identifier") or ():
        # Patient.identifier[system=health-record number].value (健康档案编号); the current
        # one: a number superseded by a move stays as history (use old), the new county's counts
        if (
            ident.get("system") == HEALTH_RECORD_SYSTEM
            and is_current(ident)
            and _RECORD_NO.match(str(ident.get("value", "")))
        ):
            record_no = ident["value"]
            break
    ref = (patient.get("managingOrganization") or {}).get("reference") or ""
    org = ref if ref.startswith("Organization/") else ""
    if not record_no:
        return Place(organization=org)
    return Place(record_no, record_no[:6], record_no[:9], record_no[:12], org)


def check(jurisdiction: str | None) -> str:
    """The normalised jurisdiction code; 400 for anything else ('' = everywhere)."""
    code = (jurisdiction or "").strip()
    if not code or _DIVISION.match(code):
        return code
    if code.startswith("Organization/") and len(code) > len("Organization/"):
        return code
    raise outcomes.bad_request(
        f"invalid jurisdiction {code!r}: give a 6-, 9- or 12-digit division code "
        "or Organization/ID",
        "jurisdiction",
    )


def level(code: str) -> str:
    if code.startswith("Organization/"):
        return "institution"
    return LEVELS.get(len(code), "all")


def parent(code: str) -> str:
    """The next jurisdiction up ('' above a county)."""
    return {12: code[:9], 9: code[:6]}.get(len(code), "")
