"""Parsing search parameter names and values (no SQL here).

Value syntax from the FHIR R4 search page: ``,`` separates OR values, ``|``
separates token/quantity parts, ``$`` separates composite parts; each may be
escaped with a backslash. Prefixes (``ge2020``) apply to date, number and
quantity values.
"""

from __future__ import annotations

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


def invalid(key: str, message: str) -> OperationOutcomeError:
    """A 400 that names the offending parameter."""
    return error(400, "invalid", f"Search parameter '{key}': {message}", f"http.{key}")


def not_supported(key: str, message: str) -> OperationOutcomeError:
    return error(400, "not-supported", f"Search parameter '{key}': {message}", f"http.{key}")
