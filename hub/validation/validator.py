"""The hub's StructureDefinition-driven validator.

``Validator(definitions).validate(resource, profiles)`` walks the resource against the element
tree of its base definition and of every profile it claims (``meta.profile``) or is asked for,
and returns ``OperationOutcome.issue`` dicts, each with a FHIRPath ``expression`` such as
``Patient.identifier[0].value``. What it checks:

- structure: every property is defined; arrays where the element repeats, single values where
  it does not; cardinality (min/max); choice types (one ``value[x]`` only, of an allowed type);
- primitives: the JSON type (a string is not a boolean), the type's regular expression, real
  calendar dates, integer ranges, ``maxLength``, ``minValue``/``maxValue``;
- fixed and pattern values; required and extensible bindings against the ValueSets held
  (codes from systems the hub does not hold are not checked);
- FHIRPath invariants of base definitions and profiles (compiled once);
- slicing by value, pattern, type, exists and profile discriminators, open or closed;
- extensions: known definitions and their value types, where they may be used (context);
- references: target resource types, contained and in-Bundle targets;
- contained resources and Bundle entries, each against its own definition.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import re
from decimal import Decimal
from typing import Any

from hub.outcomes import issue
from hub.validation import fhirpath
from hub.validation.definitions import FHIR_SD_BASE
from hub.validation.definitions import Definitions
from hub.validation.definitions import default_definitions
from hub.validation.model import INF
from hub.validation.model import Node
from hub.validation.model import Tree
from hub.validation.model import build_tree
from hub.validation.model import primitive_rules
from hub.validation.navigation import absent
from hub.validation.navigation import node_at
from hub.validation.navigation import type_at
from hub.validation.navigation import values_at
from hub.validation.snapshot import SnapshotError
from hub.validation.values import clip
from hub.validation.values import in_expansion
from hub.validation.values import json_kind
from hub.validation.values import json_name
from hub.validation.values import less_than
from hub.validation.values import literal_type
from hub.validation.values import matches_pattern
from hub.validation.values import real_date
from hub.validation.values import resolve_in_bundle
from hub.validation.values import short

log = logging.getLogger("hub.validation")

_INT32 = (-(2**31), 2**31 - 1)
_INT_LOW = {"positiveInt": 1, "unsignedInt": 0}  # the others: _INT32[0]
_DATE_PARTS = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
_STRING_TYPES = frozenset(
    {
        "string",
        "code",
        "id",
        "uri",
        "url",
        "canonical",
        "oid",
        "uuid",
        "markdown",
        "base64Binary",
        "date",
        "dateTime",
        "instant",
        "time",
        "xhtml",
    }
)
_INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt"})
_DATE_TYPES = frozenset({"date", "dateTime", "instant"})
_CODED_TYPES = frozenset({"code", "Coding", "CodeableConcept", "Quantity", "string", "uri"})
_RESOURCE_CODES = frozenset({"Resource", "DomainResource"})


_BASE64_CHARS = re.compile(r"[0-9a-zA-Z+/=]+")


class _Base64Binary:
    """The base64Binary regex ``(\\s*([0-9a-zA-Z\\+/=]){4}\\s*)+``, without its cost.

    Python's engine takes about a second per 2 MB on that pattern (a Binary's PDF, a
    document's attachment); this answers the same in milliseconds: whitespace only between
    groups of four (every run between whitespace a multiple of four long) and nothing but
    base64 characters.
    """

    def __init__(self, rx: re.Pattern):
        self.pattern = rx.pattern

    @staticmethod
    def fullmatch(value: str):
        chunks = value.split()
        if not chunks or any(len(c) % 4 for c in chunks):
            return None
        return _BASE64_CHARS.fullmatch("".join(chunks))


class _Run:
    """State of one validation: the issues and the resources in scope."""

    __slots__ = ("errors", "issues", "root", "seen", "structural")

    def __init__(self, root: dict, structural: bool = False):
        self.issues: list[dict] = []
        self.errors = 0  # issues of severity error: tells whether a walk found any
        self.root = root
        self.seen: set = set()
        # structure only: no invariants, terminology, extension definitions or profiles
        self.structural = structural

    def add(self, severity: str, code: str, text: str, expr: str) -> None:
        key = (severity, code, text, expr)
        if key in self.seen:
            return
        self.seen.add(key)
        self.issues.append(issue(severity, code, text, expr))
        if severity == "error":
            self.errors += 1


class Validator:
    """Validates resources (dicts) against the definitions it was given."""

    def __init__(
        self,
        definitions: Definitions,
        assume_valid_rest_references: bool = True,
        unknown_extensions: str = "error",
    ):
        """``assume_valid_rest_references``: a literal reference ``Group/1`` that cannot be
        resolved is taken to point to a ``Group`` (so its type is checked against the
        element's target profiles); set ``False`` to check only resolvable targets.

        ``unknown_extensions``: severity of an extension whose definition the hub does not
        hold (``"error"``, as the reference validator, or ``"warning"``). Unknown modifier
        extensions are always errors.
        """
        self.defs = definitions
        self.assume_valid_rest_references = assume_valid_rest_references
        self.unknown_extensions = unknown_extensions
        self._vital_signs: dict[str, str] | None = None
        self._trees: dict[str, Tree | None] = {}
        self._by_type: dict[str, Tree] = {}  # base definitions by type code
        self._props: dict[Node, dict[str, _Prop]] = {}  # an object's properties by JSON name
        self._typed: dict[tuple[Node, str | None], _Prop] = {}  # element and type -> _Prop
        # ValueSet url -> {system: frozenset of codes, or None when not held}, or None
        self._codes: dict[str, dict | None] = {}
        self._version = definitions.version
        self._regex = dict(primitive_rules(definitions))
        if "base64Binary" in self._regex:
            self._regex["base64Binary"] = _Base64Binary(self._regex["base64Binary"])

    # -- public API ------------------------------------------------------------------------

    def validate(self, resource: Any, profiles: list[str] | None = None) -> list[dict]:
        """Every issue found in ``resource``, against its base definition and ``profiles``.

        Profiles named in ``meta.profile`` are checked too; an unknown profile is an issue
        (a warning when only claimed in ``meta.profile``, an error when asked for).
        """
        if not isinstance(resource, dict):
            return [issue("error", "structure", "a resource must be a JSON object", "$this")]
        run = _Run(resource)
        token = fhirpath.current_definitions.set(self.defs)
        token2 = fhirpath.current_conformance.set(self.conforms_to)
        try:
            self._validate_resource(resource, _root_expression(resource), run, profiles)
        except (TypeError, AttributeError, KeyError, ValueError, IndexError) as exc:
            # a shape no check above foresaw: report it instead of failing the request
            log.exception("validation stopped on %s", _root_expression(resource))
            run.add(
                "error",
                "structure",
                f"the resource could not be validated completely ({type(exc).__name__})",
                _root_expression(resource),
            )
        finally:
            fhirpath.current_definitions.reset(token)
            fhirpath.current_conformance.reset(token2)
        return run.issues

    def structure(self, resource: Any) -> list[dict]:
        """Structural issues only (elements, shapes, cardinality, primitive types and formats):
        the definitions-driven alternative to the fhir.resources check."""
        if not isinstance(resource, dict):
            return [issue("error", "structure", "a resource must be a JSON object", "$this")]
        if self._clean_resource(resource):
            return []  # the common case: nothing to report, no issue or location built
        run = _Run(resource, structural=True)
        self._validate_resource(resource, _root_expression(resource), run)
        return run.issues

    def conforms_to(self, resource: dict, url: str) -> bool:
        """Whether ``resource`` validates against ``url`` without errors (``conformsTo()``)."""
        if not isinstance(resource, dict):
            return False
        run = _Run(resource)
        tree = self.tree(url)
        if tree is None:
            raise fhirpath.FhirPathError(f"conformsTo: unknown profile {url}")
        if tree.type != resource.get("resourceType"):
            return False
        self._walk_resource(resource, tree, resource.get("resourceType"), run, resource)
        return not any(i["severity"] in ("error", "fatal") for i in run.issues)

    def tree(self, url: str) -> Tree | None:
        """The element tree of a StructureDefinition (cached)."""
        if self._version != self.defs.version:
            # definitions were added: trees (and "unknown" answers) may be stale
            self._trees.clear()
            self._by_type.clear()
            self._props.clear()
            self._typed.clear()
            self._codes.clear()
            self._vital_signs = None
            self._version = self.defs.version
        url = url.split("|")[0]
        if url in self._trees:
            return self._trees[url]
        sd = self.defs.structure(url)
        tree = build_tree(sd) if sd else None
        self._trees[url] = tree
        return tree

    # -- resources -------------------------------------------------------------------------

    def _validate_resource(
        self, res: dict, expr: str, run: _Run, profiles: list[str] | None = None
    ) -> None:
        rt = res.get("resourceType")
        if not isinstance(rt, str) or not rt:
            run.add("error", "structure", "resourceType is missing or not a string", expr)
            return
        if not self.defs.is_resource_type(rt):
            run.add("error", "not-supported", f"unknown resource type '{rt}'", expr)
            return
        base = self.tree(FHIR_SD_BASE + rt)
        self._walk_resource(res, base, expr, run, res)
        if run.structural:
            return
        claimed = []
        meta = res.get("meta")
        if isinstance(meta, dict) and isinstance(meta.get("profile"), list):
            claimed = [p for p in meta["profile"] if isinstance(p, str)]
        asked = list(profiles or ())
        if rt == "Observation":
            vs = self.vital_signs_profile(res)
            if vs:
                claimed.append(vs)
        for url in dict.fromkeys(claimed + asked):
            self._validate_profile(res, url, expr, run, url in asked)

    def _validate_profile(self, res: dict, url: str, expr: str, run: _Run, asked: bool) -> None:
        try:
            tree = self.tree(url)
        except SnapshotError as exc:
            run.add("error", "processing", f"profile {url} cannot be used: {exc}", expr)
            return
        if tree is None:
            if asked:
                run.add("error", "not-supported", f"profile {url} is unknown to this server", expr)
            else:
                run.add(
                    "warning",
                    "not-supported",
                    f"profile {url} claimed in meta.profile is unknown and was not checked",
                    expr,
                )
            return
        if tree.type != res.get("resourceType"):
            run.add(
                "error",
                "invalid",
                f"profile {url} is for {tree.type}, not {res.get('resourceType')}",
                expr,
            )
            return
        self._walk_resource(res, tree, expr, run, res)

    def _walk_resource(self, res: dict, tree: Tree, expr: str, run: _Run, resource: dict) -> None:
        self._object(res, tree.root, tree, expr, run, resource, tree.type, is_resource=True)
        self._constraints(res, tree.root, tree.type, expr, run, resource)
        if tree.type == "Bundle" and tree.url == FHIR_SD_BASE + "Bundle" and not run.structural:
            self._bundle_rules(res, expr, run)

    def _bundle_rules(self, bundle: dict, expr: str, run: _Run) -> None:
        """Rules of the Bundle page that no invariant states (fullUrl, search results)."""
        entries = bundle.get("entry")
        if not isinstance(entries, list):
            return
        searchset = bundle.get("type") == "searchset"
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                continue
            full = entry.get("fullUrl")
            if isinstance(full, str) and not re.match(r"^[a-z][a-z0-9+.-]*:", full):
                run.add(
                    "error",
                    "invalid",
                    f"the fullUrl must be an absolute URL (not '{full}')",
                    f"{expr}.entry[{i}]",
                )
            res = entry.get("resource")
            mode = (entry.get("search") or {}).get("mode", "match")
            if searchset and mode == "match" and isinstance(res, dict) and not res.get("id"):
                run.add(
                    "error",
                    "invalid",
                    "search results must have ids",
                    f"{expr}.entry[{i}].resource",
                )

    def vital_signs_profile(self, resource: dict) -> str | None:
        """The core vital-signs profile an Observation must meet (FHIR R4 §8.6: vital signs
        with these LOINC codes SHALL conform), or ``None``."""
        if self._vital_signs is None:
            table = {}
            for sd in self.defs.structures():
                if sd.get("baseDefinition") != FHIR_SD_BASE + "vitalsigns":
                    continue
                for e in (sd.get("snapshot") or {}).get("element", ()):
                    if e.get("path") == "Observation.code.coding.code" and "fixedCode" in e:
                        table[e["fixedCode"]] = sd["url"]
                    if e.get("id") == "Observation.code" and "patternCodeableConcept" in e:
                        for c in e["patternCodeableConcept"].get("coding", ()):
                            table[c.get("code")] = sd["url"]
            self._vital_signs = table
        code = resource.get("code")
        if not isinstance(code, dict):
            return None
        codings = code.get("coding")
        for c in codings if isinstance(codings, list) else ():
            if (
                isinstance(c, dict)
                and c.get("system") == "http://loinc.org"
                and isinstance(c.get("code"), str)
            ):
                url = self._vital_signs.get(c["code"])
                if url:
                    return url
        return None

    # -- objects -----------------------------------------------------------------------------

    def _container(self, node: Node, tree: Tree, type_code: str) -> tuple[Node, Tree] | None:
        """The node whose children describe a value of ``node`` (of type ``type_code``)."""
        if node.has_children:
            return node, tree
        if node.content_reference:
            target = tree.by_id.get(node.content_reference.split("#", 1)[1])
            if target is not None:
                return target, tree
        type_tree = self._type_tree(type_code)
        if type_tree is None:
            return None
        return type_tree.root, type_tree

    def _container_of(self, prop: _Prop) -> tuple[Node, Tree] | None:
        """``_container`` for the values of ``prop`` (kept once found)."""
        if prop.container is None:
            type_code = prop.type_code or "BackboneElement"
            prop.container = self._container(prop.node, prop.tree, type_code)
        return prop.container

    def _type_tree(self, type_code: str) -> Tree | None:
        tree = self._by_type.get(type_code)
        if tree is None:
            tree = self.tree(FHIR_SD_BASE + type_code)
            if tree is not None:
                self._by_type[type_code] = tree
        return tree

    def _properties(self, node: Node, tree: Tree) -> dict[str, _Prop]:
        """The properties an object of ``node`` may have, by JSON name (cached)."""
        props = {
            name: self._prop(child, tree, code) for name, (child, code) in node.choices.items()
        }
        for name, child in node.children.items():
            props[name] = self._prop(child, tree, child.first_type)
        self._props[node] = props
        return props

    def _prop(self, node: Node, tree: Tree, type_code: str | None) -> _Prop:
        """How values of ``node`` (an element of ``tree``) typed ``type_code`` are checked."""
        prop = self._typed.get((node, type_code))
        if prop is None:
            prop = _Prop(node, tree, type_code)
            if type_code is None:
                prop.kind = _BACKBONE
            elif type_code[0].islower():
                prop.kind = _PRIMITIVE
                prop.quick = self._quick_check(node, type_code)
                prop.quick_structural = self._required_quick_check(prop)
            elif type_code in _RESOURCE_CODES or self.defs.is_resource_type(type_code):
                prop.kind = _RESOURCE
                prop.profiles = [p for t in node.types for p in t.profiles]
            elif type_code == "Extension":
                prop.kind = _EXTENSION
            self._typed[(node, type_code)] = prop
        return prop

    def _required_quick_check(self, prop: _Prop):
        """The structure check's quick test of a primitive: ``prop.quick``, plus membership
        in the codes of its required binding (a frozenset worked out once per element)."""
        quick = prop.quick
        if not prop.required or quick is None:
            return quick
        exp = self.codes(prop.node.binding[1])
        if exp is None or None in exp.values():
            return quick  # a system the hub does not hold: the binding cannot fail
        allowed = frozenset().union(*exp.values())
        # a code of the value set is a valid code: one lookup replaces the type's regex
        return lambda v: type(v) is str and v in allowed

    def codes(self, vs_url: str) -> dict | None:
        """``{system: frozenset of codes | None}`` of a ValueSet (``None`` when it cannot be
        expanded), kept per value set: membership costs one lookup."""
        if vs_url in self._codes:
            return self._codes[vs_url]
        exp = self.defs.expansion(vs_url)
        if exp is not None:
            exp = {s: (None if c is None else frozenset(c)) for s, c in exp.items()}
        self._codes[vs_url] = exp
        return exp

    def _quick_check(self, node: Node, type_code: str):
        """A test that passes the values of a primitive element needing no further check (the
        common case), or ``None``; failing values get the full check, which words the issue."""
        if (
            node.max_length
            or node.fixed is not None
            or node.pattern is not None
            or node.min_value is not None
            or node.max_value is not None
        ):
            return None
        if type_code == "boolean":
            return _is_boolean
        if type_code == "decimal":
            return _is_number
        if type_code in _INTEGER_TYPES:
            low, high = _INT_LOW.get(type_code, _INT32[0]), _INT32[1]
            return lambda v: type(v) is int and low <= v <= high
        if type_code == "xhtml" or (type_code not in _STRING_TYPES and type_code in self._regex):
            return None
        rx = self._regex.get(type_code)
        if rx is None:
            return _is_string if type_code not in _DATE_TYPES else _is_real_date
        if type_code in _DATE_TYPES:
            return lambda v: type(v) is str and rx.fullmatch(v) is not None and real_date(v)
        return lambda v: type(v) is str and rx.fullmatch(v) is not None

    def _object(
        self,
        obj: dict,
        node: Node,
        tree: Tree,
        expr: str,
        run: _Run,
        resource: dict,
        type_code: str,
        is_resource: bool = False,
    ) -> None:
        props = self._props.get(node)
        if props is None:
            props = self._properties(node, tree)
        found = []  # (property, JSON name, value): the values to check, in the object's order
        counts: dict[Node, int] = {}
        over = False  # whether some element has more values than its max
        choice_seen: dict[Node, str] | None = None
        for key, value in obj.items():
            prop = props.get(key)
            if prop is None:
                if key[:1] == "_":
                    if key[1:] not in obj:
                        # a primitive present only through its extension still counts
                        base = node.children.get(key[1:]) or node.choices.get(key[1:], (None,))[0]
                        if base is not None:
                            n = counts.get(base, 0) + (len(value) if isinstance(value, list) else 1)
                            counts[base] = n
                            if n > base.max:
                                over = True
                    self._primitive_extension(key, value, obj, node, tree, expr, run, resource)
                elif not ((key == "resourceType" and is_resource) or key == "fhir_comments"):
                    run.add("error", "structure", f"Unrecognized property '{key}'", f"{expr}.{key}")
                continue
            child = prop.node
            if child.is_choice:
                if choice_seen is None:
                    choice_seen = {}
                if child in choice_seen:
                    run.add(
                        "error",
                        "structure",
                        f"only one of {child.name}[x] may be present "
                        f"(found {choice_seen[child]} and {key})",
                        f"{expr}.{key}",
                    )
                    continue
                choice_seen[child] = key
            if type(value) is list:
                if not child.array:
                    run.add(
                        "error",
                        "structure",
                        f"{child.path} is not a repeating element: expected a single value, "
                        "found an array",
                        f"{expr}.{key}",
                    )
                    continue
                if not value:
                    run.add("error", "structure", "arrays must not be empty", f"{expr}.{key}")
                    continue
                n = len(value)
                if None in value:
                    shadow = obj.get("_" + key) or []
                    for i, v in enumerate(value):
                        if v is None:
                            n -= 1
                            if not (isinstance(shadow, list) and i < len(shadow) and shadow[i]):
                                run.add(
                                    "error",
                                    "structure",
                                    "null is not a value",
                                    f"{expr}.{key}[{i}]",
                                )
            else:
                if child.array:
                    run.add(
                        "error",
                        "structure",
                        f"{child.path} repeats: expected an array, found a single value",
                        f"{expr}.{key}",
                    )
                    continue
                if value is None:
                    if obj.get("_" + key) is None:
                        run.add("error", "structure", "null is not a value", f"{expr}.{key}")
                    continue
                n = 1
            n += counts.get(child, 0)
            counts[child] = n
            if n > child.max:
                over = True
            found.append((prop, key, value))
        for child in node.required:
            n = counts.get(child, 0)
            if n < child.min:
                run.add(
                    "error",
                    "required",
                    f"{child.path}: minimum required = {child.min}, but only found {n}",
                    expr,
                )
        if over:  # rare: spares the common case a second pass over the counts
            for child, n in counts.items():
                if n > child.max:
                    shown = child.name + ("[x]" if child.is_choice else "")
                    run.add(
                        "error",
                        "structure",
                        f"{child.path}: max allowed = {int(child.max)}, but found {n}",
                        f"{expr}.{shown}",
                    )
        for prop, key, value in found:
            # values the quick check passes have no issue: no expression is built for them;
            # the structure check's tests include required bindings, a full validation's not
            quick = prop.quick_structural if run.structural else None if prop.bound else prop.quick
            if type(value) is list:
                for i, v in enumerate(value):
                    if v is not None and (quick is None or not quick(v)):
                        self._value(v, prop, f"{expr}.{key}[{i}]", run, resource)
            elif quick is None or not quick(value):
                self._value(value, prop, f"{expr}.{key}", run, resource)
            if prop.node.slices:
                items = _items(expr, key, value, prop.type_code)
                self._slicing(items, prop.node, tree, expr, run, resource)
        if node.sliced:
            present = {prop.node for prop, _, _ in found}
            for child in node.sliced:
                if child not in present:
                    self._slicing([], child, tree, expr, run, resource)  # slice minimums

    # -- the structure check's clean path ----------------------------------------------------
    #
    # Most written resources are well formed. These methods answer "does the structure check
    # find nothing?" in one walk that builds no issue and no location string; any doubt (an
    # issue, or a rare shape such as slices, fixed values or primitive extensions) answers
    # False, and the resource then takes the full walk above, which words every issue. So the
    # clean path may send a clean resource to the full walk, but never passes one the full walk
    # would fault: the outcomes are the same, only the common case costs less.

    def _clean_resource(self, res: dict) -> bool:
        rt = res.get("resourceType")
        if type(rt) is not str or not rt or not self.defs.is_resource_type(rt):
            return False
        tree = self.tree(FHIR_SD_BASE + rt)
        return tree is not None and self._clean_object(res, tree.root, tree, True)

    def _clean_object(self, obj: dict, node: Node, tree: Tree, is_resource: bool = False) -> bool:
        if node.sliced:
            return False
        props = self._props.get(node)
        if props is None:
            props = self._properties(node, tree)
        choices: set | None = None
        for key, value in obj.items():
            prop = props.get(key)
            if prop is None:
                if (key == "resourceType" and is_resource) or key == "fhir_comments":
                    continue
                return False  # unknown, or a primitive's extension (_key): the full walk
            child = prop.node
            if child.slices:
                return False
            if child.is_choice:
                if choices is None:
                    choices = set()
                elif child in choices:
                    return False
                choices.add(child)
            if type(value) is list:
                if not child.array or not value or len(value) > child.max:
                    return False
                for v in value:
                    if v is None or not self._clean_value(v, prop):
                        return False
            elif child.array or value is None or child.max < 1:
                return False
            elif not self._clean_value(value, prop):
                return False
        for child in node.required:
            if child.is_choice:
                if choices is None or child not in choices or child.min > 1:
                    return False
                continue
            value = obj.get(child.name)
            n = 0 if value is None else len(value) if type(value) is list else 1
            if n < child.min:
                return False
        return True

    def _clean_value(self, value: Any, prop: _Prop) -> bool:
        kind = prop.kind
        if kind is _PRIMITIVE:
            quick = prop.quick_structural
            if quick is not None and quick(value):
                return True
            probe = _Run({}, structural=True)
            self._primitive(value, prop.node, prop.type_code, "", probe)
            return not probe.issues
        if kind is _BACKBONE:
            if isinstance(value, dict):
                cont = self._container_of(prop)
                if cont:
                    return self._clean_object(value, cont[0], cont[1])
            return True
        if kind is _RESOURCE:
            return (
                isinstance(value, dict) and "resourceType" in value and self._clean_resource(value)
            )
        if not isinstance(value, dict) or not value or (len(value) == 1 and "id" in value):
            return False
        node = prop.node
        if node.fixed is not None or node.pattern is not None:
            return False
        if kind is _EXTENSION:
            url = value.get("url")
            if not isinstance(url, str) or not url:
                return False
            if "extension" in value and any(k.startswith("value") for k in value):
                return False
            ext_tree = self._type_tree("Extension")
            if not self._clean_object(value, ext_tree.root, ext_tree):
                return False
        else:
            cont = self._container_of(prop)
            if cont is None or not self._clean_object(value, cont[0], cont[1]):
                return False
        if node.binding and node.binding[0] == "required" and prop.type_code in _CODED_TYPES:
            probe = _Run({}, structural=True)
            self._binding(value, prop.type_code, node, "", probe)
            return not probe.issues
        return True

    def _primitive_extension(self, key, value, obj, node, tree, expr, run, resource) -> None:
        name = key[1:]
        child = node.children.get(name)
        if child is None and name in node.choices:
            child = node.choices[name][0]
        if child is None:
            run.add("error", "structure", f"Unrecognized property '{key}'", f"{expr}.{key}")
            return
        element_tree = self._type_tree("Element")
        values = value if isinstance(value, list) else [value]
        present = obj.get(name)
        if (
            child.binding
            and child.binding[0] == "required"
            and child.types
            and child.types[0].code == "code"
        ):
            present_list = present if isinstance(present, list) else [present]
            for i, v in enumerate(values):
                if v is not None and (i >= len(present_list) or present_list[i] is None):
                    where = f"{expr}.{name}[{i}]" if isinstance(value, list) else f"{expr}.{name}"
                    run.add(
                        "error",
                        "code-invalid",
                        f"no code provided, and a code is required from the value set "
                        f"{child.binding[1]}",
                        where,
                    )
        for i, v in enumerate(values):
            if v is None:
                continue
            item_expr = f"{expr}.{name}[{i}]" if isinstance(value, list) else f"{expr}.{name}"
            if not isinstance(v, dict):
                run.add("error", "structure", f"{key} must hold objects", item_expr)
                continue
            self._object(v, element_tree.root, element_tree, item_expr, run, resource, "Element")

    # -- values ------------------------------------------------------------------------------

    def _value(self, value: Any, prop: _Prop, expr: str, run: _Run, resource: dict) -> None:
        node, type_code, kind = prop.node, prop.type_code, prop.kind
        if kind is _PRIMITIVE:
            self._primitive(value, node, type_code, expr, run)
            return
        if kind is _BACKBONE:
            # an element with children of its own (BackboneElement in a profile) or a
            # contentReference
            if isinstance(value, dict):
                cont = self._container_of(prop)
                if cont:
                    self._object(value, cont[0], cont[1], expr, run, resource, "BackboneElement")
            return
        if kind is _RESOURCE:
            if not isinstance(value, dict) or "resourceType" not in value:
                run.add("error", "structure", "a resource is expected here", expr)
                return
            self._validate_resource(value, expr, run, prop.profiles)
            return
        if not isinstance(value, dict):
            run.add("error", "structure", f"{type_code} must be a JSON object", expr)
            return
        if not value or (len(value) == 1 and "id" in value):
            run.add(
                "error",
                "invariant",
                "ele-1: All FHIR elements must have a @value or children",
                expr,
            )
            return
        if kind is _EXTENSION:
            self._extension(value, node, expr, run, resource)
        else:
            cont = self._container_of(prop)
            if cont is None:
                run.add("error", "structure", f"unknown type {type_code}", expr)
                return
            errors = run.errors
            self._object(value, cont[0], cont[1], expr, run, resource, type_code)
            if run.errors != errors:
                return  # malformed: its codes, references and invariants cannot be read
            if not run.structural:
                type_tree = self._type_tree(type_code)
                if type_tree is not None and (type_tree is not cont[1] or cont[0] is not node):
                    self._constraints(value, type_tree.root, type_code, expr, run, resource)
        if node.fixed is not None and value != node.fixed:
            run.add("error", "value", f"value must be exactly {short(node.fixed)}", expr)
        if node.pattern is not None and not matches_pattern(value, node.pattern):
            run.add("error", "value", f"value must match the pattern {short(node.pattern)}", expr)
        if node.binding and type_code in _CODED_TYPES:
            self._binding(value, type_code, node, expr, run)
        if run.structural:
            pass
        elif type_code == "Reference":
            self._reference(value, node, expr, run, resource)
        elif type_code == "Attachment":
            _attachment(value, expr, run)
        if node.constraints:
            path = node.path if type_code in ("BackboneElement", "Element") else type_code
            self._constraints(value, node, path, expr, run, resource)

    def _primitive(self, value: Any, node: Node, type_code: str, expr: str, run: _Run) -> None:
        ok = True
        if type_code == "boolean":
            ok = isinstance(value, bool)
        elif type_code in _INTEGER_TYPES:
            ok = isinstance(value, int) and not isinstance(value, bool)
            if ok:
                low = _INT_LOW.get(type_code, _INT32[0])
                if not low <= value <= _INT32[1]:
                    run.add("error", "value", f"{value} is out of range for {type_code}", expr)
        elif type_code == "decimal":
            ok = isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)
        elif type_code in _STRING_TYPES or type_code not in self._regex:
            ok = isinstance(value, str)
        if not ok:
            run.add(
                "error",
                "structure",
                f"{type_code} value must be a JSON {json_kind(type_code)}, not {json_name(value)}",
                expr,
            )
            return
        if isinstance(value, str):
            rx = self._regex.get(type_code)
            if type_code == "xhtml":
                if not fhirpath._html_checks(None, [value])[0]:
                    run.add("error", "value", "narrative XHTML is not safe or not a div", expr)
            elif rx is not None and not rx.fullmatch(value):
                run.add("error", "value", f"'{clip(value)}' is not a valid {type_code}", expr)
                return
            elif type_code in _DATE_TYPES and not real_date(value):
                run.add("error", "value", f"'{value}' is not a valid {type_code}", expr)
                return
            if node.max_length and len(value) > node.max_length:
                run.add("error", "value", f"longer than maxLength {node.max_length}", expr)
        if node.fixed is not None and value != node.fixed:
            run.add("error", "value", f"value must be exactly {short(node.fixed)}", expr)
        if node.pattern is not None and value != node.pattern:
            run.add("error", "value", f"value must be {short(node.pattern)}", expr)
        if node.min_value is not None and less_than(value, node.min_value):
            run.add("error", "value", f"{value} is below the minimum {node.min_value}", expr)
        if node.max_value is not None and less_than(node.max_value, value):
            run.add("error", "value", f"{value} is above the maximum {node.max_value}", expr)
        if node.binding and type_code in _CODED_TYPES:
            self._binding(value, type_code, node, expr, run)

    # -- terminology -------------------------------------------------------------------------

    def _binding(self, value: Any, type_code: str, node: Node, expr: str, run: _Run) -> None:
        strength, vs_url = node.binding
        if strength != "required" and (run.structural or strength != "extensible"):
            return  # the structure check (on every write) enforces required bindings only
        exp = self.codes(vs_url)
        if exp is None:
            return
        if type_code in ("code", "string", "uri"):
            codings = [(None, value)]
        elif type_code == "Coding":
            codings = [(value.get("system"), value.get("code"))]
        elif type_code == "Quantity":
            if "code" not in value:
                return
            codings = [(value.get("system"), value.get("code"))]
        else:
            codings = [
                (c.get("system"), c.get("code"))
                for c in value.get("coding", ())
                if isinstance(c, dict)
            ]
        # wrongly typed parts were reported by the structural checks; skip them here
        codings = [
            (s, c) for s, c in codings if isinstance(c, str) and (s is None or isinstance(s, str))
        ]
        if not codings:
            return
        verdicts = [in_expansion(exp, s, c) for s, c in codings]
        if True in verdicts or None in verdicts:
            return
        shown = ", ".join(f"{s}#{c}" if s else c for s, c in codings)
        if strength == "required":
            run.add(
                "error",
                "code-invalid",
                f"the code {shown} is not in the value set {vs_url} (required binding)",
                expr,
            )
        else:
            run.add(
                "warning",
                "code-invalid",
                f"none of the codes {shown} is in the value set {vs_url} (extensible binding)",
                expr,
            )

    # -- extensions ------------------------------------------------------------------------

    def _extension(self, value: dict, node: Node, expr: str, run: _Run, resource: dict) -> None:
        url = value.get("url")
        if not isinstance(url, str) or not url:
            run.add("error", "required", "an extension must have a url", expr)
            return
        if "extension" in value and any(k.startswith("value") for k in value):
            run.add(
                "error",
                "invariant",
                "ext-1: Must have either extensions or value[x], not both",
                expr,
            )
        is_absolute = re.match(r"^[a-z][a-z0-9+.-]*:", url) is not None
        if run.structural:
            ext_tree = self._type_tree("Extension")
            self._object(value, ext_tree.root, ext_tree, expr, run, resource, "Extension")
            return
        tree = self.tree(url) if is_absolute else None
        if tree is None:
            ext_tree = self._type_tree("Extension")
            self._object(value, ext_tree.root, ext_tree, expr, run, resource, "Extension")
            if not is_absolute:
                # relative urls name the parts of a complex extension, nowhere else
                if node.path != "Extension.extension":
                    run.add("error", "structure", f"extension url '{url}' must be absolute", expr)
                return
            modifier = node.name == "modifierExtension"
            severity = "error" if modifier else self.unknown_extensions
            run.add(severity, "structure", f"unknown extension {url}", expr)
            return
        self._object(value, tree.root, tree, expr, run, resource, "Extension")
        self._constraints(value, tree.root, "Extension", expr, run, resource)
        self._extension_context(tree, node, expr, run)

    def _extension_context(self, tree: Tree, node: Node, expr: str, run: _Run) -> None:
        if not tree.context:
            return
        # Patient.name[0].extension[1] -> Patient.name; the node path gives the type (HumanName)
        host_path = re.sub(r"\[\d+\]", "", expr).rsplit(".", 1)[0]
        type_host = node.path.rsplit(".", 1)[0]
        candidates = {host_path, type_host, "Element"}
        if "." not in host_path:
            candidates |= {"Resource", "DomainResource"}
        else:
            candidates |= _type_paths(host_path, self)
            candidates.add("BackboneElement")
        for ctx in tree.context:
            ctype, cexpr = ctx.get("type"), ctx.get("expression", "")
            if ctype == "fhirpath":
                # Patient.address.where(use = 'home') -> the path Patient.address
                plain = re.sub(r"\.(where|ofType|exists|first)\(.*$", "", cexpr)
                if not re.fullmatch(r"[A-Za-z][A-Za-z0-9.]*", plain) or plain in candidates:
                    return
                continue
            if ctype == "extension":
                if node.path.endswith("extension.extension"):
                    return
                continue
            if cexpr in candidates or cexpr.split(".")[0] in candidates and "." not in cexpr:
                return
        allowed = ", ".join(c.get("expression", "") for c in tree.context)
        run.add(
            "error",
            "business-rule",
            f"extension {tree.url} is not allowed here (allowed: {allowed}; here: {host_path})",
            expr,
        )

    # -- references --------------------------------------------------------------------------

    def _reference(self, value: dict, node: Node, expr: str, run: _Run, resource: dict) -> None:
        ref = value.get("reference")
        if not isinstance(ref, str):
            return
        allowed = set()
        for t in node.types:
            for tp in t.target_profiles:
                tree = self.tree(tp)
                allowed.add(tree.type if tree else tp.rsplit("/", 1)[-1])
        target_type = None
        if ref.startswith("#"):
            target = None
            for c in resource.get("contained", ()) if isinstance(resource, dict) else ():
                if isinstance(c, dict) and c.get("id") == ref[1:]:
                    target = c
            if target is None and ref != "#":
                run.add("error", "not-found", f"contained resource {ref} is not found", expr)
                return
            target_type = target.get("resourceType") if target else None
        else:
            found = resolve_in_bundle(ref, run.root)
            if found is not None:
                target_type = found.get("resourceType")
                literal = literal_type(ref)
                if literal and literal != target_type:
                    run.add(
                        "error",
                        "required",
                        f"the resource matching reference {ref} is a {target_type}, "
                        f"not a {literal}",
                        expr,
                    )
            elif self.assume_valid_rest_references:
                found = fhirpath._resolve_reference(ref, {})
                target_type = found.get("resourceType") if found else value.get("type")
            else:
                target_type = value.get("type")
        if not allowed or "Resource" in allowed or not target_type:
            return
        if target_type not in allowed:
            run.add(
                "error",
                "structure",
                f"the type '{target_type}' of reference {ref} is not a valid target "
                f"(must be one of {', '.join(sorted(allowed))})",
                expr,
            )

    # -- slicing -----------------------------------------------------------------------------

    def _slicing(self, items: list, node: Node, tree: Tree, expr: str, run, resource) -> None:
        slicing = node.slicing or {}
        discriminators = slicing.get("discriminator", [])
        rules = slicing.get("rules", "open")
        counts = {id(s): 0 for s in node.slices}
        for item_expr, value, ctype in items:
            matched = None
            for s in node.slices:
                if self._slice_matches(value, ctype, s, tree, discriminators, resource):
                    matched = s
                    break
            if matched is None:
                if rules == "closed":
                    run.add(
                        "error",
                        "structure",
                        f"this element does not match any known slice of {node.path} "
                        "and the slicing is closed",
                        item_expr,
                    )
                continue
            counts[id(matched)] += 1
            stype = ctype if ctype in matched.type_codes() or not matched.types else None
            if stype is None and matched.types:
                stype = matched.types[0].code
            self._value(value, self._prop(matched, tree, stype), item_expr, run, resource)
        for s in node.slices:
            n = counts[id(s)]
            if n < s.min:
                run.add(
                    "error",
                    "required",
                    f"slice '{s.slice_name}' of {node.path}: minimum required = {s.min}, "
                    f"but only found {n}",
                    expr,
                )
            if n > s.max:
                run.add(
                    "error",
                    "structure",
                    f"slice '{s.slice_name}' of {node.path}: max allowed = {int(s.max)}, "
                    f"but found {n}",
                    expr,
                )

    def _slice_matches(self, value, ctype, s: Node, tree, discriminators, resource) -> bool:
        if not discriminators:
            return self._conforms_silently(value, s, tree, ctype, resource)
        for d in discriminators:
            dtype, path = d.get("type"), d.get("path", "$this")
            if dtype in ("value", "pattern"):
                expected = self._discriminator_value(s, path)
                if expected is _UNKNOWN:
                    if not self._conforms_silently(value, s, tree, ctype, resource):
                        return False
                    continue
                found = values_at(value, path)
                if dtype == "value" and not any(v == expected for v in found):
                    if not any(matches_pattern(v, expected) for v in found):
                        return False
                if dtype == "pattern" and not any(matches_pattern(v, expected) for v in found):
                    return False
            elif dtype == "type":
                want = self._discriminator_types(s, path)
                got = type_at(value, path, ctype)
                if want and not got & want:
                    return False
            elif dtype == "exists":
                sub = node_at(s, path)
                present = bool(values_at(value, path))
                if (
                    sub is not None
                    and (sub.min > 0) != present
                    and not (sub.max == 0 and not present)
                ):
                    return False
                if sub is not None and sub.max == 0 and present:
                    return False
            elif dtype == "profile":
                target = values_at(value, path) if path != "$this" else [value]
                sub = node_at(s, path) if path != "$this" else s
                profiles = [p for t in (sub.types if sub else ()) for p in t.profiles]
                if not profiles:
                    continue
                if not target or not isinstance(target[0], dict):
                    return False
                if not all(self._quiet_conforms(target[0], p) for p in profiles):
                    return False
            else:
                return False
        return True

    def _quiet_conforms(self, value: dict, url: str) -> bool:
        try:
            return self.conforms_to(value, url)
        except fhirpath.FhirPathError:
            return False

    def _conforms_silently(self, value, s: Node, tree, ctype, resource) -> bool:
        probe = _Run(resource)
        stype = ctype if not s.types or ctype in s.type_codes() else s.types[0].code
        self._value(value, self._prop(s, tree, stype), "$probe", probe, resource)
        return not any(i["severity"] in ("error", "fatal") for i in probe.issues)

    def _discriminator_value(self, s: Node, path: str):
        if path == "url" and s.types and s.types[0].code == "Extension":
            profiles = s.types[0].profiles
            if profiles:
                return profiles[0]
        sub = node_at(s, path)
        if sub is None:
            return _UNKNOWN
        if sub.fixed is not None:
            return sub.fixed
        if sub.pattern is not None:
            return sub.pattern
        return _UNKNOWN  # no fixed value to compare: the caller validates against the slice

    def _discriminator_types(self, s: Node, path: str) -> set[str]:
        sub = s if path == "$this" else node_at(s, path.replace(".resolve()", ""))
        if sub is None:
            return set()
        out = set()
        for t in sub.types:
            out.add(t.code)
            for p in t.profiles:
                tree = self.tree(p)
                if tree is not None:
                    out.add(tree.type)
        return out

    # -- invariants ----------------------------------------------------------------------------

    def _constraints(
        self, value: Any, node: Node, type_path: str, expr: str, run: _Run, resource: dict
    ) -> None:
        if not node.constraints or run.structural:
            return
        has_contained = isinstance(value, dict) and "contained" in value
        ctx_node = value if node.path == type_path and "." not in type_path else None
        variables = {"resource": resource, "rootResource": run.root}
        for c in node.constraints:
            if c.fn is None or (c.contained_only and not has_contained):
                continue
            if c.guards and isinstance(value, dict) and any(absent(value, g) for g in c.guards):
                continue
            if c.key == "ref-1" and not str(value.get("reference", "")).startswith("#"):
                continue  # ref-1 only concerns local references
            if c.key == "dom-6":
                text = value.get("text") if isinstance(value, dict) else None
                if isinstance(text, dict) and "div" in text:
                    continue
            if ctx_node is None:
                ctx_node = fhirpath.node(value, type_path)
            try:
                result = c.fn(ctx_node, variables)
            except Exception as exc:  # fhirpathpy raises assorted errors
                run.add(
                    "warning",
                    "invariant",
                    f"{c.key} could not be evaluated ({type(exc).__name__}: {exc})"[:300],
                    expr,
                )
                continue
            # only false fails: an empty result (nothing to compare) is not a violation
            if result and result[0] is False:
                severity = "error" if c.severity == "error" else "warning"
                run.add(severity, "invariant", f"Constraint failed: {c.key}: '{c.human}'", expr)


@functools.lru_cache(maxsize=1)
def default_validator() -> Validator:
    """The shared validator over the shared definitions (core, ``profiles/``,
    ``mappings/`` terminology); element trees are built on first use and kept."""
    return Validator(default_definitions())


def validator_for(definitions: Definitions) -> Validator:
    """The validator over ``definitions``: the shared one for the shared definitions."""
    if definitions is default_definitions():
        return default_validator()
    return Validator(definitions)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

_UNKNOWN = object()

# what a value of an element is, as far as checking it goes (_Prop.kind)
_PRIMITIVE, _COMPLEX, _BACKBONE, _RESOURCE, _EXTENSION = (
    "primitive",
    "complex",
    "backbone",
    "resource",
    "extension",
)


class _Prop:
    """How values of one element with one type are checked: worked out once per element and
    type (``Validator._prop``) instead of for every value."""

    __slots__ = (
        "bound",
        "container",
        "kind",
        "node",
        "profiles",
        "quick",
        "quick_structural",
        "required",
        "tree",
        "type_code",
    )

    def __init__(self, node: Node, tree: Tree, type_code: str | None):
        self.node = node
        self.tree = tree  # the tree node belongs to
        self.type_code = type_code
        self.kind = _COMPLEX
        self.container: tuple[Node, Tree] | None = None  # Validator._container_of
        self.profiles: list[str] = []  # resources: the profiles they must meet
        self.quick = None  # primitives: see Validator._quick_check
        self.quick_structural = None  # primitives: see Validator._required_quick_check
        # whether a full validation checks the codes (the quick check does not)
        self.bound = bool(
            node.binding
            and node.binding[0] in ("required", "extensible")
            and type_code in _CODED_TYPES
        )
        self.required = self.bound and node.binding[0] == "required"


def _is_boolean(v: Any) -> bool:
    return v is True or v is False


def _is_number(v: Any) -> bool:
    return type(v) is int or type(v) is float or type(v) is Decimal


def _is_string(v: Any) -> bool:
    return type(v) is str


def _is_real_date(v: Any) -> bool:
    return type(v) is str and real_date(v)


def _items(expr: str, key: str, value: Any, type_code: str | None) -> list[tuple]:
    """The (expression, value, type code) of each value of a property, for slicing."""
    if type(value) is list:
        return [(f"{expr}.{key}[{i}]", v, type_code) for i, v in enumerate(value) if v is not None]
    return [(f"{expr}.{key}", value, type_code)]


def _root_expression(resource: dict) -> str:
    rt = resource.get("resourceType")
    return rt if isinstance(rt, str) and rt.isidentifier() else "$this"


def _attachment(value: dict, expr: str, run: _Run) -> None:
    data, size = value.get("data"), value.get("size")
    if not isinstance(data, str) or not isinstance(size, int) or isinstance(size, bool):
        return
    try:
        actual = len(base64.b64decode("".join(data.split()), validate=True))
    except (binascii.Error, ValueError):
        return  # the base64Binary check reports it
    if actual != size:
        run.add(
            "error",
            "structure",
            f"stated attachment size {size} does not match the actual size {actual}",
            expr,
        )


def _type_paths(host_path: str, validator: Validator) -> set[str]:
    """Names an extension context may give a location: ``Patient.contact.name.family`` is
    also ``HumanName.family`` and ``string``."""
    segs = host_path.split(".")
    tree = validator.tree(FHIR_SD_BASE + segs[0])
    out: set[str] = set()
    if tree is None:
        return out
    node, cur_tree = tree.root, tree
    for i, seg in enumerate(segs[1:], start=1):
        nxt = node.children.get(seg)
        if nxt is None:
            return out
        node = nxt
        code = node.types[0].code if node.types else None
        rest = ".".join(segs[i + 1 :])
        if code and code not in ("BackboneElement", "Element"):
            out.add(code + ("." + rest if rest else ""))
        if i < len(segs) - 1:
            cont = validator._container(node, cur_tree, code or "BackboneElement")
            if cont is None:
                return out
            node, cur_tree = cont
    return out


__all__ = ["Validator", "INF"]
