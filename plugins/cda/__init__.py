"""County health-information platform adapter: HL7 CDA R2 shared documents.

WS/T 483 health-record documents and WS/T 500 EMR documents, inbound (document
-> FHIR transaction Bundle) and outbound (FHIR resources -> document), plus the
platform's family-doctor contract export. The hookimpls below only dispatch;
see README.md in this folder for the mapping tables.
"""

from __future__ import annotations

from hub import hookimpl

FORMAT = "cda"
CONTRACT_FORMAT = "cda-contracts"


@hookimpl
def detect_format(body: bytes, content_type: str | None) -> str | None:
    """``cda`` for a ClinicalDocument in urn:hl7-org:v3; ``cda-contracts`` for the contract CSV."""
    from fhirhub_plugins.cda import contracts
    from fhirhub_plugins.cda import parse

    if parse.looks_like_cda(body):
        return FORMAT
    if contracts.looks_like_contracts(body):
        return CONTRACT_FORMAT
    return None


@hookimpl
def map_inbound(message, context) -> dict | None:
    if message.format == FORMAT:
        from fhirhub_plugins.cda import to_fhir

        return to_fhir.document_bundle(message.body, context, message.site)
    if message.format == CONTRACT_FORMAT:
        from fhirhub_plugins.cda import contracts

        return contracts.contracts_bundle(message.body, context, message.site)
    return None


@hookimpl
def map_outbound(resource: dict, event: str, site, context) -> list | None:
    if getattr(site, "adapter", None) != FORMAT:
        return None
    from fhirhub_plugins.cda import from_fhir

    return from_fhir.outbound_messages(resource, event, site, context)
