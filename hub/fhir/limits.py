"""Limits every FHIR request body meets before any other work (docs/validation.md).

One pass over the parsed body, with an explicit stack (no recursion, so a body nested
thousands deep costs nothing but the pass), refuses with 400:

- nesting deeper than ``MAX_NESTING_DEPTH`` objects (JSON) or elements (XML, checked on the
  tree by :func:`hub.fhir.formats.parse_xml_tree`): the validator, the indexer and the XML
  converter are recursive, and no FHIR resource comes close;
- strings (and property names) holding a C0 control character other than tab, carriage
  return and line feed: the FHIR string type forbids them, and PostgreSQL cannot store NUL;
- strings longer than ``MAX_STRING_LENGTH`` characters (FHIR: a string SHALL NOT exceed
  1 MB), except base64Binary values (``Attachment.data``, ``Binary.data``...), which only the
  body limit (``MAX_CONTENT_LENGTH``, 413) bounds.

Each issue names its element as a FHIRPath location (``Patient.name[0].given[1]``).

The same rules for the URL: :func:`check_params` (control characters in search criteria,
wherever they come from), :func:`count_param` and :func:`row_key_param` (page sizes and cursors
past what a column holds).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any

import orjson

from hub import outcomes
from hub.config import setting

# C0 controls the FHIR string regex ([ \r\n\t\S]+) leaves out.
FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# The same in JSON text, where they can only appear escaped.
_ESCAPED = re.compile(rb"\\u00(?:0[0-8bBcCeEfF]|1[0-9a-fA-F])")


@dataclasses.dataclass(frozen=True)
class Limits:
    max_depth: int
    max_string: int

    @classmethod
    def from_config(cls, config: dict) -> Limits:
        return cls(
            int(setting(config, "MAX_NESTING_DEPTH")),
            int(setting(config, "MAX_STRING_LENGTH")),
        )


DEFAULT_LIMITS = Limits.from_config({})  # the declared defaults


@functools.lru_cache(maxsize=1)
def base64_names() -> frozenset[str]:
    """JSON names of the R4 elements typed base64Binary (exempt from the string limit)."""
    from hub.validation.validator import default_validator

    out = set()
    for sd in default_validator().defs.structures():
        for e in (sd.get("snapshot") or {}).get("element", ()):
            if any(t.get("code") == "base64Binary" for t in e.get("type", ())):
                last = e["path"].rsplit(".", 1)[-1]
                out.add(last[:-3] + "Base64Binary" if last.endswith("[x]") else last)
    return frozenset(out)


def check(data: Any, limits: Limits, raw: bytes | None = None) -> None:
    """Raise a 400 OperationOutcome when ``data`` (a parsed body) breaks ``limits``.

    ``raw``, the JSON text ``data`` came from, lets the common case skip the string checks:
    a control character can only be there escaped, and no string is longer than the text.
    """
    if raw is None:
        try:
            raw = orjson.dumps(data)  # far faster than looking at each string
        except (TypeError, orjson.JSONEncodeError):
            raw = None
    strings = raw is None or _ESCAPED.search(raw) is not None
    lengths = raw is None or len(raw) > limits.max_string
    if not (strings or lengths or _deeper_than(data, limits.max_depth)):
        return
    problem = _walk(data, limits, strings, lengths)
    if problem is not None:
        path, text, code = problem
        raise outcomes.error(400, code, text, _location(data, path))


# The largest row key or sequence number a column holds (64-bit on both backends).
MAX_ROW_KEY = 2**63 - 1


def count_param(value: str | None, name: str, default: int, maximum: int) -> int:
    """A page size from the URL: ``default`` when absent, at most ``maximum`` however many
    digits it has (a 5,000-digit number is not even converted); 400 when not a whole number."""
    if value is None or value == "":
        return min(default, maximum)
    if not (value.isascii() and value.isdigit()):
        raise outcomes.bad_request(f"{name} must be a non-negative integer, not {value!r}", name)
    return maximum if len(value) > len(str(maximum)) else min(int(value), maximum)


def row_key_param(value: str, name: str) -> int:
    """A row key or sequence number from the URL (a paging cursor); 400 when it is not one a
    column can hold."""
    if not (value.isascii() and value.isdigit()) or len(value) > 19 or int(value) > MAX_ROW_KEY:
        raise outcomes.bad_request(f"Invalid {name}", name)
    return int(value)


def check_params(params) -> None:
    """400 when a search parameter's name or value holds a forbidden control character
    (``Patient?name=a%00b``; criteria in headers and Bundle entries decode to the same)."""
    for key, value in params:
        if FORBIDDEN.search(key) or FORBIDDEN.search(value):
            raise outcomes.bad_request(
                "Search parameters and their values may not hold control characters",
                FORBIDDEN.sub("?", key),
            )


def _deeper_than(data: Any, max_depth: int) -> bool:
    """The common case's quick pass: containers only, no paths kept."""
    stack = [(data, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth > max_depth:
            return True
        if type(node) is dict:
            for value in node.values():
                if type(value) is dict or type(value) is list:
                    push((value, depth + 1))
        elif type(node) is list:  # a body that is a bare number or string holds nothing
            for value in node:
                # an object in an array is one level; an array in an array (never FHIR) too
                if type(value) is dict:
                    push((value, depth))
                elif type(value) is list:
                    push((value, depth + 1))
    return False


def _walk(data: Any, limits: Limits, strings: bool, lengths: bool):
    max_depth, max_string = limits.max_depth, limits.max_string
    exempt = base64_names() if lengths else frozenset()
    # (container, depth in objects, path as nested (parent, key) pairs, property name)
    stack: list[tuple[Any, int, Any, Any]] = [(data, 1, None, None)]
    while stack:
        node, depth, path, name = stack.pop()
        if depth > max_depth:
            return path, f"nesting depth exceeds {max_depth}", "too-costly"
        in_dict = type(node) is dict
        items = node.items() if in_dict else enumerate(node)
        for key, value in items:
            kind = type(value)
            if kind is dict or kind is list:
                # depth counts objects, as _deeper_than does
                deeper = depth + 1 if in_dict or kind is list else depth
                stack.append((value, deeper, (path, key), key if kind is list else None))
            elif kind is str and (strings or lengths):
                prop = name if type(key) is int else key
                if strings and FORBIDDEN.search(value):
                    return (path, key), "control characters are not allowed in strings", "invalid"
                if lengths and len(value) > max_string and prop not in exempt:
                    return (
                        (path, key),
                        f"the string is {len(value)} characters long; at most {max_string}",
                        "too-long",
                    )
            if strings and type(key) is str and FORBIDDEN.search(key):
                return path, "control characters are not allowed in property names", "invalid"
    return None


def _location(data: Any, path) -> str:
    """``(((None, "name"), 0), "given")`` in a Patient -> ``Patient.name[0].given``."""
    keys = []
    while path is not None:
        path, key = path
        keys.append(key)
    rt = data.get("resourceType") if isinstance(data, dict) else None
    out = rt if isinstance(rt, str) and rt.isidentifier() else "$this"
    for key in reversed(keys):
        out += f"[{key}]" if type(key) is int else "." + FORBIDDEN.sub("?", str(key))
    return out
