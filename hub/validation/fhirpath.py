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

import contextvars
import datetime as dt
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

_DATE_RE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_DT_RE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(\.\d+)?)?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
_TIME_RE = re.compile(r"^T?(\d{2})(?::(\d{2})(?::(\d{2})(\.\d+)?)?)?$")


def _value_and_kind(item):
    """The raw value of ``item`` and its FHIRPath kind ('decimal', 'date', 'dateTime', 'time')."""
    if isinstance(item, _fp_nodes.FP_Time):
        return str(item), "time"
    if isinstance(item, _fp_nodes.FP_DateTime):
        s = str(item).lstrip("@")
        return s, "date" if _DATE_RE.match(s) and type(item).__name__ == "FP_Date" else "dateTime"
    if isinstance(item, ResourceNode):
        t = item.get_type_info()
        name = getattr(t, "name", None)
        data = item.data
        if name in ("date", "dateTime", "instant", "time"):
            return data, {"instant": "dateTime"}.get(name, name)
        if name == "decimal" or isinstance(data, (float, Decimal)):
            return data, "decimal"
        if name in ("integer", "positiveInt", "unsignedInt"):
            return data, "integer"
        item = data
    if isinstance(item, bool):
        return item, None
    if isinstance(item, (int, float, Decimal)):
        return item, "decimal" if not isinstance(item, int) else "integer"
    return item, None


def _decimal_digits(value) -> tuple[Decimal, int]:
    text = (
        value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)
    )
    d = Decimal(text)
    exp = -d.as_tuple().exponent if d.as_tuple().exponent < 0 else 0
    return d, exp


def _decimal_boundary(value, precision, high: bool):
    d, digits = _decimal_digits(value)
    if precision is None:
        precision = 8
    if precision < 0 or precision > 28:
        return None
    half = Decimal(5) * Decimal(10) ** (-(digits + 1))
    bound = d + half if high else d - half
    if d == 0 and digits == 0 and not high:
        bound = -half
    q = Decimal(1).scaleb(-precision)
    if high:
        out = bound.quantize(q, rounding="ROUND_FLOOR" if bound >= 0 else "ROUND_CEILING")
        if out < bound and bound >= 0:
            out = bound.quantize(q, rounding="ROUND_CEILING")
    else:
        out = bound.quantize(q, rounding="ROUND_FLOOR")
    # boundaries are exact when the precision exceeds the digits given
    if precision <= digits:
        out = d.quantize(q, rounding="ROUND_DOWN")
    return out


def _days_in_month(year: int, month: int) -> int:
    if month == 12:
        return 31
    return (dt.date(year, month + 1, 1) - dt.timedelta(days=1)).day


def _date_boundary(text: str, kind: str, precision, high: bool):
    if kind == "time":
        m = _TIME_RE.match(text)
        if not m:
            return None
        hh, mi, ss, frac = m.groups()
        precision = 9 if precision is None else precision
        mi = mi or ("59" if high else "00")
        ss = ss or ("59" if high else "00")
        frac = frac or (".999" if high else ".000")
        out = f"{hh}:{mi}:{ss}{frac}"
        cut = {2: 2, 4: 5, 6: 8, 9: 12}.get(precision)
        return None if cut is None else _fp_nodes.FP_Time("T" + out[:cut]) if cut else None
    m = _DT_RE.match(text)
    if not m:
        return None
    y, mo, d, hh, mi, ss, frac, tz = m.groups()
    year = int(y)
    mo = mo or ("12" if high else "01")
    d = d or (f"{_days_in_month(year, int(mo)):02d}" if high else "01")
    if kind == "date":
        precision = 8 if precision is None else precision
        cut = {4: 4, 6: 7, 8: 10}.get(precision)
        if cut is None:
            return None
        return (
            _fp_nodes.FP_DateTime(f"{y}-{mo}-{d}"[:cut])
            if False
            else _make_date(f"{y}-{mo}-{d}"[:cut])
        )
    precision = 17 if precision is None else precision
    hh = hh or ("23" if high else "00")
    mi = mi or ("59" if high else "00")
    ss = ss or ("59" if high else "00")
    frac = frac or (".999" if high else ".000")
    if tz is None:
        tz = "-12:00" if high else "+14:00"
    full = f"{y}-{mo}-{d}T{hh}:{mi}:{ss}{frac}"
    cut = {4: 4, 6: 7, 8: 10, 10: 13, 12: 16, 14: 19, 17: 23}.get(precision)
    if cut is None:
        return None
    text_out = full[:cut]
    if cut > 10:
        text_out += tz
    return _fp_nodes.FP_DateTime(text_out)


def _make_date(text: str):
    cls = getattr(_fp_nodes, "FP_Date", None) or _fp_nodes.FP_DateTime
    return cls(text)


def _boundary(high: bool):
    def fn(ctx, inputs, *args):
        if len(inputs) != 1:
            return []
        precision = get_data(args[0][0]) if args and args[0] else None
        if isinstance(precision, list):
            precision = precision[0] if precision else None
        value, kind = _value_and_kind(inputs[0])
        if kind in ("decimal", "integer"):
            out = _decimal_boundary(value, precision, high)
            return [] if out is None else [out]
        if kind in ("date", "dateTime", "time"):
            out = _date_boundary(str(value), kind, precision, high)
            return [] if out is None else [out]
        return []

    return fn


def _precision(ctx, inputs):
    if len(inputs) != 1:
        return []
    value, kind = _value_and_kind(inputs[0])
    if kind in ("decimal", "integer"):
        return [_decimal_digits(value)[1]]
    if kind in ("date", "dateTime", "time"):
        text = str(value).lstrip("@T")
        text = re.sub(r"(Z|[+-]\d{2}:\d{2})$", "", text) if kind != "date" else text
        return [len(re.sub(r"[^0-9]", "", text))]
    return []


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
}


def _install() -> None:
    registry = _fp_invocations.invocation_registry
    for name, entry in _FUNCTIONS.items():
        registry.setdefault(name, entry)


_install()
