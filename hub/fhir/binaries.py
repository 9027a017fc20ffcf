"""Binary content in the one write path: bytes apart from the JSON, large attachments moved.

Every write of the :class:`hub.fhir.service.FhirService` passes its resource through
:func:`prepare` just before staging it (REST, transaction entries, ingested messages):

* a **Binary**'s ``data`` goes to the blob store (:mod:`hub.storage.blobs`, one row per
  distinct content) and the stored JSON keeps, in place of the base64, an extension on
  ``Binary.data`` naming the bytes' SHA-256. Searches, the index, history and ``$everything``
  read the JSON only, so a 20 MB PDF is never re-serialised into them; reads of the Binary
  itself join the bytes back (:func:`with_data`) or send them raw.
* a **DocumentReference** attachment whose ``data`` is larger than ``ATTACHMENT_INLINE_MAX``
  becomes a Binary of its own (``securityContext`` the DocumentReference, its security labels
  copied) and the attachment points at it (``url: Binary/{id}``, with ``size`` and ``hash``).
  The Binary's id is derived from the DocumentReference and the bytes, so a re-sent document
  writes nothing new.

Content larger than ``BINARY_MAX_SIZE`` is refused with a 413 (docs/binary.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from typing import TYPE_CHECKING
from typing import Any

from hub import codesystems as cs
from hub import outcomes
from hub.config import setting
from hub.storage import blobs

if TYPE_CHECKING:
    from hub.storage.repository import Writer

EXTENSION = cs.BINARY_CONTENT_EXTENSION
# Binary ids derived from (DocumentReference id, content) live in a namespace of their own.
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, EXTENSION)
# A media type (RFC 6838 names, optional parameters), as Binary.contentType must hold.
MEDIA_TYPE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
    r"(?: ?; ?[A-Za-z0-9!#$&^_.+-]+=(?:[A-Za-z0-9!#$&^_.+-]+|\"[^\"\\\x00-\x1f]*\"))*$"
)
MAX_MEDIA_TYPE = 255


def check_media_type(value: str, where: str = "Binary.contentType") -> str:
    """``value`` when it is a media type (400 otherwise: hostile headers are normal input)."""
    if len(value) > MAX_MEDIA_TYPE or not MEDIA_TYPE.match(value):
        shown = value[:80].encode("ascii", "backslashreplace").decode()
        raise outcomes.bad_request(f"{shown!r} is not a media type (type/subtype)", where)
    return value


def max_size(config: dict) -> int:
    return int(setting(config, "BINARY_MAX_SIZE"))


def check_size(size: int, config: dict, where: str) -> None:
    """413 when content of ``size`` bytes is larger than ``BINARY_MAX_SIZE``."""
    limit = max_size(config)
    if size > limit:
        raise outcomes.error(
            413, "too-costly", f"The content ({size} bytes) is larger than {limit} bytes", where
        )


def decode(data: Any, config: dict, where: str) -> bytes:
    """The bytes of a base64Binary value, held to ``BINARY_MAX_SIZE`` (checked before decoding)."""
    if not isinstance(data, str):
        raise outcomes.bad_request("base64Binary content must be a string", where)
    text = "".join(data.split())
    check_size(len(text) * 3 // 4 - text[-2:].count("="), config, where)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise outcomes.bad_request("The content is not valid base64", where) from None


def content_key(resource: dict[str, Any]) -> str | None:
    """The SHA-256 naming a stored Binary's bytes (``None``: a Binary without content)."""
    holder = resource.get("_data")
    if not isinstance(holder, dict):
        return None
    for ext in holder.get("extension") or ():
        if isinstance(ext, dict) and ext.get("url") == EXTENSION:
            value = ext.get("valueString")
            return value if isinstance(value, str) else None
    return None


def _named(holder: Any, key: str) -> dict[str, Any]:
    """``_data`` naming ``key``: the hub's extension replaces any given, others stay."""
    holder = dict(holder) if isinstance(holder, dict) else {}
    others = [
        e
        for e in holder.get("extension") or ()
        if not (isinstance(e, dict) and e.get("url") == EXTENSION)
    ]
    holder["extension"] = [*others, {"url": EXTENSION, "valueString": key}]
    return holder


def without_key(resource: dict[str, Any]) -> dict[str, Any]:
    """``resource`` without the hub's extension on ``Binary.data`` (what a client is shown)."""
    out = dict(resource)
    holder = out.pop("_data", None)
    if isinstance(holder, dict):
        others = [
            e
            for e in holder.get("extension") or ()
            if not (isinstance(e, dict) and e.get("url") == EXTENSION)
        ]
        rest = {k: v for k, v in holder.items() if k != "extension"}
        if others:
            rest["extension"] = others
        if rest:
            out["_data"] = rest
    return out


def with_data(resource: dict[str, Any], data: bytes | None) -> dict[str, Any]:
    """The Binary as FHIR shows it: ``data`` inline (base64), the hub's extension gone."""
    out = without_key(resource)
    if data is not None:
        out["data"] = base64.b64encode(data).decode("ascii")
    return out


def prepare(writer: Writer, resource: dict[str, Any], res_id: str, config: dict) -> dict[str, Any]:
    """The resource to stage for ``res_id``: Binary bytes stored apart, large attachments
    moved to Binaries. Returns a new dict when anything changed; the caller's is never
    modified (a retried unit of work starts again from it)."""
    kind = resource.get("resourceType")
    if kind == "Binary":
        return _store_binary(writer, resource, config)
    if kind == "DocumentReference":
        return _move_attachments(writer, resource, res_id, config)
    return resource


def _store_binary(writer: Writer, resource: dict[str, Any], config: dict) -> dict[str, Any]:
    if isinstance(resource.get("contentType"), str):
        check_media_type(resource["contentType"])
    if "data" not in resource:
        key = content_key(resource)
        # A Binary read from a Bundle and written back names its content: it must be here.
        if key is not None and not blobs.exists(writer.conn, key):
            raise outcomes.unprocessable(
                "Binary.data names content the hub does not hold", "Binary.data"
            )
        return resource
    out = dict(resource)
    raw = decode(out.pop("data"), config, "Binary.data")
    out["_data"] = _named(out.get("_data"), blobs.put(writer.conn, raw))
    return out


def _move_attachments(
    writer: Writer, resource: dict[str, Any], res_id: str, config: dict
) -> dict[str, Any]:
    contents = resource.get("content")
    if not isinstance(contents, list):
        return resource
    limit = int(setting(config, "ATTACHMENT_INLINE_MAX"))
    moved = list(contents)
    changed = False
    for i, content in enumerate(contents):
        attachment = content.get("attachment") if isinstance(content, dict) else None
        if not isinstance(attachment, dict) or not isinstance(attachment.get("data"), str):
            continue
        if len(attachment["data"]) * 3 // 4 <= limit:  # cannot hold more than the limit
            continue
        where = f"DocumentReference.content[{i}].attachment.data"
        raw = decode(attachment["data"], config, where)
        if len(raw) <= limit:
            continue
        binary_id = _binary_id(res_id, raw)
        binary: dict[str, Any] = {
            "resourceType": "Binary",
            "contentType": attachment.get("contentType") or "application/octet-stream",
            "securityContext": {"reference": f"DocumentReference/{res_id}"},
            "_data": _named(None, blobs.put(writer.conn, raw)),
        }
        labels = _security_labels(resource)
        if labels:
            binary["meta"] = {"security": labels}
        writer.update(binary, binary_id)  # the same bytes again: nothing is written
        new = {k: v for k, v in attachment.items() if k != "data"}
        new["url"] = f"Binary/{binary_id}"
        new.setdefault("size", len(raw))
        new.setdefault("hash", base64.b64encode(hashlib.sha1(raw).digest()).decode("ascii"))
        moved[i] = {**content, "attachment": new}
        changed = True
    return {**resource, "content": moved} if changed else resource


def _binary_id(document_id: str, raw: bytes) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"DocumentReference/{document_id}#{blobs.digest(raw)}"))


def _security_labels(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """The DocumentReference's labels (``meta.security`` and ``securityLabel``), once each:
    its content is as sensitive as it is, and searches hide by ``meta.security``."""
    out: list[dict[str, Any]] = []
    meta = resource.get("meta")
    for coding in (meta.get("security") if isinstance(meta, dict) else None) or ():
        if isinstance(coding, dict) and coding not in out:
            out.append(coding)
    for concept in resource.get("securityLabel") or ():
        for coding in (concept.get("coding") if isinstance(concept, dict) else None) or ():
            if isinstance(coding, dict) and coding not in out:
                out.append(coding)
    return out
