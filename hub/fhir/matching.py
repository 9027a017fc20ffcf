"""Search criteria evaluated on a resource in memory: the Bundle's own entries.

A transaction's conditional reference (``Patient?identifier=...``) may name a resource the
same Bundle creates, which the store does not hold yet (docs/search.md, "Transactions").
:func:`matches` answers for one resource with the search registry's own extractors and the
indexer's value functions, so a value matches here exactly when it would be indexed to match.

Criteria of the kinds conditional references use are evaluated: token (``system|code``,
``|code``, ``code``, ``system|``), string (prefix, ``:exact``), uri, reference (``Type/id``,
``id``) and ``_id``, comma-separated values (any) and repeated parameters (all). Anything else
raises :class:`Unsupported`.
"""

from __future__ import annotations

from typing import Any

from hub.search.indexer import reference_values
from hub.search.indexer import string_values
from hub.search.indexer import token_values
from hub.search.values import normalise


class Unsupported(Exception):
    """A criterion :func:`matches` cannot evaluate in memory."""


def matches(registry: Any, resource: dict, res_id: str, params: list[tuple[str, str]]) -> bool:
    """Whether ``resource`` (to be stored as ``res_id``) meets every one of ``params``."""
    res_type = resource.get("resourceType")
    for name, value in params:
        code, _, modifier = name.partition(":")
        if code == "_id" and not modifier:
            if res_id not in value.split(","):
                return False
            continue
        p = registry.get(res_type, code)
        if p is None or p.type not in _TESTS or modifier not in _MODIFIERS[p.type]:
            raise Unsupported(name)
        try:
            found = p.extractor(res_type)(resource) or []
        except Exception:  # noqa: BLE001 - an element the extractor cannot read matches nothing
            found = []
        test = _TESTS[p.type]
        if not any(test(v, wanted, modifier) for v in found for wanted in value.split(",")):
            return False
    return True


def _token(v: Any, wanted: str, _modifier: str) -> bool:
    system, bar, code = wanted.rpartition("|")
    for s, c, _text in token_values(v):
        if not bar:
            hit = c == code
        elif not code:
            hit = s == system
        else:
            hit = c == code and s == (system or None)
        if hit:
            return True
    return False


def _string(v: Any, wanted: str, modifier: str) -> bool:
    if modifier == "exact":
        return wanted in string_values(v)
    prefix = normalise(wanted)
    return any(normalise(s).startswith(prefix) for s in string_values(v) if s)


def _uri(v: Any, wanted: str, _modifier: str) -> bool:
    return v == wanted


def _reference(v: Any, wanted: str, _modifier: str) -> bool:
    want_type, _, want_id = wanted.rpartition("/")
    return any(
        t[1] == want_id and (not want_type or t[0] == want_type) for t in reference_values(v)
    )


_TESTS = {"token": _token, "string": _string, "uri": _uri, "reference": _reference}
_MODIFIERS = {"token": ("",), "string": ("", "exact"), "uri": ("",), "reference": ("",)}
