"""Deterministic resource ids and content fingerprints.

Every adapter that meets a person with a resident ID number gives the
``Patient`` the id :func:`patient_id_for_resident_id` returns, so the same
person arriving from a hospital, the county platform or the veterans registry
lands on one ``Patient`` (DESIGN decision 4 and 6).

The id is a keyed hash (HMAC-SHA-256) of the normalised number, not the number
itself and not a plain hash: ids appear in URLs, references and exports, and an
unkeyed hash of an 18-character number with a known structure can be reversed
by trying every birth date and sequence. The key is the deployment setting
``HUB_IDENTITY_KEY``; it must never change once data is stored (every Patient
id depends on it). Without it a fixed development key is used.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

import orjson

from hub.identity import resident_id

# Only for development and tests; deployments set HUB_IDENTITY_KEY.
_DEVELOPMENT_KEY = b"fhirhub-development-identity-key"

CONTENT_HASH_SYSTEM = "urn:fhirhub:codesystem:content-hash"


def identity_key() -> bytes:
    """The deployment's identity key (``HUB_IDENTITY_KEY``), or the development key."""
    value = os.environ.get("HUB_IDENTITY_KEY")
    return value.encode("utf-8") if value else _DEVELOPMENT_KEY


def patient_id_for_resident_id(number: str, key: bytes | None = None) -> str:
    """The ``Patient`` id for a resident ID number: ``rid-`` + 32 hex characters.

    The number is normalised first (15 digits, lower-case ``x`` and full-width
    digits give the same id as the 18-character form).

    :raises hub.identity.resident_id.InvalidResidentId: the number is not valid;
        never derive an identity from a number that fails its checksum.
    """
    value = resident_id.normalise(number)
    digest = hmac.new(key or identity_key(), value.encode("ascii"), hashlib.sha256)
    return "rid-" + digest.hexdigest()[:32]


def stable_id(*parts: str) -> str:
    """A FHIR id (40 hex characters) from parts that already identify a resource.

    Use it for resources derived from a Patient id or a source key, e.g.
    ``stable_id("veteran-status", patient_id)``. Parts are joined with a
    separator that cannot occur in them, so ``("a", "bc")`` and ``("ab", "c")``
    differ.
    """
    text = "\x1f".join(parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]


def content_hash(resource: dict[str, Any]) -> str:
    """A fingerprint of a resource's content, ignoring ``meta`` and ``id``.

    Adapters put it in ``meta.tag`` (system :data:`CONTENT_HASH_SYSTEM`) so the
    pipeline can skip a resource whose stored version carries the same tag: a
    re-imported file then changes only what changed.
    """
    body = {k: v for k, v in resource.items() if k not in ("meta", "id")}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def with_content_hash(resource: dict[str, Any]) -> dict[str, Any]:
    """``resource`` with its :func:`content_hash` tag added to ``meta.tag`` (in place)."""
    meta = resource.setdefault("meta", {})
    tags = [t for t in meta.get("tag", []) if t.get("system") != CONTENT_HASH_SYSTEM]
    tags.append({"system": CONTENT_HASH_SYSTEM, "code": content_hash(resource)})
    meta["tag"] = tags
    return resource


def stored_content_hash(resource: dict[str, Any]) -> str | None:
    """The content-hash tag a stored resource carries, if any."""
    for tag in (resource.get("meta") or {}).get("tag", []):
        if tag.get("system") == CONTENT_HASH_SYSTEM:
            return tag.get("code")
    return None
