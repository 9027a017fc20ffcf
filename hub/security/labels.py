"""Security labels (``meta.security``) that need an explicit grant to be seen.

A resource carrying a protected label is invisible to a principal who does not
hold the matching grant: reads answer 404 as if it were absent, searches,
includes, history and exports leave it out. The grants (``--grant-label``):

========================  ===============================================================
grant                     labels it opens
========================  ===============================================================
``veteran-status``        ``urn:fhirhub:codesystem:sensitivity#veteran-status``
``mental-health``         ``...sensitivity#mental-health``, v3-ActCode ``PSY``
``hiv``                   ``...sensitivity#hiv``, v3-ActCode ``HIV``
``R`` / ``V``             v3-Confidentiality ``R`` / ``V`` on a resource with no category
``resident-id``           not a label: resident ID numbers unmasked in exports
``*``                     everything
========================  ===============================================================

A resource labelled with a sensitivity category needs every category on it; a
restricted (``R``) or very restricted (``V``) label next to a category is
covered by the category grant, since the category is the specific reason for
the restriction. ``R`` or ``V`` alone needs the grant of the same name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from hub.codesystems import CONFIDENTIALITY
from hub.codesystems import SENSITIVITY

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

# (system, code) -> the grant that opens it; categories first, confidentiality levels after.
CATEGORIES: dict[tuple[str, str], str] = {
    (SENSITIVITY, "veteran-status"): "veteran-status",
    (SENSITIVITY, "mental-health"): "mental-health",
    (SENSITIVITY, "hiv"): "hiv",
    (ACT_CODE, "PSY"): "mental-health",
    (ACT_CODE, "HIV"): "hiv",
}
LEVELS: dict[tuple[str, str], str] = {
    (CONFIDENTIALITY, "R"): "R",
    (CONFIDENTIALITY, "V"): "V",
}
GRANTS = frozenset(
    [*CATEGORIES.values(), *LEVELS.values(), "resident-id", "*"]
)  # what --grant-label accepts
ALL = frozenset(["*"])


def required_grants(resource: dict[str, Any]) -> frozenset[str]:
    """The grants a principal needs to see ``resource`` (empty: anyone with the scope)."""
    meta = resource.get("meta")
    if not isinstance(meta, dict):
        return frozenset()
    labels = meta.get("security")
    if not isinstance(labels, list) or not labels:
        return frozenset()
    categories: set[str] = set()
    levels: set[str] = set()
    for coding in labels:
        if not isinstance(coding, dict):
            continue
        key = (coding.get("system"), coding.get("code"))
        if key in CATEGORIES:
            categories.add(CATEGORIES[key])
        elif key in LEVELS:
            levels.add(LEVELS[key])
    return frozenset(categories or levels)


def granted(needed: frozenset[str], grants: frozenset[str]) -> bool:
    return not needed or "*" in grants or needed <= grants


def required_grants_json(content: str | bytes) -> frozenset[str]:
    """:func:`required_grants` on stored JSON text, without parsing unlabelled content."""
    probe = content if isinstance(content, str) else content.decode()
    if '"security"' not in probe:
        return frozenset()
    return required_grants(orjson.loads(content))


def validate_grants(grants: Iterable[str]) -> list[str]:
    """The unknown grant codes in ``grants``."""
    return [g for g in grants if g not in GRANTS]


def hidden_labels(grants: frozenset[str]) -> tuple[tuple[str, str], ...]:
    """The labels ``(system, code)`` that ``grants`` do not open: categories, then levels.

    Searches and the lifetime operations filter these in SQL (:func:`hides` is the
    rule), so that totals and paging never count what the caller cannot see; the
    remaining rules (scopes, patient context) are applied to the results.
    """
    return tuple(
        label
        for label, grant in (*CATEGORIES.items(), *LEVELS.items())
        if not granted(frozenset([grant]), grants)
    )


def hides(resource_labels: Iterable[tuple[str, str]], hidden: Iterable[tuple[str, str]]) -> bool:
    """Whether a resource with ``resource_labels`` is hidden by ``hidden`` (:func:`hidden_labels`).

    A category hides what carries it; a level (``R``/``V``) hides only what carries no
    category, as in :func:`required_grants`.
    """
    hidden = set(hidden)
    present = set(resource_labels)
    categories = [label for label in present if label in CATEGORIES]
    if categories:
        return any(label in hidden for label in categories)
    return any(label in hidden for label in present if label in LEVELS)
