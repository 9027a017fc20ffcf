"""Parsing search parameter names and values (no SQL here).

Value syntax from the FHIR R4 search page: ``,`` separates OR values, ``|``
separates token/quantity parts, ``$`` separates composite parts; each may be
escaped with a backslash. Prefixes (``ge2020``) apply to date, number and
quantity values.
"""

from __future__ import annotations

from hub.identity import RESIDENT_ID_SYSTEM
from hub.identity import resident_id
from hub.outcomes import OperationOutcomeError
from hub.outcomes import error

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


def split_escaped(text: str, sep: str, maxsplit: int = -1) -> list[str]:
    """Split on ``sep`` unless it is escaped with a backslash; unescape the parts."""
    parts, cur, i, n = [], [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n:
            nxt = text[i + 1]
            cur.append(nxt if nxt in ",|$\\" else ch + nxt)
            i += 2
            continue
        if ch == sep and (maxsplit < 0 or len(parts) < maxsplit):
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def split_or(value: str) -> list[str]:
    """The OR values of one parameter occurrence (``a,b\\,c`` -> ``a``, ``b,c``).

    Separators inside a value (``|``, ``$``) stay escaped for the next split.
    """
    out, cur, i, n = [], [], 0, len(value)
    while i < n:
        ch = value[i]
        if ch == "\\" and i + 1 < n:
            if value[i + 1] == ",":
                cur.append(",")
            else:
                cur.append(value[i : i + 2])
            i += 2
            continue
        if ch == ",":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def split_prefix(value: str) -> tuple[str, str]:
    """``("ge", "2020")`` for ``ge2020``; ``("eq", value)`` without a prefix."""
    if len(value) > 2 and value[:2] in PREFIXES and not value[2].isalpha():
        return value[:2], value[2:]
    return "eq", value


def token_forms(value: str) -> list[str]:
    """The token values to OR for ``value``, with resident ID numbers as linking stores them.

    Identity stores the resident ID number normalised (18 characters, upper-case
    ``X``; 15-digit legacy numbers converted), so a value in the resident-ID system
    is normalised the same way, and a value without a system that is a resident ID
    number also matches the stored number (as well as itself, as typed). A value
    that is not a valid number is searched as given.
    """
    parts = split_escaped(value, "|", 1)
    if "\\" in value or (len(parts) == 2 and parts[0] != RESIDENT_ID_SYSTEM):
        return [value]
    try:
        number = resident_id.normalise(parts[-1])
    except resident_id.InvalidResidentId:
        return [value]
    normalised = f"{RESIDENT_ID_SYSTEM}|{number}"
    if len(parts) == 2:
        return [normalised]
    return [value] if value == number else [value, normalised]


def invalid(key: str, message: str) -> OperationOutcomeError:
    """A 400 that names the offending parameter."""
    return error(400, "invalid", f"Search parameter '{key}': {message}", f"http.{key}")


def not_supported(key: str, message: str) -> OperationOutcomeError:
    return error(400, "not-supported", f"Search parameter '{key}': {message}", f"http.{key}")
