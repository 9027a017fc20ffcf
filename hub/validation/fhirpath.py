"""FHIRPath for the hub: fhirpathpy, compiled once, plus the FHIR functions it lacks.

fhirpathpy (R4 model) implements the FHIRPath core. FHIR adds functions on top (FHIR spec
§2.1.9 "Additional functions") that invariants and search parameters call; this module adds
them to fhirpathpy's function registry once, at import, under their FHIR names and only where
fhirpathpy has none of its own:

- ``resolve()``: a literal reference ``Type/id`` becomes a stub of that type (enough for
  ``resolve() is Patient``); ``#id`` resolves to the contained resource of ``%resource`` and
  a reference matching a ``fullUrl`` of the enclosing Bundle (``%rootResource``) to that entry;
- ``hasValue()``, ``htmlChecks()`` (a basic XHTML safety check), ``conformsTo(url)``,
  ``memberOf(valueset)`` (against the ValueSets the hub holds; unknown sets answer empty);
- ``lowBoundary()``, ``highBoundary()``, ``precision()`` for decimals, dates, date-times and times;
- ``residentIdValid()``: the GB 11643 check character of a resident ID number (used by the
  ``cn-resident-patient`` profile).

Constants ``%sct``, ``%loinc``, ``%ucum``, ``%vs-<id>`` and ``%ext-<id>`` are always defined.
Call :func:`compile_expression`; compiled functions are cached by expression text.
"""

from __future__ import annotations

import calendar
import contextvars
import functools
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import fhirpathpy
from fhirpathpy.engine import invocations as _fp_invocations
from fhirpathpy.engine import nodes as _fp_nodes
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.engine.util import get_data
from fhirpathpy.models import models

from hub.identity import resident_id

MODEL = models["r4"]

# The definitions memberOf()/conformsTo() consult; the validator sets it for the evaluation.
current_definitions: contextvars.ContextVar = contextvars.ContextVar(
    "hub_fhirpath_definitions", default=None
)
# conformsTo() asks the validator: (resource dict, profile url) -> bool
current_conformance: contextvars.ContextVar = contextvars.ContextVar(
    "hub_fhirpath_conformance", default=None
)

CONSTANTS = {
    "sct": "http://snomed.info/sct",
    "loinc": "http://loinc.org",
    "ucum": "http://unitsofmeasure.org",
}


class FhirPathError(ValueError):
    """An expression that does not compile; the message has the expression."""


_NAMED_CONSTANT = re.compile(r"%`?((?:vs|ext)-[A-Za-z0-9\-.]+)`?")


def _constants_for(expression: str) -> dict:
    """The FHIR constants plus every ``%vs-x`` / ``%ext-x`` the expression names."""
    env = dict(CONSTANTS)
    for name in _NAMED_CONSTANT.findall(expression):
        kind, _, rest = name.partition("-")
        base = "ValueSet/" if kind == "vs" else "StructureDefinition/"
        env[name] = "http://hl7.org/fhir/" + base + rest
    return env


def _no_trace(*args, **kwargs) -> None:
    """trace() output is not wanted on the console."""


@functools.lru_cache(maxsize=4096)
def compile_expression(expression: str) -> Callable[..., list]:
    """Compile ``expression`` once (R4 model); the result takes ``(resource, variables)``.

    ``resource`` is a dict, or a :class:`ResourceNode` made by :func:`node` for an element
    deeper in a resource (so that choice types and ``is``/``as`` know the element's type).
    """
    try:
        fn = fhirpathpy.compile(expression, MODEL, {"traceFn": _no_trace})
    except Exception as exc:  # the ANTLR parser raises assorted exception types
        raise FhirPathError(f"cannot compile FHIRPath {expression!r}: {exc}") from exc

    constants = _constants_for(expression)

    def run(resource: Any, variables: dict | None = None) -> list:
        if variables:
            return fn(resource, {**constants, **variables})
        return fn(resource, constants)

    return run


def evaluate(resource: Any, expression: str, variables: dict | None = None) -> list:
    """Evaluate ``expression`` on ``resource`` (compiled and cached)."""
    return compile_expression(expression)(resource, variables)


def node(data: Any, path: str) -> ResourceNode:
    """Wrap an element so that FHIRPath knows its type path (``Patient.contact``, ``Period``)."""
    return ResourceNode.create_node(data, path)


# ---------------------------------------------------------------------------------------------
# FHIR functions
# ---------------------------------------------------------------------------------------------


def _vars(ctx) -> dict:
    return ctx.get("vars", {}) if isinstance(ctx, dict) else {}


def _resolve(ctx, inputs):
    out = []
    variables = _vars(ctx)
    for item in inputs:
        data = get_data(item)
        ref = data.get("reference") if isinstance(data, dict) else data
        if not isinstance(ref, str) or not ref:
            continue
        target = _resolve_reference(ref, variables)
        if target is not None:
            out.append(ResourceNode.create_node(target, target.get("resourceType")))
    return out


def _resolve_reference(ref: str, variables: dict) -> dict | None:
    resource = variables.get("resource")
    root = variables.get("rootResource")
    if ref.startswith("#"):
        for holder in (resource, root):
            holder = get_data(holder) if holder is not None else None
            if isinstance(holder, dict):
                for c in holder.get("contained", ()):
                    if c.get("id") == ref[1:]:
                        return c
        return None
    root = get_data(root) if root is not None else None
    if isinstance(root, dict) and root.get("resourceType") == "Bundle":
        for entry in root.get("entry", ()):
            full = entry.get("fullUrl", "")
            res = entry.get("resource")
            if not isinstance(res, dict):
                continue
            if full == ref or (full.endswith("/" + ref) and "/" in ref):
                return res
            if ref == f"{res.get('resourceType')}/{res.get('id')}":
                return res
    parts = ref.split("?")[0].rstrip("/").split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return {"resourceType": parts[-2], "id": parts[-1]}
    return None


def _has_value(ctx, inputs):
    if len(inputs) != 1:
        return [False]
    data = get_data(inputs[0])
    return [data is not None and not isinstance(data, (dict, list))]


_UNSAFE_HTML = re.compile(
    r"<\s*(script|object|applet|embed|form|iframe|frame|base|link|meta|style)\b"
    r"|\son[a-z]+\s*=|javascript:",
    re.I,
)


def _html_checks(ctx, inputs):
    for item in inputs:
        data = get_data(item)
        if not isinstance(data, str) or _UNSAFE_HTML.search(data):
            return [False]
        if "<div" not in data[:200]:
            return [False]
    return [True]


def _member_of(ctx, inputs, vs_url):
    defs = current_definitions.get()
    url = vs_url[0] if isinstance(vs_url, list) else vs_url
    url = get_data(url)
    if defs is None or not isinstance(url, str) or len(inputs) != 1:
        return []
    exp = defs.expansion(url)
    if exp is None:
        return []
    data = get_data(inputs[0])
    codings = []
    if isinstance(data, str):
        codings = [(None, data)]
    elif isinstance(data, dict):
        if "coding" in data:
            codings = [(c.get("system"), c.get("code")) for c in data["coding"]]
        elif "code" in data:
            codings = [(data.get("system"), data.get("code"))]
    unknown = False
    for system, code in codings:
        systems = [system] if system else list(exp)
        for s in systems:
            if s not in exp:
                continue
            codes = exp[s]
            if codes is None:
                unknown = True
            elif code in codes:
                return [True]
    return [] if unknown else [False]


def _conforms_to(ctx, inputs, url):
    check = current_conformance.get()
    url = get_data(url[0] if isinstance(url, list) else url)
    if len(inputs) != 1 or not isinstance(url, str):
        return []
    data = get_data(inputs[0])
    if check is None:
        if isinstance(data, dict) and url.startswith("http://hl7.org/fhir/StructureDefinition/"):
            return [data.get("resourceType") == url.rsplit("/", 1)[1]]
        raise FhirPathError(f"conformsTo({url}): no validator available")
    return [bool(check(data, url))]


def _resident_id_valid(ctx, inputs):
    out = []
    for item in inputs:
        value = get_data(item)
        if not isinstance(value, str):
            return [False]
        out.append(resident_id.is_valid(value))
    return [all(out)] if out else []


# -- boundaries and precision ------------------------------------------------------------------

_DT_RE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(\.\d+)?)?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?T?$"
)
_TIME_RE = re.compile(r"^T?(\d{2})(?::(\d{2})(?::(\d{2})(\.\d+)?)?)?$")


def _kind(item) -> tuple[Any, str | None]:
    """The value of ``item`` and its kind: decimal, quantity, date, dateTime or time."""
    if isinstance(item, _fp_nodes.FP_Quantity):
        return item, "quantity"
    if isinstance(item, _fp_nodes.FP_Time):
        return item.asStr, "time"
    if isinstance(item, _fp_nodes.FP_DateTime):
        text = item.asStr
        return text, "dateTime" if "T" in text else "date"
    if isinstance(item, ResourceNode):
        name = getattr(item.get_type_info(), "name", None)
        data = item.data
        if name in ("date", "dateTime", "instant", "time") and isinstance(data, str):
            return data, {"instant": "dateTime"}.get(name, name)
        item = data
    if isinstance(item, bool):
        return item, None
    if isinstance(item, (int, Decimal)):
        return Decimal(item), "decimal"
    if isinstance(item, float):
        return Decimal(repr(item)), "decimal"
    return item, None


def _digits(d: Decimal) -> int:
    exp = d.as_tuple().exponent
    return -exp if isinstance(exp, int) and exp < 0 else 0


def _decimal_boundary(d: Decimal, precision: int | None, high: bool) -> Decimal | None:
    precision = 8 if precision is None else precision
    if not 0 <= precision <= 28:
        return None
    half = Decimal(5).scaleb(-(_digits(d) + 1))
    bound = d + half if high else d - half
    q = Decimal(1).scaleb(-precision)
    if abs(d) < q:
        # the value is below the precision asked for: zero, keeping the sign of d
        return Decimal(0).quantize(q).copy_sign(d) if not high else Decimal(0).quantize(q)
    return bound.quantize(q, rounding="ROUND_CEILING" if high else "ROUND_FLOOR")


def _date_boundary(text: str, kind: str, precision: int | None, high: bool):
    if kind == "time":
        m = _TIME_RE.match(text)
        if not m:
            return None
        hh, mi, ss, frac = m.groups()
        cut = {2: 2, 4: 5, 6: 8, 9: 12}.get(9 if precision is None else precision)
        if cut is None:
            return None
        full = f"{hh}:{mi or ('59' if high else '00')}:{ss or ('59' if high else '00')}"
        full += frac or (".999" if high else ".000")
        return _Time(full[:cut])
    m = _DT_RE.match(text)
    if not m:
        return None
    y, mo, d, hh, mi, ss, frac, tz = m.groups()
    mo = mo or ("12" if high else "01")
    if not d:
        last = calendar.monthrange(int(y), int(mo))[1]
        d = f"{last:02d}" if high else "01"
    default = 8 if kind == "date" else 17
    cut = {4: 4, 6: 7, 8: 10, 10: 13, 12: 16, 14: 19, 17: 23}.get(
        default if precision is None else precision
    )
    if cut is None:
        return None
    if hh and not mi:
        mi = "00"  # T08 is not a legal FHIR time: it means 08:00
    full = f"{y}-{mo}-{d}T{hh or ('23' if high else '00')}:{mi or ('59' if high else '00')}"
    full += f":{ss or ('59' if high else '00')}{frac or ('.999' if high else '.000')}"
    out = full[:cut]
    if cut > 10:
        out += tz or ("-12:00" if high else "+14:00")
    return _DateTime(out)


class _DateTime(_fp_nodes.FP_DateTime):
    """A boundary keeps the precision it was computed at when shown."""

    def __str__(self) -> str:
        return self.asStr


class _Time(_fp_nodes.FP_Time):
    def __str__(self) -> str:
        return self.asStr


def _int_arg(args) -> int | None:
    if not args:
        return None
    value = args[0]
    if isinstance(value, list):
        value = value[0] if value else None
    value = get_data(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _boundary(high: bool):
    def fn(ctx, inputs, *args):
        if len(inputs) != 1:
            return []
        precision = _int_arg(args)
        value, kind = _kind(inputs[0])
        if kind == "decimal":
            out = _decimal_boundary(value, precision, high)
        elif kind == "quantity":
            num = _decimal_boundary(Decimal(value.value), precision, high)
            out = None if num is None else _fp_nodes.FP_Quantity(num, value.unit)
        elif kind in ("date", "dateTime", "time"):
            out = _date_boundary(value, kind, precision, high)
        else:
            out = None
        return [] if out is None else [out]

    return fn


def _precision(ctx, inputs):
    if len(inputs) != 1:
        return []
    value, kind = _kind(inputs[0])
    if kind == "decimal":
        return [_digits(value)]
    if kind in ("date", "dateTime", "time"):
        text = re.sub(r"(Z|[+-]\d{2}:\d{2})$", "", value) if kind != "date" else value
        return [len(re.sub(r"[^0-9]", "", text))]
    return []


# -- sort, matchesFull, escape, comparable, toString ---------------------------------------------


def _param_node(func) -> dict:
    """The parse-tree node behind an ``Expr`` argument (fhirpathpy passes a closure)."""
    cells = dict(zip(func.__code__.co_freevars, func.__closure__ or (), strict=False))
    return cells["param"].cell_contents


def _sort(ctx, inputs, *exprs):
    from fhirpathpy.engine import do_eval

    def key_of(item, node):
        ctx["$this"] = [item]
        got = do_eval(ctx, [item], node)
        return get_data(got[0]) if got else None

    items = list(inputs)
    if not exprs:
        return sorted(items, key=lambda x: get_data(x))
    for func in reversed(exprs):
        node = _param_node(func)
        descending = node.get("type") == "PolarityExpression" and node.get("terminalNodeText") == [
            "-"
        ]
        if descending:
            node = node["children"][0]
        keyed = [(key_of(item, node), n, item) for n, item in enumerate(items)]
        present = [k for k in keyed if k[0] is not None]
        missing = [k for k in keyed if k[0] is None]
        present.sort(key=lambda k: k[0], reverse=descending)
        items = [k[2] for k in present + missing]
    return items


def _matches_full(ctx, inputs, regex):
    if not inputs or regex is None or regex == []:
        return []
    value = get_data(inputs[0])
    regex = get_data(regex[0] if isinstance(regex, list) else regex)
    if not isinstance(value, str) or not isinstance(regex, str):
        return []
    return [re.fullmatch(regex, value, re.DOTALL) is not None]


def _escape(unescape: bool):
    import html
    import json as _json

    def fn(ctx, inputs, target):
        if len(inputs) != 1:
            return []
        value = get_data(inputs[0])
        target = get_data(target[0] if isinstance(target, list) else target)
        if not isinstance(value, str):
            return []
        if target == "html":
            return [html.unescape(value) if unescape else html.escape(value, quote=True)]
        if target == "json":
            if unescape:
                return [_JSON_ESCAPE.sub(_json_unescape_one, value)]
            return [_json.dumps(value, ensure_ascii=False)[1:-1]]
        return []

    return fn


_JSON_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)")
_JSON_SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}


def _json_unescape_one(m: re.Match) -> str:
    esc = m.group(1)
    if esc.startswith("u") and len(esc) == 5:
        return chr(int(esc[1:], 16))
    return _JSON_SIMPLE.get(esc, esc)


def _equivalent_collections(original, negate: bool):
    """``~`` on collections: same size and every item equivalent to a distinct other item,
    in any order (fhirpathpy compares the first items only)."""

    def fn(ctx, a, b):
        if len(a) <= 1 and len(b) <= 1:
            same = original(ctx, a, b)
            return [not same[0]] if negate and same else same
        result = len(a) == len(b)
        if result:
            unmatched = list(b)
            for x in a:
                hit = next(
                    (i for i, y in enumerate(unmatched) if original(ctx, [x], [y]) == [True]),
                    None,
                )
                if hit is None:
                    result = False
                    break
                unmatched.pop(hit)
        return [result != negate]

    return fn


def _starts_with(original):
    def fn(ctx, coll, prefix):
        if prefix == "" and len(coll) == 1 and get_data(coll[0]) == "":
            return True  # ''.startsWith('') (fhirpathpy answers false for empty strings)
        return original(ctx, coll, prefix)

    return fn


# UCUM units the hub meets, by dimension (enough for comparable(); conversions are not done)
_UCUM_DIMENSIONS = {
    "length": {"m", "cm", "mm", "km", "um", "nm", "[in_i]", "[ft_i]", "[yd_i]", "[mi_i]"},
    "mass": {"g", "kg", "mg", "ug", "ng", "[lb_av]", "[oz_av]"},
    "time": {"s", "ms", "min", "h", "d", "wk", "mo", "a"},
    "volume": {"L", "l", "mL", "ml", "dL", "dl", "uL"},
}


def _unit_dimension(unit: str) -> str:
    unit = unit.strip("'")
    for dim, units in _UCUM_DIMENSIONS.items():
        if unit in units:
            return dim
    return "unit:" + unit


def _comparable(ctx, inputs, other):
    other = other[0] if isinstance(other, list) and other else other
    if len(inputs) != 1:
        return []
    a, b = get_data(inputs[0]), get_data(other)
    if not isinstance(a, _fp_nodes.FP_Quantity) or not isinstance(b, _fp_nodes.FP_Quantity):
        return []
    return [_unit_dimension(a.unit) == _unit_dimension(b.unit)]


def _to_string(ctx, inputs):
    if len(inputs) != 1:
        return []
    value = get_data(inputs[0])
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, Decimal):
        return [str(value)]
    if isinstance(value, float):
        return [repr(value)]
    return [str(value)]


_FUNCTIONS = {
    "resolve": {"fn": _resolve},
    "hasValue": {"fn": _has_value},
    "htmlChecks": {"fn": _html_checks},
    "htmlchecks": {"fn": _html_checks},
    "memberOf": {"fn": _member_of, "arity": {1: ["String"]}},
    "conformsTo": {"fn": _conforms_to, "arity": {1: ["String"]}},
    "residentIdValid": {"fn": _resident_id_valid},
    "lowBoundary": {"fn": _boundary(False), "arity": {0: [], 1: ["Integer"]}},
    "highBoundary": {"fn": _boundary(True), "arity": {0: [], 1: ["Integer"]}},
    "precision": {"fn": _precision},
    "sort": {"fn": _sort, "arity": {0: [], 1: ["Expr"], 2: ["Expr"] * 2, 3: ["Expr"] * 3}},
    "matchesFull": {"fn": _matches_full, "arity": {1: ["String"]}},
    "escape": {"fn": _escape(False), "arity": {1: ["String"]}},
    "unescape": {"fn": _escape(True), "arity": {1: ["String"]}},
    "comparable": {"fn": _comparable, "arity": {1: ["Any"]}},
}

# fhirpathpy functions whose results differ from the specification: true.toString() gives
# 'True' (Python's spelling); the FHIRPath answer is 'true'.
_REPLACEMENTS = {"toString": {"fn": _to_string}}


def _install() -> None:
    registry = _fp_invocations.invocation_registry
    for name, entry in _FUNCTIONS.items():
        registry.setdefault(name, entry)
    if getattr(registry["toString"]["fn"], "__module__", "") == __name__:
        return  # already installed (module reloaded)
    registry.update(_REPLACEMENTS)
    # round() with no argument means round(0)
    rround = registry["round"]["fn"]
    registry["round"] = {
        **registry["round"],
        "fn": lambda ctx, x, acc=None: rround(ctx, x, [] if acc is None else acc),
        "arity": {0: [], 1: ["Number"]},
    }
    equivalent = registry["~"]["fn"]
    for op, negate in (("~", False), ("!~", True)):
        registry[op] = {**registry[op], "fn": _equivalent_collections(equivalent, negate)}
    registry["startsWith"] = {
        **registry["startsWith"],
        "fn": _starts_with(registry["startsWith"]["fn"]),
    }


_install()
