"""FHIRPath extractors for search parameters, compiled once.

Almost every official R4 search expression is a union of simple paths
(``Observation.subject | Observation.performer``, ``(Observation.value as Quantity)``,
``Observation.subject.where(resolve() is Patient)``,
``Patient.telecom.where(system='phone')``). For those, :func:`compile_extractor`
builds a direct extractor that walks the JSON dict (a few microseconds); anything
else is compiled with fhirpathpy, with ``resolve()`` and ``hasValue()`` provided.

An extractor is built for one resource type: only the union terms that start
with that type (or ``Resource``/``DomainResource``) are kept, so a shared
expression such as ``clinical-patient`` (24 terms) costs one term per resource.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from hub.search.data import choice_names
from hub.search.data import structure

Extractor = Callable[[dict], list]

_BASE_TYPES = ("Resource", "DomainResource")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def split_union(expression: str) -> list[str]:
    """Split ``a | b | c`` at the top level (outside parentheses and quotes)."""
    out, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(expression):
        if ch == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            out.append(expression[start:i].strip())
            start = i + 1
    out.append(expression[start:].strip())
    return [t for t in out if t]


def term_root(term: str) -> str | None:
    """The type a term starts from (``Observation`` in ``(Observation.value as X)``)."""
    m = _IDENT.match(term.lstrip("("))
    return m.group(0) if m else None


def terms_for(expression: str, res_type: str) -> list[str]:
    """The union terms of ``expression`` that apply to ``res_type``."""
    return [t for t in split_union(expression) if term_root(t) in (res_type, *_BASE_TYPES)]


# ---------------------------------------------------------------------------
# The fast path: a tiny parser for simple paths
# ---------------------------------------------------------------------------

_STEP = re.compile(
    r"""\.(?:
        (?P<as>as|ofType)\((?P<as_type>\w+)\)
      | where\(resolve\(\)\s+is\s+(?P<resolve>\w+)\)
      | where\((?P<field>\w+)\s*=\s*'(?P<lit>[^']*)'\)
      | (?P<name>\w+)(?:\[(?P<index>\d+)\])?
    )""",
    re.VERBOSE,
)
_AS_SUFFIX = re.compile(r"\s+as\s+(\w+)$")


class _Unsupported(Exception):
    pass


def _parse_term(term: str, relative: bool) -> list[tuple]:
    """Parse a simple term into steps; raise :class:`_Unsupported` otherwise."""
    ops: list[tuple] = []
    term = term.strip()
    if term.startswith("("):
        close = term.find(")")
        if close < 0:
            raise _Unsupported(term)
        inner, rest = term[1:close], term[close + 1 :]
    else:
        inner, rest = term, ""
    as_type = None
    m = _AS_SUFFIX.search(inner)
    if m:
        as_type = m.group(1)
        inner = inner[: m.start()]
    if relative:
        inner = "." + inner
    else:
        root = _IDENT.match(inner)
        if not root:
            raise _Unsupported(term)
        inner = inner[root.end() :]
    _parse_steps(inner, ops, term)
    if as_type:
        _apply_as(ops, as_type, term)
    _parse_steps(rest, ops, term)
    return ops


def _parse_steps(text: str, ops: list[tuple], term: str) -> None:
    pos = 0
    while pos < len(text):
        m = _STEP.match(text, pos)
        if not m:
            raise _Unsupported(term)
        pos = m.end()
        if m.group("as"):
            _apply_as(ops, m.group("as_type"), term)
        elif m.group("resolve"):
            ops.append(("resolve", m.group("resolve")))
        elif m.group("field"):
            ops.append(("eq", m.group("field"), m.group("lit")))
        else:
            name = m.group("name")
            if name in ("exists", "resolve", "first", "extension", "not", "empty", "where"):
                raise _Unsupported(term)
            ops.append(("get", name))
            if m.group("index") is not None:
                ops.append(("index", int(m.group("index"))))


def _apply_as(ops: list[tuple], type_name: str, term: str) -> None:
    """``value as Quantity`` on a choice element reads ``valueQuantity``."""
    if not ops or ops[-1][0] != "get":
        raise _Unsupported(term)
    name = ops[-1][1]
    ops[-1] = ("get", name + type_name[0].upper() + type_name[1:])


def _get(values: list, name: str, is_choice: bool) -> list:
    out: list = []
    for v in values:
        if not isinstance(v, dict):
            continue
        x = v.get(name)
        if x is None:
            if is_choice:
                # An untyped choice (``Observation.effective``): valueX keys.
                n = len(name)
                for key, val in v.items():
                    if len(key) > n and key.startswith(name) and key[n].isupper():
                        out.extend(val) if isinstance(val, list) else out.append(val)
            continue
        if isinstance(x, list):
            out.extend(x)
        else:
            out.append(x)
    return out


def _resolves_to(ref: Any, type_name: str) -> bool:
    if not isinstance(ref, dict):
        return False
    literal = ref.get("reference")
    if isinstance(literal, str):
        parts = literal.split("/")
        if len(parts) >= 4 and parts[-2] == "_history":
            return parts[-4] == type_name
        return len(parts) >= 2 and parts[-2] == type_name
    return ref.get("type") == type_name


def _run(values: list, plan: list[tuple]) -> list:
    for op in plan:
        kind = op[0]
        if kind == "get":
            values = _get(values, op[1], op[2])
        elif kind == "resolve":
            values = [v for v in values if _resolves_to(v, op[1])]
        elif kind == "eq":
            values = [v for v in values if isinstance(v, dict) and v.get(op[1]) == op[2]]
        else:  # index
            values = values[op[1] : op[1] + 1]
        if not values:
            break
    return values


def _term(plan: list[tuple]) -> Extractor:
    """One term as a function; its first ``get`` reads the key directly.

    Most parameters of a type find nothing in a given resource, and almost
    always because its first element is absent: that case returns at once.
    Every call returns a new list (never one of the resource's own).
    """
    if not plan or plan[0][0] != "get":
        return lambda resource: _run([resource], plan)
    _, name, is_choice = plan[0]
    rest = plan[1:]

    def term(resource) -> list:
        x = resource.get(name) if isinstance(resource, dict) else None
        if x is None:
            if not is_choice:
                return []
            values = _get([resource], name, True)
        else:
            values = list(x) if isinstance(x, list) else [x]
        return _run(values, rest) if rest and values else values

    return term


def _root_choices(res_type: str | None) -> frozenset[str]:
    """The choice elements a term's first step may name: those of ``res_type`` itself
    (``Observation.code`` is no choice, though ``code[x]`` is one elsewhere), or every
    choice name for a term relative to a value of unknown type."""
    found = structure(res_type) if res_type is not None else None
    return frozenset(found["choice"]) if found is not None else choice_names()


def _build_fast(terms_ops: list[list[tuple]], res_type: str | None = None) -> Extractor:
    choices, first = choice_names(), _root_choices(res_type)
    terms = [
        _term(
            [
                (op[0], op[1], op[1] in (first if i == 0 else choices)) if op[0] == "get" else op
                for i, op in enumerate(ops)
            ]
        )
        for ops in terms_ops
    ]
    if len(terms) == 1:
        return terms[0]

    def extract(resource: dict) -> list:
        out: list = []
        for term in terms:
            out.extend(term(resource))
        return out

    return extract


# ---------------------------------------------------------------------------
# The general path: fhirpathpy
# ---------------------------------------------------------------------------


def _resolve_fn(inputs):
    """``resolve()``: a typed stub from the literal reference (enough for ``is T``)."""
    from fhirpathpy.engine.nodes import ResourceNode
    from fhirpathpy.engine.util import get_data

    out = []
    for node in inputs:
        data = get_data(node)
        literal = data.get("reference") if isinstance(data, dict) else None
        if isinstance(literal, str) and "/" in literal:
            parts = literal.split("/")
            rtype = parts[-4] if len(parts) >= 4 and parts[-2] == "_history" else parts[-2]
            out.append(ResourceNode.create_node({"resourceType": rtype, "id": parts[-1]}))
        elif isinstance(data, dict) and data.get("resourceType"):
            out.append(node)
    return out


def _has_value_fn(inputs):
    from fhirpathpy.engine.util import get_data

    if len(inputs) != 1:
        return [False]
    data = get_data(inputs[0])
    return [data is not None and not isinstance(data, dict | list)]


_USER_FUNCTIONS = {
    "resolve": {"fn": _resolve_fn, "arity": {0: []}},
    "hasValue": {"fn": _has_value_fn, "arity": {0: []}},
}


@functools.cache
def _fhirpath_model():
    from fhirpathpy.models import models

    return models["r4"]


def _build_general(expression: str) -> Extractor:
    from fhirpathpy import compile as fp_compile

    compiled = fp_compile(
        expression, _fhirpath_model(), options={"userInvocationTable": _USER_FUNCTIONS}
    )

    def extract(resource: dict) -> list:
        try:
            return list(compiled(resource))
        except Exception:  # noqa: BLE001 - never fail a write on an odd expression
            return []

    return extract


# The one official R4 expression that is not a path. fhirpathpy takes some 20 µs
# for it, so its usual values are answered here and only odd ones go there.
_DECEASED = "Patient.deceased.exists() and Patient.deceased != false"


def _deceased(general: Extractor) -> Extractor:
    def extract(resource: dict) -> list:
        keys = [k for k in resource if k.startswith(("deceased", "_deceased"))]
        if not keys:
            return [False]
        if keys == ["deceasedBoolean"] and isinstance(resource["deceasedBoolean"], bool):
            return [resource["deceasedBoolean"]]
        if keys == ["deceasedDateTime"] and isinstance(resource["deceasedDateTime"], str):
            return [True]
        return general(resource)

    return extract


def _nothing(resource: dict) -> list:
    return []


def compile_extractor(expression: str | None, res_type: str | None) -> Extractor:
    """An extractor for ``expression`` restricted to ``res_type``.

    With ``res_type=None`` the expression is relative to the value it is applied
    to (composite components: ``code``, ``value.as(Quantity)``).
    """
    if not expression:
        return _nothing
    if res_type is None:
        terms = split_union(expression)
    else:
        terms = terms_for(expression, res_type)
    if not terms:
        return _nothing
    try:
        return _build_fast([_parse_term(t, res_type is None) for t in terms], res_type)
    except _Unsupported:
        pass
    try:
        general = _build_general(" | ".join(terms))
    except Exception:  # noqa: BLE001 - an expression fhirpathpy cannot compile
        return _nothing
    return _deceased(general) if terms == [_DECEASED] else general


def first_key(expression: str | None, res_type: str) -> str | None:
    """The key of ``res_type`` every value of ``expression`` comes from, if there is one.

    Only a single term with the direct extractor that starts with an element
    other than a choice has one: a resource without that key has no value.
    """
    terms = terms_for(expression, res_type) if expression else []
    if len(terms) != 1:
        return None
    try:
        ops = _parse_term(terms[0], False)
    except _Unsupported:
        return None
    if ops and ops[0][0] == "get" and ops[0][1] not in _root_choices(res_type):
        return ops[0][1]
    return None


def is_fast(expression: str, res_type: str) -> bool:
    """Whether ``expression`` gets the direct extractor for ``res_type`` (for tests)."""
    try:
        for t in terms_for(expression, res_type):
            _parse_term(t, False)
    except _Unsupported:
        return False
    return True
