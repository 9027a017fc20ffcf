"""Deterministic resource ids, so that a re-sent or replaced document updates in place.

Extracted resources: ``(site, resource type, document key, position)``, where the
document key is the ``setId`` when the document has one (every version of a
document then writes the same resources) and otherwise the document ``id``.
The Patient's id depends on the resident ID number only, so every site that
knows the person writes the same Patient. Without a resident ID number it falls
back to a site-scoped identifier (health-record number, outpatient number...).
"""

from __future__ import annotations

import uuid

_NAMESPACE = uuid.UUID("6f1c1f4e-8f0b-5b5e-9a7e-2f0c6c1d0cda")


def resource_id(*parts: str) -> str:
    """A stable id (UUID 5) from the parts that identify a resource's source."""
    return str(uuid.uuid5(_NAMESPACE, "|".join(str(p) for p in parts)))


def patient_id(system: str, value: str, site: str | None = None) -> str:
    """The Patient id: global for the resident ID number, else scoped by site."""
    from fhirhub_plugins.cda.vocab import OID_RESIDENT_ID

    if system.endswith(OID_RESIDENT_ID):
        return resource_id("Patient", system, value)
    return resource_id(site or "", "Patient", system, value)


def organization_id(system: str, value: str) -> str:
    return resource_id("Organization", system, value)


def practitioner_id(system: str, value: str) -> str:
    return resource_id("Practitioner", system, value)


def extracted_id(site: str, resource_type: str, document_key: str, position: str) -> str:
    return resource_id(site, resource_type, document_key, position)


def document_reference_id(site: str, document_id: str) -> str:
    """One DocumentReference per document *version* (the id, not the setId)."""
    return resource_id(site, "DocumentReference", document_id)
