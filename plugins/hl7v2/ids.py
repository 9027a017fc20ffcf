"""Deterministic resource ids from source identifiers.

An id is a UUID v5 of ``(site, resource type, source key)``, so that a
re-delivered or replayed message produces the same ids and its ``PUT``
entries update instead of duplicating (DESIGN decision 4). Keys name the
identifier's authority where the source gives one, because MRNs and visit
numbers are only unique within their hospital. When a segment carries no
identifier the key falls back to the message control id (MSH-10) and the
segment's position, so two segments never collide.
"""

from __future__ import annotations

import uuid

# Fixed namespace for every id the HL7 v2 adapter mints; never change it.
NAMESPACE = uuid.UUID("8d3f4a0e-6c1b-5b8e-9a55-0f3b2e7c9d41")


def resource_id(site: str, resource_type: str, *key: str | None) -> str:
    """``uuid5(NAMESPACE, "site|Type|key...")`` as a FHIR id."""
    text = "|".join([site, resource_type, *[k or "" for k in key]])
    return str(uuid.uuid5(NAMESPACE, text))


def patient_key(mrn: tuple[str, str] | None, resident_id: str | None, fallback: str) -> str:
    """The identity a Patient id derives from: MRN (authority, value), else the ID number."""
    if mrn:
        return f"mrn:{mrn[0]}:{mrn[1]}"
    if resident_id:
        return f"rid:{resident_id}"
    return f"msg:{fallback}"


def visit_key(authority: str, visit_number: str | None, fallback: str) -> str:
    """The identity of an Encounter: PV1-19 visit number within its authority."""
    if visit_number:
        return f"visit:{authority}:{visit_number}"
    return f"msg:{fallback}"


def order_key(filler: str | None, placer: str | None, fallback: str) -> str:
    """The identity of a DiagnosticReport: OBR-3 filler number, else OBR-2 placer number."""
    if filler:
        return f"filler:{filler}"
    if placer:
        return f"placer:{placer}"
    return f"msg:{fallback}"
