"""County health-information platform adapter: HL7 CDA R2 shared documents.

WS/T 483 health-record documents and WS/T 500 EMR documents, inbound (document
-> FHIR transaction Bundle) and outbound (FHIR resources -> document), plus the
platform's family-doctor contract export. The hookimpls below only dispatch;
see README.md in this folder for the mapping tables.
"""

from __future__ import annotations

from hub.plugin_api import hookimpl

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
    """``cda`` documents, and the contract CSV (format ``cda-contracts``, or recognised by
    its header when it arrives through a site whose format is ``cda``)."""
    if message.format not in (FORMAT, CONTRACT_FORMAT):
        return None
    from fhirhub_plugins.cda import contracts

    if message.format == CONTRACT_FORMAT or contracts.looks_like_contracts(message.body):
        return contracts.contracts_bundle(message.body, context, message.site)
    from fhirhub_plugins.cda import to_fhir

    return to_fhir.document_bundle(message.body, context, message.site)


@hookimpl
def source_key(fmt: str, body: bytes, site) -> str | None:
    """The document serial (``ClinicalDocument/id/@extension``) of a CDA payload."""
    if fmt not in (FORMAT, CONTRACT_FORMAT):
        return None
    from fhirhub_plugins.cda import parse

    return parse.document_key(body)


@hookimpl
def map_outbound(resource: dict, event: str, site, context) -> list | None:
    if getattr(site, "adapter", None) != FORMAT:
        return None
    from fhirhub_plugins.cda import from_fhir

    return from_fhir.outbound_messages(resource, event, site, context)


@hookimpl
def is_stale(incoming: dict, stored: dict) -> bool:
    """An older document version (or an older document) does not overwrite a newer one."""
    from fhirhub_plugins.cda.ordering import is_stale as older

    return older(incoming, stored)


@hookimpl
def register_operations() -> list:
    """``Patient/{id}/$cda-document``: documents from the lifetime file, for download or upload."""
    from fhirhub_plugins.cda.operation import OPERATION

    return [OPERATION]


@hookimpl
def register_adapters() -> list:
    """The ``cda`` adapter: WS/T 483/500 documents, one per file (no example case)."""
    from hub.plugin_api import Adapter

    return [Adapter(name="cda", format=FORMAT, input_extension="xml")]
