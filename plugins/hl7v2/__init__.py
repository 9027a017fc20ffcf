"""The hospital HIS adapter: HL7 v2.x <-> FHIR R4 (hookimpls only).

Public entry points for the ingestion pipeline and the MLLP listener:
``parse_message`` and ``message_key`` (:mod:`.parse`), ``route`` (below),
``convert`` (parse + map, for tools and tests), ``MLLPServer``, ``send`` and
``make_ack`` (:mod:`.mllp`). See README.md for the events supported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fhirhub_plugins.hl7v2.messages import MESSAGES
from fhirhub_plugins.hl7v2.messages import to_bundle
from fhirhub_plugins.hl7v2.parse import Message
from fhirhub_plugins.hl7v2.parse import looks_like_hl7
from fhirhub_plugins.hl7v2.parse import message_key
from fhirhub_plugins.hl7v2.parse import parse_message
from hub import hookimpl
from hub.mapping import MappingContext

FORMAT = "hl7v2"
CONTENT_TYPE = "application/hl7-v2"

__all__ = ["MESSAGES", "convert", "message_key", "parse_message", "route"]


def route(message: Message, sites: dict[str, Any] | list[Any]) -> Any | None:
    """The site whose ``match`` names this message's MSH-3 / MSH-4, or ``None``.

    A site naming both keys wins over one naming only MSH-4 or MSH-3.
    """
    candidates = sites.values() if isinstance(sites, dict) else sites
    found = [
        s
        for s in candidates
        if getattr(s, "adapter", None) == FORMAT
        and s.accepts(message.sending_application, message.sending_facility)
    ]
    found.sort(key=lambda s: -sum(1 for v in (s.match or {}).values() if v))
    return found[0] if found else None


def convert(body: bytes, site: Any, code_maps: dict | None = None) -> tuple[dict, list[dict]]:
    """Parse and map one message for ``site``; returns (Bundle, issues)."""
    if code_maps is None:
        from hub.mapping import load_code_maps
        from hub.paths import MAPPINGS_DIR

        code_maps = load_code_maps([MAPPINGS_DIR])
    context = MappingContext(site, code_maps)
    msg = parse_message(body, site)
    return to_bundle(msg, site, context), context.issues


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
def map_inbound(message, context: MappingContext) -> dict | None:
    if message.format != FORMAT:
        return None
    msg = parse_message(message.body, message.site)
    return to_bundle(msg, message.site, context)


@hookimpl
def map_outbound(resource: dict, event: str, site: Any, context: MappingContext) -> list | None:
    if getattr(site, "adapter", None) != FORMAT:
        return None
    from fhirhub_plugins.hl7v2.from_fhir import outbound_messages

    return outbound_messages(resource, event, site, context)


@hookimpl
def register_code_maps() -> list | None:
    """The adapter's code maps live in the project's ``mappings/hl7v2`` (read by the hub)."""
    here = Path(__file__).resolve().parent / "mappings"
    return [here] if here.is_dir() else None
