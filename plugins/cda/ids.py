"""Deterministic resource ids, so that a re-sent or replaced document updates in place.

Extracted resources: ``(site, resource type, document key, position)``, where the
document key is the ``setId`` when the document has one (every version of a
document then writes the same resources) and otherwise the document ``id``, and
the position is the data element (or entry kind) and its occurrence number in
the document (``DE04.10.188.00#1``), which survives re-ordered sections.
The Patient's id is the hub's keyed hash of the resident ID number
(:func:`hub.identity.ids.patient_id_for_resident_id`), so every source that knows
the person writes the same Patient. Without a resident ID number it falls back
to a site-scoped identifier (health-record number, outpatient number...).
"""

from __future__ import annotations

from hub.plugin_api import patient_id_for_resident_id
from hub.plugin_api import stable_id


def resource_id(*parts: str) -> str:
    """A stable FHIR id from the parts that identify a resource's source."""
    return stable_id("cda", *(str(p) for p in parts))


def patient_id(system: str, value: str, site: str | None = None) -> str:
    """The Patient id: the hub's resident-ID id, else scoped by site and identifier."""
    from fhirhub_plugins.cda.vocab import OID_RESIDENT_ID

    if system.endswith(OID_RESIDENT_ID):
        return patient_id_for_resident_id(value)
    return resource_id(site or "", "Patient", system, value)


def organization_id(system: str, value: str) -> str:
    """Institutions are the same everywhere: no site in the key."""
    return resource_id("Organization", system, value)


def practitioner_id(system: str, value: str) -> str:
    return resource_id("Practitioner", system, value)


def extracted_id(site: str, resource_type: str, document_key: str, position: str) -> str:
    return resource_id(site, resource_type, document_key, position)


def document_reference_id(site: str, document_id: str) -> str:
    """One DocumentReference per document *version* (the id, not the setId)."""
    return resource_id(site, "DocumentReference", document_id)
