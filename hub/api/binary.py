"""Binary on the wire: raw uploads and downloads beside the FHIR wrapper (docs/binary.md).

``POST /fhir/Binary`` and ``PUT /fhir/Binary/{id}`` take any body: with a FHIR media type
(``application/fhir+json``/``+xml``), or generic JSON/XML holding a FHIR Binary, it is a
Binary resource; anything else (a PDF, a CDA document as ``application/xml``, an image) is
the content, its ``Content-Type`` the Binary's ``contentType`` (``X-Security-Context`` its
``securityContext``). Either way it is stored through the FHIR service as any write.

A read answers the raw bytes, with the stored media type, when the client accepts it
(``Accept`` of that type, ``type/*``, ``*/*`` or none); the FHIR resource, ``data`` inline,
when it asks for a FHIR format (``Accept`` or ``_format``).
"""

from __future__ import annotations

import base64
import re
from typing import Any

import orjson
from flask import Response
from flask import request

from hub import outcomes
from hub.api.context import get_hub
from hub.fhir import binaries
from hub.fhir import formats
from hub.fhir.service import Result

# The media types that always say "a FHIR resource" for a Binary; with application/json
# and application/xml the body decides (:func:`is_raw_upload`).
FHIR_TYPES = (
    "application/fhir+json",
    "application/fhir+xml",
    "application/json+fhir",
    "application/xml+fhir",
)
# Raw downloads never run in a browser's page context, whatever they hold.
RAW_HEADERS = {"Content-Security-Policy": "default-src 'none'; sandbox"}


def _mime(value: str | None) -> str:
    return (value or "").split(";")[0].strip().lower()


# A FHIR XML Binary's start (after an optional declaration and comments).
_FHIR_XML_BINARY = re.compile(rb"^\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<Binary[\s>]", re.S)


def is_raw_upload() -> bool:
    """Whether the body is the content (not a Binary resource).

    FHIR media types always carry a resource. Generic JSON and XML carry one only when the
    body is a FHIR Binary (FHIR clients such as fhirpy send ``application/json``); any other
    JSON or XML, a CDA document for one, is content.
    """
    mime = _mime(request.content_type)
    if mime in FHIR_TYPES:
        return False
    body = request.get_data(cache=True)
    if mime in formats.JSON_TYPES:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return True
        return not (isinstance(data, dict) and data.get("resourceType") == "Binary")
    if mime in formats.XML_TYPES:
        head = body[:2048]
        return not (_FHIR_XML_BINARY.match(head) and b"http://hl7.org/fhir" in head)
    return True


def raw_resource(res_id: str | None = None) -> dict[str, Any]:
    """The Binary resource of a raw upload (the body is the content)."""
    hub = get_hub()
    body = request.get_data(cache=True)
    binaries.check_size(len(body), hub.config, "Binary.data")
    if not body:
        raise outcomes.bad_request("The request has no body")
    content_type = (request.headers.get("Content-Type") or "").strip()
    content_type = binaries.check_media_type(content_type or "application/octet-stream")
    resource: dict[str, Any] = {"resourceType": "Binary", "contentType": content_type}
    if res_id is not None:
        resource["id"] = res_id
    context = request.headers.get("X-Security-Context")
    if context is not None:
        resource["securityContext"] = {"reference": context.strip()}
    resource["data"] = base64.b64encode(body).decode("ascii")
    return resource


def shown(result: Result) -> Result:
    """A write's result with the Binary as clients see it (``data`` inline)."""
    stored = result.stored
    if stored is None or not isinstance(result.body, str) or stored.content != result.body:
        return result
    resource = stored.resource()
    data = get_hub().service.binary_data(resource)
    return Result(result.status, binaries.with_data(resource, data), result.headers, stored)


def wants_raw(content_type: str) -> bool:
    """Raw bytes or the FHIR resource, by ``_format`` then ``Accept`` (406: neither)."""
    stored = _mime(content_type)
    param = request.args.get("_format")
    if param:
        return _mime(param) == stored
    accept = request.headers.get("Accept")
    if not accept or not accept.strip():
        return True
    parts = [_mime(p) for p in accept.split(",")]
    if any(p in FHIR_TYPES for p in parts):
        return False
    for mime in parts:
        if mime in (stored, "*/*", stored.split("/")[0] + "/*"):
            return True
    if any(p in formats.FORMAT_ALIASES for p in parts):
        return False
    shown_accept = accept[:200].encode("ascii", "backslashreplace").decode()
    raise outcomes.error(
        406,
        "not-supported",
        f"This Binary is {content_type}; cannot produce any of: {shown_accept}",
    )


def raw_response(result: Result, resource: dict[str, Any], data: bytes | None) -> Response:
    content_type = resource.get("contentType")
    if not isinstance(content_type, str) or not binaries.MEDIA_TYPE.match(content_type):
        content_type = "application/octet-stream"
    headers = {**result.headers, **RAW_HEADERS}
    return Response(data or b"", status=200, headers=headers, content_type=content_type)
