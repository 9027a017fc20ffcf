"""FHIR JSON and XML on the wire: parsing request bodies, choosing and rendering formats.

JSON goes through orjson. XML is parsed with a hardened lxml parser (no DTD,
no entities, no network, bounded depth) and converted through the
fhir.resources models, which know FHIR's XML rules (arrays, ``value``
attributes, the xhtml narrative).
"""

from __future__ import annotations

from typing import Any

import orjson
from lxml import etree

from hub import outcomes
from hub.fhir.limits import DEFAULT_LIMITS
from hub.fhir.limits import Limits
from hub.fhir.limits import check as check_limits

JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir", "text/json")
XML_TYPES = ("application/fhir+xml", "application/xml", "application/xml+fhir", "text/xml")
FORMAT_ALIASES = {
    "json": "json",
    "application/json": "json",
    "application/fhir+json": "json",
    "application/json+fhir": "json",
    "xml": "xml",
    "text/xml": "xml",
    "application/xml": "xml",
    "application/fhir+xml": "xml",
    "application/xml+fhir": "xml",
    "html": "json",
    "text/html": "json",
}
MIME = {
    "json": "application/fhir+json; charset=utf-8",
    "xml": "application/fhir+xml; charset=utf-8",
}


def _hardened_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
    )


def parse_json(body: bytes, limits: Limits = DEFAULT_LIMITS) -> Any:
    """JSON text, parsed and held to ``limits`` (:mod:`hub.fhir.limits`)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise outcomes.error(
            400,
            "structure",
            f"The body is not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})",
        ) from None
    check_limits(data, limits, body)
    return data


def parse_xml_tree(body: bytes, max_depth: int = DEFAULT_LIMITS.max_depth) -> etree._Element:
    """Parse XML safely: DOCTYPEs and entity declarations are refused outright, and trees
    deeper than ``max_depth`` elements (before any recursive work on them)."""
    head = body[:4096].lower()
    if b"<!doctype" in head or b"<!entity" in body.lower():
        raise outcomes.error(
            400, "security", "XML with a DOCTYPE or entity declaration is not accepted"
        )
    try:
        root = etree.fromstring(body, parser=_hardened_parser())
    except etree.XMLSyntaxError as err:
        raise outcomes.error(400, "structure", f"The body is not well-formed XML: {err}") from None
    if root.getroottree().docinfo.doctype:
        raise outcomes.error(400, "security", "XML with a DOCTYPE is not accepted")
    if _deeper_than(root, max_depth):
        raise outcomes.error(400, "too-costly", f"XML nesting depth exceeds {max_depth}")
    return root


def _deeper_than(root: etree._Element, max_depth: int) -> bool:
    for el in root.iter():
        d = 0
        p = el
        while p is not None:
            p = p.getparent()
            d += 1
            if d > max_depth:
                return True
    return False


def xml_to_resource(body: bytes, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """A FHIR XML resource as a JSON-ready dict, converted by the R4 definitions.

    Unknown elements are kept, so that the structural check reports them with
    their location rather than the parser dropping them.
    """
    from hub.validation.validator import default_validator
    from hub.validation.xml import parse_xml

    root = parse_xml_tree(body, limits.max_depth)
    if etree.QName(root).namespace != "http://hl7.org/fhir":
        raise outcomes.error(
            400, "structure", "FHIR XML must be in the namespace http://hl7.org/fhir"
        )
    tag = etree.QName(root).localname
    from hub.validation.structure import known_type

    if not known_type(tag):
        raise outcomes.error(400, "not-supported", f"Unknown resource type {tag!r}", "resourceType")
    try:
        resource = _plain_numbers(parse_xml(etree.tostring(root), default_validator()))
    except (ValueError, KeyError, TypeError) as err:
        raise outcomes.error(
            400, "structure", f"Invalid FHIR XML for {tag}: {_short(err)}"
        ) from None
    check_limits(resource, limits)
    return resource


def _plain_numbers(node: Any) -> Any:
    """Decimals as JSON numbers (what the JSON path stores: orjson reads floats)."""
    from decimal import Decimal

    if isinstance(node, dict):
        return {k: _plain_numbers(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain_numbers(v) for v in node]
    if isinstance(node, Decimal):
        return (
            int(node) if node == node.to_integral_value() and "." not in str(node) else float(node)
        )
    return node


def resource_to_xml(resource: dict[str, Any], pretty: bool = False) -> bytes:
    from fhir.resources.R4B import get_fhir_model_class

    model = get_fhir_model_class(resource["resourceType"])
    obj = model.model_validate(resource)
    return obj.model_dump_xml(pretty_print=pretty) if pretty else obj.model_dump_xml()


def _short(err: Exception) -> str:
    text = str(err).replace("\n", " ")
    return text[:500]


def parse_body(
    body: bytes, content_type: str | None, limits: Limits = DEFAULT_LIMITS
) -> dict[str, Any]:
    """The request body as a resource dict, by its media type (JSON when unstated), held to
    ``limits`` (nesting depth, control characters, string length)."""
    mime = (content_type or "").split(";")[0].strip().lower()
    if not body or not body.strip():
        raise outcomes.bad_request("The request has no body")
    if mime in XML_TYPES:
        return xml_to_resource(body, limits)
    if mime and mime not in JSON_TYPES:
        raise outcomes.error(
            415,
            "not-supported",
            f"Unsupported media type {mime!r}; use application/fhir+json or application/fhir+xml",
        )
    data = parse_json(body, limits)
    if not isinstance(data, dict):
        raise outcomes.error(400, "structure", "The body must be a JSON object (a FHIR resource)")
    return data


def choose_format(format_param: str | None, accept: str | None) -> str:
    """``json`` or ``xml`` from ``_format``, else ``Accept``; JSON by default."""
    if format_param:
        fmt = FORMAT_ALIASES.get(format_param.split(";")[0].strip().lower())
        if fmt is None:
            raise outcomes.error(406, "not-supported", f"Unsupported _format {format_param!r}")
        return fmt
    if accept:
        for part in accept.split(","):
            mime = part.split(";")[0].strip().lower()
            if mime in FORMAT_ALIASES:
                return FORMAT_ALIASES[mime]
            if mime in ("*/*", "application/*", ""):
                return "json"
        raise outcomes.error(406, "not-supported", f"Cannot produce any of: {accept}")
    return "json"


def render(payload: dict[str, Any] | bytes | str, fmt: str, pretty: bool = False) -> bytes:
    """Serialise a resource (dict, or JSON already serialised) in ``fmt``."""
    if fmt == "xml":
        if isinstance(payload, (bytes, str)):
            payload = orjson.loads(payload)
        return resource_to_xml(payload, pretty)
    if isinstance(payload, str):
        payload = payload.encode()
    if isinstance(payload, bytes):
        if not pretty:
            return payload
        payload = orjson.loads(payload)
    return orjson.dumps(payload, option=orjson.OPT_INDENT_2 if pretty else 0)
