"""Out-of-order arrival: is an incoming extracted resource older than the stored one?

Every resource the adapter extracts carries, in ``meta.extension``:

- ``urn:fhirhub:extension:cda-document-time``: the document's header
  ``effectiveTime`` (when the document version was made), as a dateTime;
- ``urn:fhirhub:extension:cda-document-version``: ``<setId or id>#<versionNumber>``.

Because ids are deterministic per (site, type, setId, position), an older
version of a document that arrives after a newer one maps to the *same* ids.
The write pipeline calls :func:`is_stale` with the incoming and the stored
resource before an update and skips (keeps) the stored one when it is newer.
Resources without these extensions (written by other sources) are never
considered newer by this rule.
"""

from __future__ import annotations

import datetime as dt

from fhirhub_plugins.cda import vocab


def _meta_value(resource: dict | None, url: str) -> str | None:
    for ext in ((resource or {}).get("meta") or {}).get("extension", []):
        if ext.get("url") == url:
            return ext.get("valueDateTime") or ext.get("valueString")
    return None


def _moment(value: str) -> dt.datetime:
    if len(value) == 10:
        value += "T00:00:00+08:00"
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def source_time(resource: dict) -> str | None:
    """The document time an extracted resource came from (``None`` if not from a CDA document)."""
    return _meta_value(resource, vocab.EXT_SOURCE_TIME)


def is_stale(incoming: dict, stored: dict | None) -> bool:
    """True when ``stored`` came from a newer document than ``incoming``: do not overwrite it.

    Same document set: the higher ``versionNumber`` wins. Otherwise the later
    document time wins. Equal times are not stale (a re-sent document applies again).
    """
    new_time, old_time = source_time(incoming), source_time(stored)
    if not new_time or not old_time:
        return False
    new_version = _meta_value(incoming, vocab.EXT_SOURCE_VERSION) or ""
    old_version = _meta_value(stored, vocab.EXT_SOURCE_VERSION) or ""
    new_key, _, new_n = new_version.rpartition("#")
    old_key, _, old_n = old_version.rpartition("#")
    if (
        new_key
        and new_key == old_key
        and new_n.lstrip("-").isdecimal()
        and old_n.lstrip("-").isdecimal()
    ):
        if int(new_n) != int(old_n):
            return int(new_n) < int(old_n)
    return _moment(new_time) < _moment(old_time)
