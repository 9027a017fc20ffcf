"""Hardened reading of CDA bytes: encoding, limits, no DTDs, no entities, no network.

The county platform's documents are never trusted (DOMAIN §10.2). A document is
refused before lxml sees it when it declares a DTD or an entity (XXE, "billion
laughs"), is larger than the size limit, or is not decodable in the encoding its
XML prolog declares. lxml itself runs with entity resolution, DTD loading and
network access switched off, and the element tree's depth is bounded.
"""

from __future__ import annotations

import re

from lxml import etree

from hub.plugin_api import OperationOutcomeError
from hub.plugin_api import issue
from hub.plugin_api import outcome

V3 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
NS = {"v3": V3, "xsi": XSI}

MAX_BYTES = 5 * 1024 * 1024  # a WS/T 483 document is 10-200 KB; 5 MB leaves room for narrative
MAX_DEPTH = 40  # CDA nests about 15 levels deep (entryRelationship chains add a few)
MAX_ELEMENTS = 200_000

# Encodings the platform uses (GB 18030 is a superset of GBK and GB 2312).
_CODECS = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "gb18030": "gb18030",
    "gbk": "gb18030",
    "gb2312": "gb18030",
    "cp936": "gb18030",
}
_PROLOG = re.compile(rb"^<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"'][^>]*\?>")
_PROLOG_ANY = re.compile(r"^\s*<\?xml[^>]*\?>")
_FORBIDDEN = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)

_PARSER = etree.XMLParser(
    resolve_entities=False,
    load_dtd=False,
    dtd_validation=False,
    no_network=True,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
    collect_ids=False,
)


def _reject(code: str, text: str, where: str = "ClinicalDocument", status: int = 400):
    return OperationOutcomeError(outcome(issue("error", code, text, where)), status)


def declared_encoding(body: bytes) -> str:
    """The codec named by the XML prolog (UTF-8 when none is declared)."""
    head = body[:200].lstrip(b"\xef\xbb\xbf")
    match = _PROLOG.match(head)
    if not match:
        return "utf-8"
    name = match.group(1).decode("ascii").lower()
    if name not in _CODECS:
        raise _reject(
            "not-supported",
            f"XML encoding {name!r} is not accepted (UTF-8 or GB18030)",
            "xml-prolog",
        )
    return _CODECS[name]


def decode(body: bytes) -> tuple[str, str]:
    """``(text, codec)``: the document decoded with the encoding its prolog declares.

    Bytes that contradict the declaration (GB18030 bytes labelled UTF-8) are
    refused: storing mojibake would corrupt the legal record's extract.
    """
    if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise _reject(
            "not-supported", "UTF-16 documents are not accepted (UTF-8 or GB18030)", "xml-prolog"
        )
    codec = declared_encoding(body)
    raw = body[3:] if body.startswith(b"\xef\xbb\xbf") else body
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError as exc:
        raise _reject(
            "invalid",
            f"document bytes are not valid {codec.upper()} as its XML prolog declares (byte {exc.start})",
            "xml-prolog",
        ) from None
    return text, codec


def parse(body: bytes, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> etree._Element:
    """Parse CDA bytes into the ``ClinicalDocument`` element, or raise an outcome (4xx)."""
    if not body or not body.strip():
        raise _reject("required", "empty document")
    if len(body) > max_bytes:
        raise _reject(
            "too-costly", f"document is {len(body)} bytes; the limit is {max_bytes}", status=413
        )
    if _FORBIDDEN.search(body):
        # A DTD can declare entities (XXE, exponential expansion); CDA never needs one.
        raise _reject(
            "security",
            "documents with a DOCTYPE or ENTITY declaration are refused",
            "xml-prolog",
            400,
        )
    text, _codec = decode(body)
    text = _PROLOG_ANY.sub("", text, count=1)
    try:
        root = etree.fromstring(text, _PARSER)
    except etree.XMLSyntaxError as exc:
        line = getattr(exc, "lineno", None)
        raise _reject(
            "structure",
            f"not well-formed XML: {exc.msg}",
            f"line {line}" if line else "ClinicalDocument",
        ) from None
    if etree.QName(root).namespace != V3 or etree.QName(root).localname != "ClinicalDocument":
        raise _reject(
            "structure",
            "root element must be ClinicalDocument in the namespace urn:hl7-org:v3",
            "/",
        )
    _check_shape(root, max_depth)
    return root


def _check_shape(root: etree._Element, max_depth: int) -> None:
    count = 0
    stack = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        count += 1
        if depth > max_depth:
            raise _reject(
                "too-costly", f"document nests deeper than {max_depth} elements", status=413
            )
        if count > MAX_ELEMENTS:
            raise _reject(
                "too-costly", f"document has more than {MAX_ELEMENTS} elements", status=413
            )
        for child in element:
            if isinstance(child.tag, str):
                stack.append((child, depth + 1))


def looks_like_cda(body: bytes) -> bool:
    """Cheap sniff for ``detect_format``: a ClinicalDocument root in the v3 namespace."""
    head = body[:2048]
    return b"ClinicalDocument" in head and b"urn:hl7-org:v3" in head


_DOC_ID = re.compile(rb"<id\b[^>]*?\bextension\s*=\s*[\"']([^\"'<>]{1,128})[\"']")


def document_key(body: bytes) -> str | None:
    """The first ``id/@extension`` of the header (the document serial), cheaply; ``None`` if absent.

    Never raises: it runs on every payload before anything is parsed.
    """
    if not looks_like_cda(body):
        return None
    match = _DOC_ID.search(body[:8192])
    if not match:
        return None
    try:
        return match.group(1).decode("ascii")
    except UnicodeDecodeError:
        return None
