"""Element trees built from snapshots, the form the validator walks.

A snapshot is a flat list of element definitions; the validator needs, for an element, its
children by JSON property name (choice elements under every concrete name: ``valueQuantity``),
its slices, its compiled invariants and its primitive rules. :func:`build_tree` makes that once
per StructureDefinition; the validator caches the trees.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any

from hub.validation.fhirpath import FhirPathError
from hub.validation.fhirpath import compile_expression

log = logging.getLogger("hub.validation")

INF = float("inf")
_SYSTEM_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"

# Invariants evaluated natively (cheaper, same meaning): ele-1 "has a value or children",
# ext-1 "extension or value[x], not both".
NATIVE_CONSTRAINTS = frozenset({"ele-1", "ext-1"})


@dataclasses.dataclass(slots=True)
class Constraint:
    key: str
    severity: str
    human: str
    expression: str
    fn: Any  # compiled FHIRPath, or None when it does not compile
    contained_only: bool  # dom-2..5: only meaningful when the resource has contained resources
    guards: tuple[str, ...] = ()  # the invariant holds when any of these elements is absent


@dataclasses.dataclass(slots=True)
class TypeRef:
    code: str
    profiles: tuple[str, ...] = ()
    target_profiles: tuple[str, ...] = ()


@dataclasses.dataclass(slots=True, eq=False)
class Node:
    id: str
    path: str
    name: str  # JSON property name (choice stem without [x])
    min: int = 0
    max: float = INF
    array: bool = False
    types: list[TypeRef] = dataclasses.field(default_factory=list)
    binding: tuple[str, str] | None = None  # (strength, value set url)
    fixed: Any = None
    pattern: Any = None
    constraints: list[Constraint] = dataclasses.field(default_factory=list)
    slicing: dict | None = None
    slice_name: str | None = None
    slices: list[Node] = dataclasses.field(default_factory=list)
    children: dict[str, Node] = dataclasses.field(default_factory=dict)
    choices: dict[str, tuple[Node, str]] = dataclasses.field(default_factory=dict)
    content_reference: str | None = None
    max_length: int | None = None
    min_value: Any = None
    max_value: Any = None
    is_choice: bool = False
    first_type: str | None = None  # the type code of a single-typed element
    required: tuple = ()  # children with min > 0 (filled by build_tree)
    sliced: tuple = ()  # children that have slices (filled by build_tree)

    @property
    def has_children(self) -> bool:
        return bool(self.children or self.choices)

    def all_children(self) -> list[Node]:
        seen, out = set(), []
        for n in self.children.values():
            out.append(n)
        for n, _ in self.choices.values():
            if id(n) not in seen:
                seen.add(id(n))
                out.append(n)
        return out

    def type_codes(self) -> list[str]:
        return [t.code for t in self.types]


@dataclasses.dataclass(slots=True)
class Tree:
    url: str
    type: str
    kind: str
    root: Node
    by_id: dict[str, Node]
    context: list = dataclasses.field(default_factory=list)  # extension contexts


def _type_code(t: dict, path: str) -> str:
    code = t.get("code", "")
    if code.startswith("http://hl7.org/fhirpath/System."):
        for ext in t.get("extension", ()):
            if ext.get("url") == _SYSTEM_TYPE_EXT:
                code = ext.get("valueUrl", code)
        if path.endswith(".id") and path.count(".") == 1:
            code = "id"  # Resource.id: the logical id
        elif code.startswith("http://"):
            code = code.rsplit(".", 1)[1].lower()
    return code


def _value_with_prefix(e: dict, prefix: str):
    for k, v in e.items():
        if k.startswith(prefix) and k != prefix:
            return v
    return None


def _compile(c: dict) -> Constraint | None:
    expr = c.get("expression")
    if not expr:
        return None
    # R4's invariants (dom-3...) call as() on collections, which FHIRPath R4 allowed and later
    # versions (and fhirpathpy) reject; ofType() has the R4 meaning.
    expr = expr.replace(".as(", ".ofType(")
    try:
        fn = compile_expression(expr)
    except FhirPathError as exc:
        log.warning("invariant %s does not compile, skipped: %s", c.get("key"), exc)
        fn = None
    return Constraint(
        guards=_guards(expr),
        key=c.get("key", "?"),
        severity=c.get("severity", "error"),
        human=c.get("human", ""),
        expression=expr,
        fn=fn,
        contained_only=expr.startswith("contained."),
    )


_GUARD_TERM = re.compile(r"^\(?(\w+)\.(?:empty\(\)|hasValue\(\)\.not\(\)|exists\(\)\.not\(\))\)?$")


def _top_level_or_terms(expr: str) -> list[str]:
    terms, depth, start, i = [], 0, 0, 0
    quoted = False
    while i < len(expr):
        ch = expr[i]
        if ch == "'" and (i == 0 or expr[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted:
            if ch in "([":
                depth += 1
            elif ch in ")]":
                depth -= 1
            elif depth == 0 and expr.startswith(" or ", i):
                terms.append(expr[start:i].strip())
                start = i + 4
                i += 4
                continue
        i += 1
    terms.append(expr[start:].strip())
    return terms


def _guards(expr: str) -> tuple[str, ...]:
    """Elements whose absence makes the invariant true without evaluating it.

    ``start.hasValue().not() or end.hasValue().not() or (start <= end)`` holds whenever
    ``start`` or ``end`` is missing; evaluating FHIRPath costs far more than looking.
    """
    terms = _top_level_or_terms(expr)
    if len(terms) < 2:
        return ()
    out = []
    for term in terms:
        m = _GUARD_TERM.match(term)
        if m:
            out.append(m.group(1))
    return tuple(out)


def make_node(e: dict) -> Node:
    eid = e.get("id") or e["path"]
    last = eid.rsplit(".", 1)[-1]
    name, _, slice_name = last.partition(":")
    is_choice = name.endswith("[x]")
    if is_choice:
        name = name[:-3]
    max_s = e.get("max", "*")
    base_max = e.get("base", {}).get("max", max_s)
    node = Node(
        id=eid,
        path=e["path"],
        name=name,
        min=int(e.get("min", 0)),
        max=INF if max_s == "*" else int(max_s),
        array=base_max != "1" and base_max != "0",
        types=[
            TypeRef(
                _type_code(t, e["path"]),
                tuple(t.get("profile", ())),
                tuple(t.get("targetProfile", ())),
            )
            for t in e.get("type", ())
        ],
        slicing=e.get("slicing"),
        slice_name=slice_name or e.get("sliceName"),
        content_reference=e.get("contentReference"),
        max_length=e.get("maxLength"),
        min_value=_value_with_prefix(e, "minValue"),
        max_value=_value_with_prefix(e, "maxValue"),
        fixed=_value_with_prefix(e, "fixed"),
        pattern=_value_with_prefix(e, "pattern"),
        is_choice=is_choice,
    )
    if node.types:
        node.first_type = node.types[0].code
    b = e.get("binding")
    if b and b.get("valueSet"):
        node.binding = (b.get("strength", "example"), b["valueSet"])
    for c in e.get("constraint", ()):
        if c.get("key") in NATIVE_CONSTRAINTS:
            continue
        compiled = _compile(c)
        if compiled is not None:
            node.constraints.append(compiled)
    return node


def _register(parent: Node, node: Node) -> None:
    if node.is_choice:
        for t in node.types:
            concrete = node.name + t.code[0].upper() + t.code[1:]
            parent.choices[concrete] = (node, t.code)
    else:
        parent.children[node.name] = node


def build_tree(sd: dict) -> Tree:
    """The element tree of a StructureDefinition (with snapshot)."""
    elements = sd["snapshot"]["element"]
    by_id: dict[str, Node] = {}
    root = None
    for e in elements:
        node = make_node(e)
        by_id[node.id] = node
        if root is None:
            root = node
            continue
        parent_id, _, last = node.id.rpartition(".")
        if ":" in last:
            base_id = parent_id + "." + last.split(":")[0]
            if "/" in last:
                continue  # re-slicing is not supported; the slice's parent checks remain
            base = by_id.get(base_id)
            if base is not None:
                base.slices.append(node)
            continue
        parent = by_id.get(parent_id)
        if parent is not None:
            _register(parent, node)
    assert root is not None
    for n in by_id.values():
        kids = n.all_children()
        n.required = tuple(k for k in kids if k.min > 0)
        n.sliced = tuple(k for k in kids if k.slices)
    return Tree(
        url=sd.get("url", ""),
        type=sd.get("type") or root.path,
        kind=sd.get("kind", ""),
        root=root,
        by_id=by_id,
        context=sd.get("context", []),
    )


def primitive_rules(defs) -> dict[str, re.Pattern | None]:
    """Regular expressions of the FHIR primitive types, from their StructureDefinitions."""
    out: dict[str, re.Pattern | None] = {}
    for sd in defs.structures():
        if sd.get("kind") != "primitive-type" or "snapshot" not in sd:
            continue
        regex = None
        for e in sd["snapshot"]["element"]:
            if e.get("path", "").endswith(".value"):
                for t in e.get("type", ()):
                    regex = t.get("_regex") or regex
                    for ext in t.get("extension", ()):
                        if ext.get("url", "").endswith("/regex"):
                            regex = ext.get("valueString")
        try:
            out[sd["type"]] = re.compile(regex) if regex else None
        except re.error:
            out[sd["type"]] = None
    return out
