"""FHIR XML to the JSON form, driven by the StructureDefinitions.

The XML form cannot be converted without the definitions: whether an element repeats (JSON
array), which primitive is a number or a boolean, and where a resource is nested all come from
the element trees. Primitive ``id`` and ``extension`` children go to ``_name`` as in JSON.
Unknown elements are kept (as JSON would carry them) so that validation reports them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from lxml import etree

from hub.validation.definitions import FHIR_SD_BASE
from hub.validation.model import Node

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True
)


def _local(tag: str) -> str:
    return tag.split("}", 1)[1] if "}" in tag else tag


def parse_xml(data: bytes, validator) -> dict:
    """The JSON form of a FHIR XML resource (``validator`` supplies the element trees)."""
    root = etree.fromstring(data, _PARSER)
    return _resource(root, validator)


def _resource(el, validator) -> dict:
    rt = _local(el.tag)
    out: dict[str, Any] = {"resourceType": rt}
    tree = validator.tree(FHIR_SD_BASE + rt)
    _children(el, tree.root if tree else None, tree, out, validator)
    return out


def _primitive(text: str | None, code: str | None):
    if text is None:
        return None
    if code == "boolean":
        return {"true": True, "false": False}.get(text, text)
    if code in ("integer", "positiveInt", "unsignedInt"):
        try:
            return int(text)
        except ValueError:
            return text
    if code == "decimal":
        try:
            return Decimal(text)
        except ArithmeticError:
            return text
    return text


def _children(el, node: Node | None, tree, out: dict, validator) -> None:
    groups: dict[str, list] = {}
    shadows: dict[str, list] = {}
    order: list[str] = []
    for child in el:
        if not isinstance(child.tag, str):
            continue
        name = _local(child.tag)
        if name == "div" and child.tag == f"{{{XHTML_NS}}}div":
            out["div"] = etree.tostring(child, encoding="unicode", with_tail=False)
            continue
        sub, code = _lookup(node, name)
        if name not in groups:
            order.append(name)
            groups[name] = []
            shadows[name] = []
        value, shadow = _element(child, sub, code, tree, validator)
        groups[name].append(value)
        shadows[name].append(shadow)
    for name in order:
        sub, _code = _lookup(node, name)
        values, shadow = groups[name], shadows[name]
        repeat = sub.array if sub is not None else len(values) > 1
        if any(v is not None for v in values):
            out[name] = values if repeat else values[0]
        if any(s is not None for s in shadow):
            out["_" + name] = shadow if repeat else shadow[0]


def _lookup(node: Node | None, name: str):
    if node is None:
        return None, None
    sub = node.children.get(name)
    if sub is not None:
        return sub, sub.types[0].code if sub.types else None
    hit = node.choices.get(name)
    if hit is not None:
        return hit
    return None, None


def _element(child, sub: Node | None, code: str | None, tree, validator):
    """(value, shadow) for one XML element; shadow is the ``_name`` object of a primitive."""
    if code in ("Resource", "DomainResource") or (code and validator.defs.is_resource_type(code)):
        inner = [c for c in child if isinstance(c.tag, str)]
        return (_resource(inner[0], validator) if inner else {}), None
    if code and code[0].islower() and code != "xhtml":
        value = _primitive(child.get("value"), code)
        shadow: dict[str, Any] = {}
        if child.get("id") is not None:
            shadow["id"] = child.get("id")
        ext_tree = validator.tree(FHIR_SD_BASE + "Element")
        _children(child, ext_tree.root, ext_tree, shadow, validator)
        return value, shadow or None
    out: dict[str, Any] = {}
    if child.get("id") is not None:
        out["id"] = child.get("id")
    if child.get("url") is not None:
        out["url"] = child.get("url")
    if sub is None:
        container = None
        ctree = tree
    else:
        cont = validator._container(sub, tree, code or "BackboneElement")
        container, ctree = cont if cont else (None, tree)
    if code == "Extension" and out.get("url"):
        ext_tree = validator.tree(out["url"])
        if ext_tree is not None:
            container, ctree = ext_tree.root, ext_tree
    if container is None and child.get("value") is not None:
        return child.get("value"), None
    _children(child, container, ctree, out, validator)
    return out, None
