"""Resource -> typed search-index rows.

``Indexer(registry).index(resource)`` evaluates every search parameter that
applies to the resource's type and returns rows for the ``sp_*`` tables and
``compartment`` (without ``resource_pk``: the repository adds it and
bulk-inserts). Every row of a table has the same keys, so the repository can
insert a table's rows with one ``executemany``.

It never raises on valid FHIR: values of an unexpected shape are skipped.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from dataclasses import field

from hub.search.data import compartments
from hub.search.fhirpath import compile_extractor
from hub.search.fhirpath import first_key
from hub.search.registry import SearchParam
from hub.search.registry import SearchRegistry
from hub.search.values import MAX_DT
from hub.search.values import MIN_DT
from hub.search.values import UTC
from hub.search.values import canonical_quantity
from hub.search.values import date_range
from hub.search.values import has_cjk
from hub.search.values import normalise
from hub.search.values import number_range

_CLIP = 512


@dataclass
class IndexResult:
    """The index rows of one resource, by table name, and its patient compartment."""

    rows: dict[str, list[dict]] = field(default_factory=dict)
    patient_id: str | None = None

    def count(self) -> int:
        return sum(len(v) for v in self.rows.values())


def _clip(s):
    """A string value clipped to the column size; anything else (invalid FHIR) is None."""
    if isinstance(s, str):
        return s[:_CLIP] if len(s) > _CLIP else s
    return None


# ---------------------------------------------------------------------------
# Values -> row tuples, one function per parameter type
# ---------------------------------------------------------------------------


def token_values(v) -> list[tuple]:
    """``(system, code, text)`` tuples for a token value."""
    if isinstance(v, str):
        return [(None, _clip(v), None)]
    if isinstance(v, bool):
        return [(None, "true" if v else "false", None)]
    if isinstance(v, int | float):
        return [(None, str(v), None)]
    if not isinstance(v, dict):
        return []
    out = []
    codings = v.get("coding")
    if codings is not None or "text" in v and "value" not in v:
        # CodeableConcept
        for c in codings or ():
            if isinstance(c, dict) and (c.get("code") is not None or c.get("system")):
                display = c.get("display")
                out.append(
                    (
                        _clip(c.get("system")),
                        _clip(c.get("code")),
                        normalise(display) if isinstance(display, str) else None,
                    )
                )
        text = v.get("text")
        if isinstance(text, str):
            out.append((None, None, normalise(text)))
        return out
    if "value" in v:
        # Identifier or ContactPoint: system|value; Identifier.type.text for :text
        value = v.get("value")
        if not isinstance(value, str):
            return []
        typ = v.get("type")
        text = typ.get("text") if isinstance(typ, dict) else None
        return [
            (
                _clip(v.get("system")),
                _clip(value),
                normalise(text) if isinstance(text, str) else None,
            )
        ]
    if "code" in v or "system" in v:  # Coding
        display = v.get("display")
        return [
            (
                _clip(v.get("system")),
                _clip(v.get("code")),
                normalise(display) if isinstance(display, str) else None,
            )
        ]
    return []


def _memoised(known: dict, value, compute):
    """``compute(value)``, once per element object of the resource being indexed: paired
    parameters (``code``/``combo-code``, ``subject``/``patient``) reach the same dicts."""
    if type(value) is not dict:
        return compute(value)
    found = known.get(id(value))
    if found is None:
        found = known[id(value)] = compute(value)
    return found


def _identifier_types(v) -> list[tuple]:
    """``:of-type`` rows: (type system, "type code|value")."""
    typ = v.get("type") if isinstance(v, dict) else None
    value = v.get("value") if isinstance(v, dict) else None
    if not isinstance(typ, dict) or not isinstance(value, str):
        return []
    return [
        (_clip(c.get("system")), _clip(f"{c.get('code')}|{value}"), None)
        for c in typ.get("coding") or ()
        if isinstance(c, dict) and c.get("code")
    ]


_NAME_PARTS = ("text", "family", "given", "prefix", "suffix")
_ADDRESS_PARTS = ("text", "line", "city", "district", "state", "postalCode", "country")


def string_values(v) -> list[str]:
    """The strings a string parameter matches in ``v`` (HumanName, Address, string)."""
    if isinstance(v, str):
        return [v]
    if not isinstance(v, dict):
        return []
    out: list[str] = []
    parts = _ADDRESS_PARTS if ("line" in v or "city" in v or "postalCode" in v) else _NAME_PARTS
    for key in parts:
        x = v.get(key)
        if isinstance(x, str):
            out.append(x)
        elif isinstance(x, list):
            out.extend(s for s in x if isinstance(s, str))
    if parts is _NAME_PARTS:
        family = v.get("family")
        given = [g for g in v.get("given") or () if isinstance(g, str)]
        if isinstance(family, str) and given:
            if has_cjk(family):
                # Chinese names are written family-first without a space: 王小明
                out.append(family + "".join(given))
            else:
                out.append(" ".join([*given, family]))
    if not out:
        out.extend(x for x in v.values() if isinstance(x, str))
    return out


def date_values(v, tz: dt.tzinfo) -> list[tuple]:
    """``(low, high)`` ranges for date, dateTime, instant, Period and Timing values."""
    if isinstance(v, str):
        r = date_range(v, tz)
        return [r] if r else []
    if not isinstance(v, dict):
        return []
    if "start" in v or "end" in v:  # Period
        start = date_range(v["start"], tz) if isinstance(v.get("start"), str) else None
        end = date_range(v["end"], tz) if isinstance(v.get("end"), str) else None
        return [(start[0] if start else MIN_DT, end[1] if end else MAX_DT)]
    ranges = []
    for e in v.get("event") or ():  # Timing
        r = date_range(e, tz) if isinstance(e, str) else None
        if r:
            ranges.append(r)
    repeat = v.get("repeat")
    if isinstance(repeat, dict) and isinstance(repeat.get("boundsPeriod"), dict):
        ranges.extend(date_values(repeat["boundsPeriod"], tz))
    if ranges:
        return [(min(r[0] for r in ranges), max(r[1] for r in ranges))]
    return []


def number_values(v) -> list[tuple]:
    if isinstance(v, dict):
        v = v.get("value", (v.get("low") or {}).get("value") if "low" in v else None)
    r = number_range(v)
    return [r] if r else []


def quantity_values(v) -> list[tuple]:
    """``(value, low, high, system, code, unit, canonical value, canonical code)``."""
    if not isinstance(v, dict):
        return []
    if "value" not in v and ("low" in v or "high" in v):  # Range
        lo, hi = v.get("low") or {}, v.get("high") or {}
        base = lo if "value" in lo else hi
        lv = number_range(lo.get("value"))
        hv = number_range(hi.get("value"))
        if not (lv or hv):
            return []
        value = (lv or hv)[0]
        system = _clip(base.get("system"))
        code = _clip(base.get("code"))
        cv, cc = canonical_quantity(value, code) if system in (None, _UCUM) else (None, None)
        return [
            (
                value,
                lv[1] if lv else -1e300,
                hv[2] if hv else 1e300,
                system,
                code,
                _clip(base.get("unit")),
                cv,
                cc,
            )
        ]
    r = number_range(v.get("value"))
    if not r:
        return []
    system, code = _clip(v.get("system")), _clip(v.get("code"))
    if "currency" in v:  # Money
        system, code = "urn:iso:std:iso:4217", _clip(v.get("currency"))
    cv, cc = canonical_quantity(r[0], code) if system in (None, _UCUM) else (None, None)
    return [(r[0], r[1], r[2], _clip(system), _clip(code), _clip(v.get("unit")), cv, cc)]


_UCUM = "http://unitsofmeasure.org"


def parse_reference(literal: str) -> tuple[str | None, str | None, str | None, str | None]:
    """``(type, id, version, url)`` of a literal or canonical reference."""
    if literal.startswith("#"):
        return None, None, None, literal
    if literal.startswith(("urn:", "http:", "https:")):
        url, _, version = literal.partition("|")
        parts = url.split("/")
        if len(parts) >= 4 and parts[-2] == "_history":
            return parts[-4], parts[-3], parts[-1], url
        if len(parts) >= 2 and parts[-2][:1].isupper() and not url.startswith("urn:"):
            return parts[-2], parts[-1], version or None, url
        return None, None, version or None, url
    parts = literal.split("/")
    if len(parts) == 4 and parts[2] == "_history":
        return parts[0], parts[1], parts[3], None
    if len(parts) == 2:
        return parts[0], parts[1], None, None
    return None, None, None, literal


def reference_values(v) -> list[tuple]:
    """``(type, id, version, url, identifier system, identifier value)``."""
    if isinstance(v, str):  # canonical or uri
        t, i, ver, url = parse_reference(v)
        return [(t, _clip(i), ver, _clip(url or v), None, None)]
    if not isinstance(v, dict):
        return []
    if "resourceType" in v:  # a resource inline (Bundle.entry[0].resource)
        return [(v["resourceType"], _clip(v.get("id")), None, None, None, None)]
    literal = v.get("reference")
    ident = v.get("identifier")
    isys = ival = None
    if isinstance(ident, dict):
        isys, ival = _clip(ident.get("system")), _clip(ident.get("value"))
    if isinstance(literal, str):
        t, i, ver, url = parse_reference(literal)
        return [(t or _clip(v.get("type")), _clip(i), ver, _clip(url), isys, ival)]
    if ival is not None:
        return [(_clip(v.get("type")), None, None, None, isys, ival)]
    return []


# ---------------------------------------------------------------------------
# The indexer
# ---------------------------------------------------------------------------

# The patient-compartment parameters preferred as the distribution key.
_PATIENT_FIRST = ("patient", "subject", "beneficiary", "individual", "who")


class Indexer:
    """Computes index rows for resources with the parameters of a registry."""

    def __init__(self, registry: SearchRegistry, default_tz: dt.tzinfo = UTC):
        self.registry = registry
        self.tz = default_tz
        self._comp = compartments()
        self._plans: dict[str, tuple[list, list]] = {}

    def index(self, resource: dict) -> IndexResult:
        res_type = resource.get("resourceType")
        result = IndexResult()
        if not isinstance(res_type, str):
            return result
        plan = self._plans.get(res_type)
        if plan is None:
            plan = self._plans[res_type] = (self._plan(res_type), self._compartment_plan(res_type))
        rows: dict[str, list[dict]] = {}
        # The tuples of each object value, by kind and id, for this call: parameters read the same
        # elements (code and combo-code, subject and patient, value-quantity and
        # combo-value-quantity), and the objects stay alive (in the resource) until it returns.
        memo: dict[str, dict[int, list[tuple]]] = {"token": {}, "reference": {}, "quantity": {}}
        for key, extract, add_rows, arg in plan[0]:
            if key is not None and key not in resource:
                continue  # most parameters: the element is absent, skip the call
            try:
                values = extract(resource)
                if values:
                    add_rows(arg, res_type, values, rows, memo)
            except Exception:  # noqa: BLE001 - an invalid value must not fail the write
                continue
        refs = rows.get("sp_reference", ())
        result.patient_id = self._compartments(resource, res_type, plan[1], refs, rows)
        result.rows = {table: r for table, r in rows.items() if r}
        return result

    def _plan(self, res_type: str) -> list[tuple]:
        """``(first key, extractor, row builder, its argument)`` per parameter of ``res_type``.

        Resolved once per type so that indexing a resource does no registry
        look-ups: the extractor, the builder for the parameter's type and, for
        composites, the components' types and extractors.
        """
        builders = {
            "token": self._token_rows,
            "string": self._string_rows,
            "reference": self._reference_rows,
            "date": self._date_rows,
            "quantity": self._quantity_rows,
            "number": self._number_rows,
            "uri": self._uri_rows,
        }
        plan: list[tuple] = []
        composites: list[tuple] = []
        for p in self.registry.indexed_params(res_type):
            if p.type == "composite":
                components = self._components(p)
                if components:
                    if not composites:  # all in one step, see _composite_rows
                        plan.append((None, _itself, self._composite_rows, composites))
                    composites.append((p.code, p.extractor(res_type), *components))
            elif p.type in builders:
                key = first_key(p.expression, res_type)
                plan.append((key, p.extractor(res_type), builders[p.type], p.code))
        return plan

    def _components(self, p: SearchParam) -> tuple | None:
        """``(type, expression, extractor)`` of a composite's two components, if known."""
        if len(p.components) < 2:
            return None
        out: list = []
        for comp in p.components[:2]:
            target = self.registry.by_url.get(comp.definition)
            if target is None:
                return None
            out += [target.type, comp.expression, compile_extractor(comp.expression, None)]
        return tuple(out)

    # -- per type ----------------------------------------------------------

    def _token_rows(self, code: str, res_type: str, values: list, rows: dict, memo: dict) -> None:
        out = rows.setdefault("sp_token", [])
        known = memo["token"]
        seen: set = set()
        for v in values:
            tuples = _memoised(known, v, token_values)
            if code == "identifier" or (isinstance(v, dict) and "type" in v and "value" in v):
                for t in _identifier_types(v):
                    out.append(_token_row(res_type, code + ":of-type", t))
            for t in tuples:
                if t not in seen:
                    seen.add(t)
                    out.append(_token_row(res_type, code, t))

    def _string_rows(self, code: str, res_type: str, values: list, rows: dict, memo: dict) -> None:
        out = rows.setdefault("sp_string", [])
        seen: set = set()
        if code == "phonetic":
            values = values + _pinyin_keys(values)
        for v in values:
            for s in string_values(v):
                if s and s not in seen:
                    seen.add(s)
                    out.append(
                        {
                            "res_type": res_type,
                            "param": code,
                            "value": normalise(s),
                            "exact": _clip(s),
                        }
                    )

    def _reference_rows(
        self, code: str, res_type: str, values: list, rows: dict, memo: dict
    ) -> None:
        out = rows.setdefault("sp_reference", [])
        known = memo["reference"]
        seen: set = set()
        for v in values:
            tuples = _memoised(known, v, reference_values)
            for t in tuples:
                if t not in seen:
                    seen.add(t)
                    out.append(
                        {
                            "res_type": res_type,
                            "param": code,
                            "target_type": t[0],
                            "target_id": t[1],
                            "target_version": t[2],
                            "url": t[3],
                            "identifier_system": t[4],
                            "identifier_value": t[5],
                        }
                    )

    def _date_rows(self, code: str, res_type: str, values: list, rows: dict, memo: dict) -> None:
        out = rows.setdefault("sp_date", [])
        seen: set = set()
        for v in values:
            for lo, hi in date_values(v, self.tz):
                if (lo, hi) not in seen:
                    seen.add((lo, hi))
                    out.append({"res_type": res_type, "param": code, "low": lo, "high": hi})

    def _quantity_rows(
        self, code: str, res_type: str, values: list, rows: dict, memo: dict
    ) -> None:
        out = rows.setdefault("sp_quantity", [])
        known = memo["quantity"]
        for v in values:
            tuples = known.get(id(v))
            if tuples is None:
                tuples = known[id(v)] = quantity_values(v)
            for t in tuples:
                out.append(
                    {
                        "res_type": res_type,
                        "param": code,
                        "value": t[0],
                        "low": t[1],
                        "high": t[2],
                        "system": t[3],
                        "code": t[4],
                        "unit": t[5],
                        "canonical_value": t[6],
                        "canonical_code": t[7],
                    }
                )

    def _number_rows(self, code: str, res_type: str, values: list, rows: dict, memo: dict) -> None:
        out = rows.setdefault("sp_number", [])
        for v in values:
            for t in number_values(v):
                out.append(
                    {"res_type": res_type, "param": code, "value": t[0], "low": t[1], "high": t[2]}
                )

    def _uri_rows(self, code: str, res_type: str, values: list, rows: dict, memo: dict) -> None:
        out = rows.setdefault("sp_uri", [])
        seen: set = set()
        for v in values:
            if isinstance(v, str) and v not in seen:
                seen.add(v)
                out.append({"res_type": res_type, "param": code, "value": _clip(v)})

    def _composite_rows(
        self, params: list, res_type: str, values: list, rows: dict, memo: dict
    ) -> None:
        """The rows of all the type's composite parameters.

        They share items and components: six of Observation's have the
        Observation as item and ``code`` as first component. So each
        component's values are computed once per item (and expression) in a
        call, not once per parameter.
        """
        resource = values[0]
        components: dict[tuple, tuple] = {}
        out = rows.setdefault("sp_composite", [])
        for code, items_of, _, first_expr, first, kind2, second_expr, second in params:
            try:
                for item in items_of(resource):
                    # The first component is read as a token, whatever its type.
                    firsts = self._component(components, item, "token", first_expr, first)
                    if not firsts:
                        continue
                    seconds = self._component(components, item, kind2, second_expr, second)
                    for t1 in firsts:
                        for sys2, code2, num2, low2, high2 in seconds:
                            out.append(
                                {
                                    "res_type": res_type,
                                    "param": code,
                                    "c1_system": t1[0],
                                    "c1_code": t1[1],
                                    "c2_system": sys2,
                                    "c2_code": code2,
                                    "c2_value": num2,
                                    "c2_low": low2,
                                    "c2_high": high2,
                                }
                            )
            except Exception:  # noqa: BLE001 - an invalid value must not fail the write
                continue

    def _component(self, memo: dict, item, kind: str, expression: str, extract) -> list:
        """The ``_component_value`` tuples of a component in ``item``, once per call."""
        key = (id(item), kind, expression)
        hit = memo.get(key)
        if hit is None:
            values = [t for v in extract(item) for t in _component_value(kind, v, self.tz)]
            # The entry holds the item, so its id cannot be reused during the call.
            hit = memo[key] = (item, values)
        return hit[1]

    # -- compartments ------------------------------------------------------

    def _compartment_plan(self, res_type: str) -> list[tuple[str, bool, frozenset]]:
        """``(compartment type, is it res_type, the parameters linking to it)`` that apply."""
        return [
            (comp_type, comp_type == res_type, frozenset(by_type.get(res_type) or ()))
            for comp_type, by_type in self._comp.items()
            if comp_type == res_type or by_type.get(res_type)
        ]

    def _compartments(self, resource: dict, res_type: str, plan, refs, rows: dict) -> str | None:
        out: list[dict] = []
        patient_id = None
        own_id = resource.get("id")
        for comp_type, is_own, params in plan:
            if is_own and isinstance(own_id, str):
                out.append({"res_type": res_type, "comp_type": comp_type, "comp_id": own_id})
            if not params or not refs:
                continue
            ids = []
            for r in refs:
                if r["target_type"] == comp_type and r["target_id"] and r["param"] in params:
                    ids.append((r["param"], r["target_id"]))
            seen = set()
            for _param, target_id in ids:
                if target_id not in seen:
                    seen.add(target_id)
                    out.append({"res_type": res_type, "comp_type": comp_type, "comp_id": target_id})
            if comp_type == "Patient" and ids:
                ids.sort(key=lambda x: _PATIENT_FIRST.index(x[0]) if x[0] in _PATIENT_FIRST else 99)
                patient_id = ids[0][1]
        if res_type == "Patient" and isinstance(own_id, str):
            patient_id = own_id
        if out:
            rows["compartment"] = out
        return patient_id


def _pinyin_keys(names: list) -> list[str]:
    """Pinyin keys of Chinese names for ``phonetic``: ouyangnana, ouyang nana, oynn."""
    out: list[str] = []
    for name in names:
        if not isinstance(name, dict):
            continue
        family = name.get("family") if isinstance(name.get("family"), str) else ""
        given = "".join(g for g in name.get("given") or () if isinstance(g, str))
        text = family + given or name.get("text") or ""
        if not isinstance(text, str) or not has_cjk(text):
            continue
        from hub.identity.names import pinyin_syllables
        from hub.identity.names import split_chinese_name

        syllables = pinyin_syllables(text)
        if not syllables:
            continue
        if not family:
            family = split_chinese_name(text)[0] or ""
        cut = len(family) if len(syllables) == len(text) else 0
        grouped = " ".join(x for x in ("".join(syllables[:cut]), "".join(syllables[cut:])) if x)
        out += ["".join(syllables), grouped, "".join(x[0] for x in syllables)]
    return out


def _itself(resource: dict) -> list:
    return [resource]


def _token_row(res_type: str, param: str, t: tuple) -> dict:
    return {"res_type": res_type, "param": param, "system": t[0], "code": t[1], "text": t[2]}


def _component_value(kind: str, v, tz) -> list[tuple]:
    """``(system, code, number, low, high)`` for the second component of a composite."""
    if kind == "token":
        return [(s, c, None, None, None) for s, c, _ in token_values(v) if c is not None]
    if kind == "quantity":
        return [(t[3], t[4] or t[5], t[0], None, None) for t in quantity_values(v)]
    if kind == "date":
        return [(None, None, None, lo, hi) for lo, hi in date_values(v, tz)]
    if kind == "number":
        return [(None, None, t[0], None, None) for t in number_values(v)]
    if kind == "string":
        return [(None, normalise(s), None, None, None) for s in string_values(v)]
    if kind == "reference":
        return [
            (None, f"{t[0]}/{t[1]}" if t[0] and t[1] else t[3], None, None, None)
            for t in reference_values(v)
        ]
    if kind == "uri" and isinstance(v, str):
        return [(None, v, None, None, None)]
    return []
