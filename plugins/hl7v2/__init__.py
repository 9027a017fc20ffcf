"""The hospital HIS adapter: HL7 v2.x <-> FHIR R4 (hookimpls only).

Public entry points for the ingestion pipeline and the MLLP listener:
``parse_message``, ``read_header``, ``Limits`` and ``message_key`` (:mod:`.parse`), ``route`` and
``convert`` (:mod:`.api`), ``MLLPServer``, ``send`` and ``make_ack``
(:mod:`.mllp`); the MLLP listener (:mod:`.listener`) and its commands ``hub mllp
serve``/``hub mllp send`` (:mod:`.cli`). See README.md for the events supported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

from fhirhub_plugins.hl7v2.api import CONTENT_TYPE
from fhirhub_plugins.hl7v2.api import FORMAT
from fhirhub_plugins.hl7v2.api import convert
from fhirhub_plugins.hl7v2.api import route
from fhirhub_plugins.hl7v2.messages import MESSAGES
from fhirhub_plugins.hl7v2.messages import to_bundle
from fhirhub_plugins.hl7v2.mllp import MLLPServer
from fhirhub_plugins.hl7v2.mllp import make_ack
from fhirhub_plugins.hl7v2.mllp import send
from fhirhub_plugins.hl7v2.parse import Limits
from fhirhub_plugins.hl7v2.parse import Message
from fhirhub_plugins.hl7v2.parse import looks_like_hl7
from fhirhub_plugins.hl7v2.parse import message_key
from fhirhub_plugins.hl7v2.parse import parse_message
from fhirhub_plugins.hl7v2.parse import read_header
from hub.plugin_api import MappingContext
from hub.plugin_api import hookimpl

if TYPE_CHECKING:
    from hub.plugin_api import Site

__all__ = [
    "MESSAGES",
    "Limits",
    "MLLPServer",
    "convert",
    "make_ack",
    "message_key",
    "parse_message",
    "read_header",
    "route",
    "send",
]


@hookimpl
def detect_format(body: bytes, content_type: str | None) -> str | None:
    """``hl7v2`` for ``application/hl7-v2`` or a payload starting with MSH."""
    if content_type and content_type.split(";")[0].strip().lower() in (
        CONTENT_TYPE,
        "x-application/hl7-v2+er7",
    ):
        return FORMAT
    return FORMAT if looks_like_hl7(body) else None


@hookimpl
def source_key(fmt: str, body: bytes, site: Site) -> str | None:
    """MSH-10, read straight from the first segment (no full parse)."""
    if fmt != FORMAT:
        return None
    header = read_header(body)
    key = (header.get(10) or "").strip() if header else ""
    return key or None


# Named apart from the ``parse`` submodule, which this package's attribute must stay.
@hookimpl(specname="parse")
def parse_payload(fmt: str, body: bytes, site: Site, settings: Any) -> Message | None:
    """The one parse of a message (``parse`` hook): its site's character set, the hub's limits."""
    if fmt != FORMAT:
        return None
    return parse_message(body, site, Limits.from_settings(settings or {}))


@hookimpl
def map_inbound(message, context: MappingContext) -> dict | None:
    if message.format != FORMAT:
        return None
    msg = message.parsed
    if not isinstance(msg, Message):  # parsed by the ``parse`` hook or the MLLP listener
        msg = parse_message(message.body, message.site, Limits.from_settings(context.settings))
    for text, location in msg.warnings:
        context.warn(text, location, code="code-invalid")
    return to_bundle(msg, message.site, context)


@hookimpl
def map_outbound(resource: dict, event: str, site: Site, context: MappingContext) -> list | None:
    """Patient -> ADT^A31, results -> ORU^R01; a veteran's entitlement -> the green
    channel's ADT^A31 (:mod:`.entitlement`), never an ORU."""
    if getattr(site, "adapter", None) != FORMAT:
        return None
    from fhirhub_plugins.hl7v2 import entitlement

    # What was an entitlement (deleted, or re-coded) is asked about only for Observations.
    if entitlement.is_entitlement(resource) or (
        resource.get("resourceType") == "Observation"
        and entitlement.is_entitlement(getattr(context, "previous", None))
    ):
        return entitlement.entitlement_messages(resource, event, site, context)
    from fhirhub_plugins.hl7v2.from_fhir import outbound_messages

    return outbound_messages(resource, event, site, context)


@hookimpl
def send_outbound(
    site: Site, body: bytes, content_type: str | None, timeout: float
) -> bytes | None:
    """``kind: mllp``: send to ``host``/``port``; a negative ACK raises ``ValueError``."""
    out = getattr(site, "outbound", None) or {}
    if out.get("kind") != "mllp":
        return None
    from fhirhub_plugins.hl7v2.mllp import send_acknowledged

    return send_acknowledged(out["host"], int(out["port"]), body, timeout=timeout)


@hookimpl
def register_cli_commands() -> list:
    from fhirhub_plugins.hl7v2.cli import COMMANDS

    return COMMANDS


@hookimpl
def register_adapters() -> list:
    from fhirhub_plugins.hl7v2.scaffold import ADAPTER

    return [ADAPTER]
